//! `orgtrail bench transport`: one agent into one collector, both real processes on this
//! machine, over mutual TLS on loopback.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use orgtrail_crypto::certs::{self, IssueRequest, Role};
use orgtrail_gen::{GenConfig, Generator};
use orgtrail_proto::v1::EventBatch;
use tonic::codec::CompressionEncoding;

#[derive(Debug, clap::Args)]
pub(crate) struct TransportArgs {
    /// Events shipped by the agent for the throughput figure.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Rate of the latency run, events per second.
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    /// Length of the latency run, seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The agent's batches in flight (its `batch.max_in_flight`).
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
    /// The agent's wire compression (its `batch.compression`): zstd, gzip or none.
    #[arg(long, default_value = "zstd", value_parser = ["zstd", "gzip", "none"])]
    compression: String,
    /// The agent's events per batch (its `batch.max_events`).
    #[arg(long, default_value_t = 1000)]
    batch_events: usize,
    /// Events (of 20 other accounts) imported into the collector's store before it starts, so
    /// that its memory, open time and ingest rate are measured on a store holding history: run
    /// with 0 and with 9000000 and compare the collector's peak RSS (1M against 10M stored
    /// events at the end).
    #[arg(long, default_value_t = 0)]
    stored: u64,
    /// Where to run (must not exist): the certificates, keys, events and the collector's store
    /// are kept there afterwards, for a look at the store or a collector started on it by hand.
    /// Default: a fresh directory under the system's temporary directory, removed afterwards.
    #[arg(long, value_name = "DIR")]
    dir: Option<std::path::PathBuf>,
}

/// Peak resident memory (VmHWM) of a running process, MiB.
pub(crate) fn peak_rss_mib(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// CPU time (user and system, all threads) a running process has used so far, seconds: from
/// `/proc/PID/stat`, whose times are in Linux's fixed user-visible clock ticks (100 per second).
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from its end.
    let rest = &s[s.rfind(')')? + 2..];
    let mut f = rest.split_whitespace();
    // Fields 14 and 15 of the line are the 12th and 13th after the command name.
    let utime: f64 = f.nth(11)?.parse().ok()?;
    let stime: f64 = f.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

pub(crate) fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

pub(crate) fn run(a: TransportArgs) -> anyhow::Result<std::process::ExitCode> {
    if let Some(dir) = &a.dir {
        if dir.exists() {
            bail!(
                "{} exists: --dir names a directory to create",
                dir.display()
            );
        }
        std::fs::create_dir_all(dir)?;
        return run_in(&std::path::absolute(dir)?, &a);
    }
    let root =
        std::env::temp_dir().join(format!("orgtrail-bench-transport-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    let result = run_in(&root, &a);
    let _ = std::fs::remove_dir_all(&root);
    result
}

/// Starts a collector process on `root` (server.pem, ca/, keys/, data/), any account of
/// organization o-bench, on a free loopback port; returns it and its port.
pub(crate) fn start_collector(
    exe: &Path,
    root: &Path,
) -> anyhow::Result<(std::process::Child, u16)> {
    let (child, port, _) = start_collector_with(exe, root, "collector.toml", "data", "")?;
    Ok((child, port))
}

/// [`start_collector`] with the configuration file `config` (written in `root`), the data
/// directory `data` and `extra` appended to the configuration (e.g. `[rules]`, `[ops]`);
/// returns the ops listener's address too when `extra` configures one.
pub(crate) fn start_collector_with(
    exe: &Path,
    root: &Path,
    config: &str,
    data: &str,
    extra: &str,
) -> anyhow::Result<(std::process::Child, u16, Option<String>)> {
    write(
        &root.join(config),
        &format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{data}\"\nkeys_dir = \"keys\"\n[tls]\ncert = \"server.pem\"\nkey = \"server.key\"\nclient_ca = \"ca/ca.pem\"\n[organization]\nid = \"o-bench\"\nallow_any_account = true\n{extra}"
        ),
    )?;
    let log = root.join(format!("{config}.stderr"));
    let mut collector = Command::new(exe)
        .args(["collector", "--config"])
        .arg(root.join(config))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let mut out = BufReader::new(collector.stdout.take().context("collector stdout")?);
    let mut ops = None;
    let mut port = None;
    let want_ops = extra.contains("[ops]");
    while port.is_none() || (want_ops && ops.is_none()) {
        let mut line = String::new();
        if out.read_line(&mut line)? == 0 {
            let why = std::fs::read_to_string(&log).unwrap_or_default();
            bail!("the collector stopped before it listened: {}", why.trim());
        }
        let addr = line
            .trim()
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .to_owned();
        if line.contains("ops listening on") {
            ops = Some(addr);
        } else if line.contains("listening on") {
            port = Some(
                addr.rsplit(':')
                    .next()
                    .unwrap_or_default()
                    .parse::<u16>()
                    .context("collector address")?,
            );
        }
    }
    let port = port.context("collector address")?;
    // Keep reading its output, so that the collector never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    Ok((collector, port, ops))
}

/// What [`prepare`] made in a bench's directory.
pub(crate) struct Prepared {
    pub(crate) exe: std::path::PathBuf,
    pub(crate) account: String,
    /// Bytes of `events.jsonl`.
    pub(crate) raw_bytes: u64,
}

/// Makes `root` ready for a collector and an agent: a CA, the collector's certificate, keys,
/// `events.jsonl` with `events` generated events of one account, and that account's agent
/// certificate.
pub(crate) fn prepare(root: &Path, events: u64) -> anyhow::Result<Prepared> {
    let exe = std::env::current_exe()?;
    certs::init_ca(&root.join("ca"), "o-bench", 30)?;
    certs::issue(
        &root.join("ca"),
        &IssueRequest {
            role: Role::Server,
            accounts: vec![],
            name: "collector".into(),
            dns: vec!["localhost".into()],
            ips: vec![],
            days: 2,
        },
        &root.join("server"),
    )?;
    let status = Command::new(&exe)
        .args(["keys", "init", "--out"])
        .arg(root.join("keys"))
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("keys init failed");
    }
    println!("generating {events} events for one account");
    let gen_cfg = GenConfig {
        count: events,
        accounts: 1,
        seed: 3,
        ..GenConfig::default()
    };
    let gen_ = Generator::new(gen_cfg.clone());
    let account = gen_.account_ids()[0].clone();
    let mut raw_bytes = 0u64;
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(root.join("events.jsonl"))?);
        for e in gen_ {
            raw_bytes += e.len() as u64 + 1;
            f.write_all(&e)?;
            f.write_all(b"\n")?;
        }
        f.flush()?;
    }
    certs::issue(
        &root.join("ca"),
        &IssueRequest {
            role: Role::Agent,
            accounts: vec![account.parse()?],
            name: "agent".into(),
            dns: vec![],
            ips: vec![],
            days: 2,
        },
        &root.join("agent"),
    )?;
    Ok(Prepared {
        exe,
        account,
        raw_bytes,
    })
}

fn run_in(root: &Path, a: &TransportArgs) -> anyhow::Result<std::process::ExitCode> {
    let Prepared {
        exe,
        account,
        raw_bytes,
    } = prepare(root, a.events)?;
    if a.stored > 0 {
        store_history(root, a.stored)?;
    }
    let opening = Instant::now();
    let (mut collector, port) = start_collector(&exe, root)?;
    println!(
        "collector listening {:.2} s after it started, on a store of {} events",
        opening.elapsed().as_secs_f64(),
        a.stored
    );
    write(
        &root.join("agent.toml"),
        &format!(
            "account = \"{account}\"\ncollector = \"https://127.0.0.1:{port}\"\nserver_name = \"localhost\"\nspool_dir = \"spool\"\n[tls]\ncert = \"agent.pem\"\nkey = \"agent.key\"\nca = \"ca/ca.pem\"\n[source]\ntype = \"jsonl\"\npath = \"events.jsonl\"\n[batch]\nmax_in_flight = {}\nmax_events = {}\ncompression = \"{}\"\n",
            a.in_flight, a.batch_events, a.compression
        ),
    )?;

    // Throughput: the agent ships everything, from its file through its spool into the ledger.
    let started = Instant::now();
    let mut agent = Command::new(&exe)
        .args(["agent", "--exit-when-drained", "--config"])
        .arg(root.join("agent.toml"))
        .stderr(Stdio::null())
        .spawn()?;
    let agent_pid = agent.id();
    let mut agent_peak: f64 = 0.0;
    let status = loop {
        if let Some(s) = agent.try_wait()? {
            break s;
        }
        if let Some(m) = peak_rss_mib(agent_pid) {
            agent_peak = agent_peak.max(m);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let secs = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("the agent failed");
    }
    println!(
        "end to end: {} events in {:.2} s = {:.0} events/s, {:.1} MiB/s (file -> agent spool -> mTLS -> collector ledger, acknowledged)",
        a.events,
        secs,
        a.events as f64 / secs,
        raw_bytes as f64 / secs / (1024.0 * 1024.0)
    );

    // Acknowledgement latency at a steady rate, from an in-process client with the agent's
    // certificate.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(1)
        .build()?;
    let lat = rt.block_on(latency(root, port, &account, a.rate, a.seconds))?;
    let mut lat = lat;
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "acknowledgement latency at {} events/s (batches of {}): n={} p50={:.2} ms p99={:.2} ms max={:.2} ms",
        a.rate,
        (a.rate / 100).max(1),
        lat.len(),
        pct(0.5),
        pct(0.99),
        lat.last().copied().unwrap_or(0.0)
    );
    let collector_peak = peak_rss_mib(collector.id()).unwrap_or(0.0);
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(collector.id().to_string())
        .status();
    let cs = collector.wait()?;
    println!(
        "peak RSS: collector {collector_peak:.0} MiB, agent {agent_peak:.0} MiB (clean collector shutdown: {})",
        cs.success()
    );
    Ok(std::process::ExitCode::SUCCESS)
}

/// Imports `events` generated events of 20 accounts (none the agent's) into the collector's
/// store (`root/data`, keys `root/keys`) through the bulk ingest pipeline, before the collector
/// opens it.
fn store_history(root: &Path, events: u64) -> anyhow::Result<()> {
    println!("importing {events} events into the collector's store first");
    let started = Instant::now();
    // As `import` does: the index merges are finished before the collector starts.
    let ledger = crate::cmd::keys::open_tuned(&root.join("keys"), &root.join("data"), |cfg| {
        cfg.settle_index_at_close = true;
    })?;
    let cfg = GenConfig {
        count: events,
        accounts: 20,
        seed: 11,
        ..GenConfig::default()
    };
    let imported = crate::cmd::bench_scale::import_generated(&ledger, cfg, 0, &|_, _| {})?;
    ledger.close().context("closing the store")?;
    println!(
        "stored {} events (duplicates {}) in {:.1} s",
        imported.totals.stored,
        imported.totals.duplicates,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub(crate) async fn latency(
    root: &Path,
    port: u16,
    account: &str,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<Vec<f64>> {
    // The agent's certificate, over the same client as the readers'.
    let remote = orgtrail_client::Remote {
        collector: format!("https://127.0.0.1:{port}"),
        ca: root.join("ca/ca.pem"),
        cert: root.join("agent.pem"),
        key: root.join("agent.key"),
        server_name: Some("localhost".into()),
    };
    let mut client = crate::cmd::remote::connect(&remote)
        .await?
        .ingest()
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    let per_batch = (rate / 100).max(1);
    let batches = seconds * 100;
    // Events of the agent's account from another seed than the throughput run's: new eventIDs,
    // so that none conflicts with a stored event of the same ID and other bytes.
    let mut events = Generator::with_accounts(
        GenConfig {
            count: per_batch * batches,
            seed: 4,
            start_unix_secs: 1_900_000_000,
            ..GenConfig::default()
        },
        &[account.to_owned()],
    );
    let (tx, rx) = tokio::sync::mpsc::channel::<EventBatch>(64);
    let mut acks = client
        .push(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let sent = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let sent2 = sent.clone();
    let sender = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        for id in 0..batches {
            tick.tick().await;
            let evs: Vec<_> = (&mut events)
                .take(per_batch as usize)
                .map(Into::into)
                .collect();
            if let Ok(mut m) = sent2.lock() {
                m.insert(id, Instant::now());
            }
            if tx
                .send(EventBatch {
                    batch_id: id,
                    events: evs,
                })
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let mut out = Vec::with_capacity(batches as usize);
    while (out.len() as u64) < batches {
        let Some(ack) = acks.message().await? else {
            break;
        };
        let t0 = sent.lock().ok().and_then(|mut m| m.remove(&ack.batch_id));
        if let Some(t0) = t0 {
            out.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let _ = sender.await;
    Ok(out)
}
