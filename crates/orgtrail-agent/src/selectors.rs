//! Event selectors: which events the agent ships, with CloudTrail's semantics.
//!
//! A trail's selectors are written in the agent's TOML (`[selectors]`, see [`SelectorConfig`]),
//! or pasted verbatim as the JSON that `aws cloudtrail get-event-selectors` prints (see
//! [`parse_aws_json`]). [`Selectors::compile`] checks them and reports every problem at once,
//! each with its location. The compiled [`Selectors`] decide per event without allocating
//! ([`Selectors::matches`]; about 130 ns for ten advanced selectors on one core, see
//! `orgtrail bench selectors`), and say why ([`Selectors::explain`]).
//!
//! # Semantics
//!
//! References: AWS CloudTrail API Reference, `EventSelector`, `DataResource`,
//! `AdvancedEventSelector`, `AdvancedFieldSelector`; CloudTrail User Guide, "Logging data
//! events" (`logging-data-events-with-cloudtrail.md`).
//!
//! * **No selectors at all** (neither basic nor advanced): every event is shipped. This is the
//!   agent's default: ship everything, filter (if ever) in one place.
//! * **Region filter** (`regions`, an orgtrail addition): when given, an event whose
//!   `awsRegion` is not listed is filtered, whatever the selectors say. Absent means every
//!   region, as CloudTrail's best practice of a multi-Region trail recommends. An event without
//!   `awsRegion` is shipped: orgtrail never drops an audit record for lacking a field.
//! * **Basic and advanced are mutually exclusive** ("You cannot apply both event selectors and
//!   advanced event selectors to a trail", `EventSelector`).
//! * **Basic event selectors** (`EventSelector`): "if the event matches any event selector, the
//!   trail processes and logs the event". One selector matches
//!   - a management event when `IncludeManagementEvents` (default true) is set, the
//!     `ReadWriteType` fits, and `eventSource` is not in `ExcludeManagementEventSources`;
//!   - a data event when the `ReadWriteType` fits and some `DataResources` entry has the `Type`
//!     of one of the event's `resources[]` and a value matching that resource's ARN. Values are
//!     ARN prefixes (`DataResource.Values`): `arn:aws:s3` (or `arn:aws:s3:::`) selects every
//!     bucket, `arn:aws:s3:::bucket/` every object of a bucket, `arn:aws:s3:::bucket/images`
//!     the objects under a prefix, `arn:aws:lambda` every function and `arn:aws:dynamodb` every
//!     table. "Lambda function ARNs are exact": a complete function ARN (text after
//!     `:function:`) matches only that function, not `helloworld2` for `helloworld`; a complete
//!     table ARN (text after `:table/`) is treated the same way.
//!   - never a network activity event: those need advanced selectors.
//!
//!   `ReadWriteType` `All` (default) fits every event, `ReadOnly` an event with
//!   `readOnly: true`, `WriteOnly` one with `readOnly: false`; an event without `readOnly`
//!   fits only `All`.
//! * **Advanced event selectors**: selectors are OR'ed, the field selectors of one selector are
//!   AND'ed, and "for fields that accept an array (more than one value), CloudTrail adds an OR
//!   between values" (User Guide). `Equals`/`StartsWith`/`EndsWith` hold when any value
//!   matches; `NotEquals`/`NotStartsWith`/`NotEndsWith` ("excludes events that match") hold when
//!   no value matches. Several operators on one field are AND'ed. Comparison is exact and
//!   case-sensitive; there are no wildcards ("Selectors don't support the use of wildcards").
//!   - A field the event does not have (no `errorCode`, no `userIdentity.arn`, no `readOnly`)
//!     fails every positive operator and passes every negative one: the event does not match
//!     the excluded value, so it is not excluded.
//!   - `readOnly` and `sessionCredentialFromConsole` compare as the strings `true`/`false`.
//!   - `resources.type` and `resources.ARN` describe one resource: "the value must exactly
//!     match the ARN of a valid resource of the type you've specified ... as the value of
//!     `resources.type`" (`AdvancedFieldSelector`). So all resource conditions of a selector
//!     hold when **one element** of `resources[]` satisfies all of them together. This makes
//!     the documented exclusion (`resources.ARN NotStartsWith arn:aws:s3:::bucket/`) work: the
//!     bucket's own `AWS::S3::Bucket` element does not rescue the excluded object. An event
//!     without `resources[]` is treated as one resource without type or ARN.
//!   - `eventCategory` is required and takes only `Equals` (`Management`, `Data`,
//!     `NetworkActivity`); `readOnly` and `resources.type` take only `Equals`; a selector for
//!     data events needs `resources.type` (`AdvancedFieldSelector`).
//!     `sessionCredentialFromConsole` takes `Equals`/`NotEquals` with `true`/`false`. The other
//!     fields take any operator. CloudTrail offers some fields to event data stores only
//!     (e.g. `userIdentity.arn` on management events); the agent can evaluate every field on
//!     every category and accepts them.
//! * **Category of an event**: `eventCategory`; a record without it whose `managementEvent`
//!   is `false` is a data event (older eventVersions); otherwise orgtrail-core's default
//!   (`Management`) applies.
//! * **Insight events** are chosen by a trail's insight selectors, not its event selectors, so
//!   they are shipped unfiltered (only the region filter applies). So is an event of a category
//!   this version does not know, rather than lose it.
//!
//! Deliberately not enforced: CloudTrail's quotas (5 basic selectors, 250 data resources, 500
//! advanced values) and its short list of excludable management event sources; the agent does
//! not need those limits.

use std::collections::HashSet;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use orgtrail_core::{EventCategory, EventFields};
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

// ------------------------------------------------------------------------------------------
// Configuration: the agent's TOML
// ------------------------------------------------------------------------------------------

/// `[selectors]` in the agent's TOML. Everything is optional; without selectors every event
/// is shipped. Checked by [`Selectors::compile`], which lists every problem.
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

/// Compiles `aws` (when it parsed) with `config`, adding its problems to `problems`.
fn compile_all(
    config: &SelectorConfig,
    aws: Option<AwsEventSelectors>,
    mut problems: Vec<String>,
) -> Result<Selectors, Vec<String>> {
    let Some(aws) = aws else {
        return Err(problems);
    };
    match Selectors::compile(config, Some(&aws)) {
        Ok(s) if problems.is_empty() => Ok(s),
        Ok(_) => Err(problems),
        Err(p) => {
            problems.extend(p);
            Err(problems)
        }
    }
}

// ------------------------------------------------------------------------------------------
// One neutral description of both sources, then compilation
// ------------------------------------------------------------------------------------------

struct BasicSpec {
    loc: String,
    read_write_type: Option<String>,
    include_management_events: Option<bool>,
    exclude_sources: Vec<String>,
    data: Vec<(String, Option<String>, Option<Vec<String>>)>,
}

struct AdvancedSpec {
    loc: String,
    label: String,
    fields: Vec<FieldSpec>,
}

struct FieldSpec {
    loc: String,
    field: Option<String>,
    operators: Vec<(String, Vec<String>)>,
    /// `get-event-selectors` prints `[]` for every unused operator.
    empty_lists_allowed: bool,
}

fn label(index: usize, kind: &str, name: Option<&str>) -> String {
    match name {
        Some(n) if !n.is_empty() => format!("{kind}[{index}] {n:?}"),
        _ => format!("{kind}[{index}]"),
    }
}

fn specs_from_toml(cfg: &SelectorConfig) -> (Vec<BasicSpec>, Vec<AdvancedSpec>) {
    let basic = cfg
        .basic
        .iter()
        .enumerate()
        .map(|(i, b)| BasicSpec {
            loc: format!("selectors.basic[{i}]"),
            read_write_type: b.read_write_type.clone(),
            include_management_events: b.include_management_events,
            exclude_sources: b.exclude_management_event_sources.clone(),
            data: b
                .data_resources
                .iter()
                .enumerate()
                .map(|(j, d)| {
                    (
                        format!("selectors.basic[{i}].data_resources[{j}]"),
                        Some(d.resource_type.clone()),
                        Some(d.values.clone()),
                    )
                })
                .collect(),
        })
        .collect();
    let advanced = cfg
        .advanced
        .iter()
        .enumerate()
        .map(|(i, a)| AdvancedSpec {
            loc: label(i, "selectors.advanced", a.name.as_deref()),
            label: label(i, "advanced", a.name.as_deref()),
            fields: a
                .fields
                .iter()
                .map(|f| FieldSpec {
                    loc: format!(
                        "{}.{}",
                        label(i, "selectors.advanced", a.name.as_deref()),
                        f.field
                    ),
                    field: Some(f.field.clone()),
                    operators: f.operators.clone(),
                    empty_lists_allowed: false,
                })
                .collect(),
        })
        .collect();
    (basic, advanced)
}

fn specs_from_aws(aws: &AwsEventSelectors, prefix: &str) -> (Vec<BasicSpec>, Vec<AdvancedSpec>) {
    let basic = aws
        .event_selectors
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, b)| BasicSpec {
            loc: format!("{prefix}EventSelectors[{i}]"),
            read_write_type: b.read_write_type.clone(),
            include_management_events: b.include_management_events,
            exclude_sources: b
                .exclude_management_event_sources
                .clone()
                .unwrap_or_default(),
            data: b
                .data_resources
                .iter()
                .flatten()
                .enumerate()
                .map(|(j, d)| {
                    (
                        format!("{prefix}EventSelectors[{i}].DataResources[{j}]"),
                        d.resource_type.clone(),
                        d.values.clone(),
                    )
                })
                .collect(),
        })
        .collect();
    let advanced = aws
        .advanced_event_selectors
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, a)| {
            let loc = label(
                i,
                &format!("{prefix}AdvancedEventSelectors"),
                a.name.as_deref(),
            );
            AdvancedSpec {
                label: label(i, "advanced", a.name.as_deref()),
                fields: a
                    .field_selectors
                    .iter()
                    .enumerate()
                    .map(|(j, f)| {
                        let mut operators = Vec::new();
                        for (name, list) in [
                            ("Equals", &f.equals),
                            ("StartsWith", &f.starts_with),
                            ("EndsWith", &f.ends_with),
                            ("NotEquals", &f.not_equals),
                            ("NotStartsWith", &f.not_starts_with),
                            ("NotEndsWith", &f.not_ends_with),
                        ] {
                            if let Some(values) = list {
                                operators.push((name.to_owned(), values.clone()));
                            }
                        }
                        FieldSpec {
                            loc: match &f.field {
                                Some(name) => format!("{loc}.FieldSelectors[{j}] ({name})"),
                                None => format!("{loc}.FieldSelectors[{j}]"),
                            },
                            field: f.field.clone(),
                            operators,
                            empty_lists_allowed: true,
                        }
                    })
                    .collect(),
                loc,
            }
        })
        .collect();
    (basic, advanced)
}

/// The event fields advanced selectors can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    EventCategory,
    EventSource,
    EventName,
    EventType,
    ReadOnly,
    ResourcesType,
    ResourcesArn,
    UserIdentityArn,
    ErrorCode,
    SessionCredentialFromConsole,
}

const FIELDS: [(&str, Field); 10] = [
    ("eventCategory", Field::EventCategory),
    ("eventSource", Field::EventSource),
    ("eventName", Field::EventName),
    ("eventType", Field::EventType),
    ("readOnly", Field::ReadOnly),
    ("resources.type", Field::ResourcesType),
    ("resources.ARN", Field::ResourcesArn),
    ("userIdentity.arn", Field::UserIdentityArn),
    ("errorCode", Field::ErrorCode),
    (
        "sessionCredentialFromConsole",
        Field::SessionCredentialFromConsole,
    ),
];

impl Field {
    fn name(self) -> &'static str {
        FIELDS
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("?", |(n, _)| n)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Equals,
    StartsWith,
    EndsWith,
}

/// `(op, negated)` for an operator name: CloudTrail's (`NotStartsWith`) or snake case
/// (`not_starts_with`).
fn parse_op(name: &str) -> Option<(Op, bool)> {
    let key: String = name
        .chars()
        .filter(|c| *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    Some(match key.as_str() {
        "equals" => (Op::Equals, false),
        "startswith" => (Op::StartsWith, false),
        "endswith" => (Op::EndsWith, false),
        "notequals" => (Op::Equals, true),
        "notstartswith" => (Op::StartsWith, true),
        "notendswith" => (Op::EndsWith, true),
        _ => return None,
    })
}

fn op_name(op: Op, negate: bool) -> &'static str {
    match (op, negate) {
        (Op::Equals, false) => "Equals",
        (Op::StartsWith, false) => "StartsWith",
        (Op::EndsWith, false) => "EndsWith",
        (Op::Equals, true) => "NotEquals",
        (Op::StartsWith, true) => "NotStartsWith",
        (Op::EndsWith, true) => "NotEndsWith",
    }
}

/// Lists like `[a, b, c, +4 more]`.
fn short_list(values: &[impl AsRef<str>]) -> String {
    let mut s = String::from("[");
    for (i, v) in values.iter().take(3).enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(v.as_ref());
    }
    if values.len() > 3 {
        let _ = write!(s, ", +{} more", values.len() - 3);
    }
    s.push(']');
    s
}

/// One operator with its values, on a string field.
#[derive(Debug, Clone)]
struct Cond {
    field: Field,
    op: Op,
    negate: bool,
    values: Vec<Box<str>>,
    /// For `Equals` over many values.
    set: Option<HashSet<Box<str>>>,
}

impl Cond {
    fn new(field: Field, op: Op, negate: bool, values: &[String]) -> Cond {
        let values: Vec<Box<str>> = values.iter().map(|v| v.as_str().into()).collect();
        let set = (op == Op::Equals && values.len() > 16).then(|| values.iter().cloned().collect());
        Cond {
            field,
            op,
            negate,
            values,
            set,
        }
    }

    #[inline]
    fn any(&self, s: &str) -> bool {
        match self.op {
            Op::Equals => match &self.set {
                Some(set) => set.contains(s),
                None => self.values.iter().any(|v| **v == *s),
            },
            Op::StartsWith => self.values.iter().any(|v| s.starts_with(&**v)),
            Op::EndsWith => self.values.iter().any(|v| s.ends_with(&**v)),
        }
    }

    /// Whether a field with this value (`None`: absent) satisfies the condition.
    #[inline]
    fn test(&self, value: Option<&str>) -> bool {
        match value {
            None => self.negate,
            Some(s) => self.any(s) != self.negate,
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} {} {}",
            self.field.name(),
            op_name(self.op, self.negate),
            short_list(&self.values)
        )
    }
}

/// The effective category of an event, as a bit.
const CAT_MANAGEMENT: u8 = 1;
const CAT_DATA: u8 = 2;
const CAT_NETWORK: u8 = 4;
const CAT_UNGOVERNED: u8 = 8;

fn category_bit(f: &EventFields) -> u8 {
    match f.event_category {
        EventCategory::Management if f.management_event == Some(false) => CAT_DATA,
        EventCategory::Management => CAT_MANAGEMENT,
        EventCategory::Data => CAT_DATA,
        EventCategory::NetworkActivity => CAT_NETWORK,
        EventCategory::Insight | EventCategory::Other(_) => CAT_UNGOVERNED,
    }
}

fn category_name(bit: u8) -> &'static str {
    match bit {
        CAT_MANAGEMENT => "Management",
        CAT_DATA => "Data",
        CAT_NETWORK => "NetworkActivity",
        _ => "other",
    }
}

fn bool_str(b: Option<bool>) -> Option<&'static str> {
    b.map(|b| if b { "true" } else { "false" })
}

/// A string field of the event, other than `resources`.
#[inline]
fn scalar(f: &EventFields, field: Field) -> Option<&str> {
    match field {
        Field::EventSource => Some(&f.event_source),
        Field::EventName => Some(&f.event_name),
        Field::EventType => f.event_type.as_deref(),
        Field::UserIdentityArn => f.user_identity.as_ref().and_then(|u| u.arn.as_deref()),
        Field::ErrorCode => f.error_code.as_deref(),
        Field::ReadOnly => bool_str(f.read_only),
        Field::SessionCredentialFromConsole => bool_str(f.session_credential_from_console),
        Field::EventCategory | Field::ResourcesType | Field::ResourcesArn => None,
    }
}

/// A condition on a boolean field, as a truth table.
#[derive(Debug, Clone)]
struct BoolCond {
    field: Field,
    /// Outcome for false, true, absent.
    accept: [bool; 3],
    text: String,
}

impl BoolCond {
    #[inline]
    fn test(&self, f: &EventFields) -> bool {
        let v = match self.field {
            Field::ReadOnly => f.read_only,
            _ => f.session_credential_from_console,
        };
        self.accept[match v {
            Some(false) => 0,
            Some(true) => 1,
            None => 2,
        }]
    }
}

/// Where a condition of an advanced selector lives, in the order the user wrote them.
#[derive(Debug, Clone, Copy)]
enum CondRef {
    Category(usize),
    Bool(usize),
    Scalar(usize),
    Resource(usize),
}

#[derive(Debug, Clone)]
struct Advanced {
    label: String,
    /// AND of the eventCategory conditions, as a mask of categories.
    categories: u8,
    category_conds: Vec<(u8, String)>,
    bools: Vec<BoolCond>,
    scalars: Vec<Cond>,
    resources: Vec<Cond>,
    order: Vec<CondRef>,
}

impl Advanced {
    fn resource_ok(&self, arn: Option<&str>, rtype: Option<&str>) -> bool {
        self.resources.iter().all(|c| {
            c.test(if c.field == Field::ResourcesArn {
                arn
            } else {
                rtype
            })
        })
    }

    #[inline]
    fn matches(&self, f: &EventFields, cat: u8) -> bool {
        if self.categories & cat == 0 {
            return false;
        }
        if !self.bools.iter().all(|b| b.test(f)) {
            return false;
        }
        if !self.scalars.iter().all(|c| c.test(scalar(f, c.field))) {
            return false;
        }
        if self.resources.is_empty() {
            return true;
        }
        if f.resources.is_empty() {
            return self.resource_ok(None, None);
        }
        f.resources
            .iter()
            .any(|r| self.resource_ok(r.arn.as_deref(), r.resource_type.as_deref()))
    }

    /// Why this selector does not match (the first failing condition in the order written),
    /// or `None` when it matches.
    fn why_not(&self, f: &EventFields, cat: u8) -> Option<String> {
        for r in &self.order {
            match *r {
                CondRef::Category(i) => {
                    let (mask, text) = &self.category_conds[i];
                    if mask & cat == 0 {
                        return Some(format!(
                            "{text} fails (eventCategory is {})",
                            category_name(cat)
                        ));
                    }
                }
                CondRef::Bool(i) => {
                    let b = &self.bools[i];
                    if !b.test(f) {
                        let v = match b.field {
                            Field::ReadOnly => f.read_only,
                            _ => f.session_credential_from_console,
                        };
                        return Some(format!(
                            "{} fails ({})",
                            b.text,
                            shown(b.field, bool_str(v))
                        ));
                    }
                }
                CondRef::Scalar(i) => {
                    let c = &self.scalars[i];
                    let v = scalar(f, c.field);
                    if !c.test(v) {
                        return Some(format!("{} fails ({})", c.describe(), shown(c.field, v)));
                    }
                }
                CondRef::Resource(i) => {
                    let c = &self.resources[i];
                    let ok = if f.resources.is_empty() {
                        c.test(None)
                    } else {
                        f.resources
                            .iter()
                            .any(|r| c.test(pick_resource_field(c.field, r)))
                    };
                    if !ok {
                        return Some(format!("{} fails ({})", c.describe(), resources_shown(f)));
                    }
                }
            }
        }
        if self.matches(f, cat) {
            None
        } else {
            Some(format!(
                "no single resource satisfies all resources.* conditions together ({})",
                resources_shown(f)
            ))
        }
    }
}

fn pick_resource_field(field: Field, r: &orgtrail_core::Resource) -> Option<&str> {
    if field == Field::ResourcesArn {
        r.arn.as_deref()
    } else {
        r.resource_type.as_deref()
    }
}

fn shown(field: Field, v: Option<&str>) -> String {
    match v {
        Some(v) => format!("{} is {v:?}", field.name()),
        None => format!("the event has no {}", field.name()),
    }
}

fn resources_shown(f: &EventFields) -> String {
    if f.resources.is_empty() {
        return "the event has no resources".into();
    }
    let mut s = String::from("resources: ");
    for (i, r) in f.resources.iter().take(3).enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(
            s,
            "{} {}",
            r.resource_type.as_deref().unwrap_or("(no type)"),
            r.arn.as_deref().unwrap_or("(no ARN)")
        );
    }
    if f.resources.len() > 3 {
        let _ = write!(s, ", +{} more", f.resources.len() - 3);
    }
    s
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadWrite {
    All,
    ReadOnly,
    WriteOnly,
}

impl ReadWrite {
    #[inline]
    fn fits(self, read_only: Option<bool>) -> bool {
        match self {
            ReadWrite::All => true,
            ReadWrite::ReadOnly => read_only == Some(true),
            ReadWrite::WriteOnly => read_only == Some(false),
        }
    }
    fn name(self) -> &'static str {
        match self {
            ReadWrite::All => "All",
            ReadWrite::ReadOnly => "ReadOnly",
            ReadWrite::WriteOnly => "WriteOnly",
        }
    }
}

#[derive(Debug, Clone)]
struct DataValue {
    value: Box<str>,
    /// A complete Lambda function or DynamoDB table ARN: matches only itself.
    exact: bool,
}

#[derive(Debug, Clone)]
struct DataResource {
    resource_type: Box<str>,
    values: Vec<DataValue>,
}

impl DataResource {
    /// The value matching this resource of the event, if any.
    fn matching(&self, r: &orgtrail_core::Resource) -> Option<&str> {
        if r.resource_type.as_deref() != Some(&*self.resource_type) {
            return None;
        }
        let arn = r.arn.as_deref()?;
        self.values
            .iter()
            .find(|v| {
                if v.exact {
                    *v.value == *arn
                } else {
                    arn.starts_with(&*v.value)
                }
            })
            .map(|v| &*v.value)
    }
}

#[derive(Debug, Clone)]
struct Basic {
    label: String,
    read_write: ReadWrite,
    include_management: bool,
    exclude_sources: Vec<Box<str>>,
    data: Vec<DataResource>,
}

impl Basic {
    #[inline]
    fn matches(&self, f: &EventFields, cat: u8) -> bool {
        match cat {
            CAT_MANAGEMENT => {
                self.include_management
                    && self.read_write.fits(f.read_only)
                    && !self.exclude_sources.iter().any(|s| **s == *f.event_source)
            }
            CAT_DATA => {
                self.read_write.fits(f.read_only)
                    && self
                        .data
                        .iter()
                        .any(|d| f.resources.iter().any(|r| d.matching(r).is_some()))
            }
            _ => false,
        }
    }

    /// Why it matches (`Ok`) or not (`Err`).
    fn reason(&self, f: &EventFields, cat: u8) -> Result<String, String> {
        let rw = |what: &str| -> Result<(), String> {
            if self.read_write.fits(f.read_only) {
                Ok(())
            } else {
                Err(format!(
                    "ReadWriteType {} does not fit the {what} ({})",
                    self.read_write.name(),
                    shown(Field::ReadOnly, bool_str(f.read_only))
                ))
            }
        };
        match cat {
            CAT_MANAGEMENT => {
                if !self.include_management {
                    return Err("IncludeManagementEvents is false".into());
                }
                rw("management event")?;
                if self.exclude_sources.iter().any(|s| **s == *f.event_source) {
                    return Err(format!(
                        "eventSource {} is in ExcludeManagementEventSources",
                        f.event_source
                    ));
                }
                Ok(format!(
                    "management event, ReadWriteType {}",
                    self.read_write.name()
                ))
            }
            CAT_DATA => {
                if self.data.is_empty() {
                    return Err("no DataResources for data events".into());
                }
                rw("data event")?;
                for d in &self.data {
                    for r in &f.resources {
                        if let Some(v) = d.matching(r) {
                            return Ok(format!(
                                "data resource {} {v:?} matches {}",
                                d.resource_type,
                                r.arn.as_deref().unwrap_or_default()
                            ));
                        }
                    }
                }
                Err(format!(
                    "no DataResources entry matches the event's resources ({})",
                    resources_shown(f)
                ))
            }
            _ => Err("network activity events need advanced event selectors".into()),
        }
    }
}

#[derive(Debug, Clone)]
enum Rules {
    /// No selectors: everything is shipped.
    All,
    Basic(Vec<Basic>),
    Advanced(Vec<Advanced>),
}

/// Compiled selectors: decide which events are shipped. See the module docs for the semantics.
#[derive(Debug, Clone)]
pub struct Selectors {
    regions: Option<Vec<Box<str>>>,
    rules: Rules,
}

impl Default for Selectors {
    /// No selectors, every region: every event is shipped.
    fn default() -> Self {
        Selectors {
            regions: None,
            rules: Rules::All,
        }
    }
}

const BASIC_TYPES: [&str; 3] = [
    "AWS::DynamoDB::Table",
    "AWS::Lambda::Function",
    "AWS::S3::Object",
];
const MAX_VALUE_LEN: usize = 2048;

fn valid_region(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    parts.len() >= 3
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
}

impl Selectors {
    /// Checks and compiles the selectors of a `[selectors]` table, with the trail's
    /// `get-event-selectors` output when `aws_json` names one (already read and parsed; see
    /// [`Selectors::load`]). Every problem is listed, each with where it is.
    pub fn compile(
        config: &SelectorConfig,
        aws: Option<&AwsEventSelectors>,
    ) -> Result<Selectors, Vec<String>> {
        let mut problems = Vec::new();
        let regions = match &config.regions {
            None => None,
            Some(list) if list.is_empty() => {
                problems.push(
                    "selectors.regions: empty list (it would ship nothing); remove it to ship every region"
                        .to_owned(),
                );
                None
            }
            Some(list) => {
                for (i, r) in list.iter().enumerate() {
                    if !valid_region(r) {
                        problems.push(format!(
                            "selectors.regions[{i}]: {r:?} is not an AWS Region name (like us-east-1)"
                        ));
                    }
                }
                Some(list.iter().map(|r| r.as_str().into()).collect())
            }
        };
        let (mut basic, mut advanced) = specs_from_toml(config);
        if let Some(aws) = aws {
            if !basic.is_empty() || !advanced.is_empty() {
                problems.push(
                    "selectors: aws_json and [[selectors.basic]]/[[selectors.advanced]] are both given; use one"
                        .to_owned(),
                );
            }
            let path = config
                .aws_json
                .as_deref()
                .map(|p| format!("{}: ", p.display()))
                .unwrap_or_default();
            let (b, a) = specs_from_aws(aws, &path);
            if b.is_empty() && a.is_empty() {
                problems.push(format!(
                    "{path}no EventSelectors or AdvancedEventSelectors: a trail without selectors logs nothing; orgtrail refuses to ship nothing"
                ));
            }
            basic.extend(b);
            advanced.extend(a);
        }
        let rules = compile_rules(basic, advanced, &mut problems);
        if problems.is_empty() {
            Ok(Selectors { regions, rules })
        } else {
            Err(problems)
        }
    }

    /// Compiles a `[selectors]` table, reading its `aws_json` file (relative to `base_dir`, the
    /// directory of the configuration file) if it names one.
    pub fn load(config: &SelectorConfig, base_dir: &Path) -> Result<Selectors, Vec<String>> {
        match &config.aws_json {
            None => Selectors::compile(config, None),
            Some(p) => {
                let path = base_dir.join(p);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    vec![format!(
                        "selectors.aws_json: cannot read {}: {e}",
                        path.display()
                    )]
                })?;
                let (aws, problems) = parse_aws_json_all(&text);
                let at = |p: String| format!("selectors.aws_json {}: {p}", path.display());
                compile_all(config, aws, problems.into_iter().map(at).collect())
            }
        }
    }

    /// Compiles the output of `aws cloudtrail get-event-selectors`, alone. Every problem is
    /// reported at once: unknown keys, and what compiling the rest finds.
    pub fn from_aws_json(text: &str) -> Result<Selectors, Vec<String>> {
        let (aws, problems) = parse_aws_json_all(text);
        compile_all(&SelectorConfig::default(), aws, problems)
    }

    /// True when every event is shipped (no selectors, no region filter).
    pub fn ships_everything(&self) -> bool {
        self.regions.is_none() && matches!(self.rules, Rules::All)
    }

    /// One line for the agent's startup log.
    pub fn summary(&self) -> String {
        let rules = match &self.rules {
            Rules::All => "no event selectors (every event)".to_owned(),
            Rules::Basic(b) => format!("{} basic event selector(s)", b.len()),
            Rules::Advanced(a) => format!("{} advanced event selector(s)", a.len()),
        };
        match &self.regions {
            None => format!("{rules}, every region"),
            Some(r) => format!("{rules}, regions {}", short_list(r)),
        }
    }

    #[inline]
    fn region_ok(&self, f: &EventFields) -> bool {
        match (&self.regions, &f.aws_region) {
            (Some(regions), Some(r)) => regions.iter().any(|x| **x == **r),
            _ => true,
        }
    }

    /// Whether the event is shipped. Does not allocate.
    #[inline]
    pub fn matches(&self, f: &EventFields) -> bool {
        if !self.region_ok(f) {
            return false;
        }
        let cat = match &self.rules {
            Rules::All => return true,
            _ => category_bit(f),
        };
        if cat == CAT_UNGOVERNED {
            return true;
        }
        match &self.rules {
            Rules::All => true,
            Rules::Basic(b) => b.iter().any(|s| s.matches(f, cat)),
            Rules::Advanced(a) => a.iter().any(|s| s.matches(f, cat)),
        }
    }

    /// Why the event is shipped (`matched: ...`) or filtered (`filtered: ...`): the selector
    /// that matched, or for each selector the first condition that failed.
    pub fn explain(&self, f: &EventFields) -> String {
        if !self.region_ok(f) {
            let regions = self.regions.as_deref().unwrap_or_default();
            return format!(
                "filtered: awsRegion {} is not in regions {}",
                f.aws_region.as_deref().unwrap_or_default(),
                short_list(regions)
            );
        }
        let cat = category_bit(f);
        match &self.rules {
            Rules::All => "matched: no event selectors configured (every event is shipped)".into(),
            _ if cat == CAT_UNGOVERNED => format!(
                "matched: {} events are not governed by event selectors",
                f.event_category.as_str()
            ),
            Rules::Basic(list) => {
                let mut why = Vec::new();
                for b in list {
                    match b.reason(f, cat) {
                        Ok(r) => return format!("matched: {}: {r}", b.label),
                        Err(e) => why.push(format!("{}: {e}", b.label)),
                    }
                }
                format!("filtered: no event selector matched: {}", why.join("; "))
            }
            Rules::Advanced(list) => {
                let mut why = Vec::new();
                for a in list {
                    match a.why_not(f, cat) {
                        None => return format!("matched: {}", a.label),
                        Some(e) => why.push(format!("{}: {e}", a.label)),
                    }
                }
                format!(
                    "filtered: no advanced event selector matched: {}",
                    why.join("; ")
                )
            }
        }
    }
}

fn compile_rules(
    basic: Vec<BasicSpec>,
    advanced: Vec<AdvancedSpec>,
    problems: &mut Vec<String>,
) -> Rules {
    if !basic.is_empty() && !advanced.is_empty() {
        problems.push(
            "selectors: both basic and advanced event selectors are given; CloudTrail applies one kind to a trail, use one"
                .to_owned(),
        );
    }
    // Both kinds are checked, so that every problem is listed even when both are given.
    let basic: Vec<Basic> = basic
        .into_iter()
        .enumerate()
        .map(|(i, b)| compile_basic(i, b, problems))
        .collect();
    let has_advanced = !advanced.is_empty();
    let advanced: Vec<Advanced> = advanced
        .into_iter()
        .filter_map(|a| compile_advanced(a, problems))
        .collect();
    if has_advanced {
        Rules::Advanced(advanced)
    } else if !basic.is_empty() {
        Rules::Basic(basic)
    } else {
        Rules::All
    }
}

fn check_values(loc: &str, values: &[String], problems: &mut Vec<String>) {
    for (i, v) in values.iter().enumerate() {
        if v.is_empty() {
            problems.push(format!("{loc}: value {i} is empty"));
        } else if v.len() > MAX_VALUE_LEN {
            problems.push(format!(
                "{loc}: value {i} is longer than CloudTrail's {MAX_VALUE_LEN} characters"
            ));
        }
    }
}

fn compile_basic(index: usize, b: BasicSpec, problems: &mut Vec<String>) -> Basic {
    let read_write = match b.read_write_type.as_deref() {
        None | Some("All") => ReadWrite::All,
        Some("ReadOnly") => ReadWrite::ReadOnly,
        Some("WriteOnly") => ReadWrite::WriteOnly,
        Some(other) => {
            problems.push(format!(
                "{}: ReadWriteType {other:?} is not one of All, ReadOnly, WriteOnly",
                b.loc
            ));
            ReadWrite::All
        }
    };
    for (i, s) in b.exclude_sources.iter().enumerate() {
        if s.is_empty() {
            problems.push(format!(
                "{}: ExcludeManagementEventSources value {i} is empty",
                b.loc
            ));
        }
    }
    let mut data = Vec::new();
    for (loc, rtype, values) in b.data {
        let rtype = match rtype {
            None => {
                problems.push(format!("{loc}: no Type"));
                continue;
            }
            Some(t) if !BASIC_TYPES.contains(&t.as_str()) => {
                problems.push(format!(
                    "{loc}: Type {t:?} is not available to basic event selectors (only {}); use advanced event selectors",
                    BASIC_TYPES.join(", ")
                ));
                continue;
            }
            Some(t) => t,
        };
        let values = values.unwrap_or_default();
        if values.is_empty() {
            problems.push(format!(
                "{loc}: no Values (give ARN prefixes, e.g. arn:aws:s3:::bucket/)"
            ));
            continue;
        }
        check_values(&loc, &values, problems);
        let marker = match rtype.as_str() {
            "AWS::Lambda::Function" => Some(":function:"),
            "AWS::DynamoDB::Table" => Some(":table/"),
            _ => None,
        };
        data.push(DataResource {
            values: values
                .iter()
                .map(|v| DataValue {
                    exact: marker
                        .and_then(|m| v.split_once(m))
                        .is_some_and(|(_, name)| !name.is_empty()),
                    value: v.as_str().into(),
                })
                .collect(),
            resource_type: rtype.into(),
        });
    }
    Basic {
        label: format!("basic[{index}]"),
        read_write,
        include_management: b.include_management_events.unwrap_or(true),
        exclude_sources: b
            .exclude_sources
            .iter()
            .map(|s| s.as_str().into())
            .collect(),
        data,
    }
}

fn compile_advanced(a: AdvancedSpec, problems: &mut Vec<String>) -> Option<Advanced> {
    let before = problems.len();
    let mut out = Advanced {
        label: a.label,
        categories: CAT_MANAGEMENT | CAT_DATA | CAT_NETWORK,
        category_conds: Vec::new(),
        bools: Vec::new(),
        scalars: Vec::new(),
        resources: Vec::new(),
        order: Vec::new(),
    };
    if a.fields.is_empty() {
        problems.push(format!("{}: no field selectors", a.loc));
        return None;
    }
    let mut has_category = false;
    let mut has_resource_type = false;
    for fs in a.fields {
        let loc = fs.loc;
        let Some(name) = fs.field else {
            problems.push(format!("{loc}: no Field"));
            continue;
        };
        let field = match FIELDS.iter().find(|(n, _)| *n == name) {
            Some((_, f)) => *f,
            None => {
                problems.push(unknown_field(&loc, &name));
                continue;
            }
        };
        let mut any_values = false;
        for (op_text, values) in &fs.operators {
            let Some((op, negate)) = parse_op(op_text) else {
                problems.push(format!(
                    "{loc}: unknown operator {op_text:?} (expected equals, not_equals, starts_with, not_starts_with, ends_with or not_ends_with)"
                ));
                continue;
            };
            let oname = op_name(op, negate);
            if values.is_empty() {
                if !fs.empty_lists_allowed {
                    problems.push(format!("{loc}: {oname} has an empty list of values"));
                }
                continue;
            }
            any_values = true;
            check_values(&format!("{loc} {oname}"), values, problems);
            let equals_only = matches!(
                field,
                Field::EventCategory | Field::ReadOnly | Field::ResourcesType
            );
            if equals_only && (op, negate) != (Op::Equals, false) {
                problems.push(format!(
                    "{loc}: {} takes only Equals, not {oname}",
                    field.name()
                ));
                continue;
            }
            let cond = Cond::new(field, op, negate, values);
            match field {
                Field::EventCategory => {
                    has_category = true;
                    let mut mask = 0u8;
                    for v in values {
                        match v.as_str() {
                            "Management" => mask |= CAT_MANAGEMENT,
                            "Data" => mask |= CAT_DATA,
                            "NetworkActivity" => mask |= CAT_NETWORK,
                            "Insight" => problems.push(format!(
                                "{loc}: Insight events are not governed by event selectors (orgtrail always ships them); remove \"Insight\""
                            )),
                            other => problems.push(format!(
                                "{loc}: eventCategory {other:?} is not one of Management, Data, NetworkActivity"
                            )),
                        }
                    }
                    out.categories &= mask;
                    out.order.push(CondRef::Category(out.category_conds.len()));
                    out.category_conds.push((mask, cond.describe()));
                }
                Field::ReadOnly | Field::SessionCredentialFromConsole => {
                    if field == Field::SessionCredentialFromConsole && op != Op::Equals {
                        problems.push(format!(
                            "{loc}: sessionCredentialFromConsole takes Equals or NotEquals, not {oname}"
                        ));
                        continue;
                    }
                    for v in values {
                        if v != "true" && v != "false" {
                            problems.push(format!(
                                "{loc}: {} compares with \"true\" or \"false\", not {v:?}",
                                field.name()
                            ));
                        }
                    }
                    out.order.push(CondRef::Bool(out.bools.len()));
                    out.bools.push(BoolCond {
                        field,
                        accept: [
                            cond.test(Some("false")),
                            cond.test(Some("true")),
                            cond.test(None),
                        ],
                        text: cond.describe(),
                    });
                }
                Field::ResourcesType | Field::ResourcesArn => {
                    has_resource_type |= field == Field::ResourcesType;
                    out.order.push(CondRef::Resource(out.resources.len()));
                    out.resources.push(cond);
                }
                _ => {
                    out.order.push(CondRef::Scalar(out.scalars.len()));
                    out.scalars.push(cond);
                }
            }
        }
        if !any_values && fs.operators.iter().all(|(o, _)| parse_op(o).is_some()) {
            problems.push(format!("{loc}: no operator with values"));
        }
    }
    if !has_category {
        problems.push(format!(
            "{}: no eventCategory field selector (CloudTrail requires one: eventCategory Equals Management, Data or NetworkActivity)",
            a.loc
        ));
    }
    if has_category && out.categories & CAT_DATA != 0 && !has_resource_type {
        problems.push(format!(
            "{}: a selector for data events needs a resources.type field selector (CloudTrail requires one)",
            a.loc
        ));
    }
    (problems.len() == before).then_some(out)
}

fn unknown_field(loc: &str, name: &str) -> String {
    if name == "vpcEndpointId" {
        return format!("{loc}: field vpcEndpointId is not supported by orgtrail");
    }
    let hint = FIELDS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(n, _)| format!(" (did you mean {n}?)"))
        .unwrap_or_default();
    let all: Vec<&str> = FIELDS.iter().map(|(n, _)| *n).collect();
    format!(
        "{loc}: unknown field {name:?}{hint}; fields are {}",
        all.join(", ")
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn operator_names_in_both_spellings() {
        for (a, b) in [
            ("equals", "Equals"),
            ("not_equals", "NotEquals"),
            ("starts_with", "StartsWith"),
            ("not_starts_with", "NotStartsWith"),
            ("ends_with", "EndsWith"),
            ("not_ends_with", "NotEndsWith"),
        ] {
            assert_eq!(parse_op(a), parse_op(b));
            let (op, neg) = parse_op(a).unwrap();
            assert_eq!(op_name(op, neg), b);
        }
        assert_eq!(parse_op("equal"), None);
    }

    #[test]
    fn region_names() {
        for ok in [
            "us-east-1",
            "eu-central-2",
            "us-gov-west-1",
            "cn-north-1",
            "us-isob-east-1",
        ] {
            assert!(valid_region(ok), "{ok}");
        }
        for bad in ["us-east1", "US-EAST-1", "useast", "us--1", "", "us-east-x"] {
            assert!(!valid_region(bad), "{bad}");
        }
    }

    #[test]
    fn equals_over_many_values_uses_a_set_with_the_same_answers() {
        let values: Vec<String> = (0..40).map(|i| format!("Op{i}")).collect();
        let c = Cond::new(Field::EventName, Op::Equals, false, &values);
        assert!(c.set.is_some());
        assert!(c.test(Some("Op39")));
        assert!(!c.test(Some("Op40")));
        assert!(!c.test(None));
    }
}
