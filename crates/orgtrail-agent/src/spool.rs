//! The agent's durable spool (sled).
//!
//! The spool holds *chunks*: `c <first seq u64>` -> `count (u32) || (len (u32) || event)*`.
//! A chunk is what goes on the wire as one batch, so an acknowledgement removes exactly one
//! key. `x <seq u64>` -> a dead letter (reason length u16, reason, event bytes). Sequence
//! numbers count events; `m next_seq` keeps the next one.
//!
//! An event enters the spool (flushed) before its source moves on, and leaves it only when an
//! acknowledgement covers it, so a crash of the agent or the collector loses nothing and a
//! restart resumes. Few, large sled values keep the spool fast and small (sled costs about
//! 10 µs and hundreds of bytes per key).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use thiserror::Error;

const CHUNK: u8 = b'c';
const DEAD: u8 = b'x';
const NEXT: &[u8] = b"mnext_seq";

/// Spool errors.
#[derive(Debug, Error)]
pub enum SpoolError {
    #[error("spool storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error("spool is corrupt: {0}")]
    Corrupt(String),
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

fn encode_chunk(events: &[Vec<u8>]) -> Vec<u8> {
    let size: usize = events.iter().map(|e| e.len() + 4).sum();
    let mut v = Vec::with_capacity(4 + size);
    v.extend_from_slice(&(events.len() as u32).to_be_bytes());
    for e in events {
        v.extend_from_slice(&(e.len() as u32).to_be_bytes());
        v.extend_from_slice(e);
    }
    v
}

fn decode_chunk(v: &[u8]) -> Result<Vec<Vec<u8>>, SpoolError> {
    let bad = || SpoolError::Corrupt("truncated chunk".into());
    let rd = |at: usize| -> Result<usize, SpoolError> {
        let b: [u8; 4] = v
            .get(at..at + 4)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(bad)?;
        Ok(u32::from_be_bytes(b) as usize)
    };
    let n = rd(0)?;
    let mut out = Vec::with_capacity(n);
    let mut at = 4;
    for _ in 0..n {
        let len = rd(at)?;
        at += 4;
        out.push(v.get(at..at + len).ok_or_else(bad)?.to_vec());
        at += len;
    }
    Ok(out)
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
    pub events: Vec<Vec<u8>>,
    /// Size of the stored chunk, for the spool's accounting when it is acknowledged.
    pub stored_len: u64,
}

/// The spool. Clones share one database.
#[derive(Debug, Clone)]
pub struct Spool {
    db: sled::Db,
    tree: sled::Tree,
    pending_bytes: Arc<AtomicU64>,
}

impl Spool {
    pub fn open(dir: &Path) -> Result<Self, SpoolError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(16 << 20)
            .open()?;
        let tree = db.open_tree("spool")?;
        let mut bytes = 0u64;
        for kv in tree.scan_prefix([CHUNK]) {
            bytes += kv?.1.len() as u64;
        }
        Ok(Spool {
            db,
            tree,
            pending_bytes: Arc::new(AtomicU64::new(bytes)),
        })
    }

    fn next_seq(&self) -> Result<u64, SpoolError> {
        Ok(match self.tree.get(NEXT)? {
            Some(v) => {
                let a: [u8; 8] = v[..]
                    .try_into()
                    .map_err(|_| SpoolError::Corrupt("next seq".into()))?;
                u64::from_be_bytes(a)
            }
            None => 1,
        })
    }

    /// Makes `events` durable as chunks of at most `max_events` / `max_bytes`, and `dead`
    /// as dead letters, in one flush. Only the source calls this.
    pub fn append(
        &self,
        events: &[Vec<u8>],
        dead: &[(String, Vec<u8>)],
        max_events: usize,
        max_bytes: usize,
    ) -> Result<(), SpoolError> {
        if events.is_empty() && dead.is_empty() {
            return Ok(());
        }
        let mut next = self.next_seq()?;
        let mut b = sled::Batch::default();
        let mut added = 0u64;
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
            let v = encode_chunk(&events[start..end]);
            added += v.len() as u64;
            b.insert(&key(CHUNK, next)[..], v);
            next += (end - start) as u64;
            start = end;
        }
        for (reason, bytes) in dead {
            b.insert(&key(DEAD, next)[..], encode_dead(reason, bytes));
            next += 1;
        }
        b.insert(NEXT, &next.to_be_bytes()[..]);
        self.tree.apply_batch(b)?;
        self.db.flush()?;
        self.pending_bytes.fetch_add(added, Ordering::AcqRel);
        Ok(())
    }

    /// The next chunk starting at or after `from`.
    pub fn chunk_from(&self, from: u64) -> Result<Option<Chunk>, SpoolError> {
        match self
            .tree
            .range(key(CHUNK, from)..key(CHUNK, u64::MAX))
            .next()
        {
            Some(kv) => {
                let (k, v) = kv?;
                Ok(Some(Chunk {
                    first_seq: seq_of(&k)?,
                    events: decode_chunk(&v)?,
                    stored_len: v.len() as u64,
                }))
            }
            None => Ok(None),
        }
    }

    /// The acknowledgement of the chunk at `first_seq` arrived: forget it, keeping the
    /// events at `rejected` (positions in the chunk) as dead letters with their reasons.
    pub fn acknowledge(
        &self,
        chunk: (u64, u64),
        rejected: &[(usize, String)],
    ) -> Result<(), SpoolError> {
        let (first_seq, stored_len) = chunk;
        let mut b = sled::Batch::default();
        b.remove(&key(CHUNK, first_seq)[..]);
        // The chunk is read back only when some of its events must be kept as dead letters.
        if !rejected.is_empty()
            && let Some(v) = self.tree.get(key(CHUNK, first_seq))?
        {
            let events = decode_chunk(&v)?;
            for (i, reason) in rejected {
                if let Some(e) = events.get(*i) {
                    b.insert(
                        &key(DEAD, first_seq + *i as u64)[..],
                        encode_dead(reason, e),
                    );
                }
            }
        }
        self.tree.apply_batch(b)?;
        // No flush: forgetting an acknowledged chunk need not be durable at once (sled persists
        // it within its flush interval). After a crash the chunk is simply sent again, and the
        // collector's dedup makes that a no-op; a dead letter written here is lost only together
        // with its chunk, which is then sent and rejected again.
        let _ = self
            .pending_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                Some(p.saturating_sub(stored_len))
            });
        Ok(())
    }

    /// True when nothing waits to be acknowledged.
    pub fn is_empty(&self) -> Result<bool, SpoolError> {
        Ok(self.tree.scan_prefix([CHUNK]).next().transpose()?.is_none())
    }

    /// Bytes waiting to be acknowledged.
    pub fn pending_bytes(&self) -> u64 {
        self.pending_bytes.load(Ordering::Acquire)
    }

    /// The dead letters.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, SpoolError> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix([DEAD]) {
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
}

fn encode_dead(reason: &str, bytes: &[u8]) -> Vec<u8> {
    let r = &reason.as_bytes()[..reason.len().min(u16::MAX as usize)];
    let mut v = Vec::with_capacity(2 + r.len() + bytes.len());
    v.extend_from_slice(&(r.len() as u16).to_be_bytes());
    v.extend_from_slice(r);
    v.extend_from_slice(bytes);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            (c2.first_seq, c2.events[0].as_slice()),
            (11, &b"event-10"[..])
        );
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
        // Sequence numbers keep counting after a restart.
        s.append(&events[..1], &[], 10, 1 << 20).unwrap();
        assert_eq!(s.chunk_from(0).unwrap().unwrap().first_seq, 27);
    }
}
