//! `orgtrail insights list|follow`: the Insight events (`eventCategory` Insight) the collector
//! stored, as `lookup` and `lookup --follow` show events (an auditor or admin certificate, or
//! a store on disk for `list`).

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
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut l = match args.command {
        Command::List(l) => *l,
        Command::Follow(mut l) => {
            l.set_follow();
            *l
        }
    };
    l.insights_only = true;
    lookup::run(l)
}
