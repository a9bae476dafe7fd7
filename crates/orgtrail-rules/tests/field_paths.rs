//! One field-path layer: a dotted path means the same values whether it is resolved on the
//! parsed JSON record (as the rule engine does) or on the fields orgtrail-core parses once per
//! event (as the agent's trail selectors do), on every record of the shared corpus.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use orgtrail_core::CloudTrailEvent;
use orgtrail_rules::field::{RECORD_FIELDS, RecordField};
use orgtrail_rules::leaf::leaves_at;
use serde_json::Value;

fn corpus_records() -> Vec<Value> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/corpus");
    let mut out = Vec::new();
    for e in std::fs::read_dir(root.join("events")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "jsonl") {
            for line in std::fs::read_to_string(&p).unwrap().lines() {
                // Some lines of the corpus are deliberately not records: skip them.
                if let Ok(v) = serde_json::from_str(line) {
                    out.push(v);
                }
            }
        }
    }
    for e in std::fs::read_dir(root.join("logfiles")).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        if let Ok(v) = serde_json::from_str::<Value>(&text)
            && let Some(records) = v["Records"].as_array()
        {
            out.extend(records.iter().cloned());
        }
    }
    out
}

/// The scalar at `path` as the rule engine sees it, written as a selector compares it.
fn json_strings(record: &Value, path: &str) -> Vec<String> {
    leaves_at(record, path)
        .iter()
        .filter_map(|l| match l.value {
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn record_fields_read_what_their_paths_hold() {
    let records = corpus_records();
    let mut compared = 0;
    for record in &records {
        let Ok(event) = CloudTrailEvent::parse(serde_json::to_vec(record).unwrap()) else {
            continue;
        };
        let f = event.fields();
        if f.is_insight() {
            continue; // eventName/eventSource come from insightDetails: a field of its own
        }
        for (path, field) in RECORD_FIELDS {
            assert_eq!(RecordField::from_path(path), Some(field));
            assert_eq!(field.path(), path);
            let mut from_json = json_strings(record, path);
            if field.is_bool() {
                // orgtrail-core reads booleans leniently: `"True"` (a string) is true.
                from_json = from_json.iter().map(|b| b.to_ascii_lowercase()).collect();
            }
            if field == RecordField::ResourcesArn {
                // orgtrail-core also reads an element's `arn` (some exports lowercase it).
                if from_json.is_empty() {
                    from_json = json_strings(record, "resources.arn");
                }
            }
            let from_fields: Vec<String> = if field.is_resource() {
                f.resources
                    .iter()
                    .filter_map(|r| field.in_resource(r).map(str::to_owned))
                    .collect()
            } else {
                field.str_in(f).map(str::to_owned).into_iter().collect()
            };
            if field == RecordField::EventCategory && from_json.is_empty() {
                // An older record without eventCategory: orgtrail-core's effective category.
                assert_eq!(from_fields, vec!["Management".to_owned()], "{record}");
                continue;
            }
            assert_eq!(from_fields, from_json, "{path} of {record}");
            compared += usize::from(!from_json.is_empty());
        }
    }
    assert!(records.len() > 50, "the corpus has records");
    assert!(compared > 500, "values were compared: {compared}");
}

#[test]
fn paths_outside_the_record_fields_are_not_claimed() {
    for p in [
        "requestParameters.bucketName",
        "resources",
        "userIdentity",
        "",
    ] {
        assert_eq!(RecordField::from_path(p), None, "{p}");
    }
}
