//! The collector's archive sink with an S3 target (`[archive.s3]`), end to end on a real
//! SeaweedFS that checks SigV4 signatures: the events an agent ships are PUT into the bucket
//! in CloudTrail's layout, the state stays in `archive.dir`, `validate-logs s3://` finds the
//! archive valid in place, and every stored event is in exactly one log object, byte for byte.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/archive.rs"]
mod archive;
mod common;
#[path = "common/org.rs"]
mod org;
#[path = "common/procs.rs"]
mod procs;
#[path = "common/prom.rs"]
mod prom;

use std::collections::BTreeSet;
use std::time::Duration;

use archive::BUCKET;
use org::{Org, events, p, spawn_agent};
use orgtrail_s3::test_server::Weed;

const PREFIX: &str = "sink";

#[test]
fn the_sink_puts_every_stored_event_once_into_the_bucket_and_it_validates_in_place() {
    let org = Org::new();
    let weed = Weed::start(&org.path("weed"));
    let bucket = weed.bucket(BUCKET);
    let (account, file, _) = events(&org, "events", 1500, 11);
    org.issue("agent-a", "agent", Some(&account));
    let config = format!(
        "[archive]\ndir = \"archive-state\"\nbucket = \"{BUCKET}\"\nprefix = \"{PREFIX}\"\ninterval_ms = 100\nmax_batch_events = 400\n\
         [archive.s3]\nendpoint = \"{}\"\nallow_http = true\naccess_key_id_file = \"{}\"\nsecret_access_key_file = \"{}\"\n\
         [ops]\nlisten = \"127.0.0.1:0\"\n",
        weed.endpoint(),
        p(&weed.access_key_id_file()),
        p(&weed.secret_access_key_file()),
    );
    let mut c = org.collector(0, &config);
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
    assert!(org.path("archive-state/state.json").is_file());
    assert!(
        !org.path("archive-state/AWSLogs").exists(),
        "nothing but the state is local"
    );

    // Every stored event in exactly one log object, byte for byte.
    let records = archive::by_file(&archive::bucket_tree(
        &bucket,
        &format!("{PREFIX}/AWSLogs/"),
    ));
    let stored = org.stored();
    assert!(stored.len() > 1000, "{} stored", stored.len());
    assert!(
        records.values().all(|f| f.len() == 1),
        "an event in two objects"
    );
    let want: BTreeSet<&str> = stored.iter().map(String::as_str).collect();
    let got: BTreeSet<&str> = records.keys().map(String::as_str).collect();
    assert!(got == want, "the bucket holds exactly the stored events");

    // The store's public key validates the archive in the bucket.
    archive::all_valid(
        &format!("s3://{BUCKET}/{PREFIX}"),
        &org.path("keys/signing.pub"),
        &archive::s3_flags(&weed, &weed.secret_access_key_file()),
    );
}
