//! Resident memory does not grow with history: a ledger in a test-sized configuration (a small
//! memtable, so that many index runs are written and merged, and small caches) takes generated
//! events in parts, and the heap live after the last part is compared with that after the
//! second.
//!
//! This file is a test binary of its own with one test, so the process holds nothing but this
//! ledger. It allocates through mimalloc, like the `orgtrail` binary, wrapped by `cap`, which
//! counts the bytes live on the heap: the assertion is on those, which is what a structure
//! growing with history would add to. VmRSS (from /proc/self/status) is printed beside them but
//! not asserted: it also holds what the allocator keeps of freed memory.
//! `orgtrail bench store --sizes 1000000,10000000` measures the peak RSS of whole imports.
//!
//! The first two parts bring every bounded structure to its size: the dictionary is trained,
//! memtables have been written out and runs merged, and the caches are full (the counter cache
//! keeps decoded hours, and the first part spans about an hour only; heaptrack showed it and
//! sled's cache filling during the first parts). The parts after them only add history. The
//! runs' Bloom filters (10 bits per event) are held to `index_filter_bytes`, small here, so that
//! most runs are probed on disk; what still grows with history is each run's directory (about
//! 0.5 bytes per event, some 60 KiB here). An index held in memory costs about 130 bytes per event,
//! about 15 MiB over the parts after the second here; the allowance also covers what is in
//! flight when a part ends (a memtable being written out, a merge of runs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use orgtrail_core::{AccountId, CloudTrailEvent};
use orgtrail_crypto::{Keyring, LocalKeyProvider};
use orgtrail_gen::{GenConfig, Generator};
use orgtrail_store::{Ledger, LedgerConfig};

#[global_allocator]
static GLOBAL: cap::Cap<mimalloc::MiMalloc> = cap::Cap::new(mimalloc::MiMalloc, usize::MAX);

fn live_kib() -> u64 {
    GLOBAL.allocated() as u64 / 1024
}

/// Events per part, and parts. Sized for the debug build on a loaded 2-core machine (160,000
/// events took about 140 s there at a load average of 5): enough history after the second part
/// (120,000 events, 120 memtables written out as runs) that a cost of 26 bytes per event or
/// more shows above the allowance.
const PART: u64 = 20_000;
const PARTS: u64 = 8;
/// What the heap live after the last part may exceed that after the second by.
const ALLOWANCE_KIB: u64 = 3 * 1024;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

#[test]
fn resident_memory_does_not_grow_with_history() {
    let dir = tempfile::tempdir().unwrap();
    Keyring::generate("2026-11-24T00:00:00Z")
        .unwrap()
        .save_new(&dir.path().join("keyring.json"))
        .unwrap();
    let provider = Arc::new(LocalKeyProvider::load(dir.path()).unwrap());
    let cfg = LedgerConfig {
        dict_train_after: 1000,
        cache_bytes: 256 << 10,
        count_cache_bytes: 64 << 10,
        index_run_events: 1000,
        index_filter_bytes: 16 << 10,
        ..LedgerConfig::default()
    };
    let ledger = Ledger::open(&dir.path().join("data"), provider, cfg).unwrap();
    let mut preparer = ledger.preparer();
    let mut events = Generator::new(GenConfig {
        count: PART * PARTS,
        accounts: 20,
        seed: 12,
        ..GenConfig::default()
    });
    let mut rss = Vec::new();
    let mut live = Vec::new();
    let mut stored = 0;
    for _ in 0..PARTS {
        for _ in 0..PART / 500 {
            let batch = events
                .by_ref()
                .take(500)
                .map(|b| {
                    let e = CloudTrailEvent::parse(b).unwrap();
                    let owner: AccountId = e
                        .fields()
                        .recipient_account_id
                        .as_deref()
                        .unwrap()
                        .parse()
                        .unwrap();
                    preparer.prepare(&e, owner).unwrap()
                })
                .collect();
            stored += ledger.append_blocking(batch).unwrap().stored();
        }
        rss.push(rss_kib());
        live.push(live_kib());
    }
    assert_eq!(stored as u64, PART * PARTS, "every event is new");
    eprintln!("after each part of {PART} events, KiB: heap live {live:?}, VmRSS {rss:?}");
    let (first, last) = (live[1], live[live.len() - 1]);
    assert!(
        last <= first + ALLOWANCE_KIB,
        "heap memory grew with history: {first} KiB live after the first {} events, {last} KiB after {} (allowed: {ALLOWANCE_KIB} KiB more); after each part: {live:?} (VmRSS {rss:?})",
        2 * PART,
        PART * PARTS
    );
    ledger.close().unwrap();
}
