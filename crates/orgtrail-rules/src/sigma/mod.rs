//! SigmaHQ's CloudTrail rules (logsource `product: aws`, `service: cloudtrail`) translated into
//! orgtrail rules, each one reported **exact**, **with caveats** (each caveat stated), or
//! **refused** (with the reason): none is approximated silently.
//!
//! - [`document`]: a Sigma YAML file read;
//! - [`condition`]: its condition parsed (`and`, `or`, `not`, `1 of x*`, `all of them`, and
//!   `| count() [by f] > N`);
//! - [`field`]: each `field|modifier: values` as the matchers of one pattern field (the table
//!   of what translates exactly is there);
//! - [`boolean`]: the condition over the selections as one pattern;
//! - [`write`]: the rule file written (YAML, with the DRL 1.1 attribution).
//!
//! An aggregation `count() > N` with a `timeframe` becomes a [`crate::threshold`]: `count = N`,
//! `window = timeframe`, `group_by` the `by` fields. A `timeframe` without an aggregation
//! (a correlation of several events) and `near` are refused.

pub(crate) mod boolean;
pub(crate) mod condition;
pub(crate) mod document;
pub(crate) mod field;
pub mod write;

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::Severity;
use crate::rule::Origin;
use crate::threshold::ThresholdSpec;

/// A correlation read from a `timeframe` without an aggregation.
struct Correlation {
    pattern: Value,
    threshold: ThresholdSpec,
    caveats: Vec<String>,
}

/// `sel1 and sel2 [and ...]` (or `all of sel*`) with a `timeframe`, where the selections are
/// maps alike but for one field, each with one plain value: as written, one event would have
/// to match them all, which it cannot (the field differs); what the timeframe says is a
/// correlation, events with each value within the timeframe. That is a threshold counting the
/// distinct values of the field: more than (selections - 1) within the window.
fn correlation(
    detection: &serde_json::Map<String, Value>,
    cond: &condition::Cond,
    timeframe: &str,
    text: &str,
) -> Option<Correlation> {
    use condition::Cond;
    let mut names: Vec<String> = Vec::new();
    let parts: Vec<&Cond> = match cond {
        Cond::And(parts) => parts.iter().collect(),
        c @ Cond::Of { all: true, .. } => vec![c],
        _ => return None,
    };
    for p in parts {
        match p {
            Cond::Name(n) => names.push(n.clone()),
            Cond::Of {
                all: true,
                names: pat,
            } => {
                let star = pat.trim_end_matches('*');
                names.extend(
                    detection
                        .keys()
                        .filter(|k| *k != "condition" && *k != "timeframe")
                        .filter(|k| {
                            pat == "them"
                                || (pat.ends_with('*') && k.starts_with(star))
                                || *k == pat
                        })
                        .cloned(),
                );
            }
            _ => return None,
        }
    }
    names.sort();
    names.dedup();
    if names.len() < 2 {
        return None;
    }
    let maps: Vec<&serde_json::Map<String, Value>> = names
        .iter()
        .map(|n| detection.get(n).and_then(Value::as_object))
        .collect::<Option<_>>()?;
    let keys: Vec<&String> = maps[0].keys().collect();
    if maps.iter().any(|m| !m.keys().eq(keys.iter().copied())) {
        return None;
    }
    let differing: Vec<&String> = keys
        .iter()
        .copied()
        .filter(|k| maps.iter().any(|m| m[*k] != maps[0][*k]))
        .collect();
    let [field] = differing.as_slice() else {
        return None;
    };
    if field.contains('|') {
        return None;
    }
    let mut values: Vec<String> = Vec::new();
    for m in &maps {
        let v = m[*field].as_str()?;
        if v.contains(['*', '?']) {
            return None;
        }
        values.push(v.to_ascii_lowercase());
    }
    let mut unique = values.clone();
    unique.sort();
    unique.dedup();
    if unique.len() != values.len() {
        return None;
    }
    let selections = boolean::Selections::new(detection).ok()?;
    let any = Cond::Or(names.iter().map(|n| Cond::Name(n.clone())).collect());
    let (pattern, mut caveats) = selections.pattern(&any).ok()?;
    caveats.insert(
        0,
        format!(
            "as written, `{}` needs one event to match every selection, which none can ({field} differs); translated as the correlation its timeframe describes: events with each of the {} {field} values within {timeframe} of each other, in any order, counted across all accounts (the rule has no group)",
            text.trim(),
            names.len()
        ),
    );
    Some(Correlation {
        pattern,
        threshold: ThresholdSpec {
            count: names.len() as u64 - 1,
            window: timeframe.to_owned(),
            group_by: Vec::new(),
            distinct: Some((*field).clone()),
        },
        caveats,
    })
}

/// The license of SigmaHQ's rules.
pub const LICENSE: &str = "DRL-1.1";
const LICENSE_URL: &str = "https://github.com/SigmaHQ/Detection-Rule-License";

/// How one Sigma rule translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Exact,
    /// Translated; each string says where the rule's meaning differs from Sigma's.
    Caveats(Vec<String>),
    /// Not translated, and why.
    Refused(String),
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Exact => "exact",
            Outcome::Caveats(_) => "with caveats",
            Outcome::Refused(_) => "refused",
        }
    }
}

/// A translated rule, ready to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    pub id: String,
    pub name: String,
    pub description: String,
    pub severity: Severity,
    /// An EventBridge pattern on the CloudTrail record.
    pub pattern: Value,
    pub threshold: Option<ThresholdSpec>,
    pub origin: Origin,
}

impl Translated {
    /// The rule as it loads from the written file.
    pub fn rule(&self) -> Result<crate::Rule, String> {
        write::check(self)
    }
}

/// One Sigma file's translation.
#[derive(Debug, Clone)]
pub struct Translation {
    /// The Sigma file, relative to the directory imported.
    pub file: PathBuf,
    pub sigma_id: Option<String>,
    pub title: String,
    pub outcome: Outcome,
    /// Present unless refused.
    pub rule: Option<Translated>,
}

/// The translations of a directory, by file name.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub rules: Vec<Translation>,
}

impl Report {
    /// (exact, with caveats, refused).
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for t in &self.rules {
            match t.outcome {
                Outcome::Exact => c.0 += 1,
                Outcome::Caveats(_) => c.1 += 1,
                Outcome::Refused(_) => c.2 += 1,
            }
        }
        c
    }
}

/// Translates every `.yml`/`.yaml` file under `dir` (recursively, in path order). A file that
/// cannot be read as a Sigma CloudTrail rule is reported refused, with the reason.
pub fn import_dir(dir: &Path) -> std::io::Result<Report> {
    let mut files = Vec::new();
    collect(dir, &mut files)?;
    files.sort();
    let mut report = Report::default();
    for f in files {
        let rel = f.strip_prefix(dir).unwrap_or(&f).to_path_buf();
        let t = match std::fs::read_to_string(&f) {
            Ok(text) => translate(&text, &rel),
            Err(e) => refused(&rel, None, String::new(), format!("cannot read it: {e}")),
        };
        report.rules.push(t);
    }
    Ok(report)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            collect(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yml" | "yaml")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

fn refused(file: &Path, id: Option<String>, title: String, reason: String) -> Translation {
    Translation {
        file: file.to_owned(),
        sigma_id: id,
        title,
        outcome: Outcome::Refused(reason),
        rule: None,
    }
}

/// Translates one Sigma rule given as YAML text; `file` names it in the report.
pub fn translate(yaml: &str, file: &Path) -> Translation {
    let doc = match document::parse(yaml) {
        Ok(d) => d,
        Err(e) => return refused(file, None, String::new(), e),
    };
    let title = doc.title.clone().unwrap_or_default();
    let fail = |reason: String| refused(file, doc.id.clone(), title.clone(), reason);
    let (product, service) = (
        doc.product.as_deref().unwrap_or("-"),
        doc.service.as_deref().unwrap_or("-"),
    );
    if !product.eq_ignore_ascii_case("aws") || !service.eq_ignore_ascii_case("cloudtrail") {
        return fail(format!(
            "logsource is product {product}, service {service}: only aws/cloudtrail rules translate"
        ));
    }
    let Some(detection) = &doc.detection else {
        return fail("no detection".into());
    };
    let condition = match detection.get("condition") {
        Some(Value::String(c)) => c.clone(),
        Some(Value::Array(cs)) if cs.len() == 1 => match cs[0].as_str() {
            Some(c) => c.to_owned(),
            None => return fail("the condition is not text".into()),
        },
        Some(Value::Array(_)) => {
            return fail("several conditions: write them as one with `or`".into());
        }
        _ => return fail("the detection has no condition".into()),
    };
    let (cond, agg) = match condition::parse(&condition) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let timeframe = detection.get("timeframe").and_then(|t| match t {
        Value::String(s) => Some(s.trim().to_owned()),
        _ => None,
    });
    let threshold = match (&agg, &timeframe) {
        (None, None) => None,
        (None, Some(tf)) => match correlation(detection, &cond, tf, &condition) {
            Some(c) => return finish(file, &doc, c.pattern, Some(c.threshold), c.caveats),
            None => {
                return fail(format!(
                    "timeframe {tf} without an aggregation: the rule correlates several events within {tf} (condition `{}`), which one event's pattern cannot express, and a count over one pattern would not mean the same",
                    condition.trim()
                ));
            }
        },
        (Some(_), None) => {
            return fail(
                "count() without a timeframe: a count needs a window (add `timeframe`)".into(),
            );
        }
        (Some(a), Some(tf)) => {
            let spec = ThresholdSpec {
                count: a.more_than,
                window: tf.clone(),
                group_by: a.by.clone(),
                distinct: None,
            };
            if let Err(e) = crate::threshold::Threshold::from_spec(spec.clone()) {
                return fail(e);
            }
            Some(spec)
        }
    };
    let selections = match boolean::Selections::new(detection) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let (pattern, caveats) = match selections.pattern(&cond) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    finish(file, &doc, pattern, threshold, caveats)
}

/// The translated rule from its pattern, threshold and caveats, with the Sigma rule's
/// metadata; refused if it does not pass the rule checks.
fn finish(
    file: &Path,
    doc: &document::SigmaDoc,
    pattern: Value,
    threshold: Option<ThresholdSpec>,
    caveats: Vec<String>,
) -> Translation {
    let title = doc.title.clone().unwrap_or_default();
    let fail = |reason: String| refused(file, doc.id.clone(), title.clone(), reason);
    let id = match &doc.id {
        Some(id) if valid_id(id) => id.clone(),
        Some(id) => return fail(format!("its id {id:?} cannot be a rule id")),
        None => {
            let stem = file
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("rule")
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect::<String>();
            format!("sigma-{stem}")
        }
    };
    let severity = match doc.level.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("informational") => Severity::Info,
        Some("low") => Severity::Low,
        Some("high") => Severity::High,
        Some("critical") => Severity::Critical,
        _ => Severity::Medium,
    };
    let outcome = if caveats.is_empty() {
        Outcome::Exact
    } else {
        Outcome::Caveats(caveats.clone())
    };
    let author = doc.author.clone().unwrap_or_else(|| "unknown".into());
    let origin = Origin {
        source: "sigma".into(),
        id: doc.id.clone(),
        title: doc.title.clone(),
        author: doc.author.clone(),
        date: doc.date.clone(),
        modified: doc.modified.clone(),
        status: doc.status.clone(),
        references: doc.references.clone(),
        falsepositives: doc.falsepositives.clone(),
        tags: doc.tags.clone(),
        file: Some(file.display().to_string()),
        license: Some(LICENSE.into()),
        attribution: Some(format!(
            "Sigma rule \"{}\" ({}) by {author}, from the SigmaHQ project, under the Detection Rule License (DRL) 1.1: {LICENSE_URL}",
            title,
            doc.id.as_deref().unwrap_or("no id"),
        )),
        translation: Some(outcome.label().into()),
        caveats,
    };
    let rule = Translated {
        id,
        name: if title.is_empty() {
            file.display().to_string()
        } else {
            title.clone()
        },
        description: doc.description.clone().unwrap_or_default(),
        severity,
        pattern,
        threshold,
        origin,
    };
    // What is written must load: a translation that fails the rule checks is refused.
    if let Err(e) = write::check(&rule) {
        return fail(format!("the translation is not a valid rule: {e}"));
    }
    Translation {
        file: file.to_owned(),
        sigma_id: doc.id.clone(),
        title,
        outcome,
        rule: Some(rule),
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
