//! Property test: the sled ledger behaves exactly like the in-memory reference model under
//! any sequence of appends (new events, redeliveries, conflicting copies; directly or through
//! the collector's prepared path), restarts, queries and proofs: same outcomes, same sequence
//! numbers, same pages, same counts, the same Merkle log (heads, checkpoints at the same sizes
//! with the same roots, identical proofs that verify with the public key).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::account_of;
use std::sync::Arc;

use orgtrail_core::{AccountId, CloudTrailEvent, Timestamp};
use orgtrail_crypto::checkpoint::Checkpoint;
use orgtrail_crypto::merkle::{verify_consistency, verify_inclusion};
use orgtrail_crypto::signing::{SigningKey, VerifyingKey};
use orgtrail_crypto::{Keyring, LocalKeyProvider};
use orgtrail_gen::{GenConfig, Generator};
use orgtrail_store::{
    Attr, EventStore, Group, Ledger, LedgerConfig, MemoryConfig, MemoryStore, Query, StoredEvent,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Append these pool events; `true` appends a conflicting copy instead. The last `bool`
    /// goes through the prepared path (per-thread preparer, `append_prepared`).
    Append(Vec<(usize, bool)>, bool),
    Reopen,
    /// A query built from pool event `usize`'s values, with one of several shapes.
    Query(usize, u8, usize),
    /// Counts for a query shape (as `Query`), a time range shape and a grouping.
    Count(usize, u8, u8, u8),
    /// Sign a checkpoint now.
    Checkpoint,
    /// Prove pool event `usize` (if stored) in the log at a size between it and the head
    /// (fraction `u8`/255), and the consistency of that size with the head.
    Prove(usize, u8),
    /// Read the event at a sequence number (fraction `u8`/255 of the head, past it for 255).
    Read(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (proptest::collection::vec((0..POOL, proptest::bool::weighted(0.1)), 1..25), any::<bool>())
            .prop_map(|(items, prepared)| Op::Append(items, prepared)),
        1 => Just(Op::Reopen),
        4 => (0..POOL, 0u8..10, 1usize..40).prop_map(|(i, k, l)| Op::Query(i, k, l)),
        3 => (0..POOL, 0u8..10, 0u8..4, 1u8..64).prop_map(|(i, k, r, b)| Op::Count(i, k, r, b)),
        1 => Just(Op::Checkpoint),
        3 => (0..POOL, any::<u8>()).prop_map(|(i, f)| Op::Prove(i, f)),
        1 => any::<u8>().prop_map(Op::Read),
    ]
}

const POOL: usize = 150;

/// Generated events, and every tenth an Insight event (of the account and around the time
/// of the event before it).
fn pool() -> Vec<CloudTrailEvent> {
    let mut v: Vec<CloudTrailEvent> = Generator::new(GenConfig {
        count: POOL as u64,
        accounts: 3,
        seed: 99,
        ..GenConfig::default()
    })
    .map(|b| CloudTrailEvent::parse(b).unwrap())
    .collect();
    for i in (9..POOL).step_by(10) {
        let before = &v[i - 1];
        let (state, kind) = match i % 3 {
            0 => ("Start", "ApiCallRateInsight"),
            1 => ("End", "ApiCallRateInsight"),
            _ => ("Start", "ApiErrorRateInsight"),
        };
        v[i] = common::insight_event(
            account_of(before).as_str(),
            i as u32,
            before.fields().event_time.millis() / 60_000,
            state,
            kind,
        );
    }
    v
}

fn forged(e: &CloudTrailEvent) -> CloudTrailEvent {
    let s = String::from_utf8(e.bytes().to_vec()).unwrap();
    CloudTrailEvent::parse(s.replacen("\"eventVersion\"", "\"replayed\":true,\"eventVersion\"", 1))
        .unwrap()
}

fn query_for(e: &CloudTrailEvent, kind: u8, limit: usize) -> Query {
    let f = e.fields();
    let mut q = Query {
        limit,
        ..Query::default()
    };
    match kind {
        0 => {}
        1 => q.filters.push((Attr::EventName, f.event_name.to_string())),
        2 => q
            .filters
            .push((Attr::Username, f.username().unwrap_or("-").to_string())),
        3 => q.filters.push((Attr::Account, account_of(e).to_string())),
        4 => q.event_id = Some(f.event_id.clone()),
        5 => {
            q.filters.push((
                Attr::Region,
                f.aws_region.as_deref().unwrap_or_default().to_string(),
            ));
            q.filters.push((Attr::ReadOnly, "true".into()));
        }
        6 => {
            q.start = Some(Timestamp(f.event_time.millis() - 30_000));
            q.end = Some(f.event_time);
        }
        7 => q
            .filters
            .push((Attr::EventCategory, f.event_category.as_str().to_owned())),
        8 => q.filters.push((
            Attr::InsightType,
            f.insight_type
                .as_deref()
                .unwrap_or("ApiCallRateInsight")
                .to_string(),
        )),
        _ => q.filters.push((
            Attr::ResourceName,
            f.resource_names
                .first()
                .map(|n| n.to_string())
                .unwrap_or_default(),
        )),
    }
    q
}

const HOUR: i64 = 3_600_000;

/// A count query: a query shape, a time range around the event (none, whole hours, ragged
/// edges, a start only), grouped by the fields of the bit mask `by`.
fn count_for(e: &CloudTrailEvent, kind: u8, range: u8, by: u8) -> (Query, Vec<Group>) {
    let mut q = query_for(e, kind, 0);
    let t = e.fields().event_time.millis();
    let hour = t - t.rem_euclid(HOUR);
    match range {
        0 => {}
        1 => {
            q.start = Some(Timestamp(hour - HOUR));
            q.end = Some(Timestamp(hour + HOUR - 1));
        }
        2 => {
            q.start = Some(Timestamp(t - 90 * 60_000));
            q.end = Some(Timestamp(t + 7 * 60_000));
        }
        _ => q.start = Some(Timestamp(t - 61_000)),
    }
    let all = [
        Group::Account,
        Group::EventSource,
        Group::EventName,
        Group::User,
        Group::ErrorCode,
        Group::Region,
    ];
    let by = all
        .iter()
        .enumerate()
        .filter(|(i, _)| by & (1 << i) != 0)
        .map(|(_, g)| *g)
        .collect();
    (q, by)
}

fn pages(store: &dyn EventStore, mut q: Query) -> Vec<(Vec<StoredEvent>, Option<String>)> {
    let mut out = Vec::new();
    loop {
        let p = store.query(&q).unwrap();
        assert_eq!(
            p.indexed_from, None,
            "every attribute indexed from the first event"
        );
        let next = p.next_token.clone();
        out.push((p.events, p.next_token));
        match next {
            Some(t) => q.page_token = Some(t),
            None => return out,
        }
    }
}

/// Appends through the collector's path: a preparer, then `append_prepared`.
fn append_prepared(
    store: &dyn EventStore,
    batch: &[(CloudTrailEvent, AccountId)],
) -> orgtrail_store::AppendOutcome {
    let mut p = store.preparer();
    let prepared = batch
        .iter()
        .map(|(e, a)| p.prepare(e, *a).unwrap())
        .collect();
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(store.append_prepared(prepared))
        .unwrap()
}

/// Every checkpoint as (size, root), checked with the public key and the store's origin.
fn checkpoints(store: &dyn EventStore, key: &VerifyingKey) -> Vec<(u64, [u8; 32])> {
    store
        .checkpoints_between(0, u64::MAX, usize::MAX, false)
        .unwrap()
        .into_iter()
        .map(|(size, note)| {
            let cp = Checkpoint::verify(&note, key).unwrap();
            assert_eq!((cp.size, cp.origin.as_str()), (size, store.origin()));
            (cp.size, cp.root)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn sled_ledger_matches_the_reference_model(ops in proptest::collection::vec(op(), 1..20)) {
        let pool = pool();
        let keys = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        Keyring::generate("t").unwrap().save_new(&keys.path().join("keyring.json")).unwrap();
        let provider = Arc::new(LocalKeyProvider::load(keys.path()).unwrap());
        // Counter deltas are merged every few groups, so counts cross merged and unmerged ones.
        let (signer, _) = SigningKey::generate().unwrap();
        let key = VerifyingKey::from_raw(signer.public_key());
        let signer = Arc::new(signer);
        let cfg = LedgerConfig {
            signer: Some(signer.clone()),
            // Checkpoints every 30 new events and on demand, never by time.
            checkpoint_records: 30,
            checkpoint_interval: std::time::Duration::from_secs(86_400),
            dict_train_after: 40,
            block_records: 4,
            count_merge_after: 3,
            index_run_events: 8,
            ..LedgerConfig::default()
        };
        let mut sled = Ledger::open(data.path(), provider.clone(), cfg.clone()).unwrap();
        let model = MemoryStore::with_config(MemoryConfig {
            signer: Some(signer),
            checkpoint_records: 30,
        });
        for op in ops {
            match op {
                Op::Append(items, prepared) => {
                    let batch: Vec<(CloudTrailEvent, AccountId)> = items
                        .iter()
                        .map(|&(i, forge)| {
                            let e = if forge { forged(&pool[i]) } else { pool[i].clone() };
                            let a = account_of(&pool[i]);
                            (e, a)
                        })
                        .collect();
                    let (a, b) = if prepared {
                        (append_prepared(&sled, &batch), append_prepared(&model, &batch))
                    } else {
                        (sled.append_events(&batch).unwrap(), model.append_events(&batch).unwrap())
                    };
                    prop_assert_eq!(a, b);
                }
                Op::Reopen => {
                    // Both sign a last checkpoint at close.
                    sled.close().unwrap();
                    model.close().unwrap();
                    drop(sled);
                    sled = Ledger::open(data.path(), provider.clone(), cfg.clone()).unwrap();
                }
                Op::Query(i, kind, limit) => {
                    let q = query_for(&pool[i], kind, limit);
                    prop_assert_eq!(pages(&sled, q.clone()), pages(&model, q));
                }
                Op::Count(i, kind, range, by) => {
                    let (q, by) = count_for(&pool[i], kind, range, by);
                    let a = sled.count(&q, &by, 50).unwrap();
                    let b = model.count(&q, &by, 50).unwrap();
                    prop_assert_eq!((&a.groups, a.total, a.limit_hit), (&b.groups, b.total, b.limit_hit));
                }
                Op::Checkpoint => {
                    let a = sled.checkpoint_now().unwrap().map(|c| c.0);
                    let b = model.checkpoint_now().unwrap().map(|c| c.0);
                    prop_assert_eq!(a, b);
                }
                Op::Prove(i, f) => {
                    let e = &pool[i];
                    let account = account_of(e);
                    let id = &e.fields().event_id;
                    let found = sled.get(&account, id).unwrap();
                    prop_assert_eq!(&found, &model.get(&account, id).unwrap());
                    let head = sled.tree_head().unwrap().0;
                    if let Some(found) = found {
                        let seq = found.seq;
                        let size = seq + (head - seq) * u64::from(f) / 255;
                        let proof = sled.inclusion_proof(seq, size).unwrap();
                        prop_assert_eq!(&proof, &model.inclusion_proof(seq, size).unwrap());
                        let leaf = sled.leaves(seq, 1).unwrap()[0];
                        prop_assert_eq!(leaf, model.leaves(seq, 1).unwrap()[0]);
                        let root = model.root_at(size).unwrap();
                        prop_assert_eq!(root, sled.root_at(size).unwrap());
                        prop_assert!(verify_inclusion(&leaf, seq - 1, size, &proof, &root));
                        let c = sled.consistency_proof(size, head).unwrap();
                        prop_assert_eq!(&c, &model.consistency_proof(size, head).unwrap());
                        let head_root = model.tree_head().unwrap().1;
                        prop_assert!(verify_consistency(size, head, &root, &head_root, &c));
                    }
                }
                Op::Read(f) => {
                    let head = sled.tree_head().unwrap().0;
                    let seq = if f == 255 { head + 1 } else { 1 + head * u64::from(f) / 255 };
                    match (sled.read(seq), model.read(seq)) {
                        (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
                        (Err(_), Err(_)) => prop_assert!(seq > head),
                        (a, b) => prop_assert!(false, "read {}: {:?} vs {:?}", seq, a, b),
                    }
                }
            }
            prop_assert_eq!(sled.stats().events, model.stats().events);
            prop_assert_eq!(sled.tree_head().unwrap(), model.tree_head().unwrap());
            prop_assert_eq!(checkpoints(&sled, &key), checkpoints(&model, &key));
        }
    }
}
