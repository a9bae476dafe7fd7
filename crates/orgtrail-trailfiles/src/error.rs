use std::path::PathBuf;

/// Errors that stop a validation before it can report: unreadable inputs the user named
/// (public keys, the tree itself). Problems with individual trail files are findings, never
/// errors.
#[derive(Debug, thiserror::Error)]
pub enum TrailFilesError {
    #[error("public keys {source_name}: {reason}")]
    PublicKeys { source_name: String, reason: String },
    #[error("cannot list {path}: {source}")]
    List {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a directory")]
    NotADirectory { path: PathBuf },
    /// An object store that cannot be listed (refused credentials, a missing bucket, a server
    /// that does not answer).
    #[error("{store}: {reason}")]
    Store { store: String, reason: String },
}

/// Why an object could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("not found")]
    NotFound,
    #[error(
        "the key cannot name a file in this tree (an absolute path, `..`, or outside the prefix)"
    )]
    BadKey,
    #[error("{0}")]
    Io(#[source] std::io::Error),
}
