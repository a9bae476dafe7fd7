//! `${VAR}` interpolation in configuration text, as platform teams template files.
//!
//! Rules:
//! - `${NAME}` is replaced by the variable's value; a variable that is not set is an error
//!   naming it and its line.
//! - `${NAME:-default}` is replaced by the value, or by `default` when the variable is unset
//!   or empty.
//! - `$${` is a literal `${` (nothing is looked up).
//! - A `$` not followed by `{` is left as it is.
//! - NAME is ASCII letters, digits and `_`, not starting with a digit.
//! - Comments (from a `#` outside quotes to the end of the line) are copied untouched.
//! - Inside a basic string (`"..."`), a value's `"` and `\` are escaped so that it stays one
//!   string; inside a literal string (`'...'`) a value holding `'` or a line break is an error.
//!   Outside strings the value is inserted as it is (a number: `max_in_flight = ${N:-32}`).
//!
//! The function is pure: the caller gives the lookup (the process environment in practice).

/// The text with every reference replaced, or every problem found (each naming its line).
pub fn interpolate(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, Vec<String>> {
    let mut out = String::with_capacity(text.len());
    let mut problems = Vec::new();
    for (n, line) in text.split_inclusive('\n').enumerate() {
        interpolate_line(line, n + 1, &lookup, &mut out, &mut problems);
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Basic,
    Literal,
}

fn interpolate_line(
    line: &str,
    lineno: usize,
    lookup: &impl Fn(&str) -> Option<String>,
    out: &mut String,
    problems: &mut Vec<String>,
) {
    let mut quote = Quote::None;
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        match c {
            '#' if quote == Quote::None => {
                out.push_str(rest);
                return;
            }
            '\\' if quote == Quote::Basic => {
                // An escape: copy it and the character it escapes.
                let mut it = rest.char_indices();
                it.next();
                let end = it.next().map_or(rest.len(), |(i, ch)| i + ch.len_utf8());
                out.push_str(&rest[..end]);
                rest = &rest[end..];
                continue;
            }
            '"' => match quote {
                Quote::None => quote = Quote::Basic,
                Quote::Basic => quote = Quote::None,
                Quote::Literal => {}
            },
            '\'' => match quote {
                Quote::None => quote = Quote::Literal,
                Quote::Literal => quote = Quote::None,
                Quote::Basic => {}
            },
            '$' if rest.starts_with("$${") => {
                out.push_str("${");
                rest = &rest[3..];
                continue;
            }
            '$' if rest.starts_with("${") => {
                let Some(close) = rest.find('}') else {
                    problems.push(format!(
                        "line {lineno}: `${{` without a closing `}}` (write `$${{` for a literal `${{`)"
                    ));
                    out.push_str(rest);
                    return;
                };
                let inner = &rest[2..close];
                rest = &rest[close + 1..];
                let (name, default) = match inner.split_once(":-") {
                    Some((n, d)) => (n, Some(d)),
                    None => (inner, None),
                };
                if !valid_name(name) {
                    problems.push(format!(
                        "line {lineno}: `${{{inner}}}`: {name:?} is not a variable name (letters, digits and _, not starting with a digit)"
                    ));
                    continue;
                }
                let value = match (lookup(name).filter(|v| !v.is_empty()), default) {
                    (Some(v), _) => v,
                    (None, Some(d)) => d.to_owned(),
                    (None, None) => {
                        problems.push(format!(
                            "line {lineno}: the environment variable {name} is not set (set it, or give a default: ${{{name}:-VALUE}})"
                        ));
                        continue;
                    }
                };
                match quote {
                    Quote::Basic => {
                        for ch in value.chars() {
                            match ch {
                                '"' => out.push_str("\\\""),
                                '\\' => out.push_str("\\\\"),
                                '\n' => out.push_str("\\n"),
                                _ => out.push(ch),
                            }
                        }
                    }
                    Quote::Literal if value.contains(['\'', '\n']) => problems.push(format!(
                        "line {lineno}: the value of {name} holds a ' or a line break, which a '...' string cannot: use \"...\""
                    )),
                    _ => out.push_str(&value),
                }
                continue;
            }
            _ => {}
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "DATA" => Some("/var/lib/orgtrail".into()),
            "N" => Some("32".into()),
            "EMPTY" => Some(String::new()),
            "QUOTED" => Some("a\"b\\c".into()),
            _ => None,
        }
    }

    #[test]
    fn set_variables_are_replaced() {
        let t = "data_dir = \"${DATA}/data\"\nmax = ${N}\n";
        assert_eq!(
            interpolate(t, env).unwrap(),
            "data_dir = \"/var/lib/orgtrail/data\"\nmax = 32\n"
        );
    }

    #[test]
    fn defaults_apply_when_unset_or_empty() {
        let t =
            "a = \"${UNSET:-x y}\"\nb = \"${EMPTY:-d}\"\nc = \"${DATA:-no}\"\nd = ${UNSET:-7}\n";
        assert_eq!(
            interpolate(t, env).unwrap(),
            "a = \"x y\"\nb = \"d\"\nc = \"/var/lib/orgtrail\"\nd = 7\n"
        );
    }

    #[test]
    fn unset_variables_are_all_named_with_their_lines() {
        let t = "a = 1\nb = \"${MISSING_ONE}\"\nc = \"${MISSING_TWO}\"\n";
        let e = interpolate(t, env).unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("line 2:") && e[0].contains("MISSING_ONE"),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("line 3:") && e[1].contains("MISSING_TWO"),
            "{e:?}"
        );
    }

    #[test]
    fn dollar_dollar_brace_is_a_literal() {
        let t = "a = \"$${DATA} costs $5\"\n";
        assert_eq!(interpolate(t, env).unwrap(), "a = \"${DATA} costs $5\"\n");
    }

    #[test]
    fn comments_are_left_alone() {
        let t = "# ${NOT_SET} is fine here\na = \"#${N}\" # ${ALSO_NOT_SET}\n";
        assert_eq!(
            interpolate(t, env).unwrap(),
            "# ${NOT_SET} is fine here\na = \"#32\" # ${ALSO_NOT_SET}\n"
        );
    }

    #[test]
    fn values_stay_inside_their_string() {
        let t = "a = \"${QUOTED}\"\n";
        let out = interpolate(t, env).unwrap();
        assert_eq!(out, "a = \"a\\\"b\\\\c\"\n");
        assert!(interpolate("a = '${QUOTED}'\nb = 'ok'\n", |_| Some("it's".into())).is_err());
    }

    #[test]
    fn malformed_references_are_refused() {
        assert!(interpolate("a = \"${DATA\"\n", env).is_err());
        assert!(interpolate("a = \"${1X}\"\n", env).is_err());
        assert!(interpolate("a = \"${}\"\n", env).is_err());
    }
}
