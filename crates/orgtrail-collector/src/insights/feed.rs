//! The detector's side: loading its state, feeding it a range of stored events, moving its
//! clock, and saving it with the watermark. Every function here blocks (the store, the
//! detector's work): async callers use `spawn_blocking`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use orgtrail_core::AccountId;
use orgtrail_insights::{Call, Detector, InsightEvent, InsightsConfig, Stats};
use orgtrail_store::{EventStore, StoreError};

use super::recent::{Kept, Recent};
use super::{RANGE, SAVE_EVERY};
use crate::handover::{Handover, Step};

/// The detector and where it is in the ledger.
pub(crate) struct Fed {
    detector: Detector,
    /// Every stored event at or below it has been fed to `detector`.
    through: u64,
    /// When the state was last saved, and with which watermark.
    saved_at: Instant,
    saved_through: u64,
    /// Stored events past the watermark when it was loaded: stored while no detector was
    /// fed (Insights off, or the collector down).
    behind: bool,
    /// The detector's counters when the metrics were last told.
    told: Stats,
}

/// Feeds the detector; shared by the task's steps (one at a time).
pub(crate) struct Feeder {
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) config: InsightsConfig,
    pub(crate) metrics: Arc<crate::ops::Metrics>,
    /// The calls of events just stored, kept by the ingest service.
    pub(crate) recent: Arc<Recent>,
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
    let (head, _) = store.tree_head()?;
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
        saved_through: through,
        behind: head > through,
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

    /// Feeds the next range of stored events past the watermark: the calls the ingest path
    /// kept ([`super::recent`]), the rest read back from the store, each gap as one range;
    /// events near the head not handed over yet are waited for ([`crate::handover`]).
    pub(crate) fn step(&self, handover: Handover) -> Result<Step<Found>, StoreError> {
        let mut fed = self.lock();
        let (head, _) = self.store.tree_head()?;
        if head <= fed.through {
            return Ok(Step::Idle);
        }
        let (first, mut to) = (fed.through + 1, head.min(fed.through + RANGE));
        if let Some(last) = handover.stop(self.recent.covered(first, to), to, head) {
            if last < first {
                return Ok(Step::Handover(first));
            }
            to = last;
        }
        let kept = self.recent.take(first, to);
        let mut out = Vec::new();
        let mut read_back = 0;
        let mut gap = first;
        for (at, k) in kept {
            read_back += feed_stored(&*self.store, &mut fed.detector, gap, at - 1, &mut out)?;
            gap = match k {
                Kept::Value(r) => {
                    fed.detector
                        .observe(&r.call.call(r.account.as_str()), &mut out);
                    at + 1
                }
                Kept::Pass { last, .. } => last + 1,
            };
        }
        read_back += feed_stored(&*self.store, &mut fed.detector, gap, to, &mut out)?;
        self.metrics.insights_read_back(read_back);
        fed.through = to;
        Ok(Step::Done(Found {
            events: encode(&out)?,
            through: to,
        }))
    }

    /// Moves the detector's clock to the wall clock's minute: once it has seen a call, or
    /// when `resuming` with stored events past the watermark (they were stored while no
    /// detector was fed: those older than the lateness window are late, as they would have
    /// been for a running detector, whose clock the wall clock moves every [`super::TICK`]).
    pub(crate) fn tick(&self, now_ms: i64, resuming: bool) -> Result<Found, StoreError> {
        let mut fed = self.lock();
        let mut out = Vec::new();
        if fed.detector.now().is_some() || (resuming && fed.behind) {
            fed.detector.advance(now_ms.div_euclid(60_000), &mut out);
        }
        fed.behind = false;
        Ok(Found {
            events: encode(&out)?,
            through: fed.through,
        })
    }

    /// Saves the state with the watermark `through` (after the Insight events found up to it
    /// were stored): at once when `found_any`; else once [`SAVE_EVERY`] has passed, if the
    /// watermark moved (a clock moved alone is moved again by the wall clock after a restart).
    /// The metrics are told after the save: an Insight counted in
    /// `orgtrail_collector_insights_started_total` is in the saved state, so a crash after it
    /// is seen there neither finds it again nor loses its End.
    pub(crate) fn save(&self, through: u64, found_any: bool) -> Result<(), StoreError> {
        let mut fed = self.lock();
        let stats = fed.detector.stats();
        if found_any || (through != fed.saved_through && fed.saved_at.elapsed() >= SAVE_EVERY) {
            self.record(&mut fed, through)?;
        }
        self.metrics.insights(&fed.told, &stats, through);
        fed.told = stats;
        Ok(())
    }

    /// Saves the state if the watermark moved since it was last saved: when the collector
    /// stops, so that a restart feeds nothing again. Every Insight event found up to the
    /// watermark must be stored.
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        let mut fed = self.lock();
        if fed.through == fed.saved_through {
            return Ok(());
        }
        let through = fed.through;
        self.record(&mut fed, through)
    }

    fn record(&self, fed: &mut Fed, through: u64) -> Result<(), StoreError> {
        let bytes = fed.detector.to_bytes();
        self.store.record_insights(through, &bytes)?;
        fed.saved_at = Instant::now();
        fed.saved_through = through;
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

/// Feeds `detector` the stored events `from..=to` (none when `from > to`), read back from
/// the store. Returns how many were read.
fn feed_stored(
    store: &dyn EventStore,
    detector: &mut Detector,
    from: u64,
    to: u64,
    out: &mut Vec<InsightEvent>,
) -> Result<u64, StoreError> {
    if from > to {
        return Ok(0);
    }
    let events = store.read_range(from, to)?;
    for e in &events {
        let fields = match orgtrail_core::parse_fields(&e.bytes, orgtrail_core::MAX_EVENT_BYTES) {
            Ok(f) => f,
            Err(err) => {
                // Validated when it arrived; never expected.
                tracing::error!(seq = e.seq, error = %err, "a stored event does not parse; not counted");
                continue;
            }
        };
        if let Some(call) = Call::from_fields(e.account.as_str(), &fields) {
            detector.observe(&call, out);
        }
    }
    Ok(events.len() as u64)
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
pub(super) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use orgtrail_core::CloudTrailEvent;
    use orgtrail_store::{Appended, MemoryStore};

    pub(in crate::insights) const ACCOUNT: &str = "111122223333";

    /// A write call of `ACCOUNT` stamped in `minute`: what the Insights tests feed.
    pub(in crate::insights) fn call(n: u64, minute: i64) -> CloudTrailEvent {
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

    /// One step that never waits for a handover (what is not kept is read back), as the
    /// tests hand over what they keep before stepping; `None` when there is nothing new.
    fn step(f: &Feeder) -> Option<Found> {
        match f.step(Handover::new(0)).unwrap() {
            Step::Done(found) => Some(found),
            Step::Idle => None,
            Step::Handover(seq) => panic!("waited for event {seq}"),
        }
    }

    fn feeder(store: &Arc<MemoryStore>) -> Feeder {
        feeder_of(store.clone())
    }

    fn feeder_of(store: Arc<dyn EventStore>) -> Feeder {
        let config = InsightsConfig {
            enabled: true,
            min_history_ms: 30 * 60_000,
            ..InsightsConfig::default()
        };
        let fed = start(store.as_ref(), &config).unwrap();
        Feeder {
            store,
            config,
            metrics: Arc::default(),
            recent: Arc::new(super::super::recent()),
            fed: Mutex::new(fed),
        }
    }

    const T0: i64 = 29_000_000;

    /// One call every 4 minutes for two hours from minute [`T0`].
    fn baseline() -> Vec<CloudTrailEvent> {
        (0..30).map(|i| call(i, T0 + i as i64 * 4)).collect()
    }

    /// 40 calls in minute `T0 + 125`.
    fn burst() -> Vec<CloudTrailEvent> {
        (0..40).map(|i| call(100 + i, T0 + 125)).collect()
    }

    /// Stores `events`; returns their sequence numbers with them.
    fn store_events(
        store: &dyn EventStore,
        events: Vec<CloudTrailEvent>,
    ) -> Vec<(u64, CloudTrailEvent)> {
        let account: AccountId = ACCOUNT.parse().unwrap();
        let evs: Vec<_> = events.into_iter().map(|e| (e, account)).collect();
        let out = store.append_events(&evs).unwrap();
        out.results
            .iter()
            .zip(evs)
            .map(|(r, (e, _))| match r {
                Appended::Stored(seq) => (*seq, e),
                other => panic!("not stored: {other:?}"),
            })
            .collect()
    }

    /// The baseline, then the burst: what a step finds.
    fn traffic(store: &dyn EventStore) -> Vec<(u64, CloudTrailEvent)> {
        let mut evs = baseline();
        evs.extend(burst());
        store_events(store, evs)
    }

    /// What the ingest service keeps of `stored` for the feeder.
    fn keep(f: &Feeder, stored: &[(u64, CloudTrailEvent)]) {
        let account: AccountId = ACCOUNT.parse().unwrap();
        f.recent.add(
            stored
                .iter()
                .map(|(seq, e)| (*seq, super::super::recent::entry(account, e.fields())))
                .collect(),
        );
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
        traffic(store.as_ref());
        let f = feeder(&store);
        assert!(step(&f).is_none(), "past everything stored");
        assert_eq!(store.insights_state().unwrap().unwrap().through, 70);
    }

    /// Killed after a step found a Start but before it was stored, or after it was stored but
    /// before the state was saved: the restarted feeder finds the same event (same bytes,
    /// same id) and the ledger keeps one copy; once saved, nothing is found again.
    #[test]
    fn a_crash_at_any_point_neither_loses_nor_doubles_an_insight() {
        let store = Arc::new(MemoryStore::new());
        let f = feeder(&store);
        traffic(store.as_ref());
        let first = step(&f).unwrap();
        assert_eq!(first.events.len(), 1, "one Start");
        assert_eq!(first.through, 70);
        drop(f); // killed before storing it

        let f = feeder(&store);
        let again = step(&f).unwrap();
        assert_eq!(again.events, first.events, "found again, the same bytes");
        assert!(matches!(
            store_found(&store, &again)[..],
            [Appended::Stored(71)]
        ));
        drop(f); // killed before saving the state

        let f = feeder(&store);
        let third = step(&f).unwrap();
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
        assert!(step(&f).is_none(), "nothing is fed again");
        assert_eq!(store.stats().events, 71, "one Insight event stored, once");
    }

    /// An open Insight ends by the wall clock alone, with its Start's sharedEventID; a
    /// detector that has seen no call does not move its clock (older events must not all be
    /// late).
    #[test]
    fn the_clock_ends_an_insight_during_silence() {
        let store = Arc::new(MemoryStore::new());
        let f = feeder(&store);
        assert!(
            f.tick(29_000_000 * 60_000, false)
                .unwrap()
                .events
                .is_empty()
        );
        traffic(store.as_ref());
        let start = step(&f).unwrap();
        assert_eq!(start.events.len(), 1);
        let end = f.tick((29_000_000 + 125 + 10) * 60_000, false).unwrap();
        assert_eq!(end.events.len(), 1, "the End");
        let json = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).unwrap();
        let (s, e) = (json(&start.events[0].1), json(&end.events[0].1));
        assert_eq!(s["insightDetails"]["state"], "Start");
        assert_eq!(e["insightDetails"]["state"], "End");
        assert_eq!(s["sharedEventID"], e["sharedEventID"]);
    }

    /// The calls kept by the ingest path, with gaps (a full cache, events of another path)
    /// read back from the store, feed the detector exactly as reading everything back does:
    /// the same Insight events, byte for byte, and the same state.
    #[test]
    fn kept_calls_and_events_read_back_find_the_same_insights() {
        let (kept, read) = (Arc::new(MemoryStore::new()), Arc::new(MemoryStore::new()));
        let (fk, fr) = (feeder(&kept), feeder(&read));
        let stored = traffic(kept.as_ref());
        traffic(read.as_ref());
        // Kept: the first 20, then 36..=70 (15 not kept, as when the cache is full).
        keep(&fk, &stored[..20]);
        keep(&fk, &stored[35..]);
        let (a, b) = (step(&fk).unwrap(), step(&fr).unwrap());
        assert_eq!(a.events.len(), 1, "one Start");
        assert_eq!(a.events, b.events);
        assert_eq!(a.through, b.through);
        assert_eq!(fk.metrics.insights_read_back_total(), 15);
        assert_eq!(fr.metrics.insights_read_back_total(), 70);
        assert_eq!(fk.lock().detector.to_bytes(), fr.lock().detector.to_bytes());

        // The Start stored in each; then one more call: kept (an Insight event is passed
        // over) against read back, the same again.
        let (sk, sr) = (store_found(&kept, &a), store_found(&read, &b));
        assert_eq!(sk, sr);
        let more = store_events(kept.as_ref(), vec![call(500, T0 + 126)]);
        store_events(read.as_ref(), vec![call(500, T0 + 126)]);
        let insight = kept.read_range(71, 71).unwrap();
        let insight = CloudTrailEvent::parse(insight[0].bytes.clone()).unwrap();
        keep(&fk, &[(71, insight)]);
        keep(&fk, &more);
        let (a, b) = (step(&fk).unwrap(), step(&fr).unwrap());
        assert_eq!((a.through, b.through), (72, 72));
        assert_eq!(
            fk.metrics.insights_read_back_total(),
            15,
            "nothing read back"
        );
        assert_eq!(fk.lock().detector.to_bytes(), fr.lock().detector.to_bytes());
    }

    /// Fed from what the ingest path kept, on a ledger on disk: the Insight found is stored
    /// sealed, and neither it nor the state leaves the calls' plaintext in any file.
    #[test]
    fn no_plaintext_of_the_kept_calls_lands_on_disk() {
        let keys = orgtrail_crypto::Keyring::generate("2026-11-27T00:00:00Z").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ledger = orgtrail_store::Ledger::open(
            dir.path(),
            Arc::new(orgtrail_crypto::LocalKeyProvider::new(keys)),
            orgtrail_store::LedgerConfig::default(),
        )
        .unwrap();
        let store: Arc<dyn EventStore> = Arc::new(ledger);
        let f = feeder_of(store.clone());
        let stored = traffic(store.as_ref());
        keep(&f, &stored);
        let found = step(&f).unwrap();
        assert_eq!(found.events.len(), 1, "one Start");
        assert_eq!(f.metrics.insights_read_back_total(), 0);
        let evs: Vec<_> = found
            .events
            .iter()
            .map(|(a, json)| (CloudTrailEvent::parse(json.clone()).unwrap(), *a))
            .collect();
        store.append_events(&evs).unwrap();
        f.save(found.through, true).unwrap();
        drop(f);
        store.close().unwrap();
        drop(store);
        let marker = b"arn:aws:iam::111122223333:user/u";
        let mut files = vec![dir.path().to_path_buf()];
        let mut seen = 0;
        while let Some(p) = files.pop() {
            if p.is_dir() {
                files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            let bytes = std::fs::read(&p).unwrap();
            seen += 1;
            assert!(
                !bytes.windows(marker.len()).any(|w| w == marker),
                "plaintext in {}",
                p.display()
            );
        }
        assert!(seen > 0, "the ledger wrote files");
    }

    /// Turned off, then on again: the calls stored meanwhile (a burst included) are older
    /// than the lateness window when the detector resumes with its clock moved to the wall
    /// clock, so they fire nothing for that past period. Without that move they would.
    #[test]
    fn events_stored_while_insights_were_off_fire_nothing_when_turned_on_again() {
        let store = Arc::new(MemoryStore::new());
        let f = feeder(&store);
        store_events(store.as_ref(), baseline());
        let fed = step(&f).unwrap();
        assert!(fed.events.is_empty());
        f.save(fed.through, true).unwrap();
        drop(f); // off

        store_events(store.as_ref(), burst());
        // On again, an hour after the burst.
        let f = feeder(&store);
        let resumed = f.tick((T0 + 185) * 60_000, true).unwrap();
        assert!(resumed.events.is_empty());
        let fed = step(&f).unwrap();
        assert!(fed.events.is_empty(), "no Insight for the past period");
        assert_eq!(f.lock().detector.stats().late_events, 40);
        drop(f);

        // The same stored state fed through its old clock finds the burst.
        let f = feeder(&store);
        assert_eq!(step(&f).unwrap().events.len(), 1);
        drop(f);
        // On again within the lateness window of the burst (a quick restart): found too.
        let f = feeder(&store);
        assert!(f.tick((T0 + 125) * 60_000, true).unwrap().events.is_empty());
        assert_eq!(step(&f).unwrap().events.len(), 1);
    }
}
