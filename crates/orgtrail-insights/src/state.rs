//! The detector's state, as it is persisted (with the ledger, by the collector) so that a
//! restart, even in the middle of an Insight, loses nothing: the End still comes, with the
//! Start's `sharedEventID`.
//!
//! # Format (version 1)
//! [`StateV1`] serialized with serde; [`Detector::to_bytes`] writes it as compact JSON (one
//! object) and [`Detector::from_bytes`] reads it back:
//!
//! ```text
//! {"format":"orgtrail-insights-state","version":1,
//!  "epoch":M,"now":M,"wall":M|null,        unix minutes (null: not yet set)
//!  "stats":{...Stats},
//!  "values":["arn:aws:...","aws-cli/2",..], every attribution value once; slots refer to
//!                                           them by index
//!  "series":[{"key":"C12:111122223333...", SeriesKey::encoded
//!             "mean":"f","var":"f",         the baseline (crate::model); "f" is a float
//!             "history":n,                  written as a string, exactly (ExactF64/ExactF32)
//!             "closed_through":M,
//!             "open":[n,..],                counts of minutes closed_through+1+i
//!             "last_seen":M,
//!             "baseline":[[a,i,"w"],..],    slots: attribute (0 userIdentityArn, 1 userAgent,
//!             "recent":[[a,i,"w"],..],      2 errorCode), value index, weight
//!             "active":{"start":M,"baseline_average":"f","baseline_duration":n,   (absent:
//!                       "baseline_top":[[a,i,"avg"],..],"last_unusual":M,          none open)
//!                       "span_count":n,"trailing_count":n,"normal_run":n}}]}
//! ```
//!
//! Series are written in key order and values in the order first met, so the same state gives
//! the same bytes. A reader refuses another `format` or a `version` it does not know
//! ([`StateError`]), and a value index out of range; a new version gets a new struct and a
//! conversion from the old one. Restoring under a different configuration keeps the
//! baselines; open counts beyond a smaller `lateness_minutes` are folded at the next close as
//! they are (the slots are positional). Size: see docs/insights.md.
//!
//! The state holds user ARNs and user agents: it is event data, to be stored sealed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::attribution::Attribution;
use crate::config::InsightsConfig;
use crate::detector::{Active, Detector, OPEN, Series, Stats};
use crate::key::SeriesKey;
use crate::model::Baseline;

/// The `format` tag.
pub const FORMAT: &str = "orgtrail-insights-state";

/// Why a state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("not an insights state: {0}")]
    Decode(#[source] serde_json::Error),
    #[error("not an insights state (format {found:?})")]
    Format { found: String },
    #[error("insights state version {found} is not supported (this build reads version 1)")]
    Version { found: u32 },
    #[error("insights state: series {index} has an invalid or repeated key")]
    Key { index: usize },
    #[error("insights state: series {index} refers to value {value}, past the value table")]
    Value { index: usize, value: u32 },
}

macro_rules! exact_float {
    ($name:ident, $t:ty) => {
        /// A float written as a string in Rust's shortest round-trip form
        /// (`"4.640419242139213"`): serde_json's own float parsing may miss by one unit in
        /// the last place, and a restored detector must be the one that was saved, bit for
        /// bit.
        #[derive(Debug, Clone, Copy, PartialEq)]
        pub struct $name(pub $t);

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse()
                    .map($name)
                    .map_err(|_| serde::de::Error::custom(format!("{text:?} is not a number")))
            }
        }
    };
}

exact_float!(ExactF64, f64);
exact_float!(ExactF32, f32);

/// Version 1 of the persisted state (see the module doc).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateV1 {
    pub format: String,
    pub version: u32,
    pub epoch: Option<i64>,
    pub now: Option<i64>,
    pub wall: Option<i64>,
    pub stats: Stats,
    /// Every attribution value once.
    pub values: Vec<String>,
    pub series: Vec<SeriesV1>,
}

/// One key's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesV1 {
    pub key: String,
    pub mean: ExactF64,
    pub var: ExactF64,
    pub history: u32,
    pub closed_through: i64,
    pub open: Vec<u32>,
    pub last_seen: i64,
    /// (attribute, value index, weight).
    pub baseline: Vec<(u8, u32, ExactF32)>,
    /// (attribute, value index, weight).
    pub recent: Vec<(u8, u32, ExactF32)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<ActiveV1>,
}

/// An open Insight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveV1 {
    pub start: i64,
    pub baseline_average: ExactF64,
    pub baseline_duration: u32,
    /// (attribute, value index, calls per minute), as reported at the Start.
    pub baseline_top: Vec<(u8, u32, ExactF64)>,
    pub last_unusual: i64,
    pub span_count: u64,
    pub trailing_count: u64,
    pub normal_run: u32,
}

/// Values numbered in the order first met.
#[derive(Default)]
struct Table {
    index: HashMap<String, u32>,
    values: Vec<String>,
}

impl Table {
    fn id(&mut self, v: &str) -> u32 {
        if let Some(&i) = self.index.get(v) {
            return i;
        }
        let i = self.values.len() as u32;
        self.index.insert(v.to_owned(), i);
        self.values.push(v.to_owned());
        i
    }

    fn slots(&mut self, a: &Attribution) -> Vec<(u8, u32, ExactF32)> {
        a.slots
            .iter()
            .map(|s| (s.attr, self.id(&s.value), ExactF32(s.weight)))
            .collect()
    }
}

impl Detector {
    /// The state to persist.
    pub fn snapshot(&self) -> StateV1 {
        let mut keys: Vec<(&Box<str>, &Series)> = self.series.iter().collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        let mut table = Table::default();
        let series = keys
            .into_iter()
            .map(|(k, s)| SeriesV1 {
                key: k.to_string(),
                mean: ExactF64(s.baseline.mean),
                var: ExactF64(s.baseline.var),
                history: s.baseline.history,
                closed_through: s.closed_through,
                open: s.open.to_vec(),
                last_seen: s.last_seen,
                baseline: table.slots(&s.base_attr),
                recent: table.slots(&s.recent),
                active: s.active.as_ref().map(|a| ActiveV1 {
                    start: a.start,
                    baseline_average: ExactF64(a.baseline_average),
                    baseline_duration: a.baseline_duration,
                    baseline_top: a
                        .baseline_top
                        .iter()
                        .enumerate()
                        .flat_map(|(attr, list)| list.iter().map(move |v| (attr as u8, v)))
                        .map(|(attr, (v, avg))| (attr, table.id(v), ExactF64(*avg)))
                        .collect(),
                    last_unusual: a.last_unusual,
                    span_count: a.span_count,
                    trailing_count: a.trailing_count,
                    normal_run: a.normal_run,
                }),
            })
            .collect();
        StateV1 {
            format: FORMAT.to_owned(),
            version: 1,
            epoch: self.epoch,
            now: self.now,
            wall: self.wall,
            stats: self.stats(),
            values: table.values,
            series,
        }
    }

    /// A detector that continues from `state`, under `config`.
    pub fn restore(config: InsightsConfig, state: StateV1) -> Result<Self, StateError> {
        if state.format != FORMAT {
            return Err(StateError::Format {
                found: state.format,
            });
        }
        if state.version != 1 {
            return Err(StateError::Version {
                found: state.version,
            });
        }
        let mut d = Detector::new(config);
        d.epoch = state.epoch;
        d.now = state.now;
        d.wall = state.wall;
        d.stats = state.stats;
        let values: Vec<Arc<str>> = state.values.iter().map(|v| d.interner.intern(v)).collect();
        let mut seen = HashSet::new();
        for (index, s) in state.series.into_iter().enumerate() {
            if SeriesKey::from_encoded(&s.key).is_none() || !seen.insert(s.key.clone()) {
                return Err(StateError::Key { index });
            }
            let value = |i: u32| {
                values
                    .get(i as usize)
                    .cloned()
                    .ok_or(StateError::Value { index, value: i })
            };
            let slots = |list: Vec<(u8, u32, ExactF32)>| -> Result<Attribution, StateError> {
                let resolved = list
                    .into_iter()
                    .map(|(a, i, w)| Ok((a, value(i)?, w.0)))
                    .collect::<Result<Vec<_>, StateError>>()?;
                Ok(Attribution::from_slots(resolved))
            };
            let mut open = [0u32; OPEN];
            for (slot, c) in open.iter_mut().zip(&s.open) {
                *slot = *c;
            }
            let active = match s.active {
                None => None,
                Some(a) => {
                    let mut top: [Vec<(String, f64)>; 3] = Default::default();
                    for (attr, i, avg) in a.baseline_top {
                        if let Some(list) = top.get_mut(usize::from(attr)) {
                            list.push((value(i)?.to_string(), avg.0));
                        }
                    }
                    Some(Box::new(Active {
                        start: a.start,
                        baseline_average: a.baseline_average.0,
                        baseline_duration: a.baseline_duration,
                        baseline_top: top,
                        last_unusual: a.last_unusual,
                        span_count: a.span_count,
                        trailing_count: a.trailing_count,
                        normal_run: a.normal_run,
                    }))
                }
            };
            let series = Series {
                baseline: Baseline {
                    mean: s.mean.0,
                    var: s.var.0,
                    history: s.history,
                },
                closed_through: s.closed_through,
                open,
                last_seen: s.last_seen,
                base_attr: slots(s.baseline)?,
                recent: slots(s.recent)?,
                active,
                bound: None,
            };
            if series.active.is_some() {
                d.active.insert(s.key.clone().into_boxed_str());
            }
            d.series.insert(s.key.into_boxed_str(), series);
        }
        Ok(d)
    }

    /// [`Detector::snapshot`] as compact JSON.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Plain data (strings, integers, floats as strings): serializing cannot fail.
        serde_json::to_vec(&self.snapshot()).unwrap_or_default()
    }

    /// Reads [`Detector::to_bytes`]' output back, under `config`.
    pub fn from_bytes(config: InsightsConfig, bytes: &[u8]) -> Result<Self, StateError> {
        let state: StateV1 = serde_json::from_slice(bytes).map_err(StateError::Decode)?;
        Detector::restore(config, state)
    }
}
