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
//!  "epoch":M,"now":M,"wall":M|null,            unix minutes (null: not yet set)
//!  "stats":{...Stats},
//!  "series":[{"key":"C12:111122223333...",     SeriesKey::encoded
//!             "mean":"f","var":"f","history":n, the baseline (crate::model); "f": a float as a
//!                                               string, exact (ExactF64)
//!             "closed_through":M,"open":[n,..], counts of minutes closed_through+1+i
//!             "last_seen":M,
//!             "baseline_attr":[[[v,w],..],x3],  sketches: userIdentityArn, userAgent, errorCode
//!             "recent_attr":[[[v,w],..],x3],
//!             "active":null|{"start":M,"baseline_average":f,"baseline_duration":n,
//!                            "baseline_top":[[[v,avg],..],x3],"last_unusual":M,
//!                            "span_count":n,"trailing_count":n,"normal_run":n}}]}
//! ```
//!
//! Series are written in key order, so the same state gives the same bytes. A reader refuses
//! another `format` or a `version` it does not know ([`StateError`]); a new version gets a new
//! struct and a conversion from the old one. Restoring under a different configuration keeps
//! the baselines; open counts beyond a smaller `lateness_minutes` are folded at the next close
//! as they are (the slots are positional). Size: about 150 bytes per key plus its values.

use std::collections::HashSet;

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
    #[error("insights state: series {index} has an invalid key")]
    Key { index: usize },
}

type Sketches = [Vec<(String, ExactF64)>; 3];

/// A float written as a string in Rust's shortest round-trip form (`"4.640419242139213"`):
/// serde_json's own float parsing may miss by one unit in the last place, and a restored
/// detector must be the one that was saved, bit for bit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExactF64(pub f64);

impl Serialize for ExactF64 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ExactF64 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse()
            .map(ExactF64)
            .map_err(|_| serde::de::Error::custom(format!("{text:?} is not a number")))
    }
}

fn exact(lists: [Vec<(String, f64)>; 3]) -> Sketches {
    lists.map(|l| l.into_iter().map(|(v, w)| (v, ExactF64(w))).collect())
}

fn plain(lists: Sketches) -> [Vec<(String, f64)>; 3] {
    lists.map(|l| l.into_iter().map(|(v, w)| (v, w.0)).collect())
}

/// Version 1 of the persisted state (see the module doc).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateV1 {
    pub format: String,
    pub version: u32,
    pub epoch: Option<i64>,
    pub now: Option<i64>,
    pub wall: Option<i64>,
    pub stats: Stats,
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
    pub baseline_attr: Sketches,
    pub recent_attr: Sketches,
    pub active: Option<ActiveV1>,
}

/// An open Insight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveV1 {
    pub start: i64,
    pub baseline_average: ExactF64,
    pub baseline_duration: u32,
    pub baseline_top: Sketches,
    pub last_unusual: i64,
    pub span_count: u64,
    pub trailing_count: u64,
    pub normal_run: u32,
}

impl Detector {
    /// The state to persist.
    pub fn snapshot(&self) -> StateV1 {
        let mut series: Vec<SeriesV1> = self
            .series
            .iter()
            .map(|(k, s)| SeriesV1 {
                key: k.to_string(),
                mean: ExactF64(s.baseline.mean),
                var: ExactF64(s.baseline.var),
                history: s.baseline.history,
                closed_through: s.closed_through,
                open: s.open.to_vec(),
                last_seen: s.last_seen,
                baseline_attr: exact(s.base_attr.lists()),
                recent_attr: exact(s.recent.lists()),
                active: s.active.as_ref().map(|a| ActiveV1 {
                    start: a.start,
                    baseline_average: ExactF64(a.baseline_average),
                    baseline_duration: a.baseline_duration,
                    baseline_top: exact(a.baseline_top.clone()),
                    last_unusual: a.last_unusual,
                    span_count: a.span_count,
                    trailing_count: a.trailing_count,
                    normal_run: a.normal_run,
                }),
            })
            .collect();
        series.sort_by(|a, b| a.key.cmp(&b.key));
        StateV1 {
            format: FORMAT.to_owned(),
            version: 1,
            epoch: self.epoch,
            now: self.now,
            wall: self.wall,
            stats: self.stats(),
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
        let mut seen = HashSet::new();
        for (index, s) in state.series.into_iter().enumerate() {
            if SeriesKey::from_encoded(&s.key).is_none() || !seen.insert(s.key.clone()) {
                return Err(StateError::Key { index });
            }
            let mut open = [0u32; OPEN];
            for (slot, c) in open.iter_mut().zip(s.open) {
                *slot = c;
            }
            let series = Series {
                baseline: Baseline {
                    mean: s.mean.0,
                    var: s.var.0,
                    history: s.history,
                },
                closed_through: s.closed_through,
                open,
                last_seen: s.last_seen,
                base_attr: Attribution::from_lists(plain(s.baseline_attr), &mut d.interner),
                recent: Attribution::from_lists(plain(s.recent_attr), &mut d.interner),
                active: s.active.map(|a| {
                    Box::new(Active {
                        start: a.start,
                        baseline_average: a.baseline_average.0,
                        baseline_duration: a.baseline_duration,
                        baseline_top: plain(a.baseline_top),
                        last_unusual: a.last_unusual,
                        span_count: a.span_count,
                        trailing_count: a.trailing_count,
                        normal_run: a.normal_run,
                    })
                }),
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
        // Plain data: serializing cannot fail (non-finite floats become null and are refused
        // by nothing on the way back but a zero baseline).
        serde_json::to_vec(&self.snapshot()).unwrap_or_default()
    }

    /// Reads [`Detector::to_bytes`]' output back, under `config`.
    pub fn from_bytes(config: InsightsConfig, bytes: &[u8]) -> Result<Self, StateError> {
        let state: StateV1 = serde_json::from_slice(bytes).map_err(StateError::Decode)?;
        Detector::restore(config, state)
    }
}
