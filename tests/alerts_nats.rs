//! The NATS alert sink end to end, against a real `nats-server` on loopback: an agent ships
//! real-shaped events over mutual TLS, the collector stores them, a rule fires, and each alert
//! is one NATS message on the subject: the EventBridge envelope as its body, its alert id in
//! the `Nats-Msg-Id` and `Orgtrail-Alert-Id` headers, its rule in `Orgtrail-Rule-Id`.
//! - over mutual TLS (the organization's CA) with a token read from a file: exactly one
//!   message per alert;
//! - the server down when the alerts are recorded: they are retried, and arrive (through
//!   JetStream, acknowledged) once it is started, each once;
//! - with a user and a password file, the collector killed (abort, as `kill -9`) right after
//!   the server took an alert: after a restart that alert comes again under the same id, and
//!   no other alert twice.
//!
//! And all three actions at once (a file, a webhook, NATS), the collector killed between
//! storing and delivering: after a restart, each sink takes every alert exactly once, under the
//! same ids as the others. Killed right after a sink took an alert, that alert alone comes
//! again, to that sink (at most one per sink: each sink's loop notes a delivery before the
//! next).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/crash.rs"]
mod crash;
#[path = "common/nats.rs"]
mod nats;
#[path = "common/org.rs"]
mod org;
#[path = "common/procs.rs"]
mod procs;
#[path = "common/webhook.rs"]
mod webhook;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nats::NatsServer;
use org::{Org, agent_drains, events, p, spawn_agent};
use orgtrail_collector::alerts::payload::alert_id;
use serde_json::Value;

const RULE: &str = "watched-call";
const SUBJECT: &str = "orgtrail.alerts";
const WITHIN: Duration = Duration::from_secs(60);

/// Events, a rule on the first event's call (envelope form), and what it must fire on:
/// (account, events file, eventID -> event).
fn setup(org: &Org, seed: u64) -> (String, std::path::PathBuf, BTreeMap<String, Value>) {
    let (account, file, unique) = events(org, "events", 2000, seed);
    let parsed: Vec<Value> = unique
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The file's first event (the set's first differs from run to run): the same number of
    // alerts every run.
    let text = std::fs::read_to_string(&file).unwrap();
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let first = &first;
    let want: BTreeMap<String, Value> = parsed
        .iter()
        .filter(|e| {
            e["eventName"] == first["eventName"] && e["eventSource"] == first["eventSource"]
        })
        .map(|e| (e["eventID"].as_str().unwrap().to_owned(), e.clone()))
        .collect();
    let service = first["eventSource"]
        .as_str()
        .unwrap()
        .trim_end_matches(".amazonaws.com");
    std::fs::create_dir(org.path("rules")).unwrap();
    std::fs::write(
        org.path("rules/watched.json"),
        serde_json::json!({
            "id": RULE, "severity": "high",
            "pattern": {"source": [format!("aws.{service}")], "detail": {"eventName": [first["eventName"]]}}
        })
        .to_string(),
    )
    .unwrap();
    org.issue("agent-a", "agent", Some(&account));
    (account, file, want)
}

/// One message as received: its headers of interest and its body.
#[derive(Debug, Clone)]
struct Got {
    msg_id: String,
    alert_id: String,
    rule_id: String,
    body: Value,
}

fn header(h: Option<&async_nats::HeaderMap>, name: &str) -> String {
    h.and_then(|h| h.get(name))
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default()
}

fn received(h: Option<&async_nats::HeaderMap>, payload: &[u8]) -> Got {
    Got {
        msg_id: header(h, "Nats-Msg-Id"),
        alert_id: header(h, "Orgtrail-Alert-Id"),
        rule_id: header(h, "Orgtrail-Rule-Id"),
        body: serde_json::from_slice(payload).unwrap(),
    }
}

/// A core NATS subscriber on [`SUBJECT`], collecting what arrives on a thread of its own.
struct Subscriber {
    got: Arc<Mutex<Vec<Got>>>,
    client: async_nats::Client,
    runtime: tokio::runtime::Runtime,
}

/// The `Nats-Msg-Id` of the subscriber's own markers (see [`Subscriber::settled`]).
const MARKER: &str = "test-marker";

impl Subscriber {
    /// Subscribes (and waits until the server has the subscription).
    fn start(options: async_nats::ConnectOptions, url: &str) -> Subscriber {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let (client, mut sub) = runtime.block_on(async {
            let client = options.connect(url).await.unwrap();
            let sub = client.subscribe(SUBJECT).await.unwrap();
            client.flush().await.unwrap();
            (client, sub)
        });
        let g = got.clone();
        runtime.spawn(async move {
            use tokio_stream::StreamExt;
            while let Some(m) = sub.next().await {
                g.lock()
                    .unwrap()
                    .push(received(m.headers.as_ref(), &m.payload));
            }
        });
        Subscriber {
            got,
            client,
            runtime,
        }
    }

    /// The alerts received (the subscriber's own markers left out).
    fn messages(&self) -> Vec<Got> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.msg_id != MARKER)
            .cloned()
            .collect()
    }

    /// The alerts received once every message the server took before this call arrived: a
    /// marker published on this subscriber's own connection reaches it after everything the
    /// server routed to it before (one connection's messages arrive in order).
    fn settled(&self) -> Vec<Got> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", MARKER);
        self.runtime.block_on(async {
            self.client
                .publish_with_headers(SUBJECT, headers, "{}".into())
                .await
                .unwrap();
            self.client.flush().await.unwrap();
        });
        let markers = || {
            self.got
                .lock()
                .unwrap()
                .iter()
                .filter(|m| m.msg_id == MARKER)
                .count()
        };
        let want = markers().max(1);
        procs::wait_until(WITHIN, "the subscriber's marker", || markers() >= want);
        self.messages()
    }
}

/// Each message is one wanted alert: the envelope of its event, its id in the headers.
fn check(m: &Got, account: &str, want: &BTreeMap<String, Value>) {
    let a = &m.body;
    let event_id = a["detail"]["eventID"].as_str().unwrap();
    let e = want
        .get(event_id)
        .unwrap_or_else(|| panic!("an alert on an event the rule does not match: {a}"));
    assert_eq!(&a["detail"], e, "the alert carries the event as stored");
    let id = alert_id(RULE, account, event_id);
    assert_eq!(a["id"], id.as_str());
    assert_eq!(m.msg_id, id, "Nats-Msg-Id is the alert id");
    assert_eq!(m.alert_id, id, "Orgtrail-Alert-Id is the alert id");
    assert_eq!(m.rule_id, RULE);
    assert_eq!(a["rule-id"], RULE);
    assert_eq!(a["severity"], "high");
    assert_eq!(a["detail-type"], "AWS API Call via CloudTrail");
    assert_eq!(a["account"], account);
    assert_eq!(a["version"], "0");
}

fn sink(url: &str, extra: &str) -> String {
    format!(
        "[rules]\ndir = \"rules\"\n[[alerts.nats]]\nname = \"bus\"\nurls = [\"{url}\"]\nsubject = \"{SUBJECT}\"\n{extra}"
    )
}

#[test]
fn over_mutual_tls_with_a_token_each_alert_is_one_message_carrying_its_id() {
    let org = Org::new();
    let (account, file, want) = setup(&org, 51);
    // The server's certificate and the collector's client certificate from the organization
    // CA; the server requires both a client certificate and the token.
    org.issue("nats-client", "admin", None);
    std::fs::write(org.path("nats.token"), "s3cret-token\n").unwrap();
    let d = |n: &str| p(&org.path(n));
    let server = NatsServer::start(
        &org.path(""),
        None,
        &[
            "--auth",
            "s3cret-token",
            "--tlsverify",
            "--tlscert",
            &d("server.pem"),
            "--tlskey",
            &d("server.key"),
            "--tlscacert",
            &d("ca/ca.pem"),
        ],
    );
    let url = format!("tls://127.0.0.1:{}", server.port);
    let sub = Subscriber::start(
        async_nats::ConnectOptions::with_token("s3cret-token".into())
            .require_tls(true)
            .add_root_certificates(org.path("ca/ca.pem"))
            .add_client_certificate(org.path("nats-client.pem"), org.path("nats-client.key")),
        &url,
    );
    // A missing token file refuses the configuration, naming the file.
    let cfg = org.collector_config(0, &sink(&url, "token_file = \"missing.token\"\n"));
    let out = common::run(&["config", "check", &p(&cfg)], b"");
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr(&out);
    assert!(
        err.contains("alerts.nats[bus]: token_file: ")
            && err.contains("missing.token: cannot read it"),
        "{err}"
    );
    let c = org.collector(
        0,
        &sink(
            &url,
            "token_file = \"nats.token\"\nca_file = \"ca/ca.pem\"\ncert_file = \"nats-client.pem\"\nkey_file = \"nats-client.key\"\n",
        ),
    );
    let cfg = org.agent_config("agent", &account, "agent-a", &file, c.port);
    agent_drains(spawn_agent(&cfg), 120);
    procs::wait_until(WITHIN, "every alert published", || {
        sub.messages().len() >= want.len()
    });
    let msgs = sub.messages();
    assert_eq!(
        msgs.len(),
        want.len(),
        "one message per matching stored event"
    );
    let ids: HashSet<&str> = msgs.iter().map(|m| m.msg_id.as_str()).collect();
    assert_eq!(ids.len(), msgs.len(), "no alert twice");
    for m in &msgs {
        check(m, &account, &want);
    }
    let log = std::fs::read_to_string(org.path("collector.stderr")).unwrap();
    assert!(!log.contains("s3cret-token"), "the token is never logged");
}

#[test]
fn with_the_server_down_alerts_wait_and_arrive_once_through_jetstream_when_it_starts() {
    let org = Org::new();
    let (account, file, want) = setup(&org, 52);
    let store = p(&org.path("jetstream"));
    // A stream on the subject, stored in files, then the server stopped.
    let mut server = NatsServer::start(&org.path(""), None, &["-js", "-sd", &store]);
    let port = server.port;
    let url = server.url();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = async_nats::connect(&url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "ALERTS".into(),
            subjects: vec![SUBJECT.into()],
            storage: async_nats::jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .unwrap();
    });
    server.stop();

    let c = org.collector(
        0,
        &format!(
            "[ops]\nlisten = \"127.0.0.1:0\"\n{}",
            sink(&url, "jetstream = true\nconnect_timeout_ms = \"2s\"\n")
        ),
    );
    let ops = c.ops.clone().unwrap();
    let cfg = org.agent_config("agent", &account, "agent-a", &file, c.port);
    agent_drains(spawn_agent(&cfg), 120);
    // Ingest does not wait for the sink; delivery fails and is retried.
    procs::wait_until(WITHIN, "a failed delivery counted", || {
        common::http(&ops, "GET", "/metrics", b"")
            .1
            .contains("orgtrail_collector_alert_deliveries_total{sink=\"bus\",outcome=\"failed\"}")
    });
    let log = std::fs::read_to_string(org.path("collector.stderr")).unwrap();
    assert!(log.contains("alert delivery failed; retrying"), "{log}");

    let _server = NatsServer::start(&org.path(""), Some(port), &["-js", "-sd", &store]);
    let msgs = rt.block_on(async {
        let client = async_nats::connect(&url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let mut stream = js.get_stream("ALERTS").await.unwrap();
        let end = tokio::time::Instant::now() + WITHIN;
        loop {
            let n = stream.info().await.unwrap().state.messages;
            if n >= want.len() as u64 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "{n} of {} alerts in the stream within {WITHIN:?}",
                want.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Delivered in order: everything the collector had is in; anything more would be too.
        let n = stream.info().await.unwrap().state.messages;
        let mut out = Vec::new();
        for seq in 1..=n {
            let m = stream.get_raw_message(seq).await.unwrap();
            out.push(received(Some(&m.headers), &m.payload));
        }
        out
    });
    assert_eq!(
        msgs.len(),
        want.len(),
        "one message per matching stored event"
    );
    let ids: HashSet<&str> = msgs.iter().map(|m| m.msg_id.as_str()).collect();
    assert_eq!(ids.len(), msgs.len(), "no alert twice");
    for m in &msgs {
        check(m, &account, &want);
    }
    drop(c);
}

#[test]
fn killed_after_the_server_took_a_batch_it_comes_again_under_the_same_ids_and_no_other() {
    let org = Org::new();
    let (account, file, want) = setup(&org, 53);
    // A user and password (from a file) this time.
    let server = NatsServer::start(
        &org.path(""),
        None,
        &["--user", "orgtrail", "--pass", "pw-s3cret"],
    );
    let sub = Subscriber::start(
        async_nats::ConnectOptions::with_user_and_password("orgtrail".into(), "pw-s3cret".into()),
        &server.url(),
    );
    std::fs::write(org.path("nats.password"), "pw-s3cret\n").unwrap();
    let extra = sink(
        &server.url(),
        "user = \"orgtrail\"\npassword_file = \"nats.password\"\n",
    );
    crash::until_crash(&org, &extra, "alert-sent", &account, &file);
    // The server took one batch (the alerts pending then, in order) before the kill.
    let before = sub.settled();
    assert!(!before.is_empty(), "a batch was taken before the kill");
    // What the kill left stored (read offline, before a restart).
    let expect = org.keep_stored(want);
    let c = org.collector(0, &extra);
    // Every stored event's alert once, and the batch taken before the kill once more (it is
    // the oldest pending, so it goes first); then whatever else the server routed by now.
    procs::wait_until(WITHIN, "every alert published after the restart", || {
        sub.messages().len() >= expect.len() + before.len()
    });
    let msgs = sub.settled();
    let mut times: BTreeMap<String, usize> = BTreeMap::new();
    for m in &msgs {
        check(m, &account, &expect);
        *times.entry(m.msg_id.clone()).or_default() += 1;
    }
    assert_eq!(
        times.len(),
        expect.len(),
        "an alert for every matching stored event"
    );
    let taken: HashSet<&str> = before.iter().map(|m| m.msg_id.as_str()).collect();
    assert_eq!(taken.len(), before.len(), "one message per alert");
    assert_eq!(msgs.len(), expect.len() + before.len(), "{times:?}");
    assert!(
        times
            .iter()
            .all(|(id, n)| *n == if taken.contains(id.as_str()) { 2 } else { 1 }),
        "the batch taken before the kill came again, under the same ids, and no other alert: {times:?}"
    );
    drop(c);
}

/// How many times each alert id arrived, checking each against `want` with `check`.
fn count_ids<'a>(ids: impl Iterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut times = BTreeMap::new();
    for id in ids {
        *times.entry(id.to_owned()).or_default() += 1;
    }
    times
}

/// A file, a webhook and a NATS sink at once, the collector aborted at crash point `step`,
/// then restarted: each sink holds every alert, under the same ids as the others, and an
/// alert comes twice only to a sink that took it right before the kill (the file sink: the
/// batch it took; a webhook or NATS: at most one).
/// Returns how many sinks got an alert twice.
fn three_sinks_across_a_kill(step: &str, seed: u64) -> usize {
    let org = Org::new();
    let (account, file, want) = setup(&org, seed);
    let server = NatsServer::start(&org.path(""), None, &[]);
    let sub = Subscriber::start(async_nats::ConnectOptions::new(), &server.url());
    let hook = webhook::Receiver::start(b"webhook-secret");
    std::fs::write(org.path("webhook.secret"), "webhook-secret\n").unwrap();
    let extra = format!(
        "{}[[alerts.file]]\nname = \"log\"\npath = \"alerts.jsonl\"\n[[alerts.webhook]]\nname = \"hook\"\nurl = \"{}\"\nsecret_file = \"webhook.secret\"\nbackoff_initial_ms = \"20ms\"\nbackoff_max_ms = \"200ms\"\n",
        sink(&server.url(), ""),
        hook.url()
    );
    crash::until_crash(&org, &extra, step, &account, &file);
    // What the kill left stored (read offline, before a restart).
    let expect = org.keep_stored(want);
    assert!(!expect.is_empty(), "some matching events were stored");
    let wanted: HashSet<String> = expect.keys().map(|e| alert_id(RULE, &account, e)).collect();
    let file_alerts = || -> Vec<Value> {
        std::fs::read_to_string(org.path("alerts.jsonl"))
            .unwrap_or_default()
            // Whole lines only: the sink may be in the middle of appending one.
            .split_inclusive('\n')
            .filter_map(|l| l.strip_suffix('\n'))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    // The file and NATS sinks take their pending alerts as one batch: what each held at the
    // kill.
    let file_before: HashSet<String> = file_alerts()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    let nats_before: HashSet<String> = sub.settled().into_iter().map(|m| m.msg_id).collect();
    let c = org.collector(0, &extra);
    let distinct = |ids: Vec<String>| ids.into_iter().collect::<HashSet<_>>().len();
    procs::wait_until(WITHIN, "every sink holds every alert", || {
        distinct(
            file_alerts()
                .iter()
                .map(|a| a["id"].as_str().unwrap().to_owned())
                .collect(),
        ) >= wanted.len()
            && distinct(hook.taken().into_iter().map(|t| t.id).collect()) >= wanted.len()
            && distinct(sub.messages().into_iter().map(|m| m.msg_id).collect()) >= wanted.len()
    });
    let files = file_alerts();
    let taken = hook.taken();
    let msgs = sub.messages();
    for m in &msgs {
        check(m, &account, &expect);
    }
    for a in files.iter().chain(taken.iter().map(|t| &t.body)) {
        let e = &expect[a["detail"]["eventID"].as_str().unwrap()];
        assert_eq!(&a["detail"], e);
    }
    assert!(hook.bad().is_empty(), "{:?}", hook.bad());
    let per_sink = [
        (
            "file",
            count_ids(files.iter().map(|a| a["id"].as_str().unwrap())),
        ),
        ("webhook", count_ids(taken.iter().map(|t| t.id.as_str()))),
        ("nats", count_ids(msgs.iter().map(|m| m.msg_id.as_str()))),
    ];
    let mut repeats = 0;
    for (name, times) in &per_sink {
        assert_eq!(
            times.keys().cloned().collect::<HashSet<_>>(),
            wanted,
            "{name}: every alert, under the same ids as the other sinks, no other"
        );
        let twice: HashSet<String> = times
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(id, _)| id.clone())
            .collect();
        assert!(
            times.values().all(|n| *n <= 2),
            "{name}: no alert more than twice: {times:?}"
        );
        if let Some(before) = match *name {
            "file" => Some(&file_before),
            "nats" => Some(&nats_before),
            _ => None,
        } {
            assert!(
                twice.is_subset(before),
                "{name}: only the batch it took before the kill may come twice: {times:?}"
            );
        } else {
            assert!(
                twice.len() <= 1,
                "{name}: only the alert in flight at the kill may come twice: {times:?}"
            );
        }
        repeats += usize::from(!twice.is_empty());
    }
    drop(c);
    repeats
}

#[test]
fn killed_between_store_and_delivery_file_webhook_and_nats_each_get_every_alert_exactly_once() {
    // Aborted right after the first evaluated range's alerts were recorded, before any sink
    // saw one: after the restart, each sink takes each alert once.
    assert_eq!(three_sinks_across_a_kill("alerts-recorded", 58), 0);
}

#[test]
fn killed_right_after_a_sink_took_alerts_only_those_come_again_under_their_ids() {
    let repeats = three_sinks_across_a_kill("alert-sent", 59);
    assert!(
        (1..=3).contains(&repeats),
        "what a sink took right before the kill came again, to that sink only: {repeats}"
    );
}
