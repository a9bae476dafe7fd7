//! `orgtrail bench alerts`: how soon an alert reaches a webhook after its event was
//! acknowledged. A real collector process (a rule that fires on every event, one webhook sink)
//! takes one event per batch at a steady rate from an in-process client with an agent's
//! certificate over mutual TLS; an in-process HTTP receiver on loopback notes when each
//! alert's request arrived. Both times are read from this process's clock.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use orgtrail_crypto::certs::{self, IssueRequest, Role};
use orgtrail_gen::{GenConfig, Generator};
use orgtrail_proto::v1::EventBatch;

#[derive(Debug, clap::Args)]
pub(crate) struct AlertsArgs {
    /// Events (each one alert) per second.
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// Length of the run, seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

/// When each alert arrived, by the eventID in its payload.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

/// A minimal HTTP/1.1 receiver (keep-alive): notes each request's arrival, answers 200.
pub(crate) fn receiver() -> anyhow::Result<(String, Arrivals)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/alerts", listener.local_addr()?);
    let arrivals: Arrivals = Arc::default();
    let a = arrivals.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let _ = conn.set_nodelay(true);
            let a = a.clone();
            std::thread::spawn(move || serve(conn, &a));
        }
    });
    Ok((url, arrivals))
}

fn serve(conn: std::net::TcpStream, arrivals: &Arrivals) {
    let Ok(mut w) = conn.try_clone() else { return };
    let mut r = BufReader::new(conn);
    loop {
        let mut len = 0usize;
        let mut first = true;
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let line = line.trim_end();
            if line.is_empty() && !first {
                break;
            }
            first = false;
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let at = Instant::now();
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
            && let Some(id) = v["detail"]["eventID"].as_str()
            && let Ok(mut m) = arrivals.lock()
        {
            m.entry(id.to_owned()).or_insert(at);
        }
        if w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

pub(crate) fn run(a: AlertsArgs) -> anyhow::Result<std::process::ExitCode> {
    let root = std::env::temp_dir().join(format!("orgtrail-bench-alerts-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    let result = run_in(&root, &a);
    let _ = std::fs::remove_dir_all(&root);
    result
}

fn run_in(root: &Path, a: &AlertsArgs) -> anyhow::Result<std::process::ExitCode> {
    let exe = std::env::current_exe()?;
    certs::init_ca(&root.join("ca"), "o-bench", 30)?;
    let issue = |role, accounts: Vec<_>, name: &str, dns: Vec<String>| {
        certs::issue(
            &root.join("ca"),
            &IssueRequest {
                role,
                accounts,
                name: name.into(),
                dns,
                ips: vec![],
                days: 2,
            },
            &root.join(name),
        )
    };
    issue(Role::Server, vec![], "server", vec!["localhost".into()])?;
    let status = Command::new(&exe)
        .args(["keys", "init", "--out"])
        .arg(root.join("keys"))
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("keys init failed");
    }
    let count = a.rate * a.seconds;
    let gen_cfg = GenConfig {
        count,
        accounts: 1,
        seed: 5,
        ..GenConfig::default()
    };
    let account = Generator::new(gen_cfg.clone()).account_ids()[0].clone();
    issue(Role::Agent, vec![account.parse()?], "agent", vec![])?;
    let (url, arrivals) = receiver()?;
    std::fs::create_dir_all(root.join("rules"))?;
    std::fs::write(
        root.join("rules/all.json"),
        r#"{"id": "every-event", "pattern": {"eventID": [{"exists": true}]}}"#,
    )?;
    std::fs::write(root.join("webhook.secret"), "bench-secret\n")?;
    let extra = format!(
        "[rules]\ndir = \"rules\"\n[[alerts.webhook]]\nname = \"hook\"\nurl = \"{url}\"\nsecret_file = \"webhook.secret\"\n"
    );
    let (mut collector, port, _) = crate::cmd::bench_transport::start_collector_with(
        &exe,
        root,
        "collector.toml",
        "data",
        &extra,
    )?;
    println!(
        "{count} events, one per batch, at {} events/s; each fires one alert to a webhook on loopback",
        a.rate
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(1)
        .build()?;
    let result = rt.block_on(push(root, port, gen_cfg, a.rate));
    let acked = match result {
        Ok(acked) => acked,
        Err(e) => {
            let _ = collector.kill();
            let _ = collector.wait();
            return Err(e);
        }
    };
    // Every alert arrives (or the wait gives up).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = arrivals.lock().map(|m| m.len()).unwrap_or(0);
        if n >= acked.len() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(collector.id().to_string())
        .status();
    let _ = collector.wait();
    let arrived = arrivals
        .lock()
        .map_err(|_| anyhow::anyhow!("receiver lock"))?
        .clone();
    // Milliseconds from the acknowledgement (as this client received it) to the webhook's
    // receipt; negative when the alert arrived before the client read the acknowledgement.
    let mut lat: Vec<f64> = Vec::new();
    let mut ack_lat: Vec<f64> = Vec::new();
    for (id, (sent, ack)) in &acked {
        ack_lat.push(ack.duration_since(*sent).as_secs_f64() * 1000.0);
        if let Some(t) = arrived.get(id) {
            let ms = if t >= ack {
                t.duration_since(*ack).as_secs_f64() * 1000.0
            } else {
                -(ack.duration_since(*t).as_secs_f64() * 1000.0)
            };
            lat.push(ms);
        }
    }
    if lat.is_empty() {
        bail!("no alert arrived");
    }
    let pct = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 - 1.0) * p).round() as usize]
    };
    println!(
        "acknowledgement latency (send -> ack), baseline: n={} p50={:.2} ms p99={:.2} ms",
        ack_lat.len(),
        pct(&mut ack_lat, 0.5),
        pct(&mut ack_lat, 0.99)
    );
    println!(
        "alert latency (ack -> webhook receipt): n={} of {} p50={:.2} ms p99={:.2} ms max={:.2} ms",
        lat.len(),
        acked.len(),
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
        lat.last().copied().unwrap_or(0.0)
    );
    Ok(std::process::ExitCode::SUCCESS)
}

/// Pushes one event per batch at `rate`; returns, by eventID, when each was sent and acked.
async fn push(
    root: &Path,
    port: u16,
    cfg: GenConfig,
    rate: u64,
) -> anyhow::Result<HashMap<String, (Instant, Instant)>> {
    let remote = orgtrail_client::Remote {
        collector: format!("https://127.0.0.1:{port}"),
        ca: root.join("ca/ca.pem"),
        cert: root.join("agent.pem"),
        key: root.join("agent.key"),
        server_name: Some("localhost".into()),
    };
    let mut client = crate::cmd::remote::connect(&remote).await?.ingest();
    let events: Vec<Vec<u8>> = Generator::new(cfg).collect();
    let ids: Vec<String> = events
        .iter()
        .map(|e| {
            serde_json::from_slice::<serde_json::Value>(e)
                .ok()
                .and_then(|v| v["eventID"].as_str().map(str::to_owned))
                .context("a generated event without an eventID")
        })
        .collect::<anyhow::Result<_>>()?;
    let n = events.len();
    let (tx, rx) = tokio::sync::mpsc::channel::<EventBatch>(64);
    let mut acks = client
        .push(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let sent: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let s2 = sent.clone();
    let period = Duration::from_micros(1_000_000 / rate.max(1));
    let sender = tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        for (i, e) in events.into_iter().enumerate() {
            tick.tick().await;
            if let Ok(mut m) = s2.lock() {
                m.insert(i as u64, Instant::now());
            }
            let batch = EventBatch {
                batch_id: i as u64,
                events: vec![e.into()],
            };
            if tx.send(batch).await.is_err() {
                break;
            }
        }
    });
    let mut out = HashMap::with_capacity(n);
    while out.len() < n {
        let Some(ack) = acks.message().await? else {
            break;
        };
        let now = Instant::now();
        let t0 = sent.lock().ok().and_then(|mut m| m.remove(&ack.batch_id));
        if let (Some(t0), Some(id)) = (t0, ids.get(ack.batch_id as usize)) {
            out.insert(id.clone(), (t0, now));
        }
    }
    let _ = sender.await;
    Ok(out)
}
