//! An archive in CloudTrail's layout, for the export and archive sink tests: a store to export,
//! `orgtrail export`, the archive's files read back (from a directory or a bucket), the records
//! of each log file, and `validate-logs`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Output;

use orgtrail_s3::Blocking;
use orgtrail_s3::test_server::Weed;

use crate::common::{run, stderr, stdout};

/// The bucket the tests' archives name.
pub(crate) const BUCKET: &str = "example-archive";

fn s(path: &Path) -> String {
    path.to_str().unwrap().to_owned()
}

/// Keys in `dir/keys` and a store in `dir/data` holding `per_burst` generated events of two
/// accounts for each `(seed, start)` burst.
pub(crate) fn store(dir: &Path, bursts: &[(&str, &str)], per_burst: usize) {
    assert!(
        run(&["keys", "init", "--out", &s(&dir.join("keys"))], b"")
            .status
            .success()
    );
    let mut all = Vec::new();
    for (seed, start) in bursts {
        let events = run(
            &[
                "gen-events",
                "--count",
                &per_burst.to_string(),
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
    std::fs::write(dir.join("events.jsonl"), &all).unwrap();
    let o = import(
        &dir.join("data"),
        &dir.join("keys"),
        &dir.join("events.jsonl"),
    );
    assert_eq!(
        stdout(&o).trim(),
        format!(
            "stored={} duplicates=0 conflicts=0 rejected=0",
            per_burst * bursts.len()
        )
    );
}

/// `orgtrail import --data-dir DATA --keys KEYS INPUT`, which must succeed.
pub(crate) fn import(data: &Path, keys: &Path, input: &Path) -> Output {
    let o = run(
        &[
            "import",
            "--data-dir",
            &s(data),
            "--keys",
            &s(keys),
            &s(input),
        ],
        b"",
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    o
}

/// `orgtrail export --data-dir DATA --keys KEYS --to TO EXTRA...`.
pub(crate) fn export(data: &Path, keys: &Path, to: &str, extra: &[String]) -> Output {
    let mut args = vec![
        "export".to_owned(),
        "--data-dir".into(),
        s(data),
        "--keys".into(),
        s(keys),
        "--to".into(),
        to.into(),
    ];
    args.extend(extra.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&args, b"")
}

/// `exported events=N ...`: the value of `name`.
pub(crate) fn field(out: &str, name: &str) -> u64 {
    out.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{name} in {out}"))
        .parse()
        .unwrap()
}

/// `orgtrail stats --by BY` of the store, every group, as printed.
pub(crate) fn stats(data: &Path, keys: &Path, by: &str) -> String {
    let o = run(
        &[
            "stats",
            "--data-dir",
            &s(data),
            "--keys",
            &s(keys),
            "--start",
            "2000-01-01T00:00:00Z",
            "--by",
            by,
            "--top",
            "100000",
        ],
        b"",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
}

/// Relative path (`AWSLogs/...`) -> bytes of every file under `dir/AWSLogs` (none if it is
/// missing).
pub(crate) fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.join("AWSLogs")];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                let rel = e.path().strip_prefix(dir).unwrap().to_owned();
                out.insert(s(&rel), std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

/// Key -> bytes of every object of `bucket` under `prefix`.
pub(crate) fn bucket_tree(bucket: &Blocking, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for o in bucket.list_all(prefix, 1000).unwrap() {
        let mut body = Vec::new();
        bucket
            .open(&o.key, None)
            .unwrap()
            .read_to_end(&mut body)
            .unwrap();
        out.insert(o.key, body);
    }
    out
}

/// Whether `key` names a log file (not a digest, its signature or a file being written).
pub(crate) fn is_log_file(key: &str) -> bool {
    key.contains("/CloudTrail/") && key.ends_with(".json.gz")
}

/// The records of a gzipped log file, each as its bytes in the file.
pub(crate) fn records(gz: &[u8]) -> Vec<String> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_string(&mut text)
        .unwrap();
    let f: BTreeMap<String, Vec<Box<serde_json::value::RawValue>>> =
        serde_json::from_str(&text).unwrap();
    f["Records"].iter().map(|r| r.get().to_owned()).collect()
}

/// Record -> the log files holding it, of every log file in `files` (key -> bytes).
pub(crate) fn by_file(files: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, gz) in files.iter().filter(|(k, _)| is_log_file(k)) {
        for r in records(gz) {
            out.entry(r).or_default().push(key.clone());
        }
    }
    out
}

/// The flags that reach `weed` with the secret in `secret` (a file).
pub(crate) fn s3_flags(weed: &Weed, secret: &Path) -> Vec<String> {
    vec![
        "--endpoint".into(),
        weed.endpoint(),
        "--allow-http".into(),
        "--access-key-id-file".into(),
        s(&weed.access_key_id_file()),
        "--secret-access-key-file".into(),
        s(secret),
    ]
}

/// `orgtrail validate-logs TARGET --public-key KEY EXTRA...`.
pub(crate) fn validate_logs(target: &str, public_key: &Path, extra: &[String]) -> Output {
    let mut args = vec![
        "validate-logs".to_owned(),
        target.to_owned(),
        "--public-key".into(),
        s(public_key),
    ];
    args.extend(extra.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&args, b"")
}

/// [`validate_logs`], which must find everything valid; its report.
pub(crate) fn all_valid(target: &str, public_key: &Path, extra: &[String]) -> String {
    let v = validate_logs(target, public_key, extra);
    let text = stdout(&v);
    assert_eq!(v.status.code(), Some(0), "{text}{}", stderr(&v));
    assert!(!text.contains("INVALID"), "{text}");
    text
}
