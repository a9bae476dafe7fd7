//! The collector's metrics and readiness, served by the ops listener (`[ops] listen`, see
//! `orgtrail-ops`). Every metric name is here.
//!
//! Labels come from bounded sets only: a reason is one of the fixed enums below, and an
//! account label is one of the first [`MAX_ACCOUNT_LABELS`] accounts seen since the start (the
//! collector admits only configured accounts, or any account of the organization's CA); the
//! events of any further account are counted under `account="other"`.
//!
//! Counters are kept as batches pass (a few hash-map lookups per batch, never per event);
//! the store's figures (size, writer queue, group-commit times, last checkpoint), the batches
//! in flight and the live followers are read at each scrape.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use orgtrail_core::AccountId;
use orgtrail_proto::v1::RejectReason;
use orgtrail_store::{EventStore, Health};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

/// Distinct account labels at most; later accounts count under `other`.
pub const MAX_ACCOUNT_LABELS: usize = 1000;

/// The label of the accounts beyond [`MAX_ACCOUNT_LABELS`].
pub const OTHER_ACCOUNTS: &str = "other";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountLabel {
    account: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Why a batch or an ingest stream was refused whole (the events in it are neither stored nor
/// rejected; the agent sends them again, or stops for a certificate problem).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// More events in one batch than `limits.max_batch_events`.
    TooManyEvents,
    /// A batch message over `limits.max_message_bytes` (or decompressing to more).
    MessageTooLarge,
    /// A batch message that does not decode.
    MalformedMessage,
    /// No usable client certificate.
    Unauthenticated,
    /// A certificate whose role or account may not ingest.
    PermissionDenied,
    /// A certificate revoked while its stream was open.
    Revoked,
    /// The data directory is below its free-space reserve (retried by the agent).
    DiskFull,
    /// The store failed or is recovering (retried by the agent).
    StoreUnavailable,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Refusal::TooManyEvents => "too_many_events",
            Refusal::MessageTooLarge => "message_too_large",
            Refusal::MalformedMessage => "malformed_message",
            Refusal::Unauthenticated => "unauthenticated",
            Refusal::PermissionDenied => "permission_denied",
            Refusal::Revoked => "revoked",
            Refusal::DiskFull => "disk_full",
            Refusal::StoreUnavailable => "store_unavailable",
        }
    }
}

/// Why a TLS handshake with a client failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    CertificateExpired,
    CertificateNotYetValid,
    UnknownIssuer,
    BadSignature,
    WrongKeyUsage,
    /// Another problem with the client's certificate.
    BadCertificate,
    /// The client presented no certificate.
    NoCertificate,
    /// The client does not speak TLS (plaintext HTTP, a port scanner).
    NotTls,
    /// The client refused the collector's certificate (it sent an alert).
    ClientRefused,
    /// The handshake did not finish in time.
    Timeout,
    /// The connection closed during the handshake.
    Closed,
    Other,
}

impl TlsFailure {
    fn as_str(self) -> &'static str {
        match self {
            TlsFailure::CertificateExpired => "certificate_expired",
            TlsFailure::CertificateNotYetValid => "certificate_not_yet_valid",
            TlsFailure::UnknownIssuer => "unknown_issuer",
            TlsFailure::BadSignature => "bad_signature",
            TlsFailure::WrongKeyUsage => "wrong_key_usage",
            TlsFailure::BadCertificate => "bad_certificate",
            TlsFailure::NoCertificate => "no_certificate",
            TlsFailure::NotTls => "not_tls",
            TlsFailure::ClientRefused => "client_refused",
            TlsFailure::Timeout => "timeout",
            TlsFailure::Closed => "closed",
            TlsFailure::Other => "other",
        }
    }

    /// The failure a handshake error stands for.
    pub(crate) fn of(e: &std::io::Error) -> TlsFailure {
        use orgtrail_crypto::tls::rustls::{CertificateError as C, Error};
        match orgtrail_crypto::tls::find_tls_error(e) {
            Some(Error::InvalidCertificate(c)) => match c {
                C::Expired | C::ExpiredContext { .. } => TlsFailure::CertificateExpired,
                C::NotValidYet | C::NotValidYetContext { .. } => TlsFailure::CertificateNotYetValid,
                C::UnknownIssuer => TlsFailure::UnknownIssuer,
                C::BadSignature => TlsFailure::BadSignature,
                C::InvalidPurpose | C::InvalidPurposeContext { .. } => TlsFailure::WrongKeyUsage,
                _ => TlsFailure::BadCertificate,
            },
            Some(Error::NoCertificatesPresented) => TlsFailure::NoCertificate,
            Some(Error::InvalidMessage(_) | Error::InappropriateMessage { .. }) => {
                TlsFailure::NotTls
            }
            Some(Error::AlertReceived(_)) => TlsFailure::ClientRefused,
            Some(_) => TlsFailure::Other,
            None if crate::tls::closed_early(e) => TlsFailure::Closed,
            None => TlsFailure::Other,
        }
    }
}

/// The label of a per-event rejection reason (the wire's `RejectReason`, a fixed enum).
fn rejection_label(r: i32) -> &'static str {
    RejectReason::try_from(r)
        .unwrap_or(RejectReason::Unspecified)
        .label()
}

/// The Insights detector's metrics.
#[derive(Debug, Default)]
struct InsightsMetrics {
    started: Counter,
    ended: Counter,
    tracked: Gauge,
    evicted: Counter,
    late: Counter,
    future: Counter,
    fed_through: Gauge,
    read_back: Counter,
}

impl InsightsMetrics {
    fn register(&self, r: &mut Registry) {
        r.register(
            "orgtrail_collector_insights_started",
            "Insights started (Start events written), ApiCallRateInsight and ApiErrorRateInsight",
            self.started.clone(),
        );
        r.register(
            "orgtrail_collector_insights_ended",
            "Insights ended (End events written)",
            self.ended.clone(),
        );
        r.register(
            "orgtrail_collector_insights_tracked_keys",
            "Keys (account, region, eventSource, eventName[, errorCode]) the Insights detector tracks",
            self.tracked.clone(),
        );
        r.register(
            "orgtrail_collector_insights_keys_evicted",
            "Keys the Insights detector dropped to stay within max_tracked_keys (their baselines start over)",
            self.evicted.clone(),
        );
        r.register(
            "orgtrail_collector_insights_late_calls",
            "Calls not counted by the Insights detector: their minute was already closed",
            self.late.clone(),
        );
        r.register(
            "orgtrail_collector_insights_future_calls",
            "Calls not counted by the Insights detector: stamped too far past the wall clock",
            self.future.clone(),
        );
        r.register(
            "orgtrail_collector_insights_fed_through",
            "Sequence number of the last stored event fed to the Insights detector (its watermark)",
            self.fed_through.clone(),
        );
        r.register(
            "orgtrail_collector_insights_read_back",
            "Stored events the Insights feeder read back from the ledger: not kept in memory by the ingest path (before a restart, over its capacity, or appended by another path)",
            self.read_back.clone(),
        );
    }
}

/// The archive sink's metrics (`[archive]`; zero without it).
#[derive(Debug, Default)]
struct ArchiveMetrics {
    through: Gauge,
    lag: Gauge,
    events: Counter,
    files: Counter,
    digests: Counter,
    errors: Counter,
}

impl ArchiveMetrics {
    fn register(&self, r: &mut Registry) {
        r.register(
            "orgtrail_collector_archive_exported_through",
            "Sequence number through which every stored event is in the archive (its durable watermark)",
            self.through.clone(),
        );
        r.register(
            "orgtrail_collector_archive_lag_events",
            "Stored events not yet in the archive, when the sink last looked",
            self.lag.clone(),
        );
        r.register(
            "orgtrail_collector_archive_events",
            "Events the archive sink wrote into log files",
            self.events.clone(),
        );
        r.register(
            "orgtrail_collector_archive_files",
            "Log files the archive sink wrote",
            self.files.clone(),
        );
        r.register(
            "orgtrail_collector_archive_digests",
            "Digest files the archive sink wrote",
            self.digests.clone(),
        );
        r.register(
            "orgtrail_collector_archive_errors",
            "Archive passes that failed (retried at the next interval)",
            self.errors.clone(),
        );
    }
}

/// The collector's counters. Cheap to share (`Arc`).
#[derive(Debug, Default)]
pub struct Metrics {
    /// The accounts that have a label of their own.
    accounts: Mutex<HashSet<AccountId>>,
    received: Family<AccountLabel, Counter>,
    stored: Family<AccountLabel, Counter>,
    duplicate: Family<AccountLabel, Counter>,
    conflicting: Family<AccountLabel, Counter>,
    rejected: Family<ReasonLabel, Counter>,
    refused: Family<ReasonLabel, Counter>,
    tls_failures: Family<ReasonLabel, Counter>,
    alerts_recorded: Counter,
    threshold_groups_evicted: Counter,
    /// Insights (`[insights]`): what the detector did since the start.
    insights: InsightsMetrics,
    /// The archive sink (`[archive]`).
    archive: ArchiveMetrics,
    alert_deliveries: Family<DeliveryLabel, Counter>,
    alert_dead_letters: Family<SinkLabel, Counter>,
    alert_dead_letters_held: prometheus_client::metrics::gauge::Gauge,
    rules_reloads: Family<OutcomeLabel, Counter>,
    rules_loaded: Gauge,
    rules_loaded_at: Gauge<f64, AtomicU64>,
    /// All accounts together, for the summary when the collector stops.
    totals: Totals,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabel {
    /// A configured sink's name (a bounded set: the configuration's).
    sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabel {
    /// A configured sink's name (a bounded set: the configuration's).
    sink: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// Counts over all accounts since the collector started.
#[derive(Debug, Default)]
struct Totals {
    received: AtomicU64,
    stored: AtomicU64,
    duplicate: AtomicU64,
    conflicting: AtomicU64,
    rejected: AtomicU64,
    refused_batches: AtomicU64,
}

/// What the collector did since it started, in one line:
/// `received=N stored=S duplicates=D conflicts=C rejected=R refused_batches=B uptime=Ts`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Events received in batches (before validation).
    pub received: u64,
    /// Events newly stored.
    pub stored: u64,
    /// Events already stored with the same bytes.
    pub duplicates: u64,
    /// Events whose eventID is stored with other bytes.
    pub conflicts: u64,
    /// Events rejected one by one (invalid, another account's, too large).
    pub rejected: u64,
    /// Batches or streams refused whole (the agents send them again).
    pub refused_batches: u64,
    /// Whole seconds since the collector started.
    pub uptime_secs: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "received={} stored={} duplicates={} conflicts={} rejected={} refused_batches={} uptime={}s",
            self.received,
            self.stored,
            self.duplicates,
            self.conflicts,
            self.rejected,
            self.refused_batches,
            self.uptime_secs
        )
    }
}

impl Summary {
    /// Logs the summary at info, each count a field of its own.
    pub fn log(&self, message: &str) {
        tracing::info!(
            received = self.received,
            stored = self.stored,
            duplicates = self.duplicates,
            conflicts = self.conflicts,
            rejected = self.rejected,
            refused_batches = self.refused_batches,
            uptime_secs = self.uptime_secs,
            "{message}"
        );
    }
}

/// What happened to one batch of one account.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct BatchCounts {
    pub(crate) received: u64,
    pub(crate) stored: u64,
    pub(crate) duplicate: u64,
    pub(crate) conflicting: u64,
}

impl Metrics {
    fn account_label(&self, account: &AccountId) -> AccountLabel {
        let own = self.accounts.lock().is_ok_and(|mut seen| {
            seen.contains(account) || (seen.len() < MAX_ACCOUNT_LABELS && seen.insert(*account))
        });
        AccountLabel {
            account: if own {
                account.to_string()
            } else {
                OTHER_ACCOUNTS.to_owned()
            },
        }
    }

    /// Counts a batch of `account` that reached the store (or was wholly rejected).
    pub(crate) fn batch(&self, account: &AccountId, c: BatchCounts, rejected: &[i32]) {
        let label = self.account_label(account);
        for (family, n) in [
            (&self.received, c.received),
            (&self.stored, c.stored),
            (&self.duplicate, c.duplicate),
            (&self.conflicting, c.conflicting),
        ] {
            // Created even at 0, so that an account's series exist from its first batch.
            family.get_or_create(&label).inc_by(n);
        }
        let t = &self.totals;
        for (total, n) in [
            (&t.received, c.received),
            (&t.stored, c.stored),
            (&t.duplicate, c.duplicate),
            (&t.conflicting, c.conflicting),
            (&t.rejected, rejected.len() as u64),
        ] {
            total.fetch_add(n, Ordering::Relaxed);
        }
        for r in rejected {
            self.rejected
                .get_or_create(&ReasonLabel {
                    reason: rejection_label(*r),
                })
                .inc();
        }
    }

    /// Counts a batch or stream refused whole.
    pub(crate) fn refused(&self, why: Refusal) {
        self.totals.refused_batches.fetch_add(1, Ordering::Relaxed);
        self.refused
            .get_or_create(&ReasonLabel {
                reason: why.as_str(),
            })
            .inc();
    }

    /// The totals since start, with the given uptime.
    pub fn summary(&self, uptime: std::time::Duration) -> Summary {
        let t = &self.totals;
        Summary {
            received: t.received.load(Ordering::Relaxed),
            stored: t.stored.load(Ordering::Relaxed),
            duplicates: t.duplicate.load(Ordering::Relaxed),
            conflicts: t.conflicting.load(Ordering::Relaxed),
            rejected: t.rejected.load(Ordering::Relaxed),
            refused_batches: t.refused_batches.load(Ordering::Relaxed),
            uptime_secs: uptime.as_secs(),
        }
    }

    /// Counts a failed TLS handshake.
    pub(crate) fn tls_failed(&self, why: TlsFailure) {
        self.tls_failures
            .get_or_create(&ReasonLabel {
                reason: why.as_str(),
            })
            .inc();
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "orgtrail_collector_events_received",
            "Events received in batches from agents, per account (before validation)",
            self.received.clone(),
        );
        r.register(
            "orgtrail_collector_events_stored",
            "Events newly stored, per account",
            self.stored.clone(),
        );
        r.register(
            "orgtrail_collector_events_duplicate",
            "Events already stored with the same bytes (acknowledged, not stored again), per account",
            self.duplicate.clone(),
        );
        r.register(
            "orgtrail_collector_events_conflicting",
            "Events whose eventID is already stored with other bytes (kept out), per account",
            self.conflicting.clone(),
        );
        r.register(
            "orgtrail_collector_events_rejected",
            "Events rejected for a property of their own, by reason",
            self.rejected.clone(),
        );
        r.register(
            "orgtrail_collector_refusals",
            "Batches or ingest streams refused whole, by reason (server faults are retried by the agents)",
            self.refused.clone(),
        );
        r.register(
            "orgtrail_collector_tls_handshake_failures",
            "TLS handshakes with clients that failed, by reason",
            self.tls_failures.clone(),
        );
        r.register(
            "orgtrail_collector_alerts_recorded",
            "Alerts recorded in the outbox (one per rule and stored event it fired on)",
            self.alerts_recorded.clone(),
        );
        r.register(
            "orgtrail_collector_threshold_groups_evicted",
            "Groups of threshold rules dropped to stay within the cap of tracked groups per rule (their counts start over)",
            self.threshold_groups_evicted.clone(),
        );
        r.register(
            "orgtrail_collector_alert_deliveries",
            "Attempts to deliver an alert to a sink, by sink and outcome (delivered, failed)",
            self.alert_deliveries.clone(),
        );
        r.register(
            "orgtrail_collector_alert_dead_letters",
            "Alerts a sink gave up on (attempts exhausted, or refused by the receiver) and kept as dead letters, by sink",
            self.alert_dead_letters.clone(),
        );
        r.register(
            "orgtrail_collector_alert_dead_letters_held",
            "Alert dead letters in the ledger, waiting for `orgtrail alerts dead-letters --retry`",
            self.alert_dead_letters_held.clone(),
        );
        r.register(
            "orgtrail_collector_rules_reloads",
            "Reloads of the detection rules (a rule file changed, or SIGHUP), by outcome (ok, refused: the rules in force stay)",
            self.rules_reloads.clone(),
        );
        self.insights.register(r);
        self.archive.register(r);
        r.register(
            "orgtrail_collector_rules_loaded",
            "Detection rules in force (0 without [rules])",
            self.rules_loaded.clone(),
        );
        r.register(
            "orgtrail_collector_rules_loaded_timestamp_seconds",
            "Unix time the rules in force were loaded (0 without [rules])",
            self.rules_loaded_at.clone(),
        );
    }

    /// `sink` gave up on an alert: one more dead letter held.
    pub(crate) fn alert_dead_lettered(&self, sink: &str) {
        self.alert_dead_letters
            .get_or_create(&SinkLabel {
                sink: sink.to_owned(),
            })
            .inc();
        self.alert_dead_letters_held.inc();
    }

    /// The dead letters held, as counted from the ledger at start.
    pub(crate) fn set_dead_letters_held(&self, n: i64) {
        self.alert_dead_letters_held.set(n);
    }

    /// A reload of the rules was taken (`ok`) or refused.
    pub(crate) fn rules_reloaded(&self, ok: bool) {
        self.rules_reloads
            .get_or_create(&OutcomeLabel {
                outcome: if ok { "ok" } else { "refused" },
            })
            .inc();
    }

    /// A set of `n` rules is now in force (loaded at start or reloaded).
    pub(crate) fn rules_loaded(&self, n: usize) {
        self.rules_loaded.set(i64::try_from(n).unwrap_or(i64::MAX));
        self.rules_loaded_at.set(now_ms() as f64 / 1000.0);
    }

    /// `n` alerts were recorded.
    pub(crate) fn alerts_recorded(&self, n: u64) {
        self.alerts_recorded.inc_by(n);
    }

    /// The Insights detector's counters moved from `before` to `after` (both cumulative, as
    /// the detector keeps them across restarts): the differences are counted.
    pub(crate) fn insights(
        &self,
        before: &orgtrail_insights::Stats,
        after: &orgtrail_insights::Stats,
        through: u64,
    ) {
        let m = &self.insights;
        m.fed_through
            .set(i64::try_from(through).unwrap_or(i64::MAX));
        m.started.inc_by(
            after
                .insights_started
                .saturating_sub(before.insights_started),
        );
        m.ended
            .inc_by(after.insights_ended.saturating_sub(before.insights_ended));
        m.evicted
            .inc_by(after.evicted_keys.saturating_sub(before.evicted_keys));
        m.late
            .inc_by(after.late_events.saturating_sub(before.late_events));
        m.future
            .inc_by(after.future_events.saturating_sub(before.future_events));
        m.tracked
            .set(i64::try_from(after.tracked_keys).unwrap_or(i64::MAX));
    }

    /// An archive pass wrote `s`.
    pub(crate) fn archived(&self, s: &orgtrail_trailfiles::ExportSummary) {
        let m = &self.archive;
        m.through.set(i64::try_from(s.through).unwrap_or(i64::MAX));
        m.lag
            .set(i64::try_from(s.head.saturating_sub(s.through)).unwrap_or(i64::MAX));
        m.events.inc_by(s.events);
        m.files.inc_by(s.files);
        m.digests.inc_by(s.digests);
    }

    /// An archive pass failed.
    pub(crate) fn archive_failed(&self) {
        self.archive.errors.inc();
    }

    /// The Insights feeder read `n` stored events back from the ledger.
    pub(crate) fn insights_read_back(&self, n: u64) {
        self.insights.read_back.inc_by(n);
    }

    /// Stored events the Insights feeder read back, since the start.
    #[cfg(test)]
    pub(crate) fn insights_read_back_total(&self) -> u64 {
        self.insights.read_back.get()
    }

    /// `n` groups of threshold rules were evicted.
    pub(crate) fn threshold_groups_evicted(&self, n: u64) {
        self.threshold_groups_evicted.inc_by(n);
    }

    /// One attempt to deliver an alert to `sink`.
    /// `alerts` attempts to deliver an alert to `sink` (a batch counts each of its alerts).
    pub(crate) fn alert_delivery(&self, sink: &str, delivered: bool, alerts: u64) {
        self.alert_deliveries
            .get_or_create(&DeliveryLabel {
                sink: sink.to_owned(),
                outcome: if delivered { "delivered" } else { "failed" },
            })
            .inc_by(alerts);
    }
}

/// What is read at each scrape.
#[derive(Debug)]
struct Gauges {
    store: Arc<dyn EventStore>,
    in_flight: Arc<tokio::sync::Semaphore>,
    max_in_flight: usize,
    live: tokio::sync::broadcast::Sender<Arc<crate::query::LiveEvent>>,
}

fn gauge(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    v: impl prometheus_client::encoding::EncodeGaugeValue + Clone + std::fmt::Debug + Send + Sync,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for Gauges {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let busy = self
            .max_in_flight
            .saturating_sub(self.in_flight.available_permits());
        gauge(
            &mut e,
            "orgtrail_collector_batches_in_flight",
            "Batches being validated and stored, across all streams.",
            busy as i64,
        )?;
        let w = self.store.writer_stats();
        gauge(
            &mut e,
            "orgtrail_collector_writer_queue_depth",
            "Appends waiting for the ledger's writer thread.",
            w.queue_depth as i64,
        )?;
        let l = &w.commit_latency;
        let mut below = 0;
        let buckets: Vec<(f64, u64)> = l
            .buckets
            .iter()
            .map(|(le, cumulative)| {
                let n = cumulative.saturating_sub(below);
                below = *cumulative;
                (*le, n)
            })
            .collect();
        e.encode_descriptor(
            "orgtrail_collector_group_commit_seconds",
            "How long the ledger's group commits take (record log write, sled batch, flush).",
            None,
            MetricType::Histogram,
        )?
        .encode_histogram::<NoLabelSet>(l.sum_seconds, l.count, &buckets, None)?;
        let stats = self.store.stats();
        gauge(
            &mut e,
            "orgtrail_collector_store_events",
            "Events in the ledger.",
            stats.events as i64,
        )?;
        // A directory listing: this runs on the ops listener's blocking thread.
        if let Ok(bytes) = self.store.disk_bytes() {
            gauge(
                &mut e,
                "orgtrail_collector_store_bytes",
                "Bytes the ledger's files take on disk.",
                bytes as i64,
            )?;
        }
        if let Some((size, time_ms)) = w.last_checkpoint {
            gauge(
                &mut e,
                "orgtrail_collector_checkpoint_size",
                "Events covered by the newest signed checkpoint (its tree size).",
                size as i64,
            )?;
            let age = (now_ms() - time_ms).max(0) as f64 / 1000.0;
            gauge(
                &mut e,
                "orgtrail_collector_checkpoint_age_seconds",
                "Seconds since the newest signed checkpoint was signed.",
                age,
            )?;
        }
        gauge(
            &mut e,
            "orgtrail_collector_live_followers",
            "Readers following new events live (lookup --follow).",
            self.live.receiver_count() as i64,
        )?;
        Ok(())
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What the collector's ops listener serves.
#[derive(Debug)]
pub(crate) struct Probe {
    registry: Registry,
    store: Arc<dyn EventStore>,
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl Probe {
    pub(crate) fn new(
        metrics: &Metrics,
        store: Arc<dyn EventStore>,
        in_flight: Arc<tokio::sync::Semaphore>,
        max_in_flight: usize,
        live: tokio::sync::broadcast::Sender<Arc<crate::query::LiveEvent>>,
        stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Probe {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        registry.register_collector(Box::new(Gauges {
            store: store.clone(),
            in_flight,
            max_in_flight,
            live,
        }));
        Probe {
            registry,
            store,
            stopping,
        }
    }
}

impl orgtrail_ops::Probe for Probe {
    /// Ready while the store takes appends: open, its writer healthy, its disk above the
    /// reserve, and the collector not shutting down.
    fn readiness(&self) -> Result<(), String> {
        if *self.stopping.borrow() {
            return Err("the collector is shutting down".into());
        }
        match self.store.health() {
            Health::Ready => Ok(()),
            Health::DiskFull { free, reserve } => Err(format!(
                "disk full: {free} bytes free on the data directory's filesystem, reserve {reserve} ([storage] reserve); ingest resumes when space returns"
            )),
            Health::Faulted { reason } => Err(format!("the store cannot be written: {reason}")),
            Health::Stuck { reason } => Err(format!(
                "the store cannot be written until the collector restarts: {reason}"
            )),
        }
    }

    fn registry(&self) -> &Registry {
        &self.registry
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn account(i: usize) -> AccountId {
        format!("{:012}", 100_000_000_000 + i).parse().unwrap()
    }

    #[test]
    fn accounts_past_the_cap_share_one_label() {
        let m = Metrics::default();
        for i in 0..MAX_ACCOUNT_LABELS + 5 {
            m.batch(
                &account(i),
                BatchCounts {
                    received: 2,
                    stored: 1,
                    duplicate: 1,
                    conflicting: 0,
                },
                &[RejectReason::NotJson as i32],
            );
        }
        // An account seen before the cap keeps its label.
        m.batch(
            &account(0),
            BatchCounts {
                received: 1,
                ..BatchCounts::default()
            },
            &[],
        );
        let mut r = Registry::default();
        m.register(&mut r);
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &r).unwrap();
        let received: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("orgtrail_collector_events_received_total{"))
            .collect();
        assert_eq!(
            received.len(),
            MAX_ACCOUNT_LABELS + 1,
            "the cap, plus other"
        );
        assert!(
            text.contains("orgtrail_collector_events_received_total{account=\"other\"} 10\n"),
            "5 accounts past the cap, 2 events each"
        );
        assert!(
            text.contains(&format!(
                "orgtrail_collector_events_received_total{{account=\"{}\"}} 3\n",
                account(0)
            )),
            "{}",
            &text[..400]
        );
        assert!(text.contains(&format!(
            "orgtrail_collector_events_rejected_total{{reason=\"not_json\"}} {}\n",
            MAX_ACCOUNT_LABELS + 5
        )));
    }
}
