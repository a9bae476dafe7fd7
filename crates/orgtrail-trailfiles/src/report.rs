//! What a validation found: one [`Finding`] per problem (or gap), each naming a key, and the
//! counts aws-cli prints in its summary.

use orgtrail_core::Timestamp;
use serde::Serialize;

/// The kinds of finding. All but [`FindingKind::Gap`] and [`FindingKind::ChainLeavesStore`]
/// make the trail invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A digest named by its successor (`previousDigestS3Object`) is not in the store.
    DigestMissing,
    /// More digests are missing before the one named as missing: the time between the digest
    /// found next and the missing one's successor spans more than one digest period. The
    /// finding names the digest found next (the missing ones' keys are named by nothing left)
    /// and counts as one invalid digest, whatever the length of the hole.
    DigestsMissingBefore,
    /// Not gzip, trailing data, not JSON, or a required field is absent.
    DigestInvalidFormat,
    /// The digest names another key or bucket than where it lies.
    DigestMoved,
    /// `digestPublicKeyFingerprint` names no key of the public key file.
    DigestUnknownKey,
    /// The key exists but its validity window does not cover the digest's end time.
    DigestKeyNotValid,
    /// `digestSignatureAlgorithm` is neither `SHA256withRSA` nor `Ed25519`.
    DigestUnsupportedAlgorithm,
    /// The signature does not verify (altered digest, or signed by another key).
    DigestBadSignature,
    /// No signature is known: no metadata (`.sig` sidecar) and no valid successor to take
    /// `previousDigestSignature` from.
    DigestNoSignature,
    /// The successor's `previousDigestHashValue` or `previousDigestSignature` disagrees with
    /// this digest itself (the check aws-cli does not make).
    DigestChainMismatch,
    /// A digest in the store that no chain walk reached.
    DigestUnchained,
    /// A digest's `previous*` fields are null while older digests exist: no log files were
    /// delivered in between (trail stopped, or validation turned off). Not invalid.
    Gap,
    /// The chain continues in another bucket, which this store cannot read. Not invalid.
    ChainLeavesStore,
    /// A log file a valid digest lists is not in the store.
    LogMissing,
    /// A log file's inflated SHA-256 differs from the digest's `hashValue`.
    LogModified,
    /// A listed log file is not valid gzip (or has data after its gzip member).
    LogInvalidFormat,
    /// A log file in the store, inside the period the digests cover, that no digest lists.
    LogUnlisted,
}

impl FindingKind {
    /// True when the finding makes the validation fail.
    pub fn is_invalid(self) -> bool {
        !matches!(self, FindingKind::Gap | FindingKind::ChainLeavesStore)
    }

    /// True for findings about log files (counted as log files in the summary).
    pub fn is_log(self) -> bool {
        matches!(
            self,
            FindingKind::LogMissing
                | FindingKind::LogModified
                | FindingKind::LogInvalidFormat
                | FindingKind::LogUnlisted
        )
    }
}

/// One problem, by key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub key: String,
    pub kind: FindingKind,
    /// A sentence for people (no secrets: keys, hashes and times only).
    pub message: String,
}

/// The outcome of a validation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Findings in the order they were made: per chain, newest digest first.
    pub findings: Vec<Finding>,
    pub digests_valid: u64,
    pub digests_invalid: u64,
    pub logs_valid: u64,
    pub logs_invalid: u64,
    /// Chains (trail, account, region, standard or backfill) walked.
    pub chains: u64,
    /// The earliest `digestStartTime` and latest `digestEndTime` of the valid digests.
    pub found_start: Option<String>,
    pub found_end: Option<String>,
    #[serde(skip)]
    pub(crate) found_range: Option<(Timestamp, Timestamp)>,
}

impl Report {
    /// True when nothing invalid was found.
    pub fn is_valid(&self) -> bool {
        self.digests_invalid == 0
            && self.logs_invalid == 0
            && !self.findings.iter().any(|f| f.kind.is_invalid())
    }

    pub(crate) fn push(&mut self, key: &str, kind: FindingKind, message: String) {
        self.findings.push(Finding {
            key: key.to_owned(),
            kind,
            message,
        });
    }

    pub(crate) fn found(&mut self, start: Timestamp, end: Timestamp) {
        let (s, e) = match self.found_range {
            Some((s, e)) => (s.min(start), e.max(end)),
            None => (start, end),
        };
        self.found_range = Some((s, e));
        self.found_start = Some(s.to_string());
        self.found_end = Some(e.to_string());
    }
}
