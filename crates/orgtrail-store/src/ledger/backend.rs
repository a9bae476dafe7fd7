//! sled, as the ledger uses it: opening the database (waiting for a lock a just-dropped
//! instance still holds), the open database and its one tree, and free space on its filesystem.
//!
//! The recovery (`recover`), verification (`verify`) and Merkle (`tree`) modules of the crate
//! still take a `sled::Tree` directly.

use std::path::Path;

use crate::error::StoreError;

/// The open database and the tree the ledger keeps everything in.
#[derive(Clone)]
pub(super) struct Files {
    pub(super) db: sled::Db,
    pub(super) tree: sled::Tree,
}

/// Bytes available to unprivileged writers on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> Result<u64, StoreError> {
    let st = rustix::fs::statvfs(path).map_err(|e| {
        StoreError::Sled(sled::Error::Io(std::io::Error::other(format!(
            "cannot read free space of {}: {e}",
            path.display()
        ))))
    })?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Opens the sled database of a store.
///
/// sled takes an exclusive lock on its files, and a sled instance just dropped in this process
/// can keep it for a moment while its I/O threads finish (sled's own tests wait for it). So a
/// lock held elsewhere is waited for, up to 3 seconds, before the store is reported as in use.
pub fn open_sled(dir: &Path, cache_bytes: u64) -> Result<sled::Db, StoreError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let mut wait = std::time::Duration::from_millis(5);
    loop {
        match sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .open()
        {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e)) if e.to_string().starts_with("could not acquire lock") => {
                if std::time::Instant::now() >= deadline {
                    return Err(StoreError::Locked {
                        path: dir.display().to_string(),
                    });
                }
                std::thread::sleep(wait);
                wait = (wait * 2).min(std::time::Duration::from_millis(200));
            }
            Err(e) => return Err(e.into()),
        }
    }
}
