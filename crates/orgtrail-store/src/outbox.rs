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
//! | `o <seq u64 BE> <rule id>` | version (1), the count of pending sinks (u8), then per sink its name's length (u8) and its name |
//! | `D <seq u64 BE> <rule id length u8> <rule id> <sink name>` | a dead letter: version (1), attempts (u32 BE), when it was given up (ms since the Unix epoch, u64 BE), then the last error (UTF-8, at most 512 bytes; never the alert's body) |
//! | `w <rule id length u8> <rule id> <seq u64 BE>` | empty: the threshold windows of that rule keep the event at `seq` |
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

pub(crate) fn encode_sinks(sinks: &[String]) -> Vec<u8> {
    let mut v = vec![VERSION, sinks.len() as u8];
    for s in sinks {
        v.push(s.len() as u8);
        v.extend_from_slice(s.as_bytes());
    }
    v
}

pub(crate) fn decode(k: &[u8], v: &[u8]) -> Result<PendingAlert, StoreError> {
    let bad = || StoreError::Corrupt("an alert outbox entry is malformed".into());
    let seq = u64::from_be_bytes(k.get(1..9).ok_or_else(bad)?.try_into().map_err(|_| bad())?);
    let rule = String::from_utf8(k[9..].to_vec()).map_err(|_| bad())?;
    if v.first() != Some(&VERSION) {
        return Err(bad());
    }
    let n = *v.get(1).ok_or_else(bad)? as usize;
    let mut at = 2;
    let mut sinks = Vec::with_capacity(n);
    for _ in 0..n {
        let len = *v.get(at).ok_or_else(bad)? as usize;
        let name = v.get(at + 1..at + 1 + len).ok_or_else(bad)?;
        sinks.push(String::from_utf8(name.to_vec()).map_err(|_| bad())?);
        at += 1 + len;
    }
    Ok(PendingAlert { seq, rule, sinks })
}

/// Records `alerts` and moves the watermark to `through`, atomically and durably. A watermark
/// at or past `through` already means these were recorded: nothing is written. The first
/// record (with no alerts) sets where evaluation starts.
/// `durable` applies a batch and returns once it is durable (see [`record_with_windows`]).
pub(crate) fn record(
    tree: &sled::Tree,
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
    tree: &sled::Tree,
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
    for a in alerts {
        batch.insert(key(a.seq, &a.rule), encode_sinks(&a.sinks));
    }
    for (rule, seq) in &windows.dropped {
        batch.remove(window_key(rule, *seq)?);
    }
    for (rule, seq) in &windows.kept {
        batch.insert(window_key(rule, *seq)?, &[] as &[u8]);
    }
    // The alert history (see the `alertlog` module), in the same write.
    crate::alertlog::add(&mut batch, tree, alerts)?;
    batch.insert(crate::format::meta_key(THROUGH), &through.to_be_bytes());
    // Even a watermark moved past events that made no alert (which could be lost in a crash:
    // those events would be evaluated again, and make no alert again) goes this way: riding
    // on a group commit it costs no write of sled's log of its own.
    durable(batch)
}

/// Every (rule id, seq) the threshold windows keep, by rule then seq.
pub(crate) fn windows(tree: &sled::Tree) -> Result<Vec<(String, u64)>, StoreError> {
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

pub(crate) fn watermark(tree: &sled::Tree) -> Result<Option<u64>, StoreError> {
    match tree.get(crate::format::meta_key(THROUGH))? {
        Some(v) => Ok(Some(u64::from_be_bytes(v.as_ref().try_into().map_err(
            |_| StoreError::Corrupt("the alerts watermark is not 8 bytes".into()),
        )?))),
        None => Ok(None),
    }
}

pub(crate) fn pending(tree: &sled::Tree, limit: usize) -> Result<Vec<PendingAlert>, StoreError> {
    let mut out = Vec::new();
    for kv in tree.scan_prefix([OUTBOX]).take(limit) {
        let (k, v) = kv?;
        out.push(decode(&k, &v)?);
    }
    Ok(out)
}

/// Notes durably, in one write, that `sink` took the alert of each (`seq`, `rule`) of `taken`;
/// an entry goes once no sink is left. An alert or sink not pending is no error (a redelivery
/// noted twice).
pub(crate) fn delivered(
    db: &sled::Db,
    tree: &sled::Tree,
    sink: &str,
    taken: &[(u64, String)],
) -> Result<(), StoreError> {
    let _guard = changes();
    let mut batch = Writes::default();
    let mut any = false;
    for (seq, rule) in taken {
        any |= take_sink(tree, &mut batch, *seq, rule, sink)?;
    }
    if !any {
        return Ok(());
    }
    tree.apply_batch(batch.into_batch())?;
    db.flush()?;
    Ok(())
}

/// [`delivered`], for alerts as read from the outbox: an alert whose only pending sink was
/// `sink` when read is removed without reading its entry again (its sinks can only have
/// shrunk since: see `EventStore::alerts_taken`); the others as [`delivered`] does.
///
/// `durable` applies the batch and returns once it is durable; it is called under the lock
/// of the read-modify-writes, so no other note reads the entries before it is applied.
pub(crate) fn taken(
    tree: &sled::Tree,
    sink: &str,
    taken: &[PendingAlert],
    durable: impl FnOnce(Writes) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let _guard = changes();
    let mut batch = Writes::default();
    let mut any = false;
    for a in taken {
        if matches!(a.sinks.as_slice(), [only] if only == sink) {
            batch.remove(key(a.seq, &a.rule));
            any = true;
        } else {
            any |= take_sink(tree, &mut batch, a.seq, &a.rule, sink)?;
        }
    }
    if !any {
        return Ok(());
    }
    durable(batch)
}

/// Adds to `batch` the removal of `sink` from the outbox entry of (`seq`, `rule`) (and of the
/// entry once no sink is left). False when that sink is not pending there.
fn take_sink(
    tree: &sled::Tree,
    batch: &mut Writes,
    seq: u64,
    rule: &str,
    sink: &str,
) -> Result<bool, StoreError> {
    let k = key(seq, rule);
    let Some(v) = tree.get(&k)? else {
        return Ok(false);
    };
    let mut a = decode(&k, &v)?;
    let before = a.sinks.len();
    a.sinks.retain(|s| s != sink);
    if a.sinks.len() == before {
        return Ok(false);
    }
    if a.sinks.is_empty() {
        batch.remove(k);
    } else {
        batch.insert(k, encode_sinks(&a.sinks));
    }
    Ok(true)
}

/// Up to `limit` outbox entries after (`seq`, `rule`) (from the first without one), in
/// outbox order: each sink's delivery loop reads on from the last entry it handled.
pub(crate) fn pending_after(
    tree: &sled::Tree,
    after: Option<(u64, &str)>,
    limit: usize,
) -> Result<Vec<PendingAlert>, StoreError> {
    use std::ops::Bound;
    let from = match after {
        Some((seq, rule)) => Bound::Excluded(key(seq, rule)),
        None => Bound::Included(vec![OUTBOX]),
    };
    let mut out = Vec::new();
    for kv in tree.range::<Vec<u8>, _>((from, Bound::Unbounded)) {
        let (k, v) = kv?;
        if k.first() != Some(&OUTBOX) || out.len() >= limit {
            break;
        }
        out.push(decode(&k, &v)?);
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
pub(crate) fn dead_letter(
    db: &sled::Db,
    tree: &sled::Tree,
    d: &DeadLetter,
) -> Result<bool, StoreError> {
    check_dead(d)?;
    let _guard = changes();
    let mut batch = Writes::default();
    if !take_sink(tree, &mut batch, d.seq, &d.rule, &d.sink)? {
        return Ok(false);
    }
    batch.insert(dead_key(d.seq, &d.rule, &d.sink), encode_dead(d));
    tree.apply_batch(batch.into_batch())?;
    db.flush()?;
    Ok(true)
}

/// Up to `limit` dead letters, oldest event first.
pub(crate) fn dead_letters(tree: &sled::Tree, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
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
    db: &sled::Db,
    tree: &sled::Tree,
    sink: Option<&str>,
) -> Result<Vec<DeadLetter>, StoreError> {
    let _guard = changes();
    let mut moved = Vec::new();
    // The outbox entries as they will be, by key.
    let mut entries: std::collections::BTreeMap<Vec<u8>, Vec<String>> = Default::default();
    let mut batch = Writes::default();
    for kv in tree.scan_prefix([DEAD]) {
        let (k, v) = kv?;
        let d = decode_dead(&k, &v)?;
        if sink.is_some_and(|s| s != d.sink) {
            continue;
        }
        let ok = key(d.seq, &d.rule);
        if !entries.contains_key(&ok) {
            let now = match tree.get(&ok)? {
                Some(v) => decode(&ok, &v)?.sinks,
                None => Vec::new(),
            };
            entries.insert(ok.clone(), now);
        }
        if let Some(sinks) = entries.get_mut(&ok)
            && !sinks.contains(&d.sink)
        {
            sinks.push(d.sink.clone());
        }
        batch.remove(k);
        moved.push(d);
    }
    if moved.is_empty() {
        return Ok(moved);
    }
    for (k, sinks) in entries {
        batch.insert(k, encode_sinks(&sinks));
    }
    tree.apply_batch(batch.into_batch())?;
    db.flush()?;
    Ok(moved)
}
