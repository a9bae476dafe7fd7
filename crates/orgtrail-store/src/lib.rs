//! orgtrail's ledger: every event of the organization, once, sealed, and findable.
//!
//! # On disk (one sled tree, `ledger`, typed key prefixes)
//!
//! | key | value |
//! |---|---|
//! | `m format` | format version (u64 BE), 1 |
//! | `m blind_key` | the blind-index key, wrapped by the master key (64 bytes) |
//! | `m next_seq`, `m next_segment` | next sequence number / segment id (u64 BE) |
//! | `m dict/<u32>` | a zstd dictionary trained on this store's first events, sealed: wrapped key (64), nonce (12), AES-256-GCM(dictionary) |
//! | `s <segment u64>` | segment: version, account (12 ASCII digits), UTC day, created ms, wrapped data key |
//! | `r <first seq u64>` | record block: version, count (u16), then per record: segment (u64), dictionary id (u32), nonce (12), length (u32), AES-256-GCM(zstd(event bytes)) with tag |
//! | `x <first seq u64>` | index chunk of one group commit: version, first seq, count; per event eventTime (i64 ms), dedup blind (16), first 8 bytes of SHA-256(bytes); the accounts (u16 count, 12 digits each); then every blind value (16) with the positions of the events carrying it (LEB128 count, then LEB128 gaps) |
//! | `h <first seq u64>` | the group's Merkle leaf hashes, 32 bytes each (see the `tree` module for the leaf data) |
//! | `c <tree size u64>` | a signed checkpoint (C2SP tlog-checkpoint as an Ed25519 signed note) |
//! | `m store_id` | 16 random bytes (hex), the checkpoint origin `orgtrail/<id>` |
//!
//! Each value's byte layout is documented beside its codec: `ledger::records` (`r`),
//! `ledger::chunk` (`x`), `ledger::segments` (`s`), `ledger::dicts` (`m dict/`), `tree` (`h`),
//! `ledger::proofs` (`c`), `ledger` (the other `m` values).
//!
//! Every group commit is one `sled::Batch` (record blocks, index chunk, new segments,
//! counters) followed by `flush()`: a group is either wholly durable or absent after a crash,
//! and nothing is acknowledged before it is durable.
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
//! The index (dedup, postings, times) is rebuilt from the chunks at open, and updated by the
//! writer (`ledger::writer`) only after a group is durable. Appends go through one writer thread
//! ([`Ledger::append`]); reads ([`Ledger::query`], [`Ledger::get`]) block on sled and run on
//! the caller's thread (async callers use `spawn_blocking`).

mod error;
mod format;
#[doc(hidden)]
pub mod fuzzing;
mod index;
mod ledger;
mod memory;
mod postings;
mod query;
mod recover;
mod tree;
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
    Attr, Counts, DEFAULT_PAGE, Group, MAX_PAGE, Page, Query, StoredEvent, attr_matches,
};
pub use tree::{event_leaf, leaf_data};
pub use usage::{DiskUsage, FileUsage, PrefixUsage};
pub use verify::{SavedCheckpoint, VerifyReport, verify_full, verify_public};
