//! The detector: per-key minute counts, the baseline, and the Start/End state machine.
//!
//! # Clock
//! The detector's clock is a unix minute: the latest minute given to [`Detector::advance`] or
//! carried by an observed call, whichever is later (event time; tests drive it explicitly, the
//! collector also calls `advance` with its wall clock every minute so that Insights end
//! during silence). Once `advance` has been called, calls stamped more than
//! `max_future_minutes` past that wall minute are not counted ([`Stats::future_events`]).
//!
//! Minute `m` is *open* while `m >= now - lateness`: calls of it are counted. Older minutes
//! are *closed*: each closed minute of a key is folded into the key's baseline, in order, and
//! calls that arrive for a closed minute are not counted ([`Stats::late_events`]). A backfill
//! of old events therefore fires nothing unless replayed through a detector whose clock starts
//! in the past. Closing is lazy: a key catches up with the clock when it is next counted, in
//! one step for a quiet stretch; only keys with an open Insight are visited as the clock
//! moves (so that they end during silence). The cost of the clock is therefore proportional
//! to the open Insights, not to the keys tracked.
//!
//! # Start and End
//! A key's baseline is usable once it covers `min_history` minutes; history counts from the
//! detector's first minute, so a key first seen after an hour of operation has an hour of
//! zeros behind it. While no Insight is open, a minute whose count reaches the bound
//! ([`crate::model`]) starts one at once, when the call that reaches it is observed (counts
//! only grow, so that is final): Start is emitted within the minute of onset. Each closed
//! minute of an open Insight is unusual (count at the bound) or within bounds; after
//! `end_after_minutes` consecutive minutes within bounds, End is emitted, dated the minute
//! after the last unusual one. The baseline keeps learning during an Insight, winsorized: a
//! minute at the bound is folded in as one standard deviation above the mean, so a burst
//! does not teach the baseline that bursts are ordinary while a lasting change of level still
//! moves it (slowly: it shows as a long Insight). The baseline attribution skips the minutes
//! of an open Insight.
//!
//! # Memory
//! A key holds its encoded name, 20 bytes of baseline, 6 open minute counts, a boxed open
//! Insight if any, and two vectors of attribution slots (baseline and recent,
//! [`crate::attribution`]; at most 8 values per attribute, 24 bytes a slot). Measured with the
//! `memory` example: about 620 bytes per key at 100,000 keys. At most `max_tracked_keys` keys
//! are kept; inserting beyond that evicts the 1/16 least recently seen keys, those without an
//! open Insight first ([`Stats::evicted_keys`]); an open Insight evicted is ended then (its End
//! written), so every Start has its End. A key evicted and seen again starts from a zero
//! baseline.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::attribution::{ATTRIBUTES, Attribution, Interner, Values};
use crate::config::{Effective, InsightsConfig, MAX_LATENESS_MINUTES};
use crate::event::{AttributionReport, InsightEvent, InsightState, event_id, shared_event_id};
use crate::key::{Call, InsightType, SeriesKey, encode_into};
use crate::model::Baseline;

/// Open minute slots per key.
pub(crate) const OPEN: usize = MAX_LATENESS_MINUTES as usize + 1;

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Counters of what the detector did and dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Keys tracked now.
    pub tracked_keys: u64,
    /// Keys evicted to stay within `max_tracked_keys`, since the state began.
    pub evicted_keys: u64,
    /// Calls not counted: their minute was already closed.
    pub late_events: u64,
    /// Calls not counted: stamped too far past the wall clock.
    pub future_events: u64,
    /// Insights started.
    pub insights_started: u64,
    /// Insights ended.
    pub insights_ended: u64,
}

/// An open Insight of one key.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Active {
    pub(crate) start: i64,
    pub(crate) baseline_average: f64,
    pub(crate) baseline_duration: u32,
    /// The baseline's top values when the Insight started, per attribute.
    pub(crate) baseline_top: [Vec<(String, f64)>; 3],
    pub(crate) last_unusual: i64,
    /// Calls in the closed minutes from `start` to `last_unusual`.
    pub(crate) span_count: u64,
    /// Calls in the closed minutes after `last_unusual`.
    pub(crate) trailing_count: u64,
    /// Closed minutes within bounds since `last_unusual`.
    pub(crate) normal_run: u32,
}

/// One key's state.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Series {
    pub(crate) baseline: Baseline,
    /// The last minute folded into the baseline.
    pub(crate) closed_through: i64,
    /// Counts of minutes `closed_through + 1 + i`.
    pub(crate) open: [u32; OPEN],
    /// The minute of the latest call counted.
    pub(crate) last_seen: i64,
    /// Shares of the baseline, weighted like it.
    pub(crate) base_attr: Attribution,
    /// Calls of the open minutes, or of the open Insight.
    pub(crate) recent: Attribution,
    pub(crate) active: Option<Box<Active>>,
    /// The bound for the next minute, while the baseline has not changed.
    pub(crate) bound: Option<u32>,
}

/// Detects unusual call and error rates; see the module doc.
///
/// `Debug` shows counters only: the state holds user ARNs and user agents, event data that
/// stays out of logs.
pub struct Detector {
    pub(crate) config: InsightsConfig,
    window: u32,
    min_history: u32,
    lateness: i64,
    default_eff: Effective,
    overrides: Map<String, Effective>,
    ignored: HashSet<String>,
    /// The first minute of the clock: history counts from here.
    pub(crate) epoch: Option<i64>,
    pub(crate) now: Option<i64>,
    pub(crate) wall: Option<i64>,
    pub(crate) series: Map<Box<str>, Series>,
    /// Keys with an open Insight: the only ones the clock visits.
    pub(crate) active: HashSet<Box<str>, foldhash::fast::RandomState>,
    pub(crate) interner: Interner,
    pub(crate) stats: Stats,
    buf: String,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("now", &self.now)
            .field("stats", &self.stats())
            .field("open_insights", &self.active.len())
            .finish_non_exhaustive()
    }
}

impl Detector {
    /// A detector with no history, after checking `config` ([`InsightsConfig::validate`]).
    pub fn try_new(config: InsightsConfig) -> Result<Self, crate::ConfigError> {
        config.validate()?;
        Ok(Detector::new(config))
    }

    /// A detector with no history. The configuration must have passed
    /// [`InsightsConfig::validate`]; out-of-range values are clamped.
    pub fn new(config: InsightsConfig) -> Self {
        let overrides = config
            .accounts
            .keys()
            .map(|a| (a.clone(), config.effective(a)))
            .collect();
        Detector {
            window: config.baseline_window_minutes(),
            min_history: config.min_history_minutes(),
            lateness: i64::from(config.lateness_minutes.min(MAX_LATENESS_MINUTES)),
            default_eff: config.effective(""),
            overrides,
            ignored: config.ignored_event_sources.iter().cloned().collect(),
            epoch: None,
            now: None,
            wall: None,
            series: Map::default(),
            active: HashSet::default(),
            interner: Interner::default(),
            stats: Stats::default(),
            buf: String::new(),
            config,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &InsightsConfig {
        &self.config
    }

    /// The clock, as a unix minute (`None` before anything was observed or advanced).
    pub fn now(&self) -> Option<i64> {
        self.now
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        Stats {
            tracked_keys: self.series.len() as u64,
            ..self.stats
        }
    }

    /// Insights open now.
    pub fn open_insights(&self) -> usize {
        self.active.len()
    }

    /// Distinct attribution values held (user ARNs, user agents, error codes).
    pub fn interned_values(&self) -> usize {
        self.interner.len()
    }

    fn eff(&self, account: &str) -> Effective {
        if self.overrides.is_empty() {
            return self.default_eff;
        }
        self.overrides
            .get(account)
            .copied()
            .unwrap_or(self.default_eff)
    }

    /// Moves the clock to `minute` (a wall clock; never backwards), closing the minutes that
    /// fall out of the lateness allowance. Insight events found are appended to `out`.
    pub fn advance(&mut self, minute: i64, out: &mut Vec<InsightEvent>) {
        self.wall = Some(self.wall.map_or(minute, |w| w.max(minute)));
        self.advance_clock(minute, out);
        self.interner.sweep();
    }

    fn advance_clock(&mut self, minute: i64, out: &mut Vec<InsightEvent>) {
        if self.now.is_some_and(|n| minute <= n) {
            return;
        }
        if self.epoch.is_none() {
            self.epoch = Some(minute - self.lateness - 1);
        }
        self.now = Some(minute);
        let target = minute - self.lateness - 1;
        if self.active.is_empty() {
            return;
        }
        let first = out.len();
        let ctx = CloseCtx {
            window: self.window,
            min_history: self.min_history,
            end_after: self.config.end_after_minutes.max(1),
            default_eff: self.default_eff,
            overrides: &self.overrides,
        };
        let stats = &mut self.stats;
        let series = &mut self.series;
        self.active.retain(|key| match series.get_mut(key) {
            Some(s) => {
                close_through(&ctx, key, s, target, stats, out);
                s.active.is_some()
            }
            None => false,
        });
        out[first..].sort_by(|a, b| {
            (a.event_minute, &a.key, a.state as u8).cmp(&(b.event_minute, &b.key, b.state as u8))
        });
    }

    /// Counts one call. An Insight that it starts is appended to `out`, as are any that moving
    /// the clock to the call's minute ends.
    pub fn observe(&mut self, call: &Call<'_>, out: &mut Vec<InsightEvent>) {
        if !call.is_counted() {
            return;
        }
        let write = call.is_write();
        let error = call.is_error();
        let eff = self.eff(call.account);
        let write = write && eff.api_call_rate;
        let error = error && eff.api_error_rate;
        if (!write && !error) || self.ignored.contains(call.event_source) {
            return;
        }
        if let Some(w) = self.wall
            && call.minute > w + i64::from(self.config.max_future_minutes)
        {
            self.stats.future_events += 1;
            return;
        }
        self.advance_clock(call.minute, out);
        self.interner.sweep();
        let values = Values {
            by: [
                call.user_arn.map(|v| self.interner.intern(v)),
                call.user_agent.map(|v| self.interner.intern(v)),
                Some(self.interner.intern(call.error_code.unwrap_or("null"))),
            ],
        };
        for (t, on) in [
            (InsightType::ApiCallRate, write),
            (InsightType::ApiErrorRate, error),
        ] {
            if on {
                self.count(t, call, &values, eff, out);
            }
        }
    }

    fn count(
        &mut self,
        t: InsightType,
        call: &Call<'_>,
        values: &Values,
        eff: Effective,
        out: &mut Vec<InsightEvent>,
    ) {
        let mut buf = std::mem::take(&mut self.buf);
        encode_into(&mut buf, t, call);
        if !self.series.contains_key(buf.as_str()) {
            if self.series.len() >= self.config.max_tracked_keys.max(1) {
                self.evict(out);
            }
            let s = self.new_series();
            self.series.insert(buf.as_str().into(), s);
        }
        let window = self.window;
        let min_history = self.min_history;
        let target = self.now.unwrap_or(call.minute) - self.lateness - 1;
        let ctx = CloseCtx {
            window,
            min_history,
            end_after: self.config.end_after_minutes.max(1),
            default_eff: self.default_eff,
            overrides: &self.overrides,
        };
        let Some(s) = self.series.get_mut(buf.as_str()) else {
            self.buf = buf;
            return;
        };
        // Closing is lazy: a key catches up with the clock when it is next counted (and, with
        // an open Insight, on every advance of the clock).
        let was_active = s.active.is_some();
        close_through(&ctx, &buf, s, target, &mut self.stats, out);
        let offset = call.minute - s.closed_through - 1;
        match usize::try_from(offset).ok().filter(|&i| i < OPEN) {
            None => self.stats.late_events += 1,
            Some(slot) => {
                s.open[slot] = s.open[slot].saturating_add(1);
                s.last_seen = s.last_seen.max(call.minute);
                let n = f64::from(s.baseline.history.saturating_add(1).min(window).max(1));
                if s.active.is_none() {
                    s.base_attr.add(values, 1.0 / n);
                }
                s.recent.add(values, 1.0);
                if s.active.is_none() && s.baseline.history >= min_history {
                    let bound = *s.bound.get_or_insert_with(|| {
                        s.baseline.bound(eff.sensitivity, eff.z, eff.min_count)
                    });
                    if s.open[slot] >= bound {
                        let key = SeriesKey::from_boxed(buf.as_str().into());
                        let count = s.open[slot];
                        start(&key, s, call.minute, count, window, &mut self.stats, out);
                    }
                }
            }
        }
        // Closing may have ended an Insight (or, rarely, started one); counting may start one.
        match (was_active, s.active.is_some()) {
            (false, true) => {
                self.active.insert(buf.as_str().into());
            }
            (true, false) => {
                self.active.remove(buf.as_str());
            }
            _ => {}
        }
        self.buf = buf;
    }

    fn new_series(&self) -> Series {
        let now = self.now.unwrap_or(0);
        let closed_through = now - self.lateness - 1;
        let history = self.epoch.map_or(0, |e| {
            (closed_through - e).clamp(0, i64::from(u32::MAX)) as u32
        });
        Series {
            baseline: Baseline {
                mean: 0.0,
                var: 0.0,
                history,
            },
            closed_through,
            open: [0; OPEN],
            last_seen: now,
            base_attr: Attribution::default(),
            recent: Attribution::default(),
            active: None,
            bound: None,
        }
    }

    /// Evicts the least recently seen sixteenth of the keys, those without an open Insight
    /// first. An open Insight evicted is ended now (its End written), so that every Start has
    /// its End.
    fn evict(&mut self, out: &mut Vec<InsightEvent>) {
        let mut order: Vec<(bool, i64, &Box<str>)> = self
            .series
            .iter()
            .map(|(k, s)| (s.active.is_some(), s.last_seen, k))
            .collect();
        order.sort();
        let n = (order.len() / 16).max(1);
        let victims: Vec<Box<str>> = order.iter().take(n).map(|v| v.2.clone()).collect();
        for v in victims {
            if let Some(mut s) = self.series.remove(&v)
                && s.active.is_some()
            {
                end(
                    &SeriesKey::from_boxed(v.clone()),
                    &mut s,
                    &mut self.stats,
                    out,
                );
            }
            self.active.remove(&v);
        }
        self.stats.evicted_keys += n as u64;
    }
}

/// What closing minutes needs from the detector, borrowed apart from the series map.
struct CloseCtx<'a> {
    window: u32,
    min_history: u32,
    end_after: u32,
    default_eff: Effective,
    overrides: &'a Map<String, Effective>,
}

impl CloseCtx<'_> {
    fn eff(&self, key: &str) -> Effective {
        if self.overrides.is_empty() {
            return self.default_eff;
        }
        self.overrides
            .get(crate::key::account_of(key))
            .copied()
            .unwrap_or(self.default_eff)
    }
}

fn close_through(
    ctx: &CloseCtx<'_>,
    key: &str,
    s: &mut Series,
    target: i64,
    stats: &mut Stats,
    out: &mut Vec<InsightEvent>,
) {
    while s.closed_through < target {
        if s.active.is_none() && s.open.iter().all(|&c| c == 0) {
            // A quiet stretch: fold it in at once.
            let k = (target - s.closed_through) as u64;
            let factor = s.baseline.fold_zeros(k, ctx.window);
            s.base_attr.scale(factor);
            s.recent.clear();
            s.bound = None;
            s.closed_through = target;
            return;
        }
        let c = s.open[0];
        s.open.rotate_left(1);
        s.open[OPEN - 1] = 0;
        s.closed_through += 1;
        close_minute(ctx, key, s, s.closed_through, c, stats, out);
    }
}

fn close_minute(
    ctx: &CloseCtx<'_>,
    key: &str,
    s: &mut Series,
    m: i64,
    c: u32,
    stats: &mut Stats,
    out: &mut Vec<InsightEvent>,
) {
    let usable = s.baseline.history >= ctx.min_history;
    let mut bound = || {
        if !usable {
            return None;
        }
        let e = ctx.eff(key);
        Some(
            *s.bound
                .get_or_insert_with(|| s.baseline.bound(e.sensitivity, e.z, e.min_count)),
        )
    };
    let b = bound();
    match &mut s.active {
        Some(a) if m >= a.start => {
            if m == a.start || b.is_some_and(|b| c >= b) {
                a.span_count += a.trailing_count + u64::from(c);
                a.trailing_count = 0;
                a.normal_run = 0;
                a.last_unusual = m;
            } else {
                a.normal_run += 1;
                a.trailing_count += u64::from(c);
                if a.normal_run >= ctx.end_after {
                    let k = SeriesKey::from_boxed(key.into());
                    end(&k, s, stats, out);
                }
            }
        }
        Some(_) => {}
        None => {
            if let Some(b) = b
                && c >= b
            {
                let k = SeriesKey::from_boxed(key.into());
                start(&k, s, m, c, ctx.window, stats, out);
                if let Some(a) = &mut s.active {
                    a.span_count = u64::from(c);
                }
            }
        }
    }
    // Winsorized: a minute at the bound is folded in as one standard deviation above the
    // mean, so that a burst does not teach the baseline that bursts are ordinary, while a
    // lasting change of level still moves it.
    let folded = match b {
        Some(b) if c >= b => c.min(s.baseline.one_sd_above()),
        _ => c,
    };
    let factor = s.baseline.fold(folded, ctx.window);
    s.base_attr.scale(factor);
    s.bound = None;
    if s.active.is_none() {
        // Keep `recent` to the calls of the minutes still open (in proportion).
        let open: u64 = s.open.iter().map(|&c| u64::from(c)).sum();
        let before = open + u64::from(c);
        s.recent.scale(if before > 0 {
            open as f64 / before as f64
        } else {
            0.0
        });
    }
}

fn reports(
    insight: [Vec<(String, f64)>; 3],
    baseline: &[Vec<(String, f64)>; 3],
) -> Vec<AttributionReport> {
    insight
        .into_iter()
        .zip(baseline.iter())
        .zip(ATTRIBUTES)
        .map(|((insight, baseline), attribute)| AttributionReport {
            attribute,
            insight,
            baseline: baseline.clone(),
        })
        .collect()
}

fn start(
    key: &SeriesKey,
    s: &mut Series,
    m: i64,
    count: u32,
    window: u32,
    stats: &mut Stats,
    out: &mut Vec<InsightEvent>,
) {
    let baseline_average = s.baseline.mean.max(0.0);
    let active = Active {
        start: m,
        baseline_average,
        baseline_duration: s.baseline.duration(window),
        baseline_top: s.base_attr.tops(baseline_average),
        last_unusual: m,
        span_count: 0,
        trailing_count: 0,
        normal_run: 0,
    };
    let insight_average = f64::from(count);
    out.push(InsightEvent {
        key: key.clone(),
        state: InsightState::Start,
        start_minute: m,
        event_minute: m,
        event_id: event_id(key, m, InsightState::Start),
        shared_event_id: shared_event_id(key, m),
        baseline_average,
        insight_average,
        insight_duration: 1,
        baseline_duration: active.baseline_duration,
        attributions: reports(s.recent.tops(insight_average), &active.baseline_top),
    });
    s.active = Some(Box::new(active));
    stats.insights_started += 1;
}

fn end(key: &SeriesKey, s: &mut Series, stats: &mut Stats, out: &mut Vec<InsightEvent>) {
    let Some(a) = s.active.take() else {
        return;
    };
    let duration = (a.last_unusual - a.start + 1).max(1);
    let insight_average = a.span_count as f64 / duration as f64;
    // The recent sketch covers the Insight and the minutes after it; its shares are what
    // is reported, scaled to the Insight's average.
    out.push(InsightEvent {
        key: key.clone(),
        state: InsightState::End,
        start_minute: a.start,
        event_minute: a.last_unusual + 1,
        event_id: event_id(key, a.start, InsightState::End),
        shared_event_id: shared_event_id(key, a.start),
        baseline_average: a.baseline_average,
        insight_average,
        insight_duration: u32::try_from(duration).unwrap_or(u32::MAX),
        baseline_duration: a.baseline_duration,
        attributions: reports(s.recent.tops(insight_average), &a.baseline_top),
    });
    // What stays in `recent` is the open minutes' share.
    let open: u64 = s.open.iter().map(|&c| u64::from(c)).sum();
    let total = s.recent.total(2);
    s.recent.scale(if total > 0.0 {
        (open as f64 / total).min(1.0)
    } else {
        0.0
    });
    stats.insights_ended += 1;
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        /// `n` calls of key `k`, `back` minutes before the clock (may be late).
        Calls { k: usize, n: u32, back: i64 },
        /// The clock moves on by this many minutes.
        Advance(i64),
        /// A restart through the persisted bytes.
        Restart,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0usize..3, 1u32..40, 0i64..4).prop_map(|(k, n, back)| Op::Calls { k, n, back }),
            4 => (1i64..30).prop_map(Op::Advance),
            1 => Just(Op::Restart),
        ]
    }

    fn config() -> InsightsConfig {
        InsightsConfig {
            enabled: true,
            min_history_ms: 5 * 60_000,
            max_tracked_keys: 2,
            ..InsightsConfig::default()
        }
    }

    proptest! {
        /// Whatever the order of calls, clock moves, evictions and restarts: the set of open
        /// Insights matches the keys', every End follows its Start with the same ids, and no
        /// Insight starts twice.
        #[test]
        fn starts_and_ends_pair_up(ops in proptest::collection::vec(op(), 1..120)) {
            let names = ["CreateUser", "DeleteUser", "PutRolePolicy"];
            let mut d = Detector::new(config());
            let mut out = Vec::new();
            let mut now = 29_000_000i64;
            d.advance(now, &mut out);
            for op in ops {
                match op {
                    Op::Calls { k, n, back } => {
                        let call = Call {
                            account: "111122223333",
                            region: "us-east-1",
                            event_source: "iam.amazonaws.com",
                            event_name: names[k],
                            minute: now - back,
                            read_only: Some(false),
                            management: true,
                            error_code: None,
                            user_arn: Some("arn:aws:iam::111122223333:user/u"),
                            user_agent: Some("ua"),
                        };
                        for _ in 0..n {
                            d.observe(&call, &mut out);
                        }
                    }
                    Op::Advance(m) => {
                        now += m;
                        d.advance(now, &mut out);
                    }
                    Op::Restart => {
                        let bytes = d.to_bytes();
                        d = Detector::from_bytes(config(), &bytes).map_err(|e| {
                            TestCaseError::fail(e.to_string())
                        })?;
                    }
                }
                let open = d.series.values().filter(|s| s.active.is_some()).count();
                prop_assert_eq!(open, d.active.len());
                prop_assert!(d.series.len() <= 2);
            }
            // Silence: every open Insight ends.
            d.advance(now + 100, &mut out);
            prop_assert_eq!(d.open_insights(), 0);
            let mut open: HashMap<String, &InsightEvent> = HashMap::new();
            for e in &out {
                match e.state {
                    InsightState::Start => {
                        // The same key and minute give the same ids: an Insight may start
                        // again with them only once the earlier one has ended.
                        prop_assert!(open.insert(e.shared_event_id.clone(), e).is_none());
                    }
                    InsightState::End => {
                        let s = open.remove(&e.shared_event_id);
                        prop_assert!(s.is_some(), "End without Start");
                        let s = s.unwrap_or(e);
                        prop_assert_eq!(&s.key, &e.key);
                        prop_assert!(e.event_minute > s.event_minute);
                        prop_assert_eq!(
                            i64::from(e.insight_duration),
                            e.event_minute - s.event_minute
                        );
                    }
                }
            }
            prop_assert!(open.is_empty(), "Start without End: {:?}", open.keys());
        }
    }
}
