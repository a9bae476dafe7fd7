//! The flags of a command that asks a running collector, and where they, the environment and
//! the profile file say to connect (the client itself is the `orgtrail-client` library).

use std::path::PathBuf;

use anyhow::{Context, bail};
use orgtrail_client::profile::{self, Layer, Profiles};

pub(crate) use orgtrail_client::Client;

/// Where the collector is and who is asking. Each setting comes from the flag, else its
/// environment variable, else the profile (see `orgtrail profile --help`).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Remote {
    /// The profile to use, from the profile file [env: ORGTRAIL_PROFILE; default: the file's
    /// default profile].
    #[arg(long, value_name = "NAME")]
    pub(crate) profile: Option<String>,
    /// Ask a running collector: https://HOST:PORT [env: ORGTRAIL_COLLECTOR; default: the
    /// profile's].
    #[arg(long, value_name = "URL")]
    pub(crate) collector: Option<String>,
    /// This reader's certificate (role auditor or admin), PEM [env: ORGTRAIL_CERT].
    #[arg(long, value_name = "FILE")]
    pub(crate) cert: Option<PathBuf>,
    /// The certificate's private key, PEM [env: ORGTRAIL_KEY].
    #[arg(long, value_name = "FILE")]
    pub(crate) key: Option<PathBuf>,
    /// The organization CA that signed the collector's certificate, PEM [env: ORGTRAIL_CA].
    #[arg(long, value_name = "FILE")]
    pub(crate) ca: Option<PathBuf>,
    /// The name in the collector's certificate, when it differs from the URL's host
    /// [env: ORGTRAIL_SERVER_NAME].
    #[arg(long, value_name = "NAME")]
    pub(crate) server_name: Option<String>,
}

/// The profile file, as the environment says where it is.
pub(crate) fn load_profiles() -> anyhow::Result<Profiles> {
    let path = profile::config_path(&profile::process_env)?;
    Ok(Profiles::load(&path)?)
}

impl Remote {
    /// The collector to ask, from the flags, the environment and the profile file; `None`
    /// when none of them names one.
    pub(crate) fn resolve(&self) -> anyhow::Result<Option<orgtrail_client::Remote>> {
        let flags = Layer {
            profile: self.profile.clone(),
            collector: self.collector.clone(),
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            server_name: self.server_name.clone(),
        };
        let env = Layer::from_env(&profile::process_env);
        // Flags and environment that say everything, and name no profile, need no file (a
        // script's command line works whatever the user's profile file holds).
        let either = |a: bool, b: bool| a || b;
        let complete = flags.profile.is_none()
            && env.profile.is_none()
            && either(flags.collector.is_some(), env.collector.is_some())
            && either(flags.ca.is_some(), env.ca.is_some())
            && either(flags.cert.is_some(), env.cert.is_some())
            && either(flags.key.is_some(), env.key.is_some());
        let profiles = if complete {
            Profiles {
                path: profile::config_path(&profile::process_env).unwrap_or_default(),
                exists: false,
                file: profile::ConfigFile::default(),
            }
        } else {
            load_profiles()?
        };
        Ok(profile::resolve(&flags, &env, &profiles)?.map(|r| r.remote))
    }

    /// [`Remote::resolve`], or an error saying how to name a collector. `offline` is how the
    /// command reads a store on disk instead, if it can.
    pub(crate) fn require(&self, offline: Option<&str>) -> anyhow::Result<orgtrail_client::Remote> {
        if let Some(r) = self.resolve()? {
            return Ok(r);
        }
        let path = profile::config_path(&profile::process_env)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "~/.config/orgtrail/config.toml".into());
        bail!(
            "no collector to ask{}: give --collector URL --ca F --cert F --key F{}, or set up a profile once with `orgtrail profile add NAME --collector URL --ca F --cert F --key F` (kept in {path}; ORGTRAIL_PROFILE or --profile chooses another)",
            if offline.is_some() {
                " and no store to open"
            } else {
                ""
            },
            offline.map(|o| format!(", or {o}")).unwrap_or_default()
        )
    }
}

/// How to read a store on disk, for [`Remote::require`].
pub(crate) const OFFLINE: &str = "--data-dir DIR --keys DIR for a store on disk";

/// Where a reading command looks: a running collector, or a store on disk.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Target {
    /// The store's data directory (offline; the collector must not be running on it). With
    /// it, no profile is used.
    #[arg(
        long,
        value_name = "DIR",
        requires = "keys",
        conflicts_with = "collector"
    )]
    pub(crate) data_dir: Option<PathBuf>,
    /// Directory holding keyring.json (offline).
    #[arg(long, value_name = "DIR", requires = "data_dir")]
    pub(crate) keys: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) remote: Remote,
}

/// Where a command reads, once flags, environment and profiles are resolved.
pub(crate) enum Where {
    /// The store named by --data-dir and --keys.
    Offline,
    /// A running collector.
    Remote(orgtrail_client::Remote),
}

impl Target {
    /// A store on disk when --data-dir is given; else the collector the flags, environment or
    /// profile name; else an error saying how to name one.
    pub(crate) fn resolve(&self) -> anyhow::Result<Where> {
        if self.data_dir.is_some() {
            return Ok(Where::Offline);
        }
        Ok(Where::Remote(self.remote.require(Some(OFFLINE))?))
    }

    /// The store on disk, opened read-only.
    pub(crate) fn open_offline(&self) -> anyhow::Result<orgtrail_store::Ledger> {
        let (Some(keys), Some(data_dir)) = (&self.keys, &self.data_dir) else {
            bail!("a store on disk needs --data-dir DIR --keys DIR");
        };
        crate::cmd::keys::open_read_only(keys, data_dir)
    }
}

/// Connects to the collector (the reader's certificate checked first).
pub(crate) async fn connect(r: &orgtrail_client::Remote) -> anyhow::Result<Client> {
    Ok(Client::connect(r).await?)
}

/// A small runtime for a command that talks to a collector.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}
