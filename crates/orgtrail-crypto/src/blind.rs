//! Blind indexes: index and dedup keys hold `HMAC-SHA-256(K_idx, attribute || 0x00 || value)`
//! truncated to 16 bytes, never the value, so the data directory reveals no event ID, user,
//! ARN, IP or resource name. Equal values still meet, which is all an index needs.

use aws_lc_rs::hmac;
use zeroize::Zeroizing;

use crate::CryptoError;

/// Length of a blind index value.
pub const BLIND_LEN: usize = 16;

/// Computes blind index values under one key.
pub struct BlindIndexer {
    key: hmac::Key,
}

impl std::fmt::Debug for BlindIndexer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlindIndexer(..)")
    }
}

impl BlindIndexer {
    /// An indexer under `key` (32 random bytes, kept wrapped by the master key at rest).
    pub fn new(key: &Zeroizing<[u8; 32]>) -> Self {
        BlindIndexer {
            key: hmac::Key::new(hmac::HMAC_SHA256, &key[..]),
        }
    }

    /// The blind value of `value` for `attribute`.
    pub fn blind(&self, attribute: &[u8], value: &[u8]) -> [u8; BLIND_LEN] {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(attribute);
        ctx.update(&[0]);
        ctx.update(value);
        let tag = ctx.sign();
        let mut out = [0u8; BLIND_LEN];
        out.copy_from_slice(&tag.as_ref()[..BLIND_LEN]);
        out
    }

    /// A fresh random key for a new store.
    pub fn generate_key() -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        let mut k = Zeroizing::new([0u8; 32]);
        crate::random_bytes(&mut k[..])?;
        Ok(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_meet_and_attributes_separate() {
        let k = BlindIndexer::generate_key().unwrap();
        let b = BlindIndexer::new(&k);
        assert_eq!(b.blind(b"user", b"alice"), b.blind(b"user", b"alice"));
        assert_ne!(b.blind(b"user", b"alice"), b.blind(b"user", b"bob"));
        assert_ne!(b.blind(b"user", b"alice"), b.blind(b"name", b"alice"));
        // The separator keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(b.blind(b"ab", b"c"), b.blind(b"a", b"bc"));
        let other = BlindIndexer::new(&BlindIndexer::generate_key().unwrap());
        assert_ne!(b.blind(b"user", b"alice"), other.blind(b"user", b"alice"));
    }
}
