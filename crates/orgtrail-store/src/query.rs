//! Lookups: filters, time range, newest first, paged with an opaque token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use std::collections::HashMap;

use orgtrail_core::{AccountId, CloudTrailEvent, Timestamp};

use crate::error::StoreError;

/// Default page size.
pub const DEFAULT_PAGE: usize = 50;
/// Largest page size.
pub const MAX_PAGE: usize = 1000;

/// An indexed attribute: CloudTrail's LookupEvents attributes, plus account, region,
/// errorCode, eventCategory and insightDetails.insightType. (EventId is looked up through the
/// dedup index, see [`Query::event_id`].)
///
/// [`Attr::EventCategory`] and [`Attr::InsightType`] were added to the index later: a ledger
/// written before holds them only for the events stored after the upgrade, and a lookup by
/// them says so ([`Page::indexed_from`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Attr {
    Account,
    Region,
    EventName,
    EventSource,
    ReadOnly,
    Username,
    AccessKeyId,
    ResourceName,
    ResourceType,
    ErrorCode,
    /// `eventCategory` (`Management`, `Data`, `Insight`, ...; `Management` when absent, or
    /// `Insight` for an Insight event).
    EventCategory,
    /// `insightDetails.insightType` of an Insight event (`ApiCallRateInsight`,
    /// `ApiErrorRateInsight`).
    InsightType,
}

impl Attr {
    /// How many attributes there are.
    pub(crate) const COUNT: usize = 12;

    /// Whether the index holds this attribute only from some sequence number on in a store
    /// written before it was indexed (see [`Page::indexed_from`]).
    pub fn indexed_late(self) -> bool {
        matches!(self, Attr::EventCategory | Attr::InsightType)
    }

    /// A dense index, 0..COUNT.
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The domain-separation tag of this attribute in blind index values.
    pub(crate) fn tag(self) -> &'static [u8] {
        match self {
            Attr::Account => b"account",
            Attr::Region => b"region",
            Attr::EventName => b"eventName",
            Attr::EventSource => b"eventSource",
            Attr::ReadOnly => b"readOnly",
            Attr::Username => b"username",
            Attr::AccessKeyId => b"accessKeyId",
            Attr::ResourceName => b"resourceName",
            Attr::ResourceType => b"resourceType",
            Attr::ErrorCode => b"errorCode",
            Attr::EventCategory => b"eventCategory",
            Attr::InsightType => b"insightType",
        }
    }
}

/// What to look up. Every filter must match (AND); the time range is inclusive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub filters: Vec<(Attr, String)>,
    /// Events with this eventID (in any account, or in the accounts named by Account filters).
    pub event_id: Option<String>,
    /// Only events of these accounts (any of them); empty means every account. This is how a
    /// reader limited to some accounts is kept to them.
    pub accounts: Vec<AccountId>,
    pub start: Option<Timestamp>,
    pub end: Option<Timestamp>,
    /// Page size; 0 means [`DEFAULT_PAGE`]; capped at [`MAX_PAGE`].
    pub limit: usize,
    /// The `next_token` of the previous page.
    pub page_token: Option<String>,
}

/// Whether the event (of `account`) has `value` for `attr`, as the index would say.
pub fn attr_matches(ev: &CloudTrailEvent, account: &AccountId, attr: Attr, value: &str) -> bool {
    let f = ev.fields();
    match attr {
        Attr::Account => account.as_str() == value,
        Attr::Region => f.aws_region.as_deref() == Some(value),
        Attr::EventName => f.event_name == value,
        Attr::EventSource => f.event_source == value,
        Attr::ReadOnly => f.read_only.map(|r| if r { "true" } else { "false" }) == Some(value),
        Attr::Username => f.username() == Some(value),
        Attr::AccessKeyId => {
            f.user_identity
                .as_ref()
                .and_then(|u| u.access_key_id.as_deref())
                == Some(value)
        }
        Attr::ResourceName => f.resource_names.iter().any(|n| n == value),
        Attr::ResourceType => f.resource_types().contains(&value),
        Attr::ErrorCode => f.error_code.as_deref() == Some(value),
        Attr::EventCategory => f.event_category.as_str() == value,
        Attr::InsightType => f.insight_type.as_deref() == Some(value),
    }
}

impl Query {
    /// Whether an event matches this query's filters, eventID, accounts and time range (paging
    /// aside): what a live follower of the query should see.
    pub fn matches(&self, ev: &CloudTrailEvent, account: &AccountId, time: Timestamp) -> bool {
        self.start.is_none_or(|s| time >= s)
            && self.end.is_none_or(|e| time <= e)
            && (self.accounts.is_empty() || self.accounts.contains(account))
            && self
                .event_id
                .as_ref()
                .is_none_or(|id| ev.fields().event_id == *id)
            && self
                .filters
                .iter()
                .all(|(a, v)| attr_matches(ev, account, *a, v))
    }

    pub(crate) fn page_size(&self) -> usize {
        match self.limit {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        }
    }
}

/// One stored event.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Position in the log.
    pub seq: u64,
    /// The account the event belongs to.
    pub account: AccountId,
    /// eventTime.
    pub time: Timestamp,
    /// The exact bytes the event arrived with.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for StoredEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredEvent")
            .field("seq", &self.seq)
            .field("account", &self.account)
            .field("time", &self.time)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// A page of results, newest first.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub events: Vec<StoredEvent>,
    /// Pass as [`Query::page_token`] for the next page; `None` on the last page.
    pub next_token: Option<String>,
    /// `Some(n)` when a filter is on an attribute this store indexes only from sequence
    /// number `n` on ([`Attr::indexed_late`]: a store written before that attribute was
    /// indexed): the events stored before `n` were not searched by it, and the answer may
    /// miss some of them. `None`: the answer is complete.
    pub indexed_from: Option<u64>,
}

impl Page {
    /// A page of `events` (newest first); when `more` follow, the token points after the last.
    pub(crate) fn new(events: Vec<StoredEvent>, more: bool) -> Self {
        let next_token = if more {
            events.last().map(|e| {
                Cursor {
                    time: e.time.millis(),
                    seq: e.seq,
                }
                .encode()
            })
        } else {
            None
        };
        Page {
            events,
            next_token,
            indexed_from: None,
        }
    }
}

/// Position after which the next page starts: (eventTime ms, seq), newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Cursor {
    pub(crate) time: i64,
    pub(crate) seq: u64,
}

impl Cursor {
    pub(crate) fn encode(self) -> String {
        let mut b = Vec::with_capacity(17);
        b.push(1u8);
        b.extend_from_slice(&self.time.to_be_bytes());
        b.extend_from_slice(&self.seq.to_be_bytes());
        B64.encode(b)
    }

    pub(crate) fn decode(s: &str) -> Result<Self, StoreError> {
        let b = B64.decode(s).map_err(|_| StoreError::BadPageToken)?;
        if b.len() != 17 || b[0] != 1 {
            return Err(StoreError::BadPageToken);
        }
        let mut t = [0u8; 8];
        t.copy_from_slice(&b[1..9]);
        let mut s8 = [0u8; 8];
        s8.copy_from_slice(&b[9..17]);
        Ok(Cursor {
            time: i64::from_be_bytes(t),
            seq: u64::from_be_bytes(s8),
        })
    }
}

/// A field to group counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    Account,
    EventSource,
    EventName,
    /// The user as LookupEvents shows it.
    User,
    ErrorCode,
    /// awsRegion.
    Region,
}

impl Group {
    /// This group's value for an event; `-` when the event has none (e.g. no errorCode).
    pub fn key_of(self, ev: &CloudTrailEvent, account: &AccountId) -> String {
        let f = ev.fields();
        let v = match self {
            Group::Account => Some(account.as_str()),
            Group::EventSource => Some(f.event_source.as_str()),
            Group::EventName => Some(f.event_name.as_str()),
            Group::User => f.username(),
            Group::ErrorCode => f.error_code.as_deref(),
            Group::Region => f.aws_region.as_deref(),
        };
        v.unwrap_or("-").to_owned()
    }
}

/// Counts of matching events, grouped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// (one key per grouping field, count), largest first, then by key.
    pub groups: Vec<(Vec<String>, u64)>,
    /// Every matching event, also those in groups beyond the cap.
    pub total: u64,
    /// The bounded scan stopped at its limit of events: the part it counted covers only the
    /// newest matches.
    pub limit_hit: bool,
    /// The part of the range counted exactly from the counters kept at append time (whole UTC
    /// hours); `None` when the counters could not serve the query.
    pub exact: Option<TimeSpan>,
    /// What the counters could not serve, counted by a scan that decrypts a bounded number of
    /// events; `None` when nothing was scanned.
    pub scan: Option<ScanPart>,
}

/// A time range in ms since the epoch: `start` inclusive, `end` exclusive; `None` is open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeSpan {
    pub start: Option<i64>,
    pub end: Option<i64>,
}

/// The part of a count made by a bounded scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanPart {
    /// Why the counters could not serve it.
    pub reason: String,
    /// Events the scan counted (at most `limit`).
    pub events: u64,
    /// Most events the scan decrypts.
    pub limit: u64,
}

/// Accumulates [`Counts`].
#[derive(Debug, Default)]
pub(crate) struct Counter {
    map: HashMap<Vec<String>, u64>,
    total: u64,
}

impl Counter {
    pub(crate) fn add(&mut self, by: &[Group], ev: &CloudTrailEvent, account: &AccountId) {
        let key: Vec<String> = by.iter().map(|g| g.key_of(ev, account)).collect();
        *self.map.entry(key).or_default() += 1;
        self.total += 1;
    }

    /// Adds `n` events under `key`.
    pub(crate) fn add_n(&mut self, key: Vec<String>, n: u64) {
        *self.map.entry(key).or_default() += n;
        self.total += n;
    }

    pub(crate) fn finish(self, max_groups: usize) -> Counts {
        let mut groups: Vec<(Vec<String>, u64)> = self.map.into_iter().collect();
        groups.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        groups.truncate(max_groups);
        Counts {
            groups,
            total: self.total,
            limit_hit: false,
            exact: None,
            scan: None,
        }
    }
}
