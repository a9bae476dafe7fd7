//! Alerts read remotely: `orgtrail alerts list` and `orgtrail alerts follow` against a real
//! collector over mutual TLS, with its rules firing on events a real agent shipped. What a
//! reader sees is exactly what the collector's file sink received, alert for alert and byte
//! for byte of JSON, under the same ids; only auditor and admin certificates may read it; an
//! auditor limited to accounts sees only theirs; the history survives a restart (and the
//! removal of the rule that fired), and a follower resumes across a restart without missing
//! or repeating an alert.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/org.rs"]
mod org;
#[path = "common/procs.rs"]
mod procs;

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use org::{Collector, Org, sigterm};
use serde_json::Value;

const RULE: &str = "watched-call";
const SINK_AND_RULES: &str =
    "[rules]\ndir = \"rules\"\n[[alerts.file]]\nname = \"log\"\npath = \"alerts.jsonl\"\n";

/// Generated events of one account in two files (the first and second half of the stream),
/// a rule on the call they hold most often, and the eventIDs it must fire on in each half.
struct Setup {
    account: String,
    halves: [PathBuf; 2],
    want: [BTreeSet<String>; 2],
}

fn setup(org: &Org, seed: u64) -> Setup {
    let (account, file, _) = org::events(org, "events", 2000, seed);
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let parsed: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let call = |e: &Value| {
        (
            e["eventSource"].as_str().unwrap().to_owned(),
            e["eventName"].as_str().unwrap().to_owned(),
        )
    };
    let mut counts = std::collections::BTreeMap::new();
    for e in &parsed {
        *counts.entry(call(e)).or_insert(0usize) += 1;
    }
    let (source, name) = counts.into_iter().max_by_key(|(_, n)| *n).unwrap().0;
    let mid = lines.len() / 2;
    let mut seen = HashSet::new();
    let mut want: [BTreeSet<String>; 2] = Default::default();
    for (i, e) in parsed.iter().enumerate() {
        let id = e["eventID"].as_str().unwrap().to_owned();
        if call(e) == (source.clone(), name.clone()) && seen.insert(id.clone()) {
            want[usize::from(i >= mid)].insert(id);
        }
    }
    assert!(
        !want[0].is_empty() && !want[1].is_empty(),
        "the rule fires in both halves"
    );
    let halves = [org.path("first.jsonl"), org.path("second.jsonl")];
    std::fs::write(&halves[0], lines[..mid].join("\n") + "\n").unwrap();
    std::fs::write(&halves[1], lines[mid..].join("\n") + "\n").unwrap();
    std::fs::create_dir(org.path("rules")).unwrap();
    std::fs::write(
        org.path("rules/watched.json"),
        serde_json::json!({
            "id": RULE, "name": "A watched call", "severity": "high",
            "pattern": {"eventSource": [source], "eventName": [name]}
        })
        .to_string(),
    )
    .unwrap();
    org.issue("agent-a", "agent", Some(&account));
    org.issue("auditor", "auditor", None);
    Setup {
        account,
        halves,
        want,
    }
}

/// Ships a file with its own agent spool and waits until it is acknowledged.
fn ship(org: &Org, c: &Collector, s: &Setup, half: usize) {
    let cfg = org.agent_config(
        &format!("ship{half}"),
        &s.account,
        "agent-a",
        &s.halves[half],
        c.port,
    );
    org::agent_drains(org::spawn_agent(&cfg), 120);
}

/// What the file sink received, in order.
fn sink(org: &Org) -> Vec<Value> {
    std::fs::read_to_string(org.path("alerts.jsonl"))
        .unwrap_or_default()
        // Whole lines only: the sink may be in the middle of appending one.
        .split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn wait_for_sink(org: &Org, n: usize) {
    procs::wait_until(
        Duration::from_secs(60),
        "the sink received every alert",
        || sink(org).len() >= n,
    );
    assert_eq!(sink(org).len(), n, "one alert per matching stored event");
}

/// `orgtrail alerts list ARGS` with `cert`: (success, stdout, stderr).
fn list(org: &Org, c: &Collector, cert: &str, args: &[&str]) -> (bool, String, String) {
    let mut all: Vec<String> = vec!["alerts".into(), "list".into()];
    all.extend(org.reader_args(c, cert));
    all.extend(args.iter().map(|s| (*s).to_owned()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let out = common::run(&all, b"");
    (
        out.status.success(),
        common::stdout(&out),
        common::stderr(&out),
    )
}

/// The alerts a list prints as JSON lines.
fn listed(org: &Org, c: &Collector, cert: &str, args: &[&str]) -> Vec<Value> {
    let mut a = vec!["--output", "jsonl"];
    if !args.contains(&"--limit") {
        a.extend(["--limit", "100000"]);
    }
    a.extend_from_slice(args);
    let (ok, out, err) = list(org, c, cert, &a);
    assert!(ok, "alerts list {args:?}: {err}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn ids(alerts: &[Value]) -> Vec<String> {
    alerts
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn an_auditor_lists_exactly_what_the_sink_received_and_an_agent_is_refused() {
    let org = Org::new();
    let s = setup(&org, 61);
    let c = org.collector(0, SINK_AND_RULES);
    ship(&org, &c, &s, 0);
    ship(&org, &c, &s, 1);
    let n = s.want[0].len() + s.want[1].len();
    wait_for_sink(&org, n);
    let received = sink(&org);

    // Newest first: the sink's alerts in reverse, each one whole (envelope, id, rule id,
    // name and severity, the record as stored).
    let mut all = listed(&org, &c, "auditor", &[]);
    all.reverse();
    assert_eq!(all, received, "the list is exactly what the sink received");
    let events: BTreeSet<String> = all
        .iter()
        .map(|a| a["detail"]["eventID"].as_str().unwrap().to_owned())
        .collect();
    let want: BTreeSet<String> = s.want[0].union(&s.want[1]).cloned().collect();
    assert_eq!(events, want);
    assert!(all.iter().all(|a| a["rule-id"] == RULE
        && a["rule-name"] == "A watched call"
        && a["severity"] == "high"
        && a["account"] == s.account.as_str()));

    // Filters.
    let newest: Vec<String> = ids(&received).into_iter().rev().take(2).collect();
    assert_eq!(ids(&listed(&org, &c, "auditor", &["--limit", "2"])), newest);
    assert_eq!(listed(&org, &c, "auditor", &["--rule", RULE]).len(), n);
    assert!(listed(&org, &c, "auditor", &["--rule", "other"]).is_empty());
    assert_eq!(
        listed(&org, &c, "auditor", &["--severity", "high"]).len(),
        n
    );
    assert!(listed(&org, &c, "auditor", &["--severity", "low"]).is_empty());
    assert_eq!(
        listed(&org, &c, "auditor", &["--account", &s.account]).len(),
        n
    );
    assert!(listed(&org, &c, "auditor", &["--account", "999999999999"]).is_empty());
    assert_eq!(listed(&org, &c, "auditor", &["--since", "1h"]).len(), n);
    assert!(listed(&org, &c, "auditor", &["--until", "2001-01-01T00:00:00Z"]).is_empty());
    assert!(listed(&org, &c, "auditor", &["--since", "2999-01-01T00:00:00Z"]).is_empty());

    // The table: one row per alert, with the rule, severity, account and alert id.
    let (ok, table, err) = list(&org, &c, "auditor", &["--limit", "3"]);
    assert!(ok, "{err}");
    let rows: Vec<&str> = table.lines().collect();
    assert!(
        rows[0].starts_with("RECORDED") && rows[0].contains("ALERT ID"),
        "{table}"
    );
    assert_eq!(rows.len(), 5, "header, 3 rows, count: {table}");
    assert!(rows[1].contains(RULE) && rows[1].contains("high") && rows[1].contains(&newest[0]));
    assert_eq!(rows[4], "(3 alerts)");

    // An auditor limited to another account sees none of them, and may not ask for them.
    org.issue("auditor-b", "auditor", Some("999999999999"));
    assert!(listed(&org, &c, "auditor-b", &[]).is_empty());
    let (ok, _, err) = list(&org, &c, "auditor-b", &["--account", &s.account]);
    assert!(!ok);
    assert!(err.contains("may read account 999999999999"), "{err}");

    // An agent certificate may not read alerts.
    let (ok, out, err) = list(&org, &c, "agent-a", &[]);
    assert!(!ok && out.is_empty());
    assert!(
        err.contains("refused")
            && err.contains("only auditor and admin certificates may read alerts"),
        "{err}"
    );
}

/// An `orgtrail alerts follow --output jsonl` that has started following.
struct Follow {
    child: Child,
    out: procs::Lines,
    err: procs::Lines,
}

impl Follow {
    fn start(org: &Org, c: &Collector, cert: &str) -> Follow {
        let mut child = common::orgtrail()
            .args(["alerts", "follow", "--output", "jsonl"])
            .args(org.reader_args(c, cert))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = procs::Lines::drain(child.stdout.take().unwrap());
        let err = procs::Lines::drain(child.stderr.take().unwrap());
        err.wait_for(&["following alerts"], Duration::from_secs(60));
        Follow { child, out, err }
    }

    /// The alerts printed so far, once there are `n`.
    fn wait(&self, n: usize) -> Vec<Value> {
        procs::wait_until(
            Duration::from_secs(60),
            "the follower printed the alerts",
            || self.out.text().lines().count() >= n,
        );
        self.out
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn follow_prints_new_alerts_resumes_across_a_restart_and_the_history_survives() {
    let org = Org::new();
    let s = setup(&org, 62);
    // Restarted on the same port below: one the kernel never hands to a connection meanwhile.
    let mut c = org.collector(common::quiet_port(), SINK_AND_RULES);
    let port = c.port;
    // Started before any event: every alert is new to it.
    let early = Follow::start(&org, &c, "auditor");
    ship(&org, &c, &s, 0);
    let n0 = s.want[0].len();
    wait_for_sink(&org, n0);
    let got = early.wait(n0);
    assert_eq!(
        got,
        sink(&org),
        "the follower printed what the sink received"
    );

    // A restart: the follower reconnects and resumes; the history is still there.
    sigterm(&mut c);
    drop(c);
    let c = org.collector(port, SINK_AND_RULES);
    assert_eq!(
        {
            let mut l = listed(&org, &c, "auditor", &[]);
            l.reverse();
            l
        },
        sink(&org),
        "delivered alerts stay listed after a restart"
    );
    early
        .err
        .wait_for(&["reconnected to"], Duration::from_secs(60));
    // Started after the first alerts: it shows only those recorded from now on.
    let late = Follow::start(&org, &c, "auditor");
    ship(&org, &c, &s, 1);
    let n = n0 + s.want[1].len();
    wait_for_sink(&org, n);
    let received = sink(&org);
    assert_eq!(
        early.wait(n),
        received,
        "across the restart nothing was missed or printed twice"
    );
    assert_eq!(late.wait(s.want[1].len()), received[n0..].to_vec());
    let second: BTreeSet<String> = received[n0..]
        .iter()
        .map(|a| a["detail"]["eventID"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(second, s.want[1]);
    let mut all = listed(&org, &c, "auditor", &[]);
    all.reverse();
    assert_eq!(all, received);
    // Nothing more arrived than the sink received.
    assert_eq!(early.out.text().lines().count(), n);
    assert_eq!(late.out.text().lines().count(), s.want[1].len());
    drop((early, late));

    // The rule removed (another in its place): its alerts stay listed under their ids and
    // rule id, without the name and severity only the rule knew.
    let mut c = c;
    sigterm(&mut c);
    drop(c);
    std::fs::write(
        org.path("rules/watched.json"),
        r#"{"id": "another", "severity": "low", "pattern": {"eventName": ["NothingLikeThis"]}}"#,
    )
    .unwrap();
    let c = org.collector(0, SINK_AND_RULES);
    let mut after = listed(&org, &c, "auditor", &[]);
    after.reverse();
    assert_eq!(ids(&after), ids(&received));
    for (a, r) in after.iter().zip(&received) {
        assert_eq!(a["rule-id"], RULE);
        assert_eq!(a["detail"], r["detail"]);
        assert!(
            a.get("severity").is_none() && a.get("rule-name").is_none(),
            "{a}"
        );
    }
    assert_eq!(listed(&org, &c, "auditor", &["--rule", RULE]).len(), n);
    assert!(listed(&org, &c, "auditor", &["--severity", "high"]).is_empty());
}

#[test]
fn an_agent_may_not_follow_alerts() {
    let org = Org::new();
    org.issue("agent-a", "agent", Some("111122223333"));
    std::fs::create_dir(org.path("rules")).unwrap();
    let c = org.collector(0, SINK_AND_RULES);
    let out = common::orgtrail()
        .args(["alerts", "follow"])
        .args(org.reader_args(&c, "agent-a"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = common::stderr(&out);
    assert!(
        err.contains("only auditor and admin certificates may read alerts"),
        "{err}"
    );
}

#[test]
fn a_follower_whose_certificate_is_revoked_is_cut_off() {
    let org = Org::new();
    org.issue("auditor", "auditor", None);
    std::fs::create_dir(org.path("rules")).unwrap();
    let revoked = org.path("revoked.txt");
    std::fs::write(&revoked, "# nobody yet\n").unwrap();
    let c = org.collector(0, &format!("revoked = \"revoked.txt\"\n{SINK_AND_RULES}"));
    let mut follow = Follow::start(&org, &c, "auditor");
    let pem = std::fs::read_to_string(org.path("auditor.pem")).unwrap();
    let id = orgtrail_crypto::certs::identity_from_der(
        &orgtrail_crypto::certs::pem_to_der(&pem).unwrap(),
    )
    .unwrap();
    std::fs::write(&revoked, format!("{}  # lost laptop\n", id.serial)).unwrap();
    let status = procs::wait_exit(&mut follow.child, Duration::from_secs(60), &follow.err);
    assert!(!status.success());
    let err = follow
        .err
        .wait_for(&["is revoked"], Duration::from_secs(60));
    assert!(err.contains(&id.serial), "{err}");
}
