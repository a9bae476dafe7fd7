//! A translated Sigma rule as an orgtrail YAML rule file: a comment with the attribution DRL
//! 1.1 asks for and the translation's caveats, then the rule, whose `origin` keeps the Sigma
//! rule's id, title, author, references and false positives.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::Translated;
use crate::rule::{Origin, Rule};
use crate::threshold::ThresholdSpec;

#[derive(Serialize)]
struct File<'a> {
    id: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    description: &'a str,
    severity: &'a str,
    pattern: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    threshold: Option<&'a ThresholdSpec>,
    origin: &'a Origin,
}

fn as_json(r: &Translated) -> Value {
    let mut v = serde_json::json!({
        "id": r.id,
        "name": r.name,
        "description": r.description,
        "severity": r.severity.as_str(),
        "pattern": r.pattern,
        "origin": r.origin,
    });
    if let Some(t) = &r.threshold {
        v["threshold"] = serde_json::json!(t);
    }
    v
}

/// Whether the rule passes the checks a rule file gets.
pub(crate) fn check(r: &Translated) -> Result<Rule, String> {
    Rule::from_json(&as_json(r), Path::new("sigma")).map_err(|e| e.reason)
}

/// The rule file's text.
pub fn render(r: &Translated) -> Result<String, String> {
    let body = serde_saphyr::to_string(&File {
        id: &r.id,
        name: &r.name,
        description: &r.description,
        severity: r.severity.as_str(),
        pattern: &r.pattern,
        threshold: r.threshold.as_ref(),
        origin: &r.origin,
    })
    .map_err(|e| e.to_string())?;
    let mut head = String::new();
    head.push_str(&format!(
        "# Translated by `orgtrail rules import-sigma` from {}.\n",
        r.origin.file.as_deref().unwrap_or("a Sigma rule")
    ));
    if let Some(a) = &r.origin.attribution {
        head.push_str(&format!("# {a}\n"));
    }
    match r.origin.caveats.as_slice() {
        [] => head.push_str("# Translation: exact.\n"),
        cs => {
            head.push_str("# Translation: with caveats:\n");
            for c in cs {
                head.push_str(&format!("#   - {c}\n"));
            }
        }
    }
    Ok(format!("{head}{body}"))
}

/// Writes one file per translated rule into `out` (created if missing), named after the Sigma
/// file (`aws_root_account_usage.yml` -> `aws_root_account_usage.yaml`). Returns the files.
pub fn write_all(rules: &[&Translated], out: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out)?;
    let mut written: Vec<PathBuf> = Vec::new();
    for r in rules {
        let stem = r
            .origin
            .file
            .as_deref()
            .map(Path::new)
            .and_then(|f| f.file_stem())
            .and_then(|s| s.to_str())
            .unwrap_or(&r.id)
            .to_owned();
        let mut path = out.join(format!("{stem}.yaml"));
        if written.contains(&path) {
            path = out.join(format!("{stem}-{}.yaml", r.id));
        }
        let text = render(r).map_err(std::io::Error::other)?;
        std::fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}
