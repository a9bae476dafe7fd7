//! The `orgtrail` binary: parses flags, installs the TLS crypto provider, and hands each
//! subcommand to the library that implements it.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

/// mimalloc: the event path allocates many small strings on one thread and frees them on
/// another (prepare workers -> ledger writer); glibc's arenas contend on that (measured).
/// The `system-allocator` feature keeps the system's malloc instead, for heap profilers that
/// hook malloc (heaptrack): `cargo build --release --features system-allocator`.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// orgtrail: a self-hosted audit trail for organizations with many cloud accounts.
///
/// Agents (one per account) ship AWS CloudTrail-format events over gRPC with mutual TLS to a
/// collector that deduplicates, envelope-encrypts and appends them to a tamper-evident store.
///
/// Readers name their collector and certificate once, in a profile (`orgtrail profile add`);
/// lookup, stats and the integrity commands then need no TLS flags.
///
/// Logs go to standard error. `ORGTRAIL_LOG` chooses what is logged, in tracing's EnvFilter
/// syntax: a level (`error`, `warn` (the default), `info`, `debug`, `trace`), optionally per
/// module, e.g. `ORGTRAIL_LOG=info` or `ORGTRAIL_LOG=warn,orgtrail_collector=debug`. At
/// `info` the collector and agent log their lifecycle and a one-line summary when they stop;
/// at `debug` one line per batch step. Logs never carry event contents, keys or tokens.
#[derive(Debug, Parser)]
#[command(
    name = "orgtrail",
    version,
    about,
    long_about,
    propagate_version = true
)]
struct Cli {
    /// The format of the log on standard error: `text` (colours only when standard error is
    /// a terminal) or `json` (one JSON object per line: timestamp, level, target, fields, and
    /// the spans with their fields).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "ORGTRAIL_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    Demo(cmd::demo::Args),
    Validate(cmd::validate::Args),
    ValidateLogs(cmd::validate_logs::Args),
    Selectors(cmd::selectors::Args),
    Rules(cmd::rules::Args),
    Alerts(cmd::alerts::Args),
    GenEvents(cmd::gen_events::Args),
    Keys(cmd::keys::Args),
    Certs(cmd::certs::Args),
    Collector(cmd::collector::Args),
    Agent(cmd::agent::Args),
    /// Print commented example configurations, or check one.
    Config {
        #[command(subcommand)]
        what: ConfigCommand,
    },
    Import(cmd::import::Args),
    Export(cmd::export::Args),
    Profile(cmd::profile::Args),
    Lookup(Box<cmd::lookup::Args>),
    Insights(cmd::insights::Args),
    Stats(Box<cmd::stats::Args>),
    Checkpoint(cmd::integrity::CheckpointArgs),
    Verify(cmd::integrity::VerifyArgs),
    Proof(cmd::integrity::ProofArgs),
    VerifyProof(cmd::integrity::VerifyProofArgs),
    VerifyConsistency(cmd::integrity::VerifyConsistencyArgs),
    Store(cmd::store::Args),
    Bench(cmd::bench::Args),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print a commented example configuration: `collector` or `agent`.
    Example(cmd::collector::ExampleArgs),
    Check(cmd::config::CheckArgs),
}

fn main() -> ExitCode {
    // One TLS crypto provider for the whole process, before anything can ask for one: aws-lc-rs.
    // (An error only means a provider is already installed.)
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();

    quiet_on_closed_stdout();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Demo(args) => cmd::demo::run(args),
        Command::Validate(args) => cmd::validate::run(args),
        Command::ValidateLogs(args) => cmd::validate_logs::run(args),
        Command::Selectors(args) => cmd::selectors::run(args),
        Command::Rules(args) => cmd::rules::run(args),
        Command::Alerts(args) => cmd::alerts::run(args),
        Command::GenEvents(args) => cmd::gen_events::run(args),
        Command::Keys(args) => cmd::keys::run(args),
        Command::Certs(args) => cmd::certs::run(args),
        Command::Collector(args) => cmd::collector::run(args),
        Command::Agent(args) => cmd::agent::run(args),
        Command::Config {
            what: ConfigCommand::Example(args),
        } => cmd::collector::example(args),
        Command::Config {
            what: ConfigCommand::Check(args),
        } => cmd::config::check(args),
        Command::Import(args) => cmd::import::run(args),
        Command::Export(args) => cmd::export::run(args),
        Command::Profile(args) => cmd::profile::run(args),
        Command::Lookup(args) => cmd::lookup::run(*args),
        Command::Insights(args) => cmd::insights::run(args),
        Command::Stats(args) => cmd::stats::run(*args),
        Command::Checkpoint(args) => cmd::integrity::checkpoint(args),
        Command::Verify(args) => cmd::integrity::verify(args),
        Command::Proof(args) => cmd::integrity::proof(args),
        Command::VerifyProof(args) => cmd::integrity::verify_proof(args),
        Command::VerifyConsistency(args) => cmd::integrity::verify_consistency_cmd(args),
        Command::Store(args) => cmd::store::run(args),
        Command::Bench(args) => cmd::bench::run(args),
    };
    match result {
        Ok(code) => code,
        // The reader of our output went away (`| head`): a quiet end.
        Err(e) if cmd::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("orgtrail: error: {}", cmd::describe_error(&e));
            ExitCode::from(2)
        }
    }
}

/// Logs to standard error as `format` says, filtered by `ORGTRAIL_LOG` (default `warn`).
/// Text has ANSI colours only when standard error is a terminal (never in a file or a pipe).
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("ORGTRAIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}

/// `println!` panics when standard output is a closed pipe (`orgtrail demo | head -1`); that
/// is the reader's choice, not a failure: end the process quietly with status 0. Any other
/// panic is reported as usual.
fn quiet_on_closed_stdout() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if msg.starts_with("failed printing to stdout")
            && (msg.contains("os error 32") || msg.contains("Broken pipe"))
        {
            std::process::exit(0);
        }
        report(info);
    }));
}
