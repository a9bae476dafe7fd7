//! `orgtrail bench ingest-rules`: what evaluating rules costs ingest. One agent ships the same
//! events into a fresh collector twice per round, both real processes over mutual TLS on
//! loopback: once with no rules, once with `--rules` rules of mixed operators (the rules of
//! `orgtrail bench rules`); the best rate of each is reported with their ratio. With rules, it
//! also waits until every alert the rules make is recorded (read from the ops listener's
//! metrics), and reports when evaluation caught up.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use orgtrail_rules::cloudtrail::CloudTrailRules;
use serde_json::{Value, json};

use crate::cmd::bench_rules;
use crate::cmd::bench_transport::{self, Prepared, write};

#[derive(Debug, clap::Args)]
pub(crate) struct IngestRulesArgs {
    /// Events shipped per run.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Rules the collector evaluates in the runs with rules.
    #[arg(long, default_value_t = 100)]
    rules: usize,
    /// Rounds of (no rules, rules); the best rate of each is reported.
    #[arg(long, default_value_t = 2)]
    rounds: u32,
    /// Key every rule on an event name that makes at most this share of the events (for
    /// example 0.001), so that the rules fire rarely, as detection rules do; by default the
    /// rules are those of `orgtrail bench rules`, which fire on about half of the events and so
    /// measure alert recording and delivery as much as evaluation.
    #[arg(long)]
    rare: Option<f64>,
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
        Some(share) => bench_rules::Vocabulary::rare(&events, share),
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

/// The value of a counter in the ops listener's metrics at `addr`: the first series of `name`
/// whose line holds `label` (`""`: any).
fn counter(addr: &str, name: &str, label: &str) -> anyhow::Result<u64> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET /metrics HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(text
        .lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#') && l.contains(label))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64))
}

/// What one run measured.
struct Run {
    /// Events ingested per second.
    rate: f64,
    /// The collector's CPU seconds.
    cpu: f64,
    /// With rules: seconds from the start until every alert was recorded, and delivered.
    caught_up: Option<(f64, f64)>,
}

/// One run: a fresh collector (with rules or not), the agent ships every event; returns the
/// ingest rate, the collector's CPU seconds (with rules: until every alert was delivered) and,
/// with rules, the seconds until every expected alert was recorded, and delivered.
fn one_run(
    p: &Prepared,
    root: &Path,
    run: u32,
    with_rules: bool,
    expected_alerts: u64,
    events: u64,
) -> anyhow::Result<Run> {
    let data = format!("data-{run}");
    let spool = format!("spool-{run}");
    let extra = if with_rules {
        // Alerts are delivered too: appended to a JSON-lines file, as the simplest sink.
        "[ops]\nlisten = \"127.0.0.1:0\"\n[rules]\ndir = \"rules\"\n[[alerts.file]]\nname = \"bench\"\npath = \"alerts.jsonl\"\n"
    } else {
        "[ops]\nlisten = \"127.0.0.1:0\"\n"
    };
    let (mut collector, port, ops) = bench_transport::start_collector_with(
        &p.exe,
        root,
        &format!("collector-{run}.toml"),
        &data,
        extra,
    )?;
    let ops = ops.context("the collector did not print its ops address")?;
    write(
        &root.join("agent.toml"),
        &format!(
            "account = \"{}\"\ncollector = \"https://127.0.0.1:{port}\"\nserver_name = \"localhost\"\nspool_dir = \"{spool}\"\n[tls]\ncert = \"agent.pem\"\nkey = \"agent.key\"\nca = \"ca/ca.pem\"\n[source]\ntype = \"jsonl\"\npath = \"events.jsonl\"\n",
            p.account
        ),
    )?;
    let started = Instant::now();
    let status = Command::new(&p.exe)
        .args(["agent", "--exit-when-drained", "--config"])
        .arg(root.join("agent.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    let secs = started.elapsed().as_secs_f64();
    if !status.success() {
        let _ = collector.kill();
        bail!("the agent failed");
    }
    let mut caught_up = None;
    if with_rules {
        let wait = |what: &str, name: &str, label: &str| -> anyhow::Result<f64> {
            let deadline = Instant::now() + Duration::from_secs(300);
            loop {
                let n = counter(&ops, name, label)?;
                if n >= expected_alerts {
                    return Ok(started.elapsed().as_secs_f64());
                }
                if Instant::now() > deadline {
                    bail!("the {expected_alerts} alerts were not {what} within 300 s ({n} were)");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        let waited = wait("recorded", "orgtrail_collector_alerts_recorded", "").and_then(|r| {
            let d = wait(
                "delivered",
                "orgtrail_collector_alert_deliveries_total",
                "outcome=\"delivered\"",
            )?;
            Ok((r, d))
        });
        match waited {
            Ok(t) => caught_up = Some(t),
            Err(e) => {
                let _ = collector.kill();
                return Err(e);
            }
        }
    }
    let cpu = bench_transport::cpu_seconds(collector.id()).unwrap_or(f64::NAN);
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(collector.id().to_string())
        .status();
    collector.wait()?;
    let _ = std::fs::remove_dir_all(root.join(&data));
    let _ = std::fs::remove_dir_all(root.join(&spool));
    let _ = std::fs::remove_file(root.join("alerts.jsonl"));
    Ok(Run {
        rate: events as f64 / secs,
        cpu,
        caught_up,
    })
}

fn run_in(root: &Path, a: &IngestRulesArgs) -> anyhow::Result<ExitCode> {
    let p = bench_transport::prepare(root, a.events)?;
    let expected = write_rules(root, a.rules, a.rare)?;
    println!(
        "{} rules, which make {expected} alerts on these events; {} round(s) of (no rules, rules)",
        a.rules, a.rounds
    );
    let (mut none, mut with, mut lag) = (0f64, 0f64, f64::MAX);
    let (mut cpu_none, mut cpu_with) = (f64::MAX, f64::MAX);
    let mut run = 0;
    for round in 0..a.rounds.max(1) {
        for with_rules in [false, true] {
            let Run {
                rate,
                cpu,
                caught_up,
            } = one_run(&p, root, run, with_rules, expected, a.events)?;
            run += 1;
            let per_k = 1e6 * cpu / a.events as f64;
            match caught_up {
                Some((t, d)) => println!(
                    "round {round}: {} rules: {rate:.0} events/s ingested; every alert recorded {t:.2} s and delivered {d:.2} s after the start; collector CPU {per_k:.0} ms per 1,000 events",
                    a.rules
                ),
                None => println!(
                    "round {round}: no rules: {rate:.0} events/s ingested; collector CPU {per_k:.0} ms per 1,000 events"
                ),
            }
            if with_rules {
                with = with.max(rate);
                lag = lag.min(caught_up.map_or(f64::MAX, |(t, _)| t));
                cpu_with = cpu_with.min(cpu);
            } else {
                none = none.max(rate);
                cpu_none = cpu_none.min(cpu);
            }
        }
    }
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
