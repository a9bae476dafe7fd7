//! Security fails closed: revocation (at start, while streaming, when its file goes bad),
//! certificates (foreign CA, expired, none, wrong role, wrong key usage, wrong key), plaintext.
//! Real binaries over real mutual TLS on loopback. Each refusal gets a precise status or
//! message, the collector logs it at warn with the certificate's name and serial, and the
//! collector goes on serving a good agent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/org.rs"]
mod org;

use std::collections::HashSet;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::{orgtrail, run, stderr};
use org::{Collector, Log, Org, agent_drains, events, p, spawn_agent};
use orgtrail_crypto::certs::{IssueRequest, PeerIdentity, Role, identity_from_der, pem_to_der};
use orgtrail_proto::v1::ingest_client::IngestClient;
use orgtrail_proto::v1::{BatchAck, EventBatch};
use tokio::sync::mpsc;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

const DEADLINE: Duration = Duration::from_secs(60);

/// Waits for a collector log line holding every one of `parts`, and returns it.
fn logged(log: &mut Log, parts: &[&str]) -> String {
    loop {
        let line = log.wait_for(parts[0], DEADLINE.as_secs());
        if parts.iter().all(|p| line.contains(p)) {
            return line;
        }
    }
}

fn started(org: &Org, extra: &str) -> (Collector, Log) {
    let mut c = org.collector_with_log(0, extra, true);
    let log = Log::of(&mut c);
    (c, log)
}

fn identity(org: &Org, cert: &str) -> PeerIdentity {
    let pem = std::fs::read_to_string(org.path(&format!("{cert}.pem"))).unwrap();
    identity_from_der(&pem_to_der(&pem).unwrap()).unwrap()
}

/// Waits for a process with a deadline; kills it and fails when it overstays.
fn finished(mut child: Child, what: &str) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("{what} did not stop within {DEADLINE:?}: {}", stderr(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// A good agent ships a few events through `c` and exits 0: the collector still serves.
fn serves_a_good_agent(org: &Org, c: &Collector, name: &str, seed: u64) {
    let (account, file, _) = events(org, name, 40, seed);
    org.issue(name, "agent", Some(&account));
    let cfg = org.agent_config(name, &account, name, &file, c.port);
    agent_drains(spawn_agent(&cfg), DEADLINE.as_secs());
}

/// Starts the collector and expects it to refuse to start; returns its error output.
fn refuses_to_start(org: &Org, extra: &str) -> String {
    let cfg = org.collector_config(0, extra);
    let child = orgtrail()
        .args(["collector", "--config", &p(&cfg)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = finished(child, "a collector that should refuse to start");
    assert!(!out.status.success(), "the collector started");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("listening"),
        "it listened"
    );
    stderr(&out)
}

fn batch(file: &std::path::Path, id: u64, range: std::ops::Range<usize>) -> EventBatch {
    EventBatch {
        batch_id: id,
        events: std::fs::read_to_string(file)
            .unwrap()
            .lines()
            .collect::<Vec<_>>()[range]
            .iter()
            .map(|l| l.as_bytes().to_vec().into())
            .collect(),
    }
}

/// A gRPC client with the certificate `cert` (none: no client certificate).
async fn client(
    org: &Org,
    port: u16,
    cert: Option<&str>,
) -> Result<IngestClient<Channel>, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(
            std::fs::read(org.path("ca/ca.pem")).unwrap(),
        ))
        .domain_name("localhost");
    if let Some(c) = cert {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(org.path(&format!("{c}.pem"))).unwrap(),
            std::fs::read(org.path(&format!("{c}.key"))).unwrap(),
        ));
    }
    let channel = Channel::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await?;
    Ok(IngestClient::new(channel))
}

/// Pushes one batch with `cert`, expecting a refusal, and returns the TLS failure the client
/// saw in the agent's words, if it saw one (the collector refuses a client certificate after
/// the TLS 1.3 handshake, so the failure shows on the first call).
fn tls_refusal(org: &Org, port: u16, cert: Option<&str>, file: &std::path::Path) -> Option<String> {
    let b = batch(file, 1, 0..3);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err: Box<dyn std::error::Error + Send + Sync> = rt.block_on(async {
        let mut c = match client(org, port, cert).await {
            Ok(c) => c,
            Err(e) => return Box::new(e) as _,
        };
        let (tx, rx) = mpsc::channel(1);
        tx.send(b).await.unwrap();
        let r = match c
            .push(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
        {
            Ok(r) => r.into_inner().message().await.map(|_| ()),
            Err(s) => Err(s),
        };
        Box::new(r.expect_err("a refused client got an answer")) as _
    });
    let e: &(dyn std::error::Error + 'static) = err.as_ref();
    orgtrail_crypto::tls::find_tls_error(e).map(|t| orgtrail_crypto::tls::describe(&t))
}

fn issue_between(org: &Org, name: &str, account: &str, from: i64, to: i64) {
    orgtrail_crypto::certs::issue_between(
        &org.path("ca"),
        &IssueRequest {
            role: Role::Agent,
            accounts: vec![account.parse().unwrap()],
            name: name.into(),
            dns: vec![],
            ips: vec![],
            days: 1,
        },
        &org.path(name),
        from,
        to,
    )
    .unwrap();
}

#[test]
fn revoking_a_certificate_cuts_its_open_stream_and_nothing_after_is_stored() {
    let org = Org::new();
    let (account, file, _) = events(&org, "a", 20, 1);
    org.issue("agent", "agent", Some(&account));
    let revoked = org.path("revoked.txt");
    std::fs::write(&revoked, "# nobody yet\n").unwrap();
    let (mut c, mut log) = started(&org, "revoked = \"revoked.txt\"\n");
    let id = identity(&org, "agent");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (before, after) = (batch(&file, 1, 0..10), batch(&file, 11, 10..20));
    let end = rt.block_on(async {
        let mut client = client(&org, c.port, Some("agent")).await.unwrap();
        let (tx, rx) = mpsc::channel(4);
        tx.send(before).await.unwrap();
        let mut acks = client
            .push(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let ack: BatchAck = acks.message().await.unwrap().unwrap();
        assert_eq!(ack.stored + ack.duplicates, 10);
        // Revoked while the stream is open: the stream is cut at the reload.
        std::fs::write(&revoked, format!("{}  # lost laptop\n", id.serial)).unwrap();
        let end = acks.message().await;
        // What this client sends now is never stored.
        let _ = tx.send(after).await;
        end
    });
    let status = end.expect_err("the stream of a revoked certificate ends with an error");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert!(
        status
            .message()
            .contains(&format!("(serial {}) is revoked", id.serial)),
        "{status:?}"
    );
    let line = logged(&mut log, &["WARN", "refused", &id.serial, "is revoked"]);
    assert!(line.contains(&format!("certificate={}", id.name)), "{line}");
    // The real agent with that certificate stops at once, saying why.
    let cfg = org.agent_config("agent", &account, "agent", &file, c.port);
    let out = finished(spawn_agent(&cfg), "a revoked agent");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is revoked"), "{}", stderr(&out));
    serves_a_good_agent(&org, &c, "good", 2);
    let _ = c.child.kill();
    let _ = c.child.wait();
    drop(c);
    let stored: HashSet<String> = org.stored().into_iter().collect();
    let first: HashSet<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .take(10)
        .map(str::to_string)
        .collect();
    let last: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .skip(10)
        .map(str::to_string)
        .collect();
    assert!(first.is_subset(&stored), "what was acknowledged is kept");
    assert!(
        last.iter()
            .all(|l| !stored.contains(l) || first.contains(l)),
        "nothing sent after the revocation was stored"
    );
}

#[test]
fn a_revocation_file_corrupted_or_removed_while_running_keeps_refusing() {
    let org = Org::new();
    let (account, file, _) = events(&org, "a", 10, 3);
    org.issue("agent", "agent", Some(&account));
    let id = identity(&org, "agent");
    let revoked = org.path("revoked.txt");
    std::fs::write(&revoked, format!("{}\n", id.serial)).unwrap();
    let (c, mut log) = started(&org, "revoked = \"revoked.txt\"\n");
    let cfg = org.agent_config("agent", &account, "agent", &file, c.port);
    let still_refused = |step: &str| {
        let out = finished(spawn_agent(&cfg), "a revoked agent");
        assert!(!out.status.success(), "{step}: a revoked agent got in");
        assert!(
            stderr(&out).contains("is revoked"),
            "{step}: {}",
            stderr(&out)
        );
    };
    still_refused("at start");

    // An invalid UTF-8 line: the reload fails, names the line, the last good list stays.
    std::fs::write(&revoked, b"# list\n\xff\xfe\n").unwrap();
    let line = logged(
        &mut log,
        &[
            "ERROR",
            "revocation list not reloaded",
            "line 2",
            "not UTF-8",
        ],
    );
    assert!(line.contains("reload_failures=1"), "{line}");
    still_refused("after a corrupt reload");
    // A garbage line.
    std::fs::write(&revoked, format!("{}\nnot-a-serial\n", id.serial)).unwrap();
    logged(
        &mut log,
        &["revocation list not reloaded", "line 2", "not-a-serial"],
    );
    still_refused("after a garbage line");
    // Removed.
    std::fs::remove_file(&revoked).unwrap();
    logged(
        &mut log,
        &["revocation list not reloaded", "cannot read it"],
    );
    still_refused("after the file was removed");
    // Replaced by a directory.
    std::fs::create_dir(&revoked).unwrap();
    logged(
        &mut log,
        &["revocation list not reloaded", "reload_failures=4"],
    );
    still_refused("after the file became a directory");
    assert!(
        !log.drain()
            .iter()
            .any(|l| l.contains("revocation list reloaded")),
        "no bad list was taken"
    );
    serves_a_good_agent(&org, &c, "good", 4);
}

#[test]
fn a_missing_or_invalid_revocation_file_refuses_to_start() {
    let org = Org::new();
    let extra = "revoked = \"revoked.txt\"\n";
    let err = refuses_to_start(&org, extra);
    assert!(err.contains("revoked.txt: cannot read it"), "{err}");
    std::fs::write(org.path("revoked.txt"), "# ok\n3f1c\nsha256:abc\n").unwrap();
    let err = refuses_to_start(&org, extra);
    assert!(
        err.contains("revoked.txt line 3: \"sha256:abc\" is not a SHA-256 fingerprint"),
        "{err}"
    );
    std::fs::write(org.path("revoked.txt"), b"caf\xe9\n").unwrap();
    let err = refuses_to_start(&org, extra);
    assert!(err.contains("revoked.txt line 1: not UTF-8"), "{err}");
    std::fs::remove_file(org.path("revoked.txt")).unwrap();
    std::fs::create_dir(org.path("revoked.txt")).unwrap();
    let err = refuses_to_start(&org, extra);
    assert!(err.contains("revoked.txt: cannot read it"), "{err}");
}

#[test]
fn a_certificate_from_another_ca_is_refused_at_both_ends() {
    let org = Org::new();
    let other = Org::new();
    let (account, file, _) = events(&org, "a", 10, 5);
    other.issue("agent", "agent", Some(&account));
    for ext in ["pem", "key"] {
        std::fs::copy(
            other.path(&format!("agent.{ext}")),
            org.path(&format!("stranger.{ext}")),
        )
        .unwrap();
    }
    let stranger = identity(&org, "stranger");
    let (c, mut log) = started(&org, "");
    // The agent checks its own certificate at start and says what is wrong.
    let cfg = org.agent_config("stranger", &account, "stranger", &file, c.port);
    let out = finished(spawn_agent(&cfg), "an agent with a foreign certificate");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("stranger.pem"), "{err}");
    assert!(
        err.contains("not signed by the trusted CA") || err.contains("unknown issuer"),
        "{err}"
    );
    // Pushed anyway (no check on the client side): refused in the handshake, precisely.
    // The client sees the alert, or only a closed connection; the collector says why.
    if let Some(why) = tls_refusal(&org, c.port, Some("stranger"), &file) {
        assert!(why.contains("the peer"), "{why}");
    }
    let line = logged(
        &mut log,
        &[
            "WARN",
            "TLS handshake refused a client certificate",
            &stranger.serial,
        ],
    );
    assert!(
        line.contains("bad signature") || line.contains("unknown issuer"),
        "{line}"
    );
    // An agent that trusts the other CA sees the collector's certificate as from an unknown
    // issuer: it stops at once instead of retrying, saying why.
    std::fs::copy(other.path("ca/ca.pem"), org.path("other-ca.pem")).unwrap();
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("ca = \"ca/ca.pem\"", "ca = \"other-ca.pem\"");
    std::fs::write(&cfg, text).unwrap();
    let out = finished(
        spawn_agent(&cfg),
        "an agent that does not trust the collector",
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("not retrying"), "{err}");
    assert!(
        err.contains("bad signature") || err.contains("unknown issuer"),
        "{err}"
    );
    serves_a_good_agent(&org, &c, "good", 6);
}

#[test]
fn an_expired_certificate_is_refused_with_its_expiry() {
    let org = Org::new();
    let (account, file, _) = events(&org, "a", 10, 7);
    issue_between(&org, "expired", &account, -30, -2);
    let expired = identity(&org, "expired");
    let (c, mut log) = started(&org, "");
    let cfg = org.agent_config("expired", &account, "expired", &file, c.port);
    let out = finished(spawn_agent(&cfg), "an agent with an expired certificate");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("expired.pem: the certificate expired at "),
        "{err}"
    );
    if let Some(why) = tls_refusal(&org, c.port, Some("expired"), &file) {
        assert!(why.contains("expired"), "{why}");
    }
    let line = logged(
        &mut log,
        &[
            "WARN",
            "TLS handshake refused a client certificate",
            &expired.serial,
        ],
    );
    assert!(line.contains("the certificate expired at "), "{line}");
    // Not yet valid, likewise.
    issue_between(&org, "future", &account, 2, 30);
    let cfg = org.agent_config("future", &account, "future", &file, c.port);
    let out = finished(
        spawn_agent(&cfg),
        "an agent with a certificate not valid yet",
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is not valid before"),
        "{}",
        stderr(&out)
    );
    serves_a_good_agent(&org, &c, "good", 8);
}

#[test]
fn no_certificate_and_plaintext_are_refused_and_logged() {
    use std::io::{Read, Write};
    let org = Org::new();
    let (_, file, _) = events(&org, "a", 10, 9);
    let (c, mut log) = started(&org, "");
    // The client may see only a closed connection; the collector says why.
    if let Some(why) = tls_refusal(&org, c.port, None, &file) {
        assert!(why.contains("certificate required"), "{why}");
    }
    logged(
        &mut log,
        &["WARN", "TLS handshake failed", "certificate required"],
    );

    let mut s = std::net::TcpStream::connect(("127.0.0.1", c.port)).unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(
        !buf.windows(4).any(|w| w == b"HTTP"),
        "no HTTP/2 over plaintext"
    );
    logged(
        &mut log,
        &["WARN", "TLS handshake failed", "does not speak TLS"],
    );
    serves_a_good_agent(&org, &c, "good", 10);
}

#[test]
fn wrong_roles_and_wrong_accounts_are_refused_and_logged() {
    let org = Org::new();
    let (account, file, _) = events(&org, "a", 10, 11);
    let (_, theirs, _) = events(&org, "theirs", 10, 12);
    org.issue("auditor", "auditor", None);
    org.issue("agent", "agent", Some(&account));
    let (auditor, agent_id) = (identity(&org, "auditor"), identity(&org, "agent"));
    let (c, mut log) = started(&org, "");
    // An auditor pushing (the agent itself refuses an auditor certificate at start, so push
    // directly).
    let b = batch(&file, 1, 0..3);
    let status = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut client = client(&org, c.port, Some("auditor")).await.unwrap();
        let (tx, rx) = mpsc::channel(1);
        tx.send(b).await.unwrap();
        match client
            .push(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
        {
            Ok(r) => r
                .into_inner()
                .message()
                .await
                .expect_err("an auditor pushed"),
            Err(s) => s,
        }
    });
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(
        status
            .message()
            .contains("has role auditor: only agent certificates may ingest"),
        "{status:?}"
    );
    logged(
        &mut log,
        &[
            "WARN",
            "refused",
            &auditor.serial,
            "action=ingest",
            "only agent certificates",
        ],
    );
    // An agent querying.
    let mut args = vec!["lookup".to_string()];
    args.extend(org.reader_args(&c, "agent"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&args, b"");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("has role agent: only auditor and admin certificates may query"),
        "{}",
        stderr(&out)
    );
    logged(
        &mut log,
        &["WARN", "refused", &agent_id.serial, "action=query"],
    );
    // Events of another account: refused, logged without the events.
    let cfg = org.agent_config("agent", &account, "agent", &theirs, c.port);
    let _ = finished(
        spawn_agent(&cfg),
        "an agent sending another account's events",
    );
    let line = logged(
        &mut log,
        &[
            "WARN",
            "recipientAccountId is not the certificate's account",
            &agent_id.serial,
        ],
    );
    assert!(!line.contains("eventID"), "{line}");
    serves_a_good_agent(&org, &c, "good", 13);
}

#[test]
fn the_collector_refuses_to_start_with_an_unusable_server_certificate() {
    let org = Org::new();
    let other = Org::new();
    let original = (
        std::fs::read(org.path("server.pem")).unwrap(),
        std::fs::read(org.path("server.key")).unwrap(),
    );
    let put = |pem: &std::path::Path, key: &std::path::Path| {
        std::fs::copy(pem, org.path("server.pem")).unwrap();
        std::fs::copy(key, org.path("server.key")).unwrap();
    };
    // A client certificate as the server's: no serverAuth.
    org.issue("admin", "admin", None);
    put(&org.path("admin.pem"), &org.path("admin.key"));
    let err = refuses_to_start(&org, "");
    assert!(err.contains("server.pem: wrong key usage"), "{err}");
    assert!(err.contains("server authentication"), "{err}");
    // The key of another certificate.
    std::fs::write(org.path("server.pem"), &original.0).unwrap();
    std::fs::copy(org.path("admin.key"), org.path("server.key")).unwrap();
    let err = refuses_to_start(&org, "");
    assert!(
        err.contains("server.key: is not the key of the certificate"),
        "{err}"
    );
    // Issued by another CA.
    put(&other.path("server.pem"), &other.path("server.key"));
    let err = refuses_to_start(&org, "");
    assert!(err.contains("server.pem: "), "{err}");
    assert!(err.contains("the CA is"), "{err}");
    // Expired.
    orgtrail_crypto::certs::issue_between(
        &org.path("ca"),
        &IssueRequest {
            role: Role::Server,
            accounts: vec![],
            name: "collector".into(),
            dns: vec!["localhost".into()],
            ips: vec![],
            days: 1,
        },
        &org.path("server"),
        -10,
        -1,
    )
    .unwrap();
    let err = refuses_to_start(&org, "");
    assert!(
        err.contains("server.pem: the certificate expired at"),
        "{err}"
    );
    // Good again: it starts.
    std::fs::write(org.path("server.pem"), &original.0).unwrap();
    std::fs::write(org.path("server.key"), &original.1).unwrap();
    let c = org.collector(0, "");
    serves_a_good_agent(&org, &c, "good", 14);
}

#[test]
fn certs_issue_refuses_zero_days() {
    let org = Org::new();
    let out = run(
        &[
            "certs",
            "issue",
            "--ca",
            &p(&org.path("ca")),
            "--role",
            "auditor",
            "--days",
            "0",
            "--out",
            &p(&org.path("zero")),
        ],
        b"",
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--days 0 would make a certificate that is already expired"),
        "{}",
        stderr(&out)
    );
    assert!(!org.path("zero.pem").exists() && !org.path("zero.key").exists());
}

/// An agent following a file, so that it runs until stopped.
fn following_agent(
    org: &Org,
    name: &str,
    account: &str,
    file: &std::path::Path,
    port: u16,
) -> Child {
    let cfg = org.agent_config(name, account, name, file, port);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("follow = true\npoll_ms = 50\n");
    std::fs::write(&cfg, text).unwrap();
    orgtrail()
        .args(["agent", "--config", &p(&cfg)])
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_running_agent_revoked_mid_stream_stops_saying_why() {
    let org = Org::new();
    let (account, all, _) = events(&org, "all", 40, 15);
    org.issue("agent", "agent", Some(&account));
    let id = identity(&org, "agent");
    let lines: Vec<String> = std::fs::read_to_string(&all)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let file = org.path("live.jsonl");
    std::fs::write(&file, lines[..20].join("\n") + "\n").unwrap();
    let revoked = org.path("revoked.txt");
    std::fs::write(&revoked, "").unwrap();
    let (mut c, mut log) = started(&org, "revoked = \"revoked.txt\"\n");
    let agent = following_agent(&org, "agent", &account, &file, c.port);
    logged(&mut log, &["batch stored", &account]);
    std::fs::write(&revoked, format!("sha256:{}\n", id.fingerprint)).unwrap();
    logged(&mut log, &["revocation list reloaded"]);
    // What the source has after the revocation is refused: the agent stops with the reason.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap();
    std::io::Write::write_all(&mut f, (lines[20..].join("\n") + "\n").as_bytes()).unwrap();
    let out = finished(agent, "a revoked agent");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("(serial {}) is revoked", id.serial)),
        "{err}"
    );
    // Logged at the reload (an idle agent's stream is cut then) or at its next batch: read
    // already, or still on its way from the collector's log when the agent exited.
    let refusal = ["WARN", "refused", &id.serial, "is revoked"];
    if !log
        .drain()
        .iter()
        .any(|l| refusal.iter().all(|p| l.contains(p)))
    {
        logged(&mut log, &refusal);
    }
    let _ = c.child.kill();
    let _ = c.child.wait();
    drop(c);
    let stored: HashSet<String> = org.stored().into_iter().collect();
    let before: HashSet<&String> = lines[..20].iter().collect();
    assert!(
        lines[20..]
            .iter()
            .all(|l| !stored.contains(l) || before.contains(l)),
        "nothing the source had after the revocation was stored"
    );
}

#[test]
fn an_agent_whose_certificate_expired_while_running_stops_at_its_next_connection() {
    let org = Org::new();
    let (account, file, _) = events(&org, "a", 20, 16);
    org.issue("agent", "agent", Some(&account));
    let (mut c, mut log) = started(&org, "");
    let agent = following_agent(&org, "agent", &account, &file, c.port);
    logged(&mut log, &["batch stored", &account]);
    // The certificate on disk is now an expired one (a renewal gone wrong), and the
    // connection drops: the agent checks before reconnecting, and stops instead of retrying.
    issue_between(&org, "agent", &account, -30, -2);
    let _ = c.child.kill();
    let _ = c.child.wait();
    // More to ship.
    let (_, more, _) = events(&org, "more", 5, 17);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap();
    std::io::Write::write_all(&mut f, &std::fs::read(&more).unwrap()).unwrap();
    let out = finished(agent, "an agent with an expired certificate");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("agent.pem: the certificate expired at"),
        "{err}"
    );
    assert!(err.contains("not retrying"), "{err}");
}

#[test]
fn a_reader_revoked_while_following_is_cut_off() {
    let org = Org::new();
    org.issue("auditor", "auditor", None);
    let id = identity(&org, "auditor");
    let revoked = org.path("revoked.txt");
    std::fs::write(&revoked, "").unwrap();
    let (c, mut log) = started(&org, "revoked = \"revoked.txt\"\n");
    let mut follow = orgtrail()
        .arg("lookup")
        .args(org.reader_args(&c, "auditor"))
        .args(["--follow", "--output", "jsonl"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(follow.stderr.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut err, &mut first).unwrap();
    assert!(first.contains("following events"), "{first}");
    std::fs::write(&revoked, format!("{}\n", id.serial)).unwrap();
    let out = finished(follow, "a revoked follower");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert!(!out.status.success(), "{rest}");
    assert!(rest.contains("is revoked"), "{rest}");
    logged(&mut log, &["WARN", "refused", &id.serial, "action=follow"]);
    serves_a_good_agent(&org, &c, "good", 18);
}

/// One TLS handshake with the collector from a plain rustls client: the client connection
/// after it, or the handshake's error.
fn handshake(
    port: u16,
    config: rustls::ClientConfig,
) -> Result<rustls::ClientConnection, std::io::Error> {
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)?;
    }
    Ok(conn)
}

#[test]
fn the_collector_speaks_tls_1_3_only_with_the_named_suites() {
    let org = Org::new();
    org.issue("auditor", "auditor", None);
    let c = org.collector(0, "");
    let own = orgtrail_crypto::tls::load_own(
        &org.path("auditor.pem"),
        &org.path("auditor.key"),
        &org.path("ca/ca.pem"),
        orgtrail_crypto::tls::Purpose::Client,
    )
    .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let client = |versions: &[&'static rustls::SupportedProtocolVersion]| {
        let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(own.roots.clone())
            .with_client_auth_cert(own.chain.clone(), own.key.clone_key())
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        config
    };

    // A client offering TLS 1.2 and 1.3 gets 1.3, one of the named suites, and HTTP/2.
    let conn = handshake(
        c.port,
        client(&[&rustls::version::TLS12, &rustls::version::TLS13]),
    )
    .unwrap();
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let suite = conn.negotiated_cipher_suite().unwrap().suite();
    assert!(
        orgtrail_crypto::tls::CIPHER_SUITES
            .iter()
            .any(|s| s.suite() == suite),
        "{suite:?}"
    );
    assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]));

    // A client that speaks TLS 1.2 only is refused in the handshake.
    let e = handshake(c.port, client(&[&rustls::version::TLS12])).unwrap_err();
    let tls = orgtrail_crypto::tls::find_tls_error(&e);
    assert!(
        matches!(
            tls,
            Some(rustls::Error::AlertReceived(
                rustls::AlertDescription::ProtocolVersion
                    | rustls::AlertDescription::HandshakeFailure
            ))
        ),
        "{e:?}"
    );
}
