//! Detection end to end: an agent ships real-shaped events over mutual TLS, the collector
//! stores them, evaluates its rules on the stored ones, and delivers each alert to a
//! JSON-lines file sink: exactly one per (rule, stored event), never for a duplicate, with
//! an id derived from the rule, the account and the eventID. Killed (abort, as `kill -9`)
//! right after recording alerts, or right after a sink took one, the collector delivers every
//! alert after a restart, under the same ids.
//!
//! The webhook sink: signed requests over HTTP and HTTPS (a private CA), a failing receiver
//! retried without holding back the file sink, dead letters after `max_attempts` server faults
//! or at once on a client error (400), re-driven by `orgtrail alerts dead-letters --retry`,
//! and `Retry-After` honoured.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/crash.rs"]
mod crash;
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
    // The rule is on the call of the file's first event (not the set's first, which differs
    // from run to run): how many alerts a test waits for is the same every run.
    let text = std::fs::read_to_string(&file).unwrap();
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let first = &first;
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
        // Whole lines only: the sink may be in the middle of appending one.
        .split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n'))
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
/// one id; returns how many times each id was delivered, and the ids the file held at the
/// kill (what the sink took just before it, which comes again).
fn crash_at(step: &str, seed: u64) -> (BTreeMap<String, usize>, HashSet<String>) {
    let org = Org::new();
    let (account, file, want, extra) = setup(&org, seed);
    crash::until_crash(&org, &extra, step, &account, &file);
    let before: HashSet<String> = alerts(&org)
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    let again = before.len();
    // What the kill left stored (read offline, before a restart).
    let expect = org.keep_stored(want);
    // Restarted (the agent's events are already stored: what the crash left must go out).
    let c = org.collector(0, &extra);
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
    (times, before)
}

#[test]
fn killed_after_recording_alerts_they_all_arrive_once_after_a_restart() {
    let (times, before) = crash_at("alerts-recorded", 42);
    assert!(before.is_empty(), "no sink took an alert before the kill");
    assert!(times.values().all(|n| *n == 1), "{times:?}");
}

#[test]
fn killed_after_a_sink_took_alerts_they_come_again_under_the_same_ids() {
    let (times, before) = crash_at("alert-sent", 43);
    // The file sink takes the alerts pending at once (one write, one sync), then notes them:
    // the batch it took right before the kill is delivered once more, with the same ids;
    // every other alert exactly once.
    assert!(!before.is_empty(), "the sink took alerts before the kill");
    let twice: HashSet<String> = times
        .iter()
        .filter(|(_, n)| **n == 2)
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(twice, before, "{times:?}");
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

// ---- The webhook sink -------------------------------------------------------------------

#[path = "common/webhook.rs"]
mod webhook;

const SECRET: &str = "a-shared-webhook-secret";

/// A `[[alerts.webhook]]` table for `url` (secret in webhook.secret), with `more` keys.
fn webhook_sink(org: &Org, url: &str, more: &str) -> String {
    std::fs::write(org.path("webhook.secret"), format!("{SECRET}\n")).unwrap();
    format!(
        "[[alerts.webhook]]\nname = \"hook\"\nurl = \"{url}\"\nsecret_file = \"webhook.secret\"\nbackoff_initial_ms = \"20ms\"\nbackoff_max_ms = \"200ms\"\n{more}"
    )
}

/// The rules of [`setup`] with only a webhook sink (no file sink).
fn webhook_only(extra: &str, sink: &str) -> String {
    let rules = extra.split("[[alerts.file]]").next().unwrap();
    format!("{rules}{sink}")
}

/// How many times each alert id was taken; every taken alert checked against `want`.
fn taken_ids(
    r: &webhook::Receiver,
    account: &str,
    want: &BTreeMap<String, Value>,
) -> BTreeMap<String, usize> {
    let mut times = BTreeMap::new();
    for t in r.taken() {
        check_alert(&t.body, account, want);
        *times.entry(t.id).or_default() += 1;
    }
    times
}

fn wanted_ids(account: &str, want: &BTreeMap<String, Value>) -> HashSet<String> {
    want.keys().map(|e| alert_id(RULE, account, e)).collect()
}

#[test]
fn a_webhook_gets_every_alert_once_signed_beside_the_file_sink() {
    let org = Org::new();
    let (account, file, want, extra) = setup(&org, 51);
    let r = webhook::Receiver::start(SECRET.as_bytes());
    let extra = format!("{extra}{}", webhook_sink(&org, &r.url(), ""));
    let c = org.collector(0, &extra);
    let cfg = org.agent_config("agent", &account, "agent-a", &file, c.port);
    agent_drains(spawn_agent(&cfg), 120);
    procs::wait_until(Duration::from_secs(60), "every alert taken", || {
        r.taken().len() >= want.len() && alerts(&org).len() >= want.len()
    });
    let times = taken_ids(&r, &account, &want);
    assert!(
        r.bad().is_empty(),
        "every signature verifies: {:?}",
        r.bad()
    );
    assert_eq!(
        times.keys().cloned().collect::<HashSet<_>>(),
        wanted_ids(&account, &want)
    );
    assert!(times.values().all(|n| *n == 1), "each once: {times:?}");
    // The webhook's body is the file sink's line: the same payload.
    let lines: HashSet<String> = alerts(&org).iter().map(Value::to_string).collect();
    for t in r.taken() {
        assert!(lines.contains(&t.body.to_string()), "{}", t.body);
    }
    assert_eq!(r.requests(), want.len(), "no request beyond the alerts");
}

#[test]
fn an_https_webhook_with_a_private_ca_gets_every_alert() {
    use rustls::pki_types::pem::PemObject;
    let org = Org::new();
    let (account, file, want, extra) = setup(&org, 52);
    let chain: Vec<_> = rustls::pki_types::CertificateDer::pem_file_iter(org.path("server.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(org.path("server.key")).unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let r = webhook::Receiver::start_with(SECRET.as_bytes(), Some(std::sync::Arc::new(tls)));
    assert!(r.url().starts_with("https://127.0.0.1:"));
    let sink = webhook_sink(&org, &r.url(), "ca_file = \"ca/ca.pem\"\n");
    let c = org.collector(0, &webhook_only(&extra, &sink));
    let cfg = org.agent_config("agent", &account, "agent-a", &file, c.port);
    agent_drains(spawn_agent(&cfg), 120);
    procs::wait_until(Duration::from_secs(60), "every alert taken", || {
        r.taken().len() >= want.len()
    });
    let times = taken_ids(&r, &account, &want);
    assert_eq!(times.len(), want.len());
    assert!(r.bad().is_empty(), "{:?}", r.bad());
}

#[test]
fn killed_after_the_webhook_took_an_alert_it_comes_again_under_the_same_id() {
    let org = Org::new();
    let (account, file, want, extra) = setup(&org, 53);
    let r = webhook::Receiver::start(SECRET.as_bytes());
    let extra = webhook_only(&extra, &webhook_sink(&org, &r.url(), ""));
    crash::until_crash(&org, &extra, "alert-sent", &account, &file);
    // The receiver took exactly one alert before the kill (the outbox never noted it).
    let before = r.taken();
    assert_eq!(before.len(), 1, "one alert taken before the kill");
    let first = before[0].id.clone();
    // What the kill left stored (read offline, before a restart).
    let expect = org.keep_stored(want);
    let _c = org.collector(0, &extra);
    procs::wait_until(
        Duration::from_secs(60),
        "every alert taken after the restart",
        || r.taken().len() > expect.len(),
    );
    let times = taken_ids(&r, &account, &expect);
    assert_eq!(
        times.keys().cloned().collect::<HashSet<_>>(),
        wanted_ids(&account, &expect),
        "an alert for every matching stored event, no other"
    );
    assert_eq!(
        times[&first], 2,
        "the alert taken before the kill came again, same id"
    );
    assert!(
        times.iter().all(|(id, n)| *id == first || *n == 1),
        "every other alert once: {times:?}"
    );
    assert!(r.bad().is_empty(), "{:?}", r.bad());
}

#[test]
fn a_webhook_burst_stopped_cleanly_is_not_delivered_again_after_a_restart() {
    // A webhook's deliveries are noted per outbox read (not per alert), and what was taken
    // is noted at a clean stop: after a restart nothing goes again.
    let org = Org::new();
    let (account, file, mut want, extra) = setup(&org, 56);
    let r = webhook::Receiver::start(SECRET.as_bytes());
    let extra = webhook_only(&extra, &webhook_sink(&org, &r.url(), ""));
    let mut c = org.collector(0, &extra);
    let cfg = org.agent_config("agent", &account, "agent-a", &file, c.port);
    agent_drains(spawn_agent(&cfg), 120);
    procs::wait_until(Duration::from_secs(60), "every alert taken", || {
        r.taken().len() >= want.len()
    });
    org::sigterm(&mut c);
    // After the restart, one more matching event: delivery goes in outbox order, so an
    // alert of the first run still pending would be sent again before this one.
    let mut later = want.values().next().unwrap().clone();
    let later_id = "0badc0de-0000-4000-8000-000000000056";
    later["eventID"] = Value::from(later_id);
    let later_file = org.path("later.jsonl");
    std::fs::write(&later_file, format!("{later}\n")).unwrap();
    want.insert(later_id.to_owned(), later);
    let c = org.collector(0, &extra);
    let cfg = org.agent_config("agent-later", &account, "agent-a", &later_file, c.port);
    agent_drains(spawn_agent(&cfg), 120);
    let last = alert_id(RULE, &account, later_id);
    procs::wait_until(Duration::from_secs(60), "the later alert taken", || {
        r.taken().iter().any(|t| t.id == last)
    });
    let times = taken_ids(&r, &account, &want);
    assert_eq!(
        times.keys().cloned().collect::<HashSet<_>>(),
        wanted_ids(&account, &want)
    );
    assert!(
        times.values().all(|n| *n == 1),
        "nothing delivered twice across a clean stop: {times:?}"
    );
    assert!(r.bad().is_empty(), "{:?}", r.bad());
}

#[test]
fn a_failing_webhook_is_retried_and_never_holds_back_the_file_sink() {
    let org = Org::new();
    let (account, file, want, extra) = setup(&org, 54);
    let r = webhook::Receiver::start(SECRET.as_bytes());
    // Server faults first (retried with backoff; max_attempts is far off)...
    r.always(503);
    let extra = format!(
        "{extra}{}",
        webhook_sink(&org, &r.url(), "max_attempts = 1000\n")
    );
    let c = org.collector(0, &extra);
    let cfg = org.agent_config("agent", &account, "agent-a", &file, c.port);
    agent_drains(spawn_agent(&cfg), 120);
    // ...while the file sink, with a loop of its own, gets every alert.
    procs::wait_until(
        Duration::from_secs(60),
        "the file sink gets every alert",
        || alerts(&org).len() >= want.len(),
    );
    assert!(r.requests() >= 2, "the webhook was tried, and tried again");
    assert!(r.taken().is_empty());
    // Then the receiver fails three more requests (500) and recovers: every alert arrives,
    // each once.
    r.fail_next(3, 500);
    r.always(0);
    procs::wait_until(Duration::from_secs(60), "every alert taken", || {
        r.taken().len() >= want.len()
    });
    let times = taken_ids(&r, &account, &want);
    assert_eq!(
        times.keys().cloned().collect::<HashSet<_>>(),
        wanted_ids(&account, &want)
    );
    assert!(times.values().all(|n| *n == 1), "{times:?}");
    assert_eq!(alerts(&org).len(), want.len(), "the file sink: each once");
}

/// How many alert deliveries the collector has given up (dead-lettered), from its log.
fn given_up(org: &Org) -> usize {
    std::fs::read_to_string(org.path("collector.stderr"))
        .unwrap()
        .matches("alert delivery given up")
        .count()
}

/// The lines of `orgtrail alerts dead-letters` (with `more` flags): (stdout lines, stderr).
fn dead_letters(org: &Org, more: &[&str]) -> (std::process::Output, Vec<String>) {
    let data = org::p(&org.path("data"));
    let keys = org::p(&org.path("keys"));
    let mut args = vec![
        "alerts",
        "dead-letters",
        "--data-dir",
        &data,
        "--keys",
        &keys,
    ];
    args.extend_from_slice(more);
    let out = common::run(&args, b"");
    let lines = common::stdout(&out).lines().map(str::to_owned).collect();
    (out, lines)
}

#[test]
fn a_webhook_that_keeps_failing_dead_letters_and_retry_delivers_them() {
    let org = Org::new();
    let (account, file, want, extra) = setup(&org, 55);
    let r = webhook::Receiver::start(SECRET.as_bytes());
    r.always(500);
    let extra = webhook_only(&extra, &webhook_sink(&org, &r.url(), "max_attempts = 2\n"));
    let mut c = org.collector(0, &extra);
    let cfg = org.agent_config("agent", &account, "agent-a", &file, c.port);
    agent_drains(spawn_agent(&cfg), 120);
    // Each alert: two attempts and a durable write; generous for a loaded machine.
    procs::wait_until(
        Duration::from_secs(180),
        "every alert dead-lettered",
        || given_up(&org) >= want.len(),
    );
    let log = std::fs::read_to_string(org.path("collector.stderr")).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("alert delivery given up"))
        .unwrap();
    for part in [
        "alert=",
        "rule=watched-call",
        "sink=hook",
        "attempts=2",
        "HTTP 500",
    ] {
        assert!(line.contains(part), "{line}");
    }
    assert_eq!(r.requests(), 2 * want.len(), "two attempts each");
    // Not while the collector runs on the store.
    let (out, _) = dead_letters(&org, &[]);
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("in use"),
        "{}",
        common::stderr(&out)
    );
    org::sigterm(&mut c);
    drop(c);
    let (out, lines) = dead_letters(&org, &[]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(lines.len(), want.len(), "{lines:?}");
    let ids: HashSet<String> = lines
        .iter()
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert_eq!(cols[1], RULE, "{l}");
            assert_eq!(cols[2], "hook", "{l}");
            assert!(cols[3].parse::<u64>().is_ok(), "{l}");
            assert_eq!(cols[4], "2", "{l}");
            assert!(cols[6].starts_with("HTTP 500"), "{l}");
            cols[0].to_owned()
        })
        .collect();
    assert_eq!(ids, wanted_ids(&account, &want));
    // Only another sink's: none.
    let (_, none) = dead_letters(&org, &["--sink", "other"]);
    assert!(none.is_empty());
    // Re-driven with the receiver healthy: each delivered once, under the same id.
    let (out, moved) = dead_letters(&org, &["--retry", "--sink", "hook"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(moved.len(), want.len());
    assert!(dead_letters(&org, &[]).1.is_empty(), "none left");
    r.always(0);
    let _c = org.collector(0, &extra);
    procs::wait_until(
        Duration::from_secs(180),
        "every re-driven alert taken",
        || r.taken().len() >= want.len(),
    );
    let times = taken_ids(&r, &account, &want);
    assert_eq!(times.keys().cloned().collect::<HashSet<_>>(), ids);
    assert!(times.values().all(|n| *n == 1), "{times:?}");
}

#[test]
fn a_webhook_without_its_secret_refuses_to_start_naming_the_file() {
    let org = Org::new();
    std::fs::create_dir(org.path("rules")).unwrap();
    let sink = "[[alerts.webhook]]\nname = \"hook\"\nurl = \"https://alerts.example/x\"\nsecret_file = \"missing.secret\"\n";
    let cfg = org.collector_config(0, &format!("[rules]\npacks = [\"cis\"]\n{sink}"));
    let out = common::run(&["collector", "--config", &org::p(&cfg)], b"");
    assert!(!out.status.success());
    let err = common::stderr(&out);
    assert!(
        err.contains("secret_file") && err.contains("missing.secret"),
        "{err}"
    );
    // Empty: refused too.
    std::fs::write(org.path("missing.secret"), "\n").unwrap();
    let out = common::run(&["collector", "--config", &org::p(&cfg)], b"");
    assert!(!out.status.success());
    let err = common::stderr(&out);
    assert!(
        err.contains("missing.secret") && err.contains("is empty"),
        "{err}"
    );
}

#[test]
fn a_webhook_refusing_with_400_dead_letters_each_alert_after_one_attempt() {
    let org = Org::new();
    let (account, file, want, extra) = setup(&org, 56);
    let r = webhook::Receiver::start(SECRET.as_bytes());
    // A client error: the same bytes would be refused again, so no retries (max_attempts
    // stays at its default of 10).
    r.always(400);
    let extra = webhook_only(&extra, &webhook_sink(&org, &r.url(), ""));
    let mut c = org.collector(0, &extra);
    let cfg = org.agent_config("agent", &account, "agent-a", &file, c.port);
    agent_drains(spawn_agent(&cfg), 120);
    procs::wait_until(
        Duration::from_secs(180),
        "every alert dead-lettered",
        || given_up(&org) >= want.len(),
    );
    assert_eq!(r.requests(), want.len(), "one attempt each, never retried");
    org::sigterm(&mut c);
    drop(c);
    let (out, lines) = dead_letters(&org, &[]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let ids: HashSet<String> = lines
        .iter()
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert_eq!(cols[4], "1", "one attempt: {l}");
            assert!(cols[6].starts_with("HTTP 400"), "{l}");
            cols[0].to_owned()
        })
        .collect();
    assert_eq!(ids, wanted_ids(&account, &want));
}

#[test]
fn a_webhook_asking_to_retry_after_n_seconds_is_not_tried_again_sooner() {
    let org = Org::new();
    let (account, file, want, extra) = setup(&org, 57);
    let r = webhook::Receiver::start(SECRET.as_bytes());
    // The first request is answered 429 with Retry-After: 2, far above the backoff of 20 ms
    // (and within the longest wait, 5 s, which caps it).
    r.retry_after(2);
    r.fail_next(1, 429);
    let extra = webhook_only(
        &extra,
        &webhook_sink(&org, &r.url(), "")
            .replace("backoff_max_ms = \"200ms\"", "backoff_max_ms = \"5s\""),
    );
    let c = org.collector(0, &extra);
    let cfg = org.agent_config("agent", &account, "agent-a", &file, c.port);
    agent_drains(spawn_agent(&cfg), 120);
    procs::wait_until(Duration::from_secs(60), "every alert taken", || {
        r.taken().len() >= want.len()
    });
    let arrivals = r.arrivals();
    let waited = arrivals[1] - arrivals[0];
    assert!(
        waited >= Duration::from_secs(2),
        "the second attempt came {waited:?} after the 429, before Retry-After's 2 s"
    );
    let times = taken_ids(&r, &account, &want);
    assert_eq!(
        times.keys().cloned().collect::<HashSet<_>>(),
        wanted_ids(&account, &want)
    );
    assert!(times.values().all(|n| *n == 1), "{times:?}");
}
