//! Preparing events for the writer, on any thread: compression (with the store's current
//! dictionary), the blind values an event is indexed under, its dedup blind and hashes.
//!
//! Blind values are `HMAC-SHA-256(K_idx, attribute || 0 || value)[..16]` (see
//! `orgtrail_crypto::blind`); the dedup blind of an event is the blind of
//! `account || 0 || eventID` under the attribute `dedup`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use orgtrail_core::{AccountId, CloudTrailEvent};
use orgtrail_crypto::BlindIndexer;
use orgtrail_crypto::hash::sha256;

use super::Shared;
use crate::error::StoreError;
use crate::index::Blind;
use crate::query::Attr;

/// An event ready to append: compressed, its blind index values and hashes computed. Produced
/// by [`Preparer::prepare`] on any thread, so the writer thread only seals and writes.
pub struct Prepared {
    pub(super) account: AccountId,
    pub(super) event_id: String,
    pub(super) time: i64,
    pub(super) dedup: Blind,
    pub(super) hash: [u8; 32],
    pub(super) postings: Vec<Blind>,
    pub(super) compressed: Vec<u8>,
    pub(super) dict_id: u32,
    pub(super) sample: Option<Vec<u8>>,
    /// The values the event is counted under (see the `counts` module).
    pub(super) dims: crate::counts::Dims,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("account", &self.account)
            .field("time", &self.time)
            .finish_non_exhaustive()
    }
}

/// Prepares events for appending on the caller's thread.
pub struct Preparer {
    shared: Arc<Shared>,
    dict_id: u32,
    compressor: Option<zstd::bulk::Compressor<'static>>,
    /// Blind values of low-cardinality attributes (account, region, eventName, ...), which
    /// repeat in nearly every event: computing each HMAC once per thread is enough.
    cache: Vec<HashMap<String, Blind>>,
}

/// Attributes whose values repeat enough to cache their blind values.
pub(super) fn cacheable(attr: Attr) -> bool {
    matches!(
        attr,
        Attr::Account
            | Attr::Region
            | Attr::EventName
            | Attr::EventSource
            | Attr::ReadOnly
            | Attr::ErrorCode
            | Attr::ResourceType
    )
}

/// Most blind values cached per attribute.
pub(super) const BLIND_CACHE_MAX: usize = 50_000;

impl std::fmt::Debug for Preparer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preparer")
            .field("dict_id", &self.dict_id)
            .finish_non_exhaustive()
    }
}

impl Preparer {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Preparer {
            shared,
            dict_id: u32::MAX,
            compressor: None,
            cache: (0..Attr::COUNT).map(|_| HashMap::new()).collect(),
        }
    }

    /// Compresses the event and computes its blind index values, for `account` (the account
    /// the collector decided the event belongs to).
    pub fn prepare(
        &mut self,
        event: &CloudTrailEvent,
        account: AccountId,
    ) -> Result<Prepared, StoreError> {
        let sh = &self.shared;
        let current = sh.dict_version.load(Ordering::Acquire);
        if self.compressor.is_none() || current != self.dict_id {
            let c = if current == 0 {
                zstd::bulk::Compressor::new(sh.cfg.zstd_level)
            } else {
                let raw = sh
                    .dicts
                    .read()
                    .map_err(|_| StoreError::WriterGone)?
                    .raw
                    .get(&current)
                    .cloned()
                    .ok_or_else(|| StoreError::Corrupt("current dictionary missing".into()))?;
                zstd::bulk::Compressor::with_dictionary(sh.cfg.zstd_level, &raw)
            }
            .and_then(|mut c| {
                // The record block names the dictionary, and decompression is bounded by
                // MAX_EVENT_BYTES: the frame header needs neither (6 bytes per event).
                c.set_parameter(zstd::zstd_safe::CParameter::DictIdFlag(false))?;
                c.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(false))?;
                Ok(c)
            })
            .map_err(|e| StoreError::Compression(e.to_string()))?;
            self.compressor = Some(c);
            self.dict_id = current;
        }
        let bytes = event.bytes();
        let mut compressed = match self.compressor.as_mut() {
            Some(c) => c
                .compress(bytes)
                .map_err(|e| StoreError::Compression(e.to_string()))?,
            None => return Err(StoreError::Compression("no compressor".into())),
        };
        // zstd sizes its output for the worst case (about the input's size); a prepared event
        // waits in the writer's queue, so it keeps only what it needs.
        compressed.shrink_to_fit();
        let f = event.fields();
        let b = &sh.blinder;
        let cache = &mut self.cache;
        let mut postings: Vec<Blind> = Vec::with_capacity(12);
        for (attr, value) in attribute_values(f, &account) {
            let v = if cacheable(attr) {
                let map = &mut cache[attr.index()];
                match map.get(value) {
                    Some(v) => *v,
                    None => {
                        let v = b.blind(attr.tag(), value.as_bytes());
                        if map.len() >= BLIND_CACHE_MAX {
                            map.clear();
                        }
                        map.insert(value.to_owned(), v);
                        v
                    }
                }
            } else {
                b.blind(attr.tag(), value.as_bytes())
            };
            if !postings.contains(&v) {
                postings.push(v);
            }
        }
        postings.shrink_to_fit();
        let hash = sha256(bytes);
        Ok(Prepared {
            account,
            time: f.event_time.millis(),
            dedup: dedup_blind(b, &account, &f.event_id),
            hash,
            postings,
            compressed,
            dict_id: self.dict_id,
            sample: (self.dict_id == 0).then(|| bytes.to_vec()),
            event_id: f.event_id.clone(),
            dims: crate::counts::Dims::of(f, &account),
        })
    }
}

/// The (attribute, value) pairs an event is indexed under.
pub(super) fn attribute_values<'a>(
    f: &'a orgtrail_core::EventFields,
    account: &'a AccountId,
) -> Vec<(Attr, &'a str)> {
    let mut v = Vec::with_capacity(12);
    v.push((Attr::Account, account.as_str()));
    if let Some(r) = &f.aws_region {
        v.push((Attr::Region, r.as_str()));
    }
    v.push((Attr::EventName, f.event_name.as_str()));
    v.push((Attr::EventSource, f.event_source.as_str()));
    if let Some(ro) = f.read_only {
        v.push((Attr::ReadOnly, if ro { "true" } else { "false" }));
    }
    if let Some(u) = f.username() {
        v.push((Attr::Username, u));
    }
    if let Some(k) = f
        .user_identity
        .as_ref()
        .and_then(|u| u.access_key_id.as_deref())
    {
        v.push((Attr::AccessKeyId, k));
    }
    if let Some(e) = &f.error_code {
        v.push((Attr::ErrorCode, e.as_str()));
    }
    for n in &f.resource_names {
        v.push((Attr::ResourceName, n.as_str()));
    }
    for t in f.resource_types() {
        v.push((Attr::ResourceType, t));
    }
    v
}

/// The dedup blind of (account, eventID).
pub(super) fn dedup_blind(b: &BlindIndexer, account: &AccountId, event_id: &str) -> Blind {
    let mut v = Vec::with_capacity(13 + event_id.len());
    v.extend_from_slice(account.as_str().as_bytes());
    v.push(0);
    v.extend_from_slice(event_id.as_bytes());
    b.blind(b"dedup", &v)
}
