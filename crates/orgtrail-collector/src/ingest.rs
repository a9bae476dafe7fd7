//! The ingest service: batches in, one acknowledgement per batch out, after it is durable.

use std::sync::{Arc, Mutex};

use orgtrail_core::{AccountId, CloudTrailEvent};
use orgtrail_crypto::certs::PeerIdentity;
use orgtrail_proto::v1::ingest_server::Ingest;
use orgtrail_proto::v1::{BatchAck, EventBatch, RejectReason, Rejection};
use orgtrail_store::{Appended, EventPreparer, EventStore, PreparedEvent, StoreError};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::Authorizer;
use crate::config::Limits;
use crate::ops::{BatchCounts, Refusal};
use crate::status::store_status;

/// The gRPC ingest service.
#[derive(Debug, Clone)]
pub struct IngestService {
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) auth: Arc<Authorizer>,
    pub(crate) limits: Limits,
    pub(crate) preparers: Arc<Mutex<Vec<Box<dyn EventPreparer>>>>,
    /// Where batches are validated and prepared.
    pub(crate) cpu: crate::pool::CpuPool,
    /// Batches in flight across all streams (`limits.max_in_flight_total`).
    pub(crate) in_flight: Arc<Semaphore>,
    /// Events just made durable, for live followers of the query service.
    pub(crate) live: tokio::sync::broadcast::Sender<Arc<crate::query::LiveEvent>>,
    /// Becomes true when the collector shuts down: streams stop taking batches, finish the
    /// ones in flight, and end.
    pub(crate) stopping: tokio::sync::watch::Receiver<bool>,
    /// Counters for the ops listener.
    pub(crate) metrics: Arc<crate::ops::Metrics>,
    /// Each woken after each group commit that stored new events (the rule evaluator and the
    /// Insights task wait on theirs).
    pub(crate) stored: Arc<[Arc<tokio::sync::Notify>]>,
    /// With rules on: where the events just stored are kept for the rule evaluator.
    pub(crate) recent: Option<Arc<crate::alerts::recent::Recent>>,
    /// With Insights on: where the calls of the events just stored are kept for the
    /// Insights feeder.
    pub(crate) insights: Option<Arc<crate::insights::recent::Recent>>,
}

fn peer_certs<T>(req: &Request<T>) -> Option<Vec<Vec<u8>>> {
    req.peer_certs()
        .map(|c| c.iter().map(|d| d.as_ref().to_vec()).collect())
}

fn reject(index: usize, reason: RejectReason, message: String) -> Rejection {
    Rejection {
        index: index as u32,
        reason: reason as i32,
        message,
    }
}

/// A validated, prepared batch: what to store, what is kept of the events for after the commit
/// (and, with Insights on, their calls), and the events rejected for a property of their own.
struct PreparedBatch {
    prepared: Vec<PreparedEvent>,
    kept: Kept,
    calls: Option<Vec<crate::insights::recent::Entry>>,
    rejections: Vec<Rejection>,
}

/// What is kept of a batch's prepared events (in order) for after its group commit.
enum Kept {
    /// Nothing: no one follows live and no rules are on.
    Nothing,
    /// The parsed events, for live followers (and their bytes for the rule evaluator).
    Events(Vec<CloudTrailEvent>),
    /// What the rule evaluator needs: the bytes, or that the rules in force rule the event
    /// out (screened here, by the fields the validation parsed). The parsed fields are dropped
    /// on the worker thread that made them.
    Bytes(Vec<crate::alerts::recent::Entry>),
}

impl Kept {
    fn len(&self) -> usize {
        match self {
            Kept::Nothing => 0,
            Kept::Events(e) => e.len(),
            Kept::Bytes(b) => b.len(),
        }
    }
}

/// Validates and prepares a batch (CPU work, on a blocking thread). Only a property of an
/// event itself (not JSON, too large, another account's) rejects it; a failure of the server
/// while preparing (compression, keys, a missing dictionary) fails the whole batch with a
/// retryable error, so the agent sends it again and nothing is dead-lettered for it.
fn prepare_batch(
    svc: &IngestService,
    account: AccountId,
    batch: EventBatch,
) -> Result<PreparedBatch, StoreError> {
    let mut preparer = svc
        .preparers
        .lock()
        .ok()
        .and_then(|mut p| p.pop())
        .unwrap_or_else(|| svc.store.preparer());
    let r = prepare_with(svc, preparer.as_mut(), account, batch);
    if let Ok(mut p) = svc.preparers.lock() {
        p.push(preparer);
    }
    r
}

fn prepare_with(
    svc: &IngestService,
    preparer: &mut dyn EventPreparer,
    account: AccountId,
    batch: EventBatch,
) -> Result<PreparedBatch, StoreError> {
    let mut valid = Vec::with_capacity(batch.events.len());
    // The parsed events are kept only while someone follows live; their bytes for the rules.
    let mut kept = if svc.live.receiver_count() > 0 {
        Kept::Events(Vec::new())
    } else if svc.recent.is_some() {
        Kept::Bytes(Vec::with_capacity(batch.events.len()))
    } else {
        Kept::Nothing
    };
    // The rules in force, to screen the events by: one set for the whole batch.
    let screen = match &kept {
        Kept::Bytes(_) => svc.recent.as_ref().and_then(|r| r.rules()),
        _ => None,
    };
    let mut calls = svc
        .insights
        .as_ref()
        .map(|_| Vec::with_capacity(batch.events.len()));
    let mut rejections = Vec::new();
    for (i, bytes) in batch.events.into_iter().enumerate() {
        let event = match CloudTrailEvent::parse_with_limit(bytes, svc.limits.max_event_bytes) {
            Ok(e) => e,
            Err(e) => {
                rejections.push(Rejection::invalid(i as u32, &e));
                continue;
            }
        };
        if let Some(r) = &event.fields().recipient_account_id {
            match r.parse::<AccountId>() {
                Ok(a) if a == account => {}
                Ok(a) => {
                    rejections.push(reject(
                        i,
                        RejectReason::WrongAccount,
                        format!("recipientAccountId {a} is not this agent's account {account}"),
                    ));
                    continue;
                }
                Err(_) => {
                    rejections.push(reject(
                        i,
                        RejectReason::WrongAccount,
                        "recipientAccountId is not a 12-digit account id".into(),
                    ));
                    continue;
                }
            }
        }
        if let Some(c) = &mut calls {
            c.push(crate::insights::recent::entry(account, event.fields()));
        }
        valid.push((event, account));
    }
    // Prepared together: the ledger compresses the batch's events by runs (one record block
    // each) instead of one by one.
    let prepared = preparer.prepare_batch(&valid)?;
    for (event, _) in valid {
        match &mut kept {
            Kept::Nothing => {}
            Kept::Events(e) => e.push(event),
            Kept::Bytes(b) => b.push(crate::alerts::recent::entry(event, screen.as_ref())),
        }
    }
    Ok(PreparedBatch {
        prepared,
        kept,
        calls,
        rejections,
    })
}

/// One batch from receipt to acknowledgement, in a span of its own (`batch`: account, batch
/// id, event count; never the events): `batch received`, `batch prepared`, `batch stored`
/// (committed to the ledger) and `batch acknowledged` (or `batch answered with an error`), at
/// debug.
#[tracing::instrument(
    name = "batch",
    skip_all,
    fields(account = %account, batch_id = batch.batch_id, events = batch.events.len())
)]
async fn answer_batch(
    svc: IngestService,
    account: AccountId,
    peer: &PeerIdentity,
    batch: EventBatch,
    tx: &mpsc::Sender<Result<BatchAck, Status>>,
    global: tokio::sync::OwnedSemaphorePermit,
) {
    tracing::debug!("batch received");
    let ack = handle_batch(svc, account, Some(peer), batch).await;
    drop(global);
    match &ack {
        Ok(a) => tracing::debug!(
            stored = a.stored,
            duplicates = a.duplicates,
            conflicts = a.conflicts,
            rejected = a.rejections.len(),
            "batch acknowledged"
        ),
        Err(s) => tracing::debug!(code = ?s.code(), "batch answered with an error"),
    }
    let _ = tx.send(ack).await;
}

/// Stores events the collector made itself (Insight events) as a batch of `account`: the same
/// validation, dedup, live followers, rule evaluator and metrics as an agent's batch. Returns
/// once they are durable; an event refused for a property of its own is an error, as is a
/// store failure (retried by the caller).
pub(crate) async fn append_own(
    svc: &IngestService,
    account: AccountId,
    events: Vec<Vec<u8>>,
) -> Result<BatchAck, Status> {
    let batch = EventBatch {
        batch_id: 0,
        events: events.into_iter().map(Into::into).collect(),
    };
    let ack = handle_batch(svc.clone(), account, None, batch).await?;
    if let Some(r) = ack.rejections.first() {
        return Err(Status::internal(format!(
            "an event the collector made was rejected: {}",
            r.message
        )));
    }
    Ok(ack)
}

/// One batch, of an agent (`peer`) or of the collector itself (`None`).
async fn handle_batch(
    svc: IngestService,
    account: AccountId,
    peer: Option<&PeerIdentity>,
    batch: EventBatch,
) -> Result<BatchAck, Status> {
    let batch_id = batch.batch_id;
    if batch.events.len() > svc.limits.max_batch_events {
        svc.metrics.refused(Refusal::TooManyEvents);
        return Err(Status::invalid_argument(format!(
            "batch {batch_id} has {} events, more than the limit of {}",
            batch.events.len(),
            svc.limits.max_batch_events
        )));
    }
    let n = batch.events.len();
    let s2 = svc.clone();
    // Until it is appended: a write of the store's own (alerts recorded, deliveries noted)
    // waits to share this batch's group commit instead of flushing on its own.
    let preparing = svc.store.preparing_append();
    let PreparedBatch {
        prepared,
        kept,
        calls,
        rejections,
    } = svc
        .cpu
        .run(move || prepare_batch(&s2, account, batch))
        .await
        .ok_or_else(|| Status::unavailable("the collector's worker pool stopped; retry"))?
        .map_err(|e| {
            tracing::error!(%account, batch_id, error = %e, "preparing a batch failed (server fault; the agent retries)");
            svc.metrics.refused(Refusal::StoreUnavailable);
            store_status(&e)
        })?;
    tracing::debug!(
        prepared = prepared.len(),
        rejected = rejections.len(),
        "batch prepared"
    );
    let outcome = if prepared.is_empty() {
        drop(preparing);
        orgtrail_store::AppendOutcome::default()
    } else {
        let mut appended = svc.store.append_prepared(prepared);
        // Polled once, the append is queued for the writer (unless its queue is full): no
        // longer being prepared.
        let first = std::future::poll_fn(|cx| {
            std::task::Poll::Ready(std::future::Future::poll(appended.as_mut(), cx))
        })
        .await;
        drop(preparing);
        match first {
            std::task::Poll::Ready(r) => r,
            std::task::Poll::Pending => appended.await,
        }
        .map_err(|e| {
            if matches!(e, StoreError::DiskFull { .. }) {
                tracing::debug!(%account, batch_id, error = %e, "batch refused: disk full");
                svc.metrics.refused(Refusal::DiskFull);
            } else {
                tracing::error!(%account, batch_id, error = %e, "storing a batch failed (the agent retries)");
                svc.metrics.refused(Refusal::StoreUnavailable);
            }
            store_status(&e)
        })?
    };
    tracing::debug!(appended = outcome.results.len(), "batch stored");
    let wrong_account = rejections
        .iter()
        .filter(|r| r.reason == RejectReason::WrongAccount as i32)
        .count();
    if wrong_account > 0 {
        // A security event: an agent sent events of an account that is not its own. Logged
        // without the events.
        tracing::warn!(
            certificate = %peer.map_or("(the collector)", |p| p.name.as_str()),
            serial = %peer.map_or("", |p| p.serial.as_str()),
            %account,
            batch_id,
            events = wrong_account,
            "refused events whose recipientAccountId is not the certificate's account"
        );
    }
    let mut ack = BatchAck {
        batch_id,
        stored: 0,
        duplicates: 0,
        conflicts: 0,
        rejections,
        conflict_indexes: Vec::new(),
    };
    for r in &outcome.results {
        match r {
            Appended::Stored(_) => ack.stored += 1,
            Appended::Duplicate(_) => ack.duplicates += 1,
            Appended::Conflict(_) => ack.conflicts += 1,
        }
    }
    ack.conflict_indexes = conflict_indexes(n, &ack.rejections, &outcome.results);
    let reasons: Vec<i32> = ack.rejections.iter().map(|r| r.reason).collect();
    svc.metrics.batch(
        &account,
        BatchCounts {
            received: n as u64,
            stored: u64::from(ack.stored),
            duplicate: u64::from(ack.duplicates),
            conflicting: u64::from(ack.conflicts),
        },
        &reasons,
    );
    let stored = |r: &Appended| match r {
        Appended::Stored(seq) => Some(*seq),
        _ => None,
    };
    if let (Some(calls), Some(recent)) = (calls, &svc.insights)
        && calls.len() == outcome.results.len()
    {
        let fresh = calls
            .into_iter()
            .zip(&outcome.results)
            .filter_map(|(c, r)| stored(r).map(|seq| (seq, c)))
            .collect();
        recent.add(fresh);
    }
    if kept.len() == outcome.results.len() {
        let mut fresh = Vec::new();
        match kept {
            Kept::Nothing => {}
            Kept::Bytes(bytes) => {
                for (b, r) in bytes.into_iter().zip(&outcome.results) {
                    if let Some(seq) = stored(r) {
                        fresh.push((seq, b));
                    }
                }
            }
            Kept::Events(events) => {
                for (event, r) in events.into_iter().zip(&outcome.results) {
                    let Some(seq) = stored(r) else { continue };
                    if svc.recent.is_some() {
                        let bytes = event.bytes().to_vec();
                        fresh.push((seq, crate::alerts::recent::Entry::Value(bytes)));
                    }
                    let time = event.fields().event_time;
                    let _ = svc.live.send(Arc::new(crate::query::LiveEvent {
                        seq,
                        account,
                        time,
                        event,
                    }));
                }
            }
        }
        if let Some(recent) = &svc.recent {
            recent.add(fresh);
        }
    }
    // After the events were kept: the evaluator and the Insights feeder it wakes find them.
    if ack.stored > 0 {
        for n in svc.stored.iter() {
            n.notify_one();
        }
    }

    Ok(ack)
}

/// The batch positions of the conflicting events: `results` answer, in order, the events of a
/// batch of `n` that were not rejected.
fn conflict_indexes(n: usize, rejections: &[Rejection], results: &[Appended]) -> Vec<u32> {
    let rejected: std::collections::HashSet<u32> = rejections.iter().map(|r| r.index).collect();
    (0..n as u32)
        .filter(|i| !rejected.contains(i))
        .zip(results)
        .filter_map(|(i, r)| matches!(r, Appended::Conflict(_)).then_some(i))
        .collect()
}

/// The collector's limits, as metadata an agent reads to size its batches.
fn limits_metadata(limits: &Limits) -> tonic::metadata::MetadataMap {
    let mut md = tonic::metadata::MetadataMap::new();
    md.insert(
        orgtrail_proto::limits::MAX_MESSAGE_BYTES,
        tonic::metadata::MetadataValue::from(limits.max_message_bytes as u64),
    );
    md.insert(
        orgtrail_proto::limits::MAX_BATCH_EVENTS,
        tonic::metadata::MetadataValue::from(limits.max_batch_events as u64),
    );
    md
}

/// What a failure to read the next batch of a stream means for the client. tonic's decoder
/// answers a message over `max_message_bytes` with OUT_OF_RANGE (from its length prefix,
/// before reading it) or RESOURCE_EXHAUSTED (while decompressing: a compression bomb stops at
/// the limit), and a malformed message with INTERNAL; anything else is the connection failing,
/// and there is nobody to answer. Returns the status to send, or None.
fn inbound_error(status: &Status, limits: &Limits) -> Option<Status> {
    let limit = limits.max_message_bytes;
    let detail = status.message();
    let mut answer = match status.code() {
        tonic::Code::OutOfRange => Status::resource_exhausted(format!(
            "batch message over the collector's limit of {limit} bytes (limits.max_message_bytes): {detail}; send smaller batches"
        )),
        tonic::Code::ResourceExhausted if detail.contains("decompressing") => {
            Status::resource_exhausted(format!(
                "batch message decompresses to more than the collector's limit of {limit} bytes (limits.max_message_bytes); send smaller batches"
            ))
        }
        tonic::Code::Internal
            if [
                "failed to decode Protobuf message",
                "Error decompressing",
                "protocol error: received message with invalid compression flag",
                "Unexpected EOF decoding stream",
            ]
            .iter()
            .any(|p| detail.starts_with(p)) =>
        {
            Status::invalid_argument(format!("malformed batch message: {detail}"))
        }
        _ => return None,
    };
    *answer.metadata_mut() = limits_metadata(limits);
    Some(answer)
}

#[tonic::async_trait]
impl Ingest for IngestService {
    type PushStream = ReceiverStream<Result<BatchAck, Status>>;

    async fn push(
        &self,
        request: Request<Streaming<EventBatch>>,
    ) -> Result<Response<Self::PushStream>, Status> {
        let certs = peer_certs(&request);
        let addr = request.remote_addr();
        let peer = self.auth.ingest_peer(certs.as_deref()).inspect_err(|s| {
            self.metrics
                .refused(if s.code() == tonic::Code::Unauthenticated {
                    Refusal::Unauthenticated
                } else {
                    Refusal::PermissionDenied
                });
        })?;
        let account = peer.account;
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(self.limits.max_in_flight * 2);
        let svc = self.clone();
        let mut stopping = self.stopping.clone();
        // Revocation is checked for every batch, and at every reload of the list, so a
        // certificate revoked while its stream is open stops storing at once.
        let revocation = self.auth.revocation().clone();
        let mut reloaded = revocation.subscribe();
        tokio::spawn(async move {
            let permits = Arc::new(Semaphore::new(svc.limits.max_in_flight));
            let revoked = || {
                crate::auth::refused(
                    Some(&peer.id),
                    "ingest",
                    Authorizer::revoked_status(&peer.id),
                )
            };
            // Why the stream ended, told to the agent after the batches already taken.
            let mut refusal = None;
            loop {
                let next = tokio::select! {
                    m = inbound.message() => Some(m),
                    _ = stopping.wait_for(|s| *s) => break,
                    Ok(()) = reloaded.changed() => None,
                };
                let Some(next) = next else {
                    // The revocation list was reloaded.
                    if revocation.is_revoked(&peer.id) {
                        svc.metrics.refused(Refusal::Revoked);
                        refusal = Some(revoked());
                        break;
                    }
                    continue;
                };
                match next {
                    Ok(Some(batch)) => {
                        if revocation.is_revoked(&peer.id) {
                            svc.metrics.refused(Refusal::Revoked);
                            refusal = Some(revoked());
                            break;
                        }
                        let Ok(permit) = permits.clone().acquire_owned().await else {
                            break;
                        };
                        // Then one of all streams' permits: a busy collector slows every
                        // stream down instead of queueing without bound.
                        let Ok(global) = svc.in_flight.clone().acquire_owned().await else {
                            break;
                        };
                        let tx = tx.clone();
                        let svc = svc.clone();
                        let id = peer.id.clone();
                        tokio::spawn(async move {
                            answer_batch(svc, account, &id, batch, &tx, global).await;
                            drop(permit);
                        });
                    }
                    Ok(None) => break,
                    Err(status) => {
                        match inbound_error(&status, &svc.limits) {
                            Some(answer) => {
                                svc.metrics.refused(
                                    if answer.code() == tonic::Code::ResourceExhausted {
                                        Refusal::MessageTooLarge
                                    } else {
                                        Refusal::MalformedMessage
                                    },
                                );
                                tracing::warn!(%account, certificate = %peer.id.name, serial = %peer.id.serial, peer = ?addr, code = ?answer.code(), reason = %answer.message(), "ingest stream refused");
                                refusal = Some(answer);
                            }
                            None => {
                                tracing::info!(%account, peer = ?addr, %status, "ingest stream broke off");
                            }
                        }
                        break;
                    }
                }
            }
            // Answer every batch already taken before the stream ends, then say why it ended.
            let _ = permits.acquire_many(svc.limits.max_in_flight as u32).await;
            if let Some(r) = refusal {
                let _ = tx.send(Err(r)).await;
            }
        });
        let mut response = Response::new(ReceiverStream::new(rx));
        *response.metadata_mut() = limits_metadata(&self.limits);
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_are_named_by_their_position_in_the_batch() {
        // Six events: 1 and 4 rejected; the rest answered in order.
        let rejections = vec![
            reject(1, RejectReason::NotJson, String::new()),
            reject(4, RejectReason::NotJson, String::new()),
        ];
        let results = [
            Appended::Stored(10),
            Appended::Conflict(3),
            Appended::Duplicate(4),
            Appended::Conflict(5),
        ];
        assert_eq!(conflict_indexes(6, &rejections, &results), vec![2, 5]);
        assert!(conflict_indexes(0, &[], &[]).is_empty());
    }

    #[test]
    fn decode_failures_become_precise_statuses() {
        let limits = Limits::default();
        let big = inbound_error(
            &Status::out_of_range(
                "Error, decoded message length too large: found 4294967295 bytes, the limit is: 16777216 bytes",
            ),
            &limits,
        )
        .unwrap_or_else(|| Status::ok(""));
        assert_eq!(big.code(), tonic::Code::ResourceExhausted);
        assert!(
            big.message()
                .contains("limit of 16777216 bytes (limits.max_message_bytes)")
        );
        assert_eq!(
            big.metadata()
                .get(orgtrail_proto::limits::MAX_MESSAGE_BYTES)
                .and_then(|v| v.to_str().ok()),
            Some("16777216")
        );
        let bomb = inbound_error(
            &Status::resource_exhausted(
                "Error decompressing: size limit, of 16777216 bytes, exceeded while decompressing message",
            ),
            &limits,
        )
        .unwrap_or_else(|| Status::ok(""));
        assert_eq!(bomb.code(), tonic::Code::ResourceExhausted);
        assert!(bomb.message().contains("decompresses to more than"));
        let garbage = inbound_error(
            &Status::internal("failed to decode Protobuf message: invalid wire type"),
            &limits,
        )
        .unwrap_or_else(|| Status::ok(""));
        assert_eq!(garbage.code(), tonic::Code::InvalidArgument);
        // A broken connection is nobody to answer.
        assert!(
            inbound_error(
                &Status::internal("h2 protocol error: stream reset"),
                &limits
            )
            .is_none()
        );
        assert!(inbound_error(&Status::unknown("connection reset"), &limits).is_none());
    }
}
