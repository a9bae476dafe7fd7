//! One Sigma field condition (`field|modifier|...: value or list`) as the matchers of one
//! pattern field, positive or negated, with the caveats of the translation, or the reason it
//! has none.
//!
//! Sigma compares strings case-insensitively unless `|cased` says otherwise; its values may
//! hold `*` (any run) and `?` (one character), escaped with `\`. In a pattern:
//!
//! | Sigma | pattern | exact? |
//! |---|---|---|
//! | `x` (no wildcard) | `{"equals-ignore-case": "x"}` (and the JSON `true`/`false`/number it spells) | yes |
//! | `x*`, `\|startswith` | `{"prefix": {"equals-ignore-case": "x"}}` | yes |
//! | `*x`, `\|endswith` | `{"suffix": {"equals-ignore-case": "x"}}` | yes |
//! | `*x*`, `\|contains`, other `*` | `{"wildcard": "*x*"}` | only when `x` has no letters: a wildcard is case-sensitive |
//! | `*` alone | any string, number or boolean | yes |
//! | `null` | `null` or missing | yes |
//! | `\|cased` | the exact string | yes |
//! | `\|gt` `\|gte` `\|lt` `\|lte` | `numeric` | yes |
//! | `\|cidr` | `cidr` | yes |
//! | `\|exists` | `exists` | yes |
//! | `?`, `\|re`, `\|fieldref`, `\|all` with several values, `\|base64`..., `\|windash` | refused | |
//!
//! A negated field (`not`) matches when the field is missing too, as Sigma's does: `[{"exists":
//! false}, {"anything-but": ...}]`.

use serde_json::{Value, json};

/// One alternative value of a field.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Atom {
    /// Equal to the string; ignoring case unless `cased`.
    Str {
        text: String,
        cased: bool,
    },
    /// The JSON boolean or number a Sigma string spells (`'false'`, `'5'`).
    Typed(Value),
    /// Starts with, ignoring case.
    Prefix(String),
    /// Ends with, ignoring case.
    Suffix(String),
    /// An EventBridge wildcard (its own escaping), and whether its letters make it differ from
    /// Sigma's case-insensitive match.
    Wildcard {
        pattern: String,
        case_differs: bool,
    },
    /// Any string, number or boolean.
    AnyValue,
    /// Null or missing.
    Null,
    Numeric(&'static str, f64),
    Cidr(String),
    Exists(bool),
}

/// A field condition, translated: its path and the atoms any of which must hold.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Term {
    pub(crate) path: String,
    pub(crate) atoms: Vec<Atom>,
    /// What the positive form gets wrong.
    pub(crate) caveats: Vec<String>,
}

/// CloudTrail record fields that hold objects: Sigma compares their serialised text, a pattern
/// compares leaf values at a path.
const OBJECT_FIELDS: &[&str] = &[
    "requestParameters",
    "responseElements",
    "additionalEventData",
    "userIdentity",
    "userIdentity.sessionContext",
    "userIdentity.sessionContext.sessionIssuer",
    "userIdentity.sessionContext.attributes",
    "userIdentity.sessionContext.webIdFederationData",
    "serviceEventDetails",
    "tlsDetails",
    "insightDetails",
    "resources",
    "edgeDeviceDetails",
];

/// CloudTrail record fields that always hold one value (never an array): a negation on them
/// is exact.
const SCALAR_FIELDS: &[&str] = &[
    "eventVersion",
    "eventTime",
    "eventSource",
    "eventName",
    "awsRegion",
    "sourceIPAddress",
    "userAgent",
    "errorCode",
    "errorMessage",
    "requestID",
    "eventID",
    "eventType",
    "apiVersion",
    "readOnly",
    "recipientAccountId",
    "eventCategory",
    "managementEvent",
    "sharedEventID",
    "vpcEndpointId",
    "sessionCredentialFromConsole",
    "userIdentity.type",
    "userIdentity.principalId",
    "userIdentity.arn",
    "userIdentity.accountId",
    "userIdentity.accessKeyId",
    "userIdentity.userName",
    "userIdentity.invokedBy",
    "userIdentity.sessionContext.sessionIssuer.type",
    "userIdentity.sessionContext.sessionIssuer.arn",
    "userIdentity.sessionContext.sessionIssuer.userName",
    "userIdentity.sessionContext.sessionIssuer.principalId",
    "userIdentity.sessionContext.sessionIssuer.accountId",
    "userIdentity.sessionContext.attributes.mfaAuthenticated",
    "userIdentity.sessionContext.attributes.creationDate",
    "additionalEventData.MFAUsed",
    "responseElements.ConsoleLogin",
];

/// A piece of a Sigma string value.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Lit(String),
    Star,
    One,
}

/// Splits a Sigma string at its unescaped wildcards (`\*`, `\?`, `\\` are literal).
fn pieces(s: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(&e @ ('*' | '?' | '\\')) => {
                    lit.push(e);
                    chars.next();
                }
                _ => lit.push('\\'),
            },
            '*' | '?' => {
                if !lit.is_empty() {
                    out.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                let p = if c == '*' { Piece::Star } else { Piece::One };
                if !(p == Piece::Star && out.last() == Some(&Piece::Star)) {
                    out.push(p);
                }
            }
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        out.push(Piece::Lit(lit));
    }
    out
}

fn has_letters(s: &str) -> bool {
    s.chars().any(|c| c.to_lowercase().ne(c.to_uppercase()))
}

/// Escapes a literal for an EventBridge wildcard.
fn wild_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('*', "\\*")
}

/// The atoms of one Sigma string under `contains`/`startswith`/`endswith` (`how`) or plain.
fn string_atoms(path: &str, s: &str, how: Option<&str>, cased: bool) -> Result<Vec<Atom>, String> {
    let mut p = pieces(s);
    match how {
        Some("contains") => {
            p.insert(0, Piece::Star);
            p.push(Piece::Star);
        }
        Some("startswith") => p.push(Piece::Star),
        Some("endswith") => p.insert(0, Piece::Star),
        _ => {}
    }
    p.dedup_by(|a, b| *a == Piece::Star && *b == Piece::Star);
    if p.contains(&Piece::One) {
        return Err(format!(
            "{path}: {s:?} uses `?` (exactly one character), which no pattern operator has"
        ));
    }
    let lits: Vec<&String> = p
        .iter()
        .filter_map(|x| match x {
            Piece::Lit(l) => Some(l),
            _ => None,
        })
        .collect();
    let stars = p.iter().filter(|x| **x == Piece::Star).count();
    if cased && stars > 0 {
        // A case-sensitive wildcard is exactly a pattern wildcard.
        return Ok(vec![Atom::Wildcard {
            pattern: wildcard_text(&p),
            case_differs: false,
        }]);
    }
    Ok(match (p.as_slice(), stars) {
        ([], _) => vec![Atom::Str {
            text: String::new(),
            cased: true,
        }],
        ([Piece::Star], _) => vec![Atom::AnyValue],
        ([Piece::Lit(l)], 0) => {
            let mut v = vec![Atom::Str {
                text: l.clone(),
                cased,
            }];
            if !cased {
                v.extend(typed(l).map(Atom::Typed));
            }
            v
        }
        ([Piece::Lit(l), Piece::Star], 1) => vec![Atom::Prefix(l.clone())],
        ([Piece::Star, Piece::Lit(l)], 1) => vec![Atom::Suffix(l.clone())],
        _ => {
            if stars > crate::pattern::MAX_WILDCARD_STARS {
                return Err(format!(
                    "{path}: {s:?} has more than {} wildcards",
                    crate::pattern::MAX_WILDCARD_STARS
                ));
            }
            vec![Atom::Wildcard {
                pattern: wildcard_text(&p),
                case_differs: lits.iter().any(|l| has_letters(l)),
            }]
        }
    })
}

fn wildcard_text(p: &[Piece]) -> String {
    p.iter()
        .map(|x| match x {
            Piece::Lit(l) => wild_escape(l),
            _ => "*".to_owned(),
        })
        .collect()
}

/// The JSON boolean or number a Sigma string spells: Sigma compares text, and CloudTrail
/// writes `"publiclyAccessible": true`, not `"true"`.
fn typed(s: &str) -> Option<Value> {
    match s.to_ascii_lowercase().as_str() {
        "true" => return Some(Value::Bool(true)),
        "false" => return Some(Value::Bool(false)),
        _ => {}
    }
    if s.bytes()
        .all(|b| b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        let n: f64 = s.parse().ok()?;
        return serde_json::Number::from_f64(n).map(Value::Number);
    }
    None
}

/// Translates `key: value` of a selection map.
pub(crate) fn term(key: &str, value: &Value) -> Result<Term, String> {
    let mut parts = key.split('|');
    let path = parts.next().unwrap_or_default().trim().to_owned();
    if path.is_empty() {
        return Err(format!(
            "{key:?}: a field name is needed (keyword searches over the whole event have no pattern equivalent)"
        ));
    }
    let mods: Vec<String> = parts.map(|m| m.trim().to_ascii_lowercase()).collect();
    let mut how: Option<&str> = None;
    let mut all = false;
    let mut cased = false;
    let mut special: Option<&str> = None;
    for m in &mods {
        match m.as_str() {
            "contains" | "startswith" | "endswith" => {
                if how.is_some() {
                    return Err(format!("{key}: two of contains/startswith/endswith"));
                }
                how = Some(match m.as_str() {
                    "contains" => "contains",
                    "startswith" => "startswith",
                    _ => "endswith",
                });
            }
            "all" => all = true,
            "cased" => cased = true,
            "gt" | "gte" | "lt" | "lte" | "cidr" | "exists" => {
                special = Some(match m.as_str() {
                    "gt" => ">",
                    "gte" => ">=",
                    "lt" => "<",
                    "lte" => "<=",
                    "cidr" => "cidr",
                    _ => "exists",
                })
            }
            "re" => {
                return Err(format!(
                    "{path}|re: the regular expression {} has no pattern equivalent",
                    value
                ));
            }
            "fieldref" => {
                return Err(format!(
                    "{path}|fieldref: compares {path} with the field {value}; a pattern compares a field with constants only"
                ));
            }
            other => {
                return Err(format!(
                    "{path}|{other}: the modifier {other:?} has no pattern equivalent"
                ));
            }
        }
    }
    if OBJECT_FIELDS.contains(&path.as_str()) {
        let m = if mods.is_empty() {
            String::new()
        } else {
            format!("|{}", mods.join("|"))
        };
        return Err(format!(
            "{path}{m}: {path} is an object in CloudTrail records; Sigma matches its serialised text, a pattern matches the values at one path"
        ));
    }
    let values: Vec<&Value> = match value {
        Value::Array(items) if items.is_empty() => {
            return Err(format!("{key}: an empty list of values"));
        }
        Value::Array(items) => items.iter().collect(),
        v => vec![v],
    };
    if all && values.len() > 1 {
        return Err(format!(
            "{key}: `all` needs every value on the one field, and a pattern holds one condition per field (several values are OR'ed)"
        ));
    }
    let mut atoms = Vec::new();
    let mut caveats = Vec::new();
    for v in values {
        if let Some(op) = special {
            atoms.push(match (op, v) {
                ("exists", Value::Bool(b)) => Atom::Exists(*b),
                ("exists", _) => return Err(format!("{key}: exists takes true or false")),
                ("cidr", Value::String(s)) => {
                    crate::pattern::Pattern::from_json(&json!({"x": [{"cidr": s}]}))
                        .map_err(|e| format!("{key}: {e}"))?;
                    Atom::Cidr(s.clone())
                }
                ("cidr", _) => return Err(format!("{key}: cidr takes a network")),
                (op, v) => {
                    let n = match v {
                        Value::Number(n) => n.as_f64(),
                        Value::String(s) => s.trim().parse().ok(),
                        _ => None,
                    }
                    .ok_or_else(|| format!("{key}: {v} is not a number"))?;
                    Atom::Numeric(op, n)
                }
            });
            continue;
        }
        match v {
            Value::Null => {
                if how.is_some() {
                    return Err(format!("{key}: null with a string modifier"));
                }
                atoms.push(Atom::Null);
            }
            Value::Bool(b) => {
                atoms.push(Atom::Typed(Value::Bool(*b)));
                atoms.push(Atom::Str {
                    text: b.to_string(),
                    cased: false,
                });
            }
            Value::Number(n) if how.is_none() => {
                atoms.push(Atom::Typed(Value::Number(n.clone())));
                atoms.push(Atom::Str {
                    text: n.to_string(),
                    cased: true,
                });
            }
            Value::Number(n) => atoms.extend(string_atoms(&path, &n.to_string(), how, cased)?),
            Value::String(s) => {
                if looks_like_a_field(s) {
                    caveats.push(format!(
                        "{path}: the value {s:?} names a CloudTrail field, but Sigma (and the pattern) compare with that text literally; comparing with the field's value would need |fieldref, which has no pattern equivalent"
                    ));
                }
                let a = string_atoms(&path, s, how, cased)?;
                for x in &a {
                    if let Atom::Wildcard {
                        pattern,
                        case_differs: true,
                    } = x
                    {
                        let what = match how {
                            Some(h) => format!("`{h}`"),
                            None => "wildcard match".into(),
                        };
                        caveats.push(format!(
                            "{path}: Sigma's {what} is case-insensitive, the wildcard {pattern:?} is not: values differing only in case are missed"
                        ));
                    }
                }
                atoms.extend(a);
            }
            Value::Array(_) | Value::Object(_) => {
                return Err(format!("{key}: a value is a list or a map"));
            }
        }
    }
    Ok(Term {
        path,
        atoms,
        caveats,
    })
}

/// A value such as `responseElements.accessKey.userName`: a field path written where a value
/// belongs (probably meant as a field reference).
fn looks_like_a_field(s: &str) -> bool {
    !s.contains(char::is_whitespace)
        && OBJECT_FIELDS.iter().any(|f| {
            s.strip_prefix(f)
                .is_some_and(|r| r.starts_with('.') && r.len() > 1)
        })
}

/// The pattern matchers of a term (any of them holds).
pub(crate) fn positive(t: &Term) -> Vec<Value> {
    let mut out = Vec::new();
    for a in &t.atoms {
        match a {
            Atom::Str { text, cased } => {
                if *cased || !has_letters(text) {
                    out.push(json!(text));
                } else {
                    out.push(json!({"equals-ignore-case": text}));
                }
            }
            Atom::Typed(v) => out.push(v.clone()),
            Atom::Prefix(p) => out.push(json!({"prefix": {"equals-ignore-case": p}})),
            Atom::Suffix(s) => out.push(json!({"suffix": {"equals-ignore-case": s}})),
            Atom::Wildcard { pattern, .. } => out.push(json!({"wildcard": pattern})),
            Atom::AnyValue => out.extend(any_value()),
            Atom::Null => {
                out.push(Value::Null);
                out.push(json!({"exists": false}));
            }
            Atom::Numeric(op, n) => out.push(json!({"numeric": [op, n]})),
            Atom::Cidr(c) => out.push(json!({"cidr": c})),
            Atom::Exists(b) => out.push(json!({"exists": b})),
        }
    }
    out.dedup();
    out
}

/// Any string, number or boolean (not null, not missing).
fn any_value() -> Vec<Value> {
    vec![
        json!({"wildcard": "*"}),
        json!({"numeric": [">=", f64::MIN]}),
        json!(true),
        json!(false),
    ]
}

/// The pattern matchers of `not term`, with the caveats of the negation; or why it has none.
pub(crate) fn negated(t: &Term) -> Result<(Vec<Value>, Vec<String>), String> {
    let path = &t.path;
    let mut caveats = t.caveats.clone();
    let missing = json!({"exists": false});
    let strs: Vec<&Atom> = t
        .atoms
        .iter()
        .filter(|a| !matches!(a, Atom::Typed(_)))
        .collect();
    let typed_too = strs.len() != t.atoms.len();
    let all = |f: fn(&Atom) -> bool| strs.iter().all(|a| f(a));
    let items = if all(|a| matches!(a, Atom::Str { cased: false, .. })) {
        let list: Vec<String> = strs
            .iter()
            .filter_map(|a| match a {
                Atom::Str { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect();
        if typed_too {
            caveats.push(format!(
                "not {path}: the negation excludes the strings; a JSON boolean or number {path} spelling the same value still matches"
            ));
        }
        vec![
            missing,
            json!({"anything-but": {"equals-ignore-case": list}}),
        ]
    } else if all(|a| matches!(a, Atom::Str { cased: true, .. })) && !typed_too {
        let list: Vec<&String> = strs
            .iter()
            .filter_map(|a| match a {
                Atom::Str { text, .. } => Some(text),
                _ => None,
            })
            .collect();
        vec![missing, json!({"anything-but": list})]
    } else if all(|a| matches!(a, Atom::Prefix(_) | Atom::Suffix(_))) {
        let prefixes: Vec<&String> = strs
            .iter()
            .filter_map(|a| match a {
                Atom::Prefix(p) => Some(p),
                _ => None,
            })
            .collect();
        let suffixes: Vec<&String> = strs
            .iter()
            .filter_map(|a| match a {
                Atom::Suffix(p) => Some(p),
                _ => None,
            })
            .collect();
        if !prefixes.is_empty() && !suffixes.is_empty() {
            return Err(format!(
                "not {path}: negating both startswith and endswith values on one field has no pattern equivalent"
            ));
        }
        if strs.iter().any(|a| match a {
            Atom::Prefix(s) | Atom::Suffix(s) => has_letters(s),
            _ => false,
        }) {
            caveats.push(format!(
                "not {path}: Sigma's startswith/endswith are case-insensitive, anything-but prefix/suffix is not"
            ));
        }
        if prefixes.is_empty() {
            vec![missing, json!({"anything-but": {"suffix": suffixes}})]
        } else {
            vec![missing, json!({"anything-but": {"prefix": prefixes}})]
        }
    } else if all(|a| matches!(a, Atom::Wildcard { .. })) {
        let list: Vec<&String> = strs
            .iter()
            .filter_map(|a| match a {
                Atom::Wildcard { pattern, .. } => Some(pattern),
                _ => None,
            })
            .collect();
        vec![missing, json!({"anything-but": {"wildcard": list}})]
    } else if t.atoms == [Atom::AnyValue] {
        vec![missing, Value::Null]
    } else if t.atoms == [Atom::Null] {
        any_value()
    } else if let [Atom::Exists(b)] = t.atoms.as_slice() {
        vec![json!({"exists": !b})]
    } else {
        return Err(format!(
            "not {path}: negating values of different kinds (exact, wildcard, numeric, ...) on one field has no pattern equivalent"
        ));
    };
    if !SCALAR_FIELDS.contains(&path.as_str()) {
        caveats.push(format!(
            "not {path}: if {path} holds an array, Sigma's `not` needs no element to match, while the pattern holds when any element differs"
        ));
    }
    Ok((items, caveats))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pos(key: &str, v: Value) -> Value {
        Value::Array(positive(&term(key, &v).unwrap()))
    }

    #[test]
    fn values_translate_by_modifier() {
        assert_eq!(
            pos("eventName", json!("DeleteTrail")),
            json!([{"equals-ignore-case": "DeleteTrail"}])
        );
        assert_eq!(
            pos("responseElements.publiclyAccessible", json!("true")),
            json!([{"equals-ignore-case": "true"}, true])
        );
        assert_eq!(
            pos("eventName|startswith", json!("Update")),
            json!([{"prefix": {"equals-ignore-case": "Update"}}])
        );
        assert_eq!(
            pos("eventName", json!("list*")),
            json!([{"prefix": {"equals-ignore-case": "list"}}])
        );
        assert_eq!(
            pos("x|contains", json!("*")),
            json!([{"wildcard": "*"}, {"numeric": [">=", f64::MIN]}, true, false])
        );
        assert_eq!(
            pos("errorCode", Value::Null),
            json!([null, {"exists": false}])
        );
        let t = term("userAgent|contains", &json!("S3 Browser")).unwrap();
        assert_eq!(
            Value::Array(positive(&t)),
            json!([{"wildcard": "*S3 Browser*"}])
        );
        assert!(t.caveats[0].contains("case-insensitive"), "{:?}", t.caveats);
        let t = term("x|contains", &json!("a*b\\*c")).unwrap();
        assert_eq!(
            Value::Array(positive(&t)),
            json!([{"wildcard": "*a*b\\*c*"}])
        );
        assert!(
            term("x|contains", &json!("1.2"))
                .unwrap()
                .caveats
                .is_empty()
        );
    }

    #[test]
    fn untranslatable_fields_are_refused_with_the_reason() {
        for (k, v, want) in [
            ("a|re", json!(".+x"), "regular expression"),
            ("a|fieldref", json!("b"), "with constants only"),
            ("requestParameters|contains", json!("x"), "is an object"),
            (
                "a|contains|all",
                json!(["x", "y"]),
                "`all` needs every value",
            ),
            ("a", json!("a?c"), "`?`"),
            ("a|base64offset", json!("x"), "modifier"),
        ] {
            let e = term(k, &v).unwrap_err();
            assert!(e.contains(want), "{k}: {e}");
        }
    }

    #[test]
    fn negations_also_match_a_missing_field() {
        let (items, cav) =
            negated(&term("userIdentity.type", &json!("AssumedRole")).unwrap()).unwrap();
        assert_eq!(
            Value::Array(items),
            json!([{"exists": false}, {"anything-but": {"equals-ignore-case": ["AssumedRole"]}}])
        );
        assert!(cav.is_empty());
        let (_, cav) = negated(&term("requestParameters.x", &json!("a")).unwrap()).unwrap();
        assert!(cav[0].contains("holds an array"), "{cav:?}");
    }
}
