//! Sigma conditions: `selection`, `1 of selection_*`, `all of them`, `and`, `or`, `not`,
//! parentheses, and after a `|` an aggregation (`count() > N`, `count() by f1, f2 >= N`).

/// A condition's boolean part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cond {
    /// A search identifier.
    Name(String),
    /// `1 of X` / `any of X` (`all == false`) or `all of X`; `X` a name with `*` wildcards,
    /// or `them`.
    Of {
        all: bool,
        names: String,
    },
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Not(Box<Cond>),
}

/// `| count() [by f, ...] OP N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Aggregation {
    pub(crate) by: Vec<String>,
    /// `count()` is more than this.
    pub(crate) more_than: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Open,
    Close,
    Word(String),
}

fn tokens(s: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in s.chars() {
        match c {
            '(' | ')' => {
                if !word.is_empty() {
                    out.push(Tok::Word(std::mem::take(&mut word)));
                }
                out.push(if c == '(' { Tok::Open } else { Tok::Close });
            }
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    out.push(Tok::Word(std::mem::take(&mut word)));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        out.push(Tok::Word(word));
    }
    out
}

/// Parses a condition: its boolean part and its aggregation, if any. The error says what is
/// not understood.
pub(crate) fn parse(text: &str) -> Result<(Cond, Option<Aggregation>), String> {
    let (boolean, agg) = match text.split_once('|') {
        Some((b, a)) => (b, Some(aggregation(a.trim())?)),
        None => (text, None),
    };
    let toks = tokens(boolean);
    let mut p = Parser { toks: &toks, at: 0 };
    let c = p.or()?;
    if p.at != toks.len() {
        return Err(format!(
            "condition {:?}: unexpected {:?}",
            text.trim(),
            toks[p.at]
        ));
    }
    Ok((c, agg))
}

fn aggregation(a: &str) -> Result<Aggregation, String> {
    let lower = a.to_ascii_lowercase();
    if lower.starts_with("near") {
        return Err(format!(
            "`| {a}`: `near` correlates events of different selections in time; orgtrail counts events of one pattern"
        ));
    }
    let Some(rest) = lower.strip_prefix("count(") else {
        return Err(format!(
            "aggregation `| {a}`: only count() is supported (not min, max, avg, sum)"
        ));
    };
    let Some((inner, rest)) = rest.split_once(')') else {
        return Err(format!("aggregation `| {a}`: count( is not closed"));
    };
    if !inner.trim().is_empty() {
        return Err(format!(
            "aggregation `| {a}`: count({}) counts distinct values; orgtrail counts events",
            inner.trim()
        ));
    }
    // Keep the original case of field names after `by`.
    let original_rest = &a[a.len() - rest.len()..];
    let mut words = original_rest.trim();
    let mut by = Vec::new();
    if words.to_ascii_lowercase().starts_with("by ") {
        words = words[3..].trim_start();
        let end = words
            .find(['>', '<', '='])
            .ok_or_else(|| format!("aggregation `| {a}`: no comparison"))?;
        by = words[..end]
            .split(',')
            .map(|f| f.trim().to_owned())
            .filter(|f| !f.is_empty())
            .collect();
        words = &words[end..];
    }
    let (op, n) = if let Some(n) = words.strip_prefix(">=") {
        (">=", n)
    } else if let Some(n) = words.strip_prefix('>') {
        (">", n)
    } else {
        return Err(format!(
            "aggregation `| {a}`: only `> N` and `>= N` are supported (a rule fires on events that happen, not on their absence)"
        ));
    };
    let n: u64 = n
        .trim()
        .parse()
        .map_err(|_| format!("aggregation `| {a}`: {:?} is not a count", n.trim()))?;
    let more_than = match op {
        ">" => n,
        _ if n == 0 => {
            return Err(format!(
                "aggregation `| {a}`: count() >= 0 holds for no event at all"
            ));
        }
        _ => n - 1,
    };
    Ok(Aggregation { by, more_than })
}

struct Parser<'t> {
    toks: &'t [Tok],
    at: usize,
}

impl Parser<'_> {
    fn peek_word(&self) -> Option<String> {
        match self.toks.get(self.at) {
            Some(Tok::Word(w)) => Some(w.to_ascii_lowercase()),
            _ => None,
        }
    }

    fn or(&mut self) -> Result<Cond, String> {
        let mut parts = vec![self.and()?];
        while self.peek_word().as_deref() == Some("or") {
            self.at += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Cond::Or(parts)
        })
    }

    fn and(&mut self) -> Result<Cond, String> {
        let mut parts = vec![self.not()?];
        while self.peek_word().as_deref() == Some("and") {
            self.at += 1;
            parts.push(self.not()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Cond::And(parts)
        })
    }

    fn not(&mut self) -> Result<Cond, String> {
        if self.peek_word().as_deref() == Some("not") {
            self.at += 1;
            return Ok(Cond::Not(Box::new(self.not()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Cond, String> {
        match self.toks.get(self.at) {
            Some(Tok::Open) => {
                self.at += 1;
                let c = self.or()?;
                if self.toks.get(self.at) != Some(&Tok::Close) {
                    return Err("condition: a parenthesis is not closed".into());
                }
                self.at += 1;
                Ok(c)
            }
            Some(Tok::Word(w)) => {
                let lower = w.to_ascii_lowercase();
                if matches!(lower.as_str(), "and" | "or" | ")") {
                    return Err(format!("condition: {w:?} where a selection was expected"));
                }
                self.at += 1;
                if matches!(lower.as_str(), "1" | "any" | "all")
                    && self.peek_word().as_deref() == Some("of")
                {
                    self.at += 1;
                    let Some(Tok::Word(names)) = self.toks.get(self.at) else {
                        return Err(format!("condition: `{w} of` names no selection"));
                    };
                    self.at += 1;
                    return Ok(Cond::Of {
                        all: lower == "all",
                        names: names.clone(),
                    });
                }
                if lower.parse::<u64>().is_ok() && self.peek_word().as_deref() == Some("of") {
                    return Err(format!(
                        "condition: `{w} of` (at least {w} of several selections) has no pattern equivalent"
                    ));
                }
                Ok(Cond::Name(w.clone()))
            }
            Some(Tok::Close) => Err("condition: an unexpected `)`".into()),
            None => Err("condition: it ends where a selection was expected".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn name(s: &str) -> Cond {
        Cond::Name(s.into())
    }

    #[test]
    fn conditions_parse_with_precedence() {
        let (c, a) = parse("selection and not 1 of filter_* or other").unwrap();
        assert_eq!(a, None);
        assert_eq!(
            c,
            Cond::Or(vec![
                Cond::And(vec![
                    name("selection"),
                    Cond::Not(Box::new(Cond::Of {
                        all: false,
                        names: "filter_*".into()
                    }))
                ]),
                name("other")
            ])
        );
        let (c, _) = parse("a and (b or c)").unwrap();
        assert_eq!(
            c,
            Cond::And(vec![name("a"), Cond::Or(vec![name("b"), name("c")])])
        );
    }

    #[test]
    fn aggregations_parse_and_the_rest_is_refused_with_a_reason() {
        let (_, a) = parse("selection | count() > 10").unwrap();
        assert_eq!(
            a,
            Some(Aggregation {
                by: vec![],
                more_than: 10
            })
        );
        let (_, a) =
            parse("selection | count() by sourceIPAddress, userIdentity.arn >= 5").unwrap();
        assert_eq!(
            a,
            Some(Aggregation {
                by: vec!["sourceIPAddress".into(), "userIdentity.arn".into()],
                more_than: 4
            })
        );
        for (c, want) in [
            ("s1 | near s2", "`near`"),
            ("s | count(userName) > 1", "distinct"),
            ("s | count() < 3", "only `> N`"),
            ("s | max(x) > 3", "only count()"),
            ("a and", "ends where"),
            ("(a", "not closed"),
        ] {
            let e = parse(c).unwrap_err();
            assert!(e.contains(want), "{c}: {e}");
        }
    }
}
