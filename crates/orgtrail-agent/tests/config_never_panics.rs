//! Property: no value of a limit makes the agent's configuration load or its start panic. A
//! bad value is refused at load, naming it; a value that loads starts (spool, sources, batcher,
//! shipper retrying an absent collector) and stops cleanly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use orgtrail_agent::config::AgentConfig;
use orgtrail_crypto::certs::{IssueRequest, Role, init_ca, issue};
use proptest::prelude::*;

static STARTED: AtomicUsize = AtomicUsize::new(0);

/// A CA, an agent certificate for 111122223333 and a small JSON-lines file, made once.
fn fixtures() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        init_ca(&d.path().join("ca"), "o-test", 30).unwrap();
        issue(
            &d.path().join("ca"),
            &IssueRequest {
                role: Role::Agent,
                accounts: vec!["111122223333".parse().unwrap()],
                name: "agent".into(),
                dns: Vec::new(),
                ips: Vec::new(),
                days: 30,
            },
            &d.path().join("agent"),
        )
        .unwrap();
        std::fs::write(
            d.path().join("events.jsonl"),
            "{\"eventVersion\":\"1.08\",\"eventID\":\"e-1\",\"eventTime\":\"2024-01-02T03:04:05Z\",\"eventSource\":\"s3.amazonaws.com\",\"eventName\":\"ListBuckets\",\"awsRegion\":\"us-east-1\",\"recipientAccountId\":\"111122223333\"}\n",
        )
        .unwrap();
        d
    })
    .path()
}

fn number(least: u64, most: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        20 => least..=most,
        1 => Just(0u64),
        1 => Just(u64::from(u32::MAX) + 1),
        1 => Just(i64::MAX as u64),
        1 => any::<u64>(),
    ]
}

fn load_and_start(v: [u64; 8]) -> Result<(), TestCaseError> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = fixtures();
    let run_dir = tempfile::tempdir().unwrap();
    let text = format!(
        "account = \"111122223333\"\ncollector = \"https://127.0.0.1:9\"\nserver_name = \"localhost\"\nspool_dir = \"{spool}\"\nspool_max_bytes = {}\n[tls]\ncert = \"{d}/agent.pem\"\nkey = \"{d}/agent.key\"\nca = \"{d}/ca/ca.pem\"\n[batch]\nmax_events = {}\nmax_bytes = {}\nlinger_ms = {}\nmax_in_flight = {}\n[retry]\ninitial_ms = {}\nmax_ms = {}\n[source]\ntype = \"jsonl\"\npath = \"{d}/events.jsonl\"\nfollow = true\npoll_ms = {}\n",
        v[0],
        v[1],
        v[2],
        v[3],
        v[4],
        v[5],
        v[6],
        v[7],
        spool = run_dir.path().join("spool").display(),
        d = dir.display(),
    );
    let path = run_dir.path().join("agent.toml");
    std::fs::write(&path, text).unwrap();
    match AgentConfig::load(&path) {
        Err(e) => {
            let text = e.to_string();
            prop_assert!(
                text.contains("out of range")
                    || text.contains("invalid")
                    || text.contains("smaller than"),
                "{}",
                text
            );
        }
        Ok(cfg) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let r = rt.block_on(async {
                let stop = tokio::time::sleep(std::time::Duration::from_millis(150));
                orgtrail_agent::run(cfg, false, |_, _| {}, stop).await
            });
            prop_assert!(r.is_ok(), "{:?}", r.err());
            STARTED.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

#[test]
fn no_limit_value_makes_load_or_start_panic() {
    let strategy = (
        (
            number(1 << 20, 1 << 40),
            number(1, 100_000),
            number(1 << 10, 1 << 30),
            number(0, 3_600_000),
        ),
        (
            number(1, 1024),
            number(1, 3_600_000),
            number(1, 86_400_000),
            number(1, 3_600_000),
        ),
    );
    // A fixed seed: the same configurations every run (the edges are listed below).
    let mut runner = proptest::test_runner::TestRunner::new_with_rng(
        ProptestConfig {
            cases: 40,
            failure_persistence: None,
            ..ProptestConfig::default()
        },
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    runner
        .run(&strategy, |(a, b)| {
            load_and_start([a.0, a.1, a.2, a.3, b.0, b.1, b.2, b.3])
        })
        .unwrap();
    // The edges of every range start too.
    load_and_start([1 << 20, 1, 1 << 10, 0, 1, 1, 1, 1]).unwrap();
    load_and_start([
        1 << 40,
        100_000,
        1 << 30,
        3_600_000,
        1024,
        3_600_000,
        86_400_000,
        3_600_000,
    ])
    .unwrap();
    assert!(STARTED.load(Ordering::Relaxed) >= 4);
}

#[test]
fn every_bad_limit_is_reported_at_once() {
    let dir = fixtures();
    let run_dir = tempfile::tempdir().unwrap();
    let text = format!(
        "account = \"111122223333\"\ncollector = \"https://127.0.0.1:9\"\nspool_dir = \"spool\"\nspool_max_bytes = 0\n[tls]\ncert = \"{d}/agent.pem\"\nkey = \"{d}/agent.key\"\nca = \"{d}/ca/ca.pem\"\n[batch]\nmax_events = 0\nmax_bytes = 0\nmax_in_flight = 0\n[retry]\ninitial_ms = 500\nmax_ms = 100\n[source]\ntype = \"jsonl\"\npath = \"{d}/events.jsonl\"\npoll_ms = 0\n",
        d = dir.display()
    );
    let path = run_dir.path().join("agent.toml");
    std::fs::write(&path, text).unwrap();
    let e = AgentConfig::load(&path).unwrap_err();
    for name in [
        "spool_max_bytes = 0",
        "batch.max_events = 0",
        "batch.max_bytes = 0",
        "batch.max_in_flight = 0",
        "poll_ms = 0",
        "retry.max_ms (100) is smaller than retry.initial_ms (500)",
    ] {
        assert!(
            e.problems.iter().any(|p| p.contains(name)),
            "{name} not reported: {e}"
        );
    }
}
