//! Events just stored, kept in memory by sequence number for a task that follows the ledger
//! past a watermark (the rule evaluator, the Insights feeder), so that it need not read them
//! back (decrypt, decompress and parse them again).
//!
//! The ingest service adds each batch's stored events right after its group commit, before it
//! wakes the task. The task takes what is kept of the range it works on and reads back from
//! the ledger only what is missing: events stored before a restart, a batch whose events are
//! not added yet, events appended by another path, or events dropped because the cache was
//! full. So this is only a shortcut: what the task sees is the same either way, and the ledger
//! (with the task's watermark) stays the only record of what was done.
//!
//! What is kept of one event is either a value (what the task needs of it) or a mark that the
//! task has nothing to do with it, with the reason ([`Run`]: for the rule evaluator, the rule
//! set that ruled it out). Consecutive marked events, for the same reason, are kept as one
//! run of sequence numbers, so that an event the task passes over costs no entry of its own.
//!
//! Memory is bounded by a capacity in bytes ([`Value::size`], and [`RUN_BYTES`] per run): when
//! the task falls behind by more than that, new events are not kept (it reads them back when
//! it gets there).

use std::collections::BTreeMap;
use std::sync::Mutex;

/// What a run of marked events counts against the capacity: its map entry.
pub(crate) const RUN_BYTES: usize = 64;

/// What is kept of one event: its size counts against the capacity.
pub(crate) trait Value {
    fn size(&self) -> usize;
}

impl Value for Vec<u8> {
    fn size(&self) -> usize {
        self.len()
    }
}

/// Why the task passes over an event; consecutive events passed over for the same reason
/// are kept as one run.
pub(crate) trait Run: Clone {
    fn same(&self, other: &Self) -> bool;
}

impl Run for () {
    fn same(&self, (): &()) -> bool {
        true
    }
}

/// What the ingest service hands over for one stored event.
#[derive(Debug)]
pub(crate) enum Entry<V, R> {
    /// What the task needs of it.
    Value(V),
    /// The task passes over it, for this reason.
    Pass(R),
}

/// What is kept from a sequence number on: one event's value, or a run of events passed
/// over.
#[derive(Debug)]
pub(crate) enum Kept<V, R> {
    /// The value of the event at this sequence number.
    Value(V),
    /// The events from this sequence number through `last` are passed over, for `by`.
    Pass { last: u64, by: R },
}

impl<V: Value, R> Kept<V, R> {
    fn size(&self) -> usize {
        match self {
            Kept::Value(v) => v.size(),
            Kept::Pass { .. } => RUN_BYTES,
        }
    }
}

/// The cache (see the module docs).
#[derive(Debug)]
pub(crate) struct JustStored<V, R> {
    inner: Mutex<Inner<V, R>>,
    /// The most bytes kept.
    capacity: usize,
}

#[derive(Debug)]
struct Inner<V, R> {
    /// By first sequence number; entries never overlap.
    events: BTreeMap<u64, Kept<V, R>>,
    bytes: usize,
}

impl<V: Value, R: Run> JustStored<V, R> {
    /// An empty cache that keeps at most `capacity` bytes.
    pub(crate) fn new(capacity: usize) -> Self {
        JustStored {
            inner: Mutex::new(Inner {
                events: BTreeMap::new(),
                bytes: 0,
            }),
            capacity,
        }
    }

    /// Keeps a group commit's stored events, as far as the capacity allows. An event passed
    /// over right after a run passed over for the same reason extends that run.
    pub(crate) fn add(&self, stored: Vec<(u64, Entry<V, R>)>) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let inner = &mut *inner;
        for (seq, entry) in stored {
            let before = inner.events.range_mut(..=seq).next_back();
            let kept = match (entry, before) {
                // Kept already (never expected: a sequence number is stored once).
                (_, Some((at, _))) if *at == seq => continue,
                (_, Some((_, Kept::Pass { last, .. }))) if *last >= seq => continue,
                (Entry::Pass(by), Some((_, Kept::Pass { last, by: run })))
                    if *last + 1 == seq && run.same(&by) =>
                {
                    *last = seq;
                    continue;
                }
                (Entry::Pass(by), _) => Kept::Pass { last: seq, by },
                (Entry::Value(v), _) => Kept::Value(v),
            };
            if inner.bytes + kept.size() > self.capacity {
                break;
            }
            inner.bytes += kept.size();
            inner.events.insert(seq, kept);
        }
    }

    /// The last sequence number up to which `first..=last` is kept without a gap (each event
    /// a value or in a run passed over); `first - 1` when `first` itself is not kept. Takes
    /// nothing out.
    pub(crate) fn covered(&self, first: u64, last: u64) -> u64 {
        let none = first.saturating_sub(1);
        let Ok(inner) = self.inner.lock() else {
            return none;
        };
        let mut through = none;
        // The entry at or before `first` (a run may start before it), then those after it.
        let start = match inner.events.range(..=first).next_back() {
            Some((at, _)) => *at,
            None => first,
        };
        for (at, k) in inner.events.range(start..=last) {
            if *at > through.saturating_add(1) {
                break;
            }
            let end = match k {
                Kept::Value(_) => *at,
                Kept::Pass { last, .. } => *last,
            };
            if end >= first {
                through = through.max(end);
            }
        }
        through.min(last)
    }

    /// Takes out what is kept of `first..=last` (a run across either end cut to the range,
    /// its rest kept), and forgets everything before `first` (already done: read back while
    /// it was on its way here).
    pub(crate) fn take(&self, first: u64, last: u64) -> BTreeMap<u64, Kept<V, R>> {
        let Ok(mut inner) = self.inner.lock() else {
            return BTreeMap::new();
        };
        let inner = &mut *inner;
        let mut rest = inner.events.split_off(&first);
        // A run that starts before `first` and reaches into the range: its part in the range.
        if let Some((_, Kept::Pass { last: end, by })) = inner.events.last_key_value()
            && *end >= first
        {
            rest.insert(
                first,
                Kept::Pass {
                    last: *end,
                    by: by.clone(),
                },
            );
            inner.bytes += RUN_BYTES;
        }
        let mut after = rest.split_off(&last.saturating_add(1));
        // A run in the range that reaches past `last`: its part past the range stays.
        if let Some(Kept::Pass { last: end, by }) = rest.values_mut().next_back()
            && *end > last
        {
            after.insert(
                last + 1,
                Kept::Pass {
                    last: *end,
                    by: by.clone(),
                },
            );
            *end = last;
            inner.bytes += RUN_BYTES;
        }
        let dropped: usize = inner.events.values().map(Kept::size).sum();
        let taken: usize = rest.values().map(Kept::size).sum();
        inner.events = after;
        inner.bytes -= dropped + taken;
        rest
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use super::*;

    /// A reason to pass over: runs join only for the same one.
    #[derive(Debug, Clone)]
    struct By(Arc<()>);

    impl Run for By {
        fn same(&self, other: &Self) -> bool {
            Arc::ptr_eq(&self.0, &other.0)
        }
    }

    fn cache() -> JustStored<Vec<u8>, By> {
        JustStored::new(1000)
    }

    /// What was taken, as (first, last, the value's first byte).
    fn runs(m: &BTreeMap<u64, Kept<Vec<u8>, By>>) -> Vec<(u64, u64, Option<u8>)> {
        m.iter()
            .map(|(at, k)| match k {
                Kept::Value(b) => (*at, *at, Some(b[0])),
                Kept::Pass { last, .. } => (*at, *last, None),
            })
            .collect()
    }

    #[test]
    fn takes_a_range_and_forgets_what_is_older() {
        let r = cache();
        r.add(
            (1..=10)
                .map(|s| (s, Entry::Value(vec![s as u8; 10])))
                .collect(),
        );
        let got = r.take(3, 5);
        assert_eq!(got.keys().copied().collect::<Vec<_>>(), vec![3, 4, 5]);
        assert!(matches!(&got[&4], Kept::Value(b) if *b == vec![4u8; 10]));
        // 1 and 2 are gone (older than the range taken), 6..=10 still there.
        assert!(r.take(1, 2).is_empty());
        assert_eq!(r.take(6, 100).len(), 5);
        assert_eq!(r.inner.lock().unwrap().bytes, 0);
    }

    #[test]
    fn events_passed_over_are_kept_as_runs_cut_where_a_range_ends() {
        let (a, b) = (By(Arc::new(())), By(Arc::new(())));
        let r = cache();
        let mut stored: Vec<(u64, Entry<Vec<u8>, By>)> =
            (1..=4).map(|s| (s, Entry::Pass(a.clone()))).collect();
        stored.push((5, Entry::Value(vec![5])));
        stored.extend((6..=8).map(|s| (s, Entry::Pass(a.clone()))));
        // Another reason (rules after a reload): a run of its own.
        stored.extend((9..=10).map(|s| (s, Entry::Pass(b.clone()))));
        // Added out of order (two group commits' adds racing): 14..=15 first, then 11..=13.
        r.add(stored);
        r.add((14..=15).map(|s| (s, Entry::Pass(b.clone()))).collect());
        r.add((11..=13).map(|s| (s, Entry::Pass(b.clone()))).collect());
        // Added twice: kept once.
        r.add(vec![(12, Entry::Value(vec![12]))]);
        assert_eq!(r.inner.lock().unwrap().events.len(), 5);

        let got = r.take(3, 6);
        assert_eq!(
            runs(&got),
            vec![(3, 4, None), (5, 5, Some(5)), (6, 6, None)]
        );
        assert!(matches!(&got[&3], Kept::Pass { by, .. } if by.same(&a)));
        let got = r.take(7, 12);
        assert_eq!(runs(&got), vec![(7, 8, None), (9, 12, None)]);
        assert!(matches!(&got[&9], Kept::Pass { by, .. } if by.same(&b)));
        // The rest of the run from 13 on is kept for the next range.
        let got = r.take(13, 20);
        assert_eq!(runs(&got), vec![(13, 13, None), (14, 15, None)]);
        assert_eq!(r.inner.lock().unwrap().bytes, 0);
    }

    #[test]
    fn tells_how_far_a_range_is_kept_without_a_gap() {
        let a = By(Arc::new(()));
        let r = cache();
        assert_eq!(r.covered(1, 10), 0);
        let mut stored: Vec<(u64, Entry<Vec<u8>, By>)> =
            (1..=4).map(|s| (s, Entry::Pass(a.clone()))).collect();
        stored.push((5, Entry::Value(vec![5])));
        // 6 and 7 not handed over yet.
        stored.extend((8..=9).map(|s| (s, Entry::Value(vec![s as u8]))));
        r.add(stored);
        assert_eq!(r.covered(1, 10), 5);
        // From inside a run.
        assert_eq!(r.covered(3, 10), 5);
        assert_eq!(r.covered(2, 3), 3);
        assert_eq!(r.covered(6, 10), 5);
        assert_eq!(r.covered(8, 10), 9);
        r.add(vec![
            (6, Entry::Value(vec![6])),
            (7, Entry::Pass(a.clone())),
        ]);
        assert_eq!(r.covered(1, 20), 9);
        assert_eq!(r.covered(1, 8), 8);
        // Nothing is taken out.
        assert_eq!(r.take(1, 9).len(), 6);
    }

    #[test]
    fn keeps_no_more_than_its_capacity() {
        let r = cache();
        r.add((1..=5).map(|s| (s, Entry::Value(vec![0u8; 251]))).collect());
        // Three fit; the rest is left for the task to read back.
        assert_eq!(
            r.take(1, 5).keys().copied().collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
    }
}
