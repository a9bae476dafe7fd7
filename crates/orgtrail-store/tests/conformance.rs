//! The conformance suite of [`EventStore`]: run against the sled ledger and against the
//! in-memory reference model, with the same expectations (an oracle over the input events).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use orgtrail_core::{AccountId, CloudTrailEvent};
use orgtrail_crypto::{KeyProvider, Keyring, LocalKeyProvider};
use orgtrail_gen::{GenConfig, Generator};
use orgtrail_store::{
    Appended, Attr, EventStore, Ledger, LedgerConfig, MemoryStore, Query, StoredEvent,
};

type Case = (Attr, String, Box<dyn Fn(&CloudTrailEvent) -> bool>);

fn provider(dir: &Path) -> Arc<dyn KeyProvider> {
    let path = dir.join("keyring.json");
    Keyring::generate("t").unwrap().save_new(&path).unwrap();
    Arc::new(LocalKeyProvider::load(dir).unwrap())
}

fn sled_store(keys: &Path, data: &Path) -> Ledger {
    let cfg = LedgerConfig {
        dict_train_after: 300,
        block_records: 8,
        index_run_events: 50,
        ..LedgerConfig::default()
    };
    Ledger::open(data, provider(keys), cfg).unwrap()
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
            f.event_name.clone(),
            Box::new({
                let v = f.event_name.clone();
                move |e: &CloudTrailEvent| e.fields().event_name == v
            }),
        ),
        (
            Attr::EventSource,
            f.event_source.clone(),
            Box::new({
                let v = f.event_source.clone();
                move |e: &CloudTrailEvent| e.fields().event_source == v
            }),
        ),
        (
            Attr::Region,
            f.aws_region.clone().unwrap(),
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
            f.resource_names[0].clone(),
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
            (Attr::EventSource, f.event_source.clone()),
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
            filters: vec![(Attr::EventName, name.clone())],
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
        let key = vec![account_of(e).to_string(), e.fields().event_name.clone()];
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
