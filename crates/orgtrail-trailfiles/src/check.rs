//! The checks one digest file gets on its own, shared by [`crate::validate()`] (which walks a
//! whole tree) and the agent's sources (which check each digest as it arrives): its format and
//! times, and its signature under a known public key valid at its end time.

use orgtrail_core::Timestamp;

use crate::digest::{DigestFile, ED25519_ALGORITHM, SIGNATURE_ALGORITHM};
use crate::report::FindingKind;
use crate::{PublicKeySet, hex};

/// A digest file read and parsed.
#[derive(Debug, Clone)]
pub struct ParsedDigest {
    pub digest: DigestFile,
    /// `digestStartTime`.
    pub start: Timestamp,
    /// `digestEndTime`.
    pub end: Timestamp,
    /// Hex SHA-256 of the inflated digest file (what its successor's
    /// `previousDigestHashValue` names, and what the signature covers).
    pub sha256_hex: String,
}

/// Parses an inflated digest file whose SHA-256 is `sha256_hex`. The error is a reason for a
/// [`FindingKind::DigestInvalidFormat`] finding.
pub fn parse_digest(inflated: &[u8], sha256_hex: String) -> Result<ParsedDigest, String> {
    let digest = DigestFile::from_json(inflated)
        .map_err(|e| format!("invalid format: not a CloudTrail digest: {e}"))?;
    let start = Timestamp::parse(&digest.digest_start_time)
        .map_err(|e| format!("invalid format: digestStartTime: {e}"))?;
    let end = Timestamp::parse(&digest.digest_end_time)
        .map_err(|e| format!("invalid format: digestEndTime: {e}"))?;
    Ok(ParsedDigest {
        digest,
        start,
        end,
        sha256_hex,
    })
}

/// Checks a digest's signature: its algorithm, a key of `keys` with its fingerprint and that
/// algorithm valid at its end time, and the hex `signature` over the string to sign. `None`
/// as the signature is a [`FindingKind::DigestNoSignature`] finding.
pub fn verify_signature(
    p: &ParsedDigest,
    signature: Option<&str>,
    keys: &PublicKeySet,
) -> Result<(), (FindingKind, String)> {
    let d = &p.digest;
    // Absent means CloudTrail's own algorithm.
    let algorithm = d
        .digest_signature_algorithm
        .as_deref()
        .unwrap_or(SIGNATURE_ALGORITHM);
    if algorithm != SIGNATURE_ALGORITHM && algorithm != ED25519_ALGORITHM {
        return Err((
            FindingKind::DigestUnsupportedAlgorithm,
            format!(
                "signature algorithm {algorithm} is neither {SIGNATURE_ALGORITHM} nor {ED25519_ALGORITHM}"
            ),
        ));
    }
    let Some(signature) = signature else {
        return Err((FindingKind::DigestNoSignature, "no signature".into()));
    };
    let fingerprint = &d.digest_public_key_fingerprint;
    let candidates: Vec<_> = keys
        .by_fingerprint(fingerprint)
        .filter(|k| k.key.algorithm() == algorithm)
        .collect();
    if candidates.is_empty() {
        return Err((
            FindingKind::DigestUnknownKey,
            if algorithm == SIGNATURE_ALGORITHM {
                format!("public key not found for fingerprint {fingerprint}")
            } else {
                format!("{algorithm} public key not found for fingerprint {fingerprint}")
            },
        ));
    }
    let current: Vec<_> = candidates.iter().filter(|k| k.valid_at(p.end)).collect();
    if current.is_empty() {
        return Err((
            FindingKind::DigestKeyNotValid,
            format!(
                "public key {fingerprint} is not valid at the digest's end time {}",
                p.end
            ),
        ));
    }
    let to_sign = d.string_to_sign(&p.sha256_hex);
    let verified = hex::decode(signature).is_some_and(|sig| {
        current
            .iter()
            .any(|k| k.key.verify(to_sign.as_bytes(), &sig))
    });
    if verified {
        Ok(())
    } else {
        Err((
            FindingKind::DigestBadSignature,
            "signature verification failed".into(),
        ))
    }
}
