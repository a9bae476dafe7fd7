//! Property: no value of a limit makes the collector's configuration load or its start panic.
//! A bad value is refused at load with a message naming it; a value that loads starts (the
//! ledger, the worker pool, the semaphores and the gRPC services are built) and stops.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use orgtrail_collector::CollectorConfig;
use orgtrail_crypto::certs::{IssueRequest, Role, init_ca, issue};
use proptest::prelude::*;

/// A directory with a CA, a server certificate and a keyring, made once.
fn fixtures() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        init_ca(&d.path().join("ca"), "o-test", 30).unwrap();
        issue(
            &d.path().join("ca"),
            &IssueRequest {
                role: Role::Server,
                accounts: Vec::new(),
                name: "collector".into(),
                dns: vec!["localhost".into()],
                ips: Vec::new(),
                days: 30,
            },
            &d.path().join("server"),
        )
        .unwrap();
        std::fs::create_dir(d.path().join("keys")).unwrap();
        orgtrail_crypto::Keyring::generate("2026-01-01T00:00:00Z")
            .unwrap()
            .save_new(&d.path().join("keys/keyring.json"))
            .unwrap();
        d
    })
    .path()
}

/// Mostly values within `least..=most` (so that many configurations load and start), else
/// edge values and anything at all.
fn number(least: u64, most: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        20 => least..=most,
        1 => Just(0u64),
        1 => Just(u64::from(u32::MAX) + 1),
        1 => Just(i64::MAX as u64),
        1 => any::<u64>(),
    ]
}

fn config_text(dir: &Path, data: &Path, limits: &[(&str, u64)]) -> String {
    let mut t = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nkeys_dir = \"{}\"\n[tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n[organization]\nid = \"o-test\"\nallow_any_account = true\n[limits]\n",
        data.display(),
        dir.join("keys").display(),
        dir.join("server.pem").display(),
        dir.join("server.key").display(),
        dir.join("ca/ca.pem").display(),
    );
    for (k, v) in limits {
        // TOML integers are i64: larger values are a load error, which is fine too.
        t += &format!("{k} = {v}\n");
    }
    t
}

/// Configurations that loaded and started (the property must not pass by refusing all).
static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

const NAMES: [&str; 6] = [
    "max_message_bytes",
    "max_batch_events",
    "max_event_bytes",
    "max_in_flight",
    "max_in_flight_total",
    "max_stats_events",
];

fn load_and_start(values: [u64; 6]) -> Result<(), TestCaseError> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = fixtures();
    let data = tempfile::tempdir().unwrap();
    let limits: Vec<(&str, u64)> = NAMES.iter().copied().zip(values).collect();
    let path = data.path().join("collector.toml");
    std::fs::write(&path, config_text(dir, &data.path().join("data"), &limits)).unwrap();
    match CollectorConfig::load(&path) {
        Err(e) => {
            // Refused, naming the limits section or the value.
            let text = e.to_string();
            prop_assert!(text.contains("limits"), "{}", text);
        }
        Ok(cfg) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            let r = rt.block_on(orgtrail_collector::run(
                cfg,
                move |_, addr| {
                    let _ = tx.send(addr);
                },
                async {},
            ));
            prop_assert!(r.is_ok(), "{:?}", r.err());
            prop_assert!(rx.try_recv().is_ok(), "the collector never listened");
            STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    Ok(())
}

#[test]
fn no_limit_value_makes_load_or_start_panic() {
    let strategy = (
        number(1 << 10, 64 << 20),
        number(1, 100_000),
        number(1 << 10, 1 << 20),
        number(1, 4096),
        number(1, 65_536),
        number(1, 1 << 30),
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
        .run(&strategy, |v| {
            load_and_start([v.0, v.1, v.2, v.3, v.4, v.5])
        })
        .unwrap();
    // Edge configurations that are valid start too.
    load_and_start([1 << 10, 1, 1 << 10, 1, 1, 1]).unwrap();
    load_and_start([1 << 30, 1_000_000, 16 << 20, 4096, 65_536, 1_000_000_000]).unwrap();
    // The property did not pass by refusing everything.
    assert!(STARTED.load(std::sync::atomic::Ordering::Relaxed) >= 5);
}

#[test]
fn every_bad_limit_is_reported_at_once() {
    let dir = fixtures();
    let data = tempfile::tempdir().unwrap();
    let path = data.path().join("collector.toml");
    let limits = [
        ("max_message_bytes", 10),
        ("max_batch_events", 0),
        ("max_in_flight", 0),
        ("max_in_flight_total", 1_000_000),
        ("max_stats_events", 0),
    ];
    std::fs::write(&path, config_text(dir, &data.path().join("data"), &limits)).unwrap();
    let e = CollectorConfig::load(&path).unwrap_err();
    for name in [
        "max_message_bytes =",
        "max_batch_events =",
        "max_in_flight =",
        "max_in_flight_total =",
        "max_stats_events =",
    ] {
        assert!(
            e.problems
                .iter()
                .any(|p| p.starts_with(&format!("limits.{name}"))),
            "{name} not reported: {e}"
        );
    }
    assert!(
        e.problems
            .iter()
            .any(|p| p.contains("smaller than limits.max_event_bytes")),
        "{e}"
    );
}
