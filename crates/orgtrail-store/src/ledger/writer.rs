//! The writer thread: the only writer of a store. It takes what is queued as one group (up to
//! `max_group_events`), refuses it below the free-space reserve, and commits it: dedup against
//! the index and the group itself, seal records into blocks, write the index chunk, the leaf
//! hashes, new segments, a due checkpoint and a trained dictionary in one `sled::Batch`, then
//! `flush()`. Only after the flush is anything published in memory or acknowledged. A failed
//! write faults the ledger: the writer reopens the files, cuts the torn tail (`recover`) and
//! reloads what is durable, answering appends with a retryable error meanwhile.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use orgtrail_core::AccountId;
use orgtrail_crypto::DataKey;
use orgtrail_crypto::checkpoint::Checkpoint;
use orgtrail_crypto::merkle::{Frontier, Hash};
use tokio::sync::mpsc;

use super::backend::Files;
use super::chunk::encode_chunk;
use super::dicts::{Trainer, dict_key, seal_dict};
use super::load::load;
use super::packing::{Repacker, is_whole, run_at};
use super::prepare::Pack;
use super::records::{BlockEncoder, Place};
use super::segments::{SegmentInfo, encode_segment, segment_context};
use super::small::Blinds;
use super::{AppendOutcome, Appended, Health, Job, Shared, be_u64, key_bytes};
use crate::error::StoreError;
use crate::format::{CHECKPOINT, CHUNK, RECORDS, SEGMENT, meta_key};
use crate::index::{Blind, BlindMap};
use crate::kv::Batch;
use crate::tree::{HASHES, event_leaf};

/// The largest frame buffer the writer keeps for the next group (a group of big events makes
/// a bigger one, freed after its group).
const FRAME_KEEP: usize = 8 << 20;

/// How often a faulted writer tries to reopen the store.
const RECOVERY_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// (seq, eventTime, dedup blind, hash prefix, account, postings, leaf hash) of an event stored
/// by a group. The postings stay in the prepared event (in its job), borrowed.
pub(super) type StoredEntry<'a> = (u64, i64, Blind, [u8; 8], AccountId, &'a Blinds, Hash);

/// What dedup decided for one event of a group, before sequence numbers are given.
enum Slot {
    /// New: the `i`th event of the group to store.
    New(usize),
    /// Its (account, eventID) is the group's `i`th new event's: the same bytes (true) or not.
    InGroup(usize, bool, AccountId),
    /// Already stored.
    Done(Appended),
}

/// A segment the writer is filling.
struct OpenSegment {
    id: u64,
    day: i64,
    count: u64,
    key: Arc<DataKey>,
}

/// What the writer thread owns.
pub(super) struct WriterState {
    next_seq: u64,
    next_segment: u64,
    open: HashMap<AccountId, OpenSegment>,
    dict: Trainer,
    /// The writer's copy of the Merkle frontier (the published one lags until a flush).
    frontier: Frontier,
    last_checkpoint_size: u64,
    last_checkpoint_at: std::time::Instant,
    /// When the last checkpoint was signed (Unix ms), for metrics.
    last_checkpoint_ms: i64,
    /// Counter deltas waiting to be merged.
    counts: crate::counts::Writer,
    /// Index runs being written or merged in the background.
    index_jobs: IndexJobs,
    /// The record log's end, where the next group's frame goes.
    log: crate::log::LogWriter,
    /// The last group's frame buffer, emptied, kept for the next group. A group's frame is a
    /// few MiB; a fresh one per group had the allocator hand its pages back and fault them in
    /// again at every group.
    frame_buf: Vec<u8>,
    /// Where the writer's time went, logged at debug level when it stops.
    phases: super::telemetry::Phases,
    /// Writes waiting in [`super::riders::Riders`] that the group being committed took:
    /// answered once it is durable (or failed).
    riding: Vec<super::riders::Rider>,
}

/// Answers the jobs of a group of writes riding on a commit ([`WriterState::write_only`]); a
/// write failure is retryable.
fn answer_riders(jobs: Vec<Job>, written: Result<(), StoreError>) {
    for job in jobs {
        let _ = job.reply.send(match &written {
            Ok(()) => Ok(AppendOutcome::default()),
            Err(e) => Err(StoreError::Recovering {
                reason: e.to_string(),
            }),
        });
    }
}

/// A group's frame in the record log, being built: where it goes and its bytes so far.
struct Frame {
    file: u32,
    offset: u64,
    bytes: Vec<u8>,
    /// The blocks not located yet: the first one's seq and offset, and each (count, length).
    blocks: Option<(u64, u64)>,
    pending: Vec<(u16, u32)>,
}

impl Frame {
    /// A frame at `offset` of log file `file`, built in `bytes` (emptied first).
    fn new(file: u32, offset: u64, mut bytes: Vec<u8>) -> Frame {
        bytes.clear();
        Frame {
            file,
            offset,
            bytes,
            blocks: None,
            pending: Vec::new(),
        }
    }

    /// Adds a record block to the frame; its locator goes into the group's `r` value (see
    /// [`Frame::locate`]).
    fn block(&mut self, batch: &mut Batch, first: u64, value: Vec<u8>) -> Result<(), StoreError> {
        let count = value
            .get(1..3)
            .map_or(0, |c| u16::from_be_bytes([c[0], c[1]]));
        let len = u32::try_from(value.len())
            .map_err(|_| StoreError::Corrupt("a record block of more than 4 GiB".into()))?;
        if self.blocks.is_none() {
            self.blocks = Some((first, self.offset + self.bytes.len() as u64));
        }
        self.pending.push((count, len));
        self.bytes.extend_from_slice(&value);
        if self.pending.len() >= crate::log::GROUP_BLOCKS {
            self.locate(batch)?;
        }
        Ok(())
    }

    /// Adds the `r` value locating the blocks added since the last one to `batch`.
    fn locate(&mut self, batch: &mut Batch) -> Result<(), StoreError> {
        if let Some((first, offset)) = self.blocks.take() {
            batch.insert(
                &key_bytes(RECORDS, first)[..],
                crate::log::group_locator(self.file, offset, &self.pending)?,
            );
            self.pending.clear();
        }
        Ok(())
    }
}

/// How long the failed database may take to be let go of after a write failure.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why the store could not be reopened after a write failure.
enum Recovery {
    /// Not yet (the disk is still full, a file cannot be read...): tried again shortly.
    Failed(StoreError),
    /// Not in this process: the failed database was not let go of.
    Stuck(String),
}

impl From<StoreError> for Recovery {
    fn from(e: StoreError) -> Self {
        Recovery::Failed(e)
    }
}

/// Drops the failed database on a thread of its own, and waits for that at most
/// [`RELEASE_WAIT`]. sled flushes when its last handle goes; after some write failures that
/// flush never returns (sled 0.34: a blob write that meets a full disk leaves its writer
/// registered on the log buffer, which is then never written). The database then keeps its
/// file lock and cannot be opened again by this process: the thread is left waiting.
fn release(failed: Files) -> Result<(), Recovery> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("orgtrail-release".into())
        .spawn(move || {
            crate::crashpoint::stall("release-stalls");
            drop(failed);
            let _ = tx.send(());
        })
        .map_err(|e| {
            Recovery::Stuck(format!(
                "cannot start a thread to let go of the failed database: {e}"
            ))
        })?;
    rx.recv_timeout(RELEASE_WAIT).map_err(|_| {
        Recovery::Stuck(format!(
            "the failed database was not let go of within {} s (its flush does not return), so it cannot be reopened in this process",
            RELEASE_WAIT.as_secs()
        ))
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl WriterState {
    pub(super) fn load(sh: &Shared, next_seq: u64) -> Result<Self, StoreError> {
        let next_segment = match sh.tree()?.get(meta_key("next_segment"))? {
            Some(v) => be_u64(&v)?,
            None => 1,
        };
        let frontier = sh
            .index
            .read()
            .map_err(|_| StoreError::WriterGone)?
            .tree
            .frontier
            .clone();
        let (last_checkpoint_size, last_checkpoint_ms) =
            match sh.tree()?.scan_prefix([CHECKPOINT]).next_back() {
                Some(kv) => {
                    let (k, v) = kv?;
                    // The signing time is in the note; one that does not parse (it is checked
                    // by `verify`, not here) only leaves the metric's age unknown.
                    let ms = Checkpoint::parse_unverified(&String::from_utf8_lossy(&v))
                        .map_or(0, |c| c.time_ms);
                    (be_u64(&k[1..])?, ms)
                }
                None => (0, 0),
            };
        sh.telemetry
            .checkpointed(last_checkpoint_size, last_checkpoint_ms);
        Ok(WriterState {
            next_seq,
            next_segment,
            open: HashMap::new(),
            dict: Trainer::default(),
            frontier,
            last_checkpoint_size,
            last_checkpoint_at: std::time::Instant::now(),
            last_checkpoint_ms,
            counts: crate::counts::Writer::load(
                &sh.tree()?,
                sh.cfg.count_merge_after,
                sh.cfg.count_rollup_part_bytes,
            )?,
            index_jobs: IndexJobs::default(),
            log: crate::log::LogWriter::open(&sh.path, crate::log::committed_end(&sh.tree()?)?)?,
            frame_buf: Vec::new(),
            phases: super::telemetry::Phases::default(),
            riding: Vec::new(),
        })
    }

    /// Commits groups until the queue closes; then a last checkpoint and flush.
    pub(super) fn run(&mut self, sh: &Shared, mut rx: mpsc::Receiver<Job>) {
        let mut broken: Option<String> = None;
        // Counter deltas a crash left waiting (a clean close merges them): merged before the
        // first group (every group stored is durable and published by now), so that the first
        // counts after this open read merged values only. Not below the disk reserve.
        if sh.cfg.count_merge_waiting
            && sh.check_space().is_ok()
            && let Err(e) = sh.tree().and_then(|t| {
                self.counts
                    .merge_waiting(&t, sh.provider.as_ref(), &sh.counts_cache)
            })
        {
            tracing::warn!(error = %e, "merging the counters a crash left failed; the deltas stay and count");
        }
        loop {
            if let Some(reason) = broken.take() {
                // A write failed: sled fails every later operation, so the files are reopened
                // and reconciled (once the disk has room again). Until then every append is
                // answered at once with a retryable error, and reads wait for the reopen.
                match self.recover(sh) {
                    Ok(()) => {
                        tracing::info!("the store reopened after a write failure; appends resume");
                        sh.set_health(Health::Ready);
                    }
                    Err(Recovery::Stuck(why)) => {
                        let reason = format!("{reason}; {why}");
                        tracing::error!(reason = %reason, "the store cannot be reopened in this process: restart it (nothing acknowledged is lost; the next open cuts any torn tail)");
                        sh.set_health(Health::Stuck {
                            reason: reason.clone(),
                        });
                        // Every later write is answered at once with the same retryable error,
                        // until the queue closes.
                        let refuse = || StoreError::Recovering {
                            reason: reason.clone(),
                        };
                        loop {
                            for r in sh.riders.take() {
                                r.answer(&Err(refuse()));
                            }
                            let Some(job) = rx.blocking_recv() else {
                                return;
                            };
                            let _ = job.reply.send(Err(refuse()));
                        }
                    }
                    Err(Recovery::Failed(e)) => {
                        let reason = if matches!(e, StoreError::DiskFull { .. }) {
                            format!("{reason}; waiting for free space ({e})")
                        } else {
                            format!("{reason}; reopening failed: {e}")
                        };
                        sh.set_health(Health::Faulted {
                            reason: reason.clone(),
                        });
                        // Writes waiting to ride on a group are answered as the queue is.
                        for r in sh.riders.take() {
                            r.answer(&Err(StoreError::Recovering {
                                reason: reason.clone(),
                            }));
                        }
                        loop {
                            match rx.try_recv() {
                                Ok(job) => {
                                    let _ = job.reply.send(Err(StoreError::Recovering {
                                        reason: reason.clone(),
                                    }));
                                }
                                Err(mpsc::error::TryRecvError::Empty) => break,
                                Err(mpsc::error::TryRecvError::Disconnected) => return,
                            }
                        }
                        std::thread::sleep(RECOVERY_POLL);
                        broken = Some(reason);
                        continue;
                    }
                }
            }
            let t_idle = std::time::Instant::now();
            let Some(first) = rx.blocking_recv() else {
                break;
            };
            self.phases.idle += t_idle.elapsed();
            let mut jobs = vec![first];
            let mut n: usize = jobs[0].events.len();
            while n < sh.cfg.max_group_events {
                match rx.try_recv() {
                    Ok(j) => {
                        n += j.events.len();
                        jobs.push(j);
                    }
                    Err(_) => break,
                }
            }
            // Below the reserve nothing is written: sled must never meet a full disk.
            match sh.check_space() {
                Ok(()) => {
                    let was_full = matches!(
                        sh.health.lock().map(|h| h.clone()),
                        Ok(Health::DiskFull { .. })
                    );
                    if was_full {
                        tracing::info!("free space is above the reserve again; appends resume");
                        sh.set_health(Health::Ready);
                    }
                }
                Err(e) => {
                    if let StoreError::DiskFull { free, reserve, .. } = &e {
                        let was_full = matches!(
                            sh.health.lock().map(|h| h.clone()),
                            Ok(Health::DiskFull { .. })
                        );
                        if !was_full {
                            tracing::error!(free, reserve, path = %sh.path.display(), "disk full: the data directory is below its free-space reserve; refusing appends until space returns");
                        }
                        sh.set_health(Health::DiskFull {
                            free: *free,
                            reserve: *reserve,
                        });
                    }
                    // Writes riding on a group go on (their callers check the reserve when
                    // they add to the store: a delivery's note only shrinks it).
                    let (mut riders, refused): (Vec<Job>, Vec<Job>) =
                        jobs.into_iter().partition(Job::only_writes);
                    for job in refused {
                        let _ = job.reply.send(Err(match &e {
                            StoreError::DiskFull {
                                path,
                                free,
                                reserve,
                            } => StoreError::DiskFull {
                                path: path.clone(),
                                free: *free,
                                reserve: *reserve,
                            },
                            other => StoreError::Recovering {
                                reason: other.to_string(),
                            },
                        }));
                    }
                    let written = self.write_only(sh, &mut riders);
                    self.answer_riding(&written);
                    answer_riders(riders, written);
                    continue;
                }
            }
            let started = std::time::Instant::now();
            // Only writes riding on a group, and no append came to ride on: they make a
            // group of their own, with no events.
            if jobs.iter().all(Job::only_writes) {
                let written = self.write_only(sh, &mut jobs);
                self.answer_riding(&written);
                if let Err(e) = &written {
                    tracing::error!(error = %e, "writing the store's own state failed");
                    let reason = e.to_string();
                    sh.set_health(Health::Faulted {
                        reason: reason.clone(),
                    });
                    broken = Some(reason);
                }
                answer_riders(jobs, written);
                continue;
            }
            let committed = self.commit(sh, &mut jobs);
            self.answer_riding(&committed.as_ref().map(|_| ()).map_err(|e| {
                StoreError::Recovering {
                    reason: e.to_string(),
                }
            }));
            match committed {
                Ok(outcomes) => {
                    sh.telemetry.committed(started.elapsed());
                    sh.telemetry
                        .checkpointed(self.last_checkpoint_size, self.last_checkpoint_ms);
                    crate::crashpoint::hit("group-before-ack");
                    for (job, outcome) in jobs.into_iter().zip(outcomes) {
                        let _ = job.reply.send(Ok(outcome));
                    }
                    self.phases.committed(started.elapsed(), n);
                    let t_after = std::time::Instant::now();
                    // Answered: now merge counter deltas if enough wait (off the ack path).
                    if let Err(e) = sh
                        .tree()
                        .and_then(|t| self.counts.maybe_merge(&t, &sh.provider, &sh.counts_cache))
                    {
                        tracing::error!(error = %e, "merging counters failed; the deltas stay and count");
                    }
                    if let Err(e) = self.index_jobs.tend(sh, false) {
                        tracing::error!(error = %e, "registering an index run failed");
                        let reason = e.to_string();
                        sh.set_health(Health::Faulted {
                            reason: reason.clone(),
                        });
                        broken = Some(reason);
                    }
                    self.phases.after += t_after.elapsed();
                }
                Err(e) => {
                    tracing::error!(error = %e, events = n, "ledger group commit failed; nothing of it was acknowledged");
                    let write_failed =
                        matches!(e, StoreError::Write { .. } | StoreError::Storage(_));
                    let reason = e.to_string();
                    for job in jobs {
                        let _ = job.reply.send(Err(match &e {
                            StoreError::Write { .. } | StoreError::Storage(_) => {
                                StoreError::Recovering {
                                    reason: reason.clone(),
                                }
                            }
                            other => StoreError::Unavailable {
                                reason: format!("the group could not be stored: {other}"),
                            },
                        }));
                    }
                    if write_failed {
                        sh.set_health(Health::Faulted {
                            reason: reason.clone(),
                        });
                        broken = Some(reason);
                    }
                }
            }
        }
        self.phases.report();
        for r in sh.riders.take() {
            r.answer(&Err(StoreError::WriterGone));
        }
        if broken.is_some() {
            return;
        }
        // Clean shutdown: the counter deltas still waiting are merged (every group is durable
        // and published by now), so that the first count after the next open reads merged
        // values only, not up to `count_merge_after` deltas, each opened and decoded on its own.
        // The merge running (if any) ends first either way: its values are flushed below.
        let merged = match sh.tree() {
            Ok(t) if sh.cfg.count_merge_waiting => {
                self.counts
                    .merge_waiting(&t, sh.provider.as_ref(), &sh.counts_cache)
            }
            Err(e) if sh.cfg.count_merge_waiting => self.counts.wait().and(Err(e)),
            Ok(_) | Err(_) => self.counts.wait(),
        };
        if let Err(e) = merged {
            tracing::warn!(error = %e, "merging the waiting counters at close failed; the deltas stay and count");
        }
        // The memtable being written is waited for (the next open then reads fewer chunks); a
        // merge still running is cancelled and its file removed, unless the index is to be
        // settled: then it is finished, and every merge due made.
        let settled = if sh.cfg.settle_index_at_close {
            self.index_jobs.settle(sh)
        } else {
            self.index_jobs.tend(sh, true)
        };
        if let Err(e) = settled {
            tracing::warn!(error = %e, "the last index run was not registered; the next open reads its chunks");
        }
        self.index_jobs.abandon();
        // A checkpoint covering everything, if there is anything new.
        let Ok(files) = sh.files() else {
            return;
        };
        crate::crashpoint::hit("close-before-checkpoint");
        if sh.cfg.signer.is_some() && self.frontier.size() > self.last_checkpoint_size {
            let mut batch = Batch::default();
            self.checkpoint(sh, &self.frontier.clone(), &mut batch);
            match files
                .tree
                .apply_batch(batch)
                .and_then(|()| files.db.flush().map(|_| ()))
            {
                Ok(()) => sh
                    .telemetry
                    .checkpointed(self.last_checkpoint_size, self.last_checkpoint_ms),
                Err(e) => tracing::error!(error = %e, "writing the shutdown checkpoint failed"),
            }
        }
        // Everything acknowledged was flushed with its group; a failure here loses nothing
        // acknowledged, but it is said.
        if let Err(e) = files.db.flush() {
            tracing::error!(error = %e, "the final flush at close failed");
        }
    }

    /// Reopens the store's files after a failed write, cuts the torn tail the failure left,
    /// reloads the in-memory state from what is durable, and starts over from there.
    fn recover(&mut self, sh: &Shared) -> Result<(), Recovery> {
        // Index runs being written are dropped: their files are removed at the reopen, and the
        // memtable is rebuilt from the chunks.
        self.index_jobs.abandon();
        // A counter merge running holds the database: it ends (failing, as every operation
        // on it does now) before the database is let go of.
        if let Err(e) = self.counts.wait() {
            tracing::warn!(error = %e, "merging counters failed; the deltas stay and count");
        }
        // Let go of the failed database first: its file lock must be released to reopen it.
        let failed = sh.files.write().ok().and_then(|mut g| g.take());
        if let Some(failed) = failed {
            release(failed)?;
        }
        Ok(self.reopen(sh)?)
    }

    /// The part of [`WriterState::recover`] after the failed database is let go of: tried
    /// again until it succeeds.
    fn reopen(&mut self, sh: &Shared) -> Result<(), StoreError> {
        sh.check_space()?;
        crate::recover::remove_unfinished_snapshots(&sh.path)?;
        let db = crate::kv::Db::open(&sh.path, sh.cfg.cache_bytes)?;
        let tree = db.open_tree("ledger")?;
        let plan = crate::recover::plan(&tree)?;
        crate::recover::apply(&tree, &db, &plan)?;
        let loaded = load(
            &tree,
            sh.provider.as_ref(),
            &sh.path,
            true,
            plan.end,
            sh.cfg.index_filter_bytes,
        )?;
        *sh.index.write().map_err(|_| StoreError::WriterGone)? = loaded.index;
        *sh.segments.write().map_err(|_| StoreError::WriterGone)? = loaded.segments;
        sh.dict_version
            .store(loaded.dicts.current, Ordering::Release);
        *sh.dicts.write().map_err(|_| StoreError::WriterGone)? = loaded.dicts;
        *sh.files.write().map_err(|_| StoreError::WriterGone)? = Some(Files { db, tree });
        *self = WriterState::load(sh, loaded.next_seq)?;
        sh.log.reset();
        Ok(())
    }

    /// Adds a signed checkpoint of `frontier` to `batch`.
    fn checkpoint(&mut self, sh: &Shared, frontier: &Frontier, batch: &mut Batch) {
        let Some(signer) = &sh.cfg.signer else {
            return;
        };
        let cp = Checkpoint {
            origin: sh.origin.clone(),
            size: frontier.size(),
            root: frontier.root(),
            time_ms: now_ms(),
        };
        batch.insert(
            &key_bytes(CHECKPOINT, cp.size)[..],
            cp.sign(signer).into_bytes(),
        );
        self.last_checkpoint_size = cp.size;
        self.last_checkpoint_at = std::time::Instant::now();
        self.last_checkpoint_ms = cp.time_ms;
    }

    /// The segment the next `n` records of `account` go to, at `now` (Unix ms; one reading of
    /// the clock per group commit): the open one if they fit in it, else a new one. `None`
    /// if `n` is more than a segment holds.
    fn segment_for(
        &mut self,
        sh: &Shared,
        account: AccountId,
        n: u64,
        now: i64,
        batch: &mut Batch,
        new_segments: &mut Vec<(u64, SegmentInfo, Arc<DataKey>)>,
    ) -> Result<Option<(u64, Arc<DataKey>)>, StoreError> {
        let day = now.div_euclid(86_400_000);
        let max = sh.cfg.segment_max_records.max(1);
        if n > max {
            return Ok(None);
        }
        if let Some(s) = self.open.get_mut(&account)
            && s.day == day
            && s.count + n <= max
        {
            s.count += n;
            return Ok(Some((s.id, s.key.clone())));
        }
        let id = self.next_segment;
        self.next_segment += 1;
        let (key, wrapped) = sh
            .provider
            .generate_data_key(&segment_context(id, &account))?;
        let key = Arc::new(key);
        batch.insert(
            &key_bytes(SEGMENT, id)[..],
            encode_segment(&account, day, now, &wrapped),
        );
        new_segments.push((id, SegmentInfo { account, wrapped }, key.clone()));
        self.open.insert(
            account,
            OpenSegment {
                id,
                day,
                count: n,
                key: key.clone(),
            },
        );
        Ok(Some((id, key)))
    }

    /// What a stored event leaves to its group besides its record: its sample for the
    /// dictionary, and its counted values.
    fn settle_one(
        &mut self,
        sh: &Shared,
        ev: &mut super::Prepared,
        tally: &mut crate::counts::Tally,
    ) {
        if let Some(s) = ev.sample.take() {
            self.dict.offer(s, sh.cfg.dict_train_after);
        }
        tally.add_hashed(ev.time, std::mem::take(&mut ev.dims), ev.dims_hash);
    }

    /// A group of writes riding on a commit (no events, no checkpoint): applied in the order
    /// they came, then one flush.
    fn write_only(&mut self, sh: &Shared, jobs: &mut [Job]) -> Result<(), StoreError> {
        let files = sh.files()?;
        let mut batch = Batch::default();
        let mut any = false;
        for job in jobs.iter_mut() {
            if let Some(writes) = job.writes.take() {
                self.phases.alone += 1;
                any = true;
                writes.add_to(&mut batch);
            }
        }
        any |= self.take_riders(sh, &mut batch);
        if any {
            files
                .tree
                .apply_batch(batch)
                .map_err(|source| StoreError::Write { source })?;
            files
                .db
                .flush()
                .map_err(|source| StoreError::Write { source })?;
        }
        Ok(())
    }

    /// Adds the writes waiting in [`super::riders::Riders`] to `batch`, to be made durable by
    /// the flush that follows; they are answered after it ([`Self::answer_riding`]). Whether
    /// there were any.
    fn take_riders(&mut self, sh: &Shared, batch: &mut Batch) -> bool {
        let riders = sh.riders.take();
        let any = !riders.is_empty();
        for mut rider in riders {
            std::mem::take(&mut rider.writes).add_to(batch);
            self.riding.push(rider);
            self.phases.riders += 1;
        }
        any
    }

    /// Answers the writes the last group took from [`super::riders::Riders`].
    fn answer_riding(&mut self, r: &Result<(), StoreError>) {
        for rider in self.riding.drain(..) {
            rider.answer(r);
        }
    }

    fn commit(&mut self, sh: &Shared, jobs: &mut [Job]) -> Result<Vec<AppendOutcome>, StoreError> {
        let saved_seq = self.next_seq;
        let saved_segment = self.next_segment;
        let saved_cp = (
            self.last_checkpoint_size,
            self.last_checkpoint_at,
            self.last_checkpoint_ms,
        );
        let saved_open: Vec<(AccountId, u64, u64)> =
            self.open.iter().map(|(a, s)| (*a, s.id, s.count)).collect();
        let r = self.commit_inner(sh, jobs);
        if r.is_err() {
            // Nothing was published; forget what this group reserved.
            self.next_seq = saved_seq;
            self.next_segment = saved_segment;
            (
                self.last_checkpoint_size,
                self.last_checkpoint_at,
                self.last_checkpoint_ms,
            ) = saved_cp;
            self.open.retain(|a, s| {
                saved_open
                    .iter()
                    .find(|(b, id, _)| b == a && *id == s.id)
                    .map(|(_, _, c)| s.count = *c)
                    .is_some()
            });
        }
        r
    }

    fn commit_inner(
        &mut self,
        sh: &Shared,
        jobs: &mut [Job],
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        let t_commit = std::time::Instant::now();
        let first_seq = self.next_seq;
        let mut batch = Batch::default();
        // Writes riding on this group: added to its batch, made durable by its flush.
        let writes: Vec<super::Writes> = jobs.iter_mut().filter_map(|j| j.writes.take()).collect();
        self.phases.riders += writes.len() as u64;
        let mut new_segments = Vec::new();
        // Dedup, in the order the events came: against the index and the group itself.
        let queued: usize = jobs.iter().map(|j| j.events.len()).sum();
        // The new events, as (job, event) positions: the prepared events stay in their jobs
        // (a prepared event is a few hundred bytes; moving each one cost a copy) and are
        // dropped with them once answered.
        let mut fresh: Vec<(usize, usize)> = Vec::with_capacity(queued);
        let mut pending: BlindMap<(usize, [u8; 8])> =
            BlindMap::with_capacity_and_hasher(queued, Default::default());
        // Bytes of the group's records, to size its frame once.
        let mut record_bytes = 0usize;
        let mut slots: Vec<Vec<Slot>> = Vec::with_capacity(jobs.len());
        let mut tally = crate::counts::Tally::default();
        {
            let idx = sh.index.read().map_err(|_| StoreError::WriterGone)?;
            for (j, job) in jobs.iter().enumerate() {
                let mut job_slots = Vec::with_capacity(job.events.len());
                for (k, ev) in job.events.iter().enumerate() {
                    let mut h8 = [0u8; 8];
                    h8.copy_from_slice(&ev.hash[..8]);
                    if let Some(&(i, other)) = pending.get(&ev.dedup) {
                        job_slots.push(Slot::InGroup(i, other == h8, ev.account));
                    } else if let Some((seq, other)) = idx.dedup_get(&ev.dedup)? {
                        if other != h8 {
                            tracing::warn!(account = %ev.account, seq, "eventID already stored with different bytes; kept out (conflict)");
                        }
                        job_slots.push(Slot::Done(if other == h8 {
                            Appended::Duplicate(seq)
                        } else {
                            Appended::Conflict(seq)
                        }));
                    } else {
                        pending.insert(ev.dedup, (fresh.len(), h8));
                        record_bytes += match &ev.pack {
                            Pack::Run { run, index: 0 } => run.frame.len(),
                            _ => ev.compressed.len(),
                        };
                        job_slots.push(Slot::New(fresh.len()));
                        fresh.push((j, k));
                    }
                }
                slots.push(job_slots);
            }
        }
        // Sequence numbers account by account (each account's events in the order they came),
        // so that each account's events form runs that blocks of one segment can hold.
        let mut order: Vec<usize> = (0..fresh.len()).collect();
        order.sort_by_key(|&i| {
            let (j, k) = fresh[i];
            jobs[j].events[k].account
        });
        let mut seq_of = vec![0u64; fresh.len()];
        let mut block = BlockEncoder::new(sh.cfg.block_records);
        // The group's frame in the log: its blocks, then its leaf hashes.
        let (log_file, log_offset) = self.log.next_frame()?;
        // Records, at most two length bytes each, block headers and tags, then the leaves.
        let blocks = fresh.len() / sh.cfg.block_records.max(1) + self.open.len() + jobs.len() + 1;
        let mut frame = Frame::new(log_file, log_offset, std::mem::take(&mut self.frame_buf));
        frame
            .bytes
            .reserve(record_bytes + fresh.len() * (3 + 32) + blocks * 64);
        let now = now_ms();
        // Events of a run that is not stored whole are compressed again on their own.
        let mut repack = Repacker::default();
        let mut p = 0;
        while p < order.len() {
            let (j, k) = fresh[order[p]];
            let ev = &jobs[j].events[k];
            let (account, dict) = (ev.account, ev.dict_id);
            // Events of one run that follow each other here: one version 3 block (the run's
            // own frame if they are the whole run, else compressed again; a lone event of a
            // larger run goes on its own), if their segment can hold them.
            if let Some((run, members)) = run_at(jobs, &fresh, &order[p..])
                && (members.len() > 1 || is_whole(run, &members))
                && let Some((segment, key)) = self.segment_for(
                    sh,
                    account,
                    members.len() as u64,
                    now,
                    &mut batch,
                    &mut new_segments,
                )?
            {
                let n = members.len();
                let again;
                let run_frame = if is_whole(run, &members) {
                    &run.frame
                } else {
                    again = repack.again(sh, dict, run, &members)?;
                    &again
                };
                if let Some((first, value)) = block.finish()? {
                    frame.block(&mut batch, first, value)?;
                }
                let place = Place {
                    first: self.next_seq,
                    count: u16::try_from(n).unwrap_or(u16::MAX),
                    segment,
                    account: &account,
                    dict,
                };
                let (first, value) = block.seal_run(&place, &key, run_frame)?;
                frame.block(&mut batch, first, value)?;
                for &i in &order[p..p + n] {
                    seq_of[i] = self.next_seq;
                    self.next_seq += 1;
                    let (j, k) = fresh[i];
                    self.settle_one(sh, &mut jobs[j].events[k], &mut tally);
                }
                p += n;
                continue;
            }
            let i = order[p];
            let seq = self.next_seq;
            self.next_seq += 1;
            seq_of[i] = seq;
            let Some((segment, key)) =
                self.segment_for(sh, account, 1, now, &mut batch, &mut new_segments)?
            else {
                return Err(StoreError::Corrupt("no segment for one record".into()));
            };
            let alone;
            let compressed = match &ev.pack {
                Pack::Single => &ev.compressed,
                Pack::Run { run, index } => {
                    alone = repack.again(sh, dict, run, &[*index])?;
                    &alone
                }
            };
            if let Some((first, value)) =
                block.push(seq, segment, &account, dict, &key, compressed)?
            {
                frame.block(&mut batch, first, value)?;
            }
            self.settle_one(sh, &mut jobs[j].events[k], &mut tally);
            p += 1;
        }
        // The stored events in sequence order, their postings borrowed from their jobs.
        let jobs: &[Job] = jobs;
        let stored: Vec<StoredEntry<'_>> = order
            .iter()
            .map(|&i| {
                let (j, k) = fresh[i];
                let ev = &jobs[j].events[k];
                let seq = seq_of[i];
                let mut h8 = [0u8; 8];
                h8.copy_from_slice(&ev.hash[..8]);
                let leaf = event_leaf(seq, ev.account.as_str(), ev.event_id.as_str(), &ev.hash);
                (seq, ev.time, ev.dedup, h8, ev.account, &ev.postings, leaf)
            })
            .collect();
        if let Some((first, value)) = block.finish()? {
            frame.block(&mut batch, first, value)?;
        }
        frame.locate(&mut batch)?;
        let outcomes: Vec<AppendOutcome> = slots
            .into_iter()
            .map(|job_slots| AppendOutcome {
                results: job_slots
                    .into_iter()
                    .map(|slot| match slot {
                        Slot::New(i) => Appended::Stored(seq_of[i]),
                        Slot::InGroup(i, true, _) => Appended::Duplicate(seq_of[i]),
                        Slot::InGroup(i, false, account) => {
                            tracing::warn!(account = %account, seq = seq_of[i], "eventID already stored with different bytes; kept out (conflict)");
                            Appended::Conflict(seq_of[i])
                        }
                        Slot::Done(a) => a,
                    })
                    .collect(),
            })
            .collect();
        // The index chunk of this group; its accounts and postings by value are published
        // from it below.
        let chunk = if stored.is_empty() {
            None
        } else {
            let mut chunk = encode_chunk(first_seq, &stored);
            batch.insert(
                &key_bytes(CHUNK, first_seq)[..],
                std::mem::take(&mut chunk.bytes),
            );
            Some(chunk)
        };
        // The counters of what this group newly stores, in the same batch.
        let count_keys = crate::counts::stage(sh.provider.as_ref(), first_seq, tally, &mut batch)?;
        // The group's leaf hashes, and a checkpoint when one is due.
        let mut frontier = self.frontier.clone();
        let group_leaves: Vec<Hash> = stored.iter().map(|e| e.6).collect();
        if !stored.is_empty() {
            let at = frame.offset + frame.bytes.len() as u64;
            for leaf in &group_leaves {
                frame.bytes.extend_from_slice(leaf);
            }
            let count = u32::try_from(group_leaves.len()).unwrap_or(u32::MAX);
            batch.insert(
                &key_bytes(HASHES, first_seq)[..],
                crate::log::leaves_locator(count, frame.file, at),
            );
            crate::tree::push_leaves(&mut frontier, &group_leaves, |height, index, h| {
                batch.insert(&crate::tree::subtree_key(height, index)[..], &h[..]);
            });
        }
        let forced = jobs.iter().any(|j| j.checkpoint);
        let new = frontier.size().saturating_sub(self.last_checkpoint_size);
        let due = new >= sh.cfg.checkpoint_records
            || (new > 0 && self.last_checkpoint_at.elapsed() >= sh.cfg.checkpoint_interval)
            || (forced && new > 0);
        if due {
            self.checkpoint(sh, &frontier, &mut batch);
        }
        batch.insert(meta_key("next_seq"), self.next_seq.to_be_bytes().to_vec());
        batch.insert(
            meta_key("next_segment"),
            self.next_segment.to_be_bytes().to_vec(),
        );
        // A dictionary, once enough samples are in and it is trained.
        let mut new_dict = None;
        if let Some(d) = self.dict.poll(
            sh.dict_version.load(Ordering::Acquire),
            sh.cfg.dict_train_after,
        ) {
            batch.insert(dict_key(1), seal_dict(sh.provider.as_ref(), 1, d)?);
            new_dict = Some(d.clone());
        }

        let files = sh.files()?;
        self.phases.build += t_commit.elapsed();
        let t_io = std::time::Instant::now();
        // The frame first, synced: sled's batch, the commit point, names it.
        if !frame.bytes.is_empty() {
            crate::crashpoint::hit("group-before-log");
            self.log.write(&frame.bytes)?;
        }
        self.phases.log += t_io.elapsed();
        let t_io = std::time::Instant::now();
        // The writes riding on it, and those that waited for a group, taken as late as
        // possible, in the same batch.
        for w in writes {
            w.add_to(&mut batch);
        }
        self.take_riders(sh, &mut batch);
        crate::crashpoint::hit("group-before-apply");
        files
            .tree
            .apply_batch(batch)
            .map_err(|source| StoreError::Write { source })?;
        crate::crashpoint::hit("group-after-apply");
        files
            .db
            .flush()
            .map_err(|source| StoreError::Write { source })?;
        crate::crashpoint::hit("group-after-flush");
        self.phases.sled += t_io.elapsed();
        let t_pub = std::time::Instant::now();
        self.log.committed(frame.bytes.len() as u64);
        if frame.bytes.capacity() <= FRAME_KEEP {
            self.frame_buf = std::mem::take(&mut frame.bytes);
        }
        self.frontier = frontier.clone();
        self.counts.committed(count_keys);

        // Durable: publish.
        {
            let mut segs = sh.segments.write().map_err(|_| StoreError::WriterGone)?;
            let mut keys = sh.keys.lock().map_err(|_| StoreError::WriterGone)?;
            for (id, info, key) in new_segments {
                segs.insert(id, info);
                keys.insert(id, key);
            }
        }
        {
            let mut idx = sh.index.write().map_err(|_| StoreError::WriterGone)?;
            idx.tree.apply(frontier, &group_leaves);
            for (seq, time, dedup, h8, ..) in stored {
                idx.publish(seq, time, dedup, h8);
            }
            if let Some(chunk) = chunk {
                idx.accounts.extend(chunk.accounts);
                for (blind, locals) in &chunk.postings {
                    idx.post_positions(*blind, first_seq, locals);
                }
            }
        }
        if let Some(d) = new_dict {
            crate::crashpoint::hit("dict-after-flush");
            self.dict.stored();
            sh.dicts
                .write()
                .map_err(|_| StoreError::WriterGone)?
                .install(1, d);
            sh.dict_version.store(1, Ordering::Release);
        }
        self.phases.publish += t_pub.elapsed();
        Ok(outcomes)
    }
}

/// The background work on the index: one memtable being written as a run, one merge.
#[derive(Debug, Default)]
pub(super) struct IndexJobs {
    flush: Option<crate::runs::Job>,
    merge: Option<crate::runs::Job>,
}

impl IndexJobs {
    /// Registers what finished, then starts what is due: the memtable once it holds
    /// `index_run_events`, a merge once runs are due for one. With `wait`, waits for the
    /// memtable being written instead of starting anything.
    fn tend(&mut self, sh: &Shared, wait: bool) -> Result<(), StoreError> {
        use crate::runs::Job;
        let flushed = match self.flush.take() {
            Some(job) if wait => Some(job.wait()),
            Some(job) => match job.poll() {
                Some(r) => Some(r),
                None => {
                    self.flush = Some(job);
                    None
                }
            },
            None => None,
        };
        let merged = match self.merge.take() {
            Some(job) => match job.poll() {
                Some(r) => Some(r),
                None => {
                    self.merge = Some(job);
                    None
                }
            },
            None => None,
        };
        for made in [flushed, merged].into_iter().flatten() {
            Self::install(sh, made)?;
        }
        if wait {
            return Ok(());
        }
        if self.flush.is_none() {
            let mut idx = sh.index.write().map_err(|_| StoreError::WriterGone)?;
            let frozen = match &idx.frozen {
                Some(f) => Some(f.clone()),
                None if idx.mem.len() >= sh.cfg.index_run_events => idx.freeze(),
                None => None,
            };
            drop(idx);
            if let Some(mem) = frozen {
                self.flush = Some(Job::flush(&sh.path, mem)?);
            }
        }
        if self.merge.is_none() {
            let idx = sh.index.read().map_err(|_| StoreError::WriterGone)?;
            let due =
                crate::runs::due_merge(&idx.runs, sh.cfg.index_run_events, sh.cfg.max_run_events);
            let parts = due.map(|at| idx.runs[at..at + crate::runs::FANOUT].to_vec());
            drop(idx);
            if let Some(parts) = parts {
                self.merge = Some(Job::merge(&sh.path, parts)?);
            }
        }
        Ok(())
    }

    /// Registers what a job made and installs it in the index; a failed write is said (the
    /// frozen memtable stays and serves, and is written again; the chunks keep it durable).
    fn install(sh: &Shared, made: Result<crate::runs::Made, StoreError>) -> Result<(), StoreError> {
        use crate::runs::Made;
        match made {
            Ok(Made::Flushed(run)) => {
                let files = sh.files()?;
                crate::runs::register(&files.tree, &files.db, &run)?;
                tracing::debug!(first = run.first, events = run.count, "index run written");
                sh.index
                    .write()
                    .map_err(|_| StoreError::WriterGone)?
                    .install_run(Arc::new(run));
            }
            Ok(Made::Merged(run, parts)) => {
                let files = sh.files()?;
                crate::runs::register_merge(&files.tree, &files.db, &run, &parts)?;
                tracing::debug!(
                    first = run.first,
                    events = run.count,
                    parts = parts.len(),
                    "index runs merged"
                );
                sh.index
                    .write()
                    .map_err(|_| StoreError::WriterGone)?
                    .install_merge(Arc::new(run), &parts);
            }
            // The frozen memtable stays (and serves); the next `tend` writes it again. The
            // chunks keep it durable meanwhile.
            Err(e) => tracing::warn!(error = %e, "writing an index run failed; it is retried"),
        }
        Ok(())
    }

    /// Finishes the index work instead of leaving it to the next writer: waits for the jobs
    /// running, writes the memtable as a run however small (the next open then loads no index
    /// chunks into memory), then makes every merge due, one at a time, until none is.
    fn settle(&mut self, sh: &Shared) -> Result<(), StoreError> {
        loop {
            // A failed job is not retried here: the next writer starts it again.
            for job in [self.flush.take(), self.merge.take()].into_iter().flatten() {
                Self::install(sh, Ok(job.wait()?))?;
            }
            let frozen = sh
                .index
                .write()
                .map_err(|_| StoreError::WriterGone)?
                .freeze();
            if let Some(mem) = frozen {
                self.flush = Some(crate::runs::Job::flush(&sh.path, mem)?);
                continue;
            }
            let idx = sh.index.read().map_err(|_| StoreError::WriterGone)?;
            let due =
                crate::runs::due_merge(&idx.runs, sh.cfg.index_run_events, sh.cfg.max_run_events);
            let parts = due.map(|at| idx.runs[at..at + crate::runs::FANOUT].to_vec());
            drop(idx);
            let Some(parts) = parts else {
                return Ok(());
            };
            tracing::debug!(parts = parts.len(), "merging index runs before closing");
            self.merge = Some(crate::runs::Job::merge(&sh.path, parts)?);
        }
    }

    /// Stops running jobs and waits for them; what they wrote is removed, never registered.
    fn abandon(&mut self) {
        for job in [self.flush.take(), self.merge.take()].into_iter().flatten() {
            job.cancel();
        }
    }
}
