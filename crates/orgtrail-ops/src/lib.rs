//! The ops listener of the collector and the agent: plain HTTP, off by default
//! (`[ops] listen = "127.0.0.1:9464"`), serving
//!
//! * `GET /healthz`: `200 ok` while the process runs (a liveness probe);
//! * `GET /readyz`: `200 ready`, or `503 not ready: REASON` on one line (a readiness probe);
//!   `/ready` is its older name (the agent's former metrics listener) and answers the same;
//! * `GET /metrics`: the process's metrics in the Prometheus text format (version 0.0.4),
//!   encoded by `prometheus-client`.
//!
//! What it serves carries no secret and no event content: counts, and labels from bounded
//! sets. It has neither TLS nor authentication, so bind it to loopback or to an address only
//! the scraper reaches (a pod's own address behind a NetworkPolicy).
//!
//! One crate for both processes: the collector and the agent never depend on each other, and
//! neither the domain crate (no I/O) nor the wire or crypto crates are the place for an HTTP
//! server. Readiness and metrics are computed on a blocking thread at each request, so a probe
//! may read files (the collector's store size) without stalling the async runtime.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Deserializer};
use tokio::sync::oneshot;

pub use prometheus_client;

/// The `[ops]` table of the collector's and the agent's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsConfig {
    /// Where the ops listener listens: an IP address and a port, e.g. `"127.0.0.1:9464"`
    /// (port 0 picks a free one; the bound address is printed at start).
    #[serde(deserialize_with = "listen_address")]
    pub listen: SocketAddr,
}

/// Reads an ops listen address, refusing anything but an IP address and a port with a
/// message that says what to give.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>().map_err(|_| {
        format!(
            "{s:?} is not an IP address and port: give e.g. \"127.0.0.1:9464\", \"0.0.0.0:9464\" or \"[::1]:9464\" (host names are not resolved)"
        )
    })
}

fn listen_address<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    parse_listen(&s).map_err(serde::de::Error::custom)
}

/// What a process tells its ops listener. Both methods run on a blocking thread.
pub trait Probe: Send + Sync + 'static {
    /// Ready to do its work, or why not, in one line.
    fn readiness(&self) -> Result<(), String>;
    /// The metrics to encode (collectors registered in it may read state at each scrape).
    fn registry(&self) -> &Registry;
}

/// The ops listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("ops listener: cannot listen on {addr}: {source}")]
pub struct ListenError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// A running ops listener. It stops when this is dropped.
#[derive(Debug)]
pub struct OpsListener {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl OpsListener {
    /// The bound address (the configured port, or the one picked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// The `Content-Type` of `/metrics`: Prometheus text format 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Binds `cfg.listen` and serves the ops endpoints on the current runtime until the returned
/// listener is dropped.
pub async fn start(cfg: &OpsConfig, probe: Arc<dyn Probe>) -> Result<OpsListener, ListenError> {
    let err = |source| ListenError {
        addr: cfg.listen,
        source,
    };
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(err)?;
    let addr = listener.local_addr().map_err(err)?;
    let (stop, stopped) = oneshot::channel::<()>();
    let app = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .route("/readyz", axum::routing::get(readyz))
        .route("/ready", axum::routing::get(readyz))
        .route("/metrics", axum::routing::get(metrics))
        .with_state(probe);
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, %addr, "the ops listener stopped");
        }
    });
    Ok(OpsListener { addr, _stop: stop })
}

/// `/readyz`: 200 `ready`, or 503 with the reason on one line.
async fn readyz(State(probe): State<Arc<dyn Probe>>) -> Response {
    let r = tokio::task::spawn_blocking(move || probe.readiness())
        .await
        .unwrap_or_else(|_| Err("the readiness check failed".into()));
    match r {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", one_line(&why)),
        )
            .into_response(),
    }
}

/// `/metrics`: every metric of the probe's registry in Prometheus text.
async fn metrics(State(probe): State<Arc<dyn Probe>>) -> Response {
    let r = tokio::task::spawn_blocking(move || {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, probe.registry())
            .map(|()| out)
    })
    .await;
    match r {
        Ok(Ok(text)) => ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response(),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the metrics could not be encoded\n",
        )
            .into_response(),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use std::sync::Mutex;

    #[derive(Debug)]
    struct Fake {
        ready: Mutex<Result<(), String>>,
        registry: Registry,
    }

    impl Probe for Fake {
        fn readiness(&self) -> Result<(), String> {
            self.ready.lock().unwrap().clone()
        }
        fn registry(&self) -> &Registry {
            &self.registry
        }
    }

    async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
        let path = path.to_string();
        tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut resp = String::new();
            s.read_to_string(&mut resp).unwrap();
            let (head, body) = resp.split_once("\r\n\r\n").unwrap();
            let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
            (status, head.to_lowercase(), body.to_string())
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn the_three_endpoints_answer() {
        let mut registry = Registry::default();
        let c: Counter = Counter::default();
        registry.register("orgtrail_test_things", "Things.", c.clone());
        c.inc_by(3);
        let fake = Arc::new(Fake {
            ready: Mutex::new(Err("the disk\nis full".into())),
            registry,
        });
        let cfg = OpsConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
        };
        let ops = start(&cfg, fake.clone()).await.unwrap();
        let addr = ops.local_addr();
        assert_ne!(addr.port(), 0);

        assert_eq!(get(addr, "/healthz").await.0, 200);
        let (status, _, body) = get(addr, "/readyz").await;
        assert_eq!(
            (status, body.as_str()),
            (503, "not ready: the disk is full\n")
        );
        *fake.ready.lock().unwrap() = Ok(());
        let (status, _, body) = get(addr, "/readyz").await;
        assert_eq!((status, body.as_str()), (200, "ready\n"));
        assert_eq!(get(addr, "/ready").await.0, 200);
        let (status, head, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(
            head.contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        assert!(
            body.contains("# TYPE orgtrail_test_things_total counter\n"),
            "{body}"
        );
        assert!(body.contains("\norgtrail_test_things_total 3\n"), "{body}");
        assert_eq!(get(addr, "/nothing").await.0, 404);

        // Dropped: the port is closed.
        drop(ops);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            assert!(tokio::time::Instant::now() < deadline, "still listening");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    #[test]
    fn a_bad_address_is_refused_with_what_to_give() {
        #[derive(Debug, Deserialize)]
        struct Cfg {
            ops: OpsConfig,
        }
        let e = toml::from_str::<Cfg>("[ops]\nlisten = \"localhost:9464\"\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("line 2"), "{msg}");
        assert!(
            msg.contains(
                "\"localhost:9464\" is not an IP address and port: give e.g. \"127.0.0.1:9464\""
            ),
            "{msg}"
        );
        let e = toml::from_str::<Cfg>("[ops]\nlisten = \"127.0.0.1\"\n").unwrap_err();
        assert!(
            e.to_string().contains("is not an IP address and port"),
            "{e}"
        );
        let e = toml::from_str::<Cfg>("[ops]\nlisten = \"127.0.0.1:1\"\nport = 3\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `port`"), "{e}");
        let ok: Cfg = toml::from_str("[ops]\nlisten = \"[::1]:0\"\n").unwrap();
        assert_eq!(ok.ops.listen, "[::1]:0".parse().unwrap());
    }
}
