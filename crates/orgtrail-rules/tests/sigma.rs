//! `orgtrail rules import-sigma` on SigmaHQ's CloudTrail rules (the corpus copy in
//! `tests/fixtures/sigma/`, with its provenance and DRL 1.1 license): how many translate
//! exactly, with caveats, or not at all (each with its reason); the files written load back
//! as the same rules; and the translated rules answer Panther's labelled CloudTrail tests as a
//! documented mapping says, case by case.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use orgtrail_rules::sigma::{self, Outcome, Report};
use orgtrail_rules::threshold::{Outcome as Counted, Windows};
use orgtrail_rules::{Rule, RuleSet};
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/sigma"
    ))
}

fn import(dir: &str) -> Report {
    sigma::import_dir(&fixtures().join(dir)).unwrap()
}

fn by_file(r: &Report) -> BTreeMap<String, &sigma::Translation> {
    r.rules
        .iter()
        .map(|t| (t.file.display().to_string(), t))
        .collect()
}

#[test]
fn the_57_cloudtrail_rules_import_46_exact_6_with_caveats_5_refused_each_with_its_reason() {
    let r = import("rules");
    assert_eq!(r.rules.len(), 57);
    let (exact, caveats, refused) = r.counts();
    assert_eq!((exact, caveats, refused), (46, 6, 5), "{:#?}", r.rules);
    let files = by_file(&r);
    // Every refusal names its reason; every caveat is stated.
    let refusals: BTreeMap<&str, &str> = [
        (
            "aws_cloudtrail_imds_malicious_usage.yml",
            "|re: the regular expression",
        ),
        (
            "aws_disable_bucket_versioning.yml",
            "requestParameters is an object",
        ),
        (
            "aws_ec2_vm_export_failure.yml",
            "responseElements is an object",
        ),
        (
            "aws_iam_s3browser_templated_s3_bucket_policy_creation.yml",
            "requestParameters is an object",
        ),
        (
            "aws_update_login_profile.yml",
            "|fieldref: compares userIdentity.arn with the field",
        ),
    ]
    .into_iter()
    .collect();
    for t in &r.rules {
        let name = t.file.display().to_string();
        match &t.outcome {
            Outcome::Refused(why) => {
                let want = refusals
                    .get(name.as_str())
                    .unwrap_or_else(|| panic!("{name} refused: {why}"));
                assert!(why.contains(want), "{name}: {why}");
                assert!(t.rule.is_none());
            }
            Outcome::Caveats(cs) => {
                assert!(!cs.is_empty() && cs.iter().all(|c| c.len() > 20), "{name}");
                assert_eq!(t.rule.as_ref().unwrap().origin.caveats, *cs);
            }
            Outcome::Exact => assert!(t.rule.as_ref().unwrap().origin.caveats.is_empty()),
        }
    }
    // The caveats are the ones Sigma's meaning calls for: `contains` is case-insensitive, and
    // a value that names a field is compared as text.
    let c = &files["aws_sts_getcalleridentity_trufflehog.yml"].outcome;
    assert!(
        matches!(c, Outcome::Caveats(cs) if cs.iter().any(|c| c.contains("`contains` is case-insensitive"))),
        "{c:?}"
    );
    let c = &files["aws_iam_backdoor_users_keys.yml"].outcome;
    assert!(
        matches!(c, Outcome::Caveats(cs) if cs.iter().any(|c| c.contains("names a CloudTrail field"))),
        "{c:?}"
    );
    // `not` also matches a missing field, exactly: no caveat for it on scalar fields.
    assert_eq!(files["aws_root_account_usage.yml"].outcome, Outcome::Exact);
}

#[test]
fn written_rule_files_load_back_with_the_sigma_id_author_and_license() {
    let r = import("rules");
    let out = tempfile::tempdir().unwrap();
    let translated: Vec<&sigma::Translated> =
        r.rules.iter().filter_map(|t| t.rule.as_ref()).collect();
    let written = sigma::write::write_all(&translated, out.path()).unwrap();
    assert_eq!(written.len(), 52);
    let set = RuleSet::load_dir(out.path()).unwrap();
    assert_eq!(set.len(), 52);
    for t in &translated {
        let loaded = set.rules.iter().find(|x| x.id == t.id).unwrap();
        assert_eq!(loaded.pattern, t.rule().unwrap().pattern, "{}", t.id);
        let o = loaded.origin.as_ref().unwrap();
        assert_eq!(
            o.id.as_deref(),
            Some(t.id.as_str()),
            "the Sigma id is the rule id"
        );
        assert_eq!(o.license.as_deref(), Some("DRL-1.1"));
        assert!(o.author.is_some(), "{}", t.id);
        assert!(
            o.attribution
                .as_deref()
                .unwrap()
                .contains("Detection Rule License (DRL) 1.1")
        );
    }
    let text = std::fs::read_to_string(out.path().join("aws_root_account_usage.yaml")).unwrap();
    assert!(
        text.starts_with("# Translated by `orgtrail rules import-sigma`"),
        "{text}"
    );
    assert!(text.contains("by vitaliy0x1"), "{text}");
}

#[test]
fn the_8_aggregation_rules_import_7_as_threshold_rules_and_refuse_near() {
    let r = import("aggregations");
    assert_eq!(r.counts(), (6, 1, 1), "{:#?}", r.rules);
    let files = by_file(&r);
    let macie = files["aws_macic_evasion.yml"].rule.as_ref().unwrap();
    let th = macie.threshold.as_ref().unwrap();
    assert_eq!(
        (th.count, th.window.as_str(), th.group_by.as_slice()),
        (5, "10m", ["sourceIPAddress".to_string()].as_slice())
    );
    let listing = files["aws_enum_listing.yml"].rule.as_ref().unwrap();
    // `eventName: list*` is case-insensitive: it must match ListBuckets.
    assert_eq!(
        listing.pattern,
        serde_json::json!({"eventName": [{"prefix": {"equals-ignore-case": "list"}}]})
    );
    match &files["aws_lambda_function_created_or_invoked.yml"].outcome {
        Outcome::Refused(why) => assert!(why.contains("`near`"), "{why}"),
        o => panic!("{o:?}"),
    }
    // `selection1 and selection2` within 5m: one event cannot be both; the timeframe means a
    // correlation, imported as two distinct eventNames within 5 minutes, with that caveat.
    let ses = &files["aws_ses_messaging_enabled.yml"];
    match &ses.outcome {
        Outcome::Caveats(cs) => assert!(
            cs[0].contains("needs one event to match every selection"),
            "{cs:?}"
        ),
        o => panic!("{o:?}"),
    }
    let rule = ses.rule.as_ref().unwrap().rule().unwrap();
    let th = rule.threshold.clone().unwrap();
    assert_eq!(
        (th.count, th.window_ms, th.distinct.as_deref()),
        (1, 300_000, Some("eventName"))
    );
    let call = |name: &str, minute: i64| {
        serde_json::json!({"eventSource": "ses.amazonaws.com", "eventName": name,
                           "eventTime": format!("2026-11-27T10:{minute:02}:00Z")})
    };
    let set = RuleSet::new(vec![rule.clone()]).unwrap();
    let mut w = Windows::default();
    let mut fired = Vec::new();
    for (i, e) in [
        call("VerifyEmailIdentity", 0),
        call("VerifyEmailIdentity", 1),
        call("ListIdentities", 2),
        call("UpdateAccountSendingEnabled", 4),
        call("UpdateAccountSendingEnabled", 5),
    ]
    .iter()
    .enumerate()
    {
        let mut hits = Vec::new();
        set.matches(e, &mut hits);
        if hits.is_empty() {
            continue;
        }
        let t = orgtrail_rules::threshold::event_time_ms(e).unwrap();
        if w.observe_record(&rule.id, &th, e, t, i as u64 + 1) == Counted::Fired {
            fired.push(i);
        }
    }
    assert_eq!(
        fired,
        [3],
        "both calls within 5 minutes: one alert, on the second kind"
    );
    // The seven written files load back with their thresholds.
    let out = tempfile::tempdir().unwrap();
    let translated: Vec<&sigma::Translated> =
        r.rules.iter().filter_map(|t| t.rule.as_ref()).collect();
    sigma::write::write_all(&translated, out.path()).unwrap();
    let set = RuleSet::load_dir(out.path()).unwrap();
    assert_eq!(set.len(), 7);
    assert!(set.rules.iter().all(|r| r.threshold.is_some()));
    let loaded = set.rules.iter().find(|r| r.id == rule.id).unwrap();
    assert_eq!(loaded.threshold, rule.threshold);
}

/// How the translation of a Sigma rule must answer one of Panther's test cases, and why when
/// that differs from Panther's label.
struct Case {
    sigma: &'static str,
    panther: &'static str,
    index: u64,
    /// What the translated rule must answer.
    fires: bool,
    /// Why it differs from Panther's expected result (empty when it agrees).
    why: &'static str,
}

const ERRORS: &str = "the Sigma rule does not look at errorCode: a failed call fires too";

/// The mapping: Sigma rules and Panther rules about the same behaviour.
fn mapping() -> Vec<Case> {
    let c = |sigma, panther, index, fires, why| Case {
        sigma,
        panther,
        index,
        fires,
        why,
    };
    vec![
        c(
            "aws_cloudtrail_bedrock_guardrail_deleted",
            "AWS.Bedrock.GuardrailUpdateDelete",
            0,
            false,
            "the Sigma rule is about DeleteGuardrail; Panther's covers UpdateGuardrail too",
        ),
        c(
            "aws_cloudtrail_bedrock_guardrail_deleted",
            "AWS.Bedrock.GuardrailUpdateDelete",
            1,
            true,
            "",
        ),
        c(
            "aws_cloudtrail_bedrock_guardrail_deleted",
            "AWS.Bedrock.GuardrailUpdateDelete",
            2,
            false,
            "",
        ),
        c(
            "aws_cloudtrail_bedrock_guardrail_updated",
            "AWS.Bedrock.GuardrailUpdateDelete",
            0,
            true,
            "",
        ),
        c(
            "aws_cloudtrail_bedrock_guardrail_updated",
            "AWS.Bedrock.GuardrailUpdateDelete",
            1,
            false,
            "the Sigma rule is about UpdateGuardrail; Panther's covers DeleteGuardrail too",
        ),
        c(
            "aws_cloudtrail_bedrock_guardrail_updated",
            "AWS.Bedrock.GuardrailUpdateDelete",
            2,
            false,
            "",
        ),
        c(
            "aws_cloudtrail_region_enabled",
            "AWS.CloudTrail.EnableRegion",
            0,
            false,
            "Panther's test event says eventSource cloudtrail.amazonaws.com; the Sigma rule wants account.amazonaws.com, where AWS records EnableRegion",
        ),
        c(
            "aws_cloudtrail_region_enabled",
            "AWS.CloudTrail.EnableRegion",
            1,
            false,
            "",
        ),
        c(
            "aws_console_getsignintoken",
            "AWS.Console.GetSigninToken.Abuse",
            0,
            true,
            "",
        ),
        c(
            "aws_console_getsignintoken",
            "AWS.Console.GetSigninToken.Abuse",
            1,
            false,
            "",
        ),
        c(
            "aws_console_getsignintoken",
            "AWS.Console.GetSigninToken.Abuse",
            2,
            false,
            "",
        ),
        // MFAUsed is "No" in these events, "NO" in the Sigma rule: equal ignoring case.
        c(
            "aws_cloudtrail_console_login_success_without_mfa",
            "AWS.Console.LoginWithoutMFA",
            0,
            true,
            "",
        ),
        c(
            "aws_cloudtrail_console_login_success_without_mfa",
            "AWS.Console.LoginWithoutMFA",
            1,
            true,
            "",
        ),
        c(
            "aws_cloudtrail_console_login_success_without_mfa",
            "AWS.Console.LoginWithoutMFA",
            2,
            true,
            "",
        ),
        c(
            "aws_cloudtrail_console_login_success_without_mfa",
            "AWS.Console.LoginWithoutMFA",
            3,
            true,
            "Panther leaves out SAML logins; the Sigma rule does not",
        ),
        c(
            "aws_cloudtrail_console_login_success_without_mfa",
            "AWS.Console.LoginWithoutMFA",
            4,
            false,
            "",
        ),
        c(
            "aws_cloudtrail_console_login_success_without_mfa",
            "AWS.Console.LoginWithoutMFA",
            5,
            false,
            "",
        ),
        c(
            "aws_cloudtrail_console_login_success_without_mfa",
            "AWS.Console.LoginWithoutMFA",
            6,
            false,
            "",
        ),
        c(
            "aws_cloudtrail_console_login_success_without_mfa",
            "AWS.Console.LoginWithoutMFA",
            7,
            true,
            "Panther leaves out a user with no MFA device yet (a lookup the log does not hold); the Sigma rule does not",
        ),
        c(
            "aws_cloudtrail_console_login_success_without_mfa",
            "AWS.Console.LoginWithoutMFA",
            8,
            true,
            "Panther leaves out SSO and federated sessions; the Sigma rule does not",
        ),
        c(
            "aws_cloudtrail_console_login_success_without_mfa",
            "AWS.Console.LoginWithoutMFA",
            9,
            true,
            "Panther leaves out roles assumed from an MFA session; the Sigma rule does not",
        ),
        c(
            "aws_cloudtrail_console_login_success_without_mfa",
            "AWS.Console.LoginWithoutMFA",
            10,
            true,
            "Panther leaves out roles from an external IdP; the Sigma rule does not",
        ),
        c(
            "aws_ec2_disable_encryption",
            "AWS.EC2.EBS.Encryption.Disabled",
            0,
            true,
            "",
        ),
        c(
            "aws_ec2_disable_encryption",
            "AWS.EC2.EBS.Encryption.Disabled",
            1,
            false,
            "",
        ),
        c(
            "aws_ec2_startup_script_change",
            "AWS.EC2.Startup.Script.Change",
            0,
            false,
            "",
        ),
        c(
            "aws_ec2_startup_script_change",
            "AWS.EC2.Startup.Script.Change",
            1,
            false,
            "Panther's test event holds requestParameters.userData; the Sigma rule wants requestParameters.attribute = userData",
        ),
        c(
            "aws_ec2_startup_script_change",
            "AWS.EC2.Startup.Script.Change",
            2,
            false,
            "",
        ),
        c(
            "aws_iam_backdoor_users_keys",
            "AWS.IAM.Backdoor.User.Keys",
            0,
            true,
            "the Sigma filter compares userIdentity.arn with the text 'responseElements.accessKey.userName' (a caveat of the import), so it excludes no one",
        ),
        c(
            "aws_iam_backdoor_users_keys",
            "AWS.IAM.Backdoor.User.Keys",
            1,
            true,
            "",
        ),
        c(
            "aws_iam_backdoor_users_keys",
            "AWS.IAM.Backdoor.User.Keys",
            2,
            true,
            "",
        ),
        c(
            "aws_iam_backdoor_users_keys",
            "AWS.IAM.Backdoor.User.Keys",
            3,
            true,
            "",
        ),
        c(
            "aws_iam_backdoor_users_keys",
            "AWS.IAM.Backdoor.User.Keys",
            4,
            true,
            ERRORS,
        ),
        c(
            "aws_rds_change_master_password",
            "AWS.RDS.MasterPasswordUpdated",
            0,
            false,
            "",
        ),
        c(
            "aws_rds_change_master_password",
            "AWS.RDS.MasterPasswordUpdated",
            1,
            true,
            "",
        ),
        // publiclyAccessible is the JSON true; the Sigma rule says 'true'.
        c(
            "aws_rds_public_db_restore",
            "AWS.RDS.PublicRestore",
            0,
            false,
            "",
        ),
        c(
            "aws_rds_public_db_restore",
            "AWS.RDS.PublicRestore",
            1,
            false,
            "",
        ),
        c(
            "aws_rds_public_db_restore",
            "AWS.RDS.PublicRestore",
            2,
            true,
            "",
        ),
        c(
            "aws_root_account_usage",
            "AWS.Root.Activity",
            0,
            true,
            "Panther leaves out CreateServiceLinkedRole; the Sigma rule does not",
        ),
        c("aws_root_account_usage", "AWS.Root.Activity", 1, true, ""),
        c("aws_root_account_usage", "AWS.Root.Activity", 2, false, ""),
        c(
            "aws_root_account_usage",
            "AWS.Root.Activity",
            3,
            true,
            ERRORS,
        ),
        c("aws_root_account_usage", "AWS.Root.Activity", 4, true, ""),
        c(
            "aws_root_account_usage",
            "AWS.Root.Activity",
            5,
            true,
            "Panther leaves out read-only calls; the Sigma rule does not",
        ),
        c(
            "aws_cloudtrail_bucket_deleted",
            "AWS.S3.BucketDeleted",
            0,
            false,
            "errorCode is an empty string in Panther's test event; Sigma's `errorCode: null` means missing or null, and an empty string is a value",
        ),
        c(
            "aws_cloudtrail_bucket_deleted",
            "AWS.S3.BucketDeleted",
            1,
            false,
            "",
        ),
        c(
            "aws_cloudtrail_bucket_deleted",
            "AWS.S3.BucketDeleted",
            2,
            false,
            "",
        ),
        c(
            "aws_sts_getcalleridentity_trufflehog",
            "AWS.STS.GetCallerIdentity.TruffleHog",
            0,
            true,
            "",
        ),
        c(
            "aws_sts_getcalleridentity_trufflehog",
            "AWS.STS.GetCallerIdentity.TruffleHog",
            1,
            false,
            "the import's stated caveat: userAgent is 'trufflehog/3.63.0', which Sigma's case-insensitive contains matches and the case-sensitive wildcard *TruffleHog* does not",
        ),
        c(
            "aws_sts_getcalleridentity_trufflehog",
            "AWS.STS.GetCallerIdentity.TruffleHog",
            2,
            false,
            "",
        ),
        c(
            "aws_sts_getcalleridentity_trufflehog",
            "AWS.STS.GetCallerIdentity.TruffleHog",
            3,
            false,
            "",
        ),
        c(
            "aws_sts_getsessiontoken_misuse",
            "AWS.STS.GetSessionToken.Misuse",
            0,
            true,
            "",
        ),
        c(
            "aws_sts_getsessiontoken_misuse",
            "AWS.STS.GetSessionToken.Misuse",
            1,
            true,
            ERRORS,
        ),
        c(
            "aws_sts_getsessiontoken_misuse",
            "AWS.STS.GetSessionToken.Misuse",
            2,
            false,
            "",
        ),
        c(
            "aws_sts_getsessiontoken_misuse",
            "AWS.STS.GetSessionToken.Misuse",
            3,
            false,
            "",
        ),
        c(
            "aws_cloudtrail_disable_logging",
            "AWS.CloudTrail.Stopped",
            0,
            true,
            "",
        ),
        c(
            "aws_cloudtrail_disable_logging",
            "AWS.CloudTrail.Stopped",
            1,
            false,
            "",
        ),
        c(
            "aws_cloudtrail_disable_logging",
            "AWS.CloudTrail.Stopped",
            2,
            true,
            ERRORS,
        ),
        c(
            "aws_config_disable_recording",
            "AWS.ConfigService.DisabledDeleted",
            0,
            false,
            "",
        ),
        c(
            "aws_config_disable_recording",
            "AWS.ConfigService.DisabledDeleted",
            1,
            true,
            "",
        ),
        c(
            "aws_config_disable_recording",
            "AWS.ConfigService.DisabledDeleted",
            2,
            true,
            ERRORS,
        ),
        c(
            "aws_new_lambda_layer_attached",
            "AWS.Lambda.UpdateFunctionConfiguration",
            0,
            false,
            "Panther's test events carry the layers in responseElements; the Sigma rule wants requestParameters.layers",
        ),
        c(
            "aws_new_lambda_layer_attached",
            "AWS.Lambda.UpdateFunctionConfiguration",
            1,
            false,
            "",
        ),
        c(
            "aws_new_lambda_layer_attached",
            "AWS.Lambda.UpdateFunctionConfiguration",
            2,
            false,
            "Panther's test events carry the layers in responseElements; the Sigma rule wants requestParameters.layers",
        ),
        c(
            "aws_new_lambda_layer_attached",
            "AWS.Lambda.UpdateFunctionConfiguration",
            3,
            false,
            "Panther's test events carry the layers in responseElements; the Sigma rule wants requestParameters.layers",
        ),
        c(
            "aws_new_lambda_layer_attached",
            "AWS.Lambda.UpdateFunctionConfiguration",
            4,
            false,
            "",
        ),
        c(
            "aws_cloudtrail_security_group_change_rds",
            "AWS.RDS.SecurityGroupIngressAuthorized",
            0,
            true,
            "",
        ),
        c(
            "aws_cloudtrail_security_group_change_rds",
            "AWS.RDS.SecurityGroupIngressAuthorized",
            1,
            true,
            "",
        ),
        c(
            "aws_cloudtrail_security_group_change_rds",
            "AWS.RDS.SecurityGroupIngressAuthorized",
            2,
            true,
            "",
        ),
        c(
            "aws_cloudtrail_security_group_change_rds",
            "AWS.RDS.SecurityGroupIngressAuthorized",
            3,
            true,
            ERRORS,
        ),
        c(
            "aws_cloudtrail_security_group_change_rds",
            "AWS.RDS.SecurityGroupIngressAuthorized",
            4,
            true,
            "the Sigma rule covers every DB security group change (here RevokeDBSecurityGroupIngress); Panther's only ingress authorized",
        ),
        c(
            "aws_cloudtrail_new_route_added",
            "AWS.EC2.RouteTableModified",
            0,
            true,
            "",
        ),
        c(
            "aws_cloudtrail_new_route_added",
            "AWS.EC2.RouteTableModified",
            1,
            false,
            "",
        ),
        c(
            "aws_cloudtrail_new_route_added",
            "AWS.EC2.RouteTableModified",
            2,
            true,
            ERRORS,
        ),
        c(
            "aws_snapshot_backup_exfiltration",
            "AWS.CloudTrail.SnapshotMadePublic",
            0,
            true,
            "",
        ),
        c(
            "aws_snapshot_backup_exfiltration",
            "AWS.CloudTrail.SnapshotMadePublic",
            1,
            true,
            "the Sigma rule covers every ModifySnapshotAttribute; Panther's only one that shares a snapshot",
        ),
        c(
            "aws_snapshot_backup_exfiltration",
            "AWS.CloudTrail.SnapshotMadePublic",
            2,
            true,
            ERRORS,
        ),
        c(
            "aws_snapshot_backup_exfiltration",
            "AWS.CloudTrail.SnapshotMadePublic",
            3,
            true,
            "",
        ),
    ]
}

/// Panther's cases by (rule id, test index): (expected result, the log).
fn panther() -> BTreeMap<(String, u64), (bool, Value)> {
    let text = std::fs::read_to_string(fixtures().join("panther-tests.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                (
                    v["rule_id"].as_str().unwrap().to_owned(),
                    v["test_index"].as_u64().unwrap(),
                ),
                (v["expected_result"].as_bool().unwrap(), v["log"].clone()),
            )
        })
        .collect()
}

fn translated(dir: &str, stem: &str) -> Rule {
    let file = fixtures().join(dir).join(format!("{stem}.yml"));
    let t = sigma::translate(&std::fs::read_to_string(&file).unwrap(), Path::new(stem));
    t.rule
        .unwrap_or_else(|| panic!("{stem}: {:?}", t.outcome))
        .rule()
        .unwrap()
}

#[test]
fn imported_rules_answer_panthers_labelled_tests_as_the_mapping_says() {
    let cases = panther();
    let mut agree = 0;
    for case in mapping() {
        let (label, log) = cases
            .get(&(case.panther.to_owned(), case.index))
            .unwrap_or_else(|| panic!("no case {} {}", case.panther, case.index));
        let set = RuleSet::new(vec![translated("rules", case.sigma)]).unwrap();
        let mut hits = Vec::new();
        set.matches(log, &mut hits);
        assert_eq!(
            !hits.is_empty(),
            case.fires,
            "{} on {} #{}",
            case.sigma,
            case.panther,
            case.index
        );
        // A difference from Panther's label is always explained, and only then.
        assert_eq!(
            case.fires != *label,
            !case.why.is_empty(),
            "{} on {} #{}: Panther says {label}; the mapping must say why it differs (or not)",
            case.sigma,
            case.panther,
            case.index
        );
        agree += usize::from(case.fires == *label);
    }
    assert_eq!(mapping().len(), 77);
    assert_eq!(
        agree, 50,
        "cases where the translation agrees with Panther's label"
    );
}

/// The threshold rules: one of Panther's firing events alone never crosses a Sigma count;
/// more than N copies within the timeframe (each its own eventID) fire once, on the copy
/// that crosses it.
#[test]
fn imported_threshold_rules_fire_once_past_their_count_on_panthers_events() {
    let cases = panther();
    for (stem, panther_rule, index, n, spacing_s) in [
        (
            "aws_ec2_download_userdata",
            "AWS.EC2.DownloadInstanceUserData",
            0,
            10,
            60,
        ),
        ("aws_macic_evasion", "AWS.Macie.Evasion", 1, 5, 30),
    ] {
        let (label, log) = &cases[&(panther_rule.to_owned(), index)];
        assert!(*label, "{panther_rule} #{index} is a firing case");
        let rule = translated("aggregations", stem);
        let th = rule.threshold.clone().unwrap();
        let set = RuleSet::new(vec![rule.clone()]).unwrap();
        let mut hits = Vec::new();
        set.matches(log, &mut hits);
        assert_eq!(hits.len(), 1, "{stem}: the pattern matches Panther's event");
        let mut w = Windows::default();
        let mut fired = Vec::new();
        for i in 0..(n + 3) {
            let mut e = log.clone();
            e["eventID"] = Value::String(format!("copy-{i}"));
            let t = orgtrail_rules::threshold::event_time_ms(log).unwrap() + i * spacing_s * 1000;
            if w.observe(&rule.id, &th, th.group_key(&e), t, i as u64 + 1) == Counted::Fired {
                fired.push(i);
            }
        }
        assert_eq!(fired, [n], "{stem}: fires on copy {n} (more than {n})");
    }
}
