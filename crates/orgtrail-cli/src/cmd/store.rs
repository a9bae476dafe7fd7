//! `orgtrail store`: maintenance of a stopped store.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use orgtrail_crypto::LocalKeyProvider;
use orgtrail_store::{Ledger, LedgerConfig};

/// Maintain a store while no collector runs on it.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Debug, clap::Subcommand)]
enum StoreCommand {
    /// Convert a store written by an earlier orgtrail (format 1) to the current format, in
    /// place: Merkle subtree hashes from the stored leaf hashes (the tree, and so every signed
    /// checkpoint, stays the same) and the index in run files from the stored index chunks.
    /// Records and keys are not rewritten. Stop the collector and back the directory up first;
    /// an interrupted upgrade is finished by running it again. A store already current is
    /// left alone.
    Upgrade {
        /// The store's data directory.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// Directory holding keyring.json: the upgraded store is opened with it to check it.
        #[arg(long, value_name = "DIR")]
        keys: PathBuf,
        /// Events per index run (the collector's `index_memtable_events`); hidden, for tests
        /// that need several runs from a small store.
        #[arg(long, hide = true)]
        index_memtable_events: Option<u64>,
    },
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        StoreCommand::Upgrade {
            data_dir,
            keys,
            index_memtable_events,
        } => {
            let provider = Arc::new(
                LocalKeyProvider::load(&keys)
                    .with_context(|| format!("loading the keyring from {}", keys.display()))?,
            );
            let cfg = LedgerConfig::default();
            let run_events = index_memtable_events.unwrap_or(cfg.index_run_events);
            let report = orgtrail_store::upgrade(&data_dir, run_events)
                .with_context(|| format!("upgrading the store at {}", data_dir.display()))?;
            if report.from == report.to {
                println!(
                    "the store at {} is already format {}; nothing to do",
                    data_dir.display(),
                    report.to
                );
                return Ok(ExitCode::SUCCESS);
            }
            // Opened once with the keys, read-only: it must open as the collector will.
            let ledger = Ledger::open(
                &data_dir,
                provider,
                LedgerConfig {
                    read_only: true,
                    ..cfg
                },
            )
            .context("opening the upgraded store")?;
            println!(
                "upgraded {} from format {} to {}: {} events, {} Merkle subtree hashes, {} index runs",
                data_dir.display(),
                report.from,
                report.to,
                ledger.stats().events,
                report.subtrees,
                report.runs
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
