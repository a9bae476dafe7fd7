//! Index runs: the on-disk index of a contiguous range of sequence numbers, in one immutable
//! file. The writer keeps the newest events' index in memory (the memtable); once it holds
//! enough events it is written out as a run, registered in sled, and dropped from memory.
//!
//! # File layout (`<data>/index/run-<first seq>-<end seq>.idx`, 16 hex digits each; `end` is one past the last)
//!
//! Integers are big-endian unless written "varint" (unsigned LEB128) or "zigzag" (signed
//! values mapped to unsigned, then varint). `n` is the run's event count; a seq is stored as
//! its offset `o = seq - first` (u32).
//!
//! | part | bytes |
//! |---|---|
//! | header | magic `OTRUN` + version `\x00\x00\x02` (8), first seq (u64), n (u32), lowest and highest eventTime in ms (i64, i64; 0 and 0 when n is 0) |
//! | times | eventTime of each seq in seq order, in blocks of 128: each entry zigzag(time - previous time), the previous of a block's first entry being 0 |
//! | order | every (eventTime, o), sorted ascending, in blocks of 128: each entry varint(time - previous time) (0 for a block's first, whose time is in the directory), then varint(o) |
//! | dedup | every (blind(account, eventID) (16), o (u32), first 8 bytes of SHA-256(event bytes)), sorted by blind: 28 bytes each, in blocks of 128 |
//! | postings | per blind attribute value, sorted by blind: blind (16), varint count `k`, varint byte length of the rest of the entry, then the skip table (below), then the list of o ascending as varint gaps (the first gap from 0) |
//! | bloom | blocked Bloom filter over the dedup blinds: 512-bit blocks (64 bytes), 10 bits per event; block = u64(blind[0..8]) mod blocks; 7 bits set, each 9 bits of u64(blind[8..16]) |
//! | directory | times: per block (first time i64, offset u32); order: per block (first time i64, offset u32); dedup: per block the first blind (16); postings: (entry count u32) then per ~4 KiB page the first entry starting in it (blind (16), offset u64) |
//! | footer (fixed, 96 bytes) | offsets of times, order, dedup, postings, bloom, directory and of the footer itself (7 x u64), SHA-256 of header, bloom and directory (32), magic `OTRUNEND` (8) |
//!
//! The skip table of a posting list lets a probe decode one block of [`SKIP_EVERY`] entries
//! instead of the whole list (a rare list intersected with a popular one costs about the rare
//! one's size). A list of `k` entries has `s = (k - 1) / 128` skip entries when `k >= 1024`
//! ([`SKIP_FROM`]), else none (`s = 0`, nothing written). Skip entry `j` (`1..=s`) is 8 bytes:
//! the o of entry `128 j - 1` (u32), then the byte position of entry `128 j` in the gaps,
//! counted from the first gap (u32). So block `j` is decoded from that position with that o
//! as the previous value.
//!
//! Offsets are from the start of the file. Blinds are HMAC outputs (see the crate docs): no
//! attribute value, eventID or user is in a run in plaintext.
//!
//! A run is written to a temporary file, synced, renamed into place and the directory synced,
//! and only then registered in sled (in the same batch that removes the index chunks it
//! replaces). A run file that no sled entry names is a leftover of a crash and is removed at
//! open; an entry whose file is missing or whose checksum fails is corruption.
//!
//! In memory, an open run keeps its header and one entry in 64 of each section of its directory
//! (under 0.01 bytes per event; a lookup finds its place among those, then reads the 64
//! entries it needs with one positional read). The whole directory (0.45 bytes per event)
//! grew with the history. Its
//! Bloom filter (1.25 bytes per event) is checked at open, and kept in memory only if the index
//! says so (the newest runs, within `index_filter_bytes`, see `Index::place_blooms`); otherwise
//! a probe reads the one 64-byte block it needs. A filter larger than 2 MiB is written a window
//! at a time (one pass over the dedup section per window), never held whole. Everything else
//! is read with positional reads, served by the operating system's page cache. Once a lookup with a time range needs them (or when this process wrote the
//! run), it also keeps the lowest and highest eventTime of each block of the times section,
//! read from that section once: 16 bytes per 128 events. A lookup skips the seqs of the
//! blocks whose times miss its range, and reads the times of the highest seqs first.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::StoreError;
use crate::format::{Reader, put_varint};
use crate::index::Blind;

const MAGIC: &[u8; 8] = b"OTRUN\x00\x00\x02";
/// Runs written before skip tables (format 2 stores): read as they are, lists without skip
/// tables; merged or written again in the current layout.
const MAGIC_V1: &[u8; 8] = b"OTRUN\x00\x00\x01";
const END_MAGIC: &[u8; 8] = b"OTRUNEND";
const HEADER_LEN: u64 = 8 + 8 + 4 + 8 + 8;
const FOOTER_LEN: u64 = 7 * 8 + 32 + 8;
/// Blocks of a section this close are read with one positional read...
const SPAN_GAP: u64 = 16 << 10;
/// ...up to this many bytes at once.
const SPAN_MAX: u64 = 1 << 20;
/// Entries per block of the times, order and dedup sections.
pub(crate) const BLOCK: usize = 128;
const DEDUP_ENTRY: usize = 16 + 4 + 8;
/// The postings directory names the first entry starting in each page of this size.
const PAGE: u64 = 4096;
const BLOOM_BITS_PER_EVENT: u64 = 10;
const BLOOM_BLOCK_BITS: u64 = 512;
const BLOOM_K: u32 = 7;
/// Words of a Bloom filter written, read and hashed at a time (64 KiB).
const BLOOM_CHUNK_WORDS: usize = 8192;
/// A Bloom filter larger than this (a run of more than about 1.6M events) is built this many
/// bytes at a time, each part from one pass over the run's dedup section.
#[cfg(not(test))]
const BLOOM_WINDOW_BYTES: u64 = 2 << 20;
/// Four blocks, so that the unit tests' runs are built a window at a time.
#[cfg(test)]
const BLOOM_WINDOW_BYTES: u64 = 256;
/// A posting list this long or longer has a skip table...
pub(crate) const SKIP_FROM: u64 = 1024;
/// ...with an entry every this many entries.
pub(crate) const SKIP_EVERY: u64 = 128;
const SKIP_ENTRY: usize = 8;

/// How many skip entries a list of `k` entries has.
fn skips(k: u64) -> usize {
    if k >= SKIP_FROM {
        ((k - 1) / SKIP_EVERY) as usize
    } else {
        0
    }
}

/// The varint at `*pos` of `b`, advancing `pos`; `None` if truncated or too long.
fn varint_at(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The skip table of a list of `k` entries encoded as `gaps`.
fn skip_table(k: u64, gaps: &Gaps) -> R<Vec<u8>> {
    let s = skips(k);
    let mut out = Vec::with_capacity(s * SKIP_ENTRY);
    if s == 0 {
        return Ok(out);
    }
    let bad = || StoreError::Corrupt("posting list does not fit its skip table".into());
    // A piece holds whole varints: an entry never straddles two.
    let mut base = 0usize;
    let mut o = 0u64;
    let mut i = 0u64;
    gaps.for_each_piece(|piece| {
        let mut pos = 0usize;
        while pos < piece.len() && i < k {
            if i > 0 && i.is_multiple_of(SKIP_EVERY) {
                out.extend_from_slice(&u32::try_from(o).map_err(|_| bad())?.to_be_bytes());
                out.extend_from_slice(&u32::try_from(base + pos).map_err(|_| bad())?.to_be_bytes());
            }
            o += varint_at(piece, &mut pos).ok_or_else(bad)?;
            i += 1;
        }
        base += piece.len();
        Ok(())
    })?;
    if i < k {
        return Err(bad());
    }
    Ok(out)
}

/// Bytes of a posting list read from its run file at a time while a merge joins it.
#[cfg(not(test))]
const BODY_CHUNK: usize = 64 << 10;
/// Small and odd in tests, so that reads cut varints of two bytes.
#[cfg(test)]
const BODY_CHUNK: usize = 37;
/// A merge leaves posting lists longer than this in their run file and reads them a chunk at
/// a time as it writes them (three passes, served by the page cache: for the last entry, for
/// the skip table, to copy them), instead of holding them: the largest merges join lists of millions of entries (a value nearly every
/// event has, such as eventCategory `Management`: about 1 byte per event, 8 MiB at 8M events).
#[cfg(not(test))]
const BODY_IN_MEMORY_MAX: u64 = 64 << 10;
/// Small in tests, so that the merge tests join lists left in their files.
#[cfg(test)]
const BODY_IN_MEMORY_MAX: u64 = 64;

/// The gaps of one run's posting list: in memory, or left in its run file.
#[derive(Debug)]
pub(crate) enum Body {
    Mem(Vec<u8>),
    /// `len` bytes at `off` of `file` (at `path`).
    File {
        file: File,
        path: PathBuf,
        off: u64,
        len: u64,
    },
}

impl Body {
    fn len(&self) -> u64 {
        match self {
            Body::Mem(v) => v.len() as u64,
            Body::File { len, .. } => *len,
        }
    }

    /// Calls `f` with the bytes from `from` on, in pieces of whole varints (a read chunk is
    /// cut after its last complete varint; the rest starts the next piece). The last piece
    /// holds whatever the body ends with.
    fn for_each_piece(&self, from: u64, f: &mut dyn FnMut(&[u8]) -> R<()>) -> R<()> {
        match self {
            Body::Mem(v) => {
                let b = v.get(from as usize..).unwrap_or_default();
                if !b.is_empty() {
                    f(b)?;
                }
                Ok(())
            }
            Body::File {
                file,
                path,
                off,
                len,
            } => {
                let end = off + len;
                let mut at = off + from.min(*len);
                let mut buf: Vec<u8> = Vec::with_capacity(BODY_CHUNK + 16);
                while at < end {
                    let n = (end - at).min(BODY_CHUNK as u64) as usize;
                    let have = buf.len();
                    buf.resize(have + n, 0);
                    file.read_exact_at(&mut buf[have..], at)
                        .map_err(io_err(path))?;
                    at += n as u64;
                    let cut = if at == end {
                        buf.len()
                    } else {
                        buf.iter().rposition(|b| b & 0x80 == 0).map_or(0, |p| p + 1)
                    };
                    if cut > 0 {
                        f(&buf[..cut])?;
                        buf.drain(..cut);
                    }
                }
                Ok(())
            }
        }
    }

    /// Keeps the first `n` bytes.
    fn truncate(&mut self, n: u64) {
        match self {
            Body::Mem(v) => v.truncate(n as usize),
            Body::File { len, .. } => *len = (*len).min(n),
        }
    }
}

/// The gaps of a posting list as written, in pieces each of whole varints: a merge joins the
/// lists of one value from several runs without copying them into one (only each part's first
/// gap changes). A part's list longer than [`BODY_IN_MEMORY_MAX`] is not held at all: it is
/// read from its run file a chunk at a time (see [`Body`]).
#[derive(Debug, Default)]
pub(crate) struct Gaps {
    /// (a first gap re-encoded, a list, where the list's own gaps start in it).
    pieces: Vec<(Vec<u8>, Body, u64)>,
}

impl From<Vec<u8>> for Gaps {
    fn from(list: Vec<u8>) -> Self {
        Gaps {
            pieces: vec![(Vec::new(), Body::Mem(list), 0)],
        }
    }
}

impl Gaps {
    /// Calls `f` with the gaps in order, in non-empty pieces of whole varints.
    fn for_each_piece(&self, mut f: impl FnMut(&[u8]) -> R<()>) -> R<()> {
        for (head, list, from) in &self.pieces {
            if !head.is_empty() {
                f(head)?;
            }
            list.for_each_piece(*from, &mut f)?;
        }
        Ok(())
    }

    fn len(&self) -> usize {
        self.pieces
            .iter()
            .map(|(head, list, from)| head.len() + list.len().saturating_sub(*from) as usize)
            .sum()
    }
}

/// The name of the run file of the events `first..end`.
pub(crate) fn file_name(first: u64, end: u64) -> String {
    format!("run-{first:016x}-{end:016x}.idx")
}

/// The (first, end) of a run file's name, if it is one.
pub(crate) fn parse_file_name(name: &str) -> Option<(u64, u64)> {
    let (a, b) = name
        .strip_prefix("run-")?
        .strip_suffix(".idx")?
        .split_once('-')?;
    if a.len() != 16 || b.len() != 16 {
        return None;
    }
    Some((
        u64::from_str_radix(a, 16).ok()?,
        u64::from_str_radix(b, 16).ok()?,
    ))
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::IndexFile {
        path: path.display().to_string(),
        source,
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// What a run is made of: the index of the events `first..first + count`, each part in the
/// order the file keeps it. Seqs are absolute.
pub(crate) struct Parts<T, O, D, P> {
    pub(crate) first: u64,
    pub(crate) count: u32,
    /// eventTime (ms) of each event, in seq order.
    pub(crate) times: T,
    /// (eventTime, seq), ascending.
    pub(crate) order: O,
    /// (dedup blind, seq, hash prefix), ascending by blind.
    pub(crate) dedup: D,
    /// (attribute blind, seqs ascending), ascending by blind.
    pub(crate) postings: P,
    /// Set by another thread to stop the writing: the temporary file is removed and the write
    /// fails.
    pub(crate) cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

type R<T> = Result<T, StoreError>;

fn bloom_blocks(n: u64) -> u64 {
    (n * BLOOM_BITS_PER_EVENT).div_ceil(BLOOM_BLOCK_BITS).max(1)
}

/// The block and bit positions of a blind in a Bloom filter of `blocks` blocks.
fn bloom_bits(blind: &Blind, blocks: u64) -> (usize, [u32; BLOOM_K as usize]) {
    let mut a = [0u8; 8];
    a.copy_from_slice(&blind[..8]);
    let mut b = [0u8; 8];
    b.copy_from_slice(&blind[8..]);
    let block = (u64::from_be_bytes(a) % blocks) as usize;
    let h = u64::from_be_bytes(b);
    let mut bits = [0u32; BLOOM_K as usize];
    for (i, bit) in bits.iter_mut().enumerate() {
        *bit = ((h >> (9 * i)) & 0x1ff) as u32;
    }
    (block, bits)
}

/// Writes a run file `dir/run-<first>-<end>.idx` from its parts, streaming, durably (file
/// and directory synced). Returns its path.
pub(crate) fn write<T, O, D, P>(dir: &Path, parts: Parts<T, O, D, P>) -> R<PathBuf>
where
    T: Iterator<Item = R<i64>>,
    O: Iterator<Item = R<(i64, u64)>>,
    D: Iterator<Item = R<(Blind, u64, [u8; 8])>>,
    P: Iterator<Item = R<(Blind, Gaps, u64)>>,
{
    let Parts {
        first,
        count,
        times,
        order,
        dedup,
        postings,
        cancel,
    } = parts;
    let stopped = || {
        cancel
            .as_ref()
            .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
    };
    let n = count as usize;
    let end = first + u64::from(count);
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let path = dir.join(file_name(first, end));
    // A temporary name of its own: an abandoned writer of the same run may still be running.
    static TMP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n_tmp = TMP.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(
        "{}.{}-{n_tmp}.tmp",
        file_name(first, end),
        std::process::id()
    ));
    let file = File::create(&tmp).map_err(io_err(&tmp))?;
    let mut spill = DirSpill::create(&tmp)?;
    let mut w = Counting {
        inner: BufWriter::with_capacity(1 << 20, file),
        pos: 0,
    };
    let e = io_err(&tmp);
    let off = |seq: u64| -> R<u32> {
        seq.checked_sub(first)
            .filter(|o| *o < u64::from(count))
            .map(|o| o as u32)
            .ok_or_else(|| {
                StoreError::Corrupt(format!("seq {seq} is outside the run {first}..{end}"))
            })
    };
    // The header is written again at the end, with the time bounds.
    w.put(&[0u8; HEADER_LEN as usize]).map_err(&e)?;
    let mut min_time = i64::MAX;
    let mut max_time = i64::MIN;

    // Times.
    let times_off = w.pos;
    let mut buf = Vec::new();
    let mut seen = 0usize;
    let mut prev = 0i64;
    for t in times {
        let t = t?;
        if seen.is_multiple_of(4096) && stopped() {
            return cancelled(&tmp);
        }
        if seen.is_multiple_of(BLOCK) {
            w.put(&buf).map_err(&e)?;
            buf.clear();
            spill.put(&t.to_be_bytes())?;
            spill.put(&((w.pos - times_off) as u32).to_be_bytes())?;
            prev = 0;
        }
        put_varint(&mut buf, zigzag(t.wrapping_sub(prev)));
        prev = t;
        min_time = min_time.min(t);
        max_time = max_time.max(t);
        seen += 1;
    }
    w.put(&buf).map_err(&e)?;
    if seen != n {
        return Err(StoreError::Corrupt(format!(
            "index run {first}: {seen} times for {n} events"
        )));
    }

    // Order.
    let order_off = w.pos;
    buf.clear();
    seen = 0;
    let mut prev_t = 0i64;
    for entry in order {
        let (t, seq) = entry?;
        if seen.is_multiple_of(4096) && stopped() {
            return cancelled(&tmp);
        }
        if seen.is_multiple_of(BLOCK) {
            w.put(&buf).map_err(&e)?;
            buf.clear();
            spill.put(&t.to_be_bytes())?;
            spill.put(&((w.pos - order_off) as u32).to_be_bytes())?;
            prev_t = t;
        }
        if t < prev_t {
            return Err(StoreError::Corrupt(format!(
                "index run {first}: time order not ascending"
            )));
        }
        put_varint(&mut buf, (t - prev_t) as u64);
        put_varint(&mut buf, u64::from(off(seq)?));
        prev_t = t;
        seen += 1;
    }
    w.put(&buf).map_err(&e)?;
    if seen != n {
        return Err(StoreError::Corrupt(format!(
            "index run {first}: {seen} order entries for {n} events"
        )));
    }

    // Dedup, and the Bloom filter over it.
    let dedup_off = w.pos;
    let blocks = bloom_blocks(n as u64);
    // A small filter is built while the dedup entries pass; a large one (a large merge) a
    // window at a time afterwards, from the dedup section read back (see below).
    let whole = blocks * (BLOOM_BLOCK_BITS / 8) <= BLOOM_WINDOW_BYTES;
    let mut bloom = vec![0u64; if whole { (blocks * 8) as usize } else { 0 }];
    seen = 0;
    for entry in dedup {
        let (blind, seq, h8) = entry?;
        if seen.is_multiple_of(4096) && stopped() {
            return cancelled(&tmp);
        }
        if seen.is_multiple_of(BLOCK) {
            spill.put(&blind)?;
        }
        w.put(&blind).map_err(&e)?;
        w.put(&off(seq)?.to_be_bytes()).map_err(&e)?;
        w.put(&h8).map_err(&e)?;
        if whole {
            let (block, bits) = bloom_bits(&blind, blocks);
            for bit in bits {
                bloom[block * 8 + (bit / 64) as usize] |= 1u64 << (bit % 64);
            }
        }
        seen += 1;
    }
    if seen != n {
        return Err(StoreError::Corrupt(format!(
            "index run {first}: {seen} dedup entries for {n} events"
        )));
    }

    // Postings: each list comes encoded (see [`encode_list`]), with its count.
    let postings_off = w.pos;
    let mut pages = 0u32;
    let mut next_page = 0u64;
    let mut head = Vec::with_capacity(32);
    for (i, entry) in postings.enumerate() {
        let (blind, list, k) = entry?;
        if i.is_multiple_of(4096) && stopped() {
            return cancelled(&tmp);
        }
        let rel = w.pos - postings_off;
        if rel >= next_page {
            spill.put(&blind)?;
            spill.put(&w.pos.to_be_bytes())?;
            pages += 1;
            next_page = (rel / PAGE + 1) * PAGE;
        }
        let skip = skip_table(k, &list)?;
        head.clear();
        head.extend_from_slice(&blind);
        put_varint(&mut head, k);
        put_varint(&mut head, (skip.len() + list.len()) as u64);
        w.put(&head).map_err(&e)?;
        w.put(&skip).map_err(&e)?;
        list.for_each_piece(|piece| w.put(piece).map_err(&e))?;
    }

    // Bloom.
    let bloom_off = w.pos;
    // Header, now that the time bounds are known.
    if n == 0 {
        (min_time, max_time) = (0, 0);
    }
    let mut header = Vec::with_capacity(HEADER_LEN as usize);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&first.to_be_bytes());
    header.extend_from_slice(&count.to_be_bytes());
    header.extend_from_slice(&min_time.to_be_bytes());
    header.extend_from_slice(&max_time.to_be_bytes());
    // The checksum covers the header, the Bloom filter and the directory. The filter is
    // written and hashed a chunk at a time: at 16M events it is 20 MB, and a copy of it (or of
    // all three) doubled the working memory of the largest merges.
    let mut sum = orgtrail_crypto::hash::Sha256::default();
    sum.update(&header);
    let mut chunk = Vec::with_capacity(BLOOM_CHUNK_WORDS * 8);
    let mut put_words = |w: &mut Counting<BufWriter<File>>, words: &[u64]| -> R<()> {
        for words in words.chunks(BLOOM_CHUNK_WORDS) {
            chunk.clear();
            for word in words {
                chunk.extend_from_slice(&word.to_be_bytes());
            }
            w.put(&chunk).map_err(&e)?;
            sum.update(&chunk);
        }
        Ok(())
    };
    if whole {
        put_words(&mut w, &bloom)?;
    } else {
        // A window of blocks at a time, each from one pass over the dedup section as written:
        // memory holds one window, not a filter as large as the run (20 MB at 16M events).
        w.inner.flush().map_err(&e)?;
        let window = BLOOM_WINDOW_BYTES / 64;
        let mut win = vec![0u64; (window * 8) as usize];
        let mut from = 0u64;
        while from < blocks {
            if stopped() {
                return cancelled(&tmp);
            }
            let to = (from + window).min(blocks);
            let win = &mut win[..((to - from) * 8) as usize];
            win.fill(0);
            let mut r = SeqReader::new(&tmp, dedup_off, postings_off)?;
            for _ in 0..n {
                let blind: Blind = r.array()?;
                let _: [u8; DEDUP_ENTRY - 16] = r.array()?;
                let (block, bits) = bloom_bits(&blind, blocks);
                let block = block as u64;
                if (from..to).contains(&block) {
                    let at = ((block - from) * 8) as usize;
                    for bit in bits {
                        win[at + (bit / 64) as usize] |= 1u64 << (bit % 64);
                    }
                }
            }
            put_words(&mut w, win)?;
            from = to;
        }
    }
    drop(bloom);
    // Directory, copied from the file it was spilled to as the sections were written, and
    // hashed as it goes (held in memory, it was 4-6 MB at an 8M-event merge).
    let dir_off = w.pos;
    let mut put = |w: &mut Counting<BufWriter<File>>, b: &[u8]| -> R<()> {
        w.put(b).map_err(&e)?;
        sum.update(b);
        Ok(())
    };
    let fixed = (n.div_ceil(BLOCK) * (2 * TIMES_ENTRY + 16)) as u64;
    let mut r = spill.finish()?;
    let mut piece = vec![0u8; 1 << 16];
    for (len, count) in [
        (fixed, None),
        (u64::from(pages) * POST_ENTRY as u64, Some(pages)),
    ] {
        if let Some(count) = count {
            put(&mut w, &count.to_be_bytes())?;
        }
        let mut left = len;
        while left > 0 {
            let k = left.min(piece.len() as u64) as usize;
            r.fill(&mut piece[..k])?;
            put(&mut w, &piece[..k])?;
            left -= k as u64;
        }
    }
    drop(r);

    // Footer.
    let footer_off = w.pos;
    let mut footer = Vec::with_capacity(FOOTER_LEN as usize);
    for off in [
        times_off,
        order_off,
        dedup_off,
        postings_off,
        bloom_off,
        dir_off,
        footer_off,
    ] {
        footer.extend_from_slice(&off.to_be_bytes());
    }
    footer.extend_from_slice(&sum.finish());
    footer.extend_from_slice(END_MAGIC);
    w.put(&footer).map_err(&e)?;

    let file = w
        .inner
        .into_inner()
        .map_err(|err| io_err(&tmp)(err.into_error()))?;
    file.write_all_at(&header, 0).map_err(&e)?;
    file.sync_all().map_err(&e)?;
    drop(file);
    crate::crashpoint::hit("run-tmp-synced");
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    Ok(path)
}

/// A run's directory as its sections are written, in the order and layout of the file's
/// directory section (without the postings entry count), in a file of its own beside the
/// run's temporary file and removed with it: a large merge's directory (4-6 MB at 8M events)
/// is not held in memory. Its name starts like the run's, so a crash's leftover is removed at
/// the next open with the other unregistered files.
struct DirSpill {
    w: BufWriter<File>,
    path: PathBuf,
}

impl DirSpill {
    fn create(tmp: &Path) -> R<DirSpill> {
        let mut name = tmp.as_os_str().to_owned();
        name.push(".dir");
        let path = PathBuf::from(name);
        let f = File::create(&path).map_err(io_err(&path))?;
        Ok(DirSpill {
            w: BufWriter::with_capacity(1 << 16, f),
            path,
        })
    }

    fn put(&mut self, b: &[u8]) -> R<()> {
        self.w.write_all(b).map_err(io_err(&self.path))
    }

    /// A reader of everything put, from the start.
    fn finish(&mut self) -> R<SeqReader> {
        self.w.flush().map_err(io_err(&self.path))?;
        let len = self
            .w
            .get_ref()
            .metadata()
            .map_err(io_err(&self.path))?
            .len();
        SeqReader::new(&self.path, 0, len)
    }
}

impl Drop for DirSpill {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Removes the temporary file of a cancelled write and says so.
fn cancelled<T>(tmp: &Path) -> R<T> {
    let _ = std::fs::remove_file(tmp);
    Err(StoreError::Unavailable {
        reason: "writing the index run was cancelled".into(),
    })
}

/// Encodes ascending seqs as a posting list relative to `first`: varint gaps, the first from
/// 0. Returns the bytes and, for appending more, the last offset.
pub(crate) fn encode_list(
    first: u64,
    seqs: impl Iterator<Item = u64>,
    out: &mut Vec<u8>,
    mut prev: Option<u64>,
) -> Option<u64> {
    for s in seqs {
        let o = s - first;
        put_varint(out, o - prev.unwrap_or(0));
        prev = Some(o);
    }
    prev
}

struct Counting<W: Write> {
    inner: W,
    pos: u64,
}

impl<W: Write> Counting<W> {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.inner.write_all(b)?;
        self.pos += b.len() as u64;
        Ok(())
    }
}

/// One entry in this many of each section of a run's directory is kept in memory; a lookup
/// finds its place among them, then reads the at most `DIR_SAMPLE + 1` entries it needs
/// (under 2 KiB, one positional read served by the page cache).
#[cfg(not(test))]
const DIR_SAMPLE: usize = 64;
/// Eight, so that the unit tests' runs have many groups in each section.
#[cfg(test)]
const DIR_SAMPLE: usize = 8;
/// Bytes of a times or order directory entry (first time i64, offset u32).
const TIMES_ENTRY: usize = 12;
/// Bytes of a postings directory entry (blind, offset u64).
const POST_ENTRY: usize = 16 + 8;

/// An entry of a run's directory, as the file holds it.
trait DirEntry: Copy {
    const LEN: usize;
    fn decode(b: &[u8]) -> Self;
}

fn be8(b: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    a
}

impl DirEntry for (i64, u32) {
    const LEN: usize = TIMES_ENTRY;
    fn decode(b: &[u8]) -> Self {
        let mut o = [0u8; 4];
        o.copy_from_slice(&b[8..12]);
        (i64::from_be_bytes(be8(b)), u32::from_be_bytes(o))
    }
}

impl DirEntry for Blind {
    const LEN: usize = 16;
    fn decode(b: &[u8]) -> Self {
        let mut a = [0u8; 16];
        a.copy_from_slice(&b[..16]);
        a
    }
}

impl DirEntry for (Blind, u64) {
    const LEN: usize = POST_ENTRY;
    fn decode(b: &[u8]) -> Self {
        (Blind::decode(b), u64::from_be_bytes(be8(&b[16..])))
    }
}

/// A section of a run's directory: where its entries start in the file, how many there are,
/// and every [`DIR_SAMPLE`]th of them (from the first) in memory.
#[derive(Debug)]
struct Dir<T> {
    off: u64,
    len: usize,
    sample: Vec<T>,
}

impl<T: DirEntry> Dir<T> {
    /// Reads `len` entries from `r`, keeping one in [`DIR_SAMPLE`].
    fn sample(r: &mut SeqReader, len: usize) -> R<Dir<T>> {
        let off = r.pos;
        let mut sample = Vec::with_capacity(len.div_ceil(DIR_SAMPLE));
        let mut buf = [0u8; POST_ENTRY];
        let buf = &mut buf[..T::LEN];
        for i in 0..len {
            r.fill(buf)?;
            if i % DIR_SAMPLE == 0 {
                sample.push(T::decode(buf));
            }
        }
        Ok(Dir { off, len, sample })
    }
}

/// An open run: its header, directory and Bloom filter in memory, the rest read on demand.
#[derive(Debug)]
pub(crate) struct Run {
    file: File,
    path: PathBuf,
    pub(crate) first: u64,
    pub(crate) count: u32,
    pub(crate) min_time: i64,
    pub(crate) max_time: i64,
    times_off: u64,
    order_off: u64,
    dedup_off: u64,
    postings_off: u64,
    bloom_off: u64,
    /// Blocks of the Bloom filter.
    bloom_blocks: u64,
    /// The Bloom filter, when the index keeps it in memory (see [`Run::keep_bloom`]); else a
    /// probe reads its one block from the file.
    bloom: std::sync::RwLock<Option<Box<[u64]>>>,
    times_dir: Dir<(i64, u32)>,
    order_dir: Dir<(i64, u32)>,
    dedup_dir: Dir<Blind>,
    post_dir: Dir<(Blind, u64)>,
    /// Whether its long posting lists carry skip tables (layout version 2).
    skip_tables: bool,
    /// The lowest and highest eventTime of each block of the times section, read the first
    /// time a lookup needs them (see [`Run::block_times`]).
    block_times: std::sync::OnceLock<Vec<(i64, i64)>>,
}

impl Run {
    /// Opens a run file: reads and checks its header, directory and Bloom filter.
    pub(crate) fn open(path: &Path) -> Result<Run, StoreError> {
        let e = io_err(path);
        let bad = |what: &str| StoreError::Corrupt(format!("index run {}: {what}", path.display()));
        let file = File::open(path).map_err(&e)?;
        let len = file.metadata().map_err(&e)?.len();
        if len < HEADER_LEN + FOOTER_LEN {
            return Err(bad("shorter than its header and footer"));
        }
        let mut footer = vec![0u8; FOOTER_LEN as usize];
        file.read_exact_at(&mut footer, len - FOOTER_LEN)
            .map_err(&e)?;
        let mut r = Reader::new(&footer, "index run footer");
        let mut offs = [0u64; 7];
        for o in &mut offs {
            *o = r.u64()?;
        }
        let sum: [u8; 32] = r.array()?;
        if r.take(8)? != END_MAGIC {
            return Err(bad("no end marker (the file is torn)"));
        }
        let [
            times_off,
            order_off,
            dedup_off,
            postings_off,
            bloom_off,
            dir_off,
            footer_off,
        ] = offs;
        let ordered = HEADER_LEN == times_off
            && times_off <= order_off
            && order_off <= dedup_off
            && dedup_off <= postings_off
            && postings_off <= bloom_off
            && bloom_off <= dir_off
            && dir_off <= footer_off
            && footer_off + FOOTER_LEN == len;
        if !ordered {
            return Err(bad("section offsets out of order"));
        }
        let mut header = vec![0u8; HEADER_LEN as usize];
        file.read_exact_at(&mut header, 0).map_err(&e)?;
        // The Bloom filter is read, hashed and decoded a chunk at a time (see `write`).
        let bloom_len = dir_off - bloom_off;
        if !bloom_len.is_multiple_of(8) {
            return Err(bad("Bloom filter size"));
        }
        // Checked here, but not kept: the index decides which runs keep theirs in memory.
        let mut hasher = orgtrail_crypto::hash::Sha256::default();
        hasher.update(&header);
        let mut chunk = vec![0u8; BLOOM_CHUNK_WORDS * 8];
        // The directory too, right after it (it is parsed once the checksum holds).
        let mut at = bloom_off;
        while at < footer_off {
            let len = (footer_off - at).min(chunk.len() as u64) as usize;
            let buf = &mut chunk[..len];
            file.read_exact_at(buf, at).map_err(&e)?;
            hasher.update(buf);
            at += len as u64;
        }
        drop(chunk);
        if hasher.finish() != sum {
            return Err(bad("checksum mismatch"));
        }
        let mut h = Reader::new(&header, "index run header");
        let skip_tables = match h.take(8)? {
            m if m == MAGIC => true,
            m if m == MAGIC_V1 => false,
            _ => return Err(bad("not an index run of a version this orgtrail reads")),
        };
        let first = h.u64()?;
        let count = h.u32()?;
        let min_time = h.i64()?;
        let max_time = h.i64()?;
        let n = count as usize;
        let blocks = n.div_ceil(BLOCK);
        if bloom_len != bloom_blocks(u64::from(count)) * (BLOOM_BLOCK_BITS / 8) {
            return Err(bad("Bloom filter size"));
        }
        // The directory is read a piece at a time and sampled: one entry in [`DIR_SAMPLE`]
        // stays in memory (the whole of it was 4 MB at 8M events).
        let fixed = blocks as u64 * (2 * TIMES_ENTRY + 16) as u64 + 4;
        if footer_off - dir_off < fixed {
            return Err(bad("directory shorter than its blocks"));
        }
        let mut d = SeqReader::new(path, dir_off, footer_off)?;
        let times_dir = Dir::sample(&mut d, blocks)?;
        let order_dir = Dir::sample(&mut d, blocks)?;
        let dedup_dir = Dir::sample(&mut d, blocks)?;
        let pages = u64::from(u32::from_be_bytes(d.array()?));
        if footer_off - d.pos != pages * POST_ENTRY as u64 {
            return Err(bad("directory has trailing bytes"));
        }
        let post_dir = Dir::sample(&mut d, pages as usize)?;
        drop(d);
        if (postings_off - dedup_off) != n as u64 * DEDUP_ENTRY as u64 {
            return Err(bad("dedup section size"));
        }
        Ok(Run {
            file,
            path: path.to_owned(),
            first,
            count,
            min_time,
            max_time,
            times_off,
            order_off,
            dedup_off,
            postings_off,
            bloom_off,
            bloom_blocks: bloom_blocks(u64::from(count)),
            bloom: std::sync::RwLock::new(None),
            times_dir,
            order_dir,
            dedup_dir,
            post_dir,
            skip_tables,
            block_times: std::sync::OnceLock::new(),
        })
    }

    /// The seq after the run's last.
    pub(crate) fn end(&self) -> u64 {
        self.first + u64::from(self.count)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn read_at(&self, off: u64, len: usize) -> Result<Vec<u8>, StoreError> {
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, off)
            .map_err(io_err(&self.path))?;
        Ok(buf)
    }

    /// Entries `from..to` of a directory section (fewer where it ends).
    fn dir_read<T: DirEntry>(&self, d: &Dir<T>, from: usize, to: usize) -> R<Vec<T>> {
        let to = to.min(d.len);
        if from >= to {
            return Ok(Vec::new());
        }
        let bytes = self.read_at(d.off + (from * T::LEN) as u64, (to - from) * T::LEN)?;
        Ok(bytes.chunks_exact(T::LEN).map(T::decode).collect())
    }

    /// The last entry of a directory section for which `pred` holds (it holds for a prefix of
    /// the entries): its index, itself and the entry after it.
    fn dir_last<T: DirEntry>(
        &self,
        d: &Dir<T>,
        pred: impl Fn(&T) -> bool,
    ) -> R<Option<(usize, T, Option<T>)>> {
        let Some(g) = d.sample.partition_point(&pred).checked_sub(1) else {
            return Ok(None);
        };
        let from = g * DIR_SAMPLE;
        let entries = self.dir_read(d, from, from + DIR_SAMPLE + 1)?;
        let Some(i) = entries.partition_point(&pred).checked_sub(1) else {
            return Err(StoreError::Corrupt(format!(
                "index run {}: directory out of order",
                self.path.display()
            )));
        };
        Ok(Some((from + i, entries[i], entries.get(i + 1).copied())))
    }

    /// The file range of each of `blocks` (ascending) of the section at `base` ending at
    /// `section_end`, from its directory: each group of [`DIR_SAMPLE`] entries read once.
    fn block_ranges(
        &self,
        d: &Dir<(i64, u32)>,
        base: u64,
        section_end: u64,
        blocks: &[usize],
    ) -> R<Vec<(u64, u64)>> {
        let mut out = Vec::with_capacity(blocks.len());
        let mut group: Option<(usize, Vec<(i64, u32)>)> = None;
        for &b in blocks {
            let g = b / DIR_SAMPLE;
            let entries = match &group {
                Some((h, entries)) if *h == g => entries,
                _ => {
                    let from = g * DIR_SAMPLE;
                    let entries = self.dir_read(d, from, from + DIR_SAMPLE + 1)?;
                    &group.insert((g, entries)).1
                }
            };
            let j = b - g * DIR_SAMPLE;
            let Some(start) = entries.get(j) else {
                return Err(StoreError::Corrupt(format!(
                    "index run {}: no directory entry for block {b}",
                    self.path.display()
                )));
            };
            let start = base + u64::from(start.1);
            let end = entries
                .get(j + 1)
                .map_or(section_end, |e| base + u64::from(e.1));
            if end < start {
                return Err(StoreError::Corrupt(format!(
                    "index run {}: block {b} out of order",
                    self.path.display()
                )));
            }
            out.push((start, end));
        }
        Ok(out)
    }

    /// The first time of order block `i`, and the block's bytes.
    fn order_block_bytes(&self, i: usize) -> Result<(i64, Vec<u8>), StoreError> {
        let d = &self.order_dir;
        let entries = self.dir_read(d, i, i + 2)?;
        let Some(&(t, start)) = entries.first() else {
            return Err(StoreError::Corrupt(format!(
                "index run {}: no directory entry for block {i}",
                self.path.display()
            )));
        };
        let start = self.order_off + u64::from(start);
        let end = entries
            .get(1)
            .map_or(self.dedup_off, |d| self.order_off + u64::from(d.1));
        if end < start {
            return Err(StoreError::Corrupt(format!(
                "index run {}: block {i} out of order",
                self.path.display()
            )));
        }
        Ok((t, self.read_at(start, (end - start) as usize)?))
    }

    fn entries_in_block(&self, i: usize) -> usize {
        (self.count as usize - i * BLOCK).min(BLOCK)
    }

    /// Bytes of the Bloom filter (in the file, and in memory when kept).
    pub(crate) fn bloom_bytes(&self) -> u64 {
        self.bloom_blocks * (BLOOM_BLOCK_BITS / 8)
    }

    /// Whether the Bloom filter is in memory.
    pub(crate) fn bloom_resident(&self) -> bool {
        self.bloom.read().is_ok_and(|b| b.is_some())
    }

    /// Keeps the Bloom filter in memory (read from the file, which [`Run::open`] checked), or
    /// lets it go: then each probe reads the one block it needs (64 bytes, one positional
    /// read, served by the operating system's page cache).
    pub(crate) fn keep_bloom(&self, keep: bool) -> Result<(), StoreError> {
        if keep == self.bloom_resident() {
            return Ok(());
        }
        let words = if keep {
            // Read a piece at a time into the words: reading the whole filter first held it
            // twice (up to the filters' whole budget more, at the moment a merge installs).
            let mut words = vec![0u64; (self.bloom_bytes() / 8) as usize].into_boxed_slice();
            for (i, piece) in words.chunks_mut(BLOOM_CHUNK_WORDS).enumerate() {
                let off = self.bloom_off + (i * BLOOM_CHUNK_WORDS * 8) as u64;
                let bytes = self.read_at(off, piece.len() * 8)?;
                for (w, c) in piece.iter_mut().zip(bytes.chunks_exact(8)) {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(c);
                    *w = u64::from_be_bytes(a);
                }
            }
            Some(words)
        } else {
            None
        };
        let mut g = self
            .bloom
            .write()
            .map_err(|_| StoreError::Corrupt("an index run's filter lock is poisoned".into()))?;
        *g = words;
        Ok(())
    }

    /// Whether the Bloom filter may hold `blind` (false: surely not in this run).
    pub(crate) fn may_contain(&self, blind: &Blind) -> Result<bool, StoreError> {
        let (block, bits) = bloom_bits(blind, self.bloom_blocks);
        let test = |words: &[u64]| {
            bits.iter()
                .all(|&bit| words[(bit / 64) as usize] & (1u64 << (bit % 64)) != 0)
        };
        if let Ok(g) = self.bloom.read()
            && let Some(words) = g.as_ref()
        {
            return Ok(test(&words[block * 8..block * 8 + 8]));
        }
        let mut b = [0u8; 64];
        self.file
            .read_exact_at(&mut b, self.bloom_off + block as u64 * 64)
            .map_err(io_err(&self.path))?;
        let mut words = [0u64; 8];
        for (w, c) in words.iter_mut().zip(b.chunks_exact(8)) {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            *w = u64::from_be_bytes(a);
        }
        Ok(test(&words))
    }

    /// The (seq, hash prefix) stored under a dedup blind in this run.
    pub(crate) fn dedup(&self, blind: &Blind) -> Result<Option<(u64, [u8; 8])>, StoreError> {
        if self.count == 0 || !self.may_contain(blind)? {
            return Ok(None);
        }
        let Some((i, _, _)) = self.dir_last(&self.dedup_dir, |b| b <= blind)? else {
            return Ok(None);
        };
        let k = self.entries_in_block(i);
        let bytes = self.read_at(
            self.dedup_off + (i * BLOCK * DEDUP_ENTRY) as u64,
            k * DEDUP_ENTRY,
        )?;
        let entry = |j: usize| &bytes[j * DEDUP_ENTRY..(j + 1) * DEDUP_ENTRY];
        let (mut lo, mut hi) = (0usize, k);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match entry(mid)[..16].cmp(&blind[..]) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    let mut r = Reader::new(&entry(mid)[16..], "index run dedup entry");
                    let o = r.u32()?;
                    let h8: [u8; 8] = r.array()?;
                    if o >= self.count {
                        return Err(StoreError::Corrupt(format!(
                            "index run {}: dedup entry out of range",
                            self.path.display()
                        )));
                    }
                    return Ok(Some((self.first + u64::from(o), h8)));
                }
            }
        }
        Ok(None)
    }

    /// The seqs carrying an attribute blind in this run, ascending.
    #[cfg(test)]
    pub(crate) fn postings(&self, blind: &Blind) -> Result<Vec<u64>, StoreError> {
        match self.list(blind)? {
            Some(l) => l.decode(),
            None => Ok(Vec::new()),
        }
    }

    /// The count of entries of the list of `blind` and where its skip table starts (its body
    /// is `len` bytes from there), without reading the list.
    fn find_list(&self, blind: &Blind) -> Result<Option<(u64, u64, usize)>, StoreError> {
        let Some((_, (_, mut off), next)) = self.dir_last(&self.post_dir, |(b, _)| b <= blind)?
        else {
            return Ok(None);
        };
        let end = next.map_or(self.bloom_off, |(_, o)| o);
        if end < off {
            return Err(StoreError::Corrupt(format!(
                "index run {}: postings directory out of order",
                self.path.display()
            )));
        }
        // Entries of one page are read with one positional read; a long list is read whole
        // once its header is found.
        let page = self.read_at(off, (end - off) as usize)?;
        let mut r = Reader::new(&page, "index run postings");
        while !r.done() {
            let b: Blind = r.array()?;
            let n = r.varint()?;
            let len = r.varint()? as usize;
            let head = (16 + varint_len(n) + varint_len(len as u64)) as u64;
            if &b > blind {
                return Ok(None);
            }
            if &b == blind {
                return Ok(Some((n, off + head, len)));
            }
            // Skip this entry's list (it may run past the page: then the next entry starts
            // beyond what was read, on a later page).
            let skip = off + head + len as u64;
            if skip >= end {
                return Ok(None);
            }
            r.take(len)?;
            off = skip;
        }
        Ok(None)
    }

    /// The posting list of an attribute blind in this run, read (one positional read) but not
    /// decoded.
    pub(crate) fn list(&self, blind: &Blind) -> Result<Option<RunList>, StoreError> {
        let Some((n, start, len)) = self.find_list(blind)? else {
            return Ok(None);
        };
        let body = self.read_at(start, len)?;
        RunList::new(self.first, self.count, n, self.skips(n), body).map(Some)
    }

    /// The eventTimes of `seqs` (ascending, all in this run), reading each block once.
    pub(crate) fn times_of(&self, seqs: &[u64]) -> Result<Vec<i64>, StoreError> {
        let mut offs = Vec::with_capacity(seqs.len());
        for &seq in seqs {
            let o = seq
                .checked_sub(self.first)
                .filter(|&o| o < u64::from(self.count))
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("seq {seq} is not in index run {}", self.first))
                })? as usize;
            offs.push(o);
        }
        // The blocks needed, read a span at a time: one positional read covers neighbouring
        // blocks (a few hundred bytes each) rather than a read per block.
        let mut blocks: Vec<usize> = offs.iter().map(|o| o / BLOCK).collect();
        blocks.dedup();
        let ranges = self.block_ranges(&self.times_dir, self.times_off, self.order_off, &blocks)?;
        let start_of = |k: usize| ranges[k].0;
        let end_of = |k: usize| ranges[k].1;
        let mut decoded: HashMap<usize, Vec<i64>> = HashMap::with_capacity(blocks.len());
        let mut i = 0;
        while i < blocks.len() {
            let mut j = i;
            while j + 1 < blocks.len()
                && start_of(j + 1).saturating_sub(end_of(j)) <= SPAN_GAP
                && end_of(j + 1).saturating_sub(start_of(i)) <= SPAN_MAX
            {
                j += 1;
            }
            let base = start_of(i);
            let span_end = end_of(j);
            if span_end < base {
                return Err(StoreError::Corrupt(format!(
                    "index run {}: times blocks out of order",
                    self.path.display()
                )));
            }
            let span = self.read_at(base, (span_end - base) as usize)?;
            for (k, &b) in blocks.iter().enumerate().take(j + 1).skip(i) {
                let (a, z) = (
                    start_of(k).saturating_sub(base) as usize,
                    end_of(k).saturating_sub(base) as usize,
                );
                let bytes = span.get(a..z).ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "index run {}: times block {b}",
                        self.path.display()
                    ))
                })?;
                decoded.insert(b, self.decode_times(b, bytes)?);
            }
            i = j + 1;
        }
        let mut out = Vec::with_capacity(offs.len());
        for o in offs {
            let t = decoded
                .get(&(o / BLOCK))
                .and_then(|ts| ts.get(o % BLOCK))
                .copied()
                .ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "index run {}: no time for offset {o}",
                        self.path.display()
                    ))
                })?;
            out.push(t);
        }
        Ok(out)
    }

    /// The lowest and highest eventTime of each block of [`BLOCK`] seqs (block `i` holds the
    /// seqs `first + 128 i ..`), for skipping the seqs of a lookup whose block cannot hold a
    /// time of its range. Read from the times section the first time they are asked for, a
    /// span at a time, then kept with the run: 16 bytes per 128 events.
    pub(crate) fn block_times(&self) -> Result<&[(i64, i64)], StoreError> {
        if let Some(b) = self.block_times.get() {
            return Ok(b);
        }
        let blocks = self.times_dir.len;
        let all: Vec<usize> = (0..blocks).collect();
        let ranges = self.block_ranges(&self.times_dir, self.times_off, self.order_off, &all)?;
        drop(all);
        let start_of = |b: usize| ranges[b].0;
        let end_of = |b: usize| ranges[b].1;
        let mut out = Vec::with_capacity(blocks);
        let mut i = 0;
        while i < blocks {
            let mut j = i;
            while j + 1 < blocks && end_of(j + 1).saturating_sub(start_of(i)) <= SPAN_MAX {
                j += 1;
            }
            let base = start_of(i);
            let span_end = end_of(j);
            if span_end < base {
                return Err(StoreError::Corrupt(format!(
                    "index run {}: times blocks out of order",
                    self.path.display()
                )));
            }
            let span = self.read_at(base, (span_end - base) as usize)?;
            for b in i..=j {
                let bytes = span
                    .get(
                        start_of(b).saturating_sub(base) as usize
                            ..end_of(b).saturating_sub(base) as usize,
                    )
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "index run {}: times block {b}",
                            self.path.display()
                        ))
                    })?;
                let ts = self.decode_times(b, bytes)?;
                let lo = ts.iter().copied().min().unwrap_or(i64::MAX);
                let hi = ts.iter().copied().max().unwrap_or(i64::MIN);
                out.push((lo, hi));
            }
            i = j + 1;
        }
        Ok(self.block_times.get_or_init(|| out))
    }

    fn decode_times(&self, b: usize, bytes: &[u8]) -> Result<Vec<i64>, StoreError> {
        let mut r = Reader::new(bytes, "index run times");
        let k = self.entries_in_block(b);
        let mut ts = Vec::with_capacity(k);
        let mut prev = 0i64;
        for _ in 0..k {
            prev = prev.wrapping_add(unzigzag(r.varint()?));
            ts.push(prev);
        }
        Ok(ts)
    }

    /// The (time, seq) entries of order block `b`, ascending.
    fn order_block(&self, b: usize) -> Result<Vec<(i64, u64)>, StoreError> {
        let (mut t, bytes) = self.order_block_bytes(b)?;
        let mut r = Reader::new(&bytes, "index run order");
        let k = self.entries_in_block(b);
        let mut out = Vec::with_capacity(k);
        for _ in 0..k {
            t = t.wrapping_add(r.varint()? as i64);
            let o = r.varint()?;
            if o >= u64::from(self.count) {
                return Err(StoreError::Corrupt(format!(
                    "index run {}: order entry out of range",
                    self.path.display()
                )));
            }
            out.push((t, self.first + o));
        }
        Ok(out)
    }

    /// The (time, seq) entries in `lo..=hi`, newest first, a block at a time.
    pub(crate) fn order_rev(&self, lo: (i64, u64), hi: (i64, u64)) -> OrderRev<'_> {
        // The last block whose first time is <= hi's time.
        let (upto, failed) = match lo > hi {
            true => (0, None),
            false => match self.dir_last(&self.order_dir, |(t, _)| *t <= hi.0) {
                Ok(last) => (last.map_or(0, |(i, _, _)| i + 1), None),
                Err(e) => (0, Some(e)),
            },
        };
        OrderRev {
            run: self,
            next_block: upto,
            buf: Vec::new(),
            lo,
            hi,
            done: lo > hi,
            failed,
        }
    }
}

/// A sequential reader over one section of a run file (for merging runs).
struct SeqReader {
    r: std::io::BufReader<std::io::Take<File>>,
    path: PathBuf,
    /// The file offset of the next byte.
    pos: u64,
}

impl SeqReader {
    fn new(path: &Path, from: u64, to: u64) -> R<SeqReader> {
        use std::io::{Read, Seek, SeekFrom};
        let e = io_err(path);
        let mut f = File::open(path).map_err(&e)?;
        f.seek(SeekFrom::Start(from)).map_err(&e)?;
        Ok(SeqReader {
            r: std::io::BufReader::with_capacity(1 << 16, f.take(to.saturating_sub(from))),
            path: path.to_owned(),
            pos: from,
        })
    }

    fn fill(&mut self, buf: &mut [u8]) -> R<()> {
        use std::io::Read;
        self.r.read_exact(buf).map_err(io_err(&self.path))?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    /// Reads past the next `n` bytes.
    fn skip(&mut self, n: u64) -> R<()> {
        use std::io::Read;
        let got = std::io::copy(&mut (&mut self.r).take(n), &mut std::io::sink())
            .map_err(io_err(&self.path))?;
        if got != n {
            return Err(StoreError::Corrupt(format!(
                "index run {}: section ends inside a posting list",
                self.path.display()
            )));
        }
        self.pos += n;
        Ok(())
    }

    fn array<const N: usize>(&mut self) -> R<[u8; N]> {
        let mut a = [0u8; N];
        self.fill(&mut a)?;
        Ok(a)
    }

    fn varint(&mut self) -> R<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let [b] = self.array::<1>()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(StoreError::Corrupt(format!(
            "index run {}: integer too long",
            self.path.display()
        )))
    }
}

impl Run {
    /// Every eventTime, in seq order.
    fn times_seq(&self) -> R<impl Iterator<Item = R<i64>> + '_> {
        let mut r = SeqReader::new(&self.path, self.times_off, self.order_off)?;
        let mut prev = 0i64;
        Ok((0..self.count as usize).map(move |i| {
            if i % BLOCK == 0 {
                prev = 0;
            }
            prev = prev.wrapping_add(unzigzag(r.varint()?));
            Ok(prev)
        }))
    }

    /// Every (eventTime, seq), ascending.
    fn order_seq(&self) -> R<impl Iterator<Item = R<(i64, u64)>> + '_> {
        let mut r = SeqReader::new(&self.path, self.order_off, self.dedup_off)?;
        // The first time of each block, from the directory, read alongside.
        let d = &self.order_dir;
        let mut firsts = SeqReader::new(&self.path, d.off, d.off + (d.len * TIMES_ENTRY) as u64)?;
        let mut t = 0i64;
        Ok((0..self.count as usize).map(move |i| {
            if i % BLOCK == 0 {
                let e: [u8; TIMES_ENTRY] = firsts.array()?;
                t = <(i64, u32)>::decode(&e).0;
            }
            t = t.wrapping_add(r.varint()? as i64);
            let o = r.varint()?;
            Ok((t, self.first + o))
        }))
    }

    /// Every (dedup blind, seq, hash prefix), ascending by blind.
    fn dedup_seq(&self) -> R<impl Iterator<Item = R<(Blind, u64, [u8; 8])>> + '_> {
        let mut r = SeqReader::new(&self.path, self.dedup_off, self.postings_off)?;
        Ok((0..self.count as usize).map(move |_| {
            let b: Blind = r.array()?;
            let o = u32::from_be_bytes(r.array()?);
            let h8: [u8; 8] = r.array()?;
            Ok((b, self.first + u64::from(o), h8))
        }))
    }

    /// How many skip entries a list of `k` entries has in this run.
    fn skips(&self, k: u64) -> usize {
        if self.skip_tables { skips(k) } else { 0 }
    }

    /// Every (attribute blind, count, encoded list), ascending by blind.
    /// Every posting list (blind, entry count, gaps without the skip table), ascending by
    /// blind. A list longer than [`BODY_IN_MEMORY_MAX`] stays in the file.
    fn postings_seq(&self) -> R<impl Iterator<Item = R<(Blind, u64, Body)>> + '_> {
        let mut r = SeqReader::new(&self.path, self.postings_off, self.bloom_off)?;
        let mut done = false;
        Ok(std::iter::from_fn(move || {
            if done {
                return None;
            }
            let mut b: Blind = [0u8; 16];
            // The section ends where a blind cannot be read whole.
            match std::io::Read::read(&mut r.r, &mut b[..1]) {
                Ok(0) => {
                    done = true;
                    return None;
                }
                Ok(_) => r.pos += 1,
                Err(e) => {
                    done = true;
                    return Some(Err(io_err(&r.path)(e)));
                }
            }
            let item = (|| {
                r.fill(&mut b[1..])?;
                let k = r.varint()?;
                let len = r.varint()?;
                // The gaps only: the skip table is made again by whoever writes them.
                let skip = (self.skips(k) * SKIP_ENTRY) as u64;
                if skip > len {
                    return Err(StoreError::Corrupt(format!(
                        "index run {}: posting list shorter than its skip table",
                        r.path.display()
                    )));
                }
                if len - skip > BODY_IN_MEMORY_MAX {
                    let off = r.pos + skip;
                    r.skip(len)?;
                    let file = self.file.try_clone().map_err(io_err(&self.path))?;
                    return Ok((
                        b,
                        k,
                        Body::File {
                            file,
                            path: self.path.clone(),
                            off,
                            len: len - skip,
                        },
                    ));
                }
                let mut list = vec![0u8; len as usize];
                r.fill(&mut list)?;
                list.drain(..skip as usize);
                Ok((b, k, Body::Mem(list)))
            })();
            if item.is_err() {
                done = true;
            }
            Some(item)
        }))
    }
}

impl Run {
    /// Entries of every posting list of the run (for `verify`). Reads the whole section.
    pub(crate) fn posting_total(&self) -> R<u64> {
        let mut n = 0;
        for p in self.postings_seq()? {
            n += p?.1;
        }
        Ok(n)
    }
}

/// Merges iterators each ascending by `key` into one ascending stream; equal keys come in
/// the order of the iterators.
struct MergeBy<I: Iterator, K: Ord, F: Fn(&I::Item) -> K> {
    iters: Vec<I>,
    heads: Vec<Option<I::Item>>,
    key: F,
}

impl<T, I, K, F> MergeBy<I, K, F>
where
    I: Iterator<Item = R<T>>,
    K: Ord,
    F: Fn(&R<T>) -> K,
{
    fn new(mut iters: Vec<I>, key: F) -> Self {
        let heads = iters.iter_mut().map(Iterator::next).collect();
        MergeBy { iters, heads, key }
    }
}

impl<T, I, K, F> Iterator for MergeBy<I, K, F>
where
    I: Iterator<Item = R<T>>,
    K: Ord,
    F: Fn(&R<T>) -> K,
{
    type Item = R<T>;

    fn next(&mut self) -> Option<R<T>> {
        // Errors first, so a failed read ends the merge.
        if let Some(i) = self.heads.iter().position(|h| matches!(h, Some(Err(_)))) {
            let e = self.heads[i].take();
            self.heads.iter_mut().for_each(|h| *h = None);
            return e;
        }
        let (i, _) = self
            .heads
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.as_ref().map(|h| (i, (self.key)(h))))
            .min_by(|a, b| a.1.cmp(&b.1))?;
        let out = self.heads[i].take();
        self.heads[i] = self.iters[i].next();
        out
    }
}

/// Writes one run holding `runs` (contiguous, ascending) into `dir`. Streams: memory holds
/// the Bloom filter, the directory and one merged posting list at a time.
pub(crate) fn merge(
    dir: &Path,
    runs: &[std::sync::Arc<Run>],
    cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
) -> R<PathBuf> {
    let first = runs.first().map_or(1, |r| r.first);
    let mut count = 0u32;
    let mut expect = first;
    for r in runs {
        if r.first != expect {
            return Err(StoreError::Corrupt(format!(
                "index runs to merge are not contiguous at {}",
                r.first
            )));
        }
        expect = r.end();
        count = count
            .checked_add(r.count)
            .ok_or_else(|| StoreError::Corrupt("merged index run too large".into()))?;
    }
    let mut times = Vec::with_capacity(runs.len());
    let mut order = Vec::with_capacity(runs.len());
    let mut dedup = Vec::with_capacity(runs.len());
    let mut postings = Vec::with_capacity(runs.len());
    let bad_list = || StoreError::Corrupt("index run posting list shorter than its count".into());
    for r in runs {
        times.push(r.times_seq()?);
        order.push(r.order_seq()?);
        dedup.push(r.dedup_seq()?);
        postings.push(
            r.postings_seq()?
                .map(move |p| p.map(|(b, k, l)| (b, k, l, r.first))),
        );
    }
    let times = times.into_iter().flatten();
    let order = MergeBy::new(order, |e: &R<(i64, u64)>| e.as_ref().ok().copied());
    let dedup = MergeBy::new(dedup, |e: &R<(Blind, u64, [u8; 8])>| {
        e.as_ref().ok().map(|x| x.0)
    });
    let mut lists = MergeBy::new(postings, |e: &R<(Blind, u64, Body, u64)>| {
        e.as_ref().ok().map(|x| x.0)
    })
    .peekable();
    // Lists of one blind from several runs, joined: only the first gap of each changes.
    let joined = std::iter::from_fn(move || {
        let (blind, k, list, run_first) = match lists.next()? {
            Ok(x) => x,
            Err(e) => return Some(Err(e)),
        };
        // The parts of this blind, joined as they are (see [`Gaps`]): copied into one list,
        // a popular value's list (millions of entries in the largest merges) was held twice.
        let mut parts = vec![(k, list, run_first)];
        while let Some(Ok((b, _, _, _))) = lists.peek() {
            if *b != blind {
                break;
            }
            match lists.next() {
                Some(Ok((_, k, list, run_first))) => parts.push((k, list, run_first)),
                Some(Err(e)) => return Some(Err(e)),
                None => break,
            }
        }
        let mut out = Gaps {
            pieces: Vec::with_capacity(parts.len()),
        };
        let mut total = 0u64;
        let mut prev: Option<u64> = None;
        let mut add = |k: u64, mut list: Body, run_first: u64| -> R<()> {
            let shift = run_first - first;
            let mut o = 0u64;
            let mut head = Vec::new();
            let mut from = 0u64;
            let mut i = 0u64;
            let mut base = 0u64;
            let mut end = 0u64;
            list.for_each_piece(0, &mut |piece: &[u8]| {
                let mut pos = 0usize;
                while pos < piece.len() && i < k {
                    o += varint_at(piece, &mut pos).ok_or_else(bad_list)?;
                    if i == 0 {
                        put_varint(&mut head, shift + o - prev.unwrap_or(0));
                        from = base + pos as u64;
                    }
                    i += 1;
                    end = base + pos as u64;
                }
                base += piece.len() as u64;
                Ok(())
            })?;
            if i < k {
                return Err(bad_list());
            }
            // Bytes after the list's `k` gaps are not part of it.
            list.truncate(end);
            if k > 0 {
                prev = Some(shift + o);
                out.pieces.push((head, list, from));
            }
            total += k;
            Ok(())
        };
        for (k, list, run_first) in parts {
            if let Err(e) = add(k, list, run_first) {
                return Some(Err(e));
            }
        }
        Some(Ok((blind, out, total)))
    });
    write(
        dir,
        Parts {
            first,
            count,
            times,
            order,
            dedup,
            postings: joined,
            cancel,
        },
    )
}

/// A posting list of a run as stored: its skip table and its gaps, decoded on demand.
#[derive(Debug, Clone)]
pub(crate) struct RunList {
    first: u64,
    /// Events in the run (every o is below).
    count: u32,
    n: u64,
    /// (o of the entry before block j, position of block j in `gaps`), for j = 1..
    skip: Vec<(u32, u32)>,
    gaps: Vec<u8>,
}

impl RunList {
    fn new(first: u64, count: u32, n: u64, s: usize, body: Vec<u8>) -> R<RunList> {
        if body.len() < s * SKIP_ENTRY {
            return Err(StoreError::Corrupt(
                "index run posting list shorter than its skip table".into(),
            ));
        }
        let mut r = Reader::new(&body[..s * SKIP_ENTRY], "index run skip table");
        let mut skip = Vec::with_capacity(s);
        for _ in 0..s {
            skip.push((r.u32()?, r.u32()?));
        }
        let gaps = body[s * SKIP_ENTRY..].to_vec();
        Ok(RunList {
            first,
            count,
            n,
            skip,
            gaps,
        })
    }

    fn corrupt() -> StoreError {
        StoreError::Corrupt("index run posting list is malformed or out of range".into())
    }

    pub(crate) fn len(&self) -> u64 {
        self.n
    }

    /// Bytes held (for a cache's weight).
    pub(crate) fn bytes(&self) -> usize {
        self.gaps.len() + self.skip.len() * 8 + 64
    }

    /// Every seq, ascending.
    pub(crate) fn decode(&self) -> R<Vec<u64>> {
        let mut out = Vec::with_capacity(self.n as usize);
        let mut pos = 0usize;
        let mut o = 0u64;
        for _ in 0..self.n {
            o += varint_at(&self.gaps, &mut pos).ok_or_else(Self::corrupt)?;
            if o >= u64::from(self.count) {
                return Err(Self::corrupt());
            }
            out.push(self.first + o);
        }
        Ok(out)
    }

    /// The seqs in `from..to`, ascending: decoded from the block of the skip table that may
    /// hold the first of them, up to the last.
    pub(crate) fn decode_range(&self, from: u64, to: u64) -> R<Vec<u64>> {
        let mut out = Vec::new();
        let lo = from.saturating_sub(self.first);
        let hi = to.saturating_sub(self.first);
        if lo >= hi {
            return Ok(out);
        }
        // Entries before block `j` are at most the o of its skip entry, below `lo`.
        let j = self.skip.partition_point(|(p, _)| u64::from(*p) < lo);
        let (mut pos, mut prev, mut i) = match j.checked_sub(1) {
            Some(k) => {
                let (p, at) = self.skip[k];
                (at as usize, Some(u64::from(p)), j as u64 * SKIP_EVERY)
            }
            None => (0, None, 0),
        };
        while i < self.n {
            let g = varint_at(&self.gaps, &mut pos).ok_or_else(Self::corrupt)?;
            let o = prev.map_or(g, |p| p + g);
            if o >= u64::from(self.count) || prev.is_some_and(|p| o <= p) {
                return Err(Self::corrupt());
            }
            if o >= hi {
                break;
            }
            if o >= lo {
                out.push(self.first + o);
            }
            prev = Some(o);
            i += 1;
        }
        Ok(out)
    }

    /// A cursor for membership probes in ascending order.
    pub(crate) fn probe(&self) -> Probe<'_> {
        Probe {
            l: self,
            pos: 0,
            prev: None,
            i: 0,
            last: 0,
        }
    }
}

/// Membership probes of a [`RunList`]: each jumps by the skip table to the block that may
/// hold the seq, then decodes forward from there (or from where the previous probe stopped),
/// so ascending probes cost at most a block's decoding each and never the whole list.
pub(crate) struct Probe<'a> {
    l: &'a RunList,
    /// Position in the gaps of entry `i`.
    pos: usize,
    /// The o of entry `i - 1`.
    prev: Option<u64>,
    i: u64,
    /// The last o probed (a smaller one starts over).
    last: u64,
}

impl Probe<'_> {
    pub(crate) fn contains(&mut self, seq: u64) -> R<bool> {
        let l = self.l;
        let Some(o) = seq.checked_sub(l.first).filter(|o| *o < u64::from(l.count)) else {
            return Ok(false);
        };
        if o < self.last {
            (self.pos, self.prev, self.i) = (0, None, 0);
        }
        self.last = o;
        // The block that may hold `o`: after the last skip entry whose o is below it.
        let j = l.skip.partition_point(|(p, _)| u64::from(*p) < o);
        if j > 0 {
            let start = j as u64 * SKIP_EVERY;
            if start > self.i {
                let (p, at) = l.skip[j - 1];
                (self.pos, self.prev, self.i) = (at as usize, Some(u64::from(p)), start);
            }
        }
        loop {
            if let Some(p) = self.prev
                && p >= o
            {
                return Ok(p == o);
            }
            if self.i >= l.n {
                return Ok(false);
            }
            let g = varint_at(&l.gaps, &mut self.pos).ok_or_else(RunList::corrupt)?;
            let v = self.prev.map_or(g, |p| p + g);
            if v >= u64::from(l.count) || self.prev.is_some_and(|p| v <= p) {
                return Err(RunList::corrupt());
            }
            self.prev = Some(v);
            self.i += 1;
        }
    }
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// A newest-first walk of a run's time order.
#[derive(Debug)]
pub(crate) struct OrderRev<'a> {
    run: &'a Run,
    next_block: usize,
    buf: Vec<(i64, u64)>,
    lo: (i64, u64),
    hi: (i64, u64),
    done: bool,
    /// An error finding where to start, given as the first item.
    failed: Option<StoreError>,
}

impl Iterator for OrderRev<'_> {
    type Item = Result<(i64, u64), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(e) = self.failed.take() {
                self.done = true;
                return Some(Err(e));
            }
            if self.done {
                return None;
            }
            if let Some(e) = self.buf.pop() {
                if e > self.hi {
                    continue;
                }
                if e < self.lo {
                    self.done = true;
                    return None;
                }
                return Some(Ok(e));
            }
            let b = self.next_block.checked_sub(1)?;
            self.next_block = b;
            match self.run.order_block(b) {
                Ok(entries) => self.buf = entries,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn blind(i: u64, salt: u8) -> Blind {
        let h = orgtrail_crypto::hash::sha256(&[&i.to_be_bytes()[..], &[salt]].concat());
        let mut b = [0u8; 16];
        b.copy_from_slice(&h[..16]);
        b
    }

    /// The index of events `first..first + n` as a test builds it: nearly ordered times with
    /// late arrivals and ties, a value carried by every event, a medium one, singletons.
    struct Model {
        first: u64,
        times: Vec<i64>,
        dedup: Vec<(Blind, u64, [u8; 8])>,
        postings: std::collections::BTreeMap<Blind, Vec<u64>>,
    }

    fn model(first: u64, n: u64) -> Model {
        let mut m = Model {
            first,
            times: Vec::new(),
            dedup: Vec::new(),
            postings: Default::default(),
        };
        for seq in first..first + n {
            let t = 1_700_000_000_000i64 + seq as i64 * 7 - if seq % 13 == 0 { 90_000 } else { 0 };
            m.times.push(t);
            m.dedup.push((blind(seq, 0), seq, (seq * 3).to_be_bytes()));
            m.postings.entry(blind(1, 1)).or_default().push(seq);
            if seq % 17 == 3 {
                m.postings.entry(blind(2, 1)).or_default().push(seq);
            }
            // Long, with uneven gaps: a skip table over gaps of 1 to 7.
            if seq % 4 == 0 || seq % 7 == 0 {
                m.postings.entry(blind(3, 1)).or_default().push(seq);
            }
            if seq % 3 == 0 {
                m.postings.entry(blind(seq, 2)).or_default().push(seq);
            }
        }
        m
    }

    fn write_model(dir: &Path, m: &Model) -> PathBuf {
        let mut order: Vec<(i64, u64)> = m
            .times
            .iter()
            .enumerate()
            .map(|(i, t)| (*t, m.first + i as u64))
            .collect();
        order.sort_unstable();
        let mut dedup = m.dedup.clone();
        dedup.sort_unstable_by_key(|a| a.0);
        let first = m.first;
        write(
            dir,
            Parts {
                first,
                count: m.times.len() as u32,
                times: m.times.iter().map(|t| Ok(*t)),
                order: order.into_iter().map(Ok),
                dedup: dedup.into_iter().map(Ok),
                postings: m.postings.iter().map(move |(b, l)| {
                    let mut out = Vec::new();
                    encode_list(first, l.iter().copied(), &mut out, None);
                    Ok((*b, out.into(), l.len() as u64))
                }),
                cancel: None,
            },
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn check(run: &Run, m: &Model) {
        let n = m.times.len() as u64;
        assert_eq!((run.first, run.end()), (m.first, m.first + n));
        // The filter as written (whole, or a window at a time for all but the smallest runs
        // here) is the filter of every dedup blind.
        let mut want = vec![0u64; (run.bloom_blocks * 8) as usize];
        for (b, _, _) in &m.dedup {
            let (block, bits) = bloom_bits(b, run.bloom_blocks);
            for bit in bits {
                want[block * 8 + (bit / 64) as usize] |= 1u64 << (bit % 64);
            }
        }
        run.keep_bloom(true).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            run.bloom.read().unwrap().as_deref(),
            Some(&want[..]),
            "the Bloom filter as stored"
        );
        // Probed in memory and from the file alike.
        for keep in [true, false] {
            run.keep_bloom(keep).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(run.bloom_resident(), keep);
            for (b, seq, h8) in m.dedup.iter().step_by(7) {
                assert_eq!(
                    run.dedup(b).unwrap_or_else(|e| panic!("{e}")),
                    Some((*seq, *h8))
                );
            }
        }
        let false_hits = (0..2000u64)
            .filter(|i| {
                run.dedup(&blind(*i, 9))
                    .unwrap_or_else(|e| panic!("{e}"))
                    .is_some()
            })
            .count();
        assert_eq!(false_hits, 0, "a blind never stored was found");
        for (b, list) in &m.postings {
            assert_eq!(&run.postings(b).unwrap_or_else(|e| panic!("{e}")), list);
            // Probes through the skip table answer as the list does: ascending (every seq,
            // then every fifth), and after a step back.
            let stored = run
                .list(b)
                .unwrap_or_else(|e| panic!("{e}"))
                .expect("stored");
            assert_eq!(stored.len(), list.len() as u64);
            // Decoding a range of seqs from the block that may hold its first.
            for (a, b) in [
                (m.first, m.first + n),
                (m.first + n / 3, m.first + n / 2),
                (m.first + 129, m.first + 130),
                (0, m.first),
                (m.first + n - 300, u64::MAX),
            ] {
                let want: Vec<u64> = list
                    .iter()
                    .copied()
                    .filter(|s| (a..b).contains(s))
                    .collect();
                assert_eq!(stored.decode_range(a, b).unwrap(), want, "{a}..{b}");
            }
            let set: std::collections::BTreeSet<u64> = list.iter().copied().collect();
            for step in [1usize, 5, 300] {
                let mut p = stored.probe();
                for seq in (m.first.saturating_sub(2)..m.first + n + 2).step_by(step) {
                    assert_eq!(p.contains(seq).unwrap(), set.contains(&seq), "seq {seq}");
                }
                for &seq in list.iter().rev().step_by(97) {
                    assert!(p.contains(seq).unwrap());
                    assert!(!p.contains(seq + n + 5).unwrap());
                }
            }
        }
        assert!(
            run.postings(&blind(7, 7))
                .unwrap_or_else(|e| panic!("{e}"))
                .is_empty()
        );
        let seqs: Vec<u64> = (m.first..m.first + n).step_by(11).collect();
        let want: Vec<i64> = seqs
            .iter()
            .map(|s| m.times[(s - m.first) as usize])
            .collect();
        assert_eq!(run.times_of(&seqs).unwrap_or_else(|e| panic!("{e}")), want);
        let bounds: Vec<(i64, i64)> = m
            .times
            .chunks(BLOCK)
            .map(|c| (*c.iter().min().unwrap(), *c.iter().max().unwrap()))
            .collect();
        assert_eq!(run.block_times().unwrap_or_else(|e| panic!("{e}")), bounds);
        let mut all: Vec<(i64, u64)> = m
            .times
            .iter()
            .enumerate()
            .map(|(o, &t)| (t, m.first + o as u64))
            .collect();
        all.sort_unstable();
        let mid = all[all.len() / 2];
        for (lo, hi) in [
            ((i64::MIN, 0), (i64::MAX, u64::MAX)),
            ((all[100].0, 0), (all[all.len() - 100].0, u64::MAX)),
            (mid, mid),
            ((5, 0), (1, 0)),
        ] {
            let want: Vec<_> = all
                .iter()
                .rev()
                .copied()
                .filter(|e| *e >= lo && *e <= hi)
                .collect();
            let got: Vec<_> = run
                .order_rev(lo, hi)
                .collect::<Result<_, _>>()
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(got, want);
        }
    }

    #[test]
    fn a_run_answers_what_it_was_given() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        // 157 blocks and 31 pages of postings: each directory section spans several groups of
        // the entries kept in memory (`DIR_SAMPLE`).
        let m = model(1_000_001, 20_000);
        let path = write_model(dir.path(), &m);
        assert_eq!(
            parse_file_name(&path.file_name().unwrap_or_default().to_string_lossy()),
            Some((1_000_001, 1_020_001))
        );
        let run = Run::open(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(run.times_dir.len > 2 * DIR_SAMPLE && run.post_dir.len > 2 * DIR_SAMPLE);
        assert_eq!(
            run.times_dir.sample.len(),
            run.times_dir.len.div_ceil(DIR_SAMPLE)
        );
        check(&run, &m);
        // The run file is all that stays: the directory's spill file is gone.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(names, vec![path.file_name().unwrap_or_default().to_owned()]);
    }

    #[test]
    fn merged_runs_answer_as_one_run_of_everything() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut whole = model(1, 9_000);
        // Gaps of up to 151: varints of two bytes, which the merge reads from the parts' files
        // in chunks that cut some of them (see `BODY_CHUNK`).
        whole.postings.insert(
            blind(4, 1),
            (1..9_001)
                .filter(|s| s % 150 == 0 || s % 151 == 0)
                .collect(),
        );
        let mut runs = Vec::new();
        for (a, b) in [
            (1u64, 2_001u64),
            (2_001, 2_002),
            (2_002, 6_500),
            (6_500, 9_001),
        ] {
            let part = Model {
                first: a,
                times: whole.times[(a - 1) as usize..(b - 1) as usize].to_vec(),
                dedup: whole
                    .dedup
                    .iter()
                    .filter(|d| d.1 >= a && d.1 < b)
                    .copied()
                    .collect(),
                postings: whole
                    .postings
                    .iter()
                    .map(|(k, l)| {
                        (
                            *k,
                            l.iter()
                                .copied()
                                .filter(|s| *s >= a && *s < b)
                                .collect::<Vec<_>>(),
                        )
                    })
                    .filter(|(_, l)| !l.is_empty())
                    .collect(),
            };
            let p = write_model(dir.path(), &part);
            runs.push(Arc::new(Run::open(&p).unwrap_or_else(|e| panic!("{e}"))));
        }
        let merged = merge(dir.path(), &runs, None).unwrap_or_else(|e| panic!("{e}"));
        check(
            &Run::open(&merged).unwrap_or_else(|e| panic!("{e}")),
            &whole,
        );
        // The same file as one written from everything at once: lists joined from parts
        // (their skip tables across the parts' boundaries included) are the lists as written.
        let other = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let direct = write_model(other.path(), &whole);
        let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("{e}"));
        assert!(read(&merged) == read(&direct));
    }

    #[test]
    fn a_torn_or_altered_run_is_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = write_model(dir.path(), &model(1, 3));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(Run::open(&path), Err(StoreError::Corrupt(_))));
        let mut altered = bytes.clone();
        altered[20] ^= 1; // the header's lowest time
        std::fs::write(&path, &altered).unwrap_or_else(|e| panic!("{e}"));
        let err = Run::open(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("checksum"), "{err}");
    }
}
