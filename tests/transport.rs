//! Collector and agents as real processes over mutual TLS on loopback, with real certificates
//! and real sled stores: nothing lost, nothing forged, nothing stored twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/org.rs"]
mod org;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

use common::{orgtrail, run, stdout};
use org::{Org, events, p};
use orgtrail_proto::v1::EventBatch;
use orgtrail_proto::v1::ingest_client::IngestClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

#[test]
fn three_agents_ship_exactly_the_unique_events() {
    let org = Org::new();
    let collector = org.collector(0, "");
    let mut agents = Vec::new();
    let mut want: HashSet<String> = HashSet::new();
    for (i, seed) in [(1, 101u64), (2, 102), (3, 103)] {
        // 100,000 events in all, 5% of them redeliveries.
        let (account, file, unique) = events(
            &org,
            &format!("a{i}"),
            if i == 1 { 33_334 } else { 33_333 },
            seed,
        );
        want.extend(unique);
        org.issue(&format!("agent{i}"), "agent", Some(&account));
        let cfg = org.agent_config(
            &format!("agent{i}"),
            &account,
            &format!("agent{i}"),
            &file,
            collector.port,
        );
        // One agent per wire compression: zstd (the default), gzip, none.
        let compression = ["zstd", "gzip", "none"][i - 1];
        let mut text = std::fs::read_to_string(&cfg).unwrap();
        text.push_str(&format!("[batch]\ncompression = \"{compression}\"\n"));
        std::fs::write(&cfg, text).unwrap();
        agents.push(
            orgtrail()
                .args(["agent", "--config", &p(&cfg), "--exit-when-drained"])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
    }
    for a in agents {
        let out = a.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    drop(collector);
    let stored = org.stored();
    let got: HashSet<String> = stored.iter().cloned().collect();
    assert_eq!(got.len(), stored.len(), "nothing stored twice");
    assert_eq!(got, want, "exactly the unique events, byte-identical");
}

#[test]
fn a_collector_killed_mid_stream_loses_nothing_after_restart() {
    let org = Org::new();
    let (account, file, want) = events(&org, "a", 20000, 7);
    org.issue("agent", "agent", Some(&account));
    // Restarted on the same port below: one the kernel never hands to a connection meanwhile.
    let mut collector = org.collector_with_log(common::quiet_port(), "", true);
    let port = collector.port;
    let cfg = org.agent_config("agent", &account, "agent", &file, port);
    let agent = orgtrail()
        .args(["agent", "--config", &p(&cfg), "--exit-when-drained"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the collector as soon as it reports a stored batch: mid-stream.
    let data = org.path("data");
    let log = collector.log.as_mut().unwrap();
    loop {
        let line = log
            .next()
            .expect("the collector logs stored batches")
            .unwrap();
        if line.contains("batch stored") {
            break;
        }
    }
    assert!(collector_alive(&mut collector.child));
    collector.child.kill().unwrap();
    collector.child.wait().unwrap();
    // Restart on the same port; the agent reconnects and resends what was not acknowledged.
    let restarted = org.collector(port, "");
    let out = agent.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(restarted);
    let stored = org.stored();
    let got: HashSet<String> = stored.iter().cloned().collect();
    assert_eq!(got.len(), stored.len(), "nothing stored twice");
    assert_eq!(got, want);
    let v = run(
        &[
            "verify",
            "--data-dir",
            &p(&data),
            "--keys",
            &p(&org.path("keys")),
        ],
        b"",
    );
    assert!(v.status.success(), "{}", stdout(&v));
}

fn collector_alive(c: &mut Child) -> bool {
    matches!(c.try_wait(), Ok(None))
}

#[test]
fn events_of_another_account_are_rejected_and_dead_lettered() {
    let org = Org::new();
    let collector = org.collector(0, "");
    let (mine, _, _) = events(&org, "mine", 10, 11);
    let (_, theirs_file, _) = events(&org, "theirs", 300, 12);
    org.issue("agent", "agent", Some(&mine));
    let cfg = org.agent_config("agent", &mine, "agent", &theirs_file, collector.port);
    let out = orgtrail()
        .args(["agent", "--config", &p(&cfg), "--exit-when-drained"])
        .output()
        .unwrap();
    // Drained, but with dead letters: said in the summary and in the exit status.
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).contains("shipped=0 duplicates=0 conflicts=0 rejected=300 dead_lettered=300"),
        "{}",
        stdout(&out)
    );
    drop(collector);
    assert!(
        org.stored().is_empty(),
        "none of another account's events is stored"
    );
    let dl = run(
        &[
            "agent",
            "dead-letters",
            "--spool",
            &p(&org.path("spool-agent")),
        ],
        b"",
    );
    let text = stdout(&dl);
    // Every line, redeliveries included, was refused and kept with its reason.
    assert!(text.ends_with("dead-letters=300\n"), "{text}");
    assert!(text.contains("wrong account: recipientAccountId"), "{text}");
    assert!(
        text.contains(&format!("is not this agent's account {mine}")),
        "{text}"
    );
}

#[test]
fn auditor_and_revoked_certificates_cannot_ingest() {
    let org = Org::new();
    let (account, file, _) = events(&org, "a", 20, 21);
    org.issue("auditor", "auditor", None);
    org.issue("agent", "agent", Some(&account));
    // The revocation list names the agent's serial.
    let serial = {
        let pem = std::fs::read_to_string(org.path("agent.pem")).unwrap();
        let der = orgtrail_der(&pem);
        serial_of(&der)
    };
    std::fs::write(org.path("revoked.txt"), format!("# revoked\n{serial}\n")).unwrap();
    let collector = org.collector(0, "revoked = \"revoked.txt\"\n");

    let cfg = org.agent_config("auditor", &account, "auditor", &file, collector.port);
    let out = orgtrail()
        .args(["agent", "--config", &p(&cfg), "--exit-when-drained"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("has role auditor: only agent certificates may ingest"),
        "{err}"
    );

    let cfg = org.agent_config("agent", &account, "agent", &file, collector.port);
    let out = orgtrail()
        .args(["agent", "--config", &p(&cfg), "--exit-when-drained"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("(serial {serial}) is revoked")),
        "{err}"
    );
    drop(collector);
    assert!(org.stored().is_empty());
}

fn orgtrail_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

/// The serial number of a DER certificate, lowercase hex (as `certs issue` prints it).
fn serial_of(der: &[u8]) -> String {
    let out = run(&["certs", "issue", "--help"], b"");
    assert!(out.status.success());
    // Parse: SEQUENCE { SEQUENCE(tbs) { [0] version, INTEGER serial ... } }
    let mut i = 0;
    let read_hdr = |i: &mut usize| -> (u8, usize) {
        let tag = der[*i];
        let mut len = der[*i + 1] as usize;
        *i += 2;
        if len & 0x80 != 0 {
            let n = len & 0x7f;
            len = 0;
            for _ in 0..n {
                len = (len << 8) | der[*i] as usize;
                *i += 1;
            }
        }
        (tag, len)
    };
    read_hdr(&mut i); // certificate
    read_hdr(&mut i); // tbsCertificate
    let (tag, len) = read_hdr(&mut i);
    if tag == 0xa0 {
        i += len; // version
    }
    let (_, len) = read_hdr(&mut i);
    der[i..i + len].iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_plaintext_connection_gets_no_service() {
    use std::io::{Read, Write};
    let org = Org::new();
    let collector = org.collector(0, "");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", collector.port)).unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    // Whatever comes back is a TLS alert or nothing, never an HTTP/2 frame.
    assert!(!buf.windows(4).any(|w| w == b"HTTP"));
    assert!(buf.is_empty() || buf[0] == 0x15, "{buf:?}");
}

#[test]
fn an_agent_killed_mid_stream_resumes_from_its_spool() {
    let org = Org::new();
    let (account, file, want) = events(&org, "a", 20000, 41);
    org.issue("agent", "agent", Some(&account));
    let mut collector = org.collector_with_log(0, "", true);
    let cfg = org.agent_config("agent", &account, "agent", &file, collector.port);
    let mut agent = orgtrail()
        .args(["agent", "--config", &p(&cfg), "--exit-when-drained"])
        .spawn()
        .unwrap();
    let log = collector.log.as_mut().unwrap();
    loop {
        let line = log
            .next()
            .expect("the collector logs stored batches")
            .unwrap();
        if line.contains("batch stored") {
            break;
        }
    }
    agent.kill().unwrap();
    assert_eq!(agent.wait().unwrap().code(), None, "killed mid-stream");
    // Restarted, the agent ships what its spool still holds and what the source has left.
    let out = orgtrail()
        .args(["agent", "--config", &p(&cfg), "--exit-when-drained"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(collector);
    let stored = org.stored();
    let got: HashSet<String> = stored.iter().cloned().collect();
    assert_eq!(got.len(), stored.len(), "nothing stored twice");
    assert_eq!(got, want);
}

#[test]
fn agents_spool_while_the_collector_is_down_and_deliver_after() {
    let org = Org::new();
    let (account, file, want) = events(&org, "a", 3000, 51);
    org.issue("agent", "agent", Some(&account));
    // A port with nobody listening yet.
    let port = common::quiet_port();
    let cfg = org.agent_config("agent", &account, "agent", &file, port);
    let mut agent = orgtrail()
        .args(["agent", "--config", &p(&cfg), "--exit-when-drained"])
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the agent has found the collector missing.
    let mut err = BufReader::new(agent.stderr.take().unwrap()).lines();
    loop {
        let line = err
            .next()
            .expect("the agent reports the failed connection")
            .unwrap();
        if line.contains("shipping failed") {
            break;
        }
    }
    let collector = org.collector(port, "");
    let status = agent.wait().unwrap();
    assert!(status.success());
    drop(collector);
    let got: HashSet<String> = org.stored().into_iter().collect();
    assert_eq!(got, want);
}

#[test]
fn a_certificate_from_another_ca_is_refused() {
    let org = Org::new();
    let other = Org::new();
    let (account, file, _) = events(&org, "a", 50, 61);
    other.issue("agent", "agent", Some(&account));
    for ext in ["pem", "key"] {
        std::fs::copy(
            other.path(&format!("agent.{ext}")),
            org.path(&format!("stranger.{ext}")),
        )
        .unwrap();
    }
    let collector = org.collector(0, "");
    let cfg = org.agent_config("stranger", &account, "stranger", &file, collector.port);
    // The agent checks its certificate against the CA at start, and stops: no retrying.
    let out = orgtrail()
        .args(["agent", "--config", &p(&cfg), "--exit-when-drained"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stranger.pem: "), "{err}");
    assert!(err.contains("not retrying"), "{err}");
    drop(collector);
    assert!(org.stored().is_empty());
}

#[test]
fn a_client_without_a_certificate_is_refused() {
    let org = Org::new();
    let collector = org.collector(0, "");
    let (_, file, _) = events(&org, "a", 5, 71);
    let batch = EventBatch {
        batch_id: 1,
        events: std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .map(|l| l.as_bytes().to_vec().into())
            .collect(),
    };
    let ca = std::fs::read(org.path("ca/ca.pem")).unwrap();
    let port = collector.port;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let result: Result<(), String> = rt.block_on(async move {
        // Trusts the collector, but presents no certificate of its own.
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name("localhost");
        let channel = Channel::from_shared(format!("https://127.0.0.1:{port}"))
            .unwrap()
            .tls_config(tls)
            .unwrap();
        let channel = channel.connect().await.map_err(|e| e.to_string())?;
        let mut client = IngestClient::new(channel);
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(batch).await.unwrap();
        drop(tx);
        let mut acks = client
            .push(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map_err(|s| s.to_string())?
            .into_inner();
        acks.message().await.map(|_| ()).map_err(|s| s.to_string())
    });
    assert!(
        result.is_err(),
        "a client without a certificate got an answer"
    );
    drop(collector);
    assert!(org.stored().is_empty());
}

#[test]
fn bad_source_lines_are_dead_lettered_with_the_reason_and_the_rest_flows() {
    let org = Org::new();
    let collector = org.collector(0, "");
    let (account, file, want) = events(&org, "a", 200, 81);
    let mut text = std::fs::read_to_string(&file).unwrap();
    let first = text.lines().next().unwrap().to_string();
    let huge = first.replacen("{", &format!("{{\"pad\":\"{}\",", "x".repeat(300_000)), 1);
    text.push_str("{not json\n");
    text.push_str(&huge);
    text.push('\n');
    std::fs::write(&file, text).unwrap();
    org.issue("agent", "agent", Some(&account));
    let cfg = org.agent_config("agent", &account, "agent", &file, collector.port);
    let out = orgtrail()
        .args(["agent", "--config", &p(&cfg), "--exit-when-drained"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "two dead letters: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).contains("conflicts=0 rejected=0 dead_lettered=2"),
        "{}",
        stdout(&out)
    );
    drop(collector);
    let got: HashSet<String> = org.stored().into_iter().collect();
    assert_eq!(got, want, "the good events flow");
    let dl = stdout(&run(
        &[
            "agent",
            "dead-letters",
            "--spool",
            &p(&org.path("spool-agent")),
        ],
        b"",
    ));
    assert!(dl.contains("line 201: event is not JSON"), "{dl}");
    assert!(dl.contains("line 202: event is"), "{dl}");
    assert!(dl.contains("larger than the limit of 262144 bytes"), "{dl}");
    assert!(dl.ends_with("dead-letters=2\n"), "{dl}");
}

#[test]
fn sigterm_stops_the_collector_cleanly_with_a_final_checkpoint() {
    let org = Org::new();
    let (account, file, want) = events(&org, "a", 700, 91);
    org.issue("agent", "agent", Some(&account));
    let mut collector = org.collector(0, "");
    let cfg = org.agent_config("agent", &account, "agent", &file, collector.port);
    let out = orgtrail()
        .args(["agent", "--config", &p(&cfg), "--exit-when-drained"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let term = std::process::Command::new("kill")
        .args(["-TERM", &collector.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = collector.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean stop");
    // The shutdown checkpoint covers every stored event.
    let cp = run(
        &[
            "checkpoint",
            "--data-dir",
            &p(&org.path("data")),
            "--keys",
            &p(&org.path("keys")),
        ],
        b"",
    );
    assert!(cp.status.success(), "{}", common::stderr(&cp));
    let v: serde_json::Value = serde_json::from_slice(&cp.stdout).unwrap();
    assert_eq!(v["tree_size"].as_u64().unwrap(), want.len() as u64);
}
