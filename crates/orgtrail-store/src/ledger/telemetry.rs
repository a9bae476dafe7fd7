//! What an operator watches on a ledger: the writer's queue, how long group commits take, the
//! last signed checkpoint, and the store's size on disk. The writer thread keeps these as it
//! works (a few relaxed atomic adds per group, never on an event's path); the collector's
//! metrics read them at scrape time.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds, in seconds, of the group-commit latency histogram's buckets (a last bucket,
/// `+Inf`, holds the rest). A group commit writes the record log, applies a sled batch and
/// flushes: milliseconds on a local SSD, more on a network disk.
pub const COMMIT_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Group commits so far by duration, as a Prometheus-style histogram.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommitLatency {
    /// (upper bound in seconds, commits that took at most that long): cumulative, in the
    /// order of [`COMMIT_BUCKETS`].
    pub buckets: Vec<(f64, u64)>,
    /// Every commit (the `+Inf` bucket).
    pub count: u64,
    /// Their total duration, seconds.
    pub sum_seconds: f64,
}

/// The writer as an operator sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriterStats {
    /// Appends queued for the writer thread and not yet taken into a group (the queue holds
    /// at most [`WRITER_QUEUE`] of them; a full queue makes appenders wait).
    pub queue_depth: u64,
    /// How long successful group commits took, from taking the group to its flush.
    pub commit_latency: CommitLatency,
    /// The newest signed checkpoint: (tree size, signing time in Unix milliseconds).
    pub last_checkpoint: Option<(u64, i64)>,
}

/// Appends that may wait for the writer: enough to keep it busy, few enough that queued
/// events do not pile up in memory.
pub const WRITER_QUEUE: usize = 8;

/// Kept by the writer, read by anyone.
#[derive(Debug, Default)]
pub(crate) struct Telemetry {
    /// Commits per bucket (not cumulative); the last is `+Inf`.
    buckets: [AtomicU64; COMMIT_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    last_checkpoint: Mutex<Option<(u64, i64)>>,
}

impl Telemetry {
    /// A group commit took `d`.
    pub(crate) fn committed(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = COMMIT_BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(COMMIT_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// The newest checkpoint is durable: `size` events, signed at `time_ms`.
    pub(crate) fn checkpointed(&self, size: u64, time_ms: i64) {
        if size == 0 {
            return;
        }
        if let Ok(mut c) = self.last_checkpoint.lock() {
            *c = Some((size, time_ms));
        }
    }

    pub(crate) fn snapshot(&self, queue_depth: u64) -> WriterStats {
        let mut buckets = Vec::with_capacity(COMMIT_BUCKETS.len());
        let mut count = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            count += b.load(Ordering::Relaxed);
            if let Some(le) = COMMIT_BUCKETS.get(i) {
                buckets.push((*le, count));
            }
        }
        WriterStats {
            queue_depth,
            commit_latency: CommitLatency {
                buckets,
                count,
                sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            },
            last_checkpoint: self.last_checkpoint.lock().ok().and_then(|c| *c),
        }
    }
}

/// Bytes allocated on disk by the files under `dir` (a file that vanishes while it is
/// listed, such as an index run merged away, counts nothing). Blocking: lists the directory.
pub(crate) fn disk_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let m = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    if !m.is_dir() {
        return Ok(m.blocks() * 512);
    }
    let mut sum = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for e in entries {
        sum += disk_bytes(&e?.path())?;
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_times_fall_into_cumulative_buckets() {
        let t = Telemetry::default();
        t.committed(Duration::from_micros(500));
        t.committed(Duration::from_millis(3));
        t.committed(Duration::from_secs(20));
        let s = t.snapshot(2);
        assert_eq!(s.queue_depth, 2);
        let l = &s.commit_latency;
        assert_eq!(l.count, 3);
        assert_eq!(l.buckets[0], (0.001, 1));
        assert_eq!(l.buckets[1], (0.0025, 1));
        assert_eq!(l.buckets[2], (0.005, 2));
        assert_eq!(l.buckets.last(), Some(&(10.0, 2)), "20 s is only in +Inf");
        assert!((l.sum_seconds - 20.0035).abs() < 1e-6, "{}", l.sum_seconds);
        assert_eq!(s.last_checkpoint, None);
        t.checkpointed(0, 5);
        assert_eq!(
            t.snapshot(0).last_checkpoint,
            None,
            "an empty tree is no checkpoint"
        );
        t.checkpointed(42, 1_700_000_000_000);
        assert_eq!(t.snapshot(0).last_checkpoint, Some((42, 1_700_000_000_000)));
    }
}

/// Where the writer thread's time went, summed over its group commits: waiting for appends,
/// building a group (dedup, sealing, index chunk, counters, leaf hashes), writing and syncing
/// the record log, applying and flushing sled's batch, publishing, and the work after the
/// answers (counter merges, index runs). Logged at debug level when the writer stops
/// (`ORGTRAIL_LOG=orgtrail_store::ledger=debug`), to tell a writer that waits for its input
/// from one that keeps the others waiting (a group is taken whole, so a bulk import's
/// preparers wait while it commits).
#[derive(Debug, Default)]
pub(super) struct Phases {
    pub(super) idle: Duration,
    pub(super) build: Duration,
    pub(super) log: Duration,
    pub(super) sled: Duration,
    pub(super) publish: Duration,
    pub(super) after: Duration,
    /// From taking a group to its answers.
    pub(super) commit: Duration,
    pub(super) groups: u64,
    pub(super) events: u64,
    /// Writes of the store's own state (alerts recorded, deliveries noted) that rode on a
    /// group of appends, and those that made a group of their own (no append queued).
    pub(super) riders: u64,
    pub(super) alone: u64,
}

impl Phases {
    /// A group of `events` appends committed and answered in `took`.
    pub(super) fn committed(&mut self, took: Duration, events: usize) {
        self.commit += took;
        self.groups += 1;
        self.events += events as u64;
    }

    pub(super) fn report(&self) {
        let ms = |d: Duration| d.as_millis() as u64;
        tracing::debug!(
            groups = self.groups,
            events = self.events,
            idle_ms = ms(self.idle),
            commit_ms = ms(self.commit),
            build_ms = ms(self.build),
            log_ms = ms(self.log),
            sled_ms = ms(self.sled),
            publish_ms = ms(self.publish),
            after_ms = ms(self.after),
            riders = self.riders,
            alone = self.alone,
            "ledger writer: time by phase"
        );
    }
}
