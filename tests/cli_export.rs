//! `orgtrail export` on a real store, as a user runs it: every stored event in the archive
//! exactly once and byte for byte (against `lookup`), `validate-logs --public-key` says all
//! valid, tampering is reported by key, a rerun writes nothing, the archive imports into a
//! fresh store with the same `stats`, and the export is refused while a collector runs on the
//! store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/archive.rs"]
mod archive;
mod common;
#[path = "common/org.rs"]
mod org;

use std::io::Read;
use std::path::Path;

use archive::{BUCKET, field, import, records, tree};
use common::{run, stderr, stdout};
use org::{Org, p};

struct Store {
    dir: tempfile::TempDir,
}

impl Store {
    /// Keys and a store holding `n` generated events of two accounts, in three bursts
    /// hours apart.
    fn new(n: usize) -> Store {
        let dir = tempfile::tempdir().unwrap();
        archive::store(
            dir.path(),
            &[
                ("1", "2026-11-01T00:00:00Z"),
                ("2", "2026-11-01T03:00:00Z"),
                ("3", "2026-11-01T06:00:00Z"),
            ],
            n / 3,
        );
        Store { dir }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn p(&self, name: &str) -> String {
        p(&self.path(name))
    }

    fn import(&self, data: &str, input: &str) -> std::process::Output {
        import(&self.path(data), &self.path("keys"), &self.path(input))
    }

    fn export(&self, extra: &[&str]) -> std::process::Output {
        export(
            &self.path("data"),
            &self.path("keys"),
            &self.path("archive"),
            extra,
        )
    }

    fn validate(&self) -> std::process::Output {
        archive::validate_logs(
            &self.p("archive"),
            &self.path("keys/signing.pub"),
            &["--bucket".into(), BUCKET.into()],
        )
    }

    /// Every stored event's bytes, as `lookup --output jsonl` prints them.
    fn stored(&self, data: &str) -> Vec<String> {
        let o = run(
            &[
                "lookup",
                "--data-dir",
                &self.p(data),
                "--keys",
                &self.p("keys"),
                "--start",
                "2020-01-01T00:00:00Z",
                "--max",
                "1000000",
                "--output",
                "jsonl",
            ],
            b"",
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let mut lines: Vec<String> = stdout(&o).lines().map(str::to_owned).collect();
        lines.sort();
        lines
    }

    fn stats(&self, data: &str) -> String {
        archive::stats(
            &self.path(data),
            &self.path("keys"),
            "account,region,eventName",
        )
    }
}

fn export(data: &Path, keys: &Path, to: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["--bucket".to_owned(), BUCKET.into()];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    archive::export(data, keys, &p(to), &args)
}

/// Every record of every exported log file, sorted.
fn exported(files: &std::collections::BTreeMap<String, Vec<u8>>) -> Vec<String> {
    let mut out: Vec<String> = files
        .iter()
        .filter(|(k, _)| archive::is_log_file(k))
        .flat_map(|(_, gz)| records(gz))
        .collect();
    out.sort();
    out
}

#[test]
fn an_export_holds_every_event_once_validates_and_imports_back() {
    let s = Store::new(3000);
    let o = s.export(&[]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert_eq!(field(&out, "events"), 3000, "{out}");
    assert_eq!(field(&out, "files"), field(&out, "digests"), "{out}");

    // Byte for byte, each exactly once.
    let files = tree(&s.path("archive"));
    assert_eq!(exported(&files), s.stored("data"));
    assert!(
        files.keys().any(|k| k.ends_with(".json.gz.sig")),
        "digests have their signature beside them"
    );

    // The store's public key alone validates it.
    let v = s.validate();
    let text = stdout(&v);
    assert_eq!(v.status.code(), Some(0), "{text}{}", stderr(&v));
    let digests = field(&out, "digests");
    assert!(
        text.contains(&format!(
            "\n{digests}/{digests} digest files valid\n{digests}/{digests} log files valid\n"
        )),
        "{text}"
    );
    assert!(!text.contains("INVALID"), "{text}");

    // Again: nothing new, nothing rewritten.
    let again = s.export(&[]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(field(&stdout(&again), "events"), 0);
    assert_eq!(field(&stdout(&again), "already-exported"), 0);
    assert_eq!(tree(&s.path("archive")), files);

    // The archive imports into a fresh store as the same events, with the same counts.
    let o = s.import("data2", "archive");
    assert_eq!(
        stdout(&o).trim(),
        "stored=3000 duplicates=0 conflicts=0 rejected=0"
    );
    assert_eq!(s.stored("data2"), s.stored("data"));
    assert_eq!(s.stats("data2"), s.stats("data"));
    // Into the store it came from: every event a duplicate (same bytes), none a conflict.
    let o = s.import("data", "archive");
    assert_eq!(
        stdout(&o).trim(),
        "stored=0 duplicates=3000 conflicts=0 rejected=0"
    );

    // Tampering is reported by key.
    let logs: Vec<&String> = files.keys().filter(|k| archive::is_log_file(k)).collect();
    let modified = logs[0].as_str();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&files[logs[0]][..])
        .read_to_string(&mut text)
        .unwrap();
    let changed = text.replacen("\"eventTime\":\"2026", "\"eventTime\":\"2025", 1);
    assert_ne!(changed, text);
    std::fs::write(
        s.path("archive").join(modified),
        common::gzip(changed.as_bytes()),
    )
    .unwrap();
    let digests: Vec<&String> = files
        .keys()
        .filter(|k| k.contains("/CloudTrail-Digest/") && k.ends_with(".json.gz"))
        .collect();
    // One in the middle of its chain: an account and region with three or more.
    let deleted = digests
        .windows(3)
        .find(|w| same_chain(w[0], w[2]))
        .map(|w| w[1].as_str())
        .unwrap();
    std::fs::remove_file(s.path("archive").join(deleted)).unwrap();
    let v = s.validate();
    let text = stdout(&v);
    assert_eq!(v.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "Log file\t{modified}\tINVALID: hash value doesn't match"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("Digest file\t{deleted}\tINVALID: not found")),
        "{text}"
    );
}

/// Two digest keys of the same account and region.
fn same_chain(a: &str, b: &str) -> bool {
    fn chain(k: &str) -> (&str, &str) {
        let parts: Vec<&str> = k.split('/').collect();
        (parts[1], parts[3])
    }
    chain(a) == chain(b)
}

#[test]
fn export_is_refused_while_a_collector_runs_on_the_store_and_s3_needs_a_state_dir() {
    let org = Org::new();
    let events = run(&["gen-events", "--count", "200", "--accounts", "1"], b"");
    std::fs::write(org.path("events.jsonl"), &events.stdout).unwrap();
    import(
        &org.path("data"),
        &org.path("keys"),
        &org.path("events.jsonl"),
    );
    let mut c = org.collector(0, "");
    let o = export(
        &org.path("data"),
        &org.path("keys"),
        &org.path("archive"),
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stderr(&o).contains("in use"), "{}", stderr(&o));
    assert_eq!(stdout(&o), "", "nothing may be claimed as exported");
    assert!(!org.path("archive/AWSLogs").exists());
    org::sigterm(&mut c);
    drop(c);
    let o = export(
        &org.path("data"),
        &org.path("keys"),
        &org.path("archive"),
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(field(&stdout(&o), "events"), 200);

    let o = export(
        &org.path("data"),
        &org.path("keys"),
        Path::new("s3://bucket/prefix"),
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("an s3:// export needs --state-dir DIR"),
        "{}",
        stderr(&o)
    );
}
