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
    /// Create what a small deployment needs in one directory, keeping whatever exists already
    /// (so it can run on every start, as deploy/compose's init service does): the CA in
    /// DIR/ca/, the collector's certificate DIR/collector.pem (with --server), one
    /// DIR/agent-ACCOUNT.pem per --agent, and DIR/auditor.pem (with --auditor), each with its
    /// .key (mode 0600). A file that is there without its pair is an error, never overwritten.
    Bootstrap {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The organization id written into the CA and every certificate it issues.
        #[arg(long, default_value = "o-example")]
        org: String,
        /// A DNS name the collector answers to (repeatable): issues DIR/collector.pem.
        #[arg(long = "server", value_name = "DNS")]
        servers: Vec<String>,
        /// An agent's account (repeatable): issues DIR/agent-ACCOUNT.pem.
        #[arg(long = "agent", value_name = "ACCOUNT")]
        agents: Vec<AccountId>,
        /// Issue DIR/auditor.pem, an auditor of every account.
        #[arg(long)]
        auditor: bool,
        /// Validity of the certificates in days (the CA: 3650).
        #[arg(long, default_value_t = 397)]
        days: u32,
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
        CertsCommand::Bootstrap {
            dir,
            org,
            servers,
            agents,
            auditor,
            days,
        } => bootstrap(&dir, &org, servers, &agents, auditor, days)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn bootstrap(
    dir: &std::path::Path,
    org: &str,
    servers: Vec<String>,
    agents: &[AccountId],
    auditor: bool,
    days: u32,
) -> anyhow::Result<()> {
    let ca = dir.join("ca");
    if super::all_exist(&[ca.join("ca.pem"), ca.join("ca.key")])? {
        println!("kept {}", ca.join("ca.pem").display());
    } else {
        certs::init_ca(&ca, org, 3650)?;
        println!("created {}", ca.join("ca.pem").display());
    }
    let mut wanted = Vec::new();
    if !servers.is_empty() {
        wanted.push((Role::Server, Vec::new(), servers, "collector".to_string()));
    }
    for a in agents {
        wanted.push((Role::Agent, vec![*a], Vec::new(), format!("agent-{a}")));
    }
    if auditor {
        wanted.push((Role::Auditor, Vec::new(), Vec::new(), "auditor".to_string()));
    }
    for (role, accounts, dns, file) in wanted {
        let out = dir.join(&file);
        let (pem, key) = (out.with_extension("pem"), out.with_extension("key"));
        if super::all_exist(&[pem.clone(), key])? {
            println!("kept {}", pem.display());
            continue;
        }
        let req = IssueRequest {
            role,
            accounts,
            name: file,
            dns,
            ips: Vec::new(),
            days,
        };
        certs::issue(&ca, &req, &out)?;
        println!("issued {}", pem.display());
    }
    Ok(())
}
