//! The integrity service: the ledger's signed checkpoints, inclusion and consistency proofs,
//! and its stored leaf hashes for a client-side public verification, served live on the
//! collector's port to auditor and admin certificates.
//!
//! Nothing it answers has to be trusted: checkpoints are Ed25519 signed notes checked against
//! `signing.pub`, proofs are recomputed by the client, and `PublicVerify` only streams what is
//! stored; the client rebuilds the tree and judges. Every sled read runs in `spawn_blocking`.
//!
//! What a request sees is bounded by the tree head at its start: a checkpoint is written in the
//! same group commit as the leaves it covers, but the in-memory tree (from which proofs are
//! made) is published after the group is durable, so checkpoints are only ever taken up to the
//! published head.

use std::sync::Arc;
use std::time::{Duration, Instant};

use orgtrail_core::AccountId;
use orgtrail_crypto::certs::Role;
use orgtrail_crypto::hash::sha256;
use orgtrail_proto::limits::{LEAVES_PER_MESSAGE, NEARBY_CHECKPOINTS};
use orgtrail_proto::v1 as pb;
use orgtrail_proto::v1::integrity_server::Integrity as IntegrityApi;
use orgtrail_proto::v1::public_verify_message::Item;
use orgtrail_store::{EventStore, StoreError, leaf_data};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::auth::{Authorizer, ReadScope};

/// The least time between two checkpoints signed on demand, for inclusion proofs of events
/// newer than the newest checkpoint. Bounds what auditors' requests can add to the ledger.
const ON_DEMAND_INTERVAL: Duration = Duration::from_secs(1);

/// Checkpoints read per page while streaming the log.
const CHECKPOINT_PAGE: usize = 256;

/// The gRPC integrity service.
#[derive(Debug, Clone)]
pub struct IntegrityService {
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) auth: Arc<Authorizer>,
    pub(crate) stopping: tokio::sync::watch::Receiver<bool>,
    /// Serializes checkpoints signed on demand, with when the last one was made.
    pub(crate) on_demand: Arc<tokio::sync::Mutex<Option<Instant>>>,
}

impl IntegrityService {
    pub(crate) fn new(
        store: Arc<dyn EventStore>,
        auth: Arc<Authorizer>,
        stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        IntegrityService {
            store,
            auth,
            stopping,
            on_demand: Arc::new(tokio::sync::Mutex::new(None)),
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Status> {
    crate::status::blocking("integrity request", f).await
}

fn scope_of<T>(auth: &Authorizer, req: &Request<T>) -> Result<ReadScope, Status> {
    let certs: Option<Vec<Vec<u8>>> = req
        .peer_certs()
        .map(|c| c.iter().map(|d| d.as_ref().to_vec()).collect());
    auth.reader_scope(certs.as_deref(), "integrity", "read checkpoints and proofs")
}

fn signed((tree_size, note): (u64, String)) -> pb::SignedCheckpoint {
    pb::SignedCheckpoint { tree_size, note }
}

/// A stored checkpoint at exactly `size` (up to the published head), or the NOT_FOUND that
/// names the sizes stored nearby.
fn checkpoint_at(
    store: &dyn EventStore,
    size: u64,
) -> Result<Result<(u64, String), Status>, StoreError> {
    let (head, _) = store.tree_head()?;
    if size > 0
        && size <= head
        && let Some(cp) = store.checkpoints_between(size, size, 1, false)?.pop()
    {
        return Ok(Ok(cp));
    }
    let mut below: Vec<u64> = store
        .checkpoints_between(
            0,
            size.saturating_sub(1).min(head),
            NEARBY_CHECKPOINTS,
            true,
        )?
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    below.reverse();
    let above: Vec<u64> = store
        .checkpoints_between(size.saturating_add(1), head, NEARBY_CHECKPOINTS, false)?
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    let nearby: Vec<String> = below
        .iter()
        .chain(above.iter())
        .map(ToString::to_string)
        .collect();
    let msg = if nearby.is_empty() {
        format!(
            "no checkpoint is stored at size {size}: none is stored yet (the log holds {head} events)"
        )
    } else {
        format!(
            "no checkpoint is stored at size {size}; stored nearby: {} (the log holds {head} events)",
            nearby.join(", ")
        )
    };
    Ok(Err(Status::not_found(msg)))
}

/// The newest stored checkpoint up to the published head.
fn newest(store: &dyn EventStore) -> Result<Option<(u64, String)>, StoreError> {
    let (head, _) = store.tree_head()?;
    Ok(store.checkpoints_between(0, head, 1, true)?.pop())
}

fn no_checkpoint_yet() -> Status {
    Status::not_found(
        "no checkpoint is stored yet: the collector signs one after 100,000 events or 60 s with new events, and at shutdown (an admin can ask for one now)",
    )
}

fn hash_list(v: Vec<[u8; 32]>) -> Vec<Vec<u8>> {
    v.into_iter().map(|h| h.to_vec()).collect()
}

impl IntegrityService {
    /// The newest checkpoint covering `seq`; when the newest is older, one is signed now (at
    /// most one every [`ON_DEMAND_INTERVAL`], one at a time).
    async fn covering(&self, seq: u64) -> Result<(u64, String), Status> {
        let covers = |c: &Option<(u64, String)>| c.as_ref().is_some_and(|(s, _)| *s >= seq);
        let l = self.store.clone();
        let found = blocking(move || newest(l.as_ref())).await?;
        if covers(&found) {
            return found.ok_or_else(no_checkpoint_yet);
        }
        let mut last = self.on_demand.lock().await;
        // Another request may have had one signed while this one waited.
        let l = self.store.clone();
        let found = blocking(move || newest(l.as_ref())).await?;
        if covers(&found) {
            return found.ok_or_else(no_checkpoint_yet);
        }
        if let Some(t) = *last {
            let wait = ON_DEMAND_INTERVAL.saturating_sub(t.elapsed());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        let l = self.store.clone();
        blocking(move || l.checkpoint_now()).await?;
        *last = Some(Instant::now());
        drop(last);
        let l = self.store.clone();
        let found = blocking(move || newest(l.as_ref())).await?;
        match found {
            Some(c) if c.0 >= seq => Ok(c),
            _ => Err(Status::unavailable(format!(
                "no checkpoint covers entry {seq} yet; retry shortly"
            ))),
        }
    }
}

#[tonic::async_trait]
impl IntegrityApi for IntegrityService {
    async fn latest_checkpoint(
        &self,
        request: Request<pb::LatestCheckpointRequest>,
    ) -> Result<Response<pb::SignedCheckpoint>, Status> {
        let scope = scope_of(&self.auth, &request)?;
        if request.get_ref().sign_new {
            if scope.role != Role::Admin {
                let status = Status::permission_denied(format!(
                    "certificate {} has role {}: only admin certificates may have a checkpoint signed now",
                    scope.name, scope.role
                ));
                return Err(crate::auth::refused(
                    Some(&scope.peer),
                    "checkpoint",
                    status,
                ));
            }
            let _serial = self.on_demand.lock().await;
            let l = self.store.clone();
            blocking(move || l.checkpoint_now()).await?;
            tracing::info!(reader = %scope.name, "checkpoint signed on request");
        }
        let l = self.store.clone();
        match blocking(move || newest(l.as_ref())).await? {
            Some(cp) => Ok(Response::new(signed(cp))),
            None => Err(no_checkpoint_yet()),
        }
    }

    async fn get_checkpoint(
        &self,
        request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::SignedCheckpoint>, Status> {
        let _scope = scope_of(&self.auth, &request)?;
        let size = request.into_inner().tree_size;
        let l = self.store.clone();
        let cp = blocking(move || checkpoint_at(l.as_ref(), size)).await??;
        Ok(Response::new(signed(cp)))
    }

    async fn inclusion_proof(
        &self,
        request: Request<pb::InclusionProofRequest>,
    ) -> Result<Response<pb::InclusionProofResponse>, Status> {
        let scope = scope_of(&self.auth, &request)?;
        let r = request.into_inner();
        let account: AccountId = r.account.parse().map_err(|_| {
            Status::invalid_argument(format!("{:?} is not a 12-digit account id", r.account))
        })?;
        scope.check(&account)?;
        if r.event_id.is_empty() {
            return Err(Status::invalid_argument("give the eventID to prove"));
        }
        let l = self.store.clone();
        let id = r.event_id.clone();
        let Some(event) = blocking(move || l.get(&account, &id)).await? else {
            return Err(Status::not_found(format!(
                "no event {} in account {account}",
                r.event_id
            )));
        };
        let seq = event.seq;
        let (size, note) = if r.tree_size > 0 {
            if r.tree_size < seq {
                return Err(Status::invalid_argument(format!(
                    "the checkpoint at size {} does not cover event {} (entry {seq} of the log)",
                    r.tree_size, r.event_id
                )));
            }
            let l = self.store.clone();
            let size = r.tree_size;
            blocking(move || checkpoint_at(l.as_ref(), size)).await??
        } else {
            self.covering(seq).await?
        };
        let l = self.store.clone();
        let path = blocking(move || l.inclusion_proof(seq, size)).await?;
        let data = leaf_data(seq, account.as_str(), &r.event_id, &sha256(&event.bytes));
        tracing::debug!(reader = %scope.name, seq, size, "inclusion proof");
        Ok(Response::new(pb::InclusionProofResponse {
            account: account.to_string(),
            event_id: r.event_id,
            leaf_index: seq - 1,
            tree_size: size,
            audit_path: hash_list(path),
            checkpoint: note,
            event: event.bytes,
            leaf_data: data,
        }))
    }

    async fn consistency_proof(
        &self,
        request: Request<pb::ConsistencyProofRequest>,
    ) -> Result<Response<pb::ConsistencyProofResponse>, Status> {
        let _scope = scope_of(&self.auth, &request)?;
        let r = request.into_inner();
        if r.old_size == 0 {
            return Err(Status::invalid_argument(
                "give the size of the older checkpoint (old_size)",
            ));
        }
        if r.new_size != 0 && r.new_size < r.old_size {
            return Err(Status::invalid_argument(format!(
                "the older size {} is larger than the newer {}; give the older first",
                r.old_size, r.new_size
            )));
        }
        let l = self.store.clone();
        let (old, new) = blocking(move || {
            let old = match checkpoint_at(l.as_ref(), r.old_size)? {
                Ok(c) => c,
                Err(s) => return Ok(Err(s)),
            };
            let new = if r.new_size == 0 {
                match newest(l.as_ref())? {
                    Some(c) => c,
                    None => return Ok(Err(no_checkpoint_yet())),
                }
            } else {
                match checkpoint_at(l.as_ref(), r.new_size)? {
                    Ok(c) => c,
                    Err(s) => return Ok(Err(s)),
                }
            };
            Ok(Ok((old, new)))
        })
        .await??;
        let (a, b) = (old.0, new.0);
        let l = self.store.clone();
        let proof = blocking(move || l.consistency_proof(a, b)).await?;
        Ok(Response::new(pb::ConsistencyProofResponse {
            old: Some(signed(old)),
            new: Some(signed(new)),
            proof: hash_list(proof),
        }))
    }

    type PublicVerifyStream = ReceiverStream<Result<pb::PublicVerifyMessage, Status>>;

    async fn public_verify(
        &self,
        request: Request<pb::PublicVerifyRequest>,
    ) -> Result<Response<Self::PublicVerifyStream>, Status> {
        let scope = scope_of(&self.auth, &request)?;
        let l = self.store.clone();
        let head = blocking(move || l.tree_head().map(|(n, _)| n)).await?;
        let origin = self.store.origin().to_owned();
        // A few messages in flight: the reads keep pace with the client, never ahead of it.
        let (tx, rx) = mpsc::channel(4);
        let store = self.store.clone();
        let stopping = self.stopping.clone();
        let revocation = self.auth.revocation().clone();
        tracing::info!(reader = %scope.name, events = head, "public verification stream started");
        tokio::spawn(async move {
            let msg = |item| Ok(pb::PublicVerifyMessage { item: Some(item) });
            if tx
                .send(msg(Item::Head(pb::LogHead {
                    origin,
                    tree_size: head,
                })))
                .await
                .is_err()
            {
                return;
            }
            let mut sent = 0u64;
            // Sends leaves sent+1..=to in chunks; false when the stream ended.
            let send_leaves = async |sent: &mut u64, to: u64| -> bool {
                while *sent < to {
                    if *stopping.borrow() {
                        let _ = tx
                            .send(Err(Status::unavailable(
                                "the collector is shutting down; verify again once it is back",
                            )))
                            .await;
                        return false;
                    }
                    let first = *sent + 1;
                    let n = (to - *sent).min(LEAVES_PER_MESSAGE as u64);
                    let l = store.clone();
                    let leaves = match blocking(move || l.leaves(first, n)).await {
                        Ok(v) => v,
                        Err(s) => {
                            let _ = tx.send(Err(s)).await;
                            return false;
                        }
                    };
                    let bytes: Vec<u8> = leaves.iter().flatten().copied().collect();
                    if tx.send(msg(Item::LeafHashes(bytes))).await.is_err() {
                        return false;
                    }
                    *sent += n;
                }
                true
            };
            let mut after = 0u64;
            loop {
                if revocation.is_revoked(&scope.peer) {
                    let status = crate::auth::refused(
                        Some(&scope.peer),
                        "integrity",
                        Authorizer::revoked_status(&scope.peer),
                    );
                    let _ = tx.send(Err(status)).await;
                    return;
                }
                let l = store.clone();
                let from = after + 1;
                let page = match blocking(move || {
                    l.checkpoints_between(from, head, CHECKPOINT_PAGE, false)
                })
                .await
                {
                    Ok(p) => p,
                    Err(s) => {
                        let _ = tx.send(Err(s)).await;
                        return;
                    }
                };
                let full = page.len() == CHECKPOINT_PAGE;
                for (size, note) in page {
                    if !send_leaves(&mut sent, size).await {
                        return;
                    }
                    let cp = Item::Checkpoint(pb::SignedCheckpoint {
                        tree_size: size,
                        note,
                    });
                    if tx.send(msg(cp)).await.is_err() {
                        return;
                    }
                    after = size;
                }
                if !full {
                    break;
                }
            }
            if send_leaves(&mut sent, head).await {
                tracing::info!(reader = %scope.name, events = head, "public verification stream sent");
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orgtrail_core::CloudTrailEvent;
    use orgtrail_crypto::signing::SigningKey;
    use orgtrail_store::{MemoryConfig, MemoryStore};

    fn store_with(n: u32) -> MemoryStore {
        let (key, _) = SigningKey::generate().unwrap_or_else(|e| panic!("{e}"));
        let store = MemoryStore::with_config(MemoryConfig {
            signer: Some(Arc::new(key)),
            checkpoint_records: 10,
        });
        let account: AccountId = "111122223333".parse().unwrap_or_else(|e| panic!("{e:?}"));
        let events: Vec<(CloudTrailEvent, AccountId)> = (0..n)
            .map(|i| {
                let json = format!(
                    r#"{{"eventVersion":"1.08","eventTime":"2026-11-26T10:00:{:02}Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","eventID":"e-{i}","recipientAccountId":"111122223333"}}"#,
                    i % 60
                );
                (
                    CloudTrailEvent::parse(json).unwrap_or_else(|e| panic!("{e}")),
                    account,
                )
            })
            .collect();
        for chunk in events.chunks(10) {
            store.append_events(chunk).unwrap_or_else(|e| panic!("{e}"));
        }
        store
    }

    /// The service's checkpoint lookups work on any `EventStore`: here the in-memory model,
    /// with checkpoints at 10, 20 and 30 of 35 events.
    #[test]
    fn checkpoint_lookups_on_the_reference_model() {
        let store = store_with(35);
        let at = |size| checkpoint_at(&store, size).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(at(20).map(|c| c.0).ok(), Some(20));
        let missing = at(25).err().map(|s| (s.code(), s.message().to_owned()));
        assert_eq!(
            missing,
            Some((
                tonic::Code::NotFound,
                "no checkpoint is stored at size 25; stored nearby: 10, 20, 30 (the log holds 35 events)"
                    .to_owned()
            ))
        );
        assert_eq!(
            newest(&store)
                .unwrap_or_else(|e| panic!("{e}"))
                .map(|c| c.0),
            Some(30)
        );
        let empty = MemoryStore::new();
        assert_eq!(newest(&empty).unwrap_or_else(|e| panic!("{e}")), None);
        let none = checkpoint_at(&empty, 1)
            .unwrap_or_else(|e| panic!("{e}"))
            .err()
            .map(|s| s.message().to_owned());
        assert_eq!(
            none.as_deref(),
            Some("no checkpoint is stored at size 1: none is stored yet (the log holds 0 events)")
        );
    }
}
