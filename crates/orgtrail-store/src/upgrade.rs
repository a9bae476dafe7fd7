//! `orgtrail store upgrade`: converts a store of format 1 to the current format, in place.
//!
//! Format 1 kept every group's index chunk (`x`) and rebuilt the whole index and Merkle tree
//! in memory at each open. Format 2 adds, from the same data:
//! 1. the hashes of the perfect Merkle subtrees (`t`), computed from the stored leaf hashes
//!    (`h`): the tree, its root and every signed checkpoint stay exactly as they were;
//! 2. index run files (`i` entries, `index/`), built from the chunks in order, each replacing
//!    its chunks in one batch, as the writer does; the newest events' chunks stay.
//!
//! 3. `m counts_from`: the first seq the counters behind `stats` cover (none before).
//!
//! Records, segments, keys and checkpoints are not rewritten. Every step is idempotent and
//! the format number is written last, so an interrupted upgrade is finished by running it
//! again (a store that says format 1 is refused by everything else until then).

use std::path::Path;
use std::sync::Arc;

use orgtrail_crypto::merkle::Frontier;

use crate::error::StoreError;
use crate::format::{CHUNK, FORMAT_VERSION, Reader, key, meta_key};
use crate::index::Index;
use crate::kv::{Batch, Db, Tree};
use crate::run::Run;
use crate::tree::{HASHES, push_leaves, subtree_key};

/// What an upgrade did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpgradeReport {
    /// The format found.
    pub from: u32,
    /// The format now.
    pub to: u32,
    /// Events in the store.
    pub events: u64,
    /// Merkle subtree hashes written.
    pub subtrees: u64,
    /// Index runs written.
    pub runs: u64,
}

/// Upgrades the store in `dir` to the current format, in place. The store must not be in use
/// (its lock is taken). `index_run_events` sizes the runs, as the collector's configuration
/// does. A store already of the current format is left as it is.
pub fn upgrade(dir: &Path, index_run_events: u64) -> Result<UpgradeReport, StoreError> {
    let path_s = dir.display().to_string();
    if !dir.join("conf").exists() {
        return Err(StoreError::NoStore { path: path_s });
    }
    crate::recover::remove_unfinished_snapshots(dir)?;
    let db = crate::kv::Db::open(dir, 64 << 20)?;
    let tree = db.open_tree("ledger")?;
    let found = match tree.get(meta_key("format"))? {
        Some(v) => u32::try_from(Reader::new(&v, "format").u64()?).unwrap_or(u32::MAX),
        None => return Err(StoreError::NoStore { path: path_s }),
    };
    let mut report = UpgradeReport {
        from: found,
        to: FORMAT_VERSION,
        ..UpgradeReport::default()
    };
    if found == FORMAT_VERSION {
        return Ok(report);
    }
    if found == 2 || found == 3 {
        // Format 4 reads the values of formats 2 and 3 as they are (see `log` and `tree`):
        // only the number changes.
        tree.insert(
            meta_key("format"),
            u64::from(FORMAT_VERSION).to_be_bytes().to_vec(),
        )?;
        db.flush()?;
        return Ok(report);
    }
    if found != 1 {
        return Err(StoreError::Format {
            path: path_s,
            found,
            expected: FORMAT_VERSION,
        });
    }
    // Cut a torn tail first, as an open would: the upgrade works on the whole prefix.
    let plan = crate::recover::plan(&tree)?;
    crate::recover::apply(&tree, &db, &plan)?;
    let end = plan.end;
    report.events = end;
    let log = crate::log::LogReader::new(dir);

    // 1. Merkle subtree hashes, from the leaf hashes in order.
    let mut frontier = Frontier::new();
    let mut batch = Batch::default();
    let mut pending = 0usize;
    for kv in tree.range(key(HASHES, 0)..=key(HASHES, end)) {
        let (k, v) = kv?;
        let first = Reader::new(&k[1..], "leaf hashes key").u64()?;
        if first != frontier.size() + 1 {
            return Err(StoreError::Corrupt(format!(
                "leaf hashes of group {first} do not follow leaf {}",
                frontier.size()
            )));
        }
        let v = log.leaves(&v)?;
        let leaves: Vec<[u8; 32]> = v
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect();
        push_leaves(&mut frontier, &leaves, |height, index, h| {
            batch.insert(&subtree_key(height, index)[..], &h[..]);
            pending += 1;
            report.subtrees += 1;
        });
        if pending >= 10_000 {
            tree.apply_batch(std::mem::take(&mut batch))?;
            pending = 0;
        }
    }
    tree.apply_batch(batch)?;
    if frontier.size() != end {
        return Err(StoreError::Corrupt(format!(
            "the Merkle log holds {} leaves but the store {end} events",
            frontier.size()
        )));
    }
    db.flush()?;
    crate::crashpoint::hit("upgrade-subtrees-flushed");

    // 2. Index runs from the chunks, from where an interrupted upgrade stopped.
    let runs = crate::runs::load(&tree, dir, true)?;
    let mut index = Index::default();
    index.mem = crate::index::Mem::new(runs.last().map_or(1, |r| r.end()));
    let run_dir = crate::runs::dir(dir);
    let chunk_keys: Vec<_> = tree
        .range(key(CHUNK, index.mem.base)..=key(CHUNK, end))
        .map(|kv| kv.map(|(k, _)| k))
        .collect::<Result<_, _>>()?;
    for k in chunk_keys {
        let Some(v) = tree.get(&k)? else {
            continue;
        };
        crate::ledger::load_chunk(&v, &mut index)?;
        if index.mem.len() >= index_run_events.max(1) {
            write_run(&tree, &db, &run_dir, &mut index)?;
            report.runs += 1;
        }
    }
    if index.mem.end() != end + 1 {
        return Err(StoreError::Corrupt(format!(
            "index chunks end at {} but the store holds {end} events",
            index.mem.end() - 1
        )));
    }

    // 3. Counters (`stats`) start after the events already stored: building them would mean
    // decrypting every event, which needs the keys. Counts fall back to a bounded scan on such
    // a store, and say why (see the `counts` module).
    tree.insert(
        meta_key(crate::counts::COUNTS_FROM),
        (end + 1).to_be_bytes().to_vec(),
    )?;

    // Last: the format.
    crate::crashpoint::hit("upgrade-before-format");
    tree.insert(
        meta_key("format"),
        u64::from(FORMAT_VERSION).to_be_bytes().to_vec(),
    )?;
    db.flush()?;
    Ok(report)
}

/// Writes the memtable of `index` as a run, registers it, and starts a new memtable.
fn write_run(tree: &Tree, db: &Db, run_dir: &Path, index: &mut Index) -> Result<(), StoreError> {
    let path = index.mem.write_run(run_dir, None)?;
    let run = Run::open(&path)?;
    crate::runs::register(tree, db, &run)?;
    index.runs.push(Arc::new(run));
    index.mem = crate::index::Mem::new(index.mem.end());
    Ok(())
}
