//! `orgtrail export` on a real store, as a user runs it: every stored event in the archive
//! exactly once and byte for byte (against `lookup`), `validate-logs --public-key` says all
//! valid, tampering is reported by key, a rerun writes nothing, the archive imports into a
//! fresh store with the same `stats`, and the export is refused while a collector runs on the
//! store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/org.rs"]
mod org;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use common::{run, stderr, stdout};
use org::{Org, p};

const BUCKET: &str = "example-archive";
const START: &str = "2020-01-01T00:00:00Z";

struct Store {
    dir: tempfile::TempDir,
}

impl Store {
    /// Keys and a store holding `n` generated events of two accounts, in three bursts
    /// hours apart.
    fn new(n: usize) -> Store {
        let dir = tempfile::tempdir().unwrap();
        let s = Store { dir };
        assert!(
            run(&["keys", "init", "--out", &s.p("keys")], b"")
                .status
                .success()
        );
        let mut all = Vec::new();
        for (seed, start) in [
            ("1", "2026-11-01T00:00:00Z"),
            ("2", "2026-11-01T03:00:00Z"),
            ("3", "2026-11-01T06:00:00Z"),
        ] {
            let events = run(
                &[
                    "gen-events",
                    "--count",
                    &(n / 3).to_string(),
                    "--account",
                    "111122223333",
                    "--account",
                    "444455556666",
                    "--seed",
                    seed,
                    "--start",
                    start,
                ],
                b"",
            );
            assert!(events.status.success());
            all.extend_from_slice(&events.stdout);
        }
        std::fs::write(s.path("events.jsonl"), &all).unwrap();
        let o = s.import("data", &s.p("events.jsonl"));
        assert_eq!(
            stdout(&o).trim(),
            format!("stored={n} duplicates=0 conflicts=0 rejected=0")
        );
        s
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn p(&self, name: &str) -> String {
        p(&self.path(name))
    }

    fn import(&self, data: &str, input: &str) -> std::process::Output {
        let o = run(
            &[
                "import",
                "--data-dir",
                &self.p(data),
                "--keys",
                &self.p("keys"),
                input,
            ],
            b"",
        );
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        o
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
        run(
            &[
                "validate-logs",
                &self.p("archive"),
                "--public-key",
                &self.p("keys/signing.pub"),
                "--bucket",
                BUCKET,
            ],
            b"",
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
                START,
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
        let o = run(
            &[
                "stats",
                "--data-dir",
                &self.p(data),
                "--keys",
                &self.p("keys"),
                "--start",
                START,
                "--by",
                "account,region,eventName",
                "--top",
                "1000",
            ],
            b"",
        );
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    }
}

fn export(data: &Path, keys: &Path, to: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "export".to_owned(),
        "--data-dir".into(),
        p(data),
        "--keys".into(),
        p(keys),
        "--to".into(),
        p(to),
        "--bucket".into(),
        BUCKET.into(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&args, b"")
}

/// `exported events=N ...`: the value of `name`.
fn field(out: &str, name: &str) -> u64 {
    out.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{name} in {out}"))
        .parse()
        .unwrap()
}

/// Relative path -> bytes of every file under `dir/AWSLogs`.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.join("AWSLogs")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                let rel = e.path().strip_prefix(dir).unwrap().to_owned();
                out.insert(rel, std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

/// Every record of every exported log file, sorted.
fn exported(files: &BTreeMap<PathBuf, Vec<u8>>) -> Vec<String> {
    let mut out = Vec::new();
    for (path, gz) in files {
        let name = path.to_str().unwrap();
        if !name.contains("/CloudTrail/") || name.ends_with(".sig") {
            continue;
        }
        let mut text = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut text)
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let n = v["Records"].as_array().unwrap().len();
        // The records are the stored bytes: split the array's text at the top level.
        let body = text
            .strip_prefix("{\"Records\":[")
            .and_then(|t| t.strip_suffix("]}"))
            .unwrap();
        let records = split_top_level(body);
        assert_eq!(records.len(), n, "{name}");
        out.extend(records);
    }
    out.sort();
    out
}

/// `a,b,c` where each item is a JSON object (commas inside strings and objects kept).
fn split_top_level(body: &str) -> Vec<String> {
    let (mut depth, mut in_str, mut esc, mut start) = (0i32, false, false, 0usize);
    let mut out = Vec::new();
    for (i, c) in body.char_indices() {
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, '\\') => esc = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '{' | '[' => depth += 1,
            '}' | ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(body[start..i].to_owned());
                start = i + 1;
            }
            _ => {}
        }
    }
    if !body.is_empty() {
        out.push(body[start..].to_owned());
    }
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
        files
            .keys()
            .any(|k| k.to_str().unwrap().ends_with(".json.gz.sig")),
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
    let o = s.import("data2", &s.p("archive"));
    assert_eq!(
        stdout(&o).trim(),
        "stored=3000 duplicates=0 conflicts=0 rejected=0"
    );
    assert_eq!(s.stored("data2"), s.stored("data"));
    assert_eq!(s.stats("data2"), s.stats("data"));
    // Into the store it came from: every event a duplicate (same bytes), none a conflict.
    let o = s.import("data", &s.p("archive"));
    assert_eq!(
        stdout(&o).trim(),
        "stored=0 duplicates=3000 conflicts=0 rejected=0"
    );

    // Tampering is reported by key.
    let logs: Vec<&PathBuf> = files
        .keys()
        .filter(|k| k.to_str().unwrap().contains("/CloudTrail/"))
        .collect();
    let modified = logs[0].to_str().unwrap();
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
    let digests: Vec<&PathBuf> = files
        .keys()
        .filter(|k| {
            let k = k.to_str().unwrap();
            k.contains("/CloudTrail-Digest/") && k.ends_with(".json.gz")
        })
        .collect();
    // One in the middle of its chain: an account and region with three or more.
    let deleted = digests
        .windows(3)
        .find(|w| same_chain(w[0], w[2]))
        .map(|w| w[1].to_str().unwrap())
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
fn same_chain(a: &Path, b: &Path) -> bool {
    let chain = |k: &Path| {
        let parts: Vec<String> = k.iter().map(|c| c.to_str().unwrap().to_owned()).collect();
        (parts[1].clone(), parts[3].clone())
    };
    chain(a) == chain(b)
}

#[test]
fn export_is_refused_while_a_collector_runs_on_the_store_and_s3_needs_a_state_dir() {
    let org = Org::new();
    let events = run(&["gen-events", "--count", "200", "--accounts", "1"], b"");
    std::fs::write(org.path("events.jsonl"), &events.stdout).unwrap();
    let o = run(
        &[
            "import",
            "--data-dir",
            &p(&org.path("data")),
            "--keys",
            &p(&org.path("keys")),
            &p(&org.path("events.jsonl")),
        ],
        b"",
    );
    assert!(o.status.success(), "{}", stderr(&o));
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
