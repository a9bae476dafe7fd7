//! The orgtrail collector: authenticates every agent by its client certificate, validates and
//! deduplicates events, and acknowledges each batch only once it is durable in the ledger.

pub mod auth;
pub mod config;
pub mod ingest;
pub mod pool;
pub mod query;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use orgtrail_crypto::LocalKeyProvider;
use orgtrail_crypto::signing::SigningKey;
use orgtrail_proto::v1::ingest_server::IngestServer;
use orgtrail_proto::v1::query_server::QueryServer;
use orgtrail_store::{Ledger, LedgerConfig};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::codec::CompressionEncoding;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

pub use config::{CollectorConfig, ConfigError, EXAMPLE};

/// Why the collector could not run.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] orgtrail_store::StoreError),
    #[error(transparent)]
    Crypto(#[from] orgtrail_crypto::CryptoError),
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("server failed: {0}")]
    Serve(String),
}

/// Events a live follower may fall behind by before it is cut off.
const LIVE_BUFFER: usize = 16_384;

fn read(path: &std::path::Path) -> Result<Vec<u8>, CollectorError> {
    std::fs::read(path).map_err(|source| CollectorError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Runs the collector until `shutdown` completes; then stops accepting, lets in-flight
/// batches finish, flushes, writes a checkpoint and returns. `on_listen` is called with the
/// bound address once the port is open.
pub async fn run(
    cfg: CollectorConfig,
    on_listen: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), CollectorError> {
    let provider = Arc::new(LocalKeyProvider::load(&cfg.keys_dir)?);
    let signing = cfg.keys_dir.join("signing.key");
    let signer = if signing.exists() {
        Some(Arc::new(SigningKey::load(&signing)?))
    } else {
        None
    };
    let data_dir = cfg.data_dir.clone();
    let ledger = tokio::task::spawn_blocking(move || {
        Ledger::open(
            &data_dir,
            provider,
            LedgerConfig {
                signer,
                // The collector's hot path is appending; lookups (served later) read few
                // blocks. A smaller page cache keeps its memory near the index's own.
                cache_bytes: 16 << 20,
                ..LedgerConfig::default()
            },
        )
    })
    .await
    .map_err(|e| CollectorError::Serve(e.to_string()))??;
    let ledger = Arc::new(ledger);

    let identity = Identity::from_pem(read(&cfg.tls.cert)?, read(&cfg.tls.key)?);
    let tls = ServerTlsConfig::new()
        .identity(identity)
        .client_ca_root(Certificate::from_pem(read(&cfg.tls.client_ca)?));
    let (stop_tx, stopping) = tokio::sync::watch::channel(false);
    let auth = Arc::new(auth::Authorizer::new(&cfg.organization));
    let (live, _) = tokio::sync::broadcast::channel(LIVE_BUFFER);
    let service = ingest::IngestService {
        stopping: stopping.clone(),
        ledger: ledger.clone(),
        auth: auth.clone(),
        limits: cfg.limits.clone(),
        preparers: Arc::new(Mutex::new(Vec::new())),
        live: live.clone(),
        cpu: pool::CpuPool::new(
            std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            cfg.limits.max_in_flight_total,
        )
        .map_err(|e| CollectorError::Serve(format!("cannot start worker threads: {e}")))?,
        in_flight: Arc::new(tokio::sync::Semaphore::new(cfg.limits.max_in_flight_total)),
    };
    let query = query::QueryService {
        ledger: ledger.clone(),
        auth,
        live,
        stopping,
        max_stats_events: cfg.limits.max_stats_events,
    };
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<IngestServer<ingest::IngestService>>()
        .await;

    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| CollectorError::Listen {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| CollectorError::Listen {
            addr: cfg.listen,
            source,
        })?;
    on_listen(addr);
    tracing::info!(%addr, "collector listening (mutual TLS)");

    // Small answers (acks, lookups) go out at once instead of waiting for the peer's delayed
    // ACK (Nagle): without this every lookup took 40 ms more.
    let incoming = TcpListenerStream::new(listener).map(|s| {
        if let Ok(s) = &s {
            let _ = s.set_nodelay(true);
        }
        s
    });
    Server::builder()
        .tls_config(tls)
        .map_err(|e| CollectorError::Tls(e.to_string()))?
        .add_service(health)
        .add_service(
            IngestServer::new(service)
                .max_decoding_message_size(cfg.limits.max_message_bytes)
                .accept_compressed(CompressionEncoding::Zstd)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Zstd)
                .send_compressed(CompressionEncoding::Gzip),
        )
        .add_service(
            QueryServer::new(query)
                .accept_compressed(CompressionEncoding::Zstd)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Zstd)
                .send_compressed(CompressionEncoding::Gzip),
        )
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight batches");
            let _ = stop_tx.send(true);
        })
        .await
        .map_err(|e| CollectorError::Serve(e.to_string()))?;

    // Stopped accepting; in-flight batches have been answered. Flush and checkpoint.
    tokio::task::spawn_blocking(move || ledger.close())
        .await
        .map_err(|e| CollectorError::Serve(e.to_string()))??;
    tracing::info!("collector stopped cleanly");
    Ok(())
}
