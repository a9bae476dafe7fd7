//! The webhook sink: each alert POSTed to an HTTP(S) receiver as JSON, signed so that the
//! receiver can tell it came from this collector and was not changed.
//!
//! # The request
//!
//! ```text
//! POST <url>
//! Content-Type: application/json
//! User-Agent: orgtrail/<version>
//! X-Orgtrail-Alert-Id: <alert id>           the payload's `id`; the same on every redelivery
//! X-Orgtrail-Timestamp: <unix seconds>      when this attempt was signed
//! X-Orgtrail-Signature: sha256=<hex>        HMAC-SHA-256(secret, "<timestamp>.<body>")
//!
//! <body: the alert payload, exactly the bytes signed>
//! ```
//!
//! The key is the bytes of `secret_file` (one trailing newline dropped). The signed message is
//! the timestamp header's value in ASCII, a `.`, then the raw body bytes; the signature is the
//! 64 lowercase hex digits of the MAC. A receiver recomputes it over the body as received
//! (before parsing it), compares in constant time, refuses a timestamp too far from its clock
//! (a replay), and drops an alert id it already took (a redelivery: delivery is at least
//! once). Each attempt is signed afresh, so a retried alert carries a new timestamp.
//!
//! # Answers
//!
//! * 2xx: taken.
//! * 408, 429 and 5xx, a timeout, a refused or broken connection, a TLS failure: the
//!   receiver's fault, retried with exponential backoff (429 and 503 honour `Retry-After`
//!   in seconds, up to the longest wait); each counts toward `max_attempts`.
//! * Any other status (400, 401, 403, 404, 413, a redirect, which is not followed): the
//!   receiver refused this alert, and sending the same bytes again will not change that. The
//!   alert becomes a dead letter for this sink at once; fix the receiver (or the secret) and
//!   re-drive it with `orgtrail alerts dead-letters --retry`.
//!
//! The response body is read (up to 64 KiB, so the connection can be reused) and dropped,
//! never logged. Connections are kept alive and reused (HTTP/1.1).

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Uri;
use hyper::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER, USER_AGENT};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;

use super::deliver::{Failure, RetryPolicy};
use crate::config::WebhookSinkConfig;

/// The header carrying the alert id.
pub const ALERT_ID_HEADER: &str = "x-orgtrail-alert-id";
/// The header carrying the signing time (Unix seconds).
pub const TIMESTAMP_HEADER: &str = "x-orgtrail-timestamp";
/// The header carrying `sha256=<hex HMAC-SHA-256 over "<timestamp>.<body>">`.
pub const SIGNATURE_HEADER: &str = "x-orgtrail-signature";

/// How much of a response body is read (then dropped).
const MAX_RESPONSE: usize = 64 << 10;

/// Reads a webhook secret: the file's bytes, one trailing newline (`\n` or `\r\n`) dropped.
/// A missing, unreadable or empty file is an error naming it.
pub fn read_secret(path: &Path) -> Result<Vec<u8>, String> {
    let mut b =
        std::fs::read(path).map_err(|e| format!("{}: cannot read it: {e}", path.display()))?;
    if b.last() == Some(&b'\n') {
        b.pop();
        if b.last() == Some(&b'\r') {
            b.pop();
        }
    }
    if b.is_empty() {
        return Err(format!(
            "{}: is empty (put the HMAC key shared with the receiver in it)",
            path.display()
        ));
    }
    Ok(b)
}

/// The signature header's value for `body` signed at `timestamp`:
/// `sha256=` and the hex HMAC-SHA-256 under `secret` of `"<timestamp>.<body>"`.
pub fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mac = orgtrail_crypto::hash::hmac_sha256(secret, &[timestamp.as_bytes(), b".", body]);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in mac {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// A receiver's URL, checked.
#[derive(Debug, Clone)]
pub struct Target {
    uri: Uri,
    https: bool,
}

impl Target {
    /// `http://` or `https://`, a host, optionally a port and a path.
    pub fn parse(url: &str) -> Result<Target, String> {
        let uri: Uri = url.parse().map_err(|e| {
            format!("{url:?} is not a URL ({e}): write e.g. https://alerts.example/orgtrail")
        })?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("{url:?}: use an http:// or https:// URL")),
        };
        if uri.host().is_none_or(str::is_empty) {
            return Err(format!("{url:?} names no host"));
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(format!(
                "{url:?}: credentials in the URL are not supported (the request is signed with secret_file)"
            ));
        }
        Ok(Target { uri, https })
    }
}

/// One webhook sink, ready to send.
#[derive(Debug, Clone)]
pub(crate) struct WebhookSink {
    target: Target,
    secret: Arc<Secret>,
    client: Client<Connector, Full<Bytes>>,
    timeout: Duration,
    pub(crate) policy: RetryPolicy,
}

/// The key, kept out of `Debug`.
struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl WebhookSink {
    /// Reads the secret (and CA file) and builds the client. Every failure names its file.
    pub(crate) fn new(cfg: &WebhookSinkConfig) -> Result<WebhookSink, String> {
        let at = format!("alerts.webhook {:?}", cfg.name);
        let target = Target::parse(&cfg.url).map_err(|e| format!("{at}: url: {e}"))?;
        let secret =
            read_secret(&cfg.secret_file).map_err(|e| format!("{at}: secret_file: {e}"))?;
        let tls = if target.https {
            let mut config =
                orgtrail_crypto::tls::external_client_config(cfg.ca_file.as_deref(), None)
                    .map_err(|e| format!("{at}: ca_file: {e}"))?;
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Some(TlsConnector::from(std::sync::Arc::new(config)))
        } else {
            None
        };
        let connector = Connector {
            tls,
            connect_timeout: Duration::from_millis(cfg.connect_timeout_ms),
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1)
            .build(connector);
        Ok(WebhookSink {
            target,
            secret: Arc::new(Secret(secret)),
            client,
            timeout: Duration::from_millis(cfg.timeout_ms),
            policy: RetryPolicy {
                max_attempts: Some(cfg.max_attempts),
                initial: Duration::from_millis(cfg.backoff_initial_ms),
                max: Duration::from_millis(cfg.backoff_max_ms),
            },
        })
    }

    /// POSTs one alert, signed now.
    pub(crate) async fn send(&self, alert_id: &str, body: &Bytes) -> Result<(), Failure> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .to_string();
        let sig = signature(&self.secret.0, &now, body);
        let bad_header =
            |what: &str| Failure::permanent(format!("cannot build the request: {what}"));
        let req = hyper::Request::post(self.target.uri.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(
                USER_AGENT,
                HeaderValue::from_static(concat!("orgtrail/", env!("CARGO_PKG_VERSION"))),
            )
            .header(
                ALERT_ID_HEADER,
                HeaderValue::from_str(alert_id).map_err(|_| bad_header("alert id"))?,
            )
            .header(
                TIMESTAMP_HEADER,
                HeaderValue::from_str(&now).map_err(|_| bad_header("timestamp"))?,
            )
            .header(
                SIGNATURE_HEADER,
                HeaderValue::from_str(&sig).map_err(|_| bad_header("signature"))?,
            )
            .body(Full::new(body.clone()))
            .map_err(|e| Failure::permanent(format!("cannot build the request: {e}")))?;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| Failure::retry(describe(&e)))?;
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            // Read (and drop) the answer, so that the connection can be reused.
            let _ = Limited::new(resp.into_body(), MAX_RESPONSE).collect().await;
            Ok::<_, Failure>((status, retry_after))
        };
        let (status, retry_after) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                Failure::retry(format!(
                    "no answer within {} ms (timeout_ms)",
                    self.timeout.as_millis()
                ))
            })??;
        let code = status.as_u16();
        if status.is_success() {
            return Ok(());
        }
        let text = format!(
            "HTTP {code} {}",
            status.canonical_reason().unwrap_or_default()
        );
        if code == 408 || code == 429 || status.is_server_error() {
            let mut f = Failure::retry(text);
            if code == 429 || code == 503 {
                f.wait = retry_after;
            }
            Err(f)
        } else if status.is_redirection() {
            Err(Failure::permanent(format!(
                "{text}: redirects are not followed; set url to the final address"
            )))
        } else {
            Err(Failure::permanent(format!(
                "{text}: the receiver refused the alert"
            )))
        }
    }
}

/// An error and its causes on one line (hyper's own text is terse: "client error (Connect)").
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    let mut cur = Some(e);
    while let Some(c) = cur {
        let text = c.to_string();
        if !text.is_empty() && !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        cur = c.source();
    }
    line
}

/// TCP (and TLS for https) connections for the client.
#[derive(Clone)]
struct Connector {
    tls: Option<TlsConnector>,
    connect_timeout: Duration,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("tls", &self.tls.is_some())
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Conn>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let https = uri.scheme_str() == Some("https");
            let host = uri
                .host()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            let connect = async {
                let tcp = TcpStream::connect((host.as_str(), port)).await?;
                tcp.set_nodelay(true)?;
                if !https {
                    return Ok(Conn::Plain(tcp));
                }
                let Some(tls) = &this.tls else {
                    return Err(std::io::Error::other("an https:// URL without TLS"));
                };
                let name = ServerName::try_from(host.clone()).map_err(|_| {
                    std::io::Error::other(format!("{host:?} is not a DNS name or an IP address"))
                })?;
                Ok(Conn::Tls(Box::new(tls.connect(name, tcp).await?)))
            };
            match tokio::time::timeout(this.connect_timeout, connect).await {
                Ok(r) => r.map(TokioIo::new),
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "connecting to {host}:{port} took over {} ms (connect_timeout_ms)",
                        this.connect_timeout.as_millis()
                    ),
                )),
            }
        })
    }
}

/// A connection to a receiver.
#[derive(Debug)]
enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_signature_is_the_documented_hmac() {
        // The README's Python recipe gives, for this secret, timestamp and body:
        // "sha256=" + hmac.new(b"Jefe", b"1700000000" + b"." + b'{"id":"a"}',
        // hashlib.sha256).hexdigest()
        let s = signature(b"Jefe", "1700000000", b"{\"id\":\"a\"}");
        assert_eq!(
            s,
            "sha256=b0b07c7f580f6dd3e93c8fbec955b9cf9a6c5f31ec1847b90892fbd8efb0adc8"
        );
        assert_ne!(s, signature(b"Jefe", "1700000001", b"{\"id\":\"a\"}"));
    }

    #[test]
    fn urls_are_checked() {
        assert!(Target::parse("https://alerts.example/hook").unwrap().https);
        assert!(!Target::parse("http://127.0.0.1:8080/x").unwrap().https);
        for bad in [
            "ftp://x/",
            "alerts.example/hook",
            "https://user:pw@alerts.example/",
            "not a url",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_secret_file_is_read_and_checked() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("s");
        std::fs::write(&f, "k3y\n").unwrap();
        assert_eq!(read_secret(&f).unwrap(), b"k3y");
        std::fs::write(&f, "\n").unwrap();
        assert!(read_secret(&f).unwrap_err().contains("is empty"));
        let missing = d.path().join("missing");
        let e = read_secret(&missing).unwrap_err();
        assert!(e.contains(&missing.display().to_string()), "{e}");
    }
}
