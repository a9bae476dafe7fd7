//! Threshold rules end to end: a YAML rule counting one user's `ListBuckets` calls over ten
//! minutes of event time fires exactly once when more than five fall within the window, never
//! for a user below the threshold or one whose calls are spread wider than the window; and a
//! collector killed (abort, as `kill -9`) with the count half-way resumes it from the ledger,
//! so the alert still fires once, under the id derived from the rule, the account and the
//! eventID of the event that crossed the threshold.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/org.rs"]
mod org;
#[path = "common/procs.rs"]
mod procs;

use std::path::PathBuf;
use std::time::Duration;

use org::{Org, spawn_agent};
use orgtrail_collector::alerts::payload::alert_id;
use serde_json::{Value, json};

const ACCOUNT: &str = "111122223333";
const RULE: &str = "list-burst";

/// One CloudTrail record of `user` calling `name` at `minute:second` past 10:00.
fn record(user: &str, name: &str, seconds: u64, n: u64) -> String {
    json!({
        "eventVersion": "1.08",
        "userIdentity": {"type": "IAMUser", "arn": format!("arn:aws:iam::{ACCOUNT}:user/{user}"),
                         "accountId": ACCOUNT, "userName": user},
        "eventTime": format!("2026-11-27T10:{:02}:{:02}Z", seconds / 60, seconds % 60),
        "eventSource": "s3.amazonaws.com",
        "eventName": name,
        "awsRegion": "eu-west-1",
        "sourceIPAddress": "192.0.2.7",
        "userAgent": "aws-cli/2.22.20",
        "requestParameters": null,
        "responseElements": null,
        "requestID": format!("req-{user}-{n}"),
        "eventID": format!("00000000-0000-4000-8000-{:012}", n),
        "readOnly": true,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Management"
    })
    .to_string()
}

fn write(org: &Org, name: &str, lines: &[String]) -> PathBuf {
    let path = org.path(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// The rules (a threshold rule in YAML and a sentinel) and the collector's extra config.
fn setup(org: &Org) -> String {
    std::fs::create_dir(org.path("rules")).unwrap();
    std::fs::write(
        org.path("rules/burst.yaml"),
        format!(
            "id: {RULE}\nseverity: medium\npattern:\n  eventSource: [s3.amazonaws.com]\n  eventName: [ListBuckets]\nthreshold: {{count: 5, window: 10m, group_by: [userIdentity.arn]}}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        org.path("rules/sentinel.json"),
        r#"{"id": "sentinel", "pattern": {"eventName": ["GetBucketAcl"]}}"#,
    )
    .unwrap();
    for name in ["agent-a", "agent-b", "agent-c"] {
        org.issue(name, "agent", Some(ACCOUNT));
    }
    "[rules]\ndir = \"rules\"\n[[alerts.file]]\nname = \"log\"\npath = \"alerts.jsonl\"\n".into()
}

fn alerts(org: &Org) -> Vec<Value> {
    std::fs::read_to_string(org.path("alerts.jsonl"))
        .unwrap_or_default()
        // Whole lines only: the sink may be in the middle of appending one.
        .split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Ships the sentinel last (after everything else is stored, so its sequence number is the
/// highest) and waits for its alert: alerts are recorded and delivered in sequence order, so
/// every alert of the earlier events is in the file by then. Returns the threshold alerts.
fn burst_alerts_after_sentinel(org: &Org, c: &org::Collector) -> Vec<Value> {
    let sentinel = write(
        org,
        "sentinel.jsonl",
        &[record("zed", "GetBucketAcl", 0, 999)],
    );
    org.ship(c, "agent-c", ACCOUNT, &sentinel);
    procs::wait_until(
        Duration::from_secs(60),
        "the sentinel's alert delivered",
        || alerts(org).iter().any(|a| a["rule-id"] == "sentinel"),
    );
    alerts(org)
        .into_iter()
        .filter(|a| a["rule-id"] == RULE)
        .collect()
}

#[test]
fn more_than_n_events_of_one_user_within_the_window_fire_exactly_once() {
    let org = Org::new();
    let extra = setup(&org);
    let c = org.collector(0, &extra);
    let mut lines = Vec::new();
    // alice: 7 calls within 3 minutes; the 6th makes more than 5 and fires, the 7th does not.
    for i in 0..7 {
        lines.push(record("alice", "ListBuckets", 30 * i, i + 1));
    }
    // bob: exactly 5 within the window (not more than 5).
    for i in 0..5 {
        lines.push(record("bob", "ListBuckets", 40 * i, 100 + i));
    }
    // carol: 7 calls 3 minutes apart: at most 4 in any 10 minutes.
    for i in 0..7 {
        lines.push(record("carol", "ListBuckets", 180 * i, 200 + i));
    }
    // alice's other calls do not count.
    lines.push(record("alice", "GetObject", 10, 300));
    let file = write(&org, "events.jsonl", &lines);
    org.ship(&c, "agent-a", ACCOUNT, &file);
    let got = burst_alerts_after_sentinel(&org, &c);
    assert_eq!(got.len(), 1, "exactly one threshold alert: {got:?}");
    let a = &got[0];
    assert_eq!(
        a["detail"]["userIdentity"]["userName"], "alice",
        "the alert is on alice's events: {a}"
    );
    // The crossing event is alice's 6th call in the order stored (all seven are within the
    // window, so whichever was stored 6th).
    let event_id = a["detail"]["eventID"].as_str().unwrap();
    assert_eq!(a["detail"]["eventName"], "ListBuckets");
    assert!(
        (1..=7).any(|n| event_id == format!("00000000-0000-4000-8000-{n:012}")),
        "{event_id}"
    );
    assert_eq!(a["id"], alert_id(RULE, ACCOUNT, event_id));
    assert_eq!(a["severity"], "medium");
}

#[test]
fn killed_half_way_through_a_count_the_collector_resumes_it_from_the_ledger() {
    let org = Org::new();
    let extra = setup(&org);
    // Three of alice's calls, then the collector aborts right after recording the range
    // (and the windows) that holds them.
    let first: Vec<String> = (0..3)
        .map(|i| record("alice", "ListBuckets", 20 * i, i + 1))
        .collect();
    let first = write(&org, "first.jsonl", &first);
    let mut c = org.collector_with(0, &extra, false, |cmd| {
        cmd.env("ORGTRAIL_CRASH_AT", "alerts-recorded");
    });
    let cfg = org.agent_config("agent-a", ACCOUNT, "agent-a", &first, c.port);
    let mut agent = spawn_agent(&cfg);
    let crashed = procs::wait_exit(
        &mut c.child,
        Duration::from_secs(120),
        &procs::Lines::drain(std::io::empty()),
    );
    assert!(!crashed.success(), "the collector aborted");
    let stderr = std::fs::read_to_string(org.path("collector.stderr")).unwrap();
    assert!(
        stderr.contains("crash point alerts-recorded reached"),
        "{stderr}"
    );
    let _ = agent.kill();
    let _ = agent.wait();
    drop(c);
    let before = org.stored().len();
    assert!(
        before >= 1,
        "some of alice's calls were stored and counted before the kill"
    );
    // Restarted: whatever of the first file was not stored comes again from the agent's
    // spool, then three more calls. Six within the window: one alert.
    let c = org.collector(0, &extra);
    org.ship(&c, "agent-a", ACCOUNT, &first);
    let second: Vec<String> = (3..6)
        .map(|i| record("alice", "ListBuckets", 20 * i, i + 1))
        .collect();
    let second = write(&org, "second.jsonl", &second);
    org.ship(&c, "agent-b", ACCOUNT, &second);
    let got = burst_alerts_after_sentinel(&org, &c);
    assert_eq!(
        got.len(),
        1,
        "the count went on from the ledger's windows: {got:?}"
    );
    // The 6th stored is one of the three shipped after the restart.
    let event_id = got[0]["detail"]["eventID"].as_str().unwrap();
    assert!(
        (4..=6).any(|n| event_id == format!("00000000-0000-4000-8000-{n:012}")),
        "{event_id}"
    );
    assert_eq!(got[0]["id"], alert_id(RULE, ACCOUNT, event_id));
}
