//! A small CloudTrail bucket on disk: hourly digests chained and signed like CloudTrail's,
//! with log files, written by the tests themselves with a real RSA key pair.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use orgtrail_core::Timestamp;
use orgtrail_crypto::rsa::RsaKeyPair;
use orgtrail_trailfiles::hex;
use serde_json::{Value, json};

pub(crate) const ACCOUNT: &str = "111122223333";
pub(crate) const REGION: &str = "us-east-1";
pub(crate) const BUCKET: &str = "trail-bucket";
/// 2024-03-01T00:00:00Z: the start of hour 0.
pub(crate) const T0: i64 = 1_709_251_200;

pub(crate) fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

pub(crate) fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn civil(secs: i64) -> (i64, i64, i64, i64, i64, i64) {
    let t = Timestamp::from_unix_secs(secs).to_string(); // 2024-03-01T00:00:00Z
    let n = |r: std::ops::Range<usize>| t[r].parse::<i64>().unwrap();
    (n(0..4), n(5..7), n(8..10), n(11..13), n(14..16), n(17..19))
}

pub(crate) fn iso(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

pub(crate) fn digest_key(end_secs: i64) -> String {
    trail_digest_key(end_secs, "main")
}

/// The key of trail `name`'s digest ending at `end_secs`.
pub(crate) fn trail_digest_key(end_secs: i64, name: &str) -> String {
    let (y, mo, d, h, mi, s) = civil(end_secs);
    format!(
        "AWSLogs/{ACCOUNT}/CloudTrail-Digest/{REGION}/{y:04}/{mo:02}/{d:02}/{ACCOUNT}_CloudTrail-Digest_{REGION}_{name}_{REGION}_{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z.json.gz"
    )
}

pub(crate) fn log_key(secs: i64, unique: &str) -> String {
    let (y, mo, d, h, mi, _) = civil(secs);
    format!(
        "AWSLogs/{ACCOUNT}/CloudTrail/{REGION}/{y:04}/{mo:02}/{d:02}/{ACCOUNT}_CloudTrail_{REGION}_{y:04}{mo:02}{d:02}T{h:02}{mi:02}Z_{unique}.json.gz"
    )
}

/// The signing keys of a test: CloudTrail's, and one that is not.
pub(crate) struct Keys {
    pub(crate) trail: RsaKeyPair,
    pub(crate) trail_fp: String,
    pub(crate) foreign: RsaKeyPair,
    pub(crate) foreign_fp: String,
}

impl Keys {
    pub(crate) fn new() -> Self {
        let trail = RsaKeyPair::generate().unwrap();
        let foreign = RsaKeyPair::generate().unwrap();
        let fp = |k: &RsaKeyPair| {
            hex::encode(&orgtrail_crypto::hash::sha256(&k.public_pkcs1_der())[..16])
        };
        Keys {
            trail_fp: fp(&trail),
            foreign_fp: fp(&foreign),
            trail,
            foreign,
        }
    }

    /// `list-public-keys` output naming only the trail's key (SPKI DER, as AWS's current
    /// documentation shows it).
    pub(crate) fn write_list(&self, path: &Path) {
        self.write_list_valid(
            path,
            "2024-01-01T00:00:00+00:00",
            "2025-01-01T00:00:00+00:00",
        );
    }

    /// `list-public-keys` output naming only the trail's key, valid from `from` to `until`.
    pub(crate) fn write_list_valid(&self, path: &Path, from: &str, until: &str) {
        let v = json!({"PublicKeyList": [{
            "Value": base64::engine::general_purpose::STANDARD.encode(self.trail.public_spki_der().unwrap()),
            "ValidityStartTime": from,
            "ValidityEndTime": until,
            "Fingerprint": self.trail_fp,
        }]});
        std::fs::write(path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    }
}

/// Who signs digest `i`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signer {
    Trail,
    /// The foreign key, naming its own fingerprint.
    Foreign,
    /// The foreign key, claiming the trail key's fingerprint.
    ForeignClaimingTrail,
}

/// A trail tree: `hours` hourly digests, two log files per hour.
pub(crate) struct Trail {
    pub(crate) root: PathBuf,
    pub(crate) digests: Vec<String>,
    pub(crate) logs: Vec<Vec<String>>,
    /// Each digest's signature (what S3 keeps as `x-amz-meta-signature`).
    pub(crate) signatures: Vec<String>,
}

impl Trail {
    pub(crate) fn build(
        root: &Path,
        keys: &Keys,
        hours: usize,
        signer: impl Fn(usize) -> Signer,
        gap_at: Option<usize>,
    ) -> Trail {
        Self::build_under(root, "", keys, hours, signer, gap_at)
    }

    /// Like `build`, with every key under the S3 key prefix `prefix` (which ends in `/`).
    /// `root` stands for the bucket's root.
    pub(crate) fn build_under(
        root: &Path,
        prefix: &str,
        keys: &Keys,
        hours: usize,
        signer: impl Fn(usize) -> Signer,
        gap_at: Option<usize>,
    ) -> Trail {
        Self::build_full(root, prefix, false, keys, hours, signer, gap_at, T0, "main")
    }

    /// Like `build`, with hour 0 starting at `t0` (Unix seconds, a whole hour).
    pub(crate) fn build_from(
        root: &Path,
        keys: &Keys,
        hours: usize,
        signer: impl Fn(usize) -> Signer,
        t0: i64,
    ) -> Trail {
        Self::build_full(root, "", false, keys, hours, signer, None, t0, "main")
    }

    /// A chain of backfill digests (`..._backfill.json.gz`) over the same hours and log files.
    pub(crate) fn build_backfill(root: &Path, keys: &Keys, hours: usize) -> Trail {
        Self::build_full(
            root,
            "",
            true,
            keys,
            hours,
            |_| Signer::Trail,
            None,
            T0,
            "main",
        )
    }

    /// Like `build`, for the trail named `name` (its log files and eventIDs carry the name
    /// too: `e-NAME-HOUR-N`), so that two trails can share a location.
    pub(crate) fn build_named(root: &Path, keys: &Keys, hours: usize, name: &str) -> Trail {
        Self::build_full(
            root,
            "",
            false,
            keys,
            hours,
            |_| Signer::Trail,
            None,
            T0,
            name,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn build_full(
        root: &Path,
        prefix: &str,
        backfill: bool,
        keys: &Keys,
        hours: usize,
        signer: impl Fn(usize) -> Signer,
        gap_at: Option<usize>,
        t0: i64,
        name: &str,
    ) -> Trail {
        let tag = if name == "main" {
            String::new()
        } else {
            format!("{name}-")
        };
        let mut signatures = Vec::new();
        let mut digests = Vec::new();
        let mut logs = Vec::new();
        let mut previous: Option<(String, String, String)> = None; // key, sha256 hex, signature hex
        for i in 0..hours {
            let start = t0 + 3600 * i as i64;
            let end = start + 3600;
            let mut entries = Vec::new();
            let mut hour_logs = Vec::new();
            for (n, minute) in [5i64, 35].into_iter().enumerate() {
                let at = start + minute * 60;
                let key = format!("{prefix}{}", log_key(at, &format!("{tag}h{i}n{n}")));
                let body = json!({"Records": [{
                    "eventVersion": "1.08", "eventID": format!("e-{tag}{i}-{n}"),
                    "eventTime": iso(at), "eventSource": "s3.amazonaws.com", "eventName": "ListBuckets",
                    "recipientAccountId": ACCOUNT, "awsRegion": REGION,
                }]});
                let inflated = serde_json::to_vec(&body).unwrap();
                write(root, &key, &gzip(&inflated));
                entries.push(json!({
                    "s3Bucket": BUCKET, "s3Object": key,
                    "hashValue": hex::encode(&orgtrail_crypto::hash::sha256(&inflated)),
                    "hashAlgorithm": "SHA-256",
                    "newestEventTime": iso(at), "oldestEventTime": iso(at),
                }));
                hour_logs.push(key);
            }
            let mut key = format!("{prefix}{}", trail_digest_key(end, name));
            if backfill {
                key = key.replace(".json.gz", "_backfill.json.gz");
            }
            let prev = if gap_at == Some(i) {
                None
            } else {
                previous.clone()
            };
            let (fingerprint, pair) = match signer(i) {
                Signer::Trail => (&keys.trail_fp, &keys.trail),
                Signer::Foreign => (&keys.foreign_fp, &keys.foreign),
                Signer::ForeignClaimingTrail => (&keys.trail_fp, &keys.foreign),
            };
            let digest = json!({
                "awsAccountId": ACCOUNT,
                "digestStartTime": iso(start),
                "digestEndTime": iso(end),
                "digestS3Bucket": BUCKET,
                "digestS3Object": key,
                "digestPublicKeyFingerprint": fingerprint,
                "digestSignatureAlgorithm": "SHA256withRSA",
                "newestEventTime": iso(start + 35 * 60),
                "oldestEventTime": iso(start + 5 * 60),
                "previousDigestS3Bucket": prev.as_ref().map(|_| BUCKET),
                "previousDigestS3Object": prev.as_ref().map(|p| p.0.clone()),
                "previousDigestHashValue": prev.as_ref().map(|p| p.1.clone()),
                "previousDigestHashAlgorithm": prev.as_ref().map(|_| "SHA-256"),
                "previousDigestSignature": prev.as_ref().map(|p| p.2.clone()),
                "logFiles": entries,
            });
            let inflated = serde_json::to_vec(&digest).unwrap();
            let hash = hex::encode(&orgtrail_crypto::hash::sha256(&inflated));
            let parsed = orgtrail_trailfiles::DigestFile::from_json(&inflated).unwrap();
            let sig = hex::encode(
                &pair
                    .sign_pkcs1_sha256(parsed.string_to_sign(&hash).as_bytes())
                    .unwrap(),
            );
            write(root, &key, &gzip(&inflated));
            signatures.push(sig.clone());
            previous = Some((key.clone(), hash, sig));
            digests.push(key);
            logs.push(hour_logs);
        }
        // The newest digest's x-amz-meta-signature, saved beside it.
        let (newest, _, sig) = previous.unwrap();
        write(
            root,
            &format!("{newest}.sig"),
            format!("{sig}\n").as_bytes(),
        );
        Trail {
            root: root.to_owned(),
            digests,
            logs,
            signatures,
        }
    }

    pub(crate) fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// The signature digest `i` carries in S3 metadata.
    pub(crate) fn signature_of(&self, i: usize) -> String {
        self.signatures[i].clone()
    }

    /// Saves digest `i`'s signature as its `.sig` sidecar.
    pub(crate) fn save_signature(&self, i: usize) {
        std::fs::write(
            self.path(&format!("{}.sig", self.digests[i])),
            &self.signatures[i],
        )
        .unwrap();
    }

    pub(crate) fn read_json(&self, key: &str) -> Value {
        serde_json::from_slice(&gunzip(&std::fs::read(self.path(key)).unwrap())).unwrap()
    }

    pub(crate) fn write_json(&self, key: &str, v: &Value) {
        std::fs::write(self.path(key), gzip(&serde_json::to_vec(v).unwrap())).unwrap();
    }
}

pub(crate) fn write(root: &Path, key: &str, bytes: &[u8]) {
    let p = root.join(key);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}
