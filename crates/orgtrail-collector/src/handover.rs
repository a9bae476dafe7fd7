//! Waiting for the ingest service to hand over the events it has just stored, for a task
//! that follows the ledger past a watermark (the rule evaluator, the Insights feeder) with
//! the events kept for it in a [`crate::just_stored`] cache.
//!
//! A batch's events are handed over right after its group commit, by the request that
//! stored them; the task is woken by any batch's commit, and the head it reads may already
//! hold the events of a batch (of the same group commit, or the next) whose request has not
//! handed them over yet. Reading those back costs decrypting, decompressing and parsing them
//! in full: with several batches in flight, about one event in seven was read back so, most
//! of the rule evaluator's CPU. So when events near the head are not kept yet, the task's
//! range stops before them and the task waits for their batch's wake-up, at most
//! [`HANDOVER_WAIT`] from when it first waited for that event: one never handed over (the
//! cache was full, it was stored before a restart, or by another path) is then read back.
//! What the task sees, and in which order, is the same either way; only when it sees it
//! changes, by at most that wait. Events further from the head than [`NEAR`] are read back
//! at once, so catching up after a restart is not slowed.

use std::time::{Duration, Instant};

/// The longest a task waits for the events of a batch to be handed over before it reads
/// them back instead.
pub(crate) const HANDOVER_WAIT: Duration = Duration::from_millis(20);

/// How close to the head a missing event is waited for: a few batches in flight (events
/// further back were not handed over in time, or never will be, and are read back at once).
pub(crate) const NEAR: u64 = 4096;

/// How one step of a task ended.
#[derive(Debug)]
pub(crate) enum Step<T> {
    /// Nothing past the watermark.
    Idle,
    /// A range was done: what it gave.
    Done(T),
    /// The next event past the watermark (this sequence number) is stored but not handed
    /// over yet by the batch that stored it: wait for it ([`Handover::wait_for`]).
    Handover(u64),
}

/// A task's wait for events to be handed over. Copied into each (blocking) step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Handover {
    /// Events this close to the head are waited for; further ones are read back at once.
    near: u64,
    /// The event waited for, and since when.
    waiting: Option<(u64, Instant)>,
}

impl Handover {
    /// Waits for events within `near` of the head (0: never waits).
    pub(crate) fn new(near: u64) -> Handover {
        Handover {
            near,
            waiting: None,
        }
    }

    /// Where the range `first..=to` ends so that its events need not be read back, when
    /// `first..=covered` is what is kept of it without a gap ([`crate::just_stored`]'s
    /// `covered`) and `head` is the ledger's last sequence number. `None`: do all of it;
    /// `Some(last)`: do `first..=last` now (nothing yet when `last < first`).
    pub(crate) fn stop(&self, covered: u64, to: u64, head: u64) -> Option<u64> {
        if covered >= to {
            return None;
        }
        let missing = covered + 1;
        let near_head = head.saturating_sub(missing) < self.near;
        let waited_enough = self
            .waiting
            .is_some_and(|(seq, since)| seq == missing && since.elapsed() >= HANDOVER_WAIT);
        (near_head && !waited_enough).then_some(covered)
    }

    /// Starts (or goes on) waiting for event `seq`: how long is left before it is read back.
    pub(crate) fn wait_for(&mut self, seq: u64) -> Duration {
        let since = match self.waiting {
            Some((s, since)) if s == seq => since,
            _ => Instant::now(),
        };
        self.waiting = Some((seq, since));
        HANDOVER_WAIT.saturating_sub(since.elapsed())
    }

    /// Waits for event `seq` ([`Step::Handover`]): until `stored` is woken (its batch wakes it
    /// once it handed its events over), or what is left of [`HANDOVER_WAIT`] since the wait
    /// for `seq` began has passed (the next step then reads it back). False when `stopping`
    /// changed first.
    pub(crate) async fn wait(
        &mut self,
        seq: u64,
        stored: &tokio::sync::Notify,
        stopping: &mut tokio::sync::watch::Receiver<bool>,
    ) -> bool {
        let left = self.wait_for(seq);
        tokio::select! {
            () = stored.notified() => true,
            _ = stopping.changed() => false,
            () = tokio::time::sleep(left) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_only_for_events_near_the_head_and_only_so_long() {
        let mut h = Handover::new(100);
        // All kept: the whole range.
        assert_eq!(h.stop(50, 50, 60), None);
        // 41..=50 asked, kept through 45, head 60: stop at 45.
        assert_eq!(h.stop(45, 50, 60), Some(45));
        // Far from the head: read back at once.
        assert_eq!(h.stop(45, 50, 1_000), None);
        // Once the wait for event 46 has lasted HANDOVER_WAIT, it is read back.
        assert!(h.wait_for(46) <= HANDOVER_WAIT);
        h.waiting = Some((46, Instant::now() - HANDOVER_WAIT));
        assert_eq!(h.wait_for(46), Duration::ZERO);
        assert_eq!(h.stop(45, 50, 60), None);
        // Another event missing starts a new wait.
        assert_eq!(h.stop(47, 50, 60), Some(47));
        // A task that never waits.
        assert_eq!(Handover::new(0).stop(45, 50, 60), None);
    }
}
