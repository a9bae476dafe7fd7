//! Checking and compiling selectors: both ways of writing them are first put in one neutral
//! description, then checked (every problem listed, each with its location) and compiled.

use std::path::Path;

use super::Selectors;
use super::config::{AwsEventSelectors, SelectorConfig, parse_aws_json_all};
use super::eval::{
    Advanced, Basic, BoolCond, CAT_DATA, CAT_MANAGEMENT, CAT_NETWORK, Cond, CondRef, DataResource,
    DataValue, Op, ReadWrite, Rules, op_name,
};
use crate::field::RecordField as Field;

/// The fields advanced selectors can name (CloudTrail's `AdvancedFieldSelector.Field`), in the
/// shared field layer's names.
const SELECTOR_FIELDS: [Field; 10] = [
    Field::EventCategory,
    Field::EventSource,
    Field::EventName,
    Field::EventType,
    Field::ReadOnly,
    Field::ResourcesType,
    Field::ResourcesArn,
    Field::UserIdentityArn,
    Field::ErrorCode,
    Field::SessionCredentialFromConsole,
];

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
        "startswith" => (Op::Prefix, false),
        "endswith" => (Op::Suffix, false),
        "notequals" => (Op::Equals, true),
        "notstartswith" => (Op::Prefix, true),
        "notendswith" => (Op::Suffix, true),
        _ => return None,
    })
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
        let field = match SELECTOR_FIELDS
            .iter()
            .map(|f| (f.path(), *f))
            .find(|(n, _)| *n == name)
        {
            Some((_, f)) => f,
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
                    field.path()
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
                                field.path()
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
    let hint = SELECTOR_FIELDS
        .iter()
        .map(|f| f.path())
        .find(|n| n.eq_ignore_ascii_case(name))
        .map(|n| format!(" (did you mean {n}?)"))
        .unwrap_or_default();
    let all: Vec<&str> = SELECTOR_FIELDS.iter().map(|f| f.path()).collect();
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
}
