//! Sources: where the agent's events come from. Each runs on its own thread (or task) and
//! hands what it reads to the spooler as [`Item`]s; a source's position is a [`Item::Mark`]
//! the spooler writes in the same durable append as the events read before it.

pub mod digests;
pub mod dir;
pub mod http;
pub mod jsonl;
pub mod s3;

use std::sync::mpsc::SyncSender;

use orgtrail_core::CloudTrailEvent;

use crate::metrics::Metrics;

/// What a source hands the spooler.
// Nearly every item is an event; boxing it to shrink the rare other variants would cost an
// allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Item {
    /// An event, from source number `source`.
    Event {
        source: usize,
        event: CloudTrailEvent,
    },
    /// Something the source could not turn into an event, and why; kept as a dead letter.
    Dead {
        source: usize,
        reason: String,
        bytes: Vec<u8>,
    },
    /// The source's new position, durable together with the events before it.
    Mark { key: Vec<u8>, value: Vec<u8> },
    /// A file's last event with the file's done-mark, appended together: once the file's
    /// events are durable, so is its mark (an agent killed after they were acknowledged does
    /// not read the file again), whatever the spooler's linger or batch size.
    LastEvent {
        source: usize,
        event: CloudTrailEvent,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// Several positions written in one durable append, all or none (a digest's check: the
    /// failures it counted and the marks saying it was checked), with the digest checks they
    /// record: counted in `orgtrail_agent_digest_checks_total` of source number `source` once
    /// the append is durable, so a count seen on `/metrics` is never checked again after a
    /// crash.
    Marks {
        source: usize,
        marks: Vec<(Vec<u8>, Vec<u8>)>,
        checks: Vec<(digests::DigestResult, u64)>,
    },
    /// Answer once everything handed over before is durable in the spool.
    Durable(SyncSender<Result<(), String>>),
}

/// What every source gets.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// This source's number (its index in the configuration).
    pub index: usize,
    pub name: String,
    pub out: SyncSender<Item>,
    pub spool: crate::SpoolHandle,
    pub metrics: std::sync::Arc<Metrics>,
    /// Read what is there and stop (for `--exit-when-drained`), instead of waiting for more.
    pub once: bool,
    /// Becomes true when the agent stops.
    pub stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Ctx {
    /// Hands over an item; false when the agent is stopping.
    pub fn send(&self, item: Item) -> bool {
        self.out.send(item).is_ok()
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Hands over an event (counting it as read).
    pub fn event(&self, event: CloudTrailEvent) -> bool {
        self.metrics.source(self.index).read.inc();
        self.send(Item::Event {
            source: self.index,
            event,
        })
    }

    /// Hands over a file's last event with the file's done-mark ([`Item::LastEvent`]),
    /// counting the event as read.
    pub fn last_event(&self, event: CloudTrailEvent, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.metrics.source(self.index).read.inc();
        self.send(Item::LastEvent {
            source: self.index,
            event,
            key,
            value,
        })
    }

    /// Hands over a dead letter.
    pub fn dead(&self, reason: String, bytes: Vec<u8>) -> bool {
        self.metrics.source(self.index).read.inc();
        tracing::warn!(source = %self.name, %reason, "moved to dead letters");
        self.send(Item::Dead {
            source: self.index,
            reason,
            bytes,
        })
    }

    /// Waits until everything handed over so far is durable.
    pub fn durable(&self) -> Result<(), String> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        if !self.send(Item::Durable(tx)) {
            return Err("the agent is stopping".into());
        }
        rx.recv()
            .unwrap_or_else(|_| Err("the agent is stopping".into()))
    }

    /// Sleeps up to `ms`, waking early when the agent stops. False when stopping.
    pub fn pause(&self, ms: u64) -> bool {
        let until = std::time::Instant::now() + std::time::Duration::from_millis(ms);
        while std::time::Instant::now() < until {
            if self.stopping() {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(ms.min(50)));
        }
        !self.stopping()
    }
}
