//! orgtrail's Insight events have the shape of AWS's own examples (tests/fixtures, from AWS's
//! documentation) and pass the validation ingest applies (orgtrail-core's parser).

mod common;

use std::collections::BTreeSet;

use common::{ACCOUNT, Feed, MONDAY, Rng, Spec, enabled};
use orgtrail_core::{CloudTrailEvent, EventCategory, Timestamp};
use orgtrail_insights::{InsightEvent, InsightState, InsightType};
use serde_json::Value;

const AWS_EXAMPLES: &str = include_str!("fixtures/awsdocs-insights.jsonl");

/// Keys orgtrail writes that the corpus's (1.07) examples lack, both documented by AWS:
/// `errorCode` for error-rate Insights, `sourceEventCategory` since eventVersion 1.09.
const EXTRA: [&str; 2] = [
    "insightDetails.errorCode: string",
    "insightDetails.sourceEventCategory: string",
];

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every `path: type` in `v` (array elements as `[]`).
fn shape(v: &Value, path: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                out.insert(format!("{p}: {}", kind(child)));
                shape(child, &p, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                let p = format!("{path}[]");
                out.insert(format!("{p}: {}", kind(item)));
                shape(item, &p, out);
            }
        }
        _ => {}
    }
}

/// A spike of RunInstances and a burst of AccessDenied, with background traffic so that
/// baselines and attributions are not empty: their Start and End events.
fn produced() -> Vec<InsightEvent> {
    let mut feed = Feed::new(enabled());
    let mut rng = Rng::new(5);
    let write = Spec::write("ec2.amazonaws.com", "RunInstances");
    let failing =
        Spec::write("ec2.amazonaws.com", "RunInstances").failing("Client.UnauthorizedOperation");
    let mallory = |s: Spec| s.by("arn:aws:iam::111122223333:user/mallory", "mallory/1.0");
    for m in MONDAY..MONDAY + 200 {
        feed.advance(m);
        feed.events(&write, m, rng.poisson(3.0));
        feed.events(&failing, m, rng.poisson(0.5));
        if (MONDAY + 120..MONDAY + 124).contains(&m) {
            feed.events(&mallory(write.clone()), m, 50);
        }
        if (MONDAY + 150..MONDAY + 153).contains(&m) {
            feed.events(&mallory(failing.clone()), m, 30);
        }
    }
    feed.out
}

#[test]
fn the_aws_examples_are_accepted_by_ingest_validation() {
    for line in AWS_EXAMPLES.lines() {
        let ev = CloudTrailEvent::parse(line.as_bytes().to_vec())
            .unwrap_or_else(|e| panic!("AWS's example refused: {e}"));
        assert!(ev.fields().is_insight());
    }
}

#[test]
fn produced_events_pass_ingest_validation_with_their_fields_read() {
    let events = produced();
    // The failing writes are also a burst of writes: both types start and end.
    for t in [InsightType::ApiCallRate, InsightType::ApiErrorRate] {
        for state in [InsightState::Start, InsightState::End] {
            assert!(
                events
                    .iter()
                    .any(|e| e.key.insight_type() == t && e.state == state),
                "no {t:?} {state:?}: {events:#?}"
            );
        }
    }
    for e in &events {
        let bytes = e.to_json();
        let parsed = CloudTrailEvent::parse(bytes.clone())
            .unwrap_or_else(|err| panic!("orgtrail's own Insight refused: {err}"));
        let f = parsed.fields();
        assert_eq!(parsed.bytes(), bytes.as_slice());
        assert_eq!(f.event_category, EventCategory::Insight);
        assert!(f.is_insight());
        assert_eq!(f.event_type.as_deref(), Some("AwsCloudTrailInsight"));
        assert_eq!(f.event_id, e.event_id);
        assert_eq!(f.recipient_account_id.as_deref(), Some(ACCOUNT));
        assert_eq!(f.aws_region.as_deref(), Some("us-east-1"));
        assert_eq!(f.event_source, "ec2.amazonaws.com");
        assert_eq!(f.event_name, "RunInstances");
        assert_eq!(f.event_time, Timestamp(e.event_minute * 60_000));
        assert_eq!(f.event_version.as_deref(), Some("1.09"));
    }
}

#[test]
fn produced_events_have_the_shape_of_aws_examples() -> Result<(), serde_json::Error> {
    // The union of the shapes of AWS's examples that carry attributions.
    let mut aws = BTreeSet::new();
    for line in AWS_EXAMPLES.lines() {
        let v: Value = serde_json::from_str(line)?;
        if v.pointer("/insightDetails/insightContext/attributions")
            .is_some()
        {
            shape(&v, "", &mut aws);
        }
    }
    assert!(
        aws.contains("insightDetails.insightContext.attributions[].baseline[].average: number")
    );
    let events = produced();
    for e in &events {
        let v: Value = serde_json::from_slice(&e.to_json())?;
        let mut ours = BTreeSet::new();
        shape(&v, "", &mut ours);
        let missing: Vec<&String> = aws.difference(&ours).collect();
        assert!(
            missing.is_empty(),
            "{:?} {:?} lacks {missing:#?}",
            e.key,
            e.state
        );
        let extra: Vec<&String> = ours
            .difference(&aws)
            .filter(|p| !EXTRA.contains(&p.as_str()))
            .collect();
        assert!(
            extra.is_empty(),
            "{:?} has more than AWS: {extra:#?}",
            e.state
        );
        let error = v
            .pointer("/insightDetails/errorCode")
            .and_then(Value::as_str);
        match e.key.insight_type() {
            InsightType::ApiErrorRate => {
                assert_eq!(error, Some("Client.UnauthorizedOperation"));
            }
            InsightType::ApiCallRate => assert_eq!(error, None),
        }
    }
    Ok(())
}

#[test]
fn keys_are_in_cloudtrails_order_and_attributions_sorted() -> Result<(), serde_json::Error> {
    let aws_first = AWS_EXAMPLES.lines().next().unwrap_or_default();
    let order = |text: &str, keys: &[&str]| -> Vec<usize> {
        keys.iter()
            .map(|k| text.find(&format!("\"{k}\":")).unwrap_or(usize::MAX))
            .collect()
    };
    let top = [
        "eventVersion",
        "eventTime",
        "awsRegion",
        "eventID",
        "eventType",
        "recipientAccountId",
        "sharedEventID",
        "insightDetails",
        "eventCategory",
    ];
    let details = [
        "state",
        "eventSource",
        "eventName",
        "insightType",
        "insightContext",
    ];
    let aws_top = order(aws_first, &top);
    assert!(aws_top.is_sorted() && !aws_top.contains(&usize::MAX));
    for e in produced() {
        let text = String::from_utf8(e.to_json()).unwrap_or_default();
        let t = order(&text, &top);
        assert!(t.is_sorted() && !t.contains(&usize::MAX), "{text}");
        let d = order(&text, &details);
        assert!(d.is_sorted(), "{text}");
        let v: Value = serde_json::from_str(&text)?;
        let attributions = v
            .pointer("/insightDetails/insightContext/attributions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let names: Vec<&str> = attributions
            .iter()
            .filter_map(|a| a["attribute"].as_str())
            .collect();
        assert_eq!(names, ["userIdentityArn", "userAgent", "errorCode"]);
        for a in &attributions {
            for period in ["insight", "baseline"] {
                let avgs: Vec<f64> = a[period]
                    .as_array()
                    .map(|l| l.iter().filter_map(|x| x["average"].as_f64()).collect())
                    .unwrap_or_default();
                assert!(avgs.len() <= 5);
                assert!(avgs.windows(2).all(|w| w[0] >= w[1]), "{period}: {avgs:?}");
            }
        }
        if e.state == InsightState::End {
            let stats = &v["insightDetails"]["insightContext"]["statistics"];
            assert!(stats["insightDuration"].as_u64() >= Some(1));
            assert!(stats["baselineDuration"].as_u64() >= Some(60));
        }
    }
    Ok(())
}

#[test]
fn a_rule_on_the_insight_detail_type_fires_on_the_start() -> Result<(), Box<dyn std::error::Error>>
{
    use orgtrail_rules::Pattern;
    use orgtrail_rules::cloudtrail::CloudTrailRules;
    let patterns = [
        r#"{"detail-type": ["AWS Insight via CloudTrail"],
            "detail": {"insightDetails": {"state": ["Start"], "insightType": ["ApiCallRateInsight"]}}}"#,
        r#"{"detail-type": ["AWS API Call via CloudTrail"]}"#,
    ];
    let mut compiled = Vec::new();
    for p in patterns {
        compiled.push(Pattern::from_json(&serde_json::from_str(p)?)?);
    }
    let rules = CloudTrailRules::new(compiled).map_err(|(i, e)| format!("pattern {i}: {e}"))?;
    let mut fired = Vec::new();
    for e in produced() {
        let record: Value = serde_json::from_slice(&e.to_json())?;
        let mut out = Vec::new();
        rules.matches(&record, &mut out);
        fired.push((e.key.insight_type(), e.state, out));
    }
    for (t, state, out) in &fired {
        let want: &[usize] = if *t == InsightType::ApiCallRate && *state == InsightState::Start {
            &[0]
        } else {
            &[]
        };
        assert_eq!(out, want, "{t:?} {state:?}");
    }
    assert!(fired.iter().any(|f| f.2 == [0]));
    Ok(())
}
