//! The agent's sources end to end (tests/sources.rs, tests/s3_source.rs): an organization with
//! a collector, an admin and an agent of [`ACCOUNT`], generated events relabelled to it, log
//! files of them, an agent run until drained, and what the collector stored.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::Path;
use std::process::Output;

use crate::common::orgtrail;
use crate::org::{Collector, Org, p};

/// The agent's account.
pub(crate) const ACCOUNT: &str = "123456789012";

/// An organization with a collector, and certificates for `admin` and for `agent` (of
/// [`ACCOUNT`]).
pub(crate) fn setup() -> (Org, Collector) {
    let org = Org::new();
    let c = org.collector(0, "");
    org.issue("admin", "admin", None);
    org.issue("agent", "agent", Some(ACCOUNT));
    (org, c)
}

/// Every event stored, as JSON lines.
pub(crate) fn stored(org: &Org, c: &Collector) -> Vec<String> {
    org.stored_lines(c, "admin")
}

/// A record's eventID ("" for records of eventVersion 1.0, which have none).
pub(crate) fn id(line: &str) -> String {
    serde_json::from_str::<serde_json::Value>(line).unwrap()["eventID"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Stored exactly the events `want` (by eventID), each once.
pub(crate) fn stored_exactly_once(org: &Org, c: &Collector, want: &HashSet<String>) {
    let s = stored(org, c);
    let ids: Vec<String> = s.iter().map(|l| id(l)).collect();
    let unique: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "nothing stored twice");
    assert_eq!(&unique, want, "every event stored, and nothing else");
}

/// Generated events relabelled to [`ACCOUNT`], as JSON lines.
pub(crate) fn generated(count: u64, seed: u64) -> Vec<String> {
    let (acct, text) = crate::org::generated_one_account(count, seed, &[]);
    text.replace(&acct, ACCOUNT)
        .lines()
        .map(String::from)
        .collect()
}

/// A CloudTrail log file (`{"Records":[...]}`, not compressed) of `records`.
pub(crate) fn log_file(records: &[String]) -> Vec<u8> {
    format!("{{\"Records\":[{}]}}", records.join(",")).into_bytes()
}

/// Runs `orgtrail agent --exit-when-drained --config CFG` (logging at info, with `env` set)
/// to its end.
pub(crate) fn agent_drained(cfg: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = orgtrail();
    cmd.args(["agent", "--exit-when-drained", "--config", &p(cfg)])
        .env("ORGTRAIL_LOG", "info")
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}
