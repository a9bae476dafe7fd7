//! Threshold rules in evaluation: their sliding windows ([`orgtrail_rules::Windows`]) kept
//! beside the alert watermark.
//!
//! Each evaluated range writes its alerts, the new watermark and the windows' changes (which
//! stored events each rule's groups still count: sequence numbers, no event data) in one
//! atomic, durable write. The windows in memory are valid for one watermark; whenever they
//! are not for the current one (on start, or after a step failed part-way), they are rebuilt
//! from the ledger: the kept events are read again (in sequence order) and put back. A
//! collector killed at any moment therefore resumes with exactly the windows of the last
//! recorded range, and fires each threshold alert once: on the event that crossed the
//! threshold, whose (rule, account, eventID) gives the alert id as for any rule.
//!
//! Windows are measured by each event's own `eventTime` (see [`orgtrail_rules::threshold`]);
//! an event without a readable `eventTime` is not counted.

use std::sync::{Mutex, MutexGuard};

use orgtrail_rules::threshold::{self, DEFAULT_MAX_GROUPS, Outcome};
use orgtrail_rules::{Rule, RuleSet, Windows};
use orgtrail_store::{EventStore, StoreError, WindowChanges};
use serde_json::Value;

/// The windows, valid at `through`, and entries of the ledger to drop at the next write
/// (kept for rules that are gone or no longer keep them).
#[derive(Debug)]
struct State {
    windows: Windows,
    through: u64,
    stale: Vec<(String, u64)>,
}

/// The threshold rules' windows of one evaluator.
#[derive(Debug, Default)]
pub(crate) struct Thresholds {
    state: Mutex<Option<State>>,
}

/// The windows for one evaluation step: call [`Step::observe`] for each match of a threshold
/// rule, then record [`Step::changes`] with the alerts, then [`Step::recorded`]. Dropped
/// without `recorded`, the windows are rebuilt before the next step.
pub(crate) struct Step<'a> {
    guard: MutexGuard<'a, Option<State>>,
    evictions_before: u64,
    recorded: bool,
}

impl Thresholds {
    /// The windows as of the watermark `through`, rebuilt from the ledger when needed.
    /// Blocking.
    pub(crate) fn step(
        &self,
        store: &dyn EventStore,
        rules: &RuleSet,
        through: u64,
    ) -> Result<Step<'_>, StoreError> {
        let mut guard = self.state.lock().map_err(|_| StoreError::Unavailable {
            reason: "the threshold windows' lock is poisoned".into(),
        })?;
        if guard.as_ref().is_none_or(|s| s.through != through) {
            *guard = None;
            *guard = Some(restore(store, rules, through)?);
        }
        // Rules gone, disabled or with another threshold since (a reload) count no more; what
        // they kept is dropped from the ledger with the next write.
        if let Some(s) = guard.as_mut() {
            s.windows.retain(|id, th| {
                rules
                    .rules
                    .binary_search_by(|r| r.id.as_str().cmp(id))
                    .ok()
                    .map(|i| &rules.rules[i])
                    .is_some_and(|r| r.enabled && r.threshold.as_ref() == Some(th))
            });
        }
        let evictions_before = guard.as_ref().map_or(0, |s| s.windows.evictions());
        Ok(Step {
            guard,
            evictions_before,
            recorded: false,
        })
    }
}

impl Step<'_> {
    fn state(&mut self) -> Option<&mut State> {
        self.guard.as_mut()
    }

    /// Counts `record` (stored at `seq`), which matched threshold rule `rule`; whether the
    /// rule fires on it.
    pub(crate) fn observe(&mut self, rule: &Rule, record: &Value, seq: u64) -> bool {
        let (Some(th), Some(s)) = (&rule.threshold, self.state()) else {
            return false;
        };
        let Some(time) = threshold::event_time_ms(record) else {
            return false;
        };
        s.windows.observe_record(&rule.id, th, record, time, seq) == Outcome::Fired
    }

    /// What to write with the alerts.
    pub(crate) fn changes(&mut self) -> WindowChanges {
        let Some(s) = self.state() else {
            return WindowChanges::default();
        };
        let c = s.windows.take_changes();
        let mut dropped = c.dropped;
        dropped.append(&mut s.stale);
        WindowChanges {
            kept: c.kept,
            dropped,
        }
    }

    /// The changes were recorded with the watermark `through`. Returns the groups evicted
    /// during this step (to stay within the cap).
    pub(crate) fn recorded(mut self, through: u64) -> u64 {
        self.recorded = true;
        let before = self.evictions_before;
        match self.state() {
            Some(s) => {
                s.through = through;
                s.windows.evictions() - before
            }
            None => 0,
        }
    }
}

impl Drop for Step<'_> {
    fn drop(&mut self) {
        // Not recorded (an error part-way): the windows may be ahead of the ledger.
        if !self.recorded {
            *self.guard = None;
        }
    }
}

/// Rebuilds the windows the ledger describes at watermark `through`.
fn restore(store: &dyn EventStore, rules: &RuleSet, through: u64) -> Result<State, StoreError> {
    let mut kept = store.threshold_windows()?;
    kept.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    let mut windows = Windows::new(DEFAULT_MAX_GROUPS);
    let mut stale = Vec::new();
    let mut last: Option<(u64, Value)> = None;
    for (rule_id, seq) in &kept {
        let rule = rules
            .rules
            .iter()
            .find(|r| r.id == *rule_id && r.enabled && r.threshold.is_some());
        let (Some(rule), true) = (rule, *seq <= through) else {
            stale.push((rule_id.clone(), *seq));
            continue;
        };
        if last.as_ref().is_none_or(|(s, _)| s != seq) {
            let e = store.read(*seq)?;
            let v = serde_json::from_slice(&e.bytes).unwrap_or(Value::Null);
            last = Some((*seq, v));
        }
        let Some((_, record)) = &last else { continue };
        match (&rule.threshold, threshold::event_time_ms(record)) {
            (Some(th), Some(time)) => {
                windows.restore_record(&rule.id, th, record, time, *seq);
            }
            _ => stale.push((rule_id.clone(), *seq)),
        }
    }
    // What the restored windows no longer keep (a rule whose threshold changed) goes too.
    let now: std::collections::BTreeSet<(String, u64)> = windows.kept().into_iter().collect();
    let gone: Vec<(String, u64)> = kept
        .into_iter()
        .filter(|k| !now.contains(k) && !stale.contains(k))
        .collect();
    stale.extend(gone);
    if !now.is_empty() || !stale.is_empty() {
        tracing::info!(
            kept = now.len(),
            dropped = stale.len(),
            through,
            "threshold windows rebuilt from the ledger"
        );
    }
    Ok(State {
        windows,
        through,
        stale,
    })
}
