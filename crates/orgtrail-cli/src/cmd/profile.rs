//! `orgtrail profile`: the reader's named profiles (the file is `orgtrail-client`'s).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use orgtrail_client::profile::Profile;

/// Named profiles: where your collector is and which certificate to use, so that
/// `orgtrail lookup --event-name StartInstances` needs no TLS flags.
///
/// The profiles are kept in $ORGTRAIL_CONFIG, else $XDG_CONFIG_HOME/orgtrail/config.toml,
/// else ~/.config/orgtrail/config.toml (TOML: `default = "NAME"` and `[profiles.NAME]` tables
/// with collector, ca, cert, key and server_name; relative paths are read from the file's
/// directory). Every command that asks a collector (lookup, lookup --follow, stats,
/// checkpoint, proof, verify, verify-consistency) takes each setting from its flag, else from
/// the environment (ORGTRAIL_COLLECTOR, ORGTRAIL_CA, ORGTRAIL_CERT, ORGTRAIL_KEY,
/// ORGTRAIL_SERVER_NAME), else from the profile named by --profile, ORGTRAIL_PROFILE or the
/// file's default. A profile that is named but missing, or a file it names that does not
/// exist, is an error: nothing falls back to another profile.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    Add(AddArgs),
    /// List the profiles: the default (*), name, collector, and the identity the certificate
    /// carries (role, name, accounts).
    List,
    Remove(RemoveArgs),
}

/// Add a profile, or replace the one of that name. The certificate is checked first (key,
/// CA, validity, client use); paths are stored absolute. The first profile becomes the
/// default. The file is created readable by its owner only.
#[derive(Debug, clap::Args)]
struct AddArgs {
    /// The profile's name: letters, digits, '-', '_' and '.'.
    name: String,
    /// The collector: https://HOST:PORT.
    #[arg(long, value_name = "URL")]
    collector: String,
    /// The organization CA that signed the collector's certificate, PEM.
    #[arg(long, value_name = "FILE")]
    ca: PathBuf,
    /// The reader's certificate (role auditor or admin), PEM.
    #[arg(long, value_name = "FILE")]
    cert: PathBuf,
    /// The certificate's private key, PEM.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The name in the collector's certificate, when it differs from the URL's host.
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,
    /// Make it the default profile.
    #[arg(long)]
    default: bool,
}

/// Remove a profile (the certificate files are left alone).
#[derive(Debug, clap::Args)]
struct RemoveArgs {
    name: String,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.what {
        What::Add(a) => add(a),
        What::List => list(),
        What::Remove(a) => remove(a),
    }
}

fn add(a: AddArgs) -> anyhow::Result<ExitCode> {
    if !a.collector.starts_with("https://") {
        bail!(
            "{:?}: the collector is reached over TLS only: use https://HOST:PORT",
            a.collector
        );
    }
    let own = orgtrail_crypto::tls::load_own(
        &a.cert,
        &a.key,
        &a.ca,
        orgtrail_crypto::tls::Purpose::Client,
    )
    .context("checking the profile's certificate")?;
    let mut profiles = crate::cmd::remote::load_profiles()?;
    profiles.add(
        &a.name,
        Profile {
            collector: Some(a.collector),
            ca: Some(a.ca),
            cert: Some(a.cert),
            key: Some(a.key),
            server_name: a.server_name,
        },
        a.default,
    )?;
    profiles.save()?;
    let is_default = profiles.file.default.as_deref() == Some(a.name.as_str());
    println!(
        "profile {} ({}) saved in {}{}",
        a.name,
        own.identity
            .as_ref()
            .map_or_else(|| "no orgtrail identity".into(), orgtrail_client::describe),
        profiles.path.display(),
        if is_default {
            "; it is the default: `orgtrail lookup ...` uses it".to_string()
        } else {
            format!(
                "; use it with --profile {0} or ORGTRAIL_PROFILE={0}",
                a.name
            )
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// The identity a certificate file carries, or why it cannot be read.
fn identity(cert: Option<&PathBuf>) -> String {
    let Some(cert) = cert else {
        return "-".into();
    };
    let read = std::fs::read_to_string(cert)
        .map_err(|e| e.to_string())
        .and_then(|pem| orgtrail_crypto::certs::pem_to_der(&pem).map_err(|e| e.to_string()))
        .and_then(|der| orgtrail_crypto::certs::identity_from_der(&der).map_err(|e| e.to_string()));
    match read {
        Ok(id) => orgtrail_client::describe(&id),
        Err(e) => format!("(cannot read {}: {e})", cert.display()),
    }
}

fn list() -> anyhow::Result<ExitCode> {
    let profiles = crate::cmd::remote::load_profiles()?;
    if profiles.file.profiles.is_empty() {
        println!(
            "no profiles in {}; add one with `orgtrail profile add NAME --collector URL --ca F --cert F --key F`",
            profiles.path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 4]> = profiles
        .file
        .profiles
        .iter()
        .map(|(name, p)| {
            [
                if profiles.file.default.as_deref() == Some(name.as_str()) {
                    "*".into()
                } else {
                    String::new()
                },
                name.clone(),
                p.collector.clone().unwrap_or_else(|| "-".into()),
                identity(p.cert.as_ref()),
            ]
        })
        .collect();
    let header = [
        "DEFAULT".to_string(),
        "NAME".into(),
        "COLLECTOR".into(),
        "CERTIFICATE".into(),
    ];
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].len())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2) = (width(0), width(1), width(2));
    for r in std::iter::once(&header).chain(&rows) {
        println!("{:<w0$}  {:<w1$}  {:<w2$}  {}", r[0], r[1], r[2], r[3]);
    }
    println!("({})", profiles.path.display());
    Ok(ExitCode::SUCCESS)
}

fn remove(a: RemoveArgs) -> anyhow::Result<ExitCode> {
    let mut profiles = crate::cmd::remote::load_profiles()?;
    if !profiles.remove(&a.name) {
        bail!("no profile {:?} in {}", a.name, profiles.path.display());
    }
    profiles.save()?;
    println!(
        "profile {} removed from {}",
        a.name,
        profiles.path.display()
    );
    Ok(ExitCode::SUCCESS)
}
