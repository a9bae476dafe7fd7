//! The orgtrail agent: reads events, makes each durable in a local spool before anything
//! else, ships batches to the collector over gRPC with mutual TLS with several in flight, and
//! forgets an event only when the collector's acknowledgement covers it.

pub mod config;
pub mod spool;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use orgtrail_core::{DecodeLimits, Decoder, InputFormat};
use orgtrail_proto::v1::ingest_client::IngestClient;
use orgtrail_proto::v1::{EventBatch, RejectReason};
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::CompressionEncoding;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

pub use config::{AgentConfig, ConfigError, EXAMPLE, SourceConfig};
pub use spool::{DeadLetter, Spool, SpoolError};

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the collector refused this agent: {0}")]
    Refused(String),
    #[error("{0}")]
    Other(String),
}

fn read_file(p: &std::path::Path) -> Result<Vec<u8>, AgentError> {
    std::fs::read(p).map_err(|source| AgentError::Read {
        path: p.display().to_string(),
        source,
    })
}

/// One thing the source read: an event's bytes, or why a line is not an event.
type SourceItem = Result<Vec<u8>, String>;

/// Reads the source (blocking) and hands what it reads to the spooler.
fn read_source(
    cfg: &AgentConfig,
    out: std::sync::mpsc::SyncSender<SourceItem>,
) -> Result<(), AgentError> {
    let SourceConfig::Jsonl { path } = &cfg.source;
    let reader: Box<dyn std::io::Read + Send> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(
            std::fs::File::open(path).map_err(|source| AgentError::Read {
                path: path.display().to_string(),
                source,
            })?,
        )
    };
    let decoder = Decoder::new(reader, InputFormat::JsonLines, DecodeLimits::default())
        .map_err(|e| AgentError::Other(format!("source {}: {e}", path.display())))?;
    for item in decoder {
        let item =
            item.map_err(|e| AgentError::Other(format!("source {}: {e}", path.display())))?;
        let msg = match item.result {
            Ok(ev) => Ok(ev.into_bytes()),
            Err(reason) => {
                tracing::warn!(position = %item.position, %reason, "invalid event moved to dead letters");
                Err(format!("{}: {reason}", item.position))
            }
        };
        if out.send(msg).is_err() {
            break;
        }
    }
    Ok(())
}

/// Makes what the source read durable in the spool: a chunk (one wire batch) at a time, or
/// whatever arrived within the linger time. Pauses while the spool is full.
fn run_spooler(
    cfg: &AgentConfig,
    spool: &Spool,
    input: std::sync::mpsc::Receiver<SourceItem>,
    wake: &Notify,
    space: &Notify,
) -> Result<(), AgentError> {
    use std::sync::mpsc::RecvTimeoutError;
    let linger = Duration::from_millis(cfg.batch.linger_ms.max(1));
    let (max_events, max_bytes) = (cfg.batch.max_events, cfg.batch.max_bytes);
    let mut good: Vec<Vec<u8>> = Vec::new();
    let mut dead: Vec<(String, Vec<u8>)> = Vec::new();
    let mut bytes = 0usize;
    let flush = |good: &mut Vec<Vec<u8>>,
                 dead: &mut Vec<(String, Vec<u8>)>,
                 bytes: &mut usize|
     -> Result<(), AgentError> {
        while spool.pending_bytes() > cfg.spool_max_bytes {
            tracing::warn!(
                pending = spool.pending_bytes(),
                "spool is full; the source waits"
            );
            match tokio::runtime::Handle::try_current() {
                Ok(h) => h.block_on(async {
                    let _ =
                        tokio::time::timeout(Duration::from_millis(500), space.notified()).await;
                }),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
        spool.append(good, dead, max_events, max_bytes)?;
        good.clear();
        dead.clear();
        *bytes = 0;
        wake.notify_one();
        Ok(())
    };
    loop {
        match input.recv_timeout(linger) {
            Ok(Ok(e)) => {
                bytes += e.len();
                good.push(e);
            }
            Ok(Err(reason)) => dead.push((reason, Vec::new())),
            Err(RecvTimeoutError::Timeout) => {
                flush(&mut good, &mut dead, &mut bytes)?;
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
        // A full chunk is made durable at once: one fdatasync per wire batch, and the agent's
        // memory stays a few batches however fast the source is.
        if good.len() >= max_events || bytes >= max_bytes {
            flush(&mut good, &mut dead, &mut bytes)?;
        }
    }
    flush(&mut good, &mut dead, &mut bytes)?;
    Ok(())
}

fn jitter(ms: u64) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    Duration::from_millis(ms / 2 + u64::from(nanos) % (ms / 2 + 1))
}

async fn connect(cfg: &AgentConfig) -> Result<Channel, AgentError> {
    let identity = Identity::from_pem(read_file(&cfg.tls.cert)?, read_file(&cfg.tls.key)?);
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read_file(&cfg.tls.ca)?))
        .identity(identity);
    if let Some(n) = &cfg.server_name {
        tls = tls.domain_name(n.clone());
    }
    let endpoint = Channel::from_shared(cfg.collector.clone())
        .map_err(|e| AgentError::Other(format!("collector URL {}: {e}", cfg.collector)))?
        .tls_config(tls)
        .map_err(|e| AgentError::Other(format!("TLS: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    endpoint
        .connect()
        .await
        .map_err(|e| AgentError::Other(format!("cannot connect to {}: {e}", cfg.collector)))
}

fn reason_name(r: i32) -> &'static str {
    match RejectReason::try_from(r).unwrap_or(RejectReason::Unspecified) {
        RejectReason::WrongAccount => "wrong account",
        RejectReason::AccountNotAllowed => "account not allowed",
        RejectReason::TooLarge => "too large",
        RejectReason::NotJson => "not JSON",
        RejectReason::InvalidUtf8 => "invalid UTF-8",
        RejectReason::NotAnObject => "not an object",
        RejectReason::MissingField => "missing field",
        RejectReason::InvalidField => "invalid field",
        RejectReason::TooDeep => "too deep",
        RejectReason::Unspecified => "rejected",
    }
}

/// One connection's worth of shipping. Returns Ok(true) when drained and done, Ok(false) to
/// reconnect.
async fn ship_once(
    cfg: &AgentConfig,
    spool: &Spool,
    wake: &Notify,
    space: &Notify,
    source_done: &AtomicBool,
    exit_when_drained: bool,
) -> Result<bool, AgentError> {
    let channel = connect(cfg).await?;
    let mut client = IngestClient::new(channel)
        .send_compressed(CompressionEncoding::Zstd)
        .accept_compressed(CompressionEncoding::Zstd)
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(16 << 20);
    let (tx, rx) = mpsc::channel::<EventBatch>(cfg.batch.max_in_flight);
    let response = match client.push(ReceiverStream::new(rx)).await {
        Ok(r) => r,
        Err(s) => return Err(status_error(s)),
    };
    let mut acks = response.into_inner();
    let mut in_flight: BTreeMap<u64, u64> = BTreeMap::new();
    let mut next_from = 0u64;
    loop {
        // Fill the window: one spool chunk is one batch.
        while in_flight.len() < cfg.batch.max_in_flight {
            // Spool reads and acknowledgements are short file and sled operations; they run in
            // place on this worker rather than on the blocking pool, whose many short-lived
            // threads each kept allocator caches of batch-sized buffers.
            let chunk = tokio::task::block_in_place(|| spool.chunk_from(next_from))?;
            let Some(chunk) = chunk else { break };
            let n = chunk.events.len();
            let stored_len = chunk.stored_len;
            next_from = chunk.first_seq + n as u64;
            if tx
                .send(EventBatch {
                    batch_id: chunk.first_seq,
                    events: chunk.events,
                })
                .await
                .is_err()
            {
                return Ok(false);
            }
            in_flight.insert(chunk.first_seq, stored_len);
        }
        if in_flight.is_empty() {
            if exit_when_drained && source_done.load(Ordering::Acquire) {
                let s = spool.clone();
                let empty = tokio::task::spawn_blocking(move || s.is_empty())
                    .await
                    .map_err(|e| AgentError::Other(e.to_string()))??;
                if empty {
                    return Ok(true);
                }
            }
            let _ = tokio::time::timeout(
                Duration::from_millis(cfg.batch.linger_ms.max(10)),
                wake.notified(),
            )
            .await;
            continue;
        }
        tokio::select! {
            ack = acks.message() => match ack {
                Ok(Some(ack)) => {
                    let Some(stored_len) = in_flight.remove(&ack.batch_id) else {
                        continue;
                    };
                    let rejected: Vec<(usize, String)> = ack
                        .rejections
                        .iter()
                        .map(|r| (r.index as usize, format!("{}: {}", reason_name(r.reason), r.message)))
                        .collect();
                    for (i, why) in &rejected {
                        tracing::warn!(seq = ack.batch_id + *i as u64, reason = %why, "the collector rejected an event; moved to dead letters");
                    }
                    let first = ack.batch_id;
                    tokio::task::block_in_place(|| spool.acknowledge((first, stored_len), &rejected))?;
                    space.notify_one();
                }
                Ok(None) => return Ok(false),
                Err(s) => return Err(status_error(s)),
            },
            _ = wake.notified() => {}
        }
    }
}

fn status_error(s: tonic::Status) -> AgentError {
    match s.code() {
        tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => {
            AgentError::Refused(s.message().to_owned())
        }
        _ => AgentError::Other(format!("{}: {}", s.code(), s.message())),
    }
}

/// Runs the agent. With `exit_when_drained`, returns once the source is exhausted and the
/// collector acknowledged everything; otherwise runs until `shutdown` completes.
pub async fn run(
    cfg: AgentConfig,
    exit_when_drained: bool,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    let spool = Spool::open(&cfg.spool_dir)?;
    let wake = Arc::new(Notify::new());
    let space = Arc::new(Notify::new());
    let source_done = Arc::new(AtomicBool::new(false));
    let (items_tx, items_rx) = std::sync::mpsc::sync_channel::<SourceItem>(cfg.batch.max_events);
    let reader = {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || read_source(&cfg, items_tx))
    };
    let source = {
        let (cfg, spool, wake, space, done) = (
            cfg.clone(),
            spool.clone(),
            wake.clone(),
            space.clone(),
            source_done.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let r = run_spooler(&cfg, &spool, items_rx, &wake, &space);
            done.store(true, Ordering::Release);
            wake.notify_one();
            r
        })
    };
    let shipper = async {
        let mut backoff = cfg.retry.initial_ms.max(1);
        loop {
            match ship_once(&cfg, &spool, &wake, &space, &source_done, exit_when_drained).await {
                Ok(true) => return Ok(()),
                Ok(false) => {
                    tracing::info!("collector stream ended; reconnecting");
                }
                Err(AgentError::Refused(m)) => return Err(AgentError::Refused(m)),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff, "shipping failed; events stay in the spool");
                }
            }
            tokio::time::sleep(jitter(backoff)).await;
            backoff = (backoff * 2).min(cfg.retry.max_ms.max(1));
        }
    };
    tokio::pin!(shipper);
    tokio::pin!(shutdown);
    let result = tokio::select! {
        r = &mut shipper => r,
        _ = &mut shutdown => Ok(()),
    };
    // Acknowledgements are written lazily; make them durable so nothing is sent twice.
    let s = spool.clone();
    let flushed = tokio::task::spawn_blocking(move || s.flush()).await;
    if let Ok(Err(e)) = flushed {
        tracing::warn!(error = %e, "could not record the last acknowledgements; those batches will be sent again (the collector drops duplicates)");
    }
    if reader.is_finished()
        && let Ok(Err(e)) = reader.await
    {
        return Err(e);
    }
    if source.is_finished()
        && let Ok(Err(e)) = source.await
    {
        return Err(e);
    }
    result
}
