//! Tamper evidence: `orgtrail checkpoint`, `verify`, `proof`, `verify-proof`,
//! `verify-consistency`, on a store on disk or (with `--collector`) live from a running
//! collector's integrity service.

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
use orgtrail_proto::v1 as pb;
use orgtrail_store::{
    SavedCheckpoint, StreamVerifier, VerifyReport, event_leaf, leaf_data, verify_full,
    verify_public,
};
use serde_json::{Value, json};

use crate::cmd::remote::{Remote, Target, Where};

/// Print the latest signed checkpoint of a store as JSON: (tree size, root hash, time), signed
/// with the store's signing key. Keep such files outside the system: `orgtrail verify
/// --checkpoint FILE` later proves the store still holds exactly what the checkpoint covered.
///
/// With a collector (the profile's, or --collector URL --cert F --key F --ca F; an auditor or
/// admin certificate), the
/// checkpoint comes live from a running collector: its signed note is the C2SP
/// tlog-checkpoint text an external witness can check and co-sign.
#[derive(Debug, clap::Args)]
pub(crate) struct CheckpointArgs {
    #[command(flatten)]
    target: Target,
    /// Sign a new checkpoint of everything stored now, if anything is new since the last one
    /// (remotely: admin certificates only).
    #[arg(long, conflicts_with = "size")]
    new: bool,
    /// The checkpoint stored at exactly this tree size, instead of the newest.
    #[arg(long, value_name = "N")]
    size: Option<u64>,
    /// Check the checkpoint's signature with this signing.pub before printing it.
    #[arg(long, value_name = "FILE")]
    public_key: Option<PathBuf>,
}

/// Verify a store: recompute every event's leaf from its decrypted bytes and the whole Merkle
/// tree, check every stored checkpoint (signature and root), that each saved --checkpoint file
/// is consistent with the store (catches a store rolled back or forked since), and that the
/// indexes agree with the records. Prints `verified events=N checkpoints=M` and exits 0, or
/// names every problem and exits 1.
///
/// With --public-key instead of --keys, an auditor without the master key checks the tree
/// from the stored leaf hashes and the checkpoints; the output says what could not be checked.
///
/// Without --data-dir, with --public-key signing.pub and a collector (the profile's, or
/// --collector URL --cert F --key F --ca F), a running collector
/// streams its stored leaf hashes and checkpoints and this command rebuilds the tree and checks
/// every checkpoint itself (the collector is not asked whether it is fine). Full verification
/// with the master key is offline only: it refuses a store a collector has open.
#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// The store's data directory (offline; the collector must not be running on it). Without
    /// it, the collector of the flags, the environment or the profile is verified.
    #[arg(long, value_name = "DIR", conflicts_with = "collector")]
    data_dir: Option<PathBuf>,
    /// Directory holding keyring.json and signing.pub (full verification, offline only).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "public_key",
        conflicts_with_all = ["public_key", "collector"]
    )]
    keys: Option<PathBuf>,
    /// signing.pub alone (verification without the master key).
    #[arg(long, value_name = "FILE")]
    public_key: Option<PathBuf>,
    /// Checkpoint files saved earlier (`orgtrail checkpoint` output).
    #[arg(long = "checkpoint", value_name = "FILE")]
    checkpoints: Vec<PathBuf>,
    #[command(flatten)]
    remote: Remote,
}

/// Print a self-contained JSON proof that an event is in the log: its bytes, leaf index,
/// tree size, audit path and the signed checkpoint. Anyone can check it with
/// `orgtrail verify-proof FILE --public-key signing.pub`, without access to the store.
///
/// With a collector (the profile's, or --collector URL --cert F --key F --ca F), the proof
/// comes live from a running collector
/// (an auditor limited to some accounts gets proofs of those accounts' events only).
#[derive(Debug, clap::Args)]
pub(crate) struct ProofArgs {
    #[command(flatten)]
    target: Target,
    #[arg(long)]
    account: AccountId,
    /// Prove inclusion in the checkpoint stored at this tree size (default: offline the oldest
    /// covering the event, remotely the newest).
    #[arg(long, value_name = "N")]
    size: Option<u64>,
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
///
/// Without --data-dir, with --public-key signing.pub and a collector (the profile's, or
/// --collector URL --cert F --key F --ca F), a running collector
/// makes the proof; given one checkpoint file only, the newer is the collector's newest
/// checkpoint (does what I saved on Monday still hold?).
#[derive(Debug, clap::Args)]
pub(crate) struct VerifyConsistencyArgs {
    /// Older and newer checkpoint files (`orgtrail checkpoint` output).
    #[arg(
        value_name = "CHECKPOINT",
        num_args = 1..=2,
        required_unless_present = "proof"
    )]
    checkpoints: Vec<PathBuf>,
    #[arg(
        long,
        value_name = "DIR",
        requires = "keys",
        conflicts_with = "collector"
    )]
    data_dir: Option<PathBuf>,
    #[arg(long, value_name = "DIR")]
    keys: Option<PathBuf>,
    /// Write the consistency proof here.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// A saved consistency proof to check offline.
    #[arg(
        long,
        value_name = "FILE",
        requires = "public_key",
        conflicts_with = "collector"
    )]
    proof: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    public_key: Option<PathBuf>,
    #[command(flatten)]
    remote: Remote,
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
    let found = if let Where::Remote(r) = args.target.resolve()? {
        remote_checkpoint(&r, args.new, args.size)?
    } else {
        let (Some(keys), Some(data_dir)) = (&args.target.keys, &args.target.data_dir) else {
            bail!("a store on disk needs --data-dir DIR --keys DIR");
        };
        if args.new {
            let ledger = crate::cmd::keys::open(keys, data_dir)?;
            let l = ledger.checkpoint_now_blocking()?;
            ledger.close()?;
            l
        } else {
            let ledger = crate::cmd::keys::open_read_only(keys, data_dir)?;
            match args.size {
                Some(n) => Some(
                    ledger
                        .checkpoints_between(n, n, 1, false)?
                        .pop()
                        .ok_or_else(|| {
                            anyhow!("{} has no checkpoint at size {n}", data_dir.display())
                        })?,
                ),
                None => ledger.latest_checkpoint()?,
            }
        }
    };
    let Some((size, note)) = found else {
        bail!("there is no checkpoint yet (an empty store, or one written without a signing key)");
    };
    let cp = Checkpoint::parse_unverified(&note)?;
    if cp.size != size {
        bail!(
            "the checkpoint stored at size {size} names size {}",
            cp.size
        );
    }
    if let Some(pk) = &args.public_key {
        let vk = VerifyingKey::load(pk)?;
        if let Err(e) = Checkpoint::verify(&note, &vk) {
            println!("checkpoint FAILED: {e}");
            return Ok(ExitCode::from(1));
        }
    }
    write_out(None, &checkpoint_json(&note)?)?;
    Ok(ExitCode::SUCCESS)
}

/// The newest checkpoint (signed now first, with `new`) or the one at `size`, from a collector.
fn remote_checkpoint(
    remote: &orgtrail_client::Remote,
    new: bool,
    size: Option<u64>,
) -> anyhow::Result<Option<(u64, String)>> {
    crate::cmd::remote::runtime()?.block_on(async {
        let c = crate::cmd::remote::connect(remote).await?;
        let mut ic = c.integrity();
        let r = match size {
            Some(tree_size) => {
                ic.get_checkpoint(pb::GetCheckpointRequest { tree_size })
                    .await
            }
            None => {
                ic.latest_checkpoint(pb::LatestCheckpointRequest { sign_new: new })
                    .await
            }
        };
        match r {
            Ok(cp) => {
                let cp = cp.into_inner();
                Ok(Some((cp.tree_size, cp.note)))
            }
            Err(s) => Err(c.explain(s).into()),
        }
    })
}

/// Prints a verification report; exit 0 only when nothing is wrong.
fn print_report(report: &VerifyReport) -> ExitCode {
    for c in &report.checked {
        println!("checked: {c}");
    }
    for c in &report.not_checked {
        println!("not checked: {c}");
    }
    if report.uncovered > 0 {
        println!(
            "not checked: the {} newest events against a signature (no checkpoint covers them yet; their leaves are in the tree)",
            report.uncovered
        );
    }
    if report.ok() {
        println!(
            "verified events={} checkpoints={} saved-checkpoints={}",
            report.events, report.checkpoints, report.saved_checkpoints
        );
        ExitCode::SUCCESS
    } else {
        for p in &report.problems {
            println!("FAILED: {p}");
        }
        println!("verification failed: {} problems", report.problems.len());
        ExitCode::from(1)
    }
}

pub(crate) fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let mut saved = Vec::new();
    for p in &args.checkpoints {
        saved.push(SavedCheckpoint {
            name: p.display().to_string(),
            note: read_note(p)?,
        });
    }
    if args.data_dir.is_none() {
        if args.keys.is_some() {
            bail!("--keys (full verification) needs --data-dir DIR: it is offline only");
        }
        let remote = args.remote.require(Some(
            "--data-dir DIR (--keys DIR or --public-key F) for a store on disk",
        ))?;
        let Some(pk) = &args.public_key else {
            bail!(
                "verifying a running collector needs --public-key signing.pub (full verification with --keys is offline only)"
            );
        };
        let vk = VerifyingKey::load(pk)?;
        let report = match remote_verify(&remote, vk, saved) {
            Ok(r) => r,
            Err(e) => {
                eprintln!(
                    "orgtrail: verify: {}; nothing was checked",
                    crate::cmd::describe_error(&e)
                );
                return Ok(ExitCode::from(1));
            }
        };
        return Ok(print_report(&report));
    }
    let Some(data_dir) = &args.data_dir else {
        bail!("give --data-dir DIR, or --collector URL (or a profile) for a running collector");
    };
    let report = match (&args.keys, &args.public_key) {
        (Some(keys), _) => {
            let vk = VerifyingKey::load(&keys.join("signing.pub"))?;
            let provider = Arc::new(LocalKeyProvider::load(keys)?);
            verify_full(data_dir, provider, &vk, &saved)
        }
        (None, Some(pk)) => verify_public(data_dir, &VerifyingKey::load(pk)?, &saved),
        (None, None) => bail!("give --keys DIR or --public-key FILE"),
    };
    // A store that cannot be opened (in use by a running collector, missing) is refused
    // before anything is claimed as checked.
    if let Some(why) = &report.not_opened {
        eprintln!("orgtrail: verify: {why}; nothing was checked");
        return Ok(ExitCode::from(1));
    }
    Ok(print_report(&report))
}

/// Streams a collector's log and verifies it here. An error (the stream broke off, the
/// collector refused) means nothing may be claimed.
fn remote_verify(
    remote: &orgtrail_client::Remote,
    key: VerifyingKey,
    saved: Vec<SavedCheckpoint>,
) -> anyhow::Result<VerifyReport> {
    use pb::public_verify_message::Item;
    crate::cmd::remote::runtime()?.block_on(async {
        let c = crate::cmd::remote::connect(remote).await?;
        let mut stream = c
            .integrity()
            .public_verify(pb::PublicVerifyRequest {})
            .await
            .map_err(|s| c.explain(s))?
            .into_inner();
        let mut v = StreamVerifier::new(key, saved);
        while let Some(m) = stream.message().await.map_err(|s| c.explain(s))? {
            match m.item {
                Some(Item::Head(h)) => v.head(&h.origin, h.tree_size),
                Some(Item::LeafHashes(b)) => v.leaf_hashes(&b),
                Some(Item::Checkpoint(cp)) => v.checkpoint(cp.tree_size, &cp.note),
                None => {}
            }
        }
        Ok(v.finish())
    })
}

/// The proof file: the same JSON offline and remotely, checked by `verify-proof`.
fn proof_json(
    account: &str,
    event_id: &str,
    seq: u64,
    size: u64,
    bytes: &[u8],
    path: &[Hash],
    note: &str,
) -> Value {
    json!({
        "format": "orgtrail-inclusion-proof-v1",
        "account": account,
        "event_id": event_id,
        "leaf_index": seq - 1,
        "tree_size": size,
        "event": B64.encode(bytes),
        "audit_path": path.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
        "checkpoint": note,
    })
}

pub(crate) fn proof(args: ProofArgs) -> anyhow::Result<ExitCode> {
    if let Where::Remote(r) = args.target.resolve()? {
        let v = remote_proof(&args, &r)?;
        write_out(args.out.as_deref(), &v)?;
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(keys), Some(data_dir)) = (&args.target.keys, &args.target.data_dir) else {
        bail!("a store on disk needs --data-dir DIR --keys DIR");
    };
    let ledger = crate::cmd::keys::open(keys, data_dir)?;
    let event = ledger
        .get(&args.account, &args.event_id)?
        .ok_or_else(|| anyhow!("no event {} in account {}", args.event_id, args.account))?;
    let (size, note) = match args.size {
        Some(n) if n < event.seq => bail!(
            "the checkpoint at size {n} does not cover event {} (entry {} of the log)",
            args.event_id,
            event.seq
        ),
        Some(n) => ledger
            .checkpoints_between(n, n, 1, false)?
            .pop()
            .ok_or_else(|| anyhow!("{} has no checkpoint at size {n}", data_dir.display()))?,
        None => {
            let covering = ledger
                .checkpoints()?
                .into_iter()
                .find(|(size, _)| *size >= event.seq);
            match covering {
                Some(c) => c,
                None => ledger
                    .checkpoint_now_blocking()?
                    .ok_or_else(|| anyhow!("no checkpoint covers the event"))?,
            }
        }
    };
    let path = ledger.inclusion_proof(event.seq, size)?;
    ledger.close()?;
    let v = proof_json(
        event.account.as_str(),
        &args.event_id,
        event.seq,
        size,
        &event.bytes,
        &path,
        &note,
    );
    write_out(args.out.as_deref(), &v)?;
    Ok(ExitCode::SUCCESS)
}

fn to_hashes(list: Vec<Vec<u8>>, what: &str) -> anyhow::Result<Vec<Hash>> {
    list.into_iter()
        .map(|h| {
            h.try_into()
                .map_err(|_| anyhow!("the collector sent a {what} hash that is not 32 bytes"))
        })
        .collect()
}

/// An inclusion proof from a collector, as the proof file. Checked for shape here; whether
/// it proves anything is `verify-proof`'s business (with the public key).
fn remote_proof(args: &ProofArgs, remote: &orgtrail_client::Remote) -> anyhow::Result<Value> {
    crate::cmd::remote::runtime()?.block_on(async {
        let c = crate::cmd::remote::connect(remote).await?;
        let r = c
            .integrity()
            .inclusion_proof(pb::InclusionProofRequest {
                account: args.account.to_string(),
                event_id: args.event_id.clone(),
                tree_size: args.size.unwrap_or(0),
            })
            .await
            .map_err(|s| c.explain(s))?
            .into_inner();
        let seq = r.leaf_index + 1;
        if r.account != args.account.as_str() || r.event_id != args.event_id {
            bail!(
                "the collector answered for event {} of account {}, not the one asked",
                r.event_id,
                r.account
            );
        }
        let want = leaf_data(seq, &r.account, &r.event_id, &sha256(&r.event));
        if r.leaf_data != want {
            bail!("the collector's leaf data does not match the event bytes it sent");
        }
        let path = to_hashes(r.audit_path, "audit path")?;
        Ok(proof_json(
            &r.account,
            &r.event_id,
            seq,
            r.tree_size,
            &r.event,
            &path,
            &r.checkpoint,
        ))
    })
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
    let (old_note, new_note, proof, vk) = if args.proof.is_none() && args.data_dir.is_none() {
        let remote = args.remote.require(Some(
            "--data-dir DIR --keys DIR to make the proof from a store, or --proof F --public-key F to check a saved one",
        ))?;
        let Some(pk) = &args.public_key else {
            bail!("checking a collector's consistency proof needs --public-key signing.pub");
        };
        let vk = VerifyingKey::load(pk)?;
        let old = read_note(&args.checkpoints[0])?;
        let new = args.checkpoints.get(1).map(|p| read_note(p)).transpose()?;
        let (old_note, new_note, proof) = remote_consistency(&remote, old, new)?;
        if let Some(out) = &args.out {
            write_out(
                Some(out),
                &json!({
                    "format": "orgtrail-consistency-proof-v1",
                    "old": old_note,
                    "new": new_note,
                    "proof": proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
                }),
            )?;
        }
        (old_note, new_note, proof, vk)
    } else if let Some(p) = &args.proof {
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
        let [old, new] = &args.checkpoints[..] else {
            bail!("give the older and the newer checkpoint files");
        };
        let (old, new) = (read_note(old)?, read_note(new)?);
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

/// A consistency proof from a collector between the checkpoint `old` and `new` (or its newest
/// checkpoint): (older note, newer note, proof). The notes are the caller's own files where
/// given, so the proof is checked against what the auditor saved, not what the collector says.
fn remote_consistency(
    remote: &orgtrail_client::Remote,
    old: String,
    new: Option<String>,
) -> anyhow::Result<(String, String, Vec<Hash>)> {
    let old_size = Checkpoint::parse_unverified(&old)?.size;
    let new_size = match &new {
        Some(n) => Checkpoint::parse_unverified(n)?.size,
        None => 0,
    };
    if new.is_some() && old_size > new_size {
        bail!(
            "the first checkpoint ({old_size} events) is newer than the second ({new_size} events); give the older one first"
        );
    }
    crate::cmd::remote::runtime()?.block_on(async {
        let c = crate::cmd::remote::connect(remote).await?;
        let r = c
            .integrity()
            .consistency_proof(pb::ConsistencyProofRequest { old_size, new_size })
            .await
            .map_err(|s| c.explain(s))?
            .into_inner();
        let proof = to_hashes(r.proof, "consistency proof")?;
        let new = match new {
            Some(n) => n,
            None => {
                r.new
                    .ok_or_else(|| anyhow!("the collector sent no newer checkpoint"))?
                    .note
            }
        };
        Ok((old, new, proof))
    })
}
