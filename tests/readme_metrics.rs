//! The README's metric tables ("Deploy", "Health and metrics: the ops listener") against what
//! the real collector and agent serve on `/metrics` after a run with a rejected event and a
//! checkpoint: the same metric names with the same types, and every label and every reason or
//! stage value the processes use is one the README lists.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/org.rs"]
mod org;
#[path = "common/procs.rs"]
mod procs;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use common::{http, run, stderr};
use org::{Org, events, p};
use procs::wait_until;

const OPS: &str = "[ops]\nlisten = \"127.0.0.1:0\"\n";
const WITHIN: Duration = Duration::from_secs(60);

/// A row of a README metric table: (name, type, the backticked words of its labels cell).
type Row = (String, String, BTreeSet<String>);

fn readme_rows(readme: &str, heading: &str) -> BTreeMap<String, Row> {
    let start = readme
        .find(heading)
        .unwrap_or_else(|| panic!("the README has {heading:?}"));
    let mut rows = BTreeMap::new();
    for line in readme[start..]
        .lines()
        .skip(1)
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
    {
        let cells: Vec<&str> = line.split(" | ").collect();
        let Some(name) = cells[0]
            .strip_prefix("| `")
            .and_then(|n| n.strip_suffix('`'))
        else {
            continue;
        };
        let words = cells[2].split('`').skip(1).step_by(2).map(String::from);
        rows.insert(
            name.to_string(),
            (name.to_string(), cells[1].to_string(), words.collect()),
        );
    }
    assert!(rows.len() >= 10, "{heading}: {} rows", rows.len());
    rows
}

/// What one `/metrics` holds: name (a counter's ends in `_total`) -> (type, label name -> the
/// values seen).
type Exposed = BTreeMap<String, (String, BTreeMap<String, BTreeSet<String>>)>;

fn exposed(addr: &str) -> Exposed {
    let (status, body) = http(addr, "GET", "/metrics", b"");
    assert_eq!(status, 200, "{body}");
    let mut out = Exposed::new();
    for line in body.lines() {
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let (name, ty) = t.split_once(' ').unwrap();
            out.insert(name.to_string(), (ty.to_string(), BTreeMap::new()));
        }
    }
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, _) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.strip_suffix('}').unwrap()),
            None => (series, ""),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| out.get(*f).is_some_and(|(t, _)| t == "histogram"))
            })
            .unwrap_or(name);
        let (_, seen) = out
            .get_mut(family)
            .unwrap_or_else(|| panic!("a sample of a family with a TYPE line: {line}\n{body}"));
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap();
            seen.entry(k.to_string())
                .or_default()
                .insert(v.trim_matches('"').to_string());
        }
    }
    out
}

/// The README's table and the process's `/metrics` agree.
/// `not_seen`: families with labels that this run gives nothing to count (a labelled counter
/// appears once it has a sample).
fn agree(what: &str, rows: &BTreeMap<String, Row>, got: &Exposed, not_seen: &[&str]) {
    let listed: BTreeMap<&str, &str> = rows
        .values()
        .map(|(n, t, _)| (n.as_str(), t.as_str()))
        .collect();
    let served: BTreeMap<&str, &str> = got
        .iter()
        .map(|(n, (t, _))| (n.as_str(), t.as_str()))
        .collect();
    let missing: Vec<&str> = listed
        .iter()
        .filter(|(n, _)| !served.contains_key(*n))
        .map(|(n, _)| *n)
        .filter(|n| !not_seen.contains(n))
        .collect();
    let unlisted: Vec<(&str, &str)> = served
        .iter()
        .filter(|(n, t)| listed.get(*n) != Some(*t))
        .map(|(n, t)| (*n, *t))
        .collect();
    assert!(
        missing.is_empty() && unlisted.is_empty(),
        "{what}: listed in the README but not served: {missing:?}; served but not listed (or with another type): {unlisted:?}"
    );
    for (name, (_, labels)) in got {
        let words = &rows[name].2;
        for (label, values) in labels {
            if label == "le" {
                continue;
            }
            assert!(
                words.contains(label),
                "{what}: {name} has the label {label:?}, which the README does not list"
            );
            if label == "reason" || label == "stage" {
                for v in values {
                    assert!(
                        words.contains(v),
                        "{what}: {name}{{{label}={v:?}}} is not among the README's values {words:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn the_readme_lists_every_metric_served() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let collector_rows = readme_rows(&readme, "Collector metrics:");
    let agent_rows = readme_rows(&readme, "Agent metrics:");

    let org = Org::new();
    let (account, file, _) = events(&org, "a", 200, 31);
    // One event of another account: the collector rejects it, the agent dead-letters it.
    let other = run(
        &[
            "gen-events",
            "--count",
            "1",
            "--account",
            "444455556666",
            "--seed",
            "9",
        ],
        b"",
    );
    assert!(other.status.success(), "{}", stderr(&other));
    let mut text = std::fs::read(&file).unwrap();
    text.extend_from_slice(&other.stdout);
    std::fs::write(&file, &text).unwrap();
    let lines = text.iter().filter(|b| **b == b'\n').count();
    org.issue("agent", "agent", Some(&account));
    org.issue("admin", "admin", None);

    let collector = org.collector(0, OPS);
    let collector_ops = collector.ops.clone().unwrap();
    let cfg = org.agent_config("agent", &account, "agent", &file, collector.port);
    let agent_text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!("{agent_text}follow = true\npoll_ms = 50\n{OPS}"),
    )
    .unwrap();
    let mut agent = common::orgtrail()
        .args(["agent", "--config", &p(&cfg)])
        .env_remove("ORGTRAIL_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = procs::Lines::drain(agent.stdout.take().unwrap());
    let line = out.wait_for(&["orgtrail agent: ops listening on "], WITHIN);
    let agent_ops = line.rsplit(' ').next().unwrap().to_string();

    // Everything read, and the one rejection counted, before the scrape.
    wait_until(WITHIN, "every line read and the rejection counted", || {
        let body = http(&agent_ops, "GET", "/metrics", b"").1;
        body.contains("orgtrail_agent_dead_lettered_total{reason=\"wrong_account\"} 1\n")
            && body.contains(&format!("stage=\"read\"}} {lines}\n"))
    });
    // A checkpoint, so that its gauges are served.
    let mut args = vec!["checkpoint".to_string()];
    args.extend(org.reader_args(&collector, "admin"));
    args.extend([
        "--new".to_string(),
        "--public-key".to_string(),
        p(&org.path("keys/signing.pub")),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let signed = run(&args, b"");
    assert!(signed.status.success(), "{}", stderr(&signed));

    // A plaintext connection: a failed TLS handshake (`not_tls`).
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", collector.port)).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let _ = s.read(&mut [0u8; 64]);
    }
    wait_until(WITHIN, "the failed handshake counted", || {
        http(&collector_ops, "GET", "/metrics", b"")
            .1
            .contains("orgtrail_collector_tls_handshake_failures_total{reason=")
    });

    // No batch is refused whole in this run.
    agree(
        "collector",
        &collector_rows,
        &exposed(&collector_ops),
        &[
            "orgtrail_collector_refusals_total",
            // No rules in this run: no alert is delivered.
            "orgtrail_collector_alert_deliveries_total",
            "orgtrail_collector_alert_dead_letters_total",
            // No rules, so no reload.
            "orgtrail_collector_rules_reloads_total",
        ],
    );
    // The `s3` source's families are served only by an agent with an `s3` source; the
    // s3_source test checks them against this table.
    agree(
        "agent",
        &agent_rows,
        &exposed(&agent_ops),
        &[
            "orgtrail_agent_s3_objects_total",
            "orgtrail_agent_s3_object_bytes_total",
            "orgtrail_agent_s3_errors_total",
            "orgtrail_agent_s3_failing_objects",
            "orgtrail_agent_s3_processed_keys",
            "orgtrail_agent_s3_last_pass_timestamp_seconds",
            // Served only by a source that checks digests (tests/digest_sources.rs).
            "orgtrail_agent_digest_checks_total",
            "orgtrail_agent_digest_failures",
        ],
    );
    let _ = agent.kill();
    let _ = agent.wait();
}
