//! Who makes a call: the weighted identity mix and the `userIdentity` element.

use serde::Serialize;

use crate::catalog::Op;
use crate::fmt;
use crate::rng::Rng;
use crate::world::{Account, Agent, Federated, Role, RoleKind, Session, User};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// AssumedRole of a human, workload or CI role.
    Role,
    IamUser,
    Service,
    Root,
    /// AssumedRole of an IAM Identity Center (`AWSReservedSSO_…`) role.
    Sso,
    Federated,
}

/// Identity weights in percent.
pub(crate) const KINDS: &[(u32, Kind)] = &[
    (55, Kind::Role),
    (20, Kind::IamUser),
    (10, Kind::Service),
    (3, Kind::Root),
    (9, Kind::Sso),
    (3, Kind::Federated),
];

#[derive(Debug, Clone, Copy)]
pub(crate) enum Principal<'a> {
    User(&'a User),
    Session(&'a Role, &'a Session),
    Federated(&'a Federated, &'a User),
    Root,
    Service(&'static str),
}

impl<'a> Principal<'a> {
    pub(crate) fn agent(&self, acct: &'a Account) -> Option<&'a Agent> {
        match *self {
            Principal::User(u) => Some(&u.agent),
            Principal::Session(_, s) => Some(&s.agent),
            Principal::Federated(f, _) => Some(&f.agent),
            Principal::Root => Some(&acct.root_agent),
            Principal::Service(_) => None,
        }
    }

    /// The ARN an AccessDenied message names.
    pub(crate) fn arn(&self, acct: &'a Account) -> Option<&'a str> {
        match *self {
            Principal::User(u) => Some(&u.arn),
            Principal::Session(_, s) => Some(&s.arn),
            Principal::Federated(f, _) => Some(&f.arn),
            Principal::Root => Some(&acct.root_arn),
            Principal::Service(_) => None,
        }
    }

    /// A short human-ish name (SSM session ids, tag values).
    pub(crate) fn short_name(&self) -> &'a str {
        match *self {
            Principal::User(u) => &u.name,
            Principal::Session(_, s) => &s.name,
            Principal::Federated(f, _) => &f.name,
            Principal::Root => "root",
            Principal::Service(s) => s,
        }
    }

    pub(crate) fn mfa(&self) -> bool {
        match *self {
            Principal::User(u) => u.mfa,
            Principal::Session(_, s) => s.mfa,
            Principal::Root => true,
            Principal::Federated(..) | Principal::Service(_) => false,
        }
    }
}

fn pick_role<'a>(rng: &mut Rng, acct: &'a Account, pool: &[usize]) -> Principal<'a> {
    let role = &acct.roles[rng.choose(pool)];
    Principal::Session(role, rng.pick(&role.sessions))
}

/// Services that act on the account's behalf, by operation.
fn invokers(op: Op) -> &'static [&'static str] {
    match op {
        Op::DescribeInstances => &[
            "autoscaling.amazonaws.com",
            "elasticloadbalancing.amazonaws.com",
            "ssm.amazonaws.com",
        ],
        Op::GetBucketAcl | Op::GetBucketLocation | Op::PutObject => &[
            "cloudtrail.amazonaws.com",
            "config.amazonaws.com",
            "delivery.logs.amazonaws.com",
        ],
        Op::AssumeRole => &[
            "lambda.amazonaws.com",
            "ecs-tasks.amazonaws.com",
            "ec2.amazonaws.com",
            "config.amazonaws.com",
            "cloudformation.amazonaws.com",
            "events.amazonaws.com",
        ],
        Op::RotateKey => &["kms.amazonaws.com"],
        _ => &[
            "s3.amazonaws.com",
            "secretsmanager.amazonaws.com",
            "ec2.amazonaws.com",
            "rds.amazonaws.com",
            "lambda.amazonaws.com",
            "ssm.amazonaws.com",
            "dynamodb.amazonaws.com",
            "sqs.amazonaws.com",
        ],
    }
}

pub(crate) fn pick_principal<'a>(
    rng: &mut Rng,
    acct: &'a Account,
    kind: Kind,
    op: Op,
) -> Principal<'a> {
    match kind {
        Kind::Role => {
            let x = rng.below(100);
            if x < 55 {
                pick_role(rng, acct, &acct.workload_roles)
            } else if x < 80 {
                pick_role(rng, acct, &acct.human_roles)
            } else {
                pick_role(rng, acct, &acct.ci_roles)
            }
        }
        Kind::Sso => pick_role(rng, acct, &acct.sso_roles),
        Kind::IamUser => {
            // Fifteen people first, then five service users; people sign in.
            let n = acct.users.len();
            let i = if op == Op::ConsoleLogin || rng.permille(700) {
                rng.index(n.min(15))
            } else {
                n.min(15) + rng.index(n - n.min(15))
            };
            Principal::User(&acct.users[i.min(n - 1)])
        }
        Kind::Federated => {
            let f = rng.pick(&acct.federated);
            Principal::Federated(f, &acct.users[f.issuer.min(acct.users.len() - 1)])
        }
        Kind::Root => Principal::Root,
        Kind::Service => Principal::Service(rng.choose(invokers(op))),
    }
}

#[derive(Debug, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Issuer<'a> {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    principal_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arn: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_name: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Empty {}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Attributes {
    creation_date: String,
    mfa_authenticated: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SessionContext<'a> {
    session_issuer: Issuer<'a>,
    web_id_federation_data: Empty,
    attributes: Attributes,
}

#[derive(Debug, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UserIdentity<'a> {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    principal_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arn: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_key_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_context: Option<SessionContext<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    invoked_by: Option<&'a str>,
}

fn attributes(rng: &mut Rng, now: i64, mfa: bool) -> Attributes {
    Attributes {
        creation_date: fmt::rfc3339(now - rng.below(3 * 3600) as i64),
        mfa_authenticated: if mfa { "true" } else { "false" },
    }
}

/// Renders `userIdentity`. `console` selects the console-session form (an
/// `ASIA…` key and a `sessionContext`); `sign_in` the ConsoleLogin form.
pub(crate) fn user_identity<'a>(
    rng: &mut Rng,
    acct: &'a Account,
    p: &Principal<'a>,
    console: bool,
    sign_in: bool,
    now: i64,
    service_event: bool,
) -> UserIdentity<'a> {
    let acct_id = Some(acct.id.as_str());
    match *p {
        Principal::User(u) => UserIdentity {
            kind: Some("IAMUser"),
            principal_id: Some(&u.principal_id),
            arn: Some(&u.arn),
            account_id: acct_id,
            access_key_id: if sign_in {
                None
            } else if console {
                Some(&u.console_key)
            } else {
                Some(&u.access_key)
            },
            user_name: Some(&u.name),
            session_context: (console && !sign_in).then(|| SessionContext {
                session_issuer: Issuer::default(),
                web_id_federation_data: Empty {},
                attributes: attributes(rng, now, u.mfa),
            }),
            invoked_by: None,
        },
        Principal::Session(role, s) => UserIdentity {
            kind: Some("AssumedRole"),
            principal_id: Some(&s.principal_id),
            arn: Some(&s.arn),
            account_id: acct_id,
            access_key_id: Some(&s.access_key),
            user_name: None,
            session_context: Some(SessionContext {
                session_issuer: Issuer {
                    kind: Some("Role"),
                    principal_id: Some(&role.role_id),
                    arn: Some(&role.arn),
                    account_id: acct_id,
                    user_name: Some(&role.name),
                },
                web_id_federation_data: Empty {},
                attributes: attributes(rng, now, s.mfa || role.kind == RoleKind::Sso),
            }),
            invoked_by: None,
        },
        Principal::Federated(f, issuer) => UserIdentity {
            kind: Some("FederatedUser"),
            principal_id: Some(&f.principal_id),
            arn: Some(&f.arn),
            account_id: acct_id,
            access_key_id: Some(&f.access_key),
            user_name: None,
            session_context: Some(SessionContext {
                session_issuer: Issuer {
                    kind: Some("IAMUser"),
                    principal_id: Some(&issuer.principal_id),
                    arn: Some(&issuer.arn),
                    account_id: acct_id,
                    user_name: Some(&issuer.name),
                },
                web_id_federation_data: Empty {},
                attributes: attributes(rng, now, false),
            }),
            invoked_by: None,
        },
        Principal::Root => UserIdentity {
            kind: Some("Root"),
            principal_id: acct_id,
            arn: Some(&acct.root_arn),
            account_id: acct_id,
            access_key_id: if sign_in { None } else { Some(&acct.root_key) },
            user_name: None,
            session_context: (!sign_in).then(|| SessionContext {
                session_issuer: Issuer::default(),
                web_id_federation_data: Empty {},
                attributes: attributes(rng, now, true),
            }),
            invoked_by: None,
        },
        Principal::Service(svc) if service_event => UserIdentity {
            account_id: acct_id,
            invoked_by: Some(svc),
            ..UserIdentity::default()
        },
        Principal::Service(svc) => UserIdentity {
            kind: Some("AWSService"),
            invoked_by: Some(svc),
            ..UserIdentity::default()
        },
    }
}
