//! The agent's durable spool.
//!
//! Events live in append-only **segment files** (`segments/<first seq>.seg`, rolled at
//! [`SEGMENT_BYTES`]); small state lives in a sled database (`state/`): acknowledged chunks,
//! dead letters, the next sequence number and the sources' positions.
//!
//! A segment is a sequence of records, each framed as
//!
//! ```text
//! magic "OTS1" | kind u8 | 0 0 0 | first_seq u64 | count u32 | len u32 | crc32 u32 | payload
//! ```
//!
//! where the CRC covers the header from `kind` on and the payload. A *chunk* record
//! (`kind` 1) holds `count` events (`len u32 || bytes` each) and is what goes on the wire as one
//! batch; a *mark* record (`kind` 2) holds a source position (`key len u16 || key || value`)
//! written together with the events read before it, so a source never advances past events
//! that are not durable.
//!
//! An append is one `write` and one `fdatasync`. An acknowledgement writes the chunk's seq into
//! sled without a flush: after a crash an acknowledged chunk may be sent again, which the
//! collector's dedup makes a no-op. A segment whose chunks are all acknowledged is deleted
//! (after sled is flushed, so no sequence number is ever reused). At open, a torn record at
//! the end of the newest segment (a crash during an append that was never confirmed) is cut
//! off; a damaged record anywhere else is reported, its bytes and everything after it in that
//! segment are kept aside in a `.corrupt` file, and the spool opens with what is intact.
//!
//! Why not events in sled: sled keeps values inline in its tree nodes and rewrites whole nodes
//! (megabytes once they hold several wire batches) on every change, which cost 4x the bytes on
//! disk and hundreds of MiB of memory for a spool of a few hundred MiB.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use thiserror::Error;

/// A segment is rolled once it holds this many bytes.
pub const SEGMENT_BYTES: u64 = 32 << 20;

const MAGIC: &[u8; 4] = b"OTS1";
const HEADER: usize = 28;
const KIND_CHUNK: u8 = 1;
const KIND_MARK: u8 = 2;
/// No record is larger than this (a wire batch is capped far below it).
const MAX_RECORD: u32 = 256 << 20;

const ACKED: u8 = b'a';
const DEAD: u8 = b'x';
const MARK: u8 = b'p';
const NEXT: &[u8] = b"mnext_seq";

/// Spool errors.
#[derive(Debug, Error)]
pub enum SpoolError {
    #[error("spool state storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error("spool file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the spool {0} is in use by another process (is an agent running on it?)")]
    Locked(PathBuf),
    #[error("spool is corrupt: {0}")]
    Corrupt(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn key(prefix: u8, seq: u64) -> [u8; 9] {
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

fn record(kind: u8, first_seq: u64, count: u32, payload: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[kind, 0, 0, 0]);
    out.extend_from_slice(&first_seq.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&out[start + 4..start + 24]);
    h.update(payload);
    out.extend_from_slice(&h.finalize().to_be_bytes());
    out.extend_from_slice(payload);
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

/// A parsed record header.
struct Header {
    kind: u8,
    first_seq: u64,
    count: u32,
    len: u32,
    crc: u32,
}

fn parse_header(h: &[u8; HEADER]) -> Option<Header> {
    if &h[..4] != MAGIC {
        return None;
    }
    let u32_at = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    let mut s = [0u8; 8];
    s.copy_from_slice(&h[8..16]);
    let hd = Header {
        kind: h[4],
        first_seq: u64::from_be_bytes(s),
        count: u32_at(16),
        len: u32_at(20),
        crc: u32_at(24),
    };
    (matches!(hd.kind, KIND_CHUNK | KIND_MARK) && hd.len <= MAX_RECORD).then_some(hd)
}

/// A dead letter: an event the agent will not ship, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub seq: u64,
    pub reason: String,
    pub bytes: Vec<u8>,
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

/// Where a pending chunk is.
#[derive(Debug, Clone, Copy)]
struct Loc {
    segment: u64,
    offset: u64,
    len: u32,
    count: u32,
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    file: Arc<File>,
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
    file: Arc<File>,
    size: u64,
}

#[derive(Debug, Default)]
struct Meta {
    segments: BTreeMap<u64, Segment>,
    pending: BTreeMap<u64, Loc>,
    pending_bytes: u64,
    next_seq: u64,
    /// Latest source positions (those in live segments win over sled's).
    marks: HashMap<Vec<u8>, Vec<u8>>,
}

/// The spool. Clones share one spool.
#[derive(Debug, Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    state: sled::Tree,
    db: sled::Db,
    meta: Mutex<Meta>,
    writer: Mutex<Option<Writer>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.seg")
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// What a scan of one segment found.
struct Scanned {
    records: Vec<(Header, u64)>,
    marks: Vec<(Vec<u8>, Vec<u8>)>,
    /// Offset of the first byte that is not an intact record.
    good_end: u64,
    size: u64,
}

fn scan(path: &Path) -> Result<Scanned, SpoolError> {
    let mut f = std::io::BufReader::with_capacity(1 << 20, File::open(path).map_err(io(path))?);
    let size = std::fs::metadata(path).map_err(io(path))?.len();
    let mut records = Vec::new();
    let mut marks = Vec::new();
    let mut at = 0u64;
    let mut payload = Vec::new();
    while at + HEADER as u64 <= size {
        let mut h = [0u8; HEADER];
        if f.read_exact(&mut h).is_err() {
            break;
        }
        let Some(hd) = parse_header(&h) else { break };
        if at + HEADER as u64 + u64::from(hd.len) > size {
            break;
        }
        payload.resize(hd.len as usize, 0);
        if f.read_exact(&mut payload).is_err() {
            break;
        }
        let mut c = crc32fast::Hasher::new();
        c.update(&h[4..24]);
        c.update(&payload);
        if c.finalize() != hd.crc {
            break;
        }
        if hd.kind == KIND_MARK
            && let Some(m) = decode_mark(&payload)
        {
            marks.push(m);
        }
        records.push((hd, at));
        at += HEADER as u64 + payload.len() as u64;
    }
    Ok(Scanned {
        records,
        marks,
        good_end: at,
        size,
    })
}

/// Opens the sled state database. sled locks its files, and a sled instance just dropped in
/// this process can hold the lock for a moment while its threads finish; a lock held
/// elsewhere is waited for up to 3 seconds before the spool is reported as in use.
fn open_state(dir: &Path) -> Result<sled::Db, SpoolError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let mut wait = std::time::Duration::from_millis(5);
    loop {
        match sled::Config::new()
            .path(dir.join("state"))
            .cache_capacity(4 << 20)
            .open()
        {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e)) if e.to_string().starts_with("could not acquire lock") => {
                if std::time::Instant::now() >= deadline {
                    return Err(SpoolError::Locked(dir.to_path_buf()));
                }
                std::thread::sleep(wait);
                wait = (wait * 2).min(std::time::Duration::from_millis(200));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, recovering from a crash if there was one.
    pub fn open(dir: &Path) -> Result<Self, SpoolError> {
        let seg_dir = dir.join("segments");
        std::fs::create_dir_all(&seg_dir).map_err(io(&seg_dir))?;
        let db = open_state(dir)?;
        let state = db.open_tree("spool")?;
        let mut meta = Meta::default();
        let mut acked = std::collections::HashSet::new();
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
        let mut names: Vec<(u64, PathBuf)> = Vec::new();
        for e in std::fs::read_dir(&seg_dir).map_err(io(&seg_dir))? {
            let p = e.map_err(io(&seg_dir))?.path();
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
        let newest = names.last().map(|(n, _)| *n);
        for (first, path) in names {
            let s = scan(&path)?;
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
            let file = Arc::new(File::open(&path).map_err(io(&path))?);
            let mut seg = Segment {
                path,
                file,
                pending: 0,
                chunks: Vec::new(),
                marks: s.marks,
            };
            for (k, v) in &seg.marks {
                meta.marks.insert(k.clone(), v.clone());
            }
            for (hd, offset) in s.records {
                if hd.kind != KIND_CHUNK {
                    continue;
                }
                meta.next_seq = meta.next_seq.max(hd.first_seq + u64::from(hd.count));
                seg.chunks.push(hd.first_seq);
                if !acked.contains(&hd.first_seq) {
                    seg.pending += 1;
                    meta.pending_bytes += HEADER as u64 + u64::from(hd.len);
                    meta.pending.insert(
                        hd.first_seq,
                        Loc {
                            segment: first,
                            offset,
                            len: hd.len,
                            count: hd.count,
                        },
                    );
                }
            }
            meta.segments.insert(first, seg);
        }
        let spool = Spool {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                state,
                db,
                meta: Mutex::new(meta),
                writer: Mutex::new(None),
            }),
        };
        // Segments emptied before a crash go now; appends always start a fresh segment.
        let done: Vec<u64> = lock(&spool.inner.meta)
            .segments
            .iter()
            .filter(|(_, s)| s.pending == 0)
            .map(|(k, _)| *k)
            .collect();
        spool.retire(&done)?;
        Ok(spool)
    }

    fn seg_dir(&self) -> PathBuf {
        self.inner.dir.join("segments")
    }

    /// Deletes fully acknowledged segments (not the one being written).
    fn retire(&self, firsts: &[u64]) -> Result<(), SpoolError> {
        if firsts.is_empty() {
            return Ok(());
        }
        let active = lock(&self.inner.writer).as_ref().map(|w| w.segment);
        let mut gone = Vec::new();
        {
            let meta = lock(&self.inner.meta);
            let mut b = sled::Batch::default();
            for f in firsts {
                if Some(*f) == active {
                    continue;
                }
                let Some(seg) = meta.segments.get(f) else {
                    continue;
                };
                if seg.pending > 0 {
                    continue;
                }
                for c in &seg.chunks {
                    b.remove(&key(ACKED, *c)[..]);
                }
                for (k, v) in &seg.marks {
                    // Only the latest value of a mark is kept.
                    if meta.marks.get(k) == Some(v) {
                        let mut sk = vec![MARK];
                        sk.extend_from_slice(k);
                        b.insert(sk, &v[..]);
                    }
                }
                gone.push(*f);
            }
            b.insert(NEXT, &meta.next_seq.to_be_bytes()[..]);
            self.inner.state.apply_batch(b)?;
        }
        if gone.is_empty() {
            return Ok(());
        }
        // The marks and the next seq are durable before the segment that held them goes.
        self.inner.db.flush()?;
        let mut meta = lock(&self.inner.meta);
        for f in gone {
            if let Some(seg) = meta.segments.remove(&f) {
                std::fs::remove_file(&seg.path).map_err(io(&seg.path))?;
                // Its marks are in the state database now: memory keeps only live ones.
                for (k, v) in &seg.marks {
                    if meta.marks.get(k) == Some(v) {
                        meta.marks.remove(k);
                    }
                }
            }
        }
        Ok(())
    }

    /// Makes `events` durable as chunks of at most `max_events` / `max_bytes`, `dead` as dead
    /// letters, and `marks` as the sources' new positions, all at once. Only the source side
    /// calls this.
    pub fn append(
        &self,
        events: &[Vec<u8>],
        dead: &[(String, Vec<u8>)],
        max_events: usize,
        max_bytes: usize,
    ) -> Result<(), SpoolError> {
        self.append_marked(events, dead, &[], max_events, max_bytes)
            .map(|_| ())
    }

    /// [`Spool::append`] with source positions recorded in the same write. Returns the chunks
    /// written: (first seq, number of events).
    pub fn append_marked(
        &self,
        events: &[Vec<u8>],
        dead: &[(String, Vec<u8>)],
        marks: &[(Vec<u8>, Vec<u8>)],
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, u32)>, SpoolError> {
        if events.is_empty() && dead.is_empty() && marks.is_empty() {
            return Ok(Vec::new());
        }
        let mut writer = lock(&self.inner.writer);
        let mut next = lock(&self.inner.meta).next_seq;
        let mut buf = Vec::new();
        let mut payload = Vec::new();
        let mut chunks: Vec<(u64, u64, u32, u32)> = Vec::new(); // (seq, offset in buf, len, count)
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
            chunks.push((next, buf.len() as u64, payload.len() as u32, count));
            record(KIND_CHUNK, next, count, &payload, &mut buf);
            next += u64::from(count);
            start = end;
        }
        // Dead letters found by the source are rare: they go to sled, before the chunks.
        if !dead.is_empty() {
            let mut b = sled::Batch::default();
            for (reason, bytes) in dead {
                b.insert(&key(DEAD, next)[..], encode_dead(reason, bytes));
                next += 1;
            }
            b.insert(NEXT, &next.to_be_bytes()[..]);
            self.inner.state.apply_batch(b)?;
            self.inner.db.flush()?;
        }
        for (k, v) in marks {
            payload.clear();
            encode_mark(k, v, &mut payload);
            record(KIND_MARK, 0, 0, &payload, &mut buf);
        }
        // Roll to a new segment when the current one is full (or none is open yet).
        let mut rolled = None;
        if writer
            .as_ref()
            .is_none_or(|w| w.size > 0 && w.size + buf.len() as u64 > SEGMENT_BYTES)
        {
            let first = lock(&self.inner.meta).next_seq;
            let path = self.seg_dir().join(segment_name(first));
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io(&path))?;
            let size = file.metadata().map_err(io(&path))?.len();
            sync_dir(&self.seg_dir())?;
            let reader = Arc::new(File::open(&path).map_err(io(&path))?);
            lock(&self.inner.meta)
                .segments
                .entry(first)
                .or_insert_with(|| Segment {
                    path: path.clone(),
                    file: reader,
                    pending: 0,
                    chunks: Vec::new(),
                    marks: Vec::new(),
                });
            rolled = writer.replace(Writer {
                segment: first,
                file: Arc::new(file),
                size,
            });
        }
        let Some(w) = writer.as_mut() else {
            return Err(SpoolError::Corrupt("no segment open".into()));
        };
        let path = self.seg_dir().join(segment_name(w.segment));
        let base = w.size;
        (&*w.file).write_all(&buf).map_err(io(&path))?;
        w.file.sync_data().map_err(io(&path))?;
        w.size += buf.len() as u64;
        let segment = w.segment;
        drop(writer);
        {
            let mut meta = lock(&self.inner.meta);
            meta.next_seq = next;
            let mut added = 0;
            for &(seq, off, len, count) in &chunks {
                meta.pending.insert(
                    seq,
                    Loc {
                        segment,
                        offset: base + off,
                        len,
                        count,
                    },
                );
                added += HEADER as u64 + u64::from(len);
            }
            meta.pending_bytes += added;
            for (k, v) in marks {
                meta.marks.insert(k.clone(), v.clone());
            }
            if let Some(seg) = meta.segments.get_mut(&segment) {
                seg.pending += chunks.len();
                seg.chunks.extend(chunks.iter().map(|c| c.0));
                seg.marks.extend(marks.iter().cloned());
            }
        }
        if let Some(old) = rolled {
            self.retire(&[old.segment])?;
        }
        Ok(chunks.iter().map(|c| (c.0, c.3)).collect())
    }

    /// The latest durable position a source recorded under `key`. Marks of live segments are
    /// in memory; older ones are read from the state database.
    pub fn mark(&self, key: &[u8]) -> Option<Vec<u8>> {
        if let Some(v) = lock(&self.inner.meta).marks.get(key) {
            return Some(v.clone());
        }
        let mut k = vec![MARK];
        k.extend_from_slice(key);
        match self.inner.state.get(k) {
            Ok(v) => v.map(|v| v.to_vec()),
            Err(e) => {
                tracing::error!(error = %e, "cannot read a source position from the spool");
                None
            }
        }
    }

    /// The next pending chunk starting at or after `from`.
    pub fn chunk_from(&self, from: u64) -> Result<Option<Chunk>, SpoolError> {
        let (first_seq, loc, file, path) = {
            let meta = lock(&self.inner.meta);
            let Some((&seq, &loc)) = meta.pending.range(from..).next() else {
                return Ok(None);
            };
            let seg = meta
                .segments
                .get(&loc.segment)
                .ok_or_else(|| SpoolError::Corrupt(format!("segment of chunk {seq} missing")))?;
            (seq, loc, seg.file.clone(), seg.path.clone())
        };
        let mut payload = vec![0u8; loc.len as usize];
        file.read_exact_at(&mut payload, loc.offset + HEADER as u64)
            .map_err(io(&path))?;
        Ok(Some(Chunk {
            first_seq,
            events: decode_events(&payload.into(), loc.count)?,
            stored_len: HEADER as u64 + u64::from(loc.len),
        }))
    }

    /// The acknowledgement of the chunk at `first_seq` arrived: forget it, keeping the
    /// events at `rejected` (positions in the chunk) as dead letters with their reasons.
    pub fn acknowledge(
        &self,
        chunk: (u64, u64),
        rejected: &[(usize, String)],
    ) -> Result<(), SpoolError> {
        let first_seq = chunk.0;
        let mut b = sled::Batch::default();
        b.insert(&key(ACKED, first_seq)[..], &[][..]);
        if !rejected.is_empty()
            && let Some(c) = self.chunk_from(first_seq)?
            && c.first_seq == first_seq
        {
            for (i, reason) in rejected {
                if let Some(e) = c.events.get(*i) {
                    b.insert(
                        &key(DEAD, first_seq + *i as u64)[..],
                        encode_dead(reason, e),
                    );
                }
            }
        }
        self.inner.state.apply_batch(b)?;
        // No flush: see the module documentation.
        let emptied = {
            let mut meta = lock(&self.inner.meta);
            let Some(loc) = meta.pending.remove(&first_seq) else {
                return Ok(());
            };
            meta.pending_bytes = meta
                .pending_bytes
                .saturating_sub(HEADER as u64 + u64::from(loc.len));
            match meta.segments.get_mut(&loc.segment) {
                Some(seg) => {
                    seg.pending = seg.pending.saturating_sub(1);
                    (seg.pending == 0).then_some(loc.segment)
                }
                None => None,
            }
        };
        if let Some(s) = emptied {
            self.retire(&[s])?;
        }
        Ok(())
    }

    /// True when nothing waits to be acknowledged.
    pub fn is_empty(&self) -> Result<bool, SpoolError> {
        Ok(lock(&self.inner.meta).pending.is_empty())
    }

    /// Bytes waiting to be acknowledged.
    pub fn pending_bytes(&self) -> u64 {
        lock(&self.inner.meta).pending_bytes
    }

    /// The dead letters.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, SpoolError> {
        let mut out = Vec::new();
        for kv in self.inner.state.scan_prefix([DEAD]) {
            let (k, v) = kv?;
            let len = usize::from(u16::from_be_bytes(
                v.get(..2)
                    .and_then(|s| s.try_into().ok())
                    .ok_or_else(|| SpoolError::Corrupt("dead letter".into()))?,
            ));
            let reason =
                String::from_utf8_lossy(v.get(2..2 + len).unwrap_or_default()).into_owned();
            out.push(DeadLetter {
                seq: seq_of(&k)?,
                reason,
                bytes: v.get(2 + len..).unwrap_or_default().to_vec(),
            });
        }
        Ok(out)
    }

    /// Makes the acknowledgements so far durable (called on a clean shutdown).
    pub fn flush(&self) -> Result<(), SpoolError> {
        self.inner.db.flush()?;
        Ok(())
    }
}

fn encode_dead(reason: &str, bytes: &[u8]) -> Vec<u8> {
    let r = &reason.as_bytes()[..reason.len().min(u16::MAX as usize)];
    let mut v = Vec::with_capacity(2 + r.len() + bytes.len());
    v.extend_from_slice(&(r.len() as u16).to_be_bytes());
    v.extend_from_slice(r);
    v.extend_from_slice(bytes);
    v
}

/// Entry points for the fuzz targets in `fuzz/`: the segment record codec, without a spool.
/// Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    use std::fs::File;
    use std::os::unix::fs::FileExt;
    use std::path::Path;

    use super::{HEADER, KIND_CHUNK, SpoolError, decode_events, decode_mark, io, scan};

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
    /// every intact chunk record as `Spool::chunk_from` does.
    pub fn decode_segment(path: &Path) -> Result<SegmentSummary, SpoolError> {
        let s = scan(path)?;
        let file = File::open(path).map_err(io(path))?;
        let mut events = 0;
        for (hd, at) in &s.records {
            if hd.kind == KIND_CHUNK {
                let mut payload = vec![0u8; hd.len as usize];
                file.read_exact_at(&mut payload, at + HEADER as u64)
                    .map_err(io(path))?;
                events += decode_events(&payload.into(), hd.count)?.len();
            }
        }
        Ok(SegmentSummary {
            records: s.records.len(),
            marks: s.marks.len(),
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
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn segments(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("segments"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    }

    /// Found by the `spool_record` fuzz target: a chunk's event count sized the decoder's
    /// buffer before any event was read, so a record claiming 1.3 billion events (here the
    /// bytes `OTS1`) aborted the process on a 42 GB allocation.
    #[test]
    fn a_chunk_count_larger_than_its_payload_is_corrupt_not_an_abort() {
        let payload = bytes::Bytes::from_static(b"\0\0\0\x02e1");
        let err = decode_events(&payload, u32::from_be_bytes(*b"OTS1")).unwrap_err();
        assert!(matches!(err, SpoolError::Corrupt(_)), "{err}");
        assert_eq!(decode_events(&payload, 1).unwrap(), vec![&b"e1"[..]]);
    }

    /// The same through the spool: a checksummed chunk record whose count was altered is
    /// reported as corrupt when it is read, and the spool keeps working.
    #[test]
    fn a_checksummed_chunk_claiming_too_many_events_is_reported_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Spool::open(dir.path()).unwrap();
            s.append(&[b"e1".to_vec()], &[], 10, 1 << 20).unwrap();
        }
        let seg = segments(dir.path()).pop().unwrap();
        let mut b = std::fs::read(&seg).unwrap();
        let len = u32::from_be_bytes(b[20..24].try_into().unwrap()) as usize;
        b[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
        let mut h = crc32fast::Hasher::new();
        h.update(&b[4..24]);
        h.update(&b[HEADER..HEADER + len]);
        b[24..28].copy_from_slice(&h.finalize().to_be_bytes());
        std::fs::write(&seg, &b).unwrap();
        let s = Spool::open(dir.path()).unwrap();
        let err = s.chunk_from(0).unwrap_err();
        assert!(matches!(err, SpoolError::Corrupt(_)), "{err}");
    }

    #[test]
    fn chunks_survive_reopen_and_leave_only_when_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let events: Vec<Vec<u8>> = (0..25).map(|i| format!("event-{i}").into_bytes()).collect();
        {
            let s = Spool::open(dir.path()).unwrap();
            s.append(
                &events,
                &[("line 3: not JSON".into(), Vec::new())],
                10,
                1 << 20,
            )
            .unwrap();
        }
        let s = Spool::open(dir.path()).unwrap();
        let c1 = s.chunk_from(0).unwrap().unwrap();
        let len1 = c1.stored_len;
        assert_eq!((c1.first_seq, c1.events.len()), (1, 10));
        let c2 = s.chunk_from(c1.first_seq + 10).unwrap().unwrap();
        assert_eq!((c2.first_seq, &c2.events[0][..]), (11, &b"event-10"[..]));
        let len2 = c2.stored_len;
        s.acknowledge((1, len1), &[(2, "wrong account".into())])
            .unwrap();
        assert_eq!(s.chunk_from(0).unwrap().unwrap().first_seq, 11);
        s.acknowledge((11, len2), &[]).unwrap();
        let c3 = s.chunk_from(21).unwrap().unwrap();
        s.acknowledge((21, c3.stored_len), &[]).unwrap();
        assert!(s.is_empty().unwrap());
        assert_eq!(s.pending_bytes(), 0);
        let dead = s.dead_letters().unwrap();
        assert_eq!(dead.len(), 2);
        assert_eq!(dead[0].bytes, b"event-2");
        assert_eq!(dead[0].reason, "wrong account");
        assert_eq!(dead[1].reason, "line 3: not JSON");
        // Sequence numbers keep counting after a restart, even once every segment is gone.
        drop(s);
        let s = Spool::open(dir.path()).unwrap();
        assert!(
            segments(dir.path()).is_empty(),
            "acknowledged segments are deleted"
        );
        s.append(&events[..1], &[], 10, 1 << 20).unwrap();
        assert_eq!(s.chunk_from(0).unwrap().unwrap().first_seq, 27);
    }

    #[test]
    fn acknowledged_chunks_are_not_sent_again_after_a_clean_restart() {
        let dir = tempfile::tempdir().unwrap();
        let events: Vec<Vec<u8>> = (0..30).map(|i| vec![b'e', i]).collect();
        {
            let s = Spool::open(dir.path()).unwrap();
            s.append(&events, &[], 10, 1 << 20).unwrap();
            let c = s.chunk_from(11).unwrap().unwrap();
            s.acknowledge((c.first_seq, c.stored_len), &[]).unwrap();
            s.flush().unwrap();
        }
        let s = Spool::open(dir.path()).unwrap();
        let firsts: Vec<u64> = std::iter::successors(s.chunk_from(0).unwrap(), |c| {
            s.chunk_from(c.first_seq + 1).unwrap()
        })
        .map(|c| c.first_seq)
        .collect();
        assert_eq!(firsts, vec![1, 21]);
    }

    #[test]
    fn a_torn_append_is_cut_off_and_what_was_confirmed_survives() {
        let dir = tempfile::tempdir().unwrap();
        let events: Vec<Vec<u8>> = (0..10).map(|i| vec![b'e', i]).collect();
        {
            let s = Spool::open(dir.path()).unwrap();
            s.append(&events, &[], 10, 1 << 20).unwrap();
        }
        let seg = segments(dir.path()).pop().unwrap();
        let good = std::fs::metadata(&seg).unwrap().len();
        // A crash in the middle of the next append: half a record.
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(b"OTS1\x01\0\0\0\0\0\0\0\0\0\0\x0b\0\0\0\x01")
            .unwrap();
        drop(f);
        let s = Spool::open(dir.path()).unwrap();
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), good);
        assert_eq!(s.chunk_from(0).unwrap().unwrap().events, events);
        s.append(&events[..2], &[], 10, 1 << 20).unwrap();
        assert_eq!(s.chunk_from(2).unwrap().unwrap().first_seq, 11);
    }

    #[test]
    fn a_damaged_old_segment_is_reported_and_the_rest_still_ships() {
        let dir = tempfile::tempdir().unwrap();
        let big = vec![b'x'; 1 << 20];
        let n = (SEGMENT_BYTES >> 20) as usize + 2;
        {
            let s = Spool::open(dir.path()).unwrap();
            for _ in 0..n {
                s.append(std::slice::from_ref(&big), &[], 10, 4 << 20)
                    .unwrap();
            }
        }
        let segs = segments(dir.path());
        assert_eq!(segs.len(), 2, "rolled once");
        // Flip a byte in the second record of the first segment.
        let mut bytes = std::fs::read(&segs[0]).unwrap();
        let at = HEADER + (1 << 20) + 4 + HEADER + 100;
        bytes[at] ^= 0xff;
        std::fs::write(&segs[0], &bytes).unwrap();
        let s = Spool::open(dir.path()).unwrap();
        assert!(segs[0].with_extension("corrupt").exists());
        let firsts: Vec<u64> = std::iter::successors(s.chunk_from(0).unwrap(), |c| {
            s.chunk_from(c.first_seq + 1).unwrap()
        })
        .map(|c| c.first_seq)
        .collect();
        // Chunk 1 is intact, the rest of the first segment sat after the damage, and the
        // second segment is whole.
        let second: u64 = segs[1]
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(firsts[0], 1);
        assert_eq!(firsts[1..], (second..=n as u64).collect::<Vec<_>>());
    }

    #[test]
    fn marks_are_durable_with_the_events_and_outlive_their_segment() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Spool::open(dir.path()).unwrap();
            s.append_marked(
                &[b"a".to_vec()],
                &[],
                &[(b"file".to_vec(), b"10".to_vec())],
                10,
                1 << 20,
            )
            .unwrap();
            s.append_marked(&[], &[], &[(b"file".to_vec(), b"20".to_vec())], 10, 1 << 20)
                .unwrap();
        }
        let s = Spool::open(dir.path()).unwrap();
        assert_eq!(s.mark(b"file"), Some(b"20".to_vec()));
        let c = s.chunk_from(0).unwrap().unwrap();
        s.acknowledge((c.first_seq, c.stored_len), &[]).unwrap();
        drop(s);
        let s = Spool::open(dir.path()).unwrap();
        assert!(segments(dir.path()).is_empty());
        assert_eq!(s.mark(b"file"), Some(b"20".to_vec()));
    }
}
