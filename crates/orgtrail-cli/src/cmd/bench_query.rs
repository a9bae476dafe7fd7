//! `orgtrail bench query`: remote lookup latency on a collector holding many events while it
//! ingests at a steady rate. Both the collector and the readers use real mutual TLS.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use orgtrail_crypto::certs::{self, IssueRequest, Role};
use orgtrail_gen::{GenConfig, Generator};
use orgtrail_proto::v1 as pb;

#[derive(Debug, clap::Args)]
pub(crate) struct QueryArgs {
    /// Events in the store before the measurement.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Ingest rate during the measurement, events per second.
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    /// Length of the measurement, seconds.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
}

fn cmd_ok(c: &mut Command, what: &str) -> anyhow::Result<()> {
    let out = c.output().with_context(|| what.to_string())?;
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

pub(crate) fn run(a: QueryArgs) -> anyhow::Result<std::process::ExitCode> {
    let root = std::env::temp_dir().join(format!("orgtrail-bench-query-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    let result = run_in(&root, &a);
    let _ = std::fs::remove_dir_all(&root);
    result
}

fn run_in(root: &Path, a: &QueryArgs) -> anyhow::Result<std::process::ExitCode> {
    let exe = std::env::current_exe()?;
    certs::init_ca(&root.join("ca"), "o-bench", 30)?;
    let issue = |role: Role, accounts: Vec<orgtrail_core::AccountId>, name: &str| {
        certs::issue(
            &root.join("ca"),
            &IssueRequest {
                role,
                accounts,
                name: name.into(),
                dns: if role == Role::Server {
                    vec!["localhost".into()]
                } else {
                    vec![]
                },
                ips: vec![],
                days: 2,
            },
            &root.join(name),
        )
    };
    issue(Role::Server, vec![], "server")?;
    issue(Role::Auditor, vec![], "auditor")?;
    cmd_ok(
        Command::new(&exe)
            .args(["keys", "init", "--out"])
            .arg(root.join("keys")),
        "keys init",
    )?;

    // The store: generated events over 20 accounts, imported offline (the collector's ledger).
    println!("importing {} events", a.events);
    let mut samples = Vec::new();
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(root.join("events.jsonl"))?);
        for (i, e) in Generator::new(GenConfig {
            count: a.events,
            accounts: 20,
            seed: 7,
            ..GenConfig::default()
        })
        .enumerate()
        {
            if i % 997 == 0 {
                samples.push(orgtrail_core::CloudTrailEvent::parse(e.clone())?);
            }
            f.write_all(&e)?;
            f.write_all(b"\n")?;
        }
        f.flush()?;
    }
    let t = Instant::now();
    cmd_ok(
        Command::new(&exe)
            .args(["import", "--data-dir"])
            .arg(root.join("data"))
            .arg("--keys")
            .arg(root.join("keys"))
            .arg(root.join("events.jsonl")),
        "import",
    )?;
    println!("imported in {:.1} s", t.elapsed().as_secs_f64());
    std::fs::remove_file(root.join("events.jsonl"))?;

    // The live ingest comes from one more account.
    let live = Generator::new(GenConfig {
        count: 1,
        accounts: 1,
        seed: 3,
        ..GenConfig::default()
    });
    let live_account = live.account_ids()[0].clone();
    issue(Role::Agent, vec![live_account.parse()?], "agent")?;
    let t = Instant::now();
    let (mut collector, port) = crate::cmd::bench_transport::start_collector(&exe, root)?;
    println!(
        "collector open on {} events in {:.1} s",
        a.events,
        t.elapsed().as_secs_f64()
    );

    // Lookups that answer the seed's questions, with values from stored events.
    type Case = (&'static str, Vec<pb::Filter>, String);
    let f = |attr: pb::Attribute, v: &str| pb::Filter {
        attribute: attr as i32,
        value: v.to_string(),
    };
    let mut cases: Vec<Case> = Vec::new();
    for e in &samples {
        let x = e.fields();
        cases.push(("eventID", vec![], x.event_id.clone()));
        if let Some(u) = x.username() {
            cases.push((
                "username",
                vec![f(pb::Attribute::Username, u)],
                String::new(),
            ));
        }
        if let Some(r) = x.resource_names.first() {
            cases.push((
                "resource+eventName",
                vec![
                    f(pb::Attribute::ResourceName, r),
                    f(pb::Attribute::EventName, &x.event_name),
                ],
                String::new(),
            ));
        }
        cases.push((
            "account+eventName",
            vec![
                f(
                    pb::Attribute::Account,
                    x.recipient_account_id.as_deref().unwrap_or(""),
                ),
                f(pb::Attribute::EventName, &x.event_name),
            ],
            String::new(),
        ));
        if let Some(c) = &x.error_code {
            cases.push((
                "errorCode",
                vec![f(pb::Attribute::ErrorCode, c)],
                String::new(),
            ));
        }
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()?;
    let (lat, acks) = rt.block_on(async {
        let remote = orgtrail_client::Remote {
            collector: format!("https://127.0.0.1:{port}"),
            cert: root.join("auditor.pem"),
            key: root.join("auditor.key"),
            ca: root.join("ca/ca.pem"),
            server_name: Some("localhost".into()),
        };
        let mut c = crate::cmd::remote::connect(&remote).await?;
        let ingest = tokio::spawn({
            let root = root.to_path_buf();
            let (rate, secs) = (a.rate, a.seconds);
            async move {
                crate::cmd::bench_transport::latency(&root, port, &live_account, rate, secs).await
            }
        });
        let deadline = Instant::now() + Duration::from_secs(a.seconds);
        let mut lat: Vec<(&'static str, f64)> = Vec::new();
        let mut i = 0usize;
        while Instant::now() < deadline {
            let (kind, filters, id) = &cases[i % cases.len()];
            i += 1;
            let t = Instant::now();
            let r = c
                .query
                .lookup(pb::LookupRequest {
                    filters: filters.clone(),
                    event_id: id.clone(),
                    ..pb::LookupRequest::default()
                })
                .await
                .map_err(|s| c.explain(s))?
                .into_inner();
            lat.push((kind, t.elapsed().as_secs_f64() * 1000.0));
            if r.events.is_empty() {
                bail!("a {kind} lookup found nothing");
            }
            // Readers do not hammer: about 100 lookups a second.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let acks = ingest.await??;
        anyhow::Ok((lat, acks))
    })?;
    let pct = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 - 1.0) * p).round() as usize]
    };
    let mut all: Vec<f64> = lat.iter().map(|l| l.1).collect();
    println!(
        "remote lookups on {} events while ingesting {} events/s (acknowledged {} batches): n={} p50={:.2} ms p99={:.2} ms max={:.2} ms",
        a.events,
        a.rate,
        acks.len(),
        all.len(),
        pct(&mut all, 0.5),
        pct(&mut all, 0.99),
        all.last().copied().unwrap_or(0.0)
    );
    for kind in [
        "eventID",
        "username",
        "resource+eventName",
        "account+eventName",
        "errorCode",
    ] {
        let mut v: Vec<f64> = lat.iter().filter(|l| l.0 == kind).map(|l| l.1).collect();
        if v.is_empty() {
            continue;
        }
        println!(
            "  {kind:<20} n={:<6} p50={:.2} ms p99={:.2} ms",
            v.len(),
            pct(&mut v, 0.5),
            pct(&mut v, 0.99)
        );
    }
    let mut acks = acks;
    println!(
        "  ingest acknowledgement p50={:.2} ms p99={:.2} ms",
        pct(&mut acks, 0.5),
        pct(&mut acks, 0.99)
    );
    let rss = crate::cmd::bench_transport::peak_rss_mib(collector.id()).unwrap_or(0.0);
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(collector.id().to_string())
        .status();
    let _ = collector.wait();
    println!("collector peak RSS {rss:.0} MiB");
    Ok(std::process::ExitCode::SUCCESS)
}
