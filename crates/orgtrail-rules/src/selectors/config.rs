//! The two ways of writing a trail's selectors: the agent's TOML (`[selectors]`, see
//! [`SelectorConfig`]) and the JSON that `aws cloudtrail get-event-selectors` prints (see
//! [`parse_aws_json`]).

use std::fmt;
use std::path::PathBuf;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// `[selectors]` in the agent's TOML. Everything is optional; without selectors every event
/// is shipped. Checked by [`super::Selectors::compile`], which lists every problem.
///
/// ```toml
/// [selectors]
/// regions = ["us-east-1", "eu-west-1"]
/// [[selectors.advanced]]
/// name = "writes to prod buckets"
/// eventCategory = { equals = ["Data"] }
/// "resources.type" = { equals = ["AWS::S3::Object"] }
/// "resources.ARN" = { starts_with = ["arn:aws:s3:::prod-"] }
/// readOnly = { equals = [false] }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectorConfig {
    /// Ship only events whose `awsRegion` is listed. Absent: every region.
    #[serde(default)]
    pub regions: Option<Vec<String>>,
    /// A file holding the output of `aws cloudtrail get-event-selectors`, used as the trail's
    /// selectors; a relative path is relative to the configuration file.
    #[serde(default)]
    pub aws_json: Option<PathBuf>,
    /// Basic event selectors, `[[selectors.basic]]`.
    #[serde(default)]
    pub basic: Vec<BasicSelectorConfig>,
    /// Advanced event selectors, `[[selectors.advanced]]`.
    #[serde(default)]
    pub advanced: Vec<AdvancedSelectorConfig>,
}

/// One basic event selector (CloudTrail's `EventSelector`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicSelectorConfig {
    /// `All` (default), `ReadOnly` or `WriteOnly`.
    #[serde(default)]
    pub read_write_type: Option<String>,
    /// Whether management events are selected (default true).
    #[serde(default)]
    pub include_management_events: Option<bool>,
    /// Event sources whose management events are not selected, e.g. `kms.amazonaws.com`.
    #[serde(default)]
    pub exclude_management_event_sources: Vec<String>,
    /// Data events to select: a resource type and ARN prefixes.
    #[serde(default)]
    pub data_resources: Vec<DataResourceConfig>,
}

/// One `DataResources` entry of a basic selector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataResourceConfig {
    /// `AWS::S3::Object`, `AWS::Lambda::Function` or `AWS::DynamoDB::Table`.
    #[serde(rename = "type")]
    pub resource_type: String,
    /// ARNs or ARN prefixes, e.g. `arn:aws:s3:::my-bucket/` or `arn:aws:lambda`.
    pub values: Vec<String>,
}

/// One advanced event selector: an optional `name`, and one key per event field, whose value
/// is a table of operators (`equals`, `not_equals`, `starts_with`, `not_starts_with`,
/// `ends_with`, `not_ends_with`; CloudTrail's spelling `Equals`, `NotEquals`, ... is accepted
/// too) to lists of values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdvancedSelectorConfig {
    /// A descriptive name, shown by `explain`.
    pub name: Option<String>,
    /// The field selectors, in the order written.
    pub fields: Vec<FieldSelectorConfig>,
}

/// The conditions on one event field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelectorConfig {
    /// The CloudTrail field, e.g. `eventName` or `resources.ARN`.
    pub field: String,
    /// (operator as written, values), in the order written.
    pub operators: Vec<(String, Vec<String>)>,
}

impl<'de> Deserialize<'de> for AdvancedSelectorConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AdvancedSelectorConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a table of field selectors, e.g. eventCategory = { equals = [\"Data\"] }",
                )
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = AdvancedSelectorConfig::default();
                while let Some(key) = map.next_key::<String>()? {
                    if key == "name" {
                        if out.name.is_some() {
                            return Err(de::Error::duplicate_field("name"));
                        }
                        out.name = Some(map.next_value()?);
                    } else {
                        let ops: OperatorTable = map.next_value()?;
                        out.fields.push(FieldSelectorConfig {
                            field: key,
                            operators: ops.0,
                        });
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

/// `{ equals = [...], not_starts_with = [...] }`, order kept, names checked later.
struct OperatorTable(Vec<(String, Vec<String>)>);

impl<'de> Deserialize<'de> for OperatorTable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OperatorTable;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of operators to values, e.g. { equals = [\"PutObject\"] }")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let values: ValueList = map.next_value()?;
                    out.push((key, values.0));
                }
                Ok(OperatorTable(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A list of strings; a single string, and booleans (for `readOnly = { equals = [false] }`),
/// are accepted too.
struct ValueList(Vec<String>);

struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Scalar, E> {
                Ok(Scalar(s.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Scalar, E> {
                Ok(Scalar(b.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for ValueList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ValueList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of strings")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ValueList, E> {
                Ok(ValueList(vec![s.to_owned()]))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<ValueList, E> {
                Ok(ValueList(vec![b.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ValueList, A::Error> {
                let mut out = Vec::new();
                while let Some(Scalar(s)) = seq.next_element()? {
                    out.push(s);
                }
                Ok(ValueList(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl SelectorConfig {
    /// Reads the `[selectors]` table of an agent configuration file's text, ignoring every
    /// other table (so that it does not depend on the rest of the agent's configuration).
    /// No `[selectors]` table gives the default: no selectors, every event shipped.
    pub fn from_agent_toml(text: &str) -> Result<SelectorConfig, String> {
        #[derive(Deserialize)]
        struct Only {
            #[serde(default)]
            selectors: Option<SelectorConfig>,
        }
        let only: Only = toml::from_str(text).map_err(|e| e.to_string())?;
        Ok(only.selectors.unwrap_or_default())
    }
}

// ------------------------------------------------------------------------------------------
// Configuration: `aws cloudtrail get-event-selectors` output
// ------------------------------------------------------------------------------------------

/// The output of `aws cloudtrail get-event-selectors`, as printed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsEventSelectors {
    #[serde(rename = "TrailARN", default)]
    pub trail_arn: Option<String>,
    #[serde(rename = "EventSelectors", default)]
    pub event_selectors: Option<Vec<AwsEventSelector>>,
    #[serde(rename = "AdvancedEventSelectors", default)]
    pub advanced_event_selectors: Option<Vec<AwsAdvancedEventSelector>>,
}

/// CloudTrail's `EventSelector`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsEventSelector {
    #[serde(rename = "ReadWriteType", default)]
    pub read_write_type: Option<String>,
    #[serde(rename = "IncludeManagementEvents", default)]
    pub include_management_events: Option<bool>,
    #[serde(rename = "DataResources", default)]
    pub data_resources: Option<Vec<AwsDataResource>>,
    #[serde(rename = "ExcludeManagementEventSources", default)]
    pub exclude_management_event_sources: Option<Vec<String>>,
}

/// CloudTrail's `DataResource`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsDataResource {
    #[serde(rename = "Type", default)]
    pub resource_type: Option<String>,
    #[serde(rename = "Values", default)]
    pub values: Option<Vec<String>>,
}

/// CloudTrail's `AdvancedEventSelector`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsAdvancedEventSelector {
    #[serde(rename = "Name", default)]
    pub name: Option<String>,
    #[serde(rename = "FieldSelectors", default)]
    pub field_selectors: Vec<AwsFieldSelector>,
}

/// CloudTrail's `AdvancedFieldSelector`. `get-event-selectors` prints empty lists for the
/// operators not used; they are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsFieldSelector {
    #[serde(rename = "Field", default)]
    pub field: Option<String>,
    #[serde(rename = "Equals", default)]
    pub equals: Option<Vec<String>>,
    #[serde(rename = "StartsWith", default)]
    pub starts_with: Option<Vec<String>>,
    #[serde(rename = "EndsWith", default)]
    pub ends_with: Option<Vec<String>>,
    #[serde(rename = "NotEquals", default)]
    pub not_equals: Option<Vec<String>>,
    #[serde(rename = "NotStartsWith", default)]
    pub not_starts_with: Option<Vec<String>>,
    #[serde(rename = "NotEndsWith", default)]
    pub not_ends_with: Option<Vec<String>>,
}

/// Parses what `aws cloudtrail get-event-selectors` prints
/// (`{"TrailARN": ..., "EventSelectors": [...]}` or `{..., "AdvancedEventSelectors": [...]}`),
/// or a bare array of either kind of selector (what `put-event-selectors` takes).
pub fn parse_aws_json(text: &str) -> Result<AwsEventSelectors, String> {
    match parse_aws_json_all(text) {
        (Some(aws), problems) if problems.is_empty() => Ok(aws),
        (_, problems) => Err(problems.join("; ")),
    }
}

const TOP_KEYS: &[&str] = &["TrailARN", "EventSelectors", "AdvancedEventSelectors"];
const BASIC_KEYS: &[&str] = &[
    "ReadWriteType",
    "IncludeManagementEvents",
    "DataResources",
    "ExcludeManagementEventSources",
];
const DATA_KEYS: &[&str] = &["Type", "Values"];
const ADVANCED_KEYS: &[&str] = &["Name", "FieldSelectors"];
const FIELD_KEYS: &[&str] = &[
    "Field",
    "Equals",
    "StartsWith",
    "EndsWith",
    "NotEquals",
    "NotStartsWith",
    "NotEndsWith",
];

/// Removes the keys of `v` (an object) not in `allowed`, one problem each.
fn strip_unknown(v: &mut serde_json::Value, allowed: &[&str], loc: &str, p: &mut Vec<String>) {
    if let serde_json::Value::Object(m) = v {
        let unknown: Vec<String> = m
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .cloned()
            .collect();
        for k in unknown {
            m.remove(&k);
            p.push(format!(
                "{loc}: unknown key {k:?} (expected {})",
                allowed.join(", ")
            ));
        }
    }
}

/// The elements of the array `v[key]`, if it is one.
fn items<'a>(
    v: &'a mut serde_json::Value,
    key: &str,
) -> impl Iterator<Item = (usize, &'a mut serde_json::Value)> {
    v.get_mut(key)
        .and_then(serde_json::Value::as_array_mut)
        .into_iter()
        .flat_map(|a| a.iter_mut().enumerate())
}

fn strip_basic(v: &mut serde_json::Value, loc: &str, p: &mut Vec<String>) {
    strip_unknown(v, BASIC_KEYS, loc, p);
    for (j, d) in items(v, "DataResources") {
        strip_unknown(d, DATA_KEYS, &format!("{loc}.DataResources[{j}]"), p);
    }
}

fn strip_advanced(v: &mut serde_json::Value, loc: &str, p: &mut Vec<String>) {
    strip_unknown(v, ADVANCED_KEYS, loc, p);
    for (j, f) in items(v, "FieldSelectors") {
        strip_unknown(f, FIELD_KEYS, &format!("{loc}.FieldSelectors[{j}]"), p);
    }
}

/// Parses like [`parse_aws_json`], reporting every unknown key at once (each with where it
/// is) rather than stopping at the first; the selectors are returned when the rest is
/// well-formed, so that compiling them can report its own problems alongside.
pub fn parse_aws_json_all(text: &str) -> (Option<AwsEventSelectors>, Vec<String>) {
    let mut problems = Vec::new();
    let mut value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return (None, vec![format!("not valid JSON: {e}")]),
    };
    let parsed = match &mut value {
        serde_json::Value::Array(items) => {
            let advanced = items
                .first()
                .and_then(serde_json::Value::as_object)
                .is_some_and(|o| o.contains_key("FieldSelectors"));
            for (i, item) in items.iter_mut().enumerate() {
                if advanced {
                    strip_advanced(item, &format!("AdvancedEventSelectors[{i}]"), &mut problems);
                } else {
                    strip_basic(item, &format!("EventSelectors[{i}]"), &mut problems);
                }
            }
            if advanced {
                serde_json::from_value(value)
                    .map(|v| AwsEventSelectors {
                        advanced_event_selectors: Some(v),
                        ..AwsEventSelectors::default()
                    })
                    .map_err(|e| format!("AdvancedEventSelectors: {e}"))
            } else {
                serde_json::from_value(value)
                    .map(|v| AwsEventSelectors {
                        event_selectors: Some(v),
                        ..AwsEventSelectors::default()
                    })
                    .map_err(|e| format!("EventSelectors: {e}"))
            }
        }
        serde_json::Value::Object(_) => {
            strip_unknown(
                &mut value,
                TOP_KEYS,
                "not the output of `aws cloudtrail get-event-selectors`",
                &mut problems,
            );
            for (i, s) in items(&mut value, "EventSelectors") {
                strip_basic(s, &format!("EventSelectors[{i}]"), &mut problems);
            }
            for (i, s) in items(&mut value, "AdvancedEventSelectors") {
                strip_advanced(s, &format!("AdvancedEventSelectors[{i}]"), &mut problems);
            }
            serde_json::from_value(value).map_err(|e| {
                format!("not the output of `aws cloudtrail get-event-selectors`: {e}")
            })
        }
        _ => Err("expected a JSON object (the output of `aws cloudtrail get-event-selectors`) or an array of selectors".into()),
    };
    match parsed {
        Ok(aws) => (Some(aws), problems),
        Err(e) => {
            problems.push(e);
            (None, problems)
        }
    }
}
