//! The agent's durable spool.
//!
//! # Layout
//!
//! ```text
//! spool/
//!   lock            held (flock) by the process that has the spool open
//!   spool.key       the data key: 32 random bytes, mode 0600 (unless `spool_key_file` moves it)
//!   segments/<first seq>.seg   append-only segment files of sealed records, rolled at 32 MiB
//!   dead-letters    append-only sealed dead letters (see [`dead`])
//!   requests/       replay and purge requests from `orgtrail agent dead-letters` (see [`control`])
//!   state/          sled: acknowledged chunks, source positions of deleted segments, next seq
//! ```
//!
//! Segment and dead-letter records are framed and sealed as described in `record.rs`:
//! a 28-byte header (magic `OTS2`, kind, first seq, count, length, CRC-32), then
//! `nonce || AES-256-GCM(plaintext) || tag` under the spool's data key, with the kind and
//! sequence numbers as associated data. A *chunk* record holds `count` events
//! (`len u32 || bytes` each) and is what goes on the wire as one batch; a *mark* record holds
//! a source position (`key len u16 || key || value`) written together with the events read
//! before it, so a source never advances past events that are not durable. The sled state
//! holds no event content: sequence numbers, and source positions (file paths and offsets).
//!
//! # Durability
//!
//! An append is one `write` and one `fdatasync` of the segment (dead letters found by a
//! source are written and synced to their file first). An acknowledgement writes the chunk's
//! seq into sled without a flush: after a crash an acknowledged chunk may be sent again, which
//! the collector's dedup makes a no-op. A segment whose chunks are all acknowledged is deleted
//! (after sled is flushed, so no sequence number is ever reused); the segment being written
//! goes too once it is drained and has had no append for a second, and on a clean stop. At
//! open, a torn record at the end of the newest segment (a crash during an append that was
//! never confirmed) is cut off; a damaged record anywhere else is reported, its bytes and
//! everything after it in that segment are kept aside in a `.corrupt` file, and the spool
//! opens with what is intact.
//!
//! # The key
//!
//! Created on first run (temporary file, fsync, link into place; never over an existing
//! file). Opening refuses a key file that is unreadable, not 32 bytes, or open to group or
//! others, and refuses to create a new key while sealed data exists (it could not read it).
//! A sealed record that does not open under the key stops the open with the file's name.
//!
//! # Earlier spools
//!
//! Spools of the earlier plain format (`OTS1` records, dead letters in sled) open and drain:
//! their records are read as they are, new appends go to new sealed segments, the plain
//! segments are deleted once acknowledged, and plain dead letters move into the sealed
//! dead-letter file at the first open.
//!
//! # Disk space
//!
//! An append first checks the file system's free space: below `min_free_bytes` (plus the
//! append) it fails with [`SpoolError::DiskFull`] before writing anything, which keeps room
//! for the small sled writes (sled stops for good after an I/O error). A write that fails
//! anyway (`ENOSPC`) is cut back to the last whole record. Either way nothing is half-written
//! and the caller may retry the same append later.
//!
//! # Threads
//!
//! One thread owns the spool ([`SpoolHandle`]); the async shipper and the sources talk to it
//! over a bounded channel and wait for a oneshot answer, so no file or sled operation runs on
//! the async runtime. Why not events in sled: sled keeps values inline in its tree nodes and
//! rewrites whole nodes on every change, which cost 4x the bytes on disk and hundreds of MiB
//! of memory for a spool of a few hundred MiB.

pub mod control;
pub mod dead;
mod record;
mod thread;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use orgtrail_crypto::{CryptoError, DataKey};
use thiserror::Error;

pub use control::{Outcome, Request};
pub use dead::{DeadLetter, NewDead};
use record::{HEADER, KIND_CHUNK, KIND_MARK};
pub use thread::{Appended, Noted, SpoolHandle};

/// A segment is rolled once it holds this many bytes.
pub const SEGMENT_BYTES: u64 = 32 << 20;
/// The key file's default name in the spool directory.
pub const KEY_FILE: &str = "spool.key";
/// A drained segment still being written is deleted after this long without appends.
const IDLE_RETIRE: Duration = Duration::from_secs(1);

const ACKED: u8 = b'a';
const LEGACY_DEAD: u8 = b'x';
const MARK: u8 = b'p';
const NEXT: &[u8] = b"mnext_seq";

/// Spool errors.
#[derive(Debug, Error)]
pub enum SpoolError {
    #[error("spool state storage error: {0}")]
    Sled(#[from] sled::Error),
    // The causes below are in the message and not chained as a `source`, so that a log line
    // (`%e`) says everything and a printed error chain says nothing twice.
    #[error("spool file {path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("the spool {0} is in use by another process (is an agent running on it?)")]
    Locked(PathBuf),
    #[error("spool is corrupt: {0}")]
    Corrupt(String),
    #[error("spool key: {0}")]
    Key(CryptoError),
    #[error(
        "the spool {dir} holds sealed data but its key file {key} is missing: restore that file (a new key could not read the data); refusing to create one"
    )]
    KeyMissing { dir: PathBuf, key: PathBuf },
    #[error("{file} does not open with the spool key: wrong key file, or the file was altered")]
    WrongKey { file: PathBuf },
    #[error("sealing a spool record failed: {0}")]
    Seal(CryptoError),
    #[error("spool disk full: {free} bytes free in {dir}, reserve {reserve} bytes")]
    DiskFull {
        dir: PathBuf,
        free: u64,
        reserve: u64,
    },
    #[error("spool disk full: cannot write {path}: {cause}")]
    NoSpace {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("the spool has stopped")]
    Stopped,
}

impl SpoolError {
    /// True for a full disk: retry the same append once space returns.
    pub fn is_disk_full(&self) -> bool {
        matches!(
            self,
            SpoolError::DiskFull { .. } | SpoolError::NoSpace { .. }
        )
    }
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |cause| SpoolError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// A failed write: a full disk (ENOSPC, EDQUOT) is told apart.
pub(crate) fn write_error(path: &Path, cause: std::io::Error) -> SpoolError {
    if matches!(
        cause.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) {
        SpoolError::NoSpace {
            path: path.to_path_buf(),
            cause,
        }
    } else {
        SpoolError::Io {
            path: path.to_path_buf(),
            cause,
        }
    }
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Bytes available to this process in the file system holding `dir`.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

fn state_key(prefix: u8, seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = prefix;
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn seq_of(k: &[u8]) -> Result<u64, SpoolError> {
    let a: [u8; 8] = k
        .get(1..9)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| SpoolError::Corrupt("bad key".into()))?;
    Ok(u64::from_be_bytes(a))
}

fn encode_events(events: &[Vec<u8>], out: &mut Vec<u8>) {
    for e in events {
        out.extend_from_slice(&(e.len() as u32).to_be_bytes());
        out.extend_from_slice(e);
    }
}

fn decode_events(v: &bytes::Bytes, count: u32) -> Result<Vec<bytes::Bytes>, SpoolError> {
    let bad = || SpoolError::Corrupt("truncated chunk".into());
    // Each event takes at least 4 bytes: a count the payload cannot hold sizes nothing.
    let mut out = Vec::with_capacity((count as usize).min(v.len() / 4));
    let mut at = 0usize;
    for _ in 0..count {
        let len: [u8; 4] = v
            .get(at..at + 4)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(bad)?;
        let len = u32::from_be_bytes(len) as usize;
        at += 4;
        if at + len > v.len() {
            return Err(bad());
        }
        out.push(v.slice(at..at + len));
        at += len;
    }
    Ok(out)
}

fn encode_mark(k: &[u8], v: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(k.len() as u16).to_be_bytes());
    out.extend_from_slice(k);
    out.extend_from_slice(v);
}

fn decode_mark(p: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let n = usize::from(u16::from_be_bytes(p.get(..2)?.try_into().ok()?));
    Some((p.get(2..2 + n)?.to_vec(), p.get(2 + n..)?.to_vec()))
}

/// A chunk of spooled events: one wire batch.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub first_seq: u64,
    /// The events, slices of one buffer read from the segment.
    pub events: Vec<bytes::Bytes>,
    /// Size of the stored chunk, for the spool's accounting when it is acknowledged.
    pub stored_len: u64,
}

/// What one append makes durable. An append that fails hands it back; dead letters already
/// written are taken out of it, so retrying the same batch writes nothing twice.
#[derive(Debug, Default, Clone)]
pub struct AppendBatch {
    pub events: Vec<Vec<u8>>,
    pub dead: Vec<NewDead>,
    /// Source positions (key, value), recorded with the events.
    pub marks: Vec<(Vec<u8>, Vec<u8>)>,
}

impl AppendBatch {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.dead.is_empty() && self.marks.is_empty()
    }
}

/// How to open a spool.
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    pub dir: PathBuf,
    /// The data key's file (default `DIR/spool.key`).
    pub key_file: PathBuf,
    /// Free space kept in the file system: appends pause below it (0: none).
    pub min_free_bytes: u64,
    /// Events and bytes per chunk (one wire batch), for replayed dead letters.
    pub chunk_events: usize,
    pub chunk_bytes: usize,
    /// Opened by a command (dead-letter replay or purge), not the agent: acknowledged
    /// segments are left alone.
    pub maintenance: bool,
    /// How long to wait for another holder of the spool's lock.
    pub lock_wait: Duration,
}

impl SpoolOptions {
    pub fn new(dir: &Path) -> Self {
        SpoolOptions {
            dir: dir.to_path_buf(),
            key_file: dir.join(KEY_FILE),
            min_free_bytes: 0,
            chunk_events: 1000,
            chunk_bytes: 4 << 20,
            maintenance: false,
            lock_wait: Duration::from_secs(10),
        }
    }
}

/// Where a pending chunk is.
#[derive(Debug, Clone, Copy)]
struct Loc {
    segment: u64,
    offset: u64,
    len: u32,
    count: u32,
    sealed: bool,
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    file: File,
    /// Chunks (first seq) not yet acknowledged.
    pending: usize,
    /// Every chunk in the segment, to clear their acknowledgement keys when it goes.
    chunks: Vec<u64>,
    /// Source positions recorded in the segment, persisted to sled before it goes.
    marks: Vec<(Vec<u8>, Vec<u8>)>,
}

#[derive(Debug)]
struct Writer {
    segment: u64,
    file: File,
    size: u64,
}

#[derive(Debug, Default)]
struct Meta {
    segments: BTreeMap<u64, Segment>,
    pending: BTreeMap<u64, Loc>,
    pending_bytes: u64,
    /// Events in `pending`'s chunks.
    pending_events: u64,
    next_seq: u64,
    /// Latest source positions (those in live segments win over sled's).
    marks: HashMap<Vec<u8>, Vec<u8>>,
}

/// The spool, owned by one thread (see [`SpoolHandle`] for the agent's shared handle).
#[derive(Debug)]
pub struct Spool {
    opts: SpoolOptions,
    key: DataKey,
    state: sled::Tree,
    db: sled::Db,
    meta: Meta,
    writer: Option<Writer>,
    dead: dead::DeadFile,
    last_append: Instant,
    _lock: File,
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.seg")
}

/// Opens the sled state database. sled locks its files, and a sled instance just dropped in
/// this process can hold the lock for a moment while its threads finish; a lock held
/// elsewhere is waited for up to 3 seconds before the spool is reported as in use.
fn open_state(dir: &Path) -> Result<sled::Db, SpoolError> {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut wait = Duration::from_millis(5);
    loop {
        match sled::Config::new()
            .path(dir.join("state"))
            .cache_capacity(4 << 20)
            .open()
        {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e)) if e.to_string().starts_with("could not acquire lock") => {
                if Instant::now() >= deadline {
                    return Err(SpoolError::Locked(dir.to_path_buf()));
                }
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_millis(200));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn segment_files(seg_dir: &Path) -> Result<Vec<(u64, PathBuf)>, SpoolError> {
    let mut names: Vec<(u64, PathBuf)> = Vec::new();
    for e in std::fs::read_dir(seg_dir).map_err(io(seg_dir))? {
        let p = e.map_err(io(seg_dir))?.path();
        if p.extension().is_some_and(|x| x == "seg")
            && let Some(n) = p
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse().ok())
        {
            names.push((n, p));
        }
    }
    names.sort();
    Ok(names)
}

/// Loads the spool's key, or creates it when the spool holds nothing sealed.
fn load_or_create_key(opts: &SpoolOptions) -> Result<DataKey, SpoolError> {
    let path = &opts.key_file;
    match std::fs::symlink_metadata(path) {
        Ok(_) => orgtrail_crypto::load_key_file(path).map_err(SpoolError::Key),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let seg_dir = opts.dir.join("segments");
            let sealed = segment_files(&seg_dir)?
                .iter()
                .any(|(_, p)| record::starts_sealed(p))
                || record::starts_sealed(&opts.dir.join(dead::FILE));
            if sealed {
                return Err(SpoolError::KeyMissing {
                    dir: opts.dir.clone(),
                    key: path.clone(),
                });
            }
            if let Some(parent) = path.parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            let k = orgtrail_crypto::create_key_file(path).map_err(SpoolError::Key)?;
            tracing::info!(key = %path.display(), "created the spool's data key (keep it with the spool: without it the spool cannot be read)");
            Ok(k)
        }
        Err(e) => Err(SpoolError::Io {
            path: path.clone(),
            cause: e,
        }),
    }
}

impl Spool {
    /// Opens (or creates) the spool in `dir` with default options.
    pub fn open_dir(dir: &Path) -> Result<Self, SpoolError> {
        Self::open(SpoolOptions::new(dir))
    }

    /// Opens (or creates) the spool, recovering from a crash if there was one.
    pub fn open(opts: SpoolOptions) -> Result<Self, SpoolError> {
        let dir = opts.dir.clone();
        let seg_dir = dir.join("segments");
        std::fs::create_dir_all(&seg_dir).map_err(io(&seg_dir))?;
        let lock = control::lock(&dir, opts.lock_wait)?;
        let key = load_or_create_key(&opts)?;
        let db = open_state(&dir)?;
        let state = db.open_tree("spool")?;
        let mut meta = Meta::default();
        let mut acked = HashSet::new();
        for kv in state.scan_prefix([ACKED]) {
            acked.insert(seq_of(&kv?.0)?);
        }
        meta.next_seq = match state.get(NEXT)? {
            Some(v) => u64::from_be_bytes(
                v[..]
                    .try_into()
                    .map_err(|_| SpoolError::Corrupt("next seq".into()))?,
            ),
            None => 1,
        };
        let names = segment_files(&seg_dir)?;
        let newest = names.last().map(|(n, _)| *n);
        for (first, path) in names {
            let s = record::scan(&path, |k| k == KIND_MARK)?;
            if s.good_end < s.size {
                let lost = s.size - s.good_end;
                if Some(first) == newest {
                    tracing::warn!(segment = %path.display(), bytes = lost, "cutting off an incomplete record at the end of the spool (an append that was interrupted and never confirmed)");
                } else {
                    let aside = path.with_extension("corrupt");
                    let mut f = File::open(&path).map_err(io(&path))?;
                    let mut rest = Vec::new();
                    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(s.good_end))
                        .and_then(|_| f.read_to_end(&mut rest))
                        .map_err(io(&path))?;
                    std::fs::write(&aside, &rest).map_err(io(&aside))?;
                    tracing::error!(segment = %path.display(), offset = s.good_end, bytes = lost, kept_in = %aside.display(), "spool segment is damaged: the events after this offset cannot be read and were not shipped");
                }
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io(&path))?;
                f.set_len(s.good_end).map_err(io(&path))?;
                f.sync_all().map_err(io(&path))?;
            }
            let file = File::open(&path).map_err(io(&path))?;
            let wrong_key = || SpoolError::WrongKey { file: path.clone() };
            let mut seg = Segment {
                path: path.clone(),
                file,
                pending: 0,
                chunks: Vec::new(),
                marks: Vec::new(),
            };
            let mut checked = false;
            for (hd, offset, payload) in s.records {
                if hd.kind == KIND_MARK {
                    let payload = payload.unwrap_or_default();
                    let plain = record::open_payload(&key, &hd, &payload)
                        .map_err(|e| e.unwrap_or_else(wrong_key))?;
                    checked |= hd.sealed;
                    if let Some(m) = decode_mark(&plain) {
                        meta.marks.insert(m.0.clone(), m.1.clone());
                        seg.marks.push(m);
                    }
                    continue;
                }
                if hd.kind != KIND_CHUNK {
                    continue;
                }
                if hd.sealed && !checked {
                    // One record per segment is opened now, so a wrong key stops the start
                    // rather than the shipping.
                    let mut payload = vec![0u8; hd.len as usize];
                    seg.file
                        .read_exact_at(&mut payload, offset + HEADER as u64)
                        .map_err(io(&path))?;
                    record::open_payload(&key, &hd, &payload)
                        .map_err(|e| e.unwrap_or_else(wrong_key))?;
                    checked = true;
                }
                // A sequence number past 2^62 is no sequence this spool handed out (a
                // checksummed but crafted record): damage, reported, never an overflow.
                let end = hd
                    .first_seq
                    .checked_add(u64::from(hd.count))
                    .filter(|e| *e < 1 << 62)
                    .ok_or_else(|| {
                        SpoolError::Corrupt(format!(
                            "{}: a chunk at offset {offset} claims sequence numbers {} and {} more, beyond any this spool hands out",
                            path.display(),
                            hd.first_seq,
                            hd.count
                        ))
                    })?;
                meta.next_seq = meta.next_seq.max(end);
                seg.chunks.push(hd.first_seq);
                if !acked.contains(&hd.first_seq) {
                    seg.pending += 1;
                    meta.pending_bytes += HEADER as u64 + u64::from(hd.len);
                    meta.pending_events += u64::from(hd.count);
                    meta.pending.insert(
                        hd.first_seq,
                        Loc {
                            segment: first,
                            offset,
                            len: hd.len,
                            count: hd.count,
                            sealed: hd.sealed,
                        },
                    );
                }
            }
            meta.segments.insert(first, seg);
        }
        let mut dead = dead::DeadFile::open(&dir, &key)?;
        if let Some(m) = dead.max_seq {
            meta.next_seq = meta.next_seq.max(m + 1);
        }
        // Dead letters of the earlier plain format move into the sealed file.
        let mut legacy = Vec::new();
        for kv in state.scan_prefix([LEGACY_DEAD]) {
            let (k, v) = kv?;
            let len = v
                .get(..2)
                .map_or(0, |s| usize::from(u16::from_be_bytes([s[0], s[1]])));
            legacy.push(DeadLetter {
                seq: seq_of(&k)?,
                time_ms: dead::now_ms(),
                source: "(earlier spool format)".into(),
                reason: String::from_utf8_lossy(v.get(2..2 + len).unwrap_or_default()).into_owned(),
                bytes: v.get(2 + len..).unwrap_or_default().to_vec(),
            });
        }
        if !legacy.is_empty() {
            dead.append(&key, &legacy)?;
            let mut b = sled::Batch::default();
            for d in &legacy {
                b.remove(&state_key(LEGACY_DEAD, d.seq)[..]);
                meta.next_seq = meta.next_seq.max(d.seq + 1);
            }
            state.apply_batch(b)?;
            db.flush()?;
            tracing::info!(
                count = legacy.len(),
                "moved the dead letters of the earlier spool format into the sealed dead-letter file"
            );
        }
        let mut spool = Spool {
            opts,
            key,
            state,
            db,
            meta,
            writer: None,
            dead,
            last_append: Instant::now(),
            _lock: lock,
        };
        if !spool.opts.maintenance {
            // Segments emptied before a crash go now; appends always start a fresh segment.
            let done: Vec<u64> = spool
                .meta
                .segments
                .iter()
                .filter(|(_, s)| s.pending == 0)
                .map(|(k, _)| *k)
                .collect();
            spool.retire(&done)?;
        }
        Ok(spool)
    }

    fn seg_dir(&self) -> PathBuf {
        self.opts.dir.join("segments")
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.opts.dir
    }

    /// Deletes fully acknowledged segments (not the one being written).
    fn retire(&mut self, firsts: &[u64]) -> Result<(), SpoolError> {
        if firsts.is_empty() {
            return Ok(());
        }
        let active = self.writer.as_ref().map(|w| w.segment);
        let mut gone = Vec::new();
        let mut b = sled::Batch::default();
        for f in firsts {
            if Some(*f) == active {
                continue;
            }
            let Some(seg) = self.meta.segments.get(f) else {
                continue;
            };
            if seg.pending > 0 {
                continue;
            }
            for c in &seg.chunks {
                b.remove(&state_key(ACKED, *c)[..]);
            }
            for (k, v) in &seg.marks {
                // Only the latest value of a mark is kept.
                if self.meta.marks.get(k) == Some(v) {
                    let mut sk = vec![MARK];
                    sk.extend_from_slice(k);
                    b.insert(sk, &v[..]);
                }
            }
            gone.push(*f);
        }
        if gone.is_empty() {
            return Ok(());
        }
        b.insert(NEXT, &self.meta.next_seq.to_be_bytes()[..]);
        self.state.apply_batch(b)?;
        // The marks and the next seq are durable before the segment that held them goes.
        self.db.flush()?;
        for f in gone {
            if let Some(seg) = self.meta.segments.remove(&f) {
                std::fs::remove_file(&seg.path).map_err(io(&seg.path))?;
                // Its marks are in the state database now: memory keeps only live ones.
                for (k, v) in &seg.marks {
                    if self.meta.marks.get(k) == Some(v) {
                        self.meta.marks.remove(k);
                    }
                }
            }
        }
        Ok(())
    }

    /// Makes `events` durable as chunks of at most `max_events` / `max_bytes`, `dead` as dead
    /// letters, and `marks` as the sources' new positions, all at once.
    pub fn append(
        &mut self,
        events: &[Vec<u8>],
        dead: &[NewDead],
        max_events: usize,
        max_bytes: usize,
    ) -> Result<(), SpoolError> {
        let mut b = AppendBatch {
            events: events.to_vec(),
            dead: dead.to_vec(),
            marks: Vec::new(),
        };
        self.append_batch(&mut b, max_events, max_bytes).map(|_| ())
    }

    /// Makes `batch` durable: its dead letters first (they are taken out of the batch once
    /// written), then its events in chunks of at most `max_events` / `max_bytes` together
    /// with its marks in one write. Returns the chunks written: (first seq, number of events).
    /// On [`SpoolError::is_disk_full`] nothing of the events or marks was written.
    pub fn append_batch(
        &mut self,
        batch: &mut AppendBatch,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, u32)>, SpoolError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let reserve = self.opts.min_free_bytes;
        let check_space = |need: u64| -> Result<(), SpoolError> {
            if reserve == 0 {
                return Ok(());
            }
            match free_bytes(&self.opts.dir) {
                Some(free) if free < reserve.saturating_add(need) => Err(SpoolError::DiskFull {
                    dir: self.opts.dir.clone(),
                    free,
                    reserve,
                }),
                _ => Ok(()),
            }
        };
        if !batch.dead.is_empty() {
            let now = dead::now_ms();
            let mut next = self.meta.next_seq;
            let letters: Vec<DeadLetter> = batch
                .dead
                .iter()
                .map(|d| {
                    next += 1;
                    DeadLetter {
                        seq: next - 1,
                        time_ms: now,
                        source: d.source.clone(),
                        reason: d.reason.clone(),
                        bytes: d.bytes.clone(),
                    }
                })
                .collect();
            let need: u64 = letters.iter().map(|d| d.bytes.len() as u64 + 128).sum();
            check_space(need)?;
            self.dead.append(&self.key, &letters)?;
            self.meta.next_seq = next;
            batch.dead.clear();
        }
        let mut next = self.meta.next_seq;
        let mut buf = Vec::new();
        let mut payload = Vec::new();
        let mut chunks: Vec<(u64, u64, u32, u32)> = Vec::new(); // (seq, offset in buf, len, count)
        let events = &batch.events;
        let mut start = 0;
        while start < events.len() {
            let mut end = start;
            let mut size = 0;
            while end < events.len()
                && end - start < max_events.max(1)
                && (end == start || size + events[end].len() <= max_bytes)
            {
                size += events[end].len();
                end += 1;
            }
            payload.clear();
            encode_events(&events[start..end], &mut payload);
            let count = (end - start) as u32;
            let at = buf.len();
            record::seal_record(&self.key, KIND_CHUNK, next, count, &payload, &mut buf)?;
            let len = (buf.len() - at - HEADER) as u32;
            chunks.push((next, at as u64, len, count));
            next += u64::from(count);
            start = end;
        }
        for (k, v) in &batch.marks {
            payload.clear();
            encode_mark(k, v, &mut payload);
            record::seal_record(&self.key, KIND_MARK, 0, 0, &payload, &mut buf)?;
        }
        if buf.is_empty() {
            return Ok(Vec::new());
        }
        check_space(buf.len() as u64)?;
        // Roll to a new segment when the current one is full (or none is open yet).
        let mut rolled = None;
        if self
            .writer
            .as_ref()
            .is_none_or(|w| w.size > 0 && w.size + buf.len() as u64 > SEGMENT_BYTES)
        {
            let first = self.meta.next_seq;
            let path = self.seg_dir().join(segment_name(first));
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| write_error(&path, e))?;
            let size = file.metadata().map_err(io(&path))?.len();
            if let Err(e) = sync_dir(&self.seg_dir()) {
                drop(file);
                if size == 0 {
                    let _ = std::fs::remove_file(&path);
                }
                return Err(e);
            }
            let reader = File::open(&path).map_err(io(&path))?;
            self.meta.segments.entry(first).or_insert_with(|| Segment {
                path: path.clone(),
                file: reader,
                pending: 0,
                chunks: Vec::new(),
                marks: Vec::new(),
            });
            rolled = self.writer.replace(Writer {
                segment: first,
                file,
                size,
            });
        }
        let seg_dir = self.seg_dir();
        let Some(w) = self.writer.as_mut() else {
            return Err(SpoolError::Corrupt("no segment open".into()));
        };
        let path = seg_dir.join(segment_name(w.segment));
        let base = w.size;
        if let Err(e) = w.file.write_all(&buf).and_then(|()| w.file.sync_data()) {
            // Cut back to the last whole record, so the segment stays appendable; when even
            // that fails, the next append starts a new segment.
            if w.file
                .set_len(base)
                .and_then(|()| w.file.sync_data())
                .is_err()
            {
                self.writer = None;
            }
            return Err(write_error(&path, e));
        }
        w.size += buf.len() as u64;
        let segment = w.segment;
        self.meta.next_seq = next;
        let mut added = 0;
        for &(seq, off, len, count) in &chunks {
            self.meta.pending.insert(
                seq,
                Loc {
                    segment,
                    offset: base + off,
                    len,
                    count,
                    sealed: true,
                },
            );
            added += HEADER as u64 + u64::from(len);
            self.meta.pending_events += u64::from(count);
        }
        self.meta.pending_bytes += added;
        for (k, v) in &batch.marks {
            self.meta.marks.insert(k.clone(), v.clone());
        }
        if let Some(seg) = self.meta.segments.get_mut(&segment) {
            seg.pending += chunks.len();
            seg.chunks.extend(chunks.iter().map(|c| c.0));
            seg.marks.extend(batch.marks.iter().cloned());
        }
        self.last_append = Instant::now();
        if let Some(old) = rolled {
            self.retire(&[old.segment])?;
        }
        Ok(chunks.iter().map(|c| (c.0, c.3)).collect())
    }

    /// The latest durable position a source recorded under `key`. Marks of live segments are
    /// in memory; older ones are read from the state database.
    pub fn mark(&self, key: &[u8]) -> Option<Vec<u8>> {
        if let Some(v) = self.meta.marks.get(key) {
            return Some(v.clone());
        }
        let mut k = vec![MARK];
        k.extend_from_slice(key);
        match self.state.get(k) {
            Ok(v) => v.map(|v| v.to_vec()),
            Err(e) => {
                tracing::error!(error = %e, "cannot read a source position from the spool");
                None
            }
        }
    }

    /// Forgets the marks whose keys are in `from..to` (positions a source no longer needs: the
    /// `s3` source's processed keys of days past its lookback), in memory, in live segments
    /// (so that retiring them does not write them back) and in the state database. Not
    /// flushed: a forgetting lost in a crash is done again. Returns how many were forgotten.
    pub fn forget_marks(&mut self, from: &[u8], to: &[u8]) -> Result<usize, SpoolError> {
        let in_range = |k: &[u8]| k >= from && k < to;
        let before = self.meta.marks.len();
        self.meta.marks.retain(|k, _| !in_range(k));
        let mut n = before - self.meta.marks.len();
        for seg in self.meta.segments.values_mut() {
            seg.marks.retain(|(k, _)| !in_range(k));
        }
        let (mut lo, mut hi) = (vec![MARK], vec![MARK]);
        lo.extend_from_slice(from);
        hi.extend_from_slice(to);
        let mut b = sled::Batch::default();
        for kv in self.state.range(lo..hi) {
            let (k, _) = kv?;
            b.remove(k);
            n += 1;
        }
        self.state.apply_batch(b)?;
        Ok(n)
    }

    /// The next pending chunk starting at or after `from`.
    pub fn chunk_from(&self, from: u64) -> Result<Option<Chunk>, SpoolError> {
        let Some((&first_seq, &loc)) = self.meta.pending.range(from..).next() else {
            return Ok(None);
        };
        let seg =
            self.meta.segments.get(&loc.segment).ok_or_else(|| {
                SpoolError::Corrupt(format!("segment of chunk {first_seq} missing"))
            })?;
        let mut stored = vec![0u8; loc.len as usize];
        seg.file
            .read_exact_at(&mut stored, loc.offset + HEADER as u64)
            .map_err(io(&seg.path))?;
        let hd = record::Header::chunk(loc.sealed, first_seq, loc.count, loc.len);
        let plain = record::open_payload(&self.key, &hd, &stored).map_err(|e| {
            e.unwrap_or_else(|| SpoolError::WrongKey {
                file: seg.path.clone(),
            })
        })?;
        Ok(Some(Chunk {
            first_seq,
            events: decode_events(&plain.into(), loc.count)?,
            stored_len: HEADER as u64 + u64::from(loc.len),
        }))
    }

    /// The acknowledgement of the chunk at `chunk.0` arrived: forget it, keeping the events
    /// at `rejected` (positions in the chunk) as dead letters with their reasons.
    pub fn acknowledge(
        &mut self,
        chunk: (u64, u64),
        rejected: &[(usize, String)],
    ) -> Result<(), SpoolError> {
        let first_seq = chunk.0;
        if !rejected.is_empty()
            && let Some(c) = self.chunk_from(first_seq)?
            && c.first_seq == first_seq
        {
            let now = dead::now_ms();
            let letters: Vec<DeadLetter> = rejected
                .iter()
                .filter_map(|(i, reason)| {
                    c.events.get(*i).map(|e| DeadLetter {
                        seq: first_seq + *i as u64,
                        time_ms: now,
                        source: "collector".into(),
                        reason: reason.clone(),
                        bytes: e.to_vec(),
                    })
                })
                .collect();
            self.dead.append(&self.key, &letters)?;
        }
        self.state
            .insert(&state_key(ACKED, first_seq)[..], &[][..])?;
        // No flush: see the module documentation.
        let Some(loc) = self.meta.pending.remove(&first_seq) else {
            return Ok(());
        };
        self.meta.pending_bytes = self
            .meta
            .pending_bytes
            .saturating_sub(HEADER as u64 + u64::from(loc.len));
        self.meta.pending_events = self
            .meta
            .pending_events
            .saturating_sub(u64::from(loc.count));
        let emptied = match self.meta.segments.get_mut(&loc.segment) {
            Some(seg) => {
                seg.pending = seg.pending.saturating_sub(1);
                (seg.pending == 0).then_some(loc.segment)
            }
            None => None,
        };
        if let Some(s) = emptied {
            self.retire(&[s])?;
        }
        Ok(())
    }

    /// Deletes the segment being written once it is drained and has had no append for a
    /// while (or at once with `now`).
    pub fn retire_idle(&mut self, now: bool) -> Result<(), SpoolError> {
        let Some(w) = &self.writer else {
            return Ok(());
        };
        let seg = w.segment;
        let drained = self.meta.segments.get(&seg).is_some_and(|s| s.pending == 0);
        if drained && (now || self.last_append.elapsed() >= IDLE_RETIRE) && !self.opts.maintenance {
            self.writer = None;
            self.retire(&[seg])?;
        }
        Ok(())
    }

    /// True when nothing waits to be acknowledged.
    pub fn is_empty(&self) -> bool {
        self.meta.pending.is_empty()
    }

    /// Bytes waiting to be acknowledged.
    pub fn pending_bytes(&self) -> u64 {
        self.meta.pending_bytes
    }

    /// Events waiting to be acknowledged.
    pub fn pending_events(&self) -> u64 {
        self.meta.pending_events
    }

    /// How many dead letters are held.
    pub fn dead_letter_count(&self) -> u64 {
        self.dead.count()
    }

    /// The dead letters.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, SpoolError> {
        self.dead.all(&self.key)
    }

    /// Carries out a replay or purge of dead letters.
    pub fn apply(&mut self, req: &Request) -> Result<Outcome, SpoolError> {
        let all = self.dead.all(&self.key)?;
        let mut out = Outcome::default();
        let mut keep = Vec::with_capacity(all.len());
        match req {
            Request::Purge { before_ms } => {
                for d in all {
                    if d.time_ms < *before_ms {
                        out.purged += 1;
                    } else {
                        keep.push(d);
                    }
                }
                if out.purged > 0 {
                    self.dead.rewrite(&self.key, &keep)?;
                }
            }
            Request::Replay { reason } => {
                let mut events = Vec::new();
                for d in all {
                    let chosen = reason
                        .as_ref()
                        .is_none_or(|r| d.reason.contains(r.as_str()));
                    if chosen
                        && !d.bytes.is_empty()
                        && orgtrail_core::CloudTrailEvent::parse(d.bytes.clone()).is_ok()
                    {
                        events.push(d.bytes);
                        out.replayed += 1;
                    } else {
                        out.not_replayable += u64::from(chosen);
                        keep.push(d);
                    }
                }
                if !events.is_empty() {
                    // Spooled first: a crash before the rewrite replays them again, which the
                    // collector's dedup absorbs; the other order could lose them.
                    let mut batch = AppendBatch {
                        events,
                        ..AppendBatch::default()
                    };
                    let (e, b) = (self.opts.chunk_events, self.opts.chunk_bytes);
                    self.append_batch(&mut batch, e, b)?;
                    self.dead.rewrite(&self.key, &keep)?;
                }
            }
        }
        out.left = keep.len() as u64;
        Ok(out)
    }

    /// Carries out the requests waiting in the request directory.
    pub fn serve_requests(&mut self) {
        for (id, req) in control::pending(&self.opts.dir) {
            let outcome = match req {
                Ok(req) => match self.apply(&req) {
                    Ok(o) => {
                        tracing::info!(request = ?req, replayed = o.replayed, not_replayable = o.not_replayable, purged = o.purged, left = o.left, "dead-letter request done");
                        o
                    }
                    Err(e) => {
                        tracing::error!(request = ?req, error = %e, "dead-letter request failed");
                        Outcome {
                            error: Some(e.to_string()),
                            ..Outcome::default()
                        }
                    }
                },
                Err(e) => Outcome {
                    error: Some(format!("unreadable request: {e}")),
                    ..Outcome::default()
                },
            };
            if let Err(e) = control::answer(&self.opts.dir, &id, &outcome) {
                tracing::error!(error = %e, "cannot answer a dead-letter request");
            }
        }
    }

    /// Makes the acknowledgements so far durable, and deletes the drained segment being
    /// written (called on a clean stop).
    pub fn flush(&mut self) -> Result<(), SpoolError> {
        self.retire_idle(true)?;
        self.db.flush()?;
        Ok(())
    }
}

/// Reads the dead letters of the spool in `dir` without opening it (works while an agent
/// runs: the file is append-only, and an append in progress is skipped).
pub fn read_dead_letters(dir: &Path, key_file: &Path) -> Result<Vec<DeadLetter>, SpoolError> {
    let path = dir.join(dead::FILE);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let key = orgtrail_crypto::load_key_file(key_file).map_err(SpoolError::Key)?;
    dead::read(&path, &key).map(|r| r.0)
}

/// Entry points for the fuzz targets in `fuzz/`: the record codecs, without a spool. Sealed
/// records are framed and checksummed but cannot be opened without the key, so their payloads
/// are counted, not decoded; records of the earlier plain format are decoded. Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    use std::fs::File;
    use std::os::unix::fs::FileExt;
    use std::path::Path;

    use super::record::{self, HEADER, KIND_CHUNK, KIND_MARK};
    use super::{SpoolError, decode_events, decode_mark, io};

    /// What [`decode_segment`] found.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct SegmentSummary {
        pub records: usize,
        pub marks: usize,
        pub events: usize,
        pub good_end: u64,
        pub size: u64,
    }

    /// Scans the segment file at `path` as `Spool::open` does, then decodes the events of
    /// every intact plain chunk record as `Spool::chunk_from` does.
    pub fn decode_segment(path: &Path) -> Result<SegmentSummary, SpoolError> {
        let s = record::scan(path, |k| k == KIND_MARK)?;
        let file = File::open(path).map_err(io(path))?;
        let (mut events, mut marks) = (0, 0);
        for (hd, at, payload) in &s.records {
            if hd.kind == KIND_CHUNK && !hd.sealed {
                let mut p = vec![0u8; hd.len as usize];
                file.read_exact_at(&mut p, at + HEADER as u64)
                    .map_err(io(path))?;
                events += decode_events(&p.into(), hd.count)?.len();
            }
            if hd.kind == KIND_MARK
                && !hd.sealed
                && payload.as_deref().and_then(decode_mark).is_some()
            {
                marks += 1;
            }
        }
        Ok(SegmentSummary {
            records: s.records.len(),
            marks,
            events,
            good_end: s.good_end,
            size: s.size,
        })
    }

    /// Decodes the payload of a chunk record said to hold `count` events.
    pub fn decode_chunk(payload: &[u8], count: u32) -> Result<Vec<bytes::Bytes>, SpoolError> {
        decode_events(&bytes::Bytes::copy_from_slice(payload), count)
    }

    /// Decodes the payload of a mark record: (key, value).
    pub fn decode_mark_payload(payload: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
        decode_mark(payload)
    }

    /// Decodes the plaintext of a dead-letter record.
    pub fn decode_dead_letter(payload: &[u8]) -> Option<super::DeadLetter> {
        super::dead::decode(1, payload)
    }
}

#[cfg(test)]
mod tests;
