//! `orgtrail import`: backfill a store from files, offline.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use orgtrail_core::{AccountId, CloudTrailEvent, DecodeLimits, Decoder, InputFormat};
use orgtrail_store::{AppendOutcome, StoreError};
use tokio::sync::oneshot;

/// Import CloudTrail events into a store (backfill, forensics on a copied store): delivered
/// log files, JSON lines or single events, plain or gzip, `-` for standard input.
///
/// Each event belongs to its recipientAccountId; `--account` names the owner of events that
/// carry none (without it they are rejected). Events already stored are counted as duplicates,
/// an eventID stored before with different bytes as a conflict. Prints
/// `stored=N duplicates=M conflicts=C rejected=K`, with one line per rejected event before it.
/// Exit status 0 when nothing was rejected, 1 otherwise.
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
    /// Files to import; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

#[derive(Debug, Default)]
struct Tally {
    stored: u64,
    duplicates: u64,
    conflicts: u64,
    rejected: u64,
}

type Pending = oneshot::Receiver<Result<AppendOutcome, StoreError>>;

const BATCH: usize = 2000;
const IN_FLIGHT: usize = 4;

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let ledger = crate::cmd::keys::open(&args.keys, &args.data_dir)?;
    let mut preparer = ledger.preparer();
    let mut tally = Tally::default();
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut batch = Vec::with_capacity(BATCH);

    let settle = |p: Pending, tally: &mut Tally| -> anyhow::Result<()> {
        let outcome = p.blocking_recv().map_err(|_| StoreError::WriterGone)??;
        tally.stored += outcome.stored() as u64;
        tally.duplicates += outcome.duplicates() as u64;
        tally.conflicts += outcome.conflicts() as u64;
        Ok(())
    };

    for path in &args.files {
        let name = path.display().to_string();
        let reader = match crate::cmd::open_input(path) {
            Ok(r) => r,
            Err(e) => {
                tally.rejected += 1;
                writeln!(out, "{name}: cannot open: {e}")?;
                continue;
            }
        };
        let decoder = match Decoder::new(reader, args.format, DecodeLimits::default()) {
            Ok(d) => d,
            Err(e) => {
                tally.rejected += 1;
                writeln!(out, "{name}: {e}")?;
                continue;
            }
        };
        for item in decoder {
            let item = match item {
                Ok(i) => i,
                Err(e) => {
                    tally.rejected += 1;
                    writeln!(out, "{name}: {e}")?;
                    break;
                }
            };
            let event = match item.result {
                Ok(e) => e,
                Err(reason) => {
                    tally.rejected += 1;
                    writeln!(out, "{name}: {}: {reason}", item.position)?;
                    continue;
                }
            };
            let owner = match owner(&event, args.account) {
                Ok(a) => a,
                Err(reason) => {
                    tally.rejected += 1;
                    writeln!(out, "{name}: {}: {reason}", item.position)?;
                    continue;
                }
            };
            batch.push(preparer.prepare(&event, owner)?);
            if batch.len() == BATCH {
                if pending.len() == IN_FLIGHT
                    && let Some(p) = pending.pop_front()
                {
                    settle(p, &mut tally)?;
                }
                pending.push_back(ledger.submit_blocking(std::mem::take(&mut batch))?);
            }
        }
    }
    if !batch.is_empty() {
        pending.push_back(ledger.submit_blocking(batch)?);
    }
    while let Some(p) = pending.pop_front() {
        settle(p, &mut tally)?;
    }
    ledger.close().context("closing the store")?;
    writeln!(
        out,
        "stored={} duplicates={} conflicts={} rejected={}",
        tally.stored, tally.duplicates, tally.conflicts, tally.rejected
    )?;
    out.flush()?;
    Ok(if tally.rejected == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
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
