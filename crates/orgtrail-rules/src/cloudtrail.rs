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

use crate::engine::{Engine, PathId};
use crate::pattern::{Pattern, PatternError};
use crate::screen::Known;

/// The computed envelope fields, as the engine sees them.
const SOURCE: &str = "$envelope.source";
pub(crate) const DETAIL_TYPE: &str = "$envelope.detail-type";
pub(crate) const ID: &str = "$envelope.id";
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
    detail_type_of(record.get("eventCategory"), record.get("eventType"))
}

/// EventBridge's `source` for a CloudTrail record: `aws.` and the service of its eventSource.
pub fn source(record: &Value) -> Option<String> {
    record["eventSource"].as_str().map(source_of)
}

/// EventBridge's `source` for an eventSource: `aws.` and its service.
pub fn source_of(event_source: &str) -> String {
    let mut out = String::new();
    write_source(&mut out, event_source);
    out
}

/// Writes EventBridge's `source` for an eventSource over `out`.
fn write_source(out: &mut String, event_source: &str) {
    let service = event_source
        .strip_suffix(".amazonaws.com")
        .unwrap_or(event_source);
    out.clear();
    out.reserve(4 + service.len());
    out.push_str("aws.");
    out.push_str(service);
}

/// EventBridge's `detail-type` from a record's eventCategory and eventType.
fn detail_type_of(category: Option<&Value>, event_type: Option<&Value>) -> &'static str {
    detail_type_of_str(
        category.and_then(Value::as_str) == Some("Insight"),
        event_type.and_then(Value::as_str),
    )
}

/// The same, from whether eventCategory is `Insight` and eventType when it is a string.
pub fn detail_type_of_str(insight: bool, event_type: Option<&str>) -> &'static str {
    if insight {
        return DETAIL_TYPE_NAMES[4];
    }
    match event_type {
        Some("AwsConsoleSignIn") => DETAIL_TYPE_NAMES[1],
        Some("AwsServiceEvent") => DETAIL_TYPE_NAMES[2],
        Some("AwsConsoleAction") => DETAIL_TYPE_NAMES[3],
        Some("AwsCloudTrailInsight") => DETAIL_TYPE_NAMES[4],
        _ => DETAIL_TYPE_NAMES[0],
    }
}

/// The record fields the computed envelope fields are made of; the engine collects them as
/// it flattens an event, so that computing them looks nothing up again.
const EVENT_SOURCE: &str = "eventSource";
const EVENT_TYPE: &str = "eventType";
const EVENT_CATEGORY: &str = "eventCategory";

/// Path numbers of the computed fields some rule reads, and of the fields they come from.
#[derive(Debug, Default)]
struct Computed {
    source: Option<(PathId, PathId)>,
    detail_type: Option<(PathId, PathId, PathId)>,
    id: Option<PathId>,
    version: Option<PathId>,
}

/// Compiled rules over CloudTrail records, in record or envelope form.
#[derive(Debug)]
pub struct CloudTrailRules {
    engine: Engine,
    computed: Computed,
}

impl CloudTrailRules {
    /// Compiles `patterns` (each already checked, in either form); rule `i` is `patterns[i]`.
    pub fn new(patterns: Vec<Pattern>) -> Result<CloudTrailRules, (usize, PatternError)> {
        let patterns = patterns
            .into_iter()
            .enumerate()
            .map(|(i, p)| onto_record(p).map_err(|e| (i, e)))
            .collect::<Result<Vec<_>, _>>()?;
        let reads = |path: &str| patterns.iter().any(|p| p.paths().any(|q| q == path));
        let mut aux = Vec::new();
        if reads(SOURCE) {
            aux.push(EVENT_SOURCE);
        }
        if reads(DETAIL_TYPE) {
            aux.extend([EVENT_CATEGORY, EVENT_TYPE]);
        }
        let engine = Engine::with_screen(&patterns, &aux, crate::screen::screenable);
        let id = |p: &str| engine.path_id(p);
        let computed = Computed {
            source: id(SOURCE).zip(id(EVENT_SOURCE)),
            detail_type: match (id(DETAIL_TYPE), id(EVENT_CATEGORY), id(EVENT_TYPE)) {
                (Some(d), Some(c), Some(t)) => Some((d, c, t)),
                _ => None,
            },
            id: id(ID),
            version: id(VERSION),
        };
        Ok(CloudTrailRules { engine, computed })
    }

    /// The paths of the record these rules read (dotted, from the top), and the fields the
    /// envelope's computed values come from (`eventID` included): see
    /// [`crate::RuleSet::parse_record`].
    pub fn record_paths(&self) -> impl Iterator<Item = &str> {
        self.engine
            .paths()
            .iter()
            .filter(|p| !p.starts_with('$'))
            .map(String::as_str)
            .chain(self.computed.id.map(|_| "eventID"))
    }

    /// Whether some rule may match a record of which only a few fields are known (`known`
    /// answers for a record path, or for [`DETAIL_TYPE`] and [`ID`]): `false` proves that no
    /// rule matches. See [`Engine::may_match`].
    pub fn may_match<'k>(&self, known: impl Fn(&str) -> Known<'k>) -> bool {
        let paths = self.engine.paths();
        self.engine.may_match(|id| match paths[id].as_str() {
            SOURCE => match known(EVENT_SOURCE) {
                Known::Str(s) => Known::Owned(source_of(s)),
                other => other,
            },
            // Asked as such: it depends on whether the record is an Insight, which only the
            // caller knows for certain.
            DETAIL_TYPE => known(DETAIL_TYPE),
            ID => known(ID),
            VERSION => Known::Str("0"),
            record => known(record),
        })
    }

    /// How many alternatives have no anchor and are verified for every event.
    pub fn unanchored(&self) -> usize {
        self.engine.unanchored()
    }

    /// The rules that match `record`, ascending.
    pub fn matches(&self, record: &Value, out: &mut Vec<usize>) {
        // Declared before the flattened event, which may hold a leaf of it: the last event's
        // source, whose buffer is written over (no allocation per event).
        let mut source = LAST_SOURCE.take();
        let c = &self.computed;
        let mut flat = self.engine.flatten(record);
        // Pushed in the order of their path numbers (`$envelope.detail-type`, `.id`, `.source`,
        // `.version`, after the record's own), so that the leaves need no sorting.
        if let Some((at, category, event_type)) = c.detail_type {
            let t = detail_type_of(flat.first(category), flat.first(event_type));
            let i = DETAIL_TYPE_NAMES.iter().position(|n| *n == t).unwrap_or(0);
            flat.push(at, &DETAIL_TYPES[i]);
        }
        if let Some(at) = c.id
            && let Some(v) = record.get("eventID")
            && !v.is_null()
        {
            flat.push(at, v);
        }
        if let Some((at, from)) = c.source
            && let Some(Value::String(s)) = flat.first(from)
        {
            let mut buf = match std::mem::take(&mut source) {
                Value::String(b) => b,
                _ => String::new(),
            };
            write_source(&mut buf, s);
            source = Value::String(buf);
            flat.push(at, &source);
        }
        if let Some(at) = c.version {
            flat.push(at, &VERSION_VALUE);
        }
        self.engine.matches_flat(flat, out);
        LAST_SOURCE.set(source);
    }
}

thread_local! {
    /// The last `source` computed on this thread, its buffer reused by the next.
    static LAST_SOURCE: std::cell::Cell<Value> = const { std::cell::Cell::new(Value::Null) };
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
