//! Preparing events for the writer, on any thread: compression (with the store's current
//! dictionary), the blind values an event is indexed under, its dedup blind and hashes.
//!
//! Blind values are `HMAC-SHA-256(K_idx, attribute || 0 || value)[..16]` (see
//! `orgtrail_crypto::blind`); the dedup blind of an event is the blind of
//! `account || 0 || eventID` under the attribute `dedup`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use orgtrail_core::{AccountId, CloudTrailEvent};
use orgtrail_crypto::BlindIndexer;
use orgtrail_crypto::hash::sha256;

use super::Shared;
use super::small::{Blinds, EventIdBuf};
use crate::error::StoreError;
use crate::format::put_varint;
use crate::index::Blind;
use crate::query::Attr;

/// An event ready to append: compressed, its blind index values and hashes computed. Produced
/// by [`Preparer::prepare`] on any thread, so the writer thread only seals and writes.
pub struct Prepared {
    pub(super) account: AccountId,
    /// Inline, as are the blind values: the writer's thread drops the prepared event (see
    /// the `small` module).
    pub(super) event_id: EventIdBuf,
    pub(super) time: i64,
    pub(super) dedup: Blind,
    pub(super) hash: [u8; 32],
    pub(super) postings: Blinds,
    /// This event's own zstd frame ([`Pack::Single`]), or empty (its run holds it).
    pub(super) compressed: Vec<u8>,
    pub(super) pack: Pack,
    pub(super) dict_id: u32,
    pub(super) sample: Option<Vec<u8>>,
    /// The values the event is counted under (see the `counts` module).
    pub(super) dims: crate::counts::Dims,
    /// Their hash (`counts::dims_hash`), computed here instead of on the writer's thread.
    pub(super) dims_hash: u64,
}

/// How a prepared event's bytes are compressed.
#[derive(Clone)]
pub(super) enum Pack {
    /// On their own, in [`Prepared::compressed`] (a version 2 block holds them).
    Single,
    /// As record `index` of a run: one zstd frame with the events of one account prepared
    /// together (a version 3 block, see `records`).
    Run { run: Arc<Run>, index: u16 },
}

/// A run's zstd frame: `count` LEB128 lengths, then the `count` events' bytes.
pub(super) struct Run {
    pub(super) frame: Vec<u8>,
    pub(super) count: u16,
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
    /// Blind values of attributes whose values repeat (account, region, eventName, user,
    /// access key, resource names, ...): computing each HMAC once per thread is enough. The
    /// value is kept shared, so that the counters take it without an allocation per event.
    cache: Vec<FastMap<Arc<str>, Blind>>,
    /// zstd's output, reused: each event keeps an exact-size copy of it.
    scratch: Vec<u8>,
    /// Whether the compressor writes the content size in its frames (runs) or not (events).
    sized: bool,
    /// A run's plaintext, reused.
    plain: Vec<u8>,
}

/// The maps of the preparer's caches (short strings; foldhash is several times faster than
/// SipHash on them, and the values are not chosen by an attacker who sees the seed).
type FastMap<K, V> = foldhash::HashMap<K, V>;

/// Attributes whose values repeat enough to cache their blind values.
pub(super) fn cacheable(attr: Attr) -> bool {
    cache_max(attr) > 0
}

/// Most blind values cached per attribute (0: not cached). Low-cardinality attributes keep
/// nearly all their values; users, access keys and resource names repeat too, but have many
/// more values, so they keep fewer (a full cache is cleared and fills again).
pub(super) fn cache_max(attr: Attr) -> usize {
    match attr {
        Attr::Account
        | Attr::Region
        | Attr::EventName
        | Attr::EventSource
        | Attr::ReadOnly
        | Attr::ErrorCode
        | Attr::ResourceType
        | Attr::EventCategory
        | Attr::InsightType => BLIND_CACHE_MAX,
        Attr::Username | Attr::AccessKeyId | Attr::ResourceName => 8192,
    }
}

/// Most blind values cached per low-cardinality attribute.
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
            cache: (0..Attr::COUNT).map(|_| FastMap::default()).collect(),
            scratch: Vec::new(),
            sized: false,
            plain: Vec::new(),
        }
    }

    /// Takes the store's current dictionary, if it changed: every event prepared until the next
    /// call is compressed with it.
    fn refresh(&mut self) -> Result<(), StoreError> {
        let current = self.shared.dict_version.load(Ordering::Acquire);
        if self.compressor.is_none() || current != self.dict_id {
            self.compressor = Some(new_compressor(&self.shared, current)?);
            self.dict_id = current;
            self.sized = false;
        }
        Ok(())
    }

    /// Prepares a batch of events as [`Preparer::prepare`] does each, in the same order, but
    /// compresses them by runs: each account's events, in the order given, `block_records` at
    /// a time, as one zstd frame each (see `records`). Appended together, each run is sealed
    /// as one record block; the events of a run are stored alike in any case (appended apart,
    /// or with some of them duplicates of events stored before, the writer compresses those
    /// it stores again). An event whose (account, eventID) came earlier in the batch is
    /// compressed on its own, in no run.
    pub fn prepare_batch(
        &mut self,
        events: &[(CloudTrailEvent, AccountId)],
    ) -> Result<Vec<Prepared>, StoreError> {
        self.refresh()?;
        let mut out = Vec::with_capacity(events.len());
        for (event, account) in events {
            out.push(self.describe(event, *account, Vec::new()));
        }
        let max = self
            .shared
            .cfg
            .block_records
            .clamp(1, usize::from(u16::MAX));
        // An event whose (account, eventID) came before in the batch is a duplicate or a
        // conflict, never stored: it is compressed on its own, so that it breaks no run.
        let mut seen: crate::index::BlindMap<()> =
            crate::index::BlindMap::with_capacity_and_hasher(events.len(), Default::default());
        // Each account's events, in order; most batches hold few accounts.
        let mut accounts: Vec<(AccountId, Vec<usize>)> = Vec::new();
        let mut last: Option<usize> = None;
        for (i, (event, account)) in events.iter().enumerate() {
            if seen.insert(out[i].dedup, ()).is_some() {
                out[i].compressed = self.compress(event.bytes(), false)?;
                continue;
            }
            let at = match last.filter(|&a| accounts[a].0 == *account) {
                Some(a) => a,
                None => match accounts.iter().position(|(a, _)| a == account) {
                    Some(a) => a,
                    None => {
                        accounts.push((*account, Vec::new()));
                        accounts.len() - 1
                    }
                },
            };
            accounts[at].1.push(i);
            last = Some(at);
        }
        for (_, members) in &accounts {
            for chunk in members.chunks(max) {
                let mut plain = std::mem::take(&mut self.plain);
                plain.clear();
                for &i in chunk {
                    put_varint(&mut plain, events[i].0.bytes().len() as u64);
                }
                for &i in chunk {
                    plain.extend_from_slice(events[i].0.bytes());
                }
                let frame = self.compress(&plain, true);
                self.plain = plain;
                let run = Arc::new(Run {
                    frame: frame?,
                    count: u16::try_from(chunk.len()).unwrap_or(u16::MAX),
                });
                for (index, &i) in (0u16..).zip(chunk) {
                    out[i].pack = Pack::Run {
                        run: run.clone(),
                        index,
                    };
                }
            }
        }
        Ok(out)
    }

    /// `bytes` compressed with the dictionary taken by the last [`Preparer::refresh`], as an
    /// exact-size copy; with the content size in the frame if `sized` (a run).
    fn compress(&mut self, bytes: &[u8], sized: bool) -> Result<Vec<u8>, StoreError> {
        let Some(c) = self.compressor.as_mut() else {
            return Err(StoreError::Compression("no compressor".into()));
        };
        if self.sized != sized {
            c.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(sized))
                .map_err(|e| StoreError::Compression(e.to_string()))?;
            self.sized = sized;
        }
        // zstd writes into the reused buffer (sized for the worst case once); the event keeps
        // an exact-size copy, as it waits in the writer's queue.
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.reserve(zstd::zstd_safe::compress_bound(bytes.len()));
        let done = c
            .compress_to_buffer(bytes, &mut scratch)
            .map_err(|e| StoreError::Compression(e.to_string()));
        let out = scratch.clone();
        self.scratch = scratch;
        done.map(|_| out)
    }

    /// Compresses the event and computes its blind index values, for `account` (the account
    /// the collector decided the event belongs to).
    pub fn prepare(
        &mut self,
        event: &CloudTrailEvent,
        account: AccountId,
    ) -> Result<Prepared, StoreError> {
        self.refresh()?;
        let compressed = self.compress(event.bytes(), false)?;
        Ok(self.describe(event, account, compressed))
    }

    /// Everything of a prepared event but its compression: `compressed` is the event's own
    /// frame (or empty, for a run to be set).
    fn describe(
        &mut self,
        event: &CloudTrailEvent,
        account: AccountId,
        compressed: Vec<u8>,
    ) -> Prepared {
        let sh = &self.shared;
        let bytes = event.bytes();
        let f = event.fields();
        let b = &sh.blinder;
        let cache = &mut self.cache;
        let mut postings = Blinds::default();
        // The counted values: account, eventSource, eventName, user, errorCode, region (the
        // order of `counts::Dims`), taken from the cache where it holds them.
        let mut dims: [Option<Arc<str>>; crate::counts::DIMS] = Default::default();
        for_each_attribute(f, &account, |attr, value| {
            let slot = match attr {
                Attr::Account => Some(0),
                Attr::EventSource => Some(1),
                Attr::EventName => Some(2),
                Attr::Username => Some(3),
                Attr::ErrorCode => Some(4),
                Attr::Region => Some(5),
                _ => None,
            };
            let max = cache_max(attr);
            let v = if max > 0 {
                let map = &mut cache[attr.index()];
                match map.get_key_value(value) {
                    Some((k, v)) => {
                        if let Some(i) = slot {
                            dims[i] = Some(k.clone());
                        }
                        *v
                    }
                    None => {
                        let v = b.blind(attr.tag(), value.as_bytes());
                        if map.len() >= max {
                            map.clear();
                        }
                        let k: Arc<str> = Arc::from(value);
                        if let Some(i) = slot {
                            dims[i] = Some(k.clone());
                        }
                        map.insert(k, v);
                        v
                    }
                }
            } else {
                if let Some(i) = slot {
                    dims[i] = Some(Arc::from(value));
                }
                b.blind(attr.tag(), value.as_bytes())
            };
            postings.push_distinct(v);
        });
        let hash = sha256(bytes);
        let dims = crate::counts::Dims(dims);
        Prepared {
            account,
            time: f.event_time.millis(),
            dedup: dedup_blind(b, &account, &f.event_id),
            hash,
            postings,
            compressed,
            pack: Pack::Single,
            dict_id: self.dict_id,
            sample: (self.dict_id == 0).then(|| bytes.to_vec()),
            event_id: EventIdBuf::new(&f.event_id),
            dims_hash: crate::counts::dims_hash(&dims),
            dims,
        }
    }
}

/// A compressor for records with dictionary `dict` (0: none), at the store's level and table
/// logs, writing neither dictionary id nor content size in its frames.
pub(super) fn new_compressor(
    sh: &Shared,
    dict: u32,
) -> Result<zstd::bulk::Compressor<'static>, StoreError> {
    if dict == 0 {
        zstd::bulk::Compressor::new(sh.cfg.zstd_level)
    } else {
        zstd::bulk::Compressor::with_dictionary(sh.cfg.zstd_level, &sh.raw_dict(dict)?)
    }
    .and_then(|mut c| {
        // The record block names the dictionary, and decompression is bounded by
        // MAX_EVENT_BYTES: the frame header needs neither (6 bytes per event).
        c.set_parameter(zstd::zstd_safe::CParameter::DictIdFlag(false))?;
        c.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(false))?;
        let log = sh.cfg.zstd_table_log;
        if log > 0 {
            c.set_parameter(zstd::zstd_safe::CParameter::HashLog(log))?;
            c.set_parameter(zstd::zstd_safe::CParameter::ChainLog(log))?;
        }
        // The dictionary's tables are consulted where they are, never copied into the context
        // for a frame: zstd copies them for inputs over 8 KiB (a run), 256 KiB at table log 16
        // per frame, which cost more than it saved (`examples/zstd_levels.rs`, ATTACH).
        c.set_parameter(zstd::zstd_safe::CParameter::ForceAttachDict(
            zstd::zstd_safe::DictAttachPref::ForceAttach,
        ))?;
        Ok(c)
    })
    .map_err(|e| StoreError::Compression(e.to_string()))
}

/// The (attribute, value) pairs an event is indexed under.
pub(super) fn attribute_values<'a>(
    f: &'a orgtrail_core::EventFields,
    account: &'a AccountId,
) -> Vec<(Attr, &'a str)> {
    let mut v = Vec::with_capacity(12);
    for_each_attribute(f, account, |a, s| v.push((a, s)));
    v
}

/// Calls `visit` with each (attribute, value) pair an event is indexed under, in the order of
/// [`attribute_values`], without collecting them.
pub(super) fn for_each_attribute<'a>(
    f: &'a orgtrail_core::EventFields,
    account: &'a AccountId,
    mut visit: impl FnMut(Attr, &'a str),
) {
    visit(Attr::Account, account.as_str());
    if let Some(r) = &f.aws_region {
        visit(Attr::Region, r.as_str());
    }
    visit(Attr::EventName, f.event_name.as_str());
    visit(Attr::EventSource, f.event_source.as_str());
    if let Some(ro) = f.read_only {
        visit(Attr::ReadOnly, if ro { "true" } else { "false" });
    }
    if let Some(u) = f.username() {
        visit(Attr::Username, u);
    }
    if let Some(k) = f
        .user_identity
        .as_ref()
        .and_then(|u| u.access_key_id.as_deref())
    {
        visit(Attr::AccessKeyId, k);
    }
    if let Some(e) = &f.error_code {
        visit(Attr::ErrorCode, e.as_str());
    }
    for n in &f.resource_names {
        visit(Attr::ResourceName, n.as_str());
    }
    // `f.resource_types()` in its order (each type at its first resource), without the Vec
    // it allocates.
    for (i, t) in f
        .resources
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some((i, r.resource_type.as_deref()?)))
    {
        if !f.resources[..i]
            .iter()
            .any(|r| r.resource_type.as_deref() == Some(t))
        {
            visit(Attr::ResourceType, t);
        }
    }
    visit(Attr::EventCategory, f.event_category.as_str());
    if let Some(t) = &f.insight_type {
        visit(Attr::InsightType, t.as_str());
    }
}

/// The dedup blind of (account, eventID).
pub(super) fn dedup_blind(b: &BlindIndexer, account: &AccountId, event_id: &str) -> Blind {
    // Account ids are 12 digits and eventIDs are UUIDs: a stack buffer holds nearly all.
    let mut buf = [0u8; 64];
    let a = account.as_str().as_bytes();
    let need = a.len() + 1 + event_id.len();
    if need <= buf.len() {
        buf[..a.len()].copy_from_slice(a);
        buf[a.len()] = 0;
        buf[a.len() + 1..need].copy_from_slice(event_id.as_bytes());
        return b.blind(b"dedup", &buf[..need]);
    }
    let mut v = Vec::with_capacity(need);
    v.extend_from_slice(a);
    v.push(0);
    v.extend_from_slice(event_id.as_bytes());
    b.blind(b"dedup", &v)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::sync::Arc;

    use orgtrail_core::{AccountId, CloudTrailEvent};
    use orgtrail_crypto::{KeyProvider, Keyring, LocalKeyProvider};

    use super::{attribute_values, dedup_blind};
    use crate::counts::Dims;
    use crate::index::Blind;
    use crate::{Ledger, LedgerConfig};

    /// The caches change nothing: every prepared event carries the blind values and counted
    /// values computed from scratch, over enough events that the small caches fill and clear.
    #[test]
    fn cached_blinds_and_counted_values_equal_fresh_ones() {
        let keys = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        Keyring::generate("2026-11-24T00:00:00Z")
            .unwrap()
            .save_new(&keys.path().join("keyring.json"))
            .unwrap();
        let provider: Arc<dyn KeyProvider> = Arc::new(LocalKeyProvider::load(keys.path()).unwrap());
        let ledger = Ledger::open(data.path(), provider, LedgerConfig::default()).unwrap();
        let mut p = ledger.preparer();
        let events = orgtrail_gen::Generator::new(orgtrail_gen::GenConfig {
            count: 20_000,
            accounts: 5,
            seed: 9,
            ..orgtrail_gen::GenConfig::default()
        });
        let b = &ledger.shared.blinder;
        for bytes in events {
            let e = CloudTrailEvent::parse(bytes).unwrap();
            let f = e.fields();
            let account: AccountId = f.recipient_account_id.as_ref().unwrap().parse().unwrap();
            let prepared = p.prepare(&e, account).unwrap();
            let mut want: Vec<Blind> = Vec::new();
            for (attr, value) in attribute_values(f, &account) {
                let v = b.blind(attr.tag(), value.as_bytes());
                if !want.contains(&v) {
                    want.push(v);
                }
            }
            assert_eq!(prepared.postings.as_slice(), &want[..]);
            assert!(prepared.dims == Dims::of(f, &account));
            assert_eq!(prepared.dedup, dedup_blind(b, &account, &f.event_id));
            assert_eq!(prepared.event_id.as_str(), f.event_id);
        }
        ledger.close().unwrap();
    }

    /// An event is indexed under each of its resource types once, in `resource_types()`'s
    /// order: repeated types, resources without a type and a single resource.
    #[test]
    fn resource_types_are_indexed_once_each_in_order() {
        use crate::query::Attr;
        let account: AccountId = "123456789012".parse().unwrap();
        for types in [
            &[][..],
            &[Some("AWS::S3::Bucket")][..],
            &[
                Some("AWS::S3::Object"),
                None,
                Some("AWS::S3::Bucket"),
                Some("AWS::S3::Object"),
                Some("AWS::KMS::Key"),
                Some("AWS::S3::Bucket"),
            ][..],
        ] {
            let resources: Vec<String> = types
                .iter()
                .enumerate()
                .map(|(i, t)| match t {
                    Some(t) => format!(r#"{{"ARN":"arn:x:{i}","type":"{t}"}}"#),
                    None => format!(r#"{{"ARN":"arn:x:{i}"}}"#),
                })
                .collect();
            let e = CloudTrailEvent::parse(format!(
                r#"{{"eventVersion":"1.08","eventID":"e1","eventTime":"2024-01-01T00:00:00Z","eventName":"GetObject","eventSource":"s3.amazonaws.com","resources":[{}]}}"#,
                resources.join(",")
            ))
            .unwrap();
            let got: Vec<&str> = attribute_values(e.fields(), &account)
                .into_iter()
                .filter(|(a, _)| *a == Attr::ResourceType)
                .map(|(_, v)| v)
                .collect();
            assert_eq!(got, e.fields().resource_types());
        }
    }

    /// An eventID too long for the stack buffer gets the same dedup blind as the plain layout.
    #[test]
    fn long_event_ids_blind_like_short_ones() {
        let k = orgtrail_crypto::BlindIndexer::generate_key().unwrap();
        let b = orgtrail_crypto::BlindIndexer::new(&k);
        let account: AccountId = "123456789012".parse().unwrap();
        for id in ["e", &"x".repeat(51), &"y".repeat(52), &"z".repeat(300)] {
            let mut v = b"123456789012".to_vec();
            v.push(0);
            v.extend_from_slice(id.as_bytes());
            assert_eq!(dedup_blind(&b, &account, id), b.blind(b"dedup", &v));
        }
    }
}
