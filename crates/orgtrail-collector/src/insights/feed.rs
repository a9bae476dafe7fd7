//! The detector's side: loading its state, feeding it a range of stored events, moving its
//! clock, and saving it with the watermark. Every function here blocks (the store, the
//! detector's work): async callers use `spawn_blocking`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use orgtrail_core::AccountId;
use orgtrail_insights::{Call, Detector, InsightEvent, InsightsConfig, Stats};
use orgtrail_store::{EventStore, StoreError};

use super::{RANGE, SAVE_EVERY};

/// The detector and where it is in the ledger.
pub(crate) struct Fed {
    detector: Detector,
    /// Every stored event at or below it has been fed to `detector`.
    through: u64,
    /// When the state was last saved.
    saved_at: Instant,
    /// The detector's counters when the metrics were last told.
    told: Stats,
}

/// Feeds the detector; shared by the task's steps (one at a time).
pub(crate) struct Feeder {
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) config: InsightsConfig,
    pub(crate) metrics: Arc<crate::ops::Metrics>,
    pub(crate) fed: Mutex<Fed>,
}

/// Insight events found, by account, in the order found; and the watermark to save with the
/// state once they are stored.
pub(crate) struct Found {
    pub(crate) events: Vec<(AccountId, Vec<u8>)>,
    pub(crate) through: u64,
}

/// The detector as the store last recorded it, or (the first time Insights are on for this
/// store) a new one whose watermark is past everything already stored, recorded at once.
/// Called before the collector takes events.
pub(crate) fn start(store: &dyn EventStore, config: &InsightsConfig) -> Result<Fed, StoreError> {
    let (detector, through) = match store.insights_state()? {
        Some(s) => {
            let d = Detector::from_bytes(config.clone(), &s.state).map_err(|e| {
                StoreError::Corrupt(format!("the Insights state does not load: {e}"))
            })?;
            tracing::info!(
                through = s.through,
                tracked_keys = d.stats().tracked_keys,
                open = d.open_insights(),
                "Insights resume from the stored state"
            );
            (d, s.through)
        }
        None => {
            let d = Detector::try_new(config.clone())
                .map_err(|e| StoreError::Invalid(e.to_string()))?;
            let (head, _) = store.tree_head()?;
            store.record_insights(head, &d.to_bytes())?;
            tracing::info!(
                through = head,
                "Insights are on for the first time: events stored from now on are watched"
            );
            (d, head)
        }
    };
    let told = detector.stats();
    Ok(Fed {
        detector,
        through,
        saved_at: Instant::now(),
        told,
    })
}

impl Feeder {
    fn lock(&self) -> MutexGuard<'_, Fed> {
        // A panic while feeding leaves a detector that may be ahead of the store: the caller
        // reloads it ([`Feeder::reload`]) after any failure.
        self.fed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Feeds the next range of stored events past the watermark. `None` when there is none.
    pub(crate) fn step(&self) -> Result<Option<Found>, StoreError> {
        let mut fed = self.lock();
        let (head, _) = self.store.tree_head()?;
        if head <= fed.through {
            return Ok(None);
        }
        let to = head.min(fed.through + RANGE);
        let events = self.store.read_range(fed.through + 1, to)?;
        let mut out = Vec::new();
        for e in &events {
            let fields = match orgtrail_core::parse_fields(&e.bytes, orgtrail_core::MAX_EVENT_BYTES)
            {
                Ok(f) => f,
                Err(err) => {
                    // Validated when it arrived; never expected.
                    tracing::error!(seq = e.seq, error = %err, "a stored event does not parse; not counted");
                    continue;
                }
            };
            let account = e.account.to_string();
            if let Some(call) = Call::from_fields(&account, &fields) {
                fed.detector.observe(&call, &mut out);
            }
        }
        fed.through = to;
        Ok(Some(Found {
            events: encode(&out)?,
            through: to,
        }))
    }

    /// Moves the detector's clock to the wall clock's minute (once it has seen a call).
    pub(crate) fn tick(&self, now_ms: i64) -> Result<Found, StoreError> {
        let mut fed = self.lock();
        let mut out = Vec::new();
        if fed.detector.now().is_some() {
            fed.detector.advance(now_ms.div_euclid(60_000), &mut out);
        }
        Ok(Found {
            events: encode(&out)?,
            through: fed.through,
        })
    }

    /// Saves the state with the watermark `through` (after the Insight events found up to it
    /// were stored): at once when `found_any`, else once [`SAVE_EVERY`] has passed.
    pub(crate) fn save(&self, through: u64, found_any: bool) -> Result<(), StoreError> {
        let mut fed = self.lock();
        let stats = fed.detector.stats();
        self.metrics.insights(&fed.told, &stats, through);
        fed.told = stats;
        if !found_any && fed.saved_at.elapsed() < SAVE_EVERY {
            return Ok(());
        }
        let bytes = fed.detector.to_bytes();
        self.store.record_insights(through, &bytes)?;
        fed.saved_at = Instant::now();
        Ok(())
    }

    /// Reloads the detector from the store's state: after a failure, the detector in memory
    /// may have fed events whose Insights were not stored.
    pub(crate) fn reload(&self) -> Result<(), StoreError> {
        let fresh = start(self.store.as_ref(), &self.config)?;
        let mut fed = self.lock();
        let told = fed.told;
        *fed = Fed { told, ..fresh };
        Ok(())
    }
}

/// The events' JSON with their accounts.
fn encode(out: &[InsightEvent]) -> Result<Vec<(AccountId, Vec<u8>)>, StoreError> {
    out.iter()
        .map(|e| {
            let account = e.account().parse::<AccountId>().map_err(|_| {
                StoreError::Invalid("an Insight event's account is not an account id".into())
            })?;
            Ok((account, e.to_json()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use orgtrail_core::CloudTrailEvent;
    use orgtrail_store::{Appended, MemoryStore};

    const ACCOUNT: &str = "111122223333";

    fn call(n: u64, minute: i64) -> CloudTrailEvent {
        let json = serde_json::json!({
            "eventVersion": "1.09",
            "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/u"},
            "eventTime": orgtrail_core::Timestamp::from_unix_secs(minute * 60).to_string(),
            "eventSource": "iam.amazonaws.com",
            "eventName": "CreateUser",
            "awsRegion": "us-east-1",
            "eventID": format!("00000000-0000-4000-8000-{n:012}"),
            "eventType": "AwsApiCall",
            "readOnly": false,
            "managementEvent": true,
            "eventCategory": "Management",
            "recipientAccountId": ACCOUNT,
        });
        CloudTrailEvent::parse(json.to_string()).unwrap()
    }

    fn feeder(store: &Arc<MemoryStore>) -> Feeder {
        let config = InsightsConfig {
            enabled: true,
            min_history_ms: 30 * 60_000,
            ..InsightsConfig::default()
        };
        let fed = start(store.as_ref(), &config).unwrap();
        Feeder {
            store: store.clone(),
            config,
            metrics: Arc::default(),
            fed: Mutex::new(fed),
        }
    }

    /// One call every 4 minutes for two hours, then 40 in one minute: what a step finds.
    fn traffic(store: &MemoryStore) {
        let account: AccountId = ACCOUNT.parse().unwrap();
        let t0 = 29_000_000;
        let mut evs: Vec<_> = (0..30)
            .map(|i| (call(i, t0 + i as i64 * 4), account))
            .collect();
        evs.extend((0..40).map(|i| (call(100 + i, t0 + 125), account)));
        store.append_events(&evs).unwrap();
    }

    fn store_found(store: &MemoryStore, found: &Found) -> Vec<Appended> {
        let evs: Vec<_> = found
            .events
            .iter()
            .map(|(a, json)| (CloudTrailEvent::parse(json.clone()).unwrap(), *a))
            .collect();
        store.append_events(&evs).unwrap().results
    }

    #[test]
    fn history_is_not_replayed_on_the_first_start() {
        let store = Arc::new(MemoryStore::new());
        traffic(&store);
        let f = feeder(&store);
        assert!(f.step().unwrap().is_none(), "past everything stored");
        assert_eq!(store.insights_state().unwrap().unwrap().through, 70);
    }

    /// Killed after a step found a Start but before it was stored, or after it was stored but
    /// before the state was saved: the restarted feeder finds the same event (same bytes,
    /// same id) and the ledger keeps one copy; once saved, nothing is found again.
    #[test]
    fn a_crash_at_any_point_neither_loses_nor_doubles_an_insight() {
        let store = Arc::new(MemoryStore::new());
        let f = feeder(&store);
        traffic(&store);
        let first = f.step().unwrap().unwrap();
        assert_eq!(first.events.len(), 1, "one Start");
        assert_eq!(first.through, 70);
        drop(f); // killed before storing it

        let f = feeder(&store);
        let again = f.step().unwrap().unwrap();
        assert_eq!(again.events, first.events, "found again, the same bytes");
        assert!(matches!(
            store_found(&store, &again)[..],
            [Appended::Stored(71)]
        ));
        drop(f); // killed before saving the state

        let f = feeder(&store);
        let third = f.step().unwrap().unwrap();
        assert_eq!(third.events, first.events);
        assert!(
            matches!(store_found(&store, &third)[..], [Appended::Duplicate(71)]),
            "the ledger keeps one copy"
        );
        // That step fed the stored Insight event too (counted as nothing).
        assert_eq!(third.through, 71);
        f.save(third.through, true).unwrap();
        drop(f);

        let f = feeder(&store);
        assert!(f.step().unwrap().is_none(), "nothing is fed again");
        assert_eq!(store.stats().events, 71, "one Insight event stored, once");
    }

    /// An open Insight ends by the wall clock alone, with its Start's sharedEventID; a
    /// detector that has seen no call does not move its clock (older events must not all be
    /// late).
    #[test]
    fn the_clock_ends_an_insight_during_silence() {
        let store = Arc::new(MemoryStore::new());
        let f = feeder(&store);
        assert!(f.tick(29_000_000 * 60_000).unwrap().events.is_empty());
        traffic(&store);
        let start = f.step().unwrap().unwrap();
        assert_eq!(start.events.len(), 1);
        let end = f.tick((29_000_000 + 125 + 10) * 60_000).unwrap();
        assert_eq!(end.events.len(), 1, "the End");
        let json = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).unwrap();
        let (s, e) = (json(&start.events[0].1), json(&end.events[0].1));
        assert_eq!(s["insightDetails"]["state"], "Start");
        assert_eq!(e["insightDetails"]["state"], "End");
        assert_eq!(s["sharedEventID"], e["sharedEventID"]);
    }
}
