//! `orgtrail stats`: counts of events grouped by account, eventSource, eventName, user or
//! errorCode, from a running collector or a store on disk.

use std::io::{self, Write};
use std::process::ExitCode;

use orgtrail_core::Timestamp;
use orgtrail_store::{Counts, Group};

/// Count events, grouped: which accounts, services and calls are busiest, who calls, what
/// fails. Takes the same filters and time range as `lookup`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    target: crate::cmd::remote::Target,
    /// Group by these fields, comma-separated: account, eventSource, eventName, user,
    /// errorCode.
    #[arg(long, value_delimiter = ',', default_value = "account,eventName", value_parser = parse_group)]
    by: Vec<Group>,
    /// Show at most this many groups, largest first.
    #[arg(long, default_value_t = 20)]
    top: usize,
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
        _ => {
            return Err(format!(
                "{s:?}: group by account, eventSource, eventName, user or errorCode"
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
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let counts = if args.target.is_remote() {
        crate::cmd::remote::runtime()?.block_on(remote(&args))?
    } else {
        let ledger = args.target.open_offline()?;
        let c = ledger.count(&args.filters.to_query(), &args.by, args.top)?;
        ledger.close()?;
        c
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    print_counts(&mut out, &args.by, &counts)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

async fn remote(args: &Args) -> anyhow::Result<Counts> {
    use orgtrail_proto::v1 as pb;
    let mut c = args.target.remote.connect().await?;
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
            }) as i32
        })
        .collect();
    let r = c
        .client
        .stats(pb::StatsRequest {
            filters: crate::cmd::remote::filters(&q),
            start_ms: q.start.map(Timestamp::millis),
            end_ms: q.end.map(Timestamp::millis),
            group_by: by,
            max_groups: u32::try_from(args.top).unwrap_or(u32::MAX),
        })
        .await
        .map_err(|s| c.explain(s))?
        .into_inner();
    Ok(Counts {
        groups: r.groups.into_iter().map(|g| (g.key, g.count)).collect(),
        total: r.total,
        limit_hit: r.limit_hit,
    })
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
    if c.limit_hit {
        writeln!(
            out,
            "(limit hit: more events match; these counts cover only the newest {}. Narrow the time range or filters.)",
            c.total
        )?;
    }
    Ok(())
}
