//! Events just stored, kept in memory for the rule evaluator, so that it matches them without
//! reading them back from the ledger (and decrypting and decompressing them again).
//!
//! The ingest service adds each batch's stored events (sequence number, the bytes as they
//! arrived) right after its group commit, before it wakes the evaluator. The evaluator takes
//! the events of the range it evaluates from here, and reads back from the ledger only what is
//! missing: events stored before a restart, a batch whose events are not added yet, or events
//! dropped because the cache was full. So this is only a shortcut: what the evaluator sees is
//! the same either way, and the ledger (with its watermark) stays the only record of what was
//! evaluated.
//!
//! **Screening.** While it validates an event, the ingest service also asks the rules in force
//! whether any may match it, from the fields the validation parsed ([`RuleSet::may_match`]: an
//! exact answer, never a guess). An event no rule can match is kept as [`Entry::RuledOut`], with
//! the rule set that said so, and without its bytes: the evaluator passes over it without
//! parsing it, if the same rule set is still in force. After a reload, it reads the event back
//! and matches it in full. With detection rules, which name rare events, that is nearly every
//! event.
//!
//! Consecutive ruled-out events (by the same rule set) are kept as one run of sequence
//! numbers, so that an event no rule can match costs no entry of its own.
//!
//! Memory is bounded by [`CAPACITY`] bytes of event data: when evaluation falls behind by
//! more than that, new events are not kept (the evaluator reads them back when it gets there).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use orgtrail_core::CloudTrailEvent;
use orgtrail_rules::RuleSet;

use super::reload::LiveRules;

/// The most event bytes kept: about 20,000 events of the generator's size, twenty of the
/// evaluator's ranges.
pub(crate) const CAPACITY: usize = 32 << 20;

/// What a run of ruled-out events counts against [`CAPACITY`]: its map entry.
const RULED_OUT_BYTES: usize = 64;

/// What is kept of one stored event.
#[derive(Debug)]
pub(crate) enum Entry {
    /// Its bytes, to be matched.
    Bytes(Vec<u8>),
    /// No rule of this set can match it.
    RuledOut(Arc<RuleSet>),
}

impl Entry {
    /// The entry for a validated event: screened by `rules`, if given.
    pub(crate) fn of(event: CloudTrailEvent, rules: Option<&Arc<RuleSet>>) -> Entry {
        match rules {
            Some(r) if !r.may_match(&event) => Entry::RuledOut(r.clone()),
            _ => Entry::Bytes(event.into_bytes()),
        }
    }
}

/// What is kept from a sequence number on: one event's bytes, or a run of ruled-out events.
#[derive(Debug)]
pub(crate) enum Kept {
    /// The bytes of the event at this sequence number.
    Bytes(Vec<u8>),
    /// The events from this sequence number through `last`: no rule of `by` can match them.
    RuledOut { last: u64, by: Arc<RuleSet> },
}

impl Kept {
    fn size(&self) -> usize {
        match self {
            Kept::Bytes(b) => b.len(),
            Kept::RuledOut { .. } => RULED_OUT_BYTES,
        }
    }
}

/// The cache (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Recent {
    inner: Mutex<Inner>,
    /// The rules in force, once loaded: events are screened by them.
    rules: OnceLock<LiveRules>,
}

#[derive(Debug, Default)]
struct Inner {
    /// By first sequence number; entries never overlap.
    events: BTreeMap<u64, Kept>,
    bytes: usize,
}

impl Recent {
    /// Screens the events added from now on by the rules in force.
    pub(crate) fn screen_with(&self, rules: LiveRules) {
        let _ = self.rules.set(rules);
    }

    /// The rules in force to screen by, if set.
    pub(crate) fn rules(&self) -> Option<Arc<RuleSet>> {
        self.rules.get().map(LiveRules::current)
    }

    /// Keeps a group commit's stored events, as far as the capacity allows. A ruled-out event
    /// right after a run of events ruled out by the same rule set extends that run.
    pub(crate) fn add(&self, stored: Vec<(u64, Entry)>) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let inner = &mut *inner;
        for (seq, entry) in stored {
            let before = inner.events.range_mut(..=seq).next_back();
            let kept = match (entry, before) {
                // Kept already (never expected: a sequence number is stored once).
                (_, Some((at, _))) if *at == seq => continue,
                (_, Some((_, Kept::RuledOut { last, .. }))) if *last >= seq => continue,
                (Entry::RuledOut(by), Some((_, Kept::RuledOut { last, by: run })))
                    if *last + 1 == seq && Arc::ptr_eq(run, &by) =>
                {
                    *last = seq;
                    continue;
                }
                (Entry::RuledOut(by), _) => Kept::RuledOut { last: seq, by },
                (Entry::Bytes(b), _) => Kept::Bytes(b),
            };
            if inner.bytes + kept.size() > CAPACITY {
                break;
            }
            inner.bytes += kept.size();
            inner.events.insert(seq, kept);
        }
    }

    /// Takes out what is kept of `first..=last` (a run across either end cut to the range,
    /// its rest kept), and forgets everything before `first` (already evaluated: read back
    /// while it was on its way here).
    pub(crate) fn take(&self, first: u64, last: u64) -> BTreeMap<u64, Kept> {
        let Ok(mut inner) = self.inner.lock() else {
            return BTreeMap::new();
        };
        let inner = &mut *inner;
        let mut rest = inner.events.split_off(&first);
        // A run that starts before `first` and reaches into the range: its part in the range.
        if let Some((_, Kept::RuledOut { last: end, by })) = inner.events.last_key_value()
            && *end >= first
        {
            rest.insert(
                first,
                Kept::RuledOut {
                    last: *end,
                    by: by.clone(),
                },
            );
            inner.bytes += RULED_OUT_BYTES;
        }
        let mut after = rest.split_off(&last.saturating_add(1));
        // A run in the range that reaches past `last`: its part past the range stays.
        if let Some(Kept::RuledOut { last: end, by }) = rest.values_mut().next_back()
            && *end > last
        {
            after.insert(
                last + 1,
                Kept::RuledOut {
                    last: *end,
                    by: by.clone(),
                },
            );
            *end = last;
            inner.bytes += RULED_OUT_BYTES;
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
    use super::*;

    fn rules() -> Arc<RuleSet> {
        Arc::new(RuleSet::new(Vec::new()).unwrap())
    }

    /// What was taken, as (first, last, bytes or the rule set's address).
    fn runs(m: &BTreeMap<u64, Kept>) -> Vec<(u64, u64, Option<u8>)> {
        m.iter()
            .map(|(at, k)| match k {
                Kept::Bytes(b) => (*at, *at, Some(b[0])),
                Kept::RuledOut { last, .. } => (*at, *last, None),
            })
            .collect()
    }

    #[test]
    fn takes_a_range_and_forgets_what_is_older() {
        let r = Recent::default();
        r.add(
            (1..=10)
                .map(|s| (s, Entry::Bytes(vec![s as u8; 10])))
                .collect(),
        );
        let got = r.take(3, 5);
        assert_eq!(got.keys().copied().collect::<Vec<_>>(), vec![3, 4, 5]);
        assert!(matches!(&got[&4], Kept::Bytes(b) if *b == vec![4u8; 10]));
        // 1 and 2 are gone (older than the range taken), 6..=10 still there.
        assert!(r.take(1, 2).is_empty());
        assert_eq!(r.take(6, 100).len(), 5);
        assert_eq!(r.inner.lock().unwrap().bytes, 0);
    }

    #[test]
    fn ruled_out_events_are_kept_as_runs_cut_where_a_range_ends() {
        let (a, b) = (rules(), rules());
        let r = Recent::default();
        let mut stored: Vec<(u64, Entry)> =
            (1..=4).map(|s| (s, Entry::RuledOut(a.clone()))).collect();
        stored.push((5, Entry::Bytes(vec![5])));
        stored.extend((6..=8).map(|s| (s, Entry::RuledOut(a.clone()))));
        // Another rule set (after a reload): a run of its own.
        stored.extend((9..=10).map(|s| (s, Entry::RuledOut(b.clone()))));
        // Added out of order (two group commits' adds racing): 14..=15 first, then 11..=13.
        r.add(stored);
        r.add((14..=15).map(|s| (s, Entry::RuledOut(b.clone()))).collect());
        r.add((11..=13).map(|s| (s, Entry::RuledOut(b.clone()))).collect());
        // Added twice: kept once.
        r.add(vec![(12, Entry::Bytes(vec![12]))]);
        assert_eq!(r.inner.lock().unwrap().events.len(), 5);

        let got = r.take(3, 6);
        assert_eq!(
            runs(&got),
            vec![(3, 4, None), (5, 5, Some(5)), (6, 6, None)]
        );
        assert!(matches!(&got[&3], Kept::RuledOut { by, .. } if Arc::ptr_eq(by, &a)));
        let got = r.take(7, 12);
        assert_eq!(runs(&got), vec![(7, 8, None), (9, 12, None)]);
        assert!(matches!(&got[&9], Kept::RuledOut { by, .. } if Arc::ptr_eq(by, &b)));
        // The rest of the run from 13 on is kept for the next range.
        let got = r.take(13, 20);
        assert_eq!(runs(&got), vec![(13, 13, None), (14, 15, None)]);
        assert_eq!(r.inner.lock().unwrap().bytes, 0);
    }

    #[test]
    fn keeps_no_more_than_its_capacity() {
        let r = Recent::default();
        let big = CAPACITY / 4 + 1;
        r.add((1..=5).map(|s| (s, Entry::Bytes(vec![0u8; big]))).collect());
        // Three fit; the rest is left for the evaluator to read back.
        assert_eq!(
            r.take(1, 5).keys().copied().collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
    }
}
