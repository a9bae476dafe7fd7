//! Log files: events grouped per (account, region, UTC hour of eventTime), written as
//! CloudTrail writes them, `{"Records":[...]}` gzip, each record the event's stored bytes.
//!
//! Events come in sequence order, which is not time order, so several files are open at
//! once, each streamed through gzip into a temporary file. At most [`OPEN_FILES`] are open:
//! an event for another group first closes the file used least recently. A file is also
//! closed before it would inflate to more than the run's `max_file_bytes`. Every decision
//! depends only on the events seen so far, so the same run over the same store makes the same
//! files. A file's name ends in its first event's sequence number (16 hex digits) where
//! CloudTrail puts a random string: unique, and the same each time.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use orgtrail_core::{AccountId, Timestamp};
use orgtrail_crypto::hash::Sha256;

use super::region::Region;
use super::{ExportError, Layout, atomic, target};
use crate::hex;

/// Most log files open at once (each holds a gzip encoder, about 300 KiB, a 32 KiB buffer of
/// records not yet deflated and a 16 KiB one of gzip bytes). Enough for a busy organization's
/// accounts and regions of one hour: fewer open files split hours into many small files, and
/// each file costs a flush.
pub(super) const OPEN_FILES: usize = 256;

pub(super) const HOUR_MS: i64 = 3600 * 1000;

/// Where a file goes: one account, one region, one hour. A copy, not an allocation: an event
/// finds its file without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Group {
    pub(super) account: AccountId,
    pub(super) region: Region,
    /// Start of the UTC hour, in milliseconds.
    pub(super) hour: i64,
}

/// A log file written and in place.
#[derive(Debug, Clone)]
pub(super) struct Written {
    pub(super) group: Group,
    pub(super) key: String,
    /// Hex SHA-256 of the inflated file.
    pub(super) hash: String,
    pub(super) oldest: Timestamp,
    pub(super) newest: Timestamp,
    pub(super) gz_bytes: u64,
}

/// Bytes of a file's records gathered before they are hashed and deflated together: one call
/// into the hash and the deflater per 32 KiB, not two per event.
const GATHER: usize = 32 * 1024;

/// A log file's inflated bytes: hashed, then deflated into the file.
struct Hashed {
    gz: GzEncoder<BufWriter<File>>,
    hasher: Sha256,
}

impl Write for Hashed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.gz.write_all(buf)?;
        self.hasher.update(buf);
        Ok(buf.len())
    }

    /// Nothing: a deflate flush would add an empty block to the file; `close` finishes it.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Open {
    key: String,
    tmp: PathBuf,
    out: BufWriter<Hashed>,
    inflated: u64,
    events: u64,
    oldest: Timestamp,
    newest: Timestamp,
    last_used: u64,
}

pub(super) struct LogWriter<'a> {
    layout: &'a Layout,
    tmp_dir: PathBuf,
    max_file_bytes: u64,
    level: Compression,
    open: HashMap<Group, Open>,
    tick: u64,
    pub(super) written: Vec<Written>,
    dirs: atomic::Dirs,
}

const HEAD: &[u8] = b"{\"Records\":[";
const TAIL: &[u8] = b"]}";

impl<'a> LogWriter<'a> {
    pub(super) fn new(
        layout: &'a Layout,
        tmp_dir: &Path,
        max_file_bytes: u64,
        gzip_level: u32,
    ) -> Self {
        LogWriter {
            layout,
            tmp_dir: tmp_dir.to_owned(),
            max_file_bytes,
            level: Compression::new(gzip_level),
            open: HashMap::new(),
            tick: 0,
            written: Vec::new(),
            dirs: atomic::Dirs::default(),
        }
    }

    /// Adds one event to its group's file.
    pub(super) fn push(
        &mut self,
        group: Group,
        seq: u64,
        time: Timestamp,
        bytes: &[u8],
    ) -> Result<(), ExportError> {
        self.tick += 1;
        let need = bytes.len() as u64 + 1;
        if let Some(f) = self.open.get(&group)
            && f.events > 0
            && f.inflated + need + TAIL.len() as u64 > self.max_file_bytes
        {
            self.close(&group)?;
        }
        if !self.open.contains_key(&group) {
            if self.open.len() >= OPEN_FILES
                && let Some(lru) = self
                    .open
                    .iter()
                    .min_by_key(|(_, f)| f.last_used)
                    .map(|(g, _)| *g)
            {
                self.close(&lru)?;
            }
            let f = self.create(&group, seq, time)?;
            self.open.insert(group, f);
        }
        let Some(f) = self.open.get_mut(&group) else {
            return Ok(());
        };
        let sep: &[u8] = if f.events == 0 { b"" } else { b"," };
        for part in [sep, bytes] {
            f.out
                .write_all(part)
                .map_err(atomic::io(&f.tmp, "writing"))?;
            f.inflated += part.len() as u64;
        }
        f.events += 1;
        f.oldest = f.oldest.min(time);
        f.newest = f.newest.max(time);
        f.last_used = self.tick;
        Ok(())
    }

    fn create(&self, group: &Group, seq: u64, time: Timestamp) -> Result<Open, ExportError> {
        let key = self.layout.log_key(group, seq);
        let tmp = self.tmp_dir.join(format!("{seq:016x}.json.gz.tmp"));
        let file = File::create(&tmp).map_err(atomic::io(&tmp, "creating"))?;
        let gz = GzEncoder::new(BufWriter::with_capacity(16 * 1024, file), self.level);
        let mut out = BufWriter::with_capacity(
            GATHER,
            Hashed {
                gz,
                hasher: Sha256::default(),
            },
        );
        out.write_all(HEAD).map_err(atomic::io(&tmp, "writing"))?;
        Ok(Open {
            key,
            tmp,
            out,
            inflated: HEAD.len() as u64,
            events: 0,
            oldest: time,
            newest: time,
            last_used: self.tick,
        })
    }

    fn close(&mut self, group: &Group) -> Result<(), ExportError> {
        let Some(mut f) = self.open.remove(group) else {
            return Ok(());
        };
        f.out
            .write_all(TAIL)
            .map_err(atomic::io(&f.tmp, "writing"))?;
        let Hashed { gz, hasher } = f
            .out
            .into_inner()
            .map_err(|e| atomic::io(&f.tmp, "writing")(e.into_error()))?;
        let file = gz
            .finish()
            .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
            .map_err(atomic::io(&f.tmp, "writing"))?;
        file.sync_all().map_err(atomic::io(&f.tmp, "flushing"))?;
        let gz_bytes = file
            .metadata()
            .map_err(atomic::io(&f.tmp, "reading the size of"))?
            .len();
        drop(file);
        target::put_file(self.layout, &f.tmp, &f.key, &mut self.dirs)?;
        self.written.push(Written {
            group: *group,
            key: f.key,
            hash: hex::encode(&hasher.finish()),
            oldest: f.oldest,
            newest: f.newest,
            gz_bytes,
        });
        Ok(())
    }

    /// Closes every open file and flushes the directories that received files.
    pub(super) fn finish(mut self) -> Result<Vec<Written>, ExportError> {
        let mut groups: Vec<Group> = self.open.keys().cloned().collect();
        groups.sort();
        for g in groups {
            self.close(&g)?;
        }
        self.dirs.sync()?;
        Ok(self.written)
    }
}
