//! The key-value backend, and the one module of the crate that names sled.
//!
//! Everything the store keeps in a database (the ledger's records and locators, index chunks
//! and run registrations, counters, Merkle subtree hashes, checkpoints, the alert outbox,
//! Insights state) goes through the types here: a [`Db`] holding named [`Tree`]s of ordered
//! byte keys, [`Batch`]es applied atomically to one tree, and [`Value`]s read back. What the
//! store needs of a backend is only that: ordered keys with prefix and range scans in both
//! directions, an atomic batch per tree, a compare-and-swap, a durable `flush`, and an
//! exclusive lock on its directory. Another backend replaces this module, not its callers.
//!
//! Errors come back as [`BackendError`], which `?` turns into [`StoreError::Storage`] (an I/O
//! error is transient, see [`StoreError::is_transient`]); a failed write of the ledger's is
//! [`StoreError::Write`].

use std::ops::{Bound, Deref, RangeBounds};
use std::path::Path;

use crate::error::StoreError;

/// An error of the backend (sled's), kept whole for its message.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct BackendError(sled::Error);

impl BackendError {
    /// An I/O error met on the way to the backend's files.
    pub(crate) fn io(e: std::io::Error) -> Self {
        BackendError(sled::Error::Io(e))
    }

    /// True for an I/O error (which passes: disk full, a failed write), false for corruption
    /// or a bug.
    pub fn is_io(&self) -> bool {
        matches!(self.0, sled::Error::Io(_))
    }
}

impl From<sled::Error> for BackendError {
    fn from(e: sled::Error) -> Self {
        BackendError(e)
    }
}

/// A value (or key) read from a tree: cheap to clone, read as bytes.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Value(sled::IVec);

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Value({} bytes)", self.0.len())
    }
}

impl Deref for Value {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Value {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl std::borrow::Borrow<[u8]> for Value {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value(v.into())
    }
}

impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Value(v.into())
    }
}

impl From<&Vec<u8>> for Value {
    fn from(v: &Vec<u8>) -> Self {
        Value(v.as_slice().into())
    }
}

impl<const N: usize> From<[u8; N]> for Value {
    fn from(v: [u8; N]) -> Self {
        Value(v[..].into())
    }
}

impl<const N: usize> From<&[u8; N]> for Value {
    fn from(v: &[u8; N]) -> Self {
        Value(v[..].into())
    }
}

impl From<&Value> for Value {
    fn from(v: &Value) -> Self {
        v.clone()
    }
}

/// Writes to one tree, applied together or not at all.
#[derive(Default)]
pub(crate) struct Batch(sled::Batch);

impl Batch {
    pub(crate) fn insert<K: Into<Value>, V: Into<Value>>(&mut self, key: K, value: V) {
        self.0.insert(key.into().0, value.into().0);
    }

    pub(crate) fn remove<K: Into<Value>>(&mut self, key: K) {
        self.0.remove(key.into().0);
    }
}

/// Pairs of a tree in key order (or the reverse, from the back), each read as it comes.
pub(crate) struct Iter(sled::Iter);

fn pair(kv: sled::Result<(sled::IVec, sled::IVec)>) -> Result<(Value, Value), BackendError> {
    let (k, v) = kv?;
    Ok((Value(k), Value(v)))
}

impl Iterator for Iter {
    type Item = Result<(Value, Value), BackendError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(pair)
    }
}

impl DoubleEndedIterator for Iter {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(pair)
    }
}

/// A keyspace of ordered byte keys.
#[derive(Clone)]
pub(crate) struct Tree(sled::Tree);

impl Tree {
    pub(crate) fn get<K: AsRef<[u8]>>(&self, key: K) -> Result<Option<Value>, BackendError> {
        Ok(self.0.get(key)?.map(Value))
    }

    /// Sets `key` to `value`; the value it replaced, if any.
    pub(crate) fn insert<K: AsRef<[u8]>, V: Into<Value>>(
        &self,
        key: K,
        value: V,
    ) -> Result<Option<Value>, BackendError> {
        Ok(self.0.insert(key, value.into().0)?.map(Value))
    }

    /// Removes `key`; the value it had, if any (tests: the store removes through batches).
    #[cfg(test)]
    pub(crate) fn remove<K: AsRef<[u8]>>(&self, key: K) -> Result<Option<Value>, BackendError> {
        Ok(self.0.remove(key)?.map(Value))
    }

    /// Sets `key` to `new` (or removes it, `None`) only if its value is still `old` (`None`:
    /// absent); true if it did.
    pub(crate) fn compare_and_swap<K: AsRef<[u8]>>(
        &self,
        key: K,
        old: Option<&[u8]>,
        new: Option<Vec<u8>>,
    ) -> Result<bool, BackendError> {
        Ok(self.0.compare_and_swap(key, old, new)?.is_ok())
    }

    pub(crate) fn apply_batch(&self, batch: Batch) -> Result<(), BackendError> {
        Ok(self.0.apply_batch(batch.0)?)
    }

    /// Every pair whose key starts with `prefix`.
    pub(crate) fn scan_prefix<P: AsRef<[u8]>>(&self, prefix: P) -> Iter {
        Iter(self.0.scan_prefix(prefix))
    }

    /// Every pair whose key is in `range`.
    pub(crate) fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Iter {
        let bound = |b: Bound<&K>| match b {
            Bound::Included(k) => Bound::Included(sled::IVec::from(k.as_ref())),
            Bound::Excluded(k) => Bound::Excluded(sled::IVec::from(k.as_ref())),
            Bound::Unbounded => Bound::Unbounded,
        };
        Iter(
            self.0
                .range::<sled::IVec, _>((bound(range.start_bound()), bound(range.end_bound()))),
        )
    }

    /// Every pair of the tree.
    pub(crate) fn iter(&self) -> Iter {
        Iter(self.0.iter())
    }

    /// Makes every write to the tree durable.
    pub(crate) fn flush(&self) -> Result<usize, BackendError> {
        Ok(self.0.flush()?)
    }
}

/// A database: named trees in one directory, locked by this process while it is open.
#[derive(Clone)]
pub(crate) struct Db(sled::Db);

impl Db {
    /// Opens (or creates) the database in `dir`, with a page cache of `cache_bytes`; see
    /// [`open_sled`] for a lock held by another instance.
    pub(crate) fn open(dir: &Path, cache_bytes: u64) -> Result<Db, StoreError> {
        open_sled(dir, cache_bytes).map(Db)
    }

    /// A database of its own in a temporary file, removed when dropped (tests).
    #[cfg(test)]
    pub(crate) fn temporary() -> Db {
        Db(sled::Config::new()
            .temporary(true)
            .open()
            .unwrap_or_else(|e| panic!("a temporary database: {e}")))
    }

    pub(crate) fn open_tree<N: AsRef<[u8]>>(&self, name: N) -> Result<Tree, BackendError> {
        Ok(Tree(self.0.open_tree(name)?))
    }

    /// The names of the database's trees (its default tree included).
    pub(crate) fn tree_names(&self) -> Vec<Value> {
        self.0.tree_names().into_iter().map(Value).collect()
    }

    /// Makes every write to the database durable.
    pub(crate) fn flush(&self) -> Result<usize, BackendError> {
        Ok(self.0.flush()?)
    }
}

/// True for a file (or directory) of the data directory that the backend keeps: sled's
/// `conf`, `db`, `blobs/` and snapshots.
pub(crate) fn is_backend_file(name: &str) -> bool {
    name == "conf" || name == "db" || name == "blobs" || name.starts_with("snap.")
}

/// Opens the sled database of a store, as it is: for tests and tools that read or alter the
/// files below the ledger (the ledger itself opens it through [`Db::open`]).
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
            Err(e) => return Err(StoreError::Storage(BackendError(e))),
        }
    }
}
