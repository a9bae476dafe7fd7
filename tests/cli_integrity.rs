//! Tamper evidence from the command line, as an auditor uses it: save a checkpoint today,
//! prove tomorrow that the store still holds exactly what it did plus everything since, and
//! show one event's inclusion to a third party with a JSON file and a public key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::{run, stdout};

fn p(path: &std::path::Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn an_auditor_checks_checkpoints_proofs_and_a_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let (keys, data) = (dir.path().join("keys"), dir.path().join("data"));
    let pub_key = keys.join("signing.pub");
    assert!(
        run(&["keys", "init", "--out", p(&keys)], b"")
            .status
            .success()
    );
    let first = run(&["gen-events", "--count", "400", "--seed", "31"], b"").stdout;
    let second = run(&["gen-events", "--count", "250", "--seed", "32"], b"").stdout;
    assert!(
        run(
            &["import", "--data-dir", p(&data), "--keys", p(&keys), "-"],
            &first
        )
        .status
        .success()
    );

    // Today: the auditor saves a checkpoint, outside the system.
    let cp1 = dir.path().join("cp1.json");
    let out = run(
        &["checkpoint", "--data-dir", p(&data), "--keys", p(&keys)],
        b"",
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    std::fs::write(&cp1, &out.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tree_size"], 400);

    // A copy of the store as it is today (what an attacker could put back later).
    let old_copy = dir.path().join("old");
    common::fs::copy_dir(&data, &old_copy);

    // Tomorrow: more events, a newer checkpoint.
    assert!(
        run(
            &["import", "--data-dir", p(&data), "--keys", p(&keys), "-"],
            &second
        )
        .status
        .success()
    );
    let cp2 = dir.path().join("cp2.json");
    let out = run(
        &["checkpoint", "--data-dir", p(&data), "--keys", p(&keys)],
        b"",
    );
    std::fs::write(&cp2, &out.stdout).unwrap();

    // One command proves the store still holds exactly what cp1 covered, plus everything since.
    let out = run(
        &[
            "verify",
            "--data-dir",
            p(&data),
            "--keys",
            p(&keys),
            "--checkpoint",
            p(&cp1),
            "--checkpoint",
            p(&cp2),
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        stdout(&out).ends_with("verified events=650 checkpoints=2 saved-checkpoints=2\n"),
        "{}",
        stdout(&out)
    );

    // Without the master key: what can be checked is, and the output says what cannot.
    let out = run(
        &[
            "verify",
            "--data-dir",
            p(&data),
            "--public-key",
            p(&pub_key),
            "--checkpoint",
            p(&cp1),
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        stdout(&out)
            .contains("not checked: that the encrypted records still match their leaf hashes")
    );

    // Consistency between the two checkpoints, made from the store and checked offline.
    let cproof = dir.path().join("consistency.json");
    let out = run(
        &[
            "verify-consistency",
            p(&cp1),
            p(&cp2),
            "--data-dir",
            p(&data),
            "--keys",
            p(&keys),
            "--out",
            p(&cproof),
        ],
        b"",
    );
    assert_eq!(
        stdout(&out),
        "consistent: the log of 650 events extends the log of 400 events unchanged\n"
    );
    let out = run(
        &[
            "verify-consistency",
            "--proof",
            p(&cproof),
            "--public-key",
            p(&pub_key),
        ],
        b"",
    );
    assert!(out.status.success());
    let out = run(
        &[
            "verify-consistency",
            p(&cp2),
            p(&cp1),
            "--data-dir",
            p(&data),
            "--keys",
            p(&keys),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));

    // One event's inclusion, shown to a third party.
    let line = String::from_utf8(first.clone())
        .unwrap()
        .lines()
        .nth(123)
        .unwrap()
        .to_string();
    let ev: serde_json::Value = serde_json::from_str(&line).unwrap();
    let proof = dir.path().join("proof.json");
    let out = run(
        &[
            "proof",
            "--data-dir",
            p(&data),
            "--keys",
            p(&keys),
            "--account",
            ev["recipientAccountId"].as_str().unwrap(),
            "--event-id",
            ev["eventID"].as_str().unwrap(),
            "--out",
            p(&proof),
        ],
        b"",
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    let out = run(
        &["verify-proof", p(&proof), "--public-key", p(&pub_key)],
        b"",
    );
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).starts_with(&format!(
        "proof verified: event {} of account",
        ev["eventID"].as_str().unwrap()
    )));
    // The proof carries the exact bytes.
    let pj: serde_json::Value = serde_json::from_slice(&std::fs::read(&proof).unwrap()).unwrap();
    assert_eq!(
        B64.decode(pj["event"].as_str().unwrap()).unwrap(),
        line.as_bytes()
    );
    // A changed event in the proof fails.
    let mut forged = pj.clone();
    let changed = format!("{{\"forged\":true,{}", &line[1..]);
    forged["event"] = B64.encode(changed.as_bytes()).into();
    let forged_path = dir.path().join("forged.json");
    std::fs::write(&forged_path, serde_json::to_vec(&forged).unwrap()).unwrap();
    let out = run(
        &["verify-proof", p(&forged_path), "--public-key", p(&pub_key)],
        b"",
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert_eq!(
        stdout(&out),
        "proof FAILED: the event and audit path do not lead to the checkpoint's root\n"
    );
    // Another key does not vouch for it.
    let other = dir.path().join("other");
    run(&["keys", "init", "--out", p(&other)], b"");
    let out = run(
        &[
            "verify-proof",
            p(&proof),
            "--public-key",
            p(&other.join("signing.pub")),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));

    // The old copy put back in place of the store: caught by the saved checkpoint.
    let out = run(
        &[
            "verify",
            "--data-dir",
            p(&old_copy),
            "--keys",
            p(&keys),
            "--checkpoint",
            p(&cp2),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("covers 650 events but the store holds 400: the store was rolled back or replaced by an older copy"), "{}", stdout(&out));

    // A store that is not there is not "verified".
    let out = run(
        &[
            "verify",
            "--data-dir",
            p(&dir.path().join("nothing")),
            "--keys",
            p(&keys),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    // Refused before anything is claimed as checked.
    assert_eq!(stdout(&out), "");
    assert!(
        common::stderr(&out).contains("store cannot be opened: there is no orgtrail store"),
        "{}",
        common::stderr(&out)
    );
}
