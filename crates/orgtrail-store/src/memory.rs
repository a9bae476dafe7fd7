//! An in-memory [`EventStore`]: the reference model the sled ledger is checked against (the
//! conformance suite runs on both, and a property test compares them operation by operation).
//! It holds plaintext in memory and persists nothing; it is not for production.

use std::collections::HashMap;
use std::sync::Mutex;

use orgtrail_core::{AccountId, CloudTrailEvent};

use crate::ledger::{AppendOutcome, Appended, Stats};
use crate::query::{Counter, Counts, Cursor, Group, Page, Query, StoredEvent};
use crate::{EventStore, StoreError};

#[derive(Debug, Default)]
struct Inner {
    events: Vec<(StoredEvent, CloudTrailEvent)>,
    by_id: HashMap<(AccountId, String), u64>,
}

/// The reference model.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl EventStore for MemoryStore {
    /// Dedup in the order given; then sequence numbers account by account, each account's new
    /// events in the order given (the ledger's rule for the events of one group commit, which
    /// one call is when calls do not overlap).
    fn append_events(
        &self,
        events: &[(CloudTrailEvent, AccountId)],
    ) -> Result<AppendOutcome, StoreError> {
        enum Slot {
            Done(Appended),
            New(usize),
            InCall(usize, bool),
        }
        let mut inner = self.inner.lock().map_err(|_| StoreError::WriterGone)?;
        let mut slots = Vec::with_capacity(events.len());
        let mut fresh: Vec<usize> = Vec::new();
        let mut in_call: HashMap<(AccountId, &str), usize> = HashMap::new();
        for (n, (ev, account)) in events.iter().enumerate() {
            let id = ev.fields().event_id.as_str();
            if let Some(&j) = in_call.get(&(*account, id)) {
                let same = events[fresh[j]].0.bytes() == ev.bytes();
                slots.push(Slot::InCall(j, same));
                continue;
            }
            if let Some(&seq) = inner.by_id.get(&(*account, id.to_owned())) {
                let same = inner.events[(seq - 1) as usize].0.bytes == ev.bytes();
                slots.push(Slot::Done(if same {
                    Appended::Duplicate(seq)
                } else {
                    Appended::Conflict(seq)
                }));
                continue;
            }
            in_call.insert((*account, id), fresh.len());
            slots.push(Slot::New(fresh.len()));
            fresh.push(n);
        }
        let mut order: Vec<usize> = (0..fresh.len()).collect();
        order.sort_by_key(|&j| events[fresh[j]].1);
        let mut seq_of = vec![0u64; fresh.len()];
        for j in order {
            let (ev, account) = &events[fresh[j]];
            let seq = inner.events.len() as u64 + 1;
            seq_of[j] = seq;
            inner
                .by_id
                .insert((*account, ev.fields().event_id.clone()), seq);
            inner.events.push((
                StoredEvent {
                    seq,
                    account: *account,
                    time: ev.fields().event_time,
                    bytes: ev.bytes().to_vec(),
                },
                ev.clone(),
            ));
        }
        let results = slots
            .into_iter()
            .map(|s| match s {
                Slot::Done(a) => a,
                Slot::New(j) => Appended::Stored(seq_of[j]),
                Slot::InCall(j, true) => Appended::Duplicate(seq_of[j]),
                Slot::InCall(j, false) => Appended::Conflict(seq_of[j]),
            })
            .collect();
        Ok(AppendOutcome { results })
    }

    fn query(&self, q: &Query) -> Result<Page, StoreError> {
        let limit = q.page_size();
        let after = q.page_token.as_deref().map(Cursor::decode).transpose()?;
        let inner = self.inner.lock().map_err(|_| StoreError::WriterGone)?;
        let mut hits: Vec<&StoredEvent> = inner
            .events
            .iter()
            .filter(|(s, ev)| {
                let t = s.time;
                q.start.is_none_or(|st| t >= st)
                    && q.end.is_none_or(|en| t <= en)
                    && q.matches(ev, &s.account, t)
                    && after.is_none_or(|c| (t.millis(), s.seq) < (c.time, c.seq))
            })
            .map(|(s, _)| s)
            .collect();
        hits.sort_by_key(|e| std::cmp::Reverse((e.time, e.seq)));
        let more = hits.len() > limit;
        let events: Vec<StoredEvent> = hits.into_iter().take(limit).cloned().collect();
        Ok(Page::new(events, more))
    }

    fn count(&self, q: &Query, by: &[Group], max_groups: usize) -> Result<Counts, StoreError> {
        let inner = self.inner.lock().map_err(|_| StoreError::WriterGone)?;
        let mut c = Counter::default();
        for (s, ev) in &inner.events {
            if q.matches(ev, &s.account, s.time) {
                c.add(by, ev, &s.account);
            }
        }
        // Everything is counted exactly (from plaintext in memory).
        let mut counts = c.finish(max_groups);
        counts.exact = Some(crate::query::TimeSpan {
            start: q.start.map(orgtrail_core::Timestamp::millis),
            end: q.end.map(|e| e.millis().saturating_add(1)),
        });
        Ok(counts)
    }

    fn get(&self, account: &AccountId, event_id: &str) -> Result<Option<StoredEvent>, StoreError> {
        let inner = self.inner.lock().map_err(|_| StoreError::WriterGone)?;
        Ok(inner
            .by_id
            .get(&(*account, event_id.to_owned()))
            .map(|&seq| inner.events[(seq - 1) as usize].0.clone()))
    }

    fn stats(&self) -> Stats {
        let inner = self.inner.lock();
        match inner {
            Ok(i) => {
                let mut accounts: Vec<AccountId> = i.events.iter().map(|e| e.0.account).collect();
                accounts.sort_unstable();
                accounts.dedup();
                Stats {
                    events: i.events.len() as u64,
                    segments: 0,
                    accounts: accounts.len(),
                }
            }
            Err(_) => Stats {
                events: 0,
                segments: 0,
                accounts: 0,
            },
        }
    }
}
