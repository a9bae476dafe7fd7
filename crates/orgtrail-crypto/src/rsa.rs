//! RSA PKCS#1 v1.5 with SHA-256 (`SHA256withRSA`): the signature CloudTrail puts on its
//! digest files.
//!
//! [`RsaPublicKey::from_der`] accepts both DER encodings AWS documents for the keys that
//! `aws cloudtrail list-public-keys` prints: PKCS#1 `RSAPublicKey` (RFC 8017) and X.509
//! `SubjectPublicKeyInfo` (RFC 5280). Keys below 2048 bits are refused.
//!
//! [`RsaKeyPair`] generates and signs: tests build signed digest chains with it, and an
//! archive writer can sign digests in CloudTrail's own algorithm.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKey};
use aws_lc_rs::signature::{
    KeyPair as _, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, UnparsedPublicKey,
};

use crate::CryptoError;

/// An RSA public key that verifies `SHA256withRSA` signatures. Holds the key as PKCS#1 DER.
#[derive(Clone, PartialEq, Eq)]
pub struct RsaPublicKey {
    pkcs1: Vec<u8>,
}

impl std::fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaPublicKey")
            .field("bits", &self.bits())
            .finish()
    }
}

impl RsaPublicKey {
    /// Parses a DER public key, PKCS#1 `RSAPublicKey` or `SubjectPublicKeyInfo`.
    pub fn from_der(der: &[u8]) -> Result<Self, CryptoError> {
        let key = PublicKey::from_der(der).map_err(|e| CryptoError::MalformedPublicKey {
            reason: format!("not an RSA public key in PKCS#1 or SPKI DER ({e})"),
        })?;
        let bits = key.modulus_len() * 8;
        if bits < 2048 {
            return Err(CryptoError::MalformedPublicKey {
                reason: format!("RSA key of {bits} bits; at least 2048 are required"),
            });
        }
        Ok(RsaPublicKey {
            pkcs1: key.as_ref().to_vec(),
        })
    }

    /// The key as PKCS#1 `RSAPublicKey` DER.
    pub fn pkcs1_der(&self) -> &[u8] {
        &self.pkcs1
    }

    /// The size of the modulus in bits.
    pub fn bits(&self) -> usize {
        PublicKey::from_der(&self.pkcs1)
            .map(|k| k.modulus_len() * 8)
            .unwrap_or_default()
    }

    /// True when `sig` is a valid RSA PKCS#1 v1.5 SHA-256 signature of `msg` by this key.
    pub fn verify_pkcs1_sha256(&self, msg: &[u8], sig: &[u8]) -> bool {
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &self.pkcs1)
            .verify(msg, sig)
            .is_ok()
    }
}

/// An RSA key pair that signs with PKCS#1 v1.5 and SHA-256.
pub struct RsaKeyPair {
    pair: KeyPair,
}

impl std::fmt::Debug for RsaKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RsaKeyPair(..)")
    }
}

impl RsaKeyPair {
    /// Generates a 2048-bit key pair.
    pub fn generate() -> Result<Self, CryptoError> {
        let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| CryptoError::Random)?;
        Ok(RsaKeyPair { pair })
    }

    /// The public key as PKCS#1 `RSAPublicKey` DER.
    pub fn public_pkcs1_der(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    /// The public key as `SubjectPublicKeyInfo` DER.
    pub fn public_spki_der(&self) -> Result<Vec<u8>, CryptoError> {
        let der = self
            .pair
            .public_key()
            .as_der()
            .map_err(|_| CryptoError::MalformedPublicKey {
                reason: "cannot encode the public key as SPKI".into(),
            })?;
        Ok(der.as_ref().to_vec())
    }

    /// The public key, for verification.
    pub fn public_key(&self) -> Result<RsaPublicKey, CryptoError> {
        RsaPublicKey::from_der(&self.public_pkcs1_der())
    }

    /// Signs `msg` (RSA PKCS#1 v1.5, SHA-256).
    pub fn sign_pkcs1_sha256(&self, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(&RSA_PKCS1_SHA256, &rng, msg, &mut sig)
            .map_err(|_| CryptoError::SignFailed)?;
        Ok(sig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkcs1_and_spki_encodings_verify_the_same_signature() {
        let pair = RsaKeyPair::generate().unwrap();
        let sig = pair.sign_pkcs1_sha256(b"to sign").unwrap();
        let from_pkcs1 = RsaPublicKey::from_der(&pair.public_pkcs1_der()).unwrap();
        let from_spki = RsaPublicKey::from_der(&pair.public_spki_der().unwrap()).unwrap();
        assert_eq!(from_pkcs1, from_spki);
        assert_eq!(from_pkcs1.bits(), 2048);
        assert!(from_pkcs1.verify_pkcs1_sha256(b"to sign", &sig));
        assert!(from_spki.verify_pkcs1_sha256(b"to sign", &sig));
        assert!(!from_spki.verify_pkcs1_sha256(b"to sigN", &sig));
        let other = RsaKeyPair::generate().unwrap().public_key().unwrap();
        assert!(!other.verify_pkcs1_sha256(b"to sign", &sig));
    }

    #[test]
    fn garbage_is_not_a_key() {
        let err = RsaPublicKey::from_der(b"\x30\x03\x02\x01\x05").unwrap_err();
        assert!(err.to_string().contains("PKCS#1 or SPKI"), "{err}");
    }
}
