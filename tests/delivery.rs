//! What the agent and the collector do with batches that cannot be delivered as sent: too
//! large (split to fit; a single event too large for any batch is a dead letter), a
//! compression bomb, an over-size message and garbage on the wire (a precise status and a warn
//! log; the collector keeps serving), conflicts (dead letters with the reason), an agent whose
//! configured account is not its certificate's (refused at start), and the summary line and
//! exit status of `--exit-when-drained`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/org.rs"]
mod org;
#[path = "common/procs.rs"]
mod procs;

use std::collections::HashSet;
use std::process::Stdio;
use std::time::Duration;

use common::{orgtrail, run, stdout};
use org::{Org, events, p};
use orgtrail_proto::v1::ingest_client::IngestClient;
use orgtrail_proto::v1::{BatchAck, EventBatch};
use procs::{Lines, wait_exit};
use tonic::codec::CompressionEncoding;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// Runs an agent with `--exit-when-drained`; returns (exit code, stdout, stderr).
fn agent_once(cfg: &std::path::Path) -> (Option<i32>, String, String) {
    let out = orgtrail()
        .args(["agent", "--config", &p(cfg), "--exit-when-drained"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn dead_letters(org: &Org, name: &str) -> String {
    stdout(&run(
        &[
            "agent",
            "dead-letters",
            "--spool",
            &p(&org.path(&format!("spool-{name}"))),
        ],
        b"",
    ))
}

/// Removes the `account = ...` line: the agent takes its account from its certificate.
fn without_account(cfg: &std::path::Path) {
    let text = std::fs::read_to_string(cfg).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("account ="))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(cfg, text).unwrap();
}

#[test]
fn batches_over_the_collectors_limit_are_split_and_all_arrive() {
    let org = Org::new();
    // 64 KiB per message (and so per event): the agent's batches of 1,000 events (about
    // 1.5 MB) must be split into about 25 pieces each.
    let collector = org.collector(
        0,
        "[limits]\nmax_message_bytes = 65536\nmax_event_bytes = 65536\n",
    );
    let (account, file, want) = events(&org, "a", 3_000, 401);
    // One valid event of 100 KB: under CloudTrail's 256 KiB, over what one message may hold
    // here. The agent cannot send it in any batch: a dead letter, and the rest flows.
    let first = want.iter().next().unwrap().clone();
    let big = first.replacen("{", &format!("{{\"pad\":\"{}\",", "x".repeat(100_000)), 1);
    let big = big.replacen(
        &serde_json::from_str::<serde_json::Value>(&first).unwrap()["eventID"]
            .as_str()
            .unwrap()
            .to_string(),
        "00000000-0000-4000-8000-000000000001",
        1,
    );
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str(&big);
    text.push('\n');
    std::fs::write(&file, &text).unwrap();
    org.issue("agent", "agent", Some(&account));
    let cfg = org.agent_config("agent", &account, "agent", &file, collector.port);
    without_account(&cfg);
    let (code, out, err) = agent_once(&cfg);
    // Everything but the one event arrived; it is a dead letter with the reason, and the
    // agent says so and exits 1.
    let lines = text.lines().count();
    assert!(
        out.contains(&format!(
            "orgtrail agent: shipped={} duplicates=",
            lines - 1
        )) && out.contains("conflicts=0 rejected=1 dead_lettered=1"),
        "{out}\n{err}"
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("1 events were dead-lettered"), "{err}");
    drop(collector);
    let stored = org.stored();
    let got: HashSet<String> = stored.iter().cloned().collect();
    assert_eq!(got.len(), stored.len());
    assert_eq!(got, want);
    let dl = dead_letters(&org, "agent");
    assert!(
        dl.contains("eventID 00000000-0000-4000-8000-000000000001")
            && dl.contains(&format!("too large: the event is {} bytes", big.len()))
            && dl.contains("limit of 65536 bytes per batch message"),
        "{dl}"
    );
    assert!(dl.ends_with("dead-letters=1\n"), "{dl}");
}

/// A channel to the collector with the agent certificate `name`.
async fn channel(org: &Org, port: u16, name: &str) -> Channel {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(
            std::fs::read(org.path("ca/ca.pem")).unwrap(),
        ))
        .identity(Identity::from_pem(
            std::fs::read(org.path(&format!("{name}.pem"))).unwrap(),
            std::fs::read(org.path(&format!("{name}.key"))).unwrap(),
        ))
        .domain_name("localhost");
    Channel::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// An ingest client with the agent certificate `name`.
async fn client(org: &Org, port: u16, name: &str) -> IngestClient<Channel> {
    IngestClient::new(channel(org, port, name).await).max_encoding_message_size(usize::MAX)
}

/// Pushes `batches` on one stream; returns the acknowledgements and how the stream ended.
async fn push(
    c: &mut IngestClient<Channel>,
    batches: Vec<EventBatch>,
) -> (Vec<BatchAck>, Result<(), tonic::Status>) {
    let stream = tokio_stream::iter(batches);
    let mut acks = match c.push(stream).await {
        Ok(r) => r.into_inner(),
        Err(s) => return (Vec::new(), Err(s)),
    };
    let mut got = Vec::new();
    loop {
        match acks.message().await {
            Ok(Some(a)) => got.push(a),
            Ok(None) => return (got, Ok(())),
            Err(s) => return (got, Err(s)),
        }
    }
}

/// Sends `bytes` as the one message of an Ingest.Push stream, framed as gRPC but not an
/// EventBatch; returns how the stream ended.
async fn push_raw(org: &Org, port: u16, bytes: Vec<u8>) -> tonic::Status {
    struct Raw;
    struct RawEnc;
    struct RawDec;
    impl tonic::codec::Encoder for RawEnc {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn encode(
            &mut self,
            item: Vec<u8>,
            dst: &mut tonic::codec::EncodeBuf<'_>,
        ) -> Result<(), tonic::Status> {
            bytes::BufMut::put_slice(dst, &item);
            Ok(())
        }
    }
    impl tonic::codec::Decoder for RawDec {
        type Item = ();
        type Error = tonic::Status;
        fn decode(
            &mut self,
            src: &mut tonic::codec::DecodeBuf<'_>,
        ) -> Result<Option<()>, tonic::Status> {
            let n = bytes::Buf::remaining(src);
            bytes::Buf::advance(src, n);
            Ok(Some(()))
        }
    }
    impl tonic::codec::Codec for Raw {
        type Encode = Vec<u8>;
        type Decode = ();
        type Encoder = RawEnc;
        type Decoder = RawDec;
        fn encoder(&mut self) -> RawEnc {
            RawEnc
        }
        fn decoder(&mut self) -> RawDec {
            RawDec
        }
    }
    let mut grpc = tonic::client::Grpc::new(channel(org, port, "agent").await);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/orgtrail.v1.Ingest/Push");
    let mut acks = match grpc
        .streaming(
            tonic::Request::new(tokio_stream::iter(vec![bytes])),
            path,
            Raw,
        )
        .await
    {
        Ok(r) => r.into_inner(),
        Err(s) => return s,
    };
    loop {
        match acks.message().await {
            Ok(Some(())) => {}
            Ok(None) => return tonic::Status::ok("the stream ended with OK"),
            Err(s) => return s,
        }
    }
}

#[test]
fn an_oversize_message_a_compression_bomb_and_garbage_get_a_precise_status_and_a_warn_log() {
    let org = Org::new();
    let mut collector = org.collector_with_log(0, "[limits]\nmax_message_bytes = 1048576\n", true);
    let log = Lines::collect(collector.log.take().unwrap());
    let (account, file, want) = events(&org, "a", 100, 402);
    org.issue("agent", "agent", Some(&account));
    let good: Vec<Vec<u8>> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| l.as_bytes().to_vec())
        .collect();
    let wire = |evs: &[Vec<u8>]| evs.iter().cloned().map(Into::into).collect();
    let port = collector.port;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // 1. A good batch, then one of 2 MiB: the first is acknowledged, then the stream ends
        //    with RESOURCE_EXHAUSTED naming the limit.
        let mut c = client(&org, port, "agent").await;
        let (acks, end) = push(
            &mut c,
            vec![
                EventBatch {
                    batch_id: 1,
                    events: wire(&good[..10]),
                },
                EventBatch {
                    batch_id: 2,
                    events: vec![vec![b' '; 2 << 20].into()],
                },
            ],
        )
        .await;
        let s = end.expect_err("an over-size message is refused");
        assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
        assert!(
            s.message()
                .contains("limit of 1048576 bytes (limits.max_message_bytes)"),
            "{s:?}"
        );
        assert_eq!(
            s.metadata()
                .get("orgtrail-max-message-bytes")
                .and_then(|v| v.to_str().ok()),
            Some("1048576")
        );
        assert_eq!(acks.len(), 1, "the batch before it is acknowledged first");
        assert_eq!(acks[0].stored, 10);

        // 2. A compression bomb: 64 MiB of spaces that zstd packs into a few KiB, under the
        //    limit on the wire, far over it decompressed. Refused at the limit.
        let mut c = client(&org, port, "agent")
            .await
            .send_compressed(CompressionEncoding::Zstd);
        let (acks, end) = push(
            &mut c,
            vec![EventBatch {
                batch_id: 3,
                events: vec![vec![b' '; 64 << 20].into()],
            }],
        )
        .await;
        let s = end.expect_err("a compression bomb is refused");
        assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
        assert!(
            s.message()
                .contains("decompresses to more than the collector's limit of 1048576 bytes"),
            "{s:?}"
        );
        assert!(acks.is_empty());

        // 3. Garbage where an EventBatch should be: INVALID_ARGUMENT.
        let s = push_raw(&org, port, vec![0x0f, 0x01, 0x02]).await;
        assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
        assert!(
            s.message()
                .starts_with("malformed batch message: failed to decode Protobuf message"),
            "{s:?}"
        );

        // 4. The collector keeps serving: the rest arrives on a new stream.
        let mut c = client(&org, port, "agent").await;
        let (acks, end) = push(
            &mut c,
            vec![EventBatch {
                batch_id: 4,
                events: wire(&good[10..]),
            }],
        )
        .await;
        end.unwrap();
        assert_eq!(acks.len(), 1);
        assert_eq!(
            acks[0].stored + acks[0].duplicates,
            (good.len() - 10) as u32
        );
    });
    // Each refusal is a warn line naming the account, the code and the limit.
    let over = log.wait_for(
        &[
            "WARN",
            "ingest stream refused",
            "ResourceExhausted",
            "over the collector's limit",
        ],
        Duration::from_secs(30),
    );
    assert!(over.contains(&account), "{over}");
    log.wait_for(
        &["WARN", "ingest stream refused", "decompresses to more than"],
        Duration::from_secs(30),
    );
    log.wait_for(
        &[
            "WARN",
            "ingest stream refused",
            "InvalidArgument",
            "malformed batch message",
        ],
        Duration::from_secs(30),
    );
    drop(collector);
    let got: HashSet<String> = org.stored().into_iter().collect();
    assert_eq!(got, want);
}

#[test]
fn an_agent_whose_account_is_not_its_certificates_is_refused_at_start() {
    let org = Org::new();
    let collector = org.collector(0, "");
    let (account, file, _) = events(&org, "a", 20, 403);
    org.issue("agent", "agent", Some(&account));
    let other = if account == "111122223333" {
        "444455556666"
    } else {
        "111122223333"
    };
    let cfg = org.agent_config("agent", other, "agent", &file, collector.port);
    let (code, _, err) = agent_once(&cfg);
    assert_ne!(code, Some(0));
    assert!(
        err.contains(&format!(
            "account: {other} is not the account of the certificate"
        )) && err.contains(&format!("agent.pem ({account})")),
        "{err}"
    );
    // Nothing was read, spooled or sent.
    assert!(!org.path("spool-agent").exists());
    drop(collector);
    assert!(org.stored().is_empty());
}

#[test]
fn conflicts_are_dead_lettered_with_the_reason_and_counted() {
    let org = Org::new();
    let collector = org.collector(0, "");
    let (account, _, unique) = events(&org, "a", 60, 404);
    let mut unique: Vec<String> = unique.into_iter().collect();
    unique.sort();
    org.issue("agent", "agent", Some(&account));
    let first = org.path("first.jsonl");
    std::fs::write(&first, unique.join("\n") + "\n").unwrap();
    let cfg = org.agent_config("agent", &account, "agent", &first, collector.port);
    let (code, out, err) = agent_once(&cfg);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(&format!(
            "orgtrail agent: shipped={} duplicates=0 conflicts=0 rejected=0 dead_lettered=0",
            unique.len()
        )),
        "{out}"
    );
    // The same events again, 10 of them with other bytes under the same eventID.
    let second: Vec<String> = unique
        .iter()
        .enumerate()
        .map(|(i, l)| {
            if i % 6 == 0 {
                l.replacen('{', "{\"changed\":true,", 1)
            } else {
                l.clone()
            }
        })
        .collect();
    let changed = second.iter().filter(|l| l.contains("\"changed\"")).count();
    assert_eq!(changed, 10);
    let again = org.path("second.jsonl");
    std::fs::write(&again, second.join("\n") + "\n").unwrap();
    let cfg = org.agent_config("again", &account, "agent", &again, collector.port);
    let (code, out, err) = agent_once(&cfg);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        out.contains(&format!(
            "orgtrail agent: shipped={} duplicates={} conflicts={changed} rejected=0 dead_lettered={changed}",
            unique.len() - changed,
            unique.len() - changed
        )),
        "{out}"
    );
    let dl = dead_letters(&org, "again");
    assert_eq!(
        dl.lines()
            .filter(|l| l.contains("conflict: the collector already holds this eventID"))
            .count(),
        changed,
        "{dl}"
    );
    drop(collector);
    // The store still holds the first bytes only.
    let got: HashSet<String> = org.stored().into_iter().collect();
    assert_eq!(got, unique.into_iter().collect());
}

#[test]
fn exit_when_drained_prints_a_summary_and_fails_on_dead_letters() {
    let org = Org::new();
    let collector = org.collector(0, "");
    let (account, file, want) = events(&org, "a", 200, 405);
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("{not json\n");
    std::fs::write(&file, &text).unwrap();
    org.issue("agent", "agent", Some(&account));
    let cfg = org.agent_config("agent", &account, "agent", &file, collector.port);
    let mut child = orgtrail()
        .args(["agent", "--config", &p(&cfg), "--exit-when-drained"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Lines::drain(child.stdout.take().unwrap());
    let err = Lines::drain(child.stderr.take().unwrap());
    let status = wait_exit(&mut child, Duration::from_secs(60), &err);
    assert_eq!(status.code(), Some(1), "{}", err.text());
    let summary = out.wait_for(&["orgtrail agent: "], Duration::from_secs(5));
    assert_eq!(
        summary,
        format!(
            "orgtrail agent: shipped=200 duplicates={} conflicts=0 rejected=0 dead_lettered=1 read=201",
            200 - want.len()
        )
    );
    // The agent's last line, written just before it exits: its reader may still be
    // collecting it when the exit is seen.
    err.wait_for(
        &["1 events were dead-lettered in this run; list them with `orgtrail agent dead-letters --spool"],
        Duration::from_secs(60),
    );
    drop(collector);
    let got: HashSet<String> = org.stored().into_iter().collect();
    assert_eq!(got, want);
}
