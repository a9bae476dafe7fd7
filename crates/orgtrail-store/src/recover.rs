//! Recovery at open: what of the log is durably and wholly present, and the torn tail after it.
//!
//! A group commit writes, in one `sled::Batch`, its record blocks (`r <first seq>`), its index
//! chunk (`x <first seq>`), its Merkle leaf hashes (`h <first seq>`), maybe a checkpoint
//! (`c <size>`), its counter deltas (`n <first seq> <hour>`, see the `counts` module), and
//! the counters `m next_seq` / `m next_segment`; only after `flush()` returns
//! is anything acknowledged. So every acknowledged event lies in the longest prefix of
//! sequence numbers `1..=E` that the records, the chunks, the leaf hashes and `next_seq` all
//! cover contiguously.
//!
//! An I/O error (ENOSPC included) in the middle of a group can leave part of that group behind.
//! Such a part is always a *tail*: it starts at `E + 1`, holds at most one chunk and one run of
//! leaf hashes, and its record blocks follow each other from `E + 1`. A tail of that shape was
//! never acknowledged and is cut off at open (logged at warn, with its range), so the next
//! open never fails on it and `verify` never reports it as tampering. Anything else beyond
//! `E` (a second group, a gap, a block that straddles `E`) is not a torn write: the store is
//! reported as corrupt and nothing is deleted.
//!
//! sled itself writes snapshot files as `snap.<lsn>.generating` and renames them when
//! complete. A crash or ENOSPC can leave a `.generating` file behind (even an empty one), which
//! sled 0.34 then takes for its newest snapshot and refuses to open ("Read corrupted data"). It
//! is an unfinished temporary file by construction, so it is removed before sled opens.

use std::path::Path;

use crate::error::StoreError;
use crate::format::{CHECKPOINT, CHUNK, RECORDS, key, meta_key};
use crate::kv::{Batch, Db, Tree};
use crate::runs::RUN;
use crate::tree::HASHES;

/// What recovery found: the end of the whole prefix, and the tail beyond it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The last sequence number of the wholly present prefix (0: none).
    pub(crate) end: u64,
    /// The `next_seq` counter as stored.
    pub(crate) stored_next: u64,
    /// Keys beyond the prefix, to delete.
    pub(crate) tail_keys: Vec<Vec<u8>>,
    /// The highest sequence number the tail touched.
    pub(crate) tail_last: u64,
}

impl Plan {
    /// True when the store holds exactly the prefix.
    pub(crate) fn is_clean(&self) -> bool {
        self.tail_keys.is_empty() && self.stored_next == self.end + 1
    }
}

fn be_u64(b: &[u8], what: &str) -> Result<u64, StoreError> {
    b.get(..8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Corrupt(format!("{what}: too short")))
}

/// (first seq, count) of every value under `prefix` from seq `base` on, in key order.
fn runs(
    tree: &Tree,
    prefix: u8,
    base: u64,
    count: impl Fn(&[u8]) -> Result<u64, StoreError>,
) -> Result<Vec<(u64, u64, Vec<u8>)>, StoreError> {
    let mut out = Vec::new();
    for kv in tree.range(key(prefix, base)..=key(prefix, u64::MAX)) {
        let (k, v) = kv?;
        let first = be_u64(&k[1..], "key")?;
        out.push((first, count(&v)?, k.to_vec()));
    }
    Ok(out)
}

/// The last seq covered contiguously from `base` by `runs` (sorted by first); `base - 1` if
/// none.
fn contiguous_end(runs: &[(u64, u64, Vec<u8>)], base: u64) -> u64 {
    let mut end = base - 1;
    for (first, n, _) in runs {
        if *first != end + 1 || *n == 0 {
            break;
        }
        end += n;
    }
    end
}

/// The seq after the last registered index run (1 when there is none): everything before it
/// was whole when the run was registered, so recovery looks only at what follows.
fn indexed_end(tree: &Tree) -> Result<u64, StoreError> {
    match tree.scan_prefix([RUN]).next_back() {
        Some(kv) => {
            let (k, v) = kv?;
            let first = be_u64(&k[1..], "index run key")?;
            let count = v
                .get(1..5)
                .and_then(|s| <[u8; 4]>::try_from(s).ok())
                .map(u32::from_be_bytes)
                .ok_or_else(|| StoreError::Corrupt("index run entry too short".into()))?;
            Ok(first + u64::from(count))
        }
        None => Ok(1),
    }
}

/// Reads what is present and plans the cut. Reads only, and only what follows the last index
/// run, so its cost does not grow with the history.
pub(crate) fn plan(tree: &Tree) -> Result<Plan, StoreError> {
    let stored_next = match tree.get(meta_key("next_seq"))? {
        Some(v) => be_u64(&v, "next_seq")?,
        None => 1,
    };
    let base = indexed_end(tree)?;
    if stored_next < base {
        return Err(StoreError::Corrupt(format!(
            "the index runs cover events up to {} but the log's next sequence number is \
             {stored_next}; nothing was deleted",
            base - 1
        )));
    }
    let chunks = runs(tree, CHUNK, base, |v| {
        // version (1), first seq (8), count (4)
        let c = v
            .get(9..13)
            .and_then(|s| <[u8; 4]>::try_from(s).ok())
            .ok_or_else(|| StoreError::Corrupt("index chunk header too short".into()))?;
        Ok(u64::from(u32::from_be_bytes(c)))
    })?;
    let hashes = runs(tree, HASHES, base, crate::log::leaf_count)?;
    let records = runs(tree, RECORDS, base, crate::log::record_count)?;
    let mut end = contiguous_end(&chunks, base)
        .min(contiguous_end(&hashes, base))
        .min(stored_next.saturating_sub(1));
    // The records of the prefix's last event must be there too; if they are not, its group
    // is the torn one. (Records missing further back are not a torn write: `verify` names them.)
    let covered = |e: u64| {
        records
            .iter()
            .rev()
            .find(|(f, _, _)| *f <= e)
            .is_some_and(|(f, n, _)| f + n > e)
    };
    if end >= base
        && !covered(end)
        && let Some((first, _, _)) = chunks.iter().rev().find(|(f, n, _)| f + n - 1 == end)
    {
        end = first - 1;
    }
    let mut plan = Plan {
        end,
        stored_next,
        tail_keys: Vec::new(),
        tail_last: end,
    };
    let end = end;
    let not_torn = |what: &str, first: u64, n: u64| {
        StoreError::Corrupt(format!(
            "{what} {first}..{} lies beyond the whole log (which ends at {end}) but is not a torn \
             last group; nothing was deleted",
            first + n.saturating_sub(1)
        ))
    };
    for (what, list) in [("index chunk", &chunks), ("leaf hashes", &hashes)] {
        for (first, n, key) in list.iter().filter(|(f, n, _)| f + n > end + 1 || *n == 0) {
            if *first != end + 1 {
                return Err(not_torn(what, *first, *n));
            }
            plan.tail_last = plan.tail_last.max(first + n.saturating_sub(1));
            plan.tail_keys.push(key.clone());
        }
    }
    // A torn group's record blocks all start after the prefix. They need not be contiguous:
    // a group holds many blocks, and a write that failed on a full disk has been seen to leave
    // some of them without the others. (A block across the prefix's end is not torn; how far
    // the tail may reach is checked below.)
    for (first, n, key) in records
        .iter()
        .filter(|(f, n, _)| f + n > end + 1 || *n == 0)
    {
        if *first <= end {
            return Err(not_torn("record block", *first, *n));
        }
        plan.tail_last = plan.tail_last.max(first + n.saturating_sub(1));
        plan.tail_keys.push(key.clone());
    }
    if stored_next > end + 1 {
        plan.tail_last = plan.tail_last.max(stored_next - 1);
    }
    // The tail is one group at most: a run longer than any group is not torn.
    if plan.tail_last - end > MAX_TAIL {
        return Err(StoreError::Corrupt(format!(
            "{} events lie beyond the whole log (which ends at {end}): more than one group \
             commit could leave; nothing was deleted",
            plan.tail_last - end
        )));
    }
    for kv in tree.range(key(CHECKPOINT, end.saturating_add(1))..=key(CHECKPOINT, u64::MAX)) {
        let (k, _) = kv?;
        if be_u64(&k[1..], "checkpoint key")? > end {
            plan.tail_keys.push(k.to_vec());
        }
    }
    // The counter deltas of the torn group are keyed by its first seq (`end + 1`).
    plan.tail_keys.extend(crate::counts::tail_keys(tree, end)?);
    Ok(plan)
}

/// The most events a torn tail may hold: a group takes batches until it holds at least the
/// configured group size, so it can exceed it by one batch (the collector's batch limit).
const MAX_TAIL: u64 = 1 << 20;

/// Cuts the tail that `plan` found (its counter deltas with it) and sets `next_seq` to follow the prefix, durably.
pub(crate) fn apply(tree: &Tree, db: &Db, plan: &Plan) -> Result<(), StoreError> {
    if plan.is_clean() {
        return Ok(());
    }
    let mut b = Batch::default();
    for k in &plan.tail_keys {
        b.remove(k.as_slice());
    }
    b.insert(meta_key("next_seq"), (plan.end + 1).to_be_bytes().to_vec());
    tree.apply_batch(b)?;
    db.flush()?;
    if plan.tail_last > plan.end {
        tracing::warn!(
            first = plan.end + 1,
            last = plan.tail_last,
            "cut off a torn tail that an interrupted write left (never acknowledged)"
        );
    }
    Ok(())
}

/// Removes sled's unfinished snapshot files (`snap.*.generating`) from `dir`.
pub(crate) fn remove_unfinished_snapshots(dir: &Path) -> Result<(), StoreError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            std::fs::remove_file(e.path()).map_err(|source| {
                StoreError::Storage(crate::kv::BackendError::io(std::io::Error::new(
                    source.kind(),
                    format!("cannot remove {}: {source}", e.path().display()),
                )))
            })?;
            tracing::warn!(file = %e.path().display(), "removed an unfinished sled snapshot");
        }
    }
    Ok(())
}
