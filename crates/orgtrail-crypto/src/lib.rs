//! orgtrail's one owner of cryptography. Everything that touches aws-lc-rs lives here:
//!
//! * [`keyring`]: versioned master keys in a local file and the [`KeyProvider`] trait through
//!   which the store asks for data keys (a KMS or Vault transit can implement it later);
//! * [`envelope`]: AES-256-GCM data keys that seal records;
//! * [`keyfile`]: a local data key in a 0600 file of its own (the agent's spool);
//! * [`blind`]: blind indexes, HMAC-SHA-256 under a key of their own, so index keys on disk
//!   reveal no attribute value;
//! * [`hash`]: SHA-256 digests;
//! * [`signing`]: the Ed25519 key pair that signs checkpoints;
//! * [`rsa`]: RSA PKCS#1 v1.5 SHA-256 (`SHA256withRSA`), which signs CloudTrail's digest files;
//! * [`tls`]: checks of a process's own certificate at start, the collector's mutual-TLS
//!   configuration, and precise words for handshake failures.
//!
//! Key material is zeroed on drop and never printed: `Debug` of every key type shows only its
//! version or nothing.

pub mod blind;
pub mod certs;
pub mod checkpoint;
pub mod envelope;
mod error;
pub mod hash;
pub mod keyfile;
pub mod keyring;
pub mod merkle;
pub mod rsa;
pub mod signing;
pub mod tls;

pub use blind::BlindIndexer;
pub use envelope::{DataKey, KEY_LEN, NONCE_LEN, TAG_LEN};
pub use error::CryptoError;
pub use keyfile::{create_key_file, load_key_file};
pub use keyring::{KeyProvider, Keyring, LocalKeyProvider, WrappedKey};

/// Fills `buf` from the operating system's CSPRNG (via aws-lc-rs).
pub fn random_bytes(buf: &mut [u8]) -> Result<(), CryptoError> {
    aws_lc_rs::rand::fill(buf).map_err(|_| CryptoError::Random)
}
