//! How a ledger is tuned, and whether it takes appends.

use std::sync::Arc;

use orgtrail_crypto::signing::SigningKey;

/// The default free-space reserve: room for sled's own log and snapshot writes and several
/// group commits, small enough for a demo on a nearly full disk.
pub const DEFAULT_RESERVE: u64 = 128 << 20;

/// Whether the ledger is taking appends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Appends are taken.
    Ready,
    /// The data directory's filesystem is below the reserve: appends are refused until space
    /// returns. Reads go on.
    DiskFull { free: u64, reserve: u64 },
    /// A write failed; the ledger is reopening and reconciling its files (it retries by
    /// itself). Appends are refused meanwhile.
    Faulted { reason: String },
    /// A write failed and the failed database could not be let go of in this process (sled's
    /// flush on release never returned), so it cannot be reopened here: every append is
    /// refused until the process restarts. Nothing acknowledged is lost; the next open cuts
    /// any torn tail.
    Stuck { reason: String },
}

/// Tuning of the ledger. The defaults suit production.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// Records one data key seals at most (random nonces stay far below 2^32 per key).
    pub segment_max_records: u64,
    /// Most records per block (sealed once; records of one segment of one group commit), and
    /// the events of one account a preparer compresses together as a run (one zstd frame,
    /// see `Preparer::prepare_batch`). A lookup opens one block per event it returns, and
    /// decompresses a run's whole frame (about 20 µs for 16 events).
    pub block_records: usize,
    /// Events sampled before a zstd dictionary is trained for this store.
    pub dict_train_after: usize,
    /// Most events the writer commits in one group (one sled batch, one flush).
    pub max_group_events: usize,
    /// sled's page cache. sled holds small values (locators, the newest index chunks,
    /// counters, subtree hashes); records and leaf hashes are read from the record log through
    /// the operating system's page cache, which does not count as the process's memory.
    /// sled's memory grows well past this budget as its files grow (its own page table, and
    /// nodes its segment cleaner rewrites): importing 10M events peaked at 244 MiB with 4 MiB
    /// and at 291 MiB with 16 MiB, and lookups on the 10M store were as fast with either.
    pub cache_bytes: u64,
    /// zstd level of each record or run (compressed with the store's dictionary). Level 1 with [`LedgerConfig::zstd_table_log`] 16 costs 14% less CPU per
    /// event than level 3 for 4% more bytes (276 instead of 264 on the generator's events;
    /// `examples/zstd_levels.rs`). Any level decompresses with the same code.
    pub zstd_level: i32,
    /// log2 of the entries of zstd's match tables (its hashLog and chainLog, which also size
    /// the dictionary's tables); 0 leaves them to the level. At level 1, 16 finds more of the
    /// dictionary's matches than the level's own 14 at no more CPU.
    pub zstd_table_log: u32,
    /// Signs checkpoints. Without it the ledger writes none.
    pub signer: Option<Arc<SigningKey>>,
    /// A checkpoint after at most this many new records...
    pub checkpoint_records: u64,
    /// ...or, when records arrive, once the last checkpoint is older than this.
    pub checkpoint_interval: std::time::Duration,
    /// Open for reading only: no writer thread, no checkpoint on close, and an error instead of
    /// a new store when there is none.
    pub read_only: bool,
    /// Free space (bytes) kept on the data directory's filesystem. A group commit that would
    /// start below it is refused with [`StoreError::DiskFull`](crate::StoreError::DiskFull) and nothing is written; appends
    /// resume by themselves once space returns.
    pub reserve_bytes: u64,
    /// Memory for decoded hours of counters (`stats`), in bytes.
    pub count_cache_bytes: usize,
    /// Most events a count decrypts for what the counters cannot serve (see [`Ledger::count`]).
    pub count_scan_limit: usize,
    /// Counter deltas (one per group commit and hour it touches) that wait before the writer
    /// merges them into one value per hour.
    pub count_merge_after: usize,
    /// Merge the counter deltas still waiting at a clean close, and those a crash left at a
    /// writable open (before the first group), so that the first count after an open reads
    /// merged values only. Off, they wait as a crash leaves them until `count_merge_after`
    /// more (for tests of torn tails, whose last group's deltas must still be deltas).
    pub count_merge_waiting: bool,
    /// A counter rollup (a day's or 32 days' counts) is kept in parts: once its last part is
    /// stored at this many bytes, a merge starts the next one instead of rewriting it. Bounds
    /// what a merge holds (a 32-day rollup grows with a month's distinct groups, and was read,
    /// rewritten, sealed and copied by sled whole at every merge). 0: no limit.
    pub count_rollup_part_bytes: usize,
    /// Events the in-memory index (the memtable) holds before it is written out as an index
    /// run file. Memory for the index is about twice this times 250 bytes.
    pub index_run_events: u64,
    /// The largest index run a merge makes: runs stop merging beyond it.
    pub max_run_events: u64,
    /// Memory for the Bloom filters of index runs (10 bits per event), in bytes. The newest
    /// runs keep theirs in memory while they fit; an append probes the filter of each other
    /// run with one positional read of 64 bytes per new event (served by the operating
    /// system's page cache). Without this bound the filters grow with the history, about
    /// 1.25 bytes per stored event.
    pub index_filter_bytes: u64,
    /// At a clean close, finish the index work instead of cancelling it: wait for the merge
    /// running, then make every merge due, so that the next writer finds the runs settled.
    /// For bulk writers that stop once (`import`): a collector started on a store just
    /// imported otherwise redoes the largest merge (millions of events) while it ingests,
    /// and its peak memory with it. Closing then waits as long as the merges take.
    pub settle_index_at_close: bool,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            segment_max_records: 1 << 20,
            block_records: 16,
            index_run_events: 1 << 17,
            max_run_events: 1 << 24,
            index_filter_bytes: crate::index::BLOOM_BYTES,
            settle_index_at_close: false,
            dict_train_after: 4000,
            max_group_events: 2048,
            cache_bytes: 4 << 20,
            zstd_level: 1,
            zstd_table_log: 16,
            signer: None,
            checkpoint_records: 100_000,
            checkpoint_interval: std::time::Duration::from_secs(60),
            read_only: false,
            reserve_bytes: DEFAULT_RESERVE,
            count_cache_bytes: 32 << 20,
            count_scan_limit: 100_000,
            count_merge_after: crate::counts::MAX_PENDING,
            count_merge_waiting: true,
            count_rollup_part_bytes: crate::counts::ROLLUP_PART_BYTES,
        }
    }
}
