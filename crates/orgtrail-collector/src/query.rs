//! The query service: lookups, one event, grouped counts and a live follow, for auditor and
//! admin certificates only, an auditor possibly limited to the accounts its certificate names.

use std::sync::Arc;

use orgtrail_core::{AccountId, CloudTrailEvent, Timestamp};
use orgtrail_proto::v1 as pb;
use orgtrail_proto::v1::query_server::Query as QueryApi;
use orgtrail_store::{Attr, EventStore, Group, Query, StoreError, StoredEvent};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::auth::{Authorizer, ReadScope};

/// An event just made durable, for live followers.
#[derive(Debug)]
pub struct LiveEvent {
    pub seq: u64,
    pub account: AccountId,
    pub time: Timestamp,
    pub event: CloudTrailEvent,
}

/// Most stored events a resuming follower is replayed.
const MAX_REPLAY: u64 = 100_000;

/// Sends the events in `after+1..=head` that match `q`, read in blocks off the runtime.
async fn replay(
    store: &Arc<dyn EventStore>,
    q: &Query,
    after: u64,
    head: u64,
    tx: &mpsc::Sender<Result<pb::StoredEvent, Status>>,
) -> Result<(), Status> {
    const BLOCK: u64 = 512;
    let mut next = after + 1;
    while next <= head {
        let last = (next + BLOCK - 1).min(head);
        let l = store.clone();
        let block = blocking(move || {
            (next..=last)
                .map(|s| l.read(s))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
        for e in block {
            let ev = CloudTrailEvent::parse(e.bytes.clone()).map_err(|err| {
                Status::internal(format!("record {} no longer parses: {err}", e.seq))
            })?;
            if q.matches(&ev, &e.account, e.time) && tx.send(Ok(to_pb(e))).await.is_err() {
                return Ok(());
            }
        }
        next = last + 1;
    }
    Ok(())
}

/// Most groups a Stats call may ask for.
const MAX_GROUPS: usize = 10_000;

/// The gRPC query service.
#[derive(Debug, Clone)]
pub struct QueryService {
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) auth: Arc<Authorizer>,
    pub(crate) live: broadcast::Sender<Arc<LiveEvent>>,
    pub(crate) stopping: tokio::sync::watch::Receiver<bool>,
    /// Most events one `Stats` call decrypts (`limits.max_stats_events`).
    pub(crate) max_stats_events: usize,
}

fn attr(a: i32) -> Result<Attr, Status> {
    use pb::Attribute as A;
    Ok(
        match A::try_from(a)
            .map_err(|_| Status::invalid_argument(format!("unknown attribute {a}")))?
        {
            A::Account => Attr::Account,
            A::Region => Attr::Region,
            A::EventName => Attr::EventName,
            A::EventSource => Attr::EventSource,
            A::ReadOnly => Attr::ReadOnly,
            A::Username => Attr::Username,
            A::AccessKeyId => Attr::AccessKeyId,
            A::ResourceName => Attr::ResourceName,
            A::ResourceType => Attr::ResourceType,
            A::ErrorCode => Attr::ErrorCode,
            A::EventCategory => Attr::EventCategory,
            A::InsightType => Attr::InsightType,
            A::Unspecified => {
                return Err(Status::invalid_argument("a filter without an attribute"));
            }
        },
    )
}

fn group(g: i32) -> Result<Group, Status> {
    use pb::GroupBy as G;
    Ok(
        match G::try_from(g)
            .map_err(|_| Status::invalid_argument(format!("unknown group_by {g}")))?
        {
            G::Account => Group::Account,
            G::EventSource => Group::EventSource,
            G::EventName => Group::EventName,
            G::User => Group::User,
            G::ErrorCode => Group::ErrorCode,
            G::Region => Group::Region,
            G::Unspecified => return Err(Status::invalid_argument("group_by is unspecified")),
        },
    )
}

/// The store query for a request's filters and time range, kept to what `scope` may read.
fn build_query(
    scope: &ReadScope,
    filters: &[pb::Filter],
    start_ms: Option<i64>,
    end_ms: Option<i64>,
) -> Result<Query, Status> {
    let mut q = Query {
        start: start_ms.map(Timestamp),
        end: end_ms.map(Timestamp),
        ..Query::default()
    };
    for f in filters {
        let a = attr(f.attribute)?;
        if a == Attr::Account {
            let acct: AccountId = f.value.parse().map_err(|_| {
                Status::invalid_argument(format!("{:?} is not a 12-digit account id", f.value))
            })?;
            scope.check(&acct)?;
        }
        q.filters.push((a, f.value.clone()));
    }
    q.accounts = scope.accounts.clone();
    Ok(q)
}

fn to_pb(e: StoredEvent) -> pb::StoredEvent {
    pb::StoredEvent {
        seq: e.seq,
        account: e.account.to_string(),
        time_ms: e.time.millis(),
        event: e.bytes,
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Status> {
    crate::status::blocking("query", f).await
}

fn scope_of<T>(auth: &Authorizer, req: &Request<T>) -> Result<ReadScope, Status> {
    let certs: Option<Vec<Vec<u8>>> = req
        .peer_certs()
        .map(|c| c.iter().map(|d| d.as_ref().to_vec()).collect());
    auth.read_scope(certs.as_deref())
}

#[tonic::async_trait]
impl QueryApi for QueryService {
    async fn lookup(
        &self,
        request: Request<pb::LookupRequest>,
    ) -> Result<Response<pb::LookupResponse>, Status> {
        let scope = scope_of(&self.auth, &request)?;
        let r = request.into_inner();
        let mut q = build_query(&scope, &r.filters, r.start_ms, r.end_ms)?;
        q.event_id = (!r.event_id.is_empty()).then_some(r.event_id);
        q.limit = r.max_results as usize;
        q.page_token = (!r.next_token.is_empty()).then_some(r.next_token);
        let store = self.store.clone();
        let page = blocking(move || store.query(&q)).await?;
        tracing::debug!(reader = %scope.name, events = page.events.len(), "lookup");
        Ok(Response::new(pb::LookupResponse {
            events: page.events.into_iter().map(to_pb).collect(),
            next_token: page.next_token.unwrap_or_default(),
            indexed_from_seq: page.indexed_from,
        }))
    }

    async fn get_event(
        &self,
        request: Request<pb::GetEventRequest>,
    ) -> Result<Response<pb::GetEventResponse>, Status> {
        let scope = scope_of(&self.auth, &request)?;
        let r = request.into_inner();
        let account: AccountId = r.account.parse().map_err(|_| {
            Status::invalid_argument(format!("{:?} is not a 12-digit account id", r.account))
        })?;
        scope.check(&account)?;
        let store = self.store.clone();
        let id = r.event_id.clone();
        match blocking(move || store.get(&account, &id)).await? {
            Some(e) => Ok(Response::new(pb::GetEventResponse {
                event: Some(to_pb(e)),
            })),
            None => Err(Status::not_found(format!(
                "no event {} in account {account}",
                r.event_id
            ))),
        }
    }

    async fn stats(
        &self,
        request: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        let scope = scope_of(&self.auth, &request)?;
        let r = request.into_inner();
        let q = build_query(&scope, &r.filters, r.start_ms, r.end_ms)?;
        if r.group_by.is_empty() {
            return Err(Status::invalid_argument("give at least one group_by field"));
        }
        let by = r
            .group_by
            .iter()
            .map(|g| group(*g))
            .collect::<Result<Vec<_>, _>>()?;
        let max = match r.max_groups as usize {
            0 => 100,
            n => n.min(MAX_GROUPS),
        };
        let store = self.store.clone();
        let limit = match usize::try_from(r.max_scan_events).unwrap_or(usize::MAX) {
            0 => self.max_stats_events,
            n => n.min(self.max_stats_events),
        };
        // Counters answer whole hours without opening a record; the rest is a bounded scan.
        let counts = blocking(move || store.count_at_most(&q, &by, max, limit)).await?;
        if counts.limit_hit {
            tracing::info!(reader = %scope.name, limit, "stats scan stopped at its limit");
        }
        let scan = counts.scan.unwrap_or_default();
        Ok(Response::new(pb::StatsResponse {
            groups: counts
                .groups
                .into_iter()
                .map(|(key, count)| pb::StatsGroup { key, count })
                .collect(),
            total: counts.total,
            limit_hit: counts.limit_hit,
            exact: counts.exact.is_some(),
            exact_start_ms: counts.exact.and_then(|e| e.start),
            exact_end_ms: counts.exact.and_then(|e| e.end),
            scan_reason: scan.reason,
            scanned_events: scan.events,
            scan_limit: scan.limit,
        }))
    }

    type FollowStream = ReceiverStream<Result<pb::StoredEvent, Status>>;

    async fn follow(
        &self,
        request: Request<pb::FollowRequest>,
    ) -> Result<Response<Self::FollowStream>, Status> {
        let scope = scope_of(&self.auth, &request)?;
        let r = request.into_inner();
        let q = build_query(&scope, &r.filters, None, None)?;
        // Subscribed before the response goes out: an event stored after the caller sees the
        // response is delivered.
        let mut live = self.live.subscribe();
        // Everything up to `head` is durable now; later events arrive live.
        let store = self.store.clone();
        let head = blocking(move || store.tree_head().map(|(n, _)| n)).await?;
        let replay_from = match r.after_seq {
            Some(after) if head.saturating_sub(after) > MAX_REPLAY => {
                return Err(Status::data_loss(format!(
                    "{} events were stored after seq {after}, more than a follower is replayed ({MAX_REPLAY}); look them up with a time range and follow again",
                    head - after
                )));
            }
            Some(after) => Some(after),
            None => None,
        };
        let (tx, rx) = mpsc::channel(256);
        let mut stopping = self.stopping.clone();
        // A reader whose certificate is revoked while it follows is cut off at the reload.
        let revocation = self.auth.revocation().clone();
        let mut reloaded = revocation.subscribe();
        let store = self.store.clone();
        tracing::info!(reader = %scope.name, after = ?replay_from, head, "follow started");
        tokio::spawn(async move {
            let marker = pb::StoredEvent {
                seq: head,
                ..pb::StoredEvent::default()
            };
            if tx.send(Ok(marker)).await.is_err() {
                return;
            }
            // Resuming: the stored events after the caller's position, then live ones past
            // `head` (those up to it were just replayed).
            let skip_to = match replay_from {
                Some(after) => {
                    if let Err(s) = replay(&store, &q, after, head, &tx).await {
                        let _ = tx.send(Err(s)).await;
                        return;
                    }
                    head
                }
                None => 0,
            };
            loop {
                let next = tokio::select! {
                    e = live.recv() => Some(e),
                    _ = stopping.wait_for(|s| *s) => break,
                    _ = tx.closed() => break,
                    Ok(()) = reloaded.changed() => None,
                };
                let Some(next) = next else {
                    // The revocation list was reloaded.
                    if revocation.is_revoked(&scope.peer) {
                        let status = crate::auth::refused(
                            Some(&scope.peer),
                            "follow",
                            Authorizer::revoked_status(&scope.peer),
                        );
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                    continue;
                };
                match next {
                    Ok(e) => {
                        if e.seq <= skip_to || !q.matches(&e.event, &e.account, e.time) {
                            continue;
                        }
                        let msg = pb::StoredEvent {
                            seq: e.seq,
                            account: e.account.to_string(),
                            time_ms: e.time.millis(),
                            event: e.event.bytes().to_vec(),
                        };
                        if tx.send(Ok(msg)).await.is_err() {
                            break;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        let _ = tx
                            .send(Err(Status::data_loss(format!(
                                "this follower fell {n} events behind and was cut off; look them up with a time range and follow again"
                            ))))
                            .await;
                        break;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
