//! Delivery: every alert in the outbox to each of its pending sinks, oldest first; a sink that
//! fails is retried with exponential backoff (and the alerts behind it wait, in order), and a
//! sink that took an alert is noted in the outbox at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use orgtrail_store::{EventStore, PendingAlert, StoreError};
use serde_json::Value;
use tokio::sync::{Notify, watch};

use super::file_sink::FileSink;
use super::payload::{alert_id, payload};

/// Alerts read from the outbox at once.
const BATCH: usize = 256;

/// A configured sink.
#[derive(Debug)]
pub(crate) enum Sink {
    File(FileSink),
    Nats(Box<super::nats_sink::NatsSink>),
}

impl Sink {
    /// Delivers one alert. Blocking (called on a blocking thread of the runtime).
    fn send(&mut self, body: &[u8], alert_id: &str, rule: &str) -> Result<(), String> {
        match self {
            Sink::File(f) => f.send(body).map_err(|e| e.to_string()),
            Sink::Nats(n) => tokio::runtime::Handle::try_current()
                .map_err(|e| e.to_string())?
                .block_on(n.send(body, alert_id, rule)),
        }
    }
}

pub(crate) struct Deliverer {
    pub(crate) store: Arc<dyn EventStore>,
    /// The rules in force (for a rule's name and severity in the payload).
    pub(crate) rules: super::reload::LiveRules,
    pub(crate) sinks: HashMap<String, Sink>,
    pub(crate) metrics: Arc<crate::ops::Metrics>,
}

/// Why a round of delivery stopped early.
enum Stop {
    /// A sink failed: wait, then try again.
    SinkFailed,
    Store(StoreError),
}

impl Deliverer {
    pub(crate) async fn run(self, wake: Arc<Notify>, mut stopping: watch::Receiver<bool>) {
        let me = Arc::new(std::sync::Mutex::new(self));
        let mut backoff = new_backoff();
        loop {
            if *stopping.borrow() {
                return;
            }
            let m = me.clone();
            let round = tokio::task::spawn_blocking(move || match m.lock() {
                Ok(mut d) => d.round(),
                Err(_) => Ok(false),
            })
            .await;
            let wait = match round {
                // Delivered a full batch: there may be more.
                Ok(Ok(true)) => {
                    backoff = new_backoff();
                    continue;
                }
                Ok(Ok(false)) => {
                    backoff = new_backoff();
                    None
                }
                Ok(Err(Stop::SinkFailed)) => Some(backoff.next().unwrap_or(MAX_WAIT)),
                Ok(Err(Stop::Store(e))) => {
                    tracing::warn!(error = %e, "reading the alert outbox failed; retrying");
                    Some(Duration::from_secs(1))
                }
                Err(e) => {
                    tracing::error!(error = %e, "the alert delivery task failed");
                    Some(Duration::from_secs(1))
                }
            };
            tokio::select! {
                () = wake.notified(), if wait.is_none() => {}
                () = tokio::time::sleep(wait.unwrap_or(Duration::from_secs(5))) => {}
                _ = stopping.changed() => return,
            }
        }
    }

    /// Delivers what the outbox holds, oldest first, up to [`BATCH`] alerts. True when it
    /// delivered a full batch (more may wait). Blocking.
    fn round(&mut self) -> Result<bool, Stop> {
        let pending = self.store.pending_alerts(BATCH).map_err(Stop::Store)?;
        let full = pending.len() == BATCH;
        for a in &pending {
            self.deliver(a)?;
        }
        Ok(full)
    }

    fn deliver(&mut self, a: &PendingAlert) -> Result<(), Stop> {
        let e = self.store.read(a.seq).map_err(Stop::Store)?;
        let record: Value = serde_json::from_slice(&e.bytes).map_err(|err| {
            Stop::Store(StoreError::Corrupt(format!(
                "event {} is not JSON: {err}",
                a.seq
            )))
        })?;
        // A record without an eventID is stored under the id derived from its bytes (as
        // dedup keys it), and its alert id derives from that one.
        let event_id = record["eventID"]
            .as_str()
            .map_or_else(|| orgtrail_core::derived_event_id(&e.bytes), str::to_owned);
        let id = alert_id(&a.rule, e.account.as_str(), &event_id);
        let rules = self.rules.current();
        let body = match rules.rules.iter().find(|r| r.id == a.rule) {
            Some(rule) => payload(&record, &id, rule),
            // The rule was removed since it fired: the alert still goes out, as recorded.
            None => {
                let mut v = orgtrail_rules::cloudtrail::envelope(&record);
                if let Some(o) = v.as_object_mut() {
                    o.insert("id".into(), Value::String(id.clone()));
                    o.insert("rule-id".into(), Value::String(a.rule.clone()));
                }
                v
            }
        };
        let bytes = body.to_string().into_bytes();
        for name in &a.sinks {
            let Some(sink) = self.sinks.get_mut(name) else {
                // Its sink was removed from the configuration: nothing can take it.
                tracing::warn!(alert = %id, rule = %a.rule, sink = %name, "alert for a sink no longer configured; dropped for that sink");
                self.metrics.alert_delivery(name, false);
                self.store
                    .alert_delivered(a.seq, &a.rule, name)
                    .map_err(Stop::Store)?;
                continue;
            };
            match sink.send(&bytes, &id, &a.rule) {
                Ok(()) => {
                    orgtrail_store::crashpoint::hit_alerts("alert-sent");
                    self.store
                        .alert_delivered(a.seq, &a.rule, name)
                        .map_err(Stop::Store)?;
                    self.metrics.alert_delivery(name, true);
                    tracing::debug!(alert = %id, rule = %a.rule, sink = %name, "alert delivered");
                }
                Err(err) => {
                    self.metrics.alert_delivery(name, false);
                    tracing::warn!(alert = %id, rule = %a.rule, sink = %name, error = %err, "alert delivery failed; retrying");
                    return Err(Stop::SinkFailed);
                }
            }
        }
        Ok(())
    }
}

/// The longest wait between attempts at a failing sink.
const MAX_WAIT: Duration = Duration::from_secs(60);

fn new_backoff() -> backon::ExponentialBackoff {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(MAX_WAIT)
        .with_jitter()
        .without_max_times()
        .build()
}
