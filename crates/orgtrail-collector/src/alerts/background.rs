//! Where alert work runs: the evaluator's ranges (parsing and matching the candidates,
//! recording their alerts), building alerts for delivery, the file sink's writes and the
//! outbox reads and notes of the delivery loops. Two long-lived threads, `orgtrail-alerts-N`,
//! lowered to [`ALERTS_NICE`] (Linux keeps the nice value per thread), not the runtime's
//! blocking pool.
//!
//! Why lowered: on a collector whose cores are busy with ingest (validating, compressing,
//! sealing and committing batches; and, on a small host, the agent beside it), every
//! microsecond of alert work taken from those cores lengthens the acknowledgements, and so
//! slows ingest. Lowered, alert work runs on whatever ingest leaves idle, and yields a core
//! to ingest whenever ingest wants it; it still gets about a tenth of a core that a nice-0
//! thread competes for, so alerts keep flowing on a machine that stays busy. Nothing about an
//! alert's guarantees changes: it is recorded durably before it is delivered, under the same
//! id, exactly as before; only when the cores are saturated may it be recorded later.
//!
//! Only work that blocks on the store or a file runs here: the runtime's threads never do.

use std::sync::OnceLock;

use crate::pool::CpuPool;

/// The nice value of the alert threads: a nice-0 thread competing for the same core gets
/// about ten times their share. Not 19 (or `SCHED_IDLE`): on a machine kept busy by other
/// work, alerts must still keep up.
pub(crate) const ALERTS_NICE: i32 = 10;

/// Threads: the evaluator waits on a group commit while a delivery loop writes.
const THREADS: usize = 2;

/// Tasks queued at most: one per evaluator and delivery loop at a time.
const QUEUE: usize = 64;

/// The pool, started on first use (shared by every collector of the process); `None` where
/// its threads could not be started (alert work then runs on the runtime's blocking pool).
fn pool() -> Option<&'static CpuPool> {
    static POOL: OnceLock<Option<CpuPool>> = OnceLock::new();
    POOL.get_or_init(|| match CpuPool::lowered("orgtrail-alerts", THREADS, QUEUE, ALERTS_NICE) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the alert threads; alert work runs on the blocking pool");
            None
        }
    })
    .as_ref()
}

/// Why alert work gave no result.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Lost {
    #[error("the alert task panicked or its thread is gone")]
    Gone,
}

/// Runs blocking alert work `f` on the alert threads and awaits its result.
pub(crate) async fn run<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Lost> {
    match pool() {
        Some(p) => p.run(f).await.ok_or(Lost::Gone),
        None => tokio::task::spawn_blocking(f).await.map_err(|_| Lost::Gone),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn alert_work_runs_on_the_lowered_threads_and_survives_a_panic() {
        let name = run(|| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert!(name.unwrap().starts_with("orgtrail-alerts-"));
        #[cfg(target_os = "linux")]
        {
            let nice = run(|| {
                rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
            })
            .await
            .unwrap();
            assert_eq!(nice, ALERTS_NICE);
        }
        // A panicking task loses only its own result; the threads go on.
        for _ in 0..THREADS + 1 {
            assert!(run(|| -> u8 { panic!("boom") }).await.is_err());
        }
        assert_eq!(run(|| 7).await.unwrap(), 7);
    }
}
