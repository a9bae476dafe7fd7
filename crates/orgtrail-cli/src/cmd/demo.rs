//! `orgtrail demo`: the whole pipeline on this machine in one command. A CA, certificates and
//! keys in a directory; a collector and three agents (one per account) over mutual TLS on
//! loopback; a realistic sample; then the questions orgtrail exists to answer.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use orgtrail_agent::AgentConfig;
use orgtrail_collector::CollectorConfig;
use orgtrail_core::AccountId;
use orgtrail_crypto::certs::{self, IssueRequest, Role};
use orgtrail_crypto::signing::VerifyingKey;
use orgtrail_crypto::{Keyring, LocalKeyProvider, signing::SigningKey};
use orgtrail_gen::{DOC_START_INSTANCES, GenConfig, Generator};
use orgtrail_store::{Group, StoredEvent};

/// Run orgtrail end to end on this machine: creates a CA, certificates and keys, starts a
/// collector and three agents for three accounts over mutual TLS on loopback, ships a sample
/// (generated events and the StartInstances record from CloudTrail's documentation), then
/// asks who started instance i-ebeaf9e2, counts events by account and eventName, verifies the
/// store, and stops everything it started.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Where the demo keeps its CA, certificates, keys, configurations and store. Reused when
    /// it exists (certificates and keys are kept; events already stored count as duplicates).
    #[arg(long, value_name = "DIR", default_value = "orgtrail-demo")]
    dir: PathBuf,
    /// Generated events, spread over the three accounts.
    #[arg(long, default_value_t = 30_000)]
    events: u64,
}

/// The account of CloudTrail's documented StartInstances example.
const DOC_ACCOUNT: &str = "123456789012";
const DOC_INSTANCE: &str = "i-ebeaf9e2";
const ORG: &str = "o-demo";
/// The port the written configurations use when you run the pieces yourself.
const PORT: u16 = 4317;

fn step(n: u32, text: &str) {
    println!("[{n}/5] {text}");
    let _ = std::io::stdout().flush();
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let dir = args.dir.clone();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    // Accounts: the documentation's 123456789012 and two generated ones. The first generated
    // account's events are relabelled 123456789012 so the documented record sits among them.
    let gen_cfg = GenConfig {
        count: args.events,
        accounts: 3,
        seed: 2026,
        ..GenConfig::default()
    };
    let generator = Generator::new(gen_cfg);
    let gen_ids: Vec<String> = generator.account_ids().to_vec();
    let accounts: Vec<String> = vec![
        DOC_ACCOUNT.to_string(),
        gen_ids[1].clone(),
        gen_ids[2].clone(),
    ];

    step(1, &format!("certificates and keys in {}", dir.display()));
    let made = prepare(&dir, &accounts)?;
    println!(
        "      organization CA {ORG}, collector (localhost), agents for {}, auditor{}",
        accounts.join(", "),
        if made { "" } else { " (reused)" }
    );

    step(2, "sample events");
    let events_dir = dir.join("events");
    std::fs::create_dir_all(&events_dir)?;
    let mut files: Vec<std::io::BufWriter<std::fs::File>> = accounts
        .iter()
        .map(|a| {
            std::fs::File::create(events_dir.join(format!("{a}.jsonl")))
                .map(std::io::BufWriter::new)
        })
        .collect::<Result<_, _>>()?;
    let mut counts = [0u64; 3];
    for e in generator {
        let text = String::from_utf8(e).context("generated event")?;
        let i = gen_ids
            .iter()
            .position(|a| text.contains(&format!("\"recipientAccountId\":\"{a}\"")))
            .unwrap_or(0);
        let text = if i == 0 {
            text.replace(gen_ids[0].as_str(), DOC_ACCOUNT)
        } else {
            text
        };
        files[i].write_all(text.as_bytes())?;
        files[i].write_all(b"\n")?;
        counts[i] += 1;
    }
    files[0].write_all(DOC_START_INSTANCES.as_bytes())?;
    files[0].write_all(b"\n")?;
    counts[0] += 1;
    for f in &mut files {
        f.flush()?;
    }
    println!(
        "      {} events: {} (with the documented StartInstances record), {}, {}",
        counts.iter().sum::<u64>(),
        counts[0],
        counts[1],
        counts[2]
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let answer = rt.block_on(pipeline(&dir, &accounts))?;
    drop(rt);

    step(
        5,
        "verify the store (every record, Merkle tree and signed checkpoint)",
    );
    let keys = dir.join("keys");
    let vk = VerifyingKey::load(&keys.join("signing.pub"))?;
    let provider = Arc::new(LocalKeyProvider::load(&keys)?);
    let report = orgtrail_store::verify_full(&dir.join("data"), provider, &vk, &[]);
    if report.ok() {
        println!(
            "      verified events={} checkpoints={}: every record opens, matches its Merkle leaf, and the signed checkpoints cover the log",
            report.events, report.checkpoints
        );
    } else {
        for p in &report.problems {
            println!("      FAILED: {p}");
        }
        bail!("the demo store did not verify");
    }
    if !answer {
        bail!("the demo did not find the StartInstances event");
    }
    let d = dir.display();
    let port = PORT;
    let (profile_note, lookup) = match write_profile(&dir) {
        Ok((path, true)) => (
            format!(
                "\n  profile `demo` (the auditor's certificate, the collector on 127.0.0.1:{port}) saved in {}: it is the default",
                path.display()
            ),
            "orgtrail lookup",
        ),
        Ok((path, false)) => (
            format!(
                "\n  profile `demo` (the auditor's certificate, the collector on 127.0.0.1:{port}) saved in {};\
                 \n  your default profile is unchanged: use this one with --profile demo or ORGTRAIL_PROFILE=demo",
                path.display()
            ),
            "orgtrail lookup --profile demo",
        ),
        Err(e) => (
            format!(
                "\n  (no `demo` profile written: {}; the queries below need --collector https://127.0.0.1:{port} --server-name localhost --ca {d}/ca/ca.pem --cert {d}/auditor.pem --key {d}/auditor.key)",
                crate::cmd::describe_error(&e)
            ),
            "orgtrail lookup",
        ),
    };
    println!(
        "\ndone in {:.1} s; everything the demo started has stopped.{profile_note}\n\nGo further:\n\
         \n  orgtrail collector --config {d}/collector.toml          # listens on 127.0.0.1:{port}\
         \n  orgtrail agent --config {d}/agent-{DOC_ACCOUNT}.toml --exit-when-drained\
         \n  {lookup} --event-name DeleteDBInstance\
         \n  {lookup} --follow                             # events as they arrive\
         \n  {} --by user,errorCode --error-code AccessDenied\
         \n  orgtrail lookup --data-dir {d}/data --keys {d}/keys --username Alice   # offline, collector stopped\
         \n  orgtrail verify --data-dir {d}/data --keys {d}/keys",
        started.elapsed().as_secs_f64(),
        lookup.replace("lookup", "stats"),
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes the `demo` profile (the auditor, the collector of the written configuration) into
/// the user's profile file, keeping the other profiles; it becomes the default only when there
/// is none. Returns the file and whether `demo` is the default.
fn write_profile(dir: &Path) -> anyhow::Result<(PathBuf, bool)> {
    let mut profiles = crate::cmd::remote::load_profiles()?;
    profiles.add(
        "demo",
        orgtrail_client::profile::Profile {
            collector: Some(format!("https://127.0.0.1:{PORT}")),
            ca: Some(dir.join("ca/ca.pem")),
            cert: Some(dir.join("auditor.pem")),
            key: Some(dir.join("auditor.key")),
            server_name: Some("localhost".into()),
        },
        false,
    )?;
    profiles.save()?;
    let is_default = profiles.file.default.as_deref() == Some("demo");
    Ok((profiles.path, is_default))
}

/// Creates what is missing: CA, certificates, keys, configurations. True when the CA was new.
fn prepare(dir: &Path, accounts: &[String]) -> anyhow::Result<bool> {
    let ca = dir.join("ca");
    let new = !ca.join("ca.key").exists();
    if new {
        certs::init_ca(&ca, ORG, 365)?;
    }
    let issue = |role: Role, accts: Vec<AccountId>, name: &str, out: &str| -> anyhow::Result<()> {
        if dir.join(format!("{out}.pem")).exists() && !new {
            return Ok(());
        }
        certs::issue(
            &ca,
            &IssueRequest {
                role,
                accounts: accts,
                name: name.into(),
                dns: if role == Role::Server {
                    vec!["localhost".into()]
                } else {
                    vec![]
                },
                ips: if role == Role::Server {
                    vec![std::net::IpAddr::from([127, 0, 0, 1])]
                } else {
                    vec![]
                },
                days: 30,
            },
            &dir.join(out),
        )?;
        Ok(())
    };
    issue(Role::Server, vec![], "collector", "collector")?;
    for a in accounts {
        issue(
            Role::Agent,
            vec![a.parse()?],
            &format!("agent-{a}"),
            &format!("agent-{a}"),
        )?;
    }
    issue(Role::Auditor, vec![], "auditor", "auditor")?;
    let keys = dir.join("keys");
    if !keys.join("keyring.json").exists() {
        crate::cmd::keys::create_private_dir(&keys)?;
        Keyring::generate("demo")?.save_new(&keys.join("keyring.json"))?;
    }
    if !keys.join("signing.key").exists() {
        SigningKey::generate_files(&keys)?;
    }
    let list: Vec<String> = accounts.iter().map(|a| format!("\"{a}\"")).collect();
    std::fs::write(
        dir.join("collector.toml"),
        format!(
            "# Written by `orgtrail demo`. Paths are relative to this file.\n\
             listen = \"127.0.0.1:{PORT}\"\ndata_dir = \"data\"\nkeys_dir = \"keys\"\n\n\
             [tls]\ncert = \"collector.pem\"\nkey = \"collector.key\"\nclient_ca = \"ca/ca.pem\"\n\n\
             [organization]\nid = \"{ORG}\"\naccounts = [{}]\n",
            list.join(", ")
        ),
    )?;
    for a in accounts {
        std::fs::write(
            dir.join(format!("agent-{a}.toml")),
            format!(
                "# Written by `orgtrail demo`. Paths are relative to this file.\n\
                 account = \"{a}\"\ncollector = \"https://127.0.0.1:{PORT}\"\nserver_name = \"localhost\"\n\
                 spool_dir = \"spool-{a}\"\n\n[tls]\ncert = \"agent-{a}.pem\"\nkey = \"agent-{a}.key\"\nca = \"ca/ca.pem\"\n\n\
                 [source]\ntype = \"jsonl\"\npath = \"events/{a}.jsonl\"\n"
            ),
        )?;
    }
    Ok(new)
}

/// Collector and agents in this process, then the questions. True when the answer was found.
async fn pipeline(dir: &Path, accounts: &[String]) -> anyhow::Result<bool> {
    step(3, "collector and three agents over mutual TLS on loopback");
    let mut ccfg = CollectorConfig::load(&dir.join("collector.toml"))?;
    ccfg.listen = "127.0.0.1:0".parse()?;
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let addr_tx = std::sync::Mutex::new(Some(addr_tx));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let collector = tokio::spawn(orgtrail_collector::run(
        ccfg,
        move |name, a| {
            if name == orgtrail_collector::INGEST_LISTENER
                && let Some(tx) = addr_tx.lock().ok().and_then(|mut t| t.take())
            {
                let _ = tx.send(a);
            }
        },
        async move {
            let _ = stop_rx.await;
        },
    ));
    let addr = match addr_rx.await {
        Ok(a) => a,
        Err(_) => {
            return match collector.await {
                Ok(Err(e)) => Err(anyhow::Error::new(e).context("the collector did not start")),
                _ => Err(anyhow::anyhow!("the collector did not start")),
            };
        }
    };
    let url = format!("https://127.0.0.1:{}", addr.port());
    println!("      collector on {url}");
    let shipped = Instant::now();
    let mut agents = Vec::new();
    for a in accounts {
        let mut cfg = AgentConfig::load(&dir.join(format!("agent-{a}.toml")))?;
        cfg.collector = url.clone();
        agents.push(tokio::spawn(orgtrail_agent::run(
            cfg,
            true,
            |_, _| {},
            std::future::pending(),
        )));
    }
    for (a, h) in accounts.iter().zip(agents) {
        h.await
            .context("agent task")?
            .with_context(|| format!("the agent for {a}"))?;
    }
    println!(
        "      every agent's events acknowledged as durable in {:.1} s",
        shipped.elapsed().as_secs_f64()
    );

    step(
        4,
        &format!(
            "ask the collector (as the auditor, over mutual TLS): who started instance {DOC_INSTANCE}?"
        ),
    );
    let remote = orgtrail_client::Remote {
        collector: url.clone(),
        cert: dir.join("auditor.pem"),
        key: dir.join("auditor.key"),
        ca: dir.join("ca/ca.pem"),
        server_name: Some("localhost".into()),
    };
    let answer = ask(&remote).await;
    let _ = stop_tx.send(());
    let stopped = collector.await.context("collector task")?;
    let found = answer?;
    stopped.context("the collector")?;
    Ok(found)
}

async fn ask(remote: &orgtrail_client::Remote) -> anyhow::Result<bool> {
    use orgtrail_proto::v1 as pb;
    let mut c = crate::cmd::remote::connect(remote).await?;
    let page = c
        .query
        .lookup(pb::LookupRequest {
            filters: vec![
                pb::Filter {
                    attribute: pb::Attribute::EventName as i32,
                    value: "StartInstances".into(),
                },
                pb::Filter {
                    attribute: pb::Attribute::ResourceName as i32,
                    value: DOC_INSTANCE.into(),
                },
            ],
            max_results: 10,
            ..pb::LookupRequest::default()
        })
        .await
        .map_err(|s| c.explain(s))?
        .into_inner();
    let events: Vec<StoredEvent> = page
        .events
        .into_iter()
        .map(orgtrail_client::from_pb)
        .collect::<Result<_, _>>()?;
    println!(
        "      $ orgtrail lookup --collector ... --event-name StartInstances --resource-name {DOC_INSTANCE}"
    );
    let mut out = Vec::new();
    crate::cmd::lookup::print_events(&mut out, &events, "table")?;
    for l in String::from_utf8_lossy(&out).lines() {
        println!("      {l}");
    }

    println!("\n      $ orgtrail stats --collector ... --by account,eventName --top 9");
    let stats = c
        .query
        .stats(pb::StatsRequest {
            group_by: vec![pb::GroupBy::Account as i32, pb::GroupBy::EventName as i32],
            max_groups: 9,
            ..pb::StatsRequest::default()
        })
        .await
        .map_err(|s| c.explain(s))?
        .into_inner();
    let counts = orgtrail_client::counts_from_pb(stats);
    let mut out = Vec::new();
    crate::cmd::stats::print_counts(&mut out, &[Group::Account, Group::EventName], &counts)?;
    for l in String::from_utf8_lossy(&out).lines() {
        println!("      {l}");
    }
    Ok(!events.is_empty())
}
