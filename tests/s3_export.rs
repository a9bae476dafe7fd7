//! `orgtrail export --to s3://BUCKET/PREFIX --state-dir S` on a real SeaweedFS that checks
//! SigV4 signatures: `validate-logs s3://` on the result says all valid (each digest's
//! signature read from its `x-amz-meta-signature`); the objects are byte for byte the files of
//! a `--to DIR` export of the same store; a rerun PUTs nothing; a crash between the PUTs and
//! the commit (the state left pending) is finished by a rerun with the same names and bytes;
//! a wrong secret is refused clearly and claims nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/archive.rs"]
mod archive;
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use archive::{BUCKET, field};
use common::{stderr, stdout};
use orgtrail_s3::Blocking;
use orgtrail_s3::test_server::Weed;

const PREFIX: &str = "trail/logs";

fn p(path: &Path) -> String {
    path.to_str().unwrap().to_string()
}

struct T {
    dir: tempfile::TempDir,
    weed: Weed,
    bucket: Blocking,
}

impl T {
    /// Keys, a store of 300 events of two accounts over several hours, and an empty bucket.
    fn new() -> T {
        let dir = tempfile::tempdir().unwrap();
        archive::store(dir.path(), &[("1", "2026-11-01T00:00:00Z")], 300);
        let weed = Weed::start(&dir.path().join("weed"));
        let bucket = weed.bucket(BUCKET);
        T { dir, weed, bucket }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn s3_flags(&self, secret: &Path) -> Vec<String> {
        archive::s3_flags(&self.weed, secret)
    }

    fn export(&self, to: &str, extra: &[String]) -> std::process::Output {
        archive::export(&self.path("data"), &self.path("keys"), to, extra)
    }

    fn export_s3(&self, secret: &Path) -> std::process::Output {
        let mut extra = vec!["--state-dir".to_owned(), p(&self.path("state"))];
        extra.extend(self.s3_flags(secret));
        self.export(&format!("s3://{BUCKET}/{PREFIX}"), &extra)
    }

    /// Key -> (bytes, version) of every object under the prefix.
    fn objects(&self) -> BTreeMap<String, (Vec<u8>, String)> {
        let mut out = BTreeMap::new();
        for o in self.bucket.list_all(&format!("{PREFIX}/"), 1000).unwrap() {
            let mut body = Vec::new();
            std::io::Read::read_to_end(&mut self.bucket.open(&o.key, None).unwrap(), &mut body)
                .unwrap();
            out.insert(o.key, (body, o.version.to_string()));
        }
        out
    }
}

#[test]
fn an_s3_export_validates_in_place_equals_the_directory_export_and_a_rerun_puts_nothing() {
    let t = T::new();
    let secret = t.weed.secret_access_key_file();
    let o = t.export_s3(&secret);
    let text = stdout(&o);
    assert!(o.status.success(), "{text}{}", stderr(&o));
    assert_eq!(field(&text, "events"), 300, "{text}");
    let files = field(&text, "files");
    let digests = field(&text, "digests");
    assert!(files >= 2 && digests >= 2, "{text}");
    assert!(
        !t.path("state")
            .join("tmp")
            .read_dir()
            .unwrap()
            .any(|_| true),
        "no scratch file is left behind"
    );

    // validate-logs on the bucket itself: every digest's signature from its metadata.
    let vtext = archive::all_valid(
        &format!("s3://{BUCKET}/{PREFIX}"),
        &t.path("keys/signing.pub"),
        &t.s3_flags(&secret),
    );
    assert!(
        vtext.contains(&format!(
            "{digests}/{digests} digest files valid\n{files}/{files} log files valid"
        )),
        "{vtext}"
    );

    // Byte for byte the directory export of the same store (same bucket and prefix).
    let d = t.export(
        &p(&t.path("archive")),
        &[
            "--bucket".into(),
            BUCKET.into(),
            "--prefix".into(),
            PREFIX.into(),
        ],
    );
    assert!(d.status.success(), "{}", stderr(&d));
    let objects = t.objects();
    let bytes: BTreeMap<String, Vec<u8>> = objects
        .iter()
        .map(|(k, (b, _))| (k.clone(), b.clone()))
        .collect();
    assert_eq!(bytes.len() as u64, files + 2 * digests);
    let dir: BTreeMap<String, Vec<u8>> = archive::tree(&t.path("archive"))
        .into_iter()
        .map(|(k, b)| (format!("{PREFIX}/{k}"), b))
        .collect();
    assert_eq!(bytes, dir);
    // Each digest carries its signature (the .sig object's text) in its metadata.
    for (k, (b, _)) in objects.iter().filter(|(k, _)| k.ends_with(".sig")) {
        let digest = k.strip_suffix(".sig").unwrap();
        let sig = t.bucket.metadata(digest, "signature").unwrap();
        assert_eq!(sig.as_deref(), Some(std::str::from_utf8(b).unwrap().trim()));
        assert_eq!(
            t.bucket
                .metadata(digest, "signature-algorithm")
                .unwrap()
                .as_deref(),
            Some("Ed25519")
        );
    }

    // A rerun exports and PUTs nothing: same keys, same ETags.
    let o = t.export_s3(&secret);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(field(&stdout(&o), "events"), 0);
    assert_eq!(field(&stdout(&o), "files"), 0);
    assert_eq!(t.objects(), objects);
}

#[test]
fn a_crash_between_the_puts_and_the_commit_is_finished_with_the_same_objects() {
    let t = T::new();
    let secret = t.weed.secret_access_key_file();
    let o = t.export_s3(&secret);
    assert!(o.status.success(), "{}", stderr(&o));
    let objects = t.objects();
    // The state as a crash after the last PUT leaves it: the run pending, not committed.
    let state = t.path("state/state.json");
    let mut s: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    let run = s["runs"].as_array_mut().unwrap().pop().unwrap();
    s["pending"] = run;
    s["chains"] = serde_json::json!({});
    std::fs::write(&state, serde_json::to_vec(&s).unwrap()).unwrap();

    let o = t.export_s3(&secret);
    let text = stdout(&o);
    assert!(o.status.success(), "{text}{}", stderr(&o));
    assert!(
        text.contains("finished the interrupted export first"),
        "{text}"
    );
    assert_eq!(field(&text, "events"), 300, "{text}");
    let again = t.objects();
    let bytes = |m: &BTreeMap<String, (Vec<u8>, String)>| -> BTreeMap<String, Vec<u8>> {
        m.iter().map(|(k, (b, _))| (k.clone(), b.clone())).collect()
    };
    assert_eq!(bytes(&again), bytes(&objects), "the same names and bytes");
    let o = t.export_s3(&secret);
    assert_eq!(field(&stdout(&o), "events"), 0, "{}", stdout(&o));
}

#[test]
fn a_wrong_secret_is_refused_clearly_and_claims_nothing() {
    let t = T::new();
    let wrong = t.path("wrong");
    std::fs::write(&wrong, "wrong-secret-zz8\n").unwrap();
    let o = t.export_s3(&wrong);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("refused the credentials (SignatureDoesNotMatch)"),
        "{err}"
    );
    assert!(!err.contains("wrong-secret-zz8"), "{err}");
    assert_eq!(stdout(&o), "");
    assert!(t.objects().is_empty());
    // The right secret then exports everything.
    let o = t.export_s3(&t.weed.secret_access_key_file());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(field(&stdout(&o), "events"), 300);
}

#[test]
fn an_s3_export_needs_a_state_dir_and_refuses_an_archive_it_did_not_record() {
    let t = T::new();
    let secret = t.weed.secret_access_key_file();
    let mut flags = t.s3_flags(&secret);
    let o = t.export(&format!("s3://{BUCKET}/{PREFIX}"), &flags);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("needs --state-dir DIR"),
        "{}",
        stderr(&o)
    );

    assert!(t.export_s3(&secret).status.success());
    flags.extend(["--state-dir".to_owned(), p(&t.path("other-state"))]);
    let o = t.export(&format!("s3://{BUCKET}/{PREFIX}"), &flags);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("holds no export state"),
        "{}",
        stderr(&o)
    );
}
