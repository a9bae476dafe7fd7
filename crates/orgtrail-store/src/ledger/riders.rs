//! Writes that ride on a group commit: a durable write of the store's own state (the alerts a
//! range of events made, with the alert watermark; a sink's delivery noted) applied with the
//! writer's next group of appends and made durable by that group's flush, instead of a flush
//! of its own. Each such flush syncs sled's files once more, and while events stream in those
//! syncs competed with the group commits' own on the same disk: with 100 rules firing on a
//! few events in a hundred, they doubled the syncs per stored event and slowed ingest by
//! several percent.
//!
//! A write rides on the next group when an append is on its way: queued for the writer, or
//! being prepared by a caller that said so ([`crate::EventStore::preparing_append`]). It then
//! waits in [`Riders`] until the writer takes it with a group (right before that group's
//! flush), at most [`RIDE_WAIT`]; after that, or when no append is on its way, it is committed
//! at once as a group of its own (one flush, as a direct write would). The caller returns once
//! its write is durable either way, so what is durable when is unchanged; only the flush that
//! makes it so is shared.
//!
//! A rider's writes ([`Writes`]) go into the group's own `sled::Batch`, not a batch of their
//! own: sled writes out its log buffer (with a sync of that range) around every batch it
//! applies, so a batch per rider would cost nearly what a flush did. Within the group's batch
//! they are as atomic as the group: after a crash both or neither are there.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use crate::error::StoreError;
use crate::kv::{Batch, Value};

/// The longest a write waits for an append on its way to ride on: the append's preparation
/// normally takes a few milliseconds; one that never comes (every event of its batch
/// rejected) only delays the write by this much.
pub(super) const RIDE_WAIT: Duration = Duration::from_millis(20);

/// Writes to the store's tree, as a `sled::Batch` holds them, that can also be added to
/// another batch (a group's).
#[derive(Debug, Default)]
pub(crate) struct Writes(Vec<(Value, Option<Value>)>);

impl Writes {
    pub(crate) fn insert<K: Into<Value>, V: Into<Value>>(&mut self, key: K, value: V) {
        self.0.push((key.into(), Some(value.into())));
    }

    pub(crate) fn remove<K: Into<Value>>(&mut self, key: K) {
        self.0.push((key.into(), None));
    }

    /// Adds them to `batch`, after what it holds (a key written twice keeps the last write).
    pub(crate) fn add_to(self, batch: &mut Batch) {
        for (k, v) in self.0 {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
    }

    /// As a batch of their own.
    pub(crate) fn into_batch(self) -> Batch {
        let mut b = Batch::default();
        self.add_to(&mut b);
        b
    }
}

/// A write waiting for a group.
pub(super) struct Rider {
    pub(super) writes: Writes,
    reply: mpsc::SyncSender<Result<(), StoreError>>,
}

impl Rider {
    /// Tells the waiting caller how its write ended.
    pub(super) fn answer(self, r: &Result<(), StoreError>) {
        let _ = self.reply.send(match r {
            Ok(()) => Ok(()),
            Err(e) => Err(StoreError::Recovering {
                reason: e.to_string(),
            }),
        });
    }
}

/// The writes waiting for the next group, and the appends being prepared.
#[derive(Default)]
pub(super) struct Riders {
    waiting: Mutex<Vec<Rider>>,
    preparing: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Riders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Riders")
            .field("preparing", &self.preparing.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Riders {
    /// Whether a caller is preparing an append.
    pub(super) fn appends_preparing(&self) -> bool {
        self.preparing.load(Ordering::Acquire) > 0
    }

    /// Counts an append being prepared until the guard is dropped.
    pub(super) fn preparing(&self) -> crate::Preparing {
        self.preparing.fetch_add(1, Ordering::AcqRel);
        crate::Preparing(Some(self.preparing.clone()))
    }

    /// Leaves `writes` for the writer's next group; the receiver answers once it is durable.
    pub(super) fn wait(&self, writes: Writes) -> mpsc::Receiver<Result<(), StoreError>> {
        let (reply, rx) = mpsc::sync_channel(1);
        let rider = Rider { writes, reply };
        match self.waiting.lock() {
            Ok(mut w) => w.push(rider),
            Err(p) => p.into_inner().push(rider),
        }
        rx
    }

    /// Takes every write waiting, in the order they came.
    pub(super) fn take(&self) -> Vec<Rider> {
        match self.waiting.lock() {
            Ok(mut w) => std::mem::take(&mut *w),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        }
    }
}
