//! The dead-letter file (`dead-letters` in the spool directory): events the agent will not
//! ship, each with its reason, its source, the time it was set aside and its bytes (when the
//! source had them), sealed like the segments.
//!
//! It is append-only while the agent runs (one `write` and one `fdatasync` per group), so
//! another process may read it at any time: a reader stops at an incomplete last record,
//! which is an append in progress. Purge and replay rewrite it whole: a temporary file,
//! fsynced, renamed over it, the directory fsynced; a reader holding the old file keeps a
//! consistent view. A record's sequence number is its place in the spool's numbering; when a
//! dead letter was written twice (a crash between writing it and recording the
//! acknowledgement that made it), readers keep the last one.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use orgtrail_crypto::DataKey;

use super::record::{self, KIND_DEAD};
use super::{SpoolError, io, sync_dir};

/// The dead-letter file's name in the spool directory.
pub const FILE: &str = "dead-letters";

/// A dead letter: an event the agent will not ship, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its place in the spool's numbering.
    pub seq: u64,
    /// When it was set aside, milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// The source that read it, or `collector` for an event the collector rejected.
    pub source: String,
    pub reason: String,
    /// The event's bytes, as read (empty when the source could not hold them, e.g. a line
    /// over the size limit or an undecodable log file, which its reason names).
    pub bytes: Vec<u8>,
}

/// A dead letter to be written.
#[derive(Debug, Clone)]
pub struct NewDead {
    pub source: String,
    pub reason: String,
    pub bytes: Vec<u8>,
}

fn clip(s: &str) -> &[u8] {
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s.as_bytes()[..end]
}

fn encode(d: &DeadLetter) -> Vec<u8> {
    let (r, s) = (clip(&d.reason), clip(&d.source));
    let mut v = Vec::with_capacity(12 + r.len() + s.len() + d.bytes.len());
    v.extend_from_slice(&d.time_ms.to_be_bytes());
    v.extend_from_slice(&(r.len() as u16).to_be_bytes());
    v.extend_from_slice(r);
    v.extend_from_slice(&(s.len() as u16).to_be_bytes());
    v.extend_from_slice(s);
    v.extend_from_slice(&d.bytes);
    v
}

pub(crate) fn decode(seq: u64, p: &[u8]) -> Option<DeadLetter> {
    let time_ms = i64::from_be_bytes(p.get(..8)?.try_into().ok()?);
    let rl = usize::from(u16::from_be_bytes(p.get(8..10)?.try_into().ok()?));
    let reason = String::from_utf8_lossy(p.get(10..10 + rl)?).into_owned();
    let at = 10 + rl;
    let sl = usize::from(u16::from_be_bytes(p.get(at..at + 2)?.try_into().ok()?));
    let source = String::from_utf8_lossy(p.get(at + 2..at + 2 + sl)?).into_owned();
    Some(DeadLetter {
        seq,
        time_ms,
        source,
        reason,
        bytes: p.get(at + 2 + sl..)?.to_vec(),
    })
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Reads the dead letters in `path` (none when it does not exist). Returns them by sequence
/// number and the offset after the last intact record.
pub(crate) fn read(path: &Path, key: &DataKey) -> Result<(Vec<DeadLetter>, u64), SpoolError> {
    if !path.exists() {
        return Ok((Vec::new(), 0));
    }
    let s = record::scan(path, |k| k == KIND_DEAD)?;
    let mut by_seq = BTreeMap::new();
    for (hd, _, payload) in s.records {
        let Some(payload) = payload else { continue };
        let plain = record::open_payload(key, &hd, &payload).map_err(|e| {
            e.unwrap_or_else(|| SpoolError::WrongKey {
                file: path.to_path_buf(),
            })
        })?;
        let d = decode(hd.first_seq, &plain).ok_or_else(|| {
            SpoolError::Corrupt(format!(
                "{}: dead letter {} is malformed",
                path.display(),
                hd.first_seq
            ))
        })?;
        by_seq.insert(d.seq, d);
    }
    Ok((by_seq.into_values().collect(), s.good_end))
}

/// The agent's handle on its dead-letter file.
#[derive(Debug)]
pub(crate) struct DeadFile {
    path: PathBuf,
    file: Option<File>,
    /// Dead letters held (by distinct sequence number).
    count: u64,
    /// The highest sequence number held.
    pub(crate) max_seq: Option<u64>,
}

impl DeadFile {
    /// Opens the file, cutting off an incomplete last record (an append a crash interrupted,
    /// never confirmed).
    pub(crate) fn open(dir: &Path, key: &DataKey) -> Result<Self, SpoolError> {
        let path = dir.join(FILE);
        let (all, good_end) = read(&path, key)?;
        if path.exists() {
            let size = std::fs::metadata(&path).map_err(io(&path))?.len();
            if good_end < size {
                tracing::warn!(file = %path.display(), bytes = size - good_end, "cutting off an incomplete dead letter at the end of the file (an append that was interrupted)");
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io(&path))?;
                f.set_len(good_end).map_err(io(&path))?;
                f.sync_all().map_err(io(&path))?;
            }
        }
        Ok(DeadFile {
            count: all.len() as u64,
            max_seq: all.last().map(|d| d.seq),
            path,
            file: None,
        })
    }

    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// Appends dead letters durably (one write, one fdatasync).
    pub(crate) fn append(&mut self, key: &DataKey, dead: &[DeadLetter]) -> Result<(), SpoolError> {
        if dead.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for d in dead {
            record::seal_record(key, KIND_DEAD, d.seq, 1, &encode(d), &mut buf)?;
        }
        if self.file.is_none() {
            let existed = self.path.exists();
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(io(&self.path))?;
            if !existed && let Some(dir) = self.path.parent() {
                sync_dir(dir)?;
            }
            self.file = Some(f);
        }
        let Some(f) = self.file.as_mut() else {
            return Err(SpoolError::Corrupt("dead-letter file not open".into()));
        };
        let size = f.metadata().map_err(io(&self.path))?.len();
        let written = f.write_all(&buf).and_then(|()| f.sync_data());
        if let Err(e) = written {
            // Leave no partial record behind: a reader would stop there.
            let _ = f.set_len(size);
            return Err(super::write_error(&self.path, e));
        }
        for d in dead {
            if self.max_seq.is_none_or(|m| d.seq > m) {
                self.count += 1;
                self.max_seq = Some(d.seq);
            }
        }
        Ok(())
    }

    /// Replaces the file's content with `keep` (temporary file, fsync, rename).
    pub(crate) fn rewrite(&mut self, key: &DataKey, keep: &[DeadLetter]) -> Result<(), SpoolError> {
        let tmp = self.path.with_extension("tmp");
        let mut buf = Vec::new();
        for d in keep {
            record::seal_record(key, KIND_DEAD, d.seq, 1, &encode(d), &mut buf)?;
        }
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        if let Err(e) = f.write_all(&buf).and_then(|()| f.sync_all()) {
            drop(f);
            let _ = std::fs::remove_file(&tmp);
            return Err(super::write_error(&tmp, e));
        }
        drop(f);
        self.file = None;
        std::fs::rename(&tmp, &self.path).map_err(io(&self.path))?;
        if let Some(dir) = self.path.parent() {
            sync_dir(dir)?;
        }
        self.count = keep.len() as u64;
        self.max_seq = self.max_seq.max(keep.last().map(|d| d.seq));
        Ok(())
    }

    /// Everything in the file.
    pub(crate) fn all(&self, key: &DataKey) -> Result<Vec<DeadLetter>, SpoolError> {
        read(&self.path, key).map(|r| r.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn dead_letters_round_trip_with_long_fields() {
        let d = DeadLetter {
            seq: 7,
            time_ms: 1_700_000_000_123,
            source: "trail".into(),
            reason: "é".repeat(40_000),
            bytes: b"{\"eventID\":\"x\"}".to_vec(),
        };
        let back = decode(7, &encode(&d)).unwrap();
        assert_eq!(back.bytes, d.bytes);
        assert_eq!(back.source, "trail");
        assert!(back.reason.len() <= u16::MAX as usize && back.reason.starts_with("éé"));
    }
}
