//! AES-256-GCM data keys.
//!
//! A [`DataKey`] seals many records with random 96-bit nonces. Random nonces are safe up to
//! about 2^32 messages per key; callers bound how many records one data key seals (the store
//! caps segments far below that) and never reuse a (key, nonce) pair.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use zeroize::Zeroizing;

use crate::CryptoError;

/// Length of a data key.
pub const KEY_LEN: usize = 32;
/// Length of an AES-GCM nonce.
pub const NONCE_LEN: usize = 12;
/// Length of an AES-GCM tag.
pub const TAG_LEN: usize = 16;

/// A plaintext data key, ready to seal and open. Zeroed on drop; never printed.
pub struct DataKey {
    raw: Zeroizing<[u8; KEY_LEN]>,
    key: LessSafeKey,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut raw = Zeroizing::new([0u8; KEY_LEN]);
        crate::random_bytes(&mut raw[..])?;
        Self::from_bytes(&raw)
    }

    /// A key from its bytes.
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Result<Self, CryptoError> {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| CryptoError::SealFailed)?;
        Ok(DataKey {
            raw: Zeroizing::new(*bytes),
            key: LessSafeKey::new(unbound),
        })
    }

    /// The key's bytes, for wrapping.
    pub(crate) fn expose(&self) -> &[u8; KEY_LEN] {
        &self.raw
    }

    /// Seals `plaintext` bound to `aad` under a fresh random nonce. Appends
    /// `ciphertext || tag` to `out` and returns the nonce.
    pub fn seal_into(
        &self,
        aad: &[u8],
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<[u8; NONCE_LEN], CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        crate::random_bytes(&mut nonce)?;
        let start = out.len();
        out.extend_from_slice(plaintext);
        let mut body = out.split_off(start);
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut body,
            )
            .map_err(|_| CryptoError::SealFailed)?;
        out.extend_from_slice(&body);
        Ok(nonce)
    }

    /// Seals `plaintext`, returning `(nonce, ciphertext || tag)`.
    pub fn seal(
        &self,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<([u8; NONCE_LEN], Vec<u8>), CryptoError> {
        let mut out = Vec::with_capacity(plaintext.len() + TAG_LEN);
        let nonce = self.seal_into(aad, plaintext, &mut out)?;
        Ok((nonce, out))
    }

    /// Opens `ciphertext || tag` sealed with `nonce` and `aad`.
    pub fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let mut buf = ciphertext.to_vec();
        let len = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| CryptoError::OpenFailed)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_binding() {
        let k = DataKey::generate().unwrap();
        let (n, c) = k.seal(b"place-1", b"secret event").unwrap();
        assert_eq!(k.open(&n, b"place-1", &c).unwrap(), b"secret event");
        // Moved to another place: fails.
        assert!(matches!(
            k.open(&n, b"place-2", &c),
            Err(CryptoError::OpenFailed)
        ));
        // Flipped bit: fails.
        let mut bad = c.clone();
        bad[0] ^= 1;
        assert!(k.open(&n, b"place-1", &bad).is_err());
        // Other key: fails.
        let other = DataKey::generate().unwrap();
        assert!(other.open(&n, b"place-1", &c).is_err());
        // Nonces differ between seals.
        let (n2, _) = k.seal(b"place-1", b"secret event").unwrap();
        assert_ne!(n, n2);
        assert_eq!(format!("{k:?}"), "DataKey(..)");
    }
}
