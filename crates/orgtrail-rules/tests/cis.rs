//! The built-in CIS AWS Foundations v5.0 pack (monitoring 4.1 to 4.15): each rule fires on
//! events it must and not on events it must not, and on real and generated CloudTrail events
//! it fires exactly where a plain restatement of the benchmark's CloudWatch filter (with the
//! missing-field reading each rule documents) says it should.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use orgtrail_gen::{GenConfig, Generator};
use orgtrail_rules::RuleSet;
use serde_json::{Value, json};

fn pack() -> RuleSet {
    RuleSet::load("pack:cis").unwrap()
}

fn fired(set: &RuleSet, e: &Value) -> Vec<String> {
    let mut out = Vec::new();
    set.matches(e, &mut out);
    out.iter().map(|i| set.rules[*i].id.clone()).collect()
}

fn s<'a>(e: &'a Value, path: &str) -> Option<&'a str> {
    path.split('.')
        .try_fold(e, |v, k| v.get(k))
        .and_then(Value::as_str)
}

fn absent(e: &Value, path: &str) -> bool {
    path.split('.').try_fold(e, |v, k| v.get(k)).is_none()
}

/// The benchmark's filters restated plainly: control id -> does it fire.
fn oracle(e: &Value) -> Vec<&'static str> {
    let name = s(e, "eventName").unwrap_or("");
    let source = s(e, "eventSource").unwrap_or("");
    // `$.path != v`, firing when the field is missing too (as each rule documents).
    let not = |path: &str, v: &str| s(e, path) != Some(v);
    let mut out = Vec::new();
    let ec = s(e, "errorCode").unwrap_or("");
    if (s(e, "errorCode").is_some()
        && (ec.ends_with("UnauthorizedOperation") || ec.starts_with("AccessDenied")))
        && not("sourceIPAddress", "delivery.logs.amazonaws.com")
        && not("eventName", "HeadBucket")
    {
        out.push("4.1");
    }
    if name == "ConsoleLogin" && not("additionalEventData.MFAUsed", "Yes") {
        out.push("4.2");
    }
    if s(e, "userIdentity.type") == Some("Root")
        && absent(e, "userIdentity.invokedBy")
        && not("eventType", "AwsServiceEvent")
    {
        out.push("4.3");
    }
    let any = |list: &[&str]| list.contains(&name);
    if source == "iam.amazonaws.com"
        && any(&[
            "DeleteGroupPolicy",
            "DeleteRolePolicy",
            "DeleteUserPolicy",
            "PutGroupPolicy",
            "PutRolePolicy",
            "PutUserPolicy",
            "CreatePolicy",
            "DeletePolicy",
            "CreatePolicyVersion",
            "DeletePolicyVersion",
            "AttachRolePolicy",
            "DetachRolePolicy",
            "AttachUserPolicy",
            "DetachUserPolicy",
            "AttachGroupPolicy",
            "DetachGroupPolicy",
        ])
    {
        out.push("4.4");
    }
    if source == "cloudtrail.amazonaws.com"
        && any(&[
            "CreateTrail",
            "UpdateTrail",
            "DeleteTrail",
            "StartLogging",
            "StopLogging",
        ])
    {
        out.push("4.5");
    }
    if name == "ConsoleLogin" && s(e, "errorMessage") == Some("Failed authentication") {
        out.push("4.6");
    }
    if source == "kms.amazonaws.com" && any(&["DisableKey", "ScheduleKeyDeletion"]) {
        out.push("4.7");
    }
    if source == "s3.amazonaws.com"
        && any(&[
            "PutBucketAcl",
            "PutBucketPolicy",
            "PutBucketCors",
            "PutBucketLifecycle",
            "PutBucketReplication",
            "DeleteBucketPolicy",
            "DeleteBucketCors",
            "DeleteBucketLifecycle",
            "DeleteBucketReplication",
        ])
    {
        out.push("4.8");
    }
    if source == "config.amazonaws.com"
        && any(&[
            "StopConfigurationRecorder",
            "DeleteDeliveryChannel",
            "PutDeliveryChannel",
            "PutConfigurationRecorder",
        ])
    {
        out.push("4.9");
    }
    if any(&[
        "AuthorizeSecurityGroupIngress",
        "AuthorizeSecurityGroupEgress",
        "RevokeSecurityGroupIngress",
        "RevokeSecurityGroupEgress",
        "CreateSecurityGroup",
        "DeleteSecurityGroup",
        "ModifySecurityGroupRules",
    ]) {
        out.push("4.10");
    }
    if any(&[
        "CreateNetworkAcl",
        "CreateNetworkAclEntry",
        "DeleteNetworkAcl",
        "DeleteNetworkAclEntry",
        "ReplaceNetworkAclEntry",
        "ReplaceNetworkAclAssociation",
    ]) {
        out.push("4.11");
    }
    if any(&[
        "CreateCustomerGateway",
        "DeleteCustomerGateway",
        "AttachInternetGateway",
        "CreateInternetGateway",
        "DeleteInternetGateway",
        "DetachInternetGateway",
    ]) {
        out.push("4.12");
    }
    if any(&[
        "CreateRoute",
        "CreateRouteTable",
        "ReplaceRoute",
        "ReplaceRouteTableAssociation",
        "DeleteRouteTable",
        "DeleteRoute",
        "DisassociateRouteTable",
    ]) {
        out.push("4.13");
    }
    if any(&[
        "CreateVpc",
        "DeleteVpc",
        "ModifyVpcAttribute",
        "AcceptVpcPeeringConnection",
        "CreateVpcPeeringConnection",
        "DeleteVpcPeeringConnection",
        "RejectVpcPeeringConnection",
        "AttachClassicLinkVpc",
        "DetachClassicLinkVpc",
        "DisableVpcClassicLink",
        "EnableVpcClassicLink",
    ]) {
        out.push("4.14");
    }
    if source == "organizations.amazonaws.com"
        && any(&[
            "AcceptHandshake",
            "AttachPolicy",
            "CreateAccount",
            "CreateOrganizationalUnit",
            "CreatePolicy",
            "DeclineHandshake",
            "DeleteOrganization",
            "DeleteOrganizationalUnit",
            "DeletePolicy",
            "DetachPolicy",
            "DisablePolicyType",
            "EnablePolicyType",
            "InviteAccountToOrganization",
            "LeaveOrganization",
            "MoveAccount",
            "RemoveAccountFromOrganization",
            "UpdatePolicy",
            "UpdateOrganizationalUnit",
        ])
    {
        out.push("4.15");
    }
    out
}

fn control(id: &str) -> &str {
    id.strip_prefix("cis-")
        .and_then(|r| r.split('-').next())
        .unwrap()
}

#[test]
fn the_pack_has_the_fifteen_controls_each_documented() {
    let set = pack();
    assert_eq!(set.len(), 15);
    let mut controls: Vec<&str> = set.rules.iter().map(|r| control(&r.id)).collect();
    controls.sort_by_key(|c| c[2..].parse::<u32>().unwrap());
    assert_eq!(
        controls,
        (1..=15).map(|i| format!("4.{i}")).collect::<Vec<_>>()
    );
    for r in &set.rules {
        assert!(
            r.description
                .contains("CloudWatch Logs filter of the benchmark: {"),
            "{}",
            r.id
        );
        assert!(r.description.contains("Differences: "), "{}", r.id);
    }
}

fn base() -> Value {
    json!({"eventVersion": "1.09", "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/alice", "accountId": "111122223333", "userName": "alice"},
           "eventTime": "2026-11-27T10:00:00Z", "eventSource": "ec2.amazonaws.com", "eventName": "DescribeInstances", "awsRegion": "us-east-1",
           "sourceIPAddress": "192.0.2.1", "eventID": "e1", "eventType": "AwsApiCall", "recipientAccountId": "111122223333"})
}

fn with(changes: Value) -> Value {
    let mut e = base();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            e.as_object_mut().unwrap().remove(k);
        } else {
            e[k] = v.clone();
        }
    }
    e
}

#[test]
fn each_rule_fires_where_it_must_and_not_where_it_must_not() {
    let set = pack();
    let root = json!({"type": "Root", "arn": "arn:aws:iam::111122223333:root", "accountId": "111122223333"});
    let cases: Vec<(&str, Value, bool)> = vec![
        (
            "4.1",
            with(json!({"errorCode": "Client.UnauthorizedOperation"})),
            true,
        ),
        ("4.1", with(json!({"errorCode": "AccessDenied"})), true),
        (
            "4.1",
            with(
                json!({"errorCode": "AccessDenied", "sourceIPAddress": "delivery.logs.amazonaws.com"}),
            ),
            false,
        ),
        (
            "4.1",
            with(json!({"errorCode": "AccessDenied", "eventName": "HeadBucket"})),
            false,
        ),
        (
            "4.1",
            with(json!({"errorCode": "AccessDenied", "sourceIPAddress": null})),
            true,
        ),
        (
            "4.1",
            with(json!({"errorCode": "ThrottlingException"})),
            false,
        ),
        (
            "4.2",
            with(json!({"eventName": "ConsoleLogin", "additionalEventData": {"MFAUsed": "No"}})),
            true,
        ),
        ("4.2", with(json!({"eventName": "ConsoleLogin"})), true),
        (
            "4.2",
            with(json!({"eventName": "ConsoleLogin", "additionalEventData": {"MFAUsed": "Yes"}})),
            false,
        ),
        ("4.3", with(json!({"userIdentity": root.clone()})), true),
        (
            "4.3",
            with(json!({"userIdentity": root.clone(), "eventType": null})),
            true,
        ),
        (
            "4.3",
            with(json!({"userIdentity": root.clone(), "eventType": "AwsServiceEvent"})),
            false,
        ),
        (
            "4.3",
            with(json!({"userIdentity": {"type": "Root", "invokedBy": "support.amazonaws.com"}})),
            false,
        ),
        (
            "4.4",
            with(json!({"eventSource": "iam.amazonaws.com", "eventName": "AttachUserPolicy"})),
            true,
        ),
        (
            "4.4",
            with(json!({"eventSource": "iam.amazonaws.com", "eventName": "ListPolicies"})),
            false,
        ),
        (
            "4.5",
            with(json!({"eventSource": "cloudtrail.amazonaws.com", "eventName": "StopLogging"})),
            true,
        ),
        (
            "4.5",
            with(json!({"eventSource": "cloudtrail.amazonaws.com", "eventName": "LookupEvents"})),
            false,
        ),
        (
            "4.6",
            with(json!({"eventName": "ConsoleLogin", "errorMessage": "Failed authentication"})),
            true,
        ),
        ("4.6", with(json!({"eventName": "ConsoleLogin"})), false),
        (
            "4.7",
            with(json!({"eventSource": "kms.amazonaws.com", "eventName": "ScheduleKeyDeletion"})),
            true,
        ),
        (
            "4.7",
            with(json!({"eventSource": "kms.amazonaws.com", "eventName": "EnableKey"})),
            false,
        ),
        (
            "4.8",
            with(json!({"eventSource": "s3.amazonaws.com", "eventName": "PutBucketPolicy"})),
            true,
        ),
        (
            "4.8",
            with(json!({"eventSource": "s3.amazonaws.com", "eventName": "GetBucketPolicy"})),
            false,
        ),
        (
            "4.9",
            with(
                json!({"eventSource": "config.amazonaws.com", "eventName": "StopConfigurationRecorder"}),
            ),
            true,
        ),
        (
            "4.10",
            with(json!({"eventName": "AuthorizeSecurityGroupIngress"})),
            true,
        ),
        (
            "4.10",
            with(json!({"eventName": "DescribeSecurityGroups"})),
            false,
        ),
        (
            "4.11",
            with(json!({"eventName": "ReplaceNetworkAclEntry"})),
            true,
        ),
        (
            "4.12",
            with(json!({"eventName": "AttachInternetGateway"})),
            true,
        ),
        ("4.13", with(json!({"eventName": "CreateRoute"})), true),
        (
            "4.14",
            with(json!({"eventName": "CreateVpcPeeringConnection"})),
            true,
        ),
        (
            "4.15",
            with(
                json!({"eventSource": "organizations.amazonaws.com", "eventName": "LeaveOrganization"}),
            ),
            true,
        ),
        (
            "4.15",
            with(json!({"eventSource": "iam.amazonaws.com", "eventName": "CreatePolicy"})),
            false,
        ),
    ];
    for (c, e, want) in &cases {
        let got = fired(&set, e).iter().any(|id| control(id) == *c);
        assert_eq!(got, *want, "control {c} on {e}");
        assert_eq!(
            oracle(e).contains(c),
            *want,
            "the oracle disagrees on {c}: {e}"
        );
    }
}

#[test]
fn on_real_and_generated_events_the_pack_fires_where_the_benchmark_says() {
    let set = pack();
    let mut events: Vec<Value> = common::corpus_records();
    events.extend(
        Generator::new(GenConfig {
            count: 50_000,
            accounts: 5,
            seed: 11,
            ..GenConfig::default()
        })
        .map(|b| serde_json::from_slice::<Value>(&b).unwrap()),
    );
    let mut per_control = std::collections::BTreeMap::<String, usize>::new();
    for e in &events {
        let mut got: Vec<String> = fired(&set, e)
            .iter()
            .map(|id| control(id).to_owned())
            .collect();
        got.sort();
        let mut want: Vec<String> = oracle(e).iter().map(|c| (*c).to_owned()).collect();
        want.sort();
        assert_eq!(got, want, "on {e}");
        for c in got {
            *per_control.entry(c).or_default() += 1;
        }
    }
    // Not vacuous: most controls fire somewhere in these events.
    eprintln!("fires per control: {per_control:?}");
    assert!(per_control.len() >= 8, "{per_control:?}");
}
