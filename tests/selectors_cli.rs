//! `orgtrail selectors check` on real CloudTrail files, as a user tuning a trail runs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{fixtures, gzip, run, stderr, stdout};

/// Four real records (AWS KMS Developer Guide): RunInstances (ec2, us-west-2, no readOnly),
/// then CreateGrant (write), GenerateDataKeyWithoutPlaintext (read) and Decrypt (read), all
/// kms.amazonaws.com in us-east-1.
fn kms_logfile() -> std::path::PathBuf {
    fixtures().join("corpus/logfiles/aws-kms-developer-guide_ct-ec2two_02.json")
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

/// Two S3 data events (one object write in a prod bucket, one read elsewhere) and a Lambda
/// invocation, as JSON lines.
const DATA_EVENTS: &str = concat!(
    r#"{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/Mary","accountId":"111122223333","userName":"Mary"},"eventTime":"2024-03-06T21:01:59Z","eventSource":"s3.amazonaws.com","eventName":"PutObject","awsRegion":"us-east-1","sourceIPAddress":"192.0.2.0","requestParameters":{"bucketName":"prod-logs","key":"a.log"},"responseElements":null,"eventID":"cdc4b7ed-e171-4cef-975a-ad829d4123e1","readOnly":false,"resources":[{"type":"AWS::S3::Object","ARN":"arn:aws:s3:::prod-logs/a.log"},{"accountId":"111122223333","type":"AWS::S3::Bucket","ARN":"arn:aws:s3:::prod-logs"}],"eventType":"AwsApiCall","managementEvent":false,"recipientAccountId":"111122223333","eventCategory":"Data"}"#,
    "\n",
    r#"{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/Mary","accountId":"111122223333","userName":"Mary"},"eventTime":"2024-03-06T21:02:03Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"us-east-1","sourceIPAddress":"192.0.2.0","requestParameters":{"bucketName":"amzn-s3-demo-bucket1","key":"cat.jpg"},"responseElements":null,"eventID":"cdc4b7ed-e171-4cef-975a-ad829d4123e2","readOnly":true,"resources":[{"type":"AWS::S3::Object","ARN":"arn:aws:s3:::amzn-s3-demo-bucket1/cat.jpg"},{"accountId":"111122223333","type":"AWS::S3::Bucket","ARN":"arn:aws:s3:::amzn-s3-demo-bucket1"}],"eventType":"AwsApiCall","managementEvent":false,"recipientAccountId":"111122223333","eventCategory":"Data"}"#,
    "\n",
    r#"{"eventVersion":"1.08","userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::111111111111:assumed-role/ci/deployer","accountId":"111111111111"},"eventTime":"2024-03-06T21:03:00Z","eventSource":"lambda.amazonaws.com","eventName":"Invoke","awsRegion":"us-west-2","sourceIPAddress":"192.0.2.10","requestParameters":{"functionName":"arn:aws:lambda:us-west-2:111111111111:function:helloworld"},"responseElements":null,"eventID":"0a1b2c3d-1111-2222-3333-444455556666","readOnly":false,"resources":[{"accountId":"111111111111","type":"AWS::Lambda::Function","ARN":"arn:aws:lambda:us-west-2:111111111111:function:helloworld"}],"eventType":"AwsApiCall","managementEvent":false,"recipientAccountId":"111111111111","eventCategory":"Data"}"#,
    "\n"
);

#[test]
fn a_config_with_advanced_selectors_counts_matched_and_filtered() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    // Other tables of the agent's configuration are ignored by the dry run.
    std::fs::write(
        &config,
        r#"
account = "111122223333"
collector = "https://collector.example:4317"

[selectors]
[[selectors.advanced]]
name = "management writes"
eventCategory = { equals = ["Management"] }
readOnly = { equals = [false] }

[[selectors.advanced]]
name = "writes to prod buckets"
eventCategory = { equals = ["Data"] }
"resources.type" = { equals = ["AWS::S3::Object"] }
"resources.ARN" = { starts_with = ["arn:aws:s3:::prod-"] }
"#,
    )
    .unwrap();
    let events = dir.path().join("data.jsonl");
    std::fs::write(&events, DATA_EVENTS).unwrap();
    let gz = dir
        .path()
        .join("111122223333_CloudTrail_us-east-1_20240102T0305Z_abcd.json.gz");
    std::fs::write(&gz, gzip(&std::fs::read(kms_logfile()).unwrap())).unwrap();

    // CreateGrant and PutObject to prod-logs are writes the selectors keep.
    let out = run(
        &[
            "selectors",
            "check",
            "--config",
            path(&config),
            path(&gz),
            path(&events),
        ],
        b"",
    );
    assert_eq!(stdout(&out), "matched=2 filtered=5\n", "{}", stderr(&out));
    assert!(out.status.success());

    // Standard input, with `-`.
    let out = run(
        &["selectors", "check", "--config", path(&config), "-"],
        DATA_EVENTS.as_bytes(),
    );
    assert_eq!(stdout(&out), "matched=1 filtered=2\n");
}

#[test]
fn explain_says_which_selector_matched_or_why_none_did() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        r#"
[selectors]
regions = ["us-east-1"]
[[selectors.basic]]
read_write_type = "ReadOnly"
exclude_management_event_sources = ["rdsdata.amazonaws.com"]
"#,
    )
    .unwrap();
    let file = kms_logfile();
    let name = path(&file);
    let out = run(
        &[
            "selectors",
            "check",
            "--explain",
            "--config",
            path(&config),
            name,
        ],
        b"",
    );
    assert_eq!(
        stdout(&out),
        format!(
            "{name}: record 1: RunInstances: filtered: awsRegion us-west-2 is not in regions [us-east-1]\n\
             {name}: record 2: CreateGrant: filtered: no event selector matched: basic[0]: ReadWriteType ReadOnly does not fit the management event (readOnly is \"false\")\n\
             {name}: record 3: GenerateDataKeyWithoutPlaintext: matched: basic[0]: management event, ReadWriteType ReadOnly\n\
             {name}: record 4: Decrypt: matched: basic[0]: management event, ReadWriteType ReadOnly\n\
             matched=2 filtered=2\n"
        )
    );
    assert!(out.status.success());
}

#[test]
fn a_pasted_get_event_selectors_output_is_used_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    // `aws cloudtrail get-event-selectors` for a trail that logs write management events
    // except KMS, and S3 object events of prod buckets.
    let trail = dir.path().join("trail.json");
    std::fs::write(
        &trail,
        r#"{
    "TrailARN": "arn:aws:cloudtrail:us-east-1:111122223333:trail/org-trail",
    "EventSelectors": [
        {
            "ReadWriteType": "WriteOnly",
            "IncludeManagementEvents": true,
            "DataResources": [
                {
                    "Type": "AWS::S3::Object",
                    "Values": [
                        "arn:aws:s3:::prod-"
                    ]
                }
            ],
            "ExcludeManagementEventSources": [
                "kms.amazonaws.com"
            ]
        }
    ]
}
"#,
    )
    .unwrap();
    let events = dir.path().join("data.jsonl");
    std::fs::write(&events, DATA_EVENTS).unwrap();
    let file = kms_logfile();
    let out = run(
        &[
            "selectors",
            "check",
            "--aws-json",
            path(&trail),
            path(&file),
            path(&events),
        ],
        b"",
    );
    // Only PutObject to prod-logs is kept (a write under a listed prefix): RunInstances has no
    // readOnly, so it fits only ReadWriteType All; CreateGrant is a KMS management event; the
    // others are reads, or not on a listed resource.
    assert_eq!(stdout(&out), "matched=1 filtered=6\n", "{}", stderr(&out));

    // The same file named in an agent configuration, relative to it.
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "[selectors]\naws_json = \"trail.json\"\n").unwrap();
    let out = run(
        &[
            "selectors",
            "check",
            "--config",
            path(&config),
            "--explain",
            path(&events),
        ],
        b"",
    );
    let events_name = path(&events);
    assert_eq!(
        stdout(&out),
        format!(
            "{events_name}: line 1: PutObject: matched: basic[0]: data resource AWS::S3::Object \"arn:aws:s3:::prod-\" matches arn:aws:s3:::prod-logs/a.log\n\
             {events_name}: line 2: GetObject: filtered: no event selector matched: basic[0]: ReadWriteType WriteOnly does not fit the data event (readOnly is \"true\")\n\
             {events_name}: line 3: Invoke: filtered: no event selector matched: basic[0]: no DataResources entry matches the event's resources (resources: AWS::Lambda::Function arn:aws:lambda:us-west-2:111111111111:function:helloworld)\n\
             matched=1 filtered=2\n"
        )
    );
}

#[test]
fn invalid_selectors_are_refused_with_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        r#"
[selectors]
regions = ["us-east1"]
[[selectors.advanced]]
name = "bad"
eventName = { equals = ["PutObject"] }
readOnly = { equals = ["yes"] }
"resources.arn" = { starts_with = ["arn:aws:s3:::prod-"] }
"#,
    )
    .unwrap();
    let file = kms_logfile();
    let out = run(
        &["selectors", "check", "--config", path(&config), path(&file)],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout(&out), "");
    assert_eq!(
        stderr(&out),
        format!(
            "orgtrail: invalid selectors in {}:\n\
             \x20 - selectors.regions[0]: \"us-east1\" is not an AWS Region name (like us-east-1)\n\
             \x20 - selectors.advanced[0] \"bad\".readOnly: readOnly compares with \"true\" or \"false\", not \"yes\"\n\
             \x20 - selectors.advanced[0] \"bad\".resources.arn: unknown field \"resources.arn\" (did you mean resources.ARN?); fields are eventCategory, eventSource, eventName, eventType, readOnly, resources.type, resources.ARN, userIdentity.arn, errorCode, sessionCredentialFromConsole\n\
             \x20 - selectors.advanced[0] \"bad\": no eventCategory field selector (CloudTrail requires one: eventCategory Equals Management, Data or NetworkActivity)\n",
            path(&config)
        )
    );

    // A pasted file of another command's output.
    let wrong = dir.path().join("trails.json");
    std::fs::write(&wrong, r#"{"trailList": []}"#).unwrap();
    let out = run(
        &[
            "selectors",
            "check",
            "--aws-json",
            path(&wrong),
            path(&file),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(
            "not the output of `aws cloudtrail get-event-selectors`: unknown key \"trailList\""
        ),
        "{}",
        stderr(&out)
    );

    // Neither --config nor --aws-json: a usage error.
    let out = run(&["selectors", "check", path(&file)], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--config"), "{}", stderr(&out));
}
