//! `orgtrail insights replay`: feeds the stored events stamped since T, in sequence order (the
//! order the collector feeds them), through a fresh detector, and stores the Insight events it
//! finds as ordinary events of their account (deduplicated: the ids of Insight events are
//! derived from their key, first minute and the detector's state, so a rerun over the same
//! events stores nothing new). Against a running collector (an admin certificate: the
//! `Insights.Replay` RPC, the collector's own `[insights]` tuning), or offline in a store on
//! disk. Both find the Insights with one function, `orgtrail_collector::replay_since`; the
//! collector's own detector state is neither read nor changed.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use orgtrail_core::{CloudTrailEvent, Timestamp};
use orgtrail_insights::InsightsConfig;

use crate::cmd::ingest::{BATCH, ingest};
use crate::cmd::remote::Where;

/// Find the Insights of events already stored (backfilled, imported, or stored before
/// Insights were on): feeds every stored event stamped at or after --since, in the order they
/// were stored, through a fresh detector, and stores the Insight events it finds. Reruns are
/// idempotent (the same Insights have the same eventIDs). At the end the detector's clock is
/// moved to now, so that Insights back within bounds since are ended.
///
/// Against a running collector (the one of your profile, or --collector URL --cert F --key F
/// --ca F): an admin certificate only (auditors are refused); the collector replays with its
/// own [insights] tuning and stores the Insight events through its ingest path, without
/// touching its live detector. Offline with --data-dir DIR --keys DIR: the collector must not
/// be running on the store (it is refused while in use); the detector uses the [insights]
/// section of --config (a collector configuration), or the defaults.
///
/// An Insight already stored (same key, first minute and state) is not stored twice.
/// Prints `fed=N found=F stored=S duplicates=D` (and ` conflicts=C` for Insights already
/// stored with other statistics: kept out).
#[derive(Debug, clap::Args)]
pub(crate) struct ReplayArgs {
    /// Events stamped at or after this: an RFC 3339 time (2026-11-20T00:00:00Z), or a
    /// duration back from now (7d, 12h).
    #[arg(long, value_parser = parse_since)]
    since: Timestamp,
    #[command(flatten)]
    target: crate::cmd::remote::Target,
    /// Offline: a collector configuration whose [insights] section tunes the detector (its
    /// `enabled` is ignored: replay is asked for). A running collector uses its own.
    #[arg(long, value_name = "FILE", requires = "data_dir")]
    config: Option<PathBuf>,
}

fn parse_since(s: &str) -> Result<Timestamp, String> {
    if let Ok(t) = crate::cmd::lookup::parse_time(s) {
        return Ok(t);
    }
    let back = crate::cmd::lookup::parse_duration_ms(s)?;
    Ok(Timestamp(now_ms() - back))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) fn run(a: ReplayArgs) -> anyhow::Result<ExitCode> {
    if let Where::Remote(r) = a.target.resolve()? {
        return crate::cmd::remote::runtime()?.block_on(remote(&a, &r));
    }
    let (Some(keys), Some(data_dir)) = (&a.target.keys, &a.target.data_dir) else {
        anyhow::bail!("a store on disk needs --data-dir DIR --keys DIR");
    };
    let config = match &a.config {
        Some(p) => {
            orgtrail_collector::CollectorConfig::load(p)
                .with_context(|| format!("reading {}", p.display()))?
                .insights
        }
        None => InsightsConfig::default(),
    };
    let ledger = crate::cmd::keys::open(keys, data_dir)?;
    let found = orgtrail_collector::replay_since(&ledger, config, a.since.millis(), now_ms())?;
    let n = found.events.len();
    let totals = ingest(&ledger, BATCH, &|_, _| {}, |push| {
        for (account, json) in &found.events {
            let event = CloudTrailEvent::parse(json.clone())
                .context("an Insight event does not validate")?;
            push(event, *account)?;
        }
        Ok(())
    })?;
    ledger.close().context("closing the store")?;
    print(
        found.fed,
        n as u64,
        totals.stored,
        totals.duplicates,
        totals.conflicts,
    )
}

/// Asks the collector to replay (`Insights.Replay`); it answers once what it found is durable.
async fn remote(a: &ReplayArgs, r: &orgtrail_client::Remote) -> anyhow::Result<ExitCode> {
    let c = crate::cmd::remote::connect(r).await?;
    let done = c
        .insights()
        .replay(orgtrail_proto::v1::ReplayRequest {
            since_ms: a.since.millis(),
        })
        .await
        .map_err(|s| c.explain(s))?
        .into_inner();
    print(
        done.fed,
        done.found,
        done.stored,
        done.duplicates,
        done.conflicts,
    )
}

/// `fed=N found=F stored=S duplicates=D`, and ` conflicts=C` when some were found with an
/// eventID stored with other bytes (kept out: the stored event stays).
fn print(
    fed: u64,
    found: u64,
    stored: u64,
    duplicates: u64,
    conflicts: u64,
) -> anyhow::Result<ExitCode> {
    let mut out = io::stdout().lock();
    write!(
        out,
        "fed={fed} found={found} stored={stored} duplicates={duplicates}"
    )?;
    if conflicts > 0 {
        write!(out, " conflicts={conflicts}")?;
    }
    writeln!(out)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
