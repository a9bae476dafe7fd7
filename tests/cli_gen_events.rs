//! `orgtrail gen-events`: deterministic realistic events that `orgtrail validate` accepts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;

use common::{run, stdout};

#[test]
fn generated_events_are_valid_and_deterministic() {
    let a = run(
        &[
            "gen-events",
            "--count",
            "20000",
            "--seed",
            "7",
            "--accounts",
            "4",
        ],
        b"",
    );
    assert!(a.status.success());
    let b = run(
        &[
            "gen-events",
            "--count",
            "20000",
            "--seed",
            "7",
            "--accounts",
            "4",
        ],
        b"",
    );
    assert_eq!(a.stdout, b.stdout, "same seed, same events");
    let c = run(
        &[
            "gen-events",
            "--count",
            "20000",
            "--seed",
            "8",
            "--accounts",
            "4",
        ],
        b"",
    );
    assert_ne!(a.stdout, c.stdout);
    assert_eq!(a.stdout.iter().filter(|&&b| b == b'\n').count(), 20000);

    let v = run(&["validate", "-"], &a.stdout);
    assert_eq!(stdout(&v), "valid=20000 invalid=0\n");
    assert!(v.status.success());

    let accounts: HashSet<String> = stdout(&a)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["recipientAccountId"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(accounts.len(), 4);
}

#[test]
fn dup_rate_repeats_events_byte_for_byte() {
    let out = run(&["gen-events", "--count", "5000", "--dup-rate", "0.1"], b"");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    let unique: HashSet<&str> = lines.iter().copied().collect();
    let dups = lines.len() - unique.len();
    assert!(
        (300..=700).contains(&dups),
        "{dups} duplicates of 5000 at 10%"
    );
    let ids: HashSet<String> = unique
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["eventID"].to_string())
        .collect();
    assert_eq!(
        ids.len(),
        unique.len(),
        "a repeated eventID always has the same bytes"
    );
}

#[test]
fn bad_arguments_are_refused_with_a_reason() {
    let out = run(&["gen-events", "--dup-rate", "1.5"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(common::stderr(&out).contains("not between 0 and 1"));
    let out = run(&["gen-events", "--accounts", "0"], b"");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn start_time_sets_the_first_event_time() {
    let out = run(
        &[
            "gen-events",
            "--count",
            "3",
            "--start",
            "2030-05-06T07:08:09Z",
        ],
        b"",
    );
    let first: serde_json::Value =
        serde_json::from_str(stdout(&out).lines().next().unwrap()).unwrap();
    assert!(
        first["eventTime"]
            .as_str()
            .unwrap()
            .starts_with("2030-05-06T07:08:")
    );
}

/// `--account ID` makes events an agent of that account may ship: every event's
/// recipientAccountId is one of the given accounts; a malformed id is refused, and so is
/// `--account` with `--accounts`.
#[test]
fn events_for_given_accounts() {
    let out = run(
        &[
            "gen-events",
            "--count",
            "2000",
            "--account",
            "111122223333",
            "--account",
            "444455556666",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    let owners: HashSet<String> = stdout(&out)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["recipientAccountId"].as_str().unwrap().to_string()
        })
        .collect();
    let want: HashSet<String> = ["111122223333", "444455556666"]
        .map(String::from)
        .into_iter()
        .collect();
    assert_eq!(owners, want);
    let v = run(&["validate", "-"], &out.stdout);
    assert_eq!(stdout(&v), "valid=2000 invalid=0\n");

    let bad = run(&["gen-events", "--account", "11112222333"], b"");
    assert!(!bad.status.success());
    assert!(
        common::stderr(&bad).contains("not an AWS account id"),
        "{}",
        common::stderr(&bad)
    );
    let both = run(
        &["gen-events", "--account", "111122223333", "--accounts", "2"],
        b"",
    );
    assert!(!both.status.success());
    assert!(
        common::stderr(&both).contains("cannot be used with"),
        "{}",
        common::stderr(&both)
    );
}
