//! The continuous archive sink (`[archive]`): every stored event written once into an archive
//! in CloudTrail's own layout, with chained digests signed by the store's key, while the
//! collector runs. The writer is orgtrail-trailfiles' `export`, called one bounded pass at a
//! time over the live store.
//!
//! * **Watermark.** The export's state file (`DIR/.orgtrail-export/state.json`) records the
//!   sequence number every stored event is archived through. A pass records itself as pending
//!   (flushed), writes its log files and digests (each written aside, flushed, renamed, its
//!   directory flushed), then commits the new watermark (flushed). After a crash anywhere in
//!   between, the next pass (at the next start) runs the pending pass again against the same
//!   committed state: the same files under the same names with the same bytes, replacing what
//!   the crash left. So no stored event is lost or written into two files, whatever the
//!   crash point (`archive-files-written`, `archive-digests-written`).
//! * **An hour still receiving events** gets a new log file at each pass that has events of
//!   it (named by its first sequence number, as CloudTrail delivers several files an hour),
//!   and a digest listing that pass's files, chained to the previous one. Files are never
//!   appended to or rewritten once committed; readers (Athena, DuckDB) see each event once.
//! * **Throttled.** A pass runs every `interval_ms` and writes at most `max_batch_events`;
//!   with more behind, the next pass waits so that passes take at most `max_busy_percent` of
//!   one core (50: as long as the last one took). Log files are gzipped at `gzip_level` (1 by
//!   default: the least CPU). Each pass runs on a thread of its own, never on the async
//!   runtime, at nice [`PASS_NICE`] (Linux: the nice value is per thread), so that on a busy
//!   machine the scheduler gives ingest's threads the CPU first and the pass the rest; it
//!   reads the ledger as queries do (the writer thread is not involved).
//! * **Targets.** A pass writes through [`Target`]: a directory, or with `[archive.s3]` the
//!   bucket `archive.bucket` under `archive.prefix` (each log file and digest PUT, the
//!   digest's signature in `x-amz-meta-signature`; the state stays in `dir`). A crash between
//!   the PUTs and the commit makes the next pass PUT the same names with the same bytes.
//! * **Errors** (a full disk, an unreadable record) are logged and counted
//!   (`orgtrail_collector_archive_errors_total`), and the pass is tried again at the next
//!   interval; ingest never waits for the archive.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orgtrail_crypto::signing::SigningKey;
use orgtrail_store::EventStore;
use orgtrail_trailfiles::{EventSource, ExportError, ExportOptions, ExportSummary, SourceEvent};

use crate::config::ArchiveConfig;
use crate::ops::Metrics;

/// Where a pass writes.
#[derive(Debug, Clone)]
pub enum Target {
    /// A directory (a local copy of the bucket, or a mount).
    Dir(PathBuf),
    /// A bucket: the objects PUT there, the lock and state in `state_dir`.
    S3 {
        state_dir: PathBuf,
        client: Arc<orgtrail_s3::Blocking>,
    },
}

impl Target {
    /// Writes one bounded pass of `source` into the archive.
    fn pass(
        &self,
        source: &dyn EventSource,
        signer: &SigningKey,
        opts: &ExportOptions,
    ) -> Result<ExportSummary, ExportError> {
        match self {
            Target::Dir(dir) => orgtrail_trailfiles::export::export(dir, source, signer, opts),
            Target::S3 { state_dir, client } => orgtrail_trailfiles::export::export_s3(
                state_dir,
                client.clone(),
                source,
                signer,
                opts,
            ),
        }
    }

    fn describe(&self) -> String {
        match self {
            Target::Dir(dir) => dir.display().to_string(),
            Target::S3 { client, .. } => client.place().to_string(),
        }
    }
}

/// A store as the export reads it, in sequence order: the live store (this sink) or a
/// stopped one (`orgtrail export`).
#[derive(Debug)]
pub struct StoreSource<'a>(pub &'a dyn EventStore);

impl EventSource for StoreSource<'_> {
    fn origin(&self) -> String {
        self.0.origin().to_owned()
    }

    fn head(&self) -> Result<u64, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.0.tree_head()?.0)
    }

    fn read(
        &self,
        first: u64,
        last: u64,
    ) -> Result<Vec<SourceEvent>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self
            .0
            .read_range(first, last)?
            .into_iter()
            .map(|e| SourceEvent {
                seq: e.seq,
                account: e.account,
                time: e.time,
                bytes: e.bytes,
            })
            .collect())
    }
}

/// The nice value of a pass's thread: a thread at nice 10 gets about a tenth of the CPU a
/// nice-0 thread competing for the same core gets, and all of an idle core. Not 19 (or
/// `SCHED_IDLE`): on a machine kept busy by other work the archive must still keep up.
pub const PASS_NICE: i32 = 10;

/// Runs `f` on a new thread lowered to [`PASS_NICE`] and awaits its result. A thread of its
/// own, not the runtime's blocking pool: an unprivileged thread cannot raise its priority
/// back, and the pool's threads also serve queries.
async fn on_low_priority_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, PassThreadError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("archive-pass".into())
        .spawn(move || {
            lower_priority();
            let _ = tx.send(f());
        })
        .map_err(PassThreadError::Spawn)?;
    rx.await.map_err(|_| PassThreadError::Panicked)
}

/// Why a pass's thread gave no result.
#[derive(Debug, thiserror::Error)]
enum PassThreadError {
    #[error("cannot start the archive pass thread: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("the archive pass panicked")]
    Panicked,
}

/// Lowers the calling thread (only: Linux keeps the nice value per thread, and
/// `setpriority(PRIO_PROCESS, tid)` sets that thread's) to [`PASS_NICE`]; where that fails, the pass runs at the
/// normal priority (still throttled by `max_busy_percent`).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), PASS_NICE)
    {
        tracing::debug!(error = %e, "archive pass at normal priority");
    }
}

/// The sink: runs passes until the collector stops.
pub(crate) struct Sink {
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) signer: Arc<SigningKey>,
    pub(crate) config: ArchiveConfig,
    pub(crate) metrics: Arc<Metrics>,
}

impl Sink {
    /// Runs a pass at once, then every `interval_ms` (sooner while catching up), until
    /// `stopping`. A pass under way when the collector stops is finished first (the caller
    /// awaits this task before closing the store).
    pub(crate) async fn run(self, mut stopping: tokio::sync::watch::Receiver<bool>) {
        let target = match &self.config.s3 {
            None => Target::Dir(self.config.dir.clone()),
            Some(s3) => {
                let o = s3.options(&self.config.bucket);
                match orgtrail_s3::Blocking::in_runtime(&o, tokio::runtime::Handle::current()) {
                    Ok(client) => Target::S3 {
                        state_dir: self.config.dir.clone(),
                        client: Arc::new(client),
                    },
                    Err(e) => {
                        self.metrics.archive_failed();
                        tracing::error!(error = %e, "archive sink off: no S3 client");
                        return;
                    }
                }
            }
        };
        let mut opts = self.config.export_options();
        opts.step_hook = Some(orgtrail_store::crashpoint::hit_archive);
        let interval = Duration::from_millis(self.config.interval_ms);
        tracing::info!(dir = %target.describe(), interval_ms = self.config.interval_ms, "archive sink on");
        let mut wait = Duration::ZERO;
        loop {
            tokio::select! {
                _ = stopping.wait_for(|s| *s) => return,
                () = tokio::time::sleep(wait) => {}
            }
            let started = Instant::now();
            let (store, signer, t, o) = (
                self.store.clone(),
                self.signer.clone(),
                target.clone(),
                opts.clone(),
            );
            let outcome =
                on_low_priority_thread(move || t.pass(&StoreSource(&*store), &signer, &o)).await;
            let took = started.elapsed();
            wait = interval;
            match outcome {
                Ok(Ok(s)) => {
                    self.metrics.archived(&s);
                    if s.events > 0 || s.finished_interrupted {
                        tracing::info!(
                            events = s.events,
                            files = s.files,
                            digests = s.digests,
                            through = s.through,
                            lag = s.head.saturating_sub(s.through),
                            ms = took.as_millis() as u64,
                            finished_interrupted = s.finished_interrupted,
                            "archived"
                        );
                    }
                    if s.through < s.head {
                        let p = self.config.max_busy_percent.clamp(1, 100);
                        wait = took * (100 - p) / p;
                    }
                }
                Ok(Err(e)) => {
                    self.metrics.archive_failed();
                    tracing::warn!(error = %e, "archive pass failed; trying again at the next interval");
                }
                Err(e) => {
                    self.metrics.archive_failed();
                    tracing::error!(error = %e, "archive pass stopped");
                }
            }
        }
    }
}
