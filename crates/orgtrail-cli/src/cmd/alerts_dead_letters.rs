//! `orgtrail alerts dead-letters`: the alerts a sink gave up on, listed from a stopped store,
//! and re-driven (moved back to the outbox) with `--retry`.

use std::path::PathBuf;
use std::process::ExitCode;

use orgtrail_store::{DeadLetter, EventStore};

/// Alerts a sink gave up on (its `max_attempts` failed, or the receiver refused them), kept in
/// the ledger: list them, or send them again.
///
/// Reads a stopped store (the collector must not be running on it: a store in use is
/// refused). Prints one line per dead letter, tab-separated: alert id, rule, sink, event
/// sequence number, attempts, when it was given up (UTC), the last error. With `--retry`
/// (optionally only those of `--sink`), moves them back to the outbox: the collector delivers
/// them at its next start, in order, under the same alert ids.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The store's data directory.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Directory holding keyring.json (each alert's id is derived from its event, which is
    /// read back).
    #[arg(long, value_name = "DIR")]
    keys: PathBuf,
    /// Move the dead letters back to the outbox, to be delivered again.
    #[arg(long)]
    retry: bool,
    /// Only this sink's dead letters.
    #[arg(long, value_name = "NAME")]
    sink: Option<String>,
}

impl Args {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        run(self)
    }
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = if args.retry {
        crate::cmd::keys::open(&args.keys, &args.data_dir)?
    } else {
        crate::cmd::keys::open_read_only(&args.keys, &args.data_dir)?
    };
    let letters: Vec<DeadLetter> = if args.retry {
        store.retry_dead_letters(args.sink.as_deref())?
    } else {
        store
            .dead_letters(usize::MAX)?
            .into_iter()
            .filter(|d| args.sink.as_ref().is_none_or(|s| *s == d.sink))
            .collect()
    };
    for d in &letters {
        let id = alert_id_of(&store, d)?;
        println!(
            "{id}\t{}\t{}\t{}\t{}\t{}\t{}",
            d.rule,
            d.sink,
            d.seq,
            d.attempts,
            when(d.at_ms),
            d.error
        );
    }
    EventStore::close(&store)?;
    if args.retry {
        eprintln!(
            "orgtrail: {} dead letter(s) moved back to the outbox; the collector delivers them when it starts",
            letters.len()
        );
    } else {
        eprintln!("orgtrail: {} dead letter(s)", letters.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// The alert id, derived as the collector derives it (rule, account, eventID).
fn alert_id_of(store: &dyn EventStore, d: &DeadLetter) -> anyhow::Result<String> {
    let e = store.read(d.seq)?;
    let record: serde_json::Value = serde_json::from_slice(&e.bytes)?;
    let event_id = record["eventID"]
        .as_str()
        .map_or_else(|| orgtrail_core::derived_event_id(&e.bytes), str::to_owned);
    Ok(orgtrail_collector::alerts::payload::alert_id(
        &d.rule,
        e.account.as_str(),
        &event_id,
    ))
}

/// Milliseconds since the epoch as an RFC 3339 UTC time.
fn when(ms: u64) -> String {
    orgtrail_core::Timestamp(i64::try_from(ms).unwrap_or(i64::MAX)).to_string()
}
