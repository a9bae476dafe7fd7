//! `orgtrail collector` and `orgtrail config example`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use orgtrail_collector::CollectorConfig;

/// Run the collector: accept agents over gRPC with mutual TLS, store their events durably,
/// acknowledge each batch once stored. Prints `orgtrail collector listening on ADDR` when
/// ready (then `orgtrail collector: ops listening on ADDR` with `[ops]`). SIGTERM or Ctrl-C: stop accepting, finish in-flight batches, flush, checkpoint,
/// print `orgtrail collector stopped: received=N stored=S duplicates=D conflicts=C rejected=R
/// refused_batches=B uptime=Ts` (also logged at info) and exit 0. SIGHUP: reload the rules of
/// `[rules]` (a bad set is refused and the rules in force stay).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The configuration file (`orgtrail config example collector` prints a commented one).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

/// Print a commented example configuration.
#[derive(Debug, clap::Args)]
pub(crate) struct ExampleArgs {
    /// collector or agent.
    #[arg(value_parser = ["collector", "agent"])]
    what: String,
}

pub(crate) fn example(args: ExampleArgs) -> anyhow::Result<ExitCode> {
    match args.what.as_str() {
        "collector" => print!("{}", orgtrail_collector::EXAMPLE),
        _ => print!("{}", orgtrail_agent::EXAMPLE),
    }
    Ok(ExitCode::SUCCESS)
}

/// Completes on SIGTERM or SIGINT. The handlers are installed when this is called (it must be
/// called inside the runtime), not when the future is first polled: a signal that arrives
/// right after the process said it is ready must already be a clean stop, never the default
/// kill.
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            match (term, int) {
                (Some(mut term), Some(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async move {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cfg = CollectorConfig::load(&args.config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("orgtrail-collector")
        .build()
        .context("starting the async runtime")?;
    let summary = rt.block_on(async {
        let stop = shutdown_signal();
        orgtrail_collector::run(
            cfg,
            |name, addr| {
                let mut out = std::io::stdout();
                if name == orgtrail_collector::OPS_LISTENER {
                    let _ = writeln!(out, "orgtrail collector: ops listening on {addr}");
                } else {
                    let _ = writeln!(out, "orgtrail collector listening on {addr}");
                }
                let _ = out.flush();
            },
            stop,
        )
        .await
    })?;
    let mut out = std::io::stdout();
    let _ = writeln!(out, "orgtrail collector stopped: {summary}");
    let _ = out.flush();
    Ok(ExitCode::SUCCESS)
}
