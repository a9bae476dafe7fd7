//! Deciding per event, and saying why: compiled selectors over the fields orgtrail-core parses
//! once per event, read through the shared field layer ([`crate::field`]) and compared by the
//! pattern engine's [`str_op`].

use std::collections::HashSet;
use std::fmt::Write as _;

use orgtrail_core::{EventCategory, EventFields};

use super::Selectors;
use crate::field::RecordField as Field;
use crate::leaf::str_op;

/// Lists like `[a, b, c, +4 more]`.
pub(super) fn short_list(values: &[impl AsRef<str>]) -> String {
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

/// A selector operator, without its negation: the pattern engine's own string comparisons
/// (`Equals` is an exact value, `StartsWith` a prefix, `EndsWith` a suffix).
pub(super) use crate::leaf::StrOp as Op;

pub(super) fn op_name(op: Op, negate: bool) -> &'static str {
    match (op, negate) {
        (Op::Equals, false) => "Equals",
        (Op::Prefix, false) => "StartsWith",
        (Op::Suffix, false) => "EndsWith",
        (Op::Equals, true) => "NotEquals",
        (Op::Prefix, true) => "NotStartsWith",
        (Op::Suffix, true) => "NotEndsWith",
    }
}

/// One operator with its values, on a string field, compared by [`str_op`].
#[derive(Debug, Clone)]
pub(super) struct Cond {
    pub(super) field: Field,
    op: Op,
    negate: bool,
    values: Vec<Box<str>>,
    /// For `Equals` over many values.
    set: Option<HashSet<Box<str>>>,
}

impl Cond {
    pub(super) fn new(field: Field, op: Op, negate: bool, values: &[String]) -> Cond {
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

    /// The operator is chosen once, outside the loop over values, so that each arm compares
    /// with a constant operator (a per-value `match` cost a quarter more per event).
    #[inline]
    fn any(&self, s: &str) -> bool {
        if let Some(set) = &self.set {
            return set.contains(s);
        }
        let mut values = self.values.iter();
        match self.op {
            Op::Equals => values.any(|v| str_op(Op::Equals, s, v)),
            Op::Prefix => values.any(|v| str_op(Op::Prefix, s, v)),
            Op::Suffix => values.any(|v| str_op(Op::Suffix, s, v)),
        }
    }

    /// Whether a field with this value (`None`: absent) satisfies the condition.
    #[inline]
    pub(super) fn test(&self, value: Option<&str>) -> bool {
        match value {
            None => self.negate,
            Some(s) => self.any(s) != self.negate,
        }
    }

    pub(super) fn describe(&self) -> String {
        format!(
            "{} {} {}",
            self.field.path(),
            op_name(self.op, self.negate),
            short_list(&self.values)
        )
    }
}

/// The effective category of an event, as a bit.
pub(super) const CAT_MANAGEMENT: u8 = 1;
pub(super) const CAT_DATA: u8 = 2;
pub(super) const CAT_NETWORK: u8 = 4;
pub(super) const CAT_UNGOVERNED: u8 = 8;

pub(super) fn category_bit(f: &EventFields) -> u8 {
    match f.event_category {
        EventCategory::Management if f.management_event == Some(false) => CAT_DATA,
        EventCategory::Management => CAT_MANAGEMENT,
        EventCategory::Data => CAT_DATA,
        EventCategory::NetworkActivity => CAT_NETWORK,
        EventCategory::Insight | EventCategory::Other(_) => CAT_UNGOVERNED,
    }
}

pub(super) fn category_name(bit: u8) -> &'static str {
    match bit {
        CAT_MANAGEMENT => "Management",
        CAT_DATA => "Data",
        CAT_NETWORK => "NetworkActivity",
        _ => "other",
    }
}

pub(super) fn bool_str(b: Option<bool>) -> Option<&'static str> {
    b.map(|b| if b { "true" } else { "false" })
}

/// A condition on a boolean field, as a truth table.
#[derive(Debug, Clone)]
pub(super) struct BoolCond {
    pub(super) field: Field,
    /// Outcome for false, true, absent.
    pub(super) accept: [bool; 3],
    pub(super) text: String,
}

impl BoolCond {
    #[inline]
    fn test(&self, f: &EventFields) -> bool {
        let v = self.field.bool_in(f);
        self.accept[match v {
            Some(false) => 0,
            Some(true) => 1,
            None => 2,
        }]
    }
}

/// Where a condition of an advanced selector lives, in the order the user wrote them.
#[derive(Debug, Clone, Copy)]
pub(super) enum CondRef {
    Category(usize),
    Bool(usize),
    Scalar(usize),
    Resource(usize),
}

#[derive(Debug, Clone)]
pub(super) struct Advanced {
    pub(super) label: String,
    /// AND of the eventCategory conditions, as a mask of categories.
    pub(super) categories: u8,
    pub(super) category_conds: Vec<(u8, String)>,
    pub(super) bools: Vec<BoolCond>,
    pub(super) scalars: Vec<Cond>,
    pub(super) resources: Vec<Cond>,
    pub(super) order: Vec<CondRef>,
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
        if !self.scalars.iter().all(|c| c.test(c.field.str_in(f))) {
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
                        let v = b.field.bool_in(f);
                        return Some(format!(
                            "{} fails ({})",
                            b.text,
                            shown(b.field, bool_str(v))
                        ));
                    }
                }
                CondRef::Scalar(i) => {
                    let c = &self.scalars[i];
                    let v = c.field.str_in(f);
                    if !c.test(v) {
                        return Some(format!("{} fails ({})", c.describe(), shown(c.field, v)));
                    }
                }
                CondRef::Resource(i) => {
                    let c = &self.resources[i];
                    let ok = if f.resources.is_empty() {
                        c.test(None)
                    } else {
                        f.resources.iter().any(|r| c.test(c.field.in_resource(r)))
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

pub(super) fn shown(field: Field, v: Option<&str>) -> String {
    match v {
        Some(v) => format!("{} is {v:?}", field.path()),
        None => format!("the event has no {}", field.path()),
    }
}

pub(super) fn resources_shown(f: &EventFields) -> String {
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
pub(super) enum ReadWrite {
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
pub(super) struct DataValue {
    pub(super) value: Box<str>,
    /// A complete Lambda function or DynamoDB table ARN: matches only itself.
    pub(super) exact: bool,
}

#[derive(Debug, Clone)]
pub(super) struct DataResource {
    pub(super) resource_type: Box<str>,
    pub(super) values: Vec<DataValue>,
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
pub(super) struct Basic {
    pub(super) label: String,
    pub(super) read_write: ReadWrite,
    pub(super) include_management: bool,
    pub(super) exclude_sources: Vec<Box<str>>,
    pub(super) data: Vec<DataResource>,
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
pub(super) enum Rules {
    /// No selectors: everything is shipped.
    All,
    Basic(Vec<Basic>),
    Advanced(Vec<Advanced>),
}

impl Selectors {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn equals_over_many_values_uses_a_set_with_the_same_answers() {
        let values: Vec<String> = (0..40).map(|i| format!("Op{i}")).collect();
        let c = Cond::new(Field::EventName, Op::Equals, false, &values);
        assert!(c.set.is_some());
        assert!(c.test(Some("Op39")));
        assert!(!c.test(Some("Op40")));
        assert!(!c.test(None));
    }

    #[test]
    fn each_operator_compares_through_the_shared_string_matcher() {
        let v = vec!["arn:aws:s3:::b/".to_owned()];
        let starts = Cond::new(Field::ResourcesArn, Op::Prefix, false, &v);
        assert!(starts.test(Some("arn:aws:s3:::b/key")));
        assert!(!starts.test(Some("arn:aws:s3:::bb/key")));
        let not_ends = Cond::new(Field::ResourcesArn, Op::Suffix, true, &["/key".to_owned()]);
        assert!(!not_ends.test(Some("arn:aws:s3:::b/key")));
        assert!(not_ends.test(Some("arn:aws:s3:::b/other")));
        assert!(
            not_ends.test(None),
            "a negated operator passes an absent field"
        );
        assert_eq!(
            not_ends.describe(),
            "resources.ARN NotEndsWith [/key]",
            "described in CloudTrail's words"
        );
    }
}
