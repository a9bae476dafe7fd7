//! `orgtrail gen-events`: realistic, seeded CloudTrail events as JSON lines.

use std::io::{self, Write};
use std::process::ExitCode;

use orgtrail_core::{AccountId, Timestamp};
use orgtrail_gen::{GenConfig, Generator};

/// Print realistic CloudTrail events as JSON lines: a weighted mix of read and write APIs across
/// many services and regions, IAM users, assumed roles and AWS services, S3 and Lambda data
/// events, and a few errors. The same seed always prints the same events.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// How many events to print (duplicates included).
    #[arg(long, default_value_t = 1000)]
    count: u64,

    /// How many accounts the events belong to (recipientAccountId), with ids drawn from the
    /// seed.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    accounts: u32,

    /// The account the events belong to (repeat for several), instead of accounts drawn from
    /// the seed: give the account of the agent that ships them, whose certificate names it.
    #[arg(long = "account", value_name = "ID", conflicts_with = "accounts")]
    account: Vec<AccountId>,

    /// Seed of the generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// Fraction of events (0 to 1) that repeat an earlier event byte for byte, as a redelivery
    /// would.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    dup_rate: f64,

    /// Time of the first event (RFC 3339). Default: 2026-11-01T00:00:00Z.
    #[arg(long, value_parser = parse_time)]
    start: Option<Timestamp>,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let r: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&r) {
        Ok(r)
    } else {
        Err(format!("{r} is not between 0 and 1"))
    }
}

fn parse_time(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse(s).map_err(|e| e.to_string())
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut cfg = GenConfig {
        count: args.count,
        accounts: args.accounts,
        seed: args.seed,
        dup_rate: args.dup_rate,
        ..GenConfig::default()
    };
    if let Some(t) = args.start {
        cfg.start_unix_secs = t.millis().div_euclid(1000);
    }
    let mut ids: Vec<String> = Vec::new();
    for a in &args.account {
        let a = a.to_string();
        if !ids.contains(&a) {
            ids.push(a);
        }
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let result = (|| -> io::Result<()> {
        for event in Generator::with_accounts(cfg, &ids) {
            out.write_all(&event)?;
            out.write_all(b"\n")?;
        }
        out.flush()
    })();
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // The reader went away (`| head`): not an error of ours.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e.into()),
    }
}
