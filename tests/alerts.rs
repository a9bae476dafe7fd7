//! Detection end to end: an agent ships real-shaped events over mutual TLS, the collector
//! stores them, evaluates its rules on the stored ones, and delivers each alert to a
//! JSON-lines file sink: exactly one per (rule, stored event), never for a duplicate, with
//! an id derived from the rule, the account and the eventID. Killed (abort, as `kill -9`)
//! right after recording alerts, or right after a sink took one, the collector delivers every
//! alert after a restart, under the same ids.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/org.rs"]
mod org;
#[path = "common/procs.rs"]
mod procs;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use org::{Org, agent_drains, events, spawn_agent};
use orgtrail_collector::alerts::payload::alert_id;
use serde_json::Value;

const RULE: &str = "watched-call";

/// A rule in EventBridge envelope form on the first event's call, a file sink, and what the
/// rule must fire on: eventID -> the event.
fn setup(org: &Org, seed: u64) -> (String, std::path::PathBuf, BTreeMap<String, Value>, String) {
    let (account, file, unique) = events(org, "events", 3000, seed);
    let parsed: Vec<Value> = unique
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first = &parsed[0];
    let name = first["eventName"].as_str().unwrap().to_owned();
    let service = first["eventSource"]
        .as_str()
        .unwrap()
        .trim_end_matches(".amazonaws.com")
        .to_owned();
    let want: BTreeMap<String, Value> = parsed
        .iter()
        .filter(|e| e["eventName"] == name.as_str() && e["eventSource"] == first["eventSource"])
        .map(|e| (e["eventID"].as_str().unwrap().to_owned(), e.clone()))
        .collect();
    assert!(!want.is_empty());
    std::fs::create_dir(org.path("rules")).unwrap();
    std::fs::write(
        org.path("rules/watched.json"),
        serde_json::json!({
            "id": RULE, "severity": "high",
            "pattern": {"source": [format!("aws.{service}")], "detail-type": ["AWS API Call via CloudTrail"], "detail": {"eventName": [name]}}
        })
        .to_string(),
    )
    .unwrap();
    org.issue("agent-a", "agent", Some(&account));
    let extra =
        "[rules]\ndir = \"rules\"\n[[alerts.file]]\nname = \"log\"\npath = \"alerts.jsonl\"\n"
            .to_owned();
    (account, file, want, extra)
}

fn alerts(org: &Org) -> Vec<Value> {
    std::fs::read_to_string(org.path("alerts.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Each alert is the EventBridge envelope of a wanted event with its derived id.
fn check_alert(a: &Value, account: &str, want: &BTreeMap<String, Value>) {
    let event_id = a["detail"]["eventID"].as_str().unwrap();
    let e = want
        .get(event_id)
        .unwrap_or_else(|| panic!("an alert on an event the rule does not match: {a}"));
    assert_eq!(&a["detail"], e, "the alert carries the event as stored");
    assert_eq!(a["id"], alert_id(RULE, account, event_id));
    assert_eq!(a["rule-id"], RULE);
    assert_eq!(a["severity"], "high");
    assert_eq!(a["detail-type"], "AWS API Call via CloudTrail");
    assert_eq!(a["account"], account);
    assert_eq!(a["version"], "0");
}

#[test]
fn each_stored_event_fires_once_and_duplicates_never() {
    let org = Org::new();
    let (account, file, want, extra) = setup(&org, 41);
    let c = org.collector(0, &extra);
    let cfg = org.agent_config("agent", &account, "agent-a", &file, c.port);
    agent_drains(spawn_agent(&cfg), 120);
    procs::wait_until(Duration::from_secs(60), "every alert delivered", || {
        alerts(&org).len() >= want.len()
    });
    let got = alerts(&org);
    assert_eq!(got.len(), want.len(), "one alert per matching stored event");
    let ids: HashSet<&str> = got.iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), got.len(), "no alert twice");
    for a in &got {
        check_alert(a, &account, &want);
    }
    // The same events again, from another agent spool: all duplicates, stored nowhere, so no
    // alert. (Evaluation follows the stored sequence numbers, which duplicates never get.)
    let again = org.agent_config("again", &account, "agent-a", &file, c.port);
    agent_drains(spawn_agent(&again), 120);
    assert_eq!(alerts(&org).len(), want.len(), "duplicates fire nothing");
}

/// Kills the collector at `step`, restarts it, and checks every alert arrives, each under its
/// one id, `again` of them a second time (what a sink took just before the kill); returns how
/// many times each id was delivered.
fn crash_at(step: &str, seed: u64, again: usize) -> BTreeMap<String, usize> {
    let org = Org::new();
    let (account, file, want, extra) = setup(&org, seed);
    let mut c = org.collector_with(0, &extra, false, |cmd| {
        cmd.env("ORGTRAIL_CRASH_AT", step);
    });
    let cfg = org.agent_config("agent", &account, "agent-a", &file, c.port);
    let mut agent = spawn_agent(&cfg);
    let crashed = procs::wait_exit(
        &mut c.child,
        Duration::from_secs(120),
        &procs::Lines::drain(std::io::empty()),
    );
    assert!(!crashed.success(), "the collector aborted at {step}");
    let stderr = std::fs::read_to_string(org.path("collector.stderr")).unwrap();
    assert!(
        stderr.contains(&format!("crash point {step} reached")),
        "{stderr}"
    );
    let _ = agent.kill();
    let _ = agent.wait();
    drop(c);
    let stored: HashSet<String> = org
        .stored()
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["eventID"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    // Restarted (the agent's events are already stored: what the crash left must go out).
    let c = org.collector(0, &extra);
    let expect: BTreeMap<String, Value> = want
        .into_iter()
        .filter(|(id, _)| stored.contains(id))
        .collect();
    assert!(
        !expect.is_empty(),
        "the crash came after some matching events were stored"
    );
    procs::wait_until(
        Duration::from_secs(60),
        "every alert delivered after the restart",
        || {
            let got = alerts(&org);
            let ids: HashSet<String> = got
                .iter()
                .map(|a| a["detail"]["eventID"].as_str().unwrap().to_owned())
                .collect();
            expect.keys().all(|k| ids.contains(k)) && got.len() >= expect.len() + again
        },
    );
    let mut times: BTreeMap<String, usize> = BTreeMap::new();
    for a in alerts(&org) {
        check_alert(&a, &account, &expect);
        *times
            .entry(a["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(
        times.len(),
        expect.len(),
        "an alert for every matching stored event, no other"
    );
    drop(c);
    times
}

#[test]
fn killed_after_recording_alerts_they_all_arrive_once_after_a_restart() {
    let times = crash_at("alerts-recorded", 42, 0);
    assert!(times.values().all(|n| *n == 1), "{times:?}");
}

#[test]
fn killed_after_a_sink_took_an_alert_it_comes_again_under_the_same_id() {
    let times = crash_at("alert-sent", 43, 1);
    // The alert the sink took before the kill is delivered once more, with the same id; every
    // other exactly once.
    let twice: Vec<_> = times.iter().filter(|(_, n)| **n == 2).collect();
    assert_eq!(twice.len(), 1, "{times:?}");
    assert!(times.values().all(|n| *n <= 2), "{times:?}");
}

#[test]
fn config_check_refuses_rules_that_cannot_alert() {
    let org = Org::new();
    std::fs::create_dir(org.path("rules")).unwrap();
    std::fs::write(
        org.path("rules/r.json"),
        r#"{"id": "r", "actions": ["pager"], "pattern": {"eventName": ["DeleteTrail"]}}"#,
    )
    .unwrap();
    std::fs::write(
        org.path("rules/bad.json"),
        r#"{"id": "bad", "pattern": {"eventName": []}}"#,
    )
    .unwrap();
    let cfg = org.collector_config(
        0,
        "[rules]\ndir = \"rules\"\npacks = [\"cis\"]\n[[alerts.file]]\nname = \"log\"\npath = \"alerts.jsonl\"\n",
    );
    let out = common::run(&["config", "check", cfg.to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr(&out);
    assert!(
        err.contains("bad.json: pattern: eventName: an empty array"),
        "{err}"
    );
    std::fs::remove_file(org.path("rules/bad.json")).unwrap();
    let out = common::run(&["config", "check", cfg.to_str().unwrap()], b"");
    let err = common::stderr(&out);
    assert!(
        err.contains("rule r") && err.contains("\"pager\", which no [alerts] sink is named"),
        "{err}"
    );
    // Rules with nowhere to send alerts.
    let cfg = org.collector_config(0, "[rules]\npacks = [\"cis\"]\n");
    let out = common::run(&["config", "check", cfg.to_str().unwrap()], b"");
    assert!(
        common::stderr(&out).contains("alerts need somewhere to go"),
        "{}",
        common::stderr(&out)
    );
    // The built-in CIS pack and a file sink: a good configuration.
    let cfg = org.collector_config(
        0,
        "[rules]\npacks = [\"cis\"]\n[[alerts.file]]\nname = \"log\"\npath = \"alerts.jsonl\"\n",
    );
    let out = common::run(&["config", "check", cfg.to_str().unwrap()], b"");
    assert!(out.status.success(), "{}", common::stderr(&out));
}
