//! The life of index runs: registered in sled, loaded at open, written in the background.
//!
//! sled holds `i <first seq u64>` -> `version (1) || event count (u32)` for every run file
//! (`index/run-<first>-<end>.idx`, see the `run` module). A run written from the memtable is
//! registered in the same batch that removes the index chunks (`x`) it replaces, then flushed:
//! before that batch the chunks serve, after it the run does, and a crash in between leaves
//! an unregistered file, removed at the next open.
//!
//! Runs are merged in the background so that their number stays logarithmic in the history:
//! when the newest [`FANOUT`] runs are of the same size class (sizes grow by `FANOUT` per
//! class, starting at the memtable's size), they are merged into one, up to
//! `max_run_events`. A merged run replaces its parts in one batch; their files are removed
//! after it (open readers keep reading them until they let go).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::StoreError;
use crate::format::{CHUNK, Reader, key};
use crate::index::Mem;
use crate::kv::{Batch, Db, Tree};
use crate::run::{self, Run};

/// Key prefix of run entries.
pub(crate) const RUN: u8 = b'i';

/// Where run files live.
pub(crate) fn dir(data: &Path) -> PathBuf {
    data.join("index")
}

/// Opens every registered run, in order, checking they follow each other from seq 1. In a
/// writable open, removes run files that no entry names (a crash left them).
pub(crate) fn load(tree: &Tree, data: &Path, writable: bool) -> Result<Vec<Arc<Run>>, StoreError> {
    let dir = dir(data);
    let mut runs: Vec<Arc<Run>> = Vec::new();
    let mut next = 1u64;
    for kv in tree.scan_prefix([RUN]) {
        let (k, v) = kv?;
        let mut kr = Reader::new(&k[1..], "index run key");
        let first = kr.u64()?;
        let mut r = Reader::new(&v, "index run entry");
        if r.u8()? != 1 {
            return Err(StoreError::Corrupt(format!(
                "index run {first}: unknown entry version"
            )));
        }
        let count = r.u32()?;
        if first != next {
            return Err(StoreError::Corrupt(format!(
                "index run {first} does not follow the runs before it (which end at {})",
                next - 1
            )));
        }
        let path = dir.join(run::file_name(first, first + u64::from(count)));
        if !path.exists() {
            return Err(StoreError::Corrupt(format!(
                "index run file {} is missing",
                path.display()
            )));
        }
        let run = Run::open(&path)?;
        if run.first != first || run.count != count {
            return Err(StoreError::Corrupt(format!(
                "index run file {} holds {}..{}, its entry says {first} and {count} events",
                path.display(),
                run.first,
                run.end()
            )));
        }
        next = run.end();
        runs.push(Arc::new(run));
    }
    if writable {
        remove_unregistered(&dir, &runs)?;
    }
    Ok(runs)
}

fn remove_unregistered(dir: &Path, runs: &[Arc<Run>]) -> Result<(), StoreError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let registered = run::parse_file_name(&name)
            .is_some_and(|(first, end)| runs.iter().any(|r| r.first == first && r.end() == end));
        let ours = name.starts_with("run-");
        if ours && !registered {
            std::fs::remove_file(e.path()).map_err(|source| StoreError::IndexFile {
                path: e.path().display().to_string(),
                source,
            })?;
            tracing::info!(file = %e.path().display(), "removed an index run file that was never registered");
        }
    }
    Ok(())
}

/// Runs merged at once, and the growth of size classes.
pub(crate) const FANOUT: usize = 4;

/// Where the runs to merge now start, if any: the newest [`FANOUT`] consecutive runs of one
/// size class whose merge stays within `max_events`.
pub(crate) fn due_merge(runs: &[Arc<Run>], base_events: u64, max_events: u64) -> Option<usize> {
    let class = |r: &Run| {
        let mut c = 0u32;
        let mut size = base_events.max(1) * FANOUT as u64;
        while u64::from(r.count) >= size {
            c += 1;
            size = size.saturating_mul(FANOUT as u64);
        }
        c
    };
    let classes: Vec<u32> = runs.iter().map(|r| class(r)).collect();
    (0..=runs.len().checked_sub(FANOUT)?).rev().find(|&at| {
        let w = &classes[at..at + FANOUT];
        let total: u64 = runs[at..at + FANOUT]
            .iter()
            .map(|r| u64::from(r.count))
            .sum();
        w.iter().all(|c| *c == w[0]) && total <= max_events
    })
}

/// Registers a run written from the memtable: one batch that adds its entry and removes the
/// chunks it replaces, then a flush.
pub(crate) fn register(tree: &Tree, db: &Db, run: &Run) -> Result<(), StoreError> {
    let mut b = Batch::default();
    b.insert(&key(RUN, run.first)[..], entry(run));
    for kv in tree.range(key(CHUNK, run.first)..key(CHUNK, run.end())) {
        let (k, _) = kv?;
        b.remove(k);
    }
    tree.apply_batch(b)
        .map_err(|source| StoreError::Write { source })?;
    crate::crashpoint::hit("run-register-applied");
    db.flush().map_err(|source| StoreError::Write { source })?;
    crate::crashpoint::hit("run-registered");
    Ok(())
}

/// Registers a merged run in place of its parts (one batch, then a flush), then removes the
/// parts' files.
pub(crate) fn register_merge(
    tree: &Tree,
    db: &Db,
    merged: &Run,
    parts: &[Arc<Run>],
) -> Result<(), StoreError> {
    let mut b = Batch::default();
    for p in parts {
        b.remove(&key(RUN, p.first)[..]);
    }
    b.insert(&key(RUN, merged.first)[..], entry(merged));
    tree.apply_batch(b)
        .map_err(|source| StoreError::Write { source })?;
    db.flush().map_err(|source| StoreError::Write { source })?;
    crate::crashpoint::hit("merge-registered");
    for p in parts {
        if let Err(e) = std::fs::remove_file(p.path()) {
            tracing::warn!(file = %p.path().display(), error = %e, "cannot remove a merged index run file; the next open removes it");
        }
    }
    Ok(())
}

fn entry(run: &Run) -> Vec<u8> {
    let mut v = vec![1u8];
    v.extend_from_slice(&run.count.to_be_bytes());
    v
}

/// A run written by a background job, with its blocks' time bounds read while its file is
/// fresh in the page cache: the first lookup with a time range need not read them. (A failed
/// read is left to that lookup to report.)
fn warmed(run: Run) -> Run {
    let _ = run.block_times();
    run
}

/// What a background job makes.
#[derive(Debug)]
pub(crate) enum Made {
    /// A run from the frozen memtable.
    Flushed(Run),
    /// A run merged from these runs.
    Merged(Run, Vec<Arc<Run>>),
}

/// Writing a run on a thread of its own: the frozen memtable, or a merge.
#[derive(Debug)]
pub(crate) struct Job {
    rx: std::sync::mpsc::Receiver<Result<Made, StoreError>>,
    cancel: Arc<std::sync::atomic::AtomicBool>,
}

impl Job {
    fn spawn(
        cancel: Arc<std::sync::atomic::AtomicBool>,
        f: impl FnOnce() -> Result<Made, StoreError> + Send + 'static,
    ) -> Result<Job, StoreError> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("orgtrail-index-run".into())
            .spawn(move || {
                let _ = tx.send(f());
            })
            .map_err(|e| StoreError::Unavailable {
                reason: format!("cannot start the index run writer: {e}"),
            })?;
        Ok(Job { rx, cancel })
    }

    /// Starts writing the frozen memtable `mem` as a run under `data`.
    pub(crate) fn flush(data: &Path, mem: Arc<Mem>) -> Result<Job, StoreError> {
        let dir = dir(data);
        let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let c = cancel.clone();
        Job::spawn(cancel, move || {
            let p = mem.write_run(&dir, Some(c))?;
            crate::crashpoint::hit("run-written");
            Ok(Made::Flushed(warmed(Run::open(&p)?)))
        })
    }

    /// Starts merging `parts` into one run under `data`.
    pub(crate) fn merge(data: &Path, parts: Vec<Arc<Run>>) -> Result<Job, StoreError> {
        let dir = dir(data);
        let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let c = cancel.clone();
        Job::spawn(cancel, move || {
            let p = run::merge(&dir, &parts, Some(c))?;
            crate::crashpoint::hit("merge-written");
            Ok(Made::Merged(warmed(Run::open(&p)?), parts))
        })
    }

    /// What the job made, if it is done (`None` while it runs).
    pub(crate) fn poll(&self) -> Option<Result<Made, StoreError>> {
        match self.rx.try_recv() {
            Ok(r) => Some(r),
            Err(std::sync::mpsc::TryRecvError::Empty) => None,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                Some(Err(StoreError::Unavailable {
                    reason: "the index run writer stopped".into(),
                }))
            }
        }
    }

    /// Stops the job and waits until it has: a cancelled write removes its temporary file,
    /// and a file the job had already finished is removed (it is not registered), so nothing
    /// is left behind.
    pub(crate) fn cancel(self) {
        self.cancel
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let made = match self.rx.recv() {
            Ok(Ok(Made::Flushed(run))) | Ok(Ok(Made::Merged(run, _))) => Some(run),
            _ => None,
        };
        if let Some(run) = made {
            let path = run.path().to_owned();
            drop(run);
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(file = %path.display(), error = %e, "cannot remove an unregistered index run file; the next open removes it");
            }
        }
    }

    /// Waits for the job.
    pub(crate) fn wait(self) -> Result<Made, StoreError> {
        self.rx.recv().unwrap_or_else(|_| {
            Err(StoreError::Unavailable {
                reason: "the index run writer stopped".into(),
            })
        })
    }
}
