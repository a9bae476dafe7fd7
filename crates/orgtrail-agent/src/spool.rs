//! The agent's durable spool (sled).
//!
//! Keys: `p <seq u64>` -> event bytes, waiting to be acknowledged; `x <seq u64>` -> a dead
//! letter (reason length u16, reason, event bytes); `m next_seq`. An event enters the spool
//! (flushed) before its source moves on, and leaves it only when an acknowledgement covers
//! it, so a crash of the agent or the collector loses nothing and a restart resumes.

use std::path::Path;

use thiserror::Error;

const PENDING: u8 = b'p';
const DEAD: u8 = b'x';

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

/// A dead letter: an event the agent will not ship, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub seq: u64,
    pub reason: String,
    pub bytes: Vec<u8>,
}

/// The spool.
#[derive(Debug, Clone)]
pub struct Spool {
    db: sled::Db,
    tree: sled::Tree,
}

impl Spool {
    pub fn open(dir: &Path) -> Result<Self, SpoolError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(32 << 20)
            .open()?;
        let tree = db.open_tree("spool")?;
        Ok(Spool { db, tree })
    }

    fn next_seq(&self) -> Result<u64, SpoolError> {
        let last_p = self.tree.scan_prefix([PENDING]).next_back().transpose()?;
        let last_x = self.tree.scan_prefix([DEAD]).next_back().transpose()?;
        let stored = self.tree.get(b"mnext_seq")?;
        let mut next = match stored {
            Some(v) => seq_of(&[&[0u8][..], &v[..]].concat())?,
            None => 1,
        };
        for k in [last_p, last_x].into_iter().flatten() {
            next = next.max(seq_of(&k.0)? + 1);
        }
        Ok(next)
    }

    /// Makes events durable (one flush); returns their sequence numbers' range.
    pub fn append(&self, events: &[Vec<u8>], dead: &[(String, Vec<u8>)]) -> Result<(), SpoolError> {
        let mut next = self.next_seq()?;
        let mut b = sled::Batch::default();
        for e in events {
            b.insert(&key(PENDING, next)[..], e.as_slice());
            next += 1;
        }
        for (reason, bytes) in dead {
            b.insert(&key(DEAD, next)[..], encode_dead(reason, bytes));
            next += 1;
        }
        b.insert(&b"mnext_seq"[..], &next.to_be_bytes()[..]);
        self.tree.apply_batch(b)?;
        self.db.flush()?;
        Ok(())
    }

    /// Up to `max_events` / `max_bytes` pending events from `from` on, in order.
    pub fn read_from(
        &self,
        from: u64,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, SpoolError> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for kv in self.tree.range(key(PENDING, from)..key(PENDING, u64::MAX)) {
            let (k, v) = kv?;
            if out.len() >= max_events || (bytes + v.len() > max_bytes && !out.is_empty()) {
                break;
            }
            bytes += v.len();
            out.push((seq_of(&k)?, v.to_vec()));
        }
        Ok(out)
    }

    /// The acknowledgement of `seqs` arrived: forget them; move `rejected` to dead letters.
    pub fn acknowledge(&self, seqs: &[u64], rejected: &[(u64, String)]) -> Result<(), SpoolError> {
        let mut b = sled::Batch::default();
        for s in seqs {
            b.remove(&key(PENDING, *s)[..]);
        }
        for (s, reason) in rejected {
            if let Some(v) = self.tree.get(key(PENDING, *s))? {
                b.insert(&key(DEAD, *s)[..], encode_dead(reason, &v));
            }
        }
        self.tree.apply_batch(b)?;
        self.db.flush()?;
        Ok(())
    }

    /// Pending events and their bytes.
    pub fn pending(&self) -> Result<(u64, u64), SpoolError> {
        let mut n = 0;
        let mut bytes = 0;
        for kv in self.tree.scan_prefix([PENDING]) {
            let (_, v) = kv?;
            n += 1;
            bytes += v.len() as u64;
        }
        Ok((n, bytes))
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
