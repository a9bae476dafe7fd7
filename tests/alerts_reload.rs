//! Rules reloaded while the collector runs: a rule file added to `[rules] dir` fires on the
//! events stored after it (not on those already evaluated), without a restart; a broken file is
//! refused whole (logged with its file, counted as refused) and the rules in force keep firing;
//! SIGHUP reloads at once, and the collector goes on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/org.rs"]
mod org;
#[path = "common/procs.rs"]
mod procs;
#[path = "common/prom.rs"]
mod prom;

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use org::{Collector, Org, agent_drains, events, spawn_agent};
use serde_json::Value;

const WITHIN: Duration = Duration::from_secs(60);

/// Writes a rule file aside and renames it in, as an editor or a deployment would (a poll
/// never sees it half written).
fn put(org: &Org, file: &str, text: &str) {
    let tmp = org.path(&format!("rules/.{file}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, org.path(&format!("rules/{file}"))).unwrap();
}

fn rule(org: &Org, file: &str, id: &str, e: &Value) {
    put(
        org,
        file,
        &serde_json::json!({
            "id": id,
            "pattern": {"eventSource": [e["eventSource"]], "eventName": [e["eventName"]]}
        })
        .to_string(),
    );
}

/// The alerts delivered so far: (rule id, eventID).
fn alerts(org: &Org) -> BTreeSet<(String, String)> {
    std::fs::read_to_string(org.path("alerts.jsonl"))
        .unwrap_or_default()
        // Whole lines only: the sink may be in the middle of appending one.
        .split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n'))
        .map(|l| {
            let a: Value = serde_json::from_str(l).unwrap();
            (
                a["rule-id"].as_str().unwrap().to_owned(),
                a["detail"]["eventID"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn metric(c: &Collector, name: &str, labels: &[(&str, &str)]) -> f64 {
    prom::scrape(c.ops.as_deref().unwrap())
        .get(name, labels)
        .unwrap_or(0.0)
}

fn reloads(c: &Collector, outcome: &str) -> f64 {
    metric(
        c,
        "orgtrail_collector_rules_reloads_total",
        &[("outcome", outcome)],
    )
}

/// The alerts `rules` (id, event to match) fire on `events`.
fn fired(rules: &[(&str, &Value)], events: &[Value]) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (id, r) in rules {
        for e in events {
            if e["eventName"] == r["eventName"] && e["eventSource"] == r["eventSource"] {
                out.insert((id.to_string(), e["eventID"].as_str().unwrap().to_owned()));
            }
        }
    }
    out
}

#[test]
fn rules_reload_on_change_and_sighup_and_a_broken_set_keeps_the_old_one() {
    let org = Org::new();
    let (account, file, _) = events(&org, "events", 3000, 61);
    org.issue("agent-a", "agent", Some(&account));
    // Three parts shipped one after the other; each part's events new to the store.
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut seen = HashSet::new();
    let mut parts: Vec<Vec<Value>> = Vec::new();
    let mut files = Vec::new();
    for (i, chunk) in lines.chunks(lines.len().div_ceil(3)).enumerate() {
        let path = org.path(&format!("part{i}.jsonl"));
        std::fs::write(&path, chunk.join("\n") + "\n").unwrap();
        files.push(path);
        parts.push(
            chunk
                .iter()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .filter(|e| seen.insert(e["eventID"].as_str().unwrap().to_owned()))
                .collect(),
        );
    }
    // Rule a: the first event's call. Rule b, added later: another call present in every part.
    let a = parts[0][0].clone();
    let call = |e: &Value| (e["eventSource"].clone(), e["eventName"].clone());
    let b = parts[0]
        .iter()
        .find(|e| {
            call(e) != call(&a)
                && parts[1..]
                    .iter()
                    .all(|p| p.iter().any(|x| call(x) == call(e)))
        })
        .expect("a second call in every part")
        .clone();
    std::fs::create_dir(org.path("rules")).unwrap();
    rule(&org, "a.json", "a", &a);
    let mut c = org.collector(
        0,
        "[ops]\nlisten = \"127.0.0.1:0\"\n[rules]\ndir = \"rules\"\npoll_ms = \"200ms\"\n[[alerts.file]]\nname = \"log\"\npath = \"alerts.jsonl\"\n",
    );
    let ship = |i: usize| {
        let cfg = org.agent_config(&format!("agent{i}"), &account, "agent-a", &files[i], c.port);
        agent_drains(spawn_agent(&cfg), 120);
    };
    let wait_alerts = |want: &BTreeSet<(String, String)>, what: &str| {
        procs::wait_until(WITHIN, what, || alerts(&org).len() >= want.len());
        assert_eq!(&alerts(&org), want, "{what}");
    };
    assert_eq!(
        metric(&c, "orgtrail_collector_rules_loaded", &[]),
        1.0,
        "one rule at start"
    );

    ship(0);
    let mut want = fired(&[("a", &a)], &parts[0]);
    wait_alerts(&want, "rule a on part 0");

    // Rule b added: reloaded without a restart, it fires on what is stored from now on.
    rule(&org, "b.json", "b", &b);
    procs::wait_until(WITHIN, "the new rule loaded", || reloads(&c, "ok") == 1.0);
    assert_eq!(metric(&c, "orgtrail_collector_rules_loaded", &[]), 2.0);
    ship(1);
    want.extend(fired(&[("a", &a), ("b", &b)], &parts[1]));
    wait_alerts(&want, "rules a and b on part 1, b not on part 0");

    // A broken file: the whole set is refused, named in the log; a and b go on firing.
    put(
        &org,
        "broken.json",
        r#"{"id": "broken", "pattern": {"eventName": []}}"#,
    );
    procs::wait_until(WITHIN, "the broken set refused", || {
        reloads(&c, "refused") == 1.0
    });
    let log = std::fs::read_to_string(org.path("collector.stderr")).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("rule file refused"))
        .unwrap_or_else(|| panic!("the refusal is logged:\n{log}"));
    assert!(
        line.contains("broken.json") && line.contains("an empty array"),
        "{line}"
    );
    assert_eq!(metric(&c, "orgtrail_collector_rules_loaded", &[]), 2.0);
    ship(2);
    want.extend(fired(&[("a", &a), ("b", &b)], &parts[2]));
    wait_alerts(&want, "the rules in force on part 2");

    // Fixed: reloaded on the change. Then SIGHUP reloads at once though nothing changed.
    std::fs::remove_file(org.path("rules/broken.json")).unwrap();
    procs::wait_until(WITHIN, "the fixed set loaded", || reloads(&c, "ok") == 2.0);
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &c.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    procs::wait_until(WITHIN, "SIGHUP reloaded", || reloads(&c, "ok") == 3.0);
    assert!(
        c.child.try_wait().unwrap().is_none(),
        "SIGHUP does not stop the collector"
    );
    let log = std::fs::read_to_string(org.path("collector.stderr")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("rules reloaded") && l.contains("SIGHUP")),
        "{log}"
    );
    assert_eq!(reloads(&c, "refused"), 1.0);
    org::sigterm(&mut c);
}

#[test]
fn without_rules_a_sighup_is_logged_and_the_collector_goes_on() {
    let org = Org::new();
    let mut c = org.collector(0, "");
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &c.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    procs::wait_until(WITHIN, "the SIGHUP logged", || {
        std::fs::read_to_string(org.path("collector.stderr"))
            .unwrap()
            .contains("SIGHUP: no [rules] configured, nothing to reload")
    });
    assert!(
        c.child.try_wait().unwrap().is_none(),
        "SIGHUP does not stop the collector"
    );
    org::sigterm(&mut c);
}
