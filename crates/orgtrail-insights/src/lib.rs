//! orgtrail's Insights: unusual rates of write API calls (ApiCallRateInsight) and of errors
//! (ApiErrorRateInsight), found per minute against a per-key baseline, and written as Insight
//! events in CloudTrail's own format.
//!
//! - [`key`]: what is counted, and under which key.
//! - [`record`]: a call owned, to be fed later.
//! - [`model`]: the baseline and the bound (orgtrail's model; AWS publishes none).
//! - [`detector`]: minute counts, the clock, Start and End, bounded memory.
//! - [`attribution`]: top userIdentityArn, userAgent and errorCode values per key.
//! - [`event`]: the Insight event's JSON and its deterministic ids.
//! - [`state`]: the detector's state, serialized to survive restarts.
//! - [`config`]: the `[insights]` configuration.
//!
//! docs/insights.md describes the model, tuning and the state format for operators.
//!
//! ```
//! use orgtrail_insights::{Call, Detector, InsightsConfig};
//! let mut d = Detector::new(InsightsConfig { enabled: true, ..InsightsConfig::default() });
//! let mut out = Vec::new();
//! let call = Call {
//!     account: "111122223333", region: "us-east-1", event_source: "iam.amazonaws.com",
//!     event_name: "CreateUser", minute: 29_000_000, read_only: Some(false), management: true,
//!     error_code: None, user_arn: None, user_agent: None,
//! };
//! d.observe(&call, &mut out);
//! assert!(out.is_empty()); // no history yet: nothing is unusual
//! ```
//!
//! No I/O, no async runtime: the collector feeds calls in, stores the events out and the
//! [`state::StateV1`] snapshot with its ledger.

pub mod attribution;
pub mod config;
pub mod detector;
pub mod event;
pub mod key;
pub mod model;
pub mod record;
pub mod state;

pub use config::{AccountInsights, ConfigError, InsightsConfig};
pub use detector::{Detector, Stats};
pub use event::{AttributionReport, EVENT_VERSION, InsightEvent, InsightState};
pub use key::{Call, InsightType, SeriesKey};
pub use record::CallRecord;
pub use state::{StateError, StateV1};
