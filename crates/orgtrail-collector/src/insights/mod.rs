//! Insights (`[insights]`): the stored events fed, in sequence order, to the
//! `orgtrail-insights` detector, and the Insight events it finds stored back in the ledger as
//! ordinary records of their account.
//!
//! # Invariants
//! - **Watermark.** Every stored event at or below the Insights watermark has been fed to the
//!   detector; the store keeps the watermark and the detector's state together, sealed, in one
//!   durable write ([`orgtrail_store::EventStore::record_insights`]). Events are fed from just
//!   past it, in sequence order ([`feed`]).
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
//! - **The runtime.** Store reads and writes, and the detector's work, run in
//!   `spawn_blocking`; the detector's lock is never held across an `.await`.
//! - The state is saved after a step that produced Insight events, and otherwise at most
//!   every [`SAVE_EVERY`] (a 100,000-key state is about 39 MB); a crash then feeds a little
//!   more again, with the same outcome.

mod feed;
mod replay;
mod run;

use std::time::Duration;

pub(crate) use feed::{Feeder, start};
pub(crate) use replay::InsightsService;
pub use replay::{Replayed, replay_since};

/// Stored events fed at once.
const RANGE: u64 = 1024;
/// How often the detector's clock is moved to the wall clock.
pub(crate) const TICK: Duration = Duration::from_secs(20);
/// How long the state may go unsaved while events are fed without Insights.
const SAVE_EVERY: Duration = Duration::from_secs(10);
/// How long to wait after a failure before trying again.
const RETRY: Duration = Duration::from_secs(1);
