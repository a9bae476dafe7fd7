//! A Sigma rule file read: its metadata, logsource and detection, from YAML.

use serde_json::{Map, Value};

/// The parts of a Sigma rule the translation uses.
#[derive(Debug, Clone, Default)]
pub(crate) struct SigmaDoc {
    pub(crate) title: Option<String>,
    pub(crate) id: Option<String>,
    pub(crate) status: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) references: Vec<String>,
    pub(crate) author: Option<String>,
    pub(crate) date: Option<String>,
    pub(crate) modified: Option<String>,
    pub(crate) tags: Vec<String>,
    pub(crate) falsepositives: Vec<String>,
    pub(crate) level: Option<String>,
    pub(crate) product: Option<String>,
    pub(crate) service: Option<String>,
    pub(crate) detection: Option<Map<String, Value>>,
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn texts(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(items)) => items.iter().filter_map(|i| text(Some(i))).collect(),
        Some(v) => text(Some(v)).into_iter().collect(),
        None => Vec::new(),
    }
}

/// Reads a Sigma rule; the error names the line for bad YAML.
pub(crate) fn parse(yaml: &str) -> Result<SigmaDoc, String> {
    let v: Value = serde_saphyr::from_str(yaml).map_err(|e| {
        format!(
            "not a YAML document: {}",
            crate::rule::yaml_error(&e.to_string())
        )
    })?;
    let Value::Object(m) = v else {
        return Err("not a Sigma rule: the document is not a map".into());
    };
    let logsource = m.get("logsource").and_then(Value::as_object);
    Ok(SigmaDoc {
        title: text(m.get("title")),
        id: text(m.get("id")),
        status: text(m.get("status")),
        description: text(m.get("description")),
        references: texts(m.get("references")),
        author: text(m.get("author")),
        date: text(m.get("date")),
        modified: text(m.get("modified")),
        tags: texts(m.get("tags")),
        falsepositives: texts(m.get("falsepositives")),
        level: text(m.get("level")),
        product: logsource.and_then(|l| text(l.get("product"))),
        service: logsource.and_then(|l| text(l.get("service"))),
        detection: m.get("detection").and_then(Value::as_object).cloned(),
    })
}
