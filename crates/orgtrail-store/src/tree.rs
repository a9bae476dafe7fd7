//! The Merkle log over the ledger (RFC 9162 hashing, in append order).
//!
//! Leaf data of the event at sequence number `seq`:
//! `seq (u64 BE) || account (12 ASCII digits) || len(eventID) (u16 BE) || eventID ||
//! SHA-256(event bytes)`, so anyone holding an event and its account can recompute its leaf
//! without the store's keys.
//!
//! On disk: one value per group commit, `h <first seq>` -> the group's leaf hashes (32 bytes
//! each). In memory: the frontier (for the root at every append), the hashes of every
//! complete, aligned 256-leaf tile and of every perfect subtree above them (about 0.25 bytes
//! per event), and the leaves of the last, incomplete tile. A proof needs at most the 256
//! leaf hashes of one or two tiles from disk plus O(log n) in-memory hashes.

use orgtrail_crypto::merkle::{self, Frontier, Hash, Subtrees};

use crate::error::StoreError;
use crate::format::{Reader, key};

pub(crate) const HASHES: u8 = b'h';
const TILE: u64 = 256;
const TILE_HEIGHT: u32 = 8;

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

/// The leaf hash of one event.
pub fn event_leaf(seq: u64, account: &str, event_id: &str, content_hash: &Hash) -> Hash {
    merkle::leaf_hash(&leaf_data(seq, account, event_id, content_hash))
}

#[derive(Debug, Default, Clone)]
pub(crate) struct TreeState {
    pub(crate) frontier: Frontier,
    /// levels[j][i]: hash of the perfect subtree over leaves [i*2^(j+8), (i+1)*2^(j+8)).
    levels: Vec<Vec<Hash>>,
    /// Leaves of the incomplete last tile.
    tail: Vec<Hash>,
}

impl TreeState {
    pub(crate) fn size(&self) -> u64 {
        self.frontier.size()
    }

    pub(crate) fn push(&mut self, leaf: Hash) {
        let levels = &mut self.levels;
        self.frontier.push_capturing(leaf, |height, h| {
            if let Some(j) = height.checked_sub(TILE_HEIGHT) {
                let j = j as usize;
                if levels.len() <= j {
                    levels.resize_with(j + 1, Vec::new);
                }
                levels[j].push(*h);
            }
        });
        self.tail.push(leaf);
        if self.tail.len() as u64 == TILE {
            self.tail.clear();
        }
    }

    /// Publishes what a writer computed on its own copy of the frontier: the new frontier,
    /// the perfect subtrees of height >= 8 it completed (in order), and the group's leaves.
    pub(crate) fn apply(&mut self, frontier: Frontier, completed: &[(u32, Hash)], leaves: &[Hash]) {
        for (height, h) in completed {
            if let Some(j) = height.checked_sub(TILE_HEIGHT) {
                let j = j as usize;
                if self.levels.len() <= j {
                    self.levels.resize_with(j + 1, Vec::new);
                }
                self.levels[j].push(*h);
            }
        }
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

/// Subtree hashes of the ledger's tree: in-memory levels, tile leaves read from sled.
pub(crate) struct StoreSubtrees<'a> {
    pub(crate) state: &'a TreeState,
    pub(crate) tree: &'a sled::Tree,
    cache: Option<(u64, Vec<Hash>)>,
}

impl<'a> StoreSubtrees<'a> {
    pub(crate) fn new(state: &'a TreeState, tree: &'a sled::Tree) -> Self {
        StoreSubtrees {
            state,
            tree,
            cache: None,
        }
    }

    fn tile_leaves(&mut self, t: u64) -> Result<&[Hash], StoreError> {
        if self.cache.as_ref().is_none_or(|(ct, _)| *ct != t) {
            let complete = self.state.size() / TILE;
            let leaves = if t < complete {
                read_leaves(self.tree, t * TILE + 1, TILE)?
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
                let j = (n.trailing_zeros() - TILE.trailing_zeros()) as usize;
                return self
                    .state
                    .levels
                    .get(j)
                    .and_then(|l| l.get((start / n) as usize))
                    .copied()
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!("Merkle subtree {start}..{end} is missing"))
                    });
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
    tree: &sled::Tree,
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
mod tests {
    use super::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n)
            .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
            .collect()
    }

    /// The writer's path (frontier + captured subtrees, published per group) and the open path
    /// (push every stored leaf) build the same state, and its levels are the true subtrees.
    #[test]
    fn published_groups_equal_pushed_leaves() {
        let all = leaves(3000);
        let mut pushed = TreeState::default();
        for l in &all {
            pushed.push(*l);
        }
        let mut published = TreeState::default();
        let mut frontier = Frontier::new();
        let mut i = 0usize;
        let mut step = 1usize;
        while i < all.len() {
            let end = (i + step).min(all.len());
            let mut completed = Vec::new();
            for l in &all[i..end] {
                frontier.push_capturing(*l, |h, x| {
                    if h >= 8 {
                        completed.push((h, *x));
                    }
                });
            }
            published.apply(frontier.clone(), &completed, &all[i..end]);
            i = end;
            step = step * 3 % 701 + 1;
        }
        assert_eq!(published.frontier, pushed.frontier);
        assert_eq!(published.levels, pushed.levels);
        assert_eq!(published.tail, pushed.tail);
        assert_eq!(pushed.levels[0].len(), 3000 / 256);
        for (j, level) in pushed.levels.iter().enumerate() {
            let width = 256usize << j;
            for (k, h) in level.iter().enumerate() {
                assert_eq!(
                    *h,
                    merkle::root(&all[k * width..(k + 1) * width]),
                    "level {j} node {k}"
                );
            }
        }
        assert_eq!(pushed.tail, all[2816..].to_vec());
    }
}
