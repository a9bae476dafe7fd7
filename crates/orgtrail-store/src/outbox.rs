//! The alert outbox: which rules fired on which stored events, and the sinks each alert has not
//! reached yet, kept durably beside the events so that a collector killed at any moment neither
//! loses an alert nor makes up a different one.
//!
//! Rules are evaluated after the group commit, on stored events in sequence order, driven by a
//! watermark: every event at or below it has been evaluated and its alerts recorded. Recording
//! the alerts of a range of events and moving the watermark past it is one atomic, durable
//! write, so after a crash evaluation resumes just past the watermark and an event's alerts are
//! recorded exactly once. Such a write does not flush sled itself: it is handed to the
//! ledger's writer thread, which adds it to its next group's batch and makes it durable with
//! that group's flush (or, with no append on its way, commits it at once as a group of its
//! own), and the caller returns only then (see `ledger::riders`). While events stream in,
//! recording alerts and noting deliveries thus add no write or sync of sled's log to the group
//! commits'. An alert leaves the outbox once every one of its sinks took it; delivery is at least once (a crash between a sink's answer and this store's note of it
//! delivers that alert to that sink again, with the same alert id).
//!
//! # In sled
//!
//! | key | value |
//! |---|---|
//! | `m alerts_through` | the watermark (u64 BE); absent until first recorded |
//! | `o <seq u64 BE> <rule id>` | one alert (version 1): 1, then its pending sinks (see below); or the alerts of one recorded write, a group (version 2) keyed by its first: 2, the count of the others (u16 BE), the first's pending sinks, then per other alert its seq (u64 BE), its rule id's length (u8), its rule id, and its pending sinks |
//! | (pending sinks) | their count (u8), then per sink its name's length (u8) and its name |
//! | `D <seq u64 BE> <rule id length u8> <rule id> <sink name>` | a dead letter: version (1), attempts (u32 BE), when it was given up (ms since the Unix epoch, u64 BE), then the last error (UTF-8, at most 512 bytes; never the alert's body) |
//! | `w <rule id length u8> <rule id> <seq u64 BE>` | empty: the threshold windows of that rule keep the event at `seq` |
//!
//! A group holds up to 256 alerts, in key order (seq, then rule id bytes), so that recording
//! the alerts of a range is one sled insert, and noting a page of deliveries rewrites (or
//! removes) the one or two groups it falls in, instead of an insert and a removal per alert:
//! each sled write copies the leaf it lands in, and per alert those writes were most of what
//! an alert cost the ledger. A group keeps its alerts that no sink is pending for any more
//! (with no sinks) until none is left, then goes; so an alert is held by the entry with the
//! greatest key at or before its own, if that entry names it, and by no other. A dead letter
//! re-driven after its group went comes back as an entry of its own (version 1). Stores
//! written before groups (version 1 entries only) are read alike.
//!
//! Every change to `o` and `D` entries after they are recorded (a sink's delivery noted, a
//! dead letter made or re-driven) is a read-modify-write under one process-wide lock, written
//! as one `sled::Batch` and made durable (with the writer's next group commit, as above): sinks
//! are delivered to concurrently, and two notes on one alert must not undo each other.
//!
//! The `w` keys are the state of the threshold rules' sliding windows (which stored events
//! each rule's groups still count), changed in the same atomic write as the alerts and the
//! watermark, so that after a crash the windows are rebuilt, by reading those events again,
//! exactly as they were at the watermark. They hold sequence numbers only, no event data.
//!
//! Rule ids and sink names are the operator's configuration, not event data; the event an
//! alert is about is read back (and decrypted) by its sequence number when it is delivered.

use crate::error::StoreError;
use crate::kv::{Db, Tree};
use crate::ledger::Writes;

/// One alert still to deliver: the rule that fired on the event at `seq`, and the sinks that
/// have not taken it yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingAlert {
    pub seq: u64,
    pub rule: String,
    pub sinks: Vec<String>,
}

/// An alert a sink gave up on, kept until an operator re-drives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The event the alert is about.
    pub seq: u64,
    /// The rule that fired.
    pub rule: String,
    /// The sink that gave up.
    pub sink: String,
    /// Attempts made before giving up (counted in memory by the process that gave up: a
    /// restart in between starts the count over).
    pub attempts: u32,
    /// When it was given up, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The last error, cut to [`MAX_ERROR`] bytes (never the alert's body).
    pub error: String,
}

/// The longest error a dead letter keeps, in bytes.
pub const MAX_ERROR: usize = 512;

pub(crate) const OUTBOX: u8 = b'o';
pub(crate) const DEAD: u8 = b'D';
/// Serializes the read-modify-writes of `o` and `D` entries (see the module docs).
static CHANGES: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn changes() -> std::sync::MutexGuard<'static, ()> {
    // The guarded data is (): a panic elsewhere leaves nothing inconsistent.
    CHANGES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
pub(crate) const THROUGH: &str = "alerts_through";
const VERSION: u8 = 1;

pub(crate) fn key(seq: u64, rule: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + rule.len());
    k.push(OUTBOX);
    k.extend_from_slice(&seq.to_be_bytes());
    k.extend_from_slice(rule.as_bytes());
    k
}

/// Checks what an outbox entry may hold: names of 1 to 255 bytes, at most 255 sinks.
pub(crate) fn check(a: &PendingAlert) -> Result<(), StoreError> {
    let bad = |what: String| Err(StoreError::Invalid(what));
    if a.rule.is_empty() || a.rule.len() > 255 {
        return bad(format!("alert rule id {:?}: 1 to 255 bytes", a.rule));
    }
    if a.sinks.is_empty() || a.sinks.len() > 255 {
        return bad(format!(
            "alert of rule {:?}: 1 to 255 sinks, not {}",
            a.rule,
            a.sinks.len()
        ));
    }
    if let Some(s) = a.sinks.iter().find(|s| s.is_empty() || s.len() > 255) {
        return bad(format!("alert sink name {s:?}: 1 to 255 bytes"));
    }
    Ok(())
}

/// Alerts per group entry, at most.
const GROUP: usize = 256;
/// A group entry's version byte.
const GROUPED: u8 = 2;

fn push_sinks(v: &mut Vec<u8>, sinks: &[String]) {
    v.push(sinks.len() as u8);
    for s in sinks {
        v.push(s.len() as u8);
        v.extend_from_slice(s.as_bytes());
    }
}

/// A version 1 entry's value: one alert's pending sinks.
pub(crate) fn encode_sinks(sinks: &[String]) -> Vec<u8> {
    let mut v = vec![VERSION];
    push_sinks(&mut v, sinks);
    v
}

/// An entry's value for `alerts` (in key order; the key names the first): one alert as
/// version 1, more as a group.
fn encode_entry(alerts: &[PendingAlert]) -> Vec<u8> {
    match alerts {
        [one] => encode_sinks(&one.sinks),
        [first, rest @ ..] => {
            let mut v = Vec::with_capacity(
                3 + alerts
                    .iter()
                    .map(|a| 10 + a.rule.len() + a.sinks.iter().map(|s| 1 + s.len()).sum::<usize>())
                    .sum::<usize>(),
            );
            v.push(GROUPED);
            v.extend_from_slice(&(rest.len() as u16).to_be_bytes());
            push_sinks(&mut v, &first.sinks);
            for a in rest {
                v.extend_from_slice(&a.seq.to_be_bytes());
                v.push(a.rule.len() as u8);
                v.extend_from_slice(a.rule.as_bytes());
                push_sinks(&mut v, &a.sinks);
            }
            v
        }
        [] => Vec::new(),
    }
}

fn malformed() -> StoreError {
    StoreError::Corrupt("an alert outbox entry is malformed".into())
}

/// Reads bytes of a value in order.
struct Reader<'v> {
    v: &'v [u8],
    at: usize,
}

impl<'v> Reader<'v> {
    fn take(&mut self, n: usize) -> Result<&'v [u8], StoreError> {
        let b = self.v.get(self.at..self.at + n).ok_or_else(malformed)?;
        self.at += n;
        Ok(b)
    }

    fn byte(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }

    fn text(&mut self, n: usize) -> Result<String, StoreError> {
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| malformed())
    }

    fn sinks(&mut self) -> Result<Vec<String>, StoreError> {
        let n = self.byte()? as usize;
        let mut sinks = Vec::with_capacity(n);
        for _ in 0..n {
            let len = self.byte()? as usize;
            sinks.push(self.text(len)?);
        }
        Ok(sinks)
    }
}

/// The alerts of an outbox entry, in key order (in a group, those with no sink pending too).
pub(crate) fn decode_entry(k: &[u8], v: &[u8]) -> Result<Vec<PendingAlert>, StoreError> {
    let seq = u64::from_be_bytes(
        k.get(1..9)
            .ok_or_else(malformed)?
            .try_into()
            .map_err(|_| malformed())?,
    );
    let rule = String::from_utf8(k[9..].to_vec()).map_err(|_| malformed())?;
    let mut r = Reader { v, at: 1 };
    match v.first() {
        Some(&VERSION) => {
            let sinks = r.sinks()?;
            if r.at != v.len() {
                return Err(malformed());
            }
            Ok(vec![PendingAlert { seq, rule, sinks }])
        }
        Some(&GROUPED) => {
            let rest = u16::from_be_bytes(r.take(2)?.try_into().map_err(|_| malformed())?);
            let mut out = Vec::with_capacity(1 + rest as usize);
            let sinks = r.sinks()?;
            out.push(PendingAlert { seq, rule, sinks });
            for _ in 0..rest {
                let seq = u64::from_be_bytes(r.take(8)?.try_into().map_err(|_| malformed())?);
                let len = r.byte()? as usize;
                let rule = r.text(len)?;
                let sinks = r.sinks()?;
                out.push(PendingAlert { seq, rule, sinks });
            }
            if r.at != v.len() {
                return Err(malformed());
            }
            Ok(out)
        }
        _ => Err(malformed()),
    }
}

/// (seq, rule) in the outbox's key order.
fn order(a: &PendingAlert) -> (u64, &[u8]) {
    (a.seq, a.rule.as_bytes())
}

/// Outbox entries read and changed under the lock of the read-modify-writes, written back as
/// one batch.
struct Edits<'t> {
    tree: &'t Tree,
    /// Entries read (or made), by key, as they will be.
    entries: std::collections::BTreeMap<Vec<u8>, Vec<PendingAlert>>,
    changed: std::collections::BTreeSet<Vec<u8>>,
    /// The entry and index of the alert found last: a page's alerts are mostly its next ones.
    last: Option<(Vec<u8>, usize)>,
}

impl<'t> Edits<'t> {
    fn new(tree: &'t Tree) -> Self {
        Edits {
            tree,
            entries: Default::default(),
            changed: Default::default(),
            last: None,
        }
    }

    /// The entry that holds the alert of (`seq`, `rule`), and its index there; `None` when no
    /// entry does (not pending for any sink).
    fn find(&mut self, seq: u64, rule: &str) -> Result<Option<(Vec<u8>, usize)>, StoreError> {
        if let Some((k, i)) = &self.last
            && let Some(a) = self.entries.get(k).and_then(|e| e.get(i + 1))
            && a.seq == seq
            && a.rule == rule
        {
            let found = (k.clone(), i + 1);
            self.last = Some(found.clone());
            return Ok(Some(found));
        }
        let k = key(seq, rule);
        // The entry with the greatest key at or before the alert's, in the tree or among
        // those made here (not in the tree yet).
        let in_tree = match self.tree.range(..=k.as_slice()).next_back() {
            Some(kv) => {
                let (ek, v) = kv?;
                (ek.first() == Some(&OUTBOX)).then_some((ek, v))
            }
            None => None,
        };
        let made = self
            .entries
            .range(..=k.clone())
            .next_back()
            .map(|(ek, _)| ek.clone());
        let entry = match (in_tree, made) {
            (Some((ek, _)), Some(m)) if m.as_slice() >= ek.as_ref() => m,
            (Some((ek, v)), _) => {
                let ek = ek.to_vec();
                if !self.entries.contains_key(&ek) {
                    let alerts = decode_entry(&ek, &v)?;
                    self.entries.insert(ek.clone(), alerts);
                }
                ek
            }
            (None, Some(m)) => m,
            (None, None) => return Ok(None),
        };
        let at = self.entries.get(&entry).and_then(|e| {
            e.binary_search_by(|a| order(a).cmp(&(seq, rule.as_bytes())))
                .ok()
        });
        Ok(at.map(|i| {
            self.last = Some((entry.clone(), i));
            (entry, i)
        }))
    }

    /// Removes `sink` from the pending sinks of the alert of (`seq`, `rule`). False when that
    /// sink is not pending there.
    fn take_sink(&mut self, seq: u64, rule: &str, sink: &str) -> Result<bool, StoreError> {
        let Some((k, i)) = self.find(seq, rule)? else {
            return Ok(false);
        };
        let Some(a) = self.entries.get_mut(&k).and_then(|e| e.get_mut(i)) else {
            return Ok(false);
        };
        let before = a.sinks.len();
        a.sinks.retain(|s| s != sink);
        if a.sinks.len() == before {
            return Ok(false);
        }
        self.changed.insert(k);
        Ok(true)
    }

    /// Makes `sink` pending again for the alert of (`seq`, `rule`): in the entry that holds
    /// it, or in an entry of its own.
    fn give_sink(&mut self, seq: u64, rule: &str, sink: &str) -> Result<(), StoreError> {
        let k = match self.find(seq, rule)? {
            Some((k, i)) => {
                if let Some(a) = self.entries.get_mut(&k).and_then(|e| e.get_mut(i))
                    && !a.sinks.iter().any(|s| s == sink)
                {
                    a.sinks.push(sink.to_owned());
                }
                k
            }
            None => {
                let k = key(seq, rule);
                self.entries.insert(
                    k.clone(),
                    vec![PendingAlert {
                        seq,
                        rule: rule.to_owned(),
                        sinks: vec![sink.to_owned()],
                    }],
                );
                k
            }
        };
        self.changed.insert(k);
        Ok(())
    }

    /// The changed entries as writes (an entry with no sink pending for any alert goes); none
    /// when nothing changed.
    fn writes(self) -> Option<Writes> {
        if self.changed.is_empty() {
            return None;
        }
        let mut batch = Writes::default();
        for k in self.changed {
            match self.entries.get(&k) {
                Some(e) if e.iter().any(|a| !a.sinks.is_empty()) => {
                    batch.insert(k, encode_entry(e));
                }
                _ => batch.remove(k),
            }
        }
        Some(batch)
    }
}

/// Records `alerts` and moves the watermark to `through`, atomically and durably. A watermark
/// at or past `through` already means these were recorded: nothing is written. The first
/// record (with no alerts) sets where evaluation starts.
/// `durable` applies a batch and returns once it is durable (see [`record_with_windows`]).
pub(crate) fn record(
    tree: &Tree,
    through: u64,
    alerts: &[PendingAlert],
    durable: impl FnOnce(Writes) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    record_with_windows(tree, through, alerts, &WindowChanges::default(), durable)
}

/// Changes to the threshold windows' state: (rule id, seq) pairs now kept, and no longer kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowChanges {
    pub kept: Vec<(String, u64)>,
    pub dropped: Vec<(String, u64)>,
}

impl WindowChanges {
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty() && self.dropped.is_empty()
    }
}

pub(crate) const WINDOWS: u8 = b'w';

pub(crate) fn window_key(rule: &str, seq: u64) -> Result<Vec<u8>, StoreError> {
    if rule.is_empty() || rule.len() > 255 {
        return Err(StoreError::Invalid(format!(
            "threshold rule id {rule:?}: 1 to 255 bytes"
        )));
    }
    let mut k = Vec::with_capacity(10 + rule.len());
    k.push(WINDOWS);
    k.push(rule.len() as u8);
    k.extend_from_slice(rule.as_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    Ok(k)
}

/// [`record`], and the threshold windows' changes in the same atomic write (durable when it
/// records an alert, changes a window, or sets the first watermark: then it is handed to
/// `durable`, which applies it and returns once it is durable; the ledger has it ride on its
/// writer's next group commit, whose flush covers it).
pub(crate) fn record_with_windows(
    tree: &Tree,
    through: u64,
    alerts: &[PendingAlert],
    windows: &WindowChanges,
    durable: impl FnOnce(Writes) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    for a in alerts {
        check(a)?;
        if a.seq > through {
            return Err(StoreError::Invalid(format!(
                "an alert on event {} past the watermark {through}",
                a.seq
            )));
        }
    }
    let before = watermark(tree)?;
    if before.is_some_and(|w| w >= through) {
        return Ok(());
    }
    let mut batch = Writes::default();
    // In key order, a (seq, rule) written twice keeping its last sinks; up to GROUP an entry.
    let mut sorted: Vec<PendingAlert> = alerts.iter().rev().cloned().collect();
    sorted.sort_by(|x, y| order(x).cmp(&order(y)));
    sorted.dedup_by(|later, first| order(later) == order(first));
    for group in sorted.chunks(GROUP) {
        batch.insert(key(group[0].seq, &group[0].rule), encode_entry(group));
    }
    for (rule, seq) in &windows.dropped {
        batch.remove(window_key(rule, *seq)?);
    }
    for (rule, seq) in &windows.kept {
        batch.insert(window_key(rule, *seq)?, &[] as &[u8]);
    }
    // The alert history (see the `alertlog` module), in the same write.
    crate::alertlog::add(&mut batch, tree, alerts)?;
    batch.insert(crate::format::meta_key(THROUGH), through.to_be_bytes());
    // Even a watermark moved past events that made no alert (which could be lost in a crash:
    // those events would be evaluated again, and make no alert again) goes this way: riding
    // on a group commit it costs no write of sled's log of its own.
    durable(batch)
}

/// Every (rule id, seq) the threshold windows keep, by rule then seq.
pub(crate) fn windows(tree: &Tree) -> Result<Vec<(String, u64)>, StoreError> {
    let bad = || StoreError::Corrupt("a threshold window entry is malformed".into());
    let mut out = Vec::new();
    for kv in tree.scan_prefix([WINDOWS]) {
        let (k, _) = kv?;
        let n = *k.get(1).ok_or_else(bad)? as usize;
        let rule = k.get(2..2 + n).ok_or_else(bad)?;
        let seq = k.get(2 + n..10 + n).ok_or_else(bad)?;
        if k.len() != 10 + n {
            return Err(bad());
        }
        out.push((
            String::from_utf8(rule.to_vec()).map_err(|_| bad())?,
            u64::from_be_bytes(seq.try_into().map_err(|_| bad())?),
        ));
    }
    Ok(out)
}

pub(crate) fn watermark(tree: &Tree) -> Result<Option<u64>, StoreError> {
    match tree.get(crate::format::meta_key(THROUGH))? {
        Some(v) => Ok(Some(u64::from_be_bytes(v.as_ref().try_into().map_err(
            |_| StoreError::Corrupt("the alerts watermark is not 8 bytes".into()),
        )?))),
        None => Ok(None),
    }
}

pub(crate) fn pending(tree: &Tree, limit: usize) -> Result<Vec<PendingAlert>, StoreError> {
    pending_after(tree, None, limit)
}

/// Notes durably, in one write, that `sink` took the alert of each (`seq`, `rule`) of `taken`;
/// an alert goes once no sink is left. An alert or sink not pending is no error (a redelivery
/// noted twice).
pub(crate) fn delivered(
    db: &Db,
    tree: &Tree,
    sink: &str,
    taken: &[(u64, String)],
) -> Result<(), StoreError> {
    let _guard = changes();
    let mut edits = Edits::new(tree);
    for (seq, rule) in taken {
        edits.take_sink(*seq, rule, sink)?;
    }
    let Some(batch) = edits.writes() else {
        return Ok(());
    };
    tree.apply_batch(batch.into_batch())?;
    db.flush()?;
    Ok(())
}

/// [`delivered`], for alerts as read from the outbox, made durable by `durable`, which
/// applies the batch and returns once it is durable; it is called under the lock of the
/// read-modify-writes, so no other note reads the entries before it is applied.
pub(crate) fn taken(
    tree: &Tree,
    sink: &str,
    taken: &[PendingAlert],
    durable: impl FnOnce(Writes) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let _guard = changes();
    let mut edits = Edits::new(tree);
    for a in taken {
        edits.take_sink(a.seq, &a.rule, sink)?;
    }
    match edits.writes() {
        Some(batch) => durable(batch),
        None => Ok(()),
    }
}

/// Up to `limit` alerts after (`seq`, `rule`) (from the first without one) that some sink is
/// still pending for, in outbox order: each sink's delivery loop reads on from the last alert
/// it handled.
pub(crate) fn pending_after(
    tree: &Tree,
    after: Option<(u64, &str)>,
    limit: usize,
) -> Result<Vec<PendingAlert>, StoreError> {
    use std::ops::Bound;
    let mut out = Vec::new();
    let keep = |alerts: Vec<PendingAlert>, out: &mut Vec<PendingAlert>| {
        for a in alerts {
            if out.len() >= limit {
                return;
            }
            let later = after.is_none_or(|(seq, rule)| order(&a) > (seq, rule.as_bytes()));
            if later && !a.sinks.is_empty() {
                out.push(a);
            }
        }
    };
    if limit == 0 {
        return Ok(out);
    }
    let from = match after {
        Some((seq, rule)) => {
            let k = key(seq, rule);
            // The entry at or before the cursor: a group may hold alerts after it.
            if let Some(kv) = tree.range(..=k.as_slice()).next_back() {
                let (ek, v) = kv?;
                if ek.first() == Some(&OUTBOX) {
                    keep(decode_entry(&ek, &v)?, &mut out);
                }
            }
            Bound::Excluded(k)
        }
        None => Bound::Included(vec![OUTBOX]),
    };
    for kv in tree.range::<Vec<u8>, _>((from, Bound::Unbounded)) {
        if out.len() >= limit {
            break;
        }
        let (k, v) = kv?;
        if k.first() != Some(&OUTBOX) {
            break;
        }
        keep(decode_entry(&k, &v)?, &mut out);
    }
    Ok(out)
}

pub(crate) fn dead_key(seq: u64, rule: &str, sink: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(10 + rule.len() + sink.len());
    k.push(DEAD);
    k.extend_from_slice(&seq.to_be_bytes());
    k.push(rule.len() as u8);
    k.extend_from_slice(rule.as_bytes());
    k.extend_from_slice(sink.as_bytes());
    k
}

/// `e` cut to at most [`MAX_ERROR`] bytes, on a character boundary.
pub(crate) fn cut_error(e: &str) -> String {
    let mut end = e.len().min(MAX_ERROR);
    while !e.is_char_boundary(end) {
        end -= 1;
    }
    e[..end].to_owned()
}

/// Checks what a dead letter may hold: names of 1 to 255 bytes.
pub(crate) fn check_dead(d: &DeadLetter) -> Result<(), StoreError> {
    check(&PendingAlert {
        seq: d.seq,
        rule: d.rule.clone(),
        sinks: vec![d.sink.clone()],
    })
}

fn encode_dead(d: &DeadLetter) -> Vec<u8> {
    let error = cut_error(&d.error);
    let mut v = Vec::with_capacity(13 + error.len());
    v.push(VERSION);
    v.extend_from_slice(&d.attempts.to_be_bytes());
    v.extend_from_slice(&d.at_ms.to_be_bytes());
    v.extend_from_slice(error.as_bytes());
    v
}

pub(crate) fn decode_dead(k: &[u8], v: &[u8]) -> Result<DeadLetter, StoreError> {
    let bad = || StoreError::Corrupt("an alert dead letter is malformed".into());
    let seq = u64::from_be_bytes(k.get(1..9).ok_or_else(bad)?.try_into().map_err(|_| bad())?);
    let rule_len = *k.get(9).ok_or_else(bad)? as usize;
    let rule = k.get(10..10 + rule_len).ok_or_else(bad)?;
    let sink = k.get(10 + rule_len..).ok_or_else(bad)?;
    if v.first() != Some(&VERSION) || v.len() < 13 {
        return Err(bad());
    }
    Ok(DeadLetter {
        seq,
        rule: String::from_utf8(rule.to_vec()).map_err(|_| bad())?,
        sink: String::from_utf8(sink.to_vec()).map_err(|_| bad())?,
        attempts: u32::from_be_bytes(v[1..5].try_into().map_err(|_| bad())?),
        at_ms: u64::from_be_bytes(v[5..13].try_into().map_err(|_| bad())?),
        error: String::from_utf8(v[13..].to_vec()).map_err(|_| bad())?,
    })
}

/// Moves (alert, sink) from the outbox to a dead letter, atomically and durably. False (and
/// nothing written) when that sink is not pending for that alert.
pub(crate) fn dead_letter(db: &Db, tree: &Tree, d: &DeadLetter) -> Result<bool, StoreError> {
    check_dead(d)?;
    let _guard = changes();
    let mut edits = Edits::new(tree);
    if !edits.take_sink(d.seq, &d.rule, &d.sink)? {
        return Ok(false);
    }
    let Some(mut batch) = edits.writes() else {
        return Ok(false);
    };
    batch.insert(dead_key(d.seq, &d.rule, &d.sink), encode_dead(d));
    tree.apply_batch(batch.into_batch())?;
    db.flush()?;
    Ok(true)
}

/// Up to `limit` dead letters, oldest event first.
pub(crate) fn dead_letters(tree: &Tree, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
    let mut out = Vec::new();
    for kv in tree.scan_prefix([DEAD]).take(limit) {
        let (k, v) = kv?;
        out.push(decode_dead(&k, &v)?);
    }
    Ok(out)
}

/// Moves the dead letters (of `sink`, or all) back to the outbox, in one atomic, durable
/// write; returns them.
pub(crate) fn retry_dead(
    db: &Db,
    tree: &Tree,
    sink: Option<&str>,
) -> Result<Vec<DeadLetter>, StoreError> {
    let _guard = changes();
    let mut moved = Vec::new();
    let mut edits = Edits::new(tree);
    let mut removed = Vec::new();
    for kv in tree.scan_prefix([DEAD]) {
        let (k, v) = kv?;
        let d = decode_dead(&k, &v)?;
        if sink.is_some_and(|s| s != d.sink) {
            continue;
        }
        edits.give_sink(d.seq, &d.rule, &d.sink)?;
        removed.push(k);
        moved.push(d);
    }
    let Some(mut batch) = edits.writes() else {
        return Ok(moved);
    };
    for k in removed {
        batch.remove(k);
    }
    tree.apply_batch(batch.into_batch())?;
    db.flush()?;
    Ok(moved)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn alert(seq: u64, rule: &str, sinks: &[&str]) -> PendingAlert {
        PendingAlert {
            seq,
            rule: rule.into(),
            sinks: sinks.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn apply(tree: &Tree) -> impl Fn(Writes) -> Result<(), StoreError> + '_ {
        |w| {
            tree.apply_batch(w.into_batch())?;
            Ok(())
        }
    }

    /// A store written before groups holds one entry per alert (version 1): those are read,
    /// noted and removed alike, in one order with the groups written since.
    #[test]
    fn single_entries_and_groups_are_one_outbox() {
        let db = crate::kv::Db::temporary();
        let tree = db.open_tree("t").unwrap();
        tree.insert(key(1, "x"), encode_sinks(&["s".into()]))
            .unwrap();
        tree.insert(key(2, "y"), encode_sinks(&["s".into(), "t".into()]))
            .unwrap();
        tree.insert(crate::format::meta_key(THROUGH), 2u64.to_be_bytes())
            .unwrap();
        record(
            &tree,
            10,
            &[alert(6, "b", &["s"]), alert(5, "a", &["s"])],
            apply(&tree),
        )
        .unwrap();
        assert_eq!(
            tree.scan_prefix([OUTBOX]).count(),
            3,
            "the record is one entry"
        );
        let all = vec![
            alert(1, "x", &["s"]),
            alert(2, "y", &["s", "t"]),
            alert(5, "a", &["s"]),
            alert(6, "b", &["s"]),
        ];
        assert_eq!(pending(&tree, 10).unwrap(), all);
        assert_eq!(pending_after(&tree, Some((2, "y")), 10).unwrap(), all[2..]);
        assert_eq!(pending_after(&tree, Some((5, "a")), 10).unwrap(), all[3..]);
        assert_eq!(pending_after(&tree, Some((1, "x")), 2).unwrap(), all[1..3]);
        assert!(pending_after(&tree, Some((6, "b")), 10).unwrap().is_empty());
        taken(&tree, "s", &all, apply(&tree)).unwrap();
        assert_eq!(pending(&tree, 10).unwrap(), vec![alert(2, "y", &["t"])]);
        assert_eq!(
            tree.scan_prefix([OUTBOX]).count(),
            1,
            "an entry no sink is pending for goes"
        );
        assert_eq!(
            tree.get(key(2, "y")).unwrap().unwrap().as_ref(),
            encode_sinks(&["t".into()]).as_slice()
        );
    }

    #[test]
    fn a_group_round_trips_and_a_bad_one_is_corrupt() {
        let alerts = vec![
            alert(3, "a", &["s"]),
            alert(3, "b", &[]),
            alert(9, "c", &["s", "webhook"]),
        ];
        let (k, v) = (key(3, "a"), encode_entry(&alerts));
        assert_eq!(decode_entry(&k, &v).unwrap(), alerts);
        for cut in [1, 3, v.len() - 1] {
            assert!(
                matches!(decode_entry(&k, &v[..cut]), Err(StoreError::Corrupt(_))),
                "cut at {cut}"
            );
        }
        let mut other = v.clone();
        other[0] = 9;
        assert!(matches!(
            decode_entry(&k, &other),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            decode_entry(&k[..5], &v),
            Err(StoreError::Corrupt(_))
        ));
    }
}
