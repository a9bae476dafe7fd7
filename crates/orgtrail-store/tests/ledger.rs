//! The ledger's conformance suite: append, dedup, lookups, restarts, keys, and what is on disk.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::account_of;
use std::path::Path;
use std::sync::Arc;

use orgtrail_core::CloudTrailEvent;
use orgtrail_crypto::{KeyProvider, Keyring, LocalKeyProvider};
use orgtrail_gen::{GenConfig, Generator};
use orgtrail_store::{Appended, EventStore, Ledger, LedgerConfig, Query};

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

/// The oracle: events matching `pred`, newest first. Among events of the same time the store's
/// order (sequence numbers, given account by account within a group commit) is its own, so
/// ties are compared sorted by their bytes; see [`newest_first`].
fn expected(
    evs: &[CloudTrailEvent],
    pred: impl Fn(&CloudTrailEvent) -> bool,
) -> Vec<(i64, Vec<u8>)> {
    let mut v: Vec<(i64, Vec<u8>)> = evs
        .iter()
        .filter(|e| pred(e))
        .map(|e| (e.fields().event_time.millis(), e.bytes().to_vec()))
        .collect();
    v.sort_by(|a, b| b.cmp(a));
    v
}

/// What a query returned: checked to be newest first, then ties sorted as in [`expected`].
fn newest_first(v: &[orgtrail_store::StoredEvent]) -> Vec<(i64, Vec<u8>)> {
    assert!(
        v.windows(2).all(|w| w[0].time >= w[1].time),
        "not newest first"
    );
    let mut out: Vec<(i64, Vec<u8>)> = v
        .iter()
        .map(|e| (e.time.millis(), e.bytes.clone()))
        .collect();
    out.sort_by(|a, b| b.cmp(a));
    out
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
    assert_eq!(newest_first(&got), expected(&evs, |_| true));
}

#[test]
fn the_data_directory_reveals_no_event_content() {
    let keys = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let evs = events(800, 9);
    let mut open_bytes = Vec::new();
    {
        // Counter deltas merged every two groups (in the background), and whatever waits at
        // the clean close.
        let cfg = LedgerConfig {
            count_merge_after: 2,
            ..cfg()
        };
        let ledger = Ledger::open(data.path(), provider(keys.path()), cfg).unwrap();
        append(&ledger, &evs);
        append(&ledger, &events(300, 10));
        ledger.close().unwrap();
    }
    {
        // One group more, whose delta waits (far fewer than `count_merge_after`): both kinds
        // of counter values are on disk.
        let cfg = LedgerConfig {
            count_merge_after: 1000,
            ..cfg()
        };
        let ledger = Ledger::open(data.path(), provider(keys.path()), cfg).unwrap();
        append(&ledger, &events(1, 11));
        let (deltas, merged, _) = ledger.counter_footprint().unwrap();
        assert!(deltas > 0 && merged > 0, "{deltas} deltas, {merged} merged");
        // Read now as well: a clean close merges the waiting deltas (every group is flushed
        // when it is acknowledged, so the files hold them now).
        // The index's background merges may remove a run file between the walk and its read:
        // then it is no longer on disk.
        for entry in walk(data.path()) {
            match std::fs::read(entry) {
                Ok(b) => open_bytes.extend(b),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => panic!("{e}"),
            }
        }
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
            needles.push(ip.to_string());
        }
        if let Some(arn) = f.user_identity.as_ref().and_then(|u| u.arn.as_deref()) {
            needles.push(arn.to_string());
        }
        needles.extend(
            f.resource_names
                .iter()
                .filter(|n| n.len() >= 8)
                .map(|n| n.to_string()),
        );
        // What the counters keep (sealed): service, call, error code, region.
        needles.push(f.event_source.to_string());
        if f.event_name.len() >= 8 {
            needles.push(f.event_name.to_string());
        }
        needles.extend(
            f.error_code
                .iter()
                .filter(|c| c.len() >= 8)
                .map(|c| c.to_string()),
        );
        needles.extend(f.aws_region.iter().map(|r| r.to_string()));
    }
    let mut hay = open_bytes;
    for entry in walk(data.path()) {
        hay.extend(std::fs::read(entry).unwrap());
    }
    assert!(hay.len() > 20_000);
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
        ledger.record_insights(200, b"detector state").unwrap();
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
    assert_eq!(newest_first(&got), expected(&evs, |_| true));
    // The counters were rewrapped too: counts still open, from the counters alone.
    let c = ledger
        .count_at_most(&Query::default(), &[orgtrail_store::Group::Region], 10, 0)
        .unwrap();
    assert_eq!((c.total, c.scan.is_none()), (400, true));
    // The Insights state was rewrapped too.
    let s = ledger.insights_state().unwrap().unwrap();
    assert_eq!(
        (s.through, s.state.as_slice()),
        (200, &b"detector state"[..])
    );
}

#[test]
fn a_record_moved_to_another_place_fails_to_open() {
    let keys = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    {
        let ledger = Ledger::open(data.path(), provider(keys.path()), cfg()).unwrap();
        let evs = events(40, 2);
        append(&ledger, &evs[..20]);
        append(&ledger, &evs[20..]);
        ledger.close().unwrap();
    }
    // Two groups of the same size (each with its `r` value locating its blocks, sealed under
    // the same keys): seqs 1..=20 and 21..=40.
    let (k1, k2) = (seq_key(b'r', 1), seq_key(b'r', 21));
    {
        // Swap them behind the ledger's back.
        let db = orgtrail_store::open_sled(data.path(), 1 << 20).unwrap();
        let t = db.open_tree("ledger").unwrap();
        let a = t.get(&k1).unwrap().unwrap();
        let c = t.get(&k2).unwrap().unwrap();
        t.insert(&k1, c).unwrap();
        t.insert(&k2, a).unwrap();
        db.flush().unwrap();
    }
    let ledger = Ledger::open(data.path(), provider(keys.path()), cfg()).unwrap();
    for seq in 1..=40 {
        let e = ledger.read(seq).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("record {seq} failed to open")),
            "{e}"
        );
    }
}

#[test]
fn a_relabelled_block_fails_to_open() {
    let keys = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    {
        let ledger = Ledger::open(data.path(), provider(keys.path()), cfg()).unwrap();
        // Two groups: the block relabelled is in the first, so that a shorter count is not
        // taken for a torn last group at open (whose records must reach its last event).
        let evs = events(40, 3);
        append(&ledger, &evs[..20]);
        append(&ledger, &evs[20..]);
        ledger.close().unwrap();
    }
    let b = blocks(data.path());
    let (first, _) = b[0];
    let header = |seq: u64| log_block(data.path(), seq)[3..15].to_vec();
    // A block of another account (another segment) names another segment.
    let other = b
        .iter()
        .map(|x| header(x.0))
        .find(|h| h[..8] != header(first)[..8])
        .unwrap();
    type Relabel = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: [(&str, Relabel); 3] = [
        (
            "another segment",
            Box::new(move |v: &mut Vec<u8>| v[3..11].copy_from_slice(&other[..8])),
        ),
        ("another dictionary", Box::new(|v: &mut Vec<u8>| v[14] ^= 1)),
        (
            "a shorter count",
            Box::new(|v: &mut Vec<u8>| {
                let c = u16::from_be_bytes([v[1], v[2]]) - 1;
                v[1..3].copy_from_slice(&c.to_be_bytes());
            }),
        ),
    ];
    for (what, change) in cases {
        let saved = log_block(data.path(), first);
        let (group, at) = locator_entry(data.path(), first);
        let saved_locator = {
            let db = orgtrail_store::open_sled(data.path(), 1 << 20).unwrap();
            db.open_tree("ledger")
                .unwrap()
                .get(seq_key(b'r', group))
                .unwrap()
                .unwrap()
                .to_vec()
        };
        let mut changed = saved.clone();
        change(&mut changed);
        set_log_block(data.path(), first, &changed);
        // The locator repeats the block's count: relabelled too, as a forger would.
        tamper(data.path(), &seq_key(b'r', group), |v| {
            v[at..at + 2].copy_from_slice(&changed[1..3])
        });
        {
            let ledger = Ledger::open(data.path(), provider(keys.path()), cfg()).unwrap();
            let e = ledger.read(first).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with(&format!("record {first} failed to open")),
                "{what}: {e}"
            );
            ledger.close().unwrap();
        }
        set_log_block(data.path(), first, &saved);
        tamper(data.path(), &seq_key(b'r', group), |v| *v = saved_locator);
    }
    let ledger = Ledger::open(data.path(), provider(keys.path()), cfg()).unwrap();
    ledger.read(first).unwrap();
}

/// The record blocks, (first seq, count), in order.
fn blocks(data: &Path) -> Vec<(u64, u64)> {
    located_blocks(data)
        .into_iter()
        .map(|b| (b.0, b.1))
        .collect()
}

/// Every record block as its group's `r` value locates it (layout in the store's `log`
/// module): (first seq, count, file, offset, length, the group's first seq, where the block's
/// entry is in that value).
type Located = (u64, u64, u32, u64, usize, u64, usize);

fn located_blocks(data: &Path) -> Vec<Located> {
    let be16 = |b: &[u8]| u16::from_be_bytes(b.try_into().unwrap());
    let be32 = |b: &[u8]| u32::from_be_bytes(b.try_into().unwrap());
    let be64 = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap());
    let db = orgtrail_store::open_sled(data, 1 << 20).unwrap();
    let t = db.open_tree("ledger").unwrap();
    let mut out = Vec::new();
    for kv in t.scan_prefix([b'r']) {
        let (k, v) = kv.unwrap();
        assert_eq!(v[0], 0x81, "a group's blocks, located");
        let group = be64(&k[1..9]);
        let mut first = group;
        let file = be32(&v[1..5]);
        let mut offset = be64(&v[5..13]);
        for i in 0..usize::from(be16(&v[13..15])) {
            let at = 15 + 6 * i;
            let (count, len) = (be16(&v[at..at + 2]), be32(&v[at + 2..at + 6]));
            out.push((
                first,
                u64::from(count),
                file,
                offset,
                len as usize,
                group,
                at,
            ));
            first += u64::from(count);
            offset += u64::from(len);
        }
    }
    out
}

/// The first seq of the group whose `r` value locates the block at `first`, and where that
/// block's entry (count, length) is in the value.
fn locator_entry(data: &Path, first: u64) -> (u64, usize) {
    let b = located_blocks(data)
        .into_iter()
        .find(|b| b.0 == first)
        .expect("a block starts there");
    (b.5, b.6)
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

/// Where the record block at `first` is in the record log (locator layout in the store's `log`
/// module): its file and (offset, length).
fn block_place(data: &Path, first: u64) -> (std::fs::File, u64, usize) {
    let b = located_blocks(data)
        .into_iter()
        .find(|b| b.0 == first)
        .expect("a block starts there");
    let path = data.join("log").join(format!("{:010}.log", b.2));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    (f, b.3, b.4)
}

/// The bytes of the record block at `first`, from the record log.
fn log_block(data: &Path, first: u64) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let (f, offset, len) = block_place(data, first);
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, offset).unwrap();
    buf
}

/// Overwrites the record block at `first` in the record log (same length).
fn set_log_block(data: &Path, first: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let (f, offset, len) = block_place(data, first);
    assert_eq!(len, bytes.len());
    f.write_all_at(bytes, offset).unwrap();
    f.sync_all().unwrap();
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
    // The last byte of a block belongs to the GCM tag that seals the whole block.
    let (first, count) = blocks(data.path())[1];
    let mut block = log_block(data.path(), first);
    let n = block.len();
    block[n - 1] ^= 0x01;
    set_log_block(data.path(), first, &block);
    let ledger = Ledger::open(data.path(), provider(keys.path()), cfg()).unwrap();
    for seq in first..first + count {
        let e = ledger.read(seq).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("record {seq} failed to open")),
            "{e}"
        );
    }
    for seq in (1..=40).filter(|s| !(first..first + count).contains(s)) {
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

/// Counter deltas still waiting (fewer than `count_merge_after`) are merged at a clean close,
/// and those a crash left (here: a close that does not merge them) at the next writable open,
/// before its first group: the first count after an open reads merged values only. The counts
/// stay exact throughout.
#[test]
fn waiting_counters_are_merged_at_a_clean_close_and_after_a_crash() {
    let (k, d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cfg = LedgerConfig {
        count_merge_after: 1000,
        ..cfg()
    };
    let by = [
        orgtrail_store::Group::Account,
        orgtrail_store::Group::EventName,
    ];
    let count = |ledger: &Ledger| {
        let c = ledger
            .count_at_most(&Query::default(), &by, 10_000, 0)
            .unwrap();
        let scanned = ledger
            .count_by_scan(&Query::default(), &by, 10_000, usize::MAX)
            .unwrap();
        assert_eq!((c.total, &c.groups), (scanned.total, &scanned.groups));
        c
    };
    let stored = |r: Vec<Appended>| {
        r.iter()
            .filter(|a| matches!(a, Appended::Stored(_)))
            .count()
    };
    // As a crash leaves them: the deltas not merged at the end.
    let crashed = LedgerConfig {
        count_merge_waiting: false,
        ..cfg.clone()
    };
    let before = {
        let ledger = Ledger::open(d.path(), provider(k.path()), crashed).unwrap();
        assert_eq!(stored(append(&ledger, &events(3000, 43))), 3000);
        let c = count(&ledger);
        ledger.close().unwrap();
        c
    };
    assert_eq!(before.total, 3000);
    {
        let ledger = Ledger::open(d.path(), provider(k.path()), cfg.clone()).unwrap();
        // The first group waits for the merge at open: then its own delta is the only one.
        assert_eq!(stored(append(&ledger, &events(3001, 43)[3000..])), 1);
        let (deltas, merged, _) = ledger.counter_footprint().unwrap();
        assert!(
            deltas == 1 && merged > 0,
            "{deltas} deltas, {merged} merged"
        );
        assert_eq!(count(&ledger).total, 3001);
        // More groups: deltas again, merged at the close.
        assert_eq!(stored(append(&ledger, &events(500, 44))), 500);
        let (deltas, _, _) = ledger.counter_footprint().unwrap();
        assert!(deltas > 1, "{deltas} deltas");
        ledger.close().unwrap();
    }
    let ledger = Ledger::open(d.path(), provider(k.path()), cfg).unwrap();
    let (deltas, merged, _) = ledger.counter_footprint().unwrap();
    assert!(
        deltas == 0 && merged > 0,
        "{deltas} deltas, {merged} merged"
    );
    assert_eq!(count(&ledger).total, 3501);
    ledger.close().unwrap();
}

/// A decrypting count reads its hits a page at a time (4,096): across pages it counts every
/// event once, stops exactly at its limit, and says whether more matched.
#[test]
fn a_decrypting_count_pages_through_its_hits() {
    let (k, d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ledger = Ledger::open(d.path(), provider(k.path()), cfg()).unwrap();
    let evs = events(9000, 41);
    let stored = append(&ledger, &evs)
        .iter()
        .filter(|a| matches!(a, Appended::Stored(_)))
        .count() as u64;
    let by = [
        orgtrail_store::Group::Account,
        orgtrail_store::Group::EventName,
    ];
    let counted = ledger
        .count_at_most(&Query::default(), &by, 10_000, 0)
        .unwrap();
    assert_eq!(counted.total, stored);
    for (limit, total, hit) in [
        (usize::MAX, stored, false),
        (stored as usize, stored, false),
        (stored as usize - 1, stored - 1, true),
        (4096, 4096, true),
        (4097, 4097, true),
        (8192, 8192, true),
        (1, 1, true),
    ] {
        let c = ledger
            .count_by_scan(&Query::default(), &by, 10_000, limit)
            .unwrap();
        assert_eq!((c.total, c.limit_hit), (total, hit), "limit {limit}");
        if !hit {
            assert_eq!(c.groups, counted.groups);
        }
    }
    ledger.close().unwrap();
}

/// A sink's delivery loop reads the outbox on from the last alert it handled (and takes
/// what it read) while the evaluator records more, and `alerts follow` reads the history on
/// from a position the same way: neither may skip an alert. (sled's iterators are no snapshot,
/// so this holds only because alerts are recorded in sequence order, past every key before.)
#[test]
fn reading_on_from_a_cursor_while_alerts_are_recorded_skips_none() {
    use orgtrail_store::PendingAlert;
    let keys = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Ledger::open(data.path(), provider(keys.path()), cfg()).unwrap());
    const BATCHES: u64 = 300;
    const PER: u64 = 40;
    let writer = {
        let ledger = ledger.clone();
        std::thread::spawn(move || {
            for b in 0..BATCHES {
                let alerts: Vec<PendingAlert> = (0..PER)
                    .map(|i| PendingAlert {
                        seq: b * PER + i,
                        rule: format!("rule-with-a-longer-id-{i:03}"),
                        sinks: vec!["hook".into()],
                    })
                    .collect();
                ledger.record_alerts(b * PER + PER - 1, &alerts).unwrap();
            }
        })
    };
    let total = (BATCHES * PER) as usize;
    let (mut outbox, mut history) = (Vec::new(), Vec::new());
    let mut cursor: Option<(u64, String)> = None;
    let mut from: Option<(u64, String)> = None;
    loop {
        let done = writer.is_finished();
        let page = ledger
            .pending_alerts_after(cursor.as_ref().map(|(s, r)| (*s, r.as_str())), 7)
            .unwrap();
        if let Some(last) = page.last() {
            cursor = Some((last.seq, last.rule.clone()));
        }
        // Taken, as the webhook loop notes it: removals in the range being read.
        ledger.alerts_taken("hook", &page).unwrap();
        outbox.extend(page.iter().map(|a| (a.seq, a.rule.clone())));
        let refs = ledger
            .alert_history(from.as_ref().map(|(s, r)| (*s, r.as_str())), 11, false)
            .unwrap();
        if let Some(last) = refs.last() {
            from = Some((last.seq, last.rule.clone()));
        }
        history.extend(refs.iter().map(|a| (a.seq, a.rule.clone())));
        if done && page.is_empty() && refs.is_empty() {
            break;
        }
    }
    writer.join().unwrap();
    let mut want: Vec<(u64, String)> = (0..BATCHES * PER)
        .map(|s| (s, format!("rule-with-a-longer-id-{:03}", s % PER)))
        .collect();
    want.sort();
    assert_eq!(
        outbox.len(),
        total,
        "the outbox read on from a cursor skipped alerts"
    );
    assert_eq!(outbox, want);
    assert_eq!(
        history, want,
        "the history read on from a position skipped alerts"
    );
}

/// Alerts recorded while a caller prepares an append wait for that append's group commit and
/// are made durable with it (they share its flush); when the append never comes, they are
/// committed on their own after a short wait. Either way they are there after a reopen, with
/// the events.
#[test]
fn alerts_recorded_during_an_append_ride_on_its_group_and_are_durable() {
    use orgtrail_store::PendingAlert;
    let keys = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let evs = events(20, 41);
    {
        let ledger = Arc::new(Ledger::open(data.path(), provider(keys.path()), cfg()).unwrap());
        append(&ledger, &evs[..10]);
        ledger.record_alerts(0, &[]).unwrap();
        let alert = |seq: u64| PendingAlert {
            seq,
            rule: "r".into(),
            sinks: vec!["hook".into()],
        };
        // An append on its way: the record waits for it.
        let preparing = ledger.preparing_append();
        let recorder = {
            let ledger = ledger.clone();
            std::thread::spawn(move || ledger.record_alerts(10, &[alert(3), alert(7)]))
        };
        drop(preparing);
        append(&ledger, &evs[10..]);
        recorder.join().unwrap().unwrap();
        assert_eq!(ledger.alerts_through().unwrap(), Some(10));
        // An append said to be on its way that never comes: recorded all the same.
        let never = ledger.preparing_append();
        ledger.record_alerts(20, &[alert(15)]).unwrap();
        drop(never);
        // A delivery noted the same way.
        let page = ledger.pending_alerts(10).unwrap();
        assert_eq!(page.len(), 3);
        let _on_its_way = ledger.preparing_append();
        ledger.alerts_taken("hook", &page[..1]).unwrap();
        ledger.close().unwrap();
    }
    let ledger = Ledger::open(data.path(), provider(keys.path()), cfg()).unwrap();
    assert_eq!(ledger.alerts_through().unwrap(), Some(20));
    let pending: Vec<u64> = ledger
        .pending_alerts(10)
        .unwrap()
        .iter()
        .map(|a| a.seq)
        .collect();
    assert_eq!(pending, vec![7, 15], "the note of 3 is durable");
    let history = ledger.alert_history(None, 10, false).unwrap();
    assert_eq!(
        history.iter().map(|a| a.seq).collect::<Vec<_>>(),
        vec![3, 7, 15]
    );
    assert_eq!(ledger.stats().events, 20);
    ledger.close().unwrap();
}

/// A bulk writer (`import`) closes with its index settled: the merge running is finished,
/// the memtable is written as a run however small (the next open loads no index chunks), and
/// every merge due is made before `close` returns, so the writer opened next (a collector) has
/// none of it to redo while it ingests. Settling again finds nothing to do, and everything is
/// still found after a reopen.
#[test]
fn a_close_that_settles_the_index_leaves_no_work_for_the_next_writer() {
    let keys = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let evs = events(1064, 9);
    let settling = || LedgerConfig {
        settle_index_at_close: true,
        ..cfg()
    };
    {
        let ledger = Ledger::open(data.path(), provider(keys.path()), settling()).unwrap();
        let mut p = ledger.preparer();
        for chunk in evs.chunks(64) {
            let prepared = chunk
                .iter()
                .map(|e| p.prepare(e, account_of(e)).unwrap())
                .collect();
            let stored = ledger.append_blocking(prepared).unwrap().results;
            assert!(stored.iter().all(|r| matches!(r, Appended::Stored(_))));
        }
        ledger.close().unwrap();
    }
    let runs = || {
        let mut v: Vec<String> = std::fs::read_dir(data.path().join("index"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let settled = runs();
    // Runs of 64 events and more (a memtable grows while the one before is written out),
    // contiguous from the first event to the last: no index chunk is left.
    let bounds: Vec<(u64, u64)> = settled
        .iter()
        .map(|n| {
            let (a, b) = n
                .strip_prefix("run-")
                .and_then(|n| n.strip_suffix(".idx"))
                .and_then(|n| n.split_once('-'))
                .unwrap();
            (
                u64::from_str_radix(a, 16).unwrap(),
                u64::from_str_radix(b, 16).unwrap(),
            )
        })
        .collect();
    assert_eq!(bounds.first().map(|b| b.0), Some(1));
    assert_eq!(bounds.last().map(|b| b.1), Some(1065));
    assert!(bounds.windows(2).all(|w| w[0].1 == w[1].0), "{settled:?}");
    // Merged: fewer runs than the 17 groups wrote.
    assert!(settled.len() < 8, "{settled:?}");
    // Nothing was left due: settling again changes nothing.
    Ledger::open(data.path(), provider(keys.path()), settling())
        .unwrap()
        .close()
        .unwrap();
    assert_eq!(runs(), settled);
    let ledger = Ledger::open(data.path(), provider(keys.path()), cfg()).unwrap();
    let got = all(
        &ledger,
        Query {
            limit: 2000,
            ..Query::default()
        },
    );
    assert_eq!(newest_first(&got), expected(&evs, |_| true));
}

/// `cfg` with checkpoints signed by the key in `keys` (made on first use), for verification.
fn signed(keys: &Path, cfg: LedgerConfig) -> LedgerConfig {
    use orgtrail_crypto::signing::SigningKey;
    if !keys.join("signing.key").exists() {
        SigningKey::generate_files(keys).unwrap();
    }
    LedgerConfig {
        signer: Some(Arc::new(
            SigningKey::load(&keys.join("signing.key")).unwrap(),
        )),
        ..cfg
    }
}

/// Appends events prepared as a batch (each account's events compressed by runs).
fn append_batch(ledger: &Ledger, evs: &[CloudTrailEvent]) -> Vec<Appended> {
    let batch: Vec<_> = evs.iter().map(|e| (e.clone(), account_of(e))).collect();
    let prepared = ledger.preparer().prepare_batch(&batch).unwrap();
    ledger.append_blocking(prepared).unwrap().results
}

/// Every stored event read back, one by one and as one range, is exactly one of `evs`, each
/// of `evs` is stored once, and full verification (with the key) finds nothing wrong.
fn assert_stored_exactly(data: &Path, keys: &Path, ledger: Ledger, evs: &[CloudTrailEvent]) {
    let mut want: Vec<Vec<u8>> = evs.iter().map(|e| e.bytes().to_vec()).collect();
    want.sort();
    want.dedup();
    let n = want.len() as u64;
    let mut one_by_one: Vec<Vec<u8>> = (1..=n).map(|s| ledger.read(s).unwrap().bytes).collect();
    let ranged: Vec<Vec<u8>> = ledger
        .read_range(1, n)
        .unwrap()
        .into_iter()
        .map(|e| e.bytes)
        .collect();
    assert_eq!(ranged, one_by_one, "a range reads what single reads do");
    // Several at once, in any order and with repeats (a lookup's page), as single reads.
    let asked: Vec<(Option<i64>, u64)> =
        (1..=n).rev().chain([1, n, 1]).map(|s| (None, s)).collect();
    let many = ledger.read_many(&asked).unwrap();
    assert_eq!(
        many.iter().map(|e| e.seq).collect::<Vec<_>>(),
        asked.iter().map(|a| a.1).collect::<Vec<_>>(),
        "read_many answers in the order asked"
    );
    for e in &many {
        assert_eq!(e, &ledger.read(e.seq).unwrap());
    }
    assert!(ledger.read(n + 1).is_err(), "nothing stored beyond");
    one_by_one.sort();
    assert_eq!(one_by_one, want);
    ledger.close().unwrap();
    drop(ledger);
    let vk = orgtrail_crypto::signing::VerifyingKey::load(&keys.join("signing.pub")).unwrap();
    let report = orgtrail_store::verify_full(data, provider(keys), &vk, &[]);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.events, n);
}

/// The version byte of each record block, in order.
fn block_versions(data: &Path) -> Vec<u8> {
    blocks(data)
        .into_iter()
        .map(|(first, _)| log_block(data, first)[0])
        .collect()
}

#[test]
fn runs_are_sealed_as_one_block_each_smaller_and_read_back_exactly() {
    let keys = tempfile::tempdir().unwrap();
    let (by_run, by_event) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let evs = events(1200, 11);
    let ledger = Ledger::open(
        by_run.path(),
        provider(keys.path()),
        signed(keys.path(), cfg()),
    )
    .unwrap();
    for chunk in evs.chunks(400) {
        let r = append_batch(&ledger, chunk);
        assert!(r.iter().all(|a| matches!(a, Appended::Stored(_))));
    }
    assert_stored_exactly(by_run.path(), keys.path(), ledger, &evs);
    let versions = block_versions(by_run.path());
    // Before the dictionary is trained and after, every block is a run's (version 3).
    assert!(versions.iter().all(|&v| v == 3), "{versions:?}");
    // Three accounts, 400 events a group, runs of at most 8: about 51 blocks a group.
    assert!(versions.len() <= 3 * (400 / 8 + 3), "{}", versions.len());
    // The same events prepared one by one take more room in the record log.
    let ledger = Ledger::open(by_event.path(), provider(keys.path()), cfg()).unwrap();
    for chunk in evs.chunks(400) {
        append(&ledger, chunk);
    }
    ledger.close().unwrap();
    drop(ledger);
    assert!(block_versions(by_event.path()).iter().all(|&v| v == 2));
    let log_bytes = |d: &Path| -> u64 {
        walk(&d.join("log"))
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum()
    };
    let (run_bytes, event_bytes) = (log_bytes(by_run.path()), log_bytes(by_event.path()));
    assert!(
        run_bytes * 10 < event_bytes * 9,
        "runs {run_bytes} bytes, events one by one {event_bytes}"
    );
}

#[test]
fn a_run_relabelled_as_a_block_of_single_records_fails_to_open() {
    let keys = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    {
        let ledger = Ledger::open(data.path(), provider(keys.path()), cfg()).unwrap();
        let evs = events(60, 12);
        append_batch(&ledger, &evs[..30]);
        append_batch(&ledger, &evs[30..]);
        ledger.close().unwrap();
    }
    let (first, count) = blocks(data.path())[0];
    let saved = log_block(data.path(), first);
    assert_eq!(saved[0], 3);
    let mut changed = saved.clone();
    changed[0] = 2;
    set_log_block(data.path(), first, &changed);
    {
        let ledger = Ledger::open(data.path(), provider(keys.path()), cfg()).unwrap();
        for seq in first..first + count {
            let e = ledger.read(seq).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with(&format!("record {seq} failed to open")),
                "{e}"
            );
        }
        ledger.close().unwrap();
    }
    set_log_block(data.path(), first, &saved);
    let ledger = Ledger::open(data.path(), provider(keys.path()), cfg()).unwrap();
    ledger.read(first).unwrap();
}

#[test]
fn events_of_runs_not_stored_whole_are_stored_as_smaller_runs_or_alone() {
    let keys = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let evs = events(400, 13);
    let ledger = Ledger::open(
        data.path(),
        provider(keys.path()),
        signed(keys.path(), cfg()),
    )
    .unwrap();
    // A run whose first event is already stored.
    append(&ledger, &evs[..1]);
    let r = append_batch(&ledger, &evs[..60]);
    assert!(matches!(r[0], Appended::Duplicate(1)));
    assert!(r[1..].iter().all(|a| matches!(a, Appended::Stored(_))));
    // An event twice in one batch: the second is a duplicate inside its run.
    let mut twice = evs[60..120].to_vec();
    twice.insert(10, evs[65].clone());
    let r = append_batch(&ledger, &twice);
    assert_eq!(
        r.iter()
            .filter(|a| matches!(a, Appended::Duplicate(_)))
            .count(),
        1
    );
    // Runs appended apart: a batch's prepared events split across two groups.
    let batch: Vec<_> = evs[120..200]
        .iter()
        .map(|e| (e.clone(), account_of(e)))
        .collect();
    let mut prepared = ledger.preparer().prepare_batch(&batch).unwrap();
    let rest = prepared.split_off(37);
    let a = ledger.append_blocking(prepared).unwrap().results;
    let b = ledger.append_blocking(rest).unwrap().results;
    assert!(a.iter().chain(&b).all(|x| matches!(x, Appended::Stored(_))));
    // One account's ten events (a run of 8, then one of 2) split after the seventh: the
    // first seven are compressed again as a run, the eighth on its own, the last run is whole.
    let one = account_of(&evs[200]);
    let ten: Vec<_> = evs[200..]
        .iter()
        .filter(|e| account_of(e) == one)
        .take(10)
        .map(|e| (e.clone(), one))
        .collect();
    let mut prepared = ledger.preparer().prepare_batch(&ten).unwrap();
    let rest = prepared.split_off(7);
    let a = ledger.append_blocking(prepared).unwrap().results;
    let b = ledger.append_blocking(rest).unwrap().results;
    assert!(a.iter().chain(&b).all(|x| matches!(x, Appended::Stored(_))));
    // And whole runs again after them.
    append_batch(&ledger, &evs[200..]);
    assert_stored_exactly(data.path(), keys.path(), ledger, &evs);
    let versions = block_versions(data.path());
    assert!(
        versions.contains(&2) && versions.contains(&3),
        "{versions:?}"
    );
}

#[test]
fn runs_longer_than_a_segment_holds_are_split_across_segments() {
    let keys = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let evs = events(300, 14);
    let small = signed(
        keys.path(),
        LedgerConfig {
            segment_max_records: 5,
            ..cfg()
        },
    );
    let ledger = Ledger::open(data.path(), provider(keys.path()), small).unwrap();
    for chunk in evs.chunks(100) {
        append_batch(&ledger, chunk);
    }
    let stats = ledger.stats();
    assert!(stats.segments >= 300 / 5, "{}", stats.segments);
    assert_stored_exactly(data.path(), keys.path(), ledger, &evs);
    // Runs of up to 4 fit a segment of 5 (a run that does not fit the open segment starts
    // the next one): every run is sealed whole.
    let fits = signed(
        keys.path(),
        LedgerConfig {
            segment_max_records: 5,
            block_records: 4,
            ..cfg()
        },
    );
    let data = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(data.path(), provider(keys.path()), fits).unwrap();
    for chunk in evs.chunks(100) {
        append_batch(&ledger, chunk);
    }
    assert_stored_exactly(data.path(), keys.path(), ledger, &evs);
    assert!(block_versions(data.path()).iter().all(|&v| v == 3));
}

/// The collector's way in: events prepared through [`EventStore::preparer`] as a batch and
/// appended with [`EventStore::append_prepared`] are sealed by runs, and read back exactly.
#[test]
fn a_batch_prepared_through_the_store_trait_is_sealed_by_runs() {
    let keys = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let evs = events(300, 15);
    let ledger = Ledger::open(
        data.path(),
        provider(keys.path()),
        signed(keys.path(), cfg()),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let store: &dyn EventStore = &ledger;
    let mut p = store.preparer();
    for chunk in evs.chunks(100) {
        let batch: Vec<_> = chunk.iter().map(|e| (e.clone(), account_of(e))).collect();
        let prepared = p.prepare_batch(&batch).unwrap();
        let out = rt.block_on(store.append_prepared(prepared)).unwrap();
        assert!(out.results.iter().all(|a| matches!(a, Appended::Stored(_))));
    }
    drop(p);
    assert_stored_exactly(data.path(), keys.path(), ledger, &evs);
    assert!(block_versions(data.path()).iter().all(|&v| v == 3));
}
