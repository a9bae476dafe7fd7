//! Insights (`[insights]`): the stored events fed, in sequence order, to the
//! `orgtrail-insights` detector, and the Insight events it finds stored back in the ledger as
//! ordinary records of their account.
//!
//! # Invariants
//! - **Watermark.** Every stored event at or below the Insights watermark has been fed to the
//!   detector; the store keeps the watermark and the detector's state together, sealed, in one
//!   durable write ([`orgtrail_store::EventStore::record_insights`]). Events are fed from just
//!   past it, in sequence order ([`feed`]).
//! - **Where the calls come from.** After its group commit the ingest service keeps, by
//!   sequence number, what the detector needs of each stored event ([`recent`]: a small owned
//!   record taken from the fields the validation parsed, or a mark that the detector passes
//!   over the event), bounded in bytes. The feeder takes a range's records from there and
//!   reads back from the store (decrypting and parsing) only the gaps: events stored before a
//!   start, not kept because the cache was full, or appended by another path. The detector is
//!   fed the same calls in the same order either way: the cache is a shortcut, never a record
//!   (the watermark is).
//! - **Crash order.** The Insight events a range (or a tick of the clock) produced are appended
//!   durably first, through the ingest path ([`crate::ingest::append_own`]: validated,
//!   deduplicated, sealed, in the Merkle log, seen by the rule evaluator and live followers);
//!   only then is a state past that range recorded. A crash in between feeds the range again
//!   from the older state: the same Insights are found with the same ids (derived from the
//!   key, the first minute and the state), and the ledger's (account, eventID) dedup keeps
//!   one copy. Nothing is lost or doubled. Any failure reloads the detector from the store, so
//!   the detector in memory is never ahead of what was appended.
//! - **First start.** On a store with no Insights state, feeding starts past everything
//!   already stored: history is not replayed (as with rules).
//! - **The clock.** Every [`TICK`] the detector's clock is moved to the wall-clock minute, so
//!   that Insights end during silence; not before the detector has seen its first call (the
//!   first events may be older than the wall clock, and must not all be late).
//! - **Resuming.** When the task starts on a stored state with stored events past its
//!   watermark (stored while no detector was fed: Insights were off, or the collector was
//!   down while events were imported), the clock is first moved to the wall-clock minute,
//!   seen calls or not: those events are fed as a running detector would have been fed them,
//!   so that the ones older than the lateness window are late (not counted) and a burst of
//!   that past period fires nothing. A quick restart after a crash (within the lateness
//!   window) finds what it found before; an Insight found in the instant between storing its
//!   event and saving the state, followed by a restart slower than the lateness window, is
//!   not found again (its Start stays in the ledger; it ends by nothing).
//! - **The runtime.** Store reads and writes, and the detector's work, run in
//!   `spawn_blocking`; the detector's lock is never held across an `.await`.
//! - **Saving.** The state is saved after a step that produced Insight events; otherwise only
//!   once the watermark moved, at most every [`SAVE_EVERY`] (a 100,000-key state is about
//!   39 MB, written in a few tenths of a second), and when the task stops. The metrics are
//!   told after a save, so an Insight counted in `orgtrail_collector_insights_started_total`
//!   is in the saved state (the instant above is over once it is counted). A clock moved
//!   without new events is not saved (the wall clock moves it again after a restart). A crash
//!   feeds the events since the last save again, from the store, with the same outcome;
//!   60 s of them take well under a second to read back.

mod feed;
pub(crate) mod recent;
mod replay;
mod run;

use std::time::Duration;

pub(crate) use feed::{Feeder, start};
pub(crate) use recent::recent;
pub(crate) use replay::InsightsService;
pub use replay::{Replayed, replay_since};

/// Stored events fed at once.
const RANGE: u64 = 1024;
/// How often the detector's clock is moved to the wall clock.
pub(crate) const TICK: Duration = Duration::from_secs(20);
/// How long the state may go unsaved while events are fed without Insights.
const SAVE_EVERY: Duration = Duration::from_secs(60);
/// How long to wait after a failure before trying again.
const RETRY: Duration = Duration::from_secs(1);
