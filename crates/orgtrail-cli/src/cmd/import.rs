//! `orgtrail import`: backfill a store from files, offline.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use orgtrail_core::{AccountId, CloudTrailEvent, DecodeLimits, InputFormat, Timestamp};

use crate::cmd::ingest::ingest;

/// Import CloudTrail events into a store (backfill, forensics on a copied store): delivered
/// log files, JSON lines or single events, plain or gzip, `-` for standard input.
///
/// A directory is read as a copy of a trail's bucket or an `orgtrail export` archive: every
/// CloudTrail log file under it (`.../AWSLogs/[o-ID/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/
/// *.json.gz`), in key order; digest files, their `.sig` files and anything else are skipped.
///
/// Each event belongs to its recipientAccountId; `--account` names the owner of events that
/// carry none (without it they are rejected). Events already stored are counted as duplicates,
/// an eventID stored before with different bytes as a conflict. Prints
/// `stored=N duplicates=M conflicts=C rejected=K`, with one line per rejected event before it.
/// Exit status 0 when nothing was rejected, 1 otherwise.
///
/// With --public-keys (CloudTrail's keys, the JSON `aws cloudtrail list-public-keys` prints)
/// or --public-key (an `orgtrail export` archive's Ed25519 `signing.pub`), every directory is
/// validated first, exactly as `orgtrail validate-logs` does (digest chains, signatures, each
/// log file's hash, unlisted log files); if anything is invalid, the report is printed, nothing
/// is imported, and the exit status is 1. Only directories can be validated: a file or `-`
/// with either flag is a usage error. Without either flag, nothing is validated.
///
/// --start and --end import only the log files of each directory whose time (the minute in
/// the file's name) lies between them, and validate only the digests of that range (as
/// `validate-logs --start --end` does: it covers every file imported).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The store's data directory (created if missing).
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Directory holding keyring.json.
    #[arg(long, value_name = "DIR")]
    keys: PathBuf,
    /// Owner of events without recipientAccountId (12 digits).
    #[arg(long)]
    account: Option<AccountId>,
    /// Input shape: auto, records, jsonl, or event.
    #[arg(long, default_value = "auto", value_parser = |s: &str| s.parse::<InputFormat>())]
    format: InputFormat,
    /// Print `acked FIRST-LAST` on standard error each time a batch of events (numbered from 1
    /// in input order) is durable in the store.
    #[arg(long)]
    progress: bool,
    /// Validate each directory with these CloudTrail public keys (the JSON `aws cloudtrail
    /// list-public-keys` prints; may be repeated) before importing anything; import nothing if
    /// any check fails.
    #[arg(long, value_name = "FILE")]
    public_keys: Vec<PathBuf>,
    /// Validate each directory (an `orgtrail export` archive) with this store's Ed25519 public
    /// key (`signing.pub`; may be repeated) before importing anything; import nothing if any
    /// check fails.
    #[arg(long, value_name = "FILE")]
    public_key: Vec<PathBuf>,
    /// With --public-keys or --public-key: the bucket the directories are copies of; each
    /// digest's digestS3Bucket must name it (unset: bucket names are not checked).
    #[arg(long, value_name = "NAME")]
    bucket: Option<String>,
    /// Import only the log files of each directory from this time on (RFC 3339, e.g.
    /// 2024-03-01T00:00:00Z; the minute in the file's name), and validate the digests that end
    /// at or after it.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    start: Option<Timestamp>,
    /// Import only the log files of each directory up to this time, and validate the digests
    /// up to it (plus one hour, for the digest that covers it).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    end: Option<Timestamp>,
    /// Files to import; `-` reads standard input; a directory, its CloudTrail log files.
    #[arg(required = true, value_name = "FILE|DIR")]
    files: Vec<PathBuf>,
    #[command(flatten)]
    tuning: Tuning,
}

/// Hidden sizes for tests: small groups, index runs and dictionary samples make a short import
/// go through every step of a group commit and of the index's background work (see
/// tests/crash_steps.rs). Not for production use.
#[derive(Debug, clap::Args)]
struct Tuning {
    /// Events per batch submitted to the ledger.
    #[arg(long, hide = true, default_value_t = crate::cmd::ingest::BATCH)]
    batch_events: usize,
    /// The ledger's `max_group_events`.
    #[arg(long, hide = true)]
    max_group_events: Option<usize>,
    /// The ledger's `index_run_events` (the collector's `index_memtable_events`).
    #[arg(long, hide = true)]
    index_memtable_events: Option<u64>,
    /// The ledger's `dict_train_after`.
    #[arg(long, hide = true)]
    dict_train_after: Option<usize>,
}

/// Reads and validates on this thread, prepares on one worker per core, and keeps the ledger
/// writer busy (see `ingest`).
fn parse_time(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse(s).map_err(|e| e.to_string())
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let (Some(s), Some(e)) = (args.start, args.end)
        && s > e
    {
        anyhow::bail!("--start {s} is after --end {e}");
    }
    if args.start.is_some() || args.end.is_some() {
        for p in &args.files {
            if !p.is_dir() {
                anyhow::bail!(
                    "{}: --start and --end choose log files of a directory by the time in their names; a file is imported whole",
                    p.display()
                );
            }
        }
    }
    if !args.public_keys.is_empty() || !args.public_key.is_empty() {
        if !validated(&args)? {
            return Ok(ExitCode::from(1));
        }
    } else if args.bucket.is_some() {
        anyhow::bail!(
            "--bucket names the bucket digests are checked against: it needs --public-keys or --public-key"
        );
    }
    let files = expand(&args.files, args.start, args.end)?;
    let t = &args.tuning;
    let ledger = crate::cmd::keys::open_tuned(&args.keys, &args.data_dir, |cfg| {
        // The import's index merges are finished before it exits, not left to the collector
        // started next on the store (where they cost memory while it ingests).
        cfg.settle_index_at_close = true;
        if let Some(n) = t.max_group_events {
            cfg.max_group_events = n.max(1);
        }
        if let Some(n) = t.index_memtable_events {
            cfg.index_run_events = n.max(1);
        }
        if let Some(n) = t.dict_train_after {
            cfg.dict_train_after = n.max(1);
        }
    })?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut rejected = 0u64;
    let progress = args.progress;
    let on_ack = move |first: u64, last: u64| {
        if progress {
            // One line per durable batch; stderr is unbuffered, so a reader sees it at once.
            eprintln!("acked {first}-{last}");
        }
    };
    let totals = ingest(&ledger, args.tuning.batch_events, &on_ack, |push| {
        for path in &files {
            let name = path.display().to_string();
            let decoder = match crate::cmd::open_decoder(path, args.format, DecodeLimits::default())
            {
                Ok(d) => d,
                Err(crate::cmd::OpenError::Open(e)) => {
                    rejected += 1;
                    writeln!(out, "{name}: cannot open: {e}")?;
                    continue;
                }
                Err(crate::cmd::OpenError::Decode(e)) => {
                    rejected += 1;
                    writeln!(out, "{name}: {e}")?;
                    continue;
                }
            };
            for item in decoder {
                let item = match item {
                    Ok(i) => i,
                    Err(e) => {
                        rejected += 1;
                        writeln!(out, "{name}: {e}")?;
                        break;
                    }
                };
                let event = match item.result {
                    Ok(e) => e,
                    Err(reason) => {
                        rejected += 1;
                        writeln!(out, "{name}: {}: {reason}", item.position)?;
                        continue;
                    }
                };
                match owner(&event, args.account) {
                    Ok(a) => push(event, a)?,
                    Err(reason) => {
                        rejected += 1;
                        writeln!(out, "{name}: {}: {reason}", item.position)?;
                    }
                }
            }
        }
        Ok(())
    })?;
    ledger.close().context("closing the store")?;
    writeln!(
        out,
        "stored={} duplicates={} conflicts={} rejected={rejected}",
        totals.stored, totals.duplicates, totals.conflicts
    )?;
    out.flush()?;
    Ok(if rejected == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Validates every directory of `args.files` as `validate-logs` does, printing each report.
/// True when all are valid.
fn validated(args: &Args) -> anyhow::Result<bool> {
    let keys = crate::cmd::validate_logs::load_keys(&args.public_keys, &args.public_key)?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut all_valid = true;
    for p in &args.files {
        if !p.is_dir() {
            anyhow::bail!(
                "{}: --public-keys and --public-key validate a directory (a copy of a trail's bucket or an export); a file cannot be validated",
                p.display()
            );
        }
        let store = orgtrail_trailfiles::DirStore::new(p, args.bucket.clone(), "")?;
        let report = orgtrail_trailfiles::validate(
            &store,
            &keys,
            &orgtrail_trailfiles::ValidateOptions {
                start: args.start,
                end: args.end,
                ..orgtrail_trailfiles::ValidateOptions::default()
            },
        )?;
        if report.is_valid() {
            writeln!(
                out,
                "{}: {} digest files and {} log files valid",
                p.display(),
                report.digests_valid,
                report.logs_valid
            )?;
        } else {
            all_valid = false;
            crate::cmd::validate_logs::write_text(
                &mut out,
                &p.display().to_string(),
                args.start,
                args.end,
                &report,
            )?;
        }
    }
    if !all_valid {
        writeln!(
            out,
            "import refused: the digests do not validate; nothing was imported"
        )?;
    }
    out.flush()?;
    Ok(all_valid)
}

/// The files to read: each directory replaced by its CloudTrail log files, in key order (those
/// whose name's time lies in `start..=end`).
fn expand(
    paths: &[PathBuf],
    start: Option<Timestamp>,
    end: Option<Timestamp>,
) -> anyhow::Result<Vec<PathBuf>> {
    let in_range = |k: &str| {
        orgtrail_trailfiles::TrailKey::parse(k)
            .is_some_and(|t| start.is_none_or(|s| t.stamp >= s) && end.is_none_or(|e| t.stamp <= e))
    };
    let mut out = Vec::with_capacity(paths.len());
    for p in paths {
        if p.is_dir() {
            let store = orgtrail_trailfiles::DirStore::new(p, None, "")?;
            let keys = orgtrail_trailfiles::log_keys(&store)
                .with_context(|| format!("listing {}", p.display()))?;
            out.extend(keys.iter().filter(|k| in_range(k)).map(|k| p.join(k)));
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn owner(event: &CloudTrailEvent, fallback: Option<AccountId>) -> Result<AccountId, String> {
    match &event.fields().recipient_account_id {
        Some(a) => a
            .parse()
            .map_err(|_| "recipientAccountId is not a 12-digit AWS account id".to_string()),
        None => fallback.ok_or_else(|| {
            "event has no recipientAccountId and no --account names its owner".to_string()
        }),
    }
}
