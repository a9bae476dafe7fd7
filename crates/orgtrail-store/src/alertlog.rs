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
//! Entries are never removed yet: the history grows by about 10 bytes plus the rule id per
//! alert. Retention of old alerts is later work.
//!
//! # In sled
//!
//! The alerts recorded in one write are one entry (a group), up to [`GROUP`] alerts each: one
//! sled insert per recorded range rather than one per alert (each sled insert copies the leaf
//! it lands in, and with rules that fire on a few events in a hundred those copies were a
//! large part of what alerts cost the collector). Stores written before keep one entry per
//! alert (version 1); both are read alike.
//!
//! | key | value |
//! |---|---|
//! | `a <seq u64 BE> <rule id>` | version 1: when the alert was recorded (i64 BE, milliseconds since the Unix epoch) |
//! | `a <seq u64 BE> <rule id>` (the group's first alert) | version 2: when the group was recorded (i64 BE, as above), the count of alerts after the first (u16 BE), then each as seq (u64 BE), rule id length (u8), rule id |
//!
//! Alerts sort by (seq, rule id), the order they are recorded in (a range of events is
//! evaluated after every range before it); within a group they are in that order, after the
//! key's, and before the next entry's key. Recorded times never go backwards along the keys:
//! an entry takes the later of the clock and the newest entry's time, so that a reader may
//! stop at the first entry older than the time range it reads.

use orgtrail_core::Timestamp;

use crate::error::StoreError;
use crate::kv::{Tree, Value};
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
/// One alert per entry (stores written before groups).
const VERSION: u8 = 1;
/// A group of alerts per entry.
const GROUPED: u8 = 2;
/// The most alerts in one entry.
pub(crate) const GROUP: usize = 256;

pub(crate) fn key(seq: u64, rule: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + rule.len());
    k.push(HISTORY);
    k.extend_from_slice(&seq.to_be_bytes());
    k.extend_from_slice(rule.as_bytes());
    k
}

/// A version 1 entry's value (one alert).
#[cfg(test)]
fn value(recorded: Timestamp) -> [u8; 9] {
    let mut v = [0u8; 9];
    v[0] = VERSION;
    v[1..].copy_from_slice(&recorded.millis().to_be_bytes());
    v
}

/// A group's value: `alerts` (in key order, at most [`GROUP`]) after the first, which the
/// key names.
fn group_value(recorded: Timestamp, rest: &[&PendingAlert]) -> Vec<u8> {
    let mut v = Vec::with_capacity(11 + rest.iter().map(|a| 9 + a.rule.len()).sum::<usize>());
    v.push(GROUPED);
    v.extend_from_slice(&recorded.millis().to_be_bytes());
    v.extend_from_slice(&(rest.len() as u16).to_be_bytes());
    for a in rest {
        v.extend_from_slice(&a.seq.to_be_bytes());
        v.push(a.rule.len() as u8);
        v.extend_from_slice(a.rule.as_bytes());
    }
    v
}

/// When the entry's alerts were recorded.
fn recorded_of(v: &[u8]) -> Result<Timestamp, StoreError> {
    match (v.first(), v.get(1..9)) {
        (Some(&(VERSION | GROUPED)), Some(ms)) => Ok(Timestamp(i64::from_be_bytes(
            ms.try_into().map_err(|_| malformed())?,
        ))),
        _ => Err(malformed()),
    }
}

fn malformed() -> StoreError {
    StoreError::Corrupt("an alert history entry is malformed".into())
}

/// The alerts of one entry, in order.
pub(crate) fn decode(k: &[u8], v: &[u8]) -> Result<Vec<AlertRef>, StoreError> {
    let bad = malformed;
    let seq = u64::from_be_bytes(k.get(1..9).ok_or_else(bad)?.try_into().map_err(|_| bad())?);
    let rule = String::from_utf8(k[9..].to_vec()).map_err(|_| bad())?;
    let recorded = recorded_of(v)?;
    let first = AlertRef {
        seq,
        rule,
        recorded,
    };
    if v[0] == VERSION {
        return if v.len() == 9 {
            Ok(vec![first])
        } else {
            Err(bad())
        };
    }
    let n = u16::from_be_bytes(
        v.get(9..11)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?,
    );
    let mut out = Vec::with_capacity(1 + usize::from(n));
    out.push(first);
    let mut at = 11;
    for _ in 0..n {
        let seq = u64::from_be_bytes(
            v.get(at..at + 8)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?,
        );
        let len = usize::from(*v.get(at + 8).ok_or_else(bad)?);
        let rule = v.get(at + 9..at + 9 + len).ok_or_else(bad)?;
        out.push(AlertRef {
            seq,
            rule: String::from_utf8(rule.to_vec()).map_err(|_| bad())?,
            recorded,
        });
        at += 9 + len;
    }
    if at != v.len() {
        return Err(bad());
    }
    Ok(out)
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
    tree: &Tree,
    alerts: &[PendingAlert],
) -> Result<(), StoreError> {
    if alerts.is_empty() {
        return Ok(());
    }
    let newest = match tree.scan_prefix([HISTORY]).next_back() {
        Some(kv) => Some(recorded_of(&kv?.1)?),
        None => None,
    };
    let at = stamp(newest);
    let mut sorted: Vec<&PendingAlert> = alerts.iter().collect();
    sorted.sort_by(|x, y| (x.seq, &x.rule).cmp(&(y.seq, &y.rule)));
    for group in sorted.chunks(GROUP) {
        let (first, rest) = (group[0], &group[1..]);
        batch.insert(key(first.seq, &first.rule), group_value(at, rest));
    }
    Ok(())
}

/// Up to `limit` entries: oldest first, strictly after `from` (else from the first); or with
/// `newest_first`, newest first, strictly before `from` (else from the last).
pub(crate) fn read(
    tree: &Tree,
    from: Option<(u64, &str)>,
    limit: usize,
    newest_first: bool,
) -> Result<Vec<AlertRef>, StoreError> {
    let start = [HISTORY];
    let end = [HISTORY + 1];
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    let cursor = from.map(|(seq, rule)| (seq, rule.to_owned()));
    // Whether an alert is on the side of `from` that is read.
    let wanted = |a: &AlertRef| match &cursor {
        None => true,
        Some(c) if newest_first => (a.seq, &a.rule) < (c.0, &c.1),
        Some(c) => (a.seq, &a.rule) > (c.0, &c.1),
    };
    // Adds an entry's wanted alerts, in reading order; false once `limit` is reached.
    let mut take =
        |kv: Result<(Value, Value), crate::kv::BackendError>| -> Result<bool, StoreError> {
            let (k, v) = kv?;
            let mut alerts = decode(&k, &v)?;
            if newest_first {
                alerts.reverse();
            }
            for a in alerts {
                if wanted(&a) {
                    out.push(a);
                    if out.len() >= limit {
                        return Ok(false);
                    }
                }
            }
            Ok(true)
        };
    let k = from.map(|(seq, rule)| key(seq, rule));
    match (k, newest_first) {
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
        (Some(k), false) => {
            // The entry at or before `from` may be a group holding alerts after it.
            if let Some(kv) = tree.range(start.as_slice()..=k.as_slice()).next_back()
                && !take(kv)?
            {
                return Ok(out);
            }
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
        (Some(k), true) => {
            // Entries keyed before `from`; the first of them may hold alerts at or after it
            // (left out by `wanted`).
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
            vec![AlertRef {
                seq: 7,
                rule: "root-login".into(),
                recorded: Timestamp(1_700_000_000_123)
            }]
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

    fn pending(seq: u64, rule: &str) -> PendingAlert {
        PendingAlert {
            seq,
            rule: rule.into(),
            sinks: vec!["log".into()],
        }
    }

    /// Entries of a store written before groups (one per alert), then groups (one of them
    /// split at [`GROUP`]): read alike, in order, from any cursor, either way.
    #[test]
    fn single_entries_and_groups_read_as_one_history_from_any_cursor() {
        let db = crate::kv::Db::temporary();
        let tree = db.open_tree("t").unwrap();
        tree.insert(key(1, "old"), value(Timestamp(1_000))).unwrap();
        tree.insert(key(2, "old"), value(Timestamp(1_001))).unwrap();
        let write = |alerts: &[PendingAlert]| {
            let mut w = crate::ledger::Writes::default();
            add(&mut w, &tree, alerts).unwrap();
            tree.apply_batch(w.into_batch()).unwrap();
        };
        // Recorded out of rule order: kept in key order.
        write(&[pending(5, "b"), pending(5, "a"), pending(7, "c")]);
        let many: Vec<PendingAlert> = (0..GROUP as u64 + 3)
            .map(|i| pending(100 + i, "r"))
            .collect();
        write(&many);
        assert_eq!(
            tree.scan_prefix([HISTORY]).count(),
            2 + 1 + 2,
            "one entry per group"
        );
        let all: Vec<(u64, String)> = [(1, "old"), (2, "old"), (5, "a"), (5, "b"), (7, "c")]
            .into_iter()
            .map(|(s, r)| (s, r.to_owned()))
            .chain(many.iter().map(|a| (a.seq, a.rule.clone())))
            .collect();
        let ids = |v: Vec<AlertRef>| v.into_iter().map(|a| (a.seq, a.rule)).collect::<Vec<_>>();
        assert_eq!(ids(read(&tree, None, usize::MAX, false).unwrap()), all);
        let mut rev = all.clone();
        rev.reverse();
        assert_eq!(ids(read(&tree, None, usize::MAX, true).unwrap()), rev);
        // From every cursor (and one between alerts), both ways, with a limit.
        for (i, (seq, rule)) in all.iter().enumerate() {
            let after = ids(read(&tree, Some((*seq, rule)), 3, false).unwrap());
            assert_eq!(
                after,
                all[i + 1..].iter().take(3).cloned().collect::<Vec<_>>()
            );
            let before = ids(read(&tree, Some((*seq, rule)), 3, true).unwrap());
            let want: Vec<_> = all[..i].iter().rev().take(3).cloned().collect();
            assert_eq!(before, want, "before {seq} {rule}");
        }
        assert_eq!(
            ids(read(&tree, Some((5, "aa")), 2, false).unwrap()),
            vec![(5, "b".to_owned()), (7, "c".to_owned())]
        );
        assert_eq!(
            ids(read(&tree, Some((5, "aa")), 2, true).unwrap()),
            vec![(5, "a".to_owned()), (2, "old".to_owned())]
        );
        // A group's alerts share its time, never before the newest entry's.
        let got = read(&tree, None, usize::MAX, false).unwrap();
        assert!(got.windows(2).all(|w| w[0].recorded <= w[1].recorded));
        assert_eq!(got[2].recorded, got[4].recorded);
    }

    #[test]
    fn a_malformed_group_is_corrupt() {
        let recorded = Timestamp(5);
        let (a, b) = (pending(3, "x"), pending(4, "yy"));
        let v = group_value(recorded, &[&a, &b]);
        let k = key(2, "w");
        assert_eq!(decode(&k, &v).unwrap().len(), 3);
        for cut in [v.len() - 1, 11, 10] {
            assert!(
                matches!(decode(&k, &v[..cut]), Err(StoreError::Corrupt(_))),
                "{cut}"
            );
        }
        let mut longer = v.clone();
        longer.push(0);
        assert!(matches!(decode(&k, &longer), Err(StoreError::Corrupt(_))));
    }
}
