//! CloudTrail's delivered layout on disk:
//! `AWSLogs/[o-org/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/ACCOUNT_CloudTrail_REGION_..._XXXX.json.gz`
//! (plain `.json` too). Every new log file's Records are shipped once: a finished file is
//! marked in the spool in the same durable append as its last events, so a restarted agent
//! skips it (a file interrupted half-way is read again; the collector drops the repeats).
//! A file still being written is left until its size and modification time hold still across
//! two scans. Digest files are not events and are skipped. A corrupt or oversized file goes to
//! the dead-letter area with the reason, and the source goes on.
//!
//! With `digest_public_keys_file`, each log file is hashed as it is read (the pass that checks
//! its gzip before anything is shipped) and its hash kept in its mark (`h HEX`, old marks say
//! `done`); digest files (`CloudTrail-Digest/`) are read after the log files of each scan, once
//! settled, with their signature from the `<digest>.sig` sidecar (which `aws s3api head-object
//! ... --query Metadata.signature` prints), and checked (see [`super::digests`]). A digest
//! without its sidecar waits for it while the digest changed within [`CORRUPT_AFTER`] (not in
//! a one-pass run); then it is checked with the signature its successor names (a copy made by
//! `aws s3 sync` has no sidecars), the newest reported `unverified` until its successor comes.
//! Failures reported more than `digest_keep_days` ago leave the gauge.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use orgtrail_core::{DecodeLimits, Decoder, InputFormat};
use orgtrail_trailfiles::inflate::{HashingInflater, inflate_and_hash};
use orgtrail_trailfiles::{DigestFile, PublicKeySet};

use super::digests::{self, Checked, Checker};
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

/// Log files under `root`, sorted (the layout sorts by account, region, then date); with
/// `digests`, the digest files too (without their `.sig` sidecars), sorted.
fn scan(root: &Path, out: &mut Vec<PathBuf>, mut digests: Option<&mut Vec<PathBuf>>) {
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
                if name != "CloudTrail-Digest" || digests.is_some() {
                    stack.push(p);
                }
            } else if t.is_file()
                && name.ends_with(".json.gz")
                && name.contains("_CloudTrail-Digest_")
                && let Some(d) = digests.as_deref_mut()
            {
                d.push(p);
            } else if t.is_file()
                && (name.ends_with(".json.gz") || name.ends_with(".json"))
                && !name.contains("CloudTrail-Digest")
            {
                out.push(p);
            }
        }
    }
    out.sort();
    if let Some(d) = digests {
        d.sort();
    }
}

/// Where a digest read from a directory finds its files: keys relative to the root, after the
/// prefix the digest's own `digestS3Object` has before its path under the root.
struct DirSite<'a> {
    root: &'a Path,
    /// The digest's path under the root.
    rel: &'a str,
}

impl digests::Site for DirSite<'_> {
    fn local(&self, d: &DigestFile, _bucket: &str, key: &str) -> Option<String> {
        let prefix = d.digest_s3_object.strip_suffix(self.rel)?;
        key.strip_prefix(prefix).map(str::to_owned)
    }

    fn at_home(&self, local: &str, d: &DigestFile) -> bool {
        d.digest_s3_object == local
            || d.digest_s3_object
                .strip_suffix(local)
                .is_some_and(|p| p.ends_with('/'))
    }

    fn mark_key(&self, local: &str) -> Vec<u8> {
        mark_key(Path::new(local))
    }

    fn waiting(&self, local: &str) -> bool {
        self.root.join(local).is_file()
    }

    fn in_window(&self, _local: &str) -> bool {
        true
    }
}

/// What the tree holds at a scan, to be read.
enum Found {
    /// Read before (or skipped): nothing to do.
    Done,
    /// New or still changing: looked at again at the next scan.
    Settling,
    /// To be read (settled, or a digest read before without a signature).
    Ready,
}

/// What a file's mark means.
enum Skip {
    /// Done for good.
    Done,
    /// Nothing to do at this scan (a digest waiting for its successor).
    Now,
    /// To be read.
    No,
}

/// A file found by a scan: its path under the root, mark key and whether it is to be read.
struct Scanned {
    rel: PathBuf,
    key: Vec<u8>,
    hash: u128,
    now: (u64, Option<SystemTime>),
}

/// The scan state of the source: what is settling, and what is done.
#[derive(Default)]
struct Tree {
    /// Files seen but not yet settled: (size, mtime) at the last scan.
    seen: HashMap<PathBuf, (u64, Option<SystemTime>)>,
    /// The same, for the next scan.
    waiting: HashMap<PathBuf, (u64, Option<SystemTime>)>,
    /// Files known to be done, by a 128-bit hash of their path: later scans skip them
    /// without a stat or a spool lookup (16 bytes a file).
    done: HashSet<u128>,
}

impl Tree {
    /// Where `path` stands; `skip` says what its mark (`rel`, key, value) means.
    fn find(
        &mut self,
        ctx: &Ctx,
        root: &Path,
        path: &Path,
        skip: impl FnOnce(&str, &[u8], &[u8]) -> Skip,
    ) -> (Found, Scanned) {
        let rel = path.strip_prefix(root).unwrap_or(path).to_path_buf();
        let key = mark_key(&rel);
        let hash = path_hash(&key);
        let mut s = Scanned {
            rel,
            key,
            hash,
            now: (0, None),
        };
        if self.done.contains(&hash) {
            return (Found::Done, s);
        }
        let mark = ctx.spool.mark(&s.key);
        match mark
            .as_deref()
            .map(|v| skip(&s.rel.to_string_lossy(), &s.key, v))
        {
            Some(Skip::Done) => {
                self.done.insert(hash);
                return (Found::Done, s);
            }
            Some(Skip::Now) => return (Found::Done, s),
            Some(Skip::No) | None => {}
        }
        let Ok(meta) = std::fs::metadata(path) else {
            return (Found::Settling, s);
        };
        s.now = (meta.len(), meta.modified().ok());
        if mark.is_none() && !ctx.once && self.seen.get(path) != Some(&s.now) {
            // New or still changing: look again at the next scan.
            self.waiting.insert(path.to_path_buf(), s.now);
            return (Found::Settling, s);
        }
        (Found::Ready, s)
    }
}

/// Runs the source: scans every `poll_ms` (once, with `ctx.once`); with `digests`, checks
/// CloudTrail's digests.
pub fn run(
    ctx: &Ctx,
    root: &Path,
    poll_ms: u64,
    digests: Option<(PublicKeySet, digests::Options)>,
) -> Result<(), String> {
    let keep_days = digests.as_ref().map_or(0, |(_, o)| o.keep_days);
    let mut checker = digests.map(|(k, o)| Checker::new(k, b"digests\0".to_vec(), o.wait));
    if let Some(c) = &mut checker {
        c.publish(ctx);
    }
    let mut tree = Tree::default();
    loop {
        if let Some(c) = &mut checker {
            c.new_pass();
            let today = digests::unix_now().div_euclid(86_400);
            if !c.forget_before(ctx, today - i64::from(keep_days)) {
                return Ok(());
            }
        }
        let mut files = Vec::new();
        let mut digest_files = Vec::new();
        scan(
            root,
            &mut files,
            checker.is_some().then_some(&mut digest_files),
        );
        for path in files {
            if ctx.stopping() {
                return Ok(());
            }
            let (found, s) = tree.find(ctx, root, &path, |rel, key, v| {
                if let Some(c) = &mut checker {
                    c.shipped(rel, key.to_vec(), v.to_vec());
                }
                Skip::Done
            });
            let Found::Ready = found else { continue };
            match ship_file(
                ctx,
                &path,
                &s.rel,
                s.now.0,
                s.key.clone(),
                checker.is_some(),
            ) {
                Shipped::Done(value) => {
                    if let Some(c) = &mut checker {
                        c.shipped(&s.rel.to_string_lossy(), s.key, value);
                    }
                    tree.done.insert(s.hash);
                }
                Shipped::Later => {}
                Shipped::Stopping => return Ok(()),
            }
        }
        if let Some(c) = &mut checker {
            for path in digest_files {
                if ctx.stopping() {
                    return Ok(());
                }
                let (found, s) = tree.find(ctx, root, &path, |rel, _, v| match c.settled(rel, v) {
                    Some(true) => Skip::Done,
                    Some(false) => Skip::Now,
                    None => Skip::No,
                });
                let Found::Ready = found else { continue };
                if !check_digest(ctx, c, &mut tree, root, &path, &s) {
                    return Ok(());
                }
            }
            // Digests whose signature a successor named in this scan.
            for rel in c.take_resolvable() {
                let key = mark_key(Path::new(&rel));
                let s = Scanned {
                    hash: path_hash(&key),
                    rel: PathBuf::from(&rel),
                    key,
                    now: (0, None),
                };
                if !check_digest(ctx, c, &mut tree, root, &root.join(&rel), &s) {
                    return Ok(());
                }
            }
            let site = DirSite { root, rel: "" };
            if !c.end_pass(ctx, &site) {
                return Ok(());
            }
        }
        tree.seen = std::mem::take(&mut tree.waiting);
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

/// Reads and checks one settled digest file; false when the agent is stopping.
fn check_digest(
    ctx: &Ctx,
    c: &mut Checker,
    tree: &mut Tree,
    root: &Path,
    path: &Path,
    s: &Scanned,
) -> bool {
    let rel = s.rel.to_string_lossy();
    let sig_path = {
        let mut p = path.as_os_str().to_owned();
        p.push(".sig");
        PathBuf::from(p)
    };
    let signature = match std::fs::read_to_string(&sig_path) {
        Ok(s) => Some(s.trim().to_owned()),
        Err(_) if !c.claimed(&rel) && recently_changed(ctx, path) => {
            tracing::info!(source = %ctx.name, digest = %rel, "digest file without its .sig sidecar yet; checked when the sidecar arrives");
            tree.waiting.insert(path.to_path_buf(), s.now);
            return true;
        }
        Err(_) => None,
    };
    let read = std::fs::File::open(path)
        .map_err(|e| e.to_string())
        .and_then(|f| {
            inflate_and_hash(f, digests::MAX_DIGEST_BYTES, true).map_err(|e| e.to_string())
        });
    let site = DirSite { root, rel: &rel };
    match c.check(ctx, &site, &rel, read, signature, "") {
        Checked::Done => {
            tree.done.insert(s.hash);
        }
        // Looked at again at the next scan, without waiting for it to settle.
        Checked::Waiting => {
            tree.waiting.insert(path.to_path_buf(), s.now);
        }
        Checked::Pending => {}
        Checked::Stopping => return false,
    }
    true
}

/// The SHA-256 of a log file's inflated bytes, read whole (the check before anything is
/// shipped that `Decoder::new_verified` makes otherwise).
fn hash_file(path: &Path) -> Result<[u8; 32], String> {
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut r = HashingInflater::new(f).map_err(|e| format!("cannot read: {e}"))?;
    let mut limited = std::io::Read::take(&mut r, MAX_DECOMPRESSED_BYTES + 1);
    let n = std::io::copy(&mut limited, &mut std::io::sink())
        .map_err(|e| format!("not a valid gzip file: {e}"))?;
    if n > MAX_DECOMPRESSED_BYTES {
        return Err(format!(
            "larger than {MAX_DECOMPRESSED_BYTES} bytes once decompressed"
        ));
    }
    r.finish(0).map_err(|e| e.to_string())
}

/// What became of a file.
enum Shipped {
    /// Handed over whole (events, dead letters and its done-mark, whose value this is).
    Done(Vec<u8>),
    /// Not readable now; tried again at the next scan.
    Later,
    /// The agent is stopping.
    Stopping,
}

/// Ships one settled file; with `hash`, hashes it first (its mark then carries the hash).
fn ship_file(ctx: &Ctx, path: &Path, rel: &Path, size: u64, key: Vec<u8>, hash: bool) -> Shipped {
    let name = rel.display().to_string();
    let mut value = b"done".to_vec();
    let done = |ctx: &Ctx, value: &[u8]| {
        ctx.send(Item::Mark {
            key: key.clone(),
            value: value.to_vec(),
        })
    };
    let shipped = |ok: bool, value: &[u8]| {
        if ok {
            Shipped::Done(value.to_vec())
        } else {
            Shipped::Stopping
        }
    };
    if size > MAX_FILE_BYTES {
        return shipped(ctx.dead(
            format!("{name}: {size} bytes, larger than CloudTrail's limit of {MAX_FILE_BYTES} bytes for a log file"),
            Vec::new(),
        ) && done(ctx, &value), &value);
    }
    if hash {
        match hash_file(path) {
            Ok(h) => value = digests::hashed_value(&h, ""),
            Err(e) => {
                if recently_changed(ctx, path) {
                    tracing::info!(source = %ctx.name, file = %name, error = %e, "cannot decode yet; trying again at the next scan");
                    return Shipped::Later;
                }
                return shipped(
                    ctx.dead(format!("{name}: {e}"), Vec::new()) && done(ctx, &value),
                    &value,
                );
            }
        }
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
    let opened = if hash {
        // Checked whole by the hash above.
        Decoder::new(file, InputFormat::LogFile, limits)
    } else {
        Decoder::new_verified(file, InputFormat::LogFile, limits)
    };
    let decoder = match opened {
        Ok(d) => d,
        Err(e) => {
            if recently_changed(ctx, path) {
                tracing::info!(source = %ctx.name, file = %name, error = %e, "cannot decode yet; trying again at the next scan");
                return Shipped::Later;
            }
            return shipped(
                ctx.dead(format!("{name}: {e}"), Vec::new()) && done(ctx, &value),
                &value,
            );
        }
    };
    let mut events = 0u64;
    // Handed over one behind: the last goes with the file's done-mark as one item.
    let mut held = None;
    for item in decoder {
        let ok = match item {
            Ok(item) => match item.result {
                Ok(ev) => {
                    events += 1;
                    held.replace(ev).is_none_or(|prev| ctx.event(prev))
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
    let ok = match held {
        Some(last) => ctx.last_event(last, key.clone(), value.clone()),
        None => done(ctx, &value),
    };
    shipped(ok, &value)
}
