//! `RuleSet::parse_record` parses only the paths a rule set reads: matching what it
//! returns answers exactly as matching the whole record does, for the CIS pack and for rules in
//! both forms (envelope `source`, `detail-type`, `id`; nested and dotted paths; `exists:
//! false`; a threshold's group and time), on the real corpus, generated events and records
//! with dotted or escaped field names.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use orgtrail_gen::{GenConfig, Generator};
use orgtrail_rules::RuleSet;
use orgtrail_rules::threshold::event_time_ms;
use serde_json::{Value, json};

fn rules() -> RuleSet {
    let d = tempfile::tempdir().unwrap();
    let rules = [
        json!({"id": "env", "pattern": {"source": ["aws.iam"], "detail-type": ["AWS API Call via CloudTrail"], "detail": {"eventName": [{"prefix": "Create"}]}}}),
        json!({"id": "by-id", "pattern": {"id": [{"exists": true}], "detail": {"errorCode": [{"exists": true}]}}}),
        json!({"id": "nested", "pattern": {"userIdentity": {"sessionContext": {"sessionIssuer": {"type": ["Role"]}}}}}),
        json!({"id": "dotted", "pattern": {"requestParameters.bucketName": [{"exists": true}]}}),
        json!({"id": "absent", "pattern": {"eventSource": ["s3.amazonaws.com"], "errorCode": [{"exists": false}]}}),
        json!({"id": "array", "pattern": {"resources": {"type": ["AWS::S3::Object"]}}}),
        json!({"id": "any-region", "pattern": {"awsRegion": [{"anything-but": "us-east-1"}], "readOnly": [false]}}),
        json!({"id": "burst", "pattern": {"eventName": [{"prefix": "Get"}]}, "threshold": {"count": 3, "window": "5m", "group_by": ["userIdentity.arn", "sourceIPAddress"], "distinct": "eventName"}}),
    ];
    for (i, r) in rules.iter().enumerate() {
        std::fs::write(d.path().join(format!("{i}.json")), r.to_string()).unwrap();
    }
    RuleSet::load(d.path().to_str().unwrap()).unwrap()
}

fn check(set: &RuleSet, bytes: &[u8]) {
    let whole: Value = serde_json::from_slice(bytes).unwrap();
    let part = set.parse_record(bytes).unwrap();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    set.matches(&whole, &mut a);
    set.matches(&part, &mut b);
    assert_eq!(a, b, "{}", String::from_utf8_lossy(bytes));
    for rule in &set.rules {
        if let Some(t) = &rule.threshold {
            assert_eq!(t.group_key(&whole), t.group_key(&part));
            assert_eq!(t.distinct_value(&whole), t.distinct_value(&part));
            assert_eq!(event_time_ms(&whole), event_time_ms(&part));
        }
    }
}

#[test]
fn a_partly_parsed_record_matches_as_the_whole_record_does() {
    let sets = [rules(), RuleSet::load("pack:cis").unwrap()];
    let mut fired = 0usize;
    let corpus: Vec<Vec<u8>> = common::corpus_records()
        .iter()
        .map(|v| serde_json::to_vec(v).unwrap())
        .collect();
    let generated = Generator::new(GenConfig {
        count: 20_000,
        accounts: 5,
        seed: 23,
        ..GenConfig::default()
    });
    for bytes in corpus.into_iter().chain(generated) {
        for set in &sets {
            check(set, &bytes);
            let mut out = Vec::new();
            set.matches(&set.parse_record(&bytes).unwrap(), &mut out);
            fired += out.len();
        }
    }
    assert!(
        fired > 1000,
        "the rules fire often enough to mean something: {fired}"
    );
    // Field names with dots continue a path; a name with escapes is parsed whole.
    let set = &sets[0];
    for text in [
        r#"{"eventSource":"s3.amazonaws.com","requestParameters.bucketName":"b","readOnly":false,"awsRegion":"eu-west-1"}"#,
        r#"{"eventSource":"s3.amazonaws.com","requestParameters":{"bucketName":"b"}}"#,
        r#"{"event\u0053ource":"s3.amazonaws.com","eventTime":"2026-11-27T10:00:00Z"}"#,
        r#"{"eventSource":"s3.amazonaws.com","errorCode":"AccessDenied","errorCode":null}"#,
        // Pruned below the top: a dotted name inside an object, arrays of objects and of
        // arrays, a scalar where an object was expected, escapes in a nested name.
        r#"{"userIdentity":{"sessionContext.sessionIssuer":{"type":"Role"},"arn":"x"}}"#,
        r#"{"userIdentity":{"sessionContext":[{"sessionIssuer":[{"type":"Role"}]},{"sessionIssuer":{"type":"User"}}]}}"#,
        r#"{"resources":[[{"type":"AWS::S3::Object"}],{"type":"AWS::S3::Bucket","ARN":"a"}]}"#,
        r#"{"userIdentity":"root","resources":7,"eventName":"GetObject","sourceIPAddress":"1.2.3.4"}"#,
        r#"{"userIdentity":{"sessionContext":{"session\u0049ssuer":{"type":"Role"}}}}"#,
        r#"{"eventName":"GetObject","eventTime":"2026-11-27T10:00:00Z","userIdentity":{"arn":"a","arn":"b"},"sourceIPAddress":"1.2.3.4"}"#,
    ] {
        check(set, text.as_bytes());
    }
    let mut out = Vec::new();
    set.matches(
        &set.parse_record(br#"{"event\u0053ource":"s3.amazonaws.com"}"#)
            .unwrap(),
        &mut out,
    );
    assert_eq!(
        out.iter()
            .map(|i| set.rules[*i].id.as_str())
            .collect::<Vec<_>>(),
        ["absent"]
    );
}

#[test]
fn a_partly_parsed_record_names_its_account_whatever_the_rules_read() {
    let bytes = br#"{"eventName":"GetObject","recipientAccountId":"111122223333","requestParameters":{"bucketName":"b"}}"#;
    for set in [rules(), RuleSet::load("pack:cis").unwrap()] {
        let part = set.parse_record(bytes).unwrap();
        assert_eq!(RuleSet::recipient(&part), Some("111122223333"));
    }
    let none = rules()
        .parse_record(br#"{"eventName":"GetObject"}"#)
        .unwrap();
    assert_eq!(RuleSet::recipient(&none), None);
}
