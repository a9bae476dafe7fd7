//! gRPC channels to the collector over TLS built by `orgtrail-crypto`.
//!
//! tonic's own `ClientTlsConfig` builds a rustls configuration of its own (TLS 1.2 and 1.3,
//! every suite of the provider). orgtrail builds its client configuration in one place,
//! `orgtrail_crypto::tls::client_config` (TLS 1.3, named suites, aws-lc-rs); this module
//! carries that configuration to tonic as a connector: TCP, then the TLS handshake with it,
//! then HTTP/2. Only `https://` URLs are accepted: there is no plaintext path.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;
use tonic::transport::{Channel, Endpoint, Uri};

/// A collector URL that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("{url:?} is not a URL such as https://collector:4317")]
    NotAUrl { url: String },
    #[error("{url:?}: the collector is reached over TLS only: use https://HOST:PORT")]
    NotHttps { url: String },
    #[error(
        "{name:?} is not a DNS name or an IP address (the server name to check the collector's certificate against)"
    )]
    ServerName { name: String },
}

/// An endpoint of the collector whose connections use a given TLS client configuration.
#[derive(Debug, Clone)]
pub struct TlsEndpoint {
    endpoint: Endpoint,
    connector: TlsConnector,
}

/// Makes TCP connections to the endpoint's address and runs the TLS handshake on them.
#[derive(Clone)]
struct TlsConnector {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    tcp_nodelay: bool,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsEndpoint {
    /// An endpoint for `url` (`https://HOST:PORT`). The collector's certificate must be valid
    /// for `server_name`, or for the URL's host when there is none.
    pub fn new(
        url: &str,
        server_name: Option<&str>,
        config: Arc<ClientConfig>,
    ) -> Result<TlsEndpoint, UrlError> {
        let not_a_url = || UrlError::NotAUrl { url: url.into() };
        let uri: Uri = url.parse().map_err(|_| not_a_url())?;
        if uri.scheme_str() != Some("https") {
            return Err(UrlError::NotHttps { url: url.into() });
        }
        let authority = uri.authority().ok_or_else(not_a_url)?.clone();
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = server_name.unwrap_or(host);
        let server_name = ServerName::try_from(name.to_owned())
            .map_err(|_| UrlError::ServerName { name: name.into() })?;
        // tonic refuses an https:// endpoint without its own TLS; the connector does TLS, and
        // the requests still carry the https origin.
        let port = authority.port_u16().unwrap_or(443);
        let plain: Uri = format!("http://{}:{port}", authority.host())
            .parse()
            .map_err(|_| not_a_url())?;
        let origin: Uri = format!("https://{}:{port}", authority.host())
            .parse()
            .map_err(|_| not_a_url())?;
        Ok(TlsEndpoint {
            endpoint: Endpoint::from(plain).origin(origin),
            connector: TlsConnector {
                config,
                server_name,
                tcp_nodelay: true,
            },
        })
    }

    /// Sets the endpoint's other options (timeouts, keep-alive, ...).
    pub fn configure(mut self, f: impl FnOnce(Endpoint) -> Endpoint) -> TlsEndpoint {
        self.endpoint = f(self.endpoint);
        self
    }

    /// Connects now.
    pub async fn connect(&self) -> Result<Channel, tonic::transport::Error> {
        self.endpoint
            .connect_with_connector(self.connector.clone())
            .await
    }

    /// A channel that connects on first use (and reconnects after a failure).
    pub fn connect_lazy(&self) -> Channel {
        self.endpoint
            .connect_with_connector_lazy(self.connector.clone())
    }
}

type Connecting =
    Pin<Box<dyn Future<Output = Result<TokioIo<TlsStream<TcpStream>>, std::io::Error>> + Send>>;

impl tower_service::Service<Uri> for TlsConnector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let authority = uri.authority().ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "no host in the URL")
            })?;
            let port = authority.port_u16().unwrap_or(443);
            let tcp = TcpStream::connect(format!("{}:{port}", authority.host())).await?;
            tcp.set_nodelay(this.tcp_nodelay)?;
            let tls = tokio_rustls::TlsConnector::from(this.config)
                .connect(this.server_name, tcp)
                .await?;
            Ok(TokioIo::new(tls))
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config() -> Arc<ClientConfig> {
        let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        Arc::new(
            ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(tokio_rustls::rustls::RootCertStore::empty())
                .with_no_client_auth(),
        )
    }

    #[test]
    fn only_https_urls_are_accepted_and_the_name_comes_from_the_host_or_the_override() {
        let e = TlsEndpoint::new("http://127.0.0.1:4317", None, config()).unwrap_err();
        assert!(e.to_string().contains("TLS only"), "{e}");
        let e = TlsEndpoint::new("collector:4317", None, config()).unwrap_err();
        assert!(e.to_string().contains("https://"), "{e}");
        let e = TlsEndpoint::new("https://h:1", Some("not a name!"), config()).unwrap_err();
        assert!(matches!(e, UrlError::ServerName { .. }), "{e}");

        let t = TlsEndpoint::new("https://127.0.0.1:4317", None, config()).unwrap();
        assert_eq!(
            t.connector.server_name,
            ServerName::try_from("127.0.0.1").unwrap()
        );
        let t = TlsEndpoint::new("https://[::1]:4317", Some("localhost"), config()).unwrap();
        assert_eq!(
            t.connector.server_name,
            ServerName::try_from("localhost").unwrap()
        );
        // The requests carry the https origin; the connector gets the plain address.
        assert_eq!(t.endpoint.uri().to_string(), "http://[::1]:4317/");
    }
}
