//! `orgtrail validate-logs s3://BUCKET` on a real SeaweedFS that checks SigV4 signatures: a
//! trail built here (digests chained and signed with an RSA key made here) is uploaded as
//! CloudTrail delivers it, each digest's signature in its `x-amz-meta-signature`, and read in
//! place. The same report as for a copy of the bucket; tampering reported by key; a wrong
//! secret refused with a clear error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../crates/orgtrail-trailfiles/tests/support/mod.rs"]
mod support;

use common::{run, stderr, stdout};
use orgtrail_s3::test_server::Weed;
use support::{BUCKET, Keys, Signer, Trail};

struct Bucket {
    dir: tempfile::TempDir,
    trail: Trail,
    weed: Weed,
}

/// `hours` of trail uploaded to a fresh bucket (log files and digests; the signatures as
/// object metadata, not as `.sig` files).
fn bucket(hours: usize) -> Bucket {
    let dir = tempfile::tempdir().unwrap();
    let keys = Keys::new();
    let trail = Trail::build(
        &dir.path().join("copy"),
        &keys,
        hours,
        |_| Signer::Trail,
        None,
    );
    keys.write_list(&dir.path().join("keys.json"));
    let weed = Weed::start(&dir.path().join("weed"));
    let b = weed.bucket(BUCKET);
    for (i, d) in trail.digests.iter().enumerate() {
        let sig = trail.signature_of(i);
        b.put(
            d,
            std::fs::read(trail.path(d)).unwrap(),
            &[
                ("signature", &sig),
                ("signature-algorithm", "SHA256withRSA"),
            ],
        )
        .unwrap();
        for l in &trail.logs[i] {
            b.put(l, std::fs::read(trail.path(l)).unwrap(), &[])
                .unwrap();
        }
    }
    Bucket { dir, trail, weed }
}

impl Bucket {
    fn run(
        &self,
        location: &str,
        secret: &std::path::Path,
        extra: &[&str],
    ) -> std::process::Output {
        let mut args: Vec<String> = [
            "validate-logs",
            location,
            "--public-keys",
            &self.dir.path().join("keys.json").display().to_string(),
            "--endpoint",
            &self.weed.endpoint(),
            "--allow-http",
            "--access-key-id-file",
            &self.weed.access_key_id_file().display().to_string(),
            "--secret-access-key-file",
            &secret.display().to_string(),
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args, b"")
    }
}

#[test]
fn a_bucket_validates_in_place_like_its_copy_and_tampering_is_reported_by_key() {
    let t = bucket(4);
    let secret = t.weed.secret_access_key_file();
    let location = format!("s3://{BUCKET}");
    let out = t.run(&location, &secret, &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(
        text.contains("\n4/4 digest files valid\n8/8 log files valid\n"),
        "{text}"
    );
    // The same report as the directory copy's (which has the newest signature as a sidecar).
    let copy = run(
        &[
            "validate-logs",
            &t.trail.root.display().to_string(),
            "--public-keys",
            &t.dir.path().join("keys.json").display().to_string(),
            "--bucket",
            BUCKET,
            "--json",
        ],
        b"",
    );
    let from_s3 = t.run(&location, &secret, &["--json"]);
    let report = |o: &std::process::Output| {
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["report"].clone()
    };
    assert_eq!(report(&from_s3), report(&copy));

    // A log file overwritten in the bucket is reported by key.
    let b = orgtrail_s3::Blocking::owned(&t.weed.options(BUCKET)).unwrap();
    let modified = &t.trail.logs[2][1];
    b.put(modified, support::gzip(b"{\"Records\":[]}"), &[])
        .unwrap();
    let out = t.run(&location, &secret, &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(
        text.contains(&format!(
            "Log file\t{modified}\tINVALID: hash value doesn't match"
        )),
        "{text}"
    );
    assert!(
        text.contains("7/8 log files valid, 1/8 log files INVALID"),
        "{text}"
    );
}

#[test]
fn a_wrong_secret_is_refused_with_a_clear_error() {
    let t = bucket(1);
    let wrong = t.dir.path().join("wrong");
    std::fs::write(&wrong, "wrong-secret-zz8\n").unwrap();
    let out = t.run(&format!("s3://{BUCKET}"), &wrong, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("refused the credentials (SignatureDoesNotMatch)"),
        "{err}"
    );
    assert!(!err.contains("wrong-secret-zz8"), "{err}");
}
