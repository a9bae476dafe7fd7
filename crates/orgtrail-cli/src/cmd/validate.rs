//! `orgtrail validate`: checks files of CloudTrail events without storing anything.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use orgtrail_core::{DecodeLimits, Decoder, InputFormat, MAX_EVENT_BYTES};

/// Check CloudTrail events: delivered log files ({"Records":[...]}, plain or .gz), JSON lines,
/// or single events.
///
/// Prints one line per invalid event (`FILE: POSITION: REASON`), then `valid=N invalid=M`.
/// An input that cannot be read at all (missing file, corrupt gzip, a log file that is not
/// JSON) counts as one invalid item. Exit status: 0 when everything is valid, 1 otherwise,
/// 2 on a usage error.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Files to check; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,

    /// Input shape: auto, records (a delivered log file), jsonl, or event.
    #[arg(long, default_value = "auto", value_parser = parse_format)]
    format: InputFormat,

    /// Largest decompressed size of a gzip input, and of a whole log file (bytes). Larger
    /// inputs are refused, which is what stops a gzip bomb.
    #[arg(long, default_value_t = DecodeLimits::default().max_document_bytes, value_name = "BYTES")]
    max_input_bytes: u64,

    /// Print only the summary line.
    #[arg(long, short)]
    quiet: bool,
}

fn parse_format(s: &str) -> Result<InputFormat, String> {
    s.parse()
}

#[derive(Debug, Default)]
struct Tally {
    valid: u64,
    invalid: u64,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let limits = DecodeLimits {
        max_event_bytes: MAX_EVENT_BYTES,
        max_document_bytes: args.max_input_bytes,
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut tally = Tally::default();
    for path in &args.files {
        let name = path.display().to_string();
        let decoder = match crate::cmd::open_decoder(path, args.format, limits) {
            Ok(d) => d,
            Err(crate::cmd::OpenError::Open(e)) => {
                tally.invalid += 1;
                report(&mut out, args.quiet, &format!("{name}: cannot open: {e}"))?;
                continue;
            }
            Err(crate::cmd::OpenError::Decode(e)) => {
                tally.invalid += 1;
                report(&mut out, args.quiet, &format!("{name}: {e}"))?;
                continue;
            }
        };
        let result = check(decoder, &name, args.quiet, &mut out, &mut tally);
        match result {
            Ok(()) => {}
            Err(e) if crate::cmd::is_broken_pipe(&e) => return Ok(ExitCode::from(1)),
            Err(e) => {
                tally.invalid += 1;
                report(
                    &mut out,
                    args.quiet,
                    &format!("{name}: {}", crate::cmd::describe_error(&e)),
                )?;
            }
        }
    }
    let summary =
        writeln!(out, "valid={} invalid={}", tally.valid, tally.invalid).and_then(|()| out.flush());
    if summary.is_err() {
        return Ok(ExitCode::from(1));
    }
    Ok(if tally.invalid == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn report(out: &mut impl Write, quiet: bool, line: &str) -> anyhow::Result<()> {
    if !quiet {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

fn check(
    decoder: Decoder<'_>,
    name: &str,
    quiet: bool,
    out: &mut impl Write,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    for item in decoder {
        let item = item.context("input stopped being readable")?;
        match item.result {
            Ok(_) => tally.valid += 1,
            Err(reason) => {
                tally.invalid += 1;
                report(out, quiet, &format!("{name}: {}: {reason}", item.position))?;
            }
        }
    }
    Ok(())
}
