//! The Ed25519 key pair that signs checkpoints.
//!
//! `signing.key`: PKCS#8 (PEM `PRIVATE KEY`), mode 0600. `signing.pub`: SubjectPublicKeyInfo
//! (PEM `PUBLIC KEY`), for auditors who verify without any other key.

use std::path::Path;

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use zeroize::Zeroizing;

use crate::CryptoError;

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), followed by the 32-byte key.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// A signing key pair.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &B64.encode(self.public_key()))
            .finish()
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = B64.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

fn unpem(text: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = text[start..].find(&end)? + start;
    let body: String = text[start..stop].split_whitespace().collect();
    B64.decode(body.as_bytes()).ok()
}

impl SigningKey {
    /// Generates a key pair, returning it with its PKCS#8 encoding.
    pub fn generate() -> Result<(Self, Zeroizing<Vec<u8>>), CryptoError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| CryptoError::Random)?;
        let der = Zeroizing::new(pkcs8.as_ref().to_vec());
        let pair = Ed25519KeyPair::from_pkcs8(&der).map_err(|_| CryptoError::Random)?;
        Ok((SigningKey { pair }, der))
    }

    /// Writes `signing.key` (0600) and `signing.pub` into `dir`, refusing to overwrite.
    pub fn generate_files(dir: &Path) -> Result<Self, CryptoError> {
        let (key, der) = Self::generate()?;
        let private = Zeroizing::new(pem("PRIVATE KEY", &der));
        crate::keyring::write_secret_file(&dir.join("signing.key"), private.as_bytes(), true)?;
        let public = pem("PUBLIC KEY", &key.public_spki());
        let pub_path = dir.join("signing.pub");
        std::fs::write(&pub_path, public).map_err(|source| CryptoError::Write {
            path: pub_path,
            source,
        })?;
        Ok(key)
    }

    /// Loads `signing.key`.
    pub fn load(path: &Path) -> Result<Self, CryptoError> {
        let bad = |reason: &str| CryptoError::MalformedSigningKey {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
            CryptoError::ReadKeyring {
                path: path.to_owned(),
                source,
            }
        })?);
        let der = Zeroizing::new(
            unpem(&text, "PRIVATE KEY").ok_or_else(|| bad("no PEM PRIVATE KEY block"))?,
        );
        let pair = Ed25519KeyPair::from_pkcs8(&der)
            .or_else(|_| Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der))
            .map_err(|_| bad("not an Ed25519 PKCS#8 key"))?;
        Ok(SigningKey { pair })
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.pair.public_key().as_ref());
        out
    }

    fn public_spki(&self) -> Vec<u8> {
        let mut v = SPKI_PREFIX.to_vec();
        v.extend_from_slice(&self.public_key());
        v
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.pair.sign(msg).as_ref());
        out
    }
}

/// A public key that verifies checkpoint signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyingKey([u8; 32]);

impl VerifyingKey {
    pub fn from_raw(raw: [u8; 32]) -> Self {
        VerifyingKey(raw)
    }

    /// Loads `signing.pub`.
    pub fn load(path: &Path) -> Result<Self, CryptoError> {
        let bad = |reason: &str| CryptoError::MalformedSigningKey {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        let text = std::fs::read_to_string(path).map_err(|source| CryptoError::ReadKeyring {
            path: path.to_owned(),
            source,
        })?;
        let der = unpem(&text, "PUBLIC KEY").ok_or_else(|| bad("no PEM PUBLIC KEY block"))?;
        if der.len() != 44 || der[..12] != SPKI_PREFIX {
            return Err(bad("not an Ed25519 public key"));
        }
        let mut raw = [0u8; 32];
        raw.copy_from_slice(&der[12..]);
        Ok(VerifyingKey(raw))
    }

    pub fn raw(&self) -> &[u8; 32] {
        &self.0
    }

    /// True when `sig` is a valid signature of `msg`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(msg, sig)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_round_trip_and_signatures_verify() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate_files(dir.path()).unwrap();
        assert!(
            SigningKey::generate_files(dir.path()).is_err(),
            "no overwrite"
        );
        let loaded = SigningKey::load(&dir.path().join("signing.key")).unwrap();
        assert_eq!(loaded.public_key(), key.public_key());
        let vk = VerifyingKey::load(&dir.path().join("signing.pub")).unwrap();
        let sig = loaded.sign(b"checkpoint");
        assert!(vk.verify(b"checkpoint", &sig));
        assert!(!vk.verify(b"checkpoinT", &sig));
    }
}
