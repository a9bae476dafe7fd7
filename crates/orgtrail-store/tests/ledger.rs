//! The ledger's conformance suite: append, dedup, lookups, restarts, keys, and what is on disk.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use orgtrail_core::{AccountId, CloudTrailEvent};
use orgtrail_crypto::{KeyProvider, Keyring, LocalKeyProvider};
use orgtrail_gen::{GenConfig, Generator};
use orgtrail_store::{Appended, Ledger, LedgerConfig, Query};

fn provider(dir: &Path) -> Arc<dyn KeyProvider> {
    let path = dir.join("keyring.json");
    if !path.exists() {
        Keyring::generate("2026-11-24T00:00:00Z")
            .unwrap()
            .save_new(&path)
            .unwrap();
    }
    Arc::new(LocalKeyProvider::load(dir).unwrap())
}

fn cfg() -> LedgerConfig {
    LedgerConfig {
        dict_train_after: 300,
        block_records: 8,
        index_run_events: 64,
        ..LedgerConfig::default()
    }
}

fn events(n: u64, seed: u64) -> Vec<CloudTrailEvent> {
    Generator::new(GenConfig {
        count: n,
        accounts: 3,
        seed,
        ..GenConfig::default()
    })
    .map(|b| CloudTrailEvent::parse(b).unwrap())
    .collect()
}

fn account_of(e: &CloudTrailEvent) -> AccountId {
    e.fields()
        .recipient_account_id
        .as_ref()
        .unwrap()
        .parse()
        .unwrap()
}

fn append(ledger: &Ledger, evs: &[CloudTrailEvent]) -> Vec<Appended> {
    let mut p = ledger.preparer();
    let mut out = Vec::new();
    for chunk in evs.chunks(250) {
        let prepared = chunk
            .iter()
            .map(|e| p.prepare(e, account_of(e)).unwrap())
            .collect();
        out.extend(ledger.append_blocking(prepared).unwrap().results);
    }
    out
}

fn all(ledger: &Ledger, mut q: Query) -> Vec<orgtrail_store::StoredEvent> {
    let mut out = Vec::new();
    loop {
        let page = ledger.query(&q).unwrap();
        out.extend(page.events);
        match page.next_token {
            Some(t) => q.page_token = Some(t),
            None => return out,
        }
    }
}

/// The oracle: events matching `pred`, newest first (time, then seq, descending).
fn expected(evs: &[CloudTrailEvent], pred: impl Fn(&CloudTrailEvent) -> bool) -> Vec<Vec<u8>> {
    let mut v: Vec<(i64, usize)> = evs
        .iter()
        .enumerate()
        .filter(|(_, e)| pred(e))
        .map(|(i, e)| (e.fields().event_time.millis(), i))
        .collect();
    v.sort_by(|a, b| b.cmp(a));
    v.into_iter()
        .map(|(_, i)| evs[i].bytes().to_vec())
        .collect()
}

fn bytes(v: &[orgtrail_store::StoredEvent]) -> Vec<Vec<u8>> {
    v.iter().map(|e| e.bytes.clone()).collect()
}

#[test]
fn duplicates_and_conflicts_are_kept_out_across_restarts() {
    let keys = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let evs = events(600, 5);
    {
        let ledger = Ledger::open(data.path(), provider(keys.path()), cfg()).unwrap();
        let first = append(&ledger, &evs[..400]);
        assert!(first.iter().all(|r| matches!(r, Appended::Stored(_))));
        // The same events again, in the same batch as new ones.
        let again = append(&ledger, &evs[300..]);
        assert_eq!(
            again
                .iter()
                .filter(|r| matches!(r, Appended::Duplicate(_)))
                .count(),
            100
        );
        assert_eq!(
            again
                .iter()
                .filter(|r| matches!(r, Appended::Stored(_)))
                .count(),
            200
        );
        ledger.close().unwrap();
    }
    let ledger = Ledger::open(data.path(), provider(keys.path()), cfg()).unwrap();
    assert_eq!(ledger.stats().events, 600);
    let again = append(&ledger, &evs);
    assert!(
        again.iter().all(|r| matches!(r, Appended::Duplicate(_))),
        "deduplicated after restart"
    );
    // Same eventID and account, different bytes: a conflict, not stored.
    let orig = &evs[10];
    let forged = String::from_utf8(orig.bytes().to_vec()).unwrap().replacen(
        "\"eventVersion\"",
        "\"forged\":1,\"eventVersion\"",
        1,
    );
    let forged = CloudTrailEvent::parse(forged).unwrap();
    let r = append(&ledger, &[forged]);
    assert!(matches!(r[0], Appended::Conflict(_)), "{r:?}");
    assert_eq!(ledger.stats().events, 600);
    // Everything is still there, once.
    let got = all(
        &ledger,
        Query {
            limit: 1000,
            ..Query::default()
        },
    );
    assert_eq!(bytes(&got), expected(&evs, |_| true));
}

#[test]
fn the_data_directory_reveals_no_event_content() {
    let keys = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let evs = events(800, 9);
    {
        let ledger = Ledger::open(data.path(), provider(keys.path()), cfg()).unwrap();
        append(&ledger, &evs);
        ledger.close().unwrap();
    }
    let mut needles: Vec<String> = Vec::new();
    for e in evs.iter().step_by(20) {
        let f = e.fields();
        needles.push(f.event_id.clone());
        if let Some(u) = f.username() {
            needles.push(u.to_string());
        }
        if let Some(ip) = &f.source_ip_address
            && ip.len() > 8
        {
            needles.push(ip.clone());
        }
        if let Some(arn) = f.user_identity.as_ref().and_then(|u| u.arn.clone()) {
            needles.push(arn);
        }
        needles.extend(f.resource_names.iter().filter(|n| n.len() >= 8).cloned());
    }
    let mut hay = Vec::new();
    for entry in walk(data.path()) {
        hay.extend(std::fs::read(entry).unwrap());
    }
    assert!(hay.len() > 10_000);
    for n in &needles {
        assert!(
            !hay.windows(n.len()).any(|w| w == n.as_bytes()),
            "{n:?} found in the data directory"
        );
    }
}

fn walk(p: &Path) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            v.extend(walk(&e.path()));
        } else {
            v.push(e.path());
        }
    }
    v
}

#[test]
fn wrong_or_missing_keys_are_named_and_touch_nothing() {
    let keys = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    {
        let ledger = Ledger::open(data.path(), provider(keys.path()), cfg()).unwrap();
        append(&ledger, &events(50, 1));
        ledger.close().unwrap();
    }
    let before = contents(data.path());
    let other = tempfile::tempdir().unwrap();
    let e = Ledger::open(data.path(), provider(other.path()), cfg()).unwrap_err();
    assert!(e.to_string().contains("master key v1"), "{e}");
    assert!(e.to_string().contains("wrong keyring"), "{e}");
    // A keyring holding only a later version names the one it needs.
    let mut kr = Keyring::generate("t").unwrap();
    kr.rotate("t").unwrap();
    kr.retire(1).unwrap();
    let e = Ledger::open(data.path(), Arc::new(LocalKeyProvider::new(kr)), cfg()).unwrap_err();
    assert!(
        e.to_string()
            .contains("master key v1 is not in the keyring (it holds v2)"),
        "{e}"
    );
    // sled may rewrite its own bookkeeping files on open; the stored data is unchanged.
    assert!(before == contents(data.path()), "the store changed");
}

fn contents(dir: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let db = orgtrail_store::open_sled(dir, 1 << 20).unwrap();
    let t = db.open_tree("ledger").unwrap();
    t.iter()
        .map(|kv| {
            let (k, v) = kv.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

#[test]
fn rotate_then_rewrap_then_retire_keeps_everything_readable() {
    let keys = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let evs = events(400, 12);
    {
        let ledger = Ledger::open(data.path(), provider(keys.path()), cfg()).unwrap();
        append(&ledger, &evs[..200]);
        ledger.close().unwrap();
    }
    let path = keys.path().join("keyring.json");
    let mut kr = Keyring::load(&path).unwrap();
    kr.rotate("t2").unwrap();
    kr.save(&path).unwrap();
    {
        let ledger = Ledger::open(data.path(), provider(keys.path()), cfg()).unwrap();
        append(&ledger, &evs[200..]);
        assert_eq!(
            ledger
                .key_versions()
                .unwrap()
                .iter()
                .map(|(v, _)| *v)
                .collect::<Vec<_>>(),
            vec![1, 2]
        );
        let n = ledger.rewrap().unwrap();
        assert!(n >= 2);
        assert_eq!(
            ledger
                .key_versions()
                .unwrap()
                .iter()
                .map(|(v, _)| *v)
                .collect::<Vec<_>>(),
            vec![2]
        );
        ledger.close().unwrap();
    }
    let mut kr = Keyring::load(&path).unwrap();
    kr.retire(1).unwrap();
    kr.save(&path).unwrap();
    let ledger = Ledger::open(data.path(), provider(keys.path()), cfg()).unwrap();
    let got = all(
        &ledger,
        Query {
            limit: 1000,
            ..Query::default()
        },
    );
    assert_eq!(bytes(&got), expected(&evs, |_| true));
}

#[test]
fn a_record_moved_to_another_place_fails_to_open() {
    let keys = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    {
        let ledger = Ledger::open(data.path(), provider(keys.path()), cfg()).unwrap();
        append(&ledger, &events(40, 2));
        ledger.close().unwrap();
    }
    {
        // Swap two record blocks behind the ledger's back.
        let db = orgtrail_store::open_sled(data.path(), 1 << 20).unwrap();
        let t = db.open_tree("ledger").unwrap();
        let mut k1 = vec![b'r'];
        k1.extend_from_slice(&1u64.to_be_bytes());
        let mut k2 = vec![b'r'];
        k2.extend_from_slice(&9u64.to_be_bytes());
        let a = t.get(&k1).unwrap().unwrap();
        let b = t.get(&k2).unwrap().unwrap();
        t.insert(&k1, b).unwrap();
        t.insert(&k2, a).unwrap();
        db.flush().unwrap();
    }
    let ledger = Ledger::open(data.path(), provider(keys.path()), cfg()).unwrap();
    let e = ledger.read(1).unwrap_err();
    assert!(e.to_string().starts_with("record 1 failed to open"), "{e}");
    assert!(ledger.read(20).is_ok());
}

#[test]
fn a_bad_page_token_is_refused() {
    let keys = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(data.path(), provider(keys.path()), cfg()).unwrap();
    let e = ledger
        .query(&Query {
            page_token: Some("garbage!".into()),
            ..Query::default()
        })
        .unwrap_err();
    assert_eq!(e.to_string(), "invalid page token");
}

fn tamper(data: &Path, key: &[u8], f: impl FnOnce(&mut Vec<u8>)) {
    let db = orgtrail_store::open_sled(data, 1 << 20).unwrap();
    let t = db.open_tree("ledger").unwrap();
    let mut v = t.get(key).unwrap().unwrap().to_vec();
    f(&mut v);
    t.insert(key, v).unwrap();
    db.flush().unwrap();
}

fn seq_key(prefix: u8, seq: u64) -> Vec<u8> {
    let mut k = vec![prefix];
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

#[test]
fn a_flipped_byte_in_a_record_is_detected_and_other_records_still_read() {
    let keys = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    {
        let ledger = Ledger::open(data.path(), provider(keys.path()), cfg()).unwrap();
        append(&ledger, &events(40, 4));
        ledger.close().unwrap();
    }
    // The last byte of block 9 belongs to the GCM tag of its last record (seq 16).
    tamper(data.path(), &seq_key(b'r', 9), |v| {
        let n = v.len();
        v[n - 1] ^= 0x01;
    });
    let ledger = Ledger::open(data.path(), provider(keys.path()), cfg()).unwrap();
    let e = ledger.read(16).unwrap_err();
    assert!(e.to_string().starts_with("record 16 failed to open"), "{e}");
    for seq in (1..=40).filter(|&s| s != 16) {
        ledger.read(seq).unwrap();
    }
}

#[test]
fn a_truncated_index_chunk_is_reported_at_open() {
    let keys = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    {
        let ledger = Ledger::open(data.path(), provider(keys.path()), cfg()).unwrap();
        append(&ledger, &events(30, 6));
        ledger.close().unwrap();
    }
    tamper(data.path(), &seq_key(b'x', 1), |v| {
        let n = v.len();
        v.truncate(n - 3);
    });
    let e = Ledger::open(data.path(), provider(keys.path()), cfg()).unwrap_err();
    assert!(
        e.to_string().starts_with("store is corrupt: index chunk"),
        "{e}"
    );
}
