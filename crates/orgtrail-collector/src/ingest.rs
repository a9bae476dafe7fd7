//! The ingest service: batches in, one acknowledgement per batch out, after it is durable.

use std::sync::{Arc, Mutex};

use orgtrail_core::{AccountId, CloudTrailEvent, EventError};
use orgtrail_proto::v1::ingest_server::Ingest;
use orgtrail_proto::v1::{BatchAck, EventBatch, RejectReason, Rejection};
use orgtrail_store::{Appended, Ledger, Prepared, Preparer};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::Authorizer;
use crate::config::Limits;

/// The gRPC ingest service.
#[derive(Debug, Clone)]
pub struct IngestService {
    pub(crate) ledger: Arc<Ledger>,
    pub(crate) auth: Arc<Authorizer>,
    pub(crate) limits: Limits,
    pub(crate) preparers: Arc<Mutex<Vec<Preparer>>>,
    /// Where batches are validated and prepared.
    pub(crate) cpu: crate::pool::CpuPool,
    /// Batches in flight across all streams (`limits.max_in_flight_total`).
    pub(crate) in_flight: Arc<Semaphore>,
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

/// Validates and prepares a batch (CPU work, on a blocking thread).
fn prepare_batch(
    svc: &IngestService,
    account: AccountId,
    batch: EventBatch,
) -> (Vec<Prepared>, Vec<CloudTrailEvent>, Vec<Rejection>) {
    let mut preparer = svc
        .preparers
        .lock()
        .ok()
        .and_then(|mut p| p.pop())
        .unwrap_or_else(|| svc.ledger.preparer());
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
        match preparer.prepare(&event, account) {
            Ok(p) => {
                prepared.push(p);
                if keep {
                    kept.push(event);
                }
            }
            Err(e) => rejections.push(Rejection::invalid(
                i as u32,
                &EventError::NotJson {
                    detail: format!("cannot be stored: {e}"),
                },
            )),
        }
    }
    if let Ok(mut p) = svc.preparers.lock() {
        p.push(preparer);
    }
    (prepared, kept, rejections)
}

async fn handle_batch(
    svc: IngestService,
    account: AccountId,
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
        .ok_or_else(|| Status::internal("batch preparation failed"))?;
    let outcome = if prepared.is_empty() {
        orgtrail_store::AppendOutcome::default()
    } else {
        svc.ledger.append(prepared).await.map_err(|e| {
            tracing::error!(error = %e, "storing a batch failed");
            Status::unavailable(format!("the collector could not store the batch: {e}"))
        })?
    };
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
        let account = self.auth.ingest_account(certs.as_deref())?;
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(self.limits.max_in_flight * 2);
        let svc = self.clone();
        let mut stopping = self.stopping.clone();
        tokio::spawn(async move {
            let permits = Arc::new(Semaphore::new(svc.limits.max_in_flight));
            loop {
                let next = tokio::select! {
                    m = inbound.message() => m,
                    _ = stopping.wait_for(|s| *s) => break,
                };
                match next {
                    Ok(Some(batch)) => {
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
                        tokio::spawn(async move {
                            let ack = handle_batch(svc, account, batch).await;
                            drop(global);
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
