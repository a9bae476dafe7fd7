//! Property test: the sled ledger behaves exactly like the in-memory reference model under
//! any sequence of appends (new events, redeliveries, conflicting copies), restarts and
//! queries: same outcomes, same sequence numbers, same pages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use orgtrail_core::{AccountId, CloudTrailEvent, Timestamp};
use orgtrail_crypto::{Keyring, LocalKeyProvider};
use orgtrail_gen::{GenConfig, Generator};
use orgtrail_store::{Attr, EventStore, Ledger, LedgerConfig, MemoryStore, Query, StoredEvent};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Append these pool events; `true` appends a conflicting copy instead.
    Append(Vec<(usize, bool)>),
    Reopen,
    /// A query built from pool event `usize`'s values, with one of several shapes.
    Query(usize, u8, usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => proptest::collection::vec((0..POOL, proptest::bool::weighted(0.1)), 1..25).prop_map(Op::Append),
        1 => Just(Op::Reopen),
        4 => (0..POOL, 0u8..8, 1usize..40).prop_map(|(i, k, l)| Op::Query(i, k, l)),
    ]
}

const POOL: usize = 150;

fn pool() -> Vec<CloudTrailEvent> {
    Generator::new(GenConfig {
        count: POOL as u64,
        accounts: 3,
        seed: 99,
        ..GenConfig::default()
    })
    .map(|b| CloudTrailEvent::parse(b).unwrap())
    .collect()
}

fn forged(e: &CloudTrailEvent) -> CloudTrailEvent {
    let s = String::from_utf8(e.bytes().to_vec()).unwrap();
    CloudTrailEvent::parse(s.replacen("\"eventVersion\"", "\"replayed\":true,\"eventVersion\"", 1))
        .unwrap()
}

fn account_of(e: &CloudTrailEvent) -> AccountId {
    e.fields()
        .recipient_account_id
        .as_ref()
        .unwrap()
        .parse()
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
        1 => q.filters.push((Attr::EventName, f.event_name.clone())),
        2 => q
            .filters
            .push((Attr::Username, f.username().unwrap_or("-").to_string())),
        3 => q.filters.push((Attr::Account, account_of(e).to_string())),
        4 => q.event_id = Some(f.event_id.clone()),
        5 => {
            q.filters
                .push((Attr::Region, f.aws_region.clone().unwrap_or_default()));
            q.filters.push((Attr::ReadOnly, "true".into()));
        }
        6 => {
            q.start = Some(Timestamp(f.event_time.millis() - 30_000));
            q.end = Some(f.event_time);
        }
        _ => q.filters.push((
            Attr::ResourceName,
            f.resource_names.first().cloned().unwrap_or_default(),
        )),
    }
    q
}

fn pages(store: &dyn EventStore, mut q: Query) -> Vec<(Vec<StoredEvent>, Option<String>)> {
    let mut out = Vec::new();
    loop {
        let p = store.query(&q).unwrap();
        let next = p.next_token.clone();
        out.push((p.events, p.next_token));
        match next {
            Some(t) => q.page_token = Some(t),
            None => return out,
        }
    }
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
        let cfg = LedgerConfig { dict_train_after: 40, block_records: 4, index_run_events: 8, ..LedgerConfig::default() };
        let mut sled = Ledger::open(data.path(), provider.clone(), cfg.clone()).unwrap();
        let model = MemoryStore::new();
        for op in ops {
            match op {
                Op::Append(items) => {
                    let batch: Vec<(CloudTrailEvent, AccountId)> = items
                        .iter()
                        .map(|&(i, forge)| {
                            let e = if forge { forged(&pool[i]) } else { pool[i].clone() };
                            let a = account_of(&pool[i]);
                            (e, a)
                        })
                        .collect();
                    let a = sled.append_events(&batch).unwrap();
                    let b = model.append_events(&batch).unwrap();
                    prop_assert_eq!(a, b);
                }
                Op::Reopen => {
                    sled.close().unwrap();
                    drop(sled);
                    sled = Ledger::open(data.path(), provider.clone(), cfg.clone()).unwrap();
                }
                Op::Query(i, kind, limit) => {
                    let q = query_for(&pool[i], kind, limit);
                    prop_assert_eq!(pages(&sled, q.clone()), pages(&model, q));
                }
            }
            prop_assert_eq!(sled.stats().events, model.stats().events);
        }
    }
}
