//! `orgtrail verify`: recompute the Merkle log from the events and check it against every
//! signed checkpoint, the auditor's saved checkpoints, the stored leaf hashes and the indexes.
//!
//! Two modes:
//! * **full** (master key): decrypts every record, recomputes its leaf from its bytes, the
//!   tree, every checkpoint root, and checks that the dedup and attribute indexes agree with the
//!   records exactly (nothing missing, nothing extra);
//! * **public** (only the signing public key): checks the tree built from the stored leaf hashes
//!   against the checkpoints. It cannot tell whether the encrypted records still match their
//!   leaves, nor check the indexes; the report says so.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use orgtrail_core::CloudTrailEvent;
use orgtrail_crypto::KeyProvider;
use orgtrail_crypto::checkpoint::Checkpoint;
use orgtrail_crypto::hash::sha256;
use orgtrail_crypto::merkle::{Frontier, Hash};
use orgtrail_crypto::signing::VerifyingKey;

use crate::error::StoreError;
use crate::format::{CHECKPOINT, Reader, meta_key};
use crate::ledger::{Ledger, LedgerConfig};
use crate::tree::{HASHES, event_leaf};

/// A checkpoint an auditor saved outside the system, with a name for messages (its file).
#[derive(Debug, Clone)]
pub struct SavedCheckpoint {
    pub name: String,
    pub note: String,
}

/// What verification found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Events in the log.
    pub events: u64,
    /// Stored checkpoints whose signature and root were verified.
    pub checkpoints: usize,
    /// Saved checkpoints verified consistent with the store.
    pub saved_checkpoints: usize,
    pub checked: Vec<&'static str>,
    pub not_checked: Vec<&'static str>,
    /// Everything wrong, precisely; empty when the store verified.
    pub problems: Vec<String>,
    /// Why the store could not be opened at all (missing, or in use by a running collector):
    /// then nothing was checked, and `checked` lists nothing.
    pub not_opened: Option<String>,
    /// The newest events no stored checkpoint covers yet (their leaves were hashed into the
    /// tree, but no signature vouches for them). Set by the streamed verification.
    pub uncovered: u64,
}

const MAX_PROBLEMS: usize = 200;

impl VerifyReport {
    fn problem(&mut self, p: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(p);
        } else if self.problems.len() == MAX_PROBLEMS {
            self.problems.push("... more problems not listed".into());
        }
    }

    /// The store could not be opened: nothing was checked.
    fn refuse(&mut self, why: String) {
        self.checked.clear();
        self.not_checked.clear();
        self.not_opened = Some(why.clone());
        self.problem(why);
    }

    /// True when nothing is wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

fn catch<T>(f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(p) => Err(p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "the storage engine panicked".into())),
    }
}

/// Checks one stored checkpoint: its signature, that it names this store and its own size,
/// that the log reaches it, and that `root` (the log's root at its size, when known) is its.
fn check_stored(
    report: &mut VerifyReport,
    origin: &str,
    size: u64,
    note: &str,
    root: Option<&Hash>,
    key: &VerifyingKey,
) {
    let n = report.events;
    match Checkpoint::verify(note, key) {
        Err(e) => report.problem(format!("stored checkpoint at size {size}: {e}")),
        Ok(cp) if cp.size != size || cp.origin != origin => report.problem(format!(
            "stored checkpoint at size {size}: it names size {} of {}, not this store's",
            cp.size, cp.origin
        )),
        Ok(_) if size > n => report.problem(format!(
            "stored checkpoint at size {size} is beyond the log's {n} events: records were removed"
        )),
        Ok(cp) => match root {
            Some(r) if *r == cp.root => report.checkpoints += 1,
            _ => report.problem(format!(
                "stored checkpoint at size {size}: the log's root differs; records at or before {size} were changed, removed, reordered or inserted"
            )),
        },
    }
}

/// Checks one checkpoint the auditor saved against the log's root at its size.
fn check_saved(
    report: &mut VerifyReport,
    origin: &str,
    s: &SavedCheckpoint,
    roots: &std::collections::BTreeMap<u64, Hash>,
    key: &VerifyingKey,
) {
    let n = report.events;
    match Checkpoint::verify(&s.note, key) {
        Err(e) => report.problem(format!("{}: {e}", s.name)),
        Ok(cp) if cp.origin != origin => report.problem(format!(
            "{}: a checkpoint of another store ({}), not of this one ({origin})",
            s.name, cp.origin
        )),
        Ok(cp) if cp.size > n => report.problem(format!(
            "{}: covers {} events but the store holds {n}: the store was rolled back or replaced by an older copy",
            s.name, cp.size
        )),
        Ok(cp) => match roots.get(&cp.size) {
            Some(r) if *r == cp.root => report.saved_checkpoints += 1,
            _ => report.problem(format!(
                "{}: the store's first {} events differ from those it covered: history was rewritten or forked",
                s.name, cp.size
            )),
        },
    }
}

/// Checks stored and saved checkpoints against the roots at their sizes.
fn check_checkpoints(
    report: &mut VerifyReport,
    origin: &str,
    stored: &[(u64, String)],
    saved: &[SavedCheckpoint],
    roots: &std::collections::BTreeMap<u64, Hash>,
    key: &VerifyingKey,
) {
    for (size, note) in stored {
        check_stored(report, origin, *size, note, roots.get(size), key);
    }
    for s in saved {
        check_saved(report, origin, s, roots, key);
    }
}

fn target_sizes(stored: &[(u64, String)], saved: &[SavedCheckpoint]) -> BTreeSet<u64> {
    let mut t: BTreeSet<u64> = stored.iter().map(|(s, _)| *s).collect();
    for s in saved {
        if let Ok(cp) = Checkpoint::parse_unverified(&s.note) {
            t.insert(cp.size);
        }
    }
    t
}

/// Full verification with the master key.
pub fn verify_full(
    dir: &Path,
    provider: Arc<dyn KeyProvider>,
    key: &VerifyingKey,
    saved: &[SavedCheckpoint],
) -> VerifyReport {
    verify_full_in_chunks(dir, provider, key, saved, VERIFY_CHUNK)
}

/// [`verify_full`], checking `chunk` records at a time (for tests of chunk boundaries).
#[doc(hidden)]
pub fn verify_full_in_chunks(
    dir: &Path,
    provider: Arc<dyn KeyProvider>,
    key: &VerifyingKey,
    saved: &[SavedCheckpoint],
    chunk: u64,
) -> VerifyReport {
    let mut report = VerifyReport {
        checked: vec![
            "every record decrypts under its segment key and place (seq, account)",
            "every record's leaf recomputed from its bytes matches the stored leaf hash",
            "the Merkle tree recomputed from the records against every stored checkpoint (signature and root)",
            "saved checkpoints are consistent with the store",
            "dedup and attribute indexes agree with the records",
        ],
        ..VerifyReport::default()
    };
    let cfg = LedgerConfig {
        read_only: true,
        ..LedgerConfig::default()
    };
    let ledger = match catch(|| Ledger::open(dir, provider, cfg)) {
        Ok(l) => l,
        Err(e) => {
            report.refuse(format!("store cannot be opened: {e}"));
            return report;
        }
    };
    if let Err(e) = catch(|| full_inner(&ledger, key, saved, &mut report, chunk.max(1))) {
        report.problem(format!("store could not be read to the end: {e}"));
    }
    report
}

/// Records checked at a time by a full verification (their stored leaf hashes and recomputed
/// leaves are held for the chunk: about 70 MB).
const VERIFY_CHUNK: u64 = 1 << 20;

/// What one verification worker found over its range of records.
#[derive(Default)]
struct Partial {
    leaves: Vec<Option<Hash>>,
    problems: Vec<String>,
    expected_postings: u64,
}

/// Checks records `first..=last`; `stored` holds the stored leaf hashes from seq `stored_from`.
fn check_range(
    ledger: &Ledger,
    first: u64,
    last: u64,
    stored: &[Hash],
    stored_from: u64,
) -> Result<Partial, StoreError> {
    let mut out = Partial {
        leaves: Vec::with_capacity((last + 1 - first) as usize),
        ..Partial::default()
    };
    let mut cache = std::collections::HashMap::new();
    let mut posted = crate::index::PostedCache::default();
    ledger.for_each_record(first, last, |seq, rec| {
        let stored_leaf = stored.get((seq - stored_from) as usize).copied();
        let leaf = match rec {
            Err(e) => {
                out.problems.push(format!("record {seq}: {e}"));
                stored_leaf
            }
            Ok((account, bytes)) => {
                let content = sha256(&bytes);
                match CloudTrailEvent::parse_with_limit(bytes, usize::MAX) {
                    Err(e) => {
                        out.problems.push(format!("record {seq}: not a valid event any more: {e}"));
                        stored_leaf
                    }
                    Ok(parsed) => {
                        let leaf = event_leaf(seq, account.as_str(), &parsed.fields().event_id, &content);
                        if Some(leaf) != stored_leaf {
                            out.problems.push(format!(
                                "record {seq}: its content does not match its leaf hash (changed after it was stored)"
                            ));
                        }
                        out.problems.extend(ledger.index_problems(
                            seq,
                            &parsed,
                            account,
                            &mut cache,
                            &mut posted,
                            &mut out.expected_postings,
                        )?);
                        Some(leaf)
                    }
                }
            }
        };
        out.leaves.push(leaf);
        Ok(())
    })?;
    Ok(out)
}

fn full_inner(
    ledger: &Ledger,
    key: &VerifyingKey,
    saved: &[SavedCheckpoint],
    report: &mut VerifyReport,
    chunk: u64,
) -> Result<(), StoreError> {
    let n = ledger.stats().events;
    report.events = n;
    for p in ledger.record_layout_problems(n)? {
        report.problem(p);
    }
    let stored = ledger.checkpoints()?;
    let targets = target_sizes(&stored, saved);
    let mut roots = std::collections::BTreeMap::new();
    let mut frontier = Frontier::new();
    if targets.contains(&0) {
        roots.insert(0, frontier.root());
    }
    let mut expected_postings = 0u64;
    // Records are checked a chunk at a time (its stored leaf hashes read for it alone, so
    // memory does not grow with the store), each chunk in parallel ranges; the tree is then
    // built in order.
    let workers = std::thread::available_parallelism().map_or(2, |w| w.get()) as u64;
    let mut first = 1;
    while first <= n {
        let last = (first + chunk - 1).min(n);
        let leaves = ledger.leaves(first, last + 1 - first)?;
        let per = (last + 1 - first).div_ceil(workers.max(1)).max(1);
        let ranges: Vec<(u64, u64)> = (0..workers)
            .map(|w| (first + w * per, (first + (w + 1) * per - 1).min(last)))
            .filter(|(a, b)| a <= b)
            .collect();
        let partials: Vec<Result<Partial, StoreError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = ranges
                .iter()
                .map(|&(a, b)| {
                    let leaves = &leaves;
                    scope.spawn(move || check_range(ledger, a, b, leaves, first))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(StoreError::Corrupt("a verification worker panicked".into()))
                    })
                })
                .collect()
        });
        for part in partials {
            let part = part?;
            for p in part.problems {
                report.problem(p);
            }
            expected_postings += part.expected_postings;
            for leaf in part.leaves {
                // A record with neither content nor stored leaf keeps its place with a hash
                // that matches nothing, so every later root is (rightly) reported as differing.
                frontier.push(leaf.unwrap_or([0u8; 32]));
                if targets.contains(&frontier.size()) {
                    roots.insert(frontier.size(), frontier.root());
                }
            }
        }
        first = last + 1;
    }
    let actual = ledger.posting_count()?;
    if actual != expected_postings {
        report.problem(format!(
            "the attribute index holds {actual} entries but the records imply {expected_postings}: index entries were added or removed"
        ));
    }
    check_checkpoints(report, ledger.origin(), &stored, saved, &roots, key);
    Ok(())
}

/// Verification with only the signing public key: the tree from the stored leaf hashes, and
/// the checkpoints.
pub fn verify_public(dir: &Path, key: &VerifyingKey, saved: &[SavedCheckpoint]) -> VerifyReport {
    let mut report = VerifyReport {
        checked: vec![
            "the Merkle tree built from the stored leaf hashes against every stored checkpoint (signature and root)",
            "saved checkpoints are consistent with the store",
        ],
        not_checked: vec![
            "that the encrypted records still match their leaf hashes (needs the master key)",
            "that the indexes agree with the records (needs the master key)",
        ],
        ..VerifyReport::default()
    };
    if !dir.join("conf").exists() {
        report.refuse(format!(
            "store cannot be opened: there is no orgtrail store at {}",
            dir.display()
        ));
        return report;
    }
    let db = match catch(|| crate::kv::Db::open(dir, 64 << 20)) {
        Ok(db) => db,
        Err(e) => {
            report.refuse(format!("store cannot be opened: {e}"));
            return report;
        }
    };
    let r = catch(|| {
        let tree = db.open_tree("ledger")?;
        let log = crate::log::LogReader::new(dir);
        let origin = match tree.get(meta_key("store_id"))? {
            Some(id) => format!("orgtrail/{}", String::from_utf8_lossy(&id)),
            None => return Err(StoreError::Corrupt("store has no id".into())),
        };
        let next_seq = match tree.get(meta_key("next_seq"))? {
            Some(v) => {
                let a: [u8; 8] = v[..]
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("next sequence number".into()))?;
                u64::from_be_bytes(a)
            }
            None => 1,
        };
        let mut stored = Vec::new();
        for kv in tree.scan_prefix([CHECKPOINT]) {
            let (k, v) = kv?;
            let mut r = Reader::new(&k[1..], "checkpoint key");
            stored.push((r.u64()?, String::from_utf8_lossy(&v).into_owned()));
        }
        // The tree is built as the leaf hashes are read: nothing kept per leaf.
        let targets = target_sizes(&stored, saved);
        let mut roots = std::collections::BTreeMap::new();
        let mut frontier = Frontier::new();
        if targets.contains(&0) {
            roots.insert(0, frontier.root());
        }
        for kv in tree.scan_prefix([HASHES]) {
            let (k, v) = kv?;
            let mut r = Reader::new(&k[1..], "leaf hashes key");
            let first = r.u64()?;
            if first != frontier.size() + 1 {
                return Err(StoreError::Corrupt(format!(
                    "leaf hashes of group {first} do not follow leaf {}",
                    frontier.size()
                )));
            }
            let v = log.leaves(&v)?;
            let mut r = Reader::new(&v, "leaf hashes");
            while !r.done() {
                frontier.push(r.array::<32>()?);
                if targets.contains(&frontier.size()) {
                    roots.insert(frontier.size(), frontier.root());
                }
            }
        }
        if frontier.size() + 1 != next_seq {
            return Err(StoreError::Corrupt(format!(
                "{} leaf hashes but the log's next sequence number is {next_seq}",
                frontier.size()
            )));
        }
        Ok((origin, frontier.size(), stored, roots))
    });
    let (origin, events, stored, roots) = match r {
        Ok(v) => v,
        Err(e) => {
            report.problem(format!("store cannot be read: {e}"));
            return report;
        }
    };
    report.events = events;
    check_checkpoints(&mut report, &origin, &stored, saved, &roots, key);
    report
}

/// Public verification of a log streamed from a running collector, done by the client: the
/// collector is not trusted to say "ok". It sends a head (origin, number of leaves), then the
/// stored leaf hashes in order, each stored checkpoint right after the leaf that completes its
/// size; this rebuilds the tree as they come (O(log n) memory, nothing kept per leaf) and
/// checks every checkpoint's signature with `signing.pub` and its root against the tree, and
/// the auditor's saved checkpoints against the roots at their sizes.
///
/// A stream that breaks its own framing (leaves before the head, a partial hash, more or fewer
/// leaves than announced, a checkpoint out of place) is a problem, never a pass.
#[derive(Debug)]
pub struct StreamVerifier {
    key: VerifyingKey,
    saved: Vec<SavedCheckpoint>,
    origin: Option<String>,
    frontier: Frontier,
    /// Sizes of the saved checkpoints, whose roots are kept as the tree passes them.
    targets: BTreeSet<u64>,
    roots: std::collections::BTreeMap<u64, Hash>,
    /// The size of the last stored checkpoint received.
    last_checkpoint: u64,
    /// Set once the stream broke its framing: nothing after it is believed.
    broken: bool,
    report: VerifyReport,
}

impl StreamVerifier {
    /// A verifier for `key` (the store's `signing.pub`) and the auditor's saved checkpoints.
    pub fn new(key: VerifyingKey, saved: Vec<SavedCheckpoint>) -> Self {
        let mut targets = BTreeSet::new();
        for s in &saved {
            if let Ok(cp) = Checkpoint::parse_unverified(&s.note) {
                targets.insert(cp.size);
            }
        }
        let mut roots = std::collections::BTreeMap::new();
        let frontier = Frontier::new();
        if targets.contains(&0) {
            roots.insert(0, frontier.root());
        }
        StreamVerifier {
            key,
            saved,
            origin: None,
            frontier,
            targets,
            roots,
            last_checkpoint: 0,
            broken: false,
            report: VerifyReport {
                checked: vec![
                    "the Merkle tree rebuilt here from the collector's stored leaf hashes against every stored checkpoint (signature with the public key, and root)",
                    "saved checkpoints are consistent with the collector's log",
                ],
                not_checked: vec![
                    "that the encrypted records still match their leaf hashes (needs the master key: `orgtrail verify --keys`, offline)",
                    "that the indexes agree with the records (needs the master key, offline)",
                ],
                ..VerifyReport::default()
            },
        }
    }

    fn broke(&mut self, why: String) {
        if !self.broken {
            self.broken = true;
            self.report
                .problem(format!("the collector's stream is malformed: {why}"));
        }
    }

    /// The head: the store's origin and how many leaves follow.
    pub fn head(&mut self, origin: &str, tree_size: u64) {
        if self.origin.is_some() {
            return self.broke("a second head".into());
        }
        self.origin = Some(origin.to_owned());
        self.report.events = tree_size;
    }

    /// The next leaf hashes, 32 bytes each.
    pub fn leaf_hashes(&mut self, bytes: &[u8]) {
        if self.broken {
            return;
        }
        if self.origin.is_none() {
            return self.broke("leaf hashes before the head".into());
        }
        if !bytes.len().is_multiple_of(32) {
            return self.broke(format!(
                "a message of {} bytes is not whole 32-byte hashes",
                bytes.len()
            ));
        }
        let n = (bytes.len() / 32) as u64;
        if self.frontier.size() + n > self.report.events {
            return self.broke(format!(
                "more leaves than the {} announced",
                self.report.events
            ));
        }
        for chunk in bytes.chunks_exact(32) {
            let mut leaf = [0u8; 32];
            leaf.copy_from_slice(chunk);
            self.frontier.push(leaf);
            if self.targets.contains(&self.frontier.size()) {
                self.roots
                    .insert(self.frontier.size(), self.frontier.root());
            }
        }
    }

    /// A stored checkpoint, sent right after the leaf that completes its size.
    pub fn checkpoint(&mut self, size: u64, note: &str) {
        if self.broken {
            return;
        }
        let Some(origin) = self.origin.clone() else {
            return self.broke("a checkpoint before the head".into());
        };
        if size != self.frontier.size() || size <= self.last_checkpoint {
            return self.broke(format!(
                "the checkpoint at size {size} came after {} leaves",
                self.frontier.size()
            ));
        }
        self.last_checkpoint = size;
        let root = self.frontier.root();
        check_stored(
            &mut self.report,
            &origin,
            size,
            note,
            Some(&root),
            &self.key,
        );
    }

    /// The end of the stream: the report.
    pub fn finish(mut self) -> VerifyReport {
        match &self.origin {
            None => self.broke("it ended before its head".into()),
            Some(_) if !self.broken && self.frontier.size() != self.report.events => {
                let got = self.frontier.size();
                let want = self.report.events;
                self.broke(format!(
                    "it ended after {got} of the {want} leaves announced"
                ));
            }
            Some(_) => {}
        }
        if !self.broken
            && let Some(origin) = self.origin.clone()
        {
            let saved = std::mem::take(&mut self.saved);
            for s in &saved {
                check_saved(&mut self.report, &origin, s, &self.roots, &self.key);
            }
        }
        self.report.uncovered = self.report.events.saturating_sub(self.last_checkpoint);
        self.report
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use orgtrail_crypto::merkle::leaf_hash;
    use orgtrail_crypto::signing::SigningKey;

    const ORIGIN: &str = "orgtrail/test";

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    fn note(key: &SigningKey, leaves: &[Hash]) -> String {
        Checkpoint {
            origin: ORIGIN.into(),
            size: leaves.len() as u64,
            root: orgtrail_crypto::merkle::root(leaves),
            time_ms: 1,
        }
        .sign(key)
    }

    /// Streams `all` as a collector does: chunks of `chunk`, each checkpoint after its leaf.
    fn stream(v: &mut StreamVerifier, all: &[Hash], cps: &[(u64, String)], chunk: usize) {
        v.head(ORIGIN, all.len() as u64);
        let mut sent = 0usize;
        let mut send_to = |v: &mut StreamVerifier, to: usize| {
            while sent < to {
                let end = (sent + chunk).min(to);
                let bytes: Vec<u8> = all[sent..end].iter().flatten().copied().collect();
                v.leaf_hashes(&bytes);
                sent = end;
            }
        };
        for (size, n) in cps {
            send_to(v, *size as usize);
            v.checkpoint(*size, n);
        }
        send_to(v, all.len());
    }

    fn setup() -> (SigningKey, VerifyingKey, Vec<Hash>, Vec<(u64, String)>) {
        let (key, _) = SigningKey::generate().unwrap();
        let vk = VerifyingKey::from_raw(key.public_key());
        let all = leaves(1000);
        let cps = [1u64, 256, 300, 999]
            .iter()
            .map(|&s| (s, note(&key, &all[..s as usize])))
            .collect();
        (key, vk, all, cps)
    }

    #[test]
    fn a_healthy_stream_verifies_with_its_saved_checkpoints() {
        let (key, vk, all, cps) = setup();
        let saved = vec![SavedCheckpoint {
            name: "monday.json".into(),
            note: note(&key, &all[..500]),
        }];
        let mut v = StreamVerifier::new(vk, saved);
        stream(&mut v, &all, &cps, 37);
        let r = v.finish();
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!(
            (r.events, r.checkpoints, r.saved_checkpoints, r.uncovered),
            (1000, 4, 1, 1)
        );
    }

    #[test]
    fn a_changed_leaf_fails_every_checkpoint_after_it() {
        let (_, vk, mut all, cps) = setup();
        all[299][0] ^= 1;
        let mut v = StreamVerifier::new(vk, Vec::new());
        stream(&mut v, &all, &cps, 4096);
        let r = v.finish();
        assert_eq!(r.checkpoints, 2, "sizes 1 and 256 still hold");
        assert_eq!(r.problems.len(), 2, "{:?}", r.problems);
        assert!(
            r.problems[0].starts_with("stored checkpoint at size 300: the log's root differs"),
            "{:?}",
            r.problems
        );
    }

    #[test]
    fn another_key_or_a_forked_saved_checkpoint_fails() {
        let (key, _, all, cps) = setup();
        let (other, _) = SigningKey::generate().unwrap();
        let mut v = StreamVerifier::new(VerifyingKey::from_raw(other.public_key()), Vec::new());
        stream(&mut v, &all, &cps, 100);
        let r = v.finish();
        assert_eq!(r.checkpoints, 0);
        assert_eq!(r.problems.len(), 4);
        assert!(r.problems[0].contains("not signed by this key"), "{:?}", r);

        let mut forked = all.clone();
        forked[10][5] ^= 1;
        let saved = vec![SavedCheckpoint {
            name: "monday.json".into(),
            note: note(&key, &forked[..500]),
        }];
        let mut v = StreamVerifier::new(VerifyingKey::from_raw(key.public_key()), saved);
        stream(&mut v, &all, &cps, 100);
        let r = v.finish();
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        assert!(r.problems[0].contains("history was rewritten or forked"));
    }

    #[test]
    fn a_stream_that_breaks_its_framing_never_passes() {
        let (_, vk, all, cps) = setup();
        // Fewer leaves than announced.
        let mut v = StreamVerifier::new(vk.clone(), Vec::new());
        v.head(ORIGIN, 1001);
        stream_body(&mut v, &all, &cps);
        let r = v.finish();
        assert!(!r.ok());
        assert!(r.problems[0].contains("ended after 1000 of the 1001 leaves"));
        // A partial hash.
        let mut v = StreamVerifier::new(vk.clone(), Vec::new());
        v.head(ORIGIN, 1);
        v.leaf_hashes(&[0u8; 31]);
        assert!(!v.finish().ok());
        // A checkpoint out of place.
        let mut v = StreamVerifier::new(vk.clone(), Vec::new());
        v.head(ORIGIN, 1000);
        v.leaf_hashes(all[0].as_ref());
        v.checkpoint(256, &cps[1].1);
        let r = v.finish();
        assert!(r.problems[0].contains("came after 1 leaves"), "{:?}", r);
        // Nothing at all.
        assert!(!StreamVerifier::new(vk, Vec::new()).finish().ok());
    }

    fn stream_body(v: &mut StreamVerifier, all: &[Hash], cps: &[(u64, String)]) {
        let mut sent = 0usize;
        for (size, n) in cps {
            let bytes: Vec<u8> = all[sent..*size as usize]
                .iter()
                .flatten()
                .copied()
                .collect();
            v.leaf_hashes(&bytes);
            sent = *size as usize;
            v.checkpoint(*size, n);
        }
        let bytes: Vec<u8> = all[sent..].iter().flatten().copied().collect();
        v.leaf_hashes(&bytes);
    }
}
