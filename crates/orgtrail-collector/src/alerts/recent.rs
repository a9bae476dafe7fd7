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

/// What a ruled-out event counts against [`CAPACITY`]: its map entry.
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

    fn size(&self) -> usize {
        match self {
            Entry::Bytes(b) => b.len(),
            Entry::RuledOut(_) => RULED_OUT_BYTES,
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
    events: BTreeMap<u64, Entry>,
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

    /// Keeps a group commit's stored events, as far as the capacity allows.
    pub(crate) fn add(&self, stored: Vec<(u64, Entry)>) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        for (seq, entry) in stored {
            if inner.bytes + entry.size() > CAPACITY {
                break;
            }
            inner.bytes += entry.size();
            if let Some(old) = inner.events.insert(seq, entry) {
                inner.bytes -= old.size();
            }
        }
    }

    /// Takes out the events kept at `first..=last`, and forgets any before `first` (already
    /// evaluated: read back while they were on their way here).
    pub(crate) fn take(&self, first: u64, last: u64) -> BTreeMap<u64, Entry> {
        let Ok(mut inner) = self.inner.lock() else {
            return BTreeMap::new();
        };
        let mut rest = inner.events.split_off(&first);
        let after = rest.split_off(&last.saturating_add(1));
        let dropped: usize = inner.events.values().map(Entry::size).sum();
        let taken: usize = rest.values().map(Entry::size).sum();
        inner.events = after;
        inner.bytes -= dropped + taken;
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(matches!(&got[&4], Entry::Bytes(b) if *b == vec![4u8; 10]));
        // 1 and 2 are gone (older than the range taken), 6..=10 still there.
        assert!(r.take(1, 2).is_empty());
        assert_eq!(r.take(6, 100).len(), 5);
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
