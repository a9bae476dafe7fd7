use std::path::PathBuf;

/// Errors of key handling and cryptographic operations. Messages name key versions and files,
/// never key material.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the system random number generator failed")]
    Random,
    #[error("cannot read keyring {path}: {source}")]
    ReadKeyring {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {path}: {reason}")]
    KeyFile { path: PathBuf, reason: String },
    #[error("{path} already exists; refusing to overwrite key material")]
    Exists { path: PathBuf },
    #[error("keyring {path} is malformed: {reason}")]
    MalformedKeyring { path: PathBuf, reason: String },
    #[error(
        "master key v{version} is not in the keyring (it holds {available}); use the keyring that sealed this data"
    )]
    MissingMasterKey { version: u32, available: String },
    #[error(
        "a wrapped data key failed to open under master key v{version}: wrong keyring, or the store was tampered with"
    )]
    UnwrapFailed { version: u32 },
    #[error("a wrapped data key is malformed ({len} bytes)")]
    MalformedWrappedKey { len: usize },
    #[error("decryption failed: the record was altered, moved, or sealed under another key")]
    OpenFailed,
    #[error("encryption failed")]
    SealFailed,
    #[error("signing key {path} is malformed: {reason}")]
    MalformedSigningKey { path: PathBuf, reason: String },
    #[error("public key is malformed: {reason}")]
    MalformedPublicKey { reason: String },
    #[error("signing failed")]
    SignFailed,
    #[error("cannot retire master key v{version}: {reason}")]
    CannotRetire { version: u32, reason: String },
}
