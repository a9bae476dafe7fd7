//! The collector's continuous archive (`[archive]`) end to end, with the real binaries over
//! mutual TLS: events an agent ships appear in the archive in CloudTrail's layout; a collector
//! killed at each of the sink's crash points (log files in place, digests in place, the
//! watermark not yet moved) and started again leaves every stored event in exactly one log
//! file, byte for byte; `orgtrail validate-logs --public-key` finds the archive valid; and
//! `orgtrail import` of the archive gives a store with the same events and counts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/archive.rs"]
mod archive;
mod common;
#[path = "common/crash.rs"]
mod crash;
#[path = "common/org.rs"]
mod org;
#[path = "common/procs.rs"]
mod procs;
#[path = "common/prom.rs"]
mod prom;

use std::collections::HashSet;
use std::time::Duration;

use archive::{BUCKET, by_file, tree};
use common::stdout;
use org::{Org, events, p, spawn_agent};

/// Small passes and files, so that a crash finds several files of a pass in place.
const ARCHIVE: &str = "[archive]\ndir = \"archive\"\nbucket = \"example-archive\"\ninterval_ms = 100\nmax_batch_events = 400\nmax_file_bytes = \"64 KiB\"\n";
const OPS: &str = "[ops]\nlisten = \"127.0.0.1:0\"\n";

fn pending(org: &Org) -> bool {
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(org.path("archive/.orgtrail-export/state.json")).unwrap(),
    )
    .unwrap();
    !state["pending"].is_null()
}

fn stats(org: &Org, data: &str) -> String {
    archive::stats(
        &org.path(data),
        &org.path("keys"),
        "account,region,eventName",
    )
}

#[test]
fn the_archive_holds_every_stored_event_once_across_kills_validates_and_imports_back() {
    let org = Org::new();
    let (account, file, _) = events(&org, "events", 3000, 11);
    org.issue("agent-a", "agent", Some(&account));

    // Killed with log files of a pass in place and no digest; then, started again, with the
    // digests in place and the watermark not moved.
    crash::until_crash(&org, ARCHIVE, "archive-files-written", &account, &file);
    assert!(pending(&org), "the kill left a pass unfinished");
    assert!(
        !by_file(&tree(&org.path("archive"))).is_empty(),
        "the kill left log files in place"
    );
    crash::until_crash(&org, ARCHIVE, "archive-digests-written", &account, &file);
    assert!(pending(&org), "the kill left a pass unfinished");

    // Started again for good: the agent ships the rest, the sink catches up.
    let mut c = org.collector(0, &format!("{ARCHIVE}{OPS}"));
    let cfg = org.agent_config("agent", &account, "agent-a", &file, c.port);
    org::agent_drains(spawn_agent(&cfg), 120);
    let ops = c.ops.clone().unwrap();
    procs::wait_until(Duration::from_secs(120), "the archive catches up", || {
        let s = prom::scrape(&ops);
        let through = s.value("orgtrail_collector_archive_exported_through", &[]);
        through > 0.0
            && through == s.value("orgtrail_collector_store_events", &[])
            && s.value("orgtrail_collector_archive_lag_events", &[]) == 0.0
    });
    let s = prom::scrape(&ops);
    assert_eq!(s.value("orgtrail_collector_archive_errors_total", &[]), 0.0);
    org::sigterm(&mut c);
    drop(c);
    assert!(!pending(&org));

    // Every stored event in exactly one log file, byte for byte, and nothing else.
    let stored = org.stored();
    assert!(stored.len() > 2500, "{} stored", stored.len());
    let records = by_file(&tree(&org.path("archive")));
    let twice: Vec<_> = records.iter().filter(|(_, f)| f.len() > 1).collect();
    assert!(twice.is_empty(), "records in two files: {twice:?}");
    let want: HashSet<&str> = stored.iter().map(String::as_str).collect();
    let got: HashSet<&str> = records.keys().map(String::as_str).collect();
    assert_eq!(got.len(), want.len(), "every stored event archived");
    assert!(got == want, "the archive holds exactly the stored events");

    // The store's public key alone validates it.
    archive::all_valid(
        &p(&org.path("archive")),
        &org.path("keys/signing.pub"),
        &["--bucket".into(), BUCKET.into()],
    );

    // It imports back: the same events, the same counts.
    let o = archive::import(&org.path("data2"), &org.path("keys"), &org.path("archive"));
    assert_eq!(
        stdout(&o).trim(),
        format!(
            "stored={} duplicates=0 conflicts=0 rejected=0",
            stored.len()
        )
    );
    assert_eq!(stats(&org, "data2"), stats(&org, "data"));
}
