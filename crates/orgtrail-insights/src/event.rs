//! Insight events in CloudTrail's own format, field for field as in AWS's examples
//! (`eventVersion` 1.09, the version whose examples carry `sourceEventCategory`).
//!
//! ```json
//! {"eventVersion":"1.09","eventTime":"2026-11-27T20:51:00Z","awsRegion":"us-east-1",
//!  "eventID":"…","eventType":"AwsCloudTrailInsight","recipientAccountId":"111122223333",
//!  "sharedEventID":"…",
//!  "insightDetails":{"state":"Start","eventSource":"iam.amazonaws.com","eventName":"CreateUser",
//!    "insightType":"ApiCallRateInsight","sourceEventCategory":"Management",
//!    "insightContext":{"statistics":{"baseline":{"average":0.05},"insight":{"average":40.0},
//!      "insightDuration":1,"baselineDuration":10080},
//!      "attributions":[{"attribute":"userIdentityArn","insight":[{"value":"…","average":40.0}],
//!                       "baseline":[…]}, {"attribute":"userAgent",…}, {"attribute":"errorCode",…}]}},
//!  "eventCategory":"Insight"}
//! ```
//!
//! - `eventTime`: the Start event's is the first unusual minute; the End event's is the minute
//!   after the last unusual one (AWS: Start 00:51, End 00:52, `insightDuration` 1).
//! - `errorCode` is present for ApiErrorRateInsight only, after `insightType`.
//! - Ids: `sharedEventID` is a UUID-shaped hash of the key and the first minute; `eventID` of
//!   the key, the first minute and the state. The same Insight found again (a replay after a
//!   restart) gets the same ids, so the ledger's (account, eventID) dedup keeps one copy.
//! - Averages are calls per minute, rounded to 10 decimals (AWS writes `0.0000882145`). The
//!   Start is written as soon as the first unusual minute reaches the bound, so its
//!   `insight.average` is the count at that moment (the bound) and `insightDuration` 1; the End
//!   carries the average over the whole Insight. `baseline` is the baseline when the Insight
//!   started, on both.

use serde::Serialize;

use crate::key::{InsightType, SeriesKey};

/// The eventVersion written.
pub const EVENT_VERSION: &str = "1.09";

/// Start or End.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum InsightState {
    Start,
    End,
}

impl InsightState {
    pub fn as_str(self) -> &'static str {
        match self {
            InsightState::Start => "Start",
            InsightState::End => "End",
        }
    }
}

/// One attribute's top values for the insight and the baseline periods.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributionReport {
    /// `userIdentityArn`, `userAgent` or `errorCode`.
    pub attribute: &'static str,
    /// (value, calls per minute), heaviest first, at most 5.
    pub insight: Vec<(String, f64)>,
    /// (value, calls per minute), heaviest first, at most 5.
    pub baseline: Vec<(String, f64)>,
}

/// An Insight event, typed. [`InsightEvent::to_json`] writes CloudTrail's bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct InsightEvent {
    pub key: SeriesKey,
    pub state: InsightState,
    /// Unix minute of the first unusual minute.
    pub start_minute: i64,
    /// Unix minute of `eventTime`.
    pub event_minute: i64,
    pub event_id: String,
    pub shared_event_id: String,
    /// Calls per minute of the baseline when the Insight started.
    pub baseline_average: f64,
    /// Calls per minute over the unusual minutes (so far, on a Start event).
    pub insight_average: f64,
    /// Minutes from the first to the last unusual minute.
    pub insight_duration: u32,
    /// Minutes of history the baseline stands for.
    pub baseline_duration: u32,
    pub attributions: Vec<AttributionReport>,
}

#[derive(Serialize)]
struct Wire<'a> {
    #[serde(rename = "eventVersion")]
    event_version: &'a str,
    #[serde(rename = "eventTime")]
    event_time: String,
    #[serde(rename = "awsRegion")]
    aws_region: &'a str,
    #[serde(rename = "eventID")]
    event_id: &'a str,
    #[serde(rename = "eventType")]
    event_type: &'a str,
    #[serde(rename = "recipientAccountId")]
    recipient_account_id: &'a str,
    #[serde(rename = "sharedEventID")]
    shared_event_id: &'a str,
    #[serde(rename = "insightDetails")]
    insight_details: WireDetails<'a>,
    #[serde(rename = "eventCategory")]
    event_category: &'a str,
}

#[derive(Serialize)]
struct WireDetails<'a> {
    state: &'a str,
    #[serde(rename = "eventSource")]
    event_source: &'a str,
    #[serde(rename = "eventName")]
    event_name: &'a str,
    #[serde(rename = "insightType")]
    insight_type: &'a str,
    #[serde(rename = "errorCode", skip_serializing_if = "Option::is_none")]
    error_code: Option<&'a str>,
    #[serde(rename = "sourceEventCategory")]
    source_event_category: &'a str,
    #[serde(rename = "insightContext")]
    insight_context: WireContext<'a>,
}

#[derive(Serialize)]
struct WireContext<'a> {
    statistics: WireStatistics,
    attributions: Vec<WireAttribution<'a>>,
}

#[derive(Serialize)]
struct WireStatistics {
    baseline: WireAverage,
    insight: WireAverage,
    #[serde(rename = "insightDuration")]
    insight_duration: u32,
    #[serde(rename = "baselineDuration")]
    baseline_duration: u32,
}

#[derive(Serialize)]
struct WireAverage {
    average: f64,
}

#[derive(Serialize)]
struct WireAttribution<'a> {
    attribute: &'a str,
    insight: Vec<WireValue<'a>>,
    baseline: Vec<WireValue<'a>>,
}

#[derive(Serialize)]
struct WireValue<'a> {
    value: &'a str,
    average: f64,
}

/// Rounds to 10 decimals, as AWS writes averages.
fn round10(x: f64) -> f64 {
    if x.is_finite() {
        (x * 1e10).round() / 1e10
    } else {
        0.0
    }
}

fn values(v: &[(String, f64)]) -> Vec<WireValue<'_>> {
    v.iter()
        .map(|(value, avg)| WireValue {
            value,
            average: round10(*avg),
        })
        .collect()
}

impl InsightEvent {
    /// The account the event belongs to.
    pub fn account(&self) -> &str {
        self.key.account()
    }

    /// CloudTrail's JSON for this event, compact, in CloudTrail's key order.
    pub fn to_json(&self) -> Vec<u8> {
        let k = &self.key;
        let wire = Wire {
            event_version: EVENT_VERSION,
            event_time: orgtrail_core::Timestamp(self.event_minute.saturating_mul(60_000))
                .to_string(),
            aws_region: k.region(),
            event_id: &self.event_id,
            event_type: "AwsCloudTrailInsight",
            recipient_account_id: k.account(),
            shared_event_id: &self.shared_event_id,
            insight_details: WireDetails {
                state: self.state.as_str(),
                event_source: k.event_source(),
                event_name: k.event_name(),
                insight_type: k.insight_type().as_str(),
                error_code: k.error_code(),
                source_event_category: "Management",
                insight_context: WireContext {
                    statistics: WireStatistics {
                        baseline: WireAverage {
                            average: round10(self.baseline_average),
                        },
                        insight: WireAverage {
                            average: round10(self.insight_average),
                        },
                        insight_duration: self.insight_duration,
                        baseline_duration: self.baseline_duration,
                    },
                    attributions: self
                        .attributions
                        .iter()
                        .map(|a| WireAttribution {
                            attribute: a.attribute,
                            insight: values(&a.insight),
                            baseline: values(&a.baseline),
                        })
                        .collect(),
                },
            },
            event_category: "Insight",
        };
        // Serializing these types cannot fail: strings, finite numbers, no maps.
        serde_json::to_vec(&wire).unwrap_or_default()
    }
}

/// A UUID-shaped id (version 8, "custom") from SHA-256 over `parts`, each length-prefixed.
pub(crate) fn derived_id(parts: &[&[u8]]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"orgtrail-insights/v1");
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    orgtrail_core::uuid_from_digest(&h.finalize().into())
}

/// `sharedEventID` of the Insight of `key` that started at `start_minute`.
pub(crate) fn shared_event_id(key: &SeriesKey, start_minute: i64) -> String {
    derived_id(&[
        key.encoded().as_bytes(),
        &start_minute.to_be_bytes(),
        b"shared",
    ])
}

/// `eventID` of the `state` event of that Insight.
pub(crate) fn event_id(key: &SeriesKey, start_minute: i64, state: InsightState) -> String {
    derived_id(&[
        key.encoded().as_bytes(),
        &start_minute.to_be_bytes(),
        state.as_str().as_bytes(),
    ])
}

impl InsightType {
    /// As CloudTrail writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            InsightType::ApiCallRate => "ApiCallRateInsight",
            InsightType::ApiErrorRate => "ApiErrorRateInsight",
        }
    }
}
