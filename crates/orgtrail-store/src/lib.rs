//! orgtrail's ledger: every event of the organization, once, sealed, and findable.
//!
//! # On disk (one sled tree, `ledger`, typed key prefixes; the record log in `log/`; index run files in `index/`)
//!
//! | key | value |
//! |---|---|
//! | `m format` | format version (u64 BE), 2 |
//! | `m blind_key` | the blind-index key, wrapped by the master key (64 bytes) |
//! | `m next_seq`, `m next_segment` | next sequence number / segment id (u64 BE) |
//! | `m dict/<u32>` | a zstd dictionary trained on this store's first events, sealed: wrapped key (64), nonce (12), AES-256-GCM(dictionary) |
//! | `s <segment u64>` | segment: version, account (12 ASCII digits), UTC day, created ms, wrapped data key |
//! | `r <first seq u64>` | where a record block is in the record log (19 bytes, see the `log` module); the block: version, count (u16), segment (u64), dictionary id (u32), nonce (12), AES-256-GCM(its records' lengths and zstd frames) with tag (see `ledger::records`) |
//! | `x <first seq u64>` | index chunk of one group commit not yet in an index run: version, first seq, count; per event eventTime (i64 ms), dedup blind (16), first 8 bytes of SHA-256(bytes); the accounts (u16 count, 12 digits each); then every blind value (16) with the positions of the events carrying it (LEB128 count, then LEB128 gaps) |
//! | `h <first seq u64>` | where the group's Merkle leaf hashes are in the record log (17 bytes, see `log`), 32 bytes each (see the `tree` module for the leaf data) |
//! | `t <height u8> <index u64>` | the hash of a complete perfect Merkle subtree of 256 leaves or more (32 bytes) |
//! | `i <first seq u64>` | an index run: version (1), event count (u32); its file is `index/run-<first>-<end>.idx` (see the `run` module for its layout) |
//! | `c <tree size u64>` | a signed checkpoint (C2SP tlog-checkpoint as an Ed25519 signed note) |
//! | `m store_id` | 16 random bytes (hex), the checkpoint origin `orgtrail/<id>` |
//! | `n <first seq u64> <hour u64>` | sealed counter delta of one group commit for one UTC hour (see the `counts` module) |
//! | `N <hour u64>` | sealed counters of one UTC hour, merged from its deltas |
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
//! there are few; memory holds only each run's directory and Bloom filter, about 1.7 bytes
//! per event (17 MB at 10M events, against 115-150 bytes per event for the whole index in
//! memory before). The Merkle log keeps its frontier and the last
//! tile's leaves. An open reads the run directories, the memtable's chunks and O(log n)
//! subtree hashes: about the same time at 10M events as at 10k. The writer
//! (`ledger::writer`) updates the index only after a group is durable. Appends go through one
//! writer thread ([`Ledger::append`]); reads ([`Ledger::query`], [`Ledger::get`]) block on sled
//! and the run files and run on the caller's thread (async callers use `spawn_blocking`).

mod counts;
pub mod crashpoint;
mod error;
mod format;
#[doc(hidden)]
pub mod fuzzing;
mod index;
mod ledger;
mod log;
mod memory;
mod postings;
mod query;
mod recover;
mod run;
mod runs;
mod tree;
mod upgrade;
mod usage;
mod verify;

use orgtrail_core::{AccountId, CloudTrailEvent};

/// The store as its users see it: append (durable when it returns), look up, get one.
/// Implemented by the sled [`Ledger`] and by the in-memory reference model [`MemoryStore`];
/// one conformance suite runs against both. Blocking: async callers use `spawn_blocking` (the
/// sled ledger also offers [`Ledger::append`] and a per-thread [`Preparer`] for hot paths).
pub trait EventStore: Send + Sync {
    /// Appends events, each with the account it belongs to; returns once they are durable.
    fn append_events(
        &self,
        events: &[(CloudTrailEvent, AccountId)],
    ) -> Result<AppendOutcome, StoreError>;
    /// One page of matching events, newest first.
    fn query(&self, q: &Query) -> Result<Page, StoreError>;
    /// Counts of the events matching `q` (its paging aside), grouped by the `by` fields, the
    /// `max_groups` largest groups.
    fn count(&self, q: &Query, by: &[Group], max_groups: usize) -> Result<Counts, StoreError>;
    /// The event with this eventID in this account.
    fn get(&self, account: &AccountId, event_id: &str) -> Result<Option<StoredEvent>, StoreError>;
    /// Counts.
    fn stats(&self) -> Stats;
}

pub use error::StoreError;
pub use ledger::{
    AppendOutcome, Appended, DEFAULT_RESERVE, Health, Ledger, LedgerConfig, Prepared, Preparer,
    Stats, free_bytes, open_sled,
};
pub use memory::MemoryStore;
pub use query::{
    Attr, Counts, DEFAULT_PAGE, Group, MAX_PAGE, Page, Query, ScanPart, StoredEvent, TimeSpan,
    attr_matches,
};
pub use tree::{event_leaf, leaf_data};
pub use upgrade::{UpgradeReport, upgrade};
pub use usage::{DiskUsage, FileUsage, PrefixUsage};
pub use verify::{SavedCheckpoint, StreamVerifier, VerifyReport, verify_full, verify_public};
