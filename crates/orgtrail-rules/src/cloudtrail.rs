//! Patterns on CloudTrail records, written either against the bare record or against the
//! EventBridge envelope that AWS wraps a CloudTrail event in, so that patterns copied from
//! AWS work unchanged:
//!
//! ```json
//! {"source": ["aws.iam"], "detail-type": ["AWS API Call via CloudTrail"],
//!  "detail": {"eventName": ["DeleteUser"]}}
//! ```
//!
//! A pattern is in envelope form when it names any envelope field at its top level
//! (`detail`, `detail-type`, `source`, `account`, `region`, `time`, `id`, `version`). Such a
//! pattern is rewritten once, when it is compiled, onto the record:
//!
//! | envelope | record |
//! |---|---|
//! | `detail.X` | `X` |
//! | `account` | `recipientAccountId` |
//! | `region` | `awsRegion` |
//! | `time` | `eventTime` |
//! | `resources` | `resources.ARN` (the envelope lists the ARNs) |
//! | `source` | computed: `aws.` and the eventSource's service (`iam.amazonaws.com` is `aws.iam`) |
//! | `detail-type` | computed from eventType: `AWS API Call via CloudTrail` (AwsApiCall, and any other), `AWS Console Sign In via CloudTrail`, `AWS Service Event via CloudTrail`, `AWS Console Action via CloudTrail`, `AWS Insight via CloudTrail` |
//! | `id` | computed: the eventID (EventBridge gives each delivery an id of its own) |
//! | `version` | computed: `"0"` |
//!
//! So both forms match the same events, and an event is flattened once whichever form its
//! rules use. A pattern that puts record fields beside envelope fields at its top level is
//! refused: record fields go under `detail`.

use serde_json::Value;

use crate::engine::Engine;
use crate::pattern::{Pattern, PatternError};

/// The computed envelope fields, as the engine sees them.
const SOURCE: &str = "$envelope.source";
const DETAIL_TYPE: &str = "$envelope.detail-type";
const ID: &str = "$envelope.id";
const VERSION: &str = "$envelope.version";

const ENVELOPE_ONLY: [&str; 8] = [
    "detail",
    "detail-type",
    "source",
    "account",
    "region",
    "time",
    "id",
    "version",
];

fn top(path: &str) -> &str {
    path.split('.').next().unwrap_or(path)
}

/// Rewrites an envelope-form pattern onto the record; a record-form pattern is kept as is.
pub fn onto_record(pattern: Pattern) -> Result<Pattern, PatternError> {
    let envelope = pattern.paths().any(|p| ENVELOPE_ONLY.contains(&top(p)));
    if !envelope {
        return Ok(pattern);
    }
    let mut out = pattern;
    for alt in &mut out.alternatives {
        for c in alt.iter_mut() {
            let path = std::mem::take(&mut c.path);
            c.path = match path.as_str() {
                "detail-type" => DETAIL_TYPE.to_owned(),
                "source" => SOURCE.to_owned(),
                "id" => ID.to_owned(),
                "version" => VERSION.to_owned(),
                "account" => "recipientAccountId".to_owned(),
                "region" => "awsRegion".to_owned(),
                "time" => "eventTime".to_owned(),
                "resources" => "resources.ARN".to_owned(),
                "detail" => {
                    return Err(PatternError {
                        path,
                        reason: "detail holds the CloudTrail record: match its fields, {\"detail\": {\"eventName\": [...]}}".into(),
                    });
                }
                p => match p.strip_prefix("detail.") {
                    Some(rest) => rest.to_owned(),
                    None => {
                        return Err(PatternError {
                            path,
                            reason: "an EventBridge envelope pattern has no such top-level field: put the CloudTrail record's fields under detail".into(),
                        });
                    }
                },
            };
        }
    }
    Ok(out)
}

/// Every `detail-type` of a CloudTrail record; the first is the default.
const DETAIL_TYPE_NAMES: [&str; 5] = [
    "AWS API Call via CloudTrail",
    "AWS Console Sign In via CloudTrail",
    "AWS Service Event via CloudTrail",
    "AWS Console Action via CloudTrail",
    "AWS Insight via CloudTrail",
];

/// The same, as JSON values the engine can hold leaves of (made once).
static DETAIL_TYPES: std::sync::LazyLock<Vec<Value>> = std::sync::LazyLock::new(|| {
    DETAIL_TYPE_NAMES
        .iter()
        .map(|n| Value::String((*n).to_owned()))
        .collect()
});

static VERSION_VALUE: std::sync::LazyLock<Value> =
    std::sync::LazyLock::new(|| Value::String("0".to_owned()));

/// EventBridge's `detail-type` for a CloudTrail record.
pub fn detail_type(record: &Value) -> &'static str {
    if record["eventCategory"] == "Insight" {
        return DETAIL_TYPE_NAMES[4];
    }
    match record["eventType"].as_str() {
        Some("AwsConsoleSignIn") => DETAIL_TYPE_NAMES[1],
        Some("AwsServiceEvent") => DETAIL_TYPE_NAMES[2],
        Some("AwsConsoleAction") => DETAIL_TYPE_NAMES[3],
        Some("AwsCloudTrailInsight") => DETAIL_TYPE_NAMES[4],
        _ => DETAIL_TYPE_NAMES[0],
    }
}

/// EventBridge's `source` for a CloudTrail record: `aws.` and the service of its eventSource.
pub fn source(record: &Value) -> Option<String> {
    let s = record["eventSource"].as_str()?;
    Some(format!(
        "aws.{}",
        s.strip_suffix(".amazonaws.com").unwrap_or(s)
    ))
}

/// Compiled rules over CloudTrail records, in record or envelope form.
#[derive(Debug)]
pub struct CloudTrailRules {
    engine: Engine,
    source: bool,
    detail_type: bool,
    id: bool,
    version: bool,
}

impl CloudTrailRules {
    /// Compiles `patterns` (each already checked, in either form); rule `i` is `patterns[i]`.
    pub fn new(patterns: Vec<Pattern>) -> Result<CloudTrailRules, (usize, PatternError)> {
        let patterns = patterns
            .into_iter()
            .enumerate()
            .map(|(i, p)| onto_record(p).map_err(|e| (i, e)))
            .collect::<Result<Vec<_>, _>>()?;
        let engine = Engine::new(&patterns);
        Ok(CloudTrailRules {
            source: engine.reads(SOURCE),
            detail_type: engine.reads(DETAIL_TYPE),
            id: engine.reads(ID),
            version: engine.reads(VERSION),
            engine,
        })
    }

    /// How many alternatives have no anchor and are verified for every event.
    pub fn unanchored(&self) -> usize {
        self.engine.unanchored()
    }

    /// The rules that match `record`, ascending.
    pub fn matches(&self, record: &Value, out: &mut Vec<usize>) {
        let source = if self.source {
            source(record).map(Value::String)
        } else {
            None
        };
        let detail_type = self.detail_type.then(|| {
            let t = detail_type(record);
            &DETAIL_TYPES[DETAIL_TYPE_NAMES.iter().position(|n| *n == t).unwrap_or(0)]
        });
        let version = self.version.then(|| &*VERSION_VALUE);
        let mut extra: Vec<(&str, &Value)> = Vec::new();
        if let Some(v) = &source {
            extra.push((SOURCE, v));
        }
        if let Some(v) = detail_type {
            extra.push((DETAIL_TYPE, v));
        }
        if self.id && !record["eventID"].is_null() {
            extra.push((ID, &record["eventID"]));
        }
        if let Some(v) = version {
            extra.push((VERSION, v));
        }
        self.engine.matches(record, &extra, out);
    }
}

/// The EventBridge envelope of a CloudTrail record, as AWS would deliver it (`id` is the
/// eventID).
pub fn envelope(record: &Value) -> Value {
    let resources: Vec<Value> = record["resources"]
        .as_array()
        .map(|r| r.iter().filter_map(|x| x.get("ARN").cloned()).collect())
        .unwrap_or_default();
    serde_json::json!({
        "version": "0",
        "id": record["eventID"],
        "detail-type": detail_type(record),
        "source": source(record),
        "account": record["recipientAccountId"],
        "time": record["eventTime"],
        "region": record["awsRegion"],
        "resources": resources,
        "detail": record,
    })
}
