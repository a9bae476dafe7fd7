//! The state survives a restart in the middle of an Insight: the End still comes, with the
//! Start's sharedEventID, exactly as without the restart; replays give the same ids; the
//! number of keys stays bounded.

mod common;

use common::{Feed, MONDAY, Rng, Spec, enabled};
use orgtrail_insights::{
    Call, Detector, InsightEvent, InsightState, InsightsConfig, StateError, state::StateV1,
};

const ONSET: i64 = MONDAY + 120;

/// Minute `m` of the scenario: background RunInstances and CreateRole, and a burst of
/// RunInstances by mallory for 6 minutes from ONSET.
fn minute(feed: &mut Feed, rng: &mut Rng, m: i64) {
    let write = Spec::write("ec2.amazonaws.com", "RunInstances");
    let role = Spec::write("iam.amazonaws.com", "CreateRole").by(
        "arn:aws:iam::111122223333:user/admin",
        "console.amazonaws.com",
    );
    feed.advance(m);
    feed.events(&write, m, rng.poisson(4.0));
    feed.events(&role, m, rng.poisson(0.2));
    if (ONSET..ONSET + 6).contains(&m) {
        let mallory = write.by("arn:aws:iam::111122223333:user/mallory", "mallory/1.0");
        feed.events(&mallory, m, 70);
    }
}

fn uninterrupted(until: i64) -> Vec<InsightEvent> {
    let mut feed = Feed::new(enabled());
    let mut rng = Rng::new(99);
    for m in MONDAY..until {
        minute(&mut feed, &mut rng, m);
    }
    feed.out
}

#[test]
fn a_restart_mid_insight_still_ends_it_with_the_same_shared_id() -> Result<(), StateError> {
    let reference = uninterrupted(MONDAY + 160);
    assert_eq!(reference.len(), 2, "{reference:#?}");

    let mut feed = Feed::new(enabled());
    let mut rng = Rng::new(99);
    for m in MONDAY..ONSET + 3 {
        minute(&mut feed, &mut rng, m);
    }
    assert_eq!(feed.out.len(), 1);
    assert_eq!(feed.out[0].state, InsightState::Start);
    assert_eq!(feed.detector.open_insights(), 1);

    // Restart: only the bytes survive.
    let bytes = feed.detector.to_bytes();
    let before = std::mem::take(&mut feed.out);
    feed.detector = Detector::from_bytes(enabled(), &bytes)?;
    assert_eq!(
        String::from_utf8_lossy(&feed.detector.to_bytes()),
        String::from_utf8_lossy(&bytes),
        "restore is exact"
    );
    assert_eq!(feed.detector.open_insights(), 1);

    for m in ONSET + 3..MONDAY + 160 {
        minute(&mut feed, &mut rng, m);
    }
    assert_eq!(feed.out.len(), 1, "{:#?}", feed.out);
    let end = &feed.out[0];
    assert_eq!(end.state, InsightState::End);
    assert_eq!(end.shared_event_id, before[0].shared_event_id);
    assert_eq!(end.insight_duration, 6);
    // The same events, to the byte, as without a restart.
    assert_eq!(before[0].to_json(), reference[0].to_json());
    assert_eq!(end.to_json(), reference[1].to_json());
    Ok(())
}

#[test]
fn a_replay_gives_the_same_event_ids() {
    let a = uninterrupted(MONDAY + 160);
    let b = uninterrupted(MONDAY + 160);
    let ids = |v: &[InsightEvent]| -> Vec<(String, String)> {
        v.iter()
            .map(|e| (e.event_id.clone(), e.shared_event_id.clone()))
            .collect()
    };
    assert_eq!(ids(&a), ids(&b));
    assert_ne!(a[0].event_id, a[1].event_id);
}

#[test]
fn states_of_another_format_or_version_are_refused() {
    let d = Detector::new(enabled());
    let good = d.snapshot();
    let refuse = |s: StateV1| Detector::restore(enabled(), s).err();
    let mut v2 = good.clone();
    v2.version = 2;
    assert!(matches!(refuse(v2), Some(StateError::Version { found: 2 })));
    let mut other = good.clone();
    other.format = "something-else".into();
    assert!(matches!(refuse(other), Some(StateError::Format { .. })));
    assert!(matches!(
        Detector::from_bytes(enabled(), b"{\"format\":"),
        Err(StateError::Decode(_))
    ));
    let mut bad_key = Detector::new(enabled());
    let mut out = Vec::new();
    bad_key.observe(&write_call("CreateUser", MONDAY), &mut out);
    let mut s = bad_key.snapshot();
    let mut bad_value = s.clone();
    s.series[0].key = "C3:abc".into();
    assert!(matches!(refuse(s), Some(StateError::Key { index: 0 })));
    bad_value.values.clear();
    assert!(matches!(
        refuse(bad_value),
        Some(StateError::Value { index: 0, value: 0 })
    ));
}

fn write_call(name: &str, minute: i64) -> Call<'_> {
    Call {
        account: common::ACCOUNT,
        region: "us-east-1",
        event_source: "iam.amazonaws.com",
        event_name: name,
        minute,
        read_only: Some(false),
        management: true,
        error_code: None,
        user_arn: Some("arn:aws:iam::111122223333:user/admin"),
        user_agent: Some("console.amazonaws.com"),
    }
}

#[test]
fn tracked_keys_stay_bounded_and_an_open_insight_is_kept() {
    let config = InsightsConfig {
        max_tracked_keys: 100,
        ..enabled()
    };
    let mut d = Detector::new(config);
    let mut out = Vec::new();
    for m in MONDAY..MONDAY + 90 {
        d.advance(m, &mut out);
        d.observe(&write_call("CreateUser", m), &mut out);
    }
    // A burst opens an Insight on CreateUser, then 2,000 other APIs are called once each.
    for _ in 0..40 {
        d.observe(&write_call("CreateUser", MONDAY + 90), &mut out);
    }
    assert_eq!(out.len(), 1);
    let names: Vec<String> = (0..2000).map(|i| format!("Api{i}")).collect();
    for (i, n) in names.iter().enumerate() {
        let m = MONDAY + 91 + i as i64 / 200;
        d.advance(m, &mut out);
        d.observe(&write_call(n, m), &mut out);
    }
    let stats = d.stats();
    assert!(stats.tracked_keys <= 100, "{stats:?}");
    assert!(stats.evicted_keys >= 1900, "{stats:?}");
    // The open Insight survived the flood and ends.
    d.advance(MONDAY + 200, &mut out);
    assert_eq!(out.len(), 2, "{out:#?}");
    assert_eq!(out[1].state, InsightState::End);
    assert_eq!(out[1].key.event_name(), "CreateUser");
}
