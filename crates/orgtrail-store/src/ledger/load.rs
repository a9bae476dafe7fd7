//! The in-memory state of a store (segments, dictionaries, the index and the Merkle log),
//! read from its files at open and again when the writer reopens them after a failed write.

use std::collections::HashMap;

use orgtrail_crypto::KeyProvider;

use super::chunk::load_chunk;
use super::dicts::{Dicts, open_dict};
use super::segments::{SegmentInfo, decode_segment, segment_context};
use super::{be_u64, key_bytes};
use crate::error::StoreError;
use crate::format::{CHUNK, Reader, SEGMENT, meta_key};
use crate::index::Index;
use crate::tree::HASHES;

/// The in-memory state of a store, read from its files up to sequence number `end`.
pub(super) struct Loaded {
    pub(super) segments: HashMap<u64, SegmentInfo>,
    pub(super) dicts: Dicts,
    pub(super) index: Index,
    pub(super) next_seq: u64,
}

/// Reads segments, dictionaries, index chunks and leaf hashes of the log up to `end`, checking
/// that they agree, and that the key provider opens the newest segment.
pub(super) fn load(
    tree: &sled::Tree,
    provider: &dyn KeyProvider,
    end: u64,
) -> Result<Loaded, StoreError> {
    // Segments.
    let mut segments = HashMap::new();
    for kv in tree.scan_prefix([SEGMENT]) {
        let (k, v) = kv?;
        let id = be_u64(&k[1..])?;
        let (account, _, _, wrapped) = decode_segment(&v)?;
        segments.insert(id, SegmentInfo { account, wrapped });
    }
    // Check the keyring opens the newest segment, before anything else happens.
    if let Some((id, s)) = segments.iter().max_by_key(|(id, _)| **id) {
        provider.unwrap(&s.wrapped, &segment_context(*id, &s.account))?;
    }

    // Dictionaries.
    let mut dicts = Dicts::empty();
    for kv in tree.scan_prefix(meta_key("dict/")) {
        let (k, v) = kv?;
        let id_bytes: [u8; 4] = k[6..]
            .try_into()
            .map_err(|_| StoreError::Corrupt("dictionary key".into()))?;
        let id = u32::from_be_bytes(id_bytes);
        dicts.install(id, open_dict(provider, id, &v)?);
    }

    // Index chunks, up to the end of the whole log (a read-only open leaves a torn tail be).
    let next_seq = end + 1;
    let mut index = Index::default();
    for (_, s) in segments.iter() {
        index.accounts.insert(s.account);
    }
    for kv in tree.range(key_bytes(CHUNK, 0)..=key_bytes(CHUNK, end)) {
        let (_, v) = kv?;
        load_chunk(&v, &mut index)?;
    }
    if index.times.len() as u64 + 1 != next_seq {
        return Err(StoreError::Corrupt(format!(
            "index chunks hold {} events but the log's next sequence number is {next_seq}",
            index.times.len()
        )));
    }
    // The Merkle log, from the stored leaf hashes.
    for kv in tree.range(key_bytes(HASHES, 0)..=key_bytes(HASHES, end)) {
        let (k, v) = kv?;
        let first = be_u64(&k[1..])?;
        if first != index.tree.size() + 1 {
            return Err(StoreError::Corrupt(format!(
                "leaf hashes of group {first} do not follow leaf {}",
                index.tree.size()
            )));
        }
        let mut r = Reader::new(&v, "leaf hashes");
        while !r.done() {
            index.tree.push(r.array()?);
        }
    }
    if index.tree.size() + 1 != next_seq {
        return Err(StoreError::Corrupt(format!(
            "the Merkle log holds {} leaves but the log's next sequence number is {next_seq}",
            index.tree.size()
        )));
    }
    Ok(Loaded {
        segments,
        dicts,
        index,
        next_seq,
    })
}
