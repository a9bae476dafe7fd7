//! The synchronous bridge: object_store is async, the agent's sources and the CLI's readers
//! are plain threads.
//!
//! [`Blocking::in_runtime`] borrows a runtime's handle: its methods may then be called only
//! from a thread outside that runtime's async tasks (a `spawn_blocking` thread, as the agent's
//! sources are); `block_on` from inside an async task would panic. [`Blocking::owned`] builds
//! a runtime of its own (one worker) for callers that have none.

use std::io::Read;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use object_store::aws::AmazonS3;
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    Attribute, AttributeValue, Attributes, GetOptions, ObjectStore, PutOptions, PutPayload,
};
use tokio::runtime::{Handle, Runtime};

use crate::error::classify;
use crate::version::{get_options, is_wanted};
use crate::{S3Error, S3Options, Version, connect};

/// An object in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    /// Its ETag, or its size and last-modified time from a server that sends no ETag.
    pub version: Version,
    pub size: u64,
}

/// One page of a listing.
#[derive(Debug, Default)]
pub struct Page {
    pub objects: Vec<Listed>,
    /// With a delimiter: the common prefixes, each ending in `/`.
    pub prefixes: Vec<String>,
    /// The continuation token of the next page, if the listing is truncated.
    pub next: Option<String>,
}

/// A bucket, with blocking calls.
#[derive(Debug)]
pub struct Blocking {
    store: Arc<AmazonS3>,
    handle: Handle,
    place: String,
    _rt: Option<Runtime>,
}

impl Blocking {
    /// A client on the caller's runtime (see the module doc for where it may be called).
    pub fn in_runtime(o: &S3Options, handle: Handle) -> Result<Blocking, S3Error> {
        Ok(Blocking {
            store: Arc::new(connect(o)?),
            handle,
            place: o.place(),
            _rt: None,
        })
    }

    /// A client with a runtime of its own.
    pub fn owned(o: &S3Options) -> Result<Blocking, S3Error> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("orgtrail-s3")
            .enable_all()
            .build()
            .map_err(|e| S3Error::Config {
                place: o.place(),
                reason: format!("cannot start a runtime: {e}"),
            })?;
        Ok(Blocking {
            store: Arc::new(connect(o)?),
            handle: rt.handle().clone(),
            place: o.place(),
            _rt: Some(rt),
        })
    }

    /// `s3://BUCKET at ENDPOINT`.
    pub fn place(&self) -> &str {
        &self.place
    }

    /// One ListObjectsV2 page of keys starting with `prefix` (raw: no `/` is added), after
    /// `start_after` (exclusive), from `token`.
    pub fn list_page(
        &self,
        prefix: &str,
        delimiter: bool,
        start_after: Option<&str>,
        token: Option<String>,
        max_keys: usize,
    ) -> Result<Page, S3Error> {
        let opts = PaginatedListOptions {
            offset: start_after.map(str::to_string),
            delimiter: delimiter.then_some("/".into()),
            max_keys: Some(max_keys),
            page_token: token,
            ..Default::default()
        };
        let r = self
            .handle
            .block_on(self.store.list_paginated(Some(prefix), opts))
            .map_err(|e| classify(e, &self.place, "list", prefix, None))?;
        let mut prefixes: Vec<String> = r
            .result
            .common_prefixes
            .into_iter()
            .map(|p| format!("{p}/"))
            .collect();
        // Byte order, as AWS sorts (SeaweedFS puts `CloudTrail/` before `CloudTrail-Digest/`).
        prefixes.sort();
        Ok(Page {
            objects: r
                .result
                .objects
                .into_iter()
                .map(|m| Listed {
                    version: Version::of(&m),
                    key: m.location.to_string(),
                    size: m.size,
                })
                .collect(),
            prefixes,
            next: r.page_token,
        })
    }

    /// Every object under `prefix` (all pages), in key order.
    pub fn list_all(&self, prefix: &str, max_keys: usize) -> Result<Vec<Listed>, S3Error> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let p = self.list_page(prefix, false, None, token, max_keys)?;
            out.extend(p.objects);
            match p.next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Opens `key` for streaming; with `version`, only that version (a different one is
    /// [`S3Error::Changed`]).
    pub fn open(&self, key: &str, version: Option<&Version>) -> Result<BodyReader, S3Error> {
        let (stream, size, version) = self.get_from(key, version, 0)?;
        Ok(BodyReader {
            store: self.store.clone(),
            handle: self.handle.clone(),
            place: self.place.clone(),
            key: key.to_string(),
            version,
            size,
            pos: 0,
            buf: Bytes::new(),
            stream,
            resumes: 0,
            failure: Arc::new(OnceLock::new()),
        })
    }

    fn get_from(&self, key: &str, version: Option<&Version>, pos: u64) -> Result<Opened, S3Error> {
        get_from(&self.store, &self.handle, &self.place, key, version, pos)
    }

    /// Writes `bytes` at `key` with user metadata (`x-amz-meta-NAME`); returns the ETag, if
    /// the server sent one.
    pub fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        metadata: &[(&str, &str)],
    ) -> Result<Option<String>, S3Error> {
        let attributes: Attributes = metadata
            .iter()
            .map(|(k, v)| {
                (
                    Attribute::Metadata(k.to_string().into()),
                    AttributeValue::from(v.to_string()),
                )
            })
            .collect();
        let opts = PutOptions {
            attributes,
            ..Default::default()
        };
        let r = self
            .handle
            .block_on(
                self.store
                    .put_opts(&Path::from(key), PutPayload::from(bytes), opts),
            )
            .map_err(|e| classify(e, &self.place, "put", key, None))?;
        Ok(r.e_tag.filter(|t| !t.is_empty()))
    }

    /// The user metadata `x-amz-meta-NAME` of `key` (a HEAD request).
    pub fn metadata(&self, key: &str, name: &str) -> Result<Option<String>, S3Error> {
        let r = self
            .handle
            .block_on(self.store.get_opts(
                &Path::from(key),
                GetOptions {
                    head: true,
                    ..Default::default()
                },
            ))
            .map_err(|e| classify(e, &self.place, "head", key, None))?;
        Ok(r.attributes
            .get(&Attribute::Metadata(name.to_string().into()))
            .map(|v| v.as_ref().to_string()))
    }

    /// Creates the bucket (a presigned `PUT /bucket/`; object_store has no bucket API).
    pub fn create_bucket(&self) -> Result<(), S3Error> {
        let fail = |reason: String| S3Error::Transient {
            place: self.place.clone(),
            op: "create_bucket",
            reason,
        };
        self.handle.block_on(async {
            let url = self
                .store
                .signed_url(
                    reqwest::Method::PUT,
                    &Path::from(""),
                    Duration::from_secs(60),
                )
                .await
                .map_err(|e| fail(e.to_string()))?;
            let r = reqwest::Client::new()
                .put(url.as_str())
                .send()
                .await
                .map_err(|e| fail(e.to_string()))?;
            if r.status().is_success() {
                Ok(())
            } else {
                Err(fail(format!("CreateBucket answered {}", r.status())))
            }
        })
    }
}

/// An object's body from a position on, its whole length, and the version read.
type Opened = (
    BoxStream<'static, object_store::Result<Bytes>>,
    u64,
    Version,
);

fn get_from(
    store: &AmazonS3,
    handle: &Handle,
    place: &str,
    key: &str,
    version: Option<&Version>,
    pos: u64,
) -> Result<Opened, S3Error> {
    let r = handle
        .block_on(store.get_opts(&Path::from(key), get_options(version, pos)))
        .map_err(|e| classify(e, place, "get", key, version))?;
    let got = Version::of(&r.meta);
    if !is_wanted(version, &got) {
        return Err(S3Error::Changed {
            place: place.to_string(),
            key: key.to_string(),
            version: version.map(ToString::to_string).unwrap_or_default(),
        });
    }
    let size = r.meta.size;
    Ok((r.into_stream(), size, got))
}

/// An object's body as [`Read`]. A body that breaks off (after object_store's own retries)
/// is asked for again from the position reached, for the same [`Version`], up to
/// [`BodyReader::MAX_RESUMES`] times. A read error is an `io::Error` whose cause is also kept
/// in [`BodyReader::failure`], so a caller can tell a broken transfer from a corrupt object.
pub struct BodyReader {
    store: Arc<AmazonS3>,
    handle: Handle,
    place: String,
    key: String,
    version: Version,
    size: u64,
    pos: u64,
    buf: Bytes,
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    resumes: u32,
    failure: Arc<OnceLock<S3Error>>,
}

impl std::fmt::Debug for BodyReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyReader")
            .field("key", &self.key)
            .field("version", &self.version)
            .field("size", &self.size)
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl BodyReader {
    /// Resumptions of one body at most.
    pub const MAX_RESUMES: u32 = 3;

    /// The object's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The version being read.
    pub fn version(&self) -> &Version {
        &self.version
    }

    /// How many times the body was asked for again after breaking off.
    pub fn resumes(&self) -> u32 {
        self.resumes
    }

    /// Set when a read failed for a transfer reason (not the object's content).
    pub fn failure(&self) -> Arc<OnceLock<S3Error>> {
        self.failure.clone()
    }

    fn fail(&self, e: S3Error) -> std::io::Error {
        let msg = e.to_string();
        let _ = self.failure.set(e);
        std::io::Error::other(msg)
    }

    fn resume(&mut self, why: String) -> std::io::Result<()> {
        if self.resumes >= Self::MAX_RESUMES {
            return Err(self.fail(S3Error::Transient {
                place: self.place.clone(),
                op: "get",
                reason: format!("{}: body broke off at byte {}: {why}", self.key, self.pos),
            }));
        }
        self.resumes += 1;
        tracing::info!(key = %self.key, pos = self.pos, error = %why, "S3 body broke off; resuming");
        match get_from(
            &self.store,
            &self.handle,
            &self.place,
            &self.key,
            Some(&self.version),
            self.pos,
        ) {
            Ok((s, _, _)) => {
                self.stream = s;
                Ok(())
            }
            Err(e) => Err(self.fail(e)),
        }
    }
}

impl Read for BodyReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            if self.pos >= self.size {
                return Ok(0);
            }
            let next = self.handle.block_on(self.stream.next());
            match next {
                Some(Ok(b)) => self.buf = b,
                Some(Err(e)) => self.resume(e.to_string())?,
                None => self.resume("the body ended early".into())?,
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        let _ = self.buf.split_to(n);
        self.pos += n as u64;
        Ok(n)
    }
}
