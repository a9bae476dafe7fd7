//! `orgtrail keys`, `import` and `lookup` on a real store, as a user runs them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{fixtures, run, stderr, stdout};

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn import_then_lookup_answers_who_started_the_instance() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let data = dir.path().join("data");
    let out = run(&["keys", "init", "--out", s(&keys)], b"");
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(keys.join("keyring.json").exists() && keys.join("signing.pub").exists());
    // Refuses to overwrite.
    let again = run(&["keys", "init", "--out", s(&keys)], b"");
    assert!(!again.status.success());
    assert!(common::stderr(&again).contains("already exists"));

    // Generated traffic plus the documented StartInstances record (eventVersion 1.0: no
    // recipientAccountId, so --account names its owner).
    let generated = run(
        &[
            "gen-events",
            "--count",
            "3000",
            "--seed",
            "4",
            "--dup-rate",
            "0.1",
        ],
        b"",
    )
    .stdout;
    let gen_file = dir.path().join("gen.jsonl");
    std::fs::write(&gen_file, &generated).unwrap();
    let doc = fixtures()
        .join("corpus/logfiles/aws-cloudtrail-user-guide_cloudtrail-log-file-examples_02.json");
    let out = run(
        &[
            "import",
            "--data-dir",
            s(&data),
            "--keys",
            s(&keys),
            "--account",
            "123456789012",
            s(&gen_file),
            s(&doc),
        ],
        b"",
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", common::stderr(&out));
    let line = text.lines().last().unwrap();
    let stored: u64 = line
        .split_whitespace()
        .next()
        .unwrap()
        .strip_prefix("stored=")
        .unwrap()
        .parse()
        .unwrap();
    assert!(line.ends_with("conflicts=0 rejected=0"), "{line}");
    let dups: u64 = line
        .split_whitespace()
        .nth(1)
        .unwrap()
        .strip_prefix("duplicates=")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(stored + dups, 3001);
    assert!(dups > 150, "{line}");

    // Importing again stores nothing twice.
    let out = run(
        &[
            "import",
            "--data-dir",
            s(&data),
            "--keys",
            s(&keys),
            "--account",
            "123456789012",
            s(&gen_file),
            s(&doc),
        ],
        b"",
    );
    assert_eq!(
        stdout(&out).trim(),
        format!("stored=0 duplicates=3001 conflicts=0 rejected=0")
    );

    // Who started instance i-ebeaf9e2?
    let out = run(
        &[
            "lookup",
            "--data-dir",
            s(&data),
            "--keys",
            s(&keys),
            "--resource-name",
            "i-ebeaf9e2",
        ],
        b"",
    );
    let table = stdout(&out);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 3, "{table}");
    assert!(rows[0].starts_with("TIME"));
    for cell in [
        "2014-03-06T21:22:54Z",
        "123456789012",
        "us-east-2",
        "Alice",
        "ec2:StartInstances",
        "205.251.233.176",
        "i-ebeaf9e2",
        "Success",
    ] {
        assert!(rows[1].contains(cell), "{cell} missing from {}", rows[1]);
    }
    assert_eq!(rows[2], "(1 events)");

    // jsonl gives back the exact bytes; filters combine; --max follows pages.
    let out = run(
        &[
            "lookup",
            "--data-dir",
            s(&data),
            "--keys",
            s(&keys),
            "--event-name",
            "StartInstances",
            "--username",
            "Alice",
            "--output",
            "jsonl",
        ],
        b"",
    );
    let want = {
        let d: serde_json::Value = serde_json::from_slice(&std::fs::read(&doc).unwrap()).unwrap();
        d["Records"][0].clone()
    };
    let got: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(got, want);
    let out = run(
        &[
            "lookup",
            "--data-dir",
            s(&data),
            "--keys",
            s(&keys),
            "--max",
            "1200",
            "--output",
            "jsonl",
        ],
        b"",
    );
    let all_text = stdout(&out);
    let lines: Vec<&str> = all_text.lines().collect();
    assert_eq!(lines.len(), 1200);
    let times: Vec<String> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["eventTime"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");

    // An event without an owner is rejected with the reason.
    let orphan = dir.path().join("orphan.json");
    std::fs::copy(&doc, &orphan).unwrap();
    let out = run(
        &[
            "import",
            "--data-dir",
            s(&data),
            "--keys",
            s(&keys),
            s(&orphan),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out)
            .contains("record 1: event has no recipientAccountId and no --account names its owner"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn rotate_rewrap_retire_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let data = dir.path().join("data");
    run(&["keys", "init", "--out", s(&keys)], b"");
    let generated = run(&["gen-events", "--count", "200"], b"").stdout;
    assert!(
        run(
            &["import", "--data-dir", s(&data), "--keys", s(&keys), "-"],
            &generated
        )
        .status
        .success()
    );
    let out = run(&["keys", "rotate", "--keys", s(&keys)], b"");
    assert!(stdout(&out).starts_with("master key v2 is now current"));
    let out = run(
        &[
            "keys",
            "retire",
            "--keys",
            s(&keys),
            "--key-version",
            "1",
            "--data-dir",
            s(&data),
        ],
        b"",
    );
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("still has"),
        "{}",
        common::stderr(&out)
    );
    let out = run(
        &["keys", "rewrap", "--keys", s(&keys), "--data-dir", s(&data)],
        b"",
    );
    assert!(stdout(&out).contains("now under v2"), "{}", stdout(&out));
    let out = run(
        &[
            "keys",
            "retire",
            "--keys",
            s(&keys),
            "--key-version",
            "1",
            "--data-dir",
            s(&data),
        ],
        b"",
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    let out = run(
        &[
            "lookup",
            "--data-dir",
            s(&data),
            "--keys",
            s(&keys),
            "--max",
            "1000",
            "--output",
            "jsonl",
        ],
        b"",
    );
    assert_eq!(stdout(&out).lines().count(), 200);
    // A keyring from elsewhere names what it lacks and changes nothing.
    let other = dir.path().join("other");
    run(&["keys", "init", "--out", s(&other)], b"");
    let out = run(
        &["lookup", "--data-dir", s(&data), "--keys", s(&other)],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        common::stderr(&out).contains("master key v2 is not in the keyring (it holds v1)"),
        "{}",
        common::stderr(&out)
    );
}

/// A store written by the previous orgtrail (format 1) is refused by every command with the
/// way out; `orgtrail store upgrade` converts it, and then it answers.
#[test]
fn a_format_1_store_is_refused_until_store_upgrade_converts_it() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../orgtrail-store/tests/fixtures/format1");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    for e in std::fs::read_dir(fixture.join("data")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), data.join(e.file_name())).unwrap();
    }
    let keys = fixture.join("keys");
    let lookup = [
        "lookup",
        "--data-dir",
        s(&data),
        "--keys",
        s(&keys),
        "--max",
        "1",
        "--output",
        "jsonl",
    ];
    let refused = run(&lookup, b"");
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("has format 1, this orgtrail reads format 4")
            && stderr(&refused).contains("orgtrail store upgrade --data-dir"),
        "{}",
        stderr(&refused)
    );
    let up = run(
        &[
            "store",
            "upgrade",
            "--data-dir",
            s(&data),
            "--keys",
            s(&keys),
        ],
        b"",
    );
    assert!(up.status.success(), "{}", stderr(&up));
    assert!(
        stdout(&up).contains("from format 1 to 4: 600 events"),
        "{}",
        stdout(&up)
    );
    let again = run(
        &[
            "store",
            "upgrade",
            "--data-dir",
            s(&data),
            "--keys",
            s(&keys),
        ],
        b"",
    );
    assert!(
        stdout(&again).contains("already format 4; nothing to do"),
        "{}",
        stdout(&again)
    );
    let found = run(&lookup, b"");
    assert!(found.status.success(), "{}", stderr(&found));
    assert_eq!(stdout(&found).lines().count(), 1);
}

/// Within one import, an event delivered again is a duplicate and one with the same eventID
/// but other bytes a conflict, whichever batch and run they fall in: the first of each pair is
/// what is stored, and every other event is stored exactly once.
#[test]
fn redeliveries_and_conflicts_within_one_import_keep_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let data = dir.path().join("data");
    let out = run(&["keys", "init", "--out", s(&keys)], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let generated = stdout(&run(&["gen-events", "--count", "5000", "--seed", "9"], b""));
    let original: Vec<String> = generated.lines().map(String::from).collect();
    let n = original.len();
    // (where it goes, in the original's numbering; the line): events delivered again soon
    // after (the same batch of 2,000), in the next batch, and batches later; and two eventIDs
    // delivered again with other bytes (a field added at the end).
    let changed = |at: usize| {
        let mut other = original[at].clone();
        other.truncate(other.len() - 1);
        other.push_str(r#","additionalEventData":{"redelivered":"changed"}}"#);
        other
    };
    let mut extra = vec![
        (13, original[10].clone()),
        (2010, original[1990].clone()),
        (4600, original[2500].clone()),
        (4900, original[100].clone()),
        (520, changed(20)),
        (3500, changed(3000)),
    ];
    extra.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut lines = original.clone();
    for (at, line) in extra {
        lines.insert(at, line);
    }
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = run(
        &[
            "import",
            "--data-dir",
            s(&data),
            "--keys",
            s(&keys),
            s(&file),
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        format!("stored={n} duplicates=4 conflicts=2 rejected=0")
    );
    // Every event of the generated file is stored, byte for byte, and nothing else.
    let out = run(
        &[
            "lookup",
            "--data-dir",
            s(&data),
            "--keys",
            s(&keys),
            "--max",
            "10000",
            "--output",
            "jsonl",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let mut got: Vec<String> = stdout(&out).lines().map(String::from).collect();
    let mut want: Vec<String> = generated.lines().map(String::from).collect();
    got.sort();
    want.sort();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the stored events are not the generated ones");
}
