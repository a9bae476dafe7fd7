//! A store of format 1, written by the previous orgtrail, is refused until `upgrade` converts
//! it; then it holds the same events, the same Merkle tree (its old checkpoint verifies), and
//! answers from index runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;

use orgtrail_core::{AccountId, CloudTrailEvent};
use orgtrail_crypto::LocalKeyProvider;
use orgtrail_crypto::signing::VerifyingKey;
use orgtrail_store::{Ledger, LedgerConfig, SavedCheckpoint, upgrade, verify_full};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn a_format_1_store_is_refused_then_upgraded_in_place_with_its_tree_unchanged() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format1");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_dir(&fixture.join("data"), &data);
    let keys = fixture.join("keys");
    let provider = Arc::new(LocalKeyProvider::load(&keys).unwrap());
    let cfg = || LedgerConfig {
        index_run_events: 256,
        ..LedgerConfig::default()
    };

    let err = Ledger::open(&data, provider.clone(), cfg())
        .unwrap_err()
        .to_string();
    assert!(err.contains("has format 1"), "{err}");
    assert!(err.contains("orgtrail store upgrade"), "{err}");

    let report = upgrade(&data, 256).unwrap();
    assert_eq!((report.from, report.to, report.events), (1, 3, 600));
    // Runs are cut at group boundaries once 256 events are in: the import's groups were larger.
    assert!(report.runs >= 1, "{report:?}");
    assert!(data.join("index").read_dir().unwrap().count() >= 1);
    assert!(report.subtrees >= 3, "{report:?}");
    // Again: nothing to do.
    let again = upgrade(&data, 256).unwrap();
    assert_eq!(
        (again.from, again.to, again.runs, again.subtrees),
        (3, 3, 0, 0)
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
    let fresh: Vec<CloudTrailEvent> = orgtrail_gen::Generator::new(orgtrail_gen::GenConfig {
        count: 100,
        accounts: 2,
        seed: 99,
        ..orgtrail_gen::GenConfig::default()
    })
    .map(|b| CloudTrailEvent::parse(b).unwrap())
    .collect();
    let mut p = ledger.preparer();
    let prepared = fresh
        .iter()
        .map(|e| {
            let a: AccountId = e
                .fields()
                .recipient_account_id
                .as_ref()
                .unwrap()
                .parse()
                .unwrap();
            p.prepare(e, a).unwrap()
        })
        .collect();
    let out = ledger.append_blocking(prepared).unwrap();
    assert_eq!(out.stored(), 100);
    drop(p);
    ledger.close().unwrap();
    drop(ledger);
    assert!(data.join("log").read_dir().unwrap().count() >= 1);
    let ledger = Ledger::open(&data, provider.clone(), cfg()).unwrap();
    assert_eq!(ledger.stats().events, 700);
    for e in [&fresh[0], &fresh[99]] {
        let f = e.fields();
        let a: AccountId = f.recipient_account_id.as_ref().unwrap().parse().unwrap();
        assert_eq!(
            ledger.get(&a, &f.event_id).unwrap().unwrap().bytes,
            e.bytes()
        );
    }
    ledger.close().unwrap();
    drop(ledger);

    // The tree is the one the old store signed: its saved checkpoint verifies.
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture.join("checkpoint.json")).unwrap()).unwrap();
    let saved = SavedCheckpoint {
        name: "checkpoint.json".into(),
        note: saved["note"].as_str().unwrap().to_owned(),
    };
    let vk = VerifyingKey::load(&keys.join("signing.pub")).unwrap();
    let r = verify_full(&data, provider, &vk, &[saved]);
    assert!(r.ok(), "{:?}", r.problems);
}
