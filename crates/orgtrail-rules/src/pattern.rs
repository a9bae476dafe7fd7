//! EventBridge event patterns: parsed, checked, and put in a normal form.
//!
//! A pattern is a JSON object. A key whose value is an object descends (`{"detail": {"state":
//! [...]}}`); a key whose value is an array is a leaf condition, whose elements are OR'ed; the
//! keys of one object are AND'ed; `$or` takes an array of at least two objects, any of which may
//! match. A dotted key is a path (`{"detail": {"state.status": [..]}}` is `detail.state.status`),
//! as it is on the event's side. An element of a leaf array is a JSON scalar (matched exactly,
//! types agreeing: `"5"` is not `5`) or an object with one operator:
//!
//! | operator | value |
//! |---|---|
//! | `prefix`, `suffix` | a string, or `{"equals-ignore-case": string}` |
//! | `equals-ignore-case` | a string |
//! | `wildcard` | a string: `*` any run of characters (never two in a row), `\*` a star, `\\` a backslash |
//! | `anything-but` | a scalar or a non-empty list of scalars of one type (no null), or `{"prefix"\|"suffix"\|"equals-ignore-case"\|"wildcard": string or list of strings}` |
//! | `numeric` | `["<"\|"<="\|"="\|">"\|">=", number, ...]`: at most one lower and one upper bound, or one `=` |
//! | `cidr` | an IPv4 or IPv6 network, `10.0.0.0/24` |
//! | `exists` | `true` or `false` |
//!
//! Anything else is refused with its path and the reason: an empty array, a leaf that is not an
//! array, an unknown operator (they are case-sensitive), a wrong type, `**` in a wildcard.
//!
//! The normal form is a list of alternatives (`$or` multiplied out), each a list of conditions
//! on a dotted path, each condition a non-empty list of [`Matcher`]s.

use std::net::IpAddr;

use serde_json::{Map, Value};

/// Longest pattern accepted, in bytes of its JSON (AWS's default limit is 2,048 characters;
/// self-hosted rules may be longer, within reason).
pub const MAX_PATTERN_BYTES: usize = 64 << 10;
/// Most alternatives a pattern's `$or`s may multiply out to.
pub const MAX_ALTERNATIVES: usize = 1024;
/// Most `*` in one wildcard: each one multiplies what matching may have to try.
pub const MAX_WILDCARD_STARS: usize = 5;

/// Why a pattern was refused: where in it, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", if path.is_empty() { "pattern" } else { path.as_str() })]
pub struct PatternError {
    /// The dotted path of the offending key (empty for the whole pattern).
    pub path: String,
    pub reason: String,
}

fn err<T>(path: &str, reason: impl Into<String>) -> Result<T, PatternError> {
    Err(PatternError {
        path: path.to_owned(),
        reason: reason.into(),
    })
}

/// A JSON scalar, as the exact-match and `anything-but` operators take it.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
}

impl Scalar {
    fn from_json(v: &Value) -> Option<Scalar> {
        Some(match v {
            Value::Null => Scalar::Null,
            Value::Bool(b) => Scalar::Bool(*b),
            Value::Number(n) => Scalar::Number(n.as_f64()?),
            Value::String(s) => Scalar::String(s.clone()),
            Value::Array(_) | Value::Object(_) => return None,
        })
    }
}

/// A numeric bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bound {
    pub value: f64,
    pub inclusive: bool,
}

/// A wildcard pattern, split at its unescaped stars: it matches a string that starts with the
/// first part, ends with the last, and holds the others in order between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wildcard {
    pub parts: Vec<String>,
}

/// An IP network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub net: IpAddr,
    pub prefix: u8,
}

/// What `anything-but` excludes.
#[derive(Debug, Clone, PartialEq)]
pub enum AnythingBut {
    Values(Vec<Scalar>),
    Prefix(Vec<String>),
    Suffix(Vec<String>),
    /// Lower-cased.
    EqualsIgnoreCase(Vec<String>),
    Wildcard(Vec<Wildcard>),
}

/// One element of a leaf condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Matcher {
    Exact(Scalar),
    /// The prefix; lower-cased when `ignore_case`.
    Prefix {
        prefix: String,
        ignore_case: bool,
    },
    Suffix {
        suffix: String,
        ignore_case: bool,
    },
    /// Lower-cased.
    EqualsIgnoreCase(String),
    Wildcard(Wildcard),
    AnythingBut(AnythingBut),
    Numeric {
        lower: Option<Bound>,
        upper: Option<Bound>,
    },
    Cidr(Cidr),
    Exists(bool),
}

/// A leaf condition: the value at `path` matches one of `matchers`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// Dotted path from the event's root.
    pub path: String,
    pub matchers: Vec<Matcher>,
}

/// A pattern in normal form: it matches when one alternative does, and an alternative matches
/// when every one of its conditions does.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    pub alternatives: Vec<Vec<Condition>>,
}

impl Pattern {
    /// Parses and checks a pattern given as JSON text.
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        if text.len() > MAX_PATTERN_BYTES {
            return err(
                "",
                format!(
                    "{} bytes is longer than the limit of {MAX_PATTERN_BYTES}",
                    text.len()
                ),
            );
        }
        let v: Value = serde_json::from_str(text).map_err(|e| PatternError {
            path: String::new(),
            reason: format!("not JSON: {e}"),
        })?;
        Pattern::from_json(&v)
    }

    /// Checks a pattern given as a JSON value.
    pub fn from_json(v: &Value) -> Result<Pattern, PatternError> {
        let Value::Object(obj) = v else {
            return err("", "a pattern is a JSON object");
        };
        if obj.is_empty() {
            return err(
                "",
                "an empty pattern matches nothing: give at least one field",
            );
        }
        let alternatives = object("", obj)?;
        Ok(Pattern { alternatives })
    }

    /// Every dotted path a condition of this pattern reads.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.alternatives.iter().flatten().map(|c| c.path.as_str())
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The alternatives of one object of a pattern at `prefix`.
fn object(prefix: &str, obj: &Map<String, Value>) -> Result<Vec<Vec<Condition>>, PatternError> {
    // Start with one empty alternative; each key ANDs its alternatives into all of them.
    let mut alts: Vec<Vec<Condition>> = vec![Vec::new()];
    for (key, value) in obj {
        let here: Vec<Vec<Condition>> = if key == "$or" {
            let Value::Array(items) = value else {
                return err(&join(prefix, key), "$or takes an array of objects");
            };
            if items.len() < 2 {
                return err(
                    &join(prefix, key),
                    "$or takes at least two objects (one would be no alternative)",
                );
            }
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let at = format!("{}[{i}]", join(prefix, key));
                let Value::Object(o) = item else {
                    return err(&at, "each element of $or is an object");
                };
                if o.is_empty() {
                    return err(&at, "an empty object in $or");
                }
                out.extend(object(prefix, o)?);
            }
            out
        } else {
            if key.is_empty() {
                return err(prefix, "an empty key");
            }
            let path = join(prefix, key);
            match value {
                Value::Object(o) => {
                    if o.is_empty() {
                        return err(&path, "an empty object matches nothing");
                    }
                    object(&path, o)?
                }
                Value::Array(items) => vec![vec![leaf(&path, items)?]],
                _ => {
                    return err(
                        &path,
                        "a field's value must be an array of values or operators (for example [\"x\"]), or an object",
                    );
                }
            }
        };
        let mut next = Vec::with_capacity(alts.len() * here.len());
        for a in &alts {
            for h in &here {
                let mut both = a.clone();
                both.extend(h.iter().cloned());
                next.push(both);
            }
        }
        if next.len() > MAX_ALTERNATIVES {
            return err(
                prefix,
                format!("its $or alternatives multiply out to more than {MAX_ALTERNATIVES}"),
            );
        }
        alts = next;
    }
    Ok(alts)
}

/// A leaf condition at `path`.
fn leaf(path: &str, items: &[Value]) -> Result<Condition, PatternError> {
    if items.is_empty() {
        return err(path, "an empty array matches nothing");
    }
    let mut matchers = Vec::with_capacity(items.len());
    for item in items {
        matchers.push(match item {
            Value::Object(op) => operator(path, op)?,
            Value::Array(_) => {
                return err(path, "a value inside a field's array cannot be an array");
            }
            other => Matcher::Exact(scalar(path, other)?),
        });
    }
    Ok(Condition {
        path: path.to_owned(),
        matchers,
    })
}

fn scalar(path: &str, v: &Value) -> Result<Scalar, PatternError> {
    match Scalar::from_json(v) {
        Some(s) => Ok(s),
        None => err(path, format!("{v} is not a number that fits a double")),
    }
}

fn string<'a>(path: &str, op: &str, v: &'a Value) -> Result<&'a str, PatternError> {
    match v {
        Value::String(s) => Ok(s),
        _ => err(path, format!("{op} takes a string, not {}", kind(v))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `{"op": value}`.
fn operator(path: &str, op: &Map<String, Value>) -> Result<Matcher, PatternError> {
    let mut it = op.iter();
    let (Some((name, v)), None) = (it.next(), it.next()) else {
        return err(
            path,
            format!("an operator object has exactly one key, not {}", op.len()),
        );
    };
    Ok(match name.as_str() {
        "prefix" | "suffix" => {
            let (text, ignore_case) = match v {
                Value::Object(inner) => match inner.get("equals-ignore-case") {
                    Some(s) if inner.len() == 1 => {
                        (string(path, "equals-ignore-case", s)?.to_lowercase(), true)
                    }
                    _ => {
                        return err(
                            path,
                            format!("{name} takes a string or {{\"equals-ignore-case\": string}}"),
                        );
                    }
                },
                _ => (string(path, name, v)?.to_owned(), false),
            };
            if name == "prefix" {
                Matcher::Prefix {
                    prefix: text,
                    ignore_case,
                }
            } else {
                Matcher::Suffix {
                    suffix: text,
                    ignore_case,
                }
            }
        }
        "equals-ignore-case" => Matcher::EqualsIgnoreCase(string(path, name, v)?.to_lowercase()),
        "wildcard" => Matcher::Wildcard(wildcard(path, string(path, name, v)?)?),
        "anything-but" => Matcher::AnythingBut(anything_but(path, v)?),
        "numeric" => numeric(path, v)?,
        "cidr" => Matcher::Cidr(cidr(path, string(path, name, v)?)?),
        "exists" => match v {
            Value::Bool(b) => Matcher::Exists(*b),
            _ => return err(path, format!("exists takes true or false, not {}", kind(v))),
        },
        other => {
            return err(
                path,
                format!(
                    "unknown operator {other:?} (operators: prefix, suffix, equals-ignore-case, wildcard, anything-but, numeric, cidr, exists; they are case-sensitive)"
                ),
            );
        }
    })
}

/// A wildcard's parts between unescaped stars.
pub(crate) fn wildcard(path: &str, text: &str) -> Result<Wildcard, PatternError> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars();
    let mut previous_star = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('*' | '\\')) => {
                    current.push(e);
                    previous_star = false;
                }
                _ => {
                    return err(
                        path,
                        format!("wildcard {text:?}: a backslash escapes only * or \\"),
                    );
                }
            },
            '*' => {
                if previous_star {
                    return err(
                        path,
                        format!("wildcard {text:?}: two stars in a row (**) are not allowed"),
                    );
                }
                parts.push(std::mem::take(&mut current));
                previous_star = true;
            }
            c => {
                current.push(c);
                previous_star = false;
            }
        }
    }
    parts.push(current);
    if parts.len() - 1 > MAX_WILDCARD_STARS {
        return err(
            path,
            format!(
                "wildcard {text:?} has {} stars, more than the {MAX_WILDCARD_STARS} allowed",
                parts.len() - 1
            ),
        );
    }
    Ok(Wildcard { parts })
}

fn strings(path: &str, op: &str, v: &Value) -> Result<Vec<String>, PatternError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|i| string(path, op, i).map(str::to_owned))
            .collect(),
        Value::Array(_) => err(path, format!("anything-but {op}: an empty list")),
        _ => err(
            path,
            format!(
                "anything-but {op} takes a string or a list of strings, not {}",
                kind(v)
            ),
        ),
    }
}

fn anything_but(path: &str, v: &Value) -> Result<AnythingBut, PatternError> {
    Ok(match v {
        Value::Null => return err(path, "anything-but null is not allowed"),
        Value::Array(items) => {
            if items.is_empty() {
                return err(path, "anything-but: an empty list");
            }
            let mut out = Vec::with_capacity(items.len());
            for i in items {
                match i {
                    Value::String(_) | Value::Number(_) | Value::Bool(_) => {
                        out.push(scalar(path, i)?)
                    }
                    _ => {
                        return err(
                            path,
                            format!("anything-but lists strings or numbers, not {}", kind(i)),
                        );
                    }
                }
            }
            let strings = out
                .iter()
                .filter(|s| matches!(s, Scalar::String(_)))
                .count();
            if strings != 0 && strings != out.len() {
                return err(
                    path,
                    "anything-but lists values of one type: all strings or all numbers",
                );
            }
            AnythingBut::Values(out)
        }
        Value::Object(inner) => {
            let mut it = inner.iter();
            let (Some((op, val)), None) = (it.next(), it.next()) else {
                return err(
                    path,
                    "anything-but takes one operator: prefix, suffix, equals-ignore-case or wildcard",
                );
            };
            match op.as_str() {
                "prefix" => AnythingBut::Prefix(strings(path, op, val)?),
                "suffix" => AnythingBut::Suffix(strings(path, op, val)?),
                "equals-ignore-case" => AnythingBut::EqualsIgnoreCase(
                    strings(path, op, val)?
                        .iter()
                        .map(|s| s.to_lowercase())
                        .collect(),
                ),
                "wildcard" => AnythingBut::Wildcard(
                    strings(path, op, val)?
                        .iter()
                        .map(|w| wildcard(path, w))
                        .collect::<Result<_, _>>()?,
                ),
                other => {
                    return err(
                        path,
                        format!(
                            "anything-but takes prefix, suffix, equals-ignore-case or wildcard, not {other:?}"
                        ),
                    );
                }
            }
        }
        other => AnythingBut::Values(vec![scalar(path, other)?]),
    })
}

fn numeric(path: &str, v: &Value) -> Result<Matcher, PatternError> {
    let Value::Array(items) = v else {
        return err(path, "numeric takes an array: [\">\", 0, \"<=\", 5]");
    };
    if items.is_empty() || items.len() % 2 != 0 || items.len() > 4 {
        return err(
            path,
            "numeric takes one or two (operator, number) pairs: [\">\", 0, \"<=\", 5]",
        );
    }
    let (mut lower, mut upper) = (None, None);
    let mut equal = false;
    for pair in items.chunks(2) {
        let (Value::String(op), Value::Number(n)) = (&pair[0], &pair[1]) else {
            return err(
                path,
                "numeric takes (operator, number) pairs: [\">\", 0, \"<=\", 5]",
            );
        };
        let Some(value) = n.as_f64() else {
            return err(path, format!("numeric: {n} does not fit a double"));
        };
        let (slot, inclusive) = match op.as_str() {
            ">" => (&mut lower, false),
            ">=" => (&mut lower, true),
            "<" => (&mut upper, false),
            "<=" => (&mut upper, true),
            "=" => {
                if items.len() != 2 {
                    return err(path, "numeric = stands alone");
                }
                equal = true;
                lower = Some(Bound {
                    value,
                    inclusive: true,
                });
                upper = lower;
                continue;
            }
            other => {
                return err(
                    path,
                    format!("numeric: unknown operator {other:?} (<, <=, =, >, >=)"),
                );
            }
        };
        if slot.is_some() {
            return err(
                path,
                "numeric takes at most one lower bound (> or >=) and one upper bound (< or <=)",
            );
        }
        *slot = Some(Bound { value, inclusive });
    }
    if !equal
        && let (Some(l), Some(u)) = (lower, upper)
        && (l.value > u.value || (l.value == u.value && !(l.inclusive && u.inclusive)))
    {
        return err(
            path,
            "numeric: the range is empty (its lower bound is above its upper bound)",
        );
    }
    Ok(Matcher::Numeric { lower, upper })
}

fn cidr(path: &str, text: &str) -> Result<Cidr, PatternError> {
    let bad = || {
        err(
            path,
            format!("cidr {text:?} is not an IP network such as 10.0.0.0/24 or 2001:db8::/32"),
        )
    };
    let Some((ip, len)) = text.split_once('/') else {
        return bad();
    };
    let (Ok(net), Ok(prefix)) = (ip.parse::<IpAddr>(), len.parse::<u8>()) else {
        return bad();
    };
    let max = if net.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return bad();
    }
    Ok(Cidr { net, prefix })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn or_multiplies_out_and_dotted_keys_are_paths() {
        let p = Pattern::parse(
            r#"{"source":["aws.ec2"],"detail":{"$or":[{"a.b":[1]},{"c":{"d":[true]}}]}}"#,
        )
        .unwrap();
        assert_eq!(p.alternatives.len(), 2);
        let paths: Vec<Vec<&str>> = p
            .alternatives
            .iter()
            .map(|a| a.iter().map(|c| c.path.as_str()).collect())
            .collect();
        assert!(
            paths.contains(&vec!["detail.a.b", "source"])
                || paths.contains(&vec!["source", "detail.a.b"]),
            "{paths:?}"
        );
        assert!(paths.iter().any(|a| a.contains(&"detail.c.d")), "{paths:?}");
    }

    #[test]
    fn refusals_name_the_path_and_the_reason() {
        for (pattern, want) in [
            (r#"{"a":[]}"#, "a: an empty array"),
            (r#"{"a":"x"}"#, "a: a field's value must be an array"),
            (r#"{"a":[{"EXISTS":true}]}"#, "unknown operator \"EXISTS\""),
            (
                r#"{"a":{"b":[{"wildcard":"x**y"}]}}"#,
                "a.b: wildcard \"x**y\": two stars",
            ),
            (
                r#"{"a":[{"numeric":[">",0,">",1]}]}"#,
                "at most one lower bound",
            ),
            (r#"{"a":[{"anything-but":null}]}"#, "anything-but null"),
            (r#"{"a":[{"prefix":["x"]}]}"#, "prefix takes a string"),
            (r#"{"a":[{"cidr":"bad"}]}"#, "is not an IP network"),
            (r#"{}"#, "an empty pattern"),
            (r#"[1]"#, "a pattern is a JSON object"),
        ] {
            let e = Pattern::parse(pattern).unwrap_err().to_string();
            assert!(e.contains(want), "{pattern}: {e:?} lacks {want:?}");
        }
    }

    #[test]
    fn wildcards_split_at_unescaped_stars() {
        assert_eq!(
            wildcard("", r"a*b\*c\\*").unwrap().parts,
            vec!["a", r"b*c\", ""]
        );
    }
}
