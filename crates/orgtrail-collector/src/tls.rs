//! The collector's listener: TCP accepts and TLS handshakes done here rather than inside
//! tonic, so that every refused handshake is a warn line with the peer, the certificate's name
//! and serial when it sent one, and a precise reason (expired at T, unknown issuer,
//! certificate required, wrong key usage, not TLS at all).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use orgtrail_crypto::tls::{OwnCertificate, RefusedCertificate, describe, find_tls_error};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use crate::CollectorError;
use crate::ops::TlsFailure;

/// A handshake that takes longer is abandoned (a client that connects and says nothing).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; further connections wait to be accepted.
const MAX_HANDSHAKES: usize = 512;

tokio::task_local! {
    /// The peer whose handshake this task runs, for the verifier's log line.
    static PEER: SocketAddr;
}

/// The server configuration, with a verifier that logs each refused client certificate.
pub(crate) fn server_config(own: &OwnCertificate) -> Result<Arc<ServerConfig>, CollectorError> {
    let on_refused = Arc::new(|r: &RefusedCertificate| {
        let peer = PEER.try_with(ToString::to_string).unwrap_or_default();
        tracing::warn!(
            %peer,
            certificate = %r.name,
            serial = %r.serial,
            reason = %r.reason,
            "TLS handshake refused a client certificate"
        );
    });
    orgtrail_crypto::tls::server_config(own, on_refused)
        .map_err(|e| CollectorError::Tls(e.to_string()))
}

fn log_failure(peer: SocketAddr, e: &std::io::Error) {
    match find_tls_error(e) {
        // The verifier logged it, with the certificate's name and serial.
        Some(tokio_rustls::rustls::Error::InvalidCertificate(_)) => {}
        Some(t) => tracing::warn!(%peer, reason = %describe(&t), "TLS handshake failed"),
        // Connected and left without a word (a port probe): not worth a warning.
        None if closed_early(e) => {
            tracing::debug!(%peer, error = %e, "connection closed during the TLS handshake");
        }
        None => tracing::warn!(%peer, error = %e, "TLS handshake failed"),
    }
}

/// True when the peer closed the connection during the handshake without a TLS error (a port
/// probe, a client that gave up).
pub(crate) fn closed_early(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe
    )
}

/// Accepted connections whose TLS handshake succeeded. Stops accepting when `stopping`
/// becomes true or the server stops listening.
pub(crate) fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    mut stopping: watch::Receiver<bool>,
    metrics: Arc<crate::ops::Metrics>,
) -> ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                _ = stopping.wait_for(|s| *s) => break,
                () = tx.closed() => break,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, keep serving.
                    tracing::error!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let Ok(permit) = handshakes.clone().acquire_owned().await else {
                break;
            };
            let (acceptor, tx, metrics) = (acceptor.clone(), tx.clone(), metrics.clone());
            tokio::spawn(PEER.scope(peer, async move {
                let _permit = permit;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => {
                        metrics.tls_failed(TlsFailure::of(&e));
                        log_failure(peer, &e);
                    }
                    Err(_) => {
                        metrics.tls_failed(TlsFailure::Timeout);
                        tracing::warn!(
                            %peer,
                            timeout_s = HANDSHAKE_TIMEOUT.as_secs(),
                            "TLS handshake timed out"
                        );
                    }
                }
            }));
        }
    });
    ReceiverStream::new(rx)
}
