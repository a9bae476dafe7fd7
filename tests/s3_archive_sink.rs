//! The collector's archive sink with an S3 target (`[archive.s3]`), end to end on a real
//! SeaweedFS that checks SigV4 signatures: the events an agent ships are PUT into the bucket
//! in CloudTrail's layout, the state stays in `archive.dir`, `validate-logs s3://` finds the
//! archive valid in place, and every stored event is in exactly one log object, byte for byte;
//! also when the collector is killed at each of the sink's crash points (log objects PUT, no
//! digest; digests PUT, the watermark not moved) and started again.
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

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use archive::BUCKET;
use org::{Org, events, p, spawn_agent};
use orgtrail_s3::Blocking;
use orgtrail_s3::test_server::Weed;

const PREFIX: &str = "sink";

/// `[archive]` into the bucket, with the state in `archive-state`; `extra` adds keys to
/// `[archive]`.
fn archive_config(weed: &Weed, extra: &str) -> String {
    format!(
        "[archive]\ndir = \"archive-state\"\nbucket = \"{BUCKET}\"\nprefix = \"{PREFIX}\"\ninterval_ms = 100\nmax_batch_events = 400\n{extra}\
         [archive.s3]\nendpoint = \"{}\"\nallow_http = true\naccess_key_id_file = \"{}\"\nsecret_access_key_file = \"{}\"\n",
        weed.endpoint(),
        p(&weed.access_key_id_file()),
        p(&weed.secret_access_key_file()),
    )
}

/// The log objects under the prefix: key -> their records, each as its bytes in the file.
fn log_objects(bucket: &Blocking) -> BTreeMap<String, Vec<String>> {
    archive::bucket_tree(bucket, &format!("{PREFIX}/AWSLogs/"))
        .into_iter()
        .filter(|(k, _)| archive::is_log_file(k))
        .map(|(k, gz)| (k, archive::records(&gz)))
        .collect()
}

/// The digest objects under the prefix.
fn digest_objects(bucket: &Blocking) -> usize {
    bucket
        .list_all(&format!("{PREFIX}/AWSLogs/"), 1000)
        .unwrap()
        .iter()
        .filter(|o| o.key.contains("/CloudTrail-Digest/") && o.key.ends_with(".json.gz"))
        .count()
}

/// Asserts that the bucket holds every stored event in exactly one log object, byte for byte,
/// and nothing else; and that no two log objects hold the same records.
fn assert_archived_once(org: &Org, bucket: &Blocking) {
    let objects = log_objects(bucket);
    let mut records: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (key, rs) in &objects {
        for r in rs {
            records.entry(r).or_default().push(key);
        }
    }
    let twice: Vec<_> = records.iter().filter(|(_, k)| k.len() > 1).collect();
    assert!(twice.is_empty(), "records in two objects: {twice:?}");
    let contents: BTreeSet<&Vec<String>> = objects.values().collect();
    assert_eq!(
        contents.len(),
        objects.len(),
        "two objects with the same content"
    );
    let stored = org.stored();
    let want: BTreeSet<&str> = stored.iter().map(String::as_str).collect();
    let got: BTreeSet<&str> = records.keys().copied().collect();
    assert_eq!(got.len(), want.len(), "every stored event archived");
    assert!(got == want, "the bucket holds exactly the stored events");
}

/// Asserts that `validate-logs s3://` with the store's public key finds the archive valid.
fn assert_validates(org: &Org, weed: &Weed) {
    archive::all_valid(
        &format!("s3://{BUCKET}/{PREFIX}"),
        &org.path("keys/signing.pub"),
        &archive::s3_flags(weed, &weed.secret_access_key_file()),
    );
}

/// Waits until the sink has archived every stored event, with no failed pass.
fn wait_caught_up(ops: &str) {
    procs::wait_until(Duration::from_secs(120), "the archive catches up", || {
        let s = prom::scrape(ops);
        let through = s.value("orgtrail_collector_archive_exported_through", &[]);
        through > 0.0
            && through == s.value("orgtrail_collector_store_events", &[])
            && s.value("orgtrail_collector_archive_lag_events", &[]) == 0.0
    });
    let s = prom::scrape(ops);
    assert_eq!(s.value("orgtrail_collector_archive_errors_total", &[]), 0.0);
}

fn pending(org: &Org) -> bool {
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(org.path("archive-state/state.json")).unwrap())
            .unwrap();
    !state["pending"].is_null()
}

#[test]
fn the_sink_puts_every_stored_event_once_into_the_bucket_and_it_validates_in_place() {
    let org = Org::new();
    let weed = Weed::start(&org.path("weed"));
    let bucket = weed.bucket(BUCKET);
    let (account, file, _) = events(&org, "events", 1500, 11);
    org.issue("agent-a", "agent", Some(&account));
    let config = format!(
        "{}[ops]\nlisten = \"127.0.0.1:0\"\n",
        archive_config(&weed, "")
    );
    let mut c = org.collector(0, &config);
    let cfg = org.agent_config("agent", &account, "agent-a", &file, c.port);
    org::agent_drains(spawn_agent(&cfg), 120);
    wait_caught_up(&c.ops.clone().unwrap());
    org::sigterm(&mut c);
    drop(c);
    assert!(org.path("archive-state/state.json").is_file());
    assert!(
        !org.path("archive-state/AWSLogs").exists(),
        "nothing but the state is local"
    );

    // Every stored event in exactly one log object, byte for byte.
    assert!(org.stored().len() > 1000);
    assert_archived_once(&org, &bucket);

    // The store's public key validates the archive in the bucket.
    assert_validates(&org, &weed);
}

#[test]
fn the_sink_into_a_bucket_killed_at_each_crash_point_archives_every_event_once() {
    let org = Org::new();
    let weed = Weed::start(&org.path("weed"));
    let bucket = weed.bucket(BUCKET);
    let (account, file, _) = events(&org, "events", 3000, 11);
    org.issue("agent-a", "agent", Some(&account));
    // Small files, so that a crash finds several objects of a pass PUT.
    let archive = archive_config(&weed, "max_file_bytes = \"64 KiB\"\n");

    // Killed with the log objects of a pass PUT and no digest.
    crash::until_crash(&org, &archive, "archive-files-written", &account, &file);
    assert!(pending(&org), "the kill left a pass unfinished");
    assert!(
        !log_objects(&bucket).is_empty(),
        "the kill left log objects in the bucket"
    );
    assert_eq!(digest_objects(&bucket), 0, "no digest before the kill");

    // Started again: it finishes that pass, and is killed with the digests of a pass PUT and
    // the watermark not moved.
    crash::until_crash(&org, &archive, "archive-digests-written", &account, &file);
    assert!(pending(&org), "the kill left a pass unfinished");
    assert!(
        digest_objects(&bucket) > 0,
        "the kill left digests in the bucket"
    );

    // Started again for good: the agent ships the rest, the sink catches up.
    let mut c = org.collector(0, &format!("{archive}[ops]\nlisten = \"127.0.0.1:0\"\n"));
    let cfg = org.agent_config("agent", &account, "agent-a", &file, c.port);
    org::agent_drains(spawn_agent(&cfg), 120);
    wait_caught_up(&c.ops.clone().unwrap());
    org::sigterm(&mut c);
    drop(c);
    assert!(!pending(&org));
    assert!(
        !org.path("archive-state/AWSLogs").exists(),
        "nothing but the state is local"
    );

    // No gap, no event in two objects, and the chain of digests signs it all.
    assert!(org.stored().len() > 2500);
    assert_archived_once(&org, &bucket);
    assert_validates(&org, &weed);
}
