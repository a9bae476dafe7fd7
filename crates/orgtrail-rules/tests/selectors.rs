//! Event selectors with CloudTrail's documented semantics: each operator, AND within a selector,
//! OR across selectors, basic selectors, the `get-event-selectors` paste, the region filter and
//! invalid configurations. Events are real CloudTrail records (the shared corpus) or records
//! shaped like the AWS documentation's examples.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use orgtrail_core::{CloudTrailEvent, EventFields};
use orgtrail_rules::selectors::{SelectorConfig, Selectors, parse_aws_json};
use serde_json::{Value, json};

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/corpus")
}

/// Record `n` (0-based) of a delivered log file of the corpus.
fn corpus_record(file: &str, n: usize) -> EventFields {
    let text = std::fs::read_to_string(corpus().join("logfiles").join(file)).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let rec = serde_json::to_vec(&v["Records"][n]).unwrap();
    CloudTrailEvent::parse(rec).unwrap().into_parts().1
}

/// Line `n` (1-based) of a JSON-lines file of the corpus.
fn corpus_line(file: &str, n: usize) -> EventFields {
    let text = std::fs::read_to_string(corpus().join("events").join(file)).unwrap();
    let line = text.lines().nth(n - 1).unwrap();
    CloudTrailEvent::parse(line.as_bytes())
        .unwrap()
        .into_parts()
        .1
}

fn parse(v: &Value) -> EventFields {
    CloudTrailEvent::parse(serde_json::to_vec(v).unwrap())
        .unwrap()
        .into_parts()
        .1
}

fn with(mut base: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base
}

/// An S3 object-level data event as in the Amazon S3 User Guide's CloudTrail examples.
fn s3_object(event_name: &str, read_only: bool, object_arn: &str, bucket: &str) -> Value {
    json!({
        "eventVersion": "1.08",
        "userIdentity": {"type": "IAMUser", "principalId": "AIDAJDPLRKLG7UEXAMPLE",
            "arn": "arn:aws:iam::111122223333:user/Mary", "accountId": "111122223333",
            "accessKeyId": "AKIAIOSFODNN7EXAMPLE", "userName": "Mary"},
        "eventTime": "2024-03-06T21:01:59Z",
        "eventSource": "s3.amazonaws.com",
        "eventName": event_name,
        "awsRegion": "us-west-2",
        "sourceIPAddress": "192.0.2.0",
        "userAgent": "aws-cli/2.13.0",
        "requestParameters": {"bucketName": bucket, "key": "k"},
        "responseElements": null,
        "requestID": "3D737CDA993C395A",
        "eventID": "cdc4b7ed-e171-4cef-975a-ad829d4123e8",
        "readOnly": read_only,
        "resources": [
            {"type": "AWS::S3::Object", "ARN": object_arn},
            {"accountId": "111122223333", "type": "AWS::S3::Bucket",
             "ARN": format!("arn:aws:s3:::{bucket}")}
        ],
        "eventType": "AwsApiCall",
        "managementEvent": false,
        "recipientAccountId": "111122223333",
        "eventCategory": "Data"
    })
}

fn get_object() -> Value {
    s3_object(
        "GetObject",
        true,
        "arn:aws:s3:::amzn-s3-demo-bucket1/example-images/cat.jpg",
        "amzn-s3-demo-bucket1",
    )
}

fn put_object_prod() -> Value {
    s3_object(
        "PutObject",
        false,
        "arn:aws:s3:::prod-logs/2024/03/06/app.log",
        "prod-logs",
    )
}

/// A Lambda `Invoke` data event (AWS Lambda Developer Guide, "Logging with CloudTrail").
fn invoke(function: &str) -> Value {
    let arn = format!("arn:aws:lambda:us-west-2:111111111111:function:{function}");
    json!({
        "eventVersion": "1.08",
        "userIdentity": {"type": "AssumedRole", "principalId": "AROAEXAMPLE:deployer",
            "arn": "arn:aws:sts::111111111111:assumed-role/ci/deployer", "accountId": "111111111111"},
        "eventTime": "2024-03-06T21:01:59Z",
        "eventSource": "lambda.amazonaws.com",
        "eventName": "Invoke",
        "awsRegion": "us-west-2",
        "sourceIPAddress": "192.0.2.10",
        "userAgent": "aws-sdk-go-v2",
        "requestParameters": {"functionName": arn},
        "responseElements": null,
        "eventID": "0a1b2c3d-1111-2222-3333-444455556666",
        "readOnly": false,
        "resources": [{"accountId": "111111111111", "type": "AWS::Lambda::Function", "ARN": arn}],
        "eventType": "AwsApiCall",
        "managementEvent": false,
        "recipientAccountId": "111111111111",
        "eventCategory": "Data"
    })
}

/// A DynamoDB `PutItem` data event.
fn put_item(table: &str) -> Value {
    let arn = format!("arn:aws:dynamodb:us-west-2:111122223333:table/{table}");
    json!({
        "eventVersion": "1.08",
        "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/Mary",
            "accountId": "111122223333", "userName": "Mary"},
        "eventTime": "2024-03-06T21:01:59Z",
        "eventSource": "dynamodb.amazonaws.com",
        "eventName": "PutItem",
        "awsRegion": "us-west-2",
        "sourceIPAddress": "192.0.2.0",
        "requestParameters": {"tableName": table},
        "eventID": "1a1b2c3d-1111-2222-3333-444455556666",
        "readOnly": false,
        "resources": [{"accountId": "111122223333", "type": "AWS::DynamoDB::Table", "ARN": arn}],
        "eventType": "AwsApiCall",
        "managementEvent": false,
        "recipientAccountId": "111122223333",
        "eventCategory": "Data"
    })
}

/// A management event of eventVersion 1.08 with `readOnly`.
fn management(source: &str, name: &str, read_only: bool) -> Value {
    json!({
        "eventVersion": "1.08",
        "userIdentity": {"type": "AssumedRole", "principalId": "AROAEXAMPLE:admin",
            "arn": "arn:aws:sts::111122223333:assumed-role/Admin/alice", "accountId": "111122223333"},
        "eventTime": "2024-03-06T21:01:59Z",
        "eventSource": source,
        "eventName": name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "192.0.2.0",
        "userAgent": "console.amazonaws.com",
        "requestParameters": null,
        "responseElements": null,
        "eventID": "2a1b2c3d-1111-2222-3333-444455556666",
        "readOnly": read_only,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": "111122223333",
        "eventCategory": "Management",
        "sessionCredentialFromConsole": "true"
    })
}

/// A network activity event (VPC endpoint access denied), as in the CloudTrail User Guide.
fn network_denied() -> Value {
    json!({
        "eventVersion": "1.09",
        "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::111122223333:assumed-role/app/s",
            "accountId": "111122223333"},
        "eventTime": "2024-09-03T21:01:59Z",
        "eventSource": "cloudtrail.amazonaws.com",
        "eventName": "ListTrails",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "10.0.0.5",
        "errorCode": "VpceAccessDenied",
        "errorMessage": "The request was denied due to a VPC endpoint policy",
        "eventID": "3a1b2c3d-1111-2222-3333-444455556666",
        "readOnly": true,
        "eventType": "AwsVpceEvent",
        "managementEvent": false,
        "recipientAccountId": "111122223333",
        "vpcEndpointId": "vpce-EXAMPLE08c1b6b9b7",
        "eventCategory": "NetworkActivity"
    })
}

fn from_toml(text: &str) -> Selectors {
    let cfg = SelectorConfig::from_agent_toml(text).unwrap();
    Selectors::compile(&cfg, None).unwrap_or_else(|p| panic!("{text}\n{p:#?}"))
}

fn problems(text: &str) -> Vec<String> {
    let cfg = SelectorConfig::from_agent_toml(text).unwrap();
    match Selectors::compile(&cfg, None) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(p) => p,
    }
}

fn advanced(fields: &str) -> Selectors {
    from_toml(&format!("[[selectors.advanced]]\n{fields}\n"))
}

#[test]
fn each_operator_against_the_documented_semantics() {
    let get = parse(&get_object());
    let put = parse(&put_object_prod());
    let denied = parse(&with(
        put_object_prod(),
        json!({"errorCode": "AccessDenied", "errorMessage": "Access Denied"}),
    ));
    let data = r#"eventCategory = { equals = ["Data"] }
"resources.type" = { equals = ["AWS::S3::Object"] }"#;
    // (field selector, event, shipped?)
    let cases: Vec<(&str, &EventFields, bool)> = vec![
        // Equals: any listed value, exactly, case-sensitive, no wildcards.
        (
            r#"eventName = { equals = ["GetObject", "HeadObject"] }"#,
            &get,
            true,
        ),
        (r#"eventName = { equals = ["PutObject"] }"#, &get, false),
        (r#"eventName = { equals = ["getobject"] }"#, &get, false),
        (r#"eventName = { equals = ["Get*"] }"#, &get, false),
        // NotEquals: none of the values.
        (
            r#"eventName = { not_equals = ["PutObject", "DeleteObject"] }"#,
            &get,
            true,
        ),
        (
            r#"eventName = { not_equals = ["GetObject", "PutObject"] }"#,
            &get,
            false,
        ),
        // StartsWith / NotStartsWith on resources.ARN (the documented per-bucket form).
        (
            r#""resources.ARN" = { starts_with = ["arn:aws:s3:::amzn-s3-demo-bucket1/"] }"#,
            &get,
            true,
        ),
        (
            r#""resources.ARN" = { starts_with = ["arn:aws:s3:::prod-"] }"#,
            &get,
            false,
        ),
        (
            r#""resources.ARN" = { not_starts_with = ["arn:aws:s3:::prod-"] }"#,
            &get,
            true,
        ),
        // The S3 object is excluded although the event's AWS::S3::Bucket element does not
        // start with the excluded prefix: resource conditions describe one resource.
        (
            r#""resources.ARN" = { not_starts_with = ["arn:aws:s3:::amzn-s3-demo-bucket1/"] }"#,
            &get,
            false,
        ),
        // EndsWith / NotEndsWith.
        (
            r#""resources.ARN" = { ends_with = [".jpg", ".png"] }"#,
            &get,
            true,
        ),
        (r#""resources.ARN" = { ends_with = [".log"] }"#, &get, false),
        (
            r#""resources.ARN" = { not_ends_with = [".log"] }"#,
            &get,
            true,
        ),
        (
            r#""resources.ARN" = { not_ends_with = [".jpg"] }"#,
            &get,
            false,
        ),
        (r#"eventName = { ends_with = ["Object"] }"#, &put, true),
        (r#"eventName = { not_ends_with = ["Object"] }"#, &put, false),
        // readOnly compares as "true"/"false"; booleans are accepted in TOML.
        (r#"readOnly = { equals = ["true"] }"#, &get, true),
        (r#"readOnly = { equals = [false] }"#, &get, false),
        (r#"readOnly = { equals = [false] }"#, &put, true),
        // A field the event lacks: positive operators fail, negative ones hold.
        (r#"errorCode = { equals = ["AccessDenied"] }"#, &put, false),
        (
            r#"errorCode = { not_equals = ["AccessDenied"] }"#,
            &put,
            true,
        ),
        (
            r#"errorCode = { equals = ["AccessDenied"] }"#,
            &denied,
            true,
        ),
        (
            r#"errorCode = { not_equals = ["AccessDenied"] }"#,
            &denied,
            false,
        ),
        (
            r#"sessionCredentialFromConsole = { equals = ["true"] }"#,
            &get,
            false,
        ),
        (
            r#"sessionCredentialFromConsole = { not_equals = ["true"] }"#,
            &get,
            true,
        ),
        // userIdentity.arn and eventType.
        (
            r#""userIdentity.arn" = { starts_with = ["arn:aws:iam::111122223333:user/"] }"#,
            &get,
            true,
        ),
        (
            r#""userIdentity.arn" = { ends_with = ["/Bob"] }"#,
            &get,
            false,
        ),
        (r#"eventType = { equals = ["AwsApiCall"] }"#, &get, true),
        (
            r#"eventSource = { equals = ["s3.amazonaws.com"] }"#,
            &get,
            true,
        ),
        // Two operators on one field are AND'ed.
        (
            r#"eventName = { starts_with = ["Get", "Put"], not_equals = ["PutObject"] }"#,
            &get,
            true,
        ),
        (
            r#"eventName = { starts_with = ["Get", "Put"], not_equals = ["PutObject"] }"#,
            &put,
            false,
        ),
        // CloudTrail's own operator spelling is accepted in TOML too.
        (r#"eventName = { Equals = ["GetObject"] }"#, &get, true),
    ];
    for (cond, event, expected) in cases {
        let s = advanced(&format!("{data}\n{cond}"));
        assert_eq!(
            s.matches(event),
            expected,
            "{cond} on {}: {}",
            event.event_name,
            s.explain(event)
        );
        let word = if expected { "matched:" } else { "filtered:" };
        assert!(s.explain(event).starts_with(word), "{}", s.explain(event));
    }
}

#[test]
fn field_selectors_are_anded_and_selectors_ored() {
    let sel = from_toml(
        r#"
[[selectors.advanced]]
name = "writes to prod buckets"
eventCategory = { equals = ["Data"] }
"resources.type" = { equals = ["AWS::S3::Object"] }
"resources.ARN" = { starts_with = ["arn:aws:s3:::prod-"] }
readOnly = { equals = [false] }

[[selectors.advanced]]
name = "management writes"
eventCategory = { equals = ["Management"] }
readOnly = { equals = ["false"] }
"#,
    );
    let put_prod = parse(&put_object_prod());
    let get_prod = parse(&s3_object(
        "GetObject",
        true,
        "arn:aws:s3:::prod-logs/a",
        "prod-logs",
    ));
    let put_other = parse(&s3_object(
        "PutObject",
        false,
        "arn:aws:s3:::amzn-s3-demo-bucket1/a",
        "amzn-s3-demo-bucket1",
    ));
    let terminate = parse(&management(
        "ec2.amazonaws.com",
        "TerminateInstances",
        false,
    ));
    let describe = parse(&management("ec2.amazonaws.com", "DescribeInstances", true));

    assert!(sel.matches(&put_prod));
    assert_eq!(
        sel.explain(&put_prod),
        "matched: advanced[0] \"writes to prod buckets\""
    );
    // One failing condition of a selector is enough to fail it (AND) ...
    assert!(!sel.matches(&get_prod));
    assert!(!sel.matches(&put_other));
    // ... and any selector is enough to ship (OR).
    assert!(sel.matches(&terminate));
    assert_eq!(
        sel.explain(&terminate),
        "matched: advanced[1] \"management writes\""
    );
    assert!(!sel.matches(&describe));
    assert_eq!(
        sel.explain(&describe),
        "filtered: no advanced event selector matched: \
         advanced[0] \"writes to prod buckets\": eventCategory Equals [Data] fails (eventCategory is Management); \
         advanced[1] \"management writes\": readOnly Equals [false] fails (readOnly is \"true\")"
    );
    assert_eq!(
        sel.explain(&put_other),
        "filtered: no advanced event selector matched: \
         advanced[0] \"writes to prod buckets\": resources.ARN StartsWith [arn:aws:s3:::prod-] fails \
         (resources: AWS::S3::Object arn:aws:s3:::amzn-s3-demo-bucket1/a, AWS::S3::Bucket arn:aws:s3:::amzn-s3-demo-bucket1); \
         advanced[1] \"management writes\": eventCategory Equals [Management] fails (eventCategory is Data)"
    );
}

#[test]
fn resource_conditions_must_hold_for_one_resource() {
    // resources.type names the object; the bucket element's ARN must not satisfy the ARN
    // condition on its behalf.
    let sel = advanced(
        r#"eventCategory = { equals = ["Data"] }
"resources.type" = { equals = ["AWS::S3::Object"] }
"resources.ARN" = { equals = ["arn:aws:s3:::amzn-s3-demo-bucket1"] }"#,
    );
    let get = parse(&get_object());
    assert!(!sel.matches(&get));
    assert!(
        sel.explain(&get)
            .ends_with("no single resource satisfies all resources.* conditions together (resources: AWS::S3::Object arn:aws:s3:::amzn-s3-demo-bucket1/example-images/cat.jpg, AWS::S3::Bucket arn:aws:s3:::amzn-s3-demo-bucket1)"),
        "{}",
        sel.explain(&get)
    );
    let bucket = advanced(
        r#"eventCategory = { equals = ["Data"] }
"resources.type" = { equals = ["AWS::S3::Bucket"] }
"resources.ARN" = { equals = ["arn:aws:s3:::amzn-s3-demo-bucket1"] }"#,
    );
    assert!(bucket.matches(&get));
}

#[test]
fn data_events_of_older_records_are_recognised_by_management_event_false() {
    // A real S3 ListBucket record without eventCategory, with managementEvent false.
    let list_bucket = corpus_line("panther-analysis.jsonl", 32);
    assert_eq!(list_bucket.event_name, "ListBucket");
    assert!(list_bucket.management_event == Some(false));
    let data = advanced(
        r#"eventCategory = { equals = ["Data"] }
"resources.type" = { equals = ["AWS::S3::Bucket"] }"#,
    );
    let mgmt = advanced(r#"eventCategory = { equals = ["Management"] }"#);
    assert!(data.matches(&list_bucket));
    assert!(!mgmt.matches(&list_bucket));
    // Records without either field (eventVersion 1.02) are management events.
    let run_instances = corpus_record("aws-kms-developer-guide_ct-ec2two_02.json", 0);
    assert_eq!(run_instances.event_name, "RunInstances");
    assert!(mgmt.matches(&run_instances));
    assert!(!data.matches(&run_instances));
}

#[test]
fn network_activity_events_need_advanced_selectors() {
    let ev = parse(&network_denied());
    let adv = advanced(
        r#"eventCategory = { equals = ["NetworkActivity"] }
eventSource = { equals = ["cloudtrail.amazonaws.com"] }
errorCode = { equals = ["VpceAccessDenied"] }"#,
    );
    assert!(adv.matches(&ev));
    let basic = from_toml("[[selectors.basic]]\nread_write_type = \"All\"\n");
    assert!(!basic.matches(&ev));
    assert_eq!(
        basic.explain(&ev),
        "filtered: no event selector matched: basic[0]: network activity events need advanced event selectors"
    );
}

#[test]
fn basic_selectors_read_write_type_and_management_sources() {
    // Real records of the KMS developer guide: RunInstances (no readOnly, eventVersion 1.02),
    // CreateGrant (kms, write), GenerateDataKeyWithoutPlaintext (kms, read).
    let file = "aws-kms-developer-guide_ct-ec2two_02.json";
    let run = corpus_record(file, 0);
    let grant = corpus_record(file, 1);
    let gen_key = corpus_record(file, 2);
    let describe = parse(&management("ec2.amazonaws.com", "DescribeInstances", true));
    let terminate = parse(&management(
        "ec2.amazonaws.com",
        "TerminateInstances",
        false,
    ));
    let all = [&run, &grant, &gen_key, &describe, &terminate];
    // (selector, shipped per event in `all`)
    let cases: Vec<(&str, [bool; 5])> = vec![
        ("read_write_type = \"All\"", [true, true, true, true, true]),
        // Default: All, management events included.
        ("", [true, true, true, true, true]),
        // An event without readOnly fits only All.
        (
            "read_write_type = \"ReadOnly\"",
            [false, false, true, true, false],
        ),
        (
            "read_write_type = \"WriteOnly\"",
            [false, true, false, false, true],
        ),
        (
            "exclude_management_event_sources = [\"kms.amazonaws.com\"]",
            [true, false, false, true, true],
        ),
        (
            "read_write_type = \"WriteOnly\"\nexclude_management_event_sources = [\"kms.amazonaws.com\"]",
            [false, false, false, false, true],
        ),
        ("include_management_events = false", [false; 5]),
    ];
    for (body, expected) in cases {
        let sel = from_toml(&format!("[[selectors.basic]]\n{body}\n"));
        for (ev, want) in all.iter().zip(expected) {
            assert_eq!(
                sel.matches(ev),
                want,
                "{body:?} on {}: {}",
                ev.event_name,
                sel.explain(ev)
            );
        }
    }
    let sel = from_toml(
        "[[selectors.basic]]\nread_write_type = \"ReadOnly\"\nexclude_management_event_sources = [\"kms.amazonaws.com\"]\n",
    );
    assert_eq!(
        sel.explain(&gen_key),
        "filtered: no event selector matched: basic[0]: eventSource kms.amazonaws.com is in ExcludeManagementEventSources"
    );
    assert_eq!(
        sel.explain(&terminate),
        "filtered: no event selector matched: basic[0]: ReadWriteType ReadOnly does not fit the management event (readOnly is \"false\")"
    );
    assert_eq!(
        sel.explain(&describe),
        "matched: basic[0]: management event, ReadWriteType ReadOnly"
    );
}

#[test]
fn basic_data_resources_by_type_and_arn_prefix() {
    let get = parse(&get_object());
    let put_prod = parse(&put_object_prod());
    let hello = parse(&invoke("helloworld"));
    let hello2 = parse(&invoke("helloworld2"));
    let music = parse(&put_item("Music"));
    let musicians = parse(&put_item("Musicians"));
    let all = [&get, &put_prod, &hello, &hello2, &music, &musicians];
    let cases: Vec<(&str, [bool; 6])> = vec![
        // All buckets: the documented prefix arn:aws:s3, and arn:aws:s3:::.
        (
            r#"{ type = "AWS::S3::Object", values = ["arn:aws:s3"] }"#,
            [true, true, false, false, false, false],
        ),
        (
            r#"{ type = "AWS::S3::Object", values = ["arn:aws:s3:::"] }"#,
            [true, true, false, false, false, false],
        ),
        // One bucket with an empty object prefix; a bucket and object prefix.
        (
            r#"{ type = "AWS::S3::Object", values = ["arn:aws:s3:::amzn-s3-demo-bucket1/"] }"#,
            [true, false, false, false, false, false],
        ),
        (
            r#"{ type = "AWS::S3::Object", values = ["arn:aws:s3:::amzn-s3-demo-bucket1/example-images"] }"#,
            [true, false, false, false, false, false],
        ),
        (
            r#"{ type = "AWS::S3::Object", values = ["arn:aws:s3:::amzn-s3-demo-bucket1/other"] }"#,
            [false; 6],
        ),
        // The type must be the resource's: an S3 ARN under the Lambda type selects nothing.
        (
            r#"{ type = "AWS::Lambda::Function", values = ["arn:aws:s3"] }"#,
            [false; 6],
        ),
        // All functions; one function, exactly ("Lambda function ARNs are exact").
        (
            r#"{ type = "AWS::Lambda::Function", values = ["arn:aws:lambda"] }"#,
            [false, false, true, true, false, false],
        ),
        (
            r#"{ type = "AWS::Lambda::Function", values = ["arn:aws:lambda:us-west-2:111111111111:function:helloworld"] }"#,
            [false, false, true, false, false, false],
        ),
        // All tables; one table, exactly.
        (
            r#"{ type = "AWS::DynamoDB::Table", values = ["arn:aws:dynamodb"] }"#,
            [false, false, false, false, true, true],
        ),
        (
            r#"{ type = "AWS::DynamoDB::Table", values = ["arn:aws:dynamodb:us-west-2:111122223333:table/Music"] }"#,
            [false, false, false, false, true, false],
        ),
    ];
    for (resource, expected) in cases {
        let sel = from_toml(&format!(
            "[[selectors.basic]]\ninclude_management_events = false\ndata_resources = [{resource}]\n"
        ));
        for (ev, want) in all.iter().zip(expected) {
            assert_eq!(
                sel.matches(ev),
                want,
                "{resource} on {} {:?}: {}",
                ev.event_name,
                ev.resources.first().and_then(|r| r.arn.as_deref()),
                sel.explain(ev)
            );
        }
    }
    // ReadWriteType applies to data events too, and several selectors are OR'ed.
    let sel = from_toml(
        r#"
[[selectors.basic]]
read_write_type = "WriteOnly"
include_management_events = false
data_resources = [{ type = "AWS::S3::Object", values = ["arn:aws:s3"] }]

[[selectors.basic]]
read_write_type = "All"
include_management_events = false
data_resources = [{ type = "AWS::Lambda::Function", values = ["arn:aws:lambda"] }]
"#,
    );
    assert!(!sel.matches(&get));
    assert!(sel.matches(&put_prod));
    assert!(sel.matches(&hello));
    assert_eq!(
        sel.explain(&put_prod),
        "matched: basic[0]: data resource AWS::S3::Object \"arn:aws:s3\" matches arn:aws:s3:::prod-logs/2024/03/06/app.log"
    );
    assert_eq!(
        sel.explain(&get),
        "filtered: no event selector matched: basic[0]: ReadWriteType WriteOnly does not fit the data event (readOnly is \"true\"); \
         basic[1]: no DataResources entry matches the event's resources (resources: AWS::S3::Object arn:aws:s3:::amzn-s3-demo-bucket1/example-images/cat.jpg, AWS::S3::Bucket arn:aws:s3:::amzn-s3-demo-bucket1)"
    );
    // A basic selector without data resources logs no data events (the trail default).
    let default = from_toml("[[selectors.basic]]\n");
    assert!(!default.matches(&get));
    assert!(default.matches(&parse(&management(
        "iam.amazonaws.com",
        "CreateUser",
        false
    ))));
}

/// `aws cloudtrail get-event-selectors` output for a trail with basic selectors, from the
/// CloudTrail User Guide ("Logging data events with the AWS CLI"); the trailing comma of the
/// guide's listing removed.
const AWS_BASIC: &str = r#"{
    "EventSelectors": [
        {
            "IncludeManagementEvents": true,
            "DataResources": [
                {
                    "Values": [
                        "arn:aws:s3:::mybucket/prefix",
                        "arn:aws:s3:::mybucket2/prefix2"
                    ],
                    "Type": "AWS::S3::Object"
                }
            ],
            "ReadWriteType": "All"
        }
    ],
    "TrailARN": "arn:aws:cloudtrail:us-east-2:123456789012:trail/TrailName"
}"#;

/// The guide's output for advanced selectors, with the empty lists `get-event-selectors`
/// prints for unused operators (the guide's listing repeats `Equals` in the last field
/// selector; the second one is `NotEquals` here, as the CLI prints).
const AWS_ADVANCED: &str = r#"{
  "AdvancedEventSelectors": [
    {
      "Name": "Log readOnly and writeOnly management events",
      "FieldSelectors": [
        {
          "Field": "eventCategory",
          "Equals": [ "Management" ],
          "StartsWith": [],
          "EndsWith": [],
          "NotEquals": [],
          "NotStartsWith": [],
          "NotEndsWith": []
        }
      ]
    },
    {
      "Name": "Log PutObject and DeleteObject events for two S3 prefixes",
      "FieldSelectors": [
        {
          "Field": "eventCategory",
          "Equals": [ "Data" ],
          "StartsWith": [],
          "EndsWith": [],
          "NotEquals": [],
          "NotStartsWith": [],
          "NotEndsWith": []
        },
        {
          "Field": "resources.type",
          "Equals": [ "AWS::S3::Object" ],
          "StartsWith": [],
          "EndsWith": [],
          "NotEquals": [],
          "NotStartsWith": [],
          "NotEndsWith": []
        },
        {
          "Field": "eventName",
          "Equals": [ "PutObject", "DeleteObject" ]
        },
        {
          "Field": "resources.ARN",
          "Equals": [],
          "StartsWith": [ "arn:aws:s3:::mybucket/prefix", "arn:aws:s3:::mybucket2/prefix2" ],
          "EndsWith": [],
          "NotEquals": [],
          "NotStartsWith": [],
          "NotEndsWith": []
        }
      ]
    }
  ],
  "TrailARN": "arn:aws:cloudtrail:us-east-2:123456789012:trail/TrailName"
}"#;

#[test]
fn get_event_selectors_output_is_accepted_verbatim() {
    let in_prefix = parse(&s3_object(
        "PutObject",
        false,
        "arn:aws:s3:::mybucket/prefix/a.txt",
        "mybucket",
    ));
    let get_in_prefix = parse(&s3_object(
        "GetObject",
        true,
        "arn:aws:s3:::mybucket2/prefix2/b.txt",
        "mybucket2",
    ));
    let elsewhere = parse(&s3_object(
        "PutObject",
        false,
        "arn:aws:s3:::mybucket/other/a.txt",
        "mybucket",
    ));
    let mgmt = parse(&management("iam.amazonaws.com", "CreateUser", false));

    let basic = Selectors::from_aws_json(AWS_BASIC).unwrap();
    assert!(basic.matches(&in_prefix));
    assert!(basic.matches(&get_in_prefix));
    assert!(!basic.matches(&elsewhere));
    assert!(basic.matches(&mgmt));

    let adv = Selectors::from_aws_json(AWS_ADVANCED).unwrap();
    assert!(adv.matches(&in_prefix));
    // GetObject is not among the event names.
    assert!(!adv.matches(&get_in_prefix));
    assert!(!adv.matches(&elsewhere));
    assert!(adv.matches(&mgmt));
    assert_eq!(
        adv.explain(&get_in_prefix),
        "filtered: no advanced event selector matched: \
         advanced[0] \"Log readOnly and writeOnly management events\": eventCategory Equals [Management] fails (eventCategory is Data); \
         advanced[1] \"Log PutObject and DeleteObject events for two S3 prefixes\": eventName Equals [PutObject, DeleteObject] fails (eventName is \"GetObject\")"
    );

    // The trail's default, and a bare array as put-event-selectors takes it.
    let default = parse_aws_json(
        r#"{"EventSelectors":[{"IncludeManagementEvents":true,"DataResources":[],"ReadWriteType":"All"}],
            "TrailARN":"arn:aws:cloudtrail:us-east-2:123456789012:trail/TrailName"}"#,
    )
    .unwrap();
    assert_eq!(
        default.trail_arn.as_deref(),
        Some("arn:aws:cloudtrail:us-east-2:123456789012:trail/TrailName")
    );
    let default = Selectors::compile(&SelectorConfig::default(), Some(&default)).unwrap();
    assert!(default.matches(&mgmt));
    assert!(!default.matches(&in_prefix));
    let bare = Selectors::from_aws_json(
        r#"[{"Name":"S3EventSelector","FieldSelectors":[
            {"Field":"eventCategory","Equals":["Data"]},
            {"Field":"resources.type","Equals":["AWS::S3::Object"]},
            {"Field":"resources.ARN","StartsWith":["arn:aws:s3:::mybucket/"]}]}]"#,
    )
    .unwrap();
    assert!(bare.matches(&in_prefix));
    assert!(bare.matches(&elsewhere));
    assert!(!bare.matches(&get_in_prefix));
    assert!(!bare.matches(&mgmt));
}

#[test]
fn aws_json_file_named_in_the_toml_is_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("trail.json"), AWS_ADVANCED).unwrap();
    let toml = r#"
account = "111122223333"
[tls]
cert = "agent.crt"

[selectors]
regions = ["us-east-1", "us-west-2"]
aws_json = "trail.json"
"#;
    let cfg = SelectorConfig::from_agent_toml(toml).unwrap();
    let sel = Selectors::load(&cfg, dir.path()).unwrap();
    assert_eq!(
        sel.summary(),
        "2 advanced event selector(s), regions [us-east-1, us-west-2]"
    );
    let put = parse(&s3_object(
        "PutObject",
        false,
        "arn:aws:s3:::mybucket/prefix/a",
        "mybucket",
    ));
    assert!(sel.matches(&put));
    let eu = parse(&with(
        s3_object(
            "PutObject",
            false,
            "arn:aws:s3:::mybucket/prefix/a",
            "mybucket",
        ),
        json!({"awsRegion": "eu-west-1"}),
    ));
    assert!(!sel.matches(&eu));

    let missing =
        SelectorConfig::from_agent_toml("[selectors]\naws_json = \"nope.json\"\n").unwrap();
    let err = Selectors::load(&missing, dir.path()).unwrap_err();
    assert_eq!(err.len(), 1);
    assert!(
        err[0].starts_with("selectors.aws_json: cannot read "),
        "{err:?}"
    );
}

#[test]
fn region_filter_applies_to_every_event_and_defaults_to_all_regions() {
    let east = parse(&management("ec2.amazonaws.com", "RunInstances", false));
    let west = parse(&get_object()); // us-west-2
    let no_region = parse(&with(
        management("ec2.amazonaws.com", "RunInstances", false),
        json!({"awsRegion": null}),
    ));
    let insight = corpus_record(
        "aws-cloudtrail-user-guide_cloudtrail-log-file-examples_08.json",
        0,
    );
    assert!(insight.is_insight());

    let all = Selectors::default();
    assert!(all.ships_everything());
    for ev in [&east, &west, &no_region, &insight] {
        assert!(all.matches(ev));
    }
    assert_eq!(
        all.explain(&east),
        "matched: no event selectors configured (every event is shipped)"
    );
    // An empty [selectors] table is the same.
    assert!(from_toml("[selectors]\n").ships_everything());

    let only_east = from_toml("[selectors]\nregions = [\"us-east-1\"]\n");
    assert!(only_east.matches(&east));
    assert!(!only_east.matches(&west));
    assert_eq!(
        only_east.explain(&west),
        "filtered: awsRegion us-west-2 is not in regions [us-east-1]"
    );
    // Events without awsRegion are shipped; Insight events obey the region filter too.
    assert!(only_east.matches(&no_region));
    assert_eq!(insight.aws_region.as_deref(), Some("us-east-1"));
    assert!(only_east.matches(&insight));
    let only_west = from_toml("[selectors]\nregions = [\"us-west-2\"]\n");
    assert!(!only_west.matches(&insight));

    // The region filter and the selectors both apply.
    let both = from_toml(
        r#"
[selectors]
regions = ["us-west-2"]
[[selectors.advanced]]
eventCategory = { equals = ["Management"] }
"#,
    );
    assert!(!both.matches(&east));
    assert!(!both.matches(&west));
}

#[test]
fn insight_events_are_not_governed_by_event_selectors() {
    let insight = corpus_record(
        "aws-cloudtrail-user-guide_cloudtrail-log-file-examples_08.json",
        0,
    );
    let sel = advanced(
        r#"eventCategory = { equals = ["Management"] }
eventName = { equals = ["Nothing"] }"#,
    );
    assert!(sel.matches(&insight));
    assert_eq!(
        sel.explain(&insight),
        "matched: Insight events are not governed by event selectors"
    );
    let basic = from_toml("[[selectors.basic]]\ninclude_management_events = false\n");
    assert!(basic.matches(&insight));
}

#[test]
fn every_problem_of_an_invalid_configuration_is_listed() {
    let p = problems(
        r#"
[selectors]
regions = ["us-east1"]

[[selectors.advanced]]
name = "typos"
eventname = { equals = ["PutObject"] }
readOnly = { equals = ["yes"], starts_with = ["t"] }
eventSource = { equal = ["s3.amazonaws.com"] }
errorCode = { equals = [] }

[[selectors.advanced]]
eventCategory = { not_equals = ["Management"] }

[[selectors.advanced]]
eventCategory = { equals = ["Data", "Insight"] }
"resources.type" = { equals = ["AWS::S3::Object"] }
"resources.ARN" = { starts_with = [""] }
vpcEndpointId = { equals = ["vpce-1"] }

[[selectors.advanced]]
eventCategory = { equals = ["Data"] }
sessionCredentialFromConsole = { starts_with = ["t"] }
"#,
    );
    let expected = [
        "selectors.regions[0]: \"us-east1\" is not an AWS Region name (like us-east-1)",
        "selectors.advanced[0] \"typos\".eventname: unknown field \"eventname\" (did you mean eventName?); fields are eventCategory, eventSource, eventName, eventType, readOnly, resources.type, resources.ARN, userIdentity.arn, errorCode, sessionCredentialFromConsole",
        "selectors.advanced[0] \"typos\".readOnly: readOnly compares with \"true\" or \"false\", not \"yes\"",
        "selectors.advanced[0] \"typos\".readOnly: readOnly takes only Equals, not StartsWith",
        "selectors.advanced[0] \"typos\".eventSource: unknown operator \"equal\" (expected equals, not_equals, starts_with, not_starts_with, ends_with or not_ends_with)",
        "selectors.advanced[0] \"typos\".errorCode: Equals has an empty list of values",
        "selectors.advanced[0] \"typos\".errorCode: no operator with values",
        "selectors.advanced[0] \"typos\": no eventCategory field selector (CloudTrail requires one: eventCategory Equals Management, Data or NetworkActivity)",
        "selectors.advanced[1].eventCategory: eventCategory takes only Equals, not NotEquals",
        "selectors.advanced[1]: no eventCategory field selector (CloudTrail requires one: eventCategory Equals Management, Data or NetworkActivity)",
        "selectors.advanced[2].eventCategory: Insight events are not governed by event selectors (orgtrail always ships them); remove \"Insight\"",
        "selectors.advanced[2].resources.ARN StartsWith: value 0 is empty",
        "selectors.advanced[2].vpcEndpointId: field vpcEndpointId is not supported by orgtrail",
        "selectors.advanced[3].sessionCredentialFromConsole: sessionCredentialFromConsole takes Equals or NotEquals, not StartsWith",
        "selectors.advanced[3]: a selector for data events needs a resources.type field selector (CloudTrail requires one)",
    ];
    assert_eq!(p, expected, "{p:#?}");

    // Basic and advanced together (both are still checked); a bad ReadWriteType; a type basic
    // selectors cannot use; an empty regions list.
    let p = problems(
        r#"
[selectors]
regions = []
[[selectors.basic]]
read_write_type = "Readonly"
data_resources = [
  { type = "AWS::S3::AccessPoint", values = ["arn:aws:s3:us-east-1:111122223333:accesspoint/a"] },
  { type = "AWS::S3::Object", values = [] },
]
[[selectors.advanced]]
eventCategory = { equals = ["Management"] }
"#,
    );
    assert_eq!(
        p,
        [
            "selectors.regions: empty list (it would ship nothing); remove it to ship every region",
            "selectors: both basic and advanced event selectors are given; CloudTrail applies one kind to a trail, use one",
            "selectors.basic[0]: ReadWriteType \"Readonly\" is not one of All, ReadOnly, WriteOnly",
            "selectors.basic[0].data_resources[0]: Type \"AWS::S3::AccessPoint\" is not available to basic event selectors (only AWS::DynamoDB::Table, AWS::Lambda::Function, AWS::S3::Object); use advanced event selectors",
            "selectors.basic[0].data_resources[1]: no Values (give ARN prefixes, e.g. arn:aws:s3:::bucket/)",
        ]
    );
}

#[test]
fn invalid_aws_json_is_refused_with_locations() {
    let err = Selectors::from_aws_json(
        r#"{"AdvancedEventSelectors":[{"Name":"x","FieldSelectors":[
            {"Field":"eventCategory","Equals":["Data"]},
            {"Field":"resources.type","Equals":[],"StartsWith":["AWS::S3::"]},
            {"Field":"eventName","Equals":[],"NotEquals":[]}]}],
          "TrailARN":"arn:aws:cloudtrail:us-east-1:111122223333:trail/t"}"#,
    )
    .unwrap_err();
    assert_eq!(
        err,
        [
            "AdvancedEventSelectors[0] \"x\".FieldSelectors[1] (resources.type): resources.type takes only Equals, not StartsWith",
            "AdvancedEventSelectors[0] \"x\".FieldSelectors[2] (eventName): no operator with values",
            "AdvancedEventSelectors[0] \"x\": a selector for data events needs a resources.type field selector (CloudTrail requires one)",
        ]
    );
    let err = Selectors::from_aws_json(
        r#"{"EventSelectors":[{"ReadWriteType":"Everything"}],"AdvancedEventSelectors":[{"FieldSelectors":[{"Field":"eventCategory","Equals":["Management"]}]}]}"#,
    )
    .unwrap_err();
    assert_eq!(
        err,
        [
            "selectors: both basic and advanced event selectors are given; CloudTrail applies one kind to a trail, use one",
            "EventSelectors[0]: ReadWriteType \"Everything\" is not one of All, ReadOnly, WriteOnly",
        ]
    );
    let err =
        Selectors::from_aws_json(r#"{"AdvancedEventSelectors":[],"TrailARN":"t"}"#).unwrap_err();
    assert_eq!(
        err,
        [
            "no EventSelectors or AdvancedEventSelectors: a trail without selectors logs nothing; orgtrail refuses to ship nothing"
        ]
    );
    let err = Selectors::from_aws_json(r#"{"Trails":[]}"#).unwrap_err();
    assert_eq!(err.len(), 2, "{err:?}");
    assert!(
        err[0].starts_with(
            "not the output of `aws cloudtrail get-event-selectors`: unknown key \"Trails\""
        ),
        "{err:?}"
    );
    assert!(err[1].starts_with("no EventSelectors"), "{err:?}");
    // Pasted JSON with several problems lists them all: an unknown operator (a key serde
    // would stop at), an unknown field name, an unknown key in a basic selector's data
    // resource.
    let err = Selectors::from_aws_json(
        r#"{"AdvancedEventSelectors":[{"Name":"x","FieldSelectors":[
            {"Field":"eventCategory","Equals":["Data"]},
            {"Field":"eventNam","Equals":["PutObject"]},
            {"Field":"resources.type","Equalz":["AWS::S3::Object"],"Equals":["AWS::S3::Object"]}]}]}"#,
    )
    .unwrap_err();
    assert_eq!(err.len(), 2, "{err:?}");
    assert!(
        err[0].starts_with("AdvancedEventSelectors[0].FieldSelectors[2]: unknown key \"Equalz\""),
        "{err:?}"
    );
    assert!(err[1].contains("unknown field \"eventNam\""), "{err:?}");
    let err = Selectors::from_aws_json(
        r#"[{"ReadWriteType":"All","DataResources":[{"Typ":"AWS::S3::Object","Values":[]}],"Include":true}]"#,
    )
    .unwrap_err();
    assert!(
        err.iter()
            .any(|e| e.starts_with("EventSelectors[0]: unknown key \"Include\"")),
        "{err:?}"
    );
    assert!(
        err.iter()
            .any(|e| e.starts_with("EventSelectors[0].DataResources[0]: unknown key \"Typ\"")),
        "{err:?}"
    );
}

#[test]
fn unknown_keys_in_the_toml_are_refused() {
    let err =
        SelectorConfig::from_agent_toml("[selectors]\nregion = [\"us-east-1\"]\n").unwrap_err();
    assert!(err.contains("unknown field `region`"), "{err}");
    let err =
        SelectorConfig::from_agent_toml("[[selectors.basic]]\nread_write = \"All\"\n").unwrap_err();
    assert!(err.contains("unknown field `read_write`"), "{err}");
    let err =
        SelectorConfig::from_agent_toml("[[selectors.advanced]]\neventName = \"PutObject\"\n")
            .unwrap_err();
    assert!(err.contains("a table of operators"), "{err}");
}
