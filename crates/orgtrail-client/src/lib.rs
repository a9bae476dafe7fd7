//! A client of the orgtrail collector, shared by the `orgtrail` commands that ask a running
//! collector (lookup, stats, follow, checkpoint, proof, verify, alerts), the demo and the benches.
//!
//! [`Client::connect`] checks the reader's own certificate as the collector will (key, CA,
//! validity, clientAuth), connects over mutual TLS with the configuration built by
//! `orgtrail_crypto::tls::client_config` (TLS 1.3, named suites, aws-lc-rs) and knows who it is
//! (the identity its certificate carries), so that every error says which collector, which
//! certificate, which role and which account were involved. [`profile`] reads and writes the
//! reader's named profiles (where the collector is, which certificate to use).

pub mod alerts;
pub mod profile;

use std::path::PathBuf;
use std::time::Duration;

use orgtrail_crypto::certs::PeerIdentity;
use orgtrail_crypto::tls::{CertFileError, Purpose};
use orgtrail_proto::channel::{TlsEndpoint, UrlError};
use orgtrail_proto::v1 as pb;
use orgtrail_proto::v1::ingest_client::IngestClient;
use orgtrail_proto::v1::integrity_client::IntegrityClient;
use orgtrail_proto::v1::query_client::QueryClient;
use orgtrail_store::{Attr, Counts, Query};
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;

/// The most bytes of one message the client decodes from the collector.
const MAX_DECODING_BYTES: usize = 64 << 20;
/// How long a connection (TCP and TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the collector is and who is asking: every path is a PEM file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// `https://HOST:PORT`.
    pub collector: String,
    /// The organization CA that signed the collector's certificate.
    pub ca: PathBuf,
    /// This client's certificate (a reader's: role auditor or admin; an agent's for ingest).
    pub cert: PathBuf,
    /// The certificate's private key.
    pub key: PathBuf,
    /// The name in the collector's certificate, when it differs from the URL's host.
    pub server_name: Option<String>,
}

/// What went wrong talking to a collector. Messages name the collector, the certificate and
/// its identity; they never carry keys or event contents.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The certificate, key or CA file cannot be used (unreadable, expired, wrong CA, ...).
    #[error(transparent)]
    Certificate(#[from] CertFileError),
    #[error("{}: not an orgtrail certificate (it carries no orgtrail role)", path.display())]
    NotOrgtrail { path: PathBuf },
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("TLS setup: {0}")]
    TlsSetup(String),
    #[error("cannot connect to the collector at {url} with certificate {} ({who}): {why}", cert.display())]
    Connect {
        url: String,
        cert: PathBuf,
        who: String,
        why: String,
    },
    #[error("the collector at {url} refused {who}: {message}")]
    Refused {
        url: String,
        who: String,
        message: String,
    },
    #[error("the collector at {url} is unavailable: {message}")]
    Unavailable { url: String, message: String },
    #[error("TLS with the collector at {url} failed for {who}: {why}")]
    Tls {
        url: String,
        who: String,
        why: String,
    },
    #[error("the collector at {url} answered: {message}")]
    Answered { url: String, message: String },
    #[error("the collector sent a bad account {account:?}")]
    BadAccount { account: String },
}

/// A connection to a collector, and who it is.
#[derive(Debug, Clone)]
pub struct Client {
    /// The query service.
    pub query: QueryClient<Channel>,
    /// The connection, shared by the other services' clients.
    channel: Channel,
    /// The identity this client's certificate carries.
    pub me: PeerIdentity,
    /// The collector's URL.
    pub url: String,
}

/// Every cause of an error, on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut why = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !why.contains(&text) {
            why = format!("{why}: {text}");
        }
        src = s.source();
    }
    why
}

impl Client {
    /// Checks this client's certificate as the collector will, then connects over mutual TLS.
    /// The certificate files are read on the calling thread (small files, once per command).
    pub async fn connect(remote: &Remote) -> Result<Client, ClientError> {
        let own =
            orgtrail_crypto::tls::load_own(&remote.cert, &remote.key, &remote.ca, Purpose::Client)?;
        let me = own
            .identity
            .clone()
            .ok_or_else(|| ClientError::NotOrgtrail {
                path: remote.cert.clone(),
            })?;
        let tls = orgtrail_crypto::tls::client_config(&own)
            .map_err(|e| ClientError::TlsSetup(orgtrail_crypto::tls::describe(&e)))?;
        let url = remote.collector.clone();
        let channel = TlsEndpoint::new(&url, remote.server_name.as_deref(), tls)?
            .configure(|e| e.connect_timeout(CONNECT_TIMEOUT))
            .connect()
            .await
            .map_err(|e| {
                let why = match orgtrail_crypto::tls::find_tls_error(&e) {
                    Some(t) => orgtrail_crypto::tls::describe(&t),
                    None => chain(&e),
                };
                ClientError::Connect {
                    url: url.clone(),
                    cert: remote.cert.clone(),
                    who: describe(&me),
                    why,
                }
            })?;
        Ok(Client {
            channel: channel.clone(),
            query: QueryClient::new(channel)
                .accept_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(MAX_DECODING_BYTES),
            me,
            url,
        })
    }

    /// The collector's integrity service on the same connection.
    pub fn integrity(&self) -> IntegrityClient<Channel> {
        IntegrityClient::new(self.channel.clone()).accept_compressed(CompressionEncoding::Zstd)
    }

    /// The collector's Insights administration on the same connection (an admin certificate).
    pub fn insights(&self) -> orgtrail_proto::v1::insights_client::InsightsClient<Channel> {
        orgtrail_proto::v1::insights_client::InsightsClient::new(self.channel.clone())
    }

    /// The collector's ingest service on the same connection (an agent's certificate).
    pub fn ingest(&self) -> IngestClient<Channel> {
        IngestClient::new(self.channel.clone())
    }

    /// An error from the collector, with who asked.
    pub fn explain(&self, s: tonic::Status) -> ClientError {
        let who = describe(&self.me);
        let url = self.url.clone();
        match s.code() {
            tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => ClientError::Refused {
                url,
                who,
                message: s.message().to_owned(),
            },
            tonic::Code::Unavailable => ClientError::Unavailable {
                url,
                message: s.message().to_owned(),
            },
            _ => match orgtrail_crypto::tls::find_tls_error(&s) {
                Some(t) => ClientError::Tls {
                    url,
                    who,
                    why: orgtrail_crypto::tls::describe(&t),
                },
                None => ClientError::Answered {
                    url,
                    message: s.message().to_owned(),
                },
            },
        }
    }
}

/// "auditor certificate NAME for accounts A, B" and the like.
pub fn describe(id: &PeerIdentity) -> String {
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
        Attr::EventCategory => pb::Attribute::EventCategory,
        Attr::InsightType => pb::Attribute::InsightType,
    }
}

/// The wire filters of a store query.
pub fn filters(q: &Query) -> Vec<pb::Filter> {
    q.filters
        .iter()
        .map(|(a, v)| pb::Filter {
            attribute: attribute(*a) as i32,
            value: v.clone(),
        })
        .collect()
}

/// A stored event from the wire.
pub fn from_pb(e: pb::StoredEvent) -> Result<orgtrail_store::StoredEvent, ClientError> {
    Ok(orgtrail_store::StoredEvent {
        seq: e.seq,
        account: e
            .account
            .parse()
            .map_err(|_| ClientError::BadAccount { account: e.account })?,
        time: orgtrail_core::Timestamp(e.time_ms),
        bytes: e.event,
    })
}

/// The counts a `Stats` answer carries.
pub fn counts_from_pb(r: pb::StatsResponse) -> Counts {
    Counts {
        groups: r.groups.into_iter().map(|g| (g.key, g.count)).collect(),
        total: r.total,
        limit_hit: r.limit_hit,
        exact: r.exact.then_some(orgtrail_store::TimeSpan {
            start: r.exact_start_ms,
            end: r.exact_end_ms,
        }),
        scan: (!r.scan_reason.is_empty()).then_some(orgtrail_store::ScanPart {
            reason: r.scan_reason,
            events: r.scanned_events,
            limit: r.scan_limit,
        }),
    }
}
