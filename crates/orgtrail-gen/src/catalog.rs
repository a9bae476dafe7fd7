//! The API catalog: which operations exist, how often each is called, and
//! whether it is a read.
//!
//! Weights are relative within the set of principals allowed to make a call
//! ([`HUMAN`], [`CONSOLE`], [`SERVICE`]); reads make up about 78 % of the
//! weight. Adding, removing or reweighting an entry changes the output of
//! every seed (see the pinned fingerprints in the tests).

use crate::rng::Cumulative;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Svc {
    Ec2,
    S3,
    Iam,
    Sts,
    Kms,
    Rds,
    Lambda,
    CloudTrail,
    Signin,
    DynamoDb,
    Sns,
    Sqs,
    Logs,
    CloudWatch,
    Config,
    Organizations,
    Ssm,
    SecretsManager,
    Ecr,
    Elb,
}

impl Svc {
    pub(crate) fn source(self) -> &'static str {
        match self {
            Svc::Ec2 => "ec2.amazonaws.com",
            Svc::S3 => "s3.amazonaws.com",
            Svc::Iam => "iam.amazonaws.com",
            Svc::Sts => "sts.amazonaws.com",
            Svc::Kms => "kms.amazonaws.com",
            Svc::Rds => "rds.amazonaws.com",
            Svc::Lambda => "lambda.amazonaws.com",
            Svc::CloudTrail => "cloudtrail.amazonaws.com",
            Svc::Signin => "signin.amazonaws.com",
            Svc::DynamoDb => "dynamodb.amazonaws.com",
            Svc::Sns => "sns.amazonaws.com",
            Svc::Sqs => "sqs.amazonaws.com",
            Svc::Logs => "logs.amazonaws.com",
            Svc::CloudWatch => "monitoring.amazonaws.com",
            Svc::Config => "config.amazonaws.com",
            Svc::Organizations => "organizations.amazonaws.com",
            Svc::Ssm => "ssm.amazonaws.com",
            Svc::SecretsManager => "secretsmanager.amazonaws.com",
            Svc::Ecr => "ecr.amazonaws.com",
            Svc::Elb => "elasticloadbalancing.amazonaws.com",
        }
    }

    /// The IAM action prefix (`ec2:RunInstances`).
    pub(crate) fn iam_prefix(self) -> &'static str {
        match self {
            Svc::CloudWatch => "cloudwatch",
            Svc::Elb => "elasticloadbalancing",
            other => other.endpoint(),
        }
    }

    /// The endpoint host label (`{label}.{region}.amazonaws.com`).
    pub(crate) fn endpoint(self) -> &'static str {
        match self {
            Svc::Ec2 => "ec2",
            Svc::S3 => "s3",
            Svc::Iam => "iam",
            Svc::Sts => "sts",
            Svc::Kms => "kms",
            Svc::Rds => "rds",
            Svc::Lambda => "lambda",
            Svc::CloudTrail => "cloudtrail",
            Svc::Signin => "signin",
            Svc::DynamoDb => "dynamodb",
            Svc::Sns => "sns",
            Svc::Sqs => "sqs",
            Svc::Logs => "logs",
            Svc::CloudWatch => "monitoring",
            Svc::Config => "config",
            Svc::Organizations => "organizations",
            Svc::Ssm => "ssm",
            Svc::SecretsManager => "secretsmanager",
            Svc::Ecr => "api.ecr",
            Svc::Elb => "elasticloadbalancing",
        }
    }

    /// The AWS CLI command group.
    fn cli(self) -> &'static str {
        match self {
            Svc::S3 => "s3api",
            Svc::CloudWatch => "cloudwatch",
            Svc::Config => "configservice",
            Svc::Ecr => "ecr",
            Svc::Elb => "elbv2",
            other => other.endpoint(),
        }
    }

    /// Services served from the global endpoint in us-east-1.
    pub(crate) fn global(self) -> bool {
        matches!(self, Svc::Iam | Svc::Signin | Svc::Organizations)
    }

    pub(crate) fn event_version(self) -> &'static str {
        match self {
            Svc::Ec2 | Svc::S3 | Svc::Kms | Svc::Sns | Svc::SecretsManager | Svc::Elb => "1.10",
            Svc::Rds
            | Svc::Lambda
            | Svc::CloudTrail
            | Svc::DynamoDb
            | Svc::Sqs
            | Svc::CloudWatch => "1.09",
            _ => "1.08",
        }
    }
}

/// Callable by IAM users, roles, SSO, federated users and root.
pub(crate) const HUMAN: u8 = 1;
/// Callable only by principals that sign in to the console (ConsoleLogin).
pub(crate) const CONSOLE: u8 = 2;
/// Callable by AWS services on the account's behalf (`AWSService` identity).
pub(crate) const SERVICE: u8 = 4;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Api {
    pub(crate) op: Op,
    pub(crate) svc: Svc,
    pub(crate) name: &'static str,
    pub(crate) weight: u32,
    pub(crate) read: bool,
    pub(crate) who: u8,
}

macro_rules! apis {
    ($($op:ident $svc:ident $w:literal $rw:ident $who:expr;)*) => {
        /// One variant per eventName; the variant name *is* the eventName.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Op { $($op),* }
        pub(crate) const APIS: &[Api] = &[$(Api {
            op: Op::$op,
            svc: Svc::$svc,
            name: stringify!($op),
            weight: $w,
            read: apis!(@rw $rw),
            who: $who,
        }),*];
    };
    (@rw R) => { true };
    (@rw W) => { false };
}

apis! {
    DescribeInstances Ec2 380 R HUMAN | SERVICE;
    DescribeSecurityGroups Ec2 160 R HUMAN;
    DescribeVolumes Ec2 110 R HUMAN;
    DescribeVpcs Ec2 70 R HUMAN;
    RunInstances Ec2 30 W HUMAN;
    StartInstances Ec2 30 W HUMAN;
    StopInstances Ec2 30 W HUMAN;
    TerminateInstances Ec2 15 W HUMAN;
    AuthorizeSecurityGroupIngress Ec2 15 W HUMAN;
    CreateSecurityGroup Ec2 10 W HUMAN;
    CreateTags Ec2 60 W HUMAN;

    ListBuckets S3 160 R HUMAN;
    GetBucketAcl S3 150 R HUMAN | SERVICE;
    GetBucketLocation S3 120 R HUMAN | SERVICE;
    GetBucketPolicy S3 100 R HUMAN;
    GetBucketVersioning S3 60 R HUMAN;
    PutBucketPolicy S3 12 W HUMAN;
    CreateBucket S3 6 W HUMAN;
    DeleteBucket S3 4 W HUMAN;
    PutBucketPublicAccessBlock S3 5 W HUMAN;
    GetObject S3 550 R HUMAN;
    HeadObject S3 100 R HUMAN;
    PutObject S3 380 W HUMAN | SERVICE;
    DeleteObject S3 70 W HUMAN;

    GetRole Iam 120 R HUMAN;
    ListRoles Iam 80 R HUMAN;
    GetUser Iam 60 R HUMAN;
    ListUsers Iam 60 R HUMAN;
    ListAttachedRolePolicies Iam 60 R HUMAN;
    CreateUser Iam 6 W HUMAN;
    DeleteUser Iam 4 W HUMAN;
    AttachRolePolicy Iam 6 W HUMAN;
    AttachUserPolicy Iam 4 W HUMAN;
    CreateAccessKey Iam 6 W HUMAN;
    PutRolePolicy Iam 5 W HUMAN;
    CreateRole Iam 6 W HUMAN;

    AssumeRole Sts 380 R HUMAN | SERVICE;
    GetCallerIdentity Sts 250 R HUMAN;

    Decrypt Kms 450 R HUMAN | SERVICE;
    GenerateDataKey Kms 260 R HUMAN | SERVICE;
    Encrypt Kms 80 R HUMAN | SERVICE;
    DescribeKey Kms 80 R HUMAN;
    ListAliases Kms 40 R HUMAN;
    ScheduleKeyDeletion Kms 3 W HUMAN;
    DisableKey Kms 3 W HUMAN;
    RotateKey Kms 20 W SERVICE;

    DescribeDBInstances Rds 150 R HUMAN;
    DescribeDBSnapshots Rds 50 R HUMAN;
    CreateDBSnapshot Rds 12 W HUMAN;
    ModifyDBInstance Rds 6 W HUMAN;
    DeleteDBInstance Rds 2 W HUMAN;

    Invoke Lambda 380 W HUMAN;
    GetFunction20150331v2 Lambda 80 R HUMAN;
    ListFunctions20150331 Lambda 60 R HUMAN;
    UpdateFunctionCode20150331v2 Lambda 15 W HUMAN;
    UpdateFunctionConfiguration20150331v2 Lambda 8 W HUMAN;

    DescribeTrails CloudTrail 60 R HUMAN;
    GetTrailStatus CloudTrail 50 R HUMAN;
    LookupEvents CloudTrail 50 R HUMAN;
    UpdateTrail CloudTrail 3 W HUMAN;
    StopLogging CloudTrail 2 W HUMAN;
    DeleteTrail CloudTrail 1 W HUMAN;

    ConsoleLogin Signin 150 W CONSOLE;

    DescribeTable DynamoDb 150 R HUMAN;
    ListTables DynamoDb 80 R HUMAN;
    CreateTable DynamoDb 5 W HUMAN;
    UpdateTable DynamoDb 5 W HUMAN;
    DeleteTable DynamoDb 2 W HUMAN;

    ListTopics Sns 50 R HUMAN;
    GetTopicAttributes Sns 60 R HUMAN;
    CreateTopic Sns 4 W HUMAN;
    Subscribe Sns 5 W HUMAN;

    ListQueues Sqs 50 R HUMAN;
    GetQueueAttributes Sqs 100 R HUMAN;
    CreateQueue Sqs 4 W HUMAN;
    SetQueueAttributes Sqs 4 W HUMAN;
    DeleteQueue Sqs 2 W HUMAN;

    DescribeLogGroups Logs 100 R HUMAN;
    DescribeLogStreams Logs 60 R HUMAN;
    CreateLogStream Logs 280 W HUMAN;
    CreateLogGroup Logs 12 W HUMAN;
    PutRetentionPolicy Logs 8 W HUMAN;
    DeleteLogGroup Logs 3 W HUMAN;

    DescribeAlarms CloudWatch 120 R HUMAN;
    GetMetricData CloudWatch 150 R HUMAN;
    ListMetrics CloudWatch 50 R HUMAN;
    PutMetricAlarm CloudWatch 20 W HUMAN;
    DeleteAlarms CloudWatch 3 W HUMAN;

    DescribeConfigurationRecorders Config 40 R HUMAN;
    DescribeConfigRules Config 30 R HUMAN;
    DescribeComplianceByConfigRule Config 20 R HUMAN;
    PutEvaluations Config 70 W HUMAN;
    StopConfigurationRecorder Config 2 W HUMAN;
    DeleteDeliveryChannel Config 1 W HUMAN;

    DescribeOrganization Organizations 50 R HUMAN;
    ListAccounts Organizations 30 R HUMAN;
    ListPoliciesForTarget Organizations 15 R HUMAN;
    LeaveOrganization Organizations 1 W HUMAN;

    GetParameter Ssm 250 R HUMAN;
    GetParameters Ssm 100 R HUMAN;
    DescribeInstanceInformation Ssm 60 R HUMAN;
    UpdateInstanceInformation Ssm 150 W HUMAN;
    SendCommand Ssm 25 W HUMAN;
    PutParameter Ssm 8 W HUMAN;
    StartSession Ssm 15 W HUMAN;

    GetSecretValue SecretsManager 200 R HUMAN;
    DescribeSecret SecretsManager 60 R HUMAN;
    PutSecretValue SecretsManager 6 W HUMAN;
    CreateSecret SecretsManager 3 W HUMAN;
    DeleteSecret SecretsManager 2 W HUMAN;

    GetAuthorizationToken Ecr 150 R HUMAN;
    BatchGetImage Ecr 80 R HUMAN;
    DescribeRepositories Ecr 40 R HUMAN;
    PutImage Ecr 30 W HUMAN;

    DescribeLoadBalancers Elb 60 R HUMAN;
    DescribeTargetHealth Elb 60 R HUMAN;
    RegisterTargets Elb 15 W HUMAN;
}

/// The CLI command an aws-cli user agent names for `api`
/// (`ec2.describe-instances`, `rds.describe-db-instances`).
pub(crate) fn cli_command(api: &Api) -> String {
    match api.op {
        Op::GetObject | Op::PutObject => return "s3.cp".to_owned(),
        Op::DeleteObject => return "s3.rm".to_owned(),
        Op::ListBuckets => return "s3.ls".to_owned(),
        _ => {}
    }
    let name = api
        .name
        .trim_end_matches("v2")
        .trim_end_matches(|c: char| c.is_ascii_digit());
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(api.svc.cli().len() + 1 + name.len() + 4);
    out.push_str(api.svc.cli());
    out.push('.');
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if prev.is_ascii_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_ascii_uppercase() && next_lower)
            {
                out.push('-');
            }
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Per-identity-kind pick tables over [`APIS`].
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub(crate) apis: Vec<usize>,
    pub(crate) weights: Cumulative,
}

impl Table {
    pub(crate) fn new(mask: u8) -> Self {
        let apis: Vec<usize> = APIS
            .iter()
            .enumerate()
            .filter(|(_, a)| a.who & mask != 0)
            .map(|(i, _)| i)
            .collect();
        let weights = Cumulative::new(apis.iter().map(|&i| APIS[i].weight));
        Self { apis, weights }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_commands_are_kebab_case() {
        let find = |op: Op| APIS.iter().find(|a| a.op == op).map(cli_command);
        assert_eq!(
            find(Op::DescribeDBInstances).as_deref(),
            Some("rds.describe-db-instances")
        );
        assert_eq!(
            find(Op::DescribeInstances).as_deref(),
            Some("ec2.describe-instances")
        );
        assert_eq!(
            find(Op::UpdateFunctionCode20150331v2).as_deref(),
            Some("lambda.update-function-code")
        );
        assert_eq!(
            find(Op::GetBucketAcl).as_deref(),
            Some("s3api.get-bucket-acl")
        );
    }
}
