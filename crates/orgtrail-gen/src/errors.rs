//! Failed calls: errorCode/errorMessage pairs in each service's own words.

use crate::catalog::{Api, Op, Svc};
use crate::fmt;
use crate::rng::Rng;

/// Per-mille chance that a call by a person or workload fails.
pub(crate) const ERROR_PERMILLE_READ: u32 = 45;
pub(crate) const ERROR_PERMILLE_WRITE: u32 = 80;
/// Per-mille chance that a call made by an AWS service is throttled.
pub(crate) const ERROR_PERMILLE_SERVICE: u32 = 8;

/// Throttling, in the service's wording.
pub(crate) fn throttled(svc: Svc) -> (&'static str, String) {
    match svc {
        Svc::Ec2 => (
            "Client.RequestLimitExceeded",
            "Request limit exceeded.".to_owned(),
        ),
        Svc::S3 => ("SlowDown", "Please reduce your request rate.".to_owned()),
        Svc::Iam | Svc::Sts | Svc::Rds | Svc::Sns | Svc::Sqs | Svc::CloudWatch | Svc::Elb => {
            ("Throttling", "Rate exceeded".to_owned())
        }
        _ => ("ThrottlingException", "Rate exceeded".to_owned()),
    }
}

fn access_denied(rng: &mut Rng, api: &Api, caller: &str, target: &str) -> (&'static str, String) {
    let action = format!("{}:{}", api.svc.iam_prefix(), action_name(api));
    let because = "because no identity-based policy allows the";
    match api.svc {
        Svc::Ec2 => (
            "Client.UnauthorizedOperation",
            format!(
                "You are not authorized to perform this operation. User: {caller} is not authorized to perform: {action} on resource: {target} {because} {action} action. Encoded authorization failure message: {}",
                fmt::b64url(rng, 420)
            ),
        ),
        Svc::S3 => ("AccessDenied", "Access Denied".to_owned()),
        Svc::Iam | Svc::Sts | Svc::Rds | Svc::Sqs | Svc::CloudWatch | Svc::Elb => (
            "AccessDenied",
            format!(
                "User: {caller} is not authorized to perform: {action} on resource: {target} {because} {action} action"
            ),
        ),
        Svc::Sns => (
            "AuthorizationError",
            format!(
                "User: {caller} is not authorized to perform: {action} on resource: {target} {because} {action} action"
            ),
        ),
        Svc::Organizations => (
            "AccessDeniedException",
            "You don't have permissions to access this resource.".to_owned(),
        ),
        _ => (
            "AccessDeniedException",
            format!(
                "User: {caller} is not authorized to perform: {action} on resource: {target} {because} {action} action"
            ),
        ),
    }
}

/// The IAM action for an eventName (`GetFunction20150331v2` -> `GetFunction`).
fn action_name(api: &Api) -> &'static str {
    api.name
        .trim_end_matches("v2")
        .trim_end_matches(|c: char| c.is_ascii_digit())
}

fn tail(arn: &str) -> &str {
    arn.rsplit([':', '/']).next().unwrap_or(arn)
}

fn not_found(api: &Api, target: &str) -> (&'static str, String) {
    let name = tail(target);
    match api.op {
        Op::GetObject | Op::HeadObject | Op::DeleteObject => {
            ("NoSuchKey", "The specified key does not exist.".to_owned())
        }
        _ => match api.svc {
            Svc::Ec2 if target.contains(":instance/") => (
                "Client.InvalidInstanceID.NotFound",
                format!("The instance ID '{name}' does not exist"),
            ),
            Svc::Ec2 => (
                "Client.InvalidGroup.NotFound",
                format!("The security group '{name}' does not exist"),
            ),
            Svc::S3 => (
                "NoSuchBucket",
                "The specified bucket does not exist".to_owned(),
            ),
            Svc::Iam if target.contains(":user/") => (
                "NoSuchEntityException",
                format!("The user with name {name} cannot be found."),
            ),
            Svc::Iam | Svc::Sts => (
                "NoSuchEntityException",
                format!("The role with name {name} cannot be found."),
            ),
            Svc::Kms => (
                "NotFoundException",
                format!("Key '{target}' does not exist"),
            ),
            Svc::Rds => (
                "DBInstanceNotFound",
                format!("DBInstance {name} not found."),
            ),
            Svc::Lambda => (
                "ResourceNotFoundException",
                format!("Function not found: {target}"),
            ),
            Svc::DynamoDb => (
                "ResourceNotFoundException",
                format!("Requested resource not found: Table: {name} not found"),
            ),
            Svc::SecretsManager => (
                "ResourceNotFoundException",
                "Secrets Manager can't find the specified secret.".to_owned(),
            ),
            Svc::Ssm => ("ParameterNotFound", String::new()),
            Svc::Sns => ("NotFound", "Topic does not exist".to_owned()),
            Svc::Sqs => (
                "AWS.SimpleQueueService.NonExistentQueue",
                "The specified queue does not exist for this wsdl version.".to_owned(),
            ),
            Svc::CloudTrail => (
                "TrailNotFoundException",
                format!(
                    "Unknown trail: {target} for the user: {}",
                    target.split(':').nth(4).unwrap_or("")
                ),
            ),
            Svc::Ecr => (
                "RepositoryNotFoundException",
                format!("The repository with name '{name}' does not exist in the registry"),
            ),
            _ => ("ResourceNotFoundException", format!("{name} not found")),
        },
    }
}

fn invalid(api: &Api, target: &str) -> (&'static str, String) {
    match api.svc {
        Svc::Ec2 => (
            "Client.InvalidParameterValue",
            "Value () for parameter groupId is invalid. The value cannot be empty".to_owned(),
        ),
        Svc::S3 if api.op == Op::PutBucketPolicy => {
            ("MalformedPolicy", "Policy has invalid resource".to_owned())
        }
        Svc::S3 => ("InvalidArgument", "Invalid argument.".to_owned()),
        Svc::Iam if api.name.starts_with("Create") => (
            "EntityAlreadyExists",
            format!("{} with name {} already exists.", if target.contains(":user/") { "User" } else { "Role" }, tail(target)),
        ),
        Svc::Kms => ("KMSInvalidStateException", format!("{target} is pending deletion.")),
        Svc::Rds => (
            "InvalidDBInstanceState",
            "Instance cannot currently be modified because it is not in the available state.".to_owned(),
        ),
        Svc::Lambda => (
            "ResourceConflictException",
            format!("The operation cannot be performed at this time. An update is in progress for resource: {target}"),
        ),
        Svc::SecretsManager => (
            "InvalidRequestException",
            "You can't perform this operation on the secret because it was marked for deletion.".to_owned(),
        ),
        _ => (
            "ValidationException",
            "1 validation error detected: Value null at 'name' failed to satisfy constraint: Member must not be null".to_owned(),
        ),
    }
}

/// Picks a failure for a call by `caller` on `target`.
pub(crate) fn pick(
    rng: &mut Rng,
    api: &Api,
    caller: &str,
    target: Option<&str>,
) -> (&'static str, String) {
    let default_target = "*";
    let t = target.unwrap_or(default_target);
    let x = rng.below(100);
    if x < 55 {
        access_denied(rng, api, caller, t)
    } else if x < 70 {
        throttled(api.svc)
    } else if x < 85 && target.is_some() {
        not_found(api, t)
    } else {
        invalid(api, t)
    }
}
