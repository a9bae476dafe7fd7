//! orgtrail's ledger: every event of the organization, once, sealed, and findable.
//!
//! # On disk (one sled tree, `ledger`, typed key prefixes; the record log in `log/`; index run files in `index/`)
//!
//! | key | value |
//! |---|---|
//! | `m format` | format version (u64 BE), 2 |
//! | `m blind_key` | the blind-index key, wrapped by the master key (64 bytes) |
//! | `m next_seq`, `m next_segment` | next sequence number / segment id (u64 BE) |
//! | `m attrs_from` | the first sequence number indexed under eventCategory and insightType (u64 BE; see `ledger`) |
//! | `m dict/<u32>` | a zstd dictionary trained on this store's first events, sealed: wrapped key (64), nonce (12), AES-256-GCM(dictionary) |
//! | `s <segment u64>` | segment: version, account (12 ASCII digits), UTC day, created ms, wrapped data key |
//! | `r <first seq u64>` | where the record blocks of one group commit are in the record log: file, offset, and per block its count and length (one value per group; stores written before hold one per block, 19 bytes; see the `log` module); a block: version, count (u16), segment (u64), dictionary id (u32), nonce (12), AES-256-GCM(its records' lengths and zstd frames, version 2; or one zstd frame of its records' lengths and bytes, version 3: a run) with tag (see `ledger::records`) |
//! | `x <first seq u64>` | index chunk of one group commit not yet in an index run: version, first seq, count; per event eventTime (i64 ms), dedup blind (16), first 8 bytes of SHA-256(bytes); the accounts (u16 count, 12 digits each); then every blind value (16) with the positions of the events carrying it (LEB128 count, then LEB128 gaps) |
//! | `h <first seq u64>` | where the group's Merkle leaf hashes are in the record log (17 bytes, see `log`), 32 bytes each (see the `tree` module for the leaf data) |
//! | `t <height u8> <index u64>` | the hash of a complete perfect Merkle subtree of 4,096 leaves or more (32 bytes; stores of formats 2 and 3 also hold those of 256 to 2,048 leaves, no longer read) |
//! | `i <first seq u64>` | an index run: version (1), event count (u32); its file is `index/run-<first>-<end>.idx` (see the `run` module for its layout) |
//! | `c <tree size u64>` | a signed checkpoint (C2SP tlog-checkpoint as an Ed25519 signed note) |
//! | `m store_id` | 16 random bytes (hex), the checkpoint origin `orgtrail/<id>` |
//! | `n <first seq u64> <hour u64>` | sealed counter delta of one group commit for one UTC hour (see the `counts` module) |
//! | `N <hour u64>` | sealed counters of one UTC hour, merged from its deltas (or, when longer than 2 KiB, the head of its pieces) |
//! | `U <level u8> <bucket u64> [<part u16>]` | sealed counters of a day or of 32 days, a rollup of the hours (or the head of its pieces; see the `counts` module) |
//! | `k <length u8> <value key> <through u64> <piece u16>` | a 2 KiB piece of a merged value longer than that (see the `counts` module) |
//! | `m alerts_through` | the alert watermark: every event at or below it was evaluated by the rules (u64 BE; see the `outbox` module) |
//! | `o <seq u64> <rule id>` | an alert not yet taken by every sink: version, then the pending sinks' names (see the `outbox` module) |
//! | `D <seq u64> <rule id length u8> <rule id> <sink>` | an alert a sink gave up on (a dead letter): version, attempts, when, the last error (see the `outbox` module) |
//! | `a <seq u64> <rule id>` | the alert history, every alert recorded (kept after delivery): version, recorded time (see the `alertlog` module) |
//! | `m insights` | the Insights watermark and the detector's state, sealed under a data key of its own (see the `insights` module) |
//!
//! Each value's byte layout is documented beside its codec: `ledger::records` (`r`),
//! `ledger::chunk` (`x`), `ledger::segments` (`s`), `ledger::dicts` (`m dict/`), `tree` (`h`,
//! `t`), `runs` (`i`), `run` (index run files), `ledger::proofs` (`c`), `ledger` (the other
//! `m` values).
//!
//! Every group commit appends one frame (its record blocks and leaf hashes) to the record log
//! and syncs it, then applies one `sled::Batch` (their locators, index chunk, new segments,
//! counters) followed by `flush()`: the batch is the commit point. A group is either wholly
//! durable or absent after a crash (a frame no locator names is cut at the next open), and
//! nothing is acknowledged before it is durable.
//!
//! # Secrets
//! * Event bytes are compressed then sealed with AES-256-GCM under the data key of their
//!   segment (one account, one UTC day, at most `segment_max_records` records). The AAD binds
//!   a record to its place: `"orgtrail/rec/v1" || segment || seq || account || dictionary id`;
//!   a record moved, swapped or relabelled fails to open.
//! * Data keys exist on disk only wrapped by a versioned master key (`orgtrail-crypto`), bound
//!   to their segment. Random 96-bit nonces; segments cap how many records a key seals.
//! * Index and dedup keys are blind: `HMAC-SHA-256(K_idx, attribute || 0 || value)[..16]`.
//!   `K_idx` is random per store and stored wrapped. Timestamps, sequence numbers and the
//!   accounts of segments stay plain; no eventID, user, ARN, IP or resource name is on disk.
//!
//! # In memory
//! The newest events' index (dedup, postings, times) is in memory: the memtable, at most
//! `index_run_events` events (and one more being written out), rebuilt at open from their
//! chunks. Older events' index is in immutable run files, merged in the background so that
//! there are few; memory holds only each run's directory, about 0.45 bytes per event (4-5 MB
//! at 10M events, against 115-150 bytes per event for the whole index in memory before), and
//! the Bloom filters of the newest runs within `index_filter_bytes` (4 MiB by default; the
//! other runs' filters are probed on disk, 64 bytes a probe). Records and leaf hashes are read from the record log (`log`) with
//! positioned reads, not kept. The Merkle log keeps its frontier and the last
//! tile's leaves. An open reads the run directories, the memtable's chunks and O(log n)
//! subtree hashes: about the same time at 10M events as at 10k. The writer
//! (`ledger::writer`) updates the index only after a group is durable. Appends go through one
//! writer thread ([`Ledger::append`]); reads ([`Ledger::query`], [`Ledger::get`]) block on sled
//! and the run files and run on the caller's thread (async callers use `spawn_blocking`).

mod alertlog;
mod counts;
pub mod crashpoint;
mod error;
mod format;
#[doc(hidden)]
pub mod fuzzing;
mod index;
mod insights;
mod kv;
mod ledger;
mod log;
mod memory;
mod outbox;
mod postings;
mod query;
mod recover;
mod run;
mod runs;
mod tree;
mod upgrade;
mod usage;
mod verify;

use std::future::Future;
use std::pin::Pin;

use orgtrail_core::{AccountId, CloudTrailEvent};
use orgtrail_crypto::merkle::Hash;

/// The store as its users see it: append (durable when it returns), look up, get one, count,
/// and the Merkle log with its signed checkpoints and proofs. Implemented by the sled
/// [`Ledger`] and by the in-memory reference model [`MemoryStore`]; one conformance suite
/// (`tests/conformance.rs`) and one property test (`tests/model.rs`) run against both.
///
/// Object-safe: the collector holds an `Arc<dyn EventStore>`. Every method but
/// [`EventStore::append_prepared`] blocks (the ledger reads sled and its files): async callers
/// use `spawn_blocking`. The ingest hot path prepares events on worker threads with a
/// per-thread [`EventPreparer`] (the ledger's compresses and computes blind index values
/// there) and appends them with [`EventStore::append_prepared`], which awaits the writer's
/// durable group commit without holding a thread.
pub trait EventStore: Send + Sync + std::fmt::Debug {
    /// Appends events, each with the account it belongs to; returns once they are durable.
    fn append_events(
        &self,
        events: &[(CloudTrailEvent, AccountId)],
    ) -> Result<AppendOutcome, StoreError>;
    /// A preparer for this store, to keep on one thread at a time and reuse.
    fn preparer(&self) -> Box<dyn EventPreparer>;
    /// Says that the caller is preparing events it will append: until the guard is dropped, a
    /// durable write of the store's own state (alerts recorded, deliveries noted) waits for
    /// that append's group commit, to share its flush, rather than flushing on its own. A
    /// store without group commits ignores it.
    fn preparing_append(&self) -> Preparing {
        Preparing(None)
    }
    /// Appends events prepared by this store's preparers; resolves once they are durable.
    /// An event prepared for another store is refused (the whole call fails).
    fn append_prepared(&self, events: Vec<PreparedEvent>) -> AppendFuture<'_>;
    /// One page of matching events, newest first.
    fn query(&self, q: &Query) -> Result<Page, StoreError>;
    /// Counts of the events matching `q` (its paging aside), grouped by the `by` fields, the
    /// `max_groups` largest groups.
    fn count(&self, q: &Query, by: &[Group], max_groups: usize) -> Result<Counts, StoreError>;
    /// Like [`EventStore::count`], reading at most `max_events` records for what the
    /// store's counters cannot answer; the answer says what was scanned and whether the limit
    /// was hit.
    fn count_at_most(
        &self,
        q: &Query,
        by: &[Group],
        max_groups: usize,
        max_events: usize,
    ) -> Result<Counts, StoreError>;
    /// The event with this eventID in this account.
    fn get(&self, account: &AccountId, event_id: &str) -> Result<Option<StoredEvent>, StoreError>;
    /// The event stored at sequence number `seq` (1-based); an error if there is none.
    fn read(&self, seq: u64) -> Result<StoredEvent, StoreError>;
    /// The events stored at `first..=last`, in order, each as [`EventStore::read`] answers it
    /// (an error if one is missing). A store may read them together: the ledger opens each
    /// record block once for the range, not once per record.
    fn read_range(&self, first: u64, last: u64) -> Result<Vec<StoredEvent>, StoreError> {
        (first..=last).map(|seq| self.read(seq)).collect()
    }
    /// Counts.
    fn stats(&self) -> Stats;
    /// Whether appends are taken now.
    fn health(&self) -> Health;
    /// The writer's queue, group-commit times and last checkpoint, for metrics. Cheap: no
    /// I/O. A store without a writer thread reports nothing.
    fn writer_stats(&self) -> WriterStats {
        WriterStats::default()
    }
    /// Bytes the store takes on disk; 0 for a store in memory. Blocking: lists files.
    fn disk_bytes(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
    /// The checkpoint origin of this store: `orgtrail/<store id>`.
    fn origin(&self) -> &str;
    /// The number of leaves of the Merkle log (= events stored) and its root.
    fn tree_head(&self) -> Result<(u64, Hash), StoreError>;
    /// The root of the log when it held `size` events.
    fn root_at(&self, size: u64) -> Result<Hash, StoreError>;
    /// The inclusion proof (audit path, leaf side first) of the event at `seq` in the log of
    /// `size` events; its leaf index is `seq - 1`.
    fn inclusion_proof(&self, seq: u64, size: u64) -> Result<Vec<Hash>, StoreError>;
    /// The consistency proof between the log at `first` and at `second` events.
    fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, StoreError>;
    /// `count` stored leaf hashes from sequence number `first` (1-based), in order.
    fn leaves(&self, first: u64, count: u64) -> Result<Vec<Hash>, StoreError>;
    /// Stored checkpoints (tree size, signed note) with `from <= size <= to`, at most
    /// `limit`, oldest first (or newest first with `newest_first`).
    fn checkpoints_between(
        &self,
        from: u64,
        to: u64,
        limit: usize,
        newest_first: bool,
    ) -> Result<Vec<(u64, String)>, StoreError>;
    /// Signs a checkpoint of everything stored so far (if anything is new since the last
    /// one), then returns the newest checkpoint. [`StoreError::NoSigner`] without a key.
    fn checkpoint_now(&self) -> Result<Option<(u64, String)>, StoreError>;
    /// Stops taking appends after those already queued, signs a last checkpoint if anything
    /// is new (with a key), and makes everything durable.
    fn close(&self) -> Result<(), StoreError>;
    /// The alert watermark: every event at or below it has been evaluated by the rules and
    /// its alerts recorded (see the `outbox` module). `None` until one is first recorded.
    fn alerts_through(&self) -> Result<Option<u64>, StoreError>;
    /// Records the alerts of the events up to `through` and moves the watermark there, in one
    /// atomic write, durable when it records an alert or sets the first watermark. A
    /// watermark only moved past events without alerts may be lost in a crash (the next
    /// durable write of the store keeps it): those events are then evaluated again, and make
    /// no alert again. A watermark already at or past `through` writes nothing.
    fn record_alerts(&self, through: u64, alerts: &[PendingAlert]) -> Result<(), StoreError>;
    /// Up to `limit` alerts not yet taken by every sink, oldest event first.
    fn pending_alerts(&self, limit: usize) -> Result<Vec<PendingAlert>, StoreError>;
    /// Notes durably that `sink` took the alert of `rule` on the event at `seq`; the alert
    /// leaves the outbox once no sink is left. Noting it again is no error.
    fn alert_delivered(&self, seq: u64, rule: &str, sink: &str) -> Result<(), StoreError> {
        self.alerts_delivered(sink, &[(seq, rule.to_owned())])
    }
    /// Notes durably, in one atomic write, that `sink` took each alert of `taken` (the event's
    /// sequence number, the rule): a sink that takes alerts in batches is noted once per batch.
    /// Alerts not pending for that sink are passed over, as by [`EventStore::alert_delivered`].
    fn alerts_delivered(&self, sink: &str, taken: &[(u64, String)]) -> Result<(), StoreError>;
    /// [`EventStore::alerts_delivered`] for alerts as a delivery loop read them from the
    /// outbox (with [`EventStore::pending_alerts_after`]), their sinks as they were then (a
    /// store may use them to find the alerts' entries; the sled ledger's groups are read
    /// again, once per group). The same write as [`EventStore::alerts_delivered`].
    fn alerts_taken(&self, sink: &str, taken: &[PendingAlert]) -> Result<(), StoreError> {
        let t: Vec<(u64, String)> = taken.iter().map(|a| (a.seq, a.rule.clone())).collect();
        self.alerts_delivered(sink, &t)
    }
    /// Up to `limit` alerts of the outbox after the one of (`seq`, `rule`) in outbox order
    /// (oldest event first), or from the first with `None`: a sink's delivery loop reads on
    /// from the last alert it handled.
    fn pending_alerts_after(
        &self,
        after: Option<(u64, &str)>,
        limit: usize,
    ) -> Result<Vec<PendingAlert>, StoreError>;
    /// Moves (alert, sink) from the outbox to a dead letter, in one atomic, durable write.
    /// False (nothing written) when that sink is not pending for that alert.
    fn dead_letter_alert(&self, letter: &DeadLetter) -> Result<bool, StoreError>;
    /// Up to `limit` dead letters, oldest event first.
    fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError>;
    /// Moves the dead letters of `sink` (or all) back to the outbox, in one atomic, durable
    /// write; returns those moved.
    fn retry_dead_letters(&self, sink: Option<&str>) -> Result<Vec<DeadLetter>, StoreError>;
    /// Up to `limit` alerts of the history (every alert recorded, delivered or not; see the
    /// `alertlog` module): oldest first, strictly after the alert `from` names as (seq, rule
    /// id), else from the first; or with `newest_first`, newest first, strictly before
    /// `from`, else from the last.
    fn alert_history(
        &self,
        from: Option<(u64, &str)>,
        limit: usize,
        newest_first: bool,
    ) -> Result<Vec<AlertRef>, StoreError>;
    /// [`EventStore::record_alerts`], with the threshold windows' changes in the same atomic
    /// write, durable as that one is, and when it changes a window (see the `outbox` module). A store that keeps no windows takes only
    /// empty changes.
    fn record_alerts_with_windows(
        &self,
        through: u64,
        alerts: &[PendingAlert],
        windows: &WindowChanges,
    ) -> Result<(), StoreError> {
        if windows.is_empty() {
            self.record_alerts(through, alerts)
        } else {
            Err(StoreError::Unavailable {
                reason: "this store keeps no threshold windows".into(),
            })
        }
    }
    /// Every (rule id, seq) the threshold windows keep, as the last
    /// [`EventStore::record_alerts_with_windows`] left them.
    fn threshold_windows(&self) -> Result<Vec<(String, u64)>, StoreError> {
        Ok(Vec::new())
    }
    /// The Insights detector's state and watermark as last recorded (see the `insights`
    /// module), opened; `None` before the first record. A store that keeps none answers
    /// `None`.
    fn insights_state(&self) -> Result<Option<InsightsState>, StoreError> {
        Ok(None)
    }
    /// Records the detector's `state` after every stored event through `through`, with that
    /// watermark, in one durable write; the state is sealed under the store's keys. A
    /// watermark already past `through` writes nothing; one at `through` is replaced (the
    /// detector's clock may move without new events). Append the Insight events the range
    /// produced first: after a crash the range is fed again from the older state.
    fn record_insights(&self, _through: u64, _state: &[u8]) -> Result<(), StoreError> {
        Err(StoreError::Unavailable {
            reason: "this store keeps no insights state".into(),
        })
    }
}

/// What [`EventStore::append_prepared`] returns.
pub type AppendFuture<'a> =
    Pin<Box<dyn Future<Output = Result<AppendOutcome, StoreError>> + Send + 'a>>;

/// Prepares events for one store on the caller's thread (the CPU-heavy part of an append:
/// for the ledger, compression and blind index values). Keep one per thread and reuse it.
pub trait EventPreparer: Send + std::fmt::Debug {
    /// Prepares `event`, which belongs to `account`.
    fn prepare(
        &mut self,
        event: &CloudTrailEvent,
        account: AccountId,
    ) -> Result<PreparedEvent, StoreError>;

    /// Prepares events to be appended together, each with the account it belongs to, in
    /// their order. The ledger compresses each account's events together, by runs (see
    /// `Preparer::prepare_batch`); by default, each event as [`EventPreparer::prepare`] does.
    fn prepare_batch(
        &mut self,
        events: &[(CloudTrailEvent, AccountId)],
    ) -> Result<Vec<PreparedEvent>, StoreError> {
        events.iter().map(|(e, a)| self.prepare(e, *a)).collect()
    }
}

/// An event made ready by an [`EventPreparer`], for [`EventStore::append_prepared`] of the
/// store that made the preparer.
#[derive(Debug)]
pub struct PreparedEvent(pub(crate) PreparedKind);

#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "the ledger's prepared event is the hot path: moved as it is, not boxed per event"
)]
pub(crate) enum PreparedKind {
    /// Prepared by a [`Ledger`]'s [`Preparer`]; `store` is that ledger's instance (blind
    /// values and dictionaries are one store's).
    Ledger { store: u64, event: Prepared },
    /// Taken as it is (the [`MemoryStore`]; boxed, as the ledger's hot path must not carry
    /// a parsed event's size).
    Plain(Box<(CloudTrailEvent, AccountId)>),
}

/// An append being prepared ([`EventStore::preparing_append`]); dropped once it is appended
/// (or given up).
#[derive(Debug, Default)]
pub struct Preparing(pub(crate) Option<std::sync::Arc<std::sync::atomic::AtomicUsize>>);

impl Drop for Preparing {
    fn drop(&mut self) {
        if let Some(n) = self.0.take() {
            n.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
    }
}

pub use alertlog::AlertRef;
pub use error::StoreError;
pub use insights::InsightsState;
pub use kv::{BackendError, open_sled};
pub use ledger::{
    AppendOutcome, Appended, COMMIT_BUCKETS, CommitLatency, DEFAULT_RESERVE, Health, Ledger,
    LedgerConfig, Prepared, Preparer, Stats, WRITER_QUEUE, WriterStats, free_bytes,
};
pub use memory::{MemoryConfig, MemoryStore};
pub use outbox::{DeadLetter, MAX_ERROR as MAX_DEAD_LETTER_ERROR, PendingAlert, WindowChanges};
pub use query::{
    Attr, Counts, DEFAULT_PAGE, Group, MAX_PAGE, Page, Query, ScanPart, StoredEvent, TimeSpan,
    attr_matches,
};
pub use tree::{event_leaf, leaf_data};
pub use upgrade::{UpgradeReport, upgrade};
pub use usage::{DiskUsage, FileUsage, PrefixUsage};
pub use verify::{
    SavedCheckpoint, StreamVerifier, VerifyReport, verify_full, verify_full_in_chunks,
    verify_public,
};
