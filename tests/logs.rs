//! The logs of the real collector and agent processes: `--log-format json` (and
//! `ORGTRAIL_LOG_FORMAT`) writes one JSON object per line with level, target and fields; the
//! ingest path logs its steps in spans carrying the account and counts; each process logs a
//! one-line summary with the counts of its run when it stops; no event content (eventIDs,
//! ARNs, user names) ever reaches a log; text logs written to a pipe carry no ANSI colours.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/org.rs"]
mod org;
#[path = "common/procs.rs"]
mod procs;

use std::collections::HashSet;
use std::process::Stdio;
use std::time::Duration;

use common::orgtrail;
use org::{Org, events, p, sigterm};
use procs::{Lines, wait_exit};
use serde_json::Value;

const WITHIN: Duration = Duration::from_secs(60);

/// Every line parses as a JSON object with a level, a target and fields; returns them.
fn json_lines(who: &str, text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{who}: a log line is not JSON ({e}): {l}"));
            assert!(v.is_object(), "{who}: not an object: {l}");
            assert!(v["level"].is_string(), "{who}: no level: {l}");
            assert!(v["target"].is_string(), "{who}: no target: {l}");
            assert!(v["fields"].is_object(), "{who}: no fields: {l}");
            v
        })
        .collect()
}

/// The one line whose message is `message`.
fn the_line<'a>(who: &str, lines: &'a [Value], message: &str) -> &'a Value {
    let found: Vec<&Value> = lines
        .iter()
        .filter(|v| v["fields"]["message"] == message)
        .collect();
    assert_eq!(found.len(), 1, "{who}: one {message:?} line: {found:?}");
    found[0]
}

#[test]
fn json_logs_are_json_lines_with_spans_and_a_stop_summary_and_no_event_content() {
    let org = Org::new();
    let (account, file, unique) = events(&org, "a", 300, 41);
    let text = std::fs::read_to_string(&file).unwrap();
    let lines = text.lines().count() as u64;
    let unique_n = unique.len() as u64;
    assert!(lines > unique_n, "the file holds duplicates");
    org.issue("agent-a", "agent", Some(&account));

    // The collector by flag, the agent by environment variable.
    let mut collector = org.collector_with(0, "", true, |c| {
        c.args(["--log-format", "json"]).env(
            "ORGTRAIL_LOG",
            "info,orgtrail_collector=debug,orgtrail_store=info",
        );
    });
    let clog = Lines::collect(collector.log.take().unwrap());
    let cfg = org.agent_config("agent", &account, "agent-a", &file, collector.port);
    let mut agent = orgtrail()
        .args(["agent", "--config", &p(&cfg), "--exit-when-drained"])
        .env("ORGTRAIL_LOG_FORMAT", "json")
        .env("ORGTRAIL_LOG", "info,orgtrail_agent=debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let aout = Lines::drain(agent.stdout.take().unwrap());
    let alog = Lines::drain(agent.stderr.take().unwrap());
    let status = wait_exit(&mut agent, WITHIN, &alog);
    assert!(status.success(), "the agent failed: {}", alog.text());
    sigterm(&mut collector);
    // The summary is the collector's last line; the agent's comes before it exits.
    clog.wait_for(&["collector stopped cleanly"], WITHIN);
    alog.wait_for(&["agent stopped"], WITHIN);

    let ctext = clog.text();
    let atext = alog.text();
    let c = json_lines("collector", &ctext);
    let a = json_lines("agent", &atext);

    // The stop summaries, with the counts of this run as fields.
    let cs = &the_line("collector", &c, "collector stopped cleanly")["fields"];
    assert_eq!(cs["received"], lines, "{cs}");
    assert_eq!(cs["stored"], unique_n, "{cs}");
    assert_eq!(cs["duplicates"], lines - unique_n, "{cs}");
    assert_eq!(cs["conflicts"], 0, "{cs}");
    assert_eq!(cs["rejected"], 0, "{cs}");
    assert!(cs["uptime_secs"].is_u64(), "{cs}");
    let s = &the_line("agent", &a, "agent stopped")["fields"];
    assert_eq!(s["read"], lines, "{s}");
    assert_eq!(s["shipped"], lines, "{s}");
    assert_eq!(s["duplicates"], lines - unique_n, "{s}");
    assert_eq!(s["dead_lettered"], 0, "{s}");
    // The same summaries on standard output, for people and scripts.
    aout.wait_for(
        &[&format!(
            "orgtrail agent: shipped={lines} duplicates={} conflicts=0 rejected=0 dead_lettered=0 read={lines}",
            lines - unique_n
        )],
        WITHIN,
    );

    // The ingest path's steps, each in a `batch` span naming the account and the counts.
    for step in [
        "batch received",
        "batch prepared",
        "batch stored",
        "batch acknowledged",
    ] {
        let line = c
            .iter()
            .find(|v| v["fields"]["message"] == step)
            .unwrap_or_else(|| panic!("the collector logs {step:?}:\n{ctext}"));
        assert_eq!(line["span"]["name"], "batch", "{line}");
        assert_eq!(line["span"]["account"], account.as_str(), "{line}");
        assert!(line["span"]["events"].is_u64(), "{line}");
        assert!(line["span"]["batch_id"].is_u64(), "{line}");
    }
    let committed: u64 = c
        .iter()
        .filter(|v| v["fields"]["message"] == "batch acknowledged")
        .map(|v| {
            v["fields"]["stored"].as_u64().unwrap() + v["fields"]["duplicates"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(committed, lines, "every event acknowledged in some batch");
    for step in ["batch sent", "batch acknowledged"] {
        let line = a
            .iter()
            .find(|v| v["fields"]["message"] == step)
            .unwrap_or_else(|| panic!("the agent logs {step:?}:\n{atext}"));
        assert_eq!(line["span"]["name"], "ship", "{line}");
        assert_eq!(line["span"]["account"], account.as_str(), "{line}");
    }

    // No event content anywhere: sampled eventIDs, ARNs and user names.
    let mut secrets = HashSet::new();
    for l in unique.iter().step_by(7) {
        let e: Value = serde_json::from_str(l).unwrap();
        secrets.insert(e["eventID"].as_str().unwrap().to_string());
        for v in [&e["userIdentity"]["arn"], &e["userIdentity"]["userName"]] {
            if let Some(s) = v.as_str() {
                secrets.insert(s.to_string());
            }
        }
    }
    assert!(secrets.len() > 40, "a fair sample: {}", secrets.len());
    assert!(
        secrets.iter().any(|s| s.starts_with("arn:aws:")),
        "the sample holds ARNs"
    );
    for s in &secrets {
        assert!(!ctext.contains(s.as_str()), "the collector logged {s}");
        assert!(!atext.contains(s.as_str()), "the agent logged {s}");
    }
}

#[test]
fn text_logs_to_a_pipe_have_no_colours() {
    let org = Org::new();
    let mut collector = org.collector_with(0, "", true, |c| {
        // Colours are off because standard error is a pipe, not because of NO_COLOR.
        c.env_remove("NO_COLOR").env("ORGTRAIL_LOG", "info");
    });
    let log = Lines::collect(collector.log.take().unwrap());
    log.wait_for(&["collector listening"], WITHIN);
    sigterm(&mut collector);
    let last = log.wait_for(&["collector stopped cleanly"], WITHIN);
    assert!(last.contains(" INFO "), "a text line: {last}");
    assert!(last.contains("stored=0"), "with its counts: {last}");
    let text = log.text();
    assert!(
        !text.contains('\u{1b}'),
        "no ANSI escape in a piped log:\n{text:?}"
    );
}
