//! Evaluation: the stored events past the alert watermark, in sequence order, matched against
//! the rules; their alerts and the new watermark recorded in one durable write.

use std::sync::Arc;
use std::time::{Duration, Instant};

use orgtrail_core::AccountId;
use orgtrail_rules::RuleSet;
use orgtrail_store::{EventStore, PendingAlert, StoreError};

use super::recent::Kept;
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
/// The longest the evaluator waits for the ingest service to hand over events it has just
/// stored (see [`Evaluator::handover`]) before it reads them back instead.
const HANDOVER_WAIT: Duration = Duration::from_millis(20);

/// How one step of evaluation ended.
enum Step {
    /// Nothing past the watermark.
    Idle,
    /// A range was evaluated: the alerts it recorded.
    Evaluated(usize),
    /// The next event past the watermark (this sequence number) is stored but not handed
    /// over yet by the batch that stored it: wait for it (see [`Evaluator::handover`]).
    Handover(u64),
}

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
        // The event waited for to be handed over, and since when.
        let mut waiting: Option<(u64, Instant)> = None;
        loop {
            if *stopping.borrow() {
                return;
            }
            let m = me.clone();
            let waited = waiting;
            match super::background::run(move || m.step(waited)).await {
                Ok(Ok(Step::Evaluated(alerts))) => {
                    if alerts > 0 {
                        deliver.notify_one();
                    }
                    continue;
                }
                Ok(Ok(Step::Handover(seq))) => {
                    let since = match waiting {
                        Some((s, since)) if s == seq => since,
                        _ => Instant::now(),
                    };
                    waiting = Some((seq, since));
                    // Its batch wakes `stored` once it handed its events over; at most
                    // [`HANDOVER_WAIT`] after the wait began, the event is read back.
                    let left = HANDOVER_WAIT.saturating_sub(since.elapsed());
                    tokio::select! {
                        () = stored.notified() => {}
                        _ = stopping.changed() => return,
                        () = tokio::time::sleep(left) => {}
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

    /// Where the range `first..=to` ends so that its events need not be read back, when the
    /// ingest service has yet to hand over some of them.
    ///
    /// A batch's events are handed over ([`super::recent`]) right after its group commit, by
    /// the task that stored them; the evaluator is woken by any batch's commit, and the head
    /// it reads may already hold the events of a batch (of the same group commit, or the next)
    /// whose task has not handed them over yet. Reading those back costs decrypting,
    /// decompressing and parsing them in full (they were not screened): with several batches
    /// in flight, about one event in seven was read back so, most of the evaluator's CPU. So
    /// when events near the head (within a range of it) are not kept yet, the range stops
    /// before them, and the evaluator waits for their batch's wake-up, at most
    /// [`HANDOVER_WAIT`] from when it first waited for that event (`waited`): one never handed
    /// over (the cache was full, or it was stored before a restart) is then read back. What is
    /// evaluated, and in which order, is the same either way; only when it is evaluated
    /// changes, by at most that wait.
    ///
    /// `None`: evaluate `first..=to`; `Some(last)`: evaluate `first..=last` now (`last` below
    /// `first`: nothing yet).
    fn handover(
        &self,
        first: u64,
        to: u64,
        head: u64,
        waited: Option<(u64, Instant)>,
    ) -> Option<u64> {
        let covered = self.recent.covered(first, to);
        if covered >= to {
            return None;
        }
        let missing = covered + 1;
        let near_head = head - missing < RANGE;
        let waited_enough =
            waited.is_some_and(|(seq, since)| seq == missing && since.elapsed() >= HANDOVER_WAIT);
        (near_head && !waited_enough).then_some(covered)
    }

    /// Evaluates one range past the watermark. Blocking.
    fn step(&self, waited: Option<(u64, Instant)>) -> Result<Step, StoreError> {
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
        if let Some(last) = self.handover(through + 1, to, head, waited) {
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
        Ok(Step::Evaluated(alerts.len()))
    }
}
