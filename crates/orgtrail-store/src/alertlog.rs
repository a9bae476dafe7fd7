//! The alert history: every alert ever recorded, in the order it was recorded, kept after its
//! sinks took it (the outbox forgets a delivered alert; this log does not), for readers who
//! list and follow alerts (`orgtrail alerts list|follow`).
//!
//! An entry is written in the same atomic, durable `sled::Batch` as the alert's outbox entry
//! and the watermark that covers its event (see the `outbox` module): an alert is in the
//! history exactly when it was recorded, never twice, and a crash cannot leave one without the
//! other. Nothing here holds event data: an entry names the event by its sequence number and
//! the rule by its id; readers read (and decrypt) the event at that sequence number.
//!
//! Entries are never removed yet: the history grows by one small entry (about 30 bytes with
//! its key) per alert. Retention of old alerts is later work.
//!
//! # In sled
//!
//! | key | value |
//! |---|---|
//! | `a <seq u64 BE> <rule id>` | version (1), then when the alert was recorded (i64 BE, milliseconds since the Unix epoch) |
//!
//! Keys sort by (seq, rule id), the order alerts are recorded in (a range of events is
//! evaluated after every range before it). Recorded times never go backwards along the
//! keys: an entry takes the later of the clock and the newest entry's time, so that a reader
//! may stop at the first entry older than the time range it reads.

use orgtrail_core::Timestamp;

use crate::error::StoreError;
use crate::outbox::PendingAlert;

/// One alert of the history: the rule `rule` fired on the event stored at `seq`, recorded
/// at `recorded`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRef {
    pub seq: u64,
    pub rule: String,
    pub recorded: Timestamp,
}

pub(crate) const HISTORY: u8 = b'a';
const VERSION: u8 = 1;

pub(crate) fn key(seq: u64, rule: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + rule.len());
    k.push(HISTORY);
    k.extend_from_slice(&seq.to_be_bytes());
    k.extend_from_slice(rule.as_bytes());
    k
}

fn value(recorded: Timestamp) -> [u8; 9] {
    let mut v = [0u8; 9];
    v[0] = VERSION;
    v[1..].copy_from_slice(&recorded.millis().to_be_bytes());
    v
}

pub(crate) fn decode(k: &[u8], v: &[u8]) -> Result<AlertRef, StoreError> {
    let bad = || StoreError::Corrupt("an alert history entry is malformed".into());
    let seq = u64::from_be_bytes(k.get(1..9).ok_or_else(bad)?.try_into().map_err(|_| bad())?);
    let rule = String::from_utf8(k[9..].to_vec()).map_err(|_| bad())?;
    if v.len() != 9 || v[0] != VERSION {
        return Err(bad());
    }
    let ms = i64::from_be_bytes(v[1..9].try_into().map_err(|_| bad())?);
    Ok(AlertRef {
        seq,
        rule,
        recorded: Timestamp(ms),
    })
}

/// The time an alert recorded now gets: the clock, or the newest entry's time if the clock
/// is behind it.
pub(crate) fn stamp(newest: Option<Timestamp>) -> Timestamp {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Timestamp(newest.map_or(now, |n| n.millis().max(now)))
}

/// Adds the history entries of `alerts` to `batch` (the outbox's batch, so that both are one
/// write).
pub(crate) fn add(
    batch: &mut crate::ledger::Writes,
    tree: &sled::Tree,
    alerts: &[PendingAlert],
) -> Result<(), StoreError> {
    if alerts.is_empty() {
        return Ok(());
    }
    let newest = match tree.scan_prefix([HISTORY]).next_back() {
        Some(kv) => {
            let (k, v) = kv?;
            Some(decode(&k, &v)?.recorded)
        }
        None => None,
    };
    let at = value(stamp(newest));
    for a in alerts {
        batch.insert(key(a.seq, &a.rule), &at);
    }
    Ok(())
}

/// Up to `limit` entries: oldest first, strictly after `from` (else from the first); or with
/// `newest_first`, newest first, strictly before `from` (else from the last).
pub(crate) fn read(
    tree: &sled::Tree,
    from: Option<(u64, &str)>,
    limit: usize,
    newest_first: bool,
) -> Result<Vec<AlertRef>, StoreError> {
    let start = [HISTORY];
    let end = [HISTORY + 1];
    let mut out = Vec::new();
    let mut take = |kv: sled::Result<(sled::IVec, sled::IVec)>| -> Result<bool, StoreError> {
        let (k, v) = kv?;
        out.push(decode(&k, &v)?);
        Ok(out.len() < limit)
    };
    if limit == 0 {
        return Ok(out);
    }
    match (from, newest_first) {
        (None, false) => {
            for kv in tree.range(start.as_slice()..end.as_slice()) {
                if !take(kv)? {
                    break;
                }
            }
        }
        (None, true) => {
            for kv in tree.range(start.as_slice()..end.as_slice()).rev() {
                if !take(kv)? {
                    break;
                }
            }
        }
        (Some((seq, rule)), false) => {
            let k = key(seq, rule);
            let range = (
                std::ops::Bound::Excluded(k.as_slice()),
                std::ops::Bound::Excluded(end.as_slice()),
            );
            for kv in tree.range::<&[u8], _>(range) {
                if !take(kv)? {
                    break;
                }
            }
        }
        (Some((seq, rule)), true) => {
            let k = key(seq, rule);
            for kv in tree.range(start.as_slice()..k.as_slice()).rev() {
                if !take(kv)? {
                    break;
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_entry_round_trips_and_a_bad_one_is_corrupt() {
        let k = key(7, "root-login");
        let v = value(Timestamp(1_700_000_000_123));
        assert_eq!(
            decode(&k, &v).unwrap(),
            AlertRef {
                seq: 7,
                rule: "root-login".into(),
                recorded: Timestamp(1_700_000_000_123)
            }
        );
        assert!(matches!(decode(&k, &v[..8]), Err(StoreError::Corrupt(_))));
        assert!(matches!(decode(&k[..5], &v), Err(StoreError::Corrupt(_))));
        let mut other = v;
        other[0] = 9;
        assert!(matches!(decode(&k, &other), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn keys_sort_by_seq_then_rule() {
        assert!(key(2, "z") < key(10, "a"));
        assert!(key(10, "a") < key(10, "b"));
        assert!(key(u64::MAX, "a")[0] == HISTORY);
    }

    #[test]
    fn a_stamp_never_goes_back() {
        let far = Timestamp(i64::MAX - 1);
        assert_eq!(stamp(Some(far)), far);
        assert!(stamp(None).millis() > 1_600_000_000_000);
    }
}
