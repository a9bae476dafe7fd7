//! `orgtrail bench ingest-archive`: what the continuous archive costs ingest. One agent ships
//! the same events into a fresh collector twice per round ([`bench_ingest_ab`]): once without
//! `[archive]`, once with the sink writing every `--interval-ms` while the events arrive; the
//! best rate of each is reported with their ratio, and the collector's CPU, counted with the
//! archive on until every stored event was archived
//! (`orgtrail_collector_archive_exported_through`).

use std::cell::Cell;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use crate::cmd::bench_ingest_ab::{self, Feature, Moments, wait_for};

#[derive(Debug, clap::Args)]
pub(crate) struct IngestArchiveArgs {
    /// Events shipped per run.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Rounds of (archive off, archive on); the best rate of each is reported.
    #[arg(long, default_value_t = 2)]
    rounds: u32,
    /// The sink's `interval_ms` (short, so that it writes while the events arrive).
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// The sink's `max_busy_percent`.
    #[arg(long, default_value_t = 50)]
    max_busy_percent: u32,
    /// The sink's `gzip_level`.
    #[arg(long, default_value_t = 1)]
    gzip_level: u32,
}

pub(crate) fn run(a: IngestArchiveArgs) -> anyhow::Result<ExitCode> {
    let what = format!(
        "archive off, archive on every {} ms, max_busy_percent {}, gzip_level {}",
        a.interval_ms, a.max_busy_percent, a.gzip_level
    );
    bench_ingest_ab::on_off("archive", a.events, a.rounds, &what, |root| Archive {
        interval_ms: a.interval_ms,
        busy: a.max_busy_percent,
        gzip: a.gzip_level,
        root: root.to_owned(),
        run: Cell::new(0),
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The archive sink: a run with it settles once every stored event is archived; each run
/// archives into a directory of its own, removed after the run.
struct Archive {
    interval_ms: u64,
    busy: u32,
    gzip: u32,
    root: PathBuf,
    run: Cell<u32>,
}

impl Feature for Archive {
    fn name(&self) -> &'static str {
        "archive"
    }
    fn subject(&self) -> &'static str {
        "the archive"
    }
    fn config(&self) -> String {
        self.run.set(self.run.get() + 1);
        format!(
            "[archive]\ndir = \"archive-{}\"\ninterval_ms = {}\nmax_busy_percent = {}\ngzip_level = {}\n",
            self.run.get(),
            self.interval_ms,
            self.busy,
            self.gzip
        )
    }
    fn settle(&self, ops: &str, started: Instant) -> anyhow::Result<Moments> {
        let stored = bench_ingest_ab::metric(ops, "orgtrail_collector_events_stored_total", "")?;
        let done = wait_for(
            ops,
            "orgtrail_collector_archive_exported_through",
            "",
            stored,
            started,
            "archiving",
        )?;
        let files = bench_ingest_ab::metric(ops, "orgtrail_collector_archive_files_total", "")?;
        let dir = self.root.join(format!("archive-{}", self.run.get()));
        let bytes = crate::cmd::bench::dir_size(&dir);
        println!(
            "  archive on: {stored} events in {files} log files, {:.1} MiB on disk",
            bytes as f64 / (1 << 20) as f64
        );
        let _ = std::fs::remove_dir_all(&dir);
        Ok(vec![("every event archived", done)])
    }
    fn settled(&self) -> &'static str {
        "every event archived"
    }
}
