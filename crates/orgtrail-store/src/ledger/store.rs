//! The ledger as an [`EventStore`]: each method calls the ledger's own (see `mod.rs`,
//! `records`, `proofs`). Prepared events carry the instance of the ledger that prepared them
//! (their blind values and dictionary are that store's), and an append refuses any other.

use orgtrail_core::{AccountId, CloudTrailEvent};
use orgtrail_crypto::merkle::Hash;

use super::{AppendOutcome, Health, Ledger, Preparer, Stats};
use crate::error::StoreError;
use crate::query::{Counts, Group, Page, Query, StoredEvent};
use crate::{AppendFuture, EventPreparer, EventStore, PreparedEvent, PreparedKind};

/// A ledger's [`Preparer`] behind [`EventPreparer`].
#[derive(Debug)]
struct LedgerPreparer {
    instance: u64,
    inner: Preparer,
}

impl EventPreparer for LedgerPreparer {
    fn prepare(
        &mut self,
        event: &CloudTrailEvent,
        account: AccountId,
    ) -> Result<PreparedEvent, StoreError> {
        Ok(PreparedEvent(PreparedKind::Ledger {
            store: self.instance,
            event: self.inner.prepare(event, account)?,
        }))
    }

    fn prepare_batch(
        &mut self,
        events: &[(CloudTrailEvent, AccountId)],
    ) -> Result<Vec<PreparedEvent>, StoreError> {
        let instance = self.instance;
        Ok(self
            .inner
            .prepare_batch(events)?
            .into_iter()
            .map(|event| {
                PreparedEvent(PreparedKind::Ledger {
                    store: instance,
                    event,
                })
            })
            .collect())
    }
}

impl EventStore for Ledger {
    fn append_events(
        &self,
        events: &[(CloudTrailEvent, AccountId)],
    ) -> Result<AppendOutcome, StoreError> {
        let prepared = self.preparer().prepare_batch(events)?;
        self.append_blocking(prepared)
    }

    fn preparing_append(&self) -> crate::Preparing {
        self.shared.riders.preparing()
    }

    fn preparer(&self) -> Box<dyn EventPreparer> {
        Box::new(LedgerPreparer {
            instance: self.shared.instance,
            inner: Ledger::preparer(self),
        })
    }

    fn append_prepared(&self, events: Vec<PreparedEvent>) -> AppendFuture<'_> {
        let instance = self.shared.instance;
        let prepared = events
            .into_iter()
            .map(|PreparedEvent(kind)| match kind {
                PreparedKind::Ledger { store, event } if store == instance => Ok(event),
                _ => Err(StoreError::Unavailable {
                    reason: "events were prepared for another store; prepare them again".into(),
                }),
            })
            .collect::<Result<Vec<_>, _>>();
        Box::pin(async move { self.append(prepared?).await })
    }

    fn query(&self, q: &Query) -> Result<Page, StoreError> {
        Ledger::query(self, q)
    }

    fn count(&self, q: &Query, by: &[Group], max_groups: usize) -> Result<Counts, StoreError> {
        Ledger::count(self, q, by, max_groups)
    }

    fn count_at_most(
        &self,
        q: &Query,
        by: &[Group],
        max_groups: usize,
        max_events: usize,
    ) -> Result<Counts, StoreError> {
        Ledger::count_at_most(self, q, by, max_groups, max_events)
    }

    fn get(&self, account: &AccountId, event_id: &str) -> Result<Option<StoredEvent>, StoreError> {
        Ledger::get(self, account, event_id)
    }

    fn read(&self, seq: u64) -> Result<StoredEvent, StoreError> {
        Ledger::read(self, seq)
    }

    fn read_range(&self, first: u64, last: u64) -> Result<Vec<StoredEvent>, StoreError> {
        Ledger::read_range(self, first, last)
    }

    fn stats(&self) -> Stats {
        Ledger::stats(self)
    }

    fn health(&self) -> Health {
        Ledger::health(self)
    }

    fn writer_stats(&self) -> super::WriterStats {
        Ledger::writer_stats(self)
    }

    fn disk_bytes(&self) -> Result<u64, StoreError> {
        Ledger::disk_bytes(self)
    }

    fn origin(&self) -> &str {
        Ledger::origin(self)
    }

    fn tree_head(&self) -> Result<(u64, Hash), StoreError> {
        Ledger::tree_head(self)
    }

    fn root_at(&self, size: u64) -> Result<Hash, StoreError> {
        Ledger::root_at(self, size)
    }

    fn inclusion_proof(&self, seq: u64, size: u64) -> Result<Vec<Hash>, StoreError> {
        Ledger::inclusion_proof(self, seq, size)
    }

    fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, StoreError> {
        Ledger::consistency_proof(self, first, second)
    }

    fn leaves(&self, first: u64, count: u64) -> Result<Vec<Hash>, StoreError> {
        Ledger::leaves(self, first, count)
    }

    fn checkpoints_between(
        &self,
        from: u64,
        to: u64,
        limit: usize,
        newest_first: bool,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        Ledger::checkpoints_between(self, from, to, limit, newest_first)
    }

    fn checkpoint_now(&self) -> Result<Option<(u64, String)>, StoreError> {
        Ledger::checkpoint_now_blocking(self)
    }

    fn close(&self) -> Result<(), StoreError> {
        Ledger::close(self)
    }

    fn alerts_through(&self) -> Result<Option<u64>, StoreError> {
        crate::outbox::watermark(&self.shared.tree()?)
    }

    fn record_alerts(
        &self,
        through: u64,
        alerts: &[crate::PendingAlert],
    ) -> Result<(), StoreError> {
        self.shared.check_space()?;
        let files = self.shared.files()?;
        crate::outbox::record(&files.tree, through, alerts, |b| {
            self.write_with_next_commit(b)
        })
    }

    fn pending_alerts(&self, limit: usize) -> Result<Vec<crate::PendingAlert>, StoreError> {
        crate::outbox::pending(&self.shared.tree()?, limit)
    }

    fn alerts_delivered(&self, sink: &str, taken: &[(u64, String)]) -> Result<(), StoreError> {
        let files = self.shared.files()?;
        crate::outbox::delivered(&files.db, &files.tree, sink, taken)
    }

    fn alerts_taken(&self, sink: &str, taken: &[crate::PendingAlert]) -> Result<(), StoreError> {
        let files = self.shared.files()?;
        crate::outbox::taken(&files.tree, sink, taken, |b| self.write_with_next_commit(b))
    }

    fn pending_alerts_after(
        &self,
        after: Option<(u64, &str)>,
        limit: usize,
    ) -> Result<Vec<crate::PendingAlert>, StoreError> {
        crate::outbox::pending_after(&self.shared.tree()?, after, limit)
    }

    fn dead_letter_alert(&self, letter: &crate::DeadLetter) -> Result<bool, StoreError> {
        let files = self.shared.files()?;
        crate::outbox::dead_letter(&files.db, &files.tree, letter)
    }

    fn dead_letters(&self, limit: usize) -> Result<Vec<crate::DeadLetter>, StoreError> {
        crate::outbox::dead_letters(&self.shared.tree()?, limit)
    }

    fn retry_dead_letters(&self, sink: Option<&str>) -> Result<Vec<crate::DeadLetter>, StoreError> {
        let files = self.shared.files()?;
        crate::outbox::retry_dead(&files.db, &files.tree, sink)
    }

    fn alert_history(
        &self,
        from: Option<(u64, &str)>,
        limit: usize,
        newest_first: bool,
    ) -> Result<Vec<crate::AlertRef>, StoreError> {
        crate::alertlog::read(&self.shared.tree()?, from, limit, newest_first)
    }

    fn record_alerts_with_windows(
        &self,
        through: u64,
        alerts: &[crate::PendingAlert],
        windows: &crate::WindowChanges,
    ) -> Result<(), StoreError> {
        self.shared.check_space()?;
        let files = self.shared.files()?;
        crate::outbox::record_with_windows(&files.tree, through, alerts, windows, |b| {
            self.write_with_next_commit(b)
        })
    }

    fn threshold_windows(&self) -> Result<Vec<(String, u64)>, StoreError> {
        crate::outbox::windows(&self.shared.tree()?)
    }

    fn insights_state(&self) -> Result<Option<crate::InsightsState>, StoreError> {
        crate::insights::read(self.shared.provider.as_ref(), &self.shared.tree()?)
    }

    fn record_insights(&self, through: u64, state: &[u8]) -> Result<(), StoreError> {
        self.shared.check_space()?;
        let files = self.shared.files()?;
        crate::insights::record(
            self.shared.provider.as_ref(),
            &files.db,
            &files.tree,
            through,
            state,
        )
    }
}
