//! Many patterns compiled into one matcher.
//!
//! The cost of matching one event does not grow with the number of rules in the common case:
//!
//! 1. **Flatten once.** The paths any rule reads form a trie; the event is walked once along
//!    it, touching only those fields, and the leaves at each path are collected.
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

use serde_json::Value;

/// Hash maps keyed by rule values: foldhash (hashbrown's default hasher), seeded per process.
/// SipHash cost a quarter of matching; the keys are the rules' own values, looked up by an
/// event's values, and a per-process seed keeps those from being steered into collisions.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

use crate::leaf::{Leaf, accepts, alternative_holds};
use crate::pattern::{Condition, Matcher, Pattern, Scalar};

type PathId = usize;
type AltId = u32;

/// A trie node of the paths rules read. Children are sorted by key, as the keys of a parsed
/// JSON object are, so that an object and a node's children are walked together in one pass.
#[derive(Debug, Default)]
struct Node {
    path: Option<PathId>,
    children: Vec<(String, Node)>,
}

impl Node {
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

/// `a < b`, comparing inline: most keys differ from a child within a few bytes, and a call to
/// memcmp per key cost more than the comparison.
fn less(a: &[u8], b: &[u8]) -> bool {
    let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    match (a.get(common), b.get(common)) {
        (Some(x), Some(y)) => x < y,
        (None, Some(_)) => true,
        (_, None) => false,
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
        let mut e = Engine::default();
        let mut ids: HashMap<String, PathId> = HashMap::default();
        let mut index: HashMap<PathId, PathIndex> = HashMap::default();
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
        for (id, path) in e.paths.iter().enumerate() {
            let mut node = &mut e.trie;
            for seg in path.split('.') {
                node = node.child_mut(seg);
            }
            node.path = Some(id);
        }
        // How many alternatives could anchor on each (path, key): anchor each on its rarest.
        let mut freq: HashMap<(PathId, Key), usize> = HashMap::default();
        for a in &e.alts {
            for (c, p) in a.conditions.iter().zip(&a.paths) {
                for k in keys(c).into_iter().flatten() {
                    *freq.entry((*p, k)).or_default() += 1;
                }
            }
        }
        for (alt_id, a) in e.alts.iter().enumerate() {
            let alt_id = alt_id as AltId;
            let best = a
                .conditions
                .iter()
                .zip(&a.paths)
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
                e.scan.push(alt_id);
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
        e.index = index.into_iter().collect();
        e.index.sort_by_key(|(p, _)| *p);
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

    /// The rules that match `event`, ascending. `extra` adds leaves at paths the event does
    /// not have (computed fields, such as an EventBridge envelope's `source`).
    pub fn matches(&self, event: &Value, extra: &[(&str, &Value)], out: &mut Vec<usize>) {
        out.clear();
        // Every leaf at a path some rule reads, grouped by path.
        let mut leaves: Vec<(PathId, Leaf<'_>)> = Vec::with_capacity(self.paths.len());
        flatten(event, &self.trie, &mut Vec::new(), &mut leaves);
        for (path, v) in extra {
            if let Some(id) = self.paths.iter().position(|p| p == path) {
                push_value(v, id, &mut Vec::new(), &mut leaves);
            }
        }
        leaves.sort_by_key(|(p, _)| *p);
        let at = |p: PathId| {
            let from = leaves.partition_point(|(q, _)| *q < p);
            let to = leaves.partition_point(|(q, _)| *q <= p);
            &leaves[from..to]
        };
        let mut candidates: Vec<AltId> = Vec::with_capacity(self.scan.len() + 16);
        candidates.extend_from_slice(&self.scan);
        for (pid, ix) in &self.index {
            for (_, l) in at(*pid) {
                candidates_for(ix, l.value, &mut candidates);
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        let mut refs: Vec<&[(PathId, Leaf<'_>)]> = Vec::new();
        for c in candidates {
            let a = &self.alts[c as usize];
            if out.contains(&a.rule) {
                continue;
            }
            refs.clear();
            refs.extend(a.paths.iter().map(|p| at(*p)));
            if alternative_holds(&a.conditions, &refs) {
                out.push(a.rule);
            }
        }
        out.sort_unstable();
    }
}

fn candidates_for(ix: &PathIndex, v: &Value, out: &mut Vec<AltId>) {
    match v {
        Value::String(s) => {
            if let Some(l) = ix.strings.get(s.as_str()) {
                out.extend_from_slice(l);
            }
            if !ix.lower.is_empty() || !ix.iprefixes.is_empty() {
                let lower = s.to_lowercase();
                if let Some(l) = ix.lower.get(&lower) {
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
                if s.is_char_boundary(*len)
                    && let Some(l) = ix.prefixes.get(&s[..*len])
                {
                    out.extend_from_slice(l);
                }
            }
        }
        other => {
            for (s, l) in &ix.others {
                if accepts(&Matcher::Exact(s.clone()), other) {
                    out.extend_from_slice(l);
                }
            }
        }
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
            // The object's keys and the node's children, both sorted, walked together: `ci`
            // is the first child not below the key.
            let children = &node.children;
            let Some(last) = children.last().and_then(|(c, _)| c.as_bytes().first()) else {
                return;
            };
            let mut ci = 0;
            for (k, child) in obj {
                let kb = k.as_bytes();
                while ci < children.len() && less(children[ci].0.as_bytes(), kb) {
                    ci += 1;
                }
                if let Some((c, n)) = children.get(ci)
                    && c.len() == k.len()
                    && c == k
                {
                    flatten(child, n, ctx, out);
                    continue;
                }
                // A key holding several segments (`a.b`) continues a child below it that
                // starts with the same byte.
                let mut j = ci;
                while j > 0 {
                    j -= 1;
                    let c = children[j].0.as_bytes();
                    if c.first() != kb.first() {
                        break;
                    }
                    if kb.len() > c.len() && kb.starts_with(c) && kb[c.len()] == b'.' {
                        if let Some(n) = k.split('.').try_fold(node, |n, seg| n.child(seg)) {
                            flatten(child, n, ctx, out);
                        }
                        break;
                    }
                }
                if ci == children.len() && kb.first().is_some_and(|f| f > last) {
                    break;
                }
            }
        }
        scalar => {
            if let Some(id) = node.path {
                out.push((
                    id,
                    Leaf {
                        value: scalar,
                        arrays: ctx.clone(),
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
                arrays: ctx.clone(),
            },
        )),
    }
}
