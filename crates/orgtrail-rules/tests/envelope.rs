//! A pattern written against the EventBridge envelope matches exactly the records that the same
//! pattern written against the bare record matches, and exactly the records whose envelope (as
//! AWS builds it) the interpreter matches: on real CloudTrail records from the corpus.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use orgtrail_rules::cloudtrail::{CloudTrailRules, envelope};
use orgtrail_rules::{Pattern, interpret};
use serde_json::{Value, json};

fn records() -> Vec<Value> {
    common::corpus_records()
}

/// (record form, envelope form) of the same intent.
fn pairs() -> Vec<(Value, Value)> {
    vec![
        (
            json!({"eventSource": ["iam.amazonaws.com"], "eventName": [{"prefix": "Delete"}]}),
            json!({"source": ["aws.iam"], "detail-type": ["AWS API Call via CloudTrail"], "detail": {"eventName": [{"prefix": "Delete"}]}}),
        ),
        (
            json!({"eventName": ["ConsoleLogin"], "responseElements": {"ConsoleLogin": ["Failure"]}}),
            json!({"detail-type": ["AWS Console Sign In via CloudTrail"], "detail": {"eventName": ["ConsoleLogin"], "responseElements": {"ConsoleLogin": ["Failure"]}}}),
        ),
        (
            json!({"awsRegion": ["us-east-1"], "userIdentity": {"type": ["Root"]}}),
            json!({"region": ["us-east-1"], "detail": {"userIdentity": {"type": ["Root"]}}}),
        ),
        (
            json!({"recipientAccountId": ["123456789012"], "errorCode": [{"exists": true}]}),
            json!({"account": ["123456789012"], "detail": {"errorCode": [{"exists": true}]}}),
        ),
        (
            json!({"resources": {"ARN": [{"prefix": "arn:aws:s3:::"}]}}),
            json!({"resources": [{"prefix": "arn:aws:s3:::"}], "source": [{"prefix": "aws."}]}),
        ),
    ]
}

#[test]
fn envelope_and_record_forms_match_the_same_records() {
    let records = records();
    assert!(records.len() > 1000);
    let (mut record_form, mut envelope_form) = (Vec::new(), Vec::new());
    for (r, e) in pairs() {
        record_form.push(Pattern::from_json(&r).unwrap());
        envelope_form.push(Pattern::from_json(&e).unwrap());
    }
    let by_record = CloudTrailRules::new(record_form).unwrap();
    let by_envelope = CloudTrailRules::new(envelope_form.clone()).unwrap();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut fired = vec![0usize; envelope_form.len()];
    for rec in &records {
        // Console sign-ins are the only AwsConsoleSignIn events: the record form says so by
        // eventName, the envelope by detail-type.
        by_record.matches(rec, &mut a);
        by_envelope.matches(rec, &mut b);
        // The envelope form against the envelope AWS would build, by the interpreter.
        let env = envelope(rec);
        let want: Vec<usize> = envelope_form
            .iter()
            .enumerate()
            .filter(|(_, p)| interpret::matches(p, &env))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(b, want, "envelope form vs the built envelope on {rec}");
        // Pairs 0 and 1 name more in the envelope (detail-type) than the record form does.
        let a: Vec<usize> = a.iter().copied().filter(|i| *i >= 2).collect();
        let b2: Vec<usize> = b.iter().copied().filter(|i| *i >= 2).collect();
        assert_eq!(a, b2, "record and envelope forms on {rec}");
        for i in &b {
            fired[*i] += 1;
        }
    }
    assert!(
        fired.iter().all(|n| *n > 0),
        "every pair fires on the corpus: {fired:?}"
    );
}

#[test]
fn record_fields_beside_envelope_fields_are_refused() {
    let p =
        Pattern::from_json(&json!({"source": ["aws.iam"], "eventName": ["DeleteUser"]})).unwrap();
    let e = CloudTrailRules::new(vec![p]).unwrap_err();
    assert!(e.1.to_string().contains("eventName"), "{}", e.1);
    assert!(e.1.to_string().contains("under detail"), "{}", e.1);
}

#[test]
fn an_events_source_is_its_own_whatever_came_before() {
    // The computed source of one event must not answer for the next, on the same thread:
    // one with an eventSource, one without (no source: only `exists: false` holds), one with
    // another, one whose eventSource is not a string.
    let patterns = [
        json!({"source": ["aws.iam"]}),
        json!({"source": [{"exists": false}]}),
        json!({"source": [{"anything-but": "aws.iam"}]}),
    ];
    let rules = CloudTrailRules::new(
        patterns
            .iter()
            .map(|p| Pattern::from_json(p).unwrap())
            .collect(),
    )
    .unwrap();
    let events = [
        json!({"eventSource": "iam.amazonaws.com", "eventName": "DeleteUser"}),
        json!({"eventName": "DeleteUser"}),
        json!({"eventSource": "s3.amazonaws.com", "eventName": "GetObject"}),
        json!({"eventSource": "iam.amazonaws.com", "eventName": "ListUsers"}),
        json!({"eventSource": 7, "eventName": "Odd"}),
    ];
    let want: [&[usize]; 5] = [&[0], &[1], &[2], &[0], &[1]];
    let mut out = Vec::new();
    for _ in 0..2 {
        for (e, w) in events.iter().zip(want) {
            rules.matches(e, &mut out);
            assert_eq!(out, w, "on {e}");
        }
    }
}
