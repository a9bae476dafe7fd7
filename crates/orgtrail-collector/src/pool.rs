//! A fixed pool of threads for the collector's CPU work (validating, compressing, sealing and
//! hashing batches). One thread per core, long-lived: batches never wait behind one another
//! more than the cores force them to, and the allocator's per-thread caches stay few and warm
//! (tokio's blocking pool would start and retire threads by the dozen under load).

use std::sync::{Arc, Mutex, mpsc};

type Task = Box<dyn FnOnce() + Send>;

/// The pool. Clones share it; the threads end when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct CpuPool {
    tx: Arc<Mutex<mpsc::Sender<Task>>>,
}

impl CpuPool {
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Task>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("orgtrail-cpu-{i}"))
                .spawn(move || {
                    loop {
                        let task = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        match task {
                            Ok(t) => t(),
                            Err(_) => return,
                        }
                    }
                })?;
        }
        Ok(CpuPool {
            tx: Arc::new(Mutex::new(tx)),
        })
    }

    /// Runs `f` on the pool; `None` if the pool is gone or `f` panicked.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        let task: Task = Box::new(move || {
            let _ = done.send(f());
        });
        self.tx.lock().ok()?.send(task).ok()?;
        result.await.ok()
    }
}
