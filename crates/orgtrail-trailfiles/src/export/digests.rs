//! orgtrail's digest files: CloudTrail's digest JSON, one per (account, region) and hour
//! with log files in the run, chained per (account, region) and signed with the store's
//! Ed25519 key over CloudTrail's string to sign.
//!
//! A digest for hour H covers `[H, H+1h)` and is named by its end, as CloudTrail names
//! digests. A chain must grow in time (validation walks it from the newest name down), so
//! when a run exports events of an hour at or before its chain's newest digest (events stored
//! after that hour was exported), their digest starts at the newest digest's end and ends one
//! second later: as CloudTrail does for late files, the digest records when the files were
//! delivered, and lists them.

use std::collections::BTreeMap;
use std::path::Path;

use orgtrail_core::Timestamp;
use orgtrail_crypto::hash::sha256;
use orgtrail_crypto::signing::SigningKey;

use super::files::{HOUR_MS, Written};
use super::state::ChainHead;
use super::{ExportError, Layout, atomic, target};
use crate::digest::{DigestFile, ED25519_ALGORITHM, LogFileEntry};
use crate::hex;

/// The trail name in digest file names (`ACCOUNT_CloudTrail-Digest_REGION_TRAIL_HOME_...`).
pub const TRAIL_NAME: &str = "orgtrail";

const HASH_ALGORITHM: &str = "SHA-256";

/// Writes the digests of `written` (the run's log files), chained to `chains`, which is
/// updated to the new heads. Returns how many digests were written.
pub(super) fn write_digests(
    layout: &Layout,
    tmp_dir: &Path,
    signer: &SigningKey,
    written: &[Written],
    chains: &mut BTreeMap<String, ChainHead>,
) -> Result<u64, ExportError> {
    // (account/region) -> hour -> files
    let mut by_chain: BTreeMap<String, BTreeMap<i64, Vec<&Written>>> = BTreeMap::new();
    for w in written {
        let chain = format!("{}/{}", w.group.account, w.group.region);
        by_chain
            .entry(chain)
            .or_default()
            .entry(w.group.hour)
            .or_default()
            .push(w);
    }
    let fingerprint = crate::public_keys::ed25519_fingerprint(&signer.public_key());
    let mut count = 0u64;
    let mut dirs = atomic::Dirs::default();
    for (chain, hours) in by_chain {
        for (hour, mut files) in hours {
            files.sort_by(|a, b| a.key.cmp(&b.key));
            let prev = chains.get(&chain);
            let prev_end = prev.map(|p| p.end.millis());
            let start = prev_end.map_or(hour, |e| hour.max(e));
            let end = prev_end.map_or(hour + HOUR_MS, |e| (hour + HOUR_MS).max(e + 1000));
            let group = &files[0].group;
            let key = layout.digest_key(&group.account, group.region.as_str(), Timestamp(end));
            let oldest = files.iter().map(|f| f.oldest).min();
            let newest = files.iter().map(|f| f.newest).max();
            let digest = DigestFile {
                aws_account_id: Some(group.account.to_string()),
                digest_start_time: Timestamp(start).to_string(),
                digest_end_time: Timestamp(end).to_string(),
                digest_s3_bucket: layout.bucket.clone(),
                digest_s3_object: key.clone(),
                digest_public_key_fingerprint: fingerprint.clone(),
                digest_signature_algorithm: Some(ED25519_ALGORITHM.into()),
                newest_event_time: newest.map(|t| t.to_string()),
                oldest_event_time: oldest.map(|t| t.to_string()),
                previous_digest_s3_bucket: prev.map(|_| layout.bucket.clone()),
                previous_digest_s3_object: prev.map(|p| p.key.clone()),
                previous_digest_hash_value: prev.map(|p| p.hash.clone()),
                previous_digest_hash_algorithm: prev.map(|_| HASH_ALGORITHM.into()),
                previous_digest_signature: prev.map(|p| p.signature.clone()),
                log_files: files
                    .iter()
                    .map(|f| LogFileEntry {
                        s3_bucket: layout.bucket.clone(),
                        s3_object: f.key.clone(),
                        hash_value: f.hash.clone(),
                        hash_algorithm: Some(HASH_ALGORITHM.into()),
                        newest_event_time: Some(f.newest.to_string()),
                        oldest_event_time: Some(f.oldest.to_string()),
                    })
                    .collect(),
            };
            let json = serde_json::to_vec(&digest).map_err(|e| ExportError::State {
                path: layout.path_of(&key),
                reason: e.to_string(),
            })?;
            let hash = hex::encode(&sha256(&json));
            let signature = hex::encode(&signer.sign(digest.string_to_sign(&hash).as_bytes()));
            let gz = gzip(&json).map_err(atomic::io(&layout.path_of(&key), "compressing"))?;
            target::put_digest(layout, tmp_dir, &key, gz, &signature, &mut dirs)?;
            chains.insert(
                chain.clone(),
                ChainHead {
                    key,
                    end: Timestamp(end),
                    hash,
                    signature,
                },
            );
            count += 1;
        }
    }
    dirs.sync()?;
    Ok(count)
}

fn gzip(b: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b)?;
    e.finish()
}
