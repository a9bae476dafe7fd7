//! The orgtrail collector: authenticates every agent by its client certificate, validates and
//! deduplicates events, and acknowledges each batch only once it is durable in the ledger.

pub mod alerts;
pub mod archive;
pub mod auth;
pub mod config;
mod handover;
pub mod ingest;
mod insights;
pub mod integrity;
mod just_stored;
pub mod ops;
pub mod pool;
pub mod query;
pub mod revocation;
pub mod status;
mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use orgtrail_crypto::LocalKeyProvider;
use orgtrail_crypto::signing::SigningKey;
use orgtrail_proto::v1::alerts_server::AlertsServer;
use orgtrail_proto::v1::ingest_server::IngestServer;
use orgtrail_proto::v1::insights_server::InsightsServer;
use orgtrail_proto::v1::integrity_server::IntegrityServer;
use orgtrail_proto::v1::query_server::QueryServer;
use orgtrail_store::{EventStore, Ledger, LedgerConfig};
use tonic::codec::CompressionEncoding;
use tonic::transport::Server;

pub use config::{CollectorConfig, ConfigError, EXAMPLE};
pub use insights::{Replayed, replay_since};

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
    Ops(#[from] orgtrail_ops::ListenError),
    #[error(transparent)]
    Store(#[from] orgtrail_store::StoreError),
    #[error(transparent)]
    Crypto(#[from] orgtrail_crypto::CryptoError),
    #[error(transparent)]
    Certificate(#[from] orgtrail_crypto::tls::CertFileError),
    #[error(transparent)]
    Revocation(#[from] revocation::RevocationError),
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("server failed: {0}")]
    Serve(String),
    /// The store failed a write and cannot be reopened by this process (see
    /// `orgtrail_store::Health::Stuck`): restarting the collector reopens it.
    #[error(
        "the store cannot be written until the collector restarts (nothing acknowledged is lost): {0}"
    )]
    StoreStuck(String),
    #[error("invalid rules: {0}")]
    Rules(String),
    /// An alert sink that cannot be set up (its message names the sink and the file).
    #[error("{0}")]
    Sink(String),
}

/// How long in-flight batches may take to finish once shutdown began.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

/// How often the ledger's health is read into the gRPC health service.
const HEALTH_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Keeps the gRPC health service's answer for ingest (and the server as a whole) in step with
/// the ledger: NOT_SERVING while the disk is below its reserve or the store is recovering.
/// When the store says it cannot be written until the process restarts ([`Health::Stuck`]),
/// its reason is sent on `stuck`: the collector then stops, and exits with an error for its
/// service manager to restart it.
///
/// [`Health::Stuck`]: orgtrail_store::Health::Stuck
async fn watch_health(
    store: Arc<dyn EventStore>,
    reporter: tonic_health::server::HealthReporter,
    stuck: tokio::sync::watch::Sender<Option<String>>,
) {
    let mut last = orgtrail_store::Health::Ready;
    let mut tick = tokio::time::interval(HEALTH_POLL);
    loop {
        tick.tick().await;
        let h = store.health();
        if h == last {
            continue;
        }
        if h == orgtrail_store::Health::Ready {
            tracing::info!("ingest ready again");
            reporter
                .set_serving::<IngestServer<ingest::IngestService>>()
                .await;
            reporter
                .set_service_status("", tonic_health::ServingStatus::Serving)
                .await;
        } else {
            tracing::warn!(state = ?h, "ingest not ready");
            reporter
                .set_not_serving::<IngestServer<ingest::IngestService>>()
                .await;
            reporter
                .set_service_status("", tonic_health::ServingStatus::NotServing)
                .await;
            if let orgtrail_store::Health::Stuck { reason } = &h {
                let _ = stuck.send(Some(reason.clone()));
            }
        }
        last = h;
    }
}

/// Events a live follower may fall behind by before it is cut off.
const LIVE_BUFFER: usize = 16_384;

/// HTTP/2 keepalive: the collector pings each connection this often, and closes one whose
/// ping is not answered within [`KEEPALIVE_TIMEOUT`]. A half-open connection (an agent or a
/// network path that vanished without a FIN) is dropped within about 50 s and its streams'
/// in-flight batches are freed; the agent's own pings and acknowledgement deadline cover the
/// other direction.
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// The name [`run`] gives its gRPC listener when it reports it.
pub const INGEST_LISTENER: &str = "ingest";
/// The name [`run`] gives the ops listener (`[ops] listen`) when it reports it.
pub const OPS_LISTENER: &str = "ops";

/// Runs the collector until `shutdown` completes; then stops accepting, lets in-flight
/// batches finish, flushes, writes a checkpoint and returns. `on_listen` is called with the
/// name and bound address of each listener once its port is open: [`INGEST_LISTENER`] (gRPC
/// over mutual TLS) first, then [`OPS_LISTENER`] when `[ops]` is configured. Returns what
/// it did since it started (also logged at info as `collector stopped`).
pub async fn run(
    cfg: CollectorConfig,
    on_listen: impl Fn(&str, SocketAddr),
    shutdown: impl Future<Output = ()> + Send,
) -> Result<ops::Summary, CollectorError> {
    let started = std::time::Instant::now();
    // Security files first: a bad certificate, key, CA or revocation list refuses to start.
    let own = orgtrail_crypto::tls::load_own(
        &cfg.tls.cert,
        &cfg.tls.key,
        &cfg.tls.client_ca,
        orgtrail_crypto::tls::Purpose::Server,
    )?;
    let tls = tls::server_config(&own)?;
    let revocation = revocation::Revocation::start(cfg.organization.revoked.as_deref())?;
    let provider = Arc::new(LocalKeyProvider::load(&cfg.keys_dir)?);
    let signing = cfg.keys_dir.join("signing.key");
    let signer = if signing.exists() {
        Some(Arc::new(SigningKey::load(&signing)?))
    } else {
        None
    };
    let archive_signer = signer.clone();
    let data_dir = cfg.data_dir.clone();
    let storage = cfg.storage.clone();
    let ledger = tokio::task::spawn_blocking(move || {
        Ledger::open(
            &data_dir,
            provider,
            LedgerConfig {
                signer,
                reserve_bytes: storage.reserve.as_u64(),
                index_run_events: storage.index_memtable_events.max(1),
                index_filter_bytes: storage.index_filter_memory.as_u64(),
                count_rollup_part_bytes: usize::try_from(storage.count_rollup_part.as_u64())
                    .unwrap_or(usize::MAX),
                ..LedgerConfig::default()
            },
        )
    })
    .await
    .map_err(|e| CollectorError::Serve(e.to_string()))??;
    let store: Arc<dyn EventStore> = Arc::new(ledger);

    let (stop_tx, stopping) = tokio::sync::watch::channel(false);
    let auth = Arc::new(auth::Authorizer::new(&cfg.organization, revocation));
    let (live, _) = tokio::sync::broadcast::channel(LIVE_BUFFER);
    let metrics = Arc::new(ops::Metrics::default());
    let in_flight = Arc::new(tokio::sync::Semaphore::new(cfg.limits.max_in_flight_total));
    let stored = Arc::new(tokio::sync::Notify::new());
    let insights_stored = Arc::new(tokio::sync::Notify::new());
    let recent = cfg
        .rules
        .is_some()
        .then(|| Arc::new(alerts::recent::Recent::default()));
    let insights_recent = cfg.insights.enabled.then(|| Arc::new(insights::recent()));
    let service = ingest::IngestService {
        stored: Arc::new([stored.clone(), insights_stored.clone()]),
        recent: recent.clone(),
        insights: insights_recent.clone(),
        stopping: stopping.clone(),
        store: store.clone(),
        auth: auth.clone(),
        limits: cfg.limits.clone(),
        preparers: Arc::new(Mutex::new(Vec::new())),
        live: live.clone(),
        cpu: pool::CpuPool::new(
            std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            cfg.limits.max_in_flight_total,
        )
        .map_err(|e| CollectorError::Serve(format!("cannot start worker threads: {e}")))?,
        in_flight: in_flight.clone(),
        metrics: metrics.clone(),
    };
    let integrity = integrity::IntegrityService::new(store.clone(), auth.clone(), stopping.clone());
    let probe = ops::Probe::new(
        &metrics,
        store.clone(),
        in_flight,
        cfg.limits.max_in_flight_total,
        live.clone(),
        stopping.clone(),
    );
    let query = query::QueryService {
        store: store.clone(),
        auth,
        live,
        stopping: stopping.clone(),
        max_stats_events: cfg.limits.max_stats_events,
    };
    // Detection: rules evaluated on stored events, alerts delivered from the ledger's outbox.
    // `recorded` wakes alert followers; kept here so that it lives as long as the server.
    let (recorded, recorded_rx) = tokio::sync::watch::channel(0u64);
    let mut loaded_rules = None;
    let mut alerts_task = None;
    if let Some(rules_cfg) = &cfg.rules {
        // Taken before the load: a change while loading is reloaded at the first poll.
        let seen = alerts::reload::fingerprint(rules_cfg.dir.as_deref());
        let rules = alerts::load_rules(rules_cfg).map_err(|p| {
            CollectorError::Rules(
                p.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        let sink_names = cfg.alerts.sink_names();
        let mut sinks = std::collections::HashMap::new();
        for f in &cfg.alerts.file {
            sinks.insert(
                f.name.clone(),
                alerts::deliver::Sink::File(alerts::file_sink::FileSink::new(&f.path)),
            );
        }
        for w in &cfg.alerts.webhook {
            let sink = alerts::webhook::WebhookSink::new(w).map_err(CollectorError::Sink)?;
            sinks.insert(
                w.name.clone(),
                alerts::deliver::Sink::Webhook(Box::new(sink)),
            );
        }
        for n in &cfg.alerts.nats {
            let sink = alerts::nats_sink::NatsSink::new(n).map_err(|p| {
                CollectorError::Sink(format!("alert sink {}: {}", n.name, p.join("; ")))
            })?;
            sinks.insert(n.name.clone(), alerts::deliver::Sink::Nats(Box::new(sink)));
        }
        let s = store.clone();
        tokio::task::spawn_blocking(move || alerts::evaluate::start(s.as_ref()))
            .await
            .map_err(|e| CollectorError::Serve(e.to_string()))??;
        tracing::info!(
            rules = rules.len(),
            sinks = sinks.len(),
            "detection rules loaded"
        );
        metrics.rules_loaded(rules.len());
        let (swap, live_rules) = alerts::reload::live(rules);
        let reloader = alerts::reload::Reloader::new(
            rules_cfg.clone(),
            sink_names.clone(),
            swap,
            metrics.clone(),
            seen,
        );
        tokio::spawn(reloader.run(stopping.clone()));
        let wake = Arc::new(tokio::sync::Notify::new());
        // Rules are on, so the ingest service keeps events for them.
        let recent = recent.unwrap_or_default();
        recent.screen_with(live_rules.clone());
        // The events that make alerts, handed from the evaluator to the delivery loops.
        let fired = Arc::new(alerts::fired::Fired::default());
        let evaluator = alerts::evaluate::Evaluator {
            store: store.clone(),
            rules: live_rules.clone(),
            sinks: sink_names,
            metrics: metrics.clone(),
            recorded: recorded.clone(),
            thresholds: Default::default(),
            recent: recent.clone(),
            fired: fired.clone(),
        };
        loaded_rules = Some(live_rules.clone());
        tokio::spawn(evaluator.run(stored, wake.clone(), stopping.clone()));
        let deliverer = alerts::deliver::Deliverer {
            store: store.clone(),
            rules: live_rules,
            sinks,
            metrics: metrics.clone(),
            fired,
        };
        alerts_task = Some(tokio::spawn(deliverer.run(wake, stopping.clone())));
    } else {
        alerts::reload::ignore_hangups(stopping.clone());
    }

    // Insights: stored events fed to the detector; the Insight events it finds stored through
    // the ingest path (after the rules' set-up: the evaluator sees them as ordinary events).
    let mut insights_task = None;
    if let Some(recent) = insights_recent {
        let s = store.clone();
        let c = cfg.insights.clone();
        let fed = tokio::task::spawn_blocking(move || insights::start(s.as_ref(), &c))
            .await
            .map_err(|e| CollectorError::Serve(e.to_string()))??;
        let feeder = insights::Feeder {
            store: store.clone(),
            config: cfg.insights.clone(),
            metrics: metrics.clone(),
            recent,
            fed: std::sync::Mutex::new(fed),
        };
        insights_task = Some(tokio::spawn(feeder.run(
            service.clone(),
            insights_stored,
            stopping.clone(),
        )));
        tracing::info!("Insights on");
    }

    // The continuous archive: stored events written in CloudTrail's layout, a pass at a time.
    let archive_task = match (&cfg.archive, archive_signer) {
        (Some(a), Some(signer)) => Some(tokio::spawn(
            archive::Sink {
                store: store.clone(),
                signer,
                config: a.clone(),
                metrics: metrics.clone(),
            }
            .run(stopping.clone()),
        )),
        (Some(_), None) => {
            return Err(CollectorError::Sink(
                "archive: keys_dir has no signing.key to sign the digests with".into(),
            ));
        }
        (None, _) => None,
    };

    // `orgtrail insights replay` against this collector (admins): a detector of its own.
    let insights_service = insights::InsightsService::new(
        store.clone(),
        query.auth.clone(),
        cfg.insights.clone(),
        service.clone(),
    );

    let alerts_service = alerts::history::AlertsService {
        store: store.clone(),
        auth: query.auth.clone(),
        rules: loaded_rules,
        recorded: recorded_rx,
        stopping: stopping.clone(),
    };

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<IngestServer<ingest::IngestService>>()
        .await;
    let (stuck_tx, stuck_rx) = tokio::sync::watch::channel(None::<String>);
    tokio::spawn(watch_health(store.clone(), health_reporter, stuck_tx));

    // The ops listener first, so that an address it cannot take stops the start before the
    // collector says it listens. It lives until `run` returns: probes see the process alive,
    // and not ready while it stops.
    let ops_listener = match &cfg.ops {
        Some(o) => Some(orgtrail_ops::start(o, Arc::new(probe)).await?),
        None => None,
    };
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
    on_listen(INGEST_LISTENER, addr);
    tracing::info!(%addr, "collector listening (mutual TLS)");
    if let Some(l) = &ops_listener {
        on_listen(OPS_LISTENER, l.local_addr());
        tracing::info!(addr = %l.local_addr(), "ops listener (plain HTTP): /healthz, /readyz, /metrics");
    }

    // Our own accept loop does the TLS handshakes, so that a refused one is logged at warn
    // with its reason (tonic's would log it at debug). Small answers (acks, lookups) go out at
    // once instead of waiting for the peer's delayed ACK (Nagle): without this every lookup
    // took 40 ms more.
    let incoming = tls::incoming(listener, tls, stopping.clone(), metrics.clone());
    let stuck_wait = stuck_rx.clone();
    let (began_tx, began_rx) = tokio::sync::oneshot::channel::<()>();
    let serve = Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
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
        .add_service(
            AlertsServer::new(alerts_service)
                .accept_compressed(CompressionEncoding::Zstd)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Zstd)
                .send_compressed(CompressionEncoding::Gzip),
        )
        .add_service(InsightsServer::new(insights_service))
        .add_service(
            IntegrityServer::new(integrity)
                .accept_compressed(CompressionEncoding::Zstd)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Zstd)
                .send_compressed(CompressionEncoding::Gzip),
        )
        .serve_with_incoming_shutdown(incoming, async move {
            let mut stuck = stuck_wait;
            tokio::select! {
                () = shutdown => {}
                _ = stuck.wait_for(Option::is_some) => {
                    tracing::error!("stopping: the store cannot be written until the collector restarts");
                }
            }
            tracing::info!("shutting down: finishing in-flight batches");
            let _ = stop_tx.send(true);
            let _ = began_tx.send(());
        });
    // In-flight batches get a bounded time to finish: a write stuck on a failing disk must
    // not hold shutdown (what was not acknowledged stays in the agents' spools).
    tokio::select! {
        r = serve => r.map_err(|e| CollectorError::Serve(e.to_string()))?,
        () = async {
            if began_rx.await.is_ok() {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => {
            tracing::error!(
                seconds = SHUTDOWN_GRACE.as_secs(),
                "in-flight batches did not finish in time; stopping without them (they were not acknowledged)"
            );
        }
    }

    // Stopped accepting; in-flight batches have been answered. The Insights task saves its
    // state (bounded: a stuck disk must not hold shutdown; the state is saved durably or not
    // at all, and what was not is fed again at the next start).
    if let Some(task) = insights_task
        && tokio::time::timeout(SHUTDOWN_GRACE, task).await.is_err()
    {
        tracing::warn!("the Insights task did not stop in time; its state was not saved");
    }
    // A pass under way finishes (bounded, as the Insights task: what it did not commit is
    // written again at the next start).
    if let Some(task) = archive_task
        && tokio::time::timeout(SHUTDOWN_GRACE, task).await.is_err()
    {
        tracing::warn!("the archive pass did not finish in time; the next start writes it again");
    }
    // Alert delivery notes what its sinks took before the store closes (bounded: what was
    // taken and not noted goes again at the next start, under the same ids).
    if let Some(task) = alerts_task
        && tokio::time::timeout(SHUTDOWN_GRACE, task).await.is_err()
    {
        tracing::warn!(
            "alert delivery did not stop in time; alerts taken but not yet noted go again at the next start (same ids)"
        );
    }
    // Flush and checkpoint.
    tokio::task::spawn_blocking(move || store.close())
        .await
        .map_err(|e| CollectorError::Serve(e.to_string()))??;
    if let Some(reason) = stuck_rx.borrow().clone() {
        return Err(CollectorError::StoreStuck(reason));
    }
    let summary = metrics.summary(started.elapsed());
    summary.log("collector stopped cleanly");
    Ok(summary)
}
