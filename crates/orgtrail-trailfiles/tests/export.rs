//! `orgtrail export`'s library on a real directory: every event exactly once, byte for byte;
//! the archive validates with the store's Ed25519 key alone; reruns, later runs and an
//! interrupted run never duplicate an event; tampering is reported by key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use orgtrail_core::{AccountId, Timestamp};
use orgtrail_crypto::signing::{SigningKey, VerifyingKey};
use orgtrail_trailfiles::export::export;
use orgtrail_trailfiles::{
    DirStore, EventSource, ExportOptions, FindingKind, ObjectStore, PublicKeySet, SourceEvent,
    TrailKey, ValidateOptions, log_keys, validate,
};

const ACCOUNTS: [&str; 2] = ["111122223333", "444455556666"];
const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];

/// A store in memory: events in sequence order, times out of order across hours.
struct Source {
    events: Vec<SourceEvent>,
    /// Fail reading once this many chunks were read (an interrupted export).
    fail_after: Cell<Option<usize>>,
}

fn event(seq: u64) -> SourceEvent {
    let account = ACCOUNTS[(seq % 2) as usize];
    let region = REGIONS[(seq / 2 % 2) as usize];
    // Hours 0..6, interleaved; a few minutes within.
    let time = Timestamp::parse("2024-03-01T00:00:00Z").unwrap().millis()
        + (seq / 4 % 6) as i64 * 3_600_000
        + (seq % 50) as i64 * 60_000;
    let t = Timestamp(time);
    let bytes = format!(
        r#"{{"eventVersion":"1.08","userIdentity":{{"type":"IAMUser","userName":"u{seq}"}},"eventTime":"{t}","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"{region}","sourceIPAddress":"10.0.0.1","eventID":"00000000-0000-4000-8000-{seq:012}","readOnly":true,"eventType":"AwsApiCall","recipientAccountId":"{account}","requestParameters":{{"n": {seq} }}}}"#
    );
    SourceEvent {
        seq,
        account: account.parse().unwrap(),
        time: t,
        bytes: bytes.into_bytes(),
    }
}

impl Source {
    fn new(n: u64) -> Source {
        Source {
            events: (1..=n).map(event).collect(),
            fail_after: Cell::new(None),
        }
    }

    fn grow(&mut self, n: u64) {
        let from = self.events.len() as u64 + 1;
        self.events.extend((from..from + n).map(event));
    }
}

impl EventSource for Source {
    fn origin(&self) -> String {
        "orgtrail/test-store".into()
    }

    fn head(&self) -> Result<u64, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.events.len() as u64)
    }

    fn read(
        &self,
        first: u64,
        last: u64,
    ) -> Result<Vec<SourceEvent>, Box<dyn std::error::Error + Send + Sync>> {
        if let Some(n) = self.fail_after.get() {
            if n == 0 {
                return Err("the store went away".into());
            }
            self.fail_after.set(Some(n - 1));
        }
        Ok(self.events[(first - 1) as usize..last as usize].to_vec())
    }
}

fn keys(signer: &SigningKey) -> PublicKeySet {
    let mut k = PublicKeySet::default();
    k.add_ed25519(VerifyingKey::from_raw(signer.public_key()));
    k
}

/// Every record of every log file: (file key, record bytes).
fn records(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let store = DirStore::new(dir, None, "").unwrap();
    let mut out = Vec::new();
    for key in log_keys(&store).unwrap() {
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(store.open(&key).unwrap())
            .read_to_end(&mut text)
            .unwrap();
        #[derive(serde::Deserialize)]
        struct File<'a> {
            #[serde(borrow, rename = "Records")]
            records: Vec<&'a serde_json::value::RawValue>,
        }
        let f: File<'_> = serde_json::from_slice(&text).unwrap();
        for r in f.records {
            out.push((key.clone(), r.get().as_bytes().to_vec()));
        }
    }
    out
}

/// Each event of `source` is in the archive exactly once, byte for byte, in a file of its
/// account, region and hour.
fn exactly_once(dir: &Path, source: &Source) {
    let mut by_bytes: BTreeMap<Vec<u8>, Vec<String>> = BTreeMap::new();
    for (key, bytes) in records(dir) {
        by_bytes.entry(bytes).or_default().push(key);
    }
    assert_eq!(by_bytes.len(), source.events.len());
    for e in &source.events {
        let keys = by_bytes.get(&e.bytes).expect("every event is exported");
        assert_eq!(keys.len(), 1, "seq {} is in {keys:?}", e.seq);
        let k = TrailKey::parse(&keys[0]).unwrap();
        assert_eq!(k.location.account, e.account.as_str());
        let hour = e.time.millis() - e.time.millis().rem_euclid(3_600_000);
        assert_eq!(k.stamp.millis(), hour, "{}", keys[0]);
        let text = String::from_utf8(e.bytes.clone()).unwrap();
        assert!(
            text.contains(&format!("\"awsRegion\":\"{}\"", k.location.region)),
            "{}",
            keys[0]
        );
    }
}

fn validate_dir(dir: &Path, signer: &SigningKey) -> orgtrail_trailfiles::Report {
    let store = DirStore::new(dir, Some("orgtrail-archive".into()), "").unwrap();
    validate(&store, &keys(signer), &ValidateOptions::default()).unwrap()
}

fn all_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let store = DirStore::new(dir, None, "").unwrap();
    store
        .list()
        .unwrap()
        .into_iter()
        .filter(|k| k.starts_with("AWSLogs/"))
        .map(|k| {
            let mut b = Vec::new();
            store.open(&k).unwrap().read_to_end(&mut b).unwrap();
            (k, b)
        })
        .collect()
}

#[test]
fn an_export_holds_every_event_once_and_validates_with_the_store_key() {
    let dir = tempfile::tempdir().unwrap();
    let (signer, _) = SigningKey::generate().unwrap();
    let mut source = Source::new(600);
    let opts = ExportOptions::default();
    let s = export(dir.path(), &source, &signer, &opts).unwrap();
    assert_eq!(s.events, 600);
    assert_eq!(s.through, 600);
    // 2 accounts x 2 regions x 6 hours.
    assert_eq!(s.files, 24);
    assert_eq!(s.digests, 24);
    exactly_once(dir.path(), &source);
    let r = validate_dir(dir.path(), &signer);
    assert!(r.is_valid(), "{:?}", r.findings);
    assert_eq!((r.digests_valid, r.logs_valid, r.chains), (24, 24, 4));
    assert!(r.findings.is_empty(), "{:?}", r.findings);

    // The same export again: nothing new, nothing rewritten.
    let before = all_files(dir.path());
    let again = export(dir.path(), &source, &signer, &opts).unwrap();
    assert_eq!((again.events, again.files, again.digests), (0, 0, 0));
    assert_eq!(all_files(dir.path()), before);

    // Events stored since, some of hours already exported: only they are written, in new
    // files listed by new digests chained to the old ones.
    source.grow(300);
    let later = export(dir.path(), &source, &signer, &opts).unwrap();
    assert_eq!(later.events, 300);
    exactly_once(dir.path(), &source);
    let r = validate_dir(dir.path(), &signer);
    assert!(r.is_valid(), "{:?}", r.findings);
    assert_eq!(r.chains, 4);
    assert_eq!(r.digests_valid, 24 + later.digests);

    // Another key does not verify it.
    let (other, _) = SigningKey::generate().unwrap();
    let r = validate_dir(dir.path(), &other);
    assert!(!r.is_valid());
    assert!(
        r.findings
            .iter()
            .all(|f| f.kind == FindingKind::DigestUnknownKey),
        "{:?}",
        r.findings
    );
}

#[test]
fn filtered_runs_export_each_event_once_whatever_the_order() {
    let dir = tempfile::tempdir().unwrap();
    let (signer, _) = SigningKey::generate().unwrap();
    let source = Source::new(400);
    let one: AccountId = ACCOUNTS[0].parse().unwrap();
    let mut opts = ExportOptions::default();
    opts.filter.accounts.insert(one);
    opts.filter.since = Some(Timestamp::parse("2024-03-01T02:00:00Z").unwrap());
    let a = export(dir.path(), &source, &signer, &opts).unwrap();
    assert!(a.events > 0 && a.events < 200, "{a:?}");
    opts.filter.since = None;
    let b = export(dir.path(), &source, &signer, &opts).unwrap();
    assert_eq!(a.events + b.events, 200, "{b:?}");
    assert_eq!(b.already, a.events);
    let all = export(dir.path(), &source, &signer, &ExportOptions::default()).unwrap();
    assert_eq!(a.events + b.events + all.events, 400);
    exactly_once(dir.path(), &source);
    let r = validate_dir(dir.path(), &signer);
    assert!(r.is_valid(), "{:?}", r.findings);
}

#[test]
fn an_interrupted_export_is_finished_by_the_next_with_no_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let (signer, _) = SigningKey::generate().unwrap();
    let mut source = Source::new(3000);
    // Small files, so that many are in place before the interruption.
    let opts = ExportOptions {
        max_file_bytes: 4096,
        ..ExportOptions::default()
    };
    source.fail_after.set(Some(2));
    let err = export(dir.path(), &source, &signer, &opts).unwrap_err();
    assert!(err.to_string().contains("the store went away"), "{err}");
    let partial = records(dir.path()).len();
    assert!(partial > 500, "files were in place: {partial}");
    // More events arrive before the rerun.
    source.fail_after.set(None);
    source.grow(100);
    let s = export(dir.path(), &source, &signer, &opts).unwrap();
    assert!(s.finished_interrupted);
    exactly_once(dir.path(), &source);
    let r = validate_dir(dir.path(), &signer);
    assert!(r.is_valid(), "{:?}", r.findings);
    assert!(
        !dir.path()
            .join(".orgtrail-export/tmp")
            .read_dir()
            .unwrap()
            .any(|_| true),
        "no temporary file is left"
    );
}

#[test]
fn tampering_with_an_archive_is_reported_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let (signer, _) = SigningKey::generate().unwrap();
    let source = Source::new(600);
    export(dir.path(), &source, &signer, &ExportOptions::default()).unwrap();
    let store = DirStore::new(dir.path(), None, "").unwrap();
    let logs = log_keys(&store).unwrap();
    let mut digests: Vec<String> = store
        .list()
        .unwrap()
        .into_iter()
        .filter(|k| k.ends_with(".json.gz") && k.contains("CloudTrail-Digest"))
        .collect();
    digests.sort();
    // A record changed in a log file.
    let modified = &logs[0];
    let path = dir.path().join(modified);
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap())
        .read_to_end(&mut text)
        .unwrap();
    let text = String::from_utf8(text)
        .unwrap()
        .replacen("GetObject", "PutObject", 1);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, text.as_bytes()).unwrap();
    std::fs::write(&path, gz.finish().unwrap()).unwrap();
    // A digest in the middle of a chain deleted (with its sidecar).
    let deleted = &digests[2];
    std::fs::remove_file(dir.path().join(deleted)).unwrap();
    std::fs::remove_file(dir.path().join(format!("{deleted}.sig"))).unwrap();
    let r = validate_dir(dir.path(), &signer);
    assert!(!r.is_valid());
    let kinds: Vec<(FindingKind, &str)> = r
        .findings
        .iter()
        .map(|f| (f.kind, f.key.as_str()))
        .collect();
    assert!(
        kinds.contains(&(FindingKind::LogModified, modified.as_str())),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(FindingKind::DigestMissing, deleted.as_str())),
        "{kinds:?}"
    );
}

#[test]
fn refusals() {
    let dir = tempfile::tempdir().unwrap();
    let (signer, _) = SigningKey::generate().unwrap();
    let source = Source::new(10);
    // A tree this export did not write.
    std::fs::create_dir_all(dir.path().join("AWSLogs")).unwrap();
    let e = export(dir.path(), &source, &signer, &ExportOptions::default()).unwrap_err();
    assert!(e.to_string().contains("did not write"), "{e}");
    // Another bucket than the archive's first export named.
    let dir = tempfile::tempdir().unwrap();
    export(dir.path(), &source, &signer, &ExportOptions::default()).unwrap();
    let opts = ExportOptions {
        bucket: "another-bucket".into(),
        ..ExportOptions::default()
    };
    let e = export(dir.path(), &source, &signer, &opts).unwrap_err();
    assert!(e.to_string().contains("--bucket"), "{e}");
}

#[test]
fn a_prefix_and_an_organization_id_are_in_every_key_and_validate() {
    let dir = tempfile::tempdir().unwrap();
    let (signer, _) = SigningKey::generate().unwrap();
    let source = Source::new(100);
    let opts = ExportOptions {
        bucket: "org-archive".into(),
        prefix: "logs/ct/".into(),
        org_id: Some("o-abc123".into()),
        ..ExportOptions::default()
    };
    export(dir.path(), &source, &signer, &opts).unwrap();
    let store = DirStore::new(dir.path(), Some("org-archive".into()), "logs/ct").unwrap();
    let logs = log_keys(&store).unwrap();
    assert!(!logs.is_empty());
    for k in &logs {
        assert!(k.starts_with("logs/ct/AWSLogs/o-abc123/"), "{k}");
        assert_eq!(
            TrailKey::parse(k).unwrap().location.org_id.as_deref(),
            Some("o-abc123")
        );
    }
    let r = validate(&store, &keys(&signer), &ValidateOptions::default()).unwrap();
    assert!(r.is_valid(), "{:?}", r.findings);
    assert_eq!(r.logs_valid, logs.len() as u64);
    // Checked against another bucket, every digest has moved.
    let elsewhere = DirStore::new(dir.path(), Some("other-bucket".into()), "logs/ct").unwrap();
    let r = validate(&elsewhere, &keys(&signer), &ValidateOptions::default()).unwrap();
    assert!(!r.is_valid());
    assert!(
        r.findings
            .iter()
            .any(|f| f.kind == FindingKind::DigestMoved)
    );
}

thread_local! {
    /// The step [`crash_at`] stops the export at, as the collector's crash points do.
    static CRASH_AT: Cell<Option<&'static str>> = const { Cell::new(None) };
}

fn crash_at(step: &'static str) {
    if CRASH_AT.with(Cell::get) == Some(step) {
        panic!("crash point {step}");
    }
}

/// The collector's archive sink: bounded runs every few seconds over a growing store, some
/// stopped at each crash point and finished by the next run. Every event is archived once;
/// the files a stopped run left are written again under the same names with the same bytes;
/// the archive validates, its digests chained across the runs.
#[test]
fn bounded_runs_stopped_at_each_step_archive_every_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let (signer, _) = SigningKey::generate().unwrap();
    let mut source = Source::new(0);
    let opts = ExportOptions {
        max_events: Some(70),
        step_hook: Some(crash_at),
        ..ExportOptions::default()
    };
    let mut through = 0;
    for round in 0..12u64 {
        source.grow(45);
        let step = match round % 3 {
            0 => None,
            1 => Some("archive-files-written"),
            _ => Some("archive-digests-written"),
        };
        if let Some(step) = step {
            CRASH_AT.with(|c| c.set(Some(step)));
            let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                export(dir.path(), &source, &signer, &opts)
            }));
            CRASH_AT.with(|c| c.set(None));
            assert!(crashed.is_err(), "round {round} stopped at {step}");
        }
        let left = all_files(dir.path());
        let s = export(dir.path(), &source, &signer, &opts).unwrap();
        assert_eq!(s.finished_interrupted, step.is_some());
        assert!(s.through > through && s.through - through <= 140, "{s:?}");
        assert_eq!(s.head, source.events.len() as u64);
        through = s.through;
        // What the stopped run left is written again as it was.
        let now = all_files(dir.path());
        for (k, bytes) in &left {
            assert_eq!(now.get(k), Some(bytes), "{k} rewritten differently");
        }
    }
    // Catch up, then nothing new: no run, no write.
    while through < source.events.len() as u64 {
        through = export(dir.path(), &source, &signer, &opts).unwrap().through;
    }
    let before = all_files(dir.path());
    let idle = export(dir.path(), &source, &signer, &opts).unwrap();
    assert_eq!((idle.events, idle.files, idle.through), (0, 0, through));
    assert_eq!(all_files(dir.path()), before);
    exactly_once(dir.path(), &source);
    let r = validate_dir(dir.path(), &signer);
    assert!(r.is_valid(), "{:?}", r.findings);
    assert_eq!(r.chains, 4);
}
