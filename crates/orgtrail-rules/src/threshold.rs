//! Threshold rules: a count of matching events over a sliding window of event time, per group
//! key, beyond what EventBridge patterns express (Sigma's `count() > N` and `count() by field
//! > N` with a `timeframe`).
//!
//! A rule with `threshold = { count = N, window = "10m", group_by = ["userIdentity.arn"] }`
//! fires on the event that makes more than `N` of its matching events, of one group, fall
//! within `window` of each other, measured by the events' own `eventTime`:
//!
//! - **Group**: the values at the `group_by` paths (missing counts as a value of its own);
//!   no `group_by`: one group for the rule (across accounts, as Sigma's `count()` is).
//! - **Window**: a group's window ends at the newest `eventTime` of its matching events seen so
//!   far and spans `window` before it, `(newest - window, newest]`. Events are taken in the
//!   order the ledger stored them; one that arrives late still counts if its `eventTime` falls
//!   inside the group's window, and is ignored (`Late`) if it is older than that.
//! - **Firing**: an event fires the rule when it is counted and the group's count goes from
//!   `N` to `N + 1`: once per crossing. While more than `N` events stay within the window, no
//!   event fires again; the group re-arms when events leave the window and the count falls
//!   back to `N` or below, and fires again on the next crossing.
//! - **Distinct values**: with `distinct = "path"`, the count is of the different values at
//!   that path among the group's matching events within the window (each value counted once,
//!   by its newest event), not of the events: `count = 1`, `distinct = "eventName"` fires when
//!   two different calls of the pattern happen within the window (a correlation).
//! - **Memory**: a group keeps at most `N + 1` event times (the newest; enough to know whether
//!   the count exceeds `N`), and a [`Windows`] at most `max_groups` groups per rule. A new
//!   group beyond that evicts the group whose newest event is oldest, counted in
//!   [`Windows::evictions`]. Group keys longer than [`MAX_KEY`] bytes are kept as a 128-bit hash.
//!
//! Crash safety: the state is the set of (rule, sequence number) pairs the groups keep, and
//! [`Windows::take_changes`] hands over what was added and removed since the last call, for
//! the collector to write in the same durable write as the alerts and the alert watermark. On
//! start, [`Windows::restore`] puts the kept events back (read again from the ledger, so no
//! event data is stored twice): the state is exactly the one the last durable write described.
//!
//! Time is an input (`observe` takes the event's time in milliseconds), so tests drive it
//! directly.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasher, Hasher};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::leaf::leaves_at;

/// Largest `count`: each group keeps `count + 1` times.
pub const MAX_COUNT: u64 = 10_000;
/// Longest window.
pub const MAX_WINDOW_MS: i64 = 7 * 24 * 3600 * 1000;
/// Most `group_by` paths.
pub const MAX_GROUP_BY: usize = 8;
/// Group keys longer than this are kept as a hash.
pub const MAX_KEY: usize = 256;
/// Default cap on tracked groups per rule.
pub const DEFAULT_MAX_GROUPS: usize = 10_000;

/// A threshold as written in a rule file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdSpec {
    /// Fires when more than `count` matching events of a group fall within `window`.
    pub count: u64,
    /// The window, in `humantime` form: `10m`, `1h`, `90s`.
    pub window: String,
    /// Dotted paths whose values make the group key; empty: one group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_by: Vec<String>,
    /// Count distinct values of this dotted path instead of events: fires when more than
    /// `count` different values occur within the window (a correlation: `distinct =
    /// "eventName"`, `count = 1` fires when two different calls happen close together).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distinct: Option<String>,
}

/// A checked threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Threshold {
    pub count: u64,
    pub window_ms: i64,
    pub group_by: Vec<String>,
    pub distinct: Option<String>,
    /// As written, for listing.
    pub spec: ThresholdSpec,
}

impl Threshold {
    /// Checks a written threshold; the error says what is wrong.
    pub fn from_spec(spec: ThresholdSpec) -> Result<Threshold, String> {
        if spec.count > MAX_COUNT {
            return Err(format!(
                "threshold count {} is above the limit of {MAX_COUNT}",
                spec.count
            ));
        }
        let d = humantime::parse_duration(spec.window.trim()).map_err(|e| {
            format!(
                "threshold window {:?}: {e} (write it as 90s, 10m, 1h)",
                spec.window
            )
        })?;
        let window_ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        if !(1000..=MAX_WINDOW_MS).contains(&window_ms) {
            return Err(format!(
                "threshold window {:?}: from 1s to 7 days",
                spec.window
            ));
        }
        if spec.group_by.len() > MAX_GROUP_BY {
            return Err(format!(
                "threshold group_by: at most {MAX_GROUP_BY} paths, not {}",
                spec.group_by.len()
            ));
        }
        let bad_path = |p: &String| p.is_empty() || p.split('.').any(str::is_empty);
        if let Some(bad) = spec.group_by.iter().find(|p| bad_path(p)) {
            return Err(format!("threshold group_by: {bad:?} is not a dotted path"));
        }
        if let Some(bad) = spec.distinct.as_ref().filter(|p| bad_path(p)) {
            return Err(format!("threshold distinct: {bad:?} is not a dotted path"));
        }
        Ok(Threshold {
            count: spec.count,
            window_ms,
            group_by: spec.group_by.clone(),
            distinct: spec.distinct.clone(),
            spec,
        })
    }

    /// The group key of `record`: the JSON of the values at each `group_by` path.
    pub fn group_key(&self, record: &Value) -> String {
        values_key(&self.group_by, record)
    }

    /// The value counted for `record` when the threshold counts distinct values.
    pub fn distinct_value(&self, record: &Value) -> Option<String> {
        self.distinct
            .as_ref()
            .map(|p| values_key(std::slice::from_ref(p), record))
    }
}

/// The JSON of the values at each path (`-` for none), hashed when long.
fn values_key(paths: &[String], record: &Value) -> String {
    let mut key = String::new();
    for (i, path) in paths.iter().enumerate() {
        if i > 0 {
            key.push('\u{1f}');
        }
        let leaves = leaves_at(record, path);
        if leaves.is_empty() {
            key.push('-');
        }
        for (j, l) in leaves.iter().enumerate() {
            if j > 0 {
                key.push(',');
            }
            key.push_str(&l.value.to_string());
        }
    }
    if key.len() > MAX_KEY {
        let h = |seed: u64| {
            let mut s = foldhash::fast::FixedState::with_seed(seed).build_hasher();
            s.write(key.as_bytes());
            s.finish()
        };
        key = format!("#{:016x}{:016x}", h(1), h(2));
    }
    key
}

/// What [`Windows::observe`] did with one matching event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Counted, and the count crossed the threshold: the rule fires on this event.
    Fired,
    /// Counted; no crossing.
    Counted,
    /// Older than its group's window: not counted.
    Late,
}

#[derive(Debug, Default)]
struct Group {
    /// The newest event time seen in the group.
    newest: i64,
    /// The newest `count + 1` (time, seq) within the window (with `distinct`: the newest
    /// event of each value, of the newest `count + 1` values).
    entries: BTreeSet<(i64, u64)>,
    /// With `distinct`: value -> its entry, and seq -> value.
    slots: HashMap<String, (i64, u64)>,
    slot_of: HashMap<u64, String>,
}

impl Group {
    fn drop_entry(&mut self, s: u64) {
        if let Some(v) = self.slot_of.remove(&s) {
            self.slots.remove(&v);
        }
    }
}

#[derive(Debug)]
struct RuleWindows {
    threshold: Threshold,
    groups: HashMap<String, Group>,
    /// (newest, key) of every group: the eviction order.
    by_newest: BTreeSet<(i64, String)>,
}

/// What the windows keep now and no longer keep, since the last [`Windows::take_changes`]:
/// pairs of (rule id, ledger sequence number).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    pub kept: Vec<(String, u64)>,
    pub dropped: Vec<(String, u64)>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty() && self.dropped.is_empty()
    }
}

/// The sliding windows of every threshold rule.
#[derive(Debug)]
pub struct Windows {
    rules: HashMap<String, RuleWindows>,
    max_groups: usize,
    evictions: u64,
    /// (rule, seq) kept (`true`) or no longer kept (`false`) since the last `take_changes`.
    changes: BTreeMap<(String, u64), bool>,
}

impl Default for Windows {
    fn default() -> Self {
        Windows::new(DEFAULT_MAX_GROUPS)
    }
}

impl Windows {
    /// Empty windows that track at most `max_groups` groups per rule (at least 1).
    pub fn new(max_groups: usize) -> Windows {
        Windows {
            rules: HashMap::new(),
            max_groups: max_groups.max(1),
            evictions: 0,
            changes: BTreeMap::new(),
        }
    }

    /// Takes one event that matched rule `rule` (whose threshold is `threshold`), of group
    /// `key`, with event time `time_ms` and ledger sequence number `seq`. A rule seen with a
    /// different threshold than before starts over.
    pub fn observe(
        &mut self,
        rule: &str,
        threshold: &Threshold,
        key: String,
        time_ms: i64,
        seq: u64,
    ) -> Outcome {
        self.observe_slot(rule, threshold, key, None, time_ms, seq)
    }

    /// [`Windows::observe`] with the group key (and the distinct value) read from `record`.
    pub fn observe_record(
        &mut self,
        rule: &str,
        threshold: &Threshold,
        record: &Value,
        time_ms: i64,
        seq: u64,
    ) -> Outcome {
        let key = threshold.group_key(record);
        let slot = threshold.distinct_value(record);
        self.observe_slot(rule, threshold, key, slot, time_ms, seq)
    }

    /// [`Windows::observe`], counting `slot` (the event's distinct value, for a threshold with
    /// `distinct`) rather than the event.
    pub fn observe_slot(
        &mut self,
        rule: &str,
        threshold: &Threshold,
        key: String,
        slot: Option<String>,
        time_ms: i64,
        seq: u64,
    ) -> Outcome {
        if self
            .rules
            .get(rule)
            .is_some_and(|r| r.threshold != *threshold)
        {
            self.forget(rule);
        }
        let max_groups = self.max_groups;
        let r = self
            .rules
            .entry(rule.to_owned())
            .or_insert_with(|| RuleWindows {
                threshold: threshold.clone(),
                groups: HashMap::new(),
                by_newest: BTreeSet::new(),
            });
        if !r.groups.contains_key(&key)
            && r.groups.len() >= max_groups
            && let Some((newest, victim)) = r.by_newest.pop_first()
            && let Some(g) = r.groups.remove(&victim)
        {
            {
                debug_assert_eq!(newest, g.newest);
                for (_, s) in &g.entries {
                    self.changes.insert((rule.to_owned(), *s), false);
                }
                self.evictions += 1;
            }
        }
        let keep = (threshold.count + 1) as usize;
        let w = threshold.window_ms;
        let fresh = !r.groups.contains_key(&key);
        let g = r.groups.entry(key.clone()).or_insert_with(|| Group {
            newest: time_ms,
            ..Group::default()
        });
        let old_newest = g.newest;
        let newest = if fresh {
            time_ms
        } else {
            g.newest.max(time_ms)
        };
        g.newest = newest;
        let start = newest.saturating_sub(w);
        while let Some(&(t, s)) = g.entries.first() {
            if t > start {
                break;
            }
            g.entries.pop_first();
            g.drop_entry(s);
            self.changes.insert((rule.to_owned(), s), false);
        }
        if !fresh {
            r.by_newest.remove(&(old_newest, key.clone()));
        }
        if time_ms <= start {
            // Late: older than the window. A group left with nothing is dropped.
            if g.entries.is_empty() {
                r.groups.remove(&key);
            } else {
                r.by_newest.insert((newest, key));
            }
            return Outcome::Late;
        }
        let before = g.entries.len();
        let mut added = false;
        match slot {
            None => {
                if g.entries.insert((time_ms, seq)) {
                    self.changes.insert((rule.to_owned(), seq), true);
                    added = true;
                }
            }
            Some(v) => match g.slots.get(&v).copied() {
                // The value is counted already, by a newer (or this) event.
                Some(have) if have >= (time_ms, seq) => {}
                have => {
                    if let Some((t0, s0)) = have {
                        // A newer event of a value counted already: it stands for it now.
                        g.entries.remove(&(t0, s0));
                        g.slot_of.remove(&s0);
                        self.changes.insert((rule.to_owned(), s0), false);
                    } else {
                        added = true;
                    }
                    g.entries.insert((time_ms, seq));
                    g.slots.insert(v.clone(), (time_ms, seq));
                    g.slot_of.insert(seq, v);
                    self.changes.insert((rule.to_owned(), seq), true);
                }
            },
        }
        if g.entries.len() > keep
            && let Some((_, s)) = g.entries.pop_first()
        {
            g.drop_entry(s);
            self.changes.insert((rule.to_owned(), s), false);
        }
        r.by_newest.insert((newest, key));
        if added
            && before + 1 == keep
            && g.entries.len() == keep
            && g.entries.contains(&(time_ms, seq))
        {
            Outcome::Fired
        } else {
            Outcome::Counted
        }
    }

    /// Drops the state of `rule`.
    pub fn forget(&mut self, rule: &str) {
        if let Some(r) = self.rules.remove(rule) {
            for g in r.groups.values() {
                for (_, s) in &g.entries {
                    self.changes.insert((rule.to_owned(), *s), false);
                }
            }
        }
    }

    /// Keeps only the rules `keep` says to keep.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &Threshold) -> bool) {
        let gone: Vec<String> = self
            .rules
            .iter()
            .filter(|(id, r)| !keep(id, &r.threshold))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            self.forget(&id);
        }
    }

    /// Puts back one event a group kept (as [`Windows::take_changes`] recorded it): call it
    /// for every recorded (rule, seq), in sequence order, on empty windows. Records no change.
    pub fn restore(
        &mut self,
        rule: &str,
        threshold: &Threshold,
        key: String,
        time_ms: i64,
        seq: u64,
    ) {
        self.observe(rule, threshold, key, time_ms, seq);
        self.changes.clear();
    }

    /// [`Windows::restore`] with the group key (and distinct value) read from `record`.
    pub fn restore_record(
        &mut self,
        rule: &str,
        threshold: &Threshold,
        record: &Value,
        time_ms: i64,
        seq: u64,
    ) {
        self.observe_record(rule, threshold, record, time_ms, seq);
        self.changes.clear();
    }

    /// What changed since the last call: (rule, seq) now kept, and (rule, seq) no longer
    /// kept. The collector writes them with the alerts and the watermark.
    pub fn take_changes(&mut self) -> Changes {
        let mut kept = Vec::new();
        let mut dropped = Vec::new();
        for (k, v) in std::mem::take(&mut self.changes) {
            if v { kept.push(k) } else { dropped.push(k) }
        }
        Changes { kept, dropped }
    }

    /// Every (rule, seq) kept now, in sequence order (what a restore must end with).
    pub fn kept(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .rules
            .iter()
            .flat_map(|(id, r)| {
                r.groups
                    .values()
                    .flat_map(|g| g.entries.iter().map(|(_, s)| (id.clone(), *s)))
            })
            .collect();
        out.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        out
    }

    /// Groups evicted so far to stay within the cap.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Groups tracked now, over all rules.
    pub fn groups(&self) -> usize {
        self.rules.values().map(|r| r.groups.len()).sum()
    }
}

/// The event time of a CloudTrail record in milliseconds since the Unix epoch, from its
/// `eventTime` (RFC 3339, as CloudTrail writes it: `2024-05-01T12:00:00Z`, with or without
/// fractional seconds or an offset). `None` when absent or unreadable.
pub fn event_time_ms(record: &Value) -> Option<i64> {
    parse_rfc3339_ms(record.get("eventTime")?.as_str()?)
}

/// Milliseconds since the Unix epoch of an RFC 3339 timestamp (`T` or a space between date and
/// time, `Z` or `±hh:mm`, optional fraction).
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' {
        return None;
    }
    if b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut at = 19;
    let mut ms = 0i64;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let digits = b[at..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        let frac = &s[at..at + digits];
        let first3: String = frac.chars().chain("000".chars()).take(3).collect();
        ms = first3.parse().ok()?;
        at += digits;
    }
    let offset_min = match b.get(at) {
        None => 0,
        Some(b'Z' | b'z') if at + 1 == b.len() => 0,
        Some(c @ (b'+' | b'-')) if b.len() == at + 6 && b[at + 3] == b':' => {
            let m = num(at + 1..at + 3)? * 60 + num(at + 4..at + 6)?;
            if *c == b'+' { m } else { -m }
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = if y2 >= 0 { y2 } else { y2 - 399 } / 400;
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Some(secs * 1000 + ms)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn t(count: u64, window: &str, group_by: &[&str]) -> Threshold {
        Threshold::from_spec(ThresholdSpec {
            count,
            window: window.into(),
            group_by: group_by.iter().map(|s| s.to_string()).collect(),
            distinct: None,
        })
        .unwrap()
    }

    const MIN: i64 = 60_000;

    /// Feeds (time in minutes, group) events in order; returns the seqs that fired.
    fn run(w: &mut Windows, th: &Threshold, events: &[(i64, &str)]) -> Vec<u64> {
        let mut fired = Vec::new();
        for (i, (m, g)) in events.iter().enumerate() {
            if w.observe("r", th, g.to_string(), m * MIN, i as u64 + 1) == Outcome::Fired {
                fired.push(i as u64 + 1);
            }
        }
        fired
    }

    #[test]
    fn fires_once_on_the_event_that_makes_the_count_exceed_n() {
        // count() > 3 within 10 minutes: the 4th event fires, the 5th and 6th do not.
        let th = t(3, "10m", &[]);
        let mut w = Windows::default();
        assert_eq!(
            run(
                &mut w,
                &th,
                &[(0, ""), (1, ""), (2, ""), (3, ""), (4, ""), (5, "")]
            ),
            [4]
        );
    }

    #[test]
    fn events_spread_wider_than_the_window_never_fire() {
        let th = t(2, "10m", &[]);
        let mut w = Windows::default();
        // Three events, each 6 minutes apart: never three within 10 minutes.
        assert!(run(&mut w, &th, &[(0, ""), (6, ""), (12, ""), (18, "")]).is_empty());
        // The window is half-open: 10 minutes apart is outside it.
        let mut w = Windows::default();
        assert!(run(&mut w, &th, &[(0, ""), (5, ""), (10, "")]).is_empty());
        let mut w = Windows::default();
        assert_eq!(run(&mut w, &th, &[(0, ""), (5, ""), (9, "")]), [3]);
    }

    #[test]
    fn groups_count_apart() {
        let th = t(1, "10m", &["user"]);
        let mut w = Windows::default();
        assert_eq!(
            run(
                &mut w,
                &th,
                &[(0, "a"), (1, "b"), (2, "a"), (3, "b"), (4, "a")]
            ),
            [3, 4]
        );
        assert_eq!(w.groups(), 2);
    }

    #[test]
    fn re_arms_once_the_count_falls_back() {
        // count() > 1 in 10m: fires at minute 1; at 5 still above; by 20 the window emptied.
        let th = t(1, "10m", &[]);
        let mut w = Windows::default();
        assert_eq!(
            run(
                &mut w,
                &th,
                &[(0, ""), (1, ""), (5, ""), (20, ""), (21, "")]
            ),
            [2, 5]
        );
    }

    #[test]
    fn late_events_count_inside_the_window_and_are_ignored_outside() {
        let th = t(2, "10m", &[]);
        let mut w = Windows::default();
        // Minute 9 and 7 arrive after 10: both inside (0, 10], the second makes three.
        assert_eq!(run(&mut w, &th, &[(10, ""), (9, ""), (7, "")]), [3]);
        let mut w = Windows::default();
        assert_eq!(
            w.observe("r", &th, String::new(), 30 * MIN, 1),
            Outcome::Counted
        );
        assert_eq!(
            w.observe("r", &th, String::new(), 5 * MIN, 2),
            Outcome::Late
        );
    }

    #[test]
    fn restoring_the_recorded_changes_rebuilds_the_same_decisions() {
        // A long stream of two groups with bursts, slightly out of order. At every cut, the
        // recorded changes applied to a set (as the ledger keeps them), restored into fresh
        // windows, decide the rest exactly as the running windows do.
        let th = t(2, "5m", &["g"]);
        let events: Vec<(i64, String, u64)> = (0..200u64)
            .map(|i| {
                let jitter = (i * 7 % 5) as i64 - 2;
                let m = (i as i64 / 3) * 2 + if i % 17 < 6 { 0 } else { 4 } + jitter;
                (
                    m * MIN,
                    if i % 3 == 0 { "a" } else { "b" }.to_string(),
                    i + 1,
                )
            })
            .collect();
        let mut full = Windows::default();
        let all: Vec<Outcome> = events
            .iter()
            .map(|(m, g, s)| full.observe("r", &th, g.clone(), *m, *s))
            .collect();
        assert!(all.contains(&Outcome::Fired));
        for cut in [10usize, 50, 99, 150] {
            let mut running = Windows::new(1);
            let mut ledger = std::collections::BTreeSet::new();
            for (n, (m, g, s)) in events[..cut].iter().enumerate() {
                running.observe("r", &th, g.clone(), *m, *s);
                if n % 7 == 0 {
                    let Changes { kept, dropped } = running.take_changes();
                    ledger.extend(kept);
                    for d in dropped {
                        ledger.remove(&d);
                    }
                }
            }
            let Changes { kept, dropped } = running.take_changes();
            ledger.extend(kept);
            for d in dropped {
                ledger.remove(&d);
            }
            assert_eq!(ledger.iter().cloned().collect::<Vec<_>>(), running.kept());
            let mut rebuilt = Windows::new(1);
            for (_, seq) in &ledger {
                let (m, g, s) = &events[*seq as usize - 1];
                rebuilt.restore("r", &th, g.clone(), *m, *s);
            }
            assert_eq!(rebuilt.kept(), running.kept(), "cut {cut}");
            for (m, g, s) in &events[cut..] {
                let want = running.observe("r", &th, g.clone(), *m, *s);
                let got = rebuilt.observe("r", &th, g.clone(), *m, *s);
                assert_eq!(got, want, "cut {cut}, event {s}");
            }
        }
    }

    #[test]
    fn distinct_counts_values_not_events() {
        // Two different calls within 5 minutes, in either order: the second value fires.
        let th = Threshold::from_spec(ThresholdSpec {
            count: 1,
            window: "5m".into(),
            group_by: vec![],
            distinct: Some("eventName".into()),
        })
        .unwrap();
        let call = |name: &str| serde_json::json!({"eventName": name});
        let mut w = Windows::default();
        let mut fired = Vec::new();
        for (i, (name, m)) in [
            ("Verify", 0),
            ("Verify", 1),
            ("Verify", 2),
            ("Enable", 3),
            ("Enable", 4),
        ]
        .iter()
        .enumerate()
        {
            if w.observe_record("r", &th, &call(name), m * MIN, i as u64 + 1) == Outcome::Fired {
                fired.push(i + 1);
            }
        }
        assert_eq!(
            fired,
            [4],
            "repeats of one value never fire; the second value does"
        );
        // Each value is kept by its newest event only.
        assert_eq!(w.kept(), [("r".to_string(), 3), ("r".to_string(), 5)]);
        // Farther apart than the window: nothing.
        let mut w = Windows::default();
        assert_eq!(
            w.observe_record("r", &th, &call("Enable"), 0, 1),
            Outcome::Counted
        );
        assert_eq!(
            w.observe_record("r", &th, &call("Verify"), 6 * MIN, 2),
            Outcome::Counted
        );
        // Restored from what was recorded, the windows decide the same.
        let mut a = Windows::default();
        let mut b = Windows::default();
        let events = [
            ("A", 0),
            ("B", 1),
            ("A", 7),
            ("A", 8),
            ("C", 9),
            ("B", 20),
            ("C", 21),
        ];
        for (i, (name, m)) in events.iter().enumerate().take(4) {
            a.observe_record("r", &th, &call(name), m * MIN, i as u64 + 1);
        }
        for (_, seq) in a.kept() {
            let (name, m) = events[seq as usize - 1];
            b.restore_record("r", &th, &call(name), m * MIN, seq);
        }
        assert_eq!(a.kept(), b.kept());
        for (i, (name, m)) in events.iter().enumerate().skip(4) {
            let s = i as u64 + 1;
            assert_eq!(
                a.observe_record("r", &th, &call(name), m * MIN, s),
                b.observe_record("r", &th, &call(name), m * MIN, s),
                "event {s}"
            );
        }
    }

    #[test]
    fn the_group_cap_evicts_the_stalest_group_and_counts_it() {
        let th = t(5, "10m", &["g"]);
        let mut w = Windows::new(2);
        w.observe("r", &th, "a".into(), 0, 1);
        w.observe("r", &th, "b".into(), MIN, 2);
        w.observe("r", &th, "c".into(), 2 * MIN, 3);
        assert_eq!((w.groups(), w.evictions()), (2, 1));
        assert_eq!(w.kept(), [("r".to_string(), 2), ("r".to_string(), 3)]);
        let dropped = w.take_changes().dropped;
        assert!(dropped.contains(&("r".to_string(), 1)), "{dropped:?}");
    }

    #[test]
    fn thresholds_are_checked() {
        let bad = |count: u64, window: &str, g: &[&str]| {
            Threshold::from_spec(ThresholdSpec {
                count,
                window: window.into(),
                group_by: g.iter().map(|s| s.to_string()).collect(),
                distinct: None,
            })
            .unwrap_err()
        };
        assert!(bad(1, "soon", &[]).contains("threshold window \"soon\""));
        assert!(bad(1, "8d", &[]).contains("from 1s to 7 days"));
        assert!(bad(MAX_COUNT + 1, "1m", &[]).contains("above the limit"));
        assert!(bad(1, "1m", &["a..b"]).contains("not a dotted path"));
    }

    #[test]
    fn group_keys_read_the_paths_and_long_ones_are_hashed() {
        let th = t(1, "1m", &["userIdentity.arn", "sourceIPAddress"]);
        let k = th.group_key(&serde_json::json!({"userIdentity": {"arn": "x"}}));
        assert_eq!(k, "\"x\"\u{1f}-");
        let long = "y".repeat(1000);
        let k = th.group_key(&serde_json::json!({"userIdentity": {"arn": long}}));
        assert!(k.starts_with('#') && k.len() == 33, "{k}");
    }

    #[test]
    fn event_times_parse() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ms("2024-05-01T12:00:00.250Z"),
            Some(1_714_564_800_250)
        );
        assert_eq!(
            parse_rfc3339_ms("2024-05-01T14:00:00+02:00"),
            Some(1_714_564_800_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2022-12-11 19:42:55"),
            parse_rfc3339_ms("2022-12-11T19:42:55Z")
        );
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
    }
}
