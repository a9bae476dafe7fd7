//! `orgtrail certs`: the organization CA and the certificates that carry identities.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use orgtrail_core::AccountId;
use orgtrail_crypto::certs::{self, IssueRequest, Role};

/// Create the organization CA and issue certificates. Identity lives in the certificate: its
/// role (agent, auditor, admin, server) and, for an agent, its account. No OpenSSL needed.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: CertsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum CertsCommand {
    /// Create an organization CA: DIR/ca.pem (trusted by collector and agents) and DIR/ca.key
    /// (mode 0600; keep it offline). Never overwrites an existing CA.
    Init {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The organization id written into the CA and every certificate it issues.
        #[arg(long, default_value = "o-example")]
        org: String,
        /// Validity of the CA in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Issue a certificate: writes OUT.pem and OUT.key (mode 0600). Issuing again renews.
    Issue {
        /// Directory of the CA (ca.pem, ca.key).
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// agent (ships one account's events), auditor (reads), admin, or server (the
        /// collector).
        #[arg(long, value_parser = |s: &str| s.parse::<Role>())]
        role: Role,
        /// The agent's account; for an auditor, an account it may read (repeat for several;
        /// none: every account).
        #[arg(long = "account")]
        accounts: Vec<AccountId>,
        /// A DNS name the server answers to (repeatable).
        #[arg(long)]
        dns: Vec<String>,
        /// An IP address the server answers on (repeatable).
        #[arg(long)]
        ip: Vec<IpAddr>,
        /// Common name (default: derived from role and account).
        #[arg(long)]
        name: Option<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 397)]
        days: u32,
        /// Output path without extension: writes OUT.pem and OUT.key.
        #[arg(long, value_name = "OUT")]
        out: PathBuf,
    },
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        CertsCommand::Init { out, org, days } => {
            certs::init_ca(&out, &org, days)?;
            println!(
                "created {} and {}",
                out.join("ca.pem").display(),
                out.join("ca.key").display()
            );
        }
        CertsCommand::Issue {
            ca,
            role,
            accounts,
            dns,
            ip,
            name,
            days,
            out,
        } => {
            let name = name.unwrap_or_else(|| match accounts.first() {
                Some(a) => format!("{role}-{a}"),
                None => role.to_string(),
            });
            let id = certs::issue(
                &ca,
                &IssueRequest {
                    role,
                    accounts,
                    name,
                    dns,
                    ips: ip,
                    days,
                },
                &out,
            )?;
            println!(
                "issued {} ({}{}) serial {} fingerprint sha256:{}",
                out.with_extension("pem").display(),
                id.role,
                id.accounts
                    .iter()
                    .map(|a| format!(" account {a}"))
                    .collect::<String>(),
                id.serial,
                id.fingerprint
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
