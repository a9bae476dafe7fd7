//! Evaluation: the stored events past the alert watermark, in sequence order, matched against
//! the rules; their alerts and the new watermark recorded in one durable write.

use std::sync::Arc;
use std::time::Duration;

use orgtrail_core::AccountId;
use orgtrail_rules::RuleSet;
use orgtrail_store::{EventStore, PendingAlert, StoreError};

use super::recent::Kept;
use crate::handover::Handover;
use serde_json::Value;
use tokio::sync::{Notify, watch};

/// A stored event to match: its sequence number, its account when known (read back), and its
/// bytes.
type ToMatch = (u64, Option<AccountId>, Vec<u8>);

/// Events evaluated and recorded at once. A range's record rides on the ledger's next group
/// commit (see the store's `outbox` module), so while events stream in the evaluator records
/// about once per group commit: a range holds a group commit's events (a few thousand) and
/// more, so that it keeps up.
const RANGE: u64 = 4096;
/// How long to wait after a store error before trying again.
const RETRY: Duration = Duration::from_secs(1);
/// How one step of evaluation ended: [`Step::Done`] with the alerts it recorded.
type Step = crate::handover::Step<usize>;

/// What evaluation needs.
pub(crate) struct Evaluator {
    pub(crate) store: Arc<dyn EventStore>,
    /// The rules in force, swapped by a reload; each range is evaluated with one set.
    pub(crate) rules: super::reload::LiveRules,
    pub(crate) sinks: Vec<String>,
    pub(crate) metrics: Arc<crate::ops::Metrics>,
    /// Bumped after each write that recorded alerts: wakes alert followers.
    pub(crate) recorded: watch::Sender<u64>,
    /// The threshold rules' windows.
    pub(crate) thresholds: super::threshold::Thresholds,
    /// Events just stored, kept by the ingest service so that they need not be read back.
    pub(crate) recent: Arc<super::recent::Recent>,
    /// Where the events that made alerts are kept for the delivery loops.
    pub(crate) fired: Arc<super::fired::Fired>,
}

/// Where evaluation starts the first time rules are on for a store: past everything already
/// stored (rules apply to events stored from now on; history is not alerted on). Called before
/// the collector takes events. Later starts resume from the watermark. Blocking.
pub(crate) fn start(store: &dyn EventStore) -> Result<u64, StoreError> {
    match store.alerts_through()? {
        Some(w) => Ok(w),
        None => {
            let (head, _) = store.tree_head()?;
            store.record_alerts(head, &[])?;
            tracing::info!(
                through = head,
                "rules are on for the first time: events stored from now on are evaluated"
            );
            Ok(head)
        }
    }
}

impl Evaluator {
    /// Evaluates until `stopping`: `stored` is woken after each group commit that stored
    /// events, and anything left from before a restart is caught up first. Wakes `deliver`
    /// after each recorded range that has alerts.
    pub(crate) async fn run(
        self,
        stored: Arc<Notify>,
        deliver: Arc<Notify>,
        mut stopping: watch::Receiver<bool>,
    ) {
        let me = Arc::new(self);
        // Events of a batch still handing them over are waited for ([`crate::handover`]).
        let mut handover = Handover::new(crate::handover::NEAR);
        loop {
            if *stopping.borrow() {
                return;
            }
            let m = me.clone();
            match super::background::run(move || m.step(handover)).await {
                Ok(Ok(Step::Done(alerts))) => {
                    if alerts > 0 {
                        deliver.notify_one();
                    }
                    continue;
                }
                Ok(Ok(Step::Handover(seq))) => {
                    if !handover.wait(seq, &stored, &mut stopping).await {
                        return;
                    }
                    continue;
                }
                Ok(Ok(Step::Idle)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "evaluating rules failed; retrying");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "the rule evaluation task failed");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            }
            // Nothing new: wait for the next stored event (or a stop).
            tokio::select! {
                () = stored.notified() => {}
                _ = stopping.changed() => return,
                () = tokio::time::sleep(RETRY) => {}
            }
        }
    }

    /// The events at `first..=last` that `rules` must match, in order: those the ingest
    /// service kept in memory, the rest read back from the store, each gap as one range (each
    /// record block opened once), with their accounts. Events the ingest service screened out
    /// under the same rules are passed over; those screened under rules since replaced are
    /// read back. Blocking.
    fn events(
        &self,
        first: u64,
        last: u64,
        rules: &Arc<RuleSet>,
    ) -> Result<Vec<ToMatch>, StoreError> {
        let kept = self.recent.take(first, last);
        let mut out = Vec::with_capacity(usize::try_from(last - first + 1).unwrap_or(0));
        // What is kept, in order; what is missing (or screened under other rules) is read
        // back, each gap as one range.
        let read_back = |from: u64, to: u64, out: &mut Vec<ToMatch>| {
            if from <= to {
                out.extend(
                    self.store
                        .read_range(from, to)?
                        .into_iter()
                        .map(|e| (e.seq, Some(e.account), e.bytes)),
                );
            }
            Ok::<(), StoreError>(())
        };
        let mut gap = first;
        for (at, k) in kept {
            match k {
                Kept::Value(bytes) => {
                    read_back(gap, at - 1, &mut out)?;
                    out.push((at, None, bytes));
                    gap = at + 1;
                }
                Kept::Pass { last: end, by } if Arc::ptr_eq(&by, rules) => {
                    read_back(gap, at - 1, &mut out)?;
                    gap = end + 1;
                }
                // Screened under rules since replaced: read back with the gap.
                Kept::Pass { .. } => {}
            }
        }
        read_back(gap, last, &mut out)?;
        Ok(out)
    }

    /// Evaluates one range past the watermark. Blocking.
    fn step(&self, handover: Handover) -> Result<Step, StoreError> {
        let (head, _) = self.store.tree_head()?;
        let Some(through) = self.store.alerts_through()? else {
            // Never evaluated: [`start`] sets the watermark before events are taken.
            return Err(StoreError::Unavailable {
                reason: "the alert watermark is not set".into(),
            });
        };
        if head <= through {
            return Ok(Step::Idle);
        }
        let mut to = head.min(through + RANGE);
        let covered = self.recent.covered(through + 1, to);
        if let Some(last) = handover.stop(covered, to, head) {
            if last <= through {
                return Ok(Step::Handover(through + 1));
            }
            to = last;
        }
        let rules = self.rules.current();
        let mut windows = self.thresholds.step(&*self.store, &rules, through)?;
        let mut alerts = Vec::new();
        let mut hits = Vec::new();
        for (seq, account, bytes) in self.events(through + 1, to, &rules)? {
            // Only the fields the rules and thresholds read are built into values.
            let record: Value = match rules.parse_record(&bytes) {
                Ok(v) => v,
                Err(err) => {
                    // Validated when it arrived; never expected.
                    tracing::error!(seq, error = %err, "a stored event is not JSON; no rule can match it");
                    continue;
                }
            };
            rules.matches(&record, &mut hits);
            let before = alerts.len();
            for h in &hits {
                let rule = &rules.rules[*h];
                // A threshold rule fires only on the event that crosses its threshold.
                if rule.threshold.is_some() && !windows.observe(rule, &record, seq) {
                    continue;
                }
                alerts.push(PendingAlert {
                    seq,
                    rule: rule.id.clone(),
                    sinks: super::sinks_of(rule, &self.sinks),
                });
            }
            // Kept before the alerts are recorded: a delivery loop that reads them finds it.
            // An event kept by the ingest service comes without its account: the one it is
            // stored under is its `recipientAccountId` (see `fired`), parsed with the record.
            if alerts.len() > before
                && let Some(account) = account.or_else(|| {
                    RuleSet::recipient(&record).and_then(|s| s.parse::<AccountId>().ok())
                })
            {
                let builds = alerts[before..].iter().map(|a| a.sinks.len()).sum();
                self.fired.add(seq, account, bytes, builds);
            }
        }
        self.store
            .record_alerts_with_windows(to, &alerts, &windows.changes())?;
        self.metrics.threshold_groups_evicted(windows.recorded(to));
        orgtrail_store::crashpoint::hit_alerts("alerts-recorded");
        if !alerts.is_empty() {
            self.recorded.send_modify(|n| *n = n.wrapping_add(1));
        }
        self.metrics.alerts_recorded(alerts.len() as u64);
        if !alerts.is_empty() {
            tracing::info!(
                events = to - through,
                alerts = alerts.len(),
                through = to,
                "rules evaluated; alerts recorded"
            );
        }
        Ok(Step::Done(alerts.len()))
    }
}
