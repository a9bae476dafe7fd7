use orgtrail_crypto::CryptoError;

/// Errors of the ledger. Messages name sequence numbers, segments and key versions, never
/// event content.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("store at {path} has format {found}, this orgtrail reads format {expected}")]
    Format {
        path: String,
        found: u32,
        expected: u32,
    },
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    #[error("record {seq} failed to open: {source}")]
    RecordOpen {
        seq: u64,
        #[source]
        source: CryptoError,
    },
    #[error("compression failed: {0}")]
    Compression(String),
    #[error("invalid page token")]
    BadPageToken,
    #[error("the store at {path} is in use by another process (its lock is held)")]
    Locked { path: String },
    #[error("no signing key: checkpoints need the signing key from `orgtrail keys init`")]
    NoSigner,
    #[error("there is no orgtrail store at {path}")]
    NoStore { path: String },
    #[error("the ledger writer has stopped")]
    WriterGone,
}
