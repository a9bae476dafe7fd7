//! `orgtrail alerts ...`: the alerts a running collector recorded, read remotely with an
//! auditor or admin certificate (the work is in `orgtrail_client::alerts`).
//!
//! A subcommand is one line in the `subcommands!` list below: `Name(path::to::Args)`, its
//! `Args` a `clap::Args` with `fn run(self) -> anyhow::Result<ExitCode>`.

use std::io::{self, Write};
use std::process::ExitCode;

use orgtrail_client::alerts::{Alert, AlertFilter, FollowError, FollowEvent};
use orgtrail_core::{AccountId, Timestamp};

/// The alerts of the collector's detection rules: list them, or follow them live.
///
/// Reads a running collector with an auditor or admin certificate: the one of your profile
/// (`orgtrail profile add`), or --collector URL --cert F --key F --ca F. The collector keeps
/// every alert it recorded, delivered or not; each is shown as its sinks received it, under
/// the same alert id.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    what: What,
}

/// Declares the subcommands and runs the one given.
macro_rules! subcommands {
    ($($name:ident($args:ty),)*) => {
        #[derive(Debug, clap::Subcommand)]
        enum What {
            $($name($args),)*
        }

        pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
            match args.what {
                $(What::$name(a) => a.run(),)*
            }
        }
    };
}

subcommands! {
    List(ListArgs),
    Follow(FollowArgs),
    DeadLetters(super::alerts_dead_letters::Args),
}

/// Which alerts, for `list` and `follow`.
#[derive(Debug, Clone, clap::Args)]
struct Filters {
    /// Only this rule's alerts (repeat for several).
    #[arg(long = "rule", value_name = "ID")]
    rules: Vec<String>,
    /// Only alerts on this account's events (repeat for several).
    #[arg(long = "account", value_name = "ACCOUNT")]
    accounts: Vec<AccountId>,
    /// Only alerts of rules with this severity (repeat for several). An alert of a rule
    /// removed since it fired has no severity.
    #[arg(long = "severity", value_name = "LEVEL",
          value_parser = ["info", "low", "medium", "high", "critical"])]
    severities: Vec<String>,
}

/// List recorded alerts, newest first.
///
/// Every alert the collector recorded is kept (delivered or not); --since and --until choose
/// by when it was recorded.
#[derive(Debug, clap::Args)]
struct ListArgs {
    #[command(flatten)]
    remote: crate::cmd::remote::Remote,
    #[command(flatten)]
    filters: Filters,
    /// Alerts recorded at or after this time: RFC 3339, or a duration back from now (90s,
    /// 15m, 2h, 7d).
    #[arg(long, value_name = "WHEN", value_parser = parse_when)]
    since: Option<Timestamp>,
    /// Alerts recorded at or before this time: RFC 3339, or a duration back from now.
    #[arg(long, value_name = "WHEN", value_parser = parse_when)]
    until: Option<Timestamp>,
    /// Most alerts to print.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// table (one row per alert), json (an array of the alerts as sinks received them), or
    /// jsonl (each alert as sinks received it, one per line).
    #[arg(long, default_value = "table", value_parser = ["table", "json", "jsonl"])]
    output: String,
}

/// Follow alerts as the collector records them, until interrupted.
///
/// When the collector goes away (it stopped, restarted, the network broke), reconnects with
/// backoff and resumes after the last alert seen: nothing is missed or shown twice. Gives up
/// with status 1 after 10 failed attempts in a row.
#[derive(Debug, clap::Args)]
struct FollowArgs {
    #[command(flatten)]
    remote: crate::cmd::remote::Remote,
    #[command(flatten)]
    filters: Filters,
    /// table (one row per alert) or jsonl (each alert as sinks received it, one per line).
    #[arg(long, default_value = "table", value_parser = ["table", "jsonl"])]
    output: String,
}

/// An RFC 3339 time, or a duration back from now.
fn parse_when(s: &str) -> Result<Timestamp, String> {
    if s.starts_with(|c: char| c.is_ascii_digit())
        && let Ok(ms) = crate::cmd::lookup::parse_duration_ms(s)
    {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |x| i64::try_from(x.as_millis()).unwrap_or(0));
        return Ok(Timestamp(now - ms));
    }
    Timestamp::parse(s).map_err(|e| {
        format!("{s:?} is neither an RFC 3339 time ({e}) nor a duration such as 90s, 15m, 2h or 7d")
    })
}

impl Filters {
    fn to_filter(&self) -> AlertFilter {
        AlertFilter {
            rules: self.rules.clone(),
            accounts: self.accounts.clone(),
            severities: self.severities.clone(),
            ..AlertFilter::default()
        }
    }
}

impl ListArgs {
    fn run(self) -> anyhow::Result<ExitCode> {
        let r = self.remote.require(None)?;
        let filter = AlertFilter {
            since: self.since,
            until: self.until,
            ..self.filters.to_filter()
        };
        let alerts = crate::cmd::remote::runtime()?.block_on(async {
            let c = crate::cmd::remote::connect(&r).await?;
            anyhow::Ok(c.list_alerts(&filter, self.limit).await?)
        })?;
        let stdout = io::stdout();
        let mut out = io::BufWriter::new(stdout.lock());
        match self.output.as_str() {
            "jsonl" => {
                for a in &alerts {
                    out.write_all(&a.payload)?;
                    out.write_all(b"\n")?;
                }
            }
            "json" => {
                out.write_all(b"[")?;
                for (i, a) in alerts.iter().enumerate() {
                    if i > 0 {
                        out.write_all(b",\n")?;
                    }
                    out.write_all(&a.payload)?;
                }
                out.write_all(b"]\n")?;
            }
            _ => print_table(&mut out, &alerts)?,
        }
        out.flush()?;
        Ok(ExitCode::SUCCESS)
    }
}

impl FollowArgs {
    fn run(self) -> anyhow::Result<ExitCode> {
        let r = self.remote.require(None)?;
        let filter = self.filters.to_filter();
        let table = self.output == "table";
        let result = crate::cmd::remote::runtime()?.block_on(async {
            let c = crate::cmd::remote::connect(&r).await?;
            let ended = orgtrail_client::alerts::follow_alerts(&r, c, &filter, |e| match e {
                FollowEvent::Following { url, resumed } => {
                    if resumed {
                        eprintln!("reconnected to {url}; resuming after the last alert seen");
                    } else {
                        eprintln!("following alerts as {url} records them (Ctrl-C to stop)");
                    }
                    Ok(())
                }
                FollowEvent::Alert(a) => {
                    let mut out = io::stdout().lock();
                    if table {
                        writeln!(out, "{}", row(&a).join("  "))?;
                    } else {
                        out.write_all(&a.payload)?;
                        out.write_all(b"\n")?;
                    }
                    out.flush()
                }
                FollowEvent::Lost {
                    url,
                    why,
                    wait,
                    attempt,
                    of,
                } => {
                    eprintln!(
                        "lost {url} ({why}); reconnecting in {} ms (attempt {attempt} of {of})",
                        wait.as_millis()
                    );
                    Ok(())
                }
            })
            .await;
            anyhow::Ok(ended)
        })?;
        match result {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(e @ FollowError::GaveUp { .. }) => {
                eprintln!("orgtrail: error: {e}");
                Ok(ExitCode::from(1))
            }
            Err(FollowError::Output(e)) => Err(e.into()),
            Err(FollowError::Refused(e)) => Err(e.into()),
        }
    }
}

const HEADER: [&str; 6] = [
    "RECORDED", "SEVERITY", "RULE", "ACCOUNT", "EVENT", "ALERT ID",
];

fn row(a: &Alert) -> [String; 6] {
    let s = a.summary();
    [
        a.recorded.to_string(),
        s.severity,
        a.rule_id.clone(),
        a.account.clone(),
        s.event,
        a.id.clone(),
    ]
}

fn print_table(out: &mut impl Write, alerts: &[Alert]) -> io::Result<()> {
    let rows: Vec<[String; 6]> = alerts.iter().map(row).collect();
    super::table::write(out, &HEADER, &rows)?;
    writeln!(out, "({} alerts)", alerts.len())
}
