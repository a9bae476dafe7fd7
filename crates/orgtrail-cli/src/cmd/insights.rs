//! `orgtrail insights list|follow|explain|replay`: the Insight events (`eventCategory` Insight)
//! the collector stored, as `lookup` and `lookup --follow` show events (an auditor or admin
//! certificate, or a store on disk for `list`); one of them explained
//! ([`crate::cmd::insights_explain`]); Insights found offline in stored events
//! ([`crate::cmd::insights_replay`]).

use std::process::ExitCode;

use crate::cmd::lookup;

/// Insight events: unusual rates of write calls or errors, found by the collector's
/// `[insights]` (see docs/insights.md). Takes every `lookup` option; the other filters narrow
/// which events are read (e.g. --event-name of the call an Insight is about, --since 7d).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Stored Insight events, newest first. Reads every event the filters and time range
    /// select (the store has no index on the category): narrow it with --since.
    List(Box<lookup::Args>),
    /// Print Insight events as the collector stores them (remote only).
    Follow(Box<lookup::Args>),
    /// One Insight explained: the per-minute count of its key's calls from 30 minutes before
    /// its Start to 10 after its End, as a text chart, and its attributions (top
    /// userIdentityArn, userAgent, errorCode values, averages in the insight and the baseline).
    Explain(Box<crate::cmd::insights_explain::ExplainArgs>),
    /// Offline: find the Insights of events already stored (imported, backfilled, or stored
    /// before Insights were on) and store the Insight events found in that store.
    Replay(crate::cmd::insights_replay::ReplayArgs),
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut l = match args.command {
        Command::Explain(a) => return crate::cmd::insights_explain::run(*a),
        Command::Replay(a) => return crate::cmd::insights_replay::run(a),
        Command::List(l) => *l,
        Command::Follow(mut l) => {
            l.set_follow();
            *l
        }
    };
    l.insights_only = true;
    lookup::run(l)
}
