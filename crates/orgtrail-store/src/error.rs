use orgtrail_crypto::CryptoError;

/// Errors of the ledger. Messages name sequence numbers, segments and key versions, never
/// event content.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Storage(#[from] crate::kv::BackendError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(
        "store at {path} has format {found}, this orgtrail reads format {expected}; it never rewrites a store by itself{}",
        upgrade_hint(*found, *expected, path)
    )]
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
    /// The data directory's filesystem is at or below the configured reserve: nothing was
    /// written. Retry once space is freed; the ledger resumes by itself.
    #[error("disk full: {free} bytes free on {path}, reserve {reserve}")]
    DiskFull {
        path: String,
        free: u64,
        reserve: u64,
    },
    /// A group commit failed to reach the disk (I/O error, ENOSPC). Nothing of it was
    /// acknowledged; the ledger reopens its files and reconciles them before the next append.
    #[error("writing to the store failed: {source}")]
    Write {
        #[source]
        source: crate::kv::BackendError,
    },
    /// The ledger is reopening its files after a write failure; retry shortly.
    #[error("the store is recovering from a write failure: {reason}")]
    Recovering { reason: String },
    /// Reading or writing an index run file failed (an I/O error: retry).
    #[error("index file {path}: {source}")]
    IndexFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A server-side fault that is not the request's: retry.
    #[error("{reason}")]
    Unavailable { reason: String },
    /// The caller asked for something the store cannot hold (an alert outbox entry out of
    /// bounds): a bug of the caller, not retried.
    #[error("invalid request to the store: {0}")]
    Invalid(String),
}

impl StoreError {
    /// True when the failure is the server's and passes: the same request may succeed later
    /// (disk full, I/O error, recovery). False for corruption, bad requests and configuration.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::DiskFull { .. }
            | StoreError::Write { .. }
            | StoreError::Recovering { .. }
            | StoreError::Unavailable { .. }
            | StoreError::IndexFile { .. }
            | StoreError::WriterGone
            | StoreError::Locked { .. } => true,
            StoreError::Storage(e) => e.is_io(),
            StoreError::Crypto(_)
            | StoreError::Format { .. }
            | StoreError::Corrupt(_)
            | StoreError::RecordOpen { .. }
            | StoreError::Compression(_)
            | StoreError::BadPageToken
            | StoreError::NoSigner
            | StoreError::NoStore { .. }
            | StoreError::Invalid(_) => false,
        }
    }
}

fn upgrade_hint(found: u32, expected: u32, path: &str) -> String {
    if found < expected {
        format!(
            ": run `orgtrail store upgrade --data-dir {path} --keys DIR` to convert it in place (stop the collector and back the directory up first)"
        )
    } else {
        ": it was written by a newer orgtrail".into()
    }
}
