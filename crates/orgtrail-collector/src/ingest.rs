//! The ingest service: batches in, one acknowledgement per batch out, after it is durable.

use std::sync::{Arc, Mutex};

use orgtrail_core::{AccountId, CloudTrailEvent};
use orgtrail_crypto::certs::PeerIdentity;
use orgtrail_proto::v1::ingest_server::Ingest;
use orgtrail_proto::v1::{BatchAck, EventBatch, RejectReason, Rejection};
use orgtrail_store::{Appended, Ledger, Prepared, Preparer, StoreError};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::Authorizer;
use crate::config::Limits;
use crate::status::store_status;

/// The gRPC ingest service.
#[derive(Debug, Clone)]
pub struct IngestService {
    pub(crate) ledger: Arc<Ledger>,
    pub(crate) auth: Arc<Authorizer>,
    pub(crate) limits: Limits,
    pub(crate) preparers: Arc<Mutex<Vec<Preparer>>>,
    /// Where batches are validated and prepared.
    pub(crate) cpu: crate::pool::CpuPool,
    /// Events just made durable, for live followers of the query service.
    pub(crate) live: tokio::sync::broadcast::Sender<Arc<crate::query::LiveEvent>>,
    /// Becomes true when the collector shuts down: streams stop taking batches, finish the
    /// ones in flight, and end.
    pub(crate) stopping: tokio::sync::watch::Receiver<bool>,
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

/// A validated, prepared batch: what to store, the parsed events for live followers, and the
/// events rejected for a property of their own.
type PreparedBatch = (Vec<Prepared>, Vec<CloudTrailEvent>, Vec<Rejection>);

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
        .unwrap_or_else(|| svc.ledger.preparer());
    let r = prepare_with(svc, &mut preparer, account, batch);
    if let Ok(mut p) = svc.preparers.lock() {
        p.push(preparer);
    }
    r
}

fn prepare_with(
    svc: &IngestService,
    preparer: &mut Preparer,
    account: AccountId,
    batch: EventBatch,
) -> Result<PreparedBatch, StoreError> {
    let mut prepared = Vec::with_capacity(batch.events.len());
    // The parsed events are kept only while someone follows live.
    let keep = svc.live.receiver_count() > 0;
    let mut kept = Vec::new();
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
        prepared.push(preparer.prepare(&event, account)?);
        if keep {
            kept.push(event);
        }
    }
    Ok((prepared, kept, rejections))
}

async fn handle_batch(
    svc: IngestService,
    account: AccountId,
    peer: &PeerIdentity,
    batch: EventBatch,
) -> Result<BatchAck, Status> {
    let batch_id = batch.batch_id;
    if batch.events.len() > svc.limits.max_batch_events {
        return Err(Status::invalid_argument(format!(
            "batch {batch_id} has {} events, more than the limit of {}",
            batch.events.len(),
            svc.limits.max_batch_events
        )));
    }
    let n = batch.events.len();
    let s2 = svc.clone();
    let (prepared, kept, rejections) = svc
        .cpu
        .run(move || prepare_batch(&s2, account, batch))
        .await
        .ok_or_else(|| Status::unavailable("the collector's worker pool stopped; retry"))?
        .map_err(|e| {
            tracing::error!(%account, batch_id, error = %e, "preparing a batch failed (server fault; the agent retries)");
            store_status(&e)
        })?;
    let outcome = if prepared.is_empty() {
        orgtrail_store::AppendOutcome::default()
    } else {
        svc.ledger.append(prepared).await.map_err(|e| {
            if matches!(e, StoreError::DiskFull { .. }) {
                tracing::debug!(%account, batch_id, error = %e, "batch refused: disk full");
            } else {
                tracing::error!(%account, batch_id, error = %e, "storing a batch failed (the agent retries)");
            }
            store_status(&e)
        })?
    };
    let wrong_account = rejections
        .iter()
        .filter(|r| r.reason == RejectReason::WrongAccount as i32)
        .count();
    if wrong_account > 0 {
        // A security event: an agent sent events of an account that is not its own. Logged
        // without the events.
        tracing::warn!(
            certificate = %peer.name,
            serial = %peer.serial,
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
    };
    for r in &outcome.results {
        match r {
            Appended::Stored(_) => ack.stored += 1,
            Appended::Duplicate(_) => ack.duplicates += 1,
            Appended::Conflict(_) => ack.conflicts += 1,
        }
    }
    if kept.len() == outcome.results.len() {
        for (event, r) in kept.into_iter().zip(&outcome.results) {
            if let Appended::Stored(seq) = r {
                let time = event.fields().event_time;
                let _ = svc.live.send(Arc::new(crate::query::LiveEvent {
                    seq: *seq,
                    account,
                    time,
                    event,
                }));
            }
        }
    }
    tracing::debug!(%account, batch_id, events = n, stored = ack.stored, duplicates = ack.duplicates, rejected = ack.rejections.len(), "batch stored");
    Ok(ack)
}

#[tonic::async_trait]
impl Ingest for IngestService {
    type PushStream = ReceiverStream<Result<BatchAck, Status>>;

    async fn push(
        &self,
        request: Request<Streaming<EventBatch>>,
    ) -> Result<Response<Self::PushStream>, Status> {
        let certs = peer_certs(&request);
        let peer = self.auth.ingest_peer(certs.as_deref())?;
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
            let cut = |tx: mpsc::Sender<Result<BatchAck, Status>>| {
                let status = crate::auth::refused(
                    Some(&peer.id),
                    "ingest",
                    Authorizer::revoked_status(&peer.id),
                );
                async move {
                    let _ = tx.send(Err(status)).await;
                }
            };
            loop {
                let next = tokio::select! {
                    m = inbound.message() => Some(m),
                    _ = stopping.wait_for(|s| *s) => break,
                    Ok(()) = reloaded.changed() => None,
                };
                let Some(next) = next else {
                    // The revocation list was reloaded.
                    if revocation.is_revoked(&peer.id) {
                        cut(tx.clone()).await;
                        break;
                    }
                    continue;
                };
                match next {
                    Ok(Some(batch)) => {
                        if revocation.is_revoked(&peer.id) {
                            cut(tx.clone()).await;
                            break;
                        }
                        let Ok(permit) = permits.clone().acquire_owned().await else {
                            break;
                        };
                        let tx = tx.clone();
                        let svc = svc.clone();
                        let id = peer.id.clone();
                        tokio::spawn(async move {
                            let ack = handle_batch(svc, account, &id, batch).await;
                            let _ = tx.send(ack).await;
                            drop(permit);
                        });
                    }
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(%account, %status, "ingest stream ended");
                        break;
                    }
                }
            }
            // Answer every batch already taken before the stream ends.
            let _ = permits.acquire_many(svc.limits.max_in_flight as u32).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
