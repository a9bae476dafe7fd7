//! Built-in rule packs, compiled into the binary.
//!
//! `cis`: the CIS AWS Foundations Benchmark v5.0 monitoring controls 4.1 to 4.15, the
//! CloudWatch Logs metric filters of the benchmark written as record-level patterns
//! (`packs/cis-aws-foundations-v5/`). Each rule's description quotes the benchmark's filter and
//! says where the pattern differs from it. The general difference: a CloudWatch Logs `!=`
//! comparison and EventBridge's `anything-but` disagree on a field the event does not have
//! (`anything-but` never matches a missing field), so each `!=` of the benchmark is written
//! `[{"anything-but": X}, {"exists": false}]`, firing on a missing field as the benchmark
//! intends.

use std::path::PathBuf;

use crate::rule::{Rule, RuleFileError};

/// The name of each built-in pack.
pub const PACKS: [&str; 1] = ["cis"];

/// The CIS pack's files: (name, JSON).
const CIS: [(&str, &str); 15] = [
    (
        "01-unauthorized-api-calls.json",
        include_str!("../packs/cis-aws-foundations-v5/01-unauthorized-api-calls.json"),
    ),
    (
        "02-console-sign-in-without-mfa.json",
        include_str!("../packs/cis-aws-foundations-v5/02-console-sign-in-without-mfa.json"),
    ),
    (
        "03-root-account-usage.json",
        include_str!("../packs/cis-aws-foundations-v5/03-root-account-usage.json"),
    ),
    (
        "04-iam-policy-changes.json",
        include_str!("../packs/cis-aws-foundations-v5/04-iam-policy-changes.json"),
    ),
    (
        "05-cloudtrail-configuration-changes.json",
        include_str!("../packs/cis-aws-foundations-v5/05-cloudtrail-configuration-changes.json"),
    ),
    (
        "06-console-authentication-failures.json",
        include_str!("../packs/cis-aws-foundations-v5/06-console-authentication-failures.json"),
    ),
    (
        "07-cmk-disabled-or-scheduled-for-deletion.json",
        include_str!(
            "../packs/cis-aws-foundations-v5/07-cmk-disabled-or-scheduled-for-deletion.json"
        ),
    ),
    (
        "08-s3-bucket-policy-changes.json",
        include_str!("../packs/cis-aws-foundations-v5/08-s3-bucket-policy-changes.json"),
    ),
    (
        "09-aws-config-changes.json",
        include_str!("../packs/cis-aws-foundations-v5/09-aws-config-changes.json"),
    ),
    (
        "10-security-group-changes.json",
        include_str!("../packs/cis-aws-foundations-v5/10-security-group-changes.json"),
    ),
    (
        "11-nacl-changes.json",
        include_str!("../packs/cis-aws-foundations-v5/11-nacl-changes.json"),
    ),
    (
        "12-network-gateway-changes.json",
        include_str!("../packs/cis-aws-foundations-v5/12-network-gateway-changes.json"),
    ),
    (
        "13-route-table-changes.json",
        include_str!("../packs/cis-aws-foundations-v5/13-route-table-changes.json"),
    ),
    (
        "14-vpc-changes.json",
        include_str!("../packs/cis-aws-foundations-v5/14-vpc-changes.json"),
    ),
    (
        "15-organizations-changes.json",
        include_str!("../packs/cis-aws-foundations-v5/15-organizations-changes.json"),
    ),
];

/// The rules of a built-in pack, or `None` when there is no pack of that name.
pub fn pack(name: &str) -> Option<Result<Vec<Rule>, Vec<RuleFileError>>> {
    let files: &[(&str, &str)] = match name {
        "cis" => &CIS,
        _ => return None,
    };
    let mut rules = Vec::new();
    let mut problems = Vec::new();
    for (file, text) in files {
        let path = PathBuf::from(format!("pack:{name}/{file}"));
        let parsed = serde_json::from_str(text)
            .map_err(|e| RuleFileError {
                file: path.clone(),
                reason: e.to_string(),
            })
            .and_then(|v| Rule::from_json(&v, &path));
        match parsed {
            Ok(r) => rules.push(r),
            Err(e) => problems.push(e),
        }
    }
    Some(if problems.is_empty() {
        Ok(rules)
    } else {
        Err(problems)
    })
}
