//! The organization's certificates: a CA, and certificates that carry an identity.
//!
//! Identity lives in the certificate, as SAN URIs:
//! * `orgtrail://role/<agent|auditor|admin|server>` — exactly one;
//! * `orgtrail://account/<12 digits>` — an agent's account (exactly one); on an auditor
//!   certificate, the accounts it may read (none: every account);
//! * `orgtrail://org/<org id>` — the organization.
//!
//! The collector derives (role, account) from the verified peer certificate only, never from
//! anything a client sends. Keys are ECDSA P-256 (aws-lc-rs), written mode 0600. Renewal is
//! issuing again.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use orgtrail_core::{AccountId, Timestamp};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

use crate::keyring::write_secret_file;

/// What a certificate lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Ships one account's events.
    Agent,
    /// Reads events (possibly only some accounts').
    Auditor,
    /// Reads events and manages the collector.
    Admin,
    /// The collector itself.
    Server,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
            Role::Server => "server",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "agent" => Ok(Role::Agent),
            "auditor" => Ok(Role::Auditor),
            "admin" => Ok(Role::Admin),
            "server" => Ok(Role::Server),
            other => Err(format!(
                "unknown role {other:?}: expected agent, auditor, admin or server"
            )),
        }
    }
}

/// Errors of certificate handling.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{0}")]
    Invalid(String),
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Write(#[from] crate::CryptoError),
    #[error("not a certificate orgtrail can use: {0}")]
    Parse(String),
}

/// Who a certificate says its holder is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub role: Role,
    /// The agent's account, or the accounts an auditor may read.
    pub accounts: Vec<AccountId>,
    pub org: Option<String>,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// SHA-256 of the DER certificate, lowercase hex.
    pub fingerprint: String,
    /// Subject common name.
    pub name: String,
}

impl PeerIdentity {
    /// The single account of an agent certificate.
    pub fn agent_account(&self) -> Option<AccountId> {
        match (self.role, self.accounts.as_slice()) {
            (Role::Agent, [a]) => Some(*a),
            _ => None,
        }
    }
}

/// What to put in a new certificate.
#[derive(Debug, Clone)]
pub struct IssueRequest {
    pub role: Role,
    pub accounts: Vec<AccountId>,
    /// Common name (for people reading logs).
    pub name: String,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub days: u32,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// (year, month, day) of today plus `days` (UTC).
fn ymd_after(days: i64) -> (i32, u8, u8) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    let t = Timestamp::from_unix_secs(now + days * 86_400).to_string();
    let y = t[0..4].parse().unwrap_or(2000);
    let m = t[5..7].parse().unwrap_or(1);
    let d = t[8..10].parse().unwrap_or(1);
    (y, m, d)
}

fn uri(s: String) -> Result<SanType, CertError> {
    Ok(SanType::URI(s.try_into().map_err(|_| {
        CertError::Invalid("not an ASCII URI".into())
    })?))
}

fn random_serial() -> Result<SerialNumber, CertError> {
    let mut b = [0u8; 16];
    crate::random_bytes(&mut b)?;
    b[0] &= 0x7f;
    b[0] |= 0x01;
    Ok(SerialNumber::from(b.to_vec()))
}

fn read(path: &Path) -> Result<String, CertError> {
    std::fs::read_to_string(path).map_err(|source| CertError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Creates an organization CA in `dir`: `ca.pem` (the certificate everyone trusts) and `ca.key`
/// (mode 0600, keep it offline). Refuses to overwrite an existing CA key.
pub fn init_ca(dir: &Path, org: &str, days: u32) -> Result<(), CertError> {
    check_days(days)?;
    std::fs::create_dir_all(dir).map_err(|source| CertError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, org);
    dn.push(DnType::CommonName, format!("orgtrail CA {org}"));
    params.distinguished_name = dn;
    params.subject_alt_names = vec![uri(format!("orgtrail://org/{org}"))?];
    params.serial_number = Some(random_serial()?);
    let (y, m, d) = ymd_after(-1);
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = ymd_after(i64::from(days));
    params.not_after = rcgen::date_time_ymd(y, m, d);
    let cert = params.self_signed(&key)?;
    write_secret_file(&dir.join("ca.key"), key.serialize_pem().as_bytes(), true)?;
    std::fs::write(dir.join("ca.pem"), cert.pem()).map_err(|source| CertError::Read {
        path: dir.join("ca.pem"),
        source,
    })?;
    Ok(())
}

/// A validity of 0 days would issue a certificate that has already expired.
fn check_days(days: u32) -> Result<(), CertError> {
    if days == 0 {
        return Err(CertError::Invalid(
            "--days 0 would make a certificate that is already expired: give at least 1".into(),
        ));
    }
    Ok(())
}

/// Issues a certificate signed by the CA in `ca_dir`, written to `out.pem` and `out.key`
/// (mode 0600), valid from yesterday for `req.days` days (at least 1). Issuing again renews.
pub fn issue(ca_dir: &Path, req: &IssueRequest, out: &Path) -> Result<PeerIdentity, CertError> {
    check_days(req.days)?;
    issue_between(ca_dir, req, out, -1, i64::from(req.days))
}

/// Issues a certificate valid from `from_days` to `to_days` days after today (UTC dates;
/// negative is in the past), ignoring `req.days`. For tests and drills that need a
/// certificate that is expired or not yet valid; `to_days` must come after `from_days`.
pub fn issue_between(
    ca_dir: &Path,
    req: &IssueRequest,
    out: &Path,
    from_days: i64,
    to_days: i64,
) -> Result<PeerIdentity, CertError> {
    if to_days <= from_days {
        return Err(CertError::Invalid(format!(
            "a certificate valid from day {from_days} to day {to_days} is never valid"
        )));
    }
    match req.role {
        Role::Agent if req.accounts.len() != 1 => {
            return Err(CertError::Invalid(
                "an agent certificate names exactly one account (--account)".into(),
            ));
        }
        Role::Admin | Role::Server if !req.accounts.is_empty() => {
            return Err(CertError::Invalid(format!(
                "a {} certificate names no account",
                req.role
            )));
        }
        Role::Server if req.dns.is_empty() && req.ips.is_empty() => {
            return Err(CertError::Invalid(
                "a server certificate needs at least one --dns or --ip".into(),
            ));
        }
        _ => {}
    }
    let ca_key = KeyPair::from_pem(&read(&ca_dir.join("ca.key"))?)?;
    let ca_pem = read(&ca_dir.join("ca.pem"))?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)?;
    let org = org_of_ca(&ca_pem)?;

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    if let Some(o) = &org {
        dn.push(DnType::OrganizationName, o.as_str());
    }
    dn.push(DnType::CommonName, req.name.as_str());
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = match req.role {
        Role::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
        _ => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    let mut sans = vec![uri(format!("orgtrail://role/{}", req.role))?];
    for a in &req.accounts {
        sans.push(uri(format!("orgtrail://account/{a}"))?);
    }
    if let Some(o) = &org {
        sans.push(uri(format!("orgtrail://org/{o}"))?);
    }
    for d in &req.dns {
        sans.push(SanType::DnsName(d.clone().try_into().map_err(|_| {
            CertError::Invalid(format!("{d:?} is not a DNS name"))
        })?));
    }
    for ip in &req.ips {
        sans.push(SanType::IpAddress(*ip));
    }
    params.subject_alt_names = sans;
    params.serial_number = Some(random_serial()?);
    params.use_authority_key_identifier_extension = true;
    let (y, m, d) = ymd_after(from_days);
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = ymd_after(to_days);
    params.not_after = rcgen::date_time_ymd(y, m, d);
    let cert = params.signed_by(&key, &issuer)?;

    let key_path = out.with_extension("key");
    let _ = std::fs::remove_file(&key_path);
    write_secret_file(&key_path, key.serialize_pem().as_bytes(), true)?;
    let cert_path = out.with_extension("pem");
    std::fs::write(&cert_path, cert.pem()).map_err(|source| CertError::Read {
        path: cert_path,
        source,
    })?;
    identity_from_der(cert.der())
}

fn org_of_ca(pem: &str) -> Result<Option<String>, CertError> {
    let der = pem_to_der(pem)?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| CertError::Parse(e.to_string()))?;
    Ok(cert
        .subject()
        .iter_organization()
        .next()
        .and_then(|o| o.as_str().ok())
        .map(str::to_owned))
}

/// The DER of the first certificate in a PEM text.
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>, CertError> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| CertError::Parse(format!("not PEM: {e}")))?;
    Ok(p.contents)
}

/// Reads the identity a certificate carries. Used on certificates the TLS layer has already
/// verified against the organization CA.
pub fn identity_from_der(der: &[u8]) -> Result<PeerIdentity, CertError> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| CertError::Parse(e.to_string()))?;
    let mut role = None;
    let mut accounts = Vec::new();
    let mut org = None;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            let GeneralName::URI(u) = name else { continue };
            if let Some(r) = u.strip_prefix("orgtrail://role/") {
                if role.is_some() {
                    return Err(CertError::Parse("the certificate names two roles".into()));
                }
                role = Some(r.parse::<Role>().map_err(CertError::Parse)?);
            } else if let Some(a) = u.strip_prefix("orgtrail://account/") {
                accounts.push(
                    a.parse::<AccountId>()
                        .map_err(|e| CertError::Parse(e.to_string()))?,
                );
            } else if let Some(o) = u.strip_prefix("orgtrail://org/") {
                org = Some(o.to_owned());
            }
        }
    }
    let role = role.ok_or_else(|| {
        CertError::Parse("no orgtrail role in the certificate (SAN orgtrail://role/...)".into())
    })?;
    if role == Role::Agent && accounts.len() != 1 {
        return Err(CertError::Parse(
            "an agent certificate must name exactly one account".into(),
        ));
    }
    let name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok(PeerIdentity {
        role,
        accounts,
        org,
        serial: hex(cert.raw_serial()),
        fingerprint: hex(&crate::hash::sha256(der)),
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_issue_and_read_identities() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        init_ca(&ca, "o-example", 3650).unwrap();
        assert!(
            init_ca(&ca, "o-example", 3650).is_err(),
            "never overwrites a CA key"
        );
        let acct: AccountId = "123456789012".parse().unwrap();
        let id = issue(
            &ca,
            &IssueRequest {
                role: Role::Agent,
                accounts: vec![acct],
                name: "agent-1".into(),
                dns: vec![],
                ips: vec![],
                days: 30,
            },
            &dir.path().join("agent"),
        )
        .unwrap();
        assert_eq!(id.role, Role::Agent);
        assert_eq!(id.agent_account(), Some(acct));
        assert_eq!(id.org.as_deref(), Some("o-example"));
        assert_eq!(id.fingerprint.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("agent.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            let mode = std::fs::metadata(ca.join("ca.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let pem = std::fs::read_to_string(dir.path().join("agent.pem")).unwrap();
        assert_eq!(identity_from_der(&pem_to_der(&pem).unwrap()).unwrap(), id);
        // An agent names exactly one account; a server needs a name to serve.
        let bad = IssueRequest {
            role: Role::Agent,
            accounts: vec![],
            name: "x".into(),
            dns: vec![],
            ips: vec![],
            days: 1,
        };
        assert!(issue(&ca, &bad, &dir.path().join("bad")).is_err());
        // Zero days would be expired at once: refused, and nothing is written.
        let zero = IssueRequest {
            role: Role::Agent,
            accounts: vec![acct],
            name: "x".into(),
            dns: vec![],
            ips: vec![],
            days: 0,
        };
        let e = issue(&ca, &zero, &dir.path().join("zero")).unwrap_err();
        assert!(e.to_string().contains("--days 0"), "{e}");
        assert!(!dir.path().join("zero.pem").exists());
        assert!(init_ca(&dir.path().join("ca0"), "o", 0).is_err());
        let server = IssueRequest {
            role: Role::Server,
            accounts: vec![],
            name: "collector".into(),
            dns: vec!["localhost".into()],
            ips: vec!["127.0.0.1".parse().unwrap()],
            days: 30,
        };
        assert_eq!(
            issue(&ca, &server, &dir.path().join("server"))
                .unwrap()
                .role,
            Role::Server
        );
    }
}
