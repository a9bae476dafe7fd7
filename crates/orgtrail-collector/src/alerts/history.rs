//! The alerts service: the ledger's alert history (every alert recorded, delivered or not)
//! listed and followed by auditor and admin certificates, an auditor possibly limited to the
//! accounts its certificate names.
//!
//! Each alert is sent whole, as sinks receive it: the event at its sequence number is read
//! (and decrypted) here, its payload built by [`super::payload::of_stored`] under the same
//! alert id. Every store read runs in `spawn_blocking`, and one call reads a bounded part of
//! the history ([`SCAN`] entries): a list page may come back short with a next token, a
//! follower reads on in the next round. A follower reads the history past its position each
//! time the evaluator records alerts (a `watch` it bumps), so it neither polls nor misses one.

use std::collections::HashMap;
use std::sync::Arc;

use orgtrail_core::AccountId;
use orgtrail_proto::v1 as pb;
use orgtrail_proto::v1::alerts_server::Alerts as AlertsApi;
use orgtrail_rules::RuleSet;
use orgtrail_store::{AlertRef, EventStore, StoreError};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::auth::{Authorizer, ReadScope};

/// History entries one call examines at most (each that passes the rule, time and severity
/// filters costs one event read).
const SCAN: usize = 10_000;
/// Entries read from the store at once.
const CHUNK: usize = 256;
/// Page size when the request gives none, and the most a page may hold.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 1000;
/// Alerts a follower may have unread before the collector waits for it.
const FOLLOW_BUFFER: usize = 256;

/// The gRPC alerts service.
#[derive(Debug, Clone)]
pub struct AlertsService {
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) auth: Arc<Authorizer>,
    /// The rules in force (for each alert's rule name and severity); `None` without `[rules]`.
    pub(crate) rules: Option<super::reload::LiveRules>,
    /// Bumped by the evaluator each time it records alerts.
    pub(crate) recorded: watch::Receiver<u64>,
    pub(crate) stopping: watch::Receiver<bool>,
}

/// A position in the history: (seq, rule id). `(0, "")` is before every alert.
type Pos = (u64, String);

fn cursor((seq, rule): &Pos) -> String {
    format!("{seq}:{rule}")
}

fn parse_cursor(s: &str, what: &str) -> Result<Pos, Status> {
    let bad =
        || Status::invalid_argument(format!("{what} is not a position this collector issued"));
    let (seq, rule) = s.split_once(':').ok_or_else(bad)?;
    let seq: u64 = seq.parse().map_err(|_| bad())?;
    if rule.len() > 255 {
        return Err(bad());
    }
    Ok((seq, rule.to_owned()))
}

/// A request's filters, checked, with the reader's scope applied.
#[derive(Debug, Clone)]
struct Filter {
    since: Option<i64>,
    until: Option<i64>,
    rules: Vec<String>,
    /// The accounts asked for, or the reader's accounts; empty: every account.
    accounts: Vec<AccountId>,
    severities: Vec<String>,
}

const SEVERITIES: [&str; 5] = ["info", "low", "medium", "high", "critical"];

impl Filter {
    fn new(scope: &ReadScope, f: Option<pb::AlertFilter>) -> Result<Filter, Status> {
        let f = f.unwrap_or_default();
        let mut accounts = Vec::with_capacity(f.accounts.len());
        for a in &f.accounts {
            let acct: AccountId = a.parse().map_err(|_| {
                Status::invalid_argument(format!("{a:?} is not a 12-digit account id"))
            })?;
            scope.check(&acct)?;
            accounts.push(acct);
        }
        if accounts.is_empty() {
            accounts.clone_from(&scope.accounts);
        }
        if let Some(s) = f
            .severities
            .iter()
            .find(|s| !SEVERITIES.contains(&s.as_str()))
        {
            return Err(Status::invalid_argument(format!(
                "severity {s:?} is not one of {}",
                SEVERITIES.join(", ")
            )));
        }
        if let (Some(s), Some(u)) = (f.since_ms, f.until_ms)
            && s > u
        {
            return Err(Status::invalid_argument(
                "since is after until: no alert can match",
            ));
        }
        Ok(Filter {
            since: f.since_ms,
            until: f.until_ms,
            rules: f.rules,
            accounts,
            severities: f.severities,
        })
    }
}

/// What one read of the history found.
struct Found {
    alerts: Vec<pb::Alert>,
    /// The last entry examined, if any.
    last: Option<Pos>,
    /// Whether entries past `last` may match (a budget or the page size stopped the read).
    more: bool,
}

/// Reads the history from `from` (exclusive; oldest first, or newest first), examining at
/// most `budget` entries, until `want` alerts match. Blocking.
fn read(
    store: &dyn EventStore,
    rules: Option<&RuleSet>,
    f: &Filter,
    (from, newest_first): (Option<Pos>, bool),
    want: usize,
    budget: usize,
) -> Result<Found, StoreError> {
    let by_id: HashMap<&str, &orgtrail_rules::Rule> = rules
        .map(|r| r.rules.iter().map(|r| (r.id.as_str(), r)).collect())
        .unwrap_or_default();
    let mut found = Found {
        alerts: Vec::new(),
        last: from,
        more: false,
    };
    let mut examined = 0;
    loop {
        let pos = found.last.as_ref().map(|(s, r)| (*s, r.as_str()));
        let chunk = store.alert_history(pos, CHUNK, newest_first)?;
        let end = chunk.len() < CHUNK;
        for a in chunk {
            examined += 1;
            let AlertRef {
                seq,
                rule,
                recorded,
            } = a;
            let t = recorded.millis();
            // Recorded times never go back along the history: past the range, nothing more.
            let beyond = if newest_first {
                f.since.is_some_and(|s| t < s)
            } else {
                f.until.is_some_and(|u| t > u)
            };
            if beyond {
                found.more = false;
                return Ok(found);
            }
            found.last = Some((seq, rule.clone()));
            let in_time = f.since.is_none_or(|s| t >= s) && f.until.is_none_or(|u| t <= u);
            let the_rule = by_id.get(rule.as_str()).copied();
            let wanted = in_time
                && (f.rules.is_empty() || f.rules.contains(&rule))
                && (f.severities.is_empty()
                    || the_rule
                        .is_some_and(|r| f.severities.iter().any(|s| s == r.severity.as_str())));
            if wanted {
                let e = store.read(seq)?;
                if f.accounts.is_empty() || f.accounts.contains(&e.account) {
                    let (id, body) =
                        super::payload::of_stored(&e, &rule, the_rule).map_err(|err| {
                            StoreError::Corrupt(format!("event {seq} is not JSON: {err}"))
                        })?;
                    let pos = (seq, rule);
                    found.alerts.push(pb::Alert {
                        id,
                        cursor: cursor(&pos),
                        rule_id: pos.1,
                        recorded_ms: t,
                        account: e.account.to_string(),
                        seq,
                        payload: body,
                    });
                    if found.alerts.len() >= want {
                        found.more = true;
                        return Ok(found);
                    }
                }
            }
            if examined >= budget {
                found.more = true;
                return Ok(found);
            }
        }
        if end {
            return Ok(found);
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Status> {
    crate::status::blocking("alerts request", f).await
}

fn scope_of<T>(auth: &Authorizer, req: &Request<T>) -> Result<ReadScope, Status> {
    let certs: Option<Vec<Vec<u8>>> = req
        .peer_certs()
        .map(|c| c.iter().map(|d| d.as_ref().to_vec()).collect());
    auth.reader_scope(certs.as_deref(), "alerts", "read alerts")
}

#[tonic::async_trait]
impl AlertsApi for AlertsService {
    async fn list_alerts(
        &self,
        request: Request<pb::ListAlertsRequest>,
    ) -> Result<Response<pb::ListAlertsResponse>, Status> {
        let scope = scope_of(&self.auth, &request)?;
        let r = request.into_inner();
        let f = Filter::new(&scope, r.filter)?;
        let from = if r.next_token.is_empty() {
            None
        } else {
            Some(parse_cursor(&r.next_token, "next_token")?)
        };
        let want = match r.max_results as usize {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let store = self.store.clone();
        let rules = self.rules.as_ref().map(super::reload::LiveRules::current);
        let found = blocking(move || {
            read(
                store.as_ref(),
                rules.as_deref(),
                &f,
                (from, true),
                want,
                SCAN,
            )
        })
        .await?;
        tracing::debug!(reader = %scope.name, alerts = found.alerts.len(), "alerts listed");
        Ok(Response::new(pb::ListAlertsResponse {
            next_token: match (&found.last, found.more) {
                (Some(p), true) => cursor(p),
                _ => String::new(),
            },
            alerts: found.alerts,
        }))
    }

    type FollowAlertsStream = ReceiverStream<Result<pb::Alert, Status>>;

    async fn follow_alerts(
        &self,
        request: Request<pb::FollowAlertsRequest>,
    ) -> Result<Response<Self::FollowAlertsStream>, Status> {
        let scope = scope_of(&self.auth, &request)?;
        let r = request.into_inner();
        let f = Filter::new(&scope, r.filter)?;
        // Marked seen before the history is read: an alert recorded from now on wakes us.
        let mut recorded = self.recorded.clone();
        recorded.borrow_and_update();
        let mut position: Pos = if r.after.is_empty() {
            let store = self.store.clone();
            blocking(move || store.alert_history(None, 1, true))
                .await?
                .pop()
                .map_or((0, String::new()), |a| (a.seq, a.rule))
        } else {
            parse_cursor(&r.after, "after")?
        };
        let (tx, rx) = mpsc::channel(FOLLOW_BUFFER);
        let mut stopping = self.stopping.clone();
        // A reader whose certificate is revoked while it follows is cut off at the reload.
        let revocation = self.auth.revocation().clone();
        let mut reloaded = revocation.subscribe();
        let store = self.store.clone();
        let rules = self.rules.as_ref().map(super::reload::LiveRules::current);
        tracing::info!(reader = %scope.name, after = %cursor(&position), "alert follow started");
        tokio::spawn(async move {
            let marker = pb::Alert {
                cursor: cursor(&position),
                ..pb::Alert::default()
            };
            if tx.send(Ok(marker)).await.is_err() {
                return;
            }
            loop {
                let (s, r, ff, from) = (
                    store.clone(),
                    rules.clone(),
                    f.clone(),
                    Some(position.clone()),
                );
                let found = match blocking(move || {
                    read(
                        s.as_ref(),
                        r.as_deref(),
                        &ff,
                        (from, false),
                        FOLLOW_BUFFER,
                        SCAN,
                    )
                })
                .await
                {
                    Ok(found) => found,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                for a in found.alerts {
                    if tx.send(Ok(a)).await.is_err() {
                        return;
                    }
                }
                if let Some(p) = found.last {
                    position = p;
                }
                if found.more {
                    continue;
                }
                // Caught up: wait for the evaluator to record more (or a stop).
                loop {
                    enum Next {
                        Read,
                        NoEvaluator,
                        Stop,
                        Reloaded,
                    }
                    let next = tokio::select! {
                        changed = recorded.changed() => if changed.is_ok() { Next::Read } else { Next::NoEvaluator },
                        _ = stopping.wait_for(|s| *s) => Next::Stop,
                        () = tx.closed() => Next::Stop,
                        Ok(()) = reloaded.changed() => Next::Reloaded,
                    };
                    match next {
                        Next::Read => break,
                        Next::Stop => return,
                        // No evaluator any more: nothing new will come; hold on until a stop.
                        Next::NoEvaluator => {
                            tokio::select! {
                                _ = stopping.wait_for(|s| *s) => {}
                                () = tx.closed() => {}
                            }
                            return;
                        }
                        Next::Reloaded => {
                            if revocation.is_revoked(&scope.peer) {
                                let status = crate::auth::refused(
                                    Some(&scope.peer),
                                    "alerts",
                                    Authorizer::revoked_status(&scope.peer),
                                );
                                let _ = tx.send(Err(status)).await;
                                return;
                            }
                        }
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_a_foreign_one_is_refused() {
        let p = (42, "root-login".to_owned());
        assert_eq!(parse_cursor(&cursor(&p), "t").unwrap(), p);
        assert_eq!(
            parse_cursor("0:", "t").unwrap(),
            (0, String::new()),
            "before every alert"
        );
        for bad in ["", "42", "x:r", "-1:r"] {
            let e = parse_cursor(bad, "next_token").unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad}");
            assert!(e.message().contains("next_token"), "{}", e.message());
        }
    }

    const A: &str = "111122223333";
    const B: &str = "444455556666";

    /// 20 events, alternately of accounts A and B (seq 1 is A's), each firing rule `r1`, and
    /// every fourth also `r2` (a rule no longer loaded).
    fn store() -> (orgtrail_store::MemoryStore, RuleSet) {
        use orgtrail_store::{EventStore, PendingAlert};
        let store = orgtrail_store::MemoryStore::new();
        let events: Vec<_> = (0..20)
            .map(|i| {
                let account = if i % 2 == 0 { A } else { B };
                let json = format!(
                    r#"{{"eventVersion":"1.08","eventTime":"2026-11-27T08:00:{i:02}Z","eventSource":"iam.amazonaws.com","eventName":"DeleteRole","awsRegion":"us-east-1","eventID":"e{i}","recipientAccountId":"{account}","userIdentity":{{"type":"Root"}}}}"#
                );
                (
                    orgtrail_core::CloudTrailEvent::parse(json.into_bytes()).unwrap(),
                    account.parse().unwrap(),
                )
            })
            .collect();
        // One at a time: event i gets seq i + 1.
        for e in events {
            store.append_events(&[e]).unwrap();
        }
        let mut alerts = Vec::new();
        for seq in 1..=20 {
            let sinks = vec!["s".to_owned()];
            alerts.push(PendingAlert {
                seq,
                rule: "r1".into(),
                sinks: sinks.clone(),
            });
            if seq % 4 == 0 {
                alerts.push(PendingAlert {
                    seq,
                    rule: "r2".into(),
                    sinks,
                });
            }
        }
        store.record_alerts(20, &alerts).unwrap();
        let rule = orgtrail_rules::Rule::from_json(
            &serde_json::json!({"id": "r1", "severity": "high", "pattern": {"eventName": ["DeleteRole"]}}),
            std::path::Path::new("r1.json"),
        )
        .unwrap();
        (store, RuleSet::new(vec![rule]).unwrap())
    }

    fn all() -> Filter {
        Filter {
            since: None,
            until: None,
            rules: Vec::new(),
            accounts: Vec::new(),
            severities: Vec::new(),
        }
    }

    #[test]
    fn pages_cover_the_history_once_each_way_with_the_sinks_payloads() {
        let (store, rules) = store();
        for newest_first in [true, false] {
            let mut from = None;
            let mut got = Vec::new();
            loop {
                let page =
                    read(&store, Some(&rules), &all(), (from, newest_first), 4, SCAN).unwrap();
                assert!(page.alerts.len() <= 4);
                got.extend(page.alerts);
                if !page.more {
                    break;
                }
                from = page.last;
            }
            assert_eq!(got.len(), 25, "every alert once");
            let mut keys: Vec<(u64, String)> =
                got.iter().map(|a| (a.seq, a.rule_id.clone())).collect();
            if newest_first {
                keys.reverse();
            }
            assert!(keys.windows(2).all(|w| w[0] < w[1]), "in order: {keys:?}");
            let e2 = got
                .iter()
                .find(|a| a.seq == 2 && a.rule_id == "r1")
                .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&e2.payload).unwrap();
            assert_eq!(e2.id, super::super::payload::alert_id("r1", B, "e1"));
            assert_eq!(v["id"], e2.id.as_str());
            assert_eq!(v["severity"], "high");
            assert_eq!(v["detail"]["eventID"], "e1");
            assert_eq!(e2.account, B);
            // The alert of a rule no longer loaded: listed, rule id kept, no severity.
            let r2 = got.iter().find(|a| a.rule_id == "r2").unwrap();
            let v: serde_json::Value = serde_json::from_slice(&r2.payload).unwrap();
            assert_eq!(v["rule-id"], "r2");
            assert!(v.get("severity").is_none() && v.get("rule-name").is_none());
        }
    }

    #[test]
    fn filters_and_the_scan_budget() {
        let (store, rules) = store();
        let read_all = |f: &Filter| {
            read(&store, Some(&rules), f, (None, true), 100, SCAN)
                .unwrap()
                .alerts
        };
        let f = Filter {
            rules: vec!["r2".into()],
            ..all()
        };
        assert_eq!(read_all(&f).len(), 5);
        let f = Filter {
            accounts: vec![A.parse().unwrap()],
            ..all()
        };
        let a = read_all(&f);
        assert_eq!(
            a.len(),
            10,
            "odd seqs are account A's, every r2 on an even one"
        );
        assert!(a.iter().all(|x| x.account == A));
        let f = Filter {
            severities: vec!["high".into()],
            ..all()
        };
        assert!(read_all(&f).iter().all(|x| x.rule_id == "r1"));
        assert_eq!(read_all(&f).len(), 20);
        let f = Filter {
            since: Some(i64::MAX),
            ..all()
        };
        let page = read(&store, Some(&rules), &f, (None, true), 100, SCAN).unwrap();
        assert!(
            page.alerts.is_empty() && !page.more,
            "older than since: the read stops at once"
        );
        let f = Filter {
            until: Some(0),
            ..all()
        };
        assert!(read_all(&f).is_empty());
        // A filter that matches nothing reads a bounded part, and says where to go on.
        let f = Filter {
            rules: vec!["none".into()],
            ..all()
        };
        let page = read(&store, Some(&rules), &f, (None, true), 100, 7).unwrap();
        assert!(page.alerts.is_empty() && page.more);
        // (20, r2) (20, r1) (19, r1) (18, r1) (17, r1) (16, r2) (16, r1)
        assert_eq!(
            page.last,
            Some((16, "r1".to_owned())),
            "the 7 newest examined"
        );
        let rest = read(&store, Some(&rules), &f, (page.last, true), 100, 100).unwrap();
        assert!(rest.alerts.is_empty() && !rest.more);
    }
}
