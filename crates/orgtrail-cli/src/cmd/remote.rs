//! Talking to a collector's query service over mutual TLS, with errors that say which
//! certificate, which role and which account were involved.

use std::path::PathBuf;

use anyhow::{Context, bail};
use orgtrail_crypto::certs::{PeerIdentity, identity_from_der, pem_to_der};
use orgtrail_proto::v1 as pb;
use orgtrail_proto::v1::integrity_client::IntegrityClient;
use orgtrail_proto::v1::query_client::QueryClient;
use orgtrail_store::{Attr, Query};
use tonic::codec::CompressionEncoding;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// Where the collector is and who is asking.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Remote {
    /// Ask a running collector instead of opening a store: https://HOST:PORT.
    #[arg(long, value_name = "URL")]
    pub(crate) collector: Option<String>,
    /// This reader's certificate (role auditor or admin), PEM.
    #[arg(long, value_name = "FILE", requires = "collector")]
    pub(crate) cert: Option<PathBuf>,
    /// The certificate's private key, PEM.
    #[arg(long, value_name = "FILE", requires = "collector")]
    pub(crate) key: Option<PathBuf>,
    /// The organization CA that signed the collector's certificate, PEM.
    #[arg(long, value_name = "FILE", requires = "collector")]
    pub(crate) ca: Option<PathBuf>,
    /// The name in the collector's certificate, when it differs from the URL's host.
    #[arg(long, value_name = "NAME", requires = "collector")]
    pub(crate) server_name: Option<String>,
}

/// Where a reading command looks: a running collector, or a store on disk.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Target {
    /// The store's data directory (offline; the collector must not be running on it).
    #[arg(
        long,
        value_name = "DIR",
        requires = "keys",
        conflicts_with = "collector"
    )]
    pub(crate) data_dir: Option<PathBuf>,
    /// Directory holding keyring.json (offline).
    #[arg(long, value_name = "DIR", requires = "data_dir")]
    pub(crate) keys: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) remote: Remote,
}

impl Target {
    pub(crate) fn is_remote(&self) -> bool {
        self.remote.collector.is_some()
    }

    /// The store on disk, opened read-only.
    pub(crate) fn open_offline(&self) -> anyhow::Result<orgtrail_store::Ledger> {
        let (Some(keys), Some(data_dir)) = (&self.keys, &self.data_dir) else {
            bail!(
                "say where to look: --collector URL --cert F --key F --ca F for a running collector, or --data-dir DIR --keys DIR for a store on disk"
            );
        };
        crate::cmd::keys::open_read_only(keys, data_dir)
    }
}

/// A connected query client and who it is.
pub(crate) struct Client {
    pub(crate) client: QueryClient<Channel>,
    /// The connection, shared by the other services' clients.
    channel: Channel,
    pub(crate) me: PeerIdentity,
    pub(crate) url: String,
}

fn read(p: &PathBuf, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("cannot read the {what} {}", p.display()))
}

impl Remote {
    pub(crate) async fn connect(&self) -> anyhow::Result<Client> {
        let Some(url) = &self.collector else {
            bail!("no --collector URL");
        };
        let (Some(cert), Some(key), Some(ca)) = (&self.cert, &self.key, &self.ca) else {
            bail!(
                "a remote query needs --cert, --key and --ca (an auditor or admin certificate from `orgtrail certs issue`, and the organization CA)"
            );
        };
        // The reader's own certificate, checked as the collector will check it.
        orgtrail_crypto::tls::load_own(cert, key, ca, orgtrail_crypto::tls::Purpose::Client)?;
        let cert_pem = read(cert, "certificate")?;
        let me = identity_from_der(
            &pem_to_der(&String::from_utf8_lossy(&cert_pem))
                .with_context(|| format!("{} is not a PEM certificate", cert.display()))?,
        )
        .with_context(|| format!("{} is not an orgtrail certificate", cert.display()))?;
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(ca, "CA certificate")?))
            .identity(Identity::from_pem(cert_pem, read(key, "private key")?));
        if let Some(n) = &self.server_name {
            tls = tls.domain_name(n.clone());
        }
        let channel = Channel::from_shared(url.clone())
            .with_context(|| format!("{url:?} is not a URL such as https://collector:4317"))?
            .tls_config(tls)
            .context("TLS setup")?
            .connect_timeout(std::time::Duration::from_secs(10))
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| {
                let why = match orgtrail_crypto::tls::find_tls_error(&e) {
                    Some(t) => orgtrail_crypto::tls::describe(&t),
                    None => {
                        let mut why = format!("{e}");
                        let mut src = std::error::Error::source(&e);
                        while let Some(s) = src {
                            why = format!("{why}: {s}");
                            src = s.source();
                        }
                        why
                    }
                };
                anyhow::anyhow!(
                    "cannot connect to the collector at {url} with certificate {} ({}): {why}",
                    cert.display(),
                    describe(&me)
                )
            })?;
        Ok(Client {
            channel: channel.clone(),
            client: QueryClient::new(channel)
                .accept_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(64 << 20),
            me,
            url: url.clone(),
        })
    }
}

/// "auditor certificate NAME for accounts A, B" and the like.
pub(crate) fn describe(id: &PeerIdentity) -> String {
    let accounts: Vec<String> = id.accounts.iter().map(ToString::to_string).collect();
    if accounts.is_empty() {
        format!("{} certificate {}", id.role, id.name)
    } else {
        format!(
            "{} certificate {} for account{} {}",
            id.role,
            id.name,
            if accounts.len() == 1 { "" } else { "s" },
            accounts.join(", ")
        )
    }
}

impl Client {
    /// The collector's integrity service on the same connection.
    pub(crate) fn integrity(&self) -> IntegrityClient<Channel> {
        IntegrityClient::new(self.channel.clone()).accept_compressed(CompressionEncoding::Zstd)
    }

    /// An error from the collector, with who asked.
    pub(crate) fn explain(&self, s: tonic::Status) -> anyhow::Error {
        let who = describe(&self.me);
        match s.code() {
            tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => anyhow::anyhow!(
                "the collector at {} refused {who}: {}",
                self.url,
                s.message()
            ),
            tonic::Code::Unavailable => anyhow::anyhow!(
                "the collector at {} is unavailable: {}",
                self.url,
                s.message()
            ),
            _ => match orgtrail_crypto::tls::find_tls_error(&s) {
                Some(t) => anyhow::anyhow!(
                    "TLS with the collector at {} failed for {who}: {}",
                    self.url,
                    orgtrail_crypto::tls::describe(&t)
                ),
                None => {
                    anyhow::anyhow!("the collector at {} answered: {}", self.url, s.message())
                }
            },
        }
    }
}

fn attribute(a: Attr) -> pb::Attribute {
    match a {
        Attr::Account => pb::Attribute::Account,
        Attr::Region => pb::Attribute::Region,
        Attr::EventName => pb::Attribute::EventName,
        Attr::EventSource => pb::Attribute::EventSource,
        Attr::ReadOnly => pb::Attribute::ReadOnly,
        Attr::Username => pb::Attribute::Username,
        Attr::AccessKeyId => pb::Attribute::AccessKeyId,
        Attr::ResourceName => pb::Attribute::ResourceName,
        Attr::ResourceType => pb::Attribute::ResourceType,
        Attr::ErrorCode => pb::Attribute::ErrorCode,
    }
}

/// The wire filters of a store query.
pub(crate) fn filters(q: &Query) -> Vec<pb::Filter> {
    q.filters
        .iter()
        .map(|(a, v)| pb::Filter {
            attribute: attribute(*a) as i32,
            value: v.clone(),
        })
        .collect()
}

/// A stored event from the wire.
pub(crate) fn from_pb(e: pb::StoredEvent) -> anyhow::Result<orgtrail_store::StoredEvent> {
    Ok(orgtrail_store::StoredEvent {
        seq: e.seq,
        account: e
            .account
            .parse()
            .map_err(|_| anyhow::anyhow!("the collector sent a bad account {:?}", e.account))?,
        time: orgtrail_core::Timestamp(e.time_ms),
        bytes: e.event,
    })
}

/// A small runtime for a command that talks to a collector.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}
