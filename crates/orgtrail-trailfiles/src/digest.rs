//! CloudTrail's digest file: its JSON model and the string its signature covers.
//!
//! The signature is not in the file: S3 keeps it in the object's metadata
//! (`x-amz-meta-signature`, hex), and each digest repeats its predecessor's signature in
//! `previousDigestSignature`. It covers
//!
//! ```text
//! digestEndTime "\n" digestS3Bucket "/" digestS3Object "\n" hex(sha256(inflated digest)) "\n" previousDigestSignature-or-"null"
//! ```
//!
//! checked as RSA PKCS#1 v1.5 with SHA-256 (`SHA256withRSA`), or, in orgtrail's own
//! archives, as Ed25519 ([`ED25519_ALGORITHM`]).

use serde::{Deserialize, Deserializer, Serialize};

/// The one signature algorithm CloudTrail uses for digests.
pub const SIGNATURE_ALGORITHM: &str = "SHA256withRSA";

/// The algorithm of orgtrail's own digests (`orgtrail export`): Ed25519 over the same string
/// to sign, with the store's signing key. AWS's tools know only `SHA256withRSA`.
pub const ED25519_ALGORITHM: &str = "Ed25519";

/// A digest file as CloudTrail writes it. Unknown fields are ignored (CloudTrail may add some);
/// the fields that `aws cloudtrail validate-logs` requires are required here too, and
/// `previousDigestSignature` must be present, even if null.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DigestFile {
    #[serde(default)]
    pub aws_account_id: Option<String>,
    pub digest_start_time: String,
    pub digest_end_time: String,
    pub digest_s3_bucket: String,
    pub digest_s3_object: String,
    pub digest_public_key_fingerprint: String,
    #[serde(default)]
    pub digest_signature_algorithm: Option<String>,
    #[serde(default)]
    pub newest_event_time: Option<String>,
    #[serde(default)]
    pub oldest_event_time: Option<String>,
    #[serde(default)]
    pub previous_digest_s3_bucket: Option<String>,
    #[serde(default)]
    pub previous_digest_s3_object: Option<String>,
    #[serde(default)]
    pub previous_digest_hash_value: Option<String>,
    #[serde(default)]
    pub previous_digest_hash_algorithm: Option<String>,
    /// Required to be present; `null` in the first digest of a chain.
    #[serde(deserialize_with = "present")]
    pub previous_digest_signature: Option<String>,
    #[serde(default)]
    pub log_files: Vec<LogFileEntry>,
}

/// One log file a digest vouches for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogFileEntry {
    pub s3_bucket: String,
    pub s3_object: String,
    /// Hex SHA-256 of the inflated log file.
    pub hash_value: String,
    #[serde(default)]
    pub hash_algorithm: Option<String>,
    #[serde(default)]
    pub newest_event_time: Option<String>,
    #[serde(default)]
    pub oldest_event_time: Option<String>,
}

/// A field that must be present but may be null (serde treats a missing `Option` field as
/// null unless the field has no `default`, which is what this is used without).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)
}

impl DigestFile {
    /// Parses the inflated bytes of a digest file.
    pub fn from_json(inflated: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(inflated)
    }

    /// The bytes the signature covers, given the hex SHA-256 of the inflated digest file.
    pub fn string_to_sign(&self, inflated_sha256_hex: &str) -> String {
        format!(
            "{}\n{}/{}\n{}\n{}",
            self.digest_end_time,
            self.digest_s3_bucket,
            self.digest_s3_object,
            inflated_sha256_hex,
            self.previous_digest_signature.as_deref().unwrap_or("null")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_of_chain() -> serde_json::Value {
        serde_json::json!({
            "awsAccountId": "111122223333",
            "digestStartTime": "2015-08-17T14:01:31Z",
            "digestEndTime": "2015-08-17T15:01:31Z",
            "digestS3Bucket": "bucket",
            "digestS3Object": "AWSLogs/111122223333/CloudTrail-Digest/us-east-2/2015/08/17/111122223333_CloudTrail-Digest_us-east-2_t_us-east-2_20150817T150131Z.json.gz",
            "digestPublicKeyFingerprint": "31e8b5433410dfb61a9dc45cc65b22ff",
            "digestSignatureAlgorithm": "SHA256withRSA",
            "newestEventTime": "2015-08-17T14:52:27Z",
            "oldestEventTime": "2015-08-17T14:42:27Z",
            "previousDigestS3Bucket": null,
            "previousDigestS3Object": null,
            "previousDigestHashValue": null,
            "previousDigestHashAlgorithm": null,
            "previousDigestSignature": null,
            "logFiles": [{
                "s3Bucket": "bucket",
                "s3Object": "AWSLogs/111122223333/CloudTrail/us-east-2/2015/08/17/111122223333_CloudTrail_us-east-2_20150817T1445Z_9nYN7gp2eWAJHIfT.json.gz",
                "hashValue": "9bb6196fc6b84d6f075a56548feca262bd99ba3c2de41b618e5b6e22c1fc71f6",
                "hashAlgorithm": "SHA-256",
                "newestEventTime": "2015-08-17T14:52:27Z",
                "oldestEventTime": "2015-08-17T14:42:27Z"
            }]
        })
    }

    #[test]
    fn the_string_to_sign_of_a_first_digest_ends_in_null() {
        let d: DigestFile = serde_json::from_value(first_of_chain()).unwrap();
        assert_eq!(d.log_files.len(), 1);
        assert_eq!(
            d.string_to_sign("ab12"),
            "2015-08-17T15:01:31Z\nbucket/AWSLogs/111122223333/CloudTrail-Digest/us-east-2/2015/08/17/111122223333_CloudTrail-Digest_us-east-2_t_us-east-2_20150817T150131Z.json.gz\nab12\nnull"
        );
    }

    #[test]
    fn the_string_to_sign_of_a_later_digest_ends_in_the_previous_signature() {
        let mut v = first_of_chain();
        v["previousDigestSignature"] = "00ff".into();
        let d: DigestFile = serde_json::from_value(v).unwrap();
        assert!(d.string_to_sign("ab12").ends_with("\nab12\n00ff"));
    }

    #[test]
    fn required_fields_are_required() {
        for field in [
            "digestPublicKeyFingerprint",
            "digestS3Bucket",
            "digestS3Object",
            "previousDigestSignature",
            "digestEndTime",
            "digestStartTime",
        ] {
            let mut v = first_of_chain();
            v.as_object_mut().unwrap().remove(field);
            let err = serde_json::from_value::<DigestFile>(v).unwrap_err();
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
    }
}
