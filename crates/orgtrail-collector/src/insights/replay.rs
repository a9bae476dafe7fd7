//! Replaying stored events through a fresh detector: `orgtrail insights replay --since T`,
//! offline ([`replay_since`], called by the CLI on a store on disk) or against a running
//! collector as an admin ([`InsightsService`], the `Insights.Replay` RPC). One function finds
//! the Insights for both; each then stores them its own way (offline through the CLI's import
//! path, online through the ingest path, [`crate::ingest::append_own`]).
//!
//! # Invariants
//! - **The live detector is untouched.** A replay builds its own detector from the same
//!   `[insights]` configuration; the live one's state and watermark are neither read nor
//!   written (the replay never calls [`orgtrail_store::EventStore::record_insights`]).
//! - **Idempotent.** The eventIDs of Insight events are derived from their key, first minute
//!   and state (Start, End); the same events fed to a fresh detector find the same events
//!   with the same ids, and the ledger's (account, eventID) dedup stores them once. A rerun
//!   stores nothing new. (Insight events are not calls: feeding the ones a first run stored
//!   changes nothing.)
//! - **Bounded.** Stored events are read [`RANGE`] at a time through
//!   [`orgtrail_store::EventStore::read_range`], never all at once; memory holds one range,
//!   the detector (capped by its `max_tracked_keys`) and the Insight events found.
//! - **Off the runtime.** The scan blocks (the store, the detector): the service runs it in
//!   `spawn_blocking`. One replay runs at a time; another is refused while it does.
//! - Only the events stored when the replay starts are read (up to the head it sees then).

use std::collections::BTreeMap;
use std::sync::Arc;

use orgtrail_core::AccountId;
use orgtrail_insights::{Call, Detector, InsightsConfig};
use orgtrail_proto::v1 as pb;
use orgtrail_proto::v1::insights_server::Insights as InsightsApi;
use orgtrail_store::{EventStore, StoreError};
use tonic::{Request, Response, Status};

use super::RANGE;
use crate::auth::Authorizer;
use crate::ingest::IngestService;

/// What a replay found.
#[derive(Debug, Default)]
pub struct Replayed {
    /// Stored events read (all of `1..=through`, also those stamped before the start).
    pub read: u64,
    /// Events fed to the detector (stamped at or after the start, and calls it watches).
    pub fed: u64,
    /// The last seq read: the store's head when the replay began.
    pub through: u64,
    /// The Insight events found, each with its account, as JSON, in the order found.
    pub events: Vec<(AccountId, Vec<u8>)>,
}

/// Feeds every stored event stamped at or after `since_ms`, in sequence order (the order the
/// collector feeds them), through a fresh detector with `config` (its `enabled` is taken as
/// on: replay is asked for); at the end the detector's clock is moved to `now_ms`, so that
/// Insights back within bounds since are ended. Returns the Insight events found; stores
/// nothing. Blocking: async callers use `spawn_blocking`.
pub fn replay_since(
    store: &dyn EventStore,
    mut config: InsightsConfig,
    since_ms: i64,
    now_ms: i64,
) -> Result<Replayed, StoreError> {
    config.enabled = true;
    let mut detector = Detector::try_new(config).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let (head, _) = store.tree_head()?;
    let mut found = Vec::new();
    let mut out = Replayed {
        through: head,
        ..Replayed::default()
    };
    let mut first = 1;
    while first <= head {
        let last = head.min(first + RANGE - 1);
        for e in store.read_range(first, last)? {
            out.read += 1;
            if e.time.millis() < since_ms {
                continue;
            }
            let fields = match orgtrail_core::parse_fields(&e.bytes, orgtrail_core::MAX_EVENT_BYTES)
            {
                Ok(f) => f,
                Err(err) => {
                    // Validated when it arrived; never expected.
                    tracing::error!(seq = e.seq, error = %err, "a stored event does not parse; not replayed");
                    continue;
                }
            };
            let account = e.account.to_string();
            if let Some(call) = Call::from_fields(&account, &fields) {
                detector.observe(&call, &mut found);
                out.fed += 1;
            }
        }
        first = last + 1;
    }
    if detector.now().is_some() {
        detector.advance(now_ms.div_euclid(60_000), &mut found);
    }
    out.events = found
        .iter()
        .map(|f| {
            let account = f.account().parse::<AccountId>().map_err(|_| {
                StoreError::Invalid("an Insight event's account is not an account id".into())
            })?;
            Ok((account, f.to_json()))
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(out)
}

/// The gRPC Insights service: `Replay`, for admin certificates only.
#[derive(Debug, Clone)]
pub(crate) struct InsightsService {
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) auth: Arc<Authorizer>,
    /// The collector's `[insights]` configuration (the replay's detector is tuned as the live
    /// one, whether or not that one is on).
    pub(crate) config: InsightsConfig,
    /// Stores the Insight events found, as the live detector's are stored.
    pub(crate) ingest: IngestService,
    /// Held while a replay runs: one at a time.
    pub(crate) running: Arc<tokio::sync::Semaphore>,
}

impl InsightsService {
    pub(crate) fn new(
        store: Arc<dyn EventStore>,
        auth: Arc<Authorizer>,
        config: InsightsConfig,
        ingest: IngestService,
    ) -> Self {
        InsightsService {
            store,
            auth,
            config,
            ingest,
            running: Arc::new(tokio::sync::Semaphore::new(1)),
        }
    }
}

#[tonic::async_trait]
impl InsightsApi for InsightsService {
    async fn replay(
        &self,
        request: Request<pb::ReplayRequest>,
    ) -> Result<Response<pb::ReplayResponse>, Status> {
        let certs: Option<Vec<Vec<u8>>> = request
            .peer_certs()
            .map(|c| c.iter().map(|d| d.as_ref().to_vec()).collect());
        let admin = self
            .auth
            .admin(certs.as_deref(), "insights replay", "replay Insights")?;
        let since_ms = request.into_inner().since_ms;
        let Ok(permit) = self.running.clone().try_acquire_owned() else {
            return Err(Status::aborted(
                "an Insights replay is already running on this collector; try again once it ends",
            ));
        };
        tracing::info!(admin = %admin.name, since_ms, "Insights replay started");
        let store = self.store.clone();
        let config = self.config.clone();
        let now = now_ms();
        // The scan holds the permit: a caller that hangs up does not stop it, and no other
        // replay starts before it ends.
        let (found, _permit) = crate::status::blocking("insights replay", move || {
            replay_since(store.as_ref(), config, since_ms, now).map(|f| (f, permit))
        })
        .await?;
        let n = found.events.len() as u64;
        let mut by_account: BTreeMap<AccountId, Vec<Vec<u8>>> = BTreeMap::new();
        for (account, json) in found.events {
            by_account.entry(account).or_default().push(json);
        }
        let (mut stored, mut duplicates, mut conflicts) = (0u64, 0u64, 0u64);
        let batch = self.ingest.limits.max_batch_events.max(1);
        for (account, events) in by_account {
            for chunk in events.chunks(batch) {
                let ack = crate::ingest::append_own(&self.ingest, account, chunk.to_vec()).await?;
                stored += u64::from(ack.stored);
                duplicates += u64::from(ack.duplicates);
                conflicts += u64::from(ack.conflicts);
            }
        }
        tracing::info!(
            admin = %admin.name,
            read = found.read,
            fed = found.fed,
            found = n,
            stored,
            duplicates,
            conflicts,
            through = found.through,
            "Insights replay done"
        );
        Ok(Response::new(pb::ReplayResponse {
            read_events: found.read,
            fed: found.fed,
            found: n,
            stored,
            duplicates,
            through_seq: found.through,
            conflicts,
        }))
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use orgtrail_core::CloudTrailEvent;
    use orgtrail_store::MemoryStore;

    use crate::insights::feed::tests::ACCOUNT;

    fn call(n: u64, minute: i64) -> (CloudTrailEvent, AccountId) {
        (
            crate::insights::feed::tests::call(n, minute),
            ACCOUNT.parse().unwrap(),
        )
    }

    fn config() -> InsightsConfig {
        InsightsConfig {
            min_history_ms: 30 * 60_000,
            ..InsightsConfig::default()
        }
    }

    /// Two hours of one call every 4 minutes, then 40 in one minute (minute 29,000,125).
    fn traffic(store: &MemoryStore) {
        let t0 = 29_000_000;
        let mut evs: Vec<_> = (0..30).map(|i| call(i, t0 + i as i64 * 4)).collect();
        evs.extend((0..40).map(|i| call(100 + i, t0 + 125)));
        store.append_events(&evs).unwrap();
    }

    /// A replay finds the burst's Start and (its clock moved to now) End, with the same bytes
    /// each time (so the ledger's dedup keeps one copy of a rerun), feeds only the events
    /// stamped since the start, and neither reads nor writes the live detector's state.
    #[test]
    fn a_replay_finds_the_same_insights_each_time_and_leaves_the_live_state_alone() {
        let store = MemoryStore::new();
        let live = b"the live detector's state";
        store.record_insights(3, live).unwrap();
        traffic(&store);
        let now = (29_000_000 + 200) * 60_000;
        let first = replay_since(&store, config(), 0, now).unwrap();
        assert_eq!((first.read, first.fed, first.through), (70, 70, 70));
        let states: Vec<String> = first
            .events
            .iter()
            .map(|(a, json)| {
                assert_eq!(a.as_str(), ACCOUNT);
                let v: serde_json::Value = serde_json::from_slice(json).unwrap();
                v["insightDetails"]["state"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(states, ["Start", "End"]);
        let again = replay_since(&store, config(), 0, now).unwrap();
        assert_eq!(again.events, first.events, "the same events, byte for byte");
        let state = store.insights_state().unwrap().unwrap();
        assert_eq!((state.through, &state.state[..]), (3, &live[..]));

        // Since the burst's minute: the baseline is not fed, and without one nothing fires.
        let late = replay_since(&store, config(), (29_000_000 + 125) * 60_000, now).unwrap();
        assert_eq!((late.read, late.fed), (70, 40));
        assert!(late.events.is_empty());
    }
}
