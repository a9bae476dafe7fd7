//! The ops listener (`[ops] listen`) of the real collector and agent processes, over loopback
//! with real mutual TLS between them: `/metrics` read with a Prometheus text parser and
//! checked against the counts of a known run, `/readyz` following the store's ability to
//! write and the agent's reach of the collector, `/healthz`.
//!
//! The store-cannot-write test mounts a small tmpfs for the data directory, so it runs as root
//! (as CI does), like `tests/disk_full.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/org.rs"]
mod org;
#[path = "common/procs.rs"]
mod procs;
#[path = "common/prom.rs"]
mod prom;
#[path = "common/tmpfs.rs"]
mod tmpfs;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::time::Duration;

use common::http;
use org::{Follower, Org, agent_drains, events, sigterm, spawn_agent};
use procs::wait_until;
use prom::scrape;

const OPS: &str = "[ops]\nlisten = \"127.0.0.1:0\"\n";
const WITHIN: Duration = Duration::from_secs(60);

/// Lines of a generated file, and how many are distinct; every duplicate is byte-identical
/// (no eventID appears with two different bodies), so the collector sees no conflict.
fn line_counts(path: &std::path::Path, unique: &HashSet<String>) -> (u64, u64) {
    let text = std::fs::read_to_string(path).unwrap();
    let lines = text.lines().count() as u64;
    let ids: HashSet<String> = unique
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["eventID"].to_string())
        .collect();
    assert_eq!(ids.len(), unique.len(), "no eventID with two bodies");
    assert!(lines > unique.len() as u64, "the file holds duplicates");
    (lines, unique.len() as u64)
}

#[test]
fn collector_metrics_count_a_known_run_per_account() {
    let org = Org::new();
    let (a, file_a, want_a) = events(&org, "a", 400, 21);
    let (b, file_b, want_b) = events(&org, "b", 250, 22);
    assert_ne!(a, b);
    let (lines_a, unique_a) = line_counts(&file_a, &want_a);
    let (lines_b, unique_b) = line_counts(&file_b, &want_b);
    org.issue("agent-a", "agent", Some(&a));
    org.issue("agent-b", "agent", Some(&b));
    org.issue("auditor", "auditor", None);
    // Restarted on the same port below: one the kernel never hands to a connection meanwhile.
    let mut collector = org.collector(common::quiet_port(), OPS);
    let ops = collector.ops.clone().unwrap();
    assert_eq!(http(&ops, "GET", "/healthz", b"").0, 200);
    assert_eq!(
        http(&ops, "GET", "/readyz", b""),
        (200, "ready\n".to_string())
    );

    // Account a's file twice (the second time every event is a duplicate), b's once.
    let port = collector.port;
    agent_drains(
        spawn_agent(&org.agent_config("a1", &a, "agent-a", &file_a, port)),
        120,
    );
    agent_drains(
        spawn_agent(&org.agent_config("a2", &a, "agent-a", &file_a, port)),
        120,
    );
    agent_drains(
        spawn_agent(&org.agent_config("b1", &b, "agent-b", &file_b, port)),
        120,
    );
    // And one event of b's sent with a's certificate: rejected as another account's.
    let stray = org.path("stray.jsonl");
    let first_b = std::fs::read_to_string(&file_b).unwrap();
    std::fs::write(&stray, format!("{}\n", first_b.lines().next().unwrap())).unwrap();
    let mut agent = spawn_agent(&org.agent_config("a3", &a, "agent-a", &stray, port));
    let status = agent.wait().unwrap();
    assert!(
        !status.success(),
        "a dead-lettered event fails a drained run"
    );

    let m = scrape(&ops);
    let acct = |id: &str| [("account", id.to_string())];
    let v = |name: &str, id: &str| {
        let l = acct(id);
        m.value(name, &[(l[0].0, l[0].1.as_str())])
    };
    assert_eq!(
        v("orgtrail_collector_events_received_total", &a),
        (2 * lines_a + 1) as f64
    );
    assert_eq!(
        v("orgtrail_collector_events_stored_total", &a),
        unique_a as f64
    );
    assert_eq!(
        v("orgtrail_collector_events_duplicate_total", &a),
        (2 * lines_a - unique_a) as f64
    );
    assert_eq!(v("orgtrail_collector_events_conflicting_total", &a), 0.0);
    assert_eq!(
        v("orgtrail_collector_events_received_total", &b),
        lines_b as f64
    );
    assert_eq!(
        v("orgtrail_collector_events_stored_total", &b),
        unique_b as f64
    );
    assert_eq!(
        v("orgtrail_collector_events_duplicate_total", &b),
        (lines_b - unique_b) as f64
    );
    assert_eq!(
        m.value(
            "orgtrail_collector_events_rejected_total",
            &[("reason", "wrong_account")]
        ),
        1.0
    );
    assert_eq!(
        m.value("orgtrail_collector_store_events", &[]),
        (unique_a + unique_b) as f64
    );
    assert!(m.value("orgtrail_collector_store_bytes", &[]) > 0.0);
    assert!(m.value("orgtrail_collector_group_commit_seconds_count", &[]) >= 1.0);
    assert_eq!(m.value("orgtrail_collector_batches_in_flight", &[]), 0.0);
    assert_eq!(m.value("orgtrail_collector_writer_queue_depth", &[]), 0.0);
    assert_eq!(m.value("orgtrail_collector_live_followers", &[]), 0.0);

    // A live follower is counted while it follows.
    let follower = Follower::start(&org, &collector, "auditor");
    wait_until(WITHIN, "one live follower in the metrics", || {
        scrape(&ops).get("orgtrail_collector_live_followers", &[]) == Some(1.0)
    });
    drop(follower);

    // Plain text on the TLS port is a failed handshake, counted by its reason.
    let mut plain = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut ignored = Vec::new();
    let _ = plain.read_to_end(&mut ignored);
    wait_until(WITHIN, "the plaintext handshake counted", || {
        scrape(&ops).get(
            "orgtrail_collector_tls_handshake_failures_total",
            &[("reason", "not_tls")],
        ) == Some(1.0)
    });

    // A clean stop signs a last checkpoint; the restarted collector reports it from disk.
    sigterm(&mut collector);
    let restarted = org.collector(port, OPS);
    let m = scrape(restarted.ops.as_deref().unwrap());
    assert_eq!(
        m.value("orgtrail_collector_checkpoint_size", &[]),
        (unique_a + unique_b) as f64
    );
    let age = m.value("orgtrail_collector_checkpoint_age_seconds", &[]);
    assert!((0.0..600.0).contains(&age), "{age}");
    assert_eq!(
        m.get(
            "orgtrail_collector_events_received_total",
            &[("account", a.as_str())]
        ),
        None,
        "counters start at zero with the process"
    );
}

#[test]
fn collector_readyz_fails_while_the_store_cannot_write_and_recovers() {
    let org = Org::new();
    let _fs = tmpfs::Tmpfs::mount(&org.path("data"), "24m");
    let collector = org.collector(0, &format!("[storage]\nreserve = \"12 MiB\"\n{OPS}"));
    let ops = collector.ops.clone().unwrap();
    assert_eq!(http(&ops, "GET", "/readyz", b"").0, 200);

    // Another process fills the data directory's disk below the reserve.
    let ballast = org.path("data/ballast");
    std::fs::write(&ballast, vec![0u8; 16 << 20]).unwrap();
    let mut body = String::new();
    wait_until(WITHIN, "/readyz answers 503", || {
        let (status, b) = http(&ops, "GET", "/readyz", b"");
        body = b;
        status == 503
    });
    assert!(
        body.starts_with("not ready: disk full: ") && body.contains("reserve 12582912"),
        "{body}"
    );
    assert_eq!(body.lines().count(), 1, "one line: {body}");
    // Alive all the same.
    assert_eq!(http(&ops, "GET", "/healthz", b"").0, 200);

    std::fs::remove_file(&ballast).unwrap();
    wait_until(WITHIN, "/readyz answers 200 again", || {
        http(&ops, "GET", "/readyz", b"").0 == 200
    });
    drop(collector);
}

/// An agent following a file, with its ops listener on a free port: (process, ops address).
fn agent_with_ops(cfg: &std::path::Path) -> (std::process::Child, String) {
    let text = std::fs::read_to_string(cfg).unwrap();
    std::fs::write(cfg, format!("{text}follow = true\npoll_ms = 50\n{OPS}")).unwrap();
    let mut child = common::orgtrail()
        .args(["agent", "--config", cfg.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = procs::Lines::drain(child.stdout.take().unwrap());
    let line = out.wait_for(&["orgtrail agent: ops listening on "], WITHIN);
    let addr = line.rsplit(' ').next().unwrap().to_string();
    (child, addr)
}

#[test]
fn agent_metrics_show_what_it_shipped_and_whether_the_collector_is_reachable() {
    let org = Org::new();
    let (a, file, want) = events(&org, "a", 300, 23);
    let (lines, unique) = line_counts(&file, &want);
    org.issue("agent", "agent", Some(&a));
    let mut collector = org.collector(0, "");
    let cfg = org.agent_config("agent", &a, "agent", &file, collector.port);
    let (mut agent, ops) = agent_with_ops(&cfg);
    let source = format!("jsonl:{}", file.display());
    let shipped = [("source", source.as_str()), ("stage", "shipped")];

    wait_until(WITHIN, "every line shipped", || {
        scrape(&ops).get("orgtrail_agent_events_total", &shipped) == Some(lines as f64)
    });
    wait_until(WITHIN, "the spool drained", || {
        scrape(&ops).get("orgtrail_agent_spool_pending_events", &[]) == Some(0.0)
    });
    let m = scrape(&ops);
    assert_eq!(
        m.value(
            "orgtrail_agent_events_total",
            &[("source", source.as_str()), ("stage", "read")]
        ),
        lines as f64
    );
    assert_eq!(
        m.value("orgtrail_agent_duplicates_total", &[]),
        (lines - unique) as f64
    );
    assert_eq!(m.value("orgtrail_agent_collector_reachable", &[]), 1.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let last_ack = m.value("orgtrail_agent_last_ack_timestamp_seconds", &[]);
    assert!(
        now - last_ack < 600.0 && last_ack <= now + 1.0,
        "{last_ack} vs {now}"
    );
    assert_eq!(
        m.value(
            "orgtrail_agent_dead_lettered_total",
            &[("reason", "conflict")]
        ),
        0.0
    );
    assert_eq!(m.value("orgtrail_agent_dead_letters", &[]), 0.0);
    let retries = m.value("orgtrail_agent_retries_total", &[]);
    assert_eq!(http(&ops, "GET", "/healthz", b"").0, 200);
    assert_eq!(
        http(&ops, "GET", "/readyz", b""),
        (200, "ready\n".to_string())
    );

    // The collector stops: the agent says so, in its metrics and its readiness.
    sigterm(&mut collector);
    wait_until(WITHIN, "reachability 0", || {
        scrape(&ops).get("orgtrail_agent_collector_reachable", &[]) == Some(0.0)
    });
    let (status, body) = http(&ops, "GET", "/readyz", b"");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with("not ready: the collector is not reachable: "),
        "{body}"
    );
    assert_eq!(body.lines().count(), 1, "{body}");
    assert_eq!(
        http(&ops, "GET", "/healthz", b"").0,
        200,
        "alive all the same"
    );
    wait_until(WITHIN, "reconnection attempts counted", || {
        scrape(&ops)
            .get("orgtrail_agent_retries_total", &[])
            .is_some_and(|r| r > retries)
    });
    let _ = agent.kill();
    let _ = agent.wait();
}

#[test]
fn an_ops_address_that_cannot_be_used_refuses_to_start_saying_why() {
    let org = Org::new();
    let cfg = org.collector_config(0, "[ops]\nlisten = \"localhost:9464\"\n");
    let out = common::run(&["collector", "--config", cfg.to_str().unwrap()], b"");
    assert!(!out.status.success());
    let err = common::stderr(&out);
    assert!(
        err.contains(
            "\"localhost:9464\" is not an IP address and port: give e.g. \"127.0.0.1:9464\""
        ),
        "{err}"
    );
    assert!(err.contains("line 12"), "names the line: {err}");

    // A port another process holds: refused before the collector says it listens.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let cfg = org.collector_config(0, &format!("[ops]\nlisten = \"{addr}\"\n"));
    let out = common::run(&["collector", "--config", cfg.to_str().unwrap()], b"");
    assert!(!out.status.success());
    let err = common::stderr(&out);
    assert!(
        err.contains(&format!("ops listener: cannot listen on {addr}")),
        "{err}"
    );
    assert!(
        !common::stdout(&out).contains("listening on"),
        "{}",
        common::stdout(&out)
    );
}
