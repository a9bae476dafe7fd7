//! The harness shared by `orgtrail bench ingest-rules`, `ingest-insights` and
//! `ingest-archive`: one agent ships the same events into a fresh collector per run, both real processes over
//! mutual TLS on loopback, alternating a baseline collector (A) and one with a feature on (B),
//! round after round, so that both sides see the same load on a busy machine. Each run reports
//! the ingest rate (events shipped over the seconds the agent took to drain), and the
//! collector's CPU seconds once its background work (the [`Side::settle`] wait) was done.
//! [`on_off`] runs a whole bench of a [`Feature`] on against off.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::cmd::bench_transport::{self, Prepared, write};

/// Moments a run reached: a label and the seconds since the agent started.
pub(crate) type Moments = Vec<(&'static str, f64)>;

/// One side of the comparison.
pub(crate) trait Side {
    /// Named in the per-round lines, e.g. "no rules", "Insights on".
    fn name(&self) -> String;
    /// Collector configuration beyond the ops listener (which the harness adds).
    fn config(&self) -> String;
    /// Called once the agent drained, with the ops listener's address: waits until the
    /// collector's background work on the run's events is done. Returns the moments reached
    /// (a label and the seconds since the agent started), for the report.
    fn settle(&self, ops: &str, started: Instant) -> anyhow::Result<Moments>;
}

/// The best of a side's runs, and each run's figures.
#[derive(Debug, Clone)]
pub(crate) struct Best {
    /// Highest ingest rate, events/s.
    pub(crate) rate: f64,
    /// Least collector CPU seconds.
    pub(crate) cpu: f64,
    /// Earliest first settle moment (seconds after the start), if the side reports any.
    pub(crate) settled: Option<f64>,
    /// Each round's ingest rate and collector CPU seconds, in order.
    pub(crate) runs: Vec<(f64, f64)>,
}

/// B against A round by round (B's ingest rate over A's in the same round, and B's collector
/// CPU over A's): on a busy machine a round's two runs see about the same load, so the median
/// of these ratios tells more than the ratio of the best runs. Returns the line to print.
pub(crate) fn paired(a: &Best, b: &Best) -> String {
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    };
    let rates: Vec<f64> = a.runs.iter().zip(&b.runs).map(|(x, y)| y.0 / x.0).collect();
    let cpus: Vec<f64> = a.runs.iter().zip(&b.runs).map(|(x, y)| y.1 / x.1).collect();
    let list = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{:.1}%", 100.0 * r))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "round by round: ingest ratio {} (median {:.1}%); collector CPU ratio {} (median {:+.0}%)",
        list(&rates),
        100.0 * median(rates.clone()),
        list(&cpus),
        100.0 * (median(cpus.clone()) - 1.0)
    )
}

/// Runs `rounds` rounds of (A, B) on the prepared events; prints one line per run and returns
/// the best of each side.
pub(crate) fn rounds(
    p: &Prepared,
    root: &Path,
    events: u64,
    rounds: u32,
    sides: [&dyn Side; 2],
) -> anyhow::Result<[Best; 2]> {
    let mut best: [Best; 2] = std::array::from_fn(|_| Best {
        rate: 0.0,
        cpu: f64::MAX,
        settled: None,
        runs: Vec::new(),
    });
    let mut run = 0;
    for round in 0..rounds.max(1) {
        for (i, side) in sides.iter().enumerate() {
            let (rate, cpu, moments) = one_run(p, root, run, *side, events)?;
            run += 1;
            let per_k = 1e6 * cpu / events as f64;
            let said: String = moments
                .iter()
                .map(|(what, t)| format!("; {what} {t:.2} s after the start"))
                .collect();
            println!(
                "round {round}: {}: {rate:.0} events/s ingested{said}; collector CPU {per_k:.0} ms per 1,000 events",
                side.name()
            );
            let b = &mut best[i];
            b.rate = b.rate.max(rate);
            b.cpu = b.cpu.min(cpu);
            b.runs.push((rate, cpu));
            if let Some(&(_, t)) = moments.first() {
                b.settled = Some(b.settled.map_or(t, |s| s.min(t)));
            }
        }
    }
    Ok(best)
}

/// A collector feature measured on (B) against off (A, none of its configuration), by
/// [`on_off`].
pub(crate) trait Feature {
    /// As the per-run lines name it: "archive" ("archive on", "archive off").
    fn name(&self) -> &'static str;
    /// As the summary names it: "the archive" ("ingest with the archive on: ...").
    fn subject(&self) -> &'static str;
    /// The collector configuration that turns it on.
    fn config(&self) -> String;
    /// [`Side::settle`] of a run with it on.
    fn settle(&self, ops: &str, started: Instant) -> anyhow::Result<Moments>;
    /// The summary's name for the earliest settle moment: "every event archived".
    fn settled(&self) -> &'static str;
    /// Said after the ratio, e.g. " (target >= 95%)".
    fn target(&self) -> &'static str {
        ""
    }
}

/// A [`Feature`] on or off, as one side of the rounds.
struct Switch<'a, F> {
    feature: &'a F,
    on: bool,
}

impl<F: Feature> Side for Switch<'_, F> {
    fn name(&self) -> String {
        format!(
            "{} {}",
            self.feature.name(),
            if self.on { "on" } else { "off" }
        )
    }
    fn config(&self) -> String {
        if self.on {
            self.feature.config()
        } else {
            String::new()
        }
    }
    fn settle(&self, ops: &str, started: Instant) -> anyhow::Result<Moments> {
        if self.on {
            self.feature.settle(ops, started)
        } else {
            Ok(Vec::new())
        }
    }
}

/// `orgtrail bench ingest-BENCH`: in a scratch directory of its own (removed afterwards),
/// `events` prepared events shipped in `rounds` rounds of (off, on) of the feature that
/// `feature` makes for that directory; prints each run (the header naming the rounds as
/// `what`), then the best ingest rates with their ratio and the least collector CPU of each
/// side.
pub(crate) fn on_off<F: Feature>(
    bench: &str,
    events: u64,
    rounds: u32,
    what: &str,
    feature: impl FnOnce(&Path) -> F,
) -> anyhow::Result<()> {
    let root = std::env::temp_dir().join(format!(
        "orgtrail-bench-ingest-{bench}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&root)?;
    let result = on_off_in(&root, events, rounds, what, &feature(&root));
    let _ = std::fs::remove_dir_all(&root);
    result
}

fn on_off_in(
    root: &Path,
    events: u64,
    rounds_n: u32,
    what: &str,
    feature: &impl Feature,
) -> anyhow::Result<()> {
    let p = bench_transport::prepare(root, events)?;
    println!("{events} events; {rounds_n} round(s) of ({what})");
    let off = Switch { feature, on: false };
    let on = Switch { feature, on: true };
    let [off, on] = rounds(&p, root, events, rounds_n, [&off, &on])?;
    println!("{}", paired(&off, &on));
    println!(
        "ingest with {} on: {:.0} events/s; off: {:.0} events/s; ratio {:.1}%{}; {} {:.2} s after the start (ingest of the run took {:.2} s)",
        feature.subject(),
        on.rate,
        off.rate,
        100.0 * on.rate / off.rate,
        feature.target(),
        feature.settled(),
        on.settled.unwrap_or(f64::NAN),
        events as f64 / on.rate
    );
    println!(
        "collector CPU, least of the rounds: {:.2} s with {} on, {:.2} s off: {} cost {:.0}% more collector CPU",
        on.cpu,
        feature.subject(),
        off.cpu,
        feature.subject(),
        100.0 * (on.cpu / off.cpu - 1.0)
    );
    Ok(())
}

/// One run: a fresh collector configured by `side`, the agent ships every event; returns the
/// ingest rate, the collector's CPU seconds once `side` settled, and the settle moments.
fn one_run(
    p: &Prepared,
    root: &Path,
    run: u32,
    side: &dyn Side,
    events: u64,
) -> anyhow::Result<(f64, f64, Moments)> {
    let data = format!("data-{run}");
    let spool = format!("spool-{run}");
    let extra = format!("[ops]\nlisten = \"127.0.0.1:0\"\n{}", side.config());
    let (mut collector, port, ops) = bench_transport::start_collector_with(
        &p.exe,
        root,
        &format!("collector-{run}.toml"),
        &data,
        &extra,
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
    let moments = match side.settle(&ops, started) {
        Ok(m) => m,
        Err(e) => {
            let _ = collector.kill();
            return Err(e);
        }
    };
    let cpu = bench_transport::cpu_seconds(collector.id()).unwrap_or(f64::NAN);
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(collector.id().to_string())
        .status();
    collector.wait()?;
    let _ = std::fs::remove_dir_all(root.join(&data));
    let _ = std::fs::remove_dir_all(root.join(&spool));
    Ok((events as f64 / secs, cpu, moments))
}

/// The value of a metric in the ops listener's metrics at `addr`: the first series of `name`
/// whose line holds `label` (`""`: any); 0 when absent.
pub(crate) fn metric(addr: &str, name: &str, label: &str) -> anyhow::Result<u64> {
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

/// Polls the metric until it reaches `at_least` (at most 300 s); returns the seconds since
/// `started`. `what` names the wait in the error.
pub(crate) fn wait_for(
    ops: &str,
    name: &str,
    label: &str,
    at_least: u64,
    started: Instant,
    what: &str,
) -> anyhow::Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let n = metric(ops, name, label)?;
        if n >= at_least {
            return Ok(started.elapsed().as_secs_f64());
        }
        if Instant::now() > deadline {
            bail!("{what}: {name} did not reach {at_least} within 300 s (it is {n})");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
