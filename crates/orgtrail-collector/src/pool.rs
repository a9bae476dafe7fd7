//! A fixed pool of threads for the collector's CPU work (validating, compressing, sealing and
//! hashing batches). One thread per core, long-lived: batches never wait behind one another
//! more than the cores force them to, and the allocator's per-thread caches stay few and warm
//! (tokio's blocking pool would start and retire threads by the dozen under load).
//!
//! The queue in front of the threads is bounded: a caller of [`CpuPool::run`] waits (without
//! blocking its runtime thread) while the queue is full, so a burst of batches turns into
//! backpressure on the streams instead of memory.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

type Task = Box<dyn FnOnce() + Send>;

/// The pool. Clones share it; the threads end when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct CpuPool {
    tx: mpsc::Sender<Task>,
}

impl CpuPool {
    /// `threads` workers (at least one) behind a queue of at most `queue` tasks (at least one).
    pub fn new(threads: usize, queue: usize) -> std::io::Result<Self> {
        Self::spawn("orgtrail-cpu", threads, queue, None)
    }

    /// Like [`CpuPool::new`], with threads named `name-N` that lower their own priority to
    /// `nice` (Linux keeps the nice value per thread; elsewhere, or where that fails, they
    /// run at the normal priority). For work that must not take a core from ingest while
    /// ingest wants it: an unprivileged thread cannot raise its priority back, so these
    /// threads serve nothing else.
    pub fn lowered(name: &str, threads: usize, queue: usize, nice: i32) -> std::io::Result<Self> {
        Self::spawn(name, threads, queue, Some(nice))
    }

    fn spawn(name: &str, threads: usize, queue: usize, nice: Option<i32>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Task>(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    if let Some(n) = nice {
                        lower_priority(n);
                    }
                    loop {
                        // Held only by idle workers, never across a task.
                        let task = match rx.lock() {
                            Ok(mut r) => r.blocking_recv(),
                            Err(_) => return,
                        };
                        match task {
                            // A task that panics drops its result sender (its caller gets
                            // `None`); the thread goes on serving the queue.
                            Some(t) => {
                                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(t));
                            }
                            None => return,
                        }
                    }
                })?;
        }
        Ok(CpuPool { tx })
    }

    /// Runs `f` on the pool, waiting for room in the queue first; `None` if the pool is gone
    /// or `f` panicked.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        let task: Task = Box::new(move || {
            let _ = done.send(f());
        });
        self.tx.send(task).await.ok()?;
        result.await.ok()
    }

    /// Tasks that fit in the queue right now.
    pub fn room(&self) -> usize {
        self.tx.capacity()
    }
}

/// Lowers the calling thread (only: Linux keeps the nice value per thread, and
/// `setpriority(PRIO_PROCESS, tid)` sets that thread's) to `nice`.
fn lower_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice) {
        tracing::debug!(error = %e, nice, "a lowered pool thread runs at normal priority");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_full_queue_makes_callers_wait_and_everything_still_runs() {
        let pool = CpuPool::new(1, 2).unwrap();
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        // One task occupies the worker until released.
        let g = gate.clone();
        let started = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = started.clone();
        let busy = tokio::spawn({
            let pool = pool.clone();
            async move {
                pool.run(move || {
                    s.store(true, std::sync::atomic::Ordering::SeqCst);
                    g.lock().unwrap().recv().is_ok()
                })
                .await
            }
        });
        // Wait until the worker runs it (the queue is empty again).
        while !started.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
        // Two more fill the queue; a third cannot be queued.
        let queued: Vec<_> = (0..2)
            .map(|i| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.run(move || i).await })
            })
            .collect();
        while pool.room() > 0 {
            tokio::task::yield_now().await;
        }
        let third = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(|| 7).await }
        });
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert!(
            !third.is_finished(),
            "a task was accepted past the queue's bound"
        );
        assert_eq!(pool.room(), 0);
        release.send(()).unwrap();
        assert_eq!(busy.await.unwrap(), Some(true));
        let mut got = Vec::new();
        for q in queued {
            got.push(q.await.unwrap().unwrap());
        }
        assert_eq!(got, vec![0, 1]);
        assert_eq!(third.await.unwrap(), Some(7));
    }
}
