//! The spool's own thread. It owns the [`Spool`]; everyone else holds a [`SpoolHandle`] and
//! sends it commands over a bounded channel, waiting for a oneshot answer: async callers
//! await it, source threads block on it. Sled, segment reads, fsyncs and key reads never run
//! on the async runtime. Every quarter second the thread also carries out dead-letter
//! requests from other processes and deletes a drained, idle segment.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::{AppendBatch, Chunk, Spool, SpoolError, SpoolOptions};

const TICK: Duration = Duration::from_millis(250);

type Reply<T> = oneshot::Sender<T>;
/// What an append answers: the batch handed back, and the chunks written.
pub type Appended = (AppendBatch, Result<Vec<(u64, u32)>, SpoolError>);

/// Called on the spool thread with the chunks an append wrote, once they are durable and
/// before any later command (a read of those chunks by the shipper) is served.
pub type Noted = Box<dyn FnOnce(&[(u64, u32)]) + Send>;

enum Cmd {
    Append {
        batch: AppendBatch,
        max_events: usize,
        max_bytes: usize,
        noted: Option<Noted>,
        reply: Reply<Appended>,
    },
    Chunk(u64, Reply<Result<Option<Chunk>, SpoolError>>),
    Ack(
        (u64, u64),
        Vec<(usize, String)>,
        Reply<Result<(), SpoolError>>,
    ),
    Mark(Vec<u8>, Reply<Option<Vec<u8>>>),
    ForgetMarks(Vec<u8>, Vec<u8>, Reply<Result<usize, SpoolError>>),
    IsEmpty(Reply<bool>),
    Flush(Reply<Result<(), SpoolError>>),
    Tick,
}

/// Figures the thread publishes after each command.
#[derive(Debug, Default)]
struct Shared {
    pending_bytes: AtomicU64,
    pending_events: AtomicU64,
    dead_letters: AtomicU64,
    free_bytes: AtomicU64,
}

/// A handle on the spool thread. Clones share one spool; the thread stops (making the
/// acknowledgements durable) when the last handle goes.
#[derive(Debug, Clone)]
pub struct SpoolHandle {
    tx: mpsc::Sender<Cmd>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cmd")
    }
}

fn publish(spool: &Spool, shared: &Shared) {
    shared
        .pending_bytes
        .store(spool.pending_bytes(), Ordering::Relaxed);
    shared
        .pending_events
        .store(spool.pending_events(), Ordering::Relaxed);
    shared
        .dead_letters
        .store(spool.dead_letter_count(), Ordering::Relaxed);
}

fn serve(
    opts: SpoolOptions,
    mut rx: mpsc::Receiver<Cmd>,
    opened: oneshot::Sender<Result<(), SpoolError>>,
    shared: Arc<Shared>,
) {
    let mut spool = match Spool::open(opts) {
        Ok(s) => s,
        Err(e) => {
            let _ = opened.send(Err(e));
            return;
        }
    };
    // Requests written while no agent ran.
    spool.serve_requests();
    publish(&spool, &shared);
    if let Some(free) = super::free_bytes(spool.dir()) {
        shared.free_bytes.store(free, Ordering::Relaxed);
    }
    let _ = opened.send(Ok(()));
    let mut last_tick = Instant::now();
    while let Some(cmd) = rx.blocking_recv() {
        match cmd {
            Cmd::Append {
                mut batch,
                max_events,
                max_bytes,
                noted,
                reply,
            } => {
                let r = spool.append_batch(&mut batch, max_events, max_bytes);
                if let (Ok(chunks), Some(noted)) = (&r, noted) {
                    noted(chunks);
                }
                publish(&spool, &shared);
                let _ = reply.send((batch, r));
            }
            Cmd::Chunk(from, reply) => {
                let _ = reply.send(spool.chunk_from(from));
            }
            Cmd::Ack(chunk, rejected, reply) => {
                let r = spool.acknowledge(chunk, &rejected);
                publish(&spool, &shared);
                let _ = reply.send(r);
            }
            Cmd::Mark(key, reply) => {
                let _ = reply.send(spool.mark(&key));
            }
            Cmd::ForgetMarks(from, to, reply) => {
                let _ = reply.send(spool.forget_marks(&from, &to));
            }
            Cmd::IsEmpty(reply) => {
                let _ = reply.send(spool.is_empty());
            }
            Cmd::Flush(reply) => {
                let _ = reply.send(spool.flush());
            }
            Cmd::Tick => {}
        }
        if last_tick.elapsed() >= TICK {
            last_tick = Instant::now();
            spool.serve_requests();
            if let Some(free) = super::free_bytes(spool.dir()) {
                shared.free_bytes.store(free, Ordering::Relaxed);
            }
            if let Err(e) = spool.retire_idle(false) {
                tracing::warn!(error = %e, "cannot delete a drained spool segment; trying again later");
            }
        }
        publish(&spool, &shared);
    }
    if let Err(e) = spool.flush() {
        tracing::warn!(error = %e, "could not record the last acknowledgements; those batches will be sent again (the collector drops duplicates)");
    }
}

impl SpoolHandle {
    /// Opens the spool on a thread of its own.
    pub async fn open(opts: SpoolOptions) -> Result<Self, SpoolError> {
        let (tx, rx) = mpsc::channel(64);
        let (opened_tx, opened_rx) = oneshot::channel();
        let shared = Arc::new(Shared::default());
        let sh = shared.clone();
        let dir = opts.dir.clone();
        std::thread::Builder::new()
            .name("orgtrail-spool".into())
            .spawn(move || serve(opts, rx, opened_tx, sh))
            .map_err(|e| SpoolError::Io {
                path: dir.clone(),
                cause: e,
            })?;
        opened_rx.await.map_err(|_| SpoolError::Stopped)??;
        // The tick: a weak sender, so it never keeps the spool open.
        let weak = tx.downgrade();
        std::thread::Builder::new()
            .name("orgtrail-spool-tick".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(TICK);
                    let Some(tx) = weak.upgrade() else { break };
                    if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(Cmd::Tick) {
                        break;
                    }
                }
            })
            .map_err(|e| SpoolError::Io {
                path: dir,
                cause: e,
            })?;
        Ok(SpoolHandle { tx, shared })
    }

    async fn ask<T>(&self, cmd: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, SpoolError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(cmd(tx))
            .await
            .map_err(|_| SpoolError::Stopped)?;
        rx.await.map_err(|_| SpoolError::Stopped)
    }

    fn ask_blocking<T>(&self, cmd: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, SpoolError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .blocking_send(cmd(tx))
            .map_err(|_| SpoolError::Stopped)?;
        rx.blocking_recv().map_err(|_| SpoolError::Stopped)
    }

    /// Makes `batch` durable (see [`Spool::append_batch`]); hands the batch back, emptied of
    /// what was written. Blocking: for threads outside the async runtime (the spooler).
    pub fn append_blocking(
        &self,
        batch: AppendBatch,
        max_events: usize,
        max_bytes: usize,
    ) -> Appended {
        self.append_blocking_noted(batch, max_events, max_bytes, None)
    }

    /// [`SpoolHandle::append_blocking`], with `noted` called on the chunks written before the
    /// spool serves anything else: what it records about them (which source each event came
    /// from) is there before the shipper can read, send and have them acknowledged.
    pub fn append_blocking_noted(
        &self,
        batch: AppendBatch,
        max_events: usize,
        max_bytes: usize,
        noted: Option<Noted>,
    ) -> Appended {
        let (tx, rx) = oneshot::channel();
        let cmd = Cmd::Append {
            batch,
            max_events,
            max_bytes,
            noted,
            reply: tx,
        };
        if let Err(mpsc::error::SendError(cmd)) = self.tx.blocking_send(cmd) {
            let Cmd::Append { batch, .. } = cmd else {
                return (AppendBatch::default(), Err(SpoolError::Stopped));
            };
            return (batch, Err(SpoolError::Stopped));
        }
        rx.blocking_recv()
            .unwrap_or_else(|_| (AppendBatch::default(), Err(SpoolError::Stopped)))
    }

    /// The next pending chunk starting at or after `from`.
    pub async fn chunk_from(&self, from: u64) -> Result<Option<Chunk>, SpoolError> {
        self.ask(|r| Cmd::Chunk(from, r)).await?
    }

    /// Records the acknowledgement of a chunk (see [`Spool::acknowledge`]).
    pub async fn acknowledge(
        &self,
        chunk: (u64, u64),
        rejected: &[(usize, String)],
    ) -> Result<(), SpoolError> {
        let rejected = rejected.to_vec();
        self.ask(|r| Cmd::Ack(chunk, rejected, r)).await?
    }

    /// True when nothing waits to be acknowledged.
    pub async fn is_empty(&self) -> Result<bool, SpoolError> {
        self.ask(Cmd::IsEmpty).await
    }

    /// Makes acknowledgements durable and deletes the drained segment (a clean stop).
    pub async fn flush(&self) -> Result<(), SpoolError> {
        self.ask(Cmd::Flush).await?
    }

    /// Forgets the marks in `from..to` (see [`Spool::forget_marks`]). Blocking: for source
    /// threads.
    pub fn forget_marks(&self, from: &[u8], to: &[u8]) -> Result<usize, SpoolError> {
        self.ask_blocking(|r| Cmd::ForgetMarks(from.to_vec(), to.to_vec(), r))?
    }

    /// A source's durable position (see [`Spool::mark`]). Blocking: for source threads.
    pub fn mark(&self, key: &[u8]) -> Option<Vec<u8>> {
        match self.ask_blocking(|r| Cmd::Mark(key.to_vec(), r)) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "cannot read a source position from the spool");
                None
            }
        }
    }

    /// Bytes waiting to be acknowledged (as of the last command).
    pub fn pending_bytes(&self) -> u64 {
        self.shared.pending_bytes.load(Ordering::Relaxed)
    }

    /// Events waiting to be acknowledged (as of the last command).
    pub fn pending_events(&self) -> u64 {
        self.shared.pending_events.load(Ordering::Relaxed)
    }

    /// Free bytes in the spool's file system (as of the last quarter second).
    pub fn free_bytes(&self) -> u64 {
        self.shared.free_bytes.load(Ordering::Relaxed)
    }

    /// Dead letters held (as of the last command).
    pub fn dead_letter_count(&self) -> u64 {
        self.shared.dead_letters.load(Ordering::Relaxed)
    }
}
