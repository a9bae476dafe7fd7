//! The export's state file, `DIR/.orgtrail-export/state.json`: which store the archive
//! holds, where it says it lives in S3, what has been exported, the newest digest of each
//! chain, and the run in progress.
//!
//! What has been exported is a list of runs, each "every event with a sequence number up to
//! `through` that matches `filter`". An event is exported by a later run only if no
//! committed run covers it, so that rerunning an export (or running it again with another
//! range or other accounts) never writes an event twice. A run that covers an earlier one
//! (a wider filter, a later sequence number) replaces it, so the list stays short.
//!
//! A run is recorded as `pending` (flushed) before its first file is written, and committed
//! (with the chains' new heads) after its last digest is flushed. The next export first runs
//! a pending run again, with the same parameters, against the same committed state: it writes
//! the same files under the same names, replacing whatever the interrupted run left.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use orgtrail_core::{AccountId, Timestamp};
use serde::{Deserialize, Serialize};

use super::{ExportError, atomic};

pub(super) const STATE_VERSION: u32 = 1;

/// Which events an export run takes: eventTime in `[since, until)`, of `accounts` (all when
/// empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportFilter {
    /// Inclusive, on eventTime.
    #[serde(with = "opt_time")]
    pub since: Option<Timestamp>,
    /// Exclusive, on eventTime.
    #[serde(with = "opt_time")]
    pub until: Option<Timestamp>,
    /// Empty: every account.
    #[serde(serialize_with = "accounts_out")]
    pub accounts: BTreeSet<AccountId>,
}

impl ExportFilter {
    pub fn matches(&self, account: &AccountId, time: Timestamp) -> bool {
        self.since.is_none_or(|s| time >= s)
            && self.until.is_none_or(|u| time < u)
            && (self.accounts.is_empty() || self.accounts.contains(account))
    }

    /// True when every event `other` matches, this matches too.
    pub fn covers(&self, other: &ExportFilter) -> bool {
        let since = match (self.since, other.since) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(a), Some(b)) => a <= b,
        };
        let until = match (self.until, other.until) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(a), Some(b)) => a >= b,
        };
        let accounts = self.accounts.is_empty()
            || (!other.accounts.is_empty() && other.accounts.is_subset(&self.accounts));
        since && until && accounts
    }
}

/// One export run: every event up to sequence number `through` matching `filter`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Run {
    pub(super) through: u64,
    pub(super) filter: ExportFilter,
    /// Largest inflated log file of the run (a rerun of a pending run uses the same).
    pub(super) max_file_bytes: u64,
    /// gzip level of the run's log files (a rerun of a pending run uses the same); 6 in
    /// state files written before it was recorded.
    #[serde(default = "default_gzip_level")]
    pub(super) gzip_level: u32,
}

fn default_gzip_level() -> u32 {
    6
}

/// The newest digest of a chain: what the next digest links to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ChainHead {
    pub(super) key: String,
    /// Its digestEndTime.
    #[serde(with = "time")]
    pub(super) end: Timestamp,
    /// Hex SHA-256 of the inflated digest.
    pub(super) hash: String,
    /// Hex signature.
    pub(super) signature: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct State {
    pub(super) version: u32,
    /// The store's checkpoint origin, `orgtrail/<store id>`.
    pub(super) store: String,
    pub(super) bucket: String,
    pub(super) prefix: String,
    pub(super) org_id: Option<String>,
    pub(super) runs: Vec<Run>,
    pub(super) pending: Option<Run>,
    /// By `ACCOUNT/REGION`.
    pub(super) chains: BTreeMap<String, ChainHead>,
}

impl State {
    /// The sequence number below which every event `filter` matches is already exported.
    pub(super) fn done_through(&self, filter: &ExportFilter) -> u64 {
        self.runs
            .iter()
            .filter(|r| r.filter.covers(filter))
            .map(|r| r.through)
            .max()
            .unwrap_or(0)
    }

    /// True when a committed run exported this event.
    pub(super) fn exported(&self, seq: u64, account: &AccountId, time: Timestamp) -> bool {
        self.runs
            .iter()
            .any(|r| seq <= r.through && r.filter.matches(account, time))
    }

    /// Records `run` as done: runs it covers are dropped.
    pub(super) fn commit(&mut self, run: Run, chains: BTreeMap<String, ChainHead>) {
        self.runs
            .retain(|r| !(run.filter.covers(&r.filter) && run.through >= r.through));
        self.runs.push(run);
        self.chains = chains;
        self.pending = None;
    }
}

fn accounts_out<S: serde::Serializer>(a: &BTreeSet<AccountId>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(a.iter().map(AccountId::as_str))
}

mod time {
    use orgtrail_core::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(t)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(d)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

mod opt_time {
    use orgtrail_core::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.collect_str(t),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Timestamp>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| Timestamp::parse(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

pub(super) fn path(meta: &Path) -> PathBuf {
    meta.join("state.json")
}

pub(super) fn load(meta: &Path) -> Result<Option<State>, ExportError> {
    let p = path(meta);
    let text = match std::fs::read(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(atomic::io(&p, "reading")(e)),
    };
    let state: State = serde_json::from_slice(&text).map_err(|e| ExportError::State {
        path: p.clone(),
        reason: e.to_string(),
    })?;
    if state.version != STATE_VERSION {
        return Err(ExportError::State {
            path: p,
            reason: format!(
                "version {} (this orgtrail writes {STATE_VERSION})",
                state.version
            ),
        });
    }
    Ok(Some(state))
}

pub(super) fn save(meta: &Path, state: &State) -> Result<(), ExportError> {
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| ExportError::State {
        path: path(meta),
        reason: e.to_string(),
    })?;
    atomic::write(meta, &meta.join("state.json.tmp"), &path(meta), &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(since: Option<i64>, until: Option<i64>, accounts: &[&str]) -> ExportFilter {
        ExportFilter {
            since: since.map(Timestamp),
            until: until.map(Timestamp),
            accounts: accounts.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn covering_filters() {
        let all = f(None, None, &[]);
        let a = f(Some(10), Some(20), &["111122223333"]);
        assert!(all.covers(&a) && !a.covers(&all));
        assert!(a.covers(&f(Some(12), Some(20), &["111122223333"])));
        assert!(!a.covers(&f(Some(5), Some(20), &["111122223333"])));
        assert!(!a.covers(&f(Some(12), None, &["111122223333"])));
        assert!(!a.covers(&f(Some(12), Some(15), &[])));
        assert!(f(None, None, &["111122223333", "444455556666"]).covers(&a));
    }

    #[test]
    fn a_covering_run_replaces_the_runs_it_covers() {
        let acct: AccountId = "111122223333".parse().unwrap();
        let mut s = State {
            version: STATE_VERSION,
            store: "orgtrail/x".into(),
            bucket: "b".into(),
            prefix: String::new(),
            org_id: None,
            runs: vec![],
            pending: None,
            chains: BTreeMap::new(),
        };
        let run = |through, filter| Run {
            through,
            filter,
            max_file_bytes: 1,
            gzip_level: 6,
        };
        s.commit(run(10, f(Some(100), None, &[])), BTreeMap::new());
        s.commit(run(20, f(None, Some(50), &[])), BTreeMap::new());
        assert_eq!(s.runs.len(), 2);
        assert!(s.exported(5, &acct, Timestamp(200)));
        assert!(!s.exported(15, &acct, Timestamp(200)));
        assert!(s.exported(15, &acct, Timestamp(40)));
        assert!(!s.exported(15, &acct, Timestamp(70)));
        assert_eq!(s.done_through(&f(Some(100), None, &[])), 10);
        assert_eq!(s.done_through(&f(None, None, &[])), 0);
        s.commit(run(30, f(None, None, &[])), BTreeMap::new());
        assert_eq!(s.runs.len(), 1);
        assert_eq!(s.done_through(&f(Some(1), Some(2), &["111122223333"])), 30);
    }
}
