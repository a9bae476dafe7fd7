//! Authorization from the client certificate, never from the payload.

use std::collections::HashSet;
use std::sync::Arc;

use orgtrail_core::AccountId;
use orgtrail_crypto::certs::{PeerIdentity, Role, identity_from_der};
use tonic::Status;

use crate::config::OrganizationConfig;
use crate::revocation::Revocation;

/// What a reader (auditor or admin certificate) may read.
#[derive(Debug, Clone)]
pub struct ReadScope {
    /// The certificate's name, for messages and logs.
    pub name: String,
    pub role: Role,
    /// The accounts it may read; empty means every account.
    pub accounts: Vec<AccountId>,
    /// The certificate, for logs and revocation checks of long-lived calls.
    pub peer: PeerIdentity,
}

impl ReadScope {
    /// Refuses an account this reader may not read, saying which it may.
    pub fn check(&self, account: &AccountId) -> Result<(), Status> {
        if self.accounts.is_empty() || self.accounts.contains(account) {
            return Ok(());
        }
        let may: Vec<String> = self.accounts.iter().map(ToString::to_string).collect();
        let status = Status::permission_denied(format!(
            "certificate {} ({}) may read account{} {}, not {account}",
            self.name,
            self.role,
            if may.len() == 1 { "" } else { "s" },
            may.join(", ")
        ));
        Err(refused(Some(&self.peer), "query", status))
    }
}

/// Decides who may do what, from verified peer certificates. Every refusal is logged at warn
/// with the certificate's name, serial and the reason (never anything a client sent).
#[derive(Debug)]
pub struct Authorizer {
    allowed: Option<HashSet<AccountId>>,
    org: String,
    revocation: Arc<Revocation>,
}

/// An agent admitted to ingest: its account and certificate.
#[derive(Debug, Clone)]
pub struct IngestPeer {
    pub account: AccountId,
    pub id: PeerIdentity,
}

/// Logs a refusal at warn and hands the status back.
pub(crate) fn refused(id: Option<&PeerIdentity>, action: &str, status: Status) -> Status {
    tracing::warn!(
        certificate = %id.map_or("-", |i| i.name.as_str()),
        serial = %id.map_or("-", |i| i.serial.as_str()),
        %action,
        code = ?status.code(),
        reason = %status.message(),
        "refused"
    );
    status
}

impl Authorizer {
    pub fn new(org: &OrganizationConfig, revocation: Arc<Revocation>) -> Self {
        let allowed = if org.allow_any_account && org.accounts.is_empty() {
            None
        } else {
            Some(org.accounts.iter().copied().collect())
        };
        Authorizer {
            allowed,
            org: org.id.clone(),
            revocation,
        }
    }

    /// The revocation list in force.
    pub fn revocation(&self) -> &Arc<Revocation> {
        &self.revocation
    }

    /// The refusal of a revoked certificate.
    pub fn revoked_status(id: &PeerIdentity) -> Status {
        Status::unauthenticated(format!(
            "client certificate {} (serial {}) is revoked",
            id.name, id.serial
        ))
    }

    /// The identity of the peer, checked against revocation and the organization.
    fn identify(&self, certs: Option<&[Vec<u8>]>, action: &str) -> Result<PeerIdentity, Status> {
        let der = certs.and_then(|c| c.first()).ok_or_else(|| {
            refused(
                None,
                action,
                Status::unauthenticated("no client certificate: orgtrail requires mutual TLS"),
            )
        })?;
        let id = identity_from_der(der).map_err(|e| {
            refused(
                None,
                action,
                Status::unauthenticated(format!("client certificate: {e}")),
            )
        })?;
        if self.revocation.is_revoked(&id) {
            return Err(refused(Some(&id), action, Self::revoked_status(&id)));
        }
        if let Some(o) = &id.org
            && *o != self.org
        {
            let status = Status::permission_denied(format!(
                "client certificate {} is for organization {o}, not {}",
                id.name, self.org
            ));
            return Err(refused(Some(&id), action, status));
        }
        Ok(id)
    }

    /// An admin certificate, for an administrative action (`action` names it in logs, `verb`
    /// in the refusal: "only admin certificates may {verb}"); any other role is refused with
    /// PERMISSION_DENIED.
    pub fn admin(
        &self,
        certs: Option<&[Vec<u8>]>,
        action: &str,
        verb: &str,
    ) -> Result<PeerIdentity, Status> {
        let id = self.identify(certs, action)?;
        if id.role == Role::Admin {
            return Ok(id);
        }
        let status = Status::permission_denied(format!(
            "certificate {} has role {}: only admin certificates may {verb}",
            id.name, id.role
        ));
        Err(refused(Some(&id), action, status))
    }

    /// What a querying peer may read: auditor and admin certificates only; an auditor
    /// certificate naming accounts reads only those.
    pub fn read_scope(&self, certs: Option<&[Vec<u8>]>) -> Result<ReadScope, Status> {
        self.reader_scope(certs, "query", "query")
    }

    /// [`Authorizer::read_scope`] for another reading service: `action` names it in logs,
    /// `verb` in the refusal ("only auditor and admin certificates may {verb}").
    pub fn reader_scope(
        &self,
        certs: Option<&[Vec<u8>]>,
        action: &str,
        verb: &str,
    ) -> Result<ReadScope, Status> {
        let id = self.identify(certs, action)?;
        match id.role {
            Role::Auditor => Ok(ReadScope {
                name: id.name.clone(),
                role: id.role,
                accounts: id.accounts.clone(),
                peer: id,
            }),
            Role::Admin => Ok(ReadScope {
                name: id.name.clone(),
                role: id.role,
                accounts: Vec::new(),
                peer: id,
            }),
            role => {
                let status = Status::permission_denied(format!(
                    "certificate {} has role {role}: only auditor and admin certificates may {verb}",
                    id.name
                ));
                Err(refused(Some(&id), action, status))
            }
        }
    }

    /// The account an ingesting peer may write (its agent certificate's account, if the
    /// organization admits it), with the certificate.
    pub fn ingest_peer(&self, certs: Option<&[Vec<u8>]>) -> Result<IngestPeer, Status> {
        let id = self.identify(certs, "ingest")?;
        if id.role != Role::Agent {
            let status = Status::permission_denied(format!(
                "certificate {} has role {}: only agent certificates may ingest",
                id.name, id.role
            ));
            return Err(refused(Some(&id), "ingest", status));
        }
        let Some(account) = id.agent_account() else {
            let status = Status::permission_denied("agent certificate without an account");
            return Err(refused(Some(&id), "ingest", status));
        };
        if let Some(allowed) = &self.allowed
            && !allowed.contains(&account)
        {
            let status = Status::permission_denied(format!(
                "account {account} is not in organization {}",
                self.org
            ));
            return Err(refused(Some(&id), "ingest", status));
        }
        Ok(IngestPeer { account, id })
    }
}
