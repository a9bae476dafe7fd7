//! TLS: the checks a process makes on its own certificate before it starts, the one place
//! where orgtrail's TLS configurations are built (the collector's server side, and the client
//! side of agents, the CLI and the benches), and precise words for what goes wrong in a
//! handshake.
//!
//! Both configurations use the aws-lc-rs provider, TLS 1.3 only, the cipher suites named in
//! [`CIPHER_SUITES`], ALPN `h2`, and mutual authentication against the organization CA. No
//! other crate builds a `rustls::ServerConfig` or `ClientConfig`.
//!
//! Both sides check their own certificate, key and CA with the very verifier the peer will
//! use (rustls' webpki, aws-lc-rs): a server certificate must chain to the configured CA and
//! carry the serverAuth extended key usage, a client certificate clientAuth; both must be
//! valid now and match their key. A failure names the file and the problem, so a bad
//! certificate is refused at start rather than seen later as "transport error".

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use orgtrail_core::Timestamp;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    AlertDescription, CertificateError, DigitallySignedStruct, DistinguishedName, Error,
    RootCertStore, SignatureScheme,
};

pub use rustls;

/// What a process uses its certificate for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The collector: serverAuth.
    Server,
    /// An agent or a reader: clientAuth.
    Client,
}

/// A certificate, key or CA file that cannot be used, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct CertFileError {
    pub path: PathBuf,
    pub problem: String,
}

fn file_error(path: &Path, problem: impl Into<String>) -> CertFileError {
    CertFileError {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

/// A process's own certificate chain and key, checked against its CA.
#[derive(Debug)]
pub struct OwnCertificate {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// The CA the peers' certificates must chain to.
    pub roots: Arc<RootCertStore>,
    /// The identity the certificate carries, when it carries one.
    pub identity: Option<crate::certs::PeerIdentity>,
}

/// The TLS 1.3 cipher suites orgtrail offers and accepts, in order of preference.
pub const CIPHER_SUITES: [rustls::SupportedCipherSuite; 3] = [
    rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_256_GCM_SHA384,
    rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256,
    rustls::crypto::aws_lc_rs::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
];

/// The only protocol version orgtrail speaks.
const VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// aws-lc-rs, restricted to [`CIPHER_SUITES`] (its default key exchange groups).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        cipher_suites: CIPHER_SUITES.to_vec(),
        ..rustls::crypto::aws_lc_rs::default_provider()
    })
}

fn read(path: &Path) -> Result<Vec<u8>, CertFileError> {
    std::fs::read(path).map_err(|e| file_error(path, format!("cannot read it: {e}")))
}

/// Reads the certificates of a PEM file (at least one).
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertFileError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// Reads the CA certificates a peer's certificate must chain to.
pub fn read_roots(path: &Path) -> Result<Arc<RootCertStore>, CertFileError> {
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(read_certificates(path)?);
    if added == 0 {
        return Err(file_error(path, "holds no usable CA certificate"));
    }
    Ok(Arc::new(roots))
}

/// Reads a certificate, its key and the CA, and checks them as the peer will: the key matches
/// the certificate, the certificate chains to the CA, is valid now, and is meant for
/// `purpose` (extended key usage). Every refusal names the file and the problem.
pub fn load_own(
    cert: &Path,
    key: &Path,
    ca: &Path,
    purpose: Purpose,
) -> Result<OwnCertificate, CertFileError> {
    let chain = read_certificates(cert)?;
    let key_pem = read(key)?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        file_error(
            key,
            format!("not a PEM private key (PKCS#8, SEC1 or PKCS#1): {e}"),
        )
    })?;
    let roots = read_roots(ca)?;
    let provider = provider();
    let signing = provider
        .key_provider
        .load_private_key(private.clone_key())
        .map_err(|e| file_error(key, format!("cannot use the key: {e}")))?;
    match CertifiedKey::new(chain.clone(), signing).keys_match() {
        Ok(()) | Err(Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(file_error(
                key,
                format!("is not the key of the certificate {}", cert.display()),
            ));
        }
        Err(e) => return Err(file_error(cert, describe(&e))),
    }
    let now = UnixTime::now();
    let verified = match purpose {
        Purpose::Server => {
            let parsed = ParsedCertificate::try_from(&chain[0])
                .map_err(|e| file_error(cert, describe(&e)))?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &parsed,
                &roots,
                &chain[1..],
                now,
                provider.signature_verification_algorithms.all,
            )
        }
        Purpose::Client => WebPkiClientVerifier::builder_with_provider(roots.clone(), provider)
            .build()
            .map_err(|e| file_error(ca, format!("cannot verify with this CA: {e}")))?
            .verify_client_cert(&chain[0], &chain[1..], now)
            .map(|_| ()),
    };
    verified.map_err(|e| {
        let mut problem = describe(&e);
        if matches!(
            e,
            Error::InvalidCertificate(
                CertificateError::UnknownIssuer | CertificateError::BadSignature
            )
        ) {
            problem.push_str(&format!(" (the CA is {})", ca.display()));
        }
        file_error(cert, problem)
    })?;
    let identity = crate::certs::identity_from_der(&chain[0]).ok();
    Ok(OwnCertificate {
        chain,
        key: private,
        roots,
        identity,
    })
}

fn time(t: UnixTime) -> String {
    Timestamp::from_unix_secs(i64::try_from(t.as_secs()).unwrap_or(i64::MAX / 1000)).to_string()
}

/// A precise, non-secret account of a TLS failure, for logs and error messages.
pub fn describe(e: &Error) -> String {
    use CertificateError as C;
    match e {
        Error::InvalidCertificate(c) => match c {
            C::Expired => "the certificate has expired".into(),
            C::ExpiredContext { time: now, not_after } => format!(
                "the certificate expired at {} (now {})",
                time(*not_after),
                time(*now)
            ),
            C::NotValidYet => "the certificate is not valid yet".into(),
            C::NotValidYetContext { time: now, not_before } => format!(
                "the certificate is not valid before {} (now {})",
                time(*not_before),
                time(*now)
            ),
            C::UnknownIssuer => "unknown issuer: the certificate was not issued by a trusted CA".into(),
            C::BadSignature => "bad signature: the certificate was not signed by the trusted CA (another CA of the same name?)".into(),
            C::InvalidPurpose => "wrong key usage: the certificate is not meant for this use (extended key usage)".into(),
            C::InvalidPurposeContext { required, presented } => {
                let presented: Vec<String> = presented.iter().map(ToString::to_string).collect();
                format!(
                    "wrong key usage: the certificate is not valid for {required} (its extended key usage: {})",
                    if presented.is_empty() { "none".to_owned() } else { presented.join(", ") }
                )
            }
            C::NotValidForName => "the certificate is not valid for the name asked for".into(),
            C::NotValidForNameContext { expected, presented } => format!(
                "the certificate is not valid for {expected:?} (it names {})",
                presented.join(", ")
            ),
            C::Revoked => "the certificate is revoked".into(),
            other => format!("invalid certificate: {other}"),
        },
        Error::NoCertificatesPresented => {
            "certificate required: the client presented no certificate".into()
        }
        Error::AlertReceived(a) => match a {
            AlertDescription::CertificateExpired => {
                "the peer refused this certificate: expired or not yet valid".into()
            }
            AlertDescription::UnknownCA => {
                "the peer refused this certificate: unknown issuer (not issued by a CA it trusts)"
                    .into()
            }
            AlertDescription::CertificateRequired => {
                "the peer requires a client certificate (certificate required)".into()
            }
            AlertDescription::UnsupportedCertificate => {
                "the peer refused this certificate: wrong key usage".into()
            }
            AlertDescription::BadCertificate => {
                "the peer refused this certificate as bad (malformed, or the wrong name)".into()
            }
            AlertDescription::DecryptError => {
                "the peer could not verify this certificate's signature (issued by another CA of the same name?)".into()
            }
            AlertDescription::CertificateRevoked => {
                "the peer refused this certificate: revoked".into()
            }
            other => format!("the peer ended the handshake with TLS alert {other:?}"),
        },
        Error::InvalidMessage(_) | Error::InappropriateMessage { .. } => {
            format!("the peer does not speak TLS (plaintext?): {e}")
        }
        other => other.to_string(),
    }
}

/// Alerts a peer sends when it refuses a certificate, by the name rustls prints.
const ALERTS: [AlertDescription; 10] = [
    AlertDescription::CertificateExpired,
    AlertDescription::UnknownCA,
    AlertDescription::CertificateRequired,
    AlertDescription::UnsupportedCertificate,
    AlertDescription::BadCertificate,
    AlertDescription::DecryptError,
    AlertDescription::CertificateRevoked,
    AlertDescription::CertificateUnknown,
    AlertDescription::AccessDenied,
    AlertDescription::HandshakeFailure,
];

/// The first rustls error in an error's source chain, looking through `std::io::Error`s
/// (which hide their inner error from `source()`). HTTP/2 keeps only the text of an I/O
/// error, so a "received fatal alert: NAME" text is read back as that alert.
pub fn find_tls_error(e: &(dyn std::error::Error + 'static)) -> Option<Error> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(t) = e.downcast_ref::<Error>() {
            return Some(t.clone());
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(t) = io.get_ref().and_then(|i| i.downcast_ref::<Error>()) {
                return Some(t.clone());
            }
            if let Some(name) = io
                .get_ref()
                .map(ToString::to_string)
                .as_deref()
                .and_then(|m| m.strip_prefix("received fatal alert: "))
                && let Some(a) = ALERTS.iter().find(|a| format!("{a:?}") == name)
            {
                return Some(Error::AlertReceived(*a));
            }
        }
        next = e.source();
    }
    None
}

/// Whether a TLS failure seen by a client will not go away by retrying: the peer refused this
/// client's certificate, or the server's certificate is not from the trusted CA or not for the
/// name. (An expired server certificate is the server's to renew: retried.)
pub fn is_permanent_for_client(e: &Error) -> bool {
    use CertificateError as C;
    match e {
        Error::AlertReceived(a) => matches!(
            a,
            AlertDescription::CertificateExpired
                | AlertDescription::UnknownCA
                | AlertDescription::CertificateRequired
                | AlertDescription::UnsupportedCertificate
                | AlertDescription::BadCertificate
                | AlertDescription::DecryptError
                | AlertDescription::CertificateRevoked
                | AlertDescription::CertificateUnknown
                | AlertDescription::AccessDenied
        ),
        Error::InvalidCertificate(c) => matches!(
            c,
            C::UnknownIssuer
                | C::BadSignature
                | C::InvalidPurpose
                | C::InvalidPurposeContext { .. }
                | C::NotValidForName
                | C::NotValidForNameContext { .. }
                | C::Revoked
        ),
        _ => false,
    }
}

/// A client certificate refused during the handshake: who it says it is, and why.
#[derive(Debug, Clone)]
pub struct RefusedCertificate {
    /// Subject common name ("" when it has none).
    pub name: String,
    /// Serial number, lowercase hex ("" when the certificate cannot be parsed).
    pub serial: String,
    pub reason: String,
}

fn refused(der: &CertificateDer<'_>, e: &Error) -> RefusedCertificate {
    let (name, serial) = match x509_parser::parse_x509_certificate(der) {
        Ok((_, c)) => (
            c.subject()
                .iter_common_name()
                .next()
                .and_then(|n| n.as_str().ok())
                .unwrap_or_default()
                .to_owned(),
            c.raw_serial().iter().map(|b| format!("{b:02x}")).collect(),
        ),
        Err(_) => (String::new(), String::new()),
    };
    RefusedCertificate {
        name,
        serial,
        reason: describe(e),
    }
}

/// Called with every client certificate the handshake refuses.
pub type OnRefused = Arc<dyn Fn(&RefusedCertificate) + Send + Sync>;

/// The webpki client verifier, reporting each certificate it refuses.
struct ReportingVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    on_refused: OnRefused,
}

impl fmt::Debug for ReportingVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReportingVerifier").finish_non_exhaustive()
    }
}

impl ClientCertVerifier for ReportingVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
            .inspect_err(|e| (self.on_refused)(&refused(end_entity, e)))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The collector's TLS configuration: its own (checked) certificate, client certificates
/// required and verified against the organization CA, HTTP/2 by ALPN, aws-lc-rs, TLS 1.3 with
/// [`CIPHER_SUITES`]. `on_refused` hears of every client certificate the handshake refuses.
pub fn server_config(
    own: &OwnCertificate,
    on_refused: OnRefused,
) -> Result<Arc<rustls::ServerConfig>, Error> {
    let provider = provider();
    let inner = WebPkiClientVerifier::builder_with_provider(own.roots.clone(), provider.clone())
        .build()
        .map_err(|e| Error::General(format!("client verifier: {e}")))?;
    let verifier = Arc::new(ReportingVerifier { inner, on_refused });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(own.chain.clone(), own.key.clone_key())?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The TLS configuration of a client of the collector (an agent, a reader, a bench): its own
/// (checked) certificate presented to the collector, the collector's certificate verified
/// against the organization CA, HTTP/2 by ALPN, aws-lc-rs, TLS 1.3 with [`CIPHER_SUITES`].
pub fn client_config(own: &OwnCertificate) -> Result<Arc<rustls::ClientConfig>, Error> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .with_root_certificates(own.roots.clone())
        .with_client_auth_cert(own.chain.clone(), own.key.clone_key())?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The TLS configuration of orgtrail as a client of a service outside the organization's PKI
/// (an alert sink's webhook receiver or NATS server): the service's certificate verified
/// against the CA certificates of `ca` (a PEM bundle, for a private CA), else against Mozilla's
/// roots compiled in (`webpki-roots`; not the system's store, which the FROM-scratch image does
/// not have); with `own` = (certificate, key), that certificate presented for mutual TLS.
/// aws-lc-rs with its default suites, TLS 1.3 and 1.2 (services outside our control may not
/// speak 1.3 yet); no ALPN (the caller sets it). Every refusal names the file and the problem.
pub fn external_client_config(
    ca: Option<&Path>,
    own: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, CertFileError> {
    let roots = match ca {
        Some(ca) => read_roots(ca)?,
        None => Arc::new(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        }),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .map_err(|e| file_error(Path::new("TLS"), describe(&e)))?
        .with_root_certificates(roots);
    match own {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = read_certificates(cert)?;
            let key_pem = read(key)?;
            let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
                file_error(
                    key,
                    format!("not a PEM private key (PKCS#8, SEC1 or PKCS#1): {e}"),
                )
            })?;
            builder
                .with_client_auth_cert(chain, private)
                .map_err(|e| match e {
                    Error::InconsistentKeys(_) => file_error(
                        key,
                        format!("is not the key of the certificate {}", cert.display()),
                    ),
                    e => file_error(cert, describe(&e)),
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{IssueRequest, Role, init_ca, issue};

    fn req(role: Role, days: u32) -> IssueRequest {
        IssueRequest {
            role,
            accounts: if role == Role::Agent {
                vec!["123456789012".parse().unwrap()]
            } else {
                vec![]
            },
            name: format!("{role}-test"),
            dns: if role == Role::Server {
                vec!["localhost".into()]
            } else {
                vec![]
            },
            ips: vec![],
            days,
        }
    }

    #[test]
    fn own_certificates_are_checked_like_the_peer_will() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        init_ca(&d.join("ca"), "o-example", 30).unwrap();
        init_ca(&d.join("other"), "o-example", 30).unwrap();
        issue(&d.join("ca"), &req(Role::Server, 30), &d.join("server")).unwrap();
        issue(&d.join("ca"), &req(Role::Agent, 30), &d.join("agent")).unwrap();
        issue(&d.join("other"), &req(Role::Agent, 30), &d.join("stranger")).unwrap();
        let ca = d.join("ca/ca.pem");
        let p = |n: &str| d.join(n);

        let own = load_own(&p("server.pem"), &p("server.key"), &ca, Purpose::Server).unwrap();
        assert_eq!(own.identity.unwrap().role, Role::Server);
        load_own(&p("agent.pem"), &p("agent.key"), &ca, Purpose::Client).unwrap();

        // A client certificate used as a server's: wrong key usage.
        let e = load_own(&p("agent.pem"), &p("agent.key"), &ca, Purpose::Server).unwrap_err();
        assert_eq!(e.path, p("agent.pem"));
        assert!(e.problem.contains("wrong key usage"), "{e}");
        assert!(e.problem.contains("server authentication"), "{e}");
        let e = load_own(&p("server.pem"), &p("server.key"), &ca, Purpose::Client).unwrap_err();
        assert!(e.problem.contains("client authentication"), "{e}");

        // The key of another certificate.
        let e = load_own(&p("server.pem"), &p("agent.key"), &ca, Purpose::Server).unwrap_err();
        assert_eq!(e.path, p("agent.key"));
        assert!(
            e.problem.contains("is not the key of the certificate"),
            "{e}"
        );

        // Another CA (of the same name).
        let e = load_own(&p("stranger.pem"), &p("stranger.key"), &ca, Purpose::Client).unwrap_err();
        assert_eq!(e.path, p("stranger.pem"));
        assert!(e.problem.contains("the CA is"), "{e}");

        // Not a certificate at all; a missing file.
        std::fs::write(p("junk.pem"), "hello").unwrap();
        let e = load_own(&p("junk.pem"), &p("agent.key"), &ca, Purpose::Client).unwrap_err();
        assert!(e.problem.contains("no PEM certificate"), "{e}");
        let e = load_own(&p("nope.pem"), &p("agent.key"), &ca, Purpose::Client).unwrap_err();
        assert!(e.problem.contains("cannot read it"), "{e}");
    }

    /// Moves TLS records between two in-memory connections until neither has more to say.
    fn exchange(
        c: &mut rustls::ClientConnection,
        s: &mut rustls::ServerConnection,
    ) -> Result<(), Error> {
        for _ in 0..20 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            let moved = !buf.is_empty();
            s.read_tls(&mut &buf[..]).unwrap();
            s.process_new_packets()?;
            let mut back = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut back).unwrap();
            }
            let answered = !back.is_empty();
            c.read_tls(&mut &back[..]).unwrap();
            c.process_new_packets()?;
            if !moved && !answered {
                return Ok(());
            }
        }
        Ok(())
    }

    #[test]
    fn client_and_server_speak_tls13_with_the_named_suites_only() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        init_ca(&d.join("ca"), "o-example", 30).unwrap();
        issue(&d.join("ca"), &req(Role::Server, 30), &d.join("server")).unwrap();
        issue(&d.join("ca"), &req(Role::Auditor, 30), &d.join("reader")).unwrap();
        let ca = d.join("ca/ca.pem");
        let server = load_own(
            &d.join("server.pem"),
            &d.join("server.key"),
            &ca,
            Purpose::Server,
        )
        .unwrap();
        let reader = load_own(
            &d.join("reader.pem"),
            &d.join("reader.key"),
            &ca,
            Purpose::Client,
        )
        .unwrap();
        let sc = server_config(&server, Arc::new(|_| {})).unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();

        let mut c =
            rustls::ClientConnection::new(client_config(&reader).unwrap(), name.clone()).unwrap();
        let mut s = rustls::ServerConnection::new(sc.clone()).unwrap();
        exchange(&mut c, &mut s).unwrap();
        assert!(!c.is_handshaking() && !s.is_handshaking());
        assert_eq!(c.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
        let suite = c.negotiated_cipher_suite().unwrap().suite();
        assert!(
            CIPHER_SUITES.iter().any(|s| s.suite() == suite),
            "{suite:?}"
        );
        assert_eq!(c.alpn_protocol(), Some(&b"h2"[..]));
        // The server saw the reader's certificate.
        assert!(s.peer_certificates().is_some_and(|p| !p.is_empty()));

        // A client that offers TLS 1.2 only is refused by the server.
        let old = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(reader.roots.clone())
        .with_client_auth_cert(reader.chain.clone(), reader.key.clone_key())
        .unwrap();
        let mut c = rustls::ClientConnection::new(Arc::new(old), name).unwrap();
        let mut s = rustls::ServerConnection::new(sc).unwrap();
        let e = exchange(&mut c, &mut s).unwrap_err();
        assert!(
            matches!(e, Error::PeerIncompatible(_)),
            "a TLS 1.2 client is refused: {e:?}"
        );
    }

    #[test]
    fn expiry_is_described_with_its_time() {
        let e = Error::InvalidCertificate(CertificateError::ExpiredContext {
            time: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_700_000_000)),
            not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_600_000_000)),
        });
        let text = describe(&e);
        assert!(text.contains("expired at 2020-09-13T12:26:40"), "{text}");
        assert!(!is_permanent_for_client(&e), "the server's to renew");
        assert!(is_permanent_for_client(&Error::AlertReceived(
            AlertDescription::CertificateExpired
        )));
        let io = std::io::Error::other(Error::AlertReceived(AlertDescription::UnknownCA));
        let found = find_tls_error(&io).unwrap();
        assert!(describe(&found).contains("unknown issuer"));
        // As HTTP/2 hands it on: the text only.
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "received fatal alert: CertificateExpired",
        );
        assert_eq!(
            find_tls_error(&io),
            Some(Error::AlertReceived(AlertDescription::CertificateExpired))
        );
        let io = std::io::Error::other("received fatal alert: Nonsense");
        assert_eq!(find_tls_error(&io), None);
    }

    #[test]
    fn an_external_client_configuration_names_the_file_it_cannot_use() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        init_ca(&d.join("ca"), "o-example", 30).unwrap();
        issue(&d.join("ca"), &req(Role::Admin, 30), &d.join("c")).unwrap();
        issue(&d.join("ca"), &req(Role::Agent, 30), &d.join("other")).unwrap();
        let ca = d.join("ca/ca.pem");
        let p = |n: &str| d.join(n);
        assert!(external_client_config(Some(&ca), None).is_ok());
        assert!(external_client_config(Some(&ca), Some((&p("c.pem"), &p("c.key")))).is_ok());
        let e = external_client_config(Some(&p("missing.pem")), None).unwrap_err();
        assert_eq!(e.path, p("missing.pem"));
        let e =
            external_client_config(Some(&ca), Some((&p("c.pem"), &p("other.key")))).unwrap_err();
        assert_eq!(e.path, p("other.key"), "{e}");
        assert!(
            e.problem.contains("is not the key of the certificate"),
            "{e}"
        );
    }
}
