//! An in-memory [`EventStore`]: the reference model the sled ledger is checked against (the
//! conformance suite runs on both, and a property test compares them operation by operation).
//! It holds plaintext in memory and persists nothing; it is not for production.
//!
//! Its Merkle log hashes the same leaves as the ledger's (`tree::event_leaf`), so at equal
//! contents the two have equal roots and proofs. It signs checkpoints with the key its
//! [`MemoryConfig`] gives, in the same format and origin form as the ledger: after every
//! `checkpoint_records` new events, on [`EventStore::checkpoint_now`] and at
//! [`EventStore::close`] (the ledger's time-based checkpoints aside). Counts are always exact:
//! it has nothing to decrypt, so no scan limit applies.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use orgtrail_core::{AccountId, CloudTrailEvent};
use orgtrail_crypto::checkpoint::Checkpoint;
use orgtrail_crypto::hash::sha256;
use orgtrail_crypto::merkle::{self, Frontier, Hash, LeafSlice};
use orgtrail_crypto::signing::SigningKey;

use crate::ledger::{AppendOutcome, Appended, Health, Stats};
use crate::query::{Counter, Counts, Cursor, Group, Page, Query, StoredEvent};
use crate::{AppendFuture, EventPreparer, EventStore, PreparedEvent, PreparedKind, StoreError};

/// How a [`MemoryStore`] signs checkpoints.
#[derive(Debug, Clone)]
pub struct MemoryConfig {
    /// Signs checkpoints. Without it the store signs none.
    pub signer: Option<Arc<SigningKey>>,
    /// A checkpoint after at most this many new events (the ledger's `checkpoint_records`).
    pub checkpoint_records: u64,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            signer: None,
            checkpoint_records: crate::LedgerConfig::default().checkpoint_records,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    events: Vec<(StoredEvent, CloudTrailEvent)>,
    by_id: HashMap<(AccountId, String), u64>,
    /// Leaf hashes, leaf `i` for sequence number `i + 1`.
    leaves: Vec<Hash>,
    frontier: Frontier,
    /// Signed checkpoints by tree size.
    checkpoints: BTreeMap<u64, String>,
    /// The alert watermark and outbox (see the `outbox` module), by (seq, rule).
    alerts_through: Option<u64>,
    outbox: BTreeMap<(u64, String), Vec<String>>,
    /// Dead letters by (seq, rule, sink).
    dead: BTreeMap<(u64, String, String), crate::DeadLetter>,
    /// The alert history (see the `alertlog` module): recorded time by (seq, rule).
    history: BTreeMap<(u64, String), orgtrail_core::Timestamp>,
    /// The threshold windows' state: (rule, seq) kept.
    windows: std::collections::BTreeSet<(String, u64)>,
    /// The Insights watermark and state (see the `insights` module).
    insights: Option<crate::InsightsState>,
}

/// The reference model.
#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    cfg: MemoryConfig,
    origin: String,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store that signs no checkpoints.
    pub fn new() -> Self {
        Self::with_config(MemoryConfig::default())
    }

    /// A store signing checkpoints as `cfg` says.
    pub fn with_config(cfg: MemoryConfig) -> Self {
        let mut id = [0u8; 16];
        // The origin only needs to differ between stores; the time is enough if the system
        // random source fails.
        if orgtrail_crypto::random_bytes(&mut id).is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            id = t.to_be_bytes();
        }
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        MemoryStore {
            inner: Mutex::new(Inner::default()),
            cfg,
            origin: format!("orgtrail/{hex}"),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>, StoreError> {
        self.inner.lock().map_err(|_| StoreError::WriterGone)
    }

    /// Signs a checkpoint of everything stored, if anything is new since the last one.
    fn sign_if_new(&self, inner: &mut Inner) {
        let Some(signer) = &self.cfg.signer else {
            return;
        };
        let size = inner.frontier.size();
        let last = inner.checkpoints.keys().next_back().copied().unwrap_or(0);
        if size <= last {
            return;
        }
        let cp = Checkpoint {
            origin: self.origin.clone(),
            size,
            root: inner.frontier.root(),
            time_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        };
        inner.checkpoints.insert(size, cp.sign(signer));
    }
}

fn proof_error(e: merkle::ProofError<std::convert::Infallible>) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// The preparer of a [`MemoryStore`]: takes events as they are.
#[derive(Debug)]
struct MemoryPreparer;

impl EventPreparer for MemoryPreparer {
    fn prepare(
        &mut self,
        event: &CloudTrailEvent,
        account: AccountId,
    ) -> Result<PreparedEvent, StoreError> {
        Ok(PreparedEvent(PreparedKind::Plain(Box::new((
            event.clone(),
            account,
        )))))
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
        let mut inner = self.lock()?;
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
            let leaf = crate::tree::event_leaf(
                seq,
                account.as_str(),
                &ev.fields().event_id,
                &sha256(ev.bytes()),
            );
            inner.leaves.push(leaf);
            inner.frontier.push(leaf);
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
        let last = inner.checkpoints.keys().next_back().copied().unwrap_or(0);
        if inner.frontier.size().saturating_sub(last) >= self.cfg.checkpoint_records {
            self.sign_if_new(&mut inner);
        }
        Ok(AppendOutcome { results })
    }

    fn preparer(&self) -> Box<dyn EventPreparer> {
        Box::new(MemoryPreparer)
    }

    fn append_prepared(&self, events: Vec<PreparedEvent>) -> AppendFuture<'_> {
        let batch = events
            .into_iter()
            .map(|PreparedEvent(kind)| match kind {
                PreparedKind::Plain(p) => Ok(*p),
                PreparedKind::Ledger { .. } => Err(StoreError::Unavailable {
                    reason: "events were prepared for another store; prepare them again".into(),
                }),
            })
            .collect::<Result<Vec<_>, _>>();
        // Nothing here waits for a disk: the append is done before the future is polled.
        Box::pin(std::future::ready(
            batch.and_then(|b| self.append_events(&b)),
        ))
    }

    fn query(&self, q: &Query) -> Result<Page, StoreError> {
        let limit = q.page_size();
        let after = q.page_token.as_deref().map(Cursor::decode).transpose()?;
        let inner = self.lock()?;
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
        self.count_at_most(q, by, max_groups, usize::MAX)
    }

    /// Exact whatever `max_events`: nothing is decrypted.
    fn count_at_most(
        &self,
        q: &Query,
        by: &[Group],
        max_groups: usize,
        _max_events: usize,
    ) -> Result<Counts, StoreError> {
        let inner = self.lock()?;
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
        let inner = self.lock()?;
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

    fn read(&self, seq: u64) -> Result<StoredEvent, StoreError> {
        let inner = self.lock()?;
        seq.checked_sub(1)
            .and_then(|i| inner.events.get(i as usize))
            .map(|(s, _)| s.clone())
            .ok_or_else(|| StoreError::Corrupt(format!("record {seq} is missing")))
    }

    fn health(&self) -> Health {
        Health::Ready
    }

    fn origin(&self) -> &str {
        &self.origin
    }

    fn tree_head(&self) -> Result<(u64, Hash), StoreError> {
        let inner = self.lock()?;
        Ok((inner.frontier.size(), inner.frontier.root()))
    }

    fn root_at(&self, size: u64) -> Result<Hash, StoreError> {
        let inner = self.lock()?;
        let n = inner.leaves.len() as u64;
        if size > n {
            return Err(StoreError::Corrupt(format!(
                "the log holds {n} events, fewer than {size}"
            )));
        }
        Ok(merkle::root(&inner.leaves[..size as usize]))
    }

    fn inclusion_proof(&self, seq: u64, size: u64) -> Result<Vec<Hash>, StoreError> {
        let inner = self.lock()?;
        let n = inner.leaves.len() as u64;
        if size > n || seq == 0 || seq > size {
            return Err(StoreError::Corrupt(format!(
                "no event {seq} in a log of {size} (it holds {n})"
            )));
        }
        merkle::inclusion_proof(&mut LeafSlice(&inner.leaves), seq - 1, size).map_err(proof_error)
    }

    fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, StoreError> {
        let inner = self.lock()?;
        let n = inner.leaves.len() as u64;
        if second > n {
            return Err(StoreError::Corrupt(format!(
                "the log holds {n} events, fewer than {second}"
            )));
        }
        merkle::consistency_proof(&mut LeafSlice(&inner.leaves), first, second).map_err(proof_error)
    }

    fn leaves(&self, first: u64, count: u64) -> Result<Vec<Hash>, StoreError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let inner = self.lock()?;
        let start = first.checked_sub(1).map(|i| i as usize);
        start
            .and_then(|s| inner.leaves.get(s..s.checked_add(count as usize)?))
            .map(<[Hash]>::to_vec)
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "leaf hashes {first}..{} are missing",
                    first.saturating_add(count - 1)
                ))
            })
    }

    fn checkpoints_between(
        &self,
        from: u64,
        to: u64,
        limit: usize,
        newest_first: bool,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        if from > to {
            return Ok(Vec::new());
        }
        let inner = self.lock()?;
        let range = inner.checkpoints.range(from..=to);
        let pair = |(s, n): (&u64, &String)| (*s, n.clone());
        Ok(if newest_first {
            range.rev().take(limit).map(pair).collect()
        } else {
            range.take(limit).map(pair).collect()
        })
    }

    fn checkpoint_now(&self) -> Result<Option<(u64, String)>, StoreError> {
        if self.cfg.signer.is_none() {
            return Err(StoreError::NoSigner);
        }
        let mut inner = self.lock()?;
        self.sign_if_new(&mut inner);
        Ok(inner
            .checkpoints
            .iter()
            .next_back()
            .map(|(s, n)| (*s, n.clone())))
    }

    /// Signs a last checkpoint if anything is new; the store stays usable (it has no writer
    /// to stop, nothing to flush).
    fn close(&self) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        self.sign_if_new(&mut inner);
        Ok(())
    }

    fn alerts_through(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.lock()?.alerts_through)
    }

    fn record_alerts(
        &self,
        through: u64,
        alerts: &[crate::PendingAlert],
    ) -> Result<(), StoreError> {
        for a in alerts {
            crate::outbox::check(a)?;
            if a.seq > through {
                return Err(StoreError::Invalid(format!(
                    "an alert on event {} past the watermark {through}",
                    a.seq
                )));
            }
        }
        let mut inner = self.lock()?;
        if inner.alerts_through.is_some_and(|w| w >= through) {
            return Ok(());
        }
        for a in alerts {
            inner
                .outbox
                .insert((a.seq, a.rule.clone()), a.sinks.clone());
        }
        if !alerts.is_empty() {
            let at = crate::alertlog::stamp(inner.history.values().next_back().copied());
            for a in alerts {
                inner.history.insert((a.seq, a.rule.clone()), at);
            }
        }
        inner.alerts_through = Some(through);
        Ok(())
    }

    fn pending_alerts(&self, limit: usize) -> Result<Vec<crate::PendingAlert>, StoreError> {
        Ok(self
            .lock()?
            .outbox
            .iter()
            .take(limit)
            .map(|((seq, rule), sinks)| crate::PendingAlert {
                seq: *seq,
                rule: rule.clone(),
                sinks: sinks.clone(),
            })
            .collect())
    }

    fn alerts_delivered(&self, sink: &str, taken: &[(u64, String)]) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        for key in taken {
            if let Some(sinks) = inner.outbox.get_mut(key) {
                sinks.retain(|s| s != sink);
                if sinks.is_empty() {
                    inner.outbox.remove(key);
                }
            }
        }
        Ok(())
    }

    fn pending_alerts_after(
        &self,
        after: Option<(u64, &str)>,
        limit: usize,
    ) -> Result<Vec<crate::PendingAlert>, StoreError> {
        use std::ops::Bound;
        let inner = self.lock()?;
        let from = match after {
            Some((seq, rule)) => Bound::Excluded((seq, rule.to_owned())),
            None => Bound::Unbounded,
        };
        Ok(inner
            .outbox
            .range((from, Bound::Unbounded))
            .take(limit)
            .map(|((seq, rule), sinks)| crate::PendingAlert {
                seq: *seq,
                rule: rule.clone(),
                sinks: sinks.clone(),
            })
            .collect())
    }

    fn dead_letter_alert(&self, letter: &crate::DeadLetter) -> Result<bool, StoreError> {
        crate::outbox::check_dead(letter)?;
        let mut inner = self.lock()?;
        let key = (letter.seq, letter.rule.clone());
        let Some(sinks) = inner.outbox.get_mut(&key) else {
            return Ok(false);
        };
        let before = sinks.len();
        sinks.retain(|s| *s != letter.sink);
        if sinks.len() == before {
            return Ok(false);
        }
        if sinks.is_empty() {
            inner.outbox.remove(&key);
        }
        let mut d = letter.clone();
        d.error = crate::outbox::cut_error(&d.error);
        inner
            .dead
            .insert((d.seq, d.rule.clone(), d.sink.clone()), d);
        Ok(true)
    }

    fn dead_letters(&self, limit: usize) -> Result<Vec<crate::DeadLetter>, StoreError> {
        // Ordered as the ledger's keys are: seq, then rule id by length, then bytes.
        let inner = self.lock()?;
        let mut all: Vec<crate::DeadLetter> = inner.dead.values().cloned().collect();
        all.sort_by(|a, b| {
            (a.seq, a.rule.len(), &a.rule, &a.sink).cmp(&(b.seq, b.rule.len(), &b.rule, &b.sink))
        });
        all.truncate(limit);
        Ok(all)
    }

    fn retry_dead_letters(&self, sink: Option<&str>) -> Result<Vec<crate::DeadLetter>, StoreError> {
        let mut inner = self.lock()?;
        let keys: Vec<(u64, String, String)> = inner
            .dead
            .keys()
            .filter(|(_, _, s)| sink.is_none_or(|want| want == s))
            .cloned()
            .collect();
        let mut moved = Vec::new();
        for k in keys {
            if let Some(d) = inner.dead.remove(&k) {
                let sinks = inner.outbox.entry((d.seq, d.rule.clone())).or_default();
                if !sinks.contains(&d.sink) {
                    sinks.push(d.sink.clone());
                }
                moved.push(d);
            }
        }
        moved.sort_by(|a, b| {
            (a.seq, a.rule.len(), &a.rule, &a.sink).cmp(&(b.seq, b.rule.len(), &b.rule, &b.sink))
        });
        Ok(moved)
    }

    fn alert_history(
        &self,
        from: Option<(u64, &str)>,
        limit: usize,
        newest_first: bool,
    ) -> Result<Vec<crate::AlertRef>, StoreError> {
        use std::ops::Bound;
        let inner = self.lock()?;
        let pos = from.map(|(s, r)| (s, r.to_owned()));
        let entry =
            |((seq, rule), at): (&(u64, String), &orgtrail_core::Timestamp)| crate::AlertRef {
                seq: *seq,
                rule: rule.clone(),
                recorded: *at,
            };
        Ok(match (pos, newest_first) {
            (None, false) => inner.history.iter().take(limit).map(entry).collect(),
            (None, true) => inner.history.iter().rev().take(limit).map(entry).collect(),
            (Some(p), false) => inner
                .history
                .range((Bound::Excluded(p), Bound::Unbounded))
                .take(limit)
                .map(entry)
                .collect(),
            (Some(p), true) => inner
                .history
                .range(..p)
                .rev()
                .take(limit)
                .map(entry)
                .collect(),
        })
    }

    fn record_alerts_with_windows(
        &self,
        through: u64,
        alerts: &[crate::PendingAlert],
        windows: &crate::WindowChanges,
    ) -> Result<(), StoreError> {
        for (rule, seq) in windows.kept.iter().chain(&windows.dropped) {
            crate::outbox::window_key(rule, *seq)?;
        }
        if self.lock()?.alerts_through.is_some_and(|w| w >= through) {
            return Ok(());
        }
        self.record_alerts(through, alerts)?;
        let mut inner = self.lock()?;
        for k in &windows.dropped {
            inner.windows.remove(k);
        }
        for k in &windows.kept {
            inner.windows.insert(k.clone());
        }
        Ok(())
    }

    fn threshold_windows(&self) -> Result<Vec<(String, u64)>, StoreError> {
        Ok(self.lock()?.windows.iter().cloned().collect())
    }

    fn insights_state(&self) -> Result<Option<crate::InsightsState>, StoreError> {
        Ok(self.lock()?.insights.clone())
    }

    fn record_insights(&self, through: u64, state: &[u8]) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        if inner.insights.as_ref().is_some_and(|s| s.through > through) {
            return Ok(());
        }
        inner.insights = Some(crate::InsightsState {
            through,
            state: state.to_vec(),
        });
        Ok(())
    }
}
