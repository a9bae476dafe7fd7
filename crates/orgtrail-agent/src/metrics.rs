//! The agent's metrics, served in Prometheus text by the ops listener (`[ops] listen`, see
//! `orgtrail-ops`) and logged when the agent stops. Every metric name is here.
//!
//! Per source: events read, filtered out by selectors, spooled, shipped (acknowledged by the
//! collector) and dead-lettered. For the agent: acknowledged batches, duplicates, conflicts,
//! rejections, retries, dead letters by reason, whether the collector is reachable, when the
//! last acknowledgement came, and the spool's depth, pending bytes, free bytes, dead letters
//! and disk-full state. Labels come from bounded sets: the configured sources, the fixed
//! stages, the fixed [`DeadReason`]s.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use orgtrail_ops::prometheus_client;
use orgtrail_proto::v1::RejectReason;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// A monotonic counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One source's counters.
#[derive(Debug, Default)]
pub struct SourceMetrics {
    pub name: String,
    pub read: Counter,
    pub filtered: Counter,
    pub spooled: Counter,
    pub shipped: Counter,
    pub dead_lettered: Counter,
    /// Set by an `s3` source: its families below are served.
    pub s3: AtomicBool,
    /// Objects by [`S3Outcome`].
    pub s3_objects: [Counter; S3Outcome::ALL.len()],
    /// Bytes of the objects read whole.
    pub s3_bytes: Counter,
    /// Failed requests by kind ([`S3_ERROR_KINDS`]).
    pub s3_errors: [Counter; S3_ERROR_KINDS.len()],
    /// Objects whose read failed at the last pass (tried again at the next).
    pub s3_failing: AtomicU64,
    /// Objects in the in-memory processed set.
    pub s3_processed: AtomicU64,
    /// When the last pass over the lookback window ended, Unix seconds.
    pub s3_last_pass: AtomicU64,
    /// Set by a source that checks CloudTrail digests: the digest families are served.
    pub digests: AtomicBool,
    /// Digest and log files checked, by [`crate::sources::digests::DigestResult`].
    pub digest_checks: [Counter; crate::sources::digests::DigestResult::ALL.len()],
    /// Digest check failures reported in the retained window.
    pub digest_failures: AtomicU64,
}

/// What became of an S3 object: the `outcome` label of `orgtrail_agent_s3_objects_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Outcome {
    /// Read whole and handed to the spool.
    Shipped,
    /// Larger than CloudTrail's limit: a dead letter, unread.
    Dead,
    /// A digest file: counted, never opened.
    Digest,
    /// Read again: its ETag differs from the one read before.
    Overwritten,
    /// Gone or replaced between the listing and the read (the next pass decides).
    Vanished,
}

impl S3Outcome {
    pub const ALL: [&'static str; 5] = ["shipped", "dead", "digest", "overwritten", "vanished"];
}

/// The `kind` label of `orgtrail_agent_s3_errors_total` (`orgtrail_s3::S3Error::kind`).
pub const S3_ERROR_KINDS: [&str; 6] = [
    "auth",
    "no_such_bucket",
    "not_found",
    "changed",
    "transient",
    "config",
];

impl SourceMetrics {
    pub fn digest_check(&self, r: crate::sources::digests::DigestResult, n: u64) {
        self.digest_checks[r as usize].add(n);
    }

    pub fn s3_object(&self, o: S3Outcome) {
        self.s3_objects[o as usize].inc();
    }

    pub fn s3_error(&self, kind: &str) {
        if let Some(i) = S3_ERROR_KINDS.iter().position(|k| *k == kind) {
            self.s3_errors[i].inc();
        }
    }
}

/// All counters. The last "source" stands for events spooled before this run started, whose
/// source is no longer known.
#[derive(Debug)]
pub struct Metrics {
    sources: Vec<SourceMetrics>,
    /// For each chunk spooled in this run: the source of each of its events.
    chunks: Mutex<HashMap<u64, Vec<u16>>>,
    pub batches_acknowledged: Counter,
    pub spool_pending_bytes: AtomicU64,
    /// Why the spool cannot take more (its disk is full), while it cannot.
    spool_disk_full: Mutex<Option<String>>,
    spool: OnceLock<crate::SpoolHandle>,
    /// Events the collector already held with the same bytes (acknowledged, not stored again).
    pub duplicates: Counter,
    /// Events the collector holds with the same eventID and other bytes (dead-lettered).
    pub conflicts: Counter,
    /// Events refused: by the collector with a reason, or too large to send (dead-lettered).
    pub rejected: Counter,
    /// Connections to the collector made again after a failure or a broken stream.
    pub retries: Counter,
    /// Dead letters made in this run, by reason (indexed as [`DeadReason::ALL`]).
    dead_by_reason: [Counter; DeadReason::ALL.len()],
    /// Whether the shipper has a stream open to the collector.
    reachable: AtomicBool,
    /// Why the collector is not reachable (the last connection error), while it is not.
    unreachable_why: Mutex<Option<String>>,
    /// When the collector last acknowledged a batch, Unix seconds (0: not in this run).
    last_ack_unix: AtomicU64,
}

/// Why an event became a dead letter: a fixed set, the label of
/// `orgtrail_agent_dead_lettered_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadReason {
    /// The source could not read or decode it (a line over the size limit, a corrupt log file).
    Unreadable,
    /// Too large for the collector's batch limit.
    TooLargeToSend,
    /// The collector holds its eventID with other bytes.
    Conflict,
    /// Refused by the collector for this reason.
    Rejected(RejectReason),
}

impl DeadReason {
    /// Every label, in counter order.
    pub const ALL: [&'static str; 13] = [
        "unreadable",
        "too_large_to_send",
        "conflict",
        "wrong_account",
        "account_not_allowed",
        "too_large",
        "not_json",
        "invalid_utf8",
        "not_an_object",
        "missing_field",
        "invalid_field",
        "too_deep",
        "rejected",
    ];

    /// The collector's rejection with this wire reason.
    pub fn rejected(r: i32) -> DeadReason {
        DeadReason::Rejected(RejectReason::try_from(r).unwrap_or(RejectReason::Unspecified))
    }

    pub fn label(self) -> &'static str {
        match self {
            DeadReason::Unreadable => "unreadable",
            DeadReason::TooLargeToSend => "too_large_to_send",
            DeadReason::Conflict => "conflict",
            // A rejection without a reason is counted as plain "rejected".
            DeadReason::Rejected(RejectReason::Unspecified) => "rejected",
            DeadReason::Rejected(r) => r.label(),
        }
    }

    fn index(self) -> usize {
        let l = self.label();
        DeadReason::ALL.iter().position(|a| *a == l).unwrap_or(0)
    }
}

/// What one run of the agent did, in one line:
/// `shipped=N duplicates=D conflicts=C rejected=R dead_lettered=X read=N`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Events the collector acknowledged as durable (stored now or before).
    pub shipped: u64,
    /// Of those, events it already held.
    pub duplicates: u64,
    /// Events whose eventID the collector holds with other bytes.
    pub conflicts: u64,
    /// Events refused by the collector or too large to send.
    pub rejected: u64,
    /// Everything put in the dead-letter area in this run: conflicts, rejections, and what
    /// the sources could not read.
    pub dead_lettered: u64,
    /// Events the sources read in this run (before the trail's selectors).
    pub read: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "shipped={} duplicates={} conflicts={} rejected={} dead_lettered={} read={}",
            self.shipped,
            self.duplicates,
            self.conflicts,
            self.rejected,
            self.dead_lettered,
            self.read
        )
    }
}

impl Summary {
    /// Logs the summary at info, each count a field of its own.
    pub fn log(&self, message: &str, uptime: std::time::Duration) {
        tracing::info!(
            read = self.read,
            shipped = self.shipped,
            duplicates = self.duplicates,
            conflicts = self.conflicts,
            rejected = self.rejected,
            dead_lettered = self.dead_lettered,
            uptime_secs = uptime.as_secs(),
            "{message}"
        );
    }
}

impl Metrics {
    pub fn new(names: &[String]) -> Self {
        let mut sources: Vec<SourceMetrics> = names
            .iter()
            .map(|n| SourceMetrics {
                name: n.clone(),
                ..SourceMetrics::default()
            })
            .collect();
        sources.push(SourceMetrics {
            name: "(spooled before this run)".into(),
            ..SourceMetrics::default()
        });
        Metrics {
            sources,
            chunks: Mutex::new(HashMap::new()),
            batches_acknowledged: Counter::default(),
            spool_pending_bytes: AtomicU64::new(0),
            duplicates: Counter::default(),
            conflicts: Counter::default(),
            rejected: Counter::default(),
            spool_disk_full: Mutex::new(None),
            spool: OnceLock::new(),
            retries: Counter::default(),
            dead_by_reason: Default::default(),
            reachable: AtomicBool::new(false),
            unreachable_why: Mutex::new(Some("not connected to the collector yet".into())),
            last_ack_unix: AtomicU64::new(0),
        }
    }

    /// Counts a dead letter of this reason.
    pub fn dead_letter(&self, why: DeadReason) {
        self.dead_by_reason[why.index()].inc();
    }

    /// The shipper opened a stream to the collector (`Ok`), or lost it or could not open one
    /// (`Err(why)`).
    pub fn set_reachable(&self, r: Result<(), String>) {
        self.reachable.store(r.is_ok(), Ordering::Relaxed);
        if let Ok(mut w) = self.unreachable_why.lock() {
            *w = r.err();
        }
    }

    /// The collector acknowledged a batch now.
    pub fn acknowledged_now(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.last_ack_unix.store(now, Ordering::Relaxed);
    }

    /// The spool whose dead letters and free space are reported.
    pub fn attach_spool(&self, spool: crate::SpoolHandle) {
        let _ = self.spool.set(spool);
    }

    /// Records that the spool's disk is full (`Some(why)`) or has room again (`None`).
    /// True when that changed.
    pub fn set_spool_disk_full(&self, why: Option<String>) -> bool {
        let mut s = self
            .spool_disk_full
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let changed = s.is_some() != why.is_some();
        *s = why;
        changed
    }

    /// Ready to take events: `Err(why)` while the spool's disk is full.
    pub fn spool_readiness(&self) -> Result<(), String> {
        match &*self
            .spool_disk_full
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        }
    }

    /// Ready: the spool can be written and the collector is reachable; else why not.
    pub fn readiness(&self) -> Result<(), String> {
        self.spool_readiness()?;
        if self.reachable.load(Ordering::Relaxed) {
            return Ok(());
        }
        let why = self
            .unreachable_why
            .lock()
            .ok()
            .and_then(|w| w.clone())
            .unwrap_or_else(|| "no stream open".into());
        Err(format!("the collector is not reachable: {why}"))
    }

    /// The counters of an agent with this configuration's sources.
    pub fn for_config(cfg: &crate::AgentConfig) -> Self {
        let names: Vec<String> = cfg.sources.iter().map(crate::SourceConfig::name).collect();
        Self::new(&names)
    }

    /// The totals of this run.
    pub fn totals(&self) -> Summary {
        Summary {
            shipped: self.sources.iter().map(|m| m.shipped.get()).sum(),
            duplicates: self.duplicates.get(),
            conflicts: self.conflicts.get(),
            rejected: self.rejected.get(),
            dead_lettered: self.sources.iter().map(|m| m.dead_lettered.get()).sum(),
            read: self.sources.iter().map(|m| m.read.get()).sum(),
        }
    }

    /// The counters of source `i` (or of the earlier-run pseudo source when out of range).
    pub fn source(&self, i: usize) -> &SourceMetrics {
        let last = self.sources.len() - 1;
        &self.sources[i.min(last)]
    }

    /// Records which source each event of a just-spooled chunk came from. Called on the
    /// spool's thread before the chunk can be read (see `SpoolHandle::append_blocking_noted`),
    /// so its acknowledgement always finds the record.
    pub fn spooled_chunk(&self, first_seq: u64, sources: Vec<u16>) {
        for s in &sources {
            self.source(usize::from(*s)).spooled.inc();
        }
        if let Ok(mut c) = self.chunks.lock() {
            c.insert(first_seq, sources);
        }
    }

    /// Counts an acknowledged chunk: `rejected` are the positions the collector refused.
    pub fn acknowledged(&self, first_seq: u64, len: usize, rejected: &[usize]) {
        self.batches_acknowledged.inc();
        let sources = self
            .chunks
            .lock()
            .ok()
            .and_then(|mut c| c.remove(&first_seq))
            .unwrap_or_else(|| vec![u16::MAX; len]);
        for (i, s) in sources.iter().enumerate() {
            let m = self.source(usize::from(*s));
            if rejected.contains(&i) {
                m.dead_lettered.inc();
            } else {
                m.shipped.inc();
            }
        }
    }

    /// One line per source, for the log.
    pub fn summary(&self) -> Vec<String> {
        self.sources
            .iter()
            .filter(|m| m.read.get() + m.shipped.get() + m.dead_lettered.get() > 0)
            .map(|m| {
                format!(
                    "{}: read={} filtered={} spooled={} shipped={} dead_lettered={}",
                    m.name,
                    m.read.get(),
                    m.filtered.get(),
                    m.spooled.get(),
                    m.shipped.get(),
                    m.dead_lettered.get()
                )
            })
            .collect()
    }
}

/// What the agent's ops listener serves.
#[derive(Debug)]
pub struct Probe {
    metrics: Arc<Metrics>,
    registry: Registry,
}

impl Probe {
    pub fn new(metrics: Arc<Metrics>) -> Probe {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Exposition(metrics.clone())));
        Probe { metrics, registry }
    }
}

impl orgtrail_ops::Probe for Probe {
    fn readiness(&self) -> Result<(), String> {
        self.metrics.readiness()
    }

    fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// The metrics as Prometheus families, read at each scrape.
#[derive(Debug)]
struct Exposition(Arc<Metrics>);

fn counter(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    v: i64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

/// The digest-checking sources' families (served once such a source runs).
fn encode_digests(e: &mut DescriptorEncoder<'_>, m: &Metrics) -> Result<(), std::fmt::Error> {
    let on: Vec<&SourceMetrics> = m
        .sources
        .iter()
        .filter(|s| s.digests.load(Ordering::Relaxed))
        .collect();
    let mut family = e.encode_descriptor(
        "orgtrail_agent_digest_checks",
        "CloudTrail digest checks, one per digest file and per log file checked, by result: ok, modified, missing, unlisted, unverified, bad_signature, broken_chain, invalid_digest.",
        None,
        MetricType::Counter,
    )?;
    for s in &on {
        for (r, c) in crate::sources::digests::DigestResult::ALL
            .iter()
            .zip(&s.digest_checks)
        {
            ConstCounter::new(c.get())
                .encode(family.encode_family(&[("source", s.name.as_str()), ("result", *r)])?)?;
        }
    }
    let mut family = e.encode_descriptor(
        "orgtrail_agent_digest_failures",
        "CloudTrail digest check failures reported (kept across restarts; an s3 source keeps its lookback's).",
        None,
        MetricType::Gauge,
    )?;
    for s in &on {
        ConstGauge::new(
            i64::try_from(s.digest_failures.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
        )
        .encode(family.encode_family(&[("source", s.name.as_str())])?)?;
    }
    Ok(())
}

/// The `s3` sources' families (served once an `s3` source runs).
fn encode_s3(e: &mut DescriptorEncoder<'_>, m: &Metrics) -> Result<(), std::fmt::Error> {
    let s3: Vec<&SourceMetrics> = m
        .sources
        .iter()
        .filter(|s| s.s3.load(Ordering::Relaxed))
        .collect();
    let mut family = e.encode_descriptor(
        "orgtrail_agent_s3_objects",
        "S3 objects by outcome: shipped (read whole), dead (over CloudTrail's size limit), digest (a digest file: counted, or checked with digest_public_keys_file), overwritten (read again under a new ETag), vanished (gone or replaced before the read).",
        None,
        MetricType::Counter,
    )?;
    for s in &s3 {
        for (o, c) in S3Outcome::ALL.iter().zip(&s.s3_objects) {
            ConstCounter::new(c.get())
                .encode(family.encode_family(&[("source", s.name.as_str()), ("outcome", *o)])?)?;
        }
    }
    let mut family = e.encode_descriptor(
        "orgtrail_agent_s3_object_bytes",
        "Bytes of the S3 objects read whole.",
        None,
        MetricType::Counter,
    )?;
    for s in &s3 {
        ConstCounter::new(s.s3_bytes.get())
            .encode(family.encode_family(&[("source", s.name.as_str())])?)?;
    }
    let mut family = e.encode_descriptor(
        "orgtrail_agent_s3_errors",
        "Failed S3 requests (after the client's retries), by kind.",
        None,
        MetricType::Counter,
    )?;
    for s in &s3 {
        for (k, c) in S3_ERROR_KINDS.iter().zip(&s.s3_errors) {
            ConstCounter::new(c.get())
                .encode(family.encode_family(&[("source", s.name.as_str()), ("kind", *k)])?)?;
        }
    }
    type Gauge = (&'static str, &'static str, fn(&SourceMetrics) -> u64);
    let gauges: [Gauge; 3] = [
        (
            "orgtrail_agent_s3_failing_objects",
            "S3 objects whose read failed at the last pass (tried again at every pass).",
            |s| s.s3_failing.load(Ordering::Relaxed),
        ),
        (
            "orgtrail_agent_s3_processed_keys",
            "S3 objects in the source's in-memory processed set.",
            |s| s.s3_processed.load(Ordering::Relaxed),
        ),
        (
            "orgtrail_agent_s3_last_pass_timestamp_seconds",
            "When the last pass over the lookback window ended, Unix seconds (0: none yet).",
            |s| s.s3_last_pass.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, get) in gauges {
        let mut family = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for s in &s3 {
            ConstGauge::new(i64::try_from(get(s)).unwrap_or(i64::MAX))
                .encode(family.encode_family(&[("source", s.name.as_str())])?)?;
        }
    }
    Ok(())
}

impl Collector for Exposition {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let m = &self.0;
        type Stage = (&'static str, fn(&SourceMetrics) -> u64);
        let stages: [Stage; 5] = [
            ("read", |m| m.read.get()),
            ("filtered", |m| m.filtered.get()),
            ("spooled", |m| m.spooled.get()),
            ("shipped", |m| m.shipped.get()),
            ("dead_lettered", |m| m.dead_lettered.get()),
        ];
        let mut family = e.encode_descriptor(
            "orgtrail_agent_events",
            "Events per source and stage: read from the source, filtered out by the trail's selectors, spooled durably, shipped (acknowledged by the collector), dead-lettered.",
            None,
            MetricType::Counter,
        )?;
        for s in &m.sources {
            for (stage, get) in &stages {
                let labels = [("source", s.name.as_str()), ("stage", *stage)];
                ConstCounter::new(get(s)).encode(family.encode_family(&labels)?)?;
            }
        }
        if m.sources.iter().any(|s| s.s3.load(Ordering::Relaxed)) {
            encode_s3(&mut e, m)?;
        }
        if m.sources.iter().any(|s| s.digests.load(Ordering::Relaxed)) {
            encode_digests(&mut e, m)?;
        }
        let mut family = e.encode_descriptor(
            "orgtrail_agent_dead_lettered",
            "Events put in the dead-letter area in this run, by reason.",
            None,
            MetricType::Counter,
        )?;
        for (reason, c) in DeadReason::ALL.iter().zip(&m.dead_by_reason) {
            ConstCounter::new(c.get()).encode(family.encode_family(&[("reason", *reason)])?)?;
        }
        for (name, help, v) in [
            (
                "orgtrail_agent_batches_acknowledged",
                "Batches the collector acknowledged.",
                m.batches_acknowledged.get(),
            ),
            (
                "orgtrail_agent_duplicates",
                "Events the collector acknowledged as already stored with the same bytes.",
                m.duplicates.get(),
            ),
            (
                "orgtrail_agent_conflicts",
                "Events whose eventID the collector holds with different bytes (dead-lettered with the reason conflict).",
                m.conflicts.get(),
            ),
            (
                "orgtrail_agent_rejected",
                "Events refused by the collector or too large to send (dead-lettered with the reason).",
                m.rejected.get(),
            ),
            (
                "orgtrail_agent_retries",
                "Connections to the collector made again after a failure or a broken stream.",
                m.retries.get(),
            ),
        ] {
            counter(&mut e, name, help, v)?;
        }
        let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        gauge(
            &mut e,
            "orgtrail_agent_collector_reachable",
            "1 while the agent has a stream open to the collector, else 0.",
            i64::from(m.reachable.load(Ordering::Relaxed)),
        )?;
        gauge(
            &mut e,
            "orgtrail_agent_last_ack_timestamp_seconds",
            "When the collector last acknowledged a batch, Unix seconds (0: not since the agent started).",
            to_i64(m.last_ack_unix.load(Ordering::Relaxed)),
        )?;
        gauge(
            &mut e,
            "orgtrail_agent_spool_pending_bytes",
            "Bytes in the spool waiting for an acknowledgement.",
            to_i64(m.spool_pending_bytes.load(Ordering::Relaxed)),
        )?;
        gauge(
            &mut e,
            "orgtrail_agent_spool_disk_full",
            "1 while the spool's disk is full (below its reserve): the sources are paused.",
            i64::from(m.spool_readiness().is_err()),
        )?;
        if let Some(s) = m.spool.get() {
            gauge(
                &mut e,
                "orgtrail_agent_spool_pending_events",
                "Events in the spool waiting for an acknowledgement (the spool's depth).",
                to_i64(s.pending_events()),
            )?;
            gauge(
                &mut e,
                "orgtrail_agent_spool_free_bytes",
                "Free bytes in the spool's file system.",
                to_i64(s.free_bytes()),
            )?;
            gauge(
                &mut e,
                "orgtrail_agent_dead_letters",
                "Dead letters held in the spool.",
                to_i64(s.dead_letter_count()),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use orgtrail_ops::Probe as _;

    #[test]
    fn readiness_needs_the_spool_and_the_collector() {
        let m = Metrics::new(&["a".into()]);
        let e = m.readiness().unwrap_err();
        assert!(
            e.starts_with("the collector is not reachable: not connected"),
            "{e}"
        );
        m.set_reachable(Ok(()));
        assert_eq!(m.readiness(), Ok(()));
        m.set_spool_disk_full(Some("spool disk full: 3 bytes free".into()));
        assert_eq!(m.readiness(), Err("spool disk full: 3 bytes free".into()));
        m.set_spool_disk_full(None);
        m.set_reachable(Err("cannot connect to https://c:1: refused".into()));
        assert_eq!(
            m.readiness(),
            Err("the collector is not reachable: cannot connect to https://c:1: refused".into())
        );
    }

    #[test]
    fn every_dead_reason_has_its_own_counter() {
        let m = Metrics::new(&["a".into()]);
        m.dead_letter(DeadReason::Conflict);
        m.dead_letter(DeadReason::rejected(RejectReason::NotJson as i32));
        m.dead_letter(DeadReason::rejected(9999));
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(
            &mut text,
            Probe::new(Arc::new(m)).registry(),
        )
        .unwrap();
        for (reason, n) in [
            ("conflict", 1),
            ("not_json", 1),
            ("rejected", 1),
            ("unreadable", 0),
        ] {
            assert!(
                text.contains(&format!(
                    "orgtrail_agent_dead_lettered_total{{reason=\"{reason}\"}} {n}\n"
                )),
                "{text}"
            );
        }
        assert!(
            text.contains("orgtrail_agent_events_total{source=\"a\",stage=\"read\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("orgtrail_agent_collector_reachable 0\n"),
            "{text}"
        );
        // Every label set is distinct.
        let labels: std::collections::HashSet<&str> = DeadReason::ALL.iter().copied().collect();
        assert_eq!(labels.len(), DeadReason::ALL.len());
    }
}
