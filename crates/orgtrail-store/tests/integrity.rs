//! Tamper evidence: `verify` finds every kind of tampering, names it, and proofs check out.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../tests/common/fs.rs"]
mod fs;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use orgtrail_core::{AccountId, CloudTrailEvent};
use orgtrail_crypto::checkpoint::Checkpoint;
use orgtrail_crypto::merkle::{verify_consistency, verify_inclusion};
use orgtrail_crypto::signing::{SigningKey, VerifyingKey};
use orgtrail_crypto::{KeyProvider, Keyring, LocalKeyProvider};
use orgtrail_gen::{GenConfig, Generator};
use orgtrail_store::{
    EventStore, Ledger, LedgerConfig, SavedCheckpoint, VerifyReport, event_leaf, open_sled,
    verify_full, verify_full_in_chunks, verify_public,
};

struct Fixture {
    _dir: tempfile::TempDir,
    keys: PathBuf,
    data: PathBuf,
    events: Vec<CloudTrailEvent>,
    /// Events per index run (the default keeps a small store's index in chunks).
    run_events: u64,
}

impl Fixture {
    fn provider(&self) -> Arc<dyn KeyProvider> {
        Arc::new(LocalKeyProvider::load(&self.keys).unwrap())
    }
    fn vk(&self) -> VerifyingKey {
        VerifyingKey::load(&self.keys.join("signing.pub")).unwrap()
    }
    fn cfg(&self) -> LedgerConfig {
        LedgerConfig {
            block_records: 8,
            dict_train_after: 100,
            signer: Some(Arc::new(
                SigningKey::load(&self.keys.join("signing.key")).unwrap(),
            )),
            checkpoint_records: 50,
            index_run_events: self.run_events,
            // The fixture's last group is torn as a crash would leave it: its counter deltas
            // still deltas, not merged at a clean close.
            count_merge_waiting: false,
            ..LedgerConfig::default()
        }
    }
    fn open(&self) -> Ledger {
        Ledger::open(&self.data, self.provider(), self.cfg()).unwrap()
    }
    fn append(&self, evs: &[CloudTrailEvent]) {
        let ledger = self.open();
        for chunk in evs.chunks(40) {
            let batch: Vec<(CloudTrailEvent, AccountId)> = chunk
                .iter()
                .map(|e| {
                    (
                        e.clone(),
                        e.fields()
                            .recipient_account_id
                            .as_ref()
                            .unwrap()
                            .parse()
                            .unwrap(),
                    )
                })
                .collect();
            ledger.append_events(&batch).unwrap();
        }
        ledger.close().unwrap();
    }
    fn latest(&self) -> SavedCheckpoint {
        let l = Ledger::open(
            &self.data,
            self.provider(),
            LedgerConfig {
                read_only: true,
                ..LedgerConfig::default()
            },
        )
        .unwrap();
        let (_, note) = l.latest_checkpoint().unwrap().unwrap();
        SavedCheckpoint {
            name: "auditor.json".into(),
            note,
        }
    }
    /// Full verification; checked again 7 records at a time, which must find the same (the
    /// verification holds a chunk of records at a time, never the whole store).
    fn full(&self, saved: &[SavedCheckpoint]) -> VerifyReport {
        let r = verify_full(&self.data, self.provider(), &self.vk(), saved);
        let c = verify_full_in_chunks(&self.data, self.provider(), &self.vk(), saved, 7);
        assert_eq!(
            (&c.problems, c.events, c.checkpoints, c.saved_checkpoints),
            (&r.problems, r.events, r.checkpoints, r.saved_checkpoints),
            "in chunks of 7 records"
        );
        r
    }
}

fn fixture(n: u64) -> Fixture {
    fixture_with_runs(n, LedgerConfig::default().index_run_events)
}

fn fixture_with_runs(n: u64, run_events: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    Keyring::generate("t")
        .unwrap()
        .save_new(&keys.join("keyring.json"))
        .unwrap();
    SigningKey::generate_files(&keys).unwrap();
    let data = dir.path().join("data");
    let events: Vec<CloudTrailEvent> = Generator::new(GenConfig {
        count: n,
        accounts: 2,
        seed: 17,
        ..GenConfig::default()
    })
    .map(|b| CloudTrailEvent::parse(b).unwrap())
    .collect();
    let f = Fixture {
        _dir: dir,
        keys,
        data,
        events,
        run_events,
    };
    f.append(&f.events.clone());
    f
}

fn key(prefix: u8, n: u64) -> Vec<u8> {
    let mut k = vec![prefix];
    k.extend_from_slice(&n.to_be_bytes());
    k
}

fn with_tree(data: &Path, f: impl FnOnce(&sled::Tree)) {
    let db = open_sled(data, 1 << 20).unwrap();
    let t = db.open_tree("ledger").unwrap();
    f(&t);
    db.flush().unwrap();
}

/// Changes the bytes that the `r` or `h` value at `k` locates in the record log (layouts in
/// the store's `log` module): `f` gets them and changes them in place. For `r`, `k` names the
/// first seq of a record block (see [`blocks`]), whichever group's value locates it.
fn tamper_log(data: &Path, k: &[u8], f: impl FnOnce(&mut [u8])) {
    use std::os::unix::fs::FileExt;
    let be32 = |b: &[u8]| u32::from_be_bytes(b.try_into().unwrap());
    let be64 = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap());
    let (file, offset, len) = if k[0] == b'r' {
        let seq = be64(&k[1..9]);
        let b = located_blocks(data)
            .into_iter()
            .find(|b| b.0 == seq)
            .expect("a block starts there");
        (b.2, b.3, b.4)
    } else {
        let mut v = Vec::new();
        with_tree(data, |t| v = t.get(k).unwrap().unwrap().to_vec());
        assert_eq!(v[0], 0x80, "the value is a locator");
        (
            be32(&v[5..9]),
            be64(&v[9..17]),
            u64::from(be32(&v[1..5])) * 32,
        )
    };
    let path = data.join("log").join(format!("{file:010}.log"));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, offset).unwrap();
    f(&mut buf);
    file.write_all_at(&buf, offset).unwrap();
    file.sync_all().unwrap();
}

/// The record blocks, (first seq, count), in order. Blocks hold records of one account, so
/// where they start depends on how the accounts' events interleave.
fn blocks(data: &Path) -> Vec<(u64, u64)> {
    located_blocks(data)
        .into_iter()
        .map(|b| (b.0, b.1))
        .collect()
}

/// Every record block as its group's `r` value locates it (layout in the store's `log`
/// module): (first seq, count, file, offset, length).
fn located_blocks(data: &Path) -> Vec<(u64, u64, u32, u64, u64)> {
    let be16 = |b: &[u8]| u16::from_be_bytes(b.try_into().unwrap());
    let be32 = |b: &[u8]| u32::from_be_bytes(b.try_into().unwrap());
    let be64 = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap());
    let mut out = Vec::new();
    with_tree(data, |t| {
        for kv in t.scan_prefix([b'r']) {
            let (k, v) = kv.unwrap();
            assert_eq!(v[0], 0x81, "a group's blocks, located");
            let mut first = be64(&k[1..9]);
            let file = be32(&v[1..5]);
            let mut offset = be64(&v[5..13]);
            for i in 0..usize::from(be16(&v[13..15])) {
                let e = &v[15 + 6 * i..21 + 6 * i];
                let (count, len) = (u64::from(be16(&e[..2])), u64::from(be32(&e[2..])));
                out.push((first, count, file, offset, len));
                first += count;
                offset += len;
            }
        }
    });
    out
}

/// The `r` values, one per group commit: (first seq, count of records).
fn values(data: &Path) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut groups = Vec::new();
    with_tree(data, |t| {
        groups = t
            .scan_prefix([b'r'])
            .map(|kv| u64::from_be_bytes(kv.unwrap().0[1..9].try_into().unwrap()))
            .collect();
    });
    for (first, count, ..) in located_blocks(data) {
        match out.last_mut() {
            Some(last) if !groups.contains(&first) => last.1 += count,
            _ => out.push((first, count)),
        }
    }
    out
}

fn has(r: &VerifyReport, needle: &str) -> bool {
    r.problems.iter().any(|p| p.contains(needle))
}

#[test]
fn an_untouched_store_verifies_fully_and_publicly() {
    let f = fixture(300);
    let saved = f.latest();
    let r = f.full(std::slice::from_ref(&saved));
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(r.events, 300);
    // Groups of 40 events, a checkpoint once 50 are new: at 80, 160, 240 and on close at 300.
    assert_eq!(r.checkpoints, 4);
    assert_eq!(r.saved_checkpoints, 1);
    let p = verify_public(&f.data, &f.vk(), &[saved]);
    assert!(p.ok(), "{:?}", p.problems);
    assert_eq!((p.events, p.checkpoints), (300, r.checkpoints));
    assert!(!p.not_checked.is_empty());
}

#[test]
fn changed_event_bytes_are_detected() {
    let f = fixture(120);
    let (first, count) = blocks(&f.data)[1];
    tamper_log(&f.data, &key(b'r', first), |v| {
        let n = v.len();
        v[n - 20] ^= 0x40;
    });
    let r = f.full(&[]);
    // The block is sealed as a whole: every record of it fails to open, no other one.
    for seq in first..first + count {
        assert!(
            has(&r, &format!("record {seq}: record {seq} failed to open")),
            "{seq}: {:?}",
            r.problems
        );
    }
    assert_eq!(
        r.problems
            .iter()
            .filter(|p| p.contains("failed to open"))
            .count() as u64,
        count,
        "{:?}",
        r.problems
    );
}

#[test]
fn a_covered_up_leaf_hash_is_detected() {
    let f = fixture(120);
    let saved = f.latest();
    // Someone replaces a leaf hash (as if to cover a changed record).
    tamper_log(&f.data, &key(b'h', 41), |v| v[5 * 32] ^= 1);
    let r = f.full(std::slice::from_ref(&saved));
    assert!(
        has(&r, "record 46: its content does not match its leaf hash"),
        "{:?}",
        r.problems
    );
    // Without the master key the tree no longer matches the signed checkpoints.
    let p = verify_public(&f.data, &f.vk(), &[saved]);
    assert!(has(&p, "the log's root differs"), "{:?}", p.problems);
    assert!(
        has(&p, "auditor.json: the store's first 120 events differ"),
        "{:?}",
        p.problems
    );
}

#[test]
fn a_deleted_record_is_detected() {
    let f = fixture(120);
    let (first, count) = values(&f.data)[1];
    with_tree(&f.data, |t| {
        t.remove(key(b'r', first)).unwrap();
    });
    let r = f.full(&[]);
    assert!(
        has(
            &r,
            &format!("records {first}..{} are missing", first + count - 1)
        ),
        "{:?}",
        r.problems
    );
}

#[test]
fn swapped_records_are_detected() {
    let f = fixture(120);
    let b = values(&f.data);
    // Two groups of the same size, so that only their places (the AAD) tell them apart.
    let (a, b) = b
        .iter()
        .enumerate()
        .find_map(|(i, x)| b[i + 1..].iter().find(|y| y.1 == x.1).map(|y| (*x, *y)))
        .unwrap();
    with_tree(&f.data, |t| {
        let va = t.get(key(b'r', a.0)).unwrap().unwrap();
        let vb = t.get(key(b'r', b.0)).unwrap().unwrap();
        t.insert(key(b'r', a.0), vb).unwrap();
        t.insert(key(b'r', b.0), va).unwrap();
    });
    let r = f.full(&[]);
    for seq in [a.0, a.0 + a.1 - 1, b.0, b.0 + b.1 - 1] {
        assert!(
            has(&r, &format!("record {seq}: record {seq} failed to open")),
            "{seq}: {:?}",
            r.problems
        );
    }
}

#[test]
fn an_inserted_record_is_detected() {
    let f = fixture(120);
    let (first, count) = values(&f.data)[0];
    with_tree(&f.data, |t| {
        let a = t.get(key(b'r', first)).unwrap().unwrap();
        t.insert(key(b'r', 121), a).unwrap();
    });
    let r = f.full(&[]);
    assert!(
        has(
            &r,
            &format!(
                "records 121..{} lie beyond the log's 120 events: they were inserted",
                120 + count
            )
        ),
        "{:?}",
        r.problems
    );
}

#[test]
fn an_altered_checkpoint_is_detected() {
    let f = fixture(120);
    with_tree(&f.data, |t| {
        let v = t.get(key(b'c', 80)).unwrap().unwrap();
        let text = String::from_utf8(v.to_vec()).unwrap();
        let lines: Vec<&str> = text.split('\n').collect();
        let forged_root = "A".repeat(43) + "=";
        let altered = text.replacen(lines[2], &forged_root, 1);
        t.insert(key(b'c', 80), altered.into_bytes()).unwrap();
    });
    let r = f.full(&[]);
    assert!(
        has(
            &r,
            "stored checkpoint at size 80: checkpoint signature does not verify"
        ),
        "{:?}",
        r.problems
    );
}

#[test]
fn a_checkpoint_signed_by_another_key_is_detected() {
    let f = fixture(120);
    let (other, _) = SigningKey::generate().unwrap();
    with_tree(&f.data, |t| {
        let v = t.get(key(b'c', 120)).unwrap().unwrap();
        let cp = Checkpoint::parse_unverified(std::str::from_utf8(&v).unwrap()).unwrap();
        t.insert(key(b'c', 120), cp.sign(&other).into_bytes())
            .unwrap();
    });
    let r = f.full(&[]);
    assert!(
        has(
            &r,
            "stored checkpoint at size 120: checkpoint is not signed by this key"
        ),
        "{:?}",
        r.problems
    );
}

#[test]
fn a_store_replaced_by_an_older_copy_is_detected() {
    let f = fixture(100);
    // Keep a copy of the store as it is now...
    let old = f._dir.path().join("old-copy");
    fs::copy_dir(&f.data, &old);
    // ...let it grow, and have the auditor save a checkpoint...
    f.append(
        &Generator::new(GenConfig {
            count: 60,
            accounts: 2,
            seed: 18,
            ..GenConfig::default()
        })
        .map(|b| CloudTrailEvent::parse(b).unwrap())
        .collect::<Vec<_>>(),
    );
    let saved = f.latest();
    // ...then put the old copy back.
    std::fs::remove_dir_all(&f.data).unwrap();
    fs::copy_dir(&old, &f.data);
    let r = f.full(std::slice::from_ref(&saved));
    assert!(
        has(
            &r,
            "auditor.json: covers 160 events but the store holds 100: the store was rolled back or replaced by an older copy"
        ),
        "{:?}",
        r.problems
    );
    let p = verify_public(&f.data, &f.vk(), &[saved]);
    assert!(!p.ok());
}

#[test]
fn tampered_index_entries_are_detected() {
    let f = fixture(120);
    // The dedup blind of the first event of the first group: header (1+8+4) + time (8).
    with_tree(&f.data, |t| {
        let mut v = t.get(key(b'x', 1)).unwrap().unwrap().to_vec();
        v[13 + 8] ^= 0xff;
        t.insert(key(b'x', 1), v).unwrap();
    });
    let r = f.full(&[]);
    assert!(
        has(
            &r,
            "record 1: its dedup entry is missing or points elsewhere"
        ),
        "{:?}",
        r.problems
    );
}

#[test]
fn corrupted_storage_files_never_verify() {
    let f = fixture(300);
    let saved = f.latest();
    let db_file = f.data.join("db");
    let mut bytes = std::fs::read(&db_file).unwrap();
    let n = bytes.len();
    // Damage spread over the whole file: live pages, old pages and headers alike.
    for i in (0..n).step_by(997) {
        bytes[i] ^= 0x5a;
    }
    std::fs::write(&db_file, bytes).unwrap();
    let r = f.full(std::slice::from_ref(&saved));
    assert!(!r.ok(), "a corrupted store must not verify");
    // Here sled refuses the damaged file: reported as such, never as OK.
    assert!(has(&r, "store cannot be opened"), "{:?}", r.problems);
}

#[test]
fn every_event_has_an_inclusion_proof_and_checkpoints_are_consistent() {
    let f = fixture(300);
    let l = Ledger::open(
        &f.data,
        f.provider(),
        LedgerConfig {
            read_only: true,
            ..LedgerConfig::default()
        },
    )
    .unwrap();
    let vk = f.vk();
    let cps: Vec<Checkpoint> = l
        .checkpoints()
        .unwrap()
        .iter()
        .map(|(_, n)| Checkpoint::verify(n, &vk).unwrap())
        .collect();
    let last = cps.last().unwrap();
    assert_eq!(last.size, 300);
    for seq in (1..=300u64).step_by(7) {
        let ev = l.read(seq).unwrap();
        let parsed = CloudTrailEvent::parse(ev.bytes.clone()).unwrap();
        let leaf = event_leaf(
            seq,
            ev.account.as_str(),
            &parsed.fields().event_id,
            &orgtrail_crypto::hash::sha256(&ev.bytes),
        );
        for cp in cps.iter().filter(|c| c.size >= seq) {
            let proof = l.inclusion_proof(seq, cp.size).unwrap();
            assert!(
                verify_inclusion(&leaf, seq - 1, cp.size, &proof, &cp.root),
                "seq {seq} in {}",
                cp.size
            );
        }
    }
    for a in &cps {
        for b in cps.iter().filter(|b| b.size >= a.size) {
            let proof = l.consistency_proof(a.size, b.size).unwrap();
            assert!(
                verify_consistency(a.size, b.size, &a.root, &b.root, &proof),
                "{} -> {}",
                a.size,
                b.size
            );
        }
    }
}

/// The last group (events 81..120) as an interrupted write can leave it: one of its parts
/// missing. Each is a torn tail, never acknowledged.
fn tear_last_group(data: &Path, part: &str) {
    with_tree(data, |t| match part {
        // Everything of the group gone but its counter deltas.
        "all but counters" => {
            for p in ["chunk", "leaf hashes", "records", "next_seq"] {
                tear_last_group_in(t, p);
            }
        }
        p => tear_last_group_in(t, p),
    });
}

fn tear_last_group_in(t: &sled::Tree, part: &str) {
    match part {
        "chunk" => {
            t.remove(key(b'x', 81)).unwrap();
        }
        "leaf hashes" => {
            t.remove(key(b'h', 81)).unwrap();
        }
        "records" => {
            // Every block of the last group (events 81..=120).
            for kv in t.range(key(b'r', 81)..key(b'r', 121)) {
                t.remove(kv.unwrap().0).unwrap();
            }
        }
        "next_seq" => {
            t.insert(b"mnext_seq", 81u64.to_be_bytes().to_vec())
                .unwrap();
        }
        // As a write that failed on a full disk once left: the chunk gone, and only some of
        // the group's record blocks, not the first, still there.
        // Earlier versions of format 2 wrote a locator per block (a group's are one value
        // now), which such a write could leave in part.
        "chunk and some records" => {
            t.remove(key(b'x', 81)).unwrap();
            let v = t.remove(key(b'r', 81)).unwrap().unwrap();
            let blocks = one_value_per_block(81, &v);
            assert!(blocks.len() >= 3, "the group has several blocks");
            for (i, (first, value)) in blocks.into_iter().enumerate() {
                if i != 0 && i != 2 {
                    t.insert(key(b'r', first), value).unwrap();
                }
            }
        }
        other => panic!("{other}"),
    }
}

/// A group's `r` value (first seq `first`) as earlier versions of format 2 wrote it: one value
/// per block, `0x80, count (u16), file (u32), offset (u64), length (u32)` (see the store's
/// `log` module).
fn one_value_per_block(first: u64, v: &[u8]) -> Vec<(u64, Vec<u8>)> {
    assert_eq!(v[0], 0x81, "a group's blocks, located");
    let n = usize::from(u16::from_be_bytes([v[13], v[14]]));
    let mut offset = u64::from_be_bytes(v[5..13].try_into().unwrap());
    let mut seq = first;
    let mut out = Vec::new();
    for i in 0..n {
        let e = &v[15 + 6 * i..21 + 6 * i];
        let mut b = vec![0x80];
        b.extend_from_slice(&e[..2]);
        b.extend_from_slice(&v[1..5]);
        b.extend_from_slice(&offset.to_be_bytes());
        b.extend_from_slice(&e[2..6]);
        out.push((seq, b));
        seq += u64::from(u16::from_be_bytes([e[0], e[1]]));
        offset += u64::from(u32::from_be_bytes(e[2..6].try_into().unwrap()));
    }
    out
}

#[test]
fn records_located_a_block_per_value_as_earlier_versions_wrote_them_still_read() {
    let f = fixture(120);
    with_tree(&f.data, |t| {
        let groups: Vec<_> = t.scan_prefix([b'r']).map(|kv| kv.unwrap()).collect();
        assert_eq!(groups.len(), 3, "one value per group");
        for (k, v) in groups {
            let first = u64::from_be_bytes(k[1..9].try_into().unwrap());
            t.remove(&k).unwrap();
            for (seq, value) in one_value_per_block(first, &v) {
                t.insert(key(b'r', seq), value).unwrap();
            }
        }
    });
    let r = f.full(&[]);
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(r.events, 120);
    let ledger = f.open();
    for seq in 1..=120 {
        ledger.read(seq).unwrap();
    }
    ledger.close().unwrap();
}

/// Counts from the counters equal counts from decrypting every record.
fn counters_agree_with_records(ledger: &Ledger, events: u64, what: &str) {
    use orgtrail_store::{Group, Query};
    let by = [Group::Account, Group::EventName, Group::User, Group::Region];
    let counted = ledger
        .count_at_most(&Query::default(), &by, 10_000, 0)
        .unwrap();
    let scanned = ledger
        .count_by_scan(&Query::default(), &by, 10_000, usize::MAX)
        .unwrap();
    assert_eq!(counted.total, events, "{what}: counters");
    assert_eq!(scanned.total, events, "{what}: records");
    assert_eq!(counted.groups, scanned.groups, "{what}");
    assert!(counted.scan.is_none() && !counted.limit_hit, "{what}");
}

#[test]
fn a_torn_last_group_is_cut_at_open_and_never_reported_as_tampering() {
    for part in [
        "chunk",
        "leaf hashes",
        "records",
        "next_seq",
        "all but counters",
        "chunk and some records",
    ] {
        let f = fixture(120);
        with_tree(&f.data, |t| {
            assert!(
                t.scan_prefix(b"n").count() >= 3,
                "{part}: each group wrote its counter deltas"
            );
        });
        tear_last_group(&f.data, part);
        let ledger = f.open();
        assert_eq!(ledger.stats().events, 80, "{part}: the whole prefix stays");
        // The torn group's counters were cut with it.
        counters_agree_with_records(&ledger, 80, part);
        ledger.close().unwrap();
        drop(ledger);
        let r = f.full(&[]);
        assert!(r.problems.is_empty(), "{part}: {:?}", r.problems);
        // The agent resends what was never acknowledged: it is stored again, once.
        f.append(&f.events[80..]);
        let ledger = f.open();
        assert_eq!(ledger.stats().events, 120, "{part}");
        counters_agree_with_records(&ledger, 120, part);
        ledger.close().unwrap();
        drop(ledger);
        let r = f.full(&[]);
        assert!(r.problems.is_empty(), "{part}: {:?}", r.problems);
    }
}

#[test]
fn a_missing_group_before_the_last_is_corruption_and_nothing_is_deleted() {
    let f = fixture(120);
    with_tree(&f.data, |t| {
        t.remove(key(b'x', 41)).unwrap();
    });
    let err = Ledger::open(&f.data, f.provider(), f.cfg()).unwrap_err();
    assert!(
        err.to_string()
            .contains("is not a torn last group; nothing was deleted"),
        "{err}"
    );
    with_tree(&f.data, |t| {
        assert!(t.get(key(b'x', 81)).unwrap().is_some(), "nothing deleted");
        let last_group = t.scan_prefix([b'r']).next_back().unwrap().unwrap().0;
        assert_eq!(last_group.as_ref(), &key(b'r', 81)[..], "nothing deleted");
    });
}

#[test]
fn an_unfinished_sled_snapshot_does_not_stop_the_open() {
    let f = fixture(40);
    // What sled leaves when the disk fills while it writes a snapshot: an empty temporary file.
    std::fs::write(f.data.join("snap.00000000FFFFFFFF.generating"), b"").unwrap();
    let ledger = f.open();
    assert_eq!(ledger.stats().events, 40);
    ledger.close().unwrap();
    drop(ledger);
    assert!(!f.data.join("snap.00000000FFFFFFFF.generating").exists());
    assert!(f.full(&[]).problems.is_empty());
}

/// What the collector's integrity service reads: checkpoints by size range, leaf hashes in
/// pages; streamed as it streams them, they verify with the public key alone.
#[test]
fn checkpoint_ranges_and_leaf_pages_stream_into_a_passing_public_verification() {
    let f = fixture(300);
    let saved = f.latest();
    let ledger = Ledger::open(
        &f.data,
        f.provider(),
        LedgerConfig {
            read_only: true,
            ..LedgerConfig::default()
        },
    )
    .unwrap();
    let all = ledger.checkpoints().unwrap();
    let sizes = |v: Vec<(u64, String)>| v.into_iter().map(|(s, _)| s).collect::<Vec<_>>();
    assert_eq!(sizes(all.clone()), vec![80, 160, 240, 300]);
    assert_eq!(
        ledger.checkpoints_between(0, u64::MAX, 10, false).unwrap(),
        all
    );
    assert_eq!(
        sizes(ledger.checkpoints_between(100, 300, 2, true).unwrap()),
        vec![300, 240]
    );
    assert_eq!(
        sizes(ledger.checkpoints_between(160, 160, 1, false).unwrap()),
        vec![160]
    );
    assert!(
        ledger
            .checkpoints_between(161, 239, 5, false)
            .unwrap()
            .is_empty()
    );
    assert!(
        ledger
            .checkpoints_between(5, 4, 5, false)
            .unwrap()
            .is_empty()
    );
    assert!(ledger.leaves(1, 0).unwrap().is_empty());

    let mut v = orgtrail_store::StreamVerifier::new(f.vk(), vec![saved]);
    v.head(ledger.origin(), 300);
    let mut sent = 0u64;
    let mut send_to = |v: &mut orgtrail_store::StreamVerifier, to: u64| {
        while sent < to {
            let n = (to - sent).min(7);
            let page = ledger.leaves(sent + 1, n).unwrap();
            assert_eq!(page.len() as u64, n);
            assert_eq!(page[0], ledger.leaf(sent + 1).unwrap());
            v.leaf_hashes(&page.concat());
            sent += n;
        }
    };
    for (size, note) in &all {
        send_to(&mut v, *size);
        v.checkpoint(*size, note);
    }
    let r = v.finish();
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!((r.events, r.checkpoints, r.saved_checkpoints), (300, 4, 1));
}

/// The run files of a store, in order.
fn run_files(data: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data.join("index"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "idx"));
    v.sort();
    v
}

/// Section offsets from a run file's footer: times, order, dedup, postings, bloom, directory.
fn run_offsets(bytes: &[u8]) -> Vec<u64> {
    let footer = &bytes[bytes.len() - 96..];
    (0..6)
        .map(|i| u64::from_be_bytes(footer[i * 8..i * 8 + 8].try_into().unwrap()))
        .collect()
}

#[test]
fn a_store_whose_index_is_in_runs_answers_and_verifies_after_reopen() {
    // Runs of 40 events, merged four at a time: 400 events make runs and a merge.
    let f = fixture_with_runs(400, 40);
    let files = run_files(&f.data);
    assert!(!files.is_empty(), "index runs were written");
    let l = f.open();
    assert_eq!(l.stats().events, 400);
    for e in f.events.iter().step_by(37) {
        let fields = e.fields();
        let account: AccountId = fields
            .recipient_account_id
            .as_ref()
            .unwrap()
            .parse()
            .unwrap();
        let got = l.get(&account, &fields.event_id).unwrap().unwrap();
        assert_eq!(got.bytes, e.bytes());
    }
    l.close().unwrap();
    drop(l);
    let r = f.full(&[]);
    assert!(r.ok(), "{:?}", r.problems);
    let p = verify_public(&f.data, &f.vk(), &[]);
    assert!(p.ok(), "{:?}", p.problems);
}

#[test]
fn a_tampered_index_run_is_detected() {
    let f = fixture_with_runs(200, 40);
    let file = run_files(&f.data).into_iter().next().unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    // The first dedup entry's blind: that event can no longer be found by its eventID.
    let dedup = run_offsets(&bytes)[2] as usize;
    bytes[dedup + 3] ^= 0x55;
    std::fs::write(&file, &bytes).unwrap();
    let r = f.full(&[]);
    assert!(
        r.problems
            .iter()
            .any(|p| p.contains("its dedup entry is missing or points elsewhere")),
        "{:?}",
        r.problems
    );
    // Its header or directory altered: the store does not open, and says why.
    bytes[20] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    let err = Ledger::open(&f.data, f.provider(), f.cfg()).unwrap_err();
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
}

#[test]
fn a_missing_index_run_is_corruption_and_a_stray_one_is_removed() {
    let f = fixture_with_runs(200, 40);
    let files = run_files(&f.data);
    // A file no entry names (a crash between writing a run and registering it) goes.
    let stray = f
        .data
        .join("index/run-00000000000fffff-0000000000100000.idx");
    std::fs::copy(&files[0], &stray).unwrap();
    f.open().close().unwrap();
    assert!(
        !stray.exists(),
        "an unregistered run file is removed at open"
    );
    assert_eq!(run_files(&f.data), files, "registered runs stay");
    std::fs::remove_file(&files[0]).unwrap();
    let err = Ledger::open(&f.data, f.provider(), f.cfg()).unwrap_err();
    assert!(err.to_string().contains("is missing"), "{err}");
}

#[test]
fn a_torn_last_group_after_index_runs_is_cut() {
    // A run covers the first two groups; the torn group lies after it.
    let f = fixture_with_runs(120, 80);
    assert!(!run_files(&f.data).is_empty());
    tear_last_group(&f.data, "records");
    let ledger = f.open();
    assert_eq!(ledger.stats().events, 80, "the whole prefix stays");
    ledger.close().unwrap();
    drop(ledger);
    f.append(&f.events[80..]);
    let r = f.full(&[]);
    assert!(r.ok(), "{:?}", r.problems);
}

#[test]
fn a_store_of_format_1_is_refused_with_the_way_to_upgrade_it() {
    let f = fixture(40);
    with_tree(&f.data, |t| {
        t.insert(b"mformat", 1u64.to_be_bytes().to_vec()).unwrap();
    });
    let err = Ledger::open(&f.data, f.provider(), f.cfg())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("has format 1, this orgtrail reads format 4"),
        "{err}"
    );
    assert!(err.contains("orgtrail store upgrade --data-dir"), "{err}");
    // Nothing was changed: the format is still 1.
    with_tree(&f.data, |t| {
        assert_eq!(
            t.get(b"mformat").unwrap().unwrap().to_vec(),
            1u64.to_be_bytes().to_vec()
        );
    });
}
