//! The orgtrail agent: reads events, makes each durable in a local spool before anything
//! else, ships batches to the collector over gRPC with mutual TLS with several in flight, and
//! forgets an event only when the collector's acknowledgement covers it.

pub mod config;
pub mod metrics;
pub mod selectors;
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
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

pub use config::{AgentConfig, ConfigError, EXAMPLE, MetricsConfig, SourceConfig};
pub use metrics::Metrics;
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
    #[error("{0}")]
    Other(String),
}

impl AgentError {
    /// True for errors that retrying cannot mend: the agent stops and says why.
    pub fn is_permanent(&self) -> bool {
        matches!(self, AgentError::Refused(_) | AgentError::Certificate(_))
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
    orgtrail_crypto::tls::load_own(
        &cfg.tls.cert,
        &cfg.tls.key,
        &cfg.tls.ca,
        orgtrail_crypto::tls::Purpose::Client,
    )
    .map(|_| ())
    .map_err(|e| AgentError::Certificate(e.to_string()))
}

fn read_file(p: &std::path::Path) -> Result<Vec<u8>, AgentError> {
    std::fs::read(p).map_err(|source| AgentError::Read {
        path: p.display().to_string(),
        source,
    })
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
    metrics: &Metrics,
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
        let chunks = loop {
            let (back, result) = spool.append_blocking(batch, max_events, max_bytes);
            batch = back;
            match result {
                Ok(chunks) => {
                    if metrics.set_spool_disk_full(None) {
                        tracing::info!(
                            free = spool::free_bytes(&cfg.spool_dir),
                            "the spool's disk has space again; the sources go on"
                        );
                    }
                    break chunks;
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
                    wait_for_space(500);
                }
                Err(e) => {
                    let msg = e.to_string();
                    for w in p.waiting.drain(..) {
                        let _ = w.send(Err(msg.clone()));
                    }
                    return Err(e.into());
                }
            }
        };
        for w in p.waiting.drain(..) {
            let _ = w.send(Ok(()));
        }
        let mut at = 0usize;
        for (first, n) in chunks {
            let n = n as usize;
            metrics.spooled_chunk(first, p.sources[at..at + n].to_vec());
            at += n;
        }
        for s in &p.dead_sources {
            metrics.source(*s).dead_lettered.inc();
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
                if let Some(sel) = selectors
                    && !sel.matches(event.fields())
                {
                    metrics.source(source).filtered.inc();
                    continue;
                }
                p.bytes += event.bytes().len();
                p.batch.events.push(event.into_bytes());
                p.sources.push(u16::try_from(source).unwrap_or(u16::MAX));
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
            Ok(Item::Mark { key, value }) => {
                if let Some(m) = p.batch.marks.iter_mut().find(|(k, _)| *k == key) {
                    m.1 = value;
                } else {
                    p.batch.marks.push((key, value));
                }
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
    waiting: Vec<std::sync::mpsc::SyncSender<Result<(), String>>>,
}

impl Pending {
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

fn jitter(ms: u64) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    Duration::from_millis(ms / 2 + u64::from(nanos) % (ms / 2 + 1))
}

async fn connect(cfg: &AgentConfig) -> Result<Channel, AgentError> {
    // Checked again before every connection: a certificate that expired while the agent ran
    // stops it with the reason (with TLS 1.3 the collector's refusal may reach the agent only
    // as a closed connection).
    let own = cfg.clone();
    tokio::task::spawn_blocking(move || check_certificate(&own))
        .await
        .map_err(|e| AgentError::Other(e.to_string()))??;
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
    endpoint.connect().await.map_err(|e| {
        tls_failure(&cfg.collector, &e).unwrap_or_else(|| {
            AgentError::Other(format!("cannot connect to {}: {e}", cfg.collector))
        })
    })
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
    spool: &SpoolHandle,
    wake: &Notify,
    space: &Notify,
    source_done: &AtomicBool,
    exit_when_drained: bool,
    metrics: &Metrics,
) -> Result<bool, AgentError> {
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
    let response = match client.push(ReceiverStream::new(rx)).await {
        Ok(r) => r,
        Err(s) => return Err(status_error(&cfg.collector, s)),
    };
    let mut acks = response.into_inner();
    let mut in_flight: BTreeMap<u64, (u64, usize)> = BTreeMap::new();
    let mut next_from = 0u64;
    loop {
        // Fill the window: one spool chunk is one batch.
        while in_flight.len() < cfg.batch.max_in_flight {
            // Spool reads and acknowledgements run on the spool's own thread.
            let chunk = spool.chunk_from(next_from).await?;
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
            in_flight.insert(chunk.first_seq, (stored_len, n));
        }
        if in_flight.is_empty() {
            if exit_when_drained && source_done.load(Ordering::Acquire) && spool.is_empty().await? {
                return Ok(true);
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
                    let Some((stored_len, n)) = in_flight.remove(&ack.batch_id) else {
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
                    spool.acknowledge((first, stored_len), &rejected).await?;
                    let positions: Vec<usize> = rejected.iter().map(|r| r.0).collect();
                    metrics.acknowledged(first, n, &positions);
                    metrics.spool_pending_bytes.store(spool.pending_bytes(), Ordering::Relaxed);
                    space.notify_one();
                }
                Ok(None) => return Ok(false),
                Err(s) => return Err(status_error(&cfg.collector, s)),
            },
            _ = wake.notified() => {}
        }
    }
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

/// Runs the agent. With `exit_when_drained`, sources read what is there (a directory is
/// scanned once, a followed file read to its end), and the agent returns once the collector
/// acknowledged everything; otherwise it runs until `shutdown` completes. `on_listen` is called
/// with the name and address of each listener it opens (http sources, metrics).
pub async fn run(
    cfg: AgentConfig,
    exit_when_drained: bool,
    on_listen: impl Fn(&str, std::net::SocketAddr),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
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
    let names: Vec<String> = cfg.sources.iter().map(SourceConfig::name).collect();
    let metrics = Arc::new(Metrics::new(&names));
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
            SourceConfig::CloudtrailDir { path, poll_ms, .. } => {
                threads.push(tokio::task::spawn_blocking(move || {
                    let r = sources::dir::run(&ctx, &path, poll_ms);
                    source_failed(&ctx.name, r)
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
    if let Some(m) = &cfg.metrics {
        let listener = tokio::net::TcpListener::bind(m.listen).await.map_err(|e| {
            AgentError::Other(format!("metrics: cannot listen on {}: {e}", m.listen))
        })?;
        let addr = listener
            .local_addr()
            .map_err(|e| AgentError::Other(e.to_string()))?;
        on_listen("metrics", addr);
        let metrics = metrics.clone();
        let mut stop_rx = stop_rx.clone();
        tokio::spawn(async move {
            let ready = metrics.clone();
            let app = axum::Router::new()
                .route(
                    "/metrics",
                    axum::routing::get(move || {
                        let m = metrics.clone();
                        async move { ([("content-type", "text/plain; version=0.0.4")], m.render()) }
                    }),
                )
                .route(
                    "/ready",
                    axum::routing::get(move || {
                        let m = ready.clone();
                        async move { metrics::ready_response(&m) }
                    }),
                );
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.wait_for(|s| *s).await;
                })
                .await;
        });
    }
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
        let mut backoff = cfg.retry.initial_ms.max(1);
        loop {
            match ship_once(
                &cfg,
                &spool,
                &wake,
                &space,
                &source_done,
                exit_when_drained,
                &metrics,
            )
            .await
            {
                Ok(true) => return Ok(()),
                Ok(false) => {
                    tracing::info!("collector stream ended; reconnecting");
                }
                Err(e) if e.is_permanent() => return Err(e),
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
    for line in metrics.summary() {
        tracing::info!("{line}");
    }
    match (result, first_error) {
        (Err(e), _) | (Ok(()), Some(e)) => Err(e),
        (Ok(()), None) => Ok(()),
    }
}
