//! The orgtrail agent: reads events, makes each durable in a local spool before anything
//! else, ships batches to the collector over gRPC with mutual TLS with several in flight, and
//! forgets an event only when the collector's acknowledgement covers it.

pub mod config;
pub mod metrics;
/// The trail's event selectors: they live in `orgtrail-rules`, beside the rule engine, so that
/// the agent, the collector and the CLI share one field-path and matching layer.
pub use orgtrail_rules::selectors;
pub mod sources;
pub mod spool;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use orgtrail_proto::v1::ingest_client::IngestClient;
use orgtrail_proto::v1::{EventBatch, RejectReason};
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;

pub use config::{AgentConfig, ConfigError, EXAMPLE, MetricsConfig, S3SourceConfig, SourceConfig};
pub use metrics::{DeadReason, Metrics, Summary};
use sources::Item;
pub use spool::{DeadLetter, Spool, SpoolError, SpoolHandle, SpoolOptions};

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
    /// A certificate problem that retrying cannot mend (this agent's certificate expired,
    /// revoked or from an unknown CA; the collector's not from the trusted CA).
    #[error("certificate problem, not retrying: {0}")]
    Certificate(String),
    /// A source that retrying cannot mend (an S3 bucket that refuses the credentials or does
    /// not exist): the agent stops.
    #[error("source stopped, not retrying: {0}")]
    Source(String),
    #[error("{0}")]
    Other(String),
}

impl AgentError {
    /// True for errors that retrying cannot mend: the agent stops and says why.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            AgentError::Refused(_) | AgentError::Certificate(_) | AgentError::Source(_)
        )
    }
}

/// The TLS failure in an error's source chain, if any, in precise words: permanent when it is
/// about a certificate, transient otherwise.
fn tls_failure(collector: &str, e: &(dyn std::error::Error + 'static)) -> Option<AgentError> {
    let t = orgtrail_crypto::tls::find_tls_error(e)?;
    let mut why = orgtrail_crypto::tls::describe(&t);
    if matches!(
        t,
        orgtrail_crypto::tls::rustls::Error::InvalidCertificate(_)
    ) {
        // This agent refused the collector's certificate.
        why = format!("the collector's certificate: {why}");
    }
    Some(if orgtrail_crypto::tls::is_permanent_for_client(&t) {
        AgentError::Certificate(format!("{collector}: {why}"))
    } else {
        AgentError::Other(format!("TLS with {collector}: {why}"))
    })
}

/// This agent's certificate, checked at start as the collector will check it: its key
/// matches, it chains to the CA, it is valid now and meant for client authentication.
fn check_certificate(cfg: &AgentConfig) -> Result<(), AgentError> {
    load_certificate(cfg).map(|_| ())
}

/// [`check_certificate`], keeping what it read for the TLS configuration.
fn load_certificate(cfg: &AgentConfig) -> Result<orgtrail_crypto::tls::OwnCertificate, AgentError> {
    orgtrail_crypto::tls::load_own(
        &cfg.tls.cert,
        &cfg.tls.key,
        &cfg.tls.ca,
        orgtrail_crypto::tls::Purpose::Client,
    )
    .map_err(|e| AgentError::Certificate(e.to_string()))
}

/// Makes what the sources read durable in the spool: a chunk (one wire batch) at a time, or
/// whatever arrived within the linger time, with the sources' positions in the same append.
/// Applies the trail's selectors first. Pauses while the spool is full (its size limit, or
/// its disk below the reserve), which pauses the sources; logs a full disk once per episode,
/// shows it in metrics and readiness, and goes on by itself when space returns.
#[allow(clippy::too_many_arguments)]
fn run_spooler(
    cfg: &AgentConfig,
    selectors: Option<&selectors::Selectors>,
    spool: &SpoolHandle,
    input: std::sync::mpsc::Receiver<Item>,
    metrics: &Arc<Metrics>,
    wake: &Notify,
    space: &Notify,
    stop: &AtomicBool,
) -> Result<(), AgentError> {
    use std::sync::mpsc::RecvTimeoutError;
    let linger = Duration::from_millis(cfg.batch.linger_ms.max(1));
    let (max_events, max_bytes) = (cfg.batch.max_events, cfg.batch.max_bytes);
    let mut p = Pending::default();
    // Waits up to `ms` for an acknowledgement that may have freed space.
    let wait_for_space = |ms: u64| match tokio::runtime::Handle::try_current() {
        Ok(h) => h.block_on(async {
            let _ = tokio::time::timeout(Duration::from_millis(ms), space.notified()).await;
        }),
        Err(_) => std::thread::sleep(Duration::from_millis(ms.min(200))),
    };
    let mut full_logged = false;
    let mut flush = |p: &mut Pending| -> Result<(), AgentError> {
        if p.is_empty() {
            return Ok(());
        }
        while spool.pending_bytes() > cfg.spool_max_bytes {
            if stop.load(Ordering::Acquire) {
                return Ok(());
            }
            if !full_logged {
                tracing::warn!(
                    pending = spool.pending_bytes(),
                    limit = cfg.spool_max_bytes,
                    "spool is full; the sources wait"
                );
                full_logged = true;
            }
            wait_for_space(500);
        }
        full_logged = false;
        let mut batch = std::mem::take(&mut p.batch);
        loop {
            // Which source each event came from is recorded on the spool's thread, before the
            // shipper can read the chunks: an acknowledgement that came back before this thread
            // ran again counted its events under the earlier-run pseudo source.
            let (m, sources) = (metrics.clone(), p.sources.clone());
            let noted: spool::Noted = Box::new(move |chunks| {
                let mut at = 0usize;
                for &(first, n) in chunks {
                    let n = n as usize;
                    m.spooled_chunk(first, sources[at..at + n].to_vec());
                    at += n;
                }
            });
            let (back, result) =
                spool.append_blocking_noted(batch, max_events, max_bytes, Some(noted));
            batch = back;
            match result {
                Ok(_) => {
                    if metrics.set_spool_disk_full(None) {
                        tracing::info!(
                            free = spool::free_bytes(&cfg.spool_dir),
                            "the spool's disk has space again; the sources go on"
                        );
                    }
                    break;
                }
                Err(e) if e.is_disk_full() => {
                    if metrics.set_spool_disk_full(Some(e.to_string())) {
                        tracing::error!(error = %e, "the spool's disk is full: the sources are paused (nothing read is dropped) until space returns");
                    }
                    // A caller waiting for durability (the http source) is told now, so it
                    // can retry; the events stay here and are spooled once there is room.
                    for w in p.waiting.drain(..) {
                        let _ = w.send(Err(e.to_string()));
                    }
                    if stop.load(Ordering::Acquire) {
                        // Not spooled: the sources' positions did not move past these
                        // events, so they are read again at the next start.
                        tracing::warn!(
                            events = batch.events.len(),
                            "stopping with the spool's disk full; unspooled events will be read again at the next start"
                        );
                        p.clear();
                        return Ok(());
                    }
                    // Try again once there is room for a couple of appends beyond the
                    // reserve (so a disk at the edge does not flap between full and not), or
                    // after 10 s whatever the figures say.
                    let tried = std::time::Instant::now();
                    let room = cfg
                        .spool_min_free_bytes
                        .saturating_add(2 * max_bytes as u64);
                    loop {
                        wait_for_space(500);
                        if stop.load(Ordering::Acquire)
                            || tried.elapsed() >= Duration::from_secs(10)
                            || spool::free_bytes(&cfg.spool_dir).is_some_and(|f| f >= room)
                        {
                            break;
                        }
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    for w in p.waiting.drain(..) {
                        let _ = w.send(Err(msg.clone()));
                    }
                    return Err(e.into());
                }
            }
        }
        for w in p.waiting.drain(..) {
            let _ = w.send(Ok(()));
        }
        for s in &p.dead_sources {
            metrics.source(*s).dead_lettered.inc();
            metrics.dead_letter(DeadReason::Unreadable);
        }
        for (s, r, n) in &p.checks {
            metrics.source(*s).digest_check(*r, *n);
        }
        metrics
            .spool_pending_bytes
            .store(spool.pending_bytes(), Ordering::Relaxed);
        p.batch = batch;
        p.clear();
        wake.notify_one();
        Ok(())
    };
    loop {
        match input.recv_timeout(linger) {
            Ok(Item::Event { source, event }) => {
                if !p.event(source, event, selectors, metrics) {
                    continue;
                }
            }
            Ok(Item::LastEvent {
                source,
                event,
                key,
                value,
            }) => {
                p.event(source, event, selectors, metrics);
                p.mark(key, value);
            }
            Ok(Item::Dead {
                source,
                reason,
                bytes,
            }) => {
                p.batch.dead.push(spool::NewDead {
                    source: metrics.source(source).name.clone(),
                    reason,
                    bytes,
                });
                p.dead_sources.push(source);
            }
            Ok(Item::Mark { key, value }) => p.mark(key, value),
            // One item: never split by a flush, so its marks are one append.
            Ok(Item::Marks {
                source,
                marks,
                checks,
            }) => {
                for (key, value) in marks {
                    p.mark(key, value);
                }
                p.checks
                    .extend(checks.into_iter().map(|(r, n)| (source, r, n)));
            }
            Ok(Item::Durable(w)) => {
                p.waiting.push(w);
                flush(&mut p)?;
                continue;
            }
            Err(RecvTimeoutError::Timeout) => {
                flush(&mut p)?;
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
        // A full chunk is made durable at once: one fdatasync per wire batch, and the agent's
        // memory stays a few batches however fast the sources are.
        if p.batch.events.len() >= max_events || p.bytes >= max_bytes {
            flush(&mut p)?;
        }
    }
    flush(&mut p)?;
    Ok(())
}

/// What the spooler holds between appends.
#[derive(Default)]
struct Pending {
    batch: spool::AppendBatch,
    sources: Vec<u16>,
    bytes: usize,
    dead_sources: Vec<usize>,
    /// Digest checks (source, result, how many) recorded by the marks: counted once durable.
    checks: Vec<(usize, sources::digests::DigestResult, u64)>,
    waiting: Vec<std::sync::mpsc::SyncSender<Result<(), String>>>,
}

impl Pending {
    /// An event from source number `source`, unless the trail's selectors filter it out
    /// (counted): false then.
    fn event(
        &mut self,
        source: usize,
        event: orgtrail_core::CloudTrailEvent,
        selectors: Option<&selectors::Selectors>,
        metrics: &Metrics,
    ) -> bool {
        if let Some(sel) = selectors
            && !sel.matches(event.fields())
        {
            metrics.source(source).filtered.inc();
            return false;
        }
        self.bytes += event.bytes().len();
        self.batch.events.push(event.into_bytes());
        self.sources.push(u16::try_from(source).unwrap_or(u16::MAX));
        true
    }

    /// A source's new position (the latest for a key wins within a batch).
    fn mark(&mut self, key: Vec<u8>, value: Vec<u8>) {
        if let Some(m) = self.batch.marks.iter_mut().find(|(k, _)| *k == key) {
            m.1 = value;
        } else {
            self.batch.marks.push((key, value));
        }
    }

    fn is_empty(&self) -> bool {
        self.batch.is_empty() && self.waiting.is_empty()
    }

    fn clear(&mut self) {
        self.batch.events.clear();
        self.batch.dead.clear();
        self.batch.marks.clear();
        self.sources.clear();
        self.bytes = 0;
        self.dead_sources.clear();
        self.checks.clear();
    }
}

/// A source that stopped with an error says so at once (the agent goes on shipping what is
/// spooled and reports the error when it stops).
fn source_failed(name: &str, r: Result<(), String>) -> Result<(), AgentError> {
    r.map_err(|e| {
        tracing::error!(source = %name, error = %e, "source stopped");
        AgentError::Other(format!("source {name}: {e}"))
    })
}

/// The collector's limits on one wire batch: learned from its response headers, narrowed when
/// it refuses a batch as too large.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WireLimits {
    /// Largest encoded `EventBatch`, bytes (the collector checks it compressed and again
    /// decompressed).
    max_message_bytes: usize,
    /// Most events in one batch.
    max_batch_events: usize,
}

impl WireLimits {
    /// What is assumed before the collector said anything: its defaults.
    const ASSUMED: WireLimits = WireLimits {
        max_message_bytes: 16 << 20,
        max_batch_events: 10_000,
    };
    /// Never split below this (a collector limit smaller than this is a misconfiguration the
    /// per-event rejections make visible).
    const FLOOR_BYTES: usize = 4 << 10;

    /// Takes the limits the collector announced in `md`, if any. Returns true when they changed.
    fn learn(&mut self, md: &tonic::metadata::MetadataMap) -> bool {
        let get = |k: &str| {
            md.get(k)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|v| *v > 0)
        };
        let before = *self;
        if let Some(b) = get(orgtrail_proto::limits::MAX_MESSAGE_BYTES) {
            self.max_message_bytes = b;
        }
        if let Some(n) = get(orgtrail_proto::limits::MAX_BATCH_EVENTS) {
            self.max_batch_events = n;
        }
        *self != before
    }

    /// Bytes a batch may use, leaving room for the encoding's own framing and for compression
    /// that does not shrink (zstd and gzip add a few bytes per block to incompressible data).
    fn budget(&self) -> usize {
        self.max_message_bytes
            .saturating_sub(64 + self.max_message_bytes / 256)
            .max(1)
    }
}

/// Events to keep as dead letters: (position in a chunk, reason, its kind).
type DeadList = Vec<(usize, String, DeadReason)>;

/// Bytes event `e` adds to an encoded `EventBatch` (field tag, length, bytes).
fn encoded_event_len(e: &[u8]) -> usize {
    1 + prost::encoding::encoded_len_varint(e.len() as u64) + e.len()
}

/// An `EventBatch` without events: its `batch_id` field at most.
const BATCH_OVERHEAD: usize = 11;

/// Splits a spool chunk into wire batches that fit `limits`: (offset, count) of each, and the
/// positions of events too large to be sent at all, with the reason. The chunk stays the unit
/// of acknowledgement in the spool; only the wire sees the pieces.
fn split_chunk(events: &[bytes::Bytes], limits: WireLimits) -> (Vec<(usize, usize)>, DeadList) {
    let budget = limits.budget();
    let max_events = limits.max_batch_events.max(1);
    let mut pieces = Vec::new();
    let mut too_large = Vec::new();
    let (mut start, mut count, mut size) = (0usize, 0usize, BATCH_OVERHEAD);
    for (i, e) in events.iter().enumerate() {
        let len = encoded_event_len(e);
        if BATCH_OVERHEAD + len > budget {
            if count > 0 {
                pieces.push((start, count));
            }
            (start, count, size) = (i + 1, 0, BATCH_OVERHEAD);
            too_large.push((
                i,
                format!(
                    "too large: the event is {} bytes; with its framing it does not fit the collector's limit of {} bytes per batch message (limits.max_message_bytes)",
                    e.len(),
                    limits.max_message_bytes
                ),
                DeadReason::TooLargeToSend,
            ));
            continue;
        }
        if count > 0 && (size + len > budget || count >= max_events) {
            pieces.push((start, count));
            (start, count, size) = (i, 0, BATCH_OVERHEAD);
        }
        if count == 0 {
            start = i;
        }
        count += 1;
        size += len;
    }
    if count > 0 {
        pieces.push((start, count));
    }
    (pieces, too_large)
}

/// Reconnection delays: exponential with jitter, from `retry.initial_ms` to `retry.max_ms`,
/// back to the start once a batch is acknowledged (a short blip after a long outage is then
/// retried at once, not after the long outage's delay).
struct Backoff {
    builder: backon::ExponentialBuilder,
    current: backon::ExponentialBackoff,
}

impl Backoff {
    fn new(cfg: &config::RetryConfig) -> Self {
        use backon::BackoffBuilder;
        let builder = backon::ExponentialBuilder::new()
            .with_min_delay(Duration::from_millis(cfg.initial_ms.max(1)))
            .with_max_delay(Duration::from_millis(cfg.max_ms.max(cfg.initial_ms).max(1)))
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Backoff {
            builder,
            current: builder.build(),
        }
    }

    fn next(&mut self) -> Duration {
        self.current
            .next()
            .unwrap_or_else(|| Duration::from_millis(100))
    }

    fn reset(&mut self) {
        use backon::BackoffBuilder;
        self.current = self.builder.build();
    }
}

async fn connect(cfg: &AgentConfig) -> Result<Channel, AgentError> {
    // Checked again before every connection: a certificate that expired while the agent ran
    // stops it with the reason (with TLS 1.3 the collector's refusal may reach the agent only
    // as a closed connection). The files are read on the blocking pool, not the runtime.
    let own = cfg.clone();
    let own = tokio::task::spawn_blocking(move || load_certificate(&own))
        .await
        .map_err(|e| AgentError::Other(e.to_string()))??;
    let tls = orgtrail_crypto::tls::client_config(&own)
        .map_err(|e| AgentError::Certificate(orgtrail_crypto::tls::describe(&e)))?;
    let timeout = Duration::from_millis(cfg.connection.connect_timeout_ms);
    let endpoint =
        orgtrail_proto::channel::TlsEndpoint::new(&cfg.collector, cfg.server_name.as_deref(), tls)
            .map_err(|e| AgentError::Other(format!("collector URL: {e}")))?
            .configure(|e| {
                e.connect_timeout(timeout)
                    .http2_keep_alive_interval(Duration::from_millis(
                        cfg.connection.keepalive_interval_ms,
                    ))
                    .keep_alive_timeout(Duration::from_millis(cfg.connection.keepalive_timeout_ms))
                    .keep_alive_while_idle(true)
            });
    match tokio::time::timeout(timeout, endpoint.connect()).await {
        Ok(r) => r.map_err(|e| {
            tls_failure(&cfg.collector, &e).unwrap_or_else(|| {
                AgentError::Other(format!("cannot connect to {}: {e}", cfg.collector))
            })
        }),
        Err(_) => Err(AgentError::Other(format!(
            "cannot connect to {}: no connection within {} ms (connection.connect_timeout_ms)",
            cfg.collector, cfg.connection.connect_timeout_ms
        ))),
    }
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

/// The dead-letter reason of an event whose eventID the collector holds with other bytes.
pub const CONFLICT_REASON: &str =
    "conflict: the collector already holds this eventID with different bytes";

/// A spool chunk on the wire: sent as one or more batches, acknowledged in the spool once all
/// of them are.
struct ChunkInFlight {
    stored_len: u64,
    len: usize,
    /// Its batches not yet acknowledged.
    outstanding: usize,
    /// Positions in the chunk to keep as dead letters, with the reason.
    dead: DeadList,
    /// Events the collector already held.
    duplicates: u64,
}

/// One wire batch awaiting its acknowledgement.
struct BatchInFlight {
    chunk: u64,
    offset: usize,
    sent: tokio::time::Instant,
}

/// How one connection ended.
enum Ended {
    /// Everything is acknowledged and the sources are done (`--exit-when-drained`).
    Drained,
    /// Connect again (after the backoff).
    Reconnect,
}

/// One connection's worth of shipping, in a span (`ship`: account, collector). Each batch
/// logs `batch sent` and `batch acknowledged` at debug with its id and counts, never events.
#[allow(clippy::too_many_arguments)]
#[tracing::instrument(
    name = "ship",
    skip_all,
    fields(account = cfg.account.map(|a| a.to_string()).unwrap_or_default(), collector = %cfg.collector)
)]
async fn ship_once(
    cfg: &AgentConfig,
    spool: &SpoolHandle,
    wake: &Notify,
    space: &Notify,
    source_done: &AtomicBool,
    exit_when_drained: bool,
    metrics: &Metrics,
    limits: &mut WireLimits,
    backoff: &mut Backoff,
) -> Result<Ended, AgentError> {
    let ack_timeout = Duration::from_millis(cfg.connection.ack_timeout_ms);
    let channel = connect(cfg).await?;
    let mut client = IngestClient::new(channel);
    match cfg.batch.compression {
        config::Compression::Zstd => client = client.send_compressed(CompressionEncoding::Zstd),
        config::Compression::Gzip => client = client.send_compressed(CompressionEncoding::Gzip),
        config::Compression::None => {}
    }
    let mut client = client
        .accept_compressed(CompressionEncoding::Zstd)
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(16 << 20);
    let (tx, rx) = mpsc::channel::<EventBatch>(cfg.batch.max_in_flight);
    // The response headers come before any acknowledgement; a collector that accepted the
    // connection but never answers is given up on like a batch that is never acknowledged.
    let opened = tokio::time::timeout(
        Duration::from_millis(cfg.connection.connect_timeout_ms),
        client.push(ReceiverStream::new(rx)),
    )
    .await;
    let response = match opened {
        Ok(Ok(r)) => {
            metrics.set_reachable(Ok(()));
            r
        }
        Ok(Err(s)) => return Err(status_error(&cfg.collector, s)),
        Err(_) => {
            return Err(AgentError::Other(format!(
                "the collector {} accepted the connection but did not open the stream within {} ms (connection.connect_timeout_ms)",
                cfg.collector, cfg.connection.connect_timeout_ms
            )));
        }
    };
    if limits.learn(response.metadata()) {
        tracing::info!(
            max_message_bytes = limits.max_message_bytes,
            max_batch_events = limits.max_batch_events,
            "the collector's batch limits"
        );
    }
    let mut acks = response.into_inner();
    let mut chunks: BTreeMap<u64, ChunkInFlight> = BTreeMap::new();
    let mut batches: BTreeMap<u64, BatchInFlight> = BTreeMap::new();
    // Batches of the current chunk waiting for room in the window.
    let mut queued: std::collections::VecDeque<(u64, usize, EventBatch)> = Default::default();
    let mut next_from = 0u64;
    // The acknowledgement deadline runs from the later of a batch's sending and the last
    // acknowledgement: a collector that is slow but acknowledging never trips it (behind
    // a deep window, the last batch may wait far longer than one batch takes), a silent
    // one does.
    let mut last_ack = tokio::time::Instant::now();
    loop {
        // Fill the window: a spool chunk is one batch, or several when it does not fit the
        // collector's limits.
        while batches.len() < cfg.batch.max_in_flight {
            if queued.is_empty() {
                // Spool reads and acknowledgements run on the spool's own thread.
                let chunk = spool.chunk_from(next_from).await?;
                let Some(chunk) = chunk else { break };
                let first = chunk.first_seq;
                let len = chunk.events.len();
                next_from = first + len as u64;
                let (pieces, too_large) = split_chunk(&chunk.events, *limits);
                for (i, why, _) in &too_large {
                    tracing::warn!(seq = first + *i as u64, reason = %why, "an event cannot be sent; moved to dead letters");
                }
                chunks.insert(
                    first,
                    ChunkInFlight {
                        stored_len: chunk.stored_len,
                        len,
                        outstanding: pieces.len(),
                        dead: too_large,
                        duplicates: 0,
                    },
                );
                if pieces.is_empty() {
                    finish_chunk(spool, metrics, space, &mut chunks, first).await?;
                    continue;
                }
                for (offset, count) in pieces {
                    queued.push_back((
                        first,
                        offset,
                        EventBatch {
                            batch_id: first + offset as u64,
                            events: chunk.events[offset..offset + count].to_vec(),
                        },
                    ));
                }
            }
            let Some((chunk, offset, batch)) = queued.pop_front() else {
                break;
            };
            let id = batch.batch_id;
            tracing::debug!(batch_id = id, events = batch.events.len(), "batch sent");
            if tx.send(batch).await.is_err() {
                return Ok(Ended::Reconnect);
            }
            batches.insert(
                id,
                BatchInFlight {
                    chunk,
                    offset,
                    sent: tokio::time::Instant::now(),
                },
            );
        }
        if batches.is_empty() {
            if exit_when_drained && source_done.load(Ordering::Acquire) && spool.is_empty().await? {
                return Ok(Ended::Drained);
            }
            // Idle, but still listening: a collector that ends the stream (it stops) or a
            // connection that breaks is noticed now, not at the next batch, so the agent's
            // reachability and readiness say so and it reconnects.
            tokio::select! {
                _ = tokio::time::timeout(
                    Duration::from_millis(cfg.batch.linger_ms.max(10)),
                    wake.notified(),
                ) => {}
                ack = acks.message() => match ack {
                    // Nothing is in flight: an acknowledgement of nothing is ignored.
                    Ok(Some(_)) => {}
                    Ok(None) => return Ok(Ended::Reconnect),
                    Err(s) => return Err(status_error(&cfg.collector, s)),
                },
            }
            continue;
        }
        let oldest = batches
            .values()
            .map(|b| b.sent)
            .min()
            .unwrap_or_else(tokio::time::Instant::now)
            .max(last_ack);
        tokio::select! {
            ack = acks.message() => match ack {
                Ok(Some(ack)) => {
                    let Some(b) = batches.remove(&ack.batch_id) else {
                        continue;
                    };
                    last_ack = tokio::time::Instant::now();
                    tracing::debug!(
                        batch_id = ack.batch_id,
                        stored = ack.stored,
                        duplicates = ack.duplicates,
                        conflicts = ack.conflict_indexes.len(),
                        rejected = ack.rejections.len(),
                        "batch acknowledged"
                    );
                    metrics.acknowledged_now();
                    backoff.reset();
                    let Some(c) = chunks.get_mut(&b.chunk) else { continue };
                    c.duplicates += u64::from(ack.duplicates);
                    for r in &ack.rejections {
                        let why = format!("{}: {}", reason_name(r.reason), r.message);
                        tracing::warn!(seq = ack.batch_id + u64::from(r.index), reason = %why, "the collector rejected an event; moved to dead letters");
                        c.dead.push((b.offset + r.index as usize, why, DeadReason::rejected(r.reason)));
                    }
                    for i in &ack.conflict_indexes {
                        tracing::warn!(seq = ack.batch_id + u64::from(*i), "the collector holds this eventID with different bytes (a conflict); moved to dead letters");
                        c.dead.push((b.offset + *i as usize, CONFLICT_REASON.to_owned(), DeadReason::Conflict));
                    }
                    c.outstanding = c.outstanding.saturating_sub(1);
                    if c.outstanding == 0 {
                        finish_chunk(spool, metrics, space, &mut chunks, b.chunk).await?;
                    }
                }
                Ok(None) => return Ok(Ended::Reconnect),
                Err(s) if is_too_large(&s) => {
                    // Some batch did not fit. Learn the limit the collector names (or halve the
                    // guess), and send what is unacknowledged again, split to fit.
                    let before = *limits;
                    if !limits.learn(s.metadata()) || *limits == before {
                        limits.max_message_bytes =
                            (limits.max_message_bytes / 2).max(WireLimits::FLOOR_BYTES);
                    }
                    tracing::warn!(
                        error = %s.message(),
                        max_message_bytes = limits.max_message_bytes,
                        "the collector refused a batch as too large; sending smaller batches"
                    );
                    backoff.reset();
                    return Ok(Ended::Reconnect);
                }
                Err(s) => return Err(status_error(&cfg.collector, s)),
            },
            () = tokio::time::sleep_until(oldest + ack_timeout) => {
                let waiting = batches.iter().min_by_key(|(_, b)| b.sent).map_or(0, |(id, _)| *id);
                tracing::warn!(
                    batch = waiting,
                    in_flight = batches.len(),
                    timeout_ms = cfg.connection.ack_timeout_ms,
                    "no acknowledgement from the collector in time (connection.ack_timeout_ms); reconnecting to send the unacknowledged batches again"
                );
                return Ok(Ended::Reconnect);
            }
            _ = wake.notified() => {}
        }
    }
}

/// True for the collector's answer to a batch over its size limit: RESOURCE_EXHAUSTED with
/// the limit in its metadata (other RESOURCE_EXHAUSTED answers, such as a full disk, are
/// retried as they are).
fn is_too_large(s: &tonic::Status) -> bool {
    s.code() == tonic::Code::ResourceExhausted
        && s.metadata()
            .get(orgtrail_proto::limits::MAX_MESSAGE_BYTES)
            .is_some()
}

/// Every batch of chunk `first` is acknowledged: forget it in the spool, keeping its dead
/// letters.
async fn finish_chunk(
    spool: &SpoolHandle,
    metrics: &Metrics,
    space: &Notify,
    chunks: &mut BTreeMap<u64, ChunkInFlight>,
    first: u64,
) -> Result<(), AgentError> {
    let Some(mut c) = chunks.remove(&first) else {
        return Ok(());
    };
    c.dead.sort_by_key(|d| d.0);
    c.dead.dedup_by_key(|d| d.0);
    let dead: Vec<(usize, String)> = c.dead.iter().map(|d| (d.0, d.1.clone())).collect();
    spool.acknowledge((first, c.stored_len), &dead).await?;
    for d in &c.dead {
        metrics.dead_letter(d.2);
    }
    let conflicts = c
        .dead
        .iter()
        .filter(|d| d.2 == DeadReason::Conflict)
        .count() as u64;
    metrics.conflicts.add(conflicts);
    metrics.rejected.add(c.dead.len() as u64 - conflicts);
    metrics.duplicates.add(c.duplicates);
    let positions: Vec<usize> = c.dead.iter().map(|r| r.0).collect();
    metrics.acknowledged(first, c.len, &positions);
    metrics
        .spool_pending_bytes
        .store(spool.pending_bytes(), Ordering::Relaxed);
    space.notify_one();
    Ok(())
}

fn status_error(collector: &str, s: tonic::Status) -> AgentError {
    match s.code() {
        tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => {
            AgentError::Refused(s.message().to_owned())
        }
        // With TLS 1.3 the collector refuses a client certificate after the handshake: the
        // alert arrives with the first call, as a transport error.
        _ => tls_failure(collector, &s)
            .unwrap_or_else(|| AgentError::Other(format!("{}: {}", s.code(), s.message()))),
    }
}

/// The name [`run`] gives the ops listener (`[ops] listen`) when it reports it.
pub const OPS_LISTENER: &str = "ops";

/// Runs the agent. With `exit_when_drained`, sources read what is there (a directory is
/// scanned once, a followed file read to its end), and the agent returns once the collector
/// acknowledged everything; otherwise it runs until `shutdown` completes. `on_listen` is called
/// with the name and address of each listener it opens (http sources, [`OPS_LISTENER`]). Returns what
/// this run shipped and dead-lettered.
pub async fn run(
    cfg: AgentConfig,
    exit_when_drained: bool,
    on_listen: impl Fn(&str, std::net::SocketAddr),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<Summary, AgentError> {
    let metrics = Arc::new(Metrics::for_config(&cfg));
    run_with_metrics(cfg, metrics.clone(), exit_when_drained, on_listen, shutdown).await?;
    Ok(metrics.totals())
}

/// [`run`] counting into `metrics` (made with [`Metrics::for_config`]), which the caller can
/// read however the run ends.
pub async fn run_with_metrics(
    cfg: AgentConfig,
    metrics: Arc<Metrics>,
    exit_when_drained: bool,
    on_listen: impl Fn(&str, std::net::SocketAddr),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    let started = std::time::Instant::now();
    if exit_when_drained
        && let Some(s) = cfg
            .sources
            .iter()
            .find(|s| matches!(s, SourceConfig::Http { .. }))
    {
        return Err(AgentError::Other(format!(
            "source {} never runs dry: --exit-when-drained cannot be used with an http source",
            s.name()
        )));
    }
    let selectors = match &cfg.selectors {
        Some(s) => Some(
            selectors::Selectors::load(s, std::path::Path::new("/")).map_err(|p| {
                AgentError::Other(format!("invalid selectors:\n  - {}", p.join("\n  - ")))
            })?,
        ),
        None => None,
    };
    if let Some(s) = &selectors {
        tracing::info!(selectors = %s.summary(), "trail selectors");
    }
    check_certificate(&cfg)?;
    let spool = SpoolHandle::open(SpoolOptions {
        key_file: cfg.spool_key_file.clone(),
        min_free_bytes: cfg.spool_min_free_bytes,
        chunk_events: cfg.batch.max_events,
        chunk_bytes: cfg.batch.max_bytes,
        ..SpoolOptions::new(&cfg.spool_dir)
    })
    .await?;
    metrics.attach_spool(spool.clone());
    metrics
        .spool_pending_bytes
        .store(spool.pending_bytes(), Ordering::Relaxed);
    let wake = Arc::new(Notify::new());
    let space = Arc::new(Notify::new());
    let source_done = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (items_tx, items_rx) = std::sync::mpsc::sync_channel::<Item>(cfg.batch.max_events);
    // A source that stops for good says so here, and the agent stops with its error.
    let (fatal_tx, mut fatal_rx) =
        tokio::sync::mpsc::channel::<AgentError>(cfg.sources.len().max(1));

    let mut threads = Vec::new();
    let mut tasks = Vec::new();
    for (index, sc) in cfg.sources.iter().enumerate() {
        let ctx = sources::Ctx {
            index,
            name: sc.name(),
            out: items_tx.clone(),
            spool: spool.clone(),
            metrics: metrics.clone(),
            once: exit_when_drained,
            stop: stop.clone(),
        };
        match sc.clone() {
            SourceConfig::Jsonl {
                path,
                follow,
                poll_ms,
                ..
            } => threads.push(tokio::task::spawn_blocking(move || {
                let r = sources::jsonl::run(&ctx, &path, follow, poll_ms);
                source_failed(&ctx.name, r)
            })),
            SourceConfig::CloudtrailDir {
                path,
                poll_ms,
                digest_public_keys_file,
                digest_wait_ms,
                digest_keep_days,
                ..
            } => {
                let keys = match &digest_public_keys_file {
                    Some(f) => Some((
                        sources::digests::load_keys(f)
                            .map_err(|e| AgentError::Source(format!("source {}: {e}", ctx.name)))?,
                        sources::digests::Options {
                            wait: std::time::Duration::from_millis(digest_wait_ms),
                            keep_days: digest_keep_days,
                        },
                    )),
                    None => None,
                };
                threads.push(tokio::task::spawn_blocking(move || {
                    let r = sources::dir::run(&ctx, &path, poll_ms, keys);
                    source_failed(&ctx.name, r)
                }));
            }
            SourceConfig::S3(s3) => {
                let handle = tokio::runtime::Handle::current();
                let fatal = fatal_tx.clone();
                let keys = match &s3.digest_public_keys_file {
                    Some(f) => Some(
                        sources::digests::load_keys(f)
                            .map_err(|e| AgentError::Source(format!("source {}: {e}", ctx.name)))?,
                    ),
                    None => None,
                };
                threads.push(tokio::task::spawn_blocking(move || {
                    sources::s3::run(&ctx, &s3, handle, keys).map_err(|e| {
                        tracing::error!(source = %ctx.name, error = %e, "source stopped");
                        let msg = format!("source {}: {e}", ctx.name);
                        let _ = fatal.try_send(AgentError::Source(msg.clone()));
                        AgentError::Source(msg)
                    })
                }));
            }
            SourceConfig::Http { listen, .. } => {
                let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
                    AgentError::Other(format!(
                        "source {}: cannot listen on {listen}: {e}",
                        ctx.name
                    ))
                })?;
                let addr = listener
                    .local_addr()
                    .map_err(|e| AgentError::Other(e.to_string()))?;
                on_listen(&ctx.name, addr);
                tracing::info!(source = %ctx.name, %addr, "http source listening");
                let mut stop_rx = stop_rx.clone();
                tasks.push(tokio::spawn(async move {
                    let name = ctx.name.clone();
                    sources::http::serve(ctx, listener, async move {
                        let _ = stop_rx.wait_for(|s| *s).await;
                    })
                    .await
                    .map_err(|e| AgentError::Other(format!("source {name}: {e}")))
                }));
            }
        }
    }
    drop(items_tx);
    drop(fatal_tx);
    if cfg.metrics.is_some() {
        tracing::warn!("{}", config::METRICS_DEPRECATED);
    }
    // Lives until the agent returns.
    let _ops = match &cfg.ops {
        Some(o) => {
            let l = orgtrail_ops::start(o, Arc::new(metrics::Probe::new(metrics.clone())))
                .await
                .map_err(|e| AgentError::Other(e.to_string()))?;
            on_listen(OPS_LISTENER, l.local_addr());
            tracing::info!(addr = %l.local_addr(), "ops listener (plain HTTP): /healthz, /readyz, /metrics");
            Some(l)
        }
        None => None,
    };
    let spooler = {
        let (cfg, spool, wake, space, done, metrics, stop) = (
            cfg.clone(),
            spool.clone(),
            wake.clone(),
            space.clone(),
            source_done.clone(),
            metrics.clone(),
            stop.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let r = run_spooler(
                &cfg,
                selectors.as_ref(),
                &spool,
                items_rx,
                &metrics,
                &wake,
                &space,
                &stop,
            );
            done.store(true, Ordering::Release);
            wake.notify_one();
            r
        })
    };
    let shipper = async {
        let mut backoff = Backoff::new(&cfg.retry);
        let mut limits = WireLimits::ASSUMED;
        loop {
            match ship_once(
                &cfg,
                &spool,
                &wake,
                &space,
                &source_done,
                exit_when_drained,
                &metrics,
                &mut limits,
                &mut backoff,
            )
            .await
            {
                Ok(Ended::Drained) => return Ok(()),
                Ok(Ended::Reconnect) => {
                    metrics.set_reachable(Err(
                        "the stream to the collector ended; reconnecting".into()
                    ));
                    metrics.retries.inc();
                    tracing::info!("collector stream ended; reconnecting");
                }
                Err(e) if e.is_permanent() => {
                    metrics.set_reachable(Err(e.to_string()));
                    return Err(e);
                }
                Err(e) => {
                    metrics.set_reachable(Err(e.to_string()));
                    metrics.retries.inc();
                    let wait = backoff.next();
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "shipping failed; events stay in the spool");
                    tokio::time::sleep(wait).await;
                    continue;
                }
            }
            tokio::time::sleep(backoff.next()).await;
        }
    };
    tokio::pin!(shipper);
    tokio::pin!(shutdown);
    let result = tokio::select! {
        r = &mut shipper => r,
        _ = &mut shutdown => Ok(()),
        Some(e) = fatal_rx.recv() => Err(e),
    };
    // Stop the sources; what they handed over is spooled before the agent returns.
    stop.store(true, Ordering::Release);
    let _ = stop_tx.send(true);
    let mut first_error = None;
    for t in threads {
        if let Ok(Err(e)) = t.await {
            first_error.get_or_insert(e);
        }
    }
    for t in tasks {
        if let Ok(Err(e)) = t.await {
            first_error.get_or_insert(e);
        }
    }
    if let Ok(Err(e)) = spooler.await {
        first_error.get_or_insert(e);
    }
    // Acknowledgements are written lazily; make them durable so nothing is sent twice.
    if let Err(e) = spool.flush().await {
        tracing::warn!(error = %e, "could not record the last acknowledgements; those batches will be sent again (the collector drops duplicates)");
    }
    // Each source's counts, then the totals (the line the CLI also prints).
    for line in metrics.summary() {
        tracing::info!("{line}");
    }
    metrics.totals().log("agent stopped", started.elapsed());
    match (result, first_error) {
        (Err(e), _) | (Ok(()), Some(e)) => Err(e),
        (Ok(()), None) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(sizes: &[usize]) -> Vec<bytes::Bytes> {
        sizes
            .iter()
            .map(|n| bytes::Bytes::from(vec![b'x'; *n]))
            .collect()
    }

    #[test]
    fn a_chunk_is_split_to_fit_the_collectors_limits() {
        let limits = WireLimits {
            max_message_bytes: 10_000,
            max_batch_events: 1_000,
        };
        let evs = events(&[3_000; 10]);
        let (pieces, dead) = split_chunk(&evs, limits);
        assert!(dead.is_empty());
        // Every event in exactly one piece, in order, each piece within the budget.
        let mut next = 0;
        for (offset, count) in &pieces {
            assert_eq!(*offset, next);
            next += count;
            let size: usize = BATCH_OVERHEAD
                + evs[*offset..offset + count]
                    .iter()
                    .map(|e| encoded_event_len(e))
                    .sum::<usize>();
            assert!(size <= limits.budget(), "{size}");
        }
        assert_eq!(next, 10);
        assert_eq!(pieces.len(), 4, "3 events of 3 KB fit in 10 KB: {pieces:?}");

        // The event count limit holds too.
        let limits = WireLimits {
            max_message_bytes: 1 << 20,
            max_batch_events: 3,
        };
        let (pieces, _) = split_chunk(&events(&[10; 7]), limits);
        assert_eq!(pieces, vec![(0, 3), (3, 3), (6, 1)]);
    }

    #[test]
    fn an_event_larger_than_the_limit_is_refused_alone() {
        let limits = WireLimits {
            max_message_bytes: 10_000,
            max_batch_events: 1_000,
        };
        let (pieces, dead) = split_chunk(&events(&[100, 100, 20_000, 100]), limits);
        assert_eq!(pieces, vec![(0, 2), (3, 1)]);
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].0, 2);
        assert!(
            dead[0].1.starts_with("too large: the event is 20000 bytes")
                && dead[0].1.contains("limit of 10000 bytes"),
            "{}",
            dead[0].1
        );
        let (pieces, dead) = split_chunk(&events(&[20_000]), limits);
        assert!(pieces.is_empty());
        assert_eq!(dead.len(), 1);
    }

    #[test]
    fn limits_are_learned_from_the_collectors_headers() {
        let mut l = WireLimits::ASSUMED;
        let mut md = tonic::metadata::MetadataMap::new();
        assert!(!l.learn(&md));
        md.insert(
            orgtrail_proto::limits::MAX_MESSAGE_BYTES,
            tonic::metadata::MetadataValue::from(65_536u64),
        );
        md.insert(
            orgtrail_proto::limits::MAX_BATCH_EVENTS,
            tonic::metadata::MetadataValue::from(50u64),
        );
        assert!(l.learn(&md));
        assert_eq!(
            l,
            WireLimits {
                max_message_bytes: 65_536,
                max_batch_events: 50
            }
        );
        assert!(!l.learn(&md), "the same limits again are no change");
    }

    #[test]
    fn backoff_grows_and_resets_after_an_acknowledgement() {
        let mut b = Backoff::new(&config::RetryConfig {
            initial_ms: 100,
            max_ms: 1_000,
        });
        let waits: Vec<Duration> = (0..8).map(|_| b.next()).collect();
        // Each wait is the delay plus up to as much jitter; the delay doubles up to the max.
        assert!(waits[0] >= Duration::from_millis(100) && waits[0] <= Duration::from_millis(200));
        assert!(
            waits[7] >= Duration::from_millis(1_000) && waits[7] <= Duration::from_millis(2_000)
        );
        b.reset();
        let first = b.next();
        assert!(first <= Duration::from_millis(200), "{first:?}");
    }
}
