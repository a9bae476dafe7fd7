//! `orgtrail bench ingest-rules`: what evaluating rules costs ingest. One agent ships the same
//! events into a fresh collector twice per round, both real processes over mutual TLS on
//! loopback ([`bench_ingest_ab`]): once with no rules, once with `--rules` rules of mixed
//! operators (the rules of `orgtrail bench rules`); the best rate of each is reported with
//! their ratio. With rules, it also waits until every alert the rules make is recorded (read
//! from the ops listener's metrics), and reports when evaluation caught up.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use orgtrail_rules::cloudtrail::CloudTrailRules;
use serde_json::{Value, json};

use crate::cmd::bench_ingest_ab::{self, Moments, Side, wait_for};
use crate::cmd::bench_rules;
use crate::cmd::bench_transport::{self, write};

#[derive(Debug, clap::Args)]
pub(crate) struct IngestRulesArgs {
    /// Events shipped per run.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Rules the collector evaluates in the runs with rules.
    #[arg(long, default_value_t = 100)]
    rules: usize,
    /// Rounds of (no rules, rules); the best rate of each is reported, and the median of the
    /// rounds' own ratios.
    #[arg(long, default_value_t = 2)]
    rounds: u32,
    /// Key every rule on an event name that makes at most this share of the events (for
    /// example 0.001), so that the rules fire rarely, as detection rules do; by default the
    /// rules are those of `orgtrail bench rules`, which fire on about half of the events and so
    /// measure alert recording and delivery as much as evaluation.
    #[arg(long)]
    rare: Option<f64>,
    /// Where the alerts go: `file` (a JSON-lines file sink, each batch of alerts written and
    /// synced), `webhook` (signed POSTs, one per alert, to a receiver in this process on
    /// loopback, which answers 200 at once) or `nats` (core NATS publishes to a `nats-server`
    /// started on loopback for the run: it must be on PATH).
    #[arg(long, value_enum, default_value_t = SinkKind::File)]
    sink: SinkKind,
}

/// The alert sink of the runs with rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SinkKind {
    File,
    Webhook,
    Nats,
}

pub(crate) fn run(a: IngestRulesArgs) -> anyhow::Result<ExitCode> {
    let root = std::env::temp_dir().join(format!(
        "orgtrail-bench-ingest-rules-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&root)?;
    let result = run_in(&root, &a);
    let _ = std::fs::remove_dir_all(&root);
    result
}

/// Writes the rules as JSON rule files in `root/rules`; returns how many alerts they make on
/// the events of `root/events.jsonl`.
fn write_rules(root: &Path, n: usize, rare: Option<f64>) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(root.join("events.jsonl"))?;
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let vocabulary = match rare {
        Some(share) => bench_rules::Vocabulary::rare(&events, share)?,
        None => bench_rules::vocabulary(&events),
    };
    let patterns = bench_rules::rules(n, &vocabulary)?;
    let dir = root.join("rules");
    std::fs::create_dir_all(&dir)?;
    for (i, p) in patterns.iter().enumerate() {
        write(
            &dir.join(format!("bench-{i:04}.json")),
            &json!({"id": format!("bench-{i:04}"), "pattern": p.json}).to_string(),
        )?;
    }
    let engine = CloudTrailRules::new(patterns.into_iter().map(|p| p.pattern).collect())
        .map_err(|(i, e)| anyhow::anyhow!("benchmark rule {i}: {e}"))?;
    let mut hits = Vec::new();
    let mut alerts = 0u64;
    for e in &events {
        engine.matches(e, &mut hits);
        alerts += hits.len() as u64;
    }
    Ok(alerts)
}

/// The collector with rules, alerts delivered to a JSON-lines file (the simplest sink); it
/// settles when every expected alert was recorded, and delivered.
struct WithRules {
    /// The benchmark's directory: the alerts file of a run is removed once it settled.
    root: std::path::PathBuf,
    rules: usize,
    expected_alerts: u64,
    /// Where the alerts go.
    sink: Sink,
}

/// The sink of the runs with rules, as configured.
enum Sink {
    File,
    /// The receiver's URL.
    Webhook(String),
    /// The server, kept running for the benchmark.
    Nats(super::bench_nats::NatsServer),
}

impl Side for WithRules {
    fn name(&self) -> String {
        format!("{} rules", self.rules)
    }
    fn config(&self) -> String {
        let rules = "[rules]\ndir = \"rules\"\n";
        match &self.sink {
            Sink::File => {
                format!("{rules}[[alerts.file]]\nname = \"bench\"\npath = \"alerts.jsonl\"\n")
            }
            Sink::Webhook(url) => format!(
                "{rules}[[alerts.webhook]]\nname = \"bench\"\nurl = \"{url}\"\nsecret_file = \"webhook.secret\"\n"
            ),
            Sink::Nats(server) => format!(
                "{rules}[[alerts.nats]]\nname = \"bench\"\nurls = [\"{}\"]\nsubject = \"orgtrail.bench\"\n",
                server.url
            ),
        }
    }
    fn settle(&self, ops: &str, started: Instant) -> anyhow::Result<Moments> {
        let n = self.expected_alerts;
        let recorded = wait_for(
            ops,
            "orgtrail_collector_alerts_recorded",
            "",
            n,
            started,
            "alerts recorded",
        )?;
        let delivered = wait_for(
            ops,
            "orgtrail_collector_alert_deliveries_total",
            "outcome=\"delivered\"",
            n,
            started,
            "alerts delivered",
        )?;
        let _ = std::fs::remove_file(self.root.join("alerts.jsonl"));
        Ok(vec![
            ("every alert recorded", recorded),
            ("and delivered", delivered),
        ])
    }
}

/// The collector without rules.
struct NoRules;

impl Side for NoRules {
    fn name(&self) -> String {
        "no rules".to_owned()
    }
    fn config(&self) -> String {
        String::new()
    }
    fn settle(&self, _: &str, _: Instant) -> anyhow::Result<Moments> {
        Ok(Vec::new())
    }
}

fn run_in(root: &Path, a: &IngestRulesArgs) -> anyhow::Result<ExitCode> {
    let p = bench_transport::prepare(root, a.events)?;
    let expected = write_rules(root, a.rules, a.rare)?;
    println!(
        "{} rules, which make {expected} alerts on these events, delivered to a {} sink; {} round(s) of (no rules, rules)",
        a.rules,
        match a.sink {
            SinkKind::File => "JSON-lines file",
            SinkKind::Webhook => "webhook",
            SinkKind::Nats => "NATS",
        },
        a.rounds
    );
    let with_rules = WithRules {
        root: root.to_owned(),
        rules: a.rules,
        expected_alerts: expected,
        sink: match a.sink {
            SinkKind::File => Sink::File,
            SinkKind::Webhook => {
                std::fs::write(root.join("webhook.secret"), "bench-secret\n")?;
                Sink::Webhook(crate::cmd::bench_alerts::receiver()?.0)
            }
            SinkKind::Nats => Sink::Nats(super::bench_nats::start(root)?),
        },
    };
    let [none, with] =
        bench_ingest_ab::rounds(&p, root, a.events, a.rounds, [&NoRules, &with_rules])?;
    println!("{}", bench_ingest_ab::paired(&none, &with));
    let lag = with.settled.unwrap_or(f64::NAN);
    let (cpu_with, cpu_none) = (with.cpu, none.cpu);
    let (with, none) = (with.rate, none.rate);
    println!(
        "ingest with {} rules: {with:.0} events/s; with none: {none:.0} events/s; ratio {:.1}% (target >= 95%); evaluation caught up {lag:.2} s after the start (ingest of the run took {:.2} s)",
        a.rules,
        100.0 * with / none,
        a.events as f64 / with
    );
    println!(
        "collector CPU, least of the rounds: {:.2} s with rules, {:.2} s with none: evaluating, recording and delivering alerts cost {:.0}% more collector CPU",
        cpu_with,
        cpu_none,
        100.0 * (cpu_with / cpu_none - 1.0)
    );
    Ok(ExitCode::SUCCESS)
}
