//! Index chunks: the index entries of one group commit. They are the durable form of the
//! memtable: at open the memtable is rebuilt from the chunks after the last index run, and a
//! run, once written, replaces its chunks (see the `runs` module).
//!
//! # `x <first seq u64 BE>` (index chunk value, version 1)
//!
//! | bytes | field |
//! |---|---|
//! | 1 | version, 1 |
//! | 8 | first seq (u64 BE), the key's |
//! | 4 | count of events (u32 BE), seqs `first..first + count` |
//! | count x 32 | per event: eventTime (ms, i64 BE), dedup blind (16), first 8 bytes of SHA-256(event bytes) |
//! | 2 + 12 each | the accounts of the group's events: count (u16 BE), then 12 ASCII digits each |
//! | 4 | count of blind values (u32 BE) |
//! | per value | blind value (16), LEB128 count of positions, then the positions (0-based in the chunk, ascending) as LEB128 gaps: the first as is, each next as the difference to the one before |
//!
//! Values are written in ascending order of their blind bytes. Loading checks that the chunk
//! follows the events already loaded, that every position lies inside the chunk, and that
//! nothing trails.

use orgtrail_core::AccountId;

use super::writer::StoredEntry;
use crate::error::StoreError;
use crate::format::{self, Reader};
use crate::index::{Blind, BlindMap, Index};

/// A group's index chunk, and what the writer publishes in memory from the same pass: the
/// group's accounts and its postings by value.
pub(super) struct Chunk {
    /// The chunk's value, as stored.
    pub(super) bytes: Vec<u8>,
    /// The distinct accounts of the group's events, in order of first appearance.
    pub(super) accounts: Vec<AccountId>,
    /// Each blind value with the positions (0-based in the chunk, ascending) of the events
    /// indexed under it, in ascending order of the blind bytes.
    pub(super) postings: Vec<(Blind, Vec<u32>)>,
}

/// Encodes the index chunk of a group whose stored events, in order, are `stored`, the first
/// at `first_seq`.
pub(super) fn encode_chunk(first_seq: u64, stored: &[StoredEntry<'_>]) -> Chunk {
    let mut chunk = Vec::with_capacity(16 + stored.len() * 64);
    chunk.push(1);
    chunk.extend_from_slice(&first_seq.to_be_bytes());
    chunk.extend_from_slice(&(stored.len() as u32).to_be_bytes());
    let mut accounts: Vec<AccountId> = Vec::new();
    let mut values: BlindMap<Vec<u32>> = BlindMap::default();
    for (i, (_, time, dedup, h8, account, postings, _)) in stored.iter().enumerate() {
        chunk.extend_from_slice(&time.to_be_bytes());
        chunk.extend_from_slice(dedup);
        chunk.extend_from_slice(h8);
        if !accounts.contains(account) {
            accounts.push(*account);
        }
        for p in postings.as_slice() {
            values.entry(*p).or_default().push(i as u32);
        }
    }
    chunk.extend_from_slice(&(accounts.len() as u16).to_be_bytes());
    for a in &accounts {
        chunk.extend_from_slice(a.as_str().as_bytes());
    }
    chunk.extend_from_slice(&(values.len() as u32).to_be_bytes());
    let mut sorted: Vec<_> = values.into_iter().collect();
    sorted.sort_unstable_by_key(|a| a.0);
    for (blind, locals) in &sorted {
        chunk.extend_from_slice(blind);
        format::put_varint(&mut chunk, locals.len() as u64);
        // Positions ascend: store the gaps, mostly one byte each.
        let mut prev = 0u32;
        for (i, l) in locals.iter().enumerate() {
            let gap = if i == 0 { *l } else { l - prev };
            format::put_varint(&mut chunk, u64::from(gap));
            prev = *l;
        }
    }
    Chunk {
        bytes: chunk,
        accounts,
        postings: sorted,
    }
}

/// Loads an index chunk into `index`, which must hold exactly the events before it.
pub(crate) fn load_chunk(v: &[u8], index: &mut Index) -> Result<(), StoreError> {
    let mut r = Reader::new(v, "index chunk");
    if r.u8()? != 1 {
        return Err(StoreError::Corrupt("unknown index chunk version".into()));
    }
    let first = r.u64()?;
    let count = r.u32()? as u64;
    if first != index.mem.end() {
        return Err(StoreError::Corrupt(format!(
            "index chunk at {first} does not follow {}",
            index.mem.end() - 1
        )));
    }
    for i in 0..count {
        let time = r.i64()?;
        let dedup: Blind = r.array()?;
        let hash8: [u8; 8] = r.array()?;
        index.publish(first + i, time, dedup, hash8);
    }
    let nacc = r.u16()?;
    for _ in 0..nacc {
        let a = std::str::from_utf8(r.take(12)?)
            .ok()
            .and_then(|s| s.parse::<AccountId>().ok())
            .ok_or_else(|| StoreError::Corrupt("index chunk account".into()))?;
        index.accounts.insert(a);
    }
    let nvals = r.u32()?;
    for _ in 0..nvals {
        let blind: Blind = r.array()?;
        let k = r.varint()?;
        let mut local = 0u64;
        for i in 0..k {
            let gap = r.varint()?;
            local = if i == 0 {
                gap
            } else {
                local.saturating_add(gap)
            };
            if local >= count {
                return Err(StoreError::Corrupt(
                    "index chunk posting out of range".into(),
                ));
            }
            index.post(blind, first + local);
        }
    }
    if !r.done() {
        return Err(StoreError::Corrupt("index chunk has trailing bytes".into()));
    }
    Ok(())
}
