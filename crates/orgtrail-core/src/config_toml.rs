//! Reading a TOML configuration so that every problem in it is reported at once, each with its
//! line, rather than only the first one serde meets.
//!
//! A syntax error is reported alone (what follows it cannot be read reliably). Otherwise the
//! document is deserialized; each time a value is refused, the problem is kept, the lines that
//! hold that value are blanked (line numbers stay as written), and deserializing starts again,
//! until the document deserializes or a problem cannot be stepped over (a missing field of the
//! top level). The problems keep `toml`'s own wording: the line, the column and the text.

use serde::de::DeserializeOwned;

/// Most problems reported for one file: past this the rest are not looked for.
const MOST_PROBLEMS: usize = 20;

/// Deserializes `text`, or returns every problem found in it.
pub fn from_toml_all<T: DeserializeOwned>(text: &str) -> Result<T, Vec<String>> {
    if text.parse::<toml::Table>().is_err() {
        // Not a plain TOML table (a syntax error, or an integer past i64 that `T` may still
        // read into a u64): read into `T` as is, which reports the one error there is.
        return toml::from_str::<T>(text).map_err(|e| vec![e.to_string().trim_end().to_owned()]);
    }
    let mut text = text.to_owned();
    let mut problems: Vec<String> = Vec::new();
    // Keys whose lines were blanked: a field then missing is no problem of its own.
    let mut blanked: Vec<String> = Vec::new();
    loop {
        match toml::from_str::<T>(&text) {
            Ok(v) if problems.is_empty() => return Ok(v),
            Ok(_) => return Err(by_line(problems)),
            Err(e) => {
                let missing = e
                    .message()
                    .strip_prefix("missing field `")
                    .and_then(|m| m.split('`').next());
                if missing.is_none_or(|f| !blanked.iter().any(|b| b == f)) {
                    problems.push(e.to_string().trim_end().to_owned());
                }
                let stepped = e
                    .span()
                    .and_then(|span| blank(&mut text, span, missing.is_some()))
                    .map(|key| blanked.push(key))
                    .is_some();
                if !stepped || problems.len() >= MOST_PROBLEMS {
                    return Err(by_line(problems));
                }
            }
        }
    }
}

/// The problems in the order of their lines (serde meets them in another order).
fn by_line(mut problems: Vec<String>) -> Vec<String> {
    problems.sort_by_key(|p| {
        p.split_once("line ")
            .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(usize::MAX)
    });
    problems
}

/// Blanks the lines that `span` touches, keeping every newline: for a table missing a field,
/// the whole table (its header points at it). False when that would change nothing, or when the
/// missing field is the top level's (nothing can be stepped over). Returns the key blanked: the
/// value's key, or the table's name.
fn blank(text: &mut String, span: std::ops::Range<usize>, missing: bool) -> Option<String> {
    let span = span.start.min(text.len())..span.end.min(text.len());
    let start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
    let mut end = text[span.end..]
        .find('\n')
        .map_or(text.len(), |i| span.end + i);
    let at_header = text[start..].trim_start().starts_with('[');
    if !missing && at_header {
        // A value's error reported at a table's header (serde loses the place inside
        // internally tagged enums): blanking the header would move its keys into the table
        // before it and report them wrongly. Stop here.
        return None;
    }
    if missing {
        if !at_header {
            return None;
        }
        // The table runs to the next header.
        let mut at = end;
        while at < text.len() {
            let next = text[at + 1..].find('\n').map_or(text.len(), |i| at + 1 + i);
            if text[at + 1..next].trim_start().starts_with('[') {
                break;
            }
            at = next;
        }
        end = at;
    }
    let first = text[start..end].lines().next().unwrap_or_default().trim();
    let key = match first.strip_prefix('[') {
        Some(header) => header.trim_matches(['[', ']', ' ']).rsplit('.').next(),
        None => first.split('=').next(),
    }
    .map(|k| k.trim().trim_matches('"').to_owned())
    .filter(|k| !k.is_empty())?;
    let blanked: String = text[start..end]
        .chars()
        .map(|c| if c == '\n' { '\n' } else { ' ' })
        .collect();
    text.replace_range(start..end, &blanked);
    Some(key)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Cfg {
        name: String,
        #[serde(default)]
        port: u16,
        tls: Tls,
        #[serde(default)]
        limits: Limits,
        #[serde(default)]
        items: Vec<Item>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Tls {
        cert: String,
        key: String,
    }
    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    #[allow(dead_code)]
    struct Limits {
        max: u32,
        min: u32,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        size: u32,
    }

    #[test]
    fn a_good_document_deserializes() {
        let c: Cfg = from_toml_all("name = \"a\"\n[tls]\ncert = \"c\"\nkey = \"k\"\n").unwrap();
        assert_eq!(c.tls.key, "k");
    }

    #[test]
    fn every_wrong_value_is_reported_with_its_line() {
        let text = "name = \"a\"\nport = \"x\"\ncolour = 1\n[tls]\ncert = \"c\"\nkey = 5\n[limits]\nmax = -1\nmin = \"two\"\n[[items]]\nsize = 1\n[[items]]\nsize = true\n";
        let p = from_toml_all::<Cfg>(text).unwrap_err();
        let all = p.join("\n---\n");
        eprintln!("{all}");
        for (line, what) in [
            (2, "port"),
            (3, "colour"),
            (6, "key"),
            (8, "max"),
            (9, "min"),
            (13, "size"),
        ] {
            assert!(
                p.iter().any(|x| x.contains(&format!("line {line}"))),
                "line {line} ({what}) in:\n{all}"
            );
        }
        assert_eq!(p.len(), 6, "{all}");
        assert!(p[0].contains("line 2") && p[5].contains("line 13"), "{all}");
    }

    #[test]
    fn a_missing_field_is_reported_and_the_rest_still_checked() {
        let text = "name = \"a\"\nport = \"x\"\n[tls]\ncert = \"c\"\n";
        let p = from_toml_all::<Cfg>(text).unwrap_err();
        let all = p.join("\n---\n");
        eprintln!("{all}");
        assert!(all.contains("missing field `key`"), "{all}");
        assert!(all.contains("line 2"), "{all}");
    }

    #[test]
    fn an_error_placed_at_a_table_header_is_reported_without_a_cascade() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields, tag = "type", rename_all = "snake_case")]
        #[allow(dead_code)]
        enum Source {
            A { path: String },
            B { path: String },
        }
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct WithSources {
            tls: Tls,
            source: Option<Source>,
            #[serde(default)]
            sources: Vec<Source>,
        }
        let text = "[tls]\ncert = \"c\"\nkey = \"k\"\n[source]\ntype = \"a\"\npath = \"p\"\n[[sources]]\ntype = \"b\"\npath = \"q\"\nzz = 1\n";
        let p = from_toml_all::<WithSources>(text).unwrap_err();
        let all = p.join("\n---\n");
        assert_eq!(p.len(), 1, "{all}");
        assert!(all.contains("unknown field `zz`"), "{all}");
    }

    #[test]
    fn a_syntax_error_is_reported_alone() {
        let p = from_toml_all::<Cfg>("name = \"a\nport = 1\n").unwrap_err();
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("line 1"), "{p:?}");
    }
}
