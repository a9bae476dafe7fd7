//! `orgtrail stats`: counts of events grouped by account, eventSource, eventName, user,
//! errorCode or region, from a running collector or a store on disk. Whole UTC hours are
//! counted from the store's counters; the rest by a bounded scan, and the output says which.

use std::io::{self, Write};
use std::process::ExitCode;

use orgtrail_core::Timestamp;
use orgtrail_store::{Counts, Group};

use crate::cmd::remote::Where;

/// Count events, grouped: which accounts, services and calls are busiest, who calls, what
/// fails. Takes the same filters and time range as `lookup`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    target: crate::cmd::remote::Target,
    /// Group by these fields, comma-separated: account, eventSource, eventName, user,
    /// errorCode, region.
    #[arg(long, value_delimiter = ',', default_value = "account,eventName", value_parser = parse_group)]
    by: Vec<Group>,
    /// Show at most this many groups, largest first.
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// Most events to decrypt for what the counters cannot serve (the edges of a range not on
    /// whole UTC hours, a filter on readOnly, accessKeyId, resourceName or resourceType, an
    /// eventID). Remotely, the collector caps it at its `limits.max_stats_events`.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    scan_limit: usize,
    #[command(flatten)]
    filters: crate::cmd::lookup::Filters,
}

fn parse_group(s: &str) -> Result<Group, String> {
    Ok(match s {
        "account" => Group::Account,
        "eventSource" | "event-source" => Group::EventSource,
        "eventName" | "event-name" => Group::EventName,
        "user" | "username" => Group::User,
        "errorCode" | "error-code" => Group::ErrorCode,
        "region" | "awsRegion" => Group::Region,
        _ => {
            return Err(format!(
                "{s:?}: group by account, eventSource, eventName, user, errorCode or region"
            ));
        }
    })
}

fn group_name(g: Group) -> &'static str {
    match g {
        Group::Account => "ACCOUNT",
        Group::EventSource => "EVENT SOURCE",
        Group::EventName => "EVENT NAME",
        Group::User => "USER",
        Group::ErrorCode => "ERROR CODE",
        Group::Region => "REGION",
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let counts = if let Where::Remote(r) = args.target.resolve()? {
        crate::cmd::remote::runtime()?.block_on(remote(&args, &r))?
    } else {
        let ledger = args.target.open_offline()?;
        let c = ledger.count_at_most(
            &args.filters.to_query(),
            &args.by,
            args.top,
            args.scan_limit,
        )?;
        ledger.close()?;
        c
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    print_counts(&mut out, &args.by, &counts)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

async fn remote(args: &Args, r: &orgtrail_client::Remote) -> anyhow::Result<Counts> {
    use orgtrail_proto::v1 as pb;
    let mut c = crate::cmd::remote::connect(r).await?;
    let q = args.filters.to_query();
    let by = args
        .by
        .iter()
        .map(|g| {
            (match g {
                Group::Account => pb::GroupBy::Account,
                Group::EventSource => pb::GroupBy::EventSource,
                Group::EventName => pb::GroupBy::EventName,
                Group::User => pb::GroupBy::User,
                Group::ErrorCode => pb::GroupBy::ErrorCode,
                Group::Region => pb::GroupBy::Region,
            }) as i32
        })
        .collect();
    let r = c
        .query
        .stats(pb::StatsRequest {
            filters: orgtrail_client::filters(&q),
            start_ms: q.start.map(Timestamp::millis),
            end_ms: q.end.map(Timestamp::millis),
            group_by: by,
            max_groups: u32::try_from(args.top).unwrap_or(u32::MAX),
            max_scan_events: u64::try_from(args.scan_limit).unwrap_or(u64::MAX),
        })
        .await
        .map_err(|s| c.explain(s))?
        .into_inner();
    Ok(orgtrail_client::counts_from_pb(r))
}

/// Where the counts came from: which part exactly from the counters, which by a bounded scan.
fn print_basis(out: &mut impl Write, c: &Counts) -> io::Result<()> {
    if let Some(e) = c.exact {
        let from = e
            .start
            .map_or("the first event".to_string(), |t| Timestamp(t).to_string());
        let to = e
            .end
            .map_or("the last event".to_string(), |t| Timestamp(t).to_string());
        writeln!(
            out,
            "(exact: whole UTC hours from {from} to {to} counted from the counters kept at append time, no record opened)"
        )?;
    }
    if let Some(s) = &c.scan {
        writeln!(
            out,
            "(scanned: {}, so {} events were counted by decrypting them, at most {})",
            s.reason, s.events, s.limit
        )?;
    }
    Ok(())
}

/// A table of counts: one column per grouping field, then COUNT.
pub(crate) fn print_counts(out: &mut impl Write, by: &[Group], c: &Counts) -> io::Result<()> {
    let mut header: Vec<String> = by.iter().map(|g| group_name(*g).to_string()).collect();
    header.push("COUNT".into());
    let rows: Vec<Vec<String>> = c
        .groups
        .iter()
        .map(|(k, n)| {
            let mut r = k.clone();
            r.push(n.to_string());
            r
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(String::len).collect();
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(&format!("{cell:>w$}"));
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s
    };
    writeln!(out, "{}", line(&header))?;
    for r in &rows {
        writeln!(out, "{}", line(r))?;
    }
    let shown: u64 = c.groups.iter().map(|g| g.1).sum();
    if shown < c.total {
        writeln!(
            out,
            "({} events in all; {} in groups not shown)",
            c.total,
            c.total - shown
        )?;
    } else {
        writeln!(out, "({} events)", c.total)?;
    }
    print_basis(out, c)?;
    if c.limit_hit {
        let scanned = c.scan.as_ref().map_or(c.total, |s| s.events);
        writeln!(
            out,
            "(limit hit: more events match than the scan decrypts; its part covers only the newest {scanned}. Narrow the time range or filters, or raise --scan-limit.)"
        )?;
    }
    Ok(())
}
