//! The event's side: the values found at a dotted path (leaves), with the array elements they
//! sit in, and whether a condition's matchers accept them.
//!
//! An event's value at a path is every JSON scalar reached by following the path's segments
//! through objects, descending into every element of each array on the way (a field matches if
//! any element does). Object keys that contain dots are paths too: `{"a.b": 1}` is at `a.b`, as
//! `{"a": {"b": 1}}` is. An object or an empty array at the path is no value (`exists: false`).
//!
//! Each leaf remembers, for every array it was reached through, which array and which element:
//! the leaves one alternative of a pattern uses must agree on the element of every array they
//! share (aws/event-ruler's rule, which AWS follows: `{"metrics": {"name": ["a"], "ns": ["b"]}}`
//! needs one element of `metrics` with both).

use std::net::IpAddr;

use serde_json::Value;

use crate::pattern::{AnythingBut, Cidr, Condition, Matcher, Scalar, Wildcard};

/// One value at a path, and the array elements it was reached through: (the array's address
/// in the parsed event, which names it for as long as the event lives; element index).
#[derive(Debug, Clone)]
pub struct Leaf<'e> {
    pub value: &'e Value,
    pub arrays: Vec<(usize, u32)>,
}

/// Something that holds a leaf: a leaf, or a leaf beside the number of its path.
pub trait AsLeaf<'e> {
    fn leaf(&self) -> &Leaf<'e>;
}

impl<'e> AsLeaf<'e> for Leaf<'e> {
    fn leaf(&self) -> &Leaf<'e> {
        self
    }
}

impl<'e> AsLeaf<'e> for (usize, Leaf<'e>) {
    fn leaf(&self) -> &Leaf<'e> {
        &self.1
    }
}

/// Two leaves may be used together when they agree on every array they share.
fn agree(a: &Leaf<'_>, b: &Leaf<'_>) -> bool {
    a.arrays
        .iter()
        .all(|(id, i)| b.arrays.iter().all(|(other, j)| other != id || i == j))
}

/// Whether one alternative holds, given the leaves at each of its conditions' paths (in the
/// same order as the conditions).
pub fn alternative_holds<'e, L: AsLeaf<'e>>(conditions: &[Condition], leaves: &[&[L]]) -> bool {
    // A condition holds by absence (an `exists: false` and no leaf), or by a leaf some matcher
    // accepts. A leaf in no array agrees with every other, so a condition one such leaf
    // satisfies is settled; only conditions whose accepted leaves all sit in arrays need a
    // choice of leaves that agree (rare: no allocation until then).
    let accepted = |c: &Condition, l: &Leaf<'e>| c.matchers.iter().any(|m| accepts(m, l.value));
    let mut in_arrays = false;
    for (c, at) in conditions.iter().zip(leaves) {
        if at.is_empty() {
            if c.matchers.contains(&Matcher::Exists(false)) {
                continue;
            }
            return false;
        }
        let mut some = false;
        let mut settled = false;
        for l in at.iter().map(AsLeaf::leaf) {
            if accepted(c, l) {
                some = true;
                if l.arrays.is_empty() {
                    settled = true;
                    break;
                }
            }
        }
        if !some {
            return false;
        }
        in_arrays |= !settled;
    }
    if !in_arrays {
        return true;
    }
    let mut choices: Vec<Vec<&Leaf<'e>>> = Vec::with_capacity(conditions.len());
    for (c, at) in conditions.iter().zip(leaves) {
        let ok: Vec<&Leaf<'e>> = at
            .iter()
            .map(AsLeaf::leaf)
            .filter(|l| accepted(c, l))
            .collect();
        if ok.is_empty() || ok.iter().any(|l| l.arrays.is_empty()) {
            continue;
        }
        choices.push(ok);
    }
    choices.sort_by_key(Vec::len);
    fn search<'a>(choices: &[Vec<&'a Leaf<'a>>], chosen: &mut Vec<&'a Leaf<'a>>) -> bool {
        let Some((first, rest)) = choices.split_first() else {
            return true;
        };
        for l in first {
            if chosen.iter().all(|c| agree(c, l)) {
                chosen.push(l);
                if search(rest, chosen) {
                    return true;
                }
                chosen.pop();
            }
        }
        false
    }
    search(&choices, &mut Vec::with_capacity(conditions.len()))
}

/// Whether matcher `m` accepts one leaf value. `exists: true` accepts any leaf; `exists:
/// false` none (it holds only by absence).
#[inline]
pub fn accepts(m: &Matcher, v: &Value) -> bool {
    if let Value::String(s) = v {
        return accepts_str(m, s);
    }
    match m {
        Matcher::Exact(s) => equal(s, v),
        Matcher::AnythingBut(but) => anything_but(but, v),
        Matcher::Numeric { lower, upper } => v.as_f64().is_some_and(|x| {
            lower.is_none_or(|b| {
                if b.inclusive {
                    x >= b.value
                } else {
                    x > b.value
                }
            }) && upper.is_none_or(|b| {
                if b.inclusive {
                    x <= b.value
                } else {
                    x < b.value
                }
            })
        }),
        Matcher::Exists(want) => *want,
        // The string operators accept only strings.
        Matcher::Prefix { .. }
        | Matcher::Suffix { .. }
        | Matcher::EqualsIgnoreCase(_)
        | Matcher::Wildcard(_)
        | Matcher::Cidr(_) => false,
    }
}

/// The three exact comparisons of strings: what an exact value, a `prefix` and a `suffix`
/// of a pattern do, and what a trail selector's `Equals`, `StartsWith` and `EndsWith` do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrOp {
    Equals,
    Prefix,
    Suffix,
}

/// Whether `s` holds `v` as `op` says (case-sensitive, byte for byte).
#[inline]
pub fn str_op(op: StrOp, s: &str, v: &str) -> bool {
    match op {
        StrOp::Equals => s == v,
        StrOp::Prefix => s.starts_with(v),
        StrOp::Suffix => s.ends_with(v),
    }
}

/// Whether matcher `m` accepts a string leaf `s`: the one comparison of strings that rules
/// and trail selectors share (an exact value, a prefix, a suffix, ...).
#[inline]
pub fn accepts_str(m: &Matcher, s: &str) -> bool {
    match m {
        Matcher::Exact(Scalar::String(want)) => str_op(StrOp::Equals, s, want),
        Matcher::Exact(_) | Matcher::Numeric { .. } => false,
        Matcher::Prefix {
            prefix,
            ignore_case,
        } => {
            if *ignore_case {
                lower_starts_with(s, prefix)
            } else {
                str_op(StrOp::Prefix, s, prefix)
            }
        }
        Matcher::Suffix {
            suffix,
            ignore_case,
        } => {
            if *ignore_case {
                lower_ends_with(s, suffix)
            } else {
                str_op(StrOp::Suffix, s, suffix)
            }
        }
        Matcher::EqualsIgnoreCase(want) => {
            if s.is_ascii() && want.is_ascii() {
                s.eq_ignore_ascii_case(want)
            } else {
                s.to_lowercase() == *want
            }
        }
        Matcher::Wildcard(w) => wildcard_matches(w, s),
        Matcher::AnythingBut(but) => anything_but_str(but, s),
        Matcher::Cidr(c) => in_cidr(c, s),
        Matcher::Exists(want) => *want,
    }
}

fn lower_ends_with(s: &str, lower_suffix: &str) -> bool {
    if s.is_ascii() {
        s.len() >= lower_suffix.len()
            && s.as_bytes()[s.len() - lower_suffix.len()..]
                .eq_ignore_ascii_case(lower_suffix.as_bytes())
    } else {
        s.to_lowercase().ends_with(lower_suffix)
    }
}

fn lower_starts_with(s: &str, lower_prefix: &str) -> bool {
    if s.is_ascii() {
        s.len() >= lower_prefix.len()
            && s.as_bytes()[..lower_prefix.len()].eq_ignore_ascii_case(lower_prefix.as_bytes())
    } else {
        s.to_lowercase().starts_with(lower_prefix)
    }
}

/// Exact equality with JSON types agreeing; numbers compare by value (`5` is `5.0`).
pub fn equal(s: &Scalar, v: &Value) -> bool {
    match (s, v) {
        (Scalar::Null, Value::Null) => true,
        (Scalar::Bool(a), Value::Bool(b)) => a == b,
        (Scalar::Number(a), Value::Number(b)) => b.as_f64() == Some(*a),
        (Scalar::String(a), Value::String(b)) => a == b,
        _ => false,
    }
}

fn anything_but(but: &AnythingBut, v: &Value) -> bool {
    match (but, v) {
        (_, Value::String(s)) => anything_but_str(but, s),
        (AnythingBut::Values(list), v) => !list.iter().any(|s| equal(s, v)),
        // The string exclusions do not exclude what is not a string.
        _ => true,
    }
}

fn anything_but_str(but: &AnythingBut, s: &str) -> bool {
    match but {
        AnythingBut::Values(list) => !list
            .iter()
            .any(|x| matches!(x, Scalar::String(a) if a == s)),
        AnythingBut::Prefix(list) => !list.iter().any(|p| s.starts_with(p.as_str())),
        AnythingBut::Suffix(list) => !list.iter().any(|p| s.ends_with(p.as_str())),
        AnythingBut::EqualsIgnoreCase(list) => {
            if s.is_ascii() {
                !list.iter().any(|w| s.eq_ignore_ascii_case(w))
            } else {
                let l = s.to_lowercase();
                !list.contains(&l)
            }
        }
        AnythingBut::Wildcard(list) => !list.iter().any(|w| wildcard_matches(w, s)),
    }
}

/// Whether `s` matches a wildcard: its first part at the start, its last at the end, the
/// others in order between (leftmost placement is enough for stars that match any run).
pub fn wildcard_matches(w: &Wildcard, s: &str) -> bool {
    let parts = &w.parts;
    if parts.len() == 1 {
        return s == parts[0];
    }
    let (first, last) = (&parts[0], &parts[parts.len() - 1]);
    if s.len() < first.len() + last.len()
        || !s.starts_with(first.as_str())
        || !s.ends_with(last.as_str())
    {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle.as_str()) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

fn in_cidr(c: &Cidr, s: &str) -> bool {
    let Ok(ip) = s.parse::<IpAddr>() else {
        return false;
    };
    match (c.net, ip) {
        (IpAddr::V4(net), IpAddr::V4(ip)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(c.prefix)).unwrap_or(0);
            u32::from(net) & mask == u32::from(ip) & mask
        }
        (IpAddr::V6(net), IpAddr::V6(ip)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(c.prefix))
                .unwrap_or(0);
            u128::from(net) & mask == u128::from(ip) & mask
        }
        _ => false,
    }
}

/// Every leaf at a dotted `path` of `event`, found by walking the whole path: the
/// straightforward way, used by [`crate::interpret`] (the engine's flattening walks only the
/// paths its rules use, once per event).
pub fn leaves_at<'e>(event: &'e Value, path: &str) -> Vec<Leaf<'e>> {
    let segments: Vec<&str> = path.split('.').collect();
    let mut out = Vec::new();
    walk(event, &segments, &mut Vec::new(), &mut out);
    out
}

fn walk<'e>(v: &'e Value, rest: &[&str], ctx: &mut Vec<(usize, u32)>, out: &mut Vec<Leaf<'e>>) {
    match v {
        Value::Array(items) => {
            let id = items.as_ptr() as usize;
            for (i, item) in items.iter().enumerate() {
                ctx.push((id, i as u32));
                walk(item, rest, ctx, out);
                ctx.pop();
            }
        }
        Value::Object(obj) => {
            if rest.is_empty() {
                return;
            }
            for (k, child) in obj {
                // A key may hold several segments: `a.b`.
                let mut n = 0;
                let mut ok = true;
                for seg in k.split('.') {
                    if rest.get(n) != Some(&seg) {
                        ok = false;
                        break;
                    }
                    n += 1;
                }
                if ok {
                    walk(child, &rest[n..], ctx, out);
                }
            }
        }
        scalar => {
            if rest.is_empty() {
                out.push(Leaf {
                    value: scalar,
                    arrays: ctx.clone(),
                });
            }
        }
    }
}
