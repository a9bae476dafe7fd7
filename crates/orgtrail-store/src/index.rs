//! The in-memory index, rebuilt at open from the persisted chunks.
//!
//! * dedup: blind(account, eventID) -> (seq, first 8 bytes of SHA-256 of the bytes);
//! * postings: blind(attribute, value) -> seqs, ascending;
//! * time: eventTime per seq, and (eventTime, seq) ordered for time-range walks.
//!
//! Only durable events are ever published here: the writer updates the index after its batch
//! is flushed.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use orgtrail_core::AccountId;

use crate::postings::Postings;
use crate::query::Cursor;

pub(crate) type Blind = [u8; 16];

/// Blind values are HMAC outputs, uniformly random: their first 8 bytes are a perfect hash
/// already, so maps keyed by them skip SipHash.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct BlindHasher(u64);

impl Hasher for BlindHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(b);
            self.0 = self.0.rotate_left(29);
        }
    }
    fn write_usize(&mut self, _: usize) {}
}

pub(crate) type BlindMap<V> = HashMap<Blind, V, BuildHasherDefault<BlindHasher>>;

#[derive(Debug, Default)]
pub(crate) struct Index {
    pub(crate) dedup: BlindMap<(u64, [u8; 8])>,
    pub(crate) postings: BlindMap<Postings>,
    /// eventTime (ms) of seq `i + 1`.
    pub(crate) times: Vec<i64>,
    pub(crate) by_time: crate::postings::TimeIndex,
    pub(crate) accounts: BTreeSet<AccountId>,
    /// The Merkle log.
    pub(crate) tree: crate::tree::TreeState,
}

static EMPTY: Postings = Postings::Few(Vec::new());

/// Above this many candidates, a filtered query walks the time index instead of sorting them.
const SCAN_LIMIT: usize = 20_000;

impl Index {
    pub(crate) fn time_of(&self, seq: u64) -> Option<i64> {
        self.times
            .get(usize::try_from(seq.checked_sub(1)?).ok()?)
            .copied()
    }

    pub(crate) fn publish(&mut self, seq: u64, time: i64, dedup: Blind, hash8: [u8; 8]) {
        debug_assert_eq!(self.times.len() as u64 + 1, seq);
        self.times.push(time);
        self.by_time.insert(time, seq);
        self.dedup.insert(dedup, (seq, hash8));
    }

    pub(crate) fn post(&mut self, blind: Blind, seq: u64) {
        self.postings.entry(blind).or_default().push(seq);
    }

    /// The (time, seq) of up to `limit` matches, newest first, strictly after `after`.
    pub(crate) fn select(
        &self,
        lists: &[&Postings],
        start: i64,
        end: i64,
        after: Option<Cursor>,
        limit: usize,
    ) -> Vec<(i64, u64)> {
        let before = |t: i64, s: u64| match after {
            Some(c) => (t, s) < (c.time, c.seq),
            None => true,
        };
        let in_all = |seq: u64, skip: usize| {
            lists
                .iter()
                .enumerate()
                .all(|(i, l)| i == skip || l.contains(seq))
        };
        let upper = match after {
            Some(c) if (c.time, c.seq) <= (end, u64::MAX) => (c.time, c.seq),
            _ => (end, u64::MAX),
        };
        let walk = |skip: usize| -> Vec<(i64, u64)> {
            let mut out = Vec::new();
            for (t, s) in self.by_time.range_rev((start, 0), upper) {
                if !before(t, s) {
                    continue;
                }
                if in_all(s, skip) {
                    out.push((t, s));
                    if out.len() == limit {
                        break;
                    }
                }
            }
            out
        };
        if lists.is_empty() {
            return walk(usize::MAX);
        }
        let (smallest, list) = lists
            .iter()
            .enumerate()
            .min_by_key(|(_, l)| l.len())
            .map(|(i, l)| (i, *l))
            .unwrap_or((0, &EMPTY));
        if list.len() > SCAN_LIMIT as u64 {
            return walk(usize::MAX);
        }
        let mut out: Vec<(i64, u64)> = list
            .iter()
            .filter_map(|s| self.time_of(s).map(|t| (t, s)))
            .filter(|&(t, s)| t >= start && t <= end && before(t, s) && in_all(s, smallest))
            .collect();
        // Only the newest `limit` are wanted: select them in O(n), then sort just those.
        if out.len() > limit && limit > 0 {
            out.select_nth_unstable_by(limit - 1, |a, b| b.cmp(a));
            out.truncate(limit);
        }
        out.sort_unstable_by(|a, b| b.cmp(a));
        out.truncate(limit);
        out
    }
}
