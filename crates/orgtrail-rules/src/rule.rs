//! Rules: a pattern with an id, a name, a description, a severity and the alert sinks it goes
//! to, kept one per file in a directory.
//!
//! A rule file is TOML (`.toml`) or JSON (`.json`). Only `id` and `pattern` are required:
//!
//! ```toml
//! id = "root-console-login"                # letters, digits, '-', '_', '.'; unique in the directory
//! name = "Root user signed in to the console"  # default: the id
//! description = "..."                      # default: empty
//! severity = "high"                        # info | low | medium (default) | high | critical
//! actions = ["soc-webhook"]                # alert sinks by name; default: every configured sink
//! enabled = true                           # default: true
//!
//! [pattern]                                # an EventBridge pattern, record or envelope form
//! eventName = ["ConsoleLogin"]
//! userIdentity = { type = ["Root"] }
//! ```
//!
//! ```json
//! {"id": "root-console-login", "pattern": {"detail": {"userIdentity": {"type": ["Root"]}}}}
//! ```
//!
//! Files with other extensions, and hidden files, are ignored. Loading a directory reports
//! every bad file at once, each with the reason; a set with any bad file is refused whole, so
//! that a collector keeps the rules it had.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::cloudtrail::CloudTrailRules;
use crate::pattern::Pattern;

/// How serious a rule's alerts are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    #[default]
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// A rule file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    severity: Severity,
    #[serde(default)]
    actions: Option<Vec<String>>,
    #[serde(default = "yes")]
    enabled: bool,
    pattern: Value,
}

fn yes() -> bool {
    true
}

/// A checked rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub name: String,
    pub description: String,
    pub severity: Severity,
    /// Alert sinks by name; `None`: every configured sink.
    pub actions: Option<Vec<String>>,
    pub enabled: bool,
    pub pattern: Pattern,
    /// Where it was read from.
    pub file: PathBuf,
}

/// Why a rule file was refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {reason}", file.display())]
pub struct RuleFileError {
    pub file: PathBuf,
    pub reason: String,
}

/// The longest id: ids are in alert ids, metrics labels and file names.
const MAX_ID: usize = 128;

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Rule {
    /// Reads and checks one rule file.
    pub fn from_file(file: &Path) -> Result<Rule, RuleFileError> {
        let fail = |reason: String| RuleFileError {
            file: file.to_owned(),
            reason,
        };
        let text =
            std::fs::read_to_string(file).map_err(|e| fail(format!("cannot read it: {e}")))?;
        let raw: RuleFile = match file.extension().and_then(|e| e.to_str()) {
            Some("json") => serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?,
            Some("toml") => {
                toml::from_str(&text).map_err(|e| fail(e.to_string().trim_end().to_owned()))?
            }
            _ => return Err(fail("a rule file is .toml or .json".into())),
        };
        Rule::from_raw(raw, file).map_err(fail)
    }

    /// Checks one rule given as JSON (the shape of a JSON rule file).
    pub fn from_json(v: &Value, file: &Path) -> Result<Rule, RuleFileError> {
        let raw: RuleFile = serde_json::from_value(v.clone()).map_err(|e| RuleFileError {
            file: file.to_owned(),
            reason: e.to_string(),
        })?;
        Rule::from_raw(raw, file).map_err(|reason| RuleFileError {
            file: file.to_owned(),
            reason,
        })
    }

    fn from_raw(raw: RuleFile, file: &Path) -> Result<Rule, String> {
        if !valid_id(&raw.id) {
            return Err(format!(
                "id {:?}: use 1 to {MAX_ID} letters, digits, '-', '_' or '.'",
                raw.id
            ));
        }
        let pattern = Pattern::from_json(&raw.pattern).map_err(|e| format!("pattern: {e}"))?;
        // Checked in the form it will run in: an envelope pattern must map onto the record.
        crate::cloudtrail::onto_record(pattern.clone()).map_err(|e| format!("pattern: {e}"))?;
        if let Some(a) = &raw.actions
            && let Some(bad) = a.iter().find(|n| n.is_empty())
        {
            return Err(format!("actions: {bad:?} is not a sink name"));
        }
        Ok(Rule {
            name: raw.name.unwrap_or_else(|| raw.id.clone()),
            id: raw.id,
            description: raw.description,
            severity: raw.severity,
            actions: raw.actions,
            enabled: raw.enabled,
            pattern,
            file: file.to_owned(),
        })
    }
}

/// The rules of a directory, compiled.
#[derive(Debug)]
pub struct RuleSet {
    /// Enabled and disabled, sorted by id.
    pub rules: Vec<Rule>,
    /// The enabled rules; match numbers index `enabled`.
    matcher: CloudTrailRules,
    enabled: Vec<usize>,
}

impl RuleSet {
    /// Compiles checked rules; ids must be unique.
    pub fn new(mut rules: Vec<Rule>) -> Result<RuleSet, Vec<RuleFileError>> {
        rules.sort_by(|a, b| a.id.cmp(&b.id));
        let mut problems = Vec::new();
        for w in rules.windows(2) {
            if w[0].id == w[1].id {
                problems.push(RuleFileError {
                    file: w[1].file.clone(),
                    reason: format!("id {:?} is also the id of {}", w[1].id, w[0].file.display()),
                });
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let enabled: Vec<usize> = (0..rules.len()).filter(|i| rules[*i].enabled).collect();
        let matcher =
            CloudTrailRules::new(enabled.iter().map(|i| rules[*i].pattern.clone()).collect())
                .map_err(|(i, e)| {
                    vec![RuleFileError {
                        file: rules[enabled[i]].file.clone(),
                        reason: format!("pattern: {e}"),
                    }]
                })?;
        Ok(RuleSet {
            rules,
            matcher,
            enabled,
        })
    }

    /// Loads `source`: a built-in pack written `pack:NAME` (`pack:cis`), or a directory.
    pub fn load(source: &str) -> Result<RuleSet, Vec<RuleFileError>> {
        match source.strip_prefix("pack:") {
            Some(name) => match crate::packs::pack(name) {
                Some(rules) => RuleSet::new(rules?),
                None => Err(vec![RuleFileError {
                    file: PathBuf::from(source),
                    reason: format!(
                        "no built-in pack {name:?} (packs: {})",
                        crate::packs::PACKS.join(", ")
                    ),
                }]),
            },
            None => RuleSet::load_dir(Path::new(source)),
        }
    }

    /// Loads every rule file of `dir` (`.toml`, `.json`; hidden files ignored), or every problem.
    pub fn load_dir(dir: &Path) -> Result<RuleSet, Vec<RuleFileError>> {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            vec![RuleFileError {
                file: dir.to_owned(),
                reason: format!("cannot read the rules directory: {e}"),
            }]
        })?;
        let mut files: Vec<PathBuf> = Vec::new();
        let mut problems = Vec::new();
        for entry in entries {
            match entry {
                Ok(e) => {
                    let path = e.path();
                    let hidden = path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with('.'));
                    let ext = path.extension().and_then(|x| x.to_str());
                    if !hidden && matches!(ext, Some("toml" | "json")) && path.is_file() {
                        files.push(path);
                    }
                }
                Err(e) => problems.push(RuleFileError {
                    file: dir.to_owned(),
                    reason: format!("cannot list the rules directory: {e}"),
                }),
            }
        }
        files.sort();
        let mut rules = Vec::new();
        for f in &files {
            match Rule::from_file(f) {
                Ok(r) => rules.push(r),
                Err(e) => problems.push(e),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        RuleSet::new(rules)
    }

    /// The rules that match a CloudTrail record, by position in [`RuleSet::rules`], ascending.
    pub fn matches(&self, record: &Value, out: &mut Vec<usize>) {
        self.matcher.matches(record, out);
        for m in out.iter_mut() {
            *m = self.enabled[*m];
        }
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn a_directory_loads_with_defaults_and_every_bad_file_is_named() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "root.toml",
            "id = \"root-login\"\nseverity = \"high\"\n[pattern]\neventName = [\"ConsoleLogin\"]\nuserIdentity = { type = [\"Root\"] }\n",
        );
        write(
            d.path(),
            "min.json",
            r#"{"id": "min", "pattern": {"detail": {"eventName": ["DeleteTrail"]}}}"#,
        );
        write(d.path(), "notes.txt", "ignored");
        write(d.path(), ".hidden.json", "ignored");
        let set = RuleSet::load_dir(d.path()).unwrap();
        assert_eq!(set.len(), 2);
        let min = set.rules.iter().find(|r| r.id == "min").unwrap();
        assert_eq!(min.name, "min");
        assert_eq!(min.severity, Severity::Medium);
        assert!(min.enabled && min.actions.is_none());
        let mut out = Vec::new();
        set.matches(&serde_json::json!({"eventName": "DeleteTrail", "eventSource": "cloudtrail.amazonaws.com"}), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(set.rules[out[0]].id, "min");

        write(
            d.path(),
            "bad.json",
            r#"{"id": "bad", "pattern": {"eventName": []}}"#,
        );
        write(
            d.path(),
            "typo.toml",
            "id = \"t\"\nseverity = \"severe\"\n[pattern]\na = [1]\n",
        );
        write(
            d.path(),
            "twin.json",
            r#"{"id": "min", "pattern": {"a": [1]}}"#,
        );
        let e = RuleSet::load_dir(d.path()).unwrap_err();
        let all = e
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            all.contains("bad.json: pattern: eventName: an empty array"),
            "{all}"
        );
        assert!(all.contains("typo.toml") && all.contains("severe"), "{all}");
        assert_eq!(e.len(), 2, "{all}");
        std::fs::remove_file(d.path().join("bad.json")).unwrap();
        std::fs::remove_file(d.path().join("typo.toml")).unwrap();
        let e = RuleSet::load_dir(d.path()).unwrap_err();
        assert!(e[0].to_string().contains("is also the id of"), "{:?}", e);
    }

    #[test]
    fn disabled_rules_never_fire() {
        let r = |id: &str, enabled: bool| {
            Rule::from_json(
                &serde_json::json!({"id": id, "enabled": enabled, "pattern": {"eventName": ["X"]}}),
                Path::new("x.json"),
            )
            .unwrap()
        };
        let set = RuleSet::new(vec![r("a", false), r("b", true)]).unwrap();
        let mut out = Vec::new();
        set.matches(&serde_json::json!({"eventName": "X"}), &mut out);
        assert_eq!(
            out.iter()
                .map(|i| set.rules[*i].id.as_str())
                .collect::<Vec<_>>(),
            ["b"]
        );
    }
}
