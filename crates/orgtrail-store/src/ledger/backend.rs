//! The ledger's files as the backend holds them: the open database and its one tree, and free
//! space on their filesystem. The backend itself is [`crate::kv`].

use std::path::Path;

use crate::error::StoreError;
use crate::kv::{BackendError, Db, Tree};

/// The open database and the tree the ledger keeps everything in.
#[derive(Clone)]
pub(super) struct Files {
    pub(super) db: Db,
    pub(super) tree: Tree,
}

/// Bytes available to unprivileged writers on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> Result<u64, StoreError> {
    let st = rustix::fs::statvfs(path).map_err(|e| {
        StoreError::Storage(BackendError::io(std::io::Error::other(format!(
            "cannot read free space of {}: {e}",
            path.display()
        ))))
    })?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}
