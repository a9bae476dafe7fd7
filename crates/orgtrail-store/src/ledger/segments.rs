//! Segments and their data keys.
//!
//! A segment is a run of one account's records sealed under one data key: one account, one UTC
//! day, at most `segment_max_records` records. Its data key exists on disk only wrapped by the
//! master key, bound to the segment by the context `"segment/" || id (u64 BE) || account`.
//!
//! # `s <segment id u64 BE>` (segment value, version 1)
//!
//! | bytes | field |
//! |---|---|
//! | 1 | version, 1 |
//! | 12 | account, 12 ASCII digits |
//! | 8 | UTC day (days since the epoch, i64 BE) |
//! | 8 | created (ms since the epoch, i64 BE) |
//! | 64 | the data key, wrapped by the master key (`WrappedKey::to_bytes`) |
//!
//! Opened data keys are cached in memory ([`Shared::segment_key`]); [`Ledger::rewrap`] moves
//! every wrapped key of the store to the current master key version.

use std::collections::HashMap;
use std::sync::Arc;

use orgtrail_core::AccountId;
use orgtrail_crypto::keyring::WRAPPED_LEN;
use orgtrail_crypto::{DataKey, WrappedKey};

use super::dicts::dict_context;
use super::{Ledger, Shared, be_u64};
use crate::error::StoreError;
use crate::format::{Reader, SEGMENT, meta_key};
use crate::kv::Batch;

/// What the ledger keeps in memory of every segment.
pub(super) struct SegmentInfo {
    pub(super) account: AccountId,
    pub(super) wrapped: WrappedKey,
}

/// What a segment's data key is bound to when wrapped.
pub(super) fn segment_context(segment: u64, account: &AccountId) -> Vec<u8> {
    let mut c = b"segment/".to_vec();
    c.extend_from_slice(&segment.to_be_bytes());
    c.extend_from_slice(account.as_str().as_bytes());
    c
}

/// What the blind-index key (`m blind_key`) is bound to when wrapped.
pub(super) const BLIND_KEY_CONTEXT: &[u8] = b"blind-index-key";

/// Encodes a segment value (layout in the module docs).
pub(super) fn encode_segment(
    account: &AccountId,
    day: i64,
    created: i64,
    wrapped: &WrappedKey,
) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + 12 + 16 + WRAPPED_LEN);
    v.push(1);
    v.extend_from_slice(account.as_str().as_bytes());
    v.extend_from_slice(&day.to_be_bytes());
    v.extend_from_slice(&created.to_be_bytes());
    v.extend_from_slice(&wrapped.to_bytes());
    v
}

/// Decodes a segment value: (account, day, created ms, wrapped data key).
pub(crate) fn decode_segment(v: &[u8]) -> Result<(AccountId, i64, i64, WrappedKey), StoreError> {
    let mut r = Reader::new(v, "segment");
    if r.u8()? != 1 {
        return Err(StoreError::Corrupt("unknown segment version".into()));
    }
    let acct = std::str::from_utf8(r.take(12)?)
        .ok()
        .and_then(|s| s.parse::<AccountId>().ok())
        .ok_or_else(|| StoreError::Corrupt("segment account".into()))?;
    let day = r.i64()?;
    let created = r.i64()?;
    let wrapped = WrappedKey::from_bytes(r.take(WRAPPED_LEN)?)?;
    Ok((acct, day, created, wrapped))
}

impl Shared {
    /// The account and the data key of a segment, opened once and cached.
    pub(super) fn segment_key(
        &self,
        segment: u64,
    ) -> Result<(AccountId, Arc<DataKey>), StoreError> {
        let sh = self;
        let account = sh
            .segments
            .read()
            .map_err(|_| StoreError::WriterGone)?
            .get(&segment)
            .map(|s| s.account)
            .ok_or_else(|| StoreError::Corrupt(format!("segment {segment} is missing")))?;
        if let Some(k) = sh.keys.lock().ok().and_then(|k| k.get(&segment).cloned()) {
            return Ok((account, k));
        }
        let wrapped = sh
            .segments
            .read()
            .map_err(|_| StoreError::WriterGone)?
            .get(&segment)
            .map(|s| s.wrapped.clone())
            .ok_or_else(|| StoreError::Corrupt(format!("segment {segment} is missing")))?;
        let key = Arc::new(
            sh.provider
                .decrypt_data_key(&wrapped, &segment_context(segment, &account))?,
        );
        if let Ok(mut keys) = sh.keys.lock() {
            keys.insert(segment, key.clone());
        }
        Ok((account, key))
    }
}

impl Ledger {
    /// Rewraps every stored data key (and the blind index key) under the provider's current
    /// master key version. Ciphertext is not touched. Returns how many keys were rewrapped.
    pub fn rewrap(&self) -> Result<usize, StoreError> {
        let sh = &self.shared;
        let current = sh.provider.current_version();
        let mut batch = Batch::default();
        let mut n = 0;
        let mut updated = Vec::new();
        for kv in sh.tree()?.scan_prefix([SEGMENT]) {
            let (k, v) = kv?;
            let id = be_u64(&k[1..])?;
            let (account, day, created, wrapped) = decode_segment(&v)?;
            if wrapped.master_version == current {
                continue;
            }
            let new = sh
                .provider
                .rewrap(&wrapped, &segment_context(id, &account))?;
            batch.insert(&k[..], encode_segment(&account, day, created, &new));
            updated.push((id, account, new));
            n += 1;
        }
        for kv in sh.tree()?.scan_prefix(meta_key("dict/")) {
            let (k, v) = kv?;
            if v.len() < WRAPPED_LEN {
                return Err(StoreError::Corrupt("dictionary value too short".into()));
            }
            let wrapped = WrappedKey::from_bytes(&v[..WRAPPED_LEN])?;
            if wrapped.master_version == current {
                continue;
            }
            let id_bytes: [u8; 4] = k[6..]
                .try_into()
                .map_err(|_| StoreError::Corrupt("dictionary key".into()))?;
            let new = sh
                .provider
                .rewrap(&wrapped, &dict_context(u32::from_be_bytes(id_bytes)))?;
            let mut nv = new.to_bytes();
            nv.extend_from_slice(&v[WRAPPED_LEN..]);
            batch.insert(&k[..], nv);
            n += 1;
        }
        if let Some(w) = sh.tree()?.get(meta_key("blind_key"))? {
            let wrapped = WrappedKey::from_bytes(&w)?;
            if wrapped.master_version != current {
                let new = sh.provider.rewrap(&wrapped, BLIND_KEY_CONTEXT)?;
                batch.insert(meta_key("blind_key"), new.to_bytes());
                n += 1;
            }
        }
        let files = sh.files()?;
        files.tree.apply_batch(batch)?;
        n += crate::counts::rewrap(&files.tree, sh.provider.as_ref())?;
        n += crate::insights::rewrap(&files.tree, sh.provider.as_ref())?;
        files.db.flush()?;
        if let Ok(mut segs) = sh.segments.write() {
            for (id, account, wrapped) in updated {
                segs.insert(id, SegmentInfo { account, wrapped });
            }
        }
        Ok(n)
    }

    /// The master key versions the store's wrapped keys are under, with how many keys each.
    pub fn key_versions(&self) -> Result<Vec<(u32, usize)>, StoreError> {
        let mut m: HashMap<u32, usize> = HashMap::new();
        for s in self
            .shared
            .segments
            .read()
            .map_err(|_| StoreError::WriterGone)?
            .values()
        {
            *m.entry(s.wrapped.master_version).or_default() += 1;
        }
        if let Some(w) = self.shared.tree()?.get(meta_key("blind_key"))? {
            *m.entry(WrappedKey::from_bytes(&w)?.master_version)
                .or_default() += 1;
        }
        for kv in self.shared.tree()?.scan_prefix(meta_key("dict/")) {
            let (_, v) = kv?;
            let w = v
                .get(..WRAPPED_LEN)
                .ok_or_else(|| StoreError::Corrupt("dictionary value too short".into()))?;
            *m.entry(WrappedKey::from_bytes(w)?.master_version)
                .or_default() += 1;
        }
        crate::counts::key_versions(&self.shared.tree()?, &mut m)?;
        crate::insights::key_versions(&self.shared.tree()?, &mut m)?;
        let mut v: Vec<_> = m.into_iter().collect();
        v.sort_unstable();
        Ok(v)
    }
}
