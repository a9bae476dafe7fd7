//! What validation reads: a flat namespace of keys, as in an S3 bucket.
//!
//! A directory implements it today ([`crate::DirStore`]); an S3 client implements the same
//! three calls later (`ListObjectsV2`, `GetObject`, and `HeadObject`'s `x-amz-meta-signature`).

use std::io::Read;

use crate::{ReadError, TrailFilesError};

/// Read access to a trail's objects, by S3 key.
pub trait ObjectStore {
    /// How the store is shown to a person: `DIR` or `s3://bucket/prefix`.
    fn describe(&self) -> String;

    /// The bucket the objects are in, when known. Digests name their bucket
    /// (`digestS3Bucket`); when this is `None`, that name is not checked against anything.
    fn bucket(&self) -> Option<&str>;

    /// Every key in the store, in any order. Only keys are held, never contents.
    fn list(&self) -> Result<Vec<String>, TrailFilesError>;

    /// Opens an object for streaming.
    fn open(&self, key: &str) -> Result<Box<dyn Read + '_>, ReadError>;

    /// The hex signature kept with a digest object (S3: `x-amz-meta-signature`), if any.
    fn signature(&self, key: &str) -> Result<Option<String>, ReadError>;
}

/// The keys of CloudTrail log files in `store` (digests, sidecars and other files left out),
/// sorted: per account and region, in time order.
pub fn log_keys(store: &dyn ObjectStore) -> Result<Vec<String>, TrailFilesError> {
    let mut keys: Vec<String> = store
        .list()?
        .into_iter()
        .filter(|k| crate::TrailKey::parse(k).is_some_and(|t| t.kind == crate::FileKind::Log))
        .collect();
    keys.sort();
    Ok(keys)
}
