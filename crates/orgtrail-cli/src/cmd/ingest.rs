//! The bulk ingest pipeline shared by `import` and `bench store`: the caller's thread feeds
//! validated events, one worker per core prepares them (compress, hash, blind) and submits
//! batches to the ledger writer, and a settler collects the acknowledgements.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::Instant;

use orgtrail_core::{AccountId, CloudTrailEvent};
use orgtrail_store::{AppendOutcome, Ledger, StoreError};
use tokio::sync::oneshot;

/// Events per batch handed to a worker (and submitted to the writer).
pub(crate) const BATCH: usize = 2000;

/// Batches submitted to the writer and not yet acknowledged, at most: one being committed and
/// two waiting keep the writer busy (it commits a batch as one group). The writer's own queue
/// holds more ([`orgtrail_store::WRITER_QUEUE`] appends, for many small ones from the network),
/// and filled with prepared batches it was a backlog of about 2 MiB each that an import held
/// whenever the writer was the slower side, more so the larger the store.
pub(crate) const IN_FLIGHT: usize = 3;

/// What the ledger answered, summed.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Totals {
    pub(crate) stored: u64,
    pub(crate) duplicates: u64,
    pub(crate) conflicts: u64,
}

type Pending = oneshot::Receiver<Result<AppendOutcome, StoreError>>;
type Events = Vec<(CloudTrailEvent, AccountId)>;
/// A batch and the 1-based ordinals of its first and last event in the feed: its events, then
/// those of them that repeat an (account, eventID) fed shortly before (see [`Recent`]).
type Work = (u64, u64, Events, Events);

/// Events fed at most this long ago are remembered by [`Recent`]: more than the batches in
/// the pipeline at once (one per worker waiting, one being prepared per worker, and
/// [`IN_FLIGHT`] at the writer).
const RECENT: usize = 8 * BATCH;

/// The (account, eventID) pairs fed last, hashed. An event that repeats one (a redelivery) is
/// a duplicate the ledger will keep out, unless it is the first of its pair to reach it: it
/// is prepared on its own instead of in a run of its account's events (see
/// `Preparer::prepare_batch`), since a run the writer does not store whole is compressed
/// again on the writer's thread. A false match (two pairs of one hash) only costs that.
struct Recent {
    hasher: std::hash::RandomState,
    seen: std::collections::HashSet<u64>,
    order: std::collections::VecDeque<u64>,
}

impl Recent {
    fn new() -> Self {
        Recent {
            hasher: std::hash::RandomState::new(),
            seen: std::collections::HashSet::with_capacity(RECENT),
            order: std::collections::VecDeque::with_capacity(RECENT),
        }
    }

    /// Remembers the event's pair; true if it was remembered already.
    fn repeats(&mut self, event: &CloudTrailEvent, owner: AccountId) -> bool {
        use std::hash::BuildHasher;
        let h = self
            .hasher
            .hash_one((owner.as_str(), event.fields().event_id.as_str()));
        if !self.seen.insert(h) {
            return true;
        }
        if self.order.len() == RECENT
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.order.push_back(h);
        false
    }
}

/// Feeds events into the ledger, in batches of `batch_events` (at least 1). `feed` is called once with a `push` function; every pushed
/// event gets the next ordinal (1, 2, ...). `on_ack(first, last)` is called for each batch once
/// the ledger has made it durable (batches may be acknowledged out of order).
pub(crate) fn ingest(
    ledger: &Ledger,
    batch_events: usize,
    on_ack: &(dyn Fn(u64, u64) + Sync),
    feed: impl FnOnce(
        &mut dyn FnMut(CloudTrailEvent, AccountId) -> anyhow::Result<()>,
    ) -> anyhow::Result<()>,
) -> anyhow::Result<Totals> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let batch_events = batch_events.max(1);
    let waits = Waits::default();
    // One parsed batch waiting per worker: parsing is the faster side, so this queue is full
    // whenever the writer is the slower one, and each batch holds its events parsed (about
    // 6 MB). Twice as many waited before, and a slower writer (a larger store) kept them.
    let (work_tx, work_rx) = mpsc::sync_channel::<Work>(workers);
    let work_rx = Mutex::new(work_rx);
    let (ack_tx, ack_rx) = mpsc::channel::<(u64, u64, Pending)>();
    // One token per batch in flight (see [`IN_FLIGHT`]): a worker sends one before it
    // submits, the settler takes one back once a batch is acknowledged.
    let (token_tx, token_rx) = mpsc::sync_channel::<()>(IN_FLIGHT);
    // Batches go back to the feeding thread once prepared, to be emptied there: the events
    // were allocated there, and freeing memory on the thread that allocated it is much
    // cheaper than freeing it on another one (a fifth of the allocator's work was that).
    let (recycle_tx, recycle_rx) = mpsc::sync_channel::<Events>(workers * 4);
    std::thread::scope(|scope| -> anyhow::Result<Totals> {
        let mut handles = Vec::new();
        for _ in 0..workers {
            let ack_tx = ack_tx.clone();
            let recycle_tx = recycle_tx.clone();
            let token_tx = token_tx.clone();
            let work_rx = &work_rx;
            let waits = &waits;
            handles.push(scope.spawn(move || -> anyhow::Result<()> {
                let mut preparer = ledger.preparer();
                loop {
                    let t0 = Instant::now();
                    let next = match work_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return Ok(()),
                    };
                    waits.add(&waits.work_recv, t0);
                    let t0 = Instant::now();
                    let Ok((first, last, batch, repeats)) = next else {
                        return Ok(());
                    };
                    // Each account's events compressed by runs (one record block each); the
                    // repeated ones each on its own, after them (the first of a pair still
                    // comes first).
                    let mut prepared = preparer.prepare_batch(&batch)?;
                    for (event, owner) in &repeats {
                        prepared.push(preparer.prepare(event, *owner)?);
                    }
                    // Full (the feeder is behind): the batch is freed here instead.
                    let _ = recycle_tx.try_send(batch);
                    waits.add(&waits.prepare, t0);
                    let t0 = Instant::now();
                    if token_tx.send(()).is_err() {
                        // The settler stopped; its error is reported.
                        return Ok(());
                    }
                    waits.add(&waits.token, t0);
                    let t0 = Instant::now();
                    let pending = ledger.submit_blocking(prepared)?;
                    waits.add(&waits.submit, t0);
                    if ack_tx.send((first, last, pending)).is_err() {
                        return Ok(());
                    }
                }
            }));
        }
        drop(ack_tx);
        drop(recycle_tx);
        drop(token_tx);
        let settler = scope.spawn(move || -> anyhow::Result<Totals> {
            let mut t = Totals::default();
            for (first, last, p) in ack_rx {
                let outcome = p.blocking_recv().map_err(|_| StoreError::WriterGone)??;
                // The batch's token was sent before it was submitted.
                let _ = token_rx.recv();
                t.stored += outcome.stored() as u64;
                t.duplicates += outcome.duplicates() as u64;
                t.conflicts += outcome.conflicts() as u64;
                on_ack(first, last);
            }
            Ok(t)
        });

        let mut batch = Vec::with_capacity(batch_events);
        let mut repeats = Vec::new();
        let mut recent = Recent::new();
        let mut ordinal = 0u64;
        let mut first = 1u64;
        let fed = feed(&mut |event, owner| {
            ordinal += 1;
            if recent.repeats(&event, owner) {
                repeats.push((event, owner));
            } else {
                batch.push((event, owner));
            }
            if batch.len() + repeats.len() == batch_events {
                // Every batch that came back is emptied now (none waits full), one reused.
                let mut next = None;
                while let Ok(mut used) = recycle_rx.try_recv() {
                    used.clear();
                    next.get_or_insert(used);
                }
                let next = next.unwrap_or_else(|| Vec::with_capacity(batch_events));
                let b = std::mem::replace(&mut batch, next);
                let r = std::mem::take(&mut repeats);
                let t0 = Instant::now();
                if work_tx.send((first, ordinal, b, r)).is_err() {
                    anyhow::bail!("the ingest workers stopped");
                }
                waits.add(&waits.feed_send, t0);
                first = ordinal + 1;
            }
            Ok(())
        });
        if fed.is_ok() && !(batch.is_empty() && repeats.is_empty()) {
            let b = std::mem::take(&mut batch);
            let r = std::mem::take(&mut repeats);
            // A send error means the workers stopped; their error is reported below.
            let _ = work_tx.send((first, ordinal, b, r));
        }
        drop(work_tx);
        let mut first_err = fed.err();
        for h in handles {
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(_) => {
                    first_err.get_or_insert(anyhow::anyhow!("an ingest worker panicked"));
                }
            }
        }
        waits.report(workers);
        let totals = settler
            .join()
            .map_err(|_| anyhow::anyhow!("the ingest settler panicked"))?;
        match first_err {
            Some(e) => Err(e),
            None => totals,
        }
    })
}

/// Where the pipeline's threads spent their time, summed over threads (nanoseconds): the
/// feeding thread waiting for a worker to take a batch, workers waiting for a batch, preparing
/// it, waiting for a token (the writer is [`IN_FLIGHT`] batches behind) and queueing it for the
/// writer. Logged at debug level at the end (`ORGTRAIL_LOG=orgtrail::cmd::ingest=debug`),
/// beside the writer's own phases (`orgtrail_store::ledger=debug`): it tells which side of
/// the pipeline waits for which. A few clock readings per batch of events.
#[derive(Default)]
struct Waits {
    feed_send: AtomicU64,
    work_recv: AtomicU64,
    prepare: AtomicU64,
    token: AtomicU64,
    submit: AtomicU64,
}

impl Waits {
    fn add(&self, a: &AtomicU64, t0: Instant) {
        let ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
        a.fetch_add(ns, Ordering::Relaxed);
    }

    fn report(&self, workers: usize) {
        let ms = |a: &AtomicU64| a.load(Ordering::Relaxed) / 1_000_000;
        tracing::debug!(
            workers,
            feeder_waiting_ms = ms(&self.feed_send),
            workers_waiting_for_input_ms = ms(&self.work_recv),
            workers_preparing_ms = ms(&self.prepare),
            workers_waiting_for_writer_ms = ms(&self.token),
            workers_queueing_ms = ms(&self.submit),
            "ingest pipeline: time by step"
        );
    }
}
