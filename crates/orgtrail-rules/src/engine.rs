//! Many patterns compiled into one matcher.
//!
//! The cost of matching one event does not grow with the number of rules in the common case:
//!
//! 1. **Flatten once.** The paths any rule reads form a trie; the event is walked once along
//!    it, touching only those fields, and the leaves at each path are collected. An object is
//!    entered only if some path goes through it, and its members are then passed over in order
//!    against the trie node's children (most fail a first-byte test). Looking each child up by
//!    key instead (`Map::get`, serde_json's BTreeMap, a string comparison per B-tree key) cost
//!    more: 3,792 instructions per event against 2,236 for this walk, on the generated events
//!    of `orgtrail bench rules` with its 100 rules; and a member whose name holds a dot
//!    (`{"a.b": 1}` is at `a.b`) can only be found by looking at every name.
//! 2. **Index.** Each alternative of each pattern has an anchor: one of its conditions whose
//!    matchers are all exact values, `equals-ignore-case` or non-empty prefixes, chosen to be
//!    the one fewest other alternatives share. Anchors are hashed by (path, value), so an
//!    event's leaves look up only the alternatives they could satisfy: a rule on `eventName =
//!    DeleteTrail` costs nothing for a `GetObject`.
//! 3. **Verify** each candidate alternative in full (every condition, arrays' agreement).
//!
//! Alternatives without such a condition (only `anything-but`, `suffix`, `wildcard`,
//! `numeric`, `cidr` or `exists`) are verified for every event: they cost in proportion to
//! their number. Anchoring on a prefix costs one lookup per distinct prefix length at that path.
//!
//! Before a value is hashed, a filter of each map's keys by (length, first byte, last byte)
//! is asked whether it may be one of them (most values are none); an ASCII value is lower-cased
//! for `equals-ignore-case` and case-insensitive prefixes only if the filter of those keys lets
//! its lower-cased ends through. With the leaves' array lists not copied when empty and the
//! per-path spans of leaves stamped per event rather than cleared, this took `orgtrail bench
//! rules` (100 rules) from 4,296 to 4,124 instructions per event. In the walk, each trie node's
//! first-byte buckets also hold the lengths of their children's keys: a member as long as none
//! of them, with no dot where one of theirs would end, is passed over without comparing bytes
//! (4,021 instructions per event). The spans of an event's leaves by path are then found in
//! one pass over them: 3,944 instructions per event (median of four callgrind runs; 4,297
//! before this round, 8.2% fewer). The buffer of an event's leaves is then kept from one event
//! to the next on a thread instead of allocated and freed for each (mimalloc took its slow
//! path every time): 3,874 instructions per event against 4,522 (14.3% fewer; callgrind,
//! `orgtrail bench rules --events 20000 --rules 100`, matching only). The gain depends on
//! the buffer's size class: 3.9% fewer with 10 rules, 0.25% with 1,000.

use serde_json::Value;

/// Hash maps keyed by rule values: foldhash (hashbrown's default hasher), seeded per process.
/// SipHash cost a quarter of matching; the keys are the rules' own values, looked up by an
/// event's values, and a per-process seed keeps those from being steered into collisions.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

use crate::leaf::{Leaf, alternative_holds, equal};
use crate::pattern::{Condition, Matcher, Pattern, Scalar};
use crate::screen::Known;

/// The number of a path an engine reads.
pub type PathId = usize;
type AltId = u32;

/// A trie node of the paths rules read. Children are sorted by key, as the keys of a parsed
/// JSON object are, so that an object and a node's children are walked together in one pass.
#[derive(Debug, Default)]
struct Node {
    path: Option<PathId>,
    children: Vec<(String, Node)>,
    /// The children whose keys start with byte `b` are `children[lo..hi]` where `lo` and `hi`
    /// are those of `by_first[b]` (they are sorted): keys of an event's object that start with
    /// a byte no child starts with, or whose length is none of theirs and that hold no dot
    /// where one of theirs ends, are passed over without a comparison. Empty until the trie is
    /// sealed.
    by_first: Box<[Bucket]>,
    /// A child's key is empty (a pattern's `a..b`): every key must be looked at.
    empty_child: bool,
}

/// The children of a trie node whose keys start with one byte.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    lo: u32,
    hi: u32,
    /// Bit `n` is set if one of these children's keys is `n` bytes long (every bit, if one is
    /// 64 bytes long or longer); 0 if there are none.
    lens: u64,
}

impl Node {
    /// Fills the first-byte filters, once the trie is built.
    fn seal(&mut self) {
        self.empty_child = self.children.first().is_some_and(|(k, _)| k.is_empty());
        let starts: Vec<u32> = (0..=256usize)
            .map(|b| {
                self.children.partition_point(|(k, _)| {
                    k.as_bytes().first().is_none_or(|f| usize::from(*f) < b)
                }) as u32
            })
            .collect();
        self.by_first = starts
            .windows(2)
            .map(|w| {
                let lens =
                    self.children[w[0] as usize..w[1] as usize]
                        .iter()
                        .fold(0u64, |m, (k, _)| match k.len() {
                            n @ 0..64 => m | 1 << n,
                            _ => u64::MAX,
                        });
                Bucket {
                    lo: w[0],
                    hi: w[1],
                    lens,
                }
            })
            .collect();
        for (_, n) in &mut self.children {
            n.seal();
        }
    }

    /// The child whose key is exactly `key` (`Ok`), or whether some child's key followed by a
    /// dot starts `key` (`Err(true)`: `key` holds several segments of a path).
    #[inline]
    fn find(&self, key: &[u8]) -> Result<&Node, bool> {
        if self.empty_child {
            return self.find_among(&self.children, key);
        }
        let Some(first) = key.first() else {
            return Err(false);
        };
        // 256 entries once sealed; an unsealed node has no children to find.
        let Some(&Bucket { lo, hi, lens }) = self.by_first.get(usize::from(*first)) else {
            return Err(false);
        };
        if lens == 0 {
            // Most keys of an object: no child starts with their first byte.
            return Err(false);
        }
        let n = key.len();
        if n < 64 && lens & (1 << n) == 0 {
            // No child is as long: the key can only be a child's followed by a dot.
            let mut shorter = lens & ((1 << n) - 1);
            loop {
                if shorter == 0 {
                    return Err(false);
                }
                if key.get(shorter.trailing_zeros() as usize) == Some(&b'.') {
                    break;
                }
                shorter &= shorter - 1;
            }
        }
        match self.children.get(lo as usize..hi as usize) {
            Some(same_first) => self.find_among(same_first, key),
            None => Err(false),
        }
    }

    #[inline]
    fn find_among<'n>(&self, children: &'n [(String, Node)], key: &[u8]) -> Result<&'n Node, bool> {
        let mut dotted = false;
        for (c, n) in children {
            let c = c.as_bytes();
            if c.len() == key.len() {
                if same_bytes(c, key) {
                    return Ok(n);
                }
            } else if c.len() < key.len() && key[c.len()] == b'.' && key.starts_with(c) {
                dotted = true;
            }
        }
        Err(dotted)
    }

    fn child(&self, key: &str) -> Option<&Node> {
        self.children
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| &self.children[i].1)
    }

    fn child_mut(&mut self, key: &str) -> &mut Node {
        let i = match self.children.binary_search_by(|(k, _)| k.as_str().cmp(key)) {
            Ok(i) => i,
            Err(i) => {
                self.children.insert(i, (key.to_owned(), Node::default()));
                i
            }
        };
        &mut self.children[i].1
    }
}

/// Whether `a` and `b`, of the same length, hold the same bytes: keys are short, and comparing
/// them as two overlapping words (the first and the last eight or four bytes) cost a fifth of a
/// byte loop or a call to memcmp on CloudTrail's keys, many of which share a length and a
/// prefix (`eventName`, `eventType`, `eventTime`).
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    debug_assert_eq!(n, b.len());
    let w8 = |s: &[u8], at: usize| {
        u64::from_le_bytes(
            s.get(at..at + 8)
                .and_then(|w| w.try_into().ok())
                .unwrap_or([0; 8]),
        )
    };
    let w4 = |s: &[u8], at: usize| {
        u32::from_le_bytes(
            s.get(at..at + 4)
                .and_then(|w| w.try_into().ok())
                .unwrap_or([0; 4]),
        )
    };
    match n {
        8..=16 => w8(a, 0) == w8(b, 0) && w8(a, n - 8) == w8(b, n - 8),
        4..=7 => w4(a, 0) == w4(b, 0) && w4(a, n - 4) == w4(b, n - 4),
        _ => a == b,
    }
}

/// The anchors at one path.
#[derive(Debug, Default)]
struct PathIndex {
    strings: HashMap<String, Vec<AltId>>,
    others: Vec<(Scalar, Vec<AltId>)>,
    /// `equals-ignore-case`, lower-cased.
    lower: HashMap<String, Vec<AltId>>,
    prefixes: HashMap<String, Vec<AltId>>,
    prefix_lens: Vec<usize>,
    iprefixes: HashMap<String, Vec<AltId>>,
    iprefix_lens: Vec<usize>,
    /// The keys of `strings`, `lower`, `prefixes` and `iprefixes` by length, first and last
    /// byte: a value none of them may be is not hashed (nor lower-cased).
    strings_filter: KeyFilter,
    lower_filter: KeyFilter,
    prefixes_filter: KeyFilter,
    iprefixes_filter: KeyFilter,
}

/// A one-hash Bloom filter of byte strings by (length, first byte, last byte), 4,096 bits:
/// `false` from [`KeyFilter::may_hold`] proves a string is not among those inserted. Most of
/// an event's values are no rule's anchor, and telling so this way costs a few instructions
/// where hashing the value and probing a map cost about fifty.
#[derive(Debug)]
struct KeyFilter(Box<[u64; 64]>);

impl Default for KeyFilter {
    fn default() -> KeyFilter {
        KeyFilter(Box::new([0; 64]))
    }
}

impl KeyFilter {
    #[inline]
    fn slot(len: usize, first: u8, last: u8) -> usize {
        let h = (len as u32).wrapping_mul(0x9E37_79B1)
            ^ u32::from(first).wrapping_mul(0x85EB_CA77)
            ^ u32::from(last).wrapping_mul(0xC2B2_AE3D);
        (h >> 20) as usize
    }

    #[inline]
    fn ends(b: &[u8]) -> (u8, u8) {
        (
            b.first().copied().unwrap_or(0),
            b.last().copied().unwrap_or(0),
        )
    }

    fn insert(&mut self, key: &[u8]) {
        let (first, last) = KeyFilter::ends(key);
        let slot = KeyFilter::slot(key.len(), first, last);
        self.0[slot / 64] |= 1 << (slot % 64);
    }

    #[inline]
    fn holds_slot(&self, slot: usize) -> bool {
        self.0
            .get(slot / 64)
            .is_some_and(|w| w & (1 << (slot % 64)) != 0)
    }

    /// Whether `key` may have been inserted.
    #[inline]
    fn may_hold(&self, key: &[u8]) -> bool {
        let (first, last) = KeyFilter::ends(key);
        self.holds_slot(KeyFilter::slot(key.len(), first, last))
    }

    /// Whether `key` (ASCII) lower-cased may have been inserted.
    #[inline]
    fn may_hold_lowered(&self, key: &[u8]) -> bool {
        let (first, last) = KeyFilter::ends(key);
        self.holds_slot(KeyFilter::slot(
            key.len(),
            first.to_ascii_lowercase(),
            last.to_ascii_lowercase(),
        ))
    }
}

#[derive(Debug)]
struct Alt {
    rule: usize,
    conditions: Vec<Condition>,
    paths: Vec<PathId>,
}

/// Compiled patterns. Rules are numbered by their position in what [`Engine::new`] was given.
#[derive(Debug, Default)]
pub struct Engine {
    paths: Vec<String>,
    trie: Node,
    alts: Vec<Alt>,
    /// By path, ascending.
    index: Vec<(PathId, PathIndex)>,
    /// Alternatives with no anchor: verified for every event.
    scan: Vec<AltId>,
    /// The screen (see [`Engine::may_match`]): the alternatives anchored on screenable paths
    /// only, by path, ascending;
    /// with the alternatives anchored at each;
    screen: Vec<(PathId, PathIndex, Vec<AltId>)>,
    /// the alternatives with no such anchor, screened condition by condition;
    screen_rest: Vec<AltId>,
    /// and by path number, whether a caller may know its value.
    screenable: Vec<bool>,
}

/// What an anchor condition's matcher is hashed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Str(String),
    Other(String),
    Lower(String),
    Prefix(String),
    IPrefix(String),
}

fn keys(c: &Condition) -> Option<Vec<Key>> {
    c.matchers
        .iter()
        .map(|m| match m {
            Matcher::Exact(Scalar::String(s)) => Some(Key::Str(s.clone())),
            Matcher::Exact(other) => Some(Key::Other(format!("{other:?}"))),
            Matcher::EqualsIgnoreCase(s) => Some(Key::Lower(s.clone())),
            Matcher::Prefix {
                prefix,
                ignore_case,
            } if !prefix.is_empty() => Some(if *ignore_case {
                Key::IPrefix(prefix.clone())
            } else {
                Key::Prefix(prefix.clone())
            }),
            _ => None,
        })
        .collect()
}

impl Engine {
    /// Compiles `patterns`; rule `i` is `patterns[i]`.
    pub fn new(patterns: &[Pattern]) -> Engine {
        Engine::with_paths(patterns, &[])
    }

    /// Compiles `patterns`, and collects the leaves at `paths` too when an event is flattened
    /// (for fields computed from the event's own, such as an envelope's `source`: see
    /// [`Flat::first`]).
    pub fn with_paths(patterns: &[Pattern], paths: &[&str]) -> Engine {
        Engine::with_screen(patterns, paths, |p| p.starts_with('$') || !p.contains('.'))
    }

    /// [`Engine::with_paths`], with the paths a caller can know values of without the event
    /// (see [`Engine::anchor_paths`]): by default those at the top, and computed ones.
    pub fn with_screen(
        patterns: &[Pattern],
        paths: &[&str],
        screenable: impl Fn(&str) -> bool,
    ) -> Engine {
        let mut e = Engine::default();
        let mut ids: HashMap<String, PathId> = HashMap::default();
        for p in paths {
            ids.entry((*p).to_owned()).or_insert_with(|| {
                e.paths.push((*p).to_owned());
                e.paths.len() - 1
            });
        }
        for (rule, p) in patterns.iter().enumerate() {
            for alt in &p.alternatives {
                let paths = alt
                    .iter()
                    .map(|c| {
                        *ids.entry(c.path.clone()).or_insert_with(|| {
                            e.paths.push(c.path.clone());
                            e.paths.len() - 1
                        })
                    })
                    .collect();
                e.alts.push(Alt {
                    rule,
                    conditions: alt.clone(),
                    paths,
                });
            }
        }
        // Paths numbered in the order the trie walk meets them (segment by segment, computed
        // paths such as `$envelope.source`, pushed after the walk, last), so that a flattened
        // event's leaves come out grouped by path without sorting in the common case.
        let mut order: Vec<PathId> = (0..e.paths.len()).collect();
        fn walk_order(p: &str) -> (bool, Vec<&str>) {
            (p.starts_with('$'), p.split('.').collect())
        }
        order.sort_by(|a, b| walk_order(&e.paths[*a]).cmp(&walk_order(&e.paths[*b])));
        let mut renumber = vec![0; e.paths.len()];
        for (new, old) in order.iter().enumerate() {
            renumber[*old] = new;
        }
        e.paths = order.iter().map(|old| e.paths[*old].clone()).collect();
        for a in &mut e.alts {
            for p in &mut a.paths {
                *p = renumber[*p];
            }
        }
        for (id, path) in e.paths.iter().enumerate() {
            let mut node = &mut e.trie;
            for seg in path.split('.') {
                node = node.child_mut(seg);
            }
            node.path = Some(id);
        }
        e.trie.seal();
        // How many alternatives could anchor on each (path, key): anchor each on its rarest.
        let mut freq: HashMap<(PathId, Key), usize> = HashMap::default();
        for a in &e.alts {
            for (c, p) in a.conditions.iter().zip(&a.paths) {
                for k in keys(c).into_iter().flatten() {
                    *freq.entry((*p, k)).or_default() += 1;
                }
            }
        }
        (e.index, e.scan) = build_index(&e.alts, &freq, |_| true);
        // The screen: each alternative anchored on a field a caller may know without parsing
        // the record.
        e.screenable = e.paths.iter().map(|p| screenable(p)).collect();
        let (screen, rest) = build_index(&e.alts, &freq, |p| e.screenable[p]);
        e.screen = screen
            .into_iter()
            .map(|(p, ix)| {
                let mut alts: Vec<AltId> = ix
                    .strings
                    .values()
                    .chain(ix.lower.values())
                    .chain(ix.prefixes.values())
                    .chain(ix.iprefixes.values())
                    .chain(ix.others.iter().map(|(_, l)| l))
                    .flatten()
                    .copied()
                    .collect();
                alts.sort_unstable();
                alts.dedup();
                (p, ix, alts)
            })
            .collect();
        e.screen_rest = rest;
        e
    }

    /// Every dotted path some rule reads.
    pub fn paths(&self) -> &[String] {
        &self.paths
    }

    /// Whether some rule reads `path`.
    pub fn reads(&self, path: &str) -> bool {
        self.paths.iter().any(|p| p == path)
    }

    /// How many alternatives are verified for every event (they have no anchor).
    pub fn unanchored(&self) -> usize {
        self.scan.len()
    }

    /// Whether some rule may match an event of which only the values at screenable paths
    /// (see [`Engine::with_screen`]) may be known: `value_of` answers by path number. `false`
    /// proves that no rule matches; an unknown value never leads to `false`.
    ///
    /// Each alternative is screened by an anchor at a screenable path where it has one (a
    /// hash lookup of the known value). Those it leaves in, those whose anchor's value is not
    /// known and those with no screenable anchor are then checked condition by condition: each
    /// condition at a screenable path whose value is known is evaluated on that value (or on
    /// its absence) as matching would; one that fails rules the alternative out.
    pub fn may_match<'k>(&self, value_of: impl Fn(PathId) -> Known<'k>) -> bool {
        // The alternatives to check condition by condition: those whose anchor a known value
        // hits, those whose anchor's value is not known, and those with no screenable anchor.
        // (No allocation for an event whose anchors hit nothing.)
        let mut check: Vec<AltId> = Vec::new();
        for (p, ix, anchored) in &self.screen {
            match value_of(*p) {
                Known::Str(s) => self.anchored(ix, s, &mut check),
                Known::Owned(s) => self.anchored(ix, &s, &mut check),
                Known::Absent => {}
                Known::Unknown => check.extend_from_slice(anchored),
            }
        }
        'alts: for a in self.screen_rest.iter().chain(&check) {
            let alt = &self.alts[*a as usize];
            for (c, p) in alt.conditions.iter().zip(&alt.paths) {
                if !self.screenable.get(*p).copied().unwrap_or(false) {
                    continue;
                }
                let value = match value_of(*p) {
                    Known::Str(s) => Some(Value::String(s.to_owned())),
                    Known::Owned(s) => Some(Value::String(s)),
                    Known::Absent => None,
                    Known::Unknown => continue,
                };
                let leaf = value.as_ref().map(|value| Leaf {
                    value,
                    arrays: Vec::new(),
                });
                let leaves: &[Leaf<'_>] = leaf.as_slice();
                if !alternative_holds(std::slice::from_ref(c), &[leaves]) {
                    continue 'alts;
                }
            }
            return true;
        }
        false
    }

    /// The alternatives whose anchor in `ix` a string leaf hits, added to `out`.
    fn anchored(&self, ix: &PathIndex, value: &str, out: &mut Vec<AltId>) {
        SCRATCH.with_borrow_mut(|scratch| candidates_for_str(ix, value, out, &mut scratch.lower));
    }

    /// The number of `path` (a path some rule reads, or one given to
    /// [`Engine::with_paths`]).
    pub fn path_id(&self, path: &str) -> Option<PathId> {
        self.paths.iter().position(|p| p == path)
    }

    /// The rules that match `event`, ascending. `extra` adds leaves at paths the event does
    /// not have (computed fields, such as an EventBridge envelope's `source`).
    pub fn matches(&self, event: &Value, extra: &[(&str, &Value)], out: &mut Vec<usize>) {
        let mut flat = self.flatten(event);
        for (path, v) in extra {
            if let Some(id) = self.path_id(path) {
                flat.push(id, v);
            }
        }
        self.matches_flat(flat, out);
    }

    /// Every leaf of `event` at a path some rule reads (or given to [`Engine::with_paths`]):
    /// the event walked once, along the paths' trie only.
    pub fn flatten<'e>(&self, event: &'e Value) -> Flat<'e> {
        let mut leaves = relifetime(LEAVES.take());
        leaves.reserve(self.paths.len() + 4);
        flatten(event, &self.trie, &mut Vec::new(), &mut leaves);
        Flat { leaves }
    }

    /// The rules that match a flattened event, ascending.
    pub fn matches_flat(&self, flat: Flat<'_>, out: &mut Vec<usize>) {
        out.clear();
        let mut leaves = flat.leaves;
        // Grouped by path. The trie walk yields them nearly in order.
        if !leaves.is_sorted_by_key(|(p, _)| *p) {
            leaves.sort_by_key(|(p, _)| *p);
        }
        SCRATCH.with_borrow_mut(|scratch| {
            let Scratch {
                candidates,
                lower,
                spans,
                stamp,
            } = scratch;
            // Where each path's leaves are, in one pass over them. A span counts only if it
            // bears this event's stamp: the spans are not cleared from one event to the next.
            *stamp = stamp.wrapping_add(1);
            if *stamp == 0 {
                spans.fill((0, 0, 0));
                *stamp = 1;
            }
            if spans.len() < self.paths.len() {
                spans.resize(self.paths.len(), (0, 0, 0));
            }
            let stamp = *stamp;
            // The leaves are grouped by path: a path's span starts at its first leaf and is
            // stretched over each next one.
            for (i, (p, _)) in leaves.iter().enumerate() {
                let i = i as u32;
                if let Some(span) = spans.get_mut(*p) {
                    if span.0 == stamp {
                        span.2 = i + 1;
                    } else {
                        *span = (stamp, i, i + 1);
                    }
                }
            }
            let spans = &*spans;
            let at = |p: PathId| match spans.get(p) {
                Some(&(s, from, to)) if s == stamp => {
                    leaves.get(from as usize..to as usize).unwrap_or_default()
                }
                _ => &[],
            };
            candidates.clear();
            candidates.extend_from_slice(&self.scan);
            for (pid, ix) in &self.index {
                for (_, l) in at(*pid) {
                    candidates_for(ix, l.value, candidates, lower);
                }
            }
            if candidates.is_empty() {
                return;
            }
            candidates.sort_unstable();
            candidates.dedup();
            // The leaves of each condition's path; on the stack for alternatives of up to
            // eight conditions, as nearly all are.
            let mut on_stack: [&[(PathId, Leaf<'_>)]; 8] = [&[]; 8];
            let mut spilled: Vec<&[(PathId, Leaf<'_>)]> = Vec::new();
            for c in candidates.iter() {
                let a = &self.alts[*c as usize];
                if out.contains(&a.rule) {
                    continue;
                }
                let refs = if a.paths.len() <= on_stack.len() {
                    for (r, p) in on_stack.iter_mut().zip(&a.paths) {
                        *r = at(*p);
                    }
                    &on_stack[..a.paths.len()]
                } else {
                    spilled.clear();
                    spilled.extend(a.paths.iter().map(|p| at(*p)));
                    &spilled[..]
                };
                if alternative_holds(&a.conditions, refs) {
                    out.push(a.rule);
                }
            }
        });
        out.sort_unstable();
        recycle(leaves);
    }
}

thread_local! {
    /// The buffer of the last event's leaves on this thread, empty, for the next event's:
    /// allocating and freeing it for each event cost a sixth of matching (mimalloc's slow
    /// path, as the buffer is larger than its small-object pages take without a page change).
    static LEAVES: std::cell::Cell<Vec<(PathId, Leaf<'static>)>> =
        const { std::cell::Cell::new(Vec::new()) };
}

/// An emptied buffer of leaves as one of leaves of another lifetime: collected in place
/// (the same layout), so the allocation is kept.
// `filter` keeps the element type; this changes its lifetime, and there are no elements.
#[allow(clippy::unnecessary_filter_map)]
fn relifetime<'a, 'b>(mut leaves: Vec<(PathId, Leaf<'a>)>) -> Vec<(PathId, Leaf<'b>)> {
    leaves.clear();
    leaves.into_iter().filter_map(|_| None).collect()
}

/// Keeps `leaves`' allocation, emptied, for the next event on this thread.
fn recycle(leaves: Vec<(PathId, Leaf<'_>)>) {
    LEAVES.set(relifetime(leaves));
}

/// Anchors each alternative on its rarest anchorable condition at a path `eligible` allows
/// (see the module docs): the index by path, ascending, and the alternatives left without an
/// anchor.
fn build_index(
    alts: &[Alt],
    freq: &HashMap<(PathId, Key), usize>,
    eligible: impl Fn(PathId) -> bool,
) -> (Vec<(PathId, PathIndex)>, Vec<AltId>) {
    let mut index: HashMap<PathId, PathIndex> = HashMap::default();
    let mut scan = Vec::new();
    for (alt_id, a) in alts.iter().enumerate() {
        let alt_id = alt_id as AltId;
        let best = a
            .conditions
            .iter()
            .zip(&a.paths)
            .filter(|(_, p)| eligible(**p))
            .filter_map(|(c, p)| keys(c).map(|ks| (c, p, ks)))
            .min_by_key(|(_, p, ks)| {
                ks.iter()
                    .map(|k| {
                        let f = freq.get(&(**p, k.clone())).copied().unwrap_or(0);
                        match k {
                            Key::Prefix(_) | Key::IPrefix(_) => 4 * f + 4,
                            _ => f,
                        }
                    })
                    .sum::<usize>()
            });
        let Some((anchor, p, ks)) = best else {
            scan.push(alt_id);
            continue;
        };
        let ix = index.entry(*p).or_default();
        for k in ks {
            match k {
                Key::Str(s) => ix.strings.entry(s).or_default().push(alt_id),
                Key::Other(_) => {
                    // The anchor's numbers, booleans and nulls, as scalars.
                    for m in &anchor.matchers {
                        if let Matcher::Exact(s) = m
                            && !matches!(s, Scalar::String(_))
                        {
                            match ix.others.iter_mut().find(|(o, _)| o == s) {
                                Some((_, v)) => {
                                    if v.last() != Some(&alt_id) {
                                        v.push(alt_id);
                                    }
                                }
                                None => ix.others.push((s.clone(), vec![alt_id])),
                            }
                        }
                    }
                }
                Key::Lower(s) => ix.lower.entry(s).or_default().push(alt_id),
                Key::Prefix(s) => {
                    if !ix.prefix_lens.contains(&s.len()) {
                        ix.prefix_lens.push(s.len());
                    }
                    ix.prefixes.entry(s).or_default().push(alt_id);
                }
                Key::IPrefix(s) => {
                    if !ix.iprefix_lens.contains(&s.len()) {
                        ix.iprefix_lens.push(s.len());
                    }
                    ix.iprefixes.entry(s).or_default().push(alt_id);
                }
            }
        }
    }
    for ix in index.values_mut() {
        for (map, filter) in [
            (&ix.strings, &mut ix.strings_filter),
            (&ix.lower, &mut ix.lower_filter),
            (&ix.prefixes, &mut ix.prefixes_filter),
            (&ix.iprefixes, &mut ix.iprefixes_filter),
        ] {
            for k in map.keys() {
                filter.insert(k.as_bytes());
            }
        }
        for list in ix
            .strings
            .values_mut()
            .chain(ix.lower.values_mut())
            .chain(ix.prefixes.values_mut())
            .chain(ix.iprefixes.values_mut())
        {
            list.dedup();
        }
    }
    let mut index: Vec<(PathId, PathIndex)> = index.into_iter().collect();
    index.sort_by_key(|(p, _)| *p);
    (index, scan)
}

/// The leaves of one event at the paths an [`Engine`] reads, each with the number of its path.
#[derive(Debug)]
pub struct Flat<'e> {
    leaves: Vec<(PathId, Leaf<'e>)>,
}

impl<'e> Flat<'e> {
    /// The value at path `id` reached through no array (for a path of one segment: the
    /// event's own field, when it is a scalar), if any.
    pub fn first(&self, id: PathId) -> Option<&'e Value> {
        self.leaves
            .iter()
            .find(|(p, l)| *p == id && l.arrays.is_empty())
            .map(|(_, l)| l.value)
    }

    /// Adds a computed value's leaves at path `id`.
    pub fn push(&mut self, id: PathId, v: &'e Value) {
        match v {
            Value::Array(_) | Value::Object(_) => {
                push_value(v, id, &mut Vec::new(), &mut self.leaves);
            }
            scalar => self.leaves.push((
                id,
                Leaf {
                    value: scalar,
                    arrays: Vec::new(),
                },
            )),
        }
    }
}

/// Buffers [`Engine::matches_flat`] reuses from one event to the next on a thread, instead of
/// allocating them for each.
#[derive(Default)]
struct Scratch {
    candidates: Vec<AltId>,
    /// A value lower-cased, for `equals-ignore-case` and case-insensitive prefixes.
    lower: String,
    /// By path: the stamp of the event that set it, and the range of that event's leaves at
    /// that path.
    spans: Vec<(u32, u32, u32)>,
    /// Counts the events matched on this thread (wrapping; 0 is never an event's).
    stamp: u32,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

fn candidates_for(ix: &PathIndex, v: &Value, out: &mut Vec<AltId>, lower: &mut String) {
    match v {
        Value::String(s) => candidates_for_str(ix, s, out, lower),
        other => {
            for (s, l) in &ix.others {
                if equal(s, other) {
                    out.extend_from_slice(l);
                }
            }
        }
    }
}

/// [`candidates_for`] a string leaf.
fn candidates_for_str(ix: &PathIndex, s: &str, out: &mut Vec<AltId>, lower: &mut String) {
    let b = s.as_bytes();
    if ix.strings_filter.may_hold(b)
        && let Some(l) = ix.strings.get(s)
    {
        out.extend_from_slice(l);
    }
    // Lower-cased only if some key may be hit: an ASCII value keeps its length, and its first
    // and last bytes lower-case on their own (any other is lower-cased whatever the filters).
    let worth_lowering = (!ix.lower.is_empty() || !ix.iprefixes.is_empty())
        && (!s.is_ascii()
            || ix.lower_filter.may_hold_lowered(b)
            || ix.iprefix_lens.iter().any(|n| {
                b.get(..*n)
                    .is_some_and(|p| ix.iprefixes_filter.may_hold_lowered(p))
            }));
    if worth_lowering {
        // Lower-cased into a reused buffer: ASCII in place, as most values are.
        lower.clear();
        if s.is_ascii() {
            lower.push_str(s);
            lower.make_ascii_lowercase();
        } else {
            lower.push_str(&s.to_lowercase());
        }
        let lower = lower.as_str();
        if let Some(l) = ix.lower.get(lower) {
            out.extend_from_slice(l);
        }
        for len in &ix.iprefix_lens {
            if lower.is_char_boundary(*len)
                && let Some(l) = ix.iprefixes.get(&lower[..*len])
            {
                out.extend_from_slice(l);
            }
        }
    }
    for len in &ix.prefix_lens {
        if b.get(..*len)
            .is_some_and(|p| ix.prefixes_filter.may_hold(p))
            && s.is_char_boundary(*len)
            && let Some(l) = ix.prefixes.get(&s[..*len])
        {
            out.extend_from_slice(l);
        }
    }
}

/// The arrays a leaf sits in: most sit in none, and an empty `Vec` is made without the call
/// that copying an empty slice costs.
#[inline]
fn arrays_of(ctx: &[(usize, u32)]) -> Vec<(usize, u32)> {
    if ctx.is_empty() {
        Vec::new()
    } else {
        ctx.to_vec()
    }
}

/// Collects the leaves of `v` at the trie's paths.
fn flatten<'e>(
    v: &'e Value,
    node: &Node,
    ctx: &mut Vec<(usize, u32)>,
    out: &mut Vec<(PathId, Leaf<'e>)>,
) {
    match v {
        Value::Array(items) => {
            let id = items.as_ptr() as usize;
            for (i, item) in items.iter().enumerate() {
                ctx.push((id, i as u32));
                flatten(item, node, ctx, out);
                ctx.pop();
            }
        }
        Value::Object(obj) => {
            if node.children.is_empty() {
                return;
            }
            for (k, child) in obj {
                match node.find(k.as_bytes()) {
                    // A scalar, as most fields are: its leaf without another call.
                    Ok(n) if !matches!(child, Value::Array(_) | Value::Object(_)) => {
                        if let Some(id) = n.path {
                            out.push((
                                id,
                                Leaf {
                                    value: child,
                                    arrays: arrays_of(ctx),
                                },
                            ));
                        }
                    }
                    Ok(n) => flatten(child, n, ctx, out),
                    // A key holding several segments (`a.b`) continues the path of each.
                    Err(true) => {
                        if let Some(n) = k.split('.').try_fold(node, |n, seg| n.child(seg)) {
                            flatten(child, n, ctx, out);
                        }
                    }
                    Err(false) => {}
                }
            }
        }
        scalar => {
            if let Some(id) = node.path {
                out.push((
                    id,
                    Leaf {
                        value: scalar,
                        arrays: arrays_of(ctx),
                    },
                ));
            }
        }
    }
}

/// Adds a computed value's leaves at path `id`.
fn push_value<'e>(
    v: &'e Value,
    id: PathId,
    ctx: &mut Vec<(usize, u32)>,
    out: &mut Vec<(PathId, Leaf<'e>)>,
) {
    match v {
        Value::Array(items) => {
            let aid = items.as_ptr() as usize;
            for (i, item) in items.iter().enumerate() {
                ctx.push((aid, i as u32));
                push_value(item, id, ctx, out);
                ctx.pop();
            }
        }
        Value::Object(_) => {}
        scalar => out.push((
            id,
            Leaf {
                value: scalar,
                arrays: arrays_of(ctx),
            },
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::{Leaf, PathId, relifetime, same_bytes};

    #[test]
    fn a_recycled_buffer_of_leaves_keeps_its_allocation() {
        let v = serde_json::json!("x");
        let mut leaves: Vec<(PathId, Leaf<'_>)> = Vec::with_capacity(64);
        leaves.push((
            0,
            Leaf {
                value: &v,
                arrays: vec![(1, 2)],
            },
        ));
        let at = leaves.as_ptr() as usize;
        let again: Vec<(PathId, Leaf<'static>)> = relifetime(leaves);
        assert!(again.is_empty());
        assert_eq!(again.capacity(), 64);
        assert_eq!(again.as_ptr() as usize, at);
    }

    #[test]
    fn same_bytes_answers_as_slice_equality_at_every_length_and_position() {
        for n in 0..40usize {
            let a: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(same_bytes(&a, &a.clone()), "length {n}");
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 0x20;
                assert!(!same_bytes(&a, &b), "length {n}, differing at {at}");
            }
        }
    }
}
