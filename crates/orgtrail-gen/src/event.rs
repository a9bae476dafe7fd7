//! Assembling one record in CloudTrail's top-level key order.

use std::borrow::Cow;

use serde::Serialize;

use crate::catalog::{APIS, Op, Table};
use crate::errors;
use crate::fmt;
use crate::identity::{self, KINDS, Kind, Principal, UserIdentity};
use crate::json::J;
use crate::ops::{self, Cx};
use crate::rng::Rng;
use crate::world::{Account, REGIONS, UaStyle, World};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TlsDetails<'a> {
    tls_version: &'static str,
    cipher_suite: &'static str,
    client_provided_host_header: Cow<'a, str>,
}

/// One CloudTrail record. Field order is serialisation order.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    event_version: &'static str,
    user_identity: UserIdentity<'a>,
    event_time: String,
    event_source: &'static str,
    event_name: &'static str,
    aws_region: &'static str,
    #[serde(rename = "sourceIPAddress")]
    source_ip_address: &'a str,
    user_agent: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<Cow<'static, str>>,
    request_parameters: J<'a>,
    response_elements: J<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    additional_event_data: Option<J<'a>>,
    #[serde(rename = "requestID", skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    #[serde(rename = "eventID")]
    event_id: String,
    read_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    resources: Option<J<'a>>,
    event_type: &'static str,
    management_event: bool,
    recipient_account_id: &'a str,
    #[serde(rename = "sharedEventID", skip_serializing_if = "Option::is_none")]
    shared_event_id: Option<String>,
    event_category: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_details: Option<TlsDetails<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_credential_from_console: Option<&'static str>,
}

/// The immutable part of a generator: the world and the pick tables.
#[derive(Debug)]
pub(crate) struct Model {
    pub(crate) world: World,
    /// One table per entry of [`KINDS`], same order.
    tables: Vec<Table>,
    /// `cli_command` per entry of [`APIS`].
    commands: Vec<String>,
}

fn kind_mask(kind: Kind) -> u8 {
    use crate::catalog::{CONSOLE, HUMAN, SERVICE};
    match kind {
        Kind::IamUser | Kind::Sso | Kind::Root => HUMAN | CONSOLE,
        Kind::Role | Kind::Federated => HUMAN,
        Kind::Service => SERVICE,
    }
}

/// The region a call goes to when no resource decides it.
fn call_region(rng: &mut Rng, acct: &Account) -> &'static str {
    let x = rng.below(100);
    if x < 55 {
        acct.regions[0]
    } else if x < 92 {
        rng.choose(&acct.regions)
    } else {
        rng.weighted(REGIONS)
    }
}

impl Model {
    pub(crate) fn new(seed: u64, accounts: u32, given: &[String]) -> Self {
        Self {
            world: World::new(seed, accounts, given),
            tables: KINDS
                .iter()
                .map(|(_, k)| Table::new(kind_mask(*k)))
                .collect(),
            commands: APIS.iter().map(crate::catalog::cli_command).collect(),
        }
    }

    /// Writes one new record at time `now` into `out`.
    pub(crate) fn write_event(&self, rng: &mut Rng, now: i64, out: &mut Vec<u8>) {
        let world = &self.world;
        let acct = &world.accounts[rng.index(world.accounts.len())];

        let ki = {
            let total: u32 = KINDS.iter().map(|(w, _)| *w).sum();
            let mut x = rng.below(u64::from(total)) as u32;
            let mut i = 0;
            while i + 1 < KINDS.len() && x >= KINDS[i].0 {
                x -= KINDS[i].0;
                i += 1;
            }
            i
        };
        let kind = KINDS[ki].1;
        let table = &self.tables[ki];
        let api_index = table.apis[table.weights.sample(rng)];
        let api = &APIS[api_index];
        let sign_in = api.op == Op::ConsoleLogin;

        let who = identity::pick_principal(rng, acct, kind, api.op);
        let agent = who.agent(acct);
        let console = sign_in || agent.is_some_and(|a| rng.permille(a.console_permille));
        let region = if api.svc.global() {
            "us-east-1"
        } else {
            call_region(rng, acct)
        };

        let cx = Cx {
            world,
            acct,
            now,
            region,
            who,
        };
        let mut body = ops::build(api.op, &cx, rng);
        let user_identity =
            identity::user_identity(rng, acct, &who, console, sign_in, now, body.service_event);

        // Source address, user agent and TLS.
        let (source_ip, user_agent, tls): (&str, Cow<'_, str>, bool) = match (who, agent) {
            (Principal::Service(svc), _) => {
                let ip = if rng.permille(900) {
                    svc
                } else {
                    "AWS Internal"
                };
                (ip, Cow::Borrowed(svc), false)
            }
            (_, Some(ag)) => {
                let ip = acct.ips[if rng.permille(850) {
                    ag.ip
                } else {
                    rng.index(acct.ips.len())
                }]
                .as_str();
                if console {
                    let x = rng.below(100);
                    if sign_in || x < 55 {
                        (ip, Cow::Borrowed(ag.browser), true)
                    } else if x < 85 {
                        (ip, Cow::Borrowed("AWS Internal"), false)
                    } else {
                        (ip, Cow::Borrowed("console.amazonaws.com"), true)
                    }
                } else if ag.style == UaStyle::Cli {
                    let cmd = &self.commands[api_index];
                    let mut ua = String::with_capacity(ag.ua.len() + cmd.len());
                    ua.push_str(&ag.ua);
                    ua.push_str(cmd);
                    (ip, Cow::Owned(ua), true)
                } else {
                    (ip, Cow::Borrowed(ag.ua.as_str()), true)
                }
            }
            (_, None) => ("AWS Internal", Cow::Borrowed("AWS Internal"), false),
        };

        // Failures.
        let mut error_code = None;
        let mut error_message: Option<Cow<'static, str>> = None;
        if body.login_failed {
            error_message = Some(Cow::Borrowed("Failed authentication"));
        } else if let Principal::Service(_) = who {
            if rng.permille(errors::ERROR_PERMILLE_SERVICE) {
                let (c, m) = errors::throttled(api.svc);
                error_code = Some(c);
                error_message = Some(Cow::Owned(m));
            }
        } else {
            let permille = if api.read {
                errors::ERROR_PERMILLE_READ
            } else {
                errors::ERROR_PERMILLE_WRITE
            };
            if !sign_in && rng.permille(permille) {
                let caller = who.arn(acct).unwrap_or("");
                let (c, m) = errors::pick(rng, api, caller, body.target);
                error_code = Some(c);
                if !m.is_empty() {
                    error_message = Some(Cow::Owned(m));
                }
            }
        }
        if error_code.is_some() {
            body.resp = J::Null;
        }

        let tls_details = tls.then(|| {
            let host = match body.host.take() {
                Some(h) => Cow::Owned(h),
                None if api.svc.global() => {
                    Cow::Owned(format!("{}.amazonaws.com", api.svc.endpoint()))
                }
                None => Cow::Owned(format!(
                    "{}.{}.amazonaws.com",
                    api.svc.endpoint(),
                    body.region
                )),
            };
            let (tls_version, cipher_suite) = match rng.below(10) {
                0..=5 => ("TLSv1.3", "TLS_AES_128_GCM_SHA256"),
                6 => ("TLSv1.3", "TLS_AES_256_GCM_SHA384"),
                _ => ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256"),
            };
            TlsDetails {
                tls_version,
                cipher_suite,
                client_provided_host_header: host,
            }
        });

        let request_id = if sign_in || body.service_event {
            None
        } else if body.s3_request_id {
            Some(fmt::hex_upper(rng, 16))
        } else {
            Some(fmt::uuid4(rng))
        };
        let event_id = fmt::uuid4(rng);
        let shared_event_id = match (who, api.op) {
            (
                Principal::Service(_),
                Op::AssumeRole | Op::Decrypt | Op::GenerateDataKey | Op::Encrypt,
            ) => Some(fmt::uuid4(rng)),
            _ => None,
        };
        let from_console = console
            && !sign_in
            && matches!(
                who,
                Principal::User(_) | Principal::Session(..) | Principal::Root
            );

        let event = Event {
            event_version: api.svc.event_version(),
            user_identity,
            event_time: fmt::rfc3339(now),
            event_source: api.svc.source(),
            event_name: api.name,
            aws_region: body.region,
            source_ip_address: source_ip,
            user_agent,
            error_code,
            error_message,
            request_parameters: body.req,
            response_elements: body.resp,
            additional_event_data: body.extra,
            request_id,
            event_id,
            read_only: api.read,
            resources: body.resources,
            event_type: if sign_in {
                "AwsConsoleSignIn"
            } else if body.service_event {
                "AwsServiceEvent"
            } else {
                "AwsApiCall"
            },
            management_event: !body.data,
            recipient_account_id: &acct.id,
            shared_event_id,
            event_category: if body.data { "Data" } else { "Management" },
            tls_details,
            session_credential_from_console: from_console.then_some("true"),
        };
        // Serialising these types cannot fail: every map key is a string, no
        // value is a float, and writing to a Vec<u8> is infallible. Should it
        // ever fail, emit an empty record rather than a truncated one.
        if serde_json::to_writer(&mut *out, &event).is_err() {
            out.clear();
            out.extend_from_slice(b"{}");
        }
    }
}
