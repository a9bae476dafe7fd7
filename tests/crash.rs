//! Crash safety: `orgtrail import` is killed with SIGKILL in the middle of a large import. The
//! reopened store holds every acknowledged batch, nothing twice, and is consistent: importing
//! the same input again completes it without storing anything twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::{orgtrail, run, stdout};

#[test]
fn sigkill_mid_import_loses_no_acknowledged_event_and_stores_none_twice() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let data = dir.path().join("data");
    let input = dir.path().join("events.jsonl");
    let total = 60_000usize;
    assert!(
        run(&["keys", "init", "--out", keys.to_str().unwrap()], b"")
            .status
            .success()
    );
    let gen_out = run(
        &[
            "gen-events",
            "--count",
            &total.to_string(),
            "--seed",
            "21",
            "--accounts",
            "5",
        ],
        b"",
    );
    std::fs::write(&input, &gen_out.stdout).unwrap();
    let ids: Vec<String> = stdout(&gen_out)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["eventID"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids.len(), total);

    let mut child = orgtrail()
        .args([
            "import",
            "--progress",
            "--data-dir",
            data.to_str().unwrap(),
            "--keys",
            keys.to_str().unwrap(),
            input.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut acked: Vec<(usize, usize)> = Vec::new();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // Kill as soon as the first batches are acknowledged: the import is far from done.
    while acked.len() < 2 {
        let line = lines.next().expect("import acknowledges batches").unwrap();
        if let Some(range) = line.strip_prefix("acked ") {
            let (a, b) = range.split_once('-').unwrap();
            acked.push((a.parse().unwrap(), b.parse().unwrap()));
        }
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), None, "the import was killed, not finished");
    // Acks that were already on their way count too.
    for line in lines.map_while(Result::ok) {
        if let Some(range) = line.strip_prefix("acked ") {
            let (a, b) = range.split_once('-').unwrap();
            acked.push((a.parse().unwrap(), b.parse().unwrap()));
        }
    }

    // Reopen: everything acknowledged is there, nothing twice.
    let dump = run(
        &[
            "lookup",
            "--data-dir",
            data.to_str().unwrap(),
            "--keys",
            keys.to_str().unwrap(),
            "--max",
            "1000000",
            "--output",
            "jsonl",
        ],
        b"",
    );
    assert!(dump.status.success(), "{}", common::stderr(&dump));
    let text = stdout(&dump);
    let stored: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["eventID"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let unique: HashSet<&String> = stored.iter().collect();
    assert_eq!(unique.len(), stored.len(), "no event stored twice");
    assert!(
        stored.len() < total,
        "the kill happened mid-import ({} stored)",
        stored.len()
    );
    let mut acked_count = 0;
    for (a, b) in &acked {
        for ordinal in *a..=*b {
            assert!(
                unique.contains(&ids[ordinal - 1]),
                "acknowledged event {ordinal} is missing"
            );
            acked_count += 1;
        }
    }
    assert!(acked_count >= 4000);
    // Indexes agree with records: a stored event is found by its id.
    let probe = &stored[stored.len() / 2];
    let one = run(
        &[
            "lookup",
            "--data-dir",
            data.to_str().unwrap(),
            "--keys",
            keys.to_str().unwrap(),
            "--event-id",
            probe,
            "--output",
            "jsonl",
        ],
        b"",
    );
    assert_eq!(stdout(&one).lines().count(), 1);
    // Counters agree with the records: the counts of the killed group went with it.
    assert_eq!(counted(&data, &keys), stored.len());

    // Resume: the same input again stores exactly what is missing.
    let again = run(
        &[
            "import",
            "--data-dir",
            data.to_str().unwrap(),
            "--keys",
            keys.to_str().unwrap(),
            input.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(
        stdout(&again).trim(),
        format!(
            "stored={} duplicates={} conflicts=0 rejected=0",
            total - stored.len(),
            stored.len()
        )
    );
    let dump = run(
        &[
            "lookup",
            "--data-dir",
            data.to_str().unwrap(),
            "--keys",
            keys.to_str().unwrap(),
            "--max",
            "1000000",
            "--output",
            "jsonl",
        ],
        b"",
    );
    let all: HashSet<String> = stdout(&dump)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["eventID"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(all.len(), total);
    assert_eq!(stdout(&dump).lines().count(), total);
    assert_eq!(counted(&data, &keys), total);
}

/// The total `orgtrail stats` counts from the store's counters (offline).
fn counted(data: &std::path::Path, keys: &std::path::Path) -> usize {
    let out = run(
        &[
            "stats",
            "--data-dir",
            data.to_str().unwrap(),
            "--keys",
            keys.to_str().unwrap(),
            "--by",
            "account",
            "--scan-limit",
            "0",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    let text = stdout(&out);
    assert!(!text.contains("scanned"), "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix('(')?.strip_suffix(" events)")?.parse().ok())
        .unwrap_or_else(|| panic!("no total in {text}"))
}
