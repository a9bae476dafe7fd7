//! The conformance suite of [`EventStore`]: run against the sled ledger and against the
//! in-memory reference model, with the same expectations (an oracle over the input events):
//! appends and dedup, lookups, counts, the prepared-append path the collector uses, and the
//! Merkle log (checkpoints, inclusion and consistency proofs, stored leaves) checked with only
//! the public key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::account_of;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use orgtrail_core::{AccountId, CloudTrailEvent, Timestamp};
use orgtrail_crypto::checkpoint::Checkpoint;
use orgtrail_crypto::hash::sha256;
use orgtrail_crypto::merkle::{Hash, verify_consistency, verify_inclusion};
use orgtrail_crypto::signing::{SigningKey, VerifyingKey};
use orgtrail_crypto::{KeyProvider, Keyring, LocalKeyProvider};
use orgtrail_gen::{GenConfig, Generator};
use orgtrail_store::{
    Appended, Attr, EventStore, Group, Ledger, LedgerConfig, MemoryConfig, MemoryStore, Query,
    StoreError, StoredEvent, StreamVerifier, event_leaf,
};

type Case = (Attr, String, Box<dyn Fn(&CloudTrailEvent) -> bool>);

fn provider(dir: &Path) -> Arc<dyn KeyProvider> {
    let path = dir.join("keyring.json");
    Keyring::generate("t").unwrap().save_new(&path).unwrap();
    Arc::new(LocalKeyProvider::load(dir).unwrap())
}

fn sled_store(keys: &Path, data: &Path) -> Ledger {
    sled_signed(keys, data, None)
}

/// Checkpoints every [`CHECKPOINT_RECORDS`] new events (never by time, so that both stores
/// sign at the same sizes).
const CHECKPOINT_RECORDS: u64 = 400;

fn sled_signed(keys: &Path, data: &Path, signer: Option<Arc<SigningKey>>) -> Ledger {
    let cfg = LedgerConfig {
        dict_train_after: 300,
        block_records: 8,
        index_run_events: 50,
        signer,
        checkpoint_records: CHECKPOINT_RECORDS,
        checkpoint_interval: std::time::Duration::from_secs(86_400),
        ..LedgerConfig::default()
    };
    Ledger::open(data, provider(keys), cfg).unwrap()
}

fn memory_signed(signer: Option<Arc<SigningKey>>) -> MemoryStore {
    MemoryStore::with_config(MemoryConfig {
        signer,
        checkpoint_records: CHECKPOINT_RECORDS,
    })
}

fn signing_key() -> (Arc<SigningKey>, VerifyingKey) {
    let (k, _) = SigningKey::generate().unwrap();
    let vk = VerifyingKey::from_raw(k.public_key());
    (Arc::new(k), vk)
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

fn append(store: &dyn EventStore, evs: &[CloudTrailEvent]) -> Vec<Appended> {
    let mut out = Vec::new();
    for chunk in evs.chunks(250) {
        let batch: Vec<(CloudTrailEvent, AccountId)> =
            chunk.iter().map(|e| (e.clone(), account_of(e))).collect();
        out.extend(store.append_events(&batch).unwrap().results);
    }
    out
}

fn all(store: &dyn EventStore, mut q: Query) -> Vec<StoredEvent> {
    let mut out = Vec::new();
    loop {
        let page = store.query(&q).unwrap();
        out.extend(page.events);
        match page.next_token {
            Some(t) => q.page_token = Some(t),
            None => return out,
        }
    }
}

fn expected(evs: &[CloudTrailEvent], pred: impl Fn(&CloudTrailEvent) -> bool) -> Vec<Vec<u8>> {
    // Sequence numbers follow `append`: per call of 250 events, account by account, each
    // account's events in the order given.
    let mut rank = vec![0usize; evs.len()];
    let mut next = 0;
    for (c, chunk) in evs.chunks(250).enumerate() {
        let mut idx: Vec<usize> = (c * 250..c * 250 + chunk.len()).collect();
        idx.sort_by_key(|&i| account_of(&evs[i]));
        for i in idx {
            rank[i] = next;
            next += 1;
        }
    }
    let mut v: Vec<(i64, usize, usize)> = evs
        .iter()
        .enumerate()
        .filter(|(_, e)| pred(e))
        .map(|(i, e)| (e.fields().event_time.millis(), rank[i], i))
        .collect();
    v.sort_by(|a, b| b.cmp(a));
    v.into_iter()
        .map(|(_, _, i)| evs[i].bytes().to_vec())
        .collect()
}

fn bytes(v: &[StoredEvent]) -> Vec<Vec<u8>> {
    v.iter().map(|e| e.bytes.clone()).collect()
}

fn duplicates_and_conflicts(store: &dyn EventStore) {
    let evs = events(500, 5);
    assert!(
        append(store, &evs[..300])
            .iter()
            .all(|r| matches!(r, Appended::Stored(_)))
    );
    let again = append(store, &evs[200..]);
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
    let forged = String::from_utf8(evs[7].bytes().to_vec())
        .unwrap()
        .replacen("\"eventVersion\"", "\"forged\":1,\"eventVersion\"", 1);
    let r = append(store, &[CloudTrailEvent::parse(forged).unwrap()]);
    assert!(matches!(r[0], Appended::Conflict(_)), "{r:?}");
    // The same eventID in another account is another event.
    let other: AccountId = "000000000001".parse().unwrap();
    let r = store.append_events(&[(evs[7].clone(), other)]).unwrap();
    assert!(matches!(r.results[0], Appended::Stored(_)));
    assert_eq!(store.stats().events, 501);
    assert_eq!(
        bytes(&all(
            store,
            Query {
                limit: 1000,
                ..Query::default()
            }
        ))
        .len(),
        501
    );
}

#[test]
fn sled_every_attribute_newest_first() {
    let (k, d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    every_attribute_newest_first(&sled_store(k.path(), d.path()));
}

#[test]
fn memory_every_attribute_newest_first() {
    every_attribute_newest_first(&MemoryStore::new());
}

#[test]
fn sled_insight_events_by_category_and_type() {
    let (k, d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    insight_events_by_category_and_type(&sled_store(k.path(), d.path()));
}

#[test]
fn memory_insight_events_by_category_and_type() {
    insight_events_by_category_and_type(&MemoryStore::new());
}

/// Insight events among ordinary ones: a lookup by eventCategory Insight finds them and
/// nothing else; by insightType, those of that type; by eventCategory Management, the others
/// (a category absent from an event counts as Management). The answer is complete (a store
/// created with these attributes indexes them from its first event).
fn insight_events_by_category_and_type(store: &dyn EventStore) {
    let mut evs = events(600, 11);
    let account = account_of(&evs[0]).to_string();
    let minute = evs[300].fields().event_time.millis() / 60_000;
    let insights = [
        common::insight_event(&account, 1, minute, "Start", "ApiCallRateInsight"),
        common::insight_event(&account, 2, minute + 9, "End", "ApiCallRateInsight"),
        common::insight_event(&account, 3, minute + 1, "Start", "ApiErrorRateInsight"),
    ];
    // Spread through the batches, and across an index run boundary (runs of 50 events).
    for (i, e) in insights.iter().enumerate() {
        evs.insert(100 + 200 * i, e.clone());
    }
    assert!(
        append(store, &evs)
            .iter()
            .all(|r| matches!(r, Appended::Stored(_)))
    );
    let by = |attr: Attr, value: &str| {
        let q = Query {
            filters: vec![(attr, value.to_owned())],
            limit: 1000,
            ..Query::default()
        };
        let page = store.query(&q).unwrap();
        assert_eq!(page.indexed_from, None, "{attr:?}: a complete answer");
        all(store, q)
    };
    let is_insight = |e: &CloudTrailEvent| e.fields().is_insight();
    let got = by(Attr::EventCategory, "Insight");
    assert_eq!(got.len(), 3);
    assert_eq!(bytes(&got), expected(&evs, is_insight));
    let got = by(Attr::InsightType, "ApiCallRateInsight");
    assert_eq!(
        bytes(&got),
        expected(&evs, |e| e.fields().insight_type.as_deref()
            == Some("ApiCallRateInsight"))
    );
    assert_eq!(got.len(), 2);
    let got = by(Attr::InsightType, "ApiErrorRateInsight");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].bytes, insights[2].bytes());
    let management = expected(&evs, |e| {
        e.fields().event_category == orgtrail_core::EventCategory::Management
    });
    assert!(management.len() > 100);
    assert_eq!(bytes(&by(Attr::EventCategory, "Management")), management);
    // Combined with another filter and a time range.
    let q = Query {
        filters: vec![
            (Attr::EventCategory, "Insight".into()),
            (Attr::Account, account.clone()),
        ],
        start: Some(Timestamp(minute * 60_000 + 30_000)),
        limit: 1000,
        ..Query::default()
    };
    let got = all(store, q);
    assert_eq!(
        bytes(&got),
        vec![insights[1].bytes().to_vec(), insights[2].bytes().to_vec()]
    );
    assert!(
        by(Attr::InsightType, "ApiCallRate").is_empty(),
        "exact values only"
    );
}

#[test]
fn sled_duplicates_and_conflicts() {
    let (k, d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    duplicates_and_conflicts(&sled_store(k.path(), d.path()));
}

#[test]
fn memory_duplicates_and_conflicts() {
    duplicates_and_conflicts(&MemoryStore::new());
}

fn every_attribute_newest_first(ledger: &dyn EventStore) {
    let evs = events(1500, 3);
    let res = append(ledger, &evs);
    assert!(res.iter().all(|r| matches!(r, Appended::Stored(_))));
    assert_eq!(ledger.stats().events, 1500);

    // Everything, paged.
    let got = all(
        ledger,
        Query {
            limit: 70,
            ..Query::default()
        },
    );
    assert_eq!(bytes(&got), expected(&evs, |_| true));

    // One attribute at a time, with a value taken from a real event.
    let probe = evs
        .iter()
        .find(|e| !e.fields().resource_names.is_empty() && e.fields().error_code.is_none())
        .unwrap();
    let f = probe.fields();
    let user = f.username().unwrap().to_string();
    let cases: Vec<Case> = vec![
        (
            Attr::EventName,
            f.event_name.to_string(),
            Box::new({
                let v = f.event_name.clone();
                move |e: &CloudTrailEvent| e.fields().event_name == v
            }),
        ),
        (
            Attr::EventSource,
            f.event_source.to_string(),
            Box::new({
                let v = f.event_source.clone();
                move |e: &CloudTrailEvent| e.fields().event_source == v
            }),
        ),
        (
            Attr::Region,
            f.aws_region.clone().unwrap().to_string(),
            Box::new({
                let v = f.aws_region.clone();
                move |e: &CloudTrailEvent| e.fields().aws_region == v
            }),
        ),
        (
            Attr::Username,
            user.clone(),
            Box::new({
                let v = user.clone();
                move |e: &CloudTrailEvent| e.fields().username() == Some(v.as_str())
            }),
        ),
        (
            Attr::ResourceName,
            f.resource_names[0].to_string(),
            Box::new({
                let v = f.resource_names[0].clone();
                move |e: &CloudTrailEvent| e.fields().resource_names.contains(&v)
            }),
        ),
        (
            Attr::ReadOnly,
            "false".into(),
            Box::new(|e: &CloudTrailEvent| e.fields().read_only == Some(false)),
        ),
        (
            Attr::ErrorCode,
            "AccessDenied".into(),
            Box::new(|e: &CloudTrailEvent| {
                e.fields().error_code.as_deref() == Some("AccessDenied")
            }),
        ),
        (
            Attr::Account,
            account_of(probe).to_string(),
            Box::new({
                let a = account_of(probe);
                move |e: &CloudTrailEvent| account_of(e) == a
            }),
        ),
        (
            Attr::ResourceType,
            "AWS::S3::Bucket".into(),
            Box::new(|e: &CloudTrailEvent| {
                e.fields().resource_types().contains(&"AWS::S3::Bucket")
            }),
        ),
    ];
    for (attr, value, pred) in &cases {
        let got = all(
            ledger,
            Query {
                filters: vec![(*attr, value.clone())],
                limit: 1000,
                ..Query::default()
            },
        );
        let want = expected(&evs, pred);
        assert!(!want.is_empty(), "{attr:?}");
        assert_eq!(bytes(&got), want, "{attr:?}={value}");
    }

    // Combined filters and a time range.
    let start = orgtrail_core::Timestamp(f.event_time.millis() - 600_000);
    let end = f.event_time;
    let q = Query {
        filters: vec![
            (Attr::EventSource, f.event_source.to_string()),
            (Attr::ReadOnly, "true".into()),
        ],
        start: Some(start),
        end: Some(end),
        limit: 7,
        ..Query::default()
    };
    let src = f.event_source.clone();
    let want = expected(&evs, |e| {
        let g = e.fields();
        g.event_source == src
            && g.read_only == Some(true)
            && g.event_time >= start
            && g.event_time <= end
    });
    assert_eq!(bytes(&all(ledger, q)), want);

    // By event id, and get.
    let got = all(
        ledger,
        Query {
            event_id: Some(f.event_id.clone()),
            ..Query::default()
        },
    );
    assert_eq!(bytes(&got), vec![probe.bytes().to_vec()]);
    let one = ledger
        .get(&account_of(probe), &f.event_id)
        .unwrap()
        .unwrap();
    assert_eq!(one.bytes, probe.bytes());
    assert!(
        ledger
            .get(&"999999999999".parse().unwrap(), &f.event_id)
            .unwrap()
            .is_none()
    );

    // A value nobody has.
    assert!(
        ledger
            .query(&Query {
                filters: vec![(Attr::Username, "nobody-at-all".into())],
                ..Query::default()
            })
            .unwrap()
            .events
            .is_empty()
    );
}

/// A reader limited to some accounts sees only them; counts group exactly as an oracle does.
fn accounts_and_counts(store: &dyn EventStore) {
    use orgtrail_store::Group;
    use std::collections::HashMap;
    let evs = events(900, 11);
    append(store, &evs);
    let mut accts: Vec<AccountId> = evs.iter().map(account_of).collect();
    accts.sort();
    accts.dedup();
    assert_eq!(accts.len(), 3);
    let allowed = vec![accts[0], accts[2]];
    let name = evs[0].fields().event_name.clone();
    let got = all(
        store,
        Query {
            filters: vec![(Attr::EventName, name.to_string())],
            accounts: allowed.clone(),
            limit: 7,
            ..Query::default()
        },
    );
    let want = expected(&evs, |e| {
        allowed.contains(&account_of(e)) && e.fields().event_name == name
    });
    assert!(!want.is_empty());
    assert_eq!(bytes(&got), want);
    // An event of the account outside the set cannot be fetched by its eventID.
    let other = evs.iter().find(|e| account_of(e) == accts[1]).unwrap();
    let got = all(
        store,
        Query {
            event_id: Some(other.fields().event_id.clone()),
            accounts: allowed.clone(),
            ..Query::default()
        },
    );
    assert!(got.is_empty());

    // Counts by account and eventName over the second half of the time range.
    let mut times: Vec<_> = evs.iter().map(|e| e.fields().event_time).collect();
    times.sort();
    let start = times[times.len() / 2];
    let q = Query {
        start: Some(start),
        ..Query::default()
    };
    let counts = store
        .count(&q, &[Group::Account, Group::EventName], 1000)
        .unwrap();
    let mut oracle: HashMap<Vec<String>, u64> = HashMap::new();
    for e in evs.iter().filter(|e| e.fields().event_time >= start) {
        let key = vec![account_of(e).to_string(), e.fields().event_name.to_string()];
        *oracle.entry(key).or_default() += 1;
    }
    assert_eq!(counts.total, oracle.values().sum::<u64>());
    let got: HashMap<Vec<String>, u64> = counts.groups.iter().cloned().collect();
    assert_eq!(got, oracle);
    assert!(
        counts.groups.windows(2).all(|w| w[0].1 >= w[1].1),
        "largest first"
    );
    // Events without an errorCode count under "-"; the cap keeps the largest groups.
    let errs = store
        .count(&Query::default(), &[Group::ErrorCode], 2)
        .unwrap();
    assert_eq!(errs.total, 900);
    assert_eq!(errs.groups.len(), 2);
    assert_eq!(errs.groups[0].0, vec!["-".to_string()]);
    assert!(!errs.limit_hit);
}

#[test]
fn sled_accounts_and_counts() {
    let (k, d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store = sled_store(k.path(), d.path());
    accounts_and_counts(&store);
    // The decrypting scan (the benchmark's baseline) decrypts at most its limit, counts the
    // newest, and says it stopped.
    let capped = store
        .count_by_scan(
            &Query::default(),
            &[orgtrail_store::Group::ErrorCode],
            2,
            100,
        )
        .unwrap();
    assert_eq!(capped.total, 100);
    assert!(capped.limit_hit);
    let exact = store
        .count_by_scan(
            &Query::default(),
            &[orgtrail_store::Group::ErrorCode],
            2,
            900,
        )
        .unwrap();
    assert_eq!((exact.total, exact.limit_hit), (900, false));
    // From the counters, the same count decrypts nothing, whatever the scan limit.
    let counted = store
        .count_at_most(&Query::default(), &[orgtrail_store::Group::ErrorCode], 2, 0)
        .unwrap();
    assert_eq!((counted.total, counted.limit_hit), (900, false));
    assert_eq!(counted.groups, exact.groups);
    assert_eq!(counted.scan, None);
    assert_eq!(
        counted.exact,
        Some(orgtrail_store::TimeSpan {
            start: None,
            end: None
        })
    );
}

#[test]
fn memory_accounts_and_counts() {
    accounts_and_counts(&MemoryStore::new());
}

/// The Merkle log, checked as an auditor does with only the public key: checkpoints signed at
/// the expected sizes, every stored event's inclusion proof, consistency proofs between every
/// two checkpoints, the stored leaf hashes rebuilt into the tree; and the ends of every range.
fn log_and_proofs(store: &dyn EventStore, key: &VerifyingKey) {
    let evs = events(1300, 21);
    assert_eq!(store.tree_head().unwrap().0, 0);
    assert!(
        store
            .checkpoints_between(0, u64::MAX, 10, false)
            .unwrap()
            .is_empty()
    );
    // Checkpoints after every CHECKPOINT_RECORDS new events (appends of 250: at 500 and
    // 1000), on demand (1100, nothing at 1100 again), and at close (1300).
    append(store, &evs[..1000]);
    assert_eq!(store.checkpoint_now().unwrap().unwrap().0, 1000);
    append(store, &evs[1000..1100]);
    assert_eq!(store.checkpoint_now().unwrap().unwrap().0, 1100);
    assert_eq!(store.checkpoint_now().unwrap().unwrap().0, 1100);
    append(store, &evs[1100..]);
    let head = store.tree_head().unwrap();
    assert_eq!(head.0, 1300);
    assert_eq!(store.root_at(1300).unwrap(), head.1);
    let sizes = |v: Vec<(u64, String)>| v.into_iter().map(|c| c.0).collect::<Vec<_>>();
    assert_eq!(
        sizes(store.checkpoints_between(0, u64::MAX, 100, false).unwrap()),
        [500, 1000, 1100]
    );
    assert_eq!(
        sizes(store.checkpoints_between(0, 1300, 2, true).unwrap()),
        [1100, 1000]
    );
    assert_eq!(
        sizes(store.checkpoints_between(501, 1099, 10, false).unwrap()),
        [1000]
    );
    assert!(
        store
            .checkpoints_between(1101, 1000, 10, false)
            .unwrap()
            .is_empty()
    );
    store.close().unwrap();
    let all = store.checkpoints_between(0, u64::MAX, 100, false).unwrap();
    assert_eq!(sizes(all.clone()), [500, 1000, 1100, 1300]);

    // Every checkpoint verifies with the public key, names this store, and commits to the
    // store's root at its size.
    let mut roots: Vec<(u64, Hash)> = Vec::new();
    for (size, note) in &all {
        let cp = Checkpoint::verify(note, key).unwrap();
        assert_eq!(cp.size, *size);
        assert_eq!(cp.origin, store.origin());
        assert!(store.origin().starts_with("orgtrail/"));
        assert_eq!(store.root_at(*size).unwrap(), cp.root, "size {size}");
        roots.push((cp.size, cp.root));
    }
    // An altered checkpoint does not verify.
    let forged = all[0].1.replacen("\n500\n", "\n499\n", 1);
    assert!(Checkpoint::verify(&forged, key).is_err());

    // Every event: found, read back by its sequence number, its stored leaf is the one anyone
    // recomputes from the event and its account, and its inclusion proof verifies against the
    // first checkpoint covering it and against the newest.
    let mut leaves = vec![[0u8; 32]; 1300];
    for e in &evs {
        let account = account_of(e);
        let id = &e.fields().event_id;
        let stored = store.get(&account, id).unwrap().unwrap();
        let seq = stored.seq;
        assert_eq!(store.read(seq).unwrap(), stored);
        let leaf = event_leaf(seq, account.as_str(), id, &sha256(e.bytes()));
        assert_eq!(store.leaves(seq, 1).unwrap(), [leaf]);
        leaves[(seq - 1) as usize] = leaf;
        let first = roots.iter().find(|(s, _)| *s >= seq).unwrap();
        for (size, root) in [first, roots.last().unwrap()] {
            let proof = store.inclusion_proof(seq, *size).unwrap();
            assert!(
                verify_inclusion(&leaf, seq - 1, *size, &proof, root),
                "event {seq} in {size}"
            );
            // The same proof does not prove another leaf, nor this leaf elsewhere.
            assert!(!verify_inclusion(&[7u8; 32], seq - 1, *size, &proof, root));
            if seq < *size {
                assert!(!verify_inclusion(&leaf, seq, *size, &proof, root));
            }
        }
    }
    assert_eq!(store.leaves(1, 1300).unwrap(), leaves);
    assert_eq!(store.leaves(1, 0).unwrap(), Vec::<Hash>::new());

    // Consistency between every two checkpoints, and from each to itself.
    for (i, (a, ra)) in roots.iter().enumerate() {
        for (b, rb) in &roots[i..] {
            let proof = store.consistency_proof(*a, *b).unwrap();
            assert!(verify_consistency(*a, *b, ra, rb, &proof), "{a} -> {b}");
            if a < b {
                assert!(!verify_consistency(*a, *b, rb, ra, &proof), "{a} -> {b}");
            }
        }
    }

    // The public verification the collector streams: the stored leaves, each checkpoint after
    // the leaf that completes it, rebuilt and checked by the client.
    let mut v = StreamVerifier::new(key.clone(), Vec::new());
    v.head(store.origin(), 1300);
    let mut sent = 0u64;
    for (size, note) in &all {
        let chunk = store.leaves(sent + 1, size - sent).unwrap();
        v.leaf_hashes(&chunk.concat());
        v.checkpoint(*size, note);
        sent = *size;
    }
    let report = v.finish();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(
        (report.events, report.checkpoints, report.uncovered),
        (1300, 4, 0)
    );

    // Ranges read as each of their records does, across block boundaries; none beyond the log.
    for (a, b) in [(1, 1300), (1, 1), (15, 40), (1299, 1300), (700, 699)] {
        let want: Vec<StoredEvent> = (a..=b).map(|s| store.read(s).unwrap()).collect();
        assert_eq!(store.read_range(a, b).unwrap(), want, "{a}..={b}");
    }
    assert!(matches!(
        store.read_range(1290, 1301),
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        store.read_range(0, 3),
        Err(StoreError::Corrupt(_))
    ));

    // Nothing beyond the log.
    assert!(matches!(store.read(1301), Err(StoreError::Corrupt(_))));
    assert!(matches!(store.read(0), Err(StoreError::Corrupt(_))));
    assert!(store.inclusion_proof(1301, 1300).is_err());
    assert!(store.inclusion_proof(5, 1301).is_err());
    assert!(store.inclusion_proof(0, 1300).is_err());
    assert!(store.consistency_proof(1100, 1301).is_err());
    assert!(store.consistency_proof(1100, 1000).is_err());
    assert!(store.root_at(1301).is_err());
    assert!(store.leaves(1300, 2).is_err());
    let stats = store.stats();
    assert_eq!((stats.events, stats.accounts), (1300, 3));
}

#[test]
fn sled_log_and_proofs() {
    let (k, d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (signer, key) = signing_key();
    log_and_proofs(&sled_signed(k.path(), d.path(), Some(signer)), &key);
}

#[test]
fn memory_log_and_proofs() {
    let (signer, key) = signing_key();
    log_and_proofs(&memory_signed(Some(signer)), &key);
}

/// Without a signing key no checkpoint is made, and asking for one says why.
fn no_signer(store: &dyn EventStore) {
    append(store, &events(30, 4));
    assert!(matches!(store.checkpoint_now(), Err(StoreError::NoSigner)));
    store.close().unwrap();
    assert!(
        store
            .checkpoints_between(0, u64::MAX, 10, false)
            .unwrap()
            .is_empty()
    );
    // The log is kept all the same.
    assert_eq!(store.tree_head().unwrap().0, 30);
}

#[test]
fn sled_no_signer() {
    let (k, d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    no_signer(&sled_store(k.path(), d.path()));
}

#[test]
fn memory_no_signer() {
    no_signer(&MemoryStore::new());
}

/// The collector's path: events prepared on other threads by per-thread preparers, appended
/// through `append_prepared`, with the same outcomes as `append_events`; an event prepared for
/// another store is refused as a retryable fault and stores nothing.
fn prepared_appends(store: &dyn EventStore, other: &dyn EventStore) {
    let evs = events(600, 8);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut outcomes = Vec::new();
    std::thread::scope(|scope| {
        let workers: Vec<_> = evs
            .chunks(150)
            .map(|chunk| {
                scope.spawn(move || {
                    let mut p = store.preparer();
                    chunk
                        .iter()
                        .map(|e| p.prepare(e, account_of(e)).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for w in workers {
            let prepared = w.join().unwrap();
            outcomes.extend(
                rt.block_on(store.append_prepared(prepared))
                    .unwrap()
                    .results,
            );
        }
    });
    assert!(outcomes.iter().all(|r| matches!(r, Appended::Stored(_))));
    assert_eq!(store.stats().events, 600);
    // Redelivered through the same path: duplicates at the same sequence numbers.
    let mut p = store.preparer();
    let again: Vec<_> = evs[..10]
        .iter()
        .map(|e| p.prepare(e, account_of(e)).unwrap())
        .collect();
    let dup = rt.block_on(store.append_prepared(again)).unwrap().results;
    let want: Vec<Appended> = outcomes[..10]
        .iter()
        .map(|r| match r {
            Appended::Stored(s) => Appended::Duplicate(*s),
            other => *other,
        })
        .collect();
    assert_eq!(dup, want);
    assert_eq!(
        bytes(&all(
            store,
            Query {
                limit: 1000,
                ..Query::default()
            }
        )),
        expected_in_order(&evs, &outcomes)
    );
    // Prepared by another store: refused, retryable, nothing stored.
    let mut foreign = other.preparer();
    let extra = events(1, 77);
    let p = foreign.prepare(&extra[0], account_of(&extra[0])).unwrap();
    let err = rt.block_on(store.append_prepared(vec![p])).unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert_eq!(store.stats().events, 600);
}

/// The events newest first (time, then sequence number) as `outcomes` stored them.
fn expected_in_order(evs: &[CloudTrailEvent], outcomes: &[Appended]) -> Vec<Vec<u8>> {
    let mut v: Vec<(i64, u64, usize)> = evs
        .iter()
        .zip(outcomes)
        .enumerate()
        .map(|(i, (e, r))| {
            let Appended::Stored(seq) = r else {
                panic!("{r:?}")
            };
            (e.fields().event_time.millis(), *seq, i)
        })
        .collect();
    v.sort_by(|a, b| b.cmp(a));
    v.into_iter()
        .map(|(_, _, i)| evs[i].bytes().to_vec())
        .collect()
}

#[test]
fn sled_prepared_appends() {
    let (k, d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (k2, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let other = sled_store(k2.path(), d2.path());
    prepared_appends(&sled_store(k.path(), d.path()), &other);
    // A memory store's prepared events are refused too.
    let (k3, d3) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    prepared_appends(&sled_store(k3.path(), d3.path()), &MemoryStore::new());
}

#[test]
fn memory_prepared_appends() {
    let (k, d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    prepared_appends(&MemoryStore::new(), &sled_store(k.path(), d.path()));
}

/// The key of `g` for an event, written out here (the oracle's own reading of the fields).
fn oracle_key(g: Group, e: &CloudTrailEvent) -> String {
    let f = e.fields();
    match g {
        Group::Account => account_of(e).to_string(),
        Group::EventSource => f.event_source.to_string(),
        Group::EventName => f.event_name.to_string(),
        Group::User => f.username().unwrap_or("-").to_string(),
        Group::ErrorCode => f.error_code.as_deref().unwrap_or("-").to_string(),
        Group::Region => f.aws_region.as_deref().unwrap_or("-").to_string(),
    }
}

/// Counts by every grouping, over everything, whole hours and a ragged range, with and without
/// a filter, equal an oracle's when the scan limit does not bite.
fn counts_equal_the_oracle(store: &dyn EventStore) {
    const HOUR: i64 = 3_600_000;
    let evs = events(1200, 31);
    append(store, &evs);
    let mut times: Vec<i64> = evs.iter().map(|e| e.fields().event_time.millis()).collect();
    times.sort_unstable();
    let mid = times[times.len() / 2];
    let hour = mid - mid.rem_euclid(HOUR);
    let ranges = [
        (None, None),
        (Some(hour - HOUR), Some(hour + HOUR - 1)),
        (Some(mid - 50 * 60_000), Some(mid + 3 * 60_000)),
        (Some(mid), None),
    ];
    let name = evs[3].fields().event_name.clone();
    let groupings = [
        vec![Group::Account],
        vec![Group::EventSource],
        vec![Group::EventName],
        vec![Group::User],
        vec![Group::ErrorCode],
        vec![Group::Region],
        vec![Group::Account, Group::EventName, Group::ErrorCode],
    ];
    for (start, end) in ranges {
        for filter in [None, Some(name.clone())] {
            for by in &groupings {
                let q = Query {
                    start: start.map(Timestamp),
                    end: end.map(Timestamp),
                    filters: filter
                        .iter()
                        .map(|n| (Attr::EventName, n.to_string()))
                        .collect(),
                    ..Query::default()
                };
                let mut oracle: HashMap<Vec<String>, u64> = HashMap::new();
                for e in &evs {
                    let t = e.fields().event_time.millis();
                    if start.is_some_and(|s| t < s)
                        || end.is_some_and(|en| t > en)
                        || filter.as_ref().is_some_and(|n| e.fields().event_name != *n)
                    {
                        continue;
                    }
                    let key = by.iter().map(|g| oracle_key(*g, e)).collect();
                    *oracle.entry(key).or_default() += 1;
                }
                let c = store.count_at_most(&q, by, 10_000, 100_000).unwrap();
                let got: HashMap<Vec<String>, u64> = c.groups.iter().cloned().collect();
                let what = format!("{by:?} {start:?}..{end:?} {filter:?}");
                assert_eq!(got, oracle, "{what}");
                assert_eq!(c.total, oracle.values().sum::<u64>(), "{what}");
                assert!(!c.limit_hit, "{what}");
                assert_eq!(
                    store.count(&q, by, 10_000).unwrap().groups,
                    c.groups,
                    "{what}"
                );
            }
        }
    }
}

#[test]
fn sled_counts_equal_the_oracle() {
    let (k, d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    counts_equal_the_oracle(&sled_store(k.path(), d.path()));
}

#[test]
fn memory_counts_equal_the_oracle() {
    counts_equal_the_oracle(&MemoryStore::new());
}

/// The alert outbox: a watermark that only moves forward with the alerts recorded below it,
/// alerts pending oldest first until every sink took them, a redelivery noted twice harmless,
/// and entries out of bounds refused.
fn alert_outbox(store: &dyn EventStore) {
    use orgtrail_store::PendingAlert;
    let alert = |seq: u64, rule: &str, sinks: &[&str]| PendingAlert {
        seq,
        rule: rule.into(),
        sinks: sinks.iter().map(|s| (*s).to_owned()).collect(),
    };
    assert_eq!(store.alerts_through().unwrap(), None);
    assert!(store.pending_alerts(10).unwrap().is_empty());
    store
        .record_alerts(
            5,
            &[
                alert(4, "root-login", &["soc", "file"]),
                alert(2, "trail", &["soc"]),
            ],
        )
        .unwrap();
    assert_eq!(store.alerts_through().unwrap(), Some(5));
    assert_eq!(
        store.pending_alerts(10).unwrap(),
        vec![
            alert(2, "trail", &["soc"]),
            alert(4, "root-login", &["soc", "file"])
        ]
    );
    // Recording a range already recorded (a restart evaluating it again) writes nothing.
    store
        .record_alerts(5, &[alert(5, "other", &["soc"])])
        .unwrap();
    store.record_alerts(3, &[]).unwrap();
    assert_eq!(store.alerts_through().unwrap(), Some(5));
    assert_eq!(store.pending_alerts(10).unwrap().len(), 2);
    // A range with no alerts still moves the watermark.
    store.record_alerts(9, &[]).unwrap();
    assert_eq!(store.alerts_through().unwrap(), Some(9));
    // Delivery, sink by sink; noting it twice is harmless.
    store.alert_delivered(4, "root-login", "soc").unwrap();
    store.alert_delivered(4, "root-login", "soc").unwrap();
    assert_eq!(
        store.pending_alerts(10).unwrap(),
        vec![
            alert(2, "trail", &["soc"]),
            alert(4, "root-login", &["file"])
        ]
    );
    store.alert_delivered(2, "trail", "soc").unwrap();
    store.alert_delivered(4, "root-login", "file").unwrap();
    assert!(store.pending_alerts(10).unwrap().is_empty());
    store.alert_delivered(7, "never", "soc").unwrap();
    // Limits and bounds.
    store
        .record_alerts(
            12,
            &[
                alert(10, "a", &["s"]),
                alert(11, "b", &["s"]),
                alert(12, "c", &["s"]),
            ],
        )
        .unwrap();
    assert_eq!(store.pending_alerts(2).unwrap().len(), 2);
    for bad in [
        alert(20, "x", &["s"]),
        alert(13, "", &["s"]),
        alert(13, "x", &[]),
    ] {
        let e = store
            .record_alerts(15, std::slice::from_ref(&bad))
            .unwrap_err();
        assert!(matches!(e, StoreError::Invalid(_)), "{bad:?}: {e}");
    }
    assert_eq!(
        store.alerts_through().unwrap(),
        Some(12),
        "a refused record moves nothing"
    );
    // A batch noted at once: only what was pending for that sink changes; repeats, unknown
    // alerts and other sinks' alerts are passed over.
    store
        .record_alerts(14, &[alert(13, "d", &["s", "t"]), alert(14, "e", &["t"])])
        .unwrap();
    store
        .alerts_delivered(
            "s",
            &[
                (10, "a".into()),
                (11, "b".into()),
                (11, "b".into()),
                (13, "d".into()),
                (14, "e".into()),
                (99, "never".into()),
            ],
        )
        .unwrap();
    assert_eq!(
        store.pending_alerts(10).unwrap(),
        vec![
            alert(12, "c", &["s"]),
            alert(13, "d", &["t"]),
            alert(14, "e", &["t"])
        ]
    );
    store.alerts_delivered("s", &[]).unwrap();
    assert_eq!(store.pending_alerts(10).unwrap().len(), 3);
    // Taken as a delivery loop read them: an alert whose only sink this was leaves the
    // outbox; one with other sinks keeps them.
    store
        .record_alerts(16, &[alert(15, "f", &["s"]), alert(16, "g", &["s", "t"])])
        .unwrap();
    let read = store.pending_alerts_after(Some((14, "e")), 10).unwrap();
    assert_eq!(
        read,
        vec![alert(15, "f", &["s"]), alert(16, "g", &["s", "t"])]
    );
    store.alerts_taken("s", &read).unwrap();
    assert_eq!(
        store.pending_alerts(10).unwrap(),
        vec![
            alert(12, "c", &["s"]),
            alert(13, "d", &["t"]),
            alert(14, "e", &["t"]),
            alert(16, "g", &["t"])
        ]
    );
    // Taken again (a redelivery noted twice): no error, nothing else changes.
    store.alerts_taken("s", &read).unwrap();
    assert_eq!(store.pending_alerts(10).unwrap().len(), 4);
}

#[test]
fn sled_alert_outbox() {
    let (k, d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    alert_outbox(&sled_store(k.path(), d.path()));
}

#[test]
fn memory_alert_outbox() {
    alert_outbox(&MemoryStore::new());
}

#[test]
fn sled_alert_outbox_survives_reopening() {
    use orgtrail_store::PendingAlert;
    let (k, d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let keys = k.path().to_owned();
    {
        let store = sled_store(&keys, d.path());
        store
            .record_alerts(
                3,
                &[PendingAlert {
                    seq: 3,
                    rule: "r".into(),
                    sinks: vec!["soc".into(), "file".into()],
                }],
            )
            .unwrap();
        store.alert_delivered(3, "r", "soc").unwrap();
        EventStore::close(&store).unwrap();
    }
    let store = Ledger::open(
        d.path(),
        Arc::new(LocalKeyProvider::load(&keys).unwrap()),
        LedgerConfig::default(),
    )
    .unwrap();
    assert_eq!(store.alerts_through().unwrap(), Some(3));
    assert_eq!(
        store.pending_alerts(10).unwrap(),
        vec![PendingAlert {
            seq: 3,
            rule: "r".into(),
            sinks: vec!["file".into()]
        }]
    );
}

/// Many alerts in one record (more than the sled ledger keeps in one outbox entry): read page
/// by page from each sink's cursor they come whole and in order; a sink's notes take only its
/// own; a dead letter re-driven while the rest of its record is pending, and one re-driven
/// after the rest was delivered, are pending again; once all is delivered nothing is.
fn alert_outbox_in_pages(store: &dyn EventStore) {
    use orgtrail_store::{DeadLetter, PendingAlert};
    let alert = |seq: u64, rule: &str, sinks: &[&str]| PendingAlert {
        seq,
        rule: rule.into(),
        sinks: sinks.iter().map(|s| (*s).to_owned()).collect(),
    };
    let mut all = Vec::new();
    for seq in 1..=300 {
        all.push(alert(seq, "a", &["s", "t"]));
        all.push(alert(seq, "b", &["s"]));
    }
    // Given out of order: the outbox keeps (seq, rule) order.
    let mut given = all.clone();
    given.reverse();
    store.record_alerts(300, &given).unwrap();
    let read_all = |after: Option<(u64, String)>, page: usize| {
        let mut out = Vec::new();
        let mut cursor = after;
        loop {
            let got = store
                .pending_alerts_after(cursor.as_ref().map(|(s, r)| (*s, r.as_str())), page)
                .unwrap();
            let Some(last) = got.last() else { break };
            cursor = Some((last.seq, last.rule.clone()));
            out.extend(got);
        }
        out
    };
    assert_eq!(read_all(None, 7), all);
    assert_eq!(store.pending_alerts(1000).unwrap(), all);
    assert_eq!(
        read_all(Some((150, "a".into())), 13),
        all[299..].to_vec(),
        "read on from a cursor inside the record"
    );
    // Sink `s` takes the first 401 (to event 201's `a`), in pages of 50 as read.
    let firsts: Vec<PendingAlert> = all[..401].to_vec();
    for page in firsts.chunks(50) {
        store.alerts_taken("s", page).unwrap();
    }
    let now = store.pending_alerts(1000).unwrap();
    assert_eq!(
        now.len(),
        300 + 100,
        "`t` keeps every `a`; `s` the last 199"
    );
    assert_eq!(now[0], alert(1, "a", &["t"]));
    assert_eq!(now[199], alert(200, "a", &["t"]));
    assert_eq!(now[200], alert(201, "a", &["t"]));
    assert_eq!(now[201], alert(201, "b", &["s"]));
    assert_eq!(now[202], alert(202, "a", &["s", "t"]));
    // `t` gives up on event 7's alert, and takes every other `a`.
    let letter = |seq: u64, rule: &str, sink: &str| DeadLetter {
        seq,
        rule: rule.into(),
        sink: sink.into(),
        attempts: 3,
        at_ms: 1,
        error: "refused".into(),
    };
    assert!(store.dead_letter_alert(&letter(7, "a", "t")).unwrap());
    let a_for_t: Vec<PendingAlert> = all
        .iter()
        .filter(|x| x.rule == "a" && x.seq != 7)
        .cloned()
        .collect();
    for page in a_for_t.chunks(64) {
        store.alerts_taken("t", page).unwrap();
    }
    assert_eq!(
        store.pending_alerts(1000).unwrap(),
        all[401..]
            .iter()
            .map(|x| alert(x.seq, &x.rule, &["s"]))
            .collect::<Vec<_>>(),
        "only `s`'s last 199 are left"
    );
    // Re-driven while the rest of its record is still pending.
    assert_eq!(store.retry_dead_letters(Some("t")).unwrap().len(), 1);
    let now = store.pending_alerts(1000).unwrap();
    assert_eq!(now[0], alert(7, "a", &["t"]));
    assert_eq!(now.len(), 1 + 199);
    // Everything delivered; then a dead letter re-driven after its record went.
    store.alerts_taken("t", &now[..1]).unwrap();
    let rest: Vec<PendingAlert> = now[1..].to_vec();
    assert!(store.dead_letter_alert(&letter(300, "b", "s")).unwrap());
    store.alerts_taken("s", &rest).unwrap();
    assert!(store.pending_alerts(1000).unwrap().is_empty());
    assert!(read_all(None, 5).is_empty());
    assert_eq!(store.retry_dead_letters(None).unwrap().len(), 1);
    assert_eq!(
        store.pending_alerts(1000).unwrap(),
        vec![alert(300, "b", &["s"])]
    );
    assert_eq!(
        store.pending_alerts_after(Some((299, "b")), 10).unwrap(),
        vec![alert(300, "b", &["s"])]
    );
    store.alert_delivered(300, "b", "s").unwrap();
    assert!(store.pending_alerts(1000).unwrap().is_empty());
    assert!(!store.dead_letter_alert(&letter(300, "b", "s")).unwrap());
}

#[test]
fn sled_alert_outbox_in_pages() {
    let (k, d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    alert_outbox_in_pages(&sled_store(k.path(), d.path()));
}

#[test]
fn memory_alert_outbox_in_pages() {
    alert_outbox_in_pages(&MemoryStore::new());
}

/// Dead letters: a sink that gave up moves (alert, sink) out of the outbox into a dead letter
/// (the other sinks keep the alert pending), listed oldest first with its attempts and error;
/// a retry (of one sink or all) moves it back; a sink not pending makes no dead letter; and
/// each sink's delivery loop reads the outbox on from the last alert it handled.
fn alert_dead_letters(store: &dyn EventStore) {
    use orgtrail_store::{DeadLetter, PendingAlert};
    let alert = |seq: u64, rule: &str, sinks: &[&str]| PendingAlert {
        seq,
        rule: rule.into(),
        sinks: sinks.iter().map(|s| (*s).to_owned()).collect(),
    };
    let dead = |seq: u64, rule: &str, sink: &str| DeadLetter {
        seq,
        rule: rule.into(),
        sink: sink.into(),
        attempts: 10,
        at_ms: 1_700_000_000_000,
        error: "HTTP 500 Internal Server Error".into(),
    };
    store
        .record_alerts(
            9,
            &[
                alert(3, "root-login", &["hook", "log"]),
                alert(5, "trail", &["hook"]),
                alert(7, "keys", &["log"]),
            ],
        )
        .unwrap();
    // Reading on from a position.
    let after = |a: Option<(u64, &str)>| {
        store
            .pending_alerts_after(a, 10)
            .unwrap()
            .into_iter()
            .map(|p| p.seq)
            .collect::<Vec<_>>()
    };
    assert_eq!(after(None), vec![3, 5, 7]);
    assert_eq!(after(Some((3, "root-login"))), vec![5, 7]);
    assert_eq!(after(Some((5, "trail"))), vec![7]);
    assert_eq!(after(Some((7, "keys"))), Vec::<u64>::new());
    assert_eq!(store.pending_alerts_after(None, 2).unwrap().len(), 2);

    assert!(
        store
            .dead_letter_alert(&dead(3, "root-login", "hook"))
            .unwrap()
    );
    assert!(store.dead_letter_alert(&dead(5, "trail", "hook")).unwrap());
    // Not pending for that sink: nothing happens.
    assert!(!store.dead_letter_alert(&dead(7, "keys", "hook")).unwrap());
    assert!(!store.dead_letter_alert(&dead(8, "none", "hook")).unwrap());
    assert_eq!(
        store.pending_alerts(10).unwrap(),
        vec![alert(3, "root-login", &["log"]), alert(7, "keys", &["log"])],
        "the other sink keeps the alert; an alert left with no sink leaves the outbox"
    );
    assert_eq!(
        store.dead_letters(10).unwrap(),
        vec![dead(3, "root-login", "hook"), dead(5, "trail", "hook")]
    );
    assert_eq!(store.dead_letters(1).unwrap().len(), 1);
    // A long error is cut, on a character boundary.
    store
        .record_alerts(10, &[alert(10, "long", &["x"])])
        .unwrap();
    let mut long = dead(10, "long", "x");
    long.error = "é".repeat(1000);
    assert!(store.dead_letter_alert(&long).unwrap());
    let kept = store.dead_letters(10).unwrap().pop().unwrap();
    assert!(
        kept.error.len() <= orgtrail_store::MAX_DEAD_LETTER_ERROR,
        "{}",
        kept.error.len()
    );
    assert!(kept.error.starts_with("éé"));
    // Retry one sink: only its dead letters go back, and the outbox holds them again.
    let moved = store.retry_dead_letters(Some("x")).unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!(store.dead_letters(10).unwrap().len(), 2);
    let moved = store.retry_dead_letters(None).unwrap();
    assert_eq!(
        moved,
        vec![dead(3, "root-login", "hook"), dead(5, "trail", "hook")]
    );
    assert!(store.dead_letters(10).unwrap().is_empty());
    assert_eq!(
        store.pending_alerts(10).unwrap(),
        vec![
            alert(3, "root-login", &["log", "hook"]),
            alert(5, "trail", &["hook"]),
            alert(7, "keys", &["log"]),
            alert(10, "long", &["x"]),
        ]
    );
    assert!(store.retry_dead_letters(None).unwrap().is_empty());
    // Out of bounds.
    let e = store.dead_letter_alert(&dead(3, "", "hook")).unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)), "{e}");
}

#[test]
fn sled_alert_dead_letters() {
    let (k, d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    alert_dead_letters(&sled_store(k.path(), d.path()));
}

#[test]
fn memory_alert_dead_letters() {
    alert_dead_letters(&MemoryStore::new());
}

#[test]
fn sled_dead_letters_survive_reopening() {
    use orgtrail_store::{DeadLetter, PendingAlert};
    let (k, d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let keys = k.path().to_owned();
    let letter = DeadLetter {
        seq: 2,
        rule: "r".into(),
        sink: "hook".into(),
        attempts: 3,
        at_ms: 5,
        error: "connection refused".into(),
    };
    {
        let store = sled_store(&keys, d.path());
        store
            .record_alerts(
                2,
                &[PendingAlert {
                    seq: 2,
                    rule: "r".into(),
                    sinks: vec!["hook".into()],
                }],
            )
            .unwrap();
        assert!(store.dead_letter_alert(&letter).unwrap());
        EventStore::close(&store).unwrap();
    }
    let store = Ledger::open(
        d.path(),
        Arc::new(LocalKeyProvider::load(&keys).unwrap()),
        LedgerConfig::default(),
    )
    .unwrap();
    assert_eq!(store.dead_letters(10).unwrap(), vec![letter]);
    assert!(store.pending_alerts(10).unwrap().is_empty());
}

/// Two sinks noting the same alert at once never undo each other's note.
#[test]
fn sled_concurrent_delivery_notes_are_all_kept() {
    use orgtrail_store::PendingAlert;
    let (k, d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store = Arc::new(sled_store(k.path(), d.path()));
    let sinks: Vec<String> = (0..8).map(|i| format!("s{i}")).collect();
    let alerts: Vec<PendingAlert> = (1..=50)
        .map(|seq| PendingAlert {
            seq,
            rule: "r".into(),
            sinks: sinks.clone(),
        })
        .collect();
    store.record_alerts(50, &alerts).unwrap();
    let threads: Vec<_> = sinks
        .iter()
        .map(|s| {
            let (store, s) = (store.clone(), s.clone());
            std::thread::spawn(move || {
                for seq in 1..=50 {
                    store.alert_delivered(seq, "r", &s).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(store.pending_alerts(100).unwrap().is_empty());
}

/// The alert history: every alert recorded, in (seq, rule) order, kept after delivery, never
/// twice for a range recorded again, read page by page both ways, with recorded times that
/// never go backwards.
fn alert_history(store: &dyn EventStore) {
    use orgtrail_store::PendingAlert;
    let alert = |seq: u64, rule: &str| PendingAlert {
        seq,
        rule: rule.into(),
        sinks: vec!["soc".into()],
    };
    let keys = |v: Vec<orgtrail_store::AlertRef>| -> Vec<(u64, String)> {
        v.into_iter().map(|a| (a.seq, a.rule)).collect()
    };
    let k = |seq: u64, rule: &str| (seq, rule.to_owned());
    assert!(store.alert_history(None, 10, false).unwrap().is_empty());
    assert!(store.alert_history(None, 10, true).unwrap().is_empty());
    let before = Timestamp(
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap(),
    );
    store
        .record_alerts(5, &[alert(4, "root"), alert(2, "trail"), alert(4, "keys")])
        .unwrap();
    // Recorded again (a restart evaluating the range again): nothing new.
    store.record_alerts(5, &[alert(5, "other")]).unwrap();
    store.record_alerts(8, &[]).unwrap();
    store.record_alerts(9, &[alert(9, "root")]).unwrap();
    let all = store.alert_history(None, 100, false).unwrap();
    assert_eq!(
        keys(all.clone()),
        vec![k(2, "trail"), k(4, "keys"), k(4, "root"), k(9, "root")]
    );
    assert!(all.iter().all(|a| a.recorded >= before), "{all:?}");
    assert!(
        all.windows(2).all(|w| w[0].recorded <= w[1].recorded),
        "recorded times never go back: {all:?}"
    );
    // Delivered alerts leave the outbox, not the history.
    for a in store.pending_alerts(100).unwrap() {
        store.alert_delivered(a.seq, &a.rule, "soc").unwrap();
    }
    assert!(store.pending_alerts(100).unwrap().is_empty());
    assert_eq!(store.alert_history(None, 100, false).unwrap(), all);
    // Pages, oldest first and newest first, each strictly past its cursor.
    assert_eq!(
        keys(store.alert_history(None, 2, false).unwrap()),
        vec![k(2, "trail"), k(4, "keys")]
    );
    assert_eq!(
        keys(store.alert_history(Some((4, "keys")), 2, false).unwrap()),
        vec![k(4, "root"), k(9, "root")]
    );
    assert!(
        store
            .alert_history(Some((9, "root")), 2, false)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        keys(store.alert_history(None, 3, true).unwrap()),
        vec![k(9, "root"), k(4, "root"), k(4, "keys")]
    );
    assert_eq!(
        keys(store.alert_history(Some((4, "keys")), 3, true).unwrap()),
        vec![k(2, "trail")]
    );
    // A cursor need not name an alert: it is a position.
    assert_eq!(
        keys(store.alert_history(Some((3, "")), 1, false).unwrap()),
        vec![k(4, "keys")]
    );
    assert_eq!(
        keys(store.alert_history(Some((4, "z")), 5, true).unwrap()),
        vec![k(4, "root"), k(4, "keys"), k(2, "trail")]
    );
    assert!(store.alert_history(None, 0, false).unwrap().is_empty());
    // A refused record adds nothing to the history.
    let _ = store
        .record_alerts(12, &[alert(11, "fine"), alert(13, "past")])
        .unwrap_err();
    assert_eq!(store.alert_history(None, 100, false).unwrap().len(), 4);
}

#[test]
fn sled_alert_history() {
    let (k, d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    alert_history(&sled_store(k.path(), d.path()));
}

#[test]
fn memory_alert_history() {
    alert_history(&MemoryStore::new());
}

#[test]
fn sled_alert_history_survives_reopening() {
    use orgtrail_store::PendingAlert;
    let (k, d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let keys = k.path().to_owned();
    let first = {
        let store = sled_store(&keys, d.path());
        store
            .record_alerts(
                3,
                &[PendingAlert {
                    seq: 3,
                    rule: "r".into(),
                    sinks: vec!["soc".into()],
                }],
            )
            .unwrap();
        store.alert_delivered(3, "r", "soc").unwrap();
        let h = store.alert_history(None, 10, false).unwrap();
        EventStore::close(&store).unwrap();
        h
    };
    assert_eq!(first.len(), 1);
    let store = Ledger::open(
        d.path(),
        Arc::new(LocalKeyProvider::load(&keys).unwrap()),
        LedgerConfig::default(),
    )
    .unwrap();
    assert_eq!(store.alert_history(None, 10, false).unwrap(), first);
    assert!(store.pending_alerts(10).unwrap().is_empty());
}

/// The threshold windows' state moves with the alert watermark, in one write; a range already
/// recorded changes nothing.
fn threshold_windows(store: &dyn EventStore) {
    use orgtrail_store::WindowChanges;
    let ch = |kept: &[(&str, u64)], dropped: &[(&str, u64)]| WindowChanges {
        kept: kept.iter().map(|(r, s)| ((*r).to_owned(), *s)).collect(),
        dropped: dropped.iter().map(|(r, s)| ((*r).to_owned(), *s)).collect(),
    };
    assert!(store.threshold_windows().unwrap().is_empty());
    store
        .record_alerts_with_windows(3, &[], &ch(&[("burst", 1), ("burst", 3), ("b2", 2)], &[]))
        .unwrap();
    store
        .record_alerts_with_windows(5, &[], &ch(&[("burst", 5)], &[("burst", 1)]))
        .unwrap();
    // Already recorded: nothing moves.
    store
        .record_alerts_with_windows(4, &[], &ch(&[("x", 4)], &[("burst", 3)]))
        .unwrap();
    assert_eq!(store.alerts_through().unwrap(), Some(5));
    assert_eq!(
        store.threshold_windows().unwrap(),
        vec![
            ("b2".to_owned(), 2),
            ("burst".to_owned(), 3),
            ("burst".to_owned(), 5)
        ]
    );
    let e = store
        .record_alerts_with_windows(6, &[], &ch(&[("", 6)], &[]))
        .unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)), "{e}");
    assert_eq!(store.alerts_through().unwrap(), Some(5));
}

#[test]
fn sled_threshold_windows_survive_reopening() {
    let (k, d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    {
        let store = sled_store(k.path(), d.path());
        threshold_windows(&store);
        EventStore::close(&store).unwrap();
    }
    let store = Ledger::open(
        d.path(),
        Arc::new(LocalKeyProvider::load(k.path()).unwrap()),
        LedgerConfig::default(),
    )
    .unwrap();
    assert_eq!(store.threshold_windows().unwrap().len(), 3);
}

#[test]
fn memory_threshold_windows() {
    threshold_windows(&MemoryStore::new());
}

/// The Insights state and watermark move together; a watermark past the one given keeps
/// what was recorded; one at it is replaced.
fn insights_state(store: &dyn EventStore) {
    assert_eq!(store.insights_state().unwrap(), None);
    store.record_insights(0, b"first").unwrap();
    let s = store.insights_state().unwrap().unwrap();
    assert_eq!((s.through, s.state.as_slice()), (0, &b"first"[..]));
    store.record_insights(7, b"{\"arn\":\"secret\"}").unwrap();
    store
        .record_insights(7, b"{\"arn\":\"clock moved\"}")
        .unwrap();
    // Older: nothing moves.
    store.record_insights(5, b"older").unwrap();
    let s = store.insights_state().unwrap().unwrap();
    assert_eq!(
        (s.through, s.state.as_slice()),
        (7, &b"{\"arn\":\"clock moved\"}"[..])
    );
}

#[test]
fn memory_insights_state() {
    insights_state(&MemoryStore::new());
}

#[test]
fn sled_insights_state_survives_reopening_sealed() {
    let (k, d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    {
        let store = sled_store(k.path(), d.path());
        insights_state(&store);
        EventStore::close(&store).unwrap();
    }
    // Never plaintext on disk: the state's user ARN is in no file of the store.
    for f in walk(d.path()) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(12).any(|w| w == b"clock moved\""),
            "plaintext state in {}",
            f.display()
        );
    }
    let store = Ledger::open(
        d.path(),
        Arc::new(LocalKeyProvider::load(k.path()).unwrap()),
        LedgerConfig::default(),
    )
    .unwrap();
    let s = store.insights_state().unwrap().unwrap();
    assert_eq!(
        (s.through, s.state.as_slice()),
        (7, &b"{\"arn\":\"clock moved\"}"[..])
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
