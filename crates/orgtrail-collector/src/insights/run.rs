//! The task: feed after each group commit, move the clock on a timer, store the Insight
//! events found, then save the state.

use std::collections::BTreeMap;
use std::sync::Arc;

use orgtrail_core::AccountId;
use orgtrail_store::StoreError;
use tokio::sync::{Notify, watch};

use super::feed::{Feeder, Found};
use super::{RETRY, TICK};
use crate::handover::{Handover, Step};
use crate::ingest::IngestService;

impl Feeder {
    /// Feeds until `stopping`: `stored` is woken after each group commit that stored events;
    /// anything left from before a restart is caught up first, with the detector's clock
    /// first moved to the wall clock ([`Feeder::tick`], resuming). `ingest` stores the
    /// Insight events found. Saves the state when it stops ([`Feeder::flush`]).
    pub(crate) async fn run(
        self,
        ingest: IngestService,
        stored: Arc<Notify>,
        mut stopping: watch::Receiver<bool>,
    ) {
        let me = Arc::new(self);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + TICK, TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut handover = Handover::new(crate::handover::NEAR);
        let mut resuming = true;
        while resuming {
            let m = me.clone();
            let now = now_ms();
            let r = match blocking(move || m.tick(now, true)).await {
                Ok(found) => me.store_and_save(&ingest, found).await,
                Err(e) => Err(e),
            };
            match r {
                Ok(()) => resuming = false,
                Err(e) => me.failed(&e).await,
            }
        }
        loop {
            if *stopping.borrow() {
                return me.stop().await;
            }
            let m = me.clone();
            let step = blocking(move || m.step(handover)).await;
            match step {
                Ok(Step::Done(found)) => {
                    if let Err(e) = me.store_and_save(&ingest, found).await {
                        me.failed(&e).await;
                    }
                    continue;
                }
                Ok(Step::Handover(seq)) => {
                    if !handover.wait(seq, &stored, &mut stopping).await {
                        return me.stop().await;
                    }
                    continue;
                }
                Ok(Step::Idle) => {}
                Err(e) => {
                    me.failed(&e).await;
                    continue;
                }
            }
            tokio::select! {
                () = stored.notified() => {}
                _ = tick.tick() => {
                    let m = me.clone();
                    let now = now_ms();
                    let r = match blocking(move || m.tick(now, false)).await {
                        Ok(found) => me.store_and_save(&ingest, found).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = r {
                        me.failed(&e).await;
                    }
                }
                _ = stopping.changed() => return me.stop().await,
            }
        }
    }

    /// Saves the state as fed (every Insight event found is stored by now).
    async fn stop(self: &Arc<Self>) {
        let m = self.clone();
        if let Err(e) = blocking(move || m.flush()).await {
            tracing::warn!(error = %e, "Insights: saving the state at stop failed; the events since the last save are fed again at the next start");
        }
    }

    /// Stores the Insight events found (durably, each account's as one batch), then saves the
    /// state with the watermark past them.
    async fn store_and_save(
        self: &Arc<Self>,
        ingest: &IngestService,
        found: Found,
    ) -> Result<(), StoreError> {
        let found_any = !found.events.is_empty();
        if found_any {
            let mut by_account: BTreeMap<AccountId, Vec<Vec<u8>>> = BTreeMap::new();
            for (account, json) in found.events {
                by_account.entry(account).or_default().push(json);
            }
            for (account, events) in by_account {
                let n = events.len();
                let ack = crate::ingest::append_own(ingest, account, events)
                    .await
                    .map_err(|s| StoreError::Unavailable {
                        reason: format!("storing Insight events: {}", s.message()),
                    })?;
                tracing::info!(%account, found = n, stored = ack.stored, duplicates = ack.duplicates, "Insight events stored");
            }
        }
        let m = self.clone();
        let through = found.through;
        blocking(move || m.save(through, found_any)).await
    }

    /// Logs a failure, reloads the detector from the store (it may be ahead of what was
    /// stored) and waits before the next try.
    /// Nothing is fed until the reload succeeds.
    async fn failed(self: &Arc<Self>, e: &StoreError) {
        tracing::warn!(error = %e, "Insights: feeding the detector failed; reloading its state and retrying");
        loop {
            tokio::time::sleep(RETRY).await;
            let m = self.clone();
            match blocking(move || m.reload()).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "Insights: reloading the detector's state failed; retrying");
                }
            }
        }
    }
}

/// Runs `f` on a blocking thread; a panic there is a store error.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Unavailable {
            reason: format!("the Insights task failed: {e}"),
        })?
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
