//! The agent's counters, per source: events read, filtered out by selectors, spooled, shipped
//! (acknowledged by the collector) and dead-lettered. Served in Prometheus' text format when
//! `[metrics] listen` is set, and logged when the agent stops.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

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
}

/// What one run of the agent did, in one line:
/// `shipped=N duplicates=D conflicts=C rejected=R dead_lettered=X`.
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
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "shipped={} duplicates={} conflicts={} rejected={} dead_lettered={}",
            self.shipped, self.duplicates, self.conflicts, self.rejected, self.dead_lettered
        )
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
        }
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
    pub fn readiness(&self) -> Result<(), String> {
        match &*self
            .spool_disk_full
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        }
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
        }
    }

    /// The counters of source `i` (or of the earlier-run pseudo source when out of range).
    pub fn source(&self, i: usize) -> &SourceMetrics {
        let last = self.sources.len() - 1;
        &self.sources[i.min(last)]
    }

    /// Records which source each event of a just-spooled chunk came from.
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

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        type Stage = (&'static str, fn(&SourceMetrics) -> u64);
        let stages: [Stage; 5] = [
            ("read", |m| m.read.get()),
            ("filtered", |m| m.filtered.get()),
            ("spooled", |m| m.spooled.get()),
            ("shipped", |m| m.shipped.get()),
            ("dead_lettered", |m| m.dead_lettered.get()),
        ];
        let _ = writeln!(
            out,
            "# HELP orgtrail_agent_events_total Events per source and stage: read from the source, filtered out by the trail's selectors, spooled durably, shipped (acknowledged by the collector), dead-lettered."
        );
        let _ = writeln!(out, "# TYPE orgtrail_agent_events_total counter");
        for m in &self.sources {
            for (stage, get) in &stages {
                let _ = writeln!(
                    out,
                    "orgtrail_agent_events_total{{source=\"{}\",stage=\"{stage}\"}} {}",
                    escape(&m.name),
                    get(m)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP orgtrail_agent_batches_acknowledged_total Batches the collector acknowledged."
        );
        let _ = writeln!(
            out,
            "# TYPE orgtrail_agent_batches_acknowledged_total counter"
        );
        let _ = writeln!(
            out,
            "orgtrail_agent_batches_acknowledged_total {}",
            self.batches_acknowledged.get()
        );
        type Total = (&'static str, &'static str, fn(&Metrics) -> u64);
        let totals: [Total; 3] = [
            (
                "orgtrail_agent_duplicates_total",
                "Events the collector acknowledged as already stored with the same bytes.",
                |m| m.duplicates.get(),
            ),
            (
                "orgtrail_agent_conflicts_total",
                "Events whose eventID the collector holds with different bytes (dead-lettered with the reason conflict).",
                |m| m.conflicts.get(),
            ),
            (
                "orgtrail_agent_rejected_total",
                "Events refused by the collector or too large to send (dead-lettered with the reason).",
                |m| m.rejected.get(),
            ),
        ];
        for (name, help, get) in totals {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", get(self));
        }
        let _ = writeln!(
            out,
            "# HELP orgtrail_agent_spool_pending_bytes Bytes in the spool waiting for an acknowledgement."
        );
        let _ = writeln!(out, "# TYPE orgtrail_agent_spool_pending_bytes gauge");
        let _ = writeln!(
            out,
            "orgtrail_agent_spool_pending_bytes {}",
            self.spool_pending_bytes.load(Ordering::Relaxed)
        );
        let full = u8::from(self.readiness().is_err());
        let _ = writeln!(
            out,
            "# HELP orgtrail_agent_spool_disk_full 1 while the spool's disk is full (below its reserve): the sources are paused."
        );
        let _ = writeln!(out, "# TYPE orgtrail_agent_spool_disk_full gauge");
        let _ = writeln!(out, "orgtrail_agent_spool_disk_full {full}");
        if let Some(s) = self.spool.get() {
            let _ = writeln!(
                out,
                "# HELP orgtrail_agent_spool_free_bytes Free bytes in the spool's file system."
            );
            let _ = writeln!(out, "# TYPE orgtrail_agent_spool_free_bytes gauge");
            let _ = writeln!(out, "orgtrail_agent_spool_free_bytes {}", s.free_bytes());
            let _ = writeln!(
                out,
                "# HELP orgtrail_agent_dead_letters Dead letters held in the spool."
            );
            let _ = writeln!(out, "# TYPE orgtrail_agent_dead_letters gauge");
            let _ = writeln!(out, "orgtrail_agent_dead_letters {}", s.dead_letter_count());
        }
        out
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

/// `/ready`: 200 `ready`, or 503 with the reason (the spool's disk is full).
pub fn ready_response(m: &Metrics) -> (axum::http::StatusCode, String) {
    match m.readiness() {
        Ok(()) => (axum::http::StatusCode::OK, "ready\n".into()),
        Err(why) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
