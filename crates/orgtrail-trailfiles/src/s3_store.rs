//! A trail's bucket read in place, as an [`ObjectStore`] (through orgtrail-s3, the only owner
//! of the S3 client).
//!
//! Lists `[prefix/]AWSLogs/` (every page), streams objects, and takes a digest's signature
//! from the object's `x-amz-meta-signature`, where CloudTrail keeps it. Calls block: a
//! [`Blocking`] client with a runtime of its own, for the command line.

use std::io::Read;

use orgtrail_s3::{Blocking, S3Error, S3Options};

use crate::{ObjectStore, ReadError, TrailFilesError};

/// Keys per listing request.
const PAGE: usize = 1000;

/// A bucket (under a key prefix) holding a trail's files.
#[derive(Debug)]
pub struct S3Store {
    client: Blocking,
    bucket: String,
    prefix: String,
}

impl S3Store {
    /// The trail under `prefix` ("" for the bucket's root; slashes around it are ignored) in
    /// the bucket `opts` names. Makes no request.
    pub fn new(opts: &S3Options, prefix: &str) -> Result<S3Store, TrailFilesError> {
        let client = Blocking::owned(opts).map_err(|e| store_error(opts.place(), &e))?;
        Ok(S3Store {
            client,
            bucket: opts.bucket.clone(),
            prefix: prefix.trim_matches('/').to_string(),
        })
    }
}

fn store_error(store: String, e: &S3Error) -> TrailFilesError {
    TrailFilesError::Store {
        store,
        reason: e.to_string(),
    }
}

fn read_error(e: S3Error) -> ReadError {
    match e {
        S3Error::NotFound { .. } => ReadError::NotFound,
        e => ReadError::Io(std::io::Error::other(e.to_string())),
    }
}

impl ObjectStore for S3Store {
    fn describe(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    fn bucket(&self) -> Option<&str> {
        Some(&self.bucket)
    }

    fn list(&self) -> Result<Vec<String>, TrailFilesError> {
        let root = if self.prefix.is_empty() {
            "AWSLogs/".to_string()
        } else {
            format!("{}/AWSLogs/", self.prefix)
        };
        let objects = self
            .client
            .list_all(&root, PAGE)
            .map_err(|e| store_error(self.describe(), &e))?;
        Ok(objects.into_iter().map(|o| o.key).collect())
    }

    fn open(&self, key: &str) -> Result<Box<dyn Read + '_>, ReadError> {
        let r = self.client.open(key, None).map_err(read_error)?;
        Ok(Box::new(r))
    }

    fn signature(&self, key: &str) -> Result<Option<String>, ReadError> {
        self.client.metadata(key, "signature").map_err(read_error)
    }
}
