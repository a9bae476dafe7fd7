//! The public keys CloudTrail signs digests with, as `aws cloudtrail list-public-keys` prints
//! them:
//!
//! ```json
//! {"PublicKeyList": [{"Value": "<base64 DER>", "ValidityStartTime": "...",
//!                     "ValidityEndTime": "...", "Fingerprint": "<hex>"}]}
//! ```
//!
//! `Value` is DER, PKCS#1 `RSAPublicKey` or `SubjectPublicKeyInfo` (AWS's documentation
//! shows both). A digest names its key by `digestPublicKeyFingerprint`, matched against
//! `Fingerprint` (case-insensitively), as aws-cli does. Validity times may be ISO 8601 text
//! (aws-cli's default output) or epoch seconds (`cli_timestamp_format = none`).
//!
//! orgtrail's own archives (`orgtrail export`) sign their digests with the store's Ed25519
//! signing key instead (`digestSignatureAlgorithm` `Ed25519`): [`PublicKeySet::add_ed25519`]
//! adds that key, named by [`ed25519_fingerprint`]. A digest verifies only under a key of
//! the algorithm it names.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use orgtrail_core::Timestamp;
use orgtrail_crypto::rsa::RsaPublicKey;
use orgtrail_crypto::signing::VerifyingKey;
use serde_json::Value;

use crate::TrailFilesError;
use crate::digest::{ED25519_ALGORITHM, SIGNATURE_ALGORITHM};

/// A key that verifies digest signatures: CloudTrail's RSA keys, or orgtrail's Ed25519 key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestKey {
    /// `SHA256withRSA`: RSA PKCS#1 v1.5 with SHA-256 (CloudTrail).
    Rsa(RsaPublicKey),
    /// `Ed25519` (orgtrail export).
    Ed25519(VerifyingKey),
}

impl DigestKey {
    /// The `digestSignatureAlgorithm` this key verifies.
    pub fn algorithm(&self) -> &'static str {
        match self {
            DigestKey::Rsa(_) => SIGNATURE_ALGORITHM,
            DigestKey::Ed25519(_) => ED25519_ALGORITHM,
        }
    }

    /// True when `sig` signs `msg` under this key.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        match self {
            DigestKey::Rsa(k) => k.verify_pkcs1_sha256(msg, sig),
            DigestKey::Ed25519(k) => k.verify(msg, sig),
        }
    }
}

/// The `digestPublicKeyFingerprint` of an Ed25519 key: the first 16 bytes of the SHA-256 of
/// the raw 32-byte public key, in hex (32 characters, the length of CloudTrail's).
pub fn ed25519_fingerprint(raw: &[u8; 32]) -> String {
    crate::hex::encode(&orgtrail_crypto::hash::sha256(raw)[..16])
}

/// Tolerance around a key's validity window: aws-cli queries keys with a two-hour buffer
/// around the range it checks, because a digest written right after a rotation instant can
/// carry the previous key (aws/aws-cli#10073).
pub const VALIDITY_SLACK_MS: i64 = 2 * 3600 * 1000;

/// One CloudTrail public key.
#[derive(Debug, Clone)]
pub struct PublicKeyEntry {
    /// The fingerprint, lower case.
    pub fingerprint: String,
    pub key: DigestKey,
    pub valid_from: Option<Timestamp>,
    pub valid_until: Option<Timestamp>,
}

impl PublicKeyEntry {
    /// True when a digest ending at `at` may carry this key (with [`VALIDITY_SLACK_MS`]).
    pub fn valid_at(&self, at: Timestamp) -> bool {
        let from_ok = self
            .valid_from
            .is_none_or(|f| at.millis() >= f.millis() - VALIDITY_SLACK_MS);
        let until_ok = self
            .valid_until
            .is_none_or(|u| at.millis() <= u.millis() + VALIDITY_SLACK_MS);
        from_ok && until_ok
    }
}

/// The keys of one or more `list-public-keys` outputs.
#[derive(Debug, Clone, Default)]
pub struct PublicKeySet {
    keys: Vec<PublicKeyEntry>,
}

impl PublicKeySet {
    /// Parses the JSON that `aws cloudtrail list-public-keys` prints. `source` names the
    /// input in errors.
    pub fn from_json(text: &[u8], source: &str) -> Result<Self, TrailFilesError> {
        let bad = |reason: String| TrailFilesError::PublicKeys {
            source_name: source.to_owned(),
            reason,
        };
        let v: Value = serde_json::from_slice(text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let list = v
            .get("PublicKeyList")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no \"PublicKeyList\" array (expected the output of `aws cloudtrail list-public-keys`)".into()))?;
        let mut keys = Vec::with_capacity(list.len());
        for (i, entry) in list.iter().enumerate() {
            let at = |what: &str| format!("PublicKeyList[{i}]: {what}");
            let fingerprint = entry
                .get("Fingerprint")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(at("no \"Fingerprint\" string")))?
                .to_ascii_lowercase();
            let value = entry
                .get("Value")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(at("no \"Value\" string")))?;
            let compact: String = value.split_whitespace().collect();
            let der = B64
                .decode(compact.as_bytes())
                .map_err(|e| bad(at(&format!("\"Value\" is not base64: {e}"))))?;
            let key = RsaPublicKey::from_der(&der)
                .map_err(|e| bad(at(&format!("fingerprint {fingerprint}: {e}"))))?;
            let time = |field: &str| -> Result<Option<Timestamp>, TrailFilesError> {
                match entry.get(field) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) => Timestamp::parse(s)
                        .map(Some)
                        .map_err(|e| bad(at(&format!("\"{field}\": {e}")))),
                    Some(Value::Number(n)) => n
                        .as_f64()
                        .map(|secs| Some(Timestamp((secs * 1000.0) as i64)))
                        .ok_or_else(|| bad(at(&format!("\"{field}\" is not a time")))),
                    Some(_) => Err(bad(at(&format!("\"{field}\" is not a time")))),
                }
            };
            keys.push(PublicKeyEntry {
                fingerprint,
                key: DigestKey::Rsa(key),
                valid_from: time("ValidityStartTime")?,
                valid_until: time("ValidityEndTime")?,
            });
        }
        if keys.is_empty() {
            return Err(bad("\"PublicKeyList\" is empty".into()));
        }
        Ok(PublicKeySet { keys })
    }

    /// Adds orgtrail's Ed25519 signing key (`signing.pub`), valid at any time.
    pub fn add_ed25519(&mut self, key: VerifyingKey) {
        self.keys.push(PublicKeyEntry {
            fingerprint: ed25519_fingerprint(key.raw()),
            key: DigestKey::Ed25519(key),
            valid_from: None,
            valid_until: None,
        });
    }

    /// Adds the keys of `other`.
    pub fn extend(&mut self, other: PublicKeySet) {
        self.keys.extend(other.keys);
    }

    /// The keys with `fingerprint` (case-insensitive).
    pub fn by_fingerprint<'a>(
        &'a self,
        fingerprint: &'a str,
    ) -> impl Iterator<Item = &'a PublicKeyEntry> + 'a {
        self.keys
            .iter()
            .filter(move |k| k.fingerprint.eq_ignore_ascii_case(fingerprint))
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use orgtrail_crypto::rsa::RsaKeyPair;

    use super::*;

    fn list(entries: &[(String, &str)]) -> Vec<u8> {
        let list: Vec<Value> = entries
            .iter()
            .map(|(value, fp)| {
                serde_json::json!({
                    "Value": value,
                    "ValidityStartTime": "2024-01-01T00:00:00+00:00",
                    "ValidityEndTime": 1735689600,
                    "Fingerprint": fp,
                })
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({ "PublicKeyList": list })).unwrap()
    }

    #[test]
    fn pkcs1_and_spki_values_are_both_accepted() {
        let a = RsaKeyPair::generate().unwrap();
        let b = RsaKeyPair::generate().unwrap();
        let text = list(&[
            (B64.encode(a.public_pkcs1_der()), "AA11"),
            (B64.encode(b.public_spki_der().unwrap()), "bb22"),
        ]);
        let set = PublicKeySet::from_json(&text, "keys.json").unwrap();
        assert_eq!(set.len(), 2);
        let ka = set.by_fingerprint("aa11").next().unwrap();
        assert_eq!(ka.key, DigestKey::Rsa(a.public_key().unwrap()));
        let kb = set.by_fingerprint("BB22").next().unwrap();
        assert_eq!(kb.key, DigestKey::Rsa(b.public_key().unwrap()));
        assert_eq!(set.by_fingerprint("cc33").count(), 0);
        let jan = Timestamp::parse("2024-06-01T00:00:00Z").unwrap();
        assert!(ka.valid_at(jan));
        assert!(ka.valid_at(Timestamp::parse("2023-12-31T23:00:00Z").unwrap()));
        assert!(!ka.valid_at(Timestamp::parse("2023-12-31T21:00:00Z").unwrap()));
        assert!(!ka.valid_at(Timestamp::parse("2025-01-01T03:00:00Z").unwrap()));
    }

    #[test]
    fn a_bad_value_is_named_by_its_position() {
        let text = list(&[(B64.encode(b"not a key"), "aa11")]);
        let err = PublicKeySet::from_json(&text, "keys.json").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("keys.json") && msg.contains("PublicKeyList[0]"),
            "{msg}"
        );
        let err = PublicKeySet::from_json(b"{\"Keys\":[]}", "k").unwrap_err();
        assert!(err.to_string().contains("list-public-keys"), "{err}");
    }
}
