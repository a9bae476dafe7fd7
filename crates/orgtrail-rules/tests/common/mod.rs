//! What the rules crate's tests share.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;

/// Every real CloudTrail record of the repository's corpus (`tests/fixtures/corpus/events`),
/// parsed.
pub(crate) fn corpus_records() -> Vec<Value> {
    let mut out = Vec::new();
    for f in [
        "awsdocs.jsonl",
        "opensearch-catalog.jsonl",
        "panther-analysis.jsonl",
    ] {
        let path = format!(
            "{}/../../tests/fixtures/corpus/events/{f}",
            env!("CARGO_MANIFEST_DIR")
        );
        for l in std::fs::read_to_string(path).unwrap().lines() {
            out.push(serde_json::from_str(l).unwrap());
        }
    }
    out
}
