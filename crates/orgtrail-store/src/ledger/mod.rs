//! The sled-backed ledger: open, append (through the writer thread), read, count.
//!
//! One concern per module:
//! * [`config`]: [`LedgerConfig`], [`Health`], the free-space reserve.
//! * [`backend`]: opening sled, the open database, free space. (The recovery, verification and
//!   Merkle modules of the crate still read the sled tree directly.)
//! * [`prepare`]: [`Preparer`] and [`Prepared`]: compression and blind index values, on any thread.
//! * `small`: the blind values and eventID a prepared event carries inline.
//! * [`writer`]: the writer thread: reserve checks, group commit, recovery after a failed
//!   write, checkpoints, segment choice.
//! * [`records`]: record blocks (`r` values): their byte layout, encoding, reading records.
//! * [`chunk`]: index chunks (`x` values): their byte layout, encoding, loading.
//! * [`segments`]: segments (`s` values) and their data keys, rewrapping under a new master key.
//! * [`dicts`]: zstd dictionaries (`m dict/<id>` values): sealing, opening, decompressing, training.
//! * [`load`](mod@load): the in-memory state read from the files at open and after recovery.
//! * [`proofs`]: the Merkle log's head, proofs and signed checkpoints.
//! * [`store`]: the ledger as an [`EventStore`](crate::EventStore), for the collector and the
//!   conformance suite.
//!
//! # Meta values (`m <name>`), written at creation and by every group commit
//!
//! | key | value |
//! |---|---|
//! | `m format` | format version (u64 BE) |
//! | `m blind_key` | the blind-index key, wrapped by the master key (64 bytes, context `blind-index-key`) |
//! | `m store_id` | 16 random bytes as 32 lowercase hex digits; the checkpoint origin is `orgtrail/<id>` |
//! | `m next_seq`, `m next_segment` | the next sequence number / segment id (u64 BE) |
//! | `m attrs_from` | the first sequence number indexed under eventCategory and insightType (u64 BE): 1 for a store created with them, else the next sequence number when a version indexing them first opened the store for writing (the events before it were indexed without them, see [`Attr::indexed_late`]) |

mod backend;
mod chunk;
mod config;
mod dicts;
mod load;
mod packing;
mod prepare;
mod proofs;
mod records;
mod riders;
mod segments;
mod small;
mod store;
mod telemetry;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use orgtrail_core::{AccountId, CloudTrailEvent, Timestamp};
use orgtrail_crypto::blind::BLIND_LEN;
use orgtrail_crypto::hash::sha256;
use orgtrail_crypto::{BlindIndexer, DataKey, KeyProvider, WrappedKey};
use tokio::sync::{mpsc, oneshot};
use zeroize::Zeroizing;

use crate::error::StoreError;
use crate::format::{self, FORMAT_VERSION, meta_key};
use crate::index::{Blind, Cond, Index};
use crate::query::{Attr, Cursor, Page, Query, StoredEvent};

pub use backend::free_bytes;
pub use config::{DEFAULT_RESERVE, Health, LedgerConfig};
pub use prepare::{Prepared, Preparer};
pub use telemetry::{COMMIT_BUCKETS, CommitLatency, WRITER_QUEUE, WriterStats};

pub(crate) use chunk::load_chunk;
pub(crate) use records::{block_records, block_v2, next_record};
pub(crate) use riders::Writes;
pub(crate) use segments::decode_segment;

use crate::kv::{Batch, Tree};
use backend::Files;
use dicts::Dicts;
use load::load;
use prepare::{BLIND_CACHE_MAX, attribute_values, cacheable, dedup_blind};
use segments::{BLIND_KEY_CONTEXT, SegmentInfo};
use writer::WriterState;

/// Hits a decrypting count selects at a time.
const SCAN_PAGE: usize = 4096;

/// How long closing waits for the writer to finish what is queued.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long closing waits when the index is settled at close
/// ([`LedgerConfig::settle_index_at_close`]): merging the largest runs (16M events) takes
/// minutes on a slow disk.
const SETTLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// What happened to one event of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Newly stored at this sequence number.
    Stored(u64),
    /// Already stored with the same bytes, at this sequence number.
    Duplicate(u64),
    /// Its (account, eventID) is already stored with different bytes; kept out.
    Conflict(u64),
}

/// The outcome of one append, in the order of the events given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    pub results: Vec<Appended>,
}

impl AppendOutcome {
    pub fn stored(&self) -> usize {
        self.count(|a| matches!(a, Appended::Stored(_)))
    }
    pub fn duplicates(&self) -> usize {
        self.count(|a| matches!(a, Appended::Duplicate(_)))
    }
    pub fn conflicts(&self) -> usize {
        self.count(|a| matches!(a, Appended::Conflict(_)))
    }
    fn count(&self, f: impl Fn(&Appended) -> bool) -> usize {
        self.results.iter().filter(|a| f(a)).count()
    }
}

/// Counts of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub events: u64,
    pub segments: u64,
    pub accounts: usize,
}

/// What the ledger, its preparers and its writer thread share.
struct Shared {
    /// The checkpoint origin line: `orgtrail/<store id>`.
    origin: String,
    /// Unique per opened ledger in this process (never reused, unlike an address).
    instance: u64,
    path: PathBuf,
    /// The open sled database; `None` while the writer reopens it after a write failure (sled
    /// keeps failing every operation once one of its writes has failed).
    files: RwLock<Option<Files>>,
    health: Mutex<Health>,
    provider: Arc<dyn KeyProvider>,
    blinder: BlindIndexer,
    index: RwLock<Index>,
    /// Reads record blocks and leaf hashes from the record log.
    log: crate::log::LogReader,
    segments: RwLock<HashMap<u64, SegmentInfo>>,
    keys: Mutex<HashMap<u64, Arc<DataKey>>>,
    dicts: RwLock<Dicts>,
    dict_version: AtomicU32,
    /// Decoded hours of counters.
    counts_cache: Arc<crate::counts::Cache>,
    /// Group-commit times and the last checkpoint, for metrics.
    telemetry: telemetry::Telemetry,
    /// `m attrs_from`: the first seq indexed under the attributes indexed late
    /// ([`Attr::indexed_late`]).
    attrs_from: u64,
    cfg: LedgerConfig,
    /// Durable writes of the store's own state waiting to ride on the next group commit.
    riders: riders::Riders,
}

impl Shared {
    fn files(&self) -> Result<Files, StoreError> {
        let g = self.files.read().map_err(|_| StoreError::WriterGone)?;
        g.clone().ok_or_else(|| StoreError::Recovering {
            reason: self.fault_reason(),
        })
    }
    fn tree(&self) -> Result<Tree, StoreError> {
        Ok(self.files()?.tree)
    }
    fn fault_reason(&self) -> String {
        match self.health.lock().map(|h| h.clone()) {
            Ok(Health::Faulted { reason } | Health::Stuck { reason }) => reason,
            _ => "reopening the store".into(),
        }
    }
    fn set_health(&self, h: Health) {
        if let Ok(mut g) = self.health.lock() {
            *g = h;
        }
    }
    /// Bytes free for this process on the data directory's filesystem.
    fn free_bytes(&self) -> Result<u64, StoreError> {
        free_bytes(&self.path)
    }
    /// Refuses when the filesystem is below the reserve.
    fn check_space(&self) -> Result<(), StoreError> {
        let reserve = self.cfg.reserve_bytes;
        if reserve == 0 {
            return Ok(());
        }
        let free = self.free_bytes()?;
        if free < reserve {
            return Err(StoreError::DiskFull {
                path: self.path.display().to_string(),
                free,
                reserve,
            });
        }
        Ok(())
    }
}

struct Job {
    events: Vec<Prepared>,
    /// Write a checkpoint with this group even if none is due.
    checkpoint: bool,
    /// A write of the store's own state (the alert outbox and its notes) that rides on this
    /// group: applied after the group's batch and made durable by the group's flush, so that
    /// it costs no flush of its own (see [`Ledger::write_with_next_commit`]).
    writes: Option<riders::Writes>,
    reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
}

impl Job {
    /// No events and no checkpoint: at most a write of the store's own state (or a nudge to
    /// commit the writes waiting in [`riders::Riders`]).
    fn only_writes(&self) -> bool {
        self.events.is_empty() && !self.checkpoint
    }
}

/// The append-only ledger. Cheap to share (`Arc`); appends go through one writer thread that
/// commits in groups and answers only after the group is durable.
pub struct Ledger {
    shared: Arc<Shared>,
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    /// Receives once the writer thread has finished.
    writer: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

fn be_u64(v: &[u8]) -> Result<u64, StoreError> {
    let a: [u8; 8] = v
        .try_into()
        .map_err(|_| StoreError::Corrupt("meta value is not 8 bytes".into()))?;
    Ok(u64::from_be_bytes(a))
}

impl Ledger {
    /// Opens (or creates) the store in `dir` with keys from `provider`. Cuts a torn tail that
    /// an interrupted write left (see the `recover` module; a read-only open skips it without
    /// writing), reads every index chunk to rebuild the in-memory index, and checks that the key
    /// provider can open the store before anything is written.
    pub fn open(
        dir: &Path,
        provider: Arc<dyn KeyProvider>,
        cfg: LedgerConfig,
    ) -> Result<Self, StoreError> {
        let path_s = dir.display().to_string();
        if cfg.read_only && !dir.join("conf").exists() {
            return Err(StoreError::NoStore { path: path_s });
        }
        crate::recover::remove_unfinished_snapshots(dir)?;
        let db = crate::kv::Db::open(dir, cfg.cache_bytes)?;
        let tree = db.open_tree("ledger")?;
        // Format.
        match tree.get(meta_key("format"))? {
            Some(v) => {
                let found = u32::try_from(be_u64(&v)?).unwrap_or(u32::MAX);
                let older = found == 2 || found == 3;
                if older && !cfg.read_only {
                    // Format 3 reads format 2's values as they are (see `log`), and format 4
                    // those of formats 2 and 3 (see `tree`): from now on groups go to the
                    // record log, and Merkle tiles are of 4,096 leaves, which older readers do
                    // not know.
                    tree.insert(
                        meta_key("format"),
                        u64::from(FORMAT_VERSION).to_be_bytes().to_vec(),
                    )?;
                    db.flush()?;
                } else if found != FORMAT_VERSION && !older {
                    return Err(StoreError::Format {
                        path: path_s,
                        found,
                        expected: FORMAT_VERSION,
                    });
                }
            }
            None => {
                if tree.iter().next().is_some() {
                    return Err(StoreError::Corrupt("store has data but no format".into()));
                }
            }
        }
        // The blind index key: wrapped by the master key, created with the store.
        let blind_key: Zeroizing<[u8; 32]> = match tree.get(meta_key("blind_key"))? {
            Some(w) => provider.unwrap(&WrappedKey::from_bytes(&w)?, BLIND_KEY_CONTEXT)?,
            None if cfg.read_only => return Err(StoreError::NoStore { path: path_s }),
            None => {
                let k = BlindIndexer::generate_key()?;
                let wrapped = provider.wrap(&k, BLIND_KEY_CONTEXT)?;
                let mut b = Batch::default();
                b.insert(
                    meta_key("format"),
                    u64::from(FORMAT_VERSION).to_be_bytes().to_vec(),
                );
                b.insert(meta_key("blind_key"), wrapped.to_bytes());
                let mut id = [0u8; 16];
                orgtrail_crypto::random_bytes(&mut id)?;
                let id_hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
                b.insert(meta_key("store_id"), id_hex.into_bytes());
                tree.apply_batch(b)?;
                db.flush()?;
                k
            }
        };
        let blinder = BlindIndexer::new(&blind_key);
        let plan = crate::recover::plan(&tree)?;
        if !cfg.read_only {
            crate::recover::apply(&tree, &db, &plan)?;
        }
        let loaded = load(
            &tree,
            provider.as_ref(),
            dir,
            !cfg.read_only,
            plan.end,
            cfg.index_filter_bytes,
        )?;
        let origin = match tree.get(meta_key("store_id"))? {
            Some(id) => format!("orgtrail/{}", String::from_utf8_lossy(&id)),
            None => return Err(StoreError::Corrupt("store has no id".into())),
        };

        let attrs_from = attrs_from(&tree, loaded.next_seq, cfg.read_only)?;
        let dict_version = AtomicU32::new(loaded.dicts.current);
        static INSTANCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let read_only = cfg.read_only;
        let next_seq = loaded.next_seq;
        let shared = Arc::new(Shared {
            origin,
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
            path: dir.to_owned(),
            files: RwLock::new(Some(Files { db, tree })),
            health: Mutex::new(Health::Ready),
            provider,
            blinder,
            index: RwLock::new(loaded.index),
            log: crate::log::LogReader::new(dir),
            segments: RwLock::new(loaded.segments),
            keys: Mutex::new(HashMap::new()),
            dicts: RwLock::new(loaded.dicts),
            dict_version,
            counts_cache: Arc::new(crate::counts::Cache::new(cfg.count_cache_bytes)),
            telemetry: telemetry::Telemetry::default(),
            attrs_from,
            cfg,
            riders: riders::Riders::default(),
        });
        if read_only {
            return Ok(Ledger {
                shared,
                tx: Mutex::new(None),
                writer: Mutex::new(None),
            });
        }
        // A few batches wait for the writer (it commits whatever is queued as one group).
        let (tx, rx) = mpsc::channel::<Job>(WRITER_QUEUE);
        let writer_shared = shared.clone();
        let mut state = WriterState::load(&writer_shared, next_seq)?;
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("orgtrail-ledger-writer".into())
            .spawn(move || {
                state.run(&writer_shared, rx);
                let _ = done_tx.send(());
            })
            .map_err(|e| StoreError::Corrupt(format!("cannot start writer thread: {e}")))?;
        Ok(Ledger {
            shared,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(done_rx)),
        })
    }

    /// Whether appends are taken now. The free space is checked against the reserve at each
    /// call (one `statvfs`), so a disk below it is reported before an append meets it, and
    /// readiness returns as soon as space does. A writer thread that stopped (it never does
    /// while the ledger is open, short of a bug) is a fault.
    pub fn health(&self) -> Health {
        let h = self
            .shared
            .health
            .lock()
            .map(|h| h.clone())
            .unwrap_or(Health::Faulted {
                reason: "the ledger's state lock is poisoned".into(),
            });
        if matches!(h, Health::Ready | Health::DiskFull { .. }) {
            let writer_stopped = self
                .tx
                .lock()
                .map(|tx| tx.as_ref().is_some_and(mpsc::Sender::is_closed))
                .unwrap_or(true);
            if writer_stopped {
                return Health::Faulted {
                    reason: "the ledger's writer thread has stopped".into(),
                };
            }
            match self.shared.check_space() {
                Ok(()) => return Health::Ready,
                Err(StoreError::DiskFull { free, reserve, .. }) => {
                    return Health::DiskFull { free, reserve };
                }
                Err(_) => {}
            }
        }
        h
    }

    /// The writer's queue, its group-commit times and the last checkpoint. Cheap: no I/O.
    pub fn writer_stats(&self) -> WriterStats {
        let depth = self
            .tx
            .lock()
            .ok()
            .and_then(|tx| {
                tx.as_ref()
                    .map(|tx| (tx.max_capacity() - tx.capacity()) as u64)
            })
            .unwrap_or(0);
        self.shared.telemetry.snapshot(depth)
    }

    /// Bytes the store's files take on disk (sled's files, the record log, the index runs).
    /// Blocking: lists the data directory (a few dozen files), reads no key.
    pub fn disk_bytes(&self) -> Result<u64, StoreError> {
        telemetry::disk_bytes(&self.shared.path).map_err(|e| {
            StoreError::Storage(crate::kv::BackendError::io(std::io::Error::other(format!(
                "cannot list {}: {e}",
                self.shared.path.display()
            ))))
        })
    }

    /// A per-thread preparer (it owns a zstd compressor).
    pub fn preparer(&self) -> Preparer {
        Preparer::new(self.shared.clone())
    }

    fn sender(&self) -> Result<mpsc::Sender<Job>, StoreError> {
        self.tx
            .lock()
            .map_err(|_| StoreError::WriterGone)?
            .clone()
            .ok_or(StoreError::WriterGone)
    }

    /// Appends events; answers once they are durable. For async callers.
    pub async fn append(&self, events: Vec<Prepared>) -> Result<AppendOutcome, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.sender()?
            .send(Job {
                events,
                checkpoint: false,
                writes: None,
                reply,
            })
            .await
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Queues an append from a thread that is not running an async runtime, without waiting
    /// for it: the receiver answers once the events are durable. Lets a bulk importer keep
    /// preparing the next batch while the writer commits this one.
    pub fn submit_blocking(
        &self,
        events: Vec<Prepared>,
    ) -> Result<oneshot::Receiver<Result<AppendOutcome, StoreError>>, StoreError> {
        self.submit_job_blocking(events, false)
    }

    fn submit_job_blocking(
        &self,
        events: Vec<Prepared>,
        checkpoint: bool,
    ) -> Result<oneshot::Receiver<Result<AppendOutcome, StoreError>>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.sender()?
            .blocking_send(Job {
                events,
                checkpoint,
                writes: None,
                reply,
            })
            .map_err(|_| StoreError::WriterGone)?;
        Ok(rx)
    }

    /// Applies `batch` (writes to the store's tree, atomic together) with the writer's next group
    /// commit and returns once that group's flush made it durable. A write that must be
    /// durable (an alert recorded, a delivery noted) thus costs no flush of its own while
    /// events are being appended: it shares the group's, instead of a second sync of the
    /// same files competing with it. With no append queued the writer commits it at once, as
    /// a group of its own (one flush, as a direct write would). Blocking: from a thread that
    /// is not running an async runtime.
    pub(crate) fn write_with_next_commit(&self, batch: Writes) -> Result<(), StoreError> {
        let tx = self.sender()?;
        let queued = tx.max_capacity() - tx.capacity();
        if queued == 0 && !self.shared.riders.appends_preparing() {
            // No append on its way: a group of its own, now.
            let (reply, rx) = oneshot::channel();
            tx.blocking_send(Job {
                events: Vec::new(),
                checkpoint: false,
                writes: Some(batch),
                reply,
            })
            .map_err(|_| StoreError::WriterGone)?;
            return rx
                .blocking_recv()
                .map_err(|_| StoreError::WriterGone)?
                .map(|_| ());
        }
        let rx = self.shared.riders.wait(batch);
        match rx.recv_timeout(riders::RIDE_WAIT) {
            Ok(r) => r,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(StoreError::WriterGone),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                // The append did not come: the writer commits what waits, as a group of its own.
                let (reply, _) = oneshot::channel();
                tx.blocking_send(Job {
                    events: Vec::new(),
                    checkpoint: false,
                    writes: None,
                    reply,
                })
                .map_err(|_| StoreError::WriterGone)?;
                rx.recv().map_err(|_| StoreError::WriterGone)?
            }
        }
    }

    /// Appends events from a thread that is not running an async runtime.
    pub fn append_blocking(&self, events: Vec<Prepared>) -> Result<AppendOutcome, StoreError> {
        self.submit_blocking(events)?
            .blocking_recv()
            .map_err(|_| StoreError::WriterGone)?
    }

    /// Stops the writer after the appends already queued, and flushes.
    pub fn close(&self) -> Result<(), StoreError> {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let done = self.writer.lock().ok().and_then(|mut h| h.take());
        // Settling the index waits for its merges, which take longer than any write.
        let timeout = if self.shared.cfg.settle_index_at_close {
            SETTLE_TIMEOUT
        } else {
            CLOSE_TIMEOUT
        };
        if let Some(done) = done
            && let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = done.recv_timeout(timeout)
        {
            // A write stuck in the filesystem (a full or failing disk) must not hold shutdown:
            // everything acknowledged is already durable, and the next open cuts any torn tail.
            tracing::error!(
                seconds = timeout.as_secs(),
                "the ledger writer did not finish in time (a write is stuck); closing without it"
            );
            return Ok(());
        }
        if let Ok(files) = self.shared.files() {
            files.db.flush()?;
        }
        Ok(())
    }

    /// The checkpoint origin of this store: `orgtrail/<store id>`.
    pub fn origin(&self) -> &str {
        &self.shared.origin
    }

    /// Checks that the dedup, time and attribute indexes hold the record at `seq` as they must.
    pub(crate) fn index_problems(
        &self,
        seq: u64,
        event: &CloudTrailEvent,
        account: AccountId,
        cache: &mut HashMap<(Attr, String), Blind>,
        posted: &mut crate::index::PostedCache,
        expected_postings: &mut u64,
    ) -> Result<Vec<String>, StoreError> {
        let mut problems = Vec::new();
        let f = event.fields();
        let b = &self.shared.blinder;
        let idx = self
            .shared
            .index
            .read()
            .map_err(|_| StoreError::WriterGone)?;
        let dedup = dedup_blind(b, &account, &f.event_id);
        let h = sha256(event.bytes());
        match idx.dedup_get(&dedup)? {
            Some((s, h8)) if s == seq && h8[..] == h[..8] => {}
            _ => problems.push(format!(
                "record {seq}: its dedup entry is missing or points elsewhere"
            )),
        }
        if idx.time_of(seq)? != Some(f.event_time.millis()) {
            problems.push(format!(
                "record {seq}: the time index disagrees with its eventTime"
            ));
        }
        let mut seen: Vec<Blind> = Vec::new();
        for (attr, value) in attribute_values(f, &account) {
            if attr.indexed_late() && seq < self.shared.attrs_from {
                // Stored before this attribute was indexed.
                continue;
            }
            let p = if cacheable(attr) {
                if cache.len() > BLIND_CACHE_MAX {
                    cache.clear();
                }
                *cache
                    .entry((attr, value.to_owned()))
                    .or_insert_with(|| b.blind(attr.tag(), value.as_bytes()))
            } else {
                b.blind(attr.tag(), value.as_bytes())
            };
            if seen.contains(&p) {
                continue;
            }
            seen.push(p);
            let present = idx.posted(&p, seq, posted)?;
            if !present {
                problems.push(format!("record {seq}: missing from the {attr:?} index"));
            }
        }
        *expected_postings += seen.len() as u64;
        Ok(problems)
    }

    /// Entries in the attribute index.
    pub(crate) fn posting_count(&self) -> Result<u64, StoreError> {
        let idx = self
            .shared
            .index
            .read()
            .map_err(|_| StoreError::WriterGone)?;
        idx.posting_total()
    }

    /// Where the store's bytes go, by key prefix and file. Scans every key: for benchmarks
    /// and operators, not for request paths.
    pub fn disk_usage(&self) -> Result<crate::usage::DiskUsage, StoreError> {
        crate::usage::scan(&self.shared.files()?.db, "ledger", &self.shared.path)
    }

    /// Counts.
    pub fn stats(&self) -> Stats {
        let (events, accounts) = self
            .shared
            .index
            .read()
            .map(|i| (i.len(), i.accounts.len()))
            .unwrap_or((0, 0));
        let segments = self
            .shared
            .segments
            .read()
            .map(|s| s.len() as u64)
            .unwrap_or(0);
        Stats {
            events,
            segments,
            accounts,
        }
    }

    /// Runs a query: newest first, one page. Blocking (reads sled); async callers use
    /// `spawn_blocking`.
    pub fn query(&self, q: &Query) -> Result<Page, StoreError> {
        let limit = q.page_size();
        let after = q.page_token.as_deref().map(Cursor::decode).transpose()?;
        let hits = self.select(q, after, limit + 1)?;
        let more = hits.len() > limit;
        let wanted: Vec<(Option<i64>, u64)> = hits
            .iter()
            .take(limit)
            .map(|&(time, seq)| (Some(time), seq))
            .collect();
        let events = self.read_many(&wanted)?;
        let mut page = Page::new(events, more);
        page.indexed_from = self.incomplete_from(q);
        Ok(page)
    }

    /// `Some(n)` when `q` filters on an attribute this store indexes only from seq `n` on,
    /// and events were stored before `n` (see [`Page::indexed_from`]).
    fn incomplete_from(&self, q: &Query) -> Option<u64> {
        let from = self.shared.attrs_from;
        (from > 1 && q.filters.iter().any(|(a, _)| a.indexed_late())).then_some(from)
    }

    /// The first seq indexed under the attributes indexed late ([`Attr::indexed_late`]):
    /// 1 for a store created by a version that indexes them.
    pub fn attrs_indexed_from(&self) -> u64 {
        self.shared.attrs_from
    }

    /// Counts the events matching `q` (paging aside), grouped: whole UTC hours from the
    /// counters kept at append time, without opening a record; what they cannot serve (the
    /// edges of a range not on whole hours, a filter on another attribute, an eventID) by a
    /// scan that decrypts at most `count_scan_limit` events. The answer says which part was
    /// which. Blocking.
    pub fn count(
        &self,
        q: &Query,
        by: &[crate::query::Group],
        max_groups: usize,
    ) -> Result<crate::query::Counts, StoreError> {
        self.count_at_most(q, by, max_groups, self.shared.cfg.count_scan_limit)
    }

    /// Like [`Ledger::count`], the scan decrypting at most `max_events` events.
    pub fn count_at_most(
        &self,
        q: &Query,
        by: &[crate::query::Group],
        max_groups: usize,
        max_events: usize,
    ) -> Result<crate::query::Counts, StoreError> {
        let sh = &self.shared;
        let complete = crate::counts::cover_all(&sh.tree()?)?;
        let mut counts = crate::counts::answer(
            q,
            by,
            max_groups,
            max_events,
            complete,
            |hours, sel, out| {
                let published = self.stats().events;
                crate::counts::count_hours(
                    &sh.tree()?,
                    sh.provider.as_ref(),
                    &sh.counts_cache,
                    hours,
                    published,
                    sel,
                    out,
                )
            },
            |sq, limit, out| self.scan_into(sq, by, limit, out),
        )?;
        // A filter on an attribute indexed late is never served by the counters: the scan
        // selects through the index, which does not hold it for the oldest events.
        if let (Some(from), Some(scan)) = (self.incomplete_from(q), counts.scan.as_mut()) {
            scan.reason = format!(
                "{}; events stored before seq {from} are not indexed by eventCategory or insightType and were not counted",
                scan.reason
            );
        }
        Ok(counts)
    }

    /// Counts by decrypting every matching event, at most `max_events` of them (the newest):
    /// past that the counts cover only those, and `limit_hit` says so. What [`Ledger::count`]
    /// did before counters; kept as the benchmark's baseline.
    pub fn count_by_scan(
        &self,
        q: &Query,
        by: &[crate::query::Group],
        max_groups: usize,
        max_events: usize,
    ) -> Result<crate::query::Counts, StoreError> {
        let mut c = crate::query::Counter::default();
        let (n, limit_hit) = self.scan_into(q, by, max_events, &mut c)?;
        let mut counts = c.finish(max_groups);
        counts.limit_hit = limit_hit;
        counts.scan = Some(crate::query::ScanPart {
            reason: "counted by decrypting".into(),
            events: n,
            limit: max_events as u64,
        });
        Ok(counts)
    }

    /// Decrypts at most `max_events` events matching `q` (the newest) into `c`: (how many,
    /// whether more matched).
    fn scan_into(
        &self,
        q: &Query,
        by: &[crate::query::Group],
        max_events: usize,
        c: &mut crate::query::Counter,
    ) -> Result<(u64, bool), StoreError> {
        // A page of hits at a time: memory holds one page, whatever `max_events` is (a scan
        // of everything once collected 16 bytes per stored event before reading any).
        let mut after: Option<Cursor> = None;
        let mut n = 0usize;
        loop {
            let take = (max_events - n).min(SCAN_PAGE);
            if take == 0 {
                // The limit is reached: say whether anything more matched.
                let more = !self.select(q, after, 1)?.is_empty();
                return Ok((n as u64, more));
            }
            let hits = self.select(q, after, take)?;
            let wanted: Vec<(Option<i64>, u64)> =
                hits.iter().map(|&(time, seq)| (Some(time), seq)).collect();
            for e in self.read_many(&wanted)? {
                let seq = e.seq;
                let ev = orgtrail_core::CloudTrailEvent::parse(e.bytes).map_err(|err| {
                    StoreError::Corrupt(format!("record {seq} no longer parses: {err}"))
                })?;
                c.add(by, &ev, &e.account);
            }
            n += hits.len();
            match hits.last() {
                Some(&(time, seq)) if hits.len() == take => after = Some(Cursor { time, seq }),
                _ => return Ok((n as u64, false)),
            }
        }
    }

    /// Counter values on disk: (deltas, merged hours, bytes of keys and values).
    pub fn counter_footprint(&self) -> Result<(u64, u64, u64), StoreError> {
        crate::counts::footprint(&self.shared.tree()?)
    }

    /// The (time, seq) of up to `limit` events matching `q`, newest first, after `after`.
    fn select(
        &self,
        q: &Query,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<(i64, u64)>, StoreError> {
        let start = q.start.map_or(i64::MIN, Timestamp::millis);
        let end = q.end.map_or(i64::MAX, Timestamp::millis);
        let blinder = &self.shared.blinder;
        let idx = self
            .shared
            .index
            .read()
            .map_err(|_| StoreError::WriterGone)?;
        let mut conds: Vec<Cond> = Vec::with_capacity(q.filters.len() + 2);
        for (attr, value) in &q.filters {
            conds.push(Cond::AnyOf(vec![
                blinder.blind(attr.tag(), value.as_bytes()),
            ]));
        }
        if let Some(id) = &q.event_id {
            let mut seqs: Vec<u64> = Vec::new();
            for a in &idx.accounts {
                if let Some((seq, _)) = idx.dedup_get(&dedup_blind(blinder, a, id))? {
                    seqs.push(seq);
                }
            }
            seqs.sort_unstable();
            seqs.dedup();
            conds.push(Cond::Seqs(seqs));
        }
        // Any of the allowed accounts.
        if !q.accounts.is_empty() {
            conds.push(Cond::AnyOf(
                q.accounts
                    .iter()
                    .map(|a| blinder.blind(Attr::Account.tag(), a.as_str().as_bytes()))
                    .collect(),
            ));
        }
        idx.select(&conds, start, end, after, limit)
    }

    /// The event with this eventID in this account, if stored.
    pub fn get(
        &self,
        account: &AccountId,
        event_id: &str,
    ) -> Result<Option<StoredEvent>, StoreError> {
        let seq = {
            let idx = self
                .shared
                .index
                .read()
                .map_err(|_| StoreError::WriterGone)?;
            let b = dedup_blind(&self.shared.blinder, account, event_id);
            idx.dedup_get(&b)?.map(|(s, _)| s)
        };
        seq.map(|s| self.read(s)).transpose()
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Reads `m attrs_from`; when absent (a store created before eventCategory and insightType
/// were indexed, or a new one), records it as `next_seq` (1 for a new store), durably, before
/// anything else is written. A read-only open of a store without it writes nothing: none of
/// its events are indexed by them.
fn attrs_from(tree: &Tree, next_seq: u64, read_only: bool) -> Result<u64, StoreError> {
    if let Some(v) = tree.get(meta_key(ATTRS_FROM))? {
        return be_u64(&v);
    }
    if !read_only {
        tree.insert(meta_key(ATTRS_FROM), next_seq.to_be_bytes().to_vec())?;
        tree.flush()?;
    }
    Ok(next_seq)
}

/// Meta key: see [`attrs_from`].
const ATTRS_FROM: &str = "attrs_from";

fn key_bytes(prefix: u8, n: u64) -> [u8; 9] {
    format::key(prefix, n)
}

const _: () = assert!(BLIND_LEN == 16);
