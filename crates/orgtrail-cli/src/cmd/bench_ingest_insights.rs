//! `orgtrail bench ingest-insights`: what Insights cost ingest. One agent ships the same
//! events into a fresh collector twice per round ([`bench_ingest_ab`]): once without
//! `[insights]`, once with Insights on (the defaults); the best rate of each is reported with
//! their ratio, and the collector's CPU, counted with Insights on until the detector was fed
//! every stored event (`orgtrail_collector_insights_fed_through`), and how many stored events
//! the feeder read back from the ledger (`orgtrail_collector_insights_read_back_total`).

use std::process::ExitCode;
use std::time::Instant;

use crate::cmd::bench_ingest_ab::{self, Feature, Moments, wait_for};

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
    bench_ingest_ab::on_off(
        "insights",
        a.events,
        a.rounds,
        "Insights off, Insights on",
        |_| Insights,
    )?;
    println!(
        "memory for 100,000 tracked keys (the default cap): `cargo run --release -p orgtrail-insights --example memory` (README, Insights)"
    );
    Ok(ExitCode::SUCCESS)
}

/// Insights (the defaults): a run with them settles once the detector was fed every stored
/// event.
struct Insights;

impl Feature for Insights {
    fn name(&self) -> &'static str {
        "Insights"
    }
    fn subject(&self) -> &'static str {
        "Insights"
    }
    fn config(&self) -> String {
        "[insights]\nenabled = true\n".to_owned()
    }
    fn settle(&self, ops: &str, started: Instant) -> anyhow::Result<Moments> {
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
    fn settled(&self) -> &'static str {
        "the detector caught up"
    }
    fn target(&self) -> &'static str {
        " (target >= 95%)"
    }
}
