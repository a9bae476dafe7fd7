//! Events just stored, kept in memory for the rule evaluator ([`crate::just_stored`]), so that
//! it matches them without reading them back from the ledger (and decrypting and
//! decompressing them again): each event's bytes as they arrived.
//!
//! **Screening.** While it validates an event, the ingest service also asks the rules in force
//! whether any may match it, from the fields the validation parsed ([`RuleSet::may_match`]: an
//! exact answer, never a guess). An event no rule can match is kept as passed over
//! ([`Entry::Pass`]), with the rule set that said so, and without its bytes: the evaluator
//! passes over it without parsing it, if the same rule set is still in force. After a reload,
//! it reads the event back and matches it in full. With detection rules, which name rare
//! events, that is nearly every event.
//!
//! Memory is bounded by [`CAPACITY`] bytes of event data.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use orgtrail_core::CloudTrailEvent;
use orgtrail_rules::RuleSet;

use super::reload::LiveRules;
use crate::just_stored::{JustStored, Run};

/// The most event bytes kept: about 20,000 events of the generator's size, twenty of the
/// evaluator's ranges.
pub(crate) const CAPACITY: usize = 32 << 20;

/// What is kept of one stored event: its bytes, or the rule set that rules it out.
pub(crate) type Entry = crate::just_stored::Entry<Vec<u8>, Arc<RuleSet>>;
/// What is kept from a sequence number on.
pub(crate) type Kept = crate::just_stored::Kept<Vec<u8>, Arc<RuleSet>>;

impl Run for Arc<RuleSet> {
    /// Ruled out by the same rule set (not an equal one loaded again).
    fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(self, other)
    }
}

/// The entry for a validated event: screened by `rules`, if given.
pub(crate) fn entry(event: CloudTrailEvent, rules: Option<&Arc<RuleSet>>) -> Entry {
    match rules {
        Some(r) if !r.may_match(&event) => Entry::Pass(r.clone()),
        _ => Entry::Value(event.into_bytes()),
    }
}

/// The cache (see the module docs).
#[derive(Debug)]
pub(crate) struct Recent {
    kept: JustStored<Vec<u8>, Arc<RuleSet>>,
    /// The rules in force, once loaded: events are screened by them.
    rules: OnceLock<LiveRules>,
}

impl Default for Recent {
    fn default() -> Self {
        Recent {
            kept: JustStored::new(CAPACITY),
            rules: OnceLock::new(),
        }
    }
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
        self.kept.add(stored);
    }

    /// The last sequence number up to which `first..=last` is kept without a gap
    /// ([`JustStored::covered`]).
    pub(crate) fn covered(&self, first: u64, last: u64) -> u64 {
        self.kept.covered(first, last)
    }

    /// Takes out what is kept of `first..=last`, and forgets everything before `first`
    /// ([`JustStored::take`]).
    pub(crate) fn take(&self, first: u64, last: u64) -> BTreeMap<u64, Kept> {
        self.kept.take(first, last)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_event_no_rule_can_match_is_kept_without_its_bytes() {
        let rules = Arc::new(RuleSet::new(Vec::new()).unwrap());
        let event = CloudTrailEvent::parse(
            r#"{"eventVersion":"1.08","eventTime":"2024-01-01T00:00:00Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","eventID":"00000000-0000-4000-8000-000000000001"}"#
                .to_owned(),
        )
        .unwrap();
        let r = Recent::default();
        r.add(vec![
            (1, entry(event.clone(), Some(&rules))),
            (2, entry(event, None)),
        ]);
        let got = r.take(1, 2);
        assert!(matches!(&got[&1], Kept::Pass { last: 1, by } if Arc::ptr_eq(by, &rules)));
        assert!(matches!(&got[&2], Kept::Value(b) if !b.is_empty()));
    }
}
