//! CloudTrail's delivered layout on disk:
//! `AWSLogs/[o-org/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/ACCOUNT_CloudTrail_REGION_..._XXXX.json.gz`
//! (plain `.json` too). Every new log file's Records are shipped once: a finished file is
//! marked in the spool in the same durable append as its last events, so a restarted agent
//! skips it (a file interrupted half-way is read again; the collector drops the repeats).
//! A file still being written is left until its size and modification time hold still across
//! two scans. Digest files are not events and are skipped. A corrupt or oversized file goes to
//! the dead-letter area with the reason, and the source goes on.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use orgtrail_core::{DecodeLimits, Decoder, InputFormat};

use super::{Ctx, Item};

/// A file that cannot be decoded is given this long without changes before it is declared
/// corrupt (a copy may have stalled half-way); until then it is tried again at each scan.
pub const CORRUPT_AFTER: std::time::Duration = std::time::Duration::from_secs(300);

/// CloudTrail caps a delivered log file at 50 MB compressed.
pub const MAX_FILE_BYTES: u64 = 50 * 1000 * 1000;
/// Largest decompressed log file; a gzip bomb stops here.
pub const MAX_DECOMPRESSED_BYTES: u64 = 512 << 20;

fn mark_key(rel: &Path) -> Vec<u8> {
    let mut k = b"file\0".to_vec();
    k.extend_from_slice(rel.as_os_str().as_encoded_bytes());
    k
}

fn path_hash(key: &[u8]) -> u128 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(key);
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    u128::from_le_bytes(b)
}

/// Log files under `root`, sorted (the layout sorts by account, region, then date).
fn scan(root: &Path, out: &mut Vec<PathBuf>) {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            tracing::warn!("cannot read directory {}", dir.display());
            continue;
        };
        for e in rd.flatten() {
            let Ok(t) = e.file_type() else { continue };
            let p = e.path();
            let name = e.file_name();
            let name = name.to_string_lossy();
            if t.is_dir() {
                if name != "CloudTrail-Digest" {
                    stack.push(p);
                }
            } else if t.is_file()
                && (name.ends_with(".json.gz") || name.ends_with(".json"))
                && !name.contains("CloudTrail-Digest")
            {
                out.push(p);
            }
        }
    }
    out.sort();
}

/// Runs the source: scans every `poll_ms` (once, with `ctx.once`).
pub fn run(ctx: &Ctx, root: &Path, poll_ms: u64) -> Result<(), String> {
    // Files seen but not yet settled: (size, mtime) at the last scan.
    let mut seen: HashMap<PathBuf, (u64, Option<SystemTime>)> = HashMap::new();
    // Files known to be done, by a 128-bit hash of their path: later scans skip them without
    // a stat or a spool lookup (16 bytes a file).
    let mut done: HashSet<u128> = HashSet::new();
    loop {
        let mut files = Vec::new();
        scan(root, &mut files);
        let mut waiting = HashMap::new();
        for path in files {
            if ctx.stopping() {
                return Ok(());
            }
            let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            let key = mark_key(&rel);
            let h = path_hash(&key);
            if done.contains(&h) {
                continue;
            }
            if ctx.spool.mark(&key).is_some() {
                done.insert(h);
                continue;
            }
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let now = (meta.len(), meta.modified().ok());
            if !ctx.once && seen.get(&path) != Some(&now) {
                // New or still changing: look again at the next scan.
                waiting.insert(path, now);
                continue;
            }
            match ship_file(ctx, &path, &rel, meta.len(), key) {
                Shipped::Done => {
                    done.insert(h);
                }
                Shipped::Later => {}
                Shipped::Stopping => return Ok(()),
            }
        }
        seen = waiting;
        if ctx.once {
            return Ok(());
        }
        if !ctx.pause(poll_ms) {
            return Ok(());
        }
    }
}

/// True when the file changed within [`CORRUPT_AFTER`] (never in a one-pass run, which takes
/// the tree as it is).
fn recently_changed(ctx: &Ctx, path: &Path) -> bool {
    !ctx.once
        && std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age < CORRUPT_AFTER)
}

/// What became of a file.
enum Shipped {
    /// Handed over whole (events, dead letters and its done-mark).
    Done,
    /// Not readable now; tried again at the next scan.
    Later,
    /// The agent is stopping.
    Stopping,
}

fn shipped(ok: bool) -> Shipped {
    if ok { Shipped::Done } else { Shipped::Stopping }
}

/// Ships one settled file.
fn ship_file(ctx: &Ctx, path: &Path, rel: &Path, size: u64, key: Vec<u8>) -> Shipped {
    let name = rel.display().to_string();
    let done = |ctx: &Ctx| {
        ctx.send(Item::Mark {
            key: key.clone(),
            value: b"done".to_vec(),
        })
    };
    if size > MAX_FILE_BYTES {
        return shipped(ctx.dead(
            format!("{name}: {size} bytes, larger than CloudTrail's limit of {MAX_FILE_BYTES} bytes for a log file"),
            Vec::new(),
        ) && done(ctx));
    }
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(source = %ctx.name, "cannot open {}: {e}; trying again later", path.display());
            return Shipped::Later;
        }
    };
    let limits = DecodeLimits {
        max_document_bytes: MAX_DECOMPRESSED_BYTES,
        ..DecodeLimits::default()
    };
    let decoder = match Decoder::new_verified(file, InputFormat::LogFile, limits) {
        Ok(d) => d,
        Err(e) => {
            if recently_changed(ctx, path) {
                tracing::info!(source = %ctx.name, file = %name, error = %e, "cannot decode yet; trying again at the next scan");
                return Shipped::Later;
            }
            return shipped(ctx.dead(format!("{name}: {e}"), Vec::new()) && done(ctx));
        }
    };
    let mut events = 0u64;
    for item in decoder {
        let ok = match item {
            Ok(item) => match item.result {
                Ok(ev) => {
                    events += 1;
                    ctx.event(ev)
                }
                Err(reason) => ctx.dead(format!("{name}: {}: {reason}", item.position), Vec::new()),
            },
            Err(e) => {
                // The file as a whole is unreadable (corrupt gzip, not a log file, too large
                // once decompressed): one dead letter for it, unless it may still be arriving.
                if recently_changed(ctx, path) {
                    tracing::info!(source = %ctx.name, file = %name, error = %e, "cannot decode yet; trying again at the next scan");
                    return Shipped::Later;
                }
                ctx.dead(format!("{name}: {e}"), Vec::new())
            }
        };
        if !ok {
            return Shipped::Stopping;
        }
    }
    tracing::debug!(source = %ctx.name, file = %name, events, "log file read");
    shipped(done(ctx))
}
