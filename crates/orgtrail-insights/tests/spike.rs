//! An injected burst of a write API, and of errors, against Poisson background traffic: the
//! Start comes within 2 simulated minutes of onset, the End after recovery, and the
//! attributions name who did it.

mod common;

use common::{Feed, MONDAY, Rng, Spec, enabled};
use orgtrail_insights::{InsightEvent, InsightState, InsightType};

const MALLORY: &str = "arn:aws:iam::111122223333:user/mallory";
const MALLORY_AGENT: &str = "Boto3/1.34.0 Python/3.12 mallory-script";

/// Background traffic for one minute: each spec with its mean per minute.
fn background(feed: &mut Feed, rng: &mut Rng, specs: &[(Spec, f64)], minute: i64) {
    for (spec, rate) in specs {
        let n = rng.poisson(*rate);
        feed.events(spec, minute, n);
    }
}

/// Runs `minutes` minutes from `from`, calling `extra` each minute; returns each Insight
/// event with the clock minute at which it was emitted.
fn run(
    feed: &mut Feed,
    rng: &mut Rng,
    specs: &[(Spec, f64)],
    from: i64,
    minutes: i64,
    mut extra: impl FnMut(&mut Feed, i64),
) -> Vec<(i64, InsightEvent)> {
    let mut seen = Vec::new();
    for m in from..from + minutes {
        feed.advance(m);
        background(feed, rng, specs, m);
        extra(feed, m);
        seen.extend(feed.out.drain(..).map(|e| (m, e)));
    }
    seen
}

fn top(e: &InsightEvent, attribute: &str) -> Option<String> {
    e.attributions
        .iter()
        .find(|a| a.attribute == attribute)
        .and_then(|a| a.insight.first())
        .map(|v| v.0.clone())
}

#[test]
fn a_write_spike_starts_within_two_minutes_and_ends_after_recovery() {
    let mut feed = Feed::new(enabled());
    let mut rng = Rng::new(7);
    let run_instances = Spec::write("ec2.amazonaws.com", "RunInstances");
    let specs = [
        (run_instances.clone(), 2.0),
        (
            run_instances.clone().by(
                "arn:aws:sts::111122223333:assumed-role/Autoscaler/asg",
                "autoscaling.amazonaws.com",
            ),
            1.0,
        ),
        (Spec::write("iam.amazonaws.com", "CreateRole"), 0.1),
        (
            Spec::write("ec2.amazonaws.com", "DescribeInstances").read(),
            20.0,
        ),
    ];
    // Three hours of history, then a 5-minute burst of 60 RunInstances/minute by one user.
    let onset = MONDAY + 180;
    let quiet = run(&mut feed, &mut rng, &specs, MONDAY, 180, |_, _| {});
    assert!(quiet.is_empty(), "Insight on ordinary traffic: {quiet:?}");
    let spike = Spec::write("ec2.amazonaws.com", "RunInstances").by(MALLORY, MALLORY_AGENT);
    let seen = run(&mut feed, &mut rng, &specs, onset, 30, |feed, m| {
        if m < onset + 5 {
            feed.events(&spike, m, 60);
        }
    });

    let starts: Vec<&(i64, InsightEvent)> = seen
        .iter()
        .filter(|(_, e)| e.state == InsightState::Start)
        .collect();
    assert_eq!(starts.len(), 1, "{seen:#?}");
    let (emitted, start) = starts[0];
    assert!(
        *emitted - onset <= 2,
        "Start emitted {} minutes after onset",
        emitted - onset
    );
    assert_eq!(start.event_minute, onset);
    assert_eq!(start.key.insight_type(), InsightType::ApiCallRate);
    assert_eq!(start.key.event_name(), "RunInstances");
    assert_eq!(top(start, "userIdentityArn").as_deref(), Some(MALLORY));
    assert_eq!(top(start, "userAgent").as_deref(), Some(MALLORY_AGENT));
    assert!(start.baseline_average > 2.0 && start.baseline_average < 4.0);

    let ends: Vec<&(i64, InsightEvent)> = seen
        .iter()
        .filter(|(_, e)| e.state == InsightState::End)
        .collect();
    assert_eq!(ends.len(), 1, "{seen:#?}");
    let (_, end) = ends[0];
    assert_eq!(end.shared_event_id, start.shared_event_id);
    assert_ne!(end.event_id, start.event_id);
    assert_eq!(end.insight_duration, 5);
    assert_eq!(end.event_minute, onset + 5);
    assert!(
        end.insight_average > 60.0 && end.insight_average < 70.0,
        "{}",
        end.insight_average
    );
    assert_eq!(end.baseline_average, start.baseline_average);
    assert_eq!(top(end, "userIdentityArn").as_deref(), Some(MALLORY));
    assert_eq!(top(end, "userAgent").as_deref(), Some(MALLORY_AGENT));
    // The baseline attributions name the usual callers, not the injected one.
    let base_users: Vec<&str> = end.attributions[0]
        .baseline
        .iter()
        .map(|v| v.0.as_str())
        .collect();
    assert_eq!(
        base_users.first().copied(),
        Some("arn:aws:sts::111122223333:assumed-role/Deployer/ci")
    );
    let stats = feed.detector.stats();
    assert_eq!((stats.insights_started, stats.insights_ended), (1, 1));
    assert_eq!(feed.detector.open_insights(), 0);
    // The detector's Debug (what a log line would show) carries no event data.
    let debug = format!("{:?}", feed.detector);
    assert!(debug.contains("insights_started: 1"), "{debug}");
    assert!(
        !debug.contains("mallory") && !debug.contains("arn:"),
        "{debug}"
    );
}

#[test]
fn an_error_burst_starts_an_error_rate_insight_naming_the_error_code() {
    let mut feed = Feed::new(enabled());
    let mut rng = Rng::new(11);
    let get_policy = Spec::write("s3.amazonaws.com", "GetBucketPolicy").read();
    let specs = [
        (get_policy.clone(), 8.0),
        (get_policy.clone().failing("NoSuchBucketPolicy"), 0.5),
    ];
    let onset = MONDAY + 120;
    let quiet = run(&mut feed, &mut rng, &specs, MONDAY, 120, |_, _| {});
    assert!(quiet.is_empty(), "{quiet:?}");
    let burst = get_policy
        .by(MALLORY, MALLORY_AGENT)
        .failing("AccessDenied");
    let seen = run(&mut feed, &mut rng, &specs, onset, 20, |feed, m| {
        if m < onset + 3 {
            feed.events(&burst, m, 25);
        }
    });
    let events: Vec<&InsightEvent> = seen.iter().map(|(_, e)| e).collect();
    assert_eq!(events.len(), 2, "{events:#?}");
    let (start, end) = (events[0], events[1]);
    let emitted = seen[0].0;
    assert!(emitted - onset <= 2);
    assert_eq!(start.key.insight_type(), InsightType::ApiErrorRate);
    assert_eq!(start.key.error_code(), Some("AccessDenied"));
    assert_eq!(start.state, InsightState::Start);
    assert_eq!(end.state, InsightState::End);
    assert_eq!(end.shared_event_id, start.shared_event_id);
    assert_eq!(end.insight_duration, 3);
    assert!((end.insight_average - 25.0).abs() < 1e-9);
    // A key never seen before has a zero baseline behind it.
    assert_eq!(end.baseline_average, 0.0);
    assert_eq!(top(end, "userIdentityArn").as_deref(), Some(MALLORY));
    assert_eq!(top(end, "userAgent").as_deref(), Some(MALLORY_AGENT));
    assert_eq!(top(end, "errorCode").as_deref(), Some("AccessDenied"));
    // Read calls never count towards ApiCallRateInsight.
    assert!(
        events
            .iter()
            .all(|e| e.key.insight_type() == InsightType::ApiErrorRate)
    );
}

#[test]
fn a_burst_before_the_minimum_history_is_not_reported() {
    let mut feed = Feed::new(enabled());
    let mut rng = Rng::new(3);
    let spec = Spec::write("ec2.amazonaws.com", "RunInstances");
    let specs = [(spec.clone(), 1.0)];
    let seen = run(&mut feed, &mut rng, &specs, MONDAY, 50, |feed, m| {
        if m == MONDAY + 30 {
            feed.events(&spec, m, 100);
        }
    });
    assert!(seen.is_empty(), "{seen:?}");
}

#[test]
fn a_few_calls_where_there_were_none_are_not_an_insight() {
    let mut feed = Feed::new(enabled());
    let spec = Spec::write("iam.amazonaws.com", "CreateUser");
    for m in MONDAY..MONDAY + 120 {
        feed.advance(m);
    }
    feed.events(&spec, MONDAY + 120, 2);
    feed.advance(MONDAY + 130);
    assert!(feed.out.is_empty());
    // Five calls (min_count) of an API never called before are.
    feed.events(
        &Spec::write("iam.amazonaws.com", "DeleteUser"),
        MONDAY + 130,
        5,
    );
    assert_eq!(feed.out.len(), 1, "{:?}", feed.out);
}

#[test]
fn old_events_do_not_fire_for_the_past() {
    let mut feed = Feed::new(enabled());
    let spec = Spec::write("iam.amazonaws.com", "CreateUser");
    feed.advance(MONDAY + 600);
    // A backfill of a burst two hours ago: not counted, nothing fires.
    feed.events(&spec, MONDAY + 480, 200);
    feed.advance(MONDAY + 700);
    assert!(feed.out.is_empty());
    assert_eq!(feed.detector.stats().late_events, 200);
    // Stamped far past the wall clock: not counted either.
    feed.events(&spec, MONDAY + 800, 3);
    assert_eq!(feed.detector.stats().future_events, 3);
}

#[test]
fn disabled_types_accounts_and_sources_count_nothing() {
    let mut config = enabled();
    config.api_call_rate = false;
    config.ignored_event_sources = vec!["s3.amazonaws.com".into()];
    let mut feed = Feed::new(config);
    feed.advance(MONDAY);
    feed.events(
        &Spec::write("ec2.amazonaws.com", "RunInstances"),
        MONDAY,
        10,
    );
    feed.events(
        &Spec::write("s3.amazonaws.com", "GetBucketAcl").failing("AccessDenied"),
        MONDAY,
        10,
    );
    assert_eq!(feed.detector.stats().tracked_keys, 0);
    feed.events(
        &Spec::write("ec2.amazonaws.com", "RunInstances").failing("Unauthorized"),
        MONDAY,
        1,
    );
    assert_eq!(feed.detector.stats().tracked_keys, 1);

    let mut off = Feed::new(orgtrail_insights::InsightsConfig::default());
    off.events(
        &Spec::write("ec2.amazonaws.com", "RunInstances"),
        MONDAY,
        10,
    );
    assert_eq!(off.detector.stats().tracked_keys, 0, "off by default");
}

#[test]
fn account_overrides_apply_to_their_account_only() {
    use orgtrail_insights::{AccountInsights, Call, Detector};
    let mut config = enabled();
    config.accounts.insert(
        "444455556666".into(),
        AccountInsights {
            enabled: Some(false),
            ..AccountInsights::default()
        },
    );
    config.accounts.insert(
        "777788889999".into(),
        AccountInsights {
            min_count: Some(50),
            ..AccountInsights::default()
        },
    );
    let mut d = Detector::try_new(config).unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::new();
    let call = |account, minute| Call {
        account,
        region: "us-east-1",
        event_source: "iam.amazonaws.com",
        event_name: "CreateUser",
        minute,
        read_only: Some(false),
        management: true,
        error_code: None,
        user_arn: None,
        user_agent: None,
    };
    for m in MONDAY..MONDAY + 90 {
        d.advance(m, &mut out);
    }
    let m = MONDAY + 90;
    for _ in 0..20 {
        for account in [common::ACCOUNT, "444455556666", "777788889999"] {
            d.observe(&call(account, m), &mut out);
        }
    }
    // Default account: 20 calls from nothing start an Insight; the disabled account is not
    // even tracked; the account with min_count 50 does not start at 20.
    let accounts: Vec<&str> = out.iter().map(|e| e.account()).collect();
    assert_eq!(accounts, [common::ACCOUNT]);
    assert_eq!(d.stats().tracked_keys, 2);
}

#[test]
fn a_call_one_minute_late_counts_and_two_minutes_late_does_not() {
    let mut feed = Feed::new(enabled());
    let spec = Spec::write("iam.amazonaws.com", "CreateUser");
    for m in MONDAY..MONDAY + 90 {
        feed.advance(m);
    }
    // The clock is at MONDAY+89; lateness 1: minute 88 is still open, 87 is closed.
    feed.events(&spec, MONDAY + 88, 5);
    assert_eq!(
        feed.out.len(),
        1,
        "five calls in minute 88 start an Insight"
    );
    assert_eq!(feed.out[0].event_minute, MONDAY + 88);
    feed.events(&spec, MONDAY + 87, 5);
    assert_eq!(feed.detector.stats().late_events, 5);
}
