//! The Merkle log over the ledger (RFC 9162 hashing, in append order).
//!
//! Leaf data of the event at sequence number `seq`:
//! `seq (u64 BE) || account (12 ASCII digits) || len(eventID) (u16 BE) || eventID ||
//! SHA-256(event bytes)`, so anyone holding an event and its account can recompute its leaf
//! without the store's keys.
//!
//! On disk: one value per group commit, `h <first seq>` -> the group's leaf hashes (32 bytes
//! each); and the hash of every complete, aligned perfect subtree of [`TILE`] (4,096) leaves or
//! more, `t <height u8> <index u64>` -> 32 bytes (the subtree over leaves
//! `index * 2^height .. (index + 1) * 2^height`), written in the batch of the group commit
//! that completes it (about 0.02 bytes per event). In memory: only the frontier and the leaves
//! of the last, incomplete tile (at most 128 KiB). An open reads O(log n) subtree hashes and at
//! most 4,095 leaf hashes; a proof reads O(log n) subtree hashes and the 4,096 leaf hashes of
//! one or two tiles (128 KiB each, one or two positioned reads of the record log).
//!
//! # Tiles of 4,096 leaves (format 4)
//!
//! Stores of formats 2 and 3 kept tiles of 256 leaves: a `t` key for every perfect subtree of
//! height 8 or more, about 7,400 keys per million events. sled splits its leaves at 16 keys and
//! keeps bookkeeping per leaf in memory for as long as the store is open, so these keys were
//! most of sled's keys and of the memory that grew with the history. With tiles of 4,096 leaves
//! (height 12) there are 16 times fewer. Such a store already holds every subtree of height 12
//! or more, so it is read as it is: its keys of heights 8 to 11 are no longer read (nor
//! written), and it is marked format 4 at its first writable open, since a reader of format 3
//! would look for them in what is written afterwards.

use orgtrail_crypto::merkle::{self, Frontier, Hash, Subtrees};

use crate::error::StoreError;
use crate::format::{Reader, key};
use crate::kv::Tree;
use crate::log::LogReader;

pub(crate) const HASHES: u8 = b'h';
pub(crate) const SUBTREES: u8 = b't';
/// Leaves of a tile: subtrees this large or larger are stored, smaller ones are computed from
/// the leaf hashes.
pub(crate) const TILE: u64 = 1 << TILE_HEIGHT;
pub(crate) const TILE_HEIGHT: u32 = 12;

/// Leaf data of one event.
pub fn leaf_data(seq: u64, account: &str, event_id: &str, content_hash: &Hash) -> Vec<u8> {
    let id = event_id.as_bytes();
    let id_len = u16::try_from(id.len()).unwrap_or(u16::MAX);
    let mut v = Vec::with_capacity(8 + account.len() + 2 + id.len() + 32);
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(account.as_bytes());
    v.extend_from_slice(&id_len.to_be_bytes());
    v.extend_from_slice(&id[..usize::from(id_len)]);
    v.extend_from_slice(content_hash);
    v
}

/// The leaf hash of one event: the hash of [`leaf_data`], built on the stack when it fits
/// (it nearly always does: 12-digit accounts, 36-character eventIDs).
pub fn event_leaf(seq: u64, account: &str, event_id: &str, content_hash: &Hash) -> Hash {
    let id = event_id.as_bytes();
    let id_len = u16::try_from(id.len()).unwrap_or(u16::MAX);
    let id = &id[..usize::from(id_len)];
    let n = 8 + account.len() + 2 + id.len() + 32;
    let mut buf = [0u8; 128];
    if n > buf.len() {
        return merkle::leaf_hash(&leaf_data(seq, account, event_id, content_hash));
    }
    let mut at = 0;
    for part in [
        &seq.to_be_bytes()[..],
        account.as_bytes(),
        &id_len.to_be_bytes()[..],
        id,
        &content_hash[..],
    ] {
        buf[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    merkle::leaf_hash(&buf[..n])
}

/// The key of a perfect subtree's hash.
pub(crate) fn subtree_key(height: u32, index: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[0] = SUBTREES;
    k[1] = height as u8;
    k[2..].copy_from_slice(&index.to_be_bytes());
    k
}

/// Appends `leaves` to `frontier`, reporting every perfect subtree of [`TILE`] leaves or more they
/// complete as (height, index, hash): what the group commit stores.
pub(crate) fn push_leaves(
    frontier: &mut Frontier,
    leaves: &[Hash],
    mut completed: impl FnMut(u32, u64, &Hash),
) {
    for leaf in leaves {
        let size = frontier.size() + 1;
        frontier.push_capturing(*leaf, |height, h| {
            if height >= TILE_HEIGHT {
                completed(height, (size >> height) - 1, h);
            }
        });
    }
}

#[derive(Debug, Default, Clone)]
pub(crate) struct TreeState {
    pub(crate) frontier: Frontier,
    /// Leaves of the incomplete last tile.
    tail: Vec<Hash>,
}

impl TreeState {
    pub(crate) fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The state of a log of `size` leaves, from its stored subtree and leaf hashes.
    pub(crate) fn load(tree: &Tree, log: &LogReader, size: u64) -> Result<TreeState, StoreError> {
        let tile_start = size - size % TILE;
        let tail = if size > tile_start {
            read_leaves(tree, log, tile_start + 1, size - tile_start)?
        } else {
            Vec::new()
        };
        let mut nodes = Vec::new();
        let mut start = 0u64;
        for height in (0..64u32).rev() {
            let width = 1u64 << height;
            if size & width == 0 {
                continue;
            }
            let h = if height >= TILE_HEIGHT {
                stored_subtree(tree, height, start >> height)?
            } else {
                let off = (start - tile_start) as usize;
                let slice = tail.get(off..off + width as usize).ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "leaf hashes {start}..{} are missing",
                        start + width
                    ))
                })?;
                merkle::root(slice)
            };
            nodes.push(h);
            start += width;
        }
        let frontier = Frontier::from_parts(size, nodes)
            .ok_or_else(|| StoreError::Corrupt("Merkle frontier".into()))?;
        Ok(TreeState { frontier, tail })
    }

    /// Publishes what a writer computed on its own copy of the frontier: the new frontier and
    /// the group's leaves.
    pub(crate) fn apply(&mut self, frontier: Frontier, leaves: &[Hash]) {
        let before = self.frontier.size();
        for (i, leaf) in leaves.iter().enumerate() {
            self.tail.push(*leaf);
            if (before + i as u64 + 1).is_multiple_of(TILE) {
                self.tail.clear();
            }
        }
        self.frontier = frontier;
    }
}

fn stored_subtree(tree: &Tree, height: u32, index: u64) -> Result<Hash, StoreError> {
    let v = tree.get(subtree_key(height, index))?.ok_or_else(|| {
        StoreError::Corrupt(format!(
            "Merkle subtree {}..{} is missing",
            index << height,
            (index + 1) << height
        ))
    })?;
    <[u8; 32]>::try_from(&v[..]).map_err(|_| {
        StoreError::Corrupt(format!(
            "Merkle subtree hash at height {height} index {index}"
        ))
    })
}

/// Subtree hashes of the ledger's tree: in-memory levels, tile leaves read from sled.
pub(crate) struct StoreSubtrees<'a> {
    pub(crate) state: &'a TreeState,
    pub(crate) tree: &'a Tree,
    log: &'a LogReader,
    cache: Option<(u64, Vec<Hash>)>,
}

impl<'a> StoreSubtrees<'a> {
    pub(crate) fn new(state: &'a TreeState, tree: &'a Tree, log: &'a LogReader) -> Self {
        StoreSubtrees {
            state,
            tree,
            log,
            cache: None,
        }
    }

    fn tile_leaves(&mut self, t: u64) -> Result<&[Hash], StoreError> {
        if self.cache.as_ref().is_none_or(|(ct, _)| *ct != t) {
            let complete = self.state.size() / TILE;
            let leaves = if t < complete {
                read_leaves(self.tree, self.log, t * TILE + 1, TILE)?
            } else {
                self.state.tail.clone()
            };
            self.cache = Some((t, leaves));
        }
        Ok(self.cache.as_ref().map_or(&[][..], |(_, l)| l.as_slice()))
    }
}

impl Subtrees for StoreSubtrees<'_> {
    type Error = StoreError;

    fn subtree(&mut self, start: u64, end: u64) -> Result<Hash, StoreError> {
        let n = end - start;
        if n.is_power_of_two() && start.is_multiple_of(n) {
            if n >= TILE {
                return stored_subtree(self.tree, n.trailing_zeros(), start / n);
            }
            let t = start / TILE;
            let off = (start % TILE) as usize;
            let leaves = self.tile_leaves(t)?;
            let slice = leaves.get(off..off + n as usize).ok_or_else(|| {
                StoreError::Corrupt(format!("leaf hashes {start}..{end} are missing"))
            })?;
            return Ok(merkle::root(slice));
        }
        let k = merkle::split_point(n);
        let left = self.subtree(start, start + k)?;
        let right = self.subtree(start + k, end)?;
        Ok(merkle::node_hash(&left, &right))
    }
}

/// Reads `count` leaf hashes starting at sequence number `first` (1-based).
pub(crate) fn read_leaves(
    tree: &Tree,
    log: &LogReader,
    first: u64,
    count: u64,
) -> Result<Vec<Hash>, StoreError> {
    let mut out = Vec::with_capacity(count as usize);
    let start_key = match tree.range(key(HASHES, 0)..=key(HASHES, first)).next_back() {
        Some(kv) => kv?.0,
        None => return Err(StoreError::Corrupt(format!("leaf hash {first} is missing"))),
    };
    for kv in tree.range(start_key.to_vec()..key(HASHES, u64::MAX).to_vec()) {
        let (k, v) = kv?;
        if k.first() != Some(&HASHES) {
            break;
        }
        let mut s8 = [0u8; 8];
        s8.copy_from_slice(&k[1..9]);
        let group_first = u64::from_be_bytes(s8);
        let v = log.leaves(&v)?;
        let mut r = Reader::new(&v, "leaf hashes");
        let mut seq = group_first;
        while !r.done() {
            let h: Hash = r.array()?;
            if seq >= first && seq < first + count {
                out.push(h);
            }
            seq += 1;
        }
        if seq >= first + count {
            break;
        }
    }
    if out.len() as u64 != count {
        return Err(StoreError::Corrupt(format!(
            "leaf hashes {first}..{} are missing",
            first + count - 1
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod leaf_tests {
    use super::{event_leaf, leaf_data};
    use orgtrail_crypto::merkle;

    /// The stack-built leaf equals the hash of `leaf_data`, at every eventID length around
    /// the stack buffer's size and beyond.
    #[test]
    fn event_leaf_hashes_leaf_data() {
        let h = [7u8; 32];
        for len in [0usize, 1, 36, 70, 73, 74, 75, 76, 200, 70_000] {
            let id = "e".repeat(len);
            for account in ["123456789012", ""] {
                assert_eq!(
                    event_leaf(42, account, &id, &h),
                    merkle::leaf_hash(&leaf_data(42, account, &id, &h)),
                    "eventID of {len} bytes"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::Batch;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n)
            .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
            .collect()
    }

    /// What the writer stores per group (subtrees, leaves) and publishes rebuilds, at any
    /// size, the same frontier as pushing every leaf; the stored subtrees are the true ones,
    /// and proofs from them verify.
    #[test]
    fn stored_subtrees_rebuild_the_tree_at_any_size() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let db = crate::kv::Db::open(dir.path(), 1 << 20).unwrap_or_else(|e| panic!("{e}"));
        let tree = db.open_tree("t").unwrap_or_else(|e| panic!("{e}"));
        let log = LogReader::new(dir.path());
        // Five tiles and some: subtrees of heights 12 to 14 are stored.
        let all = leaves(5 * TILE + 1234);
        let mut published = TreeState::default();
        let mut frontier = Frontier::new();
        let mut i = 0usize;
        let mut step = 1usize;
        while i < all.len() {
            let end = (i + step).min(all.len());
            let mut batch = Batch::default();
            let group = &all[i..end];
            batch.insert(&key(HASHES, i as u64 + 1)[..], group.concat());
            push_leaves(&mut frontier, group, |h, idx, x| {
                batch.insert(&subtree_key(h, idx)[..], &x[..]);
            });
            tree.apply_batch(batch).unwrap_or_else(|e| panic!("{e}"));
            published.apply(frontier.clone(), group);
            let loaded = TreeState::load(&tree, &log, end as u64).unwrap_or_else(|e| panic!("{e}"));
            let mut pushed = Frontier::new();
            for l in &all[..end] {
                pushed.push(*l);
            }
            assert_eq!(loaded.frontier, pushed, "size {end}");
            assert_eq!(published.frontier, pushed, "size {end}");
            assert_eq!(loaded.tail, published.tail, "size {end}");
            i = end;
            step = step * 3 % 2801 + 1;
        }
        for height in TILE_HEIGHT..=14u32 {
            let width = 1usize << height;
            for k in 0..all.len() / width {
                assert_eq!(
                    stored_subtree(&tree, height, k as u64).unwrap_or_else(|e| panic!("{e}")),
                    merkle::root(&all[k * width..(k + 1) * width]),
                    "height {height} node {k}"
                );
            }
        }
        // Nothing smaller than a tile is stored.
        assert!(
            tree.get(subtree_key(TILE_HEIGHT - 1, 0))
                .unwrap_or_else(|e| panic!("{e}"))
                .is_none()
        );
        let size = all.len() as u64;
        let state = TreeState::load(&tree, &log, size).unwrap_or_else(|e| panic!("{e}"));
        let root = merkle::root(&all);
        for seq in [0u64, TILE - 1, TILE, 3 * TILE + 7, size - 1] {
            let proof =
                merkle::inclusion_proof(&mut StoreSubtrees::new(&state, &tree, &log), seq, size)
                    .unwrap_or_else(|e| panic!("{e:?}"));
            assert!(merkle::verify_inclusion(
                &all[seq as usize],
                seq,
                size,
                &proof,
                &root
            ));
        }
    }
}
