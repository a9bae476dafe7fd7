//! The in-memory state of a store (segments, dictionaries, the index and the Merkle log),
//! read from its files at open and again when the writer reopens them after a failed write.

use std::collections::HashMap;

use orgtrail_crypto::KeyProvider;

use super::chunk::load_chunk;
use super::dicts::{Dicts, open_dict};
use super::segments::{SegmentInfo, decode_segment, segment_context};
use super::{be_u64, key_bytes};
use crate::error::StoreError;
use crate::format::{CHUNK, SEGMENT, meta_key};
use crate::index::Index;
use crate::kv::Tree;

/// The in-memory state of a store, read from its files up to sequence number `end`.
pub(super) struct Loaded {
    pub(super) segments: HashMap<u64, SegmentInfo>,
    pub(super) dicts: Dicts,
    pub(super) index: Index,
    pub(super) next_seq: u64,
}

/// Reads segments, dictionaries, the index (runs and the chunks after them) and the Merkle
/// frontier of the log up to `end`, checking that they agree, and that the key provider opens
/// the newest segment. Reads nothing whose size grows with the number of events but the
/// segments (one per account and day).
pub(super) fn load(
    tree: &Tree,
    provider: &dyn KeyProvider,
    data: &std::path::Path,
    writable: bool,
    end: u64,
    bloom_budget: u64,
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

    // The index: its runs, then the chunks of the groups after them, up to the end of the
    // whole log (a read-only open leaves a torn tail be). Nothing older is read.
    let next_seq = end + 1;
    let mut index = Index::default();
    for (_, s) in segments.iter() {
        index.accounts.insert(s.account);
    }
    index.runs = crate::runs::load(tree, data, writable)?;
    index.bloom_budget = bloom_budget;
    index.place_blooms();
    let base = index.runs.last().map_or(1, |r| r.end());
    if base > next_seq {
        return Err(StoreError::Corrupt(format!(
            "the index runs cover events up to {} but the log ends at {end}",
            base - 1
        )));
    }
    index.mem = crate::index::Mem::new(base);
    for kv in tree.range(key_bytes(CHUNK, base)..=key_bytes(CHUNK, end)) {
        let (_, v) = kv?;
        load_chunk(&v, &mut index)?;
    }
    if index.len() + 1 != next_seq {
        return Err(StoreError::Corrupt(format!(
            "the index holds {} events but the log's next sequence number is {next_seq}",
            index.len()
        )));
    }
    // The Merkle log: its frontier from the stored subtree hashes.
    index.tree = crate::tree::TreeState::load(tree, &crate::log::LogReader::new(data), end)?;
    Ok(Loaded {
        segments,
        dicts,
        index,
        next_seq,
    })
}
