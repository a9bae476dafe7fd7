//! Authorization from the client certificate, never from the payload.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use orgtrail_core::AccountId;
use orgtrail_crypto::certs::{PeerIdentity, Role, identity_from_der};
use tonic::Status;

use crate::config::OrganizationConfig;

/// What a reader (auditor or admin certificate) may read.
#[derive(Debug, Clone)]
pub struct ReadScope {
    /// The certificate's name, for messages and logs.
    pub name: String,
    pub role: Role,
    /// The accounts it may read; empty means every account.
    pub accounts: Vec<AccountId>,
}

impl ReadScope {
    /// Refuses an account this reader may not read, saying which it may.
    pub fn check(&self, account: &AccountId) -> Result<(), Status> {
        if self.accounts.is_empty() || self.accounts.contains(account) {
            return Ok(());
        }
        let may: Vec<String> = self.accounts.iter().map(ToString::to_string).collect();
        Err(Status::permission_denied(format!(
            "certificate {} ({}) may read account{} {}, not {account}",
            self.name,
            self.role,
            if may.len() == 1 { "" } else { "s" },
            may.join(", ")
        )))
    }
}

#[derive(Debug, Default)]
struct Revoked {
    mtime: Option<SystemTime>,
    entries: HashSet<String>,
}

/// Decides who may do what, from verified peer certificates.
#[derive(Debug)]
pub struct Authorizer {
    allowed: Option<HashSet<AccountId>>,
    org: String,
    revoked_path: Option<PathBuf>,
    revoked: Mutex<Revoked>,
}

impl Authorizer {
    pub fn new(org: &OrganizationConfig) -> Self {
        let allowed = if org.allow_any_account && org.accounts.is_empty() {
            None
        } else {
            Some(org.accounts.iter().filter_map(|a| a.parse().ok()).collect())
        };
        Authorizer {
            allowed,
            org: org.id.clone(),
            revoked_path: org.revoked.clone(),
            revoked: Mutex::new(Revoked::default()),
        }
    }

    /// True when the certificate is on the revocation list (re-read if the file changed).
    fn is_revoked(&self, id: &PeerIdentity) -> bool {
        let Some(path) = &self.revoked_path else {
            return false;
        };
        let Ok(mut r) = self.revoked.lock() else {
            return true;
        };
        let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if mtime != r.mtime {
            r.mtime = mtime;
            r.entries = std::fs::read_to_string(path)
                .unwrap_or_default()
                .lines()
                .map(|l| {
                    l.split('#')
                        .next()
                        .unwrap_or_default()
                        .trim()
                        .to_ascii_lowercase()
                })
                .filter(|l| !l.is_empty())
                .map(|l| l.replace(':', "").trim_start_matches("sha256").to_owned())
                .collect();
            tracing::info!(entries = r.entries.len(), "revocation list loaded");
        }
        r.entries.contains(&id.serial) || r.entries.contains(&id.fingerprint)
    }

    /// The identity of the peer, checked against revocation and the organization.
    pub fn identify(&self, certs: Option<&[Vec<u8>]>) -> Result<PeerIdentity, Status> {
        let der = certs.and_then(|c| c.first()).ok_or_else(|| {
            Status::unauthenticated("no client certificate: orgtrail requires mutual TLS")
        })?;
        let id = identity_from_der(der)
            .map_err(|e| Status::unauthenticated(format!("client certificate: {e}")))?;
        if self.is_revoked(&id) {
            return Err(Status::unauthenticated(format!(
                "client certificate {} (serial {}) is revoked",
                id.name, id.serial
            )));
        }
        if let Some(o) = &id.org
            && *o != self.org
        {
            return Err(Status::permission_denied(format!(
                "client certificate {} is for organization {o}, not {}",
                id.name, self.org
            )));
        }
        Ok(id)
    }

    /// What a querying peer may read: auditor and admin certificates only; an auditor
    /// certificate naming accounts reads only those.
    pub fn read_scope(&self, certs: Option<&[Vec<u8>]>) -> Result<ReadScope, Status> {
        let id = self.identify(certs)?;
        match id.role {
            Role::Auditor => Ok(ReadScope {
                name: id.name,
                role: id.role,
                accounts: id.accounts,
            }),
            Role::Admin => Ok(ReadScope {
                name: id.name,
                role: id.role,
                accounts: Vec::new(),
            }),
            role => Err(Status::permission_denied(format!(
                "certificate {} has role {role}: only auditor and admin certificates may query",
                id.name
            ))),
        }
    }

    /// The account an ingesting peer may write: its agent certificate's account, if the
    /// organization admits it.
    pub fn ingest_account(&self, certs: Option<&[Vec<u8>]>) -> Result<AccountId, Status> {
        let id = self.identify(certs)?;
        if id.role != Role::Agent {
            return Err(Status::permission_denied(format!(
                "certificate {} has role {}: only agent certificates may ingest",
                id.name, id.role
            )));
        }
        let account = id
            .agent_account()
            .ok_or_else(|| Status::permission_denied("agent certificate without an account"))?;
        if let Some(allowed) = &self.allowed
            && !allowed.contains(&account)
        {
            return Err(Status::permission_denied(format!(
                "account {account} is not in organization {}",
                self.org
            )));
        }
        Ok(account)
    }
}
