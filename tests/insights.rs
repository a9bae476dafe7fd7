//! Insights end to end: an agent ships two hours of ordinary write calls (in time order) and
//! then a burst in the current minute over mutual TLS; the collector, with `[insights]` on,
//! stores a Start Insight event of that account in CloudTrail's format, which a remote lookup
//! finds and on which a rule on `detail-type: "AWS Insight via CloudTrail"` delivers an alert.
//! Killed (`kill -9`) after the Start and restarted, the collector resumes from its stored
//! state and writes the End once, with the Start's `sharedEventID`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/iam_calls.rs"]
mod iam_calls;
#[path = "common/org.rs"]
mod org;
#[path = "common/procs.rs"]
mod procs;
#[path = "common/prom.rs"]
mod prom;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use iam_calls::{ACCOUNT, Calls};
use org::{Org, agent_drains, spawn_agent};
use orgtrail_core::Timestamp;
use serde_json::{Value, json};

const BURST_USER: &str = "arn:aws:iam::111122223333:user/burst";

/// Two hours of one CreateUser every 4 minutes (ending 3 minutes before `minute`), then 40 at
/// `burst_at` (a second of `minute`) by another user.
fn baseline_and_burst(minute: i64, burst_at: i64) -> String {
    let calls = Calls {
        name: "CreateUser",
        error: false,
        baseline_tag: 8000,
        burst_tag: 9000,
        burst_user: BURST_USER,
    };
    iam_calls::baseline_and_burst(minute, burst_at, &calls).join("\n") + "\n"
}

/// [`baseline_and_burst`] ending in the current minute.
fn traffic() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let minute = now - now % 60;
    baseline_and_burst(minute, minute + (now - minute).min(59))
}

const EXTRA: &str = "[insights]\nenabled = true\nmin_history_ms = \"30m\"\nend_after_minutes = 1\nlateness_minutes = 0\n[ops]\nlisten = \"127.0.0.1:0\"\n[rules]\ndir = \"rules\"\n[[alerts.file]]\nname = \"log\"\npath = \"alerts.jsonl\"\n";

fn alerts(org: &Org) -> Vec<Value> {
    std::fs::read_to_string(org.path("alerts.jsonl"))
        .unwrap_or_default()
        // Whole lines only: the sink may be in the middle of appending one.
        .split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// What `orgtrail ARGS... <remote as the auditor> EXTRA...` prints, as JSON lines.
fn remote(org: &Org, c: &org::Collector, args: &[&str], extra: &[&str]) -> Vec<Value> {
    let reader = org.reader_args(c, "auditor");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(reader.iter().map(String::as_str));
    all.extend(extra);
    let out = common::run(&all, b"");
    assert!(out.status.success(), "{}", common::stderr(&out));
    common::stdout(&out)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .collect()
}

/// The Insight events `orgtrail insights list` shows (as the auditor).
fn insights(org: &Org, c: &org::Collector) -> Vec<Value> {
    let got = remote(org, c, &["insights", "list"], &["--output", "jsonl"]);
    assert!(
        got.iter().all(|e| e["eventCategory"] == "Insight"),
        "{got:?}"
    );
    got
}

/// `orgtrail insights follow` (as the auditor), subscribed: its lines on a channel.
fn follow(org: &Org, c: &org::Collector) -> (std::process::Child, mpsc::Receiver<Value>) {
    let mut child = common::orgtrail()
        .args(["insights", "follow"])
        .args(org.reader_args(c, "auditor"))
        .args(["--output", "jsonl"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("following events"), "{line}");
    let out = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in out.lines() {
            let Ok(l) = l else { return };
            if tx.send(serde_json::from_str(&l).unwrap()).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

/// What `orgtrail insights explain ID` prints, asked of the collector as the auditor.
fn explain_remote(org: &Org, c: &org::Collector, id: &str) -> String {
    let out = common::run(
        &[
            &["insights", "explain", id][..],
            &org.reader_args(c, "auditor")
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        ]
        .concat(),
        b"",
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    common::stdout(&out)
}

/// The chart shows one minute of `burst` calls at the Start, with the longest bar, the
/// baseline's minutes of one call before it, and the burst's user in the attributions table.
fn assert_burst_charted(text: &str, burst: u64) {
    let start = text
        .lines()
        .find(|l| l.ends_with("<- Start"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        start.contains(&format!(" {burst} {} <- Start", "#".repeat(50))),
        "{text}"
    );
    let chart: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("calls per minute"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    // 30 minutes before the Start: one baseline call every 4 minutes.
    let ones = chart
        .iter()
        .take(30)
        .filter(|l| l.split_whitespace().nth(1) == Some("1"))
        .count();
    assert!((7..=8).contains(&ones), "{text}");
    let table = text.split("attributions").nth(1).unwrap();
    let burst_row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("userIdentityArn") && l.contains(BURST_USER))
        .unwrap_or_else(|| panic!("{text}"))
        .split_whitespace()
        .collect();
    assert_eq!(
        burst_row.len(),
        4,
        "its insight and baseline averages: {text}"
    );
}

fn state(e: &Value) -> &str {
    e["insightDetails"]["state"].as_str().unwrap()
}

#[test]
fn a_burst_is_stored_as_an_insight_found_by_lookup_alerted_on_and_ended_after_a_kill() {
    let org = Org::new();
    org.issue("agent-a", "agent", Some(ACCOUNT));
    org.issue("auditor", "auditor", None);
    std::fs::create_dir(org.path("rules")).unwrap();
    std::fs::write(
        org.path("rules/insight.json"),
        json!({"id": "insight", "severity": "medium", "pattern": {"detail-type": ["AWS Insight via CloudTrail"]}}).to_string(),
    )
    .unwrap();
    let file = org.path("calls.jsonl");
    std::fs::write(&file, traffic()).unwrap();
    let mut c = org.collector(0, EXTRA);
    let cfg = org.agent_config("agent", ACCOUNT, "agent-a", &file, c.port);
    agent_drains(spawn_agent(&cfg), 120);

    // The Start, stored as an event of the account, found by a remote lookup.
    let mut found = Vec::new();
    procs::wait_until(Duration::from_secs(60), "the Start Insight stored", || {
        found = insights(&org, &c);
        !found.is_empty()
    });
    assert_eq!(found.len(), 1, "one Insight event: {found:?}");
    let start = found[0].clone();
    assert_eq!(state(&start), "Start");
    assert_eq!(start["eventType"], "AwsCloudTrailInsight");
    assert_eq!(start["recipientAccountId"], ACCOUNT);
    assert_eq!(start["insightDetails"]["insightType"], "ApiCallRateInsight");
    assert_eq!(start["insightDetails"]["eventSource"], "iam.amazonaws.com");
    let attributed = start["insightDetails"]["insightContext"]["attributions"].to_string();
    assert!(attributed.contains(BURST_USER), "{attributed}");

    // `insights explain` (as the auditor) charts the key's calls per minute around it.
    let text = explain_remote(&org, &c, start["eventID"].as_str().unwrap());
    assert!(
        text.starts_with("ApiCallRateInsight open of iam.amazonaws.com CreateUser"),
        "{text}"
    );
    assert_burst_charted(&text, 40);

    // `lookup` finds it too, by the call it is about; `insights list` showed only it.
    let by_name = remote(
        &org,
        &c,
        &["lookup"],
        &[
            "--event-name",
            "CreateUser",
            "--max",
            "1000",
            "--output",
            "jsonl",
        ],
    );
    assert_eq!(by_name.len(), 71, "70 calls and the Insight");
    assert!(by_name.contains(&start));

    // The rule on the Insight's detail-type delivered an alert about it.
    procs::wait_until(Duration::from_secs(60), "the Start alerted on", || {
        !alerts(&org).is_empty()
    });
    let a = &alerts(&org)[0];
    assert_eq!(a["detail-type"], "AWS Insight via CloudTrail");
    assert_eq!(a["rule-id"], "insight");
    assert_eq!(a["detail"]["eventID"], start["eventID"]);

    // kill -9, restart: the stored state has the open Insight; the wall clock ends it.
    // Killed once the Start is counted, which is once the state holding it is saved (the alert
    // may come first: killed then, a restart in a later minute would not find the burst again).
    let ops = c.ops.clone().unwrap();
    procs::wait_until(Duration::from_secs(60), "the Start counted", || {
        prom::scrape(&ops).get("orgtrail_collector_insights_started_total", &[]) == Some(1.0)
    });
    c.child.kill().unwrap();
    c.child.wait().unwrap();
    drop(c);
    let c = org.collector(0, EXTRA);
    let (mut follower, followed) = follow(&org, &c);
    procs::wait_until(Duration::from_secs(240), "the End Insight stored", || {
        found = insights(&org, &c);
        found.iter().any(|e| state(e) == "End")
    });
    let starts: Vec<&Value> = found.iter().filter(|e| state(e) == "Start").collect();
    let ends: Vec<&Value> = found.iter().filter(|e| state(e) == "End").collect();
    assert_eq!((starts.len(), ends.len()), (1, 1), "{found:?}");
    assert_eq!(ends[0]["sharedEventID"], start["sharedEventID"]);
    assert_ne!(ends[0]["eventID"], start["eventID"]);
    // A follower of Insights saw the End as it was stored, and nothing else.
    let seen = followed.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(&seen, ends[0]);
    assert!(followed.try_recv().is_err());
    follower.kill().unwrap();
    follower.wait().unwrap();
    procs::wait_until(Duration::from_secs(60), "the End alerted on", || {
        alerts(&org)
            .iter()
            .any(|a| a["detail"]["eventID"] == ends[0]["eventID"])
    });
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `orgtrail ARGS... --data-dir data --keys keys` (offline).
fn offline(org: &Org, args: &[&str]) -> std::process::Output {
    let (data, keys) = (org.path("data"), org.path("keys"));
    common::run(
        &[args, &["--data-dir", s(&data), "--keys", s(&keys)][..]].concat(),
        b"",
    )
}

#[test]
fn replay_finds_the_insight_of_imported_events_once_and_explain_charts_it() {
    let org = Org::new();
    // Yesterday's traffic, imported: two hours of baseline, then the burst. Import alone
    // fires no Insight.
    let yesterday = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 86_400;
    let minute = yesterday - yesterday % 60;
    let file = org.path("calls.jsonl");
    std::fs::write(&file, baseline_and_burst(minute, minute + 30)).unwrap();
    let out = offline(&org, &["import", s(&file)]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let list = |org: &Org| -> Vec<Value> {
        let out = offline(org, &["insights", "list", "--output", "jsonl"]);
        assert!(out.status.success(), "{}", common::stderr(&out));
        common::stdout(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    assert!(list(&org).is_empty());

    // Refused while a collector runs on the store.
    let mut c = org.collector(0, "");
    let out = offline(&org, &["insights", "replay", "--since", "2d"]);
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("in use"),
        "{}",
        common::stderr(&out)
    );
    org::sigterm(&mut c);
    drop(c);

    // The Start of the burst, and its End (the detector's clock is moved to now).
    let out = offline(&org, &["insights", "replay", "--since", "2d"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(
        common::stdout(&out).trim(),
        "fed=70 found=2 stored=2 duplicates=0"
    );
    let found = list(&org);
    assert_eq!(found.len(), 2, "{found:?}");
    let start = found.iter().find(|e| state(e) == "Start").unwrap();
    let end = found.iter().find(|e| state(e) == "End").unwrap();
    assert_eq!(start["sharedEventID"], end["sharedEventID"]);
    assert_eq!(
        start["eventTime"],
        Timestamp::from_unix_secs(minute).to_string(),
        "the burst's minute"
    );
    // A rerun stores nothing new.
    let out = offline(&org, &["insights", "replay", "--since", "2d"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(
        common::stdout(&out).trim(),
        "fed=70 found=2 stored=0 duplicates=2"
    );
    assert_eq!(list(&org).len(), 2);

    // Explained from either state: the burst at the Start, the End marked, attributions.
    for id in [&start["eventID"], &end["eventID"]] {
        let out = offline(&org, &["insights", "explain", id.as_str().unwrap()]);
        assert!(out.status.success(), "{}", common::stderr(&out));
        let text = common::stdout(&out);
        assert!(text.starts_with("ApiCallRateInsight ended of iam.amazonaws.com CreateUser in account 111122223333 (us-east-1)"), "{text}");
        assert_burst_charted(&text, 40);
        assert_eq!(
            text.lines().filter(|l| l.ends_with("<- End")).count(),
            1,
            "{text}"
        );
    }
    // An eventID that is not an Insight's.
    let out = offline(
        &org,
        &[
            "insights",
            "explain",
            "00000000-0000-4000-9000-000000000001",
        ],
    );
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("no Insight event"),
        "{}",
        common::stderr(&out)
    );
}
