//! Rules: a pattern with an id, a name, a description, a severity and the alert sinks it goes
//! to, kept one per file in a directory.
//!
//! A rule file is TOML (`.toml`), JSON (`.json`) or YAML (`.yaml`, `.yml`), one schema for all
//! three. Only `id` and `pattern` are required:
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
//! ```yaml
//! id: root-console-login
//! pattern:
//!   eventName: [ConsoleLogin]
//!   userIdentity: {type: [Root]}
//! ```
//!
//! Two optional tables go beyond a pattern:
//! - `threshold = { count = N, window = "10m", group_by = ["userIdentity.arn"] }`: the rule
//!   fires when more than N matching events of one group fall within the window (see
//!   [`crate::threshold`]);
//! - `origin`: where a rule came from, for rules translated from elsewhere (`orgtrail rules
//!   import-sigma` writes it: the source rule's id, author, references, license, and how
//!   exactly it was translated). It changes nothing in matching.
//!
//! Files with other extensions, and hidden files, are ignored. Loading a directory reports
//! every bad file at once, each with the reason; a set with any bad file is refused whole, so
//! that a collector keeps the rules it had.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::cloudtrail::CloudTrailRules;
use crate::pattern::Pattern;
use crate::threshold::{Threshold, ThresholdSpec};

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
    #[serde(default)]
    threshold: Option<ThresholdSpec>,
    #[serde(default)]
    origin: Option<Origin>,
}

/// Where a translated rule came from (`orgtrail rules import-sigma` fills it in). Kept with the
/// rule so that a license's attribution (the Sigma rules' DRL 1.1 asks for the author and the
/// rule id) travels with it; matching ignores it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Origin {
    /// The kind of source: `sigma`.
    pub source: String,
    /// The source rule's own id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub falsepositives: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The source file it was translated from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The license of the source rule, e.g. `DRL-1.1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// The attribution the license asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribution: Option<String>,
    /// How the translation went: `exact` or `with caveats`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub translation: Option<String>,
    /// Each way the translation differs from the source's meaning.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caveats: Vec<String>,
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
    /// A count over a window per group, when the rule has one: it then fires on the event
    /// that crosses the threshold, not on every match.
    pub threshold: Option<Threshold>,
    /// Where a translated rule came from.
    pub origin: Option<Origin>,
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
            Some("yaml" | "yml") => from_yaml(&text).map_err(fail)?,
            _ => return Err(fail("a rule file is .toml, .json, .yaml or .yml".into())),
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
        let threshold = raw.threshold.map(Threshold::from_spec).transpose()?;
        Ok(Rule {
            name: raw.name.unwrap_or_else(|| raw.id.clone()),
            id: raw.id,
            description: raw.description,
            severity: raw.severity,
            actions: raw.actions,
            enabled: raw.enabled,
            pattern,
            threshold,
            origin: raw.origin,
            file: file.to_owned(),
        })
    }
}

/// The field of a record that names the account it is stored under.
const RECIPIENT: &str = "recipientAccountId";

/// The rules of a directory, compiled.
#[derive(Debug)]
pub struct RuleSet {
    /// Enabled and disabled, sorted by id.
    pub rules: Vec<Rule>,
    /// The enabled rules; match numbers index `enabled`.
    pub(crate) matcher: CloudTrailRules,
    enabled: Vec<usize>,
    /// The paths of a record that matching and thresholds read, as a tree: see
    /// [`RuleSet::parse_record`].
    wanted: Want,
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
        let mut wanted = Want::default();
        // The account a record is stored under, which an alert's delivery needs: read here
        // so that the collector need not parse the record a second time for it.
        wanted.add(RECIPIENT);
        for p in matcher.record_paths() {
            wanted.add(p);
        }
        for t in enabled.iter().filter_map(|i| rules[*i].threshold.as_ref()) {
            wanted.add("eventTime");
            for p in t.group_by.iter().chain(t.distinct.as_ref()) {
                wanted.add(p);
            }
        }
        Ok(RuleSet {
            rules,
            matcher,
            enabled,
            wanted,
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

    /// Loads every rule file of `dir` (`.toml`, `.json`, `.yaml`, `.yml`; hidden files
    /// ignored), or every problem.
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
                    if !hidden
                        && matches!(ext, Some("toml" | "json" | "yaml" | "yml"))
                        && path.is_file()
                    {
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

    /// A stored record parsed for [`RuleSet::matches`] and the thresholds: only the paths they
    /// read are parsed into values, in one pass (of `userIdentity`, only `arn` when that is
    /// what the rules read; through arrays, each element alike), and any member whose name
    /// holds a dot (which may continue a path) whole; the rest is skipped without being built.
    /// Matching it answers as matching the whole record does, at a fraction of the cost of
    /// parsing a whole record. A name written with escapes is unescaped as a whole parse would.
    /// `recipientAccountId` is always parsed (see [`RuleSet::recipient`]).
    pub fn parse_record(&self, bytes: &[u8]) -> Result<Value, serde_json::Error> {
        use serde::de::DeserializeSeed;
        let mut de = serde_json::Deserializer::from_slice(bytes);
        match Pruned(&self.wanted)
            .deserialize(&mut de)
            .and_then(|record| de.end().map(|()| record))
        {
            Ok(record @ Value::Object(_)) => Ok(record),
            Ok(_) => serde_json::from_slice(bytes),
            // Not an object: parsed whole, for the same answer (or error) as before.
            Err(_) => serde_json::from_slice(bytes),
        }
    }

    /// The `recipientAccountId` of a record from [`RuleSet::parse_record`] (or of a whole
    /// record), when it is a string.
    pub fn recipient(record: &Value) -> Option<&str> {
        record.get(RECIPIENT).and_then(Value::as_str)
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

/// A YAML rule file: one document, read with serde-saphyr (no unsafe code, alias and depth
/// budgets); its errors name the line and column.
fn from_yaml(text: &str) -> Result<RuleFile, String> {
    serde_saphyr::from_str::<RuleFile>(text).map_err(|e| yaml_error(&e.to_string()))
}

/// serde-saphyr's message on one line: its first line names the line and column (`line 4
/// column 11: unknown variant ...`); the snippet under it is left out.
pub(crate) fn yaml_error(message: &str) -> String {
    let first = message.lines().next().unwrap_or("invalid YAML").trim();
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

/// The paths a rule set reads, as a tree of member names: a node that is `whole` is built
/// entirely; otherwise only its children are (see [`RuleSet::parse_record`]).
#[derive(Debug, Default, Clone)]
struct Want {
    whole: bool,
    children: std::collections::BTreeMap<String, Want>,
}

impl Want {
    /// Adds a dotted path: its last member is built whole.
    fn add(&mut self, path: &str) {
        let mut at = self;
        for segment in path.split('.') {
            at = at.children.entry(segment.to_owned()).or_default();
        }
        at.whole = true;
    }
}

/// Builds a JSON value pruned to a [`Want`]: objects keep the members it names (and members
/// whose name holds a dot, whole); arrays keep every element, pruned alike; scalars are kept.
/// A later duplicate name wins, as in a whole parse.
struct Pruned<'w>(&'w Want);

/// A member name: borrowed from the input unless it holds escapes.
struct Name<'a>(std::borrow::Cow<'a, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Name<'de>, E> {
                Ok(Name(std::borrow::Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Pruned<'_> {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.0.whole {
            return Value::deserialize(d);
        }
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Pruned<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(Name(name)) = map.next_key::<Name<'de>>()? {
            if let Some(child) = self.0.children.get(name.as_ref()) {
                let v = map.next_value_seed(Pruned(child))?;
                out.insert(name.into_owned(), v);
            } else if name.contains('.') {
                let v: Value = map.next_value()?;
                out.insert(name.into_owned(), v);
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(Value::Object(out))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Pruned(self.0))? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
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
    fn yaml_rule_files_load_and_their_errors_name_the_line() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "root.yaml",
            "id: root-login\nseverity: high\npattern:\n  eventName: [ConsoleLogin]\n  userIdentity: {type: [Root]}\n",
        );
        write(
            d.path(),
            "burst.yml",
            "id: burst\npattern: {eventName: [{prefix: List}]}\nthreshold: {count: 2, window: 10m, group_by: [userIdentity.arn]}\n",
        );
        let set = RuleSet::load_dir(d.path()).unwrap();
        assert_eq!(set.len(), 2);
        let burst = set.rules.iter().find(|r| r.id == "burst").unwrap();
        let th = burst.threshold.as_ref().unwrap();
        assert_eq!((th.count, th.window_ms), (2, 600_000));
        let mut out = Vec::new();
        set.matches(
            &serde_json::json!({"eventName": "ConsoleLogin", "userIdentity": {"type": "Root"}}),
            &mut out,
        );
        assert_eq!(set.rules[out[0]].id, "root-login");

        write(
            d.path(),
            "bad.yaml",
            "id: bad\npattern:\n  a: [1]\nseverity: severe\n",
        );
        write(d.path(), "broken.yml", "id: b\npattern:\n  a: [1\n");
        write(
            d.path(),
            "window.yaml",
            "id: w\npattern: {a: [1]}\nthreshold: {count: 1, window: soon}\n",
        );
        let e = RuleSet::load_dir(d.path()).unwrap_err();
        let all = e
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            all.contains("bad.yaml: line 4 column 11: unknown variant `severe`"),
            "{all}"
        );
        assert!(all.contains("broken.yml: line 3 column"), "{all}");
        assert!(
            all.contains("window.yaml: threshold window \"soon\""),
            "{all}"
        );
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
