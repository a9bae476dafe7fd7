//! `orgtrail agent`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use orgtrail_agent::{AgentConfig, Spool};

/// Run an agent: read events from its sources (a CloudTrail log tree, JSON lines from a file
/// followed as it grows or from standard input, an HTTP endpoint for PutAuditEvents), apply
/// the trail's selectors, keep each event durably in the local spool until the collector
/// acknowledged it, ship batches over gRPC with mutual TLS. Restarting resumes from the spool
/// and each source's position. Events the collector rejects move to the dead-letter area with
/// the reason. Prints `orgtrail agent: NAME listening on ADDR` for each listener it opens.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Option<AgentCommand>,
    /// The configuration file (`orgtrail config example agent` prints a commented one).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Read what the sources hold now (a log tree scanned once, a file read to its end) and
    /// exit once every event was acknowledged (for batch jobs and tests): 0 when nothing was
    /// dead-lettered, 1 otherwise; otherwise run until SIGTERM. Not with an http source. Either
    /// way a summary line `orgtrail agent: shipped=N duplicates=D conflicts=C rejected=R
    /// dead_lettered=X` is printed when the agent stops.
    #[arg(long)]
    exit_when_drained: bool,
}

#[derive(Debug, clap::Subcommand)]
enum AgentCommand {
    /// List the dead-letter area: events the agent will not ship, and why.
    DeadLetters {
        #[arg(long, value_name = "DIR")]
        spool: PathBuf,
    },
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(AgentCommand::DeadLetters { spool }) = args.command {
        let s = Spool::open(&spool)?;
        let dead = s.dead_letters()?;
        for d in &dead {
            let id = serde_json::from_slice::<serde_json::Value>(&d.bytes)
                .ok()
                .and_then(|v| v["eventID"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "-".into());
            println!("{}\teventID {}\t{}", d.seq, id, d.reason);
        }
        println!("dead-letters={}", dead.len());
        return Ok(ExitCode::SUCCESS);
    }
    let config = args
        .config
        .context("give --config FILE (or a subcommand)")?;
    let cfg = AgentConfig::load(&config)?;
    let spool_dir = cfg.spool_dir.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .thread_name("orgtrail-agent")
        .build()
        .context("starting the async runtime")?;
    let metrics = std::sync::Arc::new(orgtrail_agent::Metrics::for_config(&cfg));
    let result = rt.block_on(orgtrail_agent::run_with_metrics(
        cfg,
        metrics.clone(),
        args.exit_when_drained,
        |name, addr| {
            use std::io::Write;
            println!("orgtrail agent: {name} listening on {addr}");
            let _ = std::io::stdout().flush();
        },
        crate::cmd::collector::shutdown_signal(),
    ));
    // One line, however the run ended.
    let summary = metrics.totals();
    println!("orgtrail agent: {summary}");
    result?;
    if args.exit_when_drained && summary.dead_lettered > 0 {
        eprintln!(
            "orgtrail: error: {} events were dead-lettered in this run; list them with `orgtrail agent dead-letters --spool {}`",
            summary.dead_lettered,
            spool_dir.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
