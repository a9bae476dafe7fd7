//! `orgtrail import`: backfill a store from files, offline.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Mutex, mpsc};

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

/// Reads and validates on this thread, prepares (compress, hash, blind) on one worker per core,
/// and keeps the ledger writer busy with the batches the workers submit.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let ledger = crate::cmd::keys::open(&args.keys, &args.data_dir)?;
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut tally = Tally::default();

    let (work_tx, work_rx) = mpsc::sync_channel::<Vec<(CloudTrailEvent, AccountId)>>(workers * 2);
    let work_rx = Mutex::new(work_rx);
    let (ack_tx, ack_rx) = mpsc::channel::<Pending>();
    let (stored, duplicates, conflicts) =
        std::thread::scope(|scope| -> anyhow::Result<(u64, u64, u64)> {
            let mut handles = Vec::new();
            for _ in 0..workers {
                let ack_tx = ack_tx.clone();
                let work_rx = &work_rx;
                let ledger = &ledger;
                handles.push(scope.spawn(move || -> anyhow::Result<()> {
                    let mut preparer = ledger.preparer();
                    loop {
                        let batch = match work_rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return Ok(()),
                        };
                        let Ok(batch) = batch else { return Ok(()) };
                        let mut prepared = Vec::with_capacity(batch.len());
                        for (event, owner) in &batch {
                            prepared.push(preparer.prepare(event, *owner)?);
                        }
                        if ack_tx.send(ledger.submit_blocking(prepared)?).is_err() {
                            return Ok(());
                        }
                    }
                }));
            }
            drop(ack_tx);
            let settler = scope.spawn(move || -> anyhow::Result<(u64, u64, u64)> {
                let mut t = (0u64, 0u64, 0u64);
                for p in ack_rx {
                    let outcome = p.blocking_recv().map_err(|_| StoreError::WriterGone)??;
                    t.0 += outcome.stored() as u64;
                    t.1 += outcome.duplicates() as u64;
                    t.2 += outcome.conflicts() as u64;
                }
                Ok(t)
            });

            let mut batch = Vec::with_capacity(BATCH);
            let read = (|| -> anyhow::Result<()> {
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
                        match owner(&event, args.account) {
                            Ok(a) => batch.push((event, a)),
                            Err(reason) => {
                                tally.rejected += 1;
                                writeln!(out, "{name}: {}: {reason}", item.position)?;
                                continue;
                            }
                        }
                        if batch.len() == BATCH && work_tx.send(std::mem::take(&mut batch)).is_err()
                        {
                            anyhow::bail!("the import workers stopped");
                        }
                    }
                }
                if !batch.is_empty() && work_tx.send(std::mem::take(&mut batch)).is_err() {
                    anyhow::bail!("the import workers stopped");
                }
                Ok(())
            })();
            drop(work_tx);
            let mut first_err = read.err();
            for h in handles {
                match h.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        first_err.get_or_insert(e);
                    }
                    Err(_) => {
                        first_err.get_or_insert(anyhow::anyhow!("an import worker panicked"));
                    }
                }
            }
            let totals = match settler.join() {
                Ok(r) => r,
                Err(_) => Err(anyhow::anyhow!("the import settler panicked")),
            };
            match (first_err, totals) {
                (Some(e), _) => Err(e),
                (None, t) => t,
            }
        })?;
    tally.stored = stored;
    tally.duplicates = duplicates;
    tally.conflicts = conflicts;
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
