//! `orgtrail validate-logs` on a real trail tree (digests chained and signed with an RSA key
//! made here), as a user runs it: text, JSON, exit codes, refusals.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
// The trail builder the library's own tests use.
#[path = "../crates/orgtrail-trailfiles/tests/support/mod.rs"]
mod support;

use common::{run, stderr, stdout};
use support::{BUCKET, Keys, Signer, Trail};

struct Tree {
    dir: tempfile::TempDir,
    trail: Trail,
}

impl Tree {
    fn new(hours: usize) -> Tree {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::new();
        let root = dir.path().join("bucket");
        let trail = Trail::build(&root, &keys, hours, |_| Signer::Trail, None);
        keys.write_list(&dir.path().join("keys.json"));
        Tree { dir, trail }
    }

    fn args(&self) -> Vec<String> {
        vec![
            "validate-logs".into(),
            self.trail.root.display().to_string(),
            "--public-keys".into(),
            self.dir.path().join("keys.json").display().to_string(),
            "--bucket".into(),
            BUCKET.into(),
        ]
    }

    fn run(&self, extra: &[&str]) -> std::process::Output {
        let mut args = self.args();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args, b"")
    }
}

#[test]
fn an_intact_trail_validates_with_exit_0() {
    let t = Tree::new(4);
    let out = t.run(&[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(
        text.contains("Results found for 2024-03-01T00:00:00Z to 2024-03-01T04:00:00Z:"),
        "{text}"
    );
    assert!(
        text.contains("\n4/4 digest files valid\n8/8 log files valid\n"),
        "{text}"
    );
    assert!(!text.contains("INVALID"), "{text}");
}

#[test]
fn tampering_is_reported_by_key_with_exit_1() {
    let t = Tree::new(5);
    let d = &t.trail.digests;
    std::fs::remove_file(t.trail.path(&d[2])).unwrap();
    let modified = &t.trail.logs[3][0];
    std::fs::write(t.trail.path(modified), support::gzip(b"{\"Records\":[]}")).unwrap();
    let out = t.run(&[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "Digest file\t{}\tINVALID: not found (named by {})\n",
            d[2], d[3]
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "Log file\t{modified}\tINVALID: hash value doesn't match"
        )),
        "{text}"
    );
    assert!(
        text.contains("3/5 digest files valid, 2/5 digest files INVALID"),
        "{text}"
    );

    let out = t.run(&["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    let findings = v["report"]["findings"].as_array().unwrap();
    let has = |key: &str, kind: &str| {
        findings
            .iter()
            .any(|f| f["key"] == key && f["kind"] == kind)
    };
    assert!(has(&d[2], "digest_missing"), "{findings:#?}");
    assert!(has(&d[1], "digest_no_signature"), "{findings:#?}");
    assert!(has(modified, "log_modified"), "{findings:#?}");
    assert!(has(&t.trail.logs[2][0], "log_unlisted"), "{findings:#?}");
    assert_eq!(v["report"]["digests_valid"], 3);
}

#[test]
fn a_wrong_bucket_name_makes_every_digest_moved() {
    let t = Tree::new(2);
    let mut args = t.args();
    args[5] = "another-bucket".into();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&args, b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out)
            .contains("INVALID: has been moved from its original location s3://trail-bucket/")
    );
}

#[test]
fn usage_errors_exit_2_with_a_reason() {
    let t = Tree::new(1);
    let keys = t.dir.path().join("keys.json").display().to_string();

    // An s3:// location is checked before any request: a name S3 cannot have, plain http
    // without --allow-http (s3_validate_logs.rs reads real buckets).
    let out = run(
        &["validate-logs", "s3://b3/prefix", "--public-keys", &keys],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("bucket \"b3\" is not an S3 bucket name"),
        "{}",
        stderr(&out)
    );
    let out = run(
        &[
            "validate-logs",
            "s3://trail-bucket",
            "--public-keys",
            &keys,
            "--endpoint",
            "http://127.0.0.1:9",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("allow_http"), "{}", stderr(&out));

    let root = t.trail.root.display().to_string();
    let out = run(&["validate-logs", &root], b"");
    assert_eq!(out.status.code(), Some(2), "--public-keys is required");

    let out = run(
        &[
            "validate-logs",
            &root,
            "--public-keys",
            &keys,
            "--start",
            "yesterday",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("RFC 3339"), "{}", stderr(&out));

    let out = run(
        &[
            "validate-logs",
            &root,
            "--public-keys",
            &keys,
            "--start",
            "2024-03-02T00:00:00Z",
            "--end",
            "2024-03-01T00:00:00Z",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is after --end"), "{}", stderr(&out));

    let bad_keys = t.dir.path().join("bad.json");
    std::fs::write(
        &bad_keys,
        b"{\"PublicKeyList\":[{\"Fingerprint\":\"aa\",\"Value\":\"!!\"}]}",
    )
    .unwrap();
    let out = run(
        &[
            "validate-logs",
            &root,
            "--public-keys",
            bad_keys.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("PublicKeyList[0]"),
        "{}",
        stderr(&out)
    );

    let out = run(
        &[
            "validate-logs",
            "/nonexistent/trail",
            "--public-keys",
            &keys,
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not a directory"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn help_explains_the_signature_sidecar() {
    let out = run(&["validate-logs", "--help"], b"");
    assert!(out.status.success());
    let text = stdout(&out);
    for needle in [
        "head-object",
        ".sig",
        "previousDigestHashValue",
        "list-public-keys",
        "Exit status",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}

#[test]
fn one_modified_log_file_prints_as_the_readme_shows() {
    let t = Tree::new(5);
    let modified = &t.trail.logs[3][0];
    std::fs::write(t.trail.path(modified), support::gzip(b"{\"Records\":[]}")).unwrap();
    let out = t.run(&[]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("Validating log files in ")
            && lines[0].ends_with(" between the oldest digest and the newest"),
        "{text}"
    );
    assert_eq!(lines[1], "");
    assert!(
        lines[2].starts_with(&format!(
            "Log file\t{modified}\tINVALID: hash value doesn't match: the digest says "
        )),
        "{text}"
    );
    assert_eq!(
        lines[3..].join("\n"),
        "\nResults requested for the oldest digest to the newest\n\
         Results found for 2024-03-01T00:00:00Z to 2024-03-01T05:00:00Z:\n\
         \n\
         5/5 digest files valid\n\
         9/10 log files valid, 1/10 log files INVALID"
    );
}

/// `orgtrail import DIR --public-keys FILE`: the tree is validated first, as validate-logs
/// does; a store is created only when everything is valid.
fn import(t: &Tree, data: &str) -> std::process::Output {
    import_with(t, data, &[])
}

/// [`import`] with `extra` arguments.
fn import_with(t: &Tree, data: &str, extra: &[&str]) -> std::process::Output {
    let keys = t.dir.path().join("store-keys");
    if !keys.exists() {
        let o = run(&["keys", "init", "--out", &keys.display().to_string()], b"");
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let data = t.dir.path().join(data).display().to_string();
    let key_list = t.dir.path().join("keys.json").display().to_string();
    let root = t.trail.root.display().to_string();
    let keys = keys.display().to_string();
    let mut args = vec![
        "import",
        "--data-dir",
        &data,
        "--keys",
        &keys,
        "--public-keys",
        &key_list,
        "--bucket",
        BUCKET,
    ];
    args.extend_from_slice(extra);
    args.push(&root);
    run(&args, b"")
}

#[test]
fn import_with_public_keys_refuses_a_tampered_tree_and_imports_nothing() {
    let t = Tree::new(3);
    let modified = &t.trail.logs[1][0];
    std::fs::write(
        t.trail.path(modified),
        support::gzip(
            br#"{"Records":[{"eventVersion":"1.08","eventID":"forged","eventTime":"2024-03-01T01:05:00Z","eventSource":"s3.amazonaws.com","eventName":"ListBuckets","recipientAccountId":"111122223333","awsRegion":"us-east-1"}]}"#,
        ),
    )
    .unwrap();
    let o = import(&t, "data");
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{text}{}", stderr(&o));
    assert!(
        text.contains(&format!(
            "Log file\t{modified}\tINVALID: hash value doesn't match"
        )),
        "{text}"
    );
    assert!(text.contains("nothing was imported"), "{text}");
    assert!(!text.contains("stored="), "{text}");
    assert!(
        !t.dir.path().join("data").exists(),
        "no store may be created for a refused import"
    );
}

#[test]
fn import_with_public_keys_imports_a_valid_tree() {
    let t = Tree::new(3);
    let o = import(&t, "data");
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{text}{}", stderr(&o));
    assert!(
        text.contains("3 digest files and 6 log files valid"),
        "{text}"
    );
    assert!(
        text.contains("stored=6 duplicates=0 conflicts=0 rejected=0"),
        "{text}"
    );
}

#[test]
fn import_with_start_and_end_imports_and_validates_only_that_range() {
    let t = Tree::new(3);
    // Hour 1's log file is tampered with; hour 2's are not.
    let modified = &t.trail.logs[1][0];
    std::fs::write(t.trail.path(modified), support::gzip(b"{\"Records\":[]}")).unwrap();
    let ranged = |data: &str, start: &str, end: &str| {
        import_with(&t, data, &["--start", start, "--end", end])
    };
    // Hour 2 only: the digest ending at 03:00 validates, and its 2 log files are imported.
    let o = ranged("hour2", "2024-03-01T02:05:00Z", "2024-03-01T02:59:00Z");
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{text}{}", stderr(&o));
    assert!(
        text.contains("stored=2 duplicates=0 conflicts=0 rejected=0"),
        "{text}"
    );
    // From hour 1 on: the tampered file is in range, and nothing is imported.
    let o = ranged("hour1", "2024-03-01T01:00:00Z", "2024-03-01T02:59:00Z");
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{text}{}", stderr(&o));
    assert!(
        text.contains(&format!("Log file\t{modified}\tINVALID")),
        "{text}"
    );
    assert!(!t.dir.path().join("hour1").exists(), "{text}");
}

#[test]
fn import_help_states_the_validation() {
    let o = run(&["import", "--help"], b"");
    let text = stdout(&o);
    assert!(text.contains("--public-keys <FILE>"), "{text}");
    assert!(text.contains("--public-key <FILE>"), "{text}");
    assert!(text.contains("nothing is imported"), "{text}");
}
