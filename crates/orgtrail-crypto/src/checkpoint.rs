//! Signed checkpoints: a C2SP `tlog-checkpoint` signed as a C2SP `signed-note` with Ed25519,
//! the format of Go's checksum database, Sigstore and Tessera, so that external witnesses could
//! co-sign orgtrail's.
//!
//! ```text
//! orgtrail/<store id>          origin
//! 950073                       tree size
//! <base64 root hash>
//! time 1764000000000           extension line: when it was made (Unix ms)
//!
//! — orgtrail <base64(key id (4 bytes) || Ed25519 signature (64 bytes))>
//! ```
//! The signature covers the body (the four lines, each ending in a newline). The key id is
//! the first 4 bytes of SHA-256(key name || "\n" || 0x01 || public key), per signed-note.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::merkle::Hash;
use crate::signing::{SigningKey, VerifyingKey};

/// The signer name on orgtrail's checkpoints.
pub const KEY_NAME: &str = "orgtrail";

/// A tree head: what a checkpoint commits to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// When it was made, Unix milliseconds.
    pub time_ms: i64,
}

/// Why a checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    #[error("checkpoint is not signed by this key (no signature from key {expected})")]
    NoSignature { expected: String },
    #[error(
        "checkpoint signature does not verify: the checkpoint was altered or the signature forged"
    )]
    BadSignature,
}

/// The signed-note key id of `public` under [`KEY_NAME`].
pub fn key_id(public: &[u8; 32]) -> [u8; 4] {
    let mut msg = Vec::with_capacity(KEY_NAME.len() + 2 + 32);
    msg.extend_from_slice(KEY_NAME.as_bytes());
    msg.push(b'\n');
    msg.push(0x01);
    msg.extend_from_slice(public);
    let h = crate::hash::sha256(&msg);
    [h[0], h[1], h[2], h[3]]
}

impl Checkpoint {
    /// The signed body.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\ntime {}\n",
            self.origin,
            self.size,
            B64.encode(self.root),
            self.time_ms
        )
    }

    /// The signed note.
    pub fn sign(&self, key: &SigningKey) -> String {
        let body = self.body();
        let sig = key.sign(body.as_bytes());
        let mut blob = key_id(&key.public_key()).to_vec();
        blob.extend_from_slice(&sig);
        format!("{body}\n\u{2014} {KEY_NAME} {}\n", B64.encode(blob))
    }

    fn parse_body(body: &str) -> Result<Self, CheckpointError> {
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or(CheckpointError::Malformed("no origin line"))?;
        let size = lines
            .next()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or(CheckpointError::Malformed("tree size is not a number"))?;
        let root_b = lines
            .next()
            .and_then(|r| B64.decode(r).ok())
            .ok_or(CheckpointError::Malformed("root hash is not base64"))?;
        let root: Hash = root_b
            .try_into()
            .map_err(|_| CheckpointError::Malformed("root hash is not 32 bytes"))?;
        let time_ms = lines
            .next()
            .and_then(|t| t.strip_prefix("time "))
            .and_then(|t| t.parse::<i64>().ok())
            .ok_or(CheckpointError::Malformed("no time line"))?;
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            time_ms,
        })
    }

    /// Splits a note into body and signature lines.
    fn split(note: &str) -> Result<(&str, &str), CheckpointError> {
        let at = note.find("\n\n").ok_or(CheckpointError::Malformed(
            "no blank line before the signatures",
        ))?;
        Ok((&note[..at + 1], &note[at + 2..]))
    }

    /// Parses a note without checking its signature (to show what it claims).
    pub fn parse_unverified(note: &str) -> Result<Self, CheckpointError> {
        let (body, _) = Self::split(note)?;
        Self::parse_body(body)
    }

    /// Parses a note and checks that `key` signed it.
    pub fn verify(note: &str, key: &VerifyingKey) -> Result<Self, CheckpointError> {
        let (body, sigs) = Self::split(note)?;
        let cp = Self::parse_body(body)?;
        let want = key_id(key.raw());
        let prefix = format!("\u{2014} {KEY_NAME} ");
        for line in sigs.lines() {
            let Some(b64) = line.strip_prefix(&prefix) else {
                continue;
            };
            let blob = B64
                .decode(b64)
                .map_err(|_| CheckpointError::Malformed("signature is not base64"))?;
            if blob.len() != 68 || blob[..4] != want {
                continue;
            }
            return if key.verify(body.as_bytes(), &blob[4..]) {
                Ok(cp)
            } else {
                Err(CheckpointError::BadSignature)
            };
        }
        Err(CheckpointError::NoSignature {
            expected: want.iter().map(|b| format!("{b:02x}")).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_tamper() {
        let (key, _) = SigningKey::generate().unwrap();
        let vk = VerifyingKey::from_raw(key.public_key());
        let cp = Checkpoint {
            origin: "orgtrail/abc".into(),
            size: 42,
            root: [7u8; 32],
            time_ms: 1_700_000_000_000,
        };
        let note = cp.sign(&key);
        assert_eq!(Checkpoint::verify(&note, &vk).unwrap(), cp);
        assert_eq!(Checkpoint::parse_unverified(&note).unwrap(), cp);
        // Altered size: the signature no longer covers it.
        let altered = note.replacen("\n42\n", "\n43\n", 1);
        assert_eq!(
            Checkpoint::verify(&altered, &vk),
            Err(CheckpointError::BadSignature)
        );
        // Another key's signature.
        let (other, _) = SigningKey::generate().unwrap();
        let forged = cp.sign(&other);
        assert!(matches!(
            Checkpoint::verify(&forged, &vk),
            Err(CheckpointError::NoSignature { .. })
        ));
        assert!(Checkpoint::verify("garbage", &vk).is_err());
    }
}
