//! Every EventBridge conformance case answers as AWS did: the pattern is refused (`invalid`),
//! or it matches the event (`match`) or not (`nomatch`), both by the interpreter and by the
//! compiled engine. The cases are in `tests/fixtures/rules/` with their provenance.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use orgtrail_rules::{Engine, Pattern, interpret};
use serde_json::Value;

fn cases() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/rules/eventbridge-cases.jsonl"
    );
    std::fs::read_to_string(path)
        .expect("the conformance cases")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a case is JSON"))
        .collect()
}

#[test]
fn every_case_answers_as_aws_did() {
    let cases = cases();
    assert_eq!(cases.len(), 86);
    let mut wrong = Vec::new();
    let (mut matched, mut unmatched, mut refused) = (0, 0, 0);
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let expect = case["expect"].as_str().unwrap();
        let pattern = Pattern::from_json(&case["pattern"]);
        let event = &case["event"];
        match (expect, pattern) {
            ("invalid", Err(_)) => refused += 1,
            ("invalid", Ok(_)) => wrong.push(format!("{name}: accepted, AWS refused it")),
            (_, Err(e)) => wrong.push(format!("{name}: refused ({e}), AWS accepted it")),
            (want, Ok(p)) => {
                let want = want == "match";
                let by_interpreter = interpret::matches(&p, event);
                let mut out = Vec::new();
                Engine::new(std::slice::from_ref(&p)).matches(event, &[], &mut out);
                let by_engine = out == [0];
                if by_interpreter != want || by_engine != want {
                    wrong.push(format!(
                        "{name}: expected {}, interpreter {by_interpreter}, engine {by_engine}",
                        if want { "match" } else { "no match" }
                    ));
                } else if want {
                    matched += 1;
                } else {
                    unmatched += 1;
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} cases wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!((matched, unmatched, refused), (43, 28, 15));
}

#[test]
fn every_refused_case_says_why() {
    for case in cases().iter().filter(|c| c["expect"] == "invalid") {
        if let Err(e) = Pattern::from_json(&case["pattern"]) {
            assert!(!e.reason.is_empty(), "{}", case["name"]);
        }
    }
}
