//! The events that just made alerts, kept in memory by the evaluator for the delivery loops,
//! so that an alert's payload is built without reading its event back from the ledger (and
//! decrypting and decompressing its record block again): with rules that fire often, that
//! read-back was about a tenth of the collector's CPU.
//!
//! The evaluator adds the bytes of each event that made an alert before it records the
//! range's alerts, so a delivery loop that finds an alert in the outbox usually finds its
//! event here. This is only a shortcut, as [`super::recent`] is for the evaluator: an event
//! not kept (dropped for room, or recorded before a restart) is read back, and the payload is
//! the same either way, because what is kept is the event's stored bytes and, when known, its
//! account.
//!
//! An event taken from [`super::recent`] comes without its account: the account it is stored
//! under is then its `recipientAccountId`, which the ingest service refuses to store under any
//! other account (the evaluator takes it from the record it parsed to match, which always
//! holds that field: `RuleSet::parse_record`). An event with no `recipientAccountId` (stored
//! under its certificate's account) is kept only when its account is known (read back from
//! the ledger).
//!
//! An event is kept until each of its alerts was built once for each of its sinks (the count
//! the evaluator gives), so that memory holds only what delivery has not reached yet, and is
//! bounded by [`CAPACITY`] bytes of event data: when delivery falls behind by more than that,
//! the oldest events go first (and are read back).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use orgtrail_core::AccountId;

/// The most event bytes kept: about 60,000 events of the generator's size, enough for the
/// delivery of an alert storm to trail its evaluation by seconds.
pub(crate) const CAPACITY: usize = 64 << 20;

/// One event that made an alert.
#[derive(Debug, Clone)]
pub(crate) struct FiredEvent {
    /// The account it is stored under.
    pub(crate) account: AccountId,
    /// Its stored bytes.
    pub(crate) bytes: Arc<[u8]>,
}

/// The cache (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Fired {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Each event, with the builds of its alerts still to come.
    events: BTreeMap<u64, (FiredEvent, usize)>,
    bytes: usize,
}

impl Fired {
    /// Keeps the event at `seq` (its stored bytes, and the account it is stored under: see
    /// the module docs) for `uses` builds of its alerts (one per alert and sink). The oldest
    /// events make room.
    pub(crate) fn add(&self, seq: u64, account: AccountId, bytes: Vec<u8>, uses: usize) {
        if bytes.len() > CAPACITY {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let inner = &mut *inner;
        let size = bytes.len();
        if let Some((old, _)) = inner.events.insert(
            seq,
            (
                FiredEvent {
                    account,
                    bytes: bytes.into(),
                },
                uses,
            ),
        ) {
            inner.bytes -= old.bytes.len();
        }
        inner.bytes += size;
        while inner.bytes > CAPACITY {
            let Some((_, (gone, _))) = inner.events.pop_first() else {
                break;
            };
            inner.bytes -= gone.bytes.len();
        }
    }

    /// The event at `seq`, if kept, for `builds` builds of its alerts: once it has had all
    /// it was kept for, it is forgotten.
    pub(crate) fn take(&self, seq: u64, builds: usize) -> Option<FiredEvent> {
        let mut inner = self.inner.lock().ok()?;
        let (event, uses) = inner.events.get_mut(&seq)?;
        let event = event.clone();
        *uses = uses.saturating_sub(builds);
        if *uses == 0 {
            inner.events.remove(&seq);
            inner.bytes -= event.bytes.len();
        }
        Some(event)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const A: &str = "111122223333";

    #[test]
    fn keeps_events_with_a_known_account_until_built_and_no_more_than_its_capacity() {
        let f = Fired::default();
        let with = format!(r#"{{"eventID":"e1","recipientAccountId":"{A}"}}"#);
        let a: AccountId = A.parse().unwrap();
        // Two alerts (or sinks) to build.
        f.add(1, a, with.clone().into_bytes(), 2);
        let got = f.take(1, 1).unwrap();
        assert_eq!(got.account.as_str(), A);
        assert_eq!(&*got.bytes, with.as_bytes());
        assert!(f.take(1, 1).is_some(), "the second build");
        assert!(
            f.take(1, 1).is_none(),
            "forgotten once built as often as kept for"
        );
        // Never kept: read back.
        assert!(f.take(2, 1).is_none());
        // The account is kept as given.
        let b: AccountId = "444455556666".parse().unwrap();
        f.add(3, b, br#"{"eventID":"e3"}"#.to_vec(), 1);
        assert_eq!(f.take(3, 1).unwrap().account, b);
        // Room is made by dropping the oldest.
        f.add(3, b, br#"{"eventID":"e3"}"#.to_vec(), 1);
        let big = vec![b' '; CAPACITY / 2 + 1];
        f.add(4, b, big.clone(), 1);
        f.add(5, b, big, 1);
        assert!(f.take(3, 1).is_none() && f.take(4, 1).is_none());
        assert!(f.take(5, 1).is_some());
        assert_eq!(f.inner.lock().unwrap().bytes, 0);
    }
}
