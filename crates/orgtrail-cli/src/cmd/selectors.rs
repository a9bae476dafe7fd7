//! `orgtrail selectors check`: a dry run of a trail's event selectors over files of events, for
//! users tuning a trail before the agent applies the selectors.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use orgtrail_core::{DecodeLimits, Decoder, InputFormat};
use orgtrail_rules::selectors::{SelectorConfig, Selectors};

/// Work with CloudTrail event selectors.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    Check(CheckArgs),
}

/// Apply event selectors to files of events and count what the agent would ship.
///
/// The selectors come from an agent configuration's [selectors] table (--config), or from the
/// JSON that `aws cloudtrail get-event-selectors` prints (--aws-json). EVENTS are files in any
/// shape `orgtrail validate` reads (delivered log files, plain or .gz, JSON lines, single
/// events); `-` reads standard input.
///
/// Prints `matched=N filtered=M` (and `invalid=K` when some events could not be read); with
/// --explain, first one line per event: `FILE: POSITION: eventName: matched|filtered: WHY`.
/// Exit status: 0 when every event was read, 1 when some were invalid, 2 when the selectors
/// are invalid (every problem is listed) or on a usage error.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("selectors").required(true).args(["config", "aws_json"])))]
struct CheckArgs {
    /// An agent configuration file; only its [selectors] table is read. A relative `aws_json`
    /// path in it is relative to this file.
    #[arg(long, value_name = "AGENT_TOML")]
    config: Option<PathBuf>,

    /// The output of `aws cloudtrail get-event-selectors`, as printed.
    #[arg(long, value_name = "FILE")]
    aws_json: Option<PathBuf>,

    /// Say for every event which selector matched, or why none did.
    #[arg(long)]
    explain: bool,

    /// Input shape: auto, records (a delivered log file), jsonl, or event.
    #[arg(long, default_value = "auto", value_parser = parse_format)]
    format: InputFormat,

    /// Files of events; `-` reads standard input.
    #[arg(required = true, value_name = "EVENTS")]
    events: Vec<PathBuf>,
}

fn parse_format(s: &str) -> Result<InputFormat, String> {
    s.parse()
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.what {
        What::Check(a) => check(a),
    }
}

/// The compiled selectors, or the message listing why there are none.
fn load(a: &CheckArgs) -> Result<Selectors, String> {
    let listed = |what: &str, problems: Vec<String>| {
        format!(
            "invalid selectors in {what}:\n  - {}",
            problems.join("\n  - ")
        )
    };
    if let Some(path) = &a.config {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let cfg = SelectorConfig::from_agent_toml(&text)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Selectors::load(&cfg, dir).map_err(|p| listed(&path.display().to_string(), p))
    } else if let Some(path) = &a.aws_json {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Selectors::from_aws_json(&text).map_err(|p| listed(&path.display().to_string(), p))
    } else {
        Err("give --config or --aws-json".into())
    }
}

#[derive(Debug, Default)]
struct Tally {
    matched: u64,
    filtered: u64,
    invalid: u64,
}

fn check(a: CheckArgs) -> anyhow::Result<ExitCode> {
    let selectors = match load(&a) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("orgtrail: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut tally = Tally::default();
    for path in &a.events {
        let name = path.display().to_string();
        let reader = match crate::cmd::open_input(path) {
            Ok(r) => r,
            Err(e) => {
                tally.invalid += 1;
                eprintln!("{name}: cannot open: {e}");
                continue;
            }
        };
        match check_input(reader, &name, &a, &selectors, &mut out, &mut tally) {
            Ok(()) => {}
            Err(e) if crate::cmd::is_broken_pipe(&e) => return Ok(ExitCode::from(1)),
            Err(e) => {
                tally.invalid += 1;
                eprintln!("{name}: {}", crate::cmd::describe_error(&e));
            }
        }
    }
    let mut summary = format!("matched={} filtered={}", tally.matched, tally.filtered);
    if tally.invalid > 0 {
        summary.push_str(&format!(" invalid={}", tally.invalid));
    }
    if writeln!(out, "{summary}")
        .and_then(|()| out.flush())
        .is_err()
    {
        return Ok(ExitCode::from(1));
    }
    Ok(if tally.invalid == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn check_input(
    reader: Box<dyn Read + Send>,
    name: &str,
    a: &CheckArgs,
    selectors: &Selectors,
    out: &mut impl Write,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let decoder = Decoder::new(reader, a.format, DecodeLimits::default())?;
    for item in decoder {
        let item = item.context("input stopped being readable")?;
        let event = match item.result {
            Ok(e) => e,
            Err(reason) => {
                tally.invalid += 1;
                eprintln!("{name}: {}: {reason}", item.position);
                continue;
            }
        };
        let fields = event.fields();
        if selectors.matches(fields) {
            tally.matched += 1;
        } else {
            tally.filtered += 1;
        }
        if a.explain {
            writeln!(
                out,
                "{name}: {}: {}: {}",
                item.position,
                fields.event_name,
                selectors.explain(fields)
            )?;
        }
    }
    Ok(())
}
