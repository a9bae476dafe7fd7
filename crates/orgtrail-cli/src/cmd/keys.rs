//! `orgtrail keys`: master keys (envelope encryption) and the checkpoint signing key.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use orgtrail_core::Timestamp;
use orgtrail_crypto::signing::SigningKey;
use orgtrail_crypto::{Keyring, LocalKeyProvider};
use orgtrail_store::{Ledger, LedgerConfig};

/// Manage keys: the keyring of versioned master keys that wrap every data key, and the
/// Ed25519 key pair that signs checkpoints.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, clap::Subcommand)]
enum KeysCommand {
    /// Create DIR/keyring.json (master key v1, mode 0600), DIR/signing.key (0600) and
    /// DIR/signing.pub. Refuses to overwrite existing keys.
    Init {
        /// Directory to create the keys in (created with mode 0700 if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Do nothing when DIR already holds all three files (an init step run on every
        /// start, as in deploy/compose). Some but not all of them is still an error.
        #[arg(long)]
        if_missing: bool,
    },
    /// Add a new master key version; new segments are sealed under it, old ones stay readable.
    Rotate {
        /// Directory holding keyring.json.
        #[arg(long, value_name = "DIR")]
        keys: PathBuf,
    },
    /// Rewrap every data key of a store under the newest master key version, without
    /// touching any ciphertext. Afterwards older versions can be retired.
    Rewrap {
        #[arg(long, value_name = "DIR")]
        keys: PathBuf,
        /// The store's data directory.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
    /// Remove an old master key version from the keyring. With --data-dir, refuses while that
    /// store still has keys wrapped under the version.
    Retire {
        #[arg(long, value_name = "DIR")]
        keys: PathBuf,
        /// The master key version to remove, e.g. 1.
        #[arg(long, value_name = "N")]
        key_version: u32,
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

fn now() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0));
    Timestamp(ms - ms % 1000).to_string()
}

fn keyring_path(dir: &Path) -> PathBuf {
    dir.join("keyring.json")
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        KeysCommand::Init { out, if_missing } => {
            let files = [
                keyring_path(&out),
                out.join("signing.key"),
                out.join("signing.pub"),
            ];
            if if_missing && super::all_exist(&files)? {
                println!("kept the existing keys in {}", out.display());
                return Ok(ExitCode::SUCCESS);
            }
            if !out.exists() {
                create_private_dir(&out)?;
            }
            let kr = Keyring::generate(&now())?;
            kr.save_new(&keyring_path(&out))?;
            SigningKey::generate_files(&out)?;
            println!("created {}", keyring_path(&out).display());
            println!("created {}", out.join("signing.key").display());
            println!("created {}", out.join("signing.pub").display());
            println!("master key v1 is current; keep this directory secret and backed up");
        }
        KeysCommand::Rotate { keys } => {
            let path = keyring_path(&keys);
            let mut kr = Keyring::load(&path)?;
            let v = kr.rotate(&now())?;
            kr.save(&path)?;
            println!(
                "master key v{v} is now current; new segments use it. Run `orgtrail keys rewrap` \
                 to move existing data keys to it."
            );
        }
        KeysCommand::Rewrap { keys, data_dir } => {
            let ledger = open(&keys, &data_dir)?;
            let n = ledger.rewrap()?;
            let versions = ledger.key_versions()?;
            ledger.close()?;
            println!(
                "rewrapped {n} keys; the store's keys are now under {}",
                describe(&versions)
            );
        }
        KeysCommand::Retire {
            keys,
            key_version: version,
            data_dir,
        } => {
            if let Some(d) = data_dir {
                let ledger = open(&keys, &d)?;
                let versions = ledger.key_versions()?;
                ledger.close()?;
                if let Some((_, n)) = versions.iter().find(|(v, _)| *v == version) {
                    bail!(
                        "{} still has {n} keys wrapped under master key v{version}; run `orgtrail keys rewrap` first",
                        d.display()
                    );
                }
            }
            let path = keyring_path(&keys);
            let mut kr = Keyring::load(&path)?;
            kr.retire(version)?;
            kr.save(&path)?;
            println!("master key v{version} removed from {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(versions: &[(u32, usize)]) -> String {
    let v: Vec<String> = versions
        .iter()
        .map(|(v, n)| format!("v{v} ({n})"))
        .collect();
    if v.is_empty() {
        "no master key yet (empty store)".into()
    } else {
        v.join(", ")
    }
}

pub(crate) fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Opens a store (creating it if new) with the keyring in `keys`; when `keys` holds
/// `signing.key`, the ledger signs checkpoints with it.
pub(crate) fn open(keys: &Path, data_dir: &Path) -> anyhow::Result<Ledger> {
    open_tuned(keys, data_dir, |_| {})
}

/// [`open`], with `tune` adjusting the ledger's configuration first (tests size the index
/// runs and groups small).
pub(crate) fn open_tuned(
    keys: &Path,
    data_dir: &Path,
    tune: impl FnOnce(&mut LedgerConfig),
) -> anyhow::Result<Ledger> {
    let provider = LocalKeyProvider::load(keys)?;
    let signing = keys.join("signing.key");
    let signer = if signing.exists() {
        Some(Arc::new(SigningKey::load(&signing)?))
    } else {
        None
    };
    let mut cfg = LedgerConfig {
        signer,
        ..LedgerConfig::default()
    };
    tune(&mut cfg);
    Ledger::open(data_dir, Arc::new(provider), cfg)
        .with_context(|| format!("opening the store at {}", data_dir.display()))
}

/// Opens an existing store for reading only (nothing is written, not even a checkpoint).
pub(crate) fn open_read_only(keys: &Path, data_dir: &Path) -> anyhow::Result<Ledger> {
    let provider = LocalKeyProvider::load(keys)?;
    let cfg = LedgerConfig {
        read_only: true,
        ..LedgerConfig::default()
    };
    Ledger::open(data_dir, Arc::new(provider), cfg)
        .with_context(|| format!("opening the store at {}", data_dir.display()))
}
