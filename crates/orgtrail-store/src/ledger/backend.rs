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

/// sled's segment size for new stores. sled rewrites a tree node whole as it fills, and
/// reclaims a segment of its log only once at most half of it is live; smaller segments are
/// reclaimed sooner. Measured on the generator's events (`examples/record_formats`, records
/// and leaf hashes): sled's overhead 174 bytes per event at 256 KiB, 210 at sled's default
/// 512 KiB, 253 at 2 MiB.
const SEGMENT_SIZE: usize = 256 << 10;

/// The segment size an existing store was created with (sled refuses to open it with another
/// one), from sled's `conf` file; [`SEGMENT_SIZE`] for a new store.
fn segment_size(dir: &Path) -> Result<usize, StoreError> {
    let conf = match std::fs::read(dir.join("conf")) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(SEGMENT_SIZE),
        Err(e) => return Err(StoreError::Sled(sled::Error::Io(e))),
    };
    String::from_utf8_lossy(&conf)
        .lines()
        .find_map(|l| l.strip_prefix("segment_size: "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "{}: no segment_size in sled's conf",
                dir.join("conf").display()
            ))
        })
}

/// Opens the sled database of a store.
///
/// sled takes an exclusive lock on its files, and a sled instance just dropped in this process
/// can keep it for a moment while its I/O threads finish (sled's own tests wait for it). So a
/// lock held elsewhere is waited for, up to 3 seconds, before the store is reported as in use.
pub fn open_sled(dir: &Path, cache_bytes: u64) -> Result<sled::Db, StoreError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let mut wait = std::time::Duration::from_millis(5);
    let segment_size = segment_size(dir)?;
    loop {
        match sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .segment_size(segment_size)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_store_gets_the_smaller_segments_and_an_existing_one_keeps_its_own() {
        let new = tempfile::tempdir().unwrap();
        drop(open_sled(new.path(), 1 << 20).unwrap());
        assert_eq!(segment_size(new.path()).unwrap(), SEGMENT_SIZE);
        drop(open_sled(new.path(), 1 << 20).unwrap());

        // A store made with sled's default segment size (every store before this one) opens.
        let old = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(old.path()).open().unwrap();
        db.insert(b"k", b"v".to_vec()).unwrap();
        db.flush().unwrap();
        drop(db);
        assert_eq!(segment_size(old.path()).unwrap(), 512 << 10);
        let db = open_sled(old.path(), 1 << 20).unwrap();
        assert_eq!(db.get(b"k").unwrap().unwrap().as_ref(), b"v");
    }
}
