//! The record log: append-only files beside sled holding the bulk of each group commit (its
//! sealed record blocks and its Merkle leaf hashes), so that sled keeps only small locators.
//!
//! sled keeps in memory much of what it is given to write, and adds about 200 bytes per event
//! of its own on disk to values of a few hundred bytes. The log files have neither cost: a
//! group is appended with one positioned write and one `fdatasync`, read back with positioned
//! reads, and sled's batch remains the commit point.
//!
//! # Files
//!
//! `log/<n>.log` in the store's directory, `n` a file number (u32) written as 10 decimal
//! digits, from 1. A file takes group commits until it holds [`FILE_BYTES`]; the next group
//! starts the next file. Each group is one frame: its record blocks (each exactly the bytes of
//! a version 2 `r` value, see `ledger::records`), then its leaf hashes (32 bytes each, in
//! sequence order). Frames follow each other with nothing between them; the files carry no
//! header, since sled's locators say where everything is.
//!
//! # Locators (sled values)
//!
//! | key | located value |
//! |---|---|
//! | `r <first seq u64>` | the record blocks of one group commit (written now): 0x81, file (u32 BE), offset of the first block (u64 BE), number of blocks `b` (u16 BE, at least 1), then per block its count of records (u16 BE, at least 1) and its length (u32 BE): 15 + 6 `b` bytes. The blocks lie one after the other in the log from that offset, and hold the seqs from the key's on, in order |
//! | `r <first seq u64>` | one record block (written by earlier versions of format 2, read as they are): 0x80, count of records (u16 BE), file (u32 BE), offset (u64 BE), length (u32 BE): 19 bytes |
//! | `h <first seq u64>` | 0x80, count of leaf hashes (u32 BE), file (u32 BE), offset (u64 BE): 17 bytes (length 32 × count) |
//!
//! One `r` value per group commit (of up to [`GROUP_BLOCKS`] blocks; a larger group has
//! several) keeps sled's key count, and with it sled's memory, low: sled splits its leaves at
//! 16 keys and keeps bookkeeping per leaf, and a locator per block of 16 records cost about
//! 15 MiB of resident memory at 1M events. A block-locator `r` value keeps an inline value's
//! layout for its first three bytes (a version byte, then the count), and an inline `h` value
//! is a multiple of 32 bytes long, so values written inline by earlier versions of format 2
//! are still read as they are. A reader tells the three kinds of `r` value by their first
//! byte: 1 or 2 inline (the block itself, see `ledger::records`), 0x80 one block located, 0x81
//! a group's blocks located.
//!
//! # Crash safety
//!
//! The writer writes a group's frame at the log's committed end and syncs it *before* the sled
//! batch that holds the group's locators is applied and flushed. A crash in between leaves
//! bytes past the committed end, which no locator names: the next writable open (or the
//! writer's reopen after a failed write) truncates the file to the end of the last committed
//! frame and removes later files. The committed end is where the last `h` locator's leaves
//! end: every frame ends with its leaves. A read-only open reads and changes nothing here.
//!
//! Record blocks are sealed (AES-GCM, their place bound in the AAD), and leaf hashes are
//! checked against signed checkpoints, so a log byte changed is found by a read or `verify`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::error::StoreError;
use crate::format::Reader;
use crate::kv::Tree;

/// The tag byte of a located value.
pub(crate) const LOCATED: u8 = 0x80;
/// The tag byte of an `r` value locating the record blocks of a group.
pub(crate) const LOCATED_GROUP: u8 = 0x81;
/// Most blocks one group `r` value locates.
pub(crate) const GROUP_BLOCKS: usize = 4096;
/// Bytes of a group `r` value before its blocks, and per block.
const GROUP_HEAD: usize = 1 + 4 + 8 + 2;
const GROUP_ENTRY: usize = 2 + 4;
/// A file takes frames until it holds this many bytes.
pub(crate) const FILE_BYTES: u64 = 512 << 20;
/// Length of a located `r` value.
const R_LEN: usize = 19;
/// Length of a located `h` value.
const H_LEN: usize = 17;

/// Where some bytes are in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loc {
    pub(crate) file: u32,
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

impl Loc {
    /// The (file, offset) just past these bytes.
    pub(crate) fn end(&self) -> (u32, u64) {
        // Saturating: a corrupt locator must fail where it is read, not panic here.
        (self.file, self.offset.saturating_add(self.len))
    }
}

/// The locator value of a record block of `count` records, as earlier versions of format 2
/// wrote them (one `r` value per block).
#[cfg(test)]
pub(crate) fn block_locator(count: u16, loc: Loc) -> Vec<u8> {
    let mut v = Vec::with_capacity(R_LEN);
    v.push(LOCATED);
    v.extend_from_slice(&count.to_be_bytes());
    v.extend_from_slice(&loc.file.to_be_bytes());
    v.extend_from_slice(&loc.offset.to_be_bytes());
    v.extend_from_slice(&u32::try_from(loc.len).unwrap_or(u32::MAX).to_be_bytes());
    v
}

/// The `r` value of record blocks lying one after the other in the log from `file`, `offset`:
/// each block's (count of records, length).
pub(crate) fn group_locator(
    file: u32,
    offset: u64,
    blocks: &[(u16, u32)],
) -> Result<Vec<u8>, StoreError> {
    let n = u16::try_from(blocks.len())
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| StoreError::Corrupt("a group locator of no or too many blocks".into()))?;
    let mut v = Vec::with_capacity(GROUP_HEAD + blocks.len() * GROUP_ENTRY);
    v.push(LOCATED_GROUP);
    v.extend_from_slice(&file.to_be_bytes());
    v.extend_from_slice(&offset.to_be_bytes());
    v.extend_from_slice(&n.to_be_bytes());
    for (count, len) in blocks {
        v.extend_from_slice(&count.to_be_bytes());
        v.extend_from_slice(&len.to_be_bytes());
    }
    Ok(v)
}

/// A record block an `r` value stands for: its first seq, its count of records, and where it
/// is in the log (`None`: the `r` value is the block itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockRef {
    pub(crate) first: u64,
    pub(crate) count: u16,
    pub(crate) loc: Option<Loc>,
}

/// The record blocks of the `r` value `v` whose key names seq `first`, in seq order: the
/// value itself (inline), the one block it locates, or every block of a group.
pub(crate) fn blocks_of(first: u64, v: &[u8]) -> Result<Vec<BlockRef>, StoreError> {
    if v.first() != Some(&LOCATED_GROUP) {
        let mut r = Reader::new(v, "record block");
        r.u8()?;
        let count = r.u16()?;
        return Ok(vec![BlockRef {
            first,
            count,
            loc: block_loc(v)?,
        }]);
    }
    let mut r = Reader::new(&v[1..], "record group locator");
    let file = r.u32()?;
    let mut offset = r.u64()?;
    let n = usize::from(r.u16()?);
    if n == 0 || r.remaining() != n * GROUP_ENTRY {
        return Err(StoreError::Corrupt(
            "record group locator: wrong length".into(),
        ));
    }
    let mut out = Vec::with_capacity(n);
    let mut seq = first;
    for _ in 0..n {
        let count = r.u16()?;
        let len = u64::from(r.u32()?);
        if count == 0 {
            return Err(StoreError::Corrupt(
                "record group locator: an empty block".into(),
            ));
        }
        out.push(BlockRef {
            first: seq,
            count,
            loc: Some(Loc { file, offset, len }),
        });
        // A corrupt value must not overflow: it is refused as corruption.
        let overflow =
            || StoreError::Corrupt("record group locator: sequence or offset overflows".into());
        seq = seq.checked_add(u64::from(count)).ok_or_else(overflow)?;
        offset = offset.checked_add(len).ok_or_else(overflow)?;
    }
    Ok(out)
}

/// How many records an `r` value covers, without reading the log.
pub(crate) fn record_count(v: &[u8]) -> Result<u64, StoreError> {
    if v.first() == Some(&LOCATED_GROUP) {
        return Ok(blocks_of(0, v)?.iter().map(|b| u64::from(b.count)).sum());
    }
    let c = v
        .get(1..3)
        .and_then(|s| <[u8; 2]>::try_from(s).ok())
        .ok_or_else(|| StoreError::Corrupt("record block header too short".into()))?;
    Ok(u64::from(u16::from_be_bytes(c)))
}

/// The locator value of `count` leaf hashes.
pub(crate) fn leaves_locator(count: u32, file: u32, offset: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(H_LEN);
    v.push(LOCATED);
    v.extend_from_slice(&count.to_be_bytes());
    v.extend_from_slice(&file.to_be_bytes());
    v.extend_from_slice(&offset.to_be_bytes());
    v
}

/// Where a located `r` value's block is, or `None` for an inline value.
pub(crate) fn block_loc(v: &[u8]) -> Result<Option<Loc>, StoreError> {
    if v.first() != Some(&LOCATED) {
        return Ok(None);
    }
    if v.len() != R_LEN {
        return Err(StoreError::Corrupt(
            "record block locator: wrong length".into(),
        ));
    }
    let mut r = Reader::new(&v[3..], "record block locator");
    Ok(Some(Loc {
        file: r.u32()?,
        offset: r.u64()?,
        len: u64::from(r.u32()?),
    }))
}

/// Where a located `h` value's leaves are, or `None` for an inline value.
pub(crate) fn leaves_loc(v: &[u8]) -> Result<Option<Loc>, StoreError> {
    if v.len().is_multiple_of(32) {
        return Ok(None);
    }
    if v.len() != H_LEN || v[0] != LOCATED {
        return Err(StoreError::Corrupt(
            "leaf hashes: neither 32-byte hashes nor a locator".into(),
        ));
    }
    let mut r = Reader::new(&v[1..], "leaf hashes locator");
    let count = r.u32()?;
    Ok(Some(Loc {
        file: r.u32()?,
        offset: r.u64()?,
        len: u64::from(count) * 32,
    }))
}

/// How many leaf hashes an `h` value holds (inline or located), without reading the log.
pub(crate) fn leaf_count(v: &[u8]) -> Result<u64, StoreError> {
    Ok(match leaves_loc(v)? {
        Some(loc) => loc.len / 32,
        None => (v.len() / 32) as u64,
    })
}

fn file_path(dir: &Path, file: u32) -> PathBuf {
    dir.join(format!("{file:010}.log"))
}

/// The log directory of the store in `data`.
pub(crate) fn dir_of(data: &Path) -> PathBuf {
    data.join("log")
}

fn io_err(what: String, e: std::io::Error) -> StoreError {
    StoreError::Write {
        source: crate::kv::BackendError::io(std::io::Error::new(e.kind(), format!("{what}: {e}"))),
    }
}

/// Reads located values; files are opened once, read-only, on first use.
#[derive(Debug)]
pub(crate) struct LogReader {
    dir: PathBuf,
    files: RwLock<HashMap<u32, Arc<File>>>,
}

impl LogReader {
    pub(crate) fn new(data: &Path) -> Self {
        LogReader {
            dir: dir_of(data),
            files: RwLock::new(HashMap::new()),
        }
    }

    fn file(&self, n: u32) -> Result<Arc<File>, StoreError> {
        if let Some(f) = self.files.read().ok().and_then(|g| g.get(&n).cloned()) {
            return Ok(f);
        }
        let path = file_path(&self.dir, n);
        let f = Arc::new(File::open(&path).map_err(|e| {
            StoreError::Corrupt(format!("log file {} cannot be read: {e}", path.display()))
        })?);
        if let Ok(mut g) = self.files.write() {
            g.insert(n, f.clone());
        }
        Ok(f)
    }

    /// The bytes at `loc`.
    pub(crate) fn read(&self, loc: Loc) -> Result<Vec<u8>, StoreError> {
        let len = usize::try_from(loc.len)
            .map_err(|_| StoreError::Corrupt("log locator: length too large".into()))?;
        let mut buf = vec![0u8; len];
        self.file(loc.file)?
            .read_exact_at(&mut buf, loc.offset)
            .map_err(|e| {
                StoreError::Corrupt(format!(
                    "log file {}: {} bytes at {} cannot be read: {e}",
                    file_path(&self.dir, loc.file).display(),
                    loc.len,
                    loc.offset
                ))
            })?;
        Ok(buf)
    }

    /// The bytes of block `b` of the `r` value `v` (see [`blocks_of`]): inline as they are,
    /// located read from the log.
    pub(crate) fn block<'a>(&self, b: &BlockRef, v: &'a [u8]) -> Result<Cow<'a, [u8]>, StoreError> {
        match b.loc {
            None => Ok(Cow::Borrowed(v)),
            Some(loc) => {
                let bytes = self.read(loc)?;
                // The block's own count must be the locator's.
                if bytes.get(1..3) != Some(&b.count.to_be_bytes()[..]) {
                    return Err(StoreError::Corrupt(
                        "record block in the log does not match its locator".into(),
                    ));
                }
                Ok(Cow::Owned(bytes))
            }
        }
    }

    /// An `h` value's leaf hashes: inline as they are, located read from the log.
    pub(crate) fn leaves<'a>(&self, v: &'a [u8]) -> Result<Cow<'a, [u8]>, StoreError> {
        match leaves_loc(v)? {
            None => Ok(Cow::Borrowed(v)),
            Some(loc) => Ok(Cow::Owned(self.read(loc)?)),
        }
    }

    /// Forgets open files (after the writer truncated or removed some).
    pub(crate) fn reset(&self) {
        if let Ok(mut g) = self.files.write() {
            g.clear();
        }
    }
}

/// The committed end of the log: where the leaves of the last `h` value in `tree` end, or the
/// start of file 1 when no value is located.
pub(crate) fn committed_end(tree: &Tree) -> Result<(u32, u64), StoreError> {
    // An inline last value means every value is inline: nothing is in the log yet.
    if let Some(kv) = tree.scan_prefix([crate::tree::HASHES]).next_back()
        && let Some(loc) = leaves_loc(&kv?.1)?
    {
        return Ok(loc.end());
    }
    Ok((1, 0))
}

/// Appends frames at the log's end (the writer thread's).
#[derive(Debug)]
pub(crate) struct LogWriter {
    dir: PathBuf,
    file_no: u32,
    file: File,
    end: u64,
}

impl LogWriter {
    /// Opens the log for appending at `end` (the committed end): truncates what lies past it
    /// and removes later files.
    pub(crate) fn open(data: &Path, end: (u32, u64)) -> Result<Self, StoreError> {
        let dir = dir_of(data);
        std::fs::create_dir_all(&dir)
            .map_err(|e| io_err(format!("cannot create {}", dir.display()), e))?;
        let (file_no, end) = end;
        // Later files hold only uncommitted frames.
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| io_err(format!("cannot list {}", dir.display()), e))?;
        let mut removed = false;
        for entry in entries {
            let entry = entry.map_err(|e| io_err(format!("cannot list {}", dir.display()), e))?;
            let name = entry.file_name();
            let Some(n) = name
                .to_str()
                .and_then(|s| s.strip_suffix(".log"))
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if n > file_no {
                tracing::warn!(file = %entry.path().display(), "removing an uncommitted log file");
                std::fs::remove_file(entry.path())
                    .map_err(|e| io_err(format!("cannot remove {}", entry.path().display()), e))?;
                removed = true;
            }
        }
        let path = file_path(&dir, file_no);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_err(format!("cannot open {}", path.display()), e))?;
        let len = file
            .metadata()
            .map_err(|e| io_err(format!("cannot read {}", path.display()), e))?
            .len();
        if len < end {
            return Err(StoreError::Corrupt(format!(
                "log file {} holds {len} bytes, but committed groups end at {end}; nothing was \
                 deleted",
                path.display()
            )));
        }
        if len > end {
            tracing::warn!(file = %path.display(), bytes = len - end, "cutting an uncommitted tail off the log");
            file.set_len(end)
                .map_err(|e| io_err(format!("cannot truncate {}", path.display()), e))?;
            file.sync_all()
                .map_err(|e| io_err(format!("cannot sync {}", path.display()), e))?;
        }
        if removed || len == 0 {
            sync_dir(&dir)?;
        }
        Ok(LogWriter {
            dir,
            file_no,
            file,
            end,
        })
    }

    /// Where the next frame goes: (file, offset). Starts the next file when this one is full.
    pub(crate) fn next_frame(&mut self) -> Result<(u32, u64), StoreError> {
        if self.end >= FILE_BYTES {
            let next = self.file_no + 1;
            let path = file_path(&self.dir, next);
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .map_err(|e| io_err(format!("cannot create {}", path.display()), e))?;
            sync_dir(&self.dir)?;
            self.file = file;
            self.file_no = next;
            self.end = 0;
        }
        Ok((self.file_no, self.end))
    }

    /// Writes `frame` at the end and syncs it. The end moves only with [`LogWriter::committed`],
    /// once sled holds the frame's locators: a frame written again after a failure overwrites
    /// the first attempt.
    pub(crate) fn write(&mut self, frame: &[u8]) -> Result<(), StoreError> {
        let path = || file_path(&self.dir, self.file_no).display().to_string();
        self.file
            .write_all_at(frame, self.end)
            .map_err(|e| io_err(format!("cannot write {}", path()), e))?;
        self.file
            .sync_data()
            .map_err(|e| io_err(format!("cannot sync {}", path()), e))
    }

    /// The frame of `len` bytes last written is committed.
    pub(crate) fn committed(&mut self, len: u64) {
        self.end += len;
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(format!("cannot sync {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_value_whose_offsets_overflow_is_corrupt_not_a_panic() {
        // Found by the ledger_record fuzz target: a block at offset 2^64 - 53,504 of 0x12000000
        // bytes.
        let mut v = vec![LOCATED_GROUP, 0, 0, 1, 0xff];
        v.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x2f, 0x00]);
        v.extend_from_slice(&[0, 1, 0x35, 0, 0x12, 0, 0, 0]);
        assert!(matches!(blocks_of(0, &v), Err(StoreError::Corrupt(_))));
        assert!(matches!(
            blocks_of(u64::MAX, &v),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn a_group_value_locates_its_blocks_one_after_the_other() {
        let v = group_locator(3, 1000, &[(16, 500), (4, 120), (16, 480)]).unwrap();
        assert_eq!(v.len(), 15 + 3 * 6);
        let b = blocks_of(41, &v).unwrap();
        let at = |first, count, offset, len| BlockRef {
            first,
            count,
            loc: Some(Loc {
                file: 3,
                offset,
                len,
            }),
        };
        assert_eq!(
            b,
            vec![
                at(41, 16, 1000, 500),
                at(57, 4, 1500, 120),
                at(61, 16, 1620, 480)
            ]
        );
        assert_eq!(record_count(&v).unwrap(), 36);
        // Cut short, or naming no block: corrupt, not misread.
        assert!(blocks_of(41, &v[..v.len() - 1]).is_err());
        assert!(group_locator(3, 1000, &[]).is_err());
    }

    #[test]
    fn values_of_earlier_versions_read_as_one_block() {
        let loc = Loc {
            file: 2,
            offset: 77,
            len: 300,
        };
        let v = block_locator(9, loc);
        assert_eq!(
            blocks_of(5, &v).unwrap(),
            vec![BlockRef {
                first: 5,
                count: 9,
                loc: Some(loc)
            }]
        );
        assert_eq!(record_count(&v).unwrap(), 9);
        // An inline block (version 2): the value is the block.
        let inline = [2u8, 0, 7, 0, 0];
        let b = blocks_of(5, &inline).unwrap();
        assert_eq!((b[0].count, b[0].loc), (7, None));
        assert_eq!(record_count(&inline).unwrap(), 7);
    }
}
