//! A Sigma detection (its selections and condition) as one pattern: the condition's `not`s
//! pushed down to fields, multiplied out to alternatives (a `$or`), each alternative one field
//! condition per path; conditions shared by every alternative written once beside the `$or`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::condition::Cond;
use super::field::{Term, negated, positive, term};

/// Most alternatives a translation may multiply out to.
const MAX_ALTERNATIVES: usize = 64;

/// A field condition, maybe negated.
#[derive(Debug, Clone)]
struct Lit {
    term: usize,
    not: bool,
}

/// Boolean structure over terms.
#[derive(Debug, Clone)]
enum Expr {
    Lit(Lit),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

/// The selections of a detection, translated term by term.
#[derive(Debug, Default)]
pub(crate) struct Selections {
    terms: Vec<Term>,
    /// name -> the selection as an expression over `terms`.
    by_name: BTreeMap<String, Expr>,
}

impl Selections {
    /// Reads the detection's search identifiers (every key but `condition` and `timeframe`).
    pub(crate) fn new(detection: &Map<String, Value>) -> Result<Selections, String> {
        let mut s = Selections::default();
        for (name, v) in detection {
            if name == "condition" || name == "timeframe" {
                continue;
            }
            let e = s.selection(name, v)?;
            s.by_name.insert(name.clone(), e);
        }
        Ok(s)
    }

    fn selection(&mut self, name: &str, v: &Value) -> Result<Expr, String> {
        match v {
            Value::Object(map) => {
                if map.is_empty() {
                    return Err(format!("selection {name} is empty"));
                }
                let mut parts = Vec::new();
                for (k, val) in map {
                    let t = term(k, val)?;
                    self.terms.push(t);
                    parts.push(Expr::Lit(Lit {
                        term: self.terms.len() - 1,
                        not: false,
                    }));
                }
                Ok(Expr::And(parts))
            }
            Value::Array(items) if items.iter().all(Value::is_object) && !items.is_empty() => {
                let mut alts = Vec::new();
                for i in items {
                    alts.push(self.selection(name, i)?);
                }
                Ok(Expr::Or(alts))
            }
            _ => Err(format!(
                "selection {name} is a keyword search (values without a field), which has no pattern equivalent"
            )),
        }
    }

    fn resolve(&self, c: &Cond) -> Result<Expr, String> {
        Ok(match c {
            Cond::Name(n) => self
                .by_name
                .get(n)
                .cloned()
                .ok_or_else(|| format!("condition names {n:?}, which is no selection"))?,
            Cond::Of { all, names } => {
                let picked: Vec<Expr> = self
                    .by_name
                    .iter()
                    .filter(|(n, _)| {
                        if names == "them" {
                            !n.starts_with('_')
                        } else {
                            glob(names, n)
                        }
                    })
                    .map(|(_, e)| e.clone())
                    .collect();
                if picked.is_empty() {
                    return Err(format!("condition: `of {names}` names no selection"));
                }
                if *all {
                    Expr::And(picked)
                } else {
                    Expr::Or(picked)
                }
            }
            Cond::And(cs) => Expr::And(
                cs.iter()
                    .map(|c| self.resolve(c))
                    .collect::<Result<_, _>>()?,
            ),
            Cond::Or(cs) => Expr::Or(
                cs.iter()
                    .map(|c| self.resolve(c))
                    .collect::<Result<_, _>>()?,
            ),
            Cond::Not(c) => negate(self.resolve(c)?),
        })
    }

    /// The pattern of condition `c`, with the caveats of its translation.
    pub(crate) fn pattern(&self, c: &Cond) -> Result<(Value, Vec<String>), String> {
        let e = self.resolve(c)?;
        let alts = dnf(&e)?;
        let mut caveats = Vec::new();
        let mut objects: Vec<BTreeMap<String, Vec<Value>>> = Vec::new();
        for alt in &alts {
            let mut fields: BTreeMap<String, Vec<Value>> = BTreeMap::new();
            for l in alt {
                let t = &self.terms[l.term];
                let items = if l.not {
                    let (items, cav) = negated(t)?;
                    caveats.extend(cav);
                    items
                } else {
                    caveats.extend(t.caveats.iter().cloned());
                    positive(t)
                };
                match fields.get(&t.path) {
                    Some(have) if *have == items => {}
                    Some(_) => {
                        return Err(format!(
                            "two conditions on {} must hold together, and a pattern holds one condition per field",
                            t.path
                        ));
                    }
                    None => {
                        fields.insert(t.path.clone(), items);
                    }
                }
            }
            if !objects.contains(&fields) {
                objects.push(fields);
            }
        }
        caveats.sort();
        caveats.dedup();
        Ok((assemble(merge(objects))?, caveats))
    }
}

/// `*` in a Sigma `of` target matches any run of characters.
fn glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || !name.ends_with(last) || name.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

fn negate(e: Expr) -> Expr {
    match e {
        Expr::Lit(l) => Expr::Lit(Lit {
            term: l.term,
            not: !l.not,
        }),
        Expr::And(v) => Expr::Or(v.into_iter().map(negate).collect()),
        Expr::Or(v) => Expr::And(v.into_iter().map(negate).collect()),
    }
}

/// Disjunctive normal form: alternatives of literals.
fn dnf(e: &Expr) -> Result<Vec<Vec<Lit>>, String> {
    Ok(match e {
        Expr::Lit(l) => vec![vec![l.clone()]],
        Expr::Or(v) => {
            let mut out = Vec::new();
            for x in v {
                out.extend(dnf(x)?);
            }
            if out.len() > MAX_ALTERNATIVES {
                return Err(too_many());
            }
            out
        }
        Expr::And(v) => {
            let mut out: Vec<Vec<Lit>> = vec![Vec::new()];
            for x in v {
                let d = dnf(x)?;
                let mut next = Vec::with_capacity(out.len() * d.len());
                for a in &out {
                    for b in &d {
                        let mut both = a.clone();
                        both.extend(b.iter().cloned());
                        next.push(both);
                    }
                }
                if next.len() > MAX_ALTERNATIVES {
                    return Err(too_many());
                }
                out = next;
            }
            out
        }
    })
}

fn too_many() -> String {
    format!("the condition multiplies out to more than {MAX_ALTERNATIVES} alternatives")
}

/// Joins alternatives that differ in the matchers of one field only: `(A and f in X) or (A and
/// f in Y)` is `A and f in (X or Y)`, exactly.
fn merge(mut objects: Vec<BTreeMap<String, Vec<Value>>>) -> Vec<BTreeMap<String, Vec<Value>>> {
    'again: loop {
        for i in 0..objects.len() {
            for j in i + 1..objects.len() {
                let (a, b) = (&objects[i], &objects[j]);
                if !a.keys().eq(b.keys()) {
                    continue;
                }
                let differ: Vec<&String> = a.keys().filter(|k| a[*k] != b[*k]).collect();
                if differ.len() != 1 {
                    continue;
                }
                let k = differ[0].clone();
                let extra = objects[j][&k].clone();
                let items = objects[i].entry(k).or_default();
                for x in extra {
                    if !items.contains(&x) {
                        items.push(x);
                    }
                }
                objects.remove(j);
                continue 'again;
            }
        }
        return objects;
    }
}

/// The pattern of alternatives: fields shared by all written once, the rest under `$or`.
fn assemble(objects: Vec<BTreeMap<String, Vec<Value>>>) -> Result<Value, String> {
    let Some(first) = objects.first() else {
        return Err("the condition selects nothing".into());
    };
    let shared: Vec<(String, Vec<Value>)> = first
        .iter()
        .filter(|(k, v)| objects.iter().all(|o| o.get(*k) == Some(*v)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let rests: Vec<BTreeMap<String, Vec<Value>>> = objects
        .iter()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| !shared.iter().any(|(s, _)| s == *k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .collect();
    let mut top = Map::new();
    for (path, items) in &shared {
        insert(&mut top, path, Value::Array(items.clone()));
    }
    // An alternative left with nothing holds whenever the shared fields do.
    if rests.len() > 1 && rests.iter().all(|r| !r.is_empty()) {
        let alts: Vec<Value> = rests
            .iter()
            .map(|r| {
                let mut m = Map::new();
                for (path, items) in r {
                    insert(&mut m, path, Value::Array(items.clone()));
                }
                Value::Object(m)
            })
            .collect();
        top.insert("$or".into(), Value::Array(alts));
    }
    if top.is_empty() {
        return Err("the condition constrains no field (it would match every event)".into());
    }
    Ok(Value::Object(top))
}

/// Puts `items` at the dotted `path` of `m`, as nested objects.
fn insert(m: &mut Map<String, Value>, path: &str, items: Value) {
    match path.split_once('.') {
        None => {
            m.insert(path.to_owned(), items);
        }
        Some((head, rest)) => {
            let child = m
                .entry(head.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(c) = child {
                insert(c, rest, items);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn translate(detection: Value) -> Result<(Value, Vec<String>), String> {
        let d = detection.as_object().unwrap();
        let s = Selections::new(d)?;
        let (c, _) = super::super::condition::parse(d["condition"].as_str().unwrap())?;
        s.pattern(&c)
    }

    #[test]
    fn one_of_and_not_multiply_out_with_shared_fields_once() {
        let (p, cav) = translate(json!({
            "selection_event_name": {"eventName": "DeleteBucket"},
            "selection_status_success": {"errorCode": "Success"},
            "selection_status_null": {"errorCode": null},
            "condition": "selection_event_name and 1 of selection_status_*"
        }))
        .unwrap();
        assert!(cav.is_empty());
        // The two alternatives differ only in errorCode: one field, its values OR'ed.
        assert_eq!(
            p,
            json!({"eventName": [{"equals-ignore-case": "DeleteBucket"}],
                   "errorCode": [null, {"exists": false}, {"equals-ignore-case": "Success"}]})
        );
        crate::Pattern::from_json(&p).unwrap();
        let (p, _) = translate(json!({
            "sts": {"eventSource": "sts.amazonaws.com", "eventName": "AssumeRoleWithSAML"},
            "iam": {"eventSource": "iam.amazonaws.com", "eventName": "UpdateSAMLProvider"},
            "condition": "1 of them"
        }))
        .unwrap();
        assert_eq!(p["$or"].as_array().map(Vec::len), Some(2), "{p}");
        crate::Pattern::from_json(&p).unwrap();
    }

    #[test]
    fn a_negated_selection_becomes_per_field_negations() {
        let (p, _) = translate(json!({
            "selection": {"eventSource": "s3.amazonaws.com", "eventName": "ListBuckets"},
            "filter": {"userIdentity.type": "AssumedRole"},
            "condition": "selection and not filter"
        }))
        .unwrap();
        assert_eq!(
            p,
            json!({
                "eventName": [{"equals-ignore-case": "ListBuckets"}],
                "eventSource": [{"equals-ignore-case": "s3.amazonaws.com"}],
                "userIdentity": {"type": [{"exists": false}, {"anything-but": {"equals-ignore-case": ["AssumedRole"]}}]}
            })
        );
    }

    #[test]
    fn conflicting_conditions_on_one_field_are_refused() {
        let e = translate(json!({
            "a": {"eventName": "X"},
            "b": {"eventName": "Y"},
            "condition": "a and b"
        }))
        .unwrap_err();
        assert!(e.contains("one condition per field"), "{e}");
    }
}
