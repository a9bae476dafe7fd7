//! Tamper evidence: `orgtrail checkpoint`, `verify`, `proof`, `verify-proof`,
//! `verify-consistency`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use orgtrail_core::{AccountId, CloudTrailEvent, Timestamp};
use orgtrail_crypto::LocalKeyProvider;
use orgtrail_crypto::checkpoint::Checkpoint;
use orgtrail_crypto::hash::sha256;
use orgtrail_crypto::merkle::{Hash, verify_consistency, verify_inclusion};
use orgtrail_crypto::signing::VerifyingKey;
use orgtrail_store::{SavedCheckpoint, event_leaf, verify_full, verify_public};
use serde_json::{Value, json};

/// Print the latest signed checkpoint of a store as JSON: (tree size, root hash, time), signed
/// with the store's signing key. Keep such files outside the system: `orgtrail verify
/// --checkpoint FILE` later proves the store still holds exactly what the checkpoint covered.
#[derive(Debug, clap::Args)]
pub(crate) struct CheckpointArgs {
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Directory holding keyring.json (and signing.key, for --new).
    #[arg(long, value_name = "DIR")]
    keys: PathBuf,
    /// Sign a new checkpoint of everything stored now, if anything is new since the last one.
    #[arg(long)]
    new: bool,
}

/// Verify a store: recompute every event's leaf from its decrypted bytes and the whole Merkle
/// tree, check every stored checkpoint (signature and root), that each saved --checkpoint file
/// is consistent with the store (catches a store rolled back or forked since), and that the
/// indexes agree with the records. Prints `verified events=N checkpoints=M` and exits 0, or
/// names every problem and exits 1.
///
/// With --public-key instead of --keys, an auditor without the master key checks the tree
/// from the stored leaf hashes and the checkpoints; the output says what could not be checked.
#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Directory holding keyring.json and signing.pub (full verification).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "public_key",
        conflicts_with = "public_key"
    )]
    keys: Option<PathBuf>,
    /// signing.pub alone (verification without the master key).
    #[arg(long, value_name = "FILE")]
    public_key: Option<PathBuf>,
    /// Checkpoint files saved earlier (`orgtrail checkpoint` output).
    #[arg(long = "checkpoint", value_name = "FILE")]
    checkpoints: Vec<PathBuf>,
}

/// Print a self-contained JSON proof that an event is in the log: its bytes, leaf index,
/// tree size, audit path and the signed checkpoint. Anyone can check it with
/// `orgtrail verify-proof FILE --public-key signing.pub`, without access to the store.
#[derive(Debug, clap::Args)]
pub(crate) struct ProofArgs {
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    #[arg(long, value_name = "DIR")]
    keys: PathBuf,
    #[arg(long)]
    account: AccountId,
    #[arg(long)]
    event_id: String,
    /// Write the proof here instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Check an inclusion proof offline: exit 0 when the event is in the log signed by the key.
#[derive(Debug, clap::Args)]
pub(crate) struct VerifyProofArgs {
    /// The proof (`orgtrail proof` output).
    #[arg(value_name = "FILE")]
    proof: PathBuf,
    #[arg(long, value_name = "FILE")]
    public_key: PathBuf,
}

/// Prove that a newer checkpoint extends an older one (nothing before the older one was
/// changed, removed or reordered). With --data-dir and --keys, the proof is made from the
/// store (and written with --out, to be checked elsewhere); with --proof and --public-key, a
/// saved proof is checked offline.
#[derive(Debug, clap::Args)]
pub(crate) struct VerifyConsistencyArgs {
    /// Older and newer checkpoint files (`orgtrail checkpoint` output).
    #[arg(
        value_name = "CHECKPOINT",
        num_args = 2,
        required_unless_present = "proof"
    )]
    checkpoints: Vec<PathBuf>,
    #[arg(long, value_name = "DIR", requires = "keys")]
    data_dir: Option<PathBuf>,
    #[arg(long, value_name = "DIR")]
    keys: Option<PathBuf>,
    /// Write the consistency proof here.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// A saved consistency proof to check offline.
    #[arg(long, value_name = "FILE", requires = "public_key")]
    proof: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    public_key: Option<PathBuf>,
}

fn checkpoint_json(note: &str) -> anyhow::Result<Value> {
    let cp = Checkpoint::parse_unverified(note)?;
    Ok(json!({
        "origin": cp.origin,
        "tree_size": cp.size,
        "root_hash": B64.encode(cp.root),
        "time": Timestamp(cp.time_ms).to_string(),
        "note": note,
    }))
}

/// Reads a checkpoint file: `orgtrail checkpoint` JSON, or a bare signed note.
fn read_note(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    match serde_json::from_str::<Value>(&text) {
        Ok(v) => v["note"].as_str().map(str::to_owned).ok_or_else(|| {
            anyhow!(
                "{} has no \"note\": not an orgtrail checkpoint",
                path.display()
            )
        }),
        Err(_) => Ok(text),
    }
}

fn write_out(out: Option<&Path>, v: &Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(v)? + "\n";
    match out {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display())),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

pub(crate) fn checkpoint(args: CheckpointArgs) -> anyhow::Result<ExitCode> {
    let latest = if args.new {
        let ledger = crate::cmd::keys::open(&args.keys, &args.data_dir)?;
        let l = ledger.checkpoint_now_blocking()?;
        ledger.close()?;
        l
    } else {
        crate::cmd::keys::open_read_only(&args.keys, &args.data_dir)?.latest_checkpoint()?
    };
    let Some((_, note)) = latest else {
        bail!(
            "{} has no checkpoint yet (an empty store, or one written without a signing key)",
            args.data_dir.display()
        );
    };
    write_out(None, &checkpoint_json(&note)?)?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let mut saved = Vec::new();
    for p in &args.checkpoints {
        saved.push(SavedCheckpoint {
            name: p.display().to_string(),
            note: read_note(p)?,
        });
    }
    let report = match (&args.keys, &args.public_key) {
        (Some(keys), _) => {
            let vk = VerifyingKey::load(&keys.join("signing.pub"))?;
            let provider = Arc::new(LocalKeyProvider::load(keys)?);
            verify_full(&args.data_dir, provider, &vk, &saved)
        }
        (None, Some(pk)) => verify_public(&args.data_dir, &VerifyingKey::load(pk)?, &saved),
        (None, None) => bail!("give --keys DIR or --public-key FILE"),
    };
    // A store that cannot be opened (in use by a running collector, missing) is refused
    // before anything is claimed as checked.
    if let Some(why) = &report.not_opened {
        eprintln!("orgtrail: verify: {why}; nothing was checked");
        return Ok(ExitCode::from(1));
    }
    for c in &report.checked {
        println!("checked: {c}");
    }
    for c in &report.not_checked {
        println!("not checked: {c}");
    }
    if report.ok() {
        println!(
            "verified events={} checkpoints={} saved-checkpoints={}",
            report.events, report.checkpoints, report.saved_checkpoints
        );
        Ok(ExitCode::SUCCESS)
    } else {
        for p in &report.problems {
            println!("FAILED: {p}");
        }
        println!("verification failed: {} problems", report.problems.len());
        Ok(ExitCode::from(1))
    }
}

pub(crate) fn proof(args: ProofArgs) -> anyhow::Result<ExitCode> {
    let ledger = crate::cmd::keys::open(&args.keys, &args.data_dir)?;
    let event = ledger
        .get(&args.account, &args.event_id)?
        .ok_or_else(|| anyhow!("no event {} in account {}", args.event_id, args.account))?;
    let covering = ledger
        .checkpoints()?
        .into_iter()
        .find(|(size, _)| *size >= event.seq);
    let (size, note) = match covering {
        Some(c) => c,
        None => ledger
            .checkpoint_now_blocking()?
            .ok_or_else(|| anyhow!("no checkpoint covers the event"))?,
    };
    let path = ledger.inclusion_proof(event.seq, size)?;
    ledger.close()?;
    let v = json!({
        "format": "orgtrail-inclusion-proof-v1",
        "account": event.account.to_string(),
        "event_id": args.event_id,
        "leaf_index": event.seq - 1,
        "tree_size": size,
        "event": B64.encode(&event.bytes),
        "audit_path": path.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
        "checkpoint": note,
    });
    write_out(args.out.as_deref(), &v)?;
    Ok(ExitCode::SUCCESS)
}

fn hash_list(v: &Value, field: &str) -> anyhow::Result<Vec<Hash>> {
    v[field]
        .as_array()
        .ok_or_else(|| anyhow!("proof has no {field}"))?
        .iter()
        .map(|h| {
            let b = B64.decode(h.as_str().unwrap_or_default())?;
            b.try_into()
                .map_err(|_| anyhow!("a hash in {field} is not 32 bytes"))
        })
        .collect()
}

pub(crate) fn verify_proof(args: VerifyProofArgs) -> anyhow::Result<ExitCode> {
    let vk = VerifyingKey::load(&args.public_key)?;
    let text = std::fs::read_to_string(&args.proof)
        .with_context(|| format!("reading {}", args.proof.display()))?;
    let v: Value = serde_json::from_str(&text).context("the proof is not JSON")?;
    let fail = |why: String| -> anyhow::Result<ExitCode> {
        println!("proof FAILED: {why}");
        Ok(ExitCode::from(1))
    };
    let note = v["checkpoint"].as_str().unwrap_or_default();
    let cp = match Checkpoint::verify(note, &vk) {
        Ok(cp) => cp,
        Err(e) => return fail(format!("checkpoint: {e}")),
    };
    let size = v["tree_size"].as_u64().unwrap_or(u64::MAX);
    if size != cp.size {
        return fail(format!(
            "the proof is for size {size} but its checkpoint covers {}",
            cp.size
        ));
    }
    let index = v["leaf_index"]
        .as_u64()
        .ok_or_else(|| anyhow!("proof has no leaf_index"))?;
    let account = v["account"].as_str().unwrap_or_default();
    let bytes = B64.decode(v["event"].as_str().unwrap_or_default())?;
    let event = match CloudTrailEvent::parse_with_limit(bytes.clone(), usize::MAX) {
        Ok(e) => e,
        Err(e) => return fail(format!("the event is not valid: {e}")),
    };
    let id = &event.fields().event_id;
    let leaf = event_leaf(index + 1, account, id, &sha256(&bytes));
    let path = hash_list(&v, "audit_path")?;
    if verify_inclusion(&leaf, index, size, &path, &cp.root) {
        println!(
            "proof verified: event {id} of account {account} is entry {} of {} in {}, signed at {}",
            index + 1,
            size,
            cp.origin,
            Timestamp(cp.time_ms)
        );
        Ok(ExitCode::SUCCESS)
    } else {
        fail("the event and audit path do not lead to the checkpoint's root".into())
    }
}

pub(crate) fn verify_consistency_cmd(args: VerifyConsistencyArgs) -> anyhow::Result<ExitCode> {
    let (old_note, new_note, proof, vk) = if let Some(p) = &args.proof {
        let vk = VerifyingKey::load(
            args.public_key
                .as_deref()
                .ok_or_else(|| anyhow!("--proof needs --public-key"))?,
        )?;
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(p)?).context("the proof is not JSON")?;
        (
            v["old"].as_str().unwrap_or_default().to_owned(),
            v["new"].as_str().unwrap_or_default().to_owned(),
            hash_list(&v, "proof")?,
            vk,
        )
    } else {
        let (Some(data), Some(keys)) = (&args.data_dir, &args.keys) else {
            bail!(
                "give --data-dir and --keys to make the proof from the store, or --proof and --public-key to check a saved one"
            );
        };
        let old = read_note(&args.checkpoints[0])?;
        let new = read_note(&args.checkpoints[1])?;
        let vk = VerifyingKey::load(&keys.join("signing.pub"))?;
        let (a, b) = (
            Checkpoint::parse_unverified(&old)?,
            Checkpoint::parse_unverified(&new)?,
        );
        if a.size > b.size {
            println!(
                "consistency FAILED: the first checkpoint ({} events) is newer than the second ({} events); give the older one first",
                a.size, b.size
            );
            return Ok(ExitCode::from(1));
        }
        let ledger = crate::cmd::keys::open_read_only(keys, data)?;
        let proof = ledger.consistency_proof(a.size, b.size)?;
        if let Some(out) = &args.out {
            write_out(
                Some(out),
                &json!({
                    "format": "orgtrail-consistency-proof-v1",
                    "old": old,
                    "new": new,
                    "proof": proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
                }),
            )?;
        }
        (old, new, proof, vk)
    };
    let old = match Checkpoint::verify(&old_note, &vk) {
        Ok(c) => c,
        Err(e) => {
            println!("consistency FAILED: older checkpoint: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let new = match Checkpoint::verify(&new_note, &vk) {
        Ok(c) => c,
        Err(e) => {
            println!("consistency FAILED: newer checkpoint: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    if old.origin != new.origin {
        println!(
            "consistency FAILED: the checkpoints are of different stores ({} and {})",
            old.origin, new.origin
        );
        return Ok(ExitCode::from(1));
    }
    if verify_consistency(old.size, new.size, &old.root, &new.root, &proof) {
        println!(
            "consistent: the log of {} events extends the log of {} events unchanged",
            new.size, old.size
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "consistency FAILED: the log at {} events does not extend the log at {} events",
            new.size, old.size
        );
        Ok(ExitCode::from(1))
    }
}
