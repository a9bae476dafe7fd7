//! `orgtrail config check`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

/// Check a collector or agent configuration without starting anything: the TOML, every
/// `${VAR}` it uses, every value and the files it names. Prints every problem at once (each
/// with its line or key) and exits 1, or prints one line and exits 0 when it is good.
#[derive(Debug, clap::Args)]
pub(crate) struct CheckArgs {
    /// The configuration file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Which kind it is; by default told from its sections (`[organization]`, `data_dir`:
    /// collector; `spool_dir`, `[source]`, `[[sources]]`: agent).
    #[arg(long, value_enum)]
    kind: Option<Kind>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Kind {
    Collector,
    Agent,
}

pub(crate) fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let kind = match args.kind {
        Some(k) => k,
        None => detect(&args.file)?,
    };
    let file = args.file.display();
    match kind {
        Kind::Collector => match orgtrail_collector::CollectorConfig::load(&args.file) {
            Ok(c) => {
                let accounts = if c.organization.allow_any_account {
                    "any account".to_owned()
                } else {
                    format!("{} accounts", c.organization.accounts.len())
                };
                println!(
                    "{file}: a valid collector configuration (listen {}, data {}, {accounts})",
                    c.listen,
                    c.data_dir.display()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::FAILURE)
            }
        },
        Kind::Agent => match orgtrail_agent::AgentConfig::load(&args.file) {
            Ok(c) => {
                println!(
                    "{file}: a valid agent configuration (account {}, collector {}, {} sources)",
                    c.account
                        .map_or_else(|| "from the certificate".to_owned(), |a| a.to_string()),
                    c.collector,
                    c.sources.len()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::FAILURE)
            }
        },
    }
}

/// Tells a collector configuration from an agent's by the keys and tables it sets.
fn detect(path: &Path) -> anyhow::Result<Kind> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (mut collector, mut agent) = (false, false);
    for line in text.lines() {
        let l = line.trim_start();
        let key = l.split(['=', ' ', '\t']).next().unwrap_or_default();
        match key {
            "[organization]" | "data_dir" | "keys_dir" | "[limits]" | "[storage]" => {
                collector = true;
            }
            "spool_dir" | "collector" | "[source]" | "[[sources]]" | "[batch]" | "[retry]" => {
                agent = true;
            }
            _ => {}
        }
    }
    match (collector, agent) {
        (true, false) => Ok(Kind::Collector),
        (false, true) => Ok(Kind::Agent),
        _ => anyhow::bail!(
            "{}: cannot tell whether this is a collector or an agent configuration; give --kind collector or --kind agent",
            path.display()
        ),
    }
}
