//! A store of format 1, written by the previous orgtrail, is refused until `upgrade` converts
//! it; then it holds the same events, the same Merkle tree (its old checkpoint verifies), and
//! answers from index runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::account_of;
use std::io::BufRead;
#[path = "../../../tests/common/fs.rs"]
mod fs;

use std::path::Path;
use std::sync::Arc;

use orgtrail_core::{AccountId, CloudTrailEvent};
use orgtrail_crypto::LocalKeyProvider;
use orgtrail_crypto::signing::VerifyingKey;
use orgtrail_store::{Ledger, LedgerConfig, SavedCheckpoint, upgrade, verify_full};

/// A fixture store copied into a temporary directory, with its keys.
struct Fixture {
    dir: std::path::PathBuf,
    _tmp: tempfile::TempDir,
    data: std::path::PathBuf,
    provider: Arc<LocalKeyProvider>,
}

impl Fixture {
    fn copy(name: &str) -> Fixture {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        fs::copy_dir(&dir.join("data"), &data);
        let provider = Arc::new(LocalKeyProvider::load(&dir.join("keys")).unwrap());
        Fixture {
            dir,
            _tmp: tmp,
            data,
            provider,
        }
    }
}

/// Small index runs, so that the fixtures' few events make several.
fn cfg() -> LedgerConfig {
    LedgerConfig {
        index_run_events: 256,
        ..LedgerConfig::default()
    }
}

/// Appends `count` generated events (2 accounts, `seed`) in one batch; returns them.
fn append_generated(ledger: &Ledger, count: u64, seed: u64) -> Vec<CloudTrailEvent> {
    let events: Vec<CloudTrailEvent> = orgtrail_gen::Generator::new(orgtrail_gen::GenConfig {
        count,
        accounts: 2,
        seed,
        ..orgtrail_gen::GenConfig::default()
    })
    .map(|b| CloudTrailEvent::parse(b).unwrap())
    .collect();
    let mut p = ledger.preparer();
    let prepared = events
        .iter()
        .map(|e| p.prepare(e, account_of(e)).unwrap())
        .collect();
    assert_eq!(
        ledger.append_blocking(prepared).unwrap().stored() as u64,
        count
    );
    events
}

/// Full verification of the store in `data` against the checkpoint the fixture saved.
fn verify_against_saved(
    fixture: &Path,
    data: &Path,
    provider: Arc<LocalKeyProvider>,
) -> orgtrail_store::VerifyReport {
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture.join("checkpoint.json")).unwrap()).unwrap();
    let saved = SavedCheckpoint {
        name: "checkpoint.json".into(),
        note: saved["note"].as_str().unwrap().to_owned(),
    };
    let vk = VerifyingKey::load(&fixture.join("keys/signing.pub")).unwrap();
    verify_full(data, provider, &vk, &[saved])
}

#[test]
fn a_format_1_store_is_refused_then_upgraded_in_place_with_its_tree_unchanged() {
    let Fixture {
        dir: fixture,
        _tmp,
        data,
        provider,
    } = Fixture::copy("format1");

    let err = Ledger::open(&data, provider.clone(), cfg())
        .unwrap_err()
        .to_string();
    assert!(err.contains("has format 1"), "{err}");
    assert!(err.contains("orgtrail store upgrade"), "{err}");

    let report = upgrade(&data, 256).unwrap();
    assert_eq!((report.from, report.to, report.events), (1, 4, 600));
    // Runs are cut at group boundaries once 256 events are in: the import's groups were larger.
    assert!(report.runs >= 1, "{report:?}");
    assert!(data.join("index").read_dir().unwrap().count() >= 1);
    // 600 leaves are less than one Merkle tile (4,096): no subtree hash is stored, proofs and
    // opens hash the leaves.
    assert_eq!(report.subtrees, 0, "{report:?}");
    // Again: nothing to do.
    let again = upgrade(&data, 256).unwrap();
    assert_eq!(
        (again.from, again.to, again.runs, again.subtrees),
        (4, 4, 0, 0)
    );

    // The same events, found by their eventID.
    let ledger = Ledger::open(&data, provider.clone(), cfg()).unwrap();
    assert_eq!(ledger.stats().events, 600);
    let gz = std::fs::File::open(fixture.join("events.jsonl.gz")).unwrap();
    let lines = std::io::BufReader::new(flate2::read::GzDecoder::new(gz)).lines();
    let mut n = 0;
    for line in lines {
        let bytes = line.unwrap().into_bytes();
        let ev = CloudTrailEvent::parse(bytes.clone()).unwrap();
        let f = ev.fields();
        let account: AccountId = f.recipient_account_id.as_ref().unwrap().parse().unwrap();
        let got = ledger.get(&account, &f.event_id).unwrap().unwrap();
        assert_eq!(got.bytes, bytes);
        n += 1;
    }
    assert_eq!(n, 600);
    // Its counters start after the upgrade: a count is a bounded scan, and says why.
    let c = ledger
        .count_at_most(
            &orgtrail_store::Query::default(),
            &[orgtrail_store::Group::Account],
            10,
            1000,
        )
        .unwrap();
    assert_eq!((c.total, c.limit_hit, c.exact), (600, false, None));
    let scan = c.scan.unwrap();
    assert!(
        scan.reason.contains("upgraded from format 1"),
        "{}",
        scan.reason
    );
    assert_eq!((scan.events, scan.limit), (600, 1000));
    // New groups go to the record log, beside the upgraded store's inline values.
    let fresh = append_generated(&ledger, 100, 99);
    ledger.close().unwrap();
    drop(ledger);
    assert!(data.join("log").read_dir().unwrap().count() >= 1);
    let ledger = Ledger::open(&data, provider.clone(), cfg()).unwrap();
    assert_eq!(ledger.stats().events, 700);
    for e in [&fresh[0], &fresh[99]] {
        let got = ledger.get(&account_of(e), &e.fields().event_id).unwrap();
        assert_eq!(got.unwrap().bytes, e.bytes());
    }
    ledger.close().unwrap();
    drop(ledger);

    // The tree is the one the old store signed: its saved checkpoint verifies.
    let r = verify_against_saved(&fixture, &data, provider);
    assert!(r.ok(), "{:?}", r.problems);
}

/// A store of format 2 (written by 14c2679: index runs of layout version 1, records and leaf
/// hashes inside sled) opens as it is: its events, lookups through its old runs (a posting list
/// of over 1,024 entries without a skip table, alone and combined with a rarer one) and its
/// signed tree are as they were; new groups go to the record log beside them.
#[test]
fn a_format_2_store_opens_as_it_is_and_takes_new_groups_in_the_log() {
    use orgtrail_store::{Attr, Query};
    let Fixture {
        dir: fixture,
        _tmp,
        data,
        provider,
    } = Fixture::copy("format2");
    let gz = std::fs::File::open(fixture.join("events.jsonl.gz")).unwrap();
    let events: Vec<CloudTrailEvent> = std::io::BufReader::new(flate2::read::GzDecoder::new(gz))
        .lines()
        .map(|l| CloudTrailEvent::parse(l.unwrap().into_bytes()).unwrap())
        .collect();
    let account = account_of;
    let matching = |q: &Query, ledger: &Ledger| -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let mut got = Vec::new();
        let mut q = q.clone();
        q.limit = 1000;
        loop {
            let page = ledger.query(&q).unwrap();
            got.extend(page.events.into_iter().map(|e| e.bytes));
            match page.next_token {
                Some(t) => q.page_token = Some(t),
                None => break,
            }
        }
        let mut want: Vec<Vec<u8>> = events
            .iter()
            .filter(|e| {
                q.filters
                    .iter()
                    .all(|(a, v)| orgtrail_store::attr_matches(e, &account(e), *a, v))
            })
            .map(|e| e.bytes().to_vec())
            .collect();
        got.sort();
        want.sort();
        (got, want)
    };

    let ledger = Ledger::open(&data, provider.clone(), cfg()).unwrap();
    assert_eq!(ledger.stats().events, 1600);
    for e in &events {
        let got = ledger
            .get(&account(e), &e.fields().event_id)
            .unwrap()
            .unwrap();
        assert_eq!(got.bytes, e.bytes());
    }
    let popular = Query {
        filters: vec![(Attr::Region, "us-east-1".into())],
        ..Query::default()
    };
    let (got, want) = matching(&popular, &ledger);
    assert!(want.len() > 1024, "a list long enough for a skip table");
    assert_eq!(got, want);
    let name = events[7].fields().event_name.clone();
    let combined = Query {
        filters: vec![
            (Attr::Region, "us-east-1".into()),
            (Attr::EventName, name.to_string()),
        ],
        ..Query::default()
    };
    let (got, want) = matching(&combined, &ledger);
    assert!(!want.is_empty());
    assert_eq!(got, want);

    // New groups go to the record log.
    let fresh = append_generated(&ledger, 200, 61);
    ledger.close().unwrap();
    drop(ledger);
    assert!(data.join("log").read_dir().unwrap().count() >= 1);

    // Marked format 4: an upgrade has nothing to do.
    let again = upgrade(&data, 256).unwrap();
    assert_eq!((again.from, again.to), (4, 4));
    let ledger = Ledger::open(&data, provider.clone(), cfg()).unwrap();
    assert_eq!(ledger.stats().events, 1800);
    for e in [&events[0], &events[1599], &fresh[0], &fresh[199]] {
        let got = ledger
            .get(&account(e), &e.fields().event_id)
            .unwrap()
            .unwrap();
        assert_eq!(got.bytes, e.bytes());
    }
    ledger.close().unwrap();
    drop(ledger);

    // The tree the old store signed is the same: its saved checkpoint verifies, and so does
    // everything after it.
    let r = verify_against_saved(&fixture, &data, provider);
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(r.events, 1800);
}

/// A store written before eventCategory and insightType were indexed (the format 2 fixture):
/// its old events are not in those indexes, and every lookup by them says from which sequence
/// number it is complete; the events stored after the upgrade are found. Lookups by the other
/// attributes stay complete, the mark survives a reopen, and full verification does not count
/// the old events' absence from the new indexes as damage.
#[test]
fn a_store_written_before_category_indexing_says_from_where_lookups_by_it_are_complete() {
    use orgtrail_store::{Attr, EventStore, Query};
    let Fixture {
        dir: fixture,
        _tmp,
        data,
        provider,
    } = Fixture::copy("format2");
    let ledger = Ledger::open(&data, provider.clone(), cfg()).unwrap();
    assert_eq!(
        ledger.attrs_indexed_from(),
        1601,
        "after the 1,600 old events"
    );
    let account = "111111111111";
    let insights = [
        common::insight_event(account, 1, 29_000_000, "Start", "ApiCallRateInsight"),
        common::insight_event(account, 2, 29_000_009, "End", "ApiCallRateInsight"),
        common::insight_event(account, 3, 29_000_001, "Start", "ApiErrorRateInsight"),
    ];
    let batch: Vec<(CloudTrailEvent, AccountId)> = insights
        .iter()
        .map(|e| (e.clone(), account.parse().unwrap()))
        .collect();
    assert_eq!(ledger.append_events(&batch).unwrap().stored(), 3);
    let check = |ledger: &Ledger| {
        let by = |attr: Attr, value: &str| {
            ledger
                .query(&Query {
                    filters: vec![(attr, value.to_owned())],
                    limit: 1000,
                    ..Query::default()
                })
                .unwrap()
        };
        let page = by(Attr::EventCategory, "Insight");
        assert_eq!(page.events.len(), 3);
        assert_eq!(
            page.indexed_from,
            Some(1601),
            "the answer says it may be partial"
        );
        let page = by(Attr::InsightType, "ApiErrorRateInsight");
        assert_eq!(page.events.len(), 1);
        assert_eq!(page.events[0].bytes, insights[2].bytes());
        assert_eq!(page.indexed_from, Some(1601));
        let page = by(Attr::EventCategory, "Management");
        assert!(
            page.events.is_empty(),
            "the old events are not in the new index"
        );
        assert_eq!(page.indexed_from, Some(1601));
        let page = by(Attr::Region, "us-east-1");
        assert!(!page.events.is_empty());
        assert_eq!(page.indexed_from, None, "other attributes: complete");
    };
    check(&ledger);
    ledger.close().unwrap();
    drop(ledger);
    let ledger = Ledger::open(&data, provider.clone(), cfg()).unwrap();
    assert_eq!(ledger.attrs_indexed_from(), 1601);
    check(&ledger);
    ledger.close().unwrap();
    drop(ledger);
    let r = verify_against_saved(&fixture, &data, provider);
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(r.events, 1603);
}
