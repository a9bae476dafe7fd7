//! `orgtrail insights list|follow|explain|replay`: the Insight events (`eventCategory` Insight)
//! the collector stored, as `lookup` and `lookup --follow` show events (an auditor or admin
//! certificate, or a store on disk for `list`); one of them explained
//! ([`crate::cmd::insights_explain`]); Insights found offline in stored events
//! ([`crate::cmd::insights_replay`]).

use std::process::ExitCode;

use crate::cmd::lookup;

/// Insight events: unusual rates of write calls or errors, found by the collector's
/// `[insights]` (see docs/insights.md). Takes every `lookup` option: the other filters narrow
/// the answer (e.g. --event-name of the call an Insight is about, --insight-type, --since 7d).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Stored Insight events, newest first (a lookup by eventCategory Insight, through the
    /// store's index). On a store written before eventCategory was indexed, only the Insight
    /// events stored after the upgrade are listed, and a note on stderr says from which seq.
    List(Box<lookup::Args>),
    /// Print Insight events as the collector stores them (remote only).
    Follow(Box<lookup::Args>),
    /// One Insight explained: the per-minute count of its key's calls from 30 minutes before
    /// its Start to 10 after its End, as a text chart, and its attributions (top
    /// userIdentityArn, userAgent, errorCode values, averages in the insight and the baseline).
    Explain(Box<crate::cmd::insights_explain::ExplainArgs>),
    /// Find the Insights of events already stored (imported, backfilled, or stored before
    /// Insights were on) and store the Insight events found: against a running collector (an
    /// admin certificate), or offline in a store on disk (--data-dir --keys).
    Replay(Box<crate::cmd::insights_replay::ReplayArgs>),
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut l = match args.command {
        Command::Explain(a) => return crate::cmd::insights_explain::run(*a),
        Command::Replay(a) => return crate::cmd::insights_replay::run(*a),
        Command::List(l) => *l,
        Command::Follow(mut l) => {
            l.set_follow();
            *l
        }
    };
    l.insights_only();
    lookup::run(l)
}
