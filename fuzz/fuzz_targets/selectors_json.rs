//! Pasted `aws cloudtrail get-event-selectors` JSON (`Selectors::from_aws_json`), then the
//! compiled selectors applied to a few real events. Properties: nothing panics; a refusal
//! lists at least one problem; `matches` and `explain` agree on every event.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use orgtrail_agent::selectors::Selectors;
use orgtrail_core::{CloudTrailEvent, EventFields};

/// A management event, an S3 data event and a Lambda data event.
const EVENTS: [&str; 3] = [
    r#"{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","principalId":"AIDAEXAMPLE","arn":"arn:aws:iam::123456789012:user/alice","accountId":"123456789012","userName":"alice"},"eventTime":"2026-11-24T10:00:00Z","eventSource":"iam.amazonaws.com","eventName":"CreateUser","awsRegion":"us-east-1","sourceIPAddress":"192.0.2.1","userAgent":"aws-cli","requestParameters":{"userName":"bob"},"responseElements":null,"requestID":"r1","eventID":"11111111-1111-4111-8111-111111111111","readOnly":false,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"123456789012","eventCategory":"Management"}"#,
    r#"{"eventVersion":"1.08","userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::123456789012:assumed-role/app/s1","accountId":"123456789012","sessionContext":{"sessionIssuer":{"userName":"app"}}},"eventTime":"2026-11-24T10:00:01Z","eventSource":"s3.amazonaws.com","eventName":"PutObject","awsRegion":"eu-west-1","requestParameters":{"bucketName":"mybucket","key":"prefix/a.txt"},"eventID":"22222222-2222-4222-8222-222222222222","readOnly":false,"resources":[{"type":"AWS::S3::Object","ARN":"arn:aws:s3:::mybucket/prefix/a.txt"},{"accountId":"123456789012","type":"AWS::S3::Bucket","ARN":"arn:aws:s3:::mybucket"}],"eventType":"AwsApiCall","managementEvent":false,"recipientAccountId":"123456789012","eventCategory":"Data"}"#,
    r#"{"eventVersion":"1.08","userIdentity":{"type":"AWSService","invokedBy":"events.amazonaws.com"},"eventTime":"2026-11-24T10:00:02Z","eventSource":"lambda.amazonaws.com","eventName":"Invoke","awsRegion":"us-east-1","errorCode":"AccessDenied","eventID":"33333333-3333-4333-8333-333333333333","readOnly":false,"resources":[{"type":"AWS::Lambda::Function","ARN":"arn:aws:lambda:us-east-1:123456789012:function:helloworld"}],"eventType":"AwsApiCall","recipientAccountId":"123456789012","eventCategory":"Data"}"#,
];

fn events() -> &'static [EventFields] {
    static E: OnceLock<Vec<EventFields>> = OnceLock::new();
    E.get_or_init(|| {
        EVENTS
            .iter()
            .map(|e| {
                CloudTrailEvent::parse(e.as_bytes().to_vec())
                    .expect("the fixed events are valid")
                    .fields()
                    .clone()
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Selectors::from_aws_json(text) {
        Ok(sel) => {
            let _ = sel.summary();
            let _ = sel.ships_everything();
            for f in events() {
                let shipped = sel.matches(f);
                let why = sel.explain(f);
                assert_eq!(
                    shipped,
                    why.starts_with("matched"),
                    "matches and explain disagree: {why}"
                );
            }
        }
        Err(problems) => assert!(!problems.is_empty(), "a refusal names a problem"),
    }
});
