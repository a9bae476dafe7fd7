//! Delivery: one loop per sink, each reading the outbox in order (oldest event first) and
//! delivering the alerts that name its sink: one at a time to a webhook or NATS, and to the
//! file sink as a batch (the alerts of one outbox read, up to 256, written and synced at once).
//! A sink that fails is retried with exponential backoff, and only its own alerts wait behind
//! it: a failing webhook never holds back the file sink. A file sink's batch is noted in the
//! outbox, in one write, once it is written and synced. What a webhook or NATS took is noted
//! in one write per outbox read, and sooner after 64 alerts or 200 ms ([`NOTE_MAX`],
//! [`NOTE_EVERY`]), before any wait to retry, and at a stop: one durable write per alert had
//! cost more than the delivery itself (a burst of 5,749 alerts took 3.5 s after ingest ended
//! and nearly doubled the collector's CPU). A crash between a sink taking alerts and their
//! note delivers them to that sink again, under the same ids (at least once).
//!
//! A sink with `max_attempts` (the webhook) gives up on an alert after that many failed
//! attempts, or at once when the receiver refused it for good (see `webhook`): the (alert,
//! sink) becomes a dead letter in the ledger, in the same write that takes it out of the
//! outbox, with a warning naming the alert id, rule, sink, attempts and last error. Attempts
//! are counted in memory: a restart starts the count over for the alert being retried (the
//! dead letters themselves are durable). The file sink has no limit: it retries until the
//! disk takes the line.
//!
//! Everything that touches sled (reading the outbox and the event, notes, dead letters) and
//! the file sink's write and sync run on blocking threads; the webhook's request is async.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use bytes::Bytes;
use orgtrail_store::{DeadLetter, EventStore, PendingAlert, StoreError, StoredEvent};
use tokio::sync::{Notify, watch};

use super::file_sink::FileSink;
use super::webhook::WebhookSink;

/// Alerts read from the outbox at once.
const BATCH: usize = 256;
/// The wait after a store error before trying again.
const STORE_RETRY: Duration = Duration::from_secs(1);
/// How often an idle loop looks at the outbox even without a wake-up.
const IDLE_RESCAN: Duration = Duration::from_secs(5);

/// A configured sink.
#[derive(Debug)]
pub(crate) enum Sink {
    File(FileSink),
    Webhook(Box<WebhookSink>),
    Nats(Box<super::nats_sink::NatsSink>),
}

/// One alert as a sink receives it.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub(crate) id: String,
    /// The rule that fired.
    pub(crate) rule: String,
    pub(crate) body: Bytes,
}

/// Why one attempt failed.
#[derive(Debug)]
pub(crate) struct Failure {
    /// What went wrong, for the log and the dead letter (never the alert's body).
    pub(crate) error: String,
    /// The receiver refused this alert for good: trying again would not help.
    pub(crate) permanent: bool,
    /// The receiver asked for this wait before the next attempt (`Retry-After`).
    pub(crate) wait: Option<Duration>,
}

impl Failure {
    pub(crate) fn retry(error: String) -> Failure {
        Failure {
            error,
            permanent: false,
            wait: None,
        }
    }

    pub(crate) fn permanent(error: String) -> Failure {
        Failure {
            error,
            permanent: true,
            wait: None,
        }
    }
}

/// How a sink retries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    /// Attempts before a dead letter; `None`: retry forever.
    pub(crate) max_attempts: Option<u32>,
    pub(crate) initial: Duration,
    pub(crate) max: Duration,
}

impl RetryPolicy {
    /// The file sink's: forever, 200 ms doubling up to a minute.
    const FOREVER: RetryPolicy = RetryPolicy {
        max_attempts: None,
        initial: Duration::from_millis(200),
        max: Duration::from_secs(60),
    };

    fn backoff(&self) -> backon::ExponentialBackoff {
        backon::ExponentialBuilder::default()
            .with_min_delay(self.initial)
            .with_max_delay(self.max)
            .with_jitter()
            .without_max_times()
            .build()
    }
}

/// Appends alerts to a file sink, on a blocking thread.
async fn to_file(f: &FileSink, alerts: &[Outgoing]) -> Result<(), Failure> {
    let f = f.clone();
    let bodies: Vec<Bytes> = alerts.iter().map(|a| a.body.clone()).collect();
    match super::background::run(move || f.send(&bodies)).await {
        Ok(r) => r.map_err(|e| Failure::retry(e.to_string())),
        Err(e) => Err(Failure::retry(format!("the file write task failed: {e}"))),
    }
}

impl Sink {
    /// Its retry policy.
    fn policy(&self) -> RetryPolicy {
        match self {
            Sink::File(_) => RetryPolicy::FOREVER,
            Sink::Webhook(w) => w.policy,
            // A publish that failed is retried, never dropped.
            Sink::Nats(_) => RetryPolicy::FOREVER,
        }
    }

    /// Whether it takes its alerts in batches and never gives up on one (the file: one write
    /// and sync for many; NATS: one flush, or the acknowledgements awaited together); a
    /// webhook takes one alert per request, and may give one up as a dead letter.
    fn takes_batches(&self) -> bool {
        matches!(self, Sink::File(_) | Sink::Nats(_))
    }

    /// Delivers a batch: at once to a sink that takes batches, else one alert after another.
    async fn send_batch(&self, alerts: &[Outgoing]) -> Result<(), Failure> {
        match self {
            Sink::File(f) => to_file(f, alerts).await,
            Sink::Nats(n) => {
                let batch: Vec<(Bytes, &str, &str)> = alerts
                    .iter()
                    .map(|a| (a.body.clone(), a.id.as_str(), a.rule.as_str()))
                    .collect();
                n.send_batch(&batch).await.map_err(Failure::retry)
            }
            Sink::Webhook(w) => {
                for a in alerts {
                    w.send(&a.id, &a.body).await?;
                }
                Ok(())
            }
        }
    }

    /// Delivers one alert.
    async fn send(&self, alert: &Outgoing) -> Result<(), Failure> {
        match self {
            Sink::Webhook(w) => w.send(&alert.id, &alert.body).await,
            Sink::File(_) | Sink::Nats(_) => self.send_batch(std::slice::from_ref(alert)).await,
        }
    }
}

pub(crate) struct Deliverer {
    pub(crate) store: Arc<dyn EventStore>,
    /// The rules in force (for a rule's name and severity in the payload).
    pub(crate) rules: super::reload::LiveRules,
    pub(crate) sinks: HashMap<String, Sink>,
    pub(crate) metrics: Arc<crate::ops::Metrics>,
    /// The events that just made alerts, kept by the evaluator: not read back.
    pub(crate) fired: Arc<super::fired::Fired>,
}

/// What every sink's loop shares.
struct Shared {
    store: Arc<dyn EventStore>,
    rules: super::reload::LiveRules,
    metrics: Arc<crate::ops::Metrics>,
    fired: Arc<super::fired::Fired>,
}

/// Runs `f` on the alert threads (sled never blocks the runtime; see [`super::background`]).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match super::background::run(f).await {
        Ok(r) => r,
        Err(e) => Err(StoreError::Unavailable {
            reason: format!("an alert delivery task failed: {e}"),
        }),
    }
}

/// Sleeps `d`; false when `stopping` came first.
async fn pause(d: Duration, stopping: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => !*stopping.borrow(),
        _ = stopping.changed() => false,
    }
}

impl Deliverer {
    /// Starts one delivery loop per sink, then passes every wake-up (`wake`: alerts were
    /// recorded) on to all of them, until `stopping`; returns once every loop has stopped.
    pub(crate) async fn run(self, wake: Arc<Notify>, mut stopping: watch::Receiver<bool>) {
        let shared = Arc::new(Shared {
            store: self.store,
            rules: self.rules,
            metrics: self.metrics,
            fired: self.fired,
        });
        let names: Vec<String> = self.sinks.keys().cloned().collect();
        let (tick, ticks) = watch::channel(0u64);
        // Alerts pending for a sink no longer configured become its dead letters (nothing
        // can take them; `alerts dead-letters` shows them, `--retry` once it is back).
        let s = shared.clone();
        match blocking(move || sweep(&*s.store, &names)).await {
            Ok(gone) => {
                for sink in gone {
                    shared.metrics.alert_dead_lettered(&sink);
                }
            }
            Err(e) => tracing::warn!(error = %e, "checking the outbox for removed sinks failed"),
        }
        let s = shared.clone();
        match blocking(move || s.store.dead_letters(usize::MAX)).await {
            Ok(d) => shared.metrics.set_dead_letters_held(d.len() as i64),
            Err(e) => tracing::warn!(error = %e, "counting the alert dead letters failed"),
        }
        let mut loops = Vec::with_capacity(self.sinks.len());
        for (name, sink) in self.sinks {
            let lp = SinkLoop {
                policy: sink.policy(),
                name,
                sink,
                shared: shared.clone(),
            };
            loops.push(tokio::spawn(lp.run(ticks.clone(), stopping.clone())));
        }
        loop {
            tokio::select! {
                () = wake.notified() => tick.send_modify(|n| *n = n.wrapping_add(1)),
                _ = stopping.changed() => break,
            }
        }
        // A stop: each loop finishes what it has in hand before it returns (alerts a sink took
        // are noted as taken), so that a clean stop delivers nothing twice.
        for l in loops {
            let _ = l.await;
        }
    }
}

/// Moves every (alert, sink) pending for a sink not in `names` to the dead letters; returns
/// the sink of each. Blocking.
fn sweep(store: &dyn EventStore, names: &[String]) -> Result<Vec<String>, StoreError> {
    let mut after: Option<(u64, String)> = None;
    let mut n = Vec::new();
    loop {
        let page =
            store.pending_alerts_after(after.as_ref().map(|(s, r)| (*s, r.as_str())), BATCH)?;
        let Some(last) = page.last() else {
            return Ok(n);
        };
        after = Some((last.seq, last.rule.clone()));
        for a in &page {
            for sink in a.sinks.iter().filter(|s| !names.contains(s)) {
                let letter = DeadLetter {
                    seq: a.seq,
                    rule: a.rule.clone(),
                    sink: sink.clone(),
                    attempts: 0,
                    at_ms: now_ms(),
                    error: format!("the sink {sink:?} is no longer configured"),
                };
                if store.dead_letter_alert(&letter)? {
                    n.push(sink.clone());
                    tracing::warn!(seq = a.seq, rule = %a.rule, sink = %sink, "alert for a sink no longer configured: kept as a dead letter (see `orgtrail alerts dead-letters`)");
                }
            }
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One sink's delivery loop.
struct SinkLoop {
    name: String,
    sink: Sink,
    policy: RetryPolicy,
    shared: Arc<Shared>,
}

/// How one alert's delivery ended.
enum Outcome {
    /// Taken, or a dead letter: go on to the next.
    Done,
    /// The store failed: read the outbox again from this alert.
    StoreFailed(StoreError),
    Stopping,
}

impl SinkLoop {
    async fn run(self, mut ticks: watch::Receiver<u64>, mut stopping: watch::Receiver<bool>) {
        // The last outbox entry this loop handled: it reads on from there. Entries are only
        // added past it while running (re-driven dead letters come back while the collector
        // is stopped), so nothing for this sink is skipped.
        let mut cursor: Option<(u64, String)> = None;
        loop {
            if *stopping.borrow() {
                return;
            }
            // Seen before reading: an alert recorded after the read wakes the next wait.
            ticks.borrow_and_update();
            let s = self.shared.clone();
            let after = cursor.clone();
            let page = blocking(move || {
                s.store
                    .pending_alerts_after(after.as_ref().map(|(q, r)| (*q, r.as_str())), BATCH)
            })
            .await;
            let mut page = match page {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(sink = %self.name, error = %e, "reading the alert outbox failed; retrying");
                    if !pause(STORE_RETRY, &mut stopping).await {
                        return;
                    }
                    continue;
                }
            };
            if page.is_empty() {
                tokio::select! {
                    r = ticks.changed() => if r.is_err() { return },
                    _ = stopping.changed() => return,
                    () = tokio::time::sleep(IDLE_RESCAN) => {}
                }
                continue;
            }
            let mine: Vec<PendingAlert> = page
                .iter()
                .filter(|a| a.sinks.contains(&self.name))
                .cloned()
                .collect();
            if !mine.is_empty() {
                let outcome = if self.sink.takes_batches() {
                    self.deliver_batch(mine, &mut stopping).await
                } else {
                    self.deliver_each(mine, &mut stopping).await
                };
                match outcome {
                    Outcome::Done => {}
                    Outcome::Stopping => return,
                    Outcome::StoreFailed(e) => {
                        // Read again from the cursor: what was noted is no longer pending for
                        // this sink; what was taken but not noted goes again (same ids).
                        tracing::warn!(sink = %self.name, error = %e, "alert delivery: the store failed; retrying");
                        if !pause(STORE_RETRY, &mut stopping).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            cursor = page.pop().map(|a| (a.seq, a.rule));
        }
    }

    /// Delivers a page's alerts to a sink that takes them one at a time, in order, each
    /// retried until taken, a dead letter, or a stop. What the sink took is noted in one write
    /// per page ([`Taken`]) rather than one per alert.
    async fn deliver_each(
        &self,
        alerts: Vec<PendingAlert>,
        stopping: &mut watch::Receiver<bool>,
    ) -> Outcome {
        let s = self.shared.clone();
        let pending = alerts.clone();
        let outs = match blocking(move || build_all(&s, &pending)).await {
            Ok(o) => o,
            Err(e) => return Outcome::StoreFailed(e),
        };
        let mut taken = Taken::default();
        for (a, out) in alerts.into_iter().zip(&outs) {
            match self.deliver(a, out, &mut taken, stopping).await {
                Outcome::Done => {}
                // Taken before the stop are noted: a clean stop delivers nothing twice.
                Outcome::Stopping => {
                    if let Err(e) = self.note(&mut taken).await {
                        tracing::warn!(sink = %self.name, error = %e, "noting delivered alerts at the stop failed: they will be delivered again");
                    }
                    return Outcome::Stopping;
                }
                failed @ Outcome::StoreFailed(_) => return failed,
            }
            if taken.due()
                && let Err(e) = self.note(&mut taken).await
            {
                return Outcome::StoreFailed(e);
            }
        }
        match self.note(&mut taken).await {
            Ok(()) => Outcome::Done,
            Err(e) => Outcome::StoreFailed(e),
        }
    }

    /// Notes in the outbox, in one durable write, that this sink took the alerts in `taken`.
    async fn note(&self, taken: &mut Taken) -> Result<(), StoreError> {
        if taken.alerts.is_empty() {
            return Ok(());
        }
        let alerts = std::mem::take(&mut taken.alerts);
        taken.since = None;
        let n = alerts.len();
        let (s, sink) = (self.shared.clone(), self.name.clone());
        blocking(move || s.store.alerts_taken(&sink, &alerts)).await?;
        tracing::debug!(alerts = n, sink = %self.name, "alert deliveries noted");
        Ok(())
    }

    /// Delivers one alert to this loop's sink: retried until taken (then added to `taken`), a
    /// dead letter, or a stop. Before a retry's wait, what `taken` holds is noted first, so a
    /// failing receiver never holds back the notes of the alerts it took.
    async fn deliver(
        &self,
        a: PendingAlert,
        out: &Outgoing,
        taken: &mut Taken,
        stopping: &mut watch::Receiver<bool>,
    ) -> Outcome {
        let metrics = &self.shared.metrics;
        let mut backoff = self.policy.backoff();
        let mut attempts: u32 = 0;
        loop {
            attempts = attempts.saturating_add(1);
            let failure = match self.sink.send(out).await {
                Ok(()) => {
                    orgtrail_store::crashpoint::hit_alerts("alert-sent");
                    metrics.alert_delivery(&self.name, true, 1);
                    tracing::debug!(alert = %out.id, rule = %a.rule, sink = %self.name, attempts, "alert delivered");
                    taken.add(a);
                    return Outcome::Done;
                }
                Err(f) => f,
            };
            metrics.alert_delivery(&self.name, false, 1);
            let give_up =
                failure.permanent || self.policy.max_attempts.is_some_and(|m| attempts >= m);
            if give_up {
                let letter = DeadLetter {
                    seq: a.seq,
                    rule: a.rule.clone(),
                    sink: self.name.clone(),
                    attempts,
                    at_ms: now_ms(),
                    error: failure.error.clone(),
                };
                let s = self.shared.clone();
                return match blocking(move || s.store.dead_letter_alert(&letter)).await {
                    Ok(made) => {
                        if made {
                            metrics.alert_dead_lettered(&self.name);
                        }
                        tracing::warn!(
                            alert = %out.id,
                            rule = %a.rule,
                            sink = %self.name,
                            attempts,
                            error = %failure.error,
                            "alert delivery given up: kept as a dead letter (`orgtrail alerts dead-letters` lists them, `--retry` sends them again)"
                        );
                        Outcome::Done
                    }
                    Err(e) => Outcome::StoreFailed(e),
                };
            }
            if let Err(e) = self.note(taken).await {
                return Outcome::StoreFailed(e);
            }
            if !self
                .wait_to_retry(
                    &mut backoff,
                    &failure,
                    (&out.id, &a.rule, 1),
                    attempts,
                    stopping,
                )
                .await
            {
                return Outcome::Stopping;
            }
        }
    }
}

/// The most alerts taken by a sink before their note is written, and the longest a taken
/// alert waits for it: a crash before the note delivers those alerts to the sink again (at
/// least once, under the same ids), so both bound what a crash repeats.
const NOTE_MAX: usize = 64;
const NOTE_EVERY: Duration = Duration::from_millis(200);

/// Alerts a sink took, not yet noted in the outbox.
#[derive(Default)]
struct Taken {
    alerts: Vec<PendingAlert>,
    /// When the oldest of them was taken.
    since: Option<std::time::Instant>,
}

impl Taken {
    fn add(&mut self, a: PendingAlert) {
        self.since.get_or_insert_with(std::time::Instant::now);
        self.alerts.push(a);
    }

    /// Whether they should be noted now, before the page ends.
    fn due(&self) -> bool {
        self.alerts.len() >= NOTE_MAX || self.since.is_some_and(|t| t.elapsed() >= NOTE_EVERY)
    }
}

impl SinkLoop {
    /// Waits out a failed attempt: the backoff's next delay, at least what the receiver asked
    /// for (within the policy's maximum), logged with the alert it holds back (the first of
    /// `alerts`, with its rule). False when `stopping` came first.
    async fn wait_to_retry(
        &self,
        backoff: &mut backon::ExponentialBackoff,
        failure: &Failure,
        (alert, rule, alerts): (&str, &str, u64),
        attempts: u32,
        stopping: &mut watch::Receiver<bool>,
    ) -> bool {
        let mut wait = backoff.next().unwrap_or(self.policy.max);
        if let Some(asked) = failure.wait {
            wait = wait.max(asked.min(self.policy.max));
        }
        tracing::warn!(
            alert,
            rule,
            alerts,
            sink = %self.name,
            attempt = attempts,
            error = %failure.error,
            retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            "alert delivery failed; retrying"
        );
        pause(wait, stopping).await
    }

    /// Delivers a batch of alerts to a sink that takes batches (it never gives up on one):
    /// retried as a whole until taken, or a stop, then noted in one write.
    async fn deliver_batch(
        &self,
        batch: Vec<PendingAlert>,
        stopping: &mut watch::Receiver<bool>,
    ) -> Outcome {
        let s = self.shared.clone();
        let pending = batch.clone();
        let outs = match blocking(move || build_all(&s, &pending)).await {
            Ok(o) => o,
            Err(e) => return Outcome::StoreFailed(e),
        };
        let n = outs.len() as u64;
        let metrics = &self.shared.metrics;
        let mut backoff = self.policy.backoff();
        let mut attempts: u32 = 0;
        loop {
            attempts = attempts.saturating_add(1);
            match self.sink.send_batch(&outs).await {
                Ok(()) => {
                    orgtrail_store::crashpoint::hit_alerts("alert-sent");
                    metrics.alert_delivery(&self.name, true, n);
                    let (s, sink) = (self.shared.clone(), self.name.clone());
                    return match blocking(move || s.store.alerts_taken(&sink, &batch)).await {
                        Ok(()) => {
                            tracing::debug!(alerts = n, sink = %self.name, attempts, "alerts delivered");
                            Outcome::Done
                        }
                        // Taken but not noted: they go again (at least once, same ids).
                        Err(e) => Outcome::StoreFailed(e),
                    };
                }
                Err(failure) => {
                    metrics.alert_delivery(&self.name, false, n);
                    let (id, rule) = outs
                        .first()
                        .map_or(("", ""), |o| (o.id.as_str(), o.rule.as_str()));
                    if !self
                        .wait_to_retry(&mut backoff, &failure, (id, rule, n), attempts, stopping)
                        .await
                    {
                        return Outcome::Stopping;
                    }
                }
            }
        }
    }
}

/// The alerts of a batch as sinks receive them. Events the evaluator kept are not read back;
/// the others are read back once each, and a batch of nearby events as one range (each record
/// block opened once). Blocking.
fn build_all(s: &Shared, batch: &[PendingAlert]) -> Result<Vec<Outgoing>, StoreError> {
    // The batch is in outbox order: an event's alerts are next to each other.
    let mut kept: HashMap<u64, super::fired::FiredEvent> = HashMap::new();
    let mut missing: Vec<u64> = Vec::new();
    for same in batch.chunk_by(|x, y| x.seq == y.seq) {
        let seq = same[0].seq;
        match s.fired.take(seq, same.len()) {
            Some(f) => {
                kept.insert(seq, f);
            }
            None => missing.push(seq),
        }
    }
    let mut events: HashMap<u64, StoredEvent> = HashMap::new();
    // A range is worth reading when most of its events have an alert.
    if let (Some(first), Some(last)) = (missing.iter().min(), missing.iter().max())
        && last - first < 2 * missing.len() as u64
    {
        let wanted: std::collections::HashSet<u64> = missing.iter().copied().collect();
        for e in s.store.read_range(*first, *last)? {
            if wanted.contains(&e.seq) {
                events.insert(e.seq, e);
            }
        }
    }
    batch
        .iter()
        .map(|a| {
            if let Some(f) = kept.get(&a.seq) {
                return outgoing(s, a, &f.account, &f.bytes);
            }
            let e = match events.entry(a.seq) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => v.insert(s.store.read(a.seq)?),
            };
            outgoing(s, a, &e.account, &e.bytes)
        })
        .collect()
}

/// The alert of `a` on the event stored under `account` as `bytes`, as sinks receive it.
fn outgoing(
    s: &Shared,
    a: &PendingAlert,
    account: &orgtrail_core::AccountId,
    bytes: &[u8],
) -> Result<Outgoing, StoreError> {
    let rules = s.rules.current();
    // A rule removed since it fired: the alert still goes out, as recorded.
    let rule = rules
        .rules
        .binary_search_by(|r| r.id.as_str().cmp(&a.rule))
        .ok()
        .map(|i| &rules.rules[i]);
    let (id, body) = super::payload::of_record(account, bytes, &a.rule, rule)
        .map_err(|err| StoreError::Corrupt(format!("event {} is not JSON: {err}", a.seq)))?;
    Ok(Outgoing {
        id,
        rule: a.rule.clone(),
        body: Bytes::from(body),
    })
}
