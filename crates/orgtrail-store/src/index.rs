//! The index: dedup, attribute postings and time order, for every stored event.
//!
//! * dedup: blind(account, eventID) -> (seq, first 8 bytes of SHA-256 of the bytes);
//! * postings: blind(attribute, value) -> seqs, ascending;
//! * time: eventTime per seq, and (eventTime, seq) ordered for time-range walks.
//!
//! The newest events' index is in memory (the memtable, [`Mem`]); when it holds
//! `index_run_events` events it is frozen and written out as an immutable run file (see the
//! `run` module) by a background thread, then registered and dropped from memory. So memory
//! holds at most two memtables whatever the history, and an open reads only the run files'
//! directories and the index chunks of the memtable (see the crate docs).
//!
//! Only durable events are ever published here: the writer updates the index after its batch
//! is flushed.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use orgtrail_core::AccountId;

use crate::error::StoreError;
use crate::postings::{Postings, TimeIndex};
use crate::query::Cursor;
use crate::run::{BLOCK, Run, RunList, SKIP_EVERY};

pub(crate) type Blind = [u8; 16];

/// Blind values are HMAC outputs, uniformly random: their first 8 bytes are a perfect hash
/// already, so maps keyed by them skip SipHash.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct BlindHasher(u64);

impl Hasher for BlindHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(b);
            self.0 = self.0.rotate_left(29);
        }
    }
    fn write_usize(&mut self, _: usize) {}
}

pub(crate) type BlindMap<V> = HashMap<Blind, V, BuildHasherDefault<BlindHasher>>;

/// The in-memory index of the events `base..base + times.len()`.
#[derive(Debug)]
pub(crate) struct Mem {
    pub(crate) base: u64,
    pub(crate) dedup: BlindMap<(u64, [u8; 8])>,
    pub(crate) postings: BlindMap<Postings>,
    /// eventTime (ms) of seq `base + i`.
    pub(crate) times: Vec<i64>,
    pub(crate) by_time: TimeIndex,
    min_time: i64,
    max_time: i64,
}

impl Mem {
    pub(crate) fn new(base: u64) -> Self {
        Mem {
            base,
            dedup: BlindMap::default(),
            postings: BlindMap::default(),
            times: Vec::new(),
            by_time: TimeIndex::default(),
            min_time: i64::MAX,
            max_time: i64::MIN,
        }
    }

    pub(crate) fn len(&self) -> u64 {
        self.times.len() as u64
    }

    /// The seq after the last one held.
    pub(crate) fn end(&self) -> u64 {
        self.base + self.len()
    }

    fn time_of(&self, seq: u64) -> Option<i64> {
        self.times
            .get(usize::try_from(seq.checked_sub(self.base)?).ok()?)
            .copied()
    }

    /// Writes this memtable as a run file into `dir`.
    pub(crate) fn write_run(
        &self,
        dir: &std::path::Path,
        cancel: Option<Arc<std::sync::atomic::AtomicBool>>,
    ) -> Result<std::path::PathBuf, StoreError> {
        let count = u32::try_from(self.len())
            .map_err(|_| StoreError::Corrupt("memtable too large for one index run".into()))?;
        let mut order: Vec<(i64, u64)> = self
            .by_time
            .range_rev((i64::MIN, 0), (i64::MAX, u64::MAX))
            .collect();
        order.reverse();
        let mut dedup: Vec<(Blind, u64, [u8; 8])> =
            self.dedup.iter().map(|(b, (s, h))| (*b, *s, *h)).collect();
        dedup.sort_unstable_by_key(|a| a.0);
        let mut lists: Vec<(&Blind, &Postings)> = self.postings.iter().collect();
        lists.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let base = self.base;
        crate::run::write(
            dir,
            crate::run::Parts {
                first: base,
                count,
                times: self.times.iter().map(|t| Ok(*t)),
                order: order.into_iter().map(Ok),
                dedup: dedup.into_iter().map(Ok),
                postings: lists.into_iter().map(move |(b, p)| {
                    let mut out = Vec::new();
                    crate::run::encode_list(base, p.iter(), &mut out, None);
                    Ok((*b, out.into(), p.len()))
                }),
                cancel,
            },
        )
    }
}

/// Posting lists of index runs that are long enough to be worth keeping (popular values:
/// accounts, eventNames, regions), bounded by weight; shared by every reader. A list is kept
/// as stored (for probes through its skip table) and, once a query needs it whole, decoded.
pub(crate) struct ListCache(quick_cache::sync::Cache<ListKey, Cached, ListWeight>);

/// (run first seq, run end, blind, decoded).
type ListKey = (u64, u64, Blind, bool);

#[derive(Clone)]
pub(crate) enum Cached {
    Decoded(Arc<Postings>),
    Raw(Arc<RunList>),
}

impl std::fmt::Debug for ListCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListCache")
            .field("weight", &self.0.weight())
            .finish()
    }
}

/// Lists shorter than this are read from their run each time.
const CACHED_LIST_MIN: u64 = 1024;

/// The default weight of the list cache: 32 MiB.
pub(crate) const LIST_CACHE_BYTES: u64 = 32 << 20;

#[derive(Debug, Clone, Copy)]
pub(crate) struct ListWeight;

impl quick_cache::Weighter<ListKey, Cached> for ListWeight {
    fn weight(&self, _: &ListKey, c: &Cached) -> u64 {
        64 + match c {
            Cached::Decoded(p) => p.approx_bytes(),
            Cached::Raw(l) => l.bytes() as u64,
        }
    }
}

impl ListCache {
    pub(crate) fn new(bytes: u64) -> Self {
        ListCache(quick_cache::sync::Cache::with_weighter(
            1024,
            bytes.max(1),
            ListWeight,
        ))
    }

    /// The list of `blind` in `run` for membership probes: decoded if the cache holds it so;
    /// else as stored, from the cache or read (and kept if long). A lookup decodes it (see
    /// [`ListCache::decoded`]) only when its probes would decode most of it anyway.
    fn for_probes(&self, run: &Run, blind: &Blind) -> Result<Option<Part>, StoreError> {
        let decoded = (run.first, run.end(), *blind, true);
        if let Some(Cached::Decoded(p)) = self.0.get(&decoded) {
            return Ok(Some(Part::Decoded(p)));
        }
        let raw = (run.first, run.end(), *blind, false);
        if let Some(Cached::Raw(l)) = self.0.get(&raw) {
            return Ok(Some(Part::Raw(l, *blind)));
        }
        let Some(l) = run.list(blind)? else {
            return Ok(None);
        };
        let l = Arc::new(l);
        if l.len() >= CACHED_LIST_MIN {
            self.0.insert(raw, Cached::Raw(l.clone()));
        }
        Ok(Some(Part::Raw(l, *blind)))
    }

    /// `l`, the list of `blind` in `run` as stored, decoded (and kept decoded if long, in
    /// place of the stored form).
    fn decoded(&self, run: &Run, blind: &Blind, l: &RunList) -> Result<Arc<Postings>, StoreError> {
        let p = Arc::new(Postings::from_sorted(l.decode()?));
        if p.len() >= CACHED_LIST_MIN {
            self.0.insert(
                (run.first, run.end(), *blind, true),
                Cached::Decoded(p.clone()),
            );
            self.0.remove(&(run.first, run.end(), *blind, false));
        }
        Ok(p)
    }

    /// The list of `blind` in `run`, decoded, from the cache or read (and kept if long).
    fn list(&self, run: &Run, blind: &Blind) -> Result<Arc<Postings>, StoreError> {
        let key = (run.first, run.end(), *blind, true);
        if let Some(Cached::Decoded(p)) = self.0.get(&key) {
            return Ok(p);
        }
        let raw = (run.first, run.end(), *blind, false);
        let seqs = match self.0.get(&raw) {
            Some(Cached::Raw(l)) => l.decode()?,
            _ => match run.list(blind)? {
                Some(l) => l.decode()?,
                None => Vec::new(),
            },
        };
        let p = Arc::new(Postings::from_sorted(seqs));
        if p.len() >= CACHED_LIST_MIN {
            self.0.insert(key, Cached::Decoded(p.clone()));
            self.0.remove(&raw);
        }
        Ok(p)
    }
}

/// One list of a run, as a probe finds it: decoded, as stored (with its blind, to be
/// decoded), or only its seqs in a lookup's span of seqs.
enum Part {
    Decoded(Arc<Postings>),
    Raw(Arc<RunList>, Blind),
    Span(Vec<u64>),
}

impl Part {
    fn len(&self) -> u64 {
        match self {
            Part::Decoded(p) => p.len(),
            Part::Raw(l, _) => l.len(),
            Part::Span(v) => v.len() as u64,
        }
    }
}

/// A condition's seqs in one part of the index, before deciding how to use them: whole, or
/// as stored in a run (any of several lists), to be probed or decoded.
enum Cand<'a> {
    Whole(ListRef<'a>),
    Stored(Vec<Part>),
}

impl Cand<'_> {
    /// Entries (for a union, an upper bound).
    fn len(&self) -> u64 {
        match self {
            Cand::Whole(l) => l.len(),
            Cand::Stored(ls) => ls.iter().map(Part::len).sum(),
        }
    }

    /// Every seq in `span` (`from..to`; all of them without one), ascending.
    fn seqs(&self, span: Option<(u64, u64)>) -> Result<Vec<u64>, StoreError> {
        let (from, to) = span.unwrap_or((0, u64::MAX));
        match self {
            Cand::Whole(l) => Ok(l.range(from, to).collect()),
            Cand::Stored(ls) => {
                let mut v = Vec::new();
                for l in ls {
                    match l {
                        Part::Decoded(p) => v.extend(p.range(from, to)),
                        Part::Raw(l, _) if span.is_none() => v.extend(l.decode()?),
                        Part::Raw(l, _) => v.extend(l.decode_range(from, to)?),
                        Part::Span(s) => {
                            v.extend(s.iter().copied().filter(|x| (from..to).contains(x)))
                        }
                    }
                }
                if ls.len() > 1 {
                    v.sort_unstable();
                    v.dedup();
                }
                Ok(v)
            }
        }
    }

    fn prober(&self) -> Prober<'_> {
        match self {
            Cand::Whole(l) => Prober::Whole(l),
            Cand::Stored(ls) => Prober::Stored(
                ls.iter()
                    .map(|l| match l {
                        Part::Decoded(p) => PartProbe::Decoded(p),
                        Part::Raw(l, _) => PartProbe::Raw(l.probe()),
                        Part::Span(v) => PartProbe::Sorted(v, 0),
                    })
                    .collect(),
            ),
        }
    }
}

/// Membership tests of ascending seqs in a [`Cand`].
enum Prober<'a> {
    Whole(&'a Postings),
    Stored(Vec<PartProbe<'a>>),
}

enum PartProbe<'a> {
    Decoded(&'a Postings),
    Raw(crate::run::Probe<'a>),
    /// Ascending seqs and where the previous probe stopped.
    Sorted(&'a [u64], usize),
}

impl Prober<'_> {
    fn contains(&mut self, seq: u64) -> Result<bool, StoreError> {
        match self {
            Prober::Whole(p) => Ok(p.contains(seq)),
            Prober::Stored(ps) => {
                for p in ps {
                    let hit = match p {
                        PartProbe::Decoded(d) => d.contains(seq),
                        PartProbe::Raw(r) => r.contains(seq)?,
                        PartProbe::Sorted(v, at) => {
                            if v.get(at.wrapping_sub(1)).is_some_and(|p| *p > seq) {
                                *at = 0;
                            }
                            *at += v[*at..].partition_point(|x| *x < seq);
                            v.get(*at) == Some(&seq)
                        }
                    };
                    if hit {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
        }
    }
}

/// One part of the index a query or a dedup check consults.
enum Source<'a> {
    Mem(&'a Mem),
    Run(&'a Run, &'a ListCache),
}

/// A posting list as a source holds it: its own, shared from the cache, or built.
enum ListRef<'a> {
    Borrowed(&'a Postings),
    Shared(Arc<Postings>),
    Owned(Postings),
}

impl ListRef<'_> {
    fn into_owned(self) -> Postings {
        match self {
            ListRef::Borrowed(p) => p.clone(),
            ListRef::Shared(p) => Arc::unwrap_or_clone(p),
            ListRef::Owned(p) => p,
        }
    }
}

impl std::ops::Deref for ListRef<'_> {
    type Target = Postings;
    fn deref(&self) -> &Postings {
        match self {
            ListRef::Borrowed(p) => p,
            ListRef::Shared(p) => p,
            ListRef::Owned(p) => p,
        }
    }
}

/// A condition of a selection: the event carries any of these blind values, or is one of
/// these seqs.
#[derive(Debug, Clone)]
pub(crate) enum Cond {
    AnyOf(Vec<Blind>),
    Seqs(Vec<u64>),
}

/// Above this many candidates, a filtered query walks the time order instead of sorting them.
const SCAN_LIMIT: u64 = 20_000;

impl<'a> Source<'a> {
    fn first(&self) -> u64 {
        match self {
            Source::Mem(m) => m.base,
            Source::Run(r, _) => r.first,
        }
    }

    fn end(&self) -> u64 {
        match self {
            Source::Mem(m) => m.end(),
            Source::Run(r, _) => r.end(),
        }
    }

    fn time_bounds(&self) -> (i64, i64) {
        match self {
            Source::Mem(m) => (m.min_time, m.max_time),
            Source::Run(r, _) => (r.min_time, r.max_time),
        }
    }

    fn dedup(&self, blind: &Blind) -> Result<Option<(u64, [u8; 8])>, StoreError> {
        match self {
            Source::Mem(m) => Ok(m.dedup.get(blind).copied()),
            Source::Run(r, _) => r.dedup(blind),
        }
    }

    /// The seqs of this source meeting `cond`.
    fn resolve(&self, cond: &Cond) -> Result<ListRef<'a>, StoreError> {
        match cond {
            Cond::Seqs(seqs) => Ok(ListRef::Owned(Postings::from_sorted(
                seqs.iter()
                    .copied()
                    .filter(|s| *s >= self.first() && *s < self.end())
                    .collect(),
            ))),
            Cond::AnyOf(blinds) => match *self {
                Source::Mem(m) => {
                    let lists: Vec<&Postings> =
                        blinds.iter().filter_map(|b| m.postings.get(b)).collect();
                    Ok(match lists.as_slice() {
                        [] => ListRef::Owned(Postings::default()),
                        [one] => ListRef::Borrowed(one),
                        _ => ListRef::Owned(Postings::union(&lists)),
                    })
                }
                Source::Run(r, cache) => {
                    let mut lists = Vec::with_capacity(blinds.len());
                    for b in blinds {
                        let l = cache.list(r, b)?;
                        if l.len() > 0 {
                            lists.push(l);
                        }
                    }
                    Ok(match lists.len() {
                        0 => ListRef::Owned(Postings::default()),
                        1 => lists
                            .pop()
                            .map_or(ListRef::Owned(Postings::default()), ListRef::Shared),
                        _ => ListRef::Owned(Postings::union(
                            &lists.iter().map(|l| l.as_ref()).collect::<Vec<_>>(),
                        )),
                    })
                }
            },
        }
    }

    /// The eventTimes of ascending `seqs` of this source.
    fn times_of(&self, seqs: &[u64]) -> Result<Vec<i64>, StoreError> {
        match self {
            Source::Mem(m) => seqs
                .iter()
                .map(|&s| {
                    m.time_of(s).ok_or_else(|| {
                        StoreError::Corrupt(format!("seq {s} has no time in the memtable"))
                    })
                })
                .collect(),
            Source::Run(r, _) => r.times_of(seqs),
        }
    }

    /// Walks (time, seq) in `lo..=hi` newest first, calling `f` until it returns false.
    fn walk_rev(
        &self,
        lo: (i64, u64),
        hi: (i64, u64),
        mut f: impl FnMut(i64, u64) -> bool,
    ) -> Result<(), StoreError> {
        match self {
            Source::Mem(m) => {
                for (t, s) in m.by_time.range_rev(lo, hi) {
                    if !f(t, s) {
                        break;
                    }
                }
            }
            Source::Run(r, _) => {
                for e in r.order_rev(lo, hi) {
                    let (t, s) = e?;
                    if !f(t, s) {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// A condition's seqs in this source, read but, in a run, not decoded.
    fn candidate(&self, cond: &Cond) -> Result<Cand<'a>, StoreError> {
        match (self, cond) {
            (Source::Run(r, cache), Cond::AnyOf(blinds)) => {
                let mut lists = Vec::with_capacity(blinds.len());
                for b in blinds {
                    if let Some(l) = cache.for_probes(r, b)?
                        && l.len() > 0
                    {
                        lists.push(l);
                    }
                }
                Ok(Cand::Stored(lists))
            }
            _ => Ok(Cand::Whole(self.resolve(cond)?)),
        }
    }

    /// The seqs of this source that may have a time in `lo..=hi`, when that is not all of
    /// them: in a run, those of the blocks whose times meet the range (read once per run, see
    /// [`Run::block_times`]); in a memtable, those whose time is in it.
    fn window(&self, lo: (i64, u64), hi: (i64, u64)) -> Result<Option<Window<'a>>, StoreError> {
        let (min_t, max_t) = self.time_bounds();
        if lo.0 <= min_t && max_t <= hi.0 {
            return Ok(None);
        }
        match *self {
            Source::Mem(m) => Ok(Some(Window::Mem {
                m,
                lo: lo.0,
                hi: hi.0,
            })),
            Source::Run(r, _) => {
                let mut ranges: Vec<(u64, u64)> = Vec::new();
                let mut events = 0;
                for (b, &(a, z)) in r.block_times()?.iter().enumerate() {
                    if z < lo.0 || a > hi.0 {
                        continue;
                    }
                    let s = r.first + (b * BLOCK) as u64;
                    let e = (s + BLOCK as u64).min(r.end());
                    events += e - s;
                    match ranges.last_mut() {
                        Some(last) if last.1 == s => last.1 = e,
                        _ => ranges.push((s, e)),
                    }
                }
                Ok(Some(Window::Blocks {
                    ranges,
                    next: 0,
                    events,
                    of: u64::from(r.count),
                }))
            }
        }
    }

    /// Up to `limit` (time, seq) of this source meeting every condition, in `lo..=hi`,
    /// newest first.
    fn select(
        &self,
        conds: &[Cond],
        lo: (i64, u64),
        hi: (i64, u64),
        limit: usize,
    ) -> Result<Vec<(i64, u64)>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 || lo > hi {
            return Ok(out);
        }
        // (Without conditions the time order is walked: no use for it.)
        let mut window = match conds.is_empty() {
            true => None,
            false => self.window(lo, hi)?,
        };
        if window.as_ref().is_some_and(Window::is_empty) {
            return Ok(out);
        }
        let mut cands = conds
            .iter()
            .map(|c| self.candidate(c))
            .collect::<Result<Vec<_>, _>>()?;
        if cands.iter().any(|l| l.len() == 0) {
            return Ok(out);
        }
        let smallest = cands
            .iter()
            .enumerate()
            .min_by_key(|(_, l)| l.len())
            .map(|(i, _)| i);
        // The seqs of the smallest list in the time window, when they are few: taken first,
        // then probed in the other lists. A narrow window over a long run keeps few of a
        // long list, so the list is decoded when the share of the run the window covers
        // leaves few of it; else every list is long and the time order is walked.
        let mut few = None;
        if let Some(i) = smallest {
            let n = cands[i].len();
            // (Without a window, nothing is left out: as many as `n`, too many to try.)
            let expected = window.as_ref().map_or(u64::MAX, |w| w.expected(n));
            if n <= SCAN_LIMIT || expected <= 2 * SCAN_LIMIT {
                let mut seqs = cands[i].seqs(window.as_ref().and_then(Window::span))?;
                if let Some(w) = &mut window {
                    seqs.retain(|&s| w.keep(s));
                }
                if n <= SCAN_LIMIT || seqs.len() as u64 <= SCAN_LIMIT {
                    few = Some((i, seqs));
                }
            }
        }
        match few {
            Some((i, mut seqs)) => {
                // The others probed for those seqs only (through their skip tables in a run),
                // then times only for what meets them all. A stored list whose part in the
                // span would be mostly decoded by the probes anyway is decoded instead: that
                // part only, or, without a span, all of it (and kept).
                if let Source::Run(r, cache) = self {
                    let probes = seqs.len() as u64;
                    let span = window.as_ref().and_then(Window::span);
                    for (_, c) in cands.iter_mut().enumerate().filter(|(j, _)| *j != i) {
                        let Cand::Stored(parts) = c else { continue };
                        for p in parts.iter_mut() {
                            let Part::Raw(l, b) = p else { continue };
                            let covered = span.map_or(l.len(), |(a, z)| {
                                let share = u128::from(l.len()) * u128::from(z - a)
                                    / u128::from(r.count.max(1));
                                share as u64
                            });
                            if probes * (SKIP_EVERY / 2) >= covered {
                                *p = match span {
                                    Some((a, z)) => Part::Span(l.decode_range(a, z)?),
                                    None => Part::Decoded(cache.decoded(r, b, l)?),
                                };
                            }
                        }
                    }
                }
                let mut probers: Vec<Prober<'_>> = cands
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, c)| c.prober())
                    .collect();
                let mut failed = None;
                seqs.retain(|&s| {
                    if failed.is_some() {
                        return false;
                    }
                    for p in &mut probers {
                        match p.contains(s) {
                            Ok(true) => {}
                            Ok(false) => return false,
                            Err(e) => {
                                failed = Some(e);
                                return false;
                            }
                        }
                    }
                    true
                });
                if let Some(e) = failed {
                    return Err(e);
                }
                out = self.newest(&seqs, lo, hi, limit)?;
            }
            None => {
                // Every list is long: walk the time order, testing membership in the lists
                // decoded whole (and cached).
                drop(cands);
                let lists = conds
                    .iter()
                    .map(|c| self.resolve(c))
                    .collect::<Result<Vec<_>, _>>()?;
                self.walk_rev(lo, hi, |t, s| {
                    if lists.iter().all(|l| l.contains(s)) {
                        out.push((t, s));
                    }
                    out.len() < limit
                })?;
            }
        }
        Ok(out)
    }
}

impl Source<'_> {
    /// The newest `limit` (time, seq) of ascending `seqs` in `lo..=hi`, newest first. In a
    /// run, times are read for the highest seqs first, a growing chunk at a time, until no
    /// lower seq can be newer than the `limit`-th found: the newest events are mostly the
    /// last stored, and each block's highest time bounds those of its seqs. (A lower seq of
    /// the same time ranks after, so a bound equal to the `limit`-th time is enough.)
    fn newest(
        &self,
        seqs: &[u64],
        lo: (i64, u64),
        hi: (i64, u64),
        limit: usize,
    ) -> Result<Vec<(i64, u64)>, StoreError> {
        let mut out: Vec<(i64, u64)> = Vec::new();
        let keep = |out: &mut Vec<(i64, u64)>| {
            // Only the newest `limit` are wanted: select them in O(n), then sort those.
            if out.len() > limit {
                out.select_nth_unstable_by(limit - 1, |a, b| b.cmp(a));
                out.truncate(limit);
            }
            out.sort_unstable_by(|a, b| b.cmp(a));
        };
        let Source::Run(r, _) = self else {
            let times = self.times_of(seqs)?;
            out.extend(
                times
                    .into_iter()
                    .zip(seqs.iter().copied())
                    .filter(|&e| e >= lo && e <= hi),
            );
            keep(&mut out);
            return Ok(out);
        };
        // The highest time any of seqs[..=k] may have, once more than one chunk is read.
        let mut bound: Vec<i64> = Vec::new();
        let mut end = seqs.len();
        let mut chunk = limit.saturating_mul(2).max(64);
        while end > 0 {
            let start = end.saturating_sub(chunk);
            let part = &seqs[start..end];
            let times = self.times_of(part)?;
            out.extend(
                times
                    .into_iter()
                    .zip(part.iter().copied())
                    .filter(|&e| e >= lo && e <= hi),
            );
            keep(&mut out);
            end = start;
            chunk = chunk.saturating_mul(2);
            if out.len() < limit || end == 0 {
                continue;
            }
            if bound.is_empty() {
                let bt = r.block_times()?;
                let mut m = i64::MIN;
                bound.reserve(seqs.len());
                for &s in seqs {
                    let b = (s.saturating_sub(r.first) / BLOCK as u64) as usize;
                    m = m.max(bt.get(b).map_or(i64::MAX, |x| x.1));
                    bound.push(m);
                }
            }
            if out.last().is_some_and(|k| bound[end - 1] <= k.0) {
                break;
            }
        }
        Ok(out)
    }
}

/// The seqs of one source that may have a time in a lookup's range (see [`Source::window`]).
enum Window<'a> {
    /// Ascending, disjoint seq ranges `start..end` (whole blocks of a run), the next one to
    /// test, the events in them and in the run.
    Blocks {
        ranges: Vec<(u64, u64)>,
        next: usize,
        events: u64,
        of: u64,
    },
    Mem {
        m: &'a Mem,
        lo: i64,
        hi: i64,
    },
}

impl Window<'_> {
    fn is_empty(&self) -> bool {
        matches!(self, Window::Blocks { events: 0, .. })
    }

    /// The seqs from the first that may be in the range to the last, if known.
    fn span(&self) -> Option<(u64, u64)> {
        match self {
            Window::Blocks { ranges, .. } => Some((ranges.first()?.0, ranges.last()?.1)),
            Window::Mem { .. } => None,
        }
    }

    /// How many of a list of `n` entries the window should keep, if the list is spread as
    /// the events are (a memtable's lists are filtered whatever their length: 0).
    fn expected(&self, n: u64) -> u64 {
        match self {
            Window::Blocks { events, of, .. } => {
                (u128::from(n) * u128::from(*events) / u128::from((*of).max(1))) as u64
            }
            Window::Mem { .. } => 0,
        }
    }

    /// Whether `seq` may have a time in the range; seqs must come ascending.
    fn keep(&mut self, seq: u64) -> bool {
        match self {
            Window::Blocks { ranges, next, .. } => {
                while let Some(&(_, end)) = ranges.get(*next) {
                    if seq < end {
                        return ranges[*next].0 <= seq;
                    }
                    *next += 1;
                }
                false
            }
            Window::Mem { m, lo, hi } => m.time_of(seq).is_some_and(|t| t >= *lo && t <= *hi),
        }
    }
}

/// Posting lists read while checking the events of one part of the index in order.
#[derive(Debug, Default)]
pub(crate) struct PostedCache {
    source: Option<u64>,
    lists: BlindMap<Postings>,
}

/// Lists a [`PostedCache`] keeps before it starts over.
const POSTED_CACHE_MAX: usize = 200_000;

/// The whole index: the memtable, a frozen memtable being written as a run, and the runs.
#[derive(Debug)]
pub(crate) struct Index {
    pub(crate) mem: Mem,
    pub(crate) frozen: Option<Arc<Mem>>,
    /// Contiguous, ascending by first seq, ending where `frozen` (or `mem`) begins.
    pub(crate) runs: Vec<Arc<Run>>,
    pub(crate) accounts: BTreeSet<AccountId>,
    /// The Merkle log.
    pub(crate) tree: crate::tree::TreeState,
    /// Long posting lists read from the runs.
    pub(crate) lists: ListCache,
    /// Bytes of run Bloom filters kept in memory (see [`Index::place_blooms`]).
    pub(crate) bloom_budget: u64,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            mem: Mem::new(1),
            frozen: None,
            runs: Vec::new(),
            lists: ListCache::new(LIST_CACHE_BYTES),
            accounts: BTreeSet::new(),
            tree: crate::tree::TreeState::default(),
            bloom_budget: BLOOM_BYTES,
        }
    }
}

/// The default memory for the Bloom filters of index runs: 4 MiB, the filters of about 3.3M
/// events.
pub(crate) const BLOOM_BYTES: u64 = 4 << 20;

impl Index {
    /// Events indexed.
    pub(crate) fn len(&self) -> u64 {
        self.mem.end() - 1
    }

    /// The memtable, the frozen one, then the runs newest first (without allocating: every
    /// append probes them).
    fn sources(&self) -> impl Iterator<Item = Source<'_>> {
        std::iter::once(Source::Mem(&self.mem))
            .chain(self.frozen.as_deref().map(Source::Mem))
            .chain(self.runs.iter().rev().map(|r| Source::Run(r, &self.lists)))
    }

    fn source_of(&self, seq: u64) -> Option<Source<'_>> {
        if seq >= self.mem.base {
            return (seq < self.mem.end()).then_some(Source::Mem(&self.mem));
        }
        if let Some(f) = &self.frozen
            && seq >= f.base
        {
            return (seq < f.end()).then_some(Source::Mem(f));
        }
        let i = self
            .runs
            .partition_point(|r| r.first <= seq)
            .checked_sub(1)?;
        let r = &self.runs[i];
        (seq < r.end()).then_some(Source::Run(r, &self.lists))
    }

    pub(crate) fn time_of(&self, seq: u64) -> Result<Option<i64>, StoreError> {
        match self.source_of(seq) {
            Some(s) => Ok(s.times_of(&[seq])?.first().copied()),
            None => Ok(None),
        }
    }

    /// The (seq, hash prefix) stored under a dedup blind, newest part first.
    pub(crate) fn dedup_get(&self, blind: &Blind) -> Result<Option<(u64, [u8; 8])>, StoreError> {
        for s in self.sources() {
            if let Some(hit) = s.dedup(blind)? {
                return Ok(Some(hit));
            }
        }
        Ok(None)
    }

    /// Whether the attribute blind is posted for `seq`. `cache` keeps the lists read from
    /// the run of the last seqs asked about (for checking every event in order).
    pub(crate) fn posted(
        &self,
        blind: &Blind,
        seq: u64,
        cache: &mut PostedCache,
    ) -> Result<bool, StoreError> {
        let Some(s) = self.source_of(seq) else {
            return Ok(false);
        };
        if cache.source != Some(s.first()) || cache.lists.len() > POSTED_CACHE_MAX {
            cache.lists.clear();
            cache.source = Some(s.first());
        }
        if let Some(l) = cache.lists.get(blind) {
            return Ok(l.contains(seq));
        }
        let l = s.resolve(&Cond::AnyOf(vec![*blind]))?;
        let hit = l.contains(seq);
        cache.lists.insert(*blind, l.into_owned());
        Ok(hit)
    }

    /// Entries in every posting list of the index (for `verify`).
    pub(crate) fn posting_total(&self) -> Result<u64, StoreError> {
        let mut n = 0;
        for s in self.sources() {
            n += match s {
                Source::Mem(m) => m.postings.values().map(Postings::len).sum(),
                Source::Run(r, _) => r.posting_total()?,
            };
        }
        Ok(n)
    }

    pub(crate) fn publish(&mut self, seq: u64, time: i64, dedup: Blind, hash8: [u8; 8]) {
        let m = &mut self.mem;
        debug_assert_eq!(m.end(), seq);
        m.times.push(time);
        m.by_time.insert(time, seq);
        m.dedup.insert(dedup, (seq, hash8));
        m.min_time = m.min_time.min(time);
        m.max_time = m.max_time.max(time);
    }

    pub(crate) fn post(&mut self, blind: Blind, seq: u64) {
        self.mem.postings.entry(blind).or_default().push(seq);
    }

    /// Posts `blind` for the events at `first + l` for each `l` of `locals` (ascending): one
    /// lookup of the list for all of them.
    pub(crate) fn post_positions(&mut self, blind: Blind, first: u64, locals: &[u32]) {
        let list = self.mem.postings.entry(blind).or_default();
        for l in locals {
            list.push(first + u64::from(*l));
        }
    }

    /// Moves the memtable aside to be written as a run (there must be no frozen one).
    pub(crate) fn freeze(&mut self) -> Option<Arc<Mem>> {
        if self.frozen.is_some() || self.mem.len() == 0 {
            return None;
        }
        let next = Mem::new(self.mem.end());
        let frozen = Arc::new(std::mem::replace(&mut self.mem, next));
        self.frozen = Some(frozen.clone());
        Some(frozen)
    }

    /// Decides which runs keep their Bloom filter in memory: the newest, as long as their
    /// filters fit in `bloom_budget` together. Every append probes every run's filter once per
    /// new event, so what counts is how many runs are probed on disk: the newest runs are the
    /// smallest (merges make the older ones large), and the budget holds as many as it can.
    /// A filter that cannot be read stays on disk (its probes report the error).
    pub(crate) fn place_blooms(&self) {
        let mut used = 0u64;
        for r in self.runs.iter().rev() {
            let fits = used + r.bloom_bytes() <= self.bloom_budget;
            if fits {
                used += r.bloom_bytes();
            }
            if let Err(e) = r.keep_bloom(fits) {
                tracing::warn!(error = %e, "cannot read an index run's Bloom filter into memory; probes read it from the file");
            }
        }
    }

    /// Replaces the frozen memtable by the run written from it.
    pub(crate) fn install_run(&mut self, run: Arc<Run>) {
        if self
            .frozen
            .as_ref()
            .is_some_and(|f| f.base == run.first && f.end() == run.end())
        {
            self.frozen = None;
            self.runs.push(run);
            self.place_blooms();
        }
    }

    /// Replaces the runs `parts` (consecutive, in order) by the run merged from them.
    pub(crate) fn install_merge(&mut self, merged: Arc<Run>, parts: &[Arc<Run>]) {
        let Some(first) = parts.first() else {
            return;
        };
        let Some(at) = self.runs.iter().position(|r| Arc::ptr_eq(r, first)) else {
            return;
        };
        let same = self.runs.len() >= at + parts.len()
            && self.runs[at..at + parts.len()]
                .iter()
                .zip(parts)
                .all(|(a, b)| Arc::ptr_eq(a, b));
        if same && merged.first == first.first {
            self.runs.splice(at..at + parts.len(), [merged]);
            // The parts' filters go first: the caller (and a reader) may still hold the
            // parts, and their filters, kept until the last holder drops them, were alive
            // beside the merged run's while it read its own.
            for p in parts {
                if let Err(e) = p.keep_bloom(false) {
                    tracing::warn!(error = %e, "cannot let a merged index run's Bloom filter go");
                }
            }
            self.place_blooms();
        }
    }

    /// The (time, seq) of up to `limit` events meeting every condition, in the time range,
    /// newest first, strictly after `after`.
    pub(crate) fn select(
        &self,
        conds: &[Cond],
        start: i64,
        end: i64,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<(i64, u64)>, StoreError> {
        let lo = (start, 0u64);
        let mut hi = (end, u64::MAX);
        if let Some(c) = after {
            // Strictly before the cursor.
            let c = (c.time, c.seq);
            let before = if c.1 > 0 {
                (c.0, c.1 - 1)
            } else {
                (c.0.saturating_sub(1), u64::MAX)
            };
            hi = hi.min(before);
        }
        let mut sources: Vec<Source<'_>> = self.sources().collect();
        // Newest parts first: once `limit` hits are found, a part whose newest event is older
        // than all of them cannot change the answer.
        sources.sort_by_key(|s| std::cmp::Reverse(s.time_bounds().1));
        let mut out: Vec<(i64, u64)> = Vec::new();
        for s in &sources {
            let (min_t, max_t) = s.time_bounds();
            if max_t < lo.0 || min_t > hi.0 {
                continue;
            }
            if out.len() >= limit && out.last().is_some_and(|w| w.0 > max_t) {
                break;
            }
            let found = s.select(conds, lo, hi, limit)?;
            out.extend(found);
            out.sort_unstable_by(|a, b| b.cmp(a));
            out.truncate(limit);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn blind(i: u64) -> Blind {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
        b[8..].copy_from_slice(&i.to_be_bytes());
        b
    }

    /// An index of the events `1..` in chunks of `chunks` events: every chunk but the last is
    /// written out as a run, the last stays in the memtable. Event `seq` has the time
    /// `time_of(seq)` and the values `vals_of(seq)`, plus a popular value on every other event
    /// and a medium one on every 7th. Returns the index and the events as posted.
    fn build(
        dir: &std::path::Path,
        chunks: &[u64],
        (popular, medium): (u64, u64),
        time_of: impl Fn(u64) -> i64,
        vals_of: impl Fn(u64) -> Vec<u64>,
    ) -> (Index, Vec<(u64, i64, Vec<u64>)>) {
        let mut idx = Index::default();
        let mut events = Vec::new();
        let mut seq = 1u64;
        for (i, chunk) in chunks.iter().enumerate() {
            for _ in 0..*chunk {
                let time = time_of(seq);
                let mut vals = vals_of(seq);
                if seq.is_multiple_of(2) {
                    vals.push(popular);
                }
                if seq.is_multiple_of(7) {
                    vals.push(medium);
                }
                idx.publish(seq, time, blind(u64::MAX - seq), [0u8; 8]);
                for v in &vals {
                    idx.post(blind(*v), seq);
                }
                events.push((seq, time, vals));
                seq += 1;
            }
            if i + 1 < chunks.len() {
                let frozen = idx.freeze().unwrap();
                let path = frozen.write_run(dir, None).unwrap();
                idx.install_run(Arc::new(Run::open(&path).unwrap()));
            }
        }
        (idx, events)
    }

    /// Conditions on the blinds of values: each inner list is any of its values.
    fn conds_of(conds: &[Vec<u64>]) -> Vec<Cond> {
        conds
            .iter()
            .map(|vs| Cond::AnyOf(vs.iter().map(|v| blind(*v)).collect()))
            .collect()
    }

    /// The (time, seq) of the events in `start..=end` meeting every condition, newest first.
    fn brute_force(
        events: &[(u64, i64, Vec<u64>)],
        conds: &[Vec<u64>],
        start: i64,
        end: i64,
    ) -> Vec<(i64, u64)> {
        let mut want: Vec<(i64, u64)> = events
            .iter()
            .filter(|(_, t, vals)| {
                *t >= start
                    && *t <= end
                    && conds.iter().all(|any| any.iter().any(|v| vals.contains(v)))
            })
            .map(|(s, t, _)| (*t, *s))
            .collect();
        want.sort_unstable_by(|a, b| b.cmp(a));
        want
    }

    /// A popular value (every other event), a medium one (every 7th) and rare ones (one of
    /// 40 users, every event), over runs of several sizes and the memtable: every selection of
    /// a rare list with popular ones equals the brute-force answer, whatever the order of the
    /// conditions and the time range.
    #[test]
    fn rare_and_popular_lists_intersect_as_brute_force_does() {
        let dir = tempfile::tempdir().unwrap();
        let (popular, medium) = (1_000_000u64, 1_000_001u64);
        let (idx, events) = build(
            dir.path(),
            &[6_000, 2_500, 700, 3_000],
            (popular, medium),
            |seq| 1_000_000 + (seq as i64) * 10 - if seq.is_multiple_of(11) { 500 } else { 0 },
            |seq| vec![seq % 40],
        );
        assert_eq!(idx.runs.len(), 3);
        let cases: Vec<Vec<Vec<u64>>> = vec![
            vec![vec![3], vec![popular]],
            vec![vec![popular], vec![3]],
            vec![vec![4], vec![popular], vec![medium]],
            vec![vec![5, 6], vec![popular]],
            vec![vec![popular], vec![medium]],
            vec![vec![popular]],
            vec![vec![9], vec![77]],
        ];
        for conds in cases {
            let cs = conds_of(&conds);
            for (start, end, limit) in [
                (i64::MIN, i64::MAX, 100_000),
                (1_020_000, 1_090_000, 100_000),
                (i64::MIN, i64::MAX, 25),
            ] {
                let mut want = brute_force(&events, &conds, start, end);
                want.truncate(limit);
                // Twice: the second time the long lists come from the cache.
                for _ in 0..2 {
                    let got = idx.select(&cs, start, end, None, limit).unwrap();
                    assert_eq!(got, want, "{conds:?} {start} {end} {limit}");
                }
            }
        }
    }

    /// Filters with time ranges narrow and wide, over runs longer than [`SCAN_LIMIT`] and the
    /// memtable, with events whose times fall far before or after their neighbours': every
    /// selection, and every page of it followed through its cursor, equals the brute-force
    /// answer (a narrow window skips the blocks of a run outside it, and must not skip a late
    /// event inside it).
    #[test]
    fn filters_with_narrow_and_wide_time_ranges_select_as_brute_force_does() {
        let dir = tempfile::tempdir().unwrap();
        let (all, popular, medium) = (2_000_000u64, 2_000_001u64, 2_000_002u64);
        let time_of = |seq: u64| -> i64 {
            let t = 1_000_000 + (seq as i64) * 10;
            if seq.is_multiple_of(1009) {
                t - 200_000 // about 20,000 events late: a block of its own run's far past
            } else if seq.is_multiple_of(1013) {
                t + 300_000 // a clock ahead: newer than the 30,000 events after it
            } else if seq.is_multiple_of(11) {
                t - 500
            } else {
                t
            }
        };
        let (idx, events) = build(
            dir.path(),
            &[30_000, 20_000, 5_000, 4_000],
            (popular, medium),
            time_of,
            |seq| vec![all, seq % 40, 1_000 + seq % 997],
        );
        assert_eq!(idx.runs.len(), 3);
        let cases: Vec<Vec<Vec<u64>>> = vec![
            vec![vec![3], vec![all]],
            vec![vec![all], vec![popular]],
            vec![vec![popular], vec![medium], vec![4]],
            vec![vec![5, 6], vec![popular]],
            vec![vec![all]],
            vec![vec![1_009], vec![popular]],
            vec![vec![all], vec![popular], vec![medium]],
            vec![vec![17], vec![1_000 + 17]],
        ];
        let ranges = [
            (i64::MIN, i64::MAX),
            (1_100_000, 1_101_500), // inside the first run
            (1_299_000, 1_302_000), // across the first two runs
            (800_000, 900_000),     // late events only
            (1_100_000, 1_100_000), // one instant
            (1_560_000, 1_590_000), // the memtable, and late events of runs
            (1_050_000, 1_550_000), // most of everything
            (0, 1_000),             // nothing
        ];
        for conds in cases {
            let cs = conds_of(&conds);
            for (start, end) in ranges {
                let want = brute_force(&events, &conds, start, end);
                for _ in 0..2 {
                    let got = idx.select(&cs, start, end, None, 100_000).unwrap();
                    assert_eq!(got, want, "{conds:?} {start} {end}");
                }
                // Page by page through the cursor, in pages of a quarter (at least 7).
                let page = (want.len() / 4).max(7);
                let mut paged = Vec::new();
                let mut after = None;
                loop {
                    let got = idx.select(&cs, start, end, after, page).unwrap();
                    assert!(got.len() <= page);
                    let Some(&(time, seq)) = got.last() else {
                        break;
                    };
                    paged.extend(got);
                    after = Some(Cursor { time, seq });
                }
                assert_eq!(paged, want, "paged: {conds:?} {start} {end}");
            }
        }
    }

    /// The runs' Bloom filters in memory stay within their budget however many runs there
    /// are (the newest are kept), and dedup answers the same from filters in memory and on
    /// disk.
    #[test]
    fn run_filters_in_memory_stay_within_their_budget() {
        let dir = tempfile::tempdir().unwrap();
        // Twelve runs of 2,000 events (a filter of 2,560 bytes each), then the memtable.
        let (mut idx, events) = build(dir.path(), &[2000; 13], (1, 2), |s| s as i64, |_| vec![]);
        let resident =
            |idx: &Index| -> Vec<bool> { idx.runs.iter().map(|r| r.bloom_resident()).collect() };
        let each = idx.runs[0].bloom_bytes();
        assert_eq!(
            resident(&idx),
            vec![true; 12],
            "the default budget holds them all"
        );
        for budget in [0, each, 5 * each + 1, 20 * each] {
            idx.bloom_budget = budget;
            idx.place_blooms();
            let kept: u64 = idx
                .runs
                .iter()
                .filter(|r| r.bloom_resident())
                .map(|r| r.bloom_bytes())
                .sum();
            assert!(
                kept <= budget,
                "{kept} bytes of filters kept, budget {budget}"
            );
            let n = (budget / each).min(12) as usize;
            let want: Vec<bool> = (0..12).map(|i| i >= 12 - n).collect();
            assert_eq!(
                resident(&idx),
                want,
                "the newest runs keep theirs, budget {budget}"
            );
            for (seq, _, _) in events.iter().step_by(97) {
                assert_eq!(
                    idx.dedup_get(&blind(u64::MAX - seq)).unwrap().map(|h| h.0),
                    Some(*seq)
                );
            }
            for i in 0..500u64 {
                assert_eq!(idx.dedup_get(&blind(u64::MAX / 2 - i)).unwrap(), None);
            }
        }
        // A new run takes its place among the newest: the budget still holds.
        idx.bloom_budget = 3 * each;
        idx.place_blooms();
        let frozen = idx.freeze().unwrap();
        let path = frozen.write_run(dir.path(), None).unwrap();
        idx.install_run(Arc::new(Run::open(&path).unwrap()));
        let mut want = vec![false; 10];
        want.extend([true; 3]);
        assert_eq!(resident(&idx), want);
    }

    /// Once a merge is installed, the runs it replaced hold no filter in memory, even while
    /// something still holds them (the merge job does until it is done), so the filters in
    /// memory never exceed the budget by the replaced runs'; and dedup answers as before.
    #[test]
    fn a_merge_lets_the_replaced_runs_filters_go() {
        let dir = tempfile::tempdir().unwrap();
        let (mut idx, events) = build(dir.path(), &[2000; 5], (1, 2), |s| s as i64, |_| vec![]);
        let parts: Vec<Arc<Run>> = idx.runs[..3].to_vec();
        assert!(parts.iter().all(|r| r.bloom_resident()));
        let path = crate::run::merge(dir.path(), &parts, None).unwrap();
        idx.install_merge(Arc::new(Run::open(&path).unwrap()), &parts);
        assert_eq!(idx.runs.len(), 2);
        assert!(
            parts.iter().all(|r| !r.bloom_resident()),
            "the replaced runs' filters are let go"
        );
        assert!(idx.runs.iter().all(|r| r.bloom_resident()));
        for (seq, _, _) in events.iter().step_by(53) {
            assert_eq!(
                idx.dedup_get(&blind(u64::MAX - seq)).unwrap().map(|h| h.0),
                Some(*seq)
            );
            // A run still held by someone answers from its file.
            if let Some(p) = parts.iter().find(|p| p.first <= *seq && *seq < p.end()) {
                assert!(p.may_contain(&blind(u64::MAX - seq)).unwrap());
            }
        }
    }
}
