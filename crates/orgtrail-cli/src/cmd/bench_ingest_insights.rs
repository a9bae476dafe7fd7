//! `orgtrail bench ingest-insights`: what Insights cost ingest. One agent ships the same
//! events into a fresh collector twice per round ([`bench_ingest_ab`]): once without
//! `[insights]`, once with Insights on (the defaults); the best rate of each is reported with
//! their ratio, and the collector's CPU, counted with Insights on until the detector was fed
//! every stored event (`orgtrail_collector_insights_fed_through`), and how many stored events
//! the feeder read back from the ledger (`orgtrail_collector_insights_read_back_total`).

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use crate::cmd::bench_ingest_ab::{self, Moments, Side, wait_for};
use crate::cmd::bench_transport;

#[derive(Debug, clap::Args)]
pub(crate) struct IngestInsightsArgs {
    /// Events shipped per run.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Rounds of (Insights off, Insights on); the best rate of each is reported.
    #[arg(long, default_value_t = 2)]
    rounds: u32,
}

pub(crate) fn run(a: IngestInsightsArgs) -> anyhow::Result<ExitCode> {
    let root = std::env::temp_dir().join(format!(
        "orgtrail-bench-ingest-insights-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&root)?;
    let result = run_in(&root, &a);
    let _ = std::fs::remove_dir_all(&root);
    result
}

/// A collector with or without Insights. With them, it settles once the detector was fed
/// every stored event.
struct Insights {
    on: bool,
}

impl Side for Insights {
    fn name(&self) -> String {
        if self.on {
            "Insights on"
        } else {
            "Insights off"
        }
        .to_owned()
    }
    fn config(&self) -> String {
        if self.on {
            "[insights]\nenabled = true\n".to_owned()
        } else {
            String::new()
        }
    }
    fn settle(&self, ops: &str, started: Instant) -> anyhow::Result<Moments> {
        if !self.on {
            return Ok(Vec::new());
        }
        // Every event stored (one account) has a sequence number up to at least this.
        let stored = bench_ingest_ab::metric(ops, "orgtrail_collector_events_stored_total", "")?;
        let fed = wait_for(
            ops,
            "orgtrail_collector_insights_fed_through",
            "",
            stored,
            started,
            "Insights feeding",
        )?;
        // The calls the ingest path kept in memory need no reading back.
        let read_back =
            bench_ingest_ab::metric(ops, "orgtrail_collector_insights_read_back_total", "")?;
        println!(
            "  Insights on: {read_back} of {stored} stored events read back from the ledger to feed the detector"
        );
        Ok(vec![("the detector was fed every event", fed)])
    }
}

fn run_in(root: &Path, a: &IngestInsightsArgs) -> anyhow::Result<ExitCode> {
    let p = bench_transport::prepare(root, a.events)?;
    println!(
        "{} events; {} round(s) of (Insights off, Insights on)",
        a.events, a.rounds
    );
    let (off, on) = (Insights { on: false }, Insights { on: true });
    let [off, on] = bench_ingest_ab::rounds(&p, root, a.events, a.rounds, [&off, &on])?;
    println!(
        "ingest with Insights on: {:.0} events/s; off: {:.0} events/s; ratio {:.1}% (target >= 95%); the detector caught up {:.2} s after the start (ingest of the run took {:.2} s)",
        on.rate,
        off.rate,
        100.0 * on.rate / off.rate,
        on.settled.unwrap_or(f64::NAN),
        a.events as f64 / on.rate
    );
    println!(
        "collector CPU, least of the rounds: {:.2} s with Insights on, {:.2} s off: Insights cost {:.0}% more collector CPU",
        on.cpu,
        off.cpu,
        100.0 * (on.cpu / off.cpu - 1.0)
    );
    println!(
        "memory for 100,000 tracked keys (the default cap): `cargo run --release -p orgtrail-insights --example memory` (README, Insights)"
    );
    Ok(ExitCode::SUCCESS)
}
