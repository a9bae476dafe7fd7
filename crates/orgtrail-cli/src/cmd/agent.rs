//! `orgtrail agent`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use orgtrail_agent::spool::{Outcome, Request, control};
use orgtrail_agent::{AgentConfig, Spool, SpoolError, SpoolOptions};

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
    /// dead_lettered=X read=N` is printed when the agent stops.
    #[arg(long)]
    exit_when_drained: bool,
}

#[derive(Debug, clap::Subcommand)]
enum AgentCommand {
    /// The dead-letter area: events the agent will not ship, and why. Lists them; `replay`
    /// and `purge` change them. All work while the agent runs (a change is handed to the
    /// running agent through the spool's request directory).
    DeadLetters(DeadArgs),
}

#[derive(Debug, clap::Args)]
struct DeadArgs {
    #[command(subcommand)]
    action: Option<DeadAction>,
    /// The spool directory (or give --config).
    #[arg(long, value_name = "DIR", global = true)]
    spool: Option<PathBuf>,
    /// The spool's key file (default DIR/spool.key).
    #[arg(long, value_name = "FILE", global = true)]
    spool_key: Option<PathBuf>,
    /// The agent's configuration: its spool directory and key file.
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// `text` (one line each, then a count) or `json` (one JSON object per line, with the
    /// event's bytes).
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Debug, clap::Subcommand)]
enum DeadAction {
    /// Put dead letters back in the spool to be shipped again (those whose bytes are an event;
    /// the collector stores each event once, so a replay is safe to repeat).
    Replay {
        /// Only dead letters whose reason contains this text (e.g. "wrong account").
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Delete dead letters set aside before a time.
    Purge {
        /// RFC 3339 time, e.g. 2026-11-26T00:00:00Z.
        #[arg(long, value_name = "TIME")]
        before: String,
    },
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(AgentCommand::DeadLetters(d)) = args.command {
        return dead_letters(d);
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
    let result = rt.block_on(async {
        let stop = crate::cmd::collector::shutdown_signal();
        orgtrail_agent::run_with_metrics(
            cfg,
            metrics.clone(),
            args.exit_when_drained,
            |name, addr| say(&format!("orgtrail agent: {name} listening on {addr}")),
            stop,
        )
        .await
    });
    // One line, however the run ended.
    let summary = metrics.totals();
    say(&format!("orgtrail agent: {summary}"));
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

/// A line on standard output, flushed; a reader that went away (`| head`) is not an error
/// for a running agent, which goes on (the same lines are in its log).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

fn dead_letters(d: DeadArgs) -> anyhow::Result<ExitCode> {
    let (dir, key) = match (&d.spool, &d.config) {
        (Some(dir), _) => (
            dir.clone(),
            d.spool_key
                .clone()
                .unwrap_or_else(|| dir.join(orgtrail_agent::spool::KEY_FILE)),
        ),
        (None, Some(cfg)) => {
            let cfg = AgentConfig::load(cfg)?;
            (
                cfg.spool_dir.clone(),
                d.spool_key.clone().unwrap_or(cfg.spool_key_file),
            )
        }
        (None, None) => anyhow::bail!("give --spool DIR or --config FILE"),
    };
    match d.action {
        None => list(&dir, &key, d.output),
        Some(DeadAction::Replay { reason }) => {
            let o = change(&dir, &key, Request::Replay { reason })?;
            println!(
                "replayed={} not_replayable={} left={}",
                o.replayed, o.not_replayable, o.left
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(DeadAction::Purge { before }) => {
            let t = orgtrail_core::Timestamp::parse(&before)
                .with_context(|| format!("--before {before:?}"))?;
            let o = change(
                &dir,
                &key,
                Request::Purge {
                    before_ms: t.millis(),
                },
            )?;
            println!("purged={} left={}", o.purged, o.left);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn list(dir: &Path, key: &Path, output: Output) -> anyhow::Result<ExitCode> {
    let dead = orgtrail_agent::spool::read_dead_letters(dir, key).with_context(|| {
        format!(
            "reading the dead letters of {} (give --config or --spool-key when the agent's spool_key_file is elsewhere)",
            dir.display()
        )
    })?;
    let mut out = std::io::stdout().lock();
    let mut write = || -> std::io::Result<()> {
        for d in &dead {
            let value = serde_json::from_slice::<serde_json::Value>(&d.bytes).ok();
            let id = value
                .as_ref()
                .and_then(|v| v["eventID"].as_str())
                .map(str::to_owned);
            let time = orgtrail_core::Timestamp(d.time_ms).to_string();
            match output {
                Output::Text => writeln!(
                    out,
                    "{}\t{time}\t{}\teventID {}\t{}",
                    d.seq,
                    d.source,
                    id.as_deref().unwrap_or("-"),
                    d.reason
                )?,
                Output::Json => {
                    let mut o = serde_json::json!({
                        "seq": d.seq,
                        "time": time,
                        "source": d.source,
                        "reason": d.reason,
                        "eventID": id,
                    });
                    match std::str::from_utf8(&d.bytes) {
                        Ok(s) => o["bytes"] = s.into(),
                        Err(_) => {
                            use base64::Engine;
                            o["bytes_base64"] = base64::engine::general_purpose::STANDARD
                                .encode(&d.bytes)
                                .into();
                        }
                    }
                    writeln!(out, "{o}")?;
                }
            }
        }
        if matches!(output, Output::Text) {
            writeln!(out, "dead-letters={}", dead.len())?;
        }
        out.flush()
    };
    match write() {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // The reader went away (`| head`): a quiet end.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e).context("writing to standard output"),
    }
}

/// How long a command waits for the running agent to carry out its request.
const ANSWER_WITHIN: Duration = Duration::from_secs(60);

/// Carries out `req` on the spool itself when no agent has it open (opened without the
/// agent's side effects), else hands it to the running agent and waits for the answer.
fn change(dir: &Path, key: &Path, req: Request) -> anyhow::Result<Outcome> {
    if !dir.join("segments").is_dir() {
        anyhow::bail!("{} is not a spool directory", dir.display());
    }
    let opts = SpoolOptions {
        key_file: key.to_path_buf(),
        maintenance: true,
        lock_wait: Duration::ZERO,
        ..SpoolOptions::new(dir)
    };
    let apply_here = |req: &Request| -> anyhow::Result<Option<Outcome>> {
        match Spool::open(opts.clone()) {
            Ok(mut s) => Ok(Some(s.apply(req)?)),
            Err(SpoolError::Locked(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    };
    // The probe's lock is released at the end of this statement, before the open.
    let free = control::try_lock(dir)?.is_some();
    if free && let Some(o) = apply_here(&req)? {
        return Ok(o);
    }
    let id = control::submit(dir, &req)?;
    eprintln!("the agent has the spool open; request {id} handed to it");
    let deadline = Instant::now() + ANSWER_WITHIN;
    loop {
        if let Some(o) = control::take_answer(dir, &id)? {
            return match o.error {
                Some(e) => Err(anyhow::anyhow!("the agent could not do it: {e}")),
                None => Ok(o),
            };
        }
        // The agent stopped before it got to the request: do it here.
        let free = control::is_pending(dir, &id) && control::try_lock(dir)?.is_some();
        if free {
            match Spool::open(opts.clone()) {
                Ok(mut s) => s.serve_requests(),
                Err(SpoolError::Locked(_)) => {}
                Err(e) => return Err(e.into()),
            }
            continue;
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "the agent did not answer within {} s; the request stays in {} and is carried out when the agent next runs",
                ANSWER_WITHIN.as_secs(),
                dir.join(control::REQUESTS).display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
