//! `orgtrail insights replay`: offline, feeds the stored events stamped since T, in sequence
//! order (the order the collector feeds them), through a fresh detector, and stores the
//! Insight events it finds in the same store as ordinary events of their account
//! (deduplicated: the ids of Insight events are derived from their key, first minute and the
//! detector's state, so a rerun over the same events stores nothing new). The collector's own
//! detector state is neither read nor changed.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use orgtrail_core::{AccountId, CloudTrailEvent, Timestamp};
use orgtrail_insights::{Call, Detector, InsightsConfig};

use crate::cmd::ingest::{BATCH, ingest};

/// Events read from the store at once.
const RANGE: u64 = 1024;

/// Find the Insights of events already stored (backfilled, imported, or stored before
/// Insights were on): feeds every stored event stamped at or after --since, in the order they
/// were stored, through a fresh detector, and stores the Insight events it finds in that store.
/// Offline: the collector must not be running on the store (it is refused while in use).
/// Reruns are idempotent (the same Insights have the same eventIDs). The detector uses the
/// [insights] section of --config (a collector configuration), or the defaults; at the end its
/// clock is moved to now, so that Insights back within bounds since are ended.
/// Prints `fed=N found=F stored=S duplicates=D`.
#[derive(Debug, clap::Args)]
pub(crate) struct ReplayArgs {
    /// Events stamped at or after this: an RFC 3339 time (2026-11-20T00:00:00Z), or a
    /// duration back from now (7d, 12h).
    #[arg(long, value_parser = parse_since)]
    since: Timestamp,
    /// The store's data directory.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Directory holding keyring.json.
    #[arg(long, value_name = "DIR")]
    keys: PathBuf,
    /// A collector configuration whose [insights] section tunes the detector (its `enabled`
    /// is ignored: replay is asked for).
    #[arg(long, value_name = "FILE")]
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
    let mut config = match &a.config {
        Some(p) => {
            orgtrail_collector::CollectorConfig::load(p)
                .with_context(|| format!("reading {}", p.display()))?
                .insights
        }
        None => InsightsConfig::default(),
    };
    config.enabled = true;
    let mut detector = Detector::try_new(config)?;
    let ledger = crate::cmd::keys::open(&a.keys, &a.data_dir)?;
    let (head, _) = ledger.tree_head()?;
    let since = a.since.millis();
    let mut found = Vec::new();
    let mut fed = 0u64;
    let mut first = 1;
    while first <= head {
        let last = head.min(first + RANGE - 1);
        for e in ledger.read_range(first, last)? {
            if e.time.millis() < since {
                continue;
            }
            let Ok(fields) = orgtrail_core::parse_fields(&e.bytes, orgtrail_core::MAX_EVENT_BYTES)
            else {
                continue;
            };
            let account = e.account.to_string();
            if let Some(call) = Call::from_fields(&account, &fields) {
                detector.observe(&call, &mut found);
                fed += 1;
            }
        }
        first = last + 1;
    }
    if detector.now().is_some() {
        detector.advance(now_ms().div_euclid(60_000), &mut found);
    }
    let n = found.len();
    let totals = ingest(&ledger, BATCH, &|_, _| {}, |push| {
        for f in &found {
            let account: AccountId = f
                .account()
                .parse()
                .map_err(|_| anyhow::anyhow!("an Insight event's account is not an account id"))?;
            let event = CloudTrailEvent::parse(f.to_json())
                .context("an Insight event does not validate")?;
            push(event, account)?;
        }
        Ok(())
    })?;
    ledger.close().context("closing the store")?;
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "fed={fed} found={n} stored={} duplicates={}",
        totals.stored, totals.duplicates
    )?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
