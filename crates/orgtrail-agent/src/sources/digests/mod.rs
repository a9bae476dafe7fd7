//! CloudTrail digest checking for the `cloudtrail_dir` and `s3` sources
//! (`digest_public_keys_file`): what `aws cloudtrail validate-logs` checks, done live, on the
//! files the agent ships.
//!
//! # What is checked
//!
//! Each log file is hashed (SHA-256 of the inflated bytes) while it is read and shipped, in
//! the same pass (no second read of an object). When a digest file arrives, the source reads it
//! with its signature (S3: `x-amz-meta-signature`; a directory: the `<digest>.sig` sidecar) and
//! checks it with orgtrail-trailfiles' own checks ([`orgtrail_trailfiles::verify_signature`]):
//! format, location, a known key valid at its end time, and the signature. Then:
//!
//! * its chain: `previousDigestS3Object`, `previousDigestHashValue` and
//!   `previousDigestSignature` must name the previous digest of its chain as the agent read it
//!   (`broken_chain` otherwise, also when the previous digest was never seen while older ones
//!   were);
//! * when the digest verifies, each log file it lists: the hash of what the agent shipped
//!   must equal `hashValue` (`modified`); a listed file the source never saw is `missing`; a
//!   file shipped before digest checking was on (or unreadable as a log file) is `unverified`;
//! * log files shipped from its location, stamped before its `digestStartTime` and listed by
//!   no digest, are `unlisted`.
//!
//! A digest that lists a file that is there but not processed yet (still being written,
//! or failing to transfer) waits for the next pass, unchecked and unmarked, for the source's
//! `digest_wait_ms` at most (counted from the first pass it waited in this process); then the
//! file is reported `missing`, once, and the digest is done. Failures are logged at error level
//! by key (never contents), counted in `orgtrail_agent_digest_checks_total{result}` (by the
//! spooler, once the check's marks are durable) and in the gauge
//! `orgtrail_agent_digest_failures`; shipping goes on (what was shipped cannot be
//! unshipped: the point is detection).
//!
//! # A digest without a signature
//!
//! A copy made by `aws s3 sync` keeps no object metadata: no `.sig` sidecar, no
//! `x-amz-meta-signature`. Each digest but the newest still has its signature, in its
//! successor's `previousDigestSignature` (validate-logs' offline rule). Such a digest is linked
//! into its chain when it is read (its hash and the chain's tip are kept, so its successor's
//! chain check finds it; mark `w`), and waits. When its successor is read and its
//! `previousDigestHashValue` matches, the signature it names is kept in the digest's mark
//! (`s`, in the successor's write) and the source checks the digest again with it, in the same
//! pass: signature, then its log files. A digest no successor has named by the end of a pass
//! (the newest) is reported `unverified` once (mark `u`), never as a failure; while any digest
//! waits, log files of its period are not called `unlisted`.
//!
//! # Durable state
//!
//! Spool marks: their keys and values are written down in `marks.rs`.
//!
//! Everything one digest's check writes (the failures counted, the marks of its log files, the
//! tip, the starts, the digest's own mark) is one [`Item::Marks`], which the spooler appends in
//! one write: a crash before it is durable leaves the digest unchecked (checked and reported
//! again after the restart), a crash after leaves nothing to report again. Failures are counted
//! once in the gauge; a log line may repeat only when the crash came before the write.
//!
//! Memory: the keys of the log files shipped and not yet listed by a digest (about an hour of
//! files per location), one tip per chain, the starts of the locations, and the digests waiting
//! (for a signature or a log file).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use orgtrail_core::Timestamp;
use orgtrail_trailfiles::{
    DigestFile, FindingKind, Location, ParsedDigest, PublicKeySet, TrailKey, hex, parse_digest,
    verify_signature,
};

mod marks;

use super::{Ctx, Item};
pub use marks::{DigestMark, DigestState, hashed_tail, hashed_value, log_hash};
use marks::{Starts, Tip, as_checked, decode_starts, encode_starts};

/// Largest inflated digest file read (digests are small; CloudTrail's list a few hundred files).
pub const MAX_DIGEST_BYTES: u64 = 64 << 20;

/// Most log files kept waiting for a digest, per location (about 200 bytes each). Beyond it
/// the oldest are no longer tracked for the unlisted check (a trail whose digests never
/// come, or stopped); they are logged once at warn level.
pub const MAX_AWAITING: usize = 200_000;

/// The `result` label of `orgtrail_agent_digest_checks_total`: one per digest file and per
/// log file checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestResult {
    /// A digest that verifies, or a listed log file whose hash matches what was shipped.
    Ok,
    /// A listed log file whose shipped bytes hash otherwise.
    Modified,
    /// A listed log file the source never saw.
    Missing,
    /// A shipped log file no digest lists, once the digest after its time has arrived.
    Unlisted,
    /// A listed log file shipped without a hash (before digest checking was on, or
    /// unreadable as a log file).
    Unverified,
    /// A digest whose signature does not verify.
    BadSignature,
    /// A digest whose `previousDigest*` fields do not match the previous digest read.
    BrokenChain,
    /// A digest that cannot be checked: not gzip JSON, moved, no signature, unknown or expired
    /// key, unsupported algorithm.
    InvalidDigest,
}

impl DigestResult {
    pub const ALL: [&'static str; 8] = [
        "ok",
        "modified",
        "missing",
        "unlisted",
        "unverified",
        "bad_signature",
        "broken_chain",
        "invalid_digest",
    ];

    pub fn label(self) -> &'static str {
        Self::ALL[self as usize]
    }

    /// True for the results that are failures (counted in the gauge).
    pub fn is_failure(self) -> bool {
        !matches!(self, DigestResult::Ok | DigestResult::Unverified)
    }
}

/// Reads the public keys file (`aws cloudtrail list-public-keys` JSON).
pub fn load_keys(path: &Path) -> Result<PublicKeySet, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    PublicKeySet::from_json(&text, &path.display().to_string()).map_err(|e| e.to_string())
}

/// What the checker asks of the source about where files are.
pub trait Site {
    /// The source's own key of an object a digest names (`key` in bucket `bucket`); `None`
    /// when the source does not read it (another bucket, outside its tree).
    fn local(&self, digest: &DigestFile, bucket: &str, key: &str) -> Option<String>;
    /// True when digest `local` lies where it says it does.
    fn at_home(&self, local: &str, digest: &DigestFile) -> bool;
    /// The processed-mark key of `local`.
    fn mark_key(&self, local: &str) -> Vec<u8>;
    /// True when file `local` (a log file, or a previous digest) is there but not processed
    /// yet (the digest waits for it).
    fn waiting(&self, local: &str) -> bool;
    /// False when log file `local` lies outside what the source reads now (before the `s3`
    /// source's lookback window): not checked.
    fn in_window(&self, local: &str) -> bool;
}

/// A log file shipped with its hash and not yet listed by a digest.
#[derive(Debug, Clone)]
struct Awaiting {
    mark: Vec<u8>,
    value: Vec<u8>,
}

/// What became of a digest.
#[derive(Debug, PartialEq, Eq)]
pub enum Checked {
    /// Checked; its mark is handed over.
    Done,
    /// A log file it lists is there but not processed yet: read it again at the next pass.
    Waiting,
    /// Read without a signature of its own: its chain is checked and its mark handed over;
    /// it is checked once its successor names its signature ([`Checker::take_resolvable`]).
    Pending,
    /// The agent is stopping.
    Stopping,
}

/// One failure found.
struct Failure {
    key: String,
    result: DigestResult,
    reason: String,
}

/// A digest read without a signature of its own, waiting for its successor to name it.
#[derive(Debug, Clone)]
struct Unsigned {
    location: Location,
    /// `digestStartTime`: log files of its period are not called unlisted while it waits.
    start: Timestamp,
    /// What its mark says (hash and tail); reported `unverified` already when `Unverified`.
    mark: DigestMark,
}

/// The crash point of the end-to-end test: with `ORGTRAIL_CRASH_AT=digest-after-report`, the
/// agent aborts once the first digest with failures has reported them and its marks are
/// durable (as a `kill -9` would stop it there).
const CRASH_AFTER_REPORT: &str = "digest-after-report";

fn crash_after_report() -> bool {
    static AT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AT.get_or_init(|| std::env::var("ORGTRAIL_CRASH_AT").is_ok_and(|v| v == CRASH_AFTER_REPORT))
}

/// A source's digest checker.
#[derive(Debug)]
pub struct Checker {
    keys: PublicKeySet,
    /// Where the checker's own marks live (tips, failures).
    prefix: Vec<u8>,
    /// How long a digest waits for a listed log file that is there but keeps failing.
    wait: Duration,
    tips: HashMap<Vec<u8>, Option<Tip>>,
    /// Per location, by (stamp, key): the oldest first.
    awaiting: BTreeMap<Location, BTreeMap<(Timestamp, String), Awaiting>>,
    /// Log files stamped before this are not kept waiting for a digest (pruned).
    cut: Timestamp,
    /// Failures by UTC day number; loaded from the spool at the first use.
    failures: Option<BTreeMap<i64, u64>>,
    /// Everything handed to the spooler is durable (so its marks can be read) since the
    /// start of this pass.
    synced: bool,
    /// Per location and chain (standard digests: trail and home region): the latest
    /// `digestStartTime` read; loaded from its mark at the first use of a location.
    starts: BTreeMap<Location, Starts>,
    /// [`MAX_AWAITING`] was reached (logged once).
    overflowed: bool,
    /// Digests read without a signature, by key, until their successor names it.
    unsigned: BTreeMap<String, Unsigned>,
    /// Signatures named by a successor (`previousDigestSignature`), by the digest's key, until
    /// that digest is checked with it.
    claims: HashMap<String, String>,
    /// Digests whose signature became known in this pass: the source checks them again.
    resolvable: Vec<String>,
    /// Digests waiting for a listed log file: since when (this process), where, and the start
    /// of their period (log files of it are not called unlisted while they wait).
    waits: HashMap<String, (Instant, Location, Timestamp)>,
}

/// Seconds since 1970-01-01 (UTC).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn today() -> i64 {
    unix_now().div_euclid(86_400)
}

/// Drops the days before `first_day` from `failures`; true when any was dropped.
fn forget_days(failures: &mut BTreeMap<i64, u64>, first_day: i64) -> bool {
    let before = failures.len();
    failures.retain(|d, _| *d >= first_day);
    failures.len() != before
}

/// A source's digest-checking options.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// How long a digest waits for a log file it lists that is there but not read yet.
    pub wait: Duration,
    /// `cloudtrail_dir`: days of state kept (failures in the gauge, log files waiting for a
    /// digest); the `s3` source keeps its lookback.
    pub keep_days: u32,
}

impl Checker {
    /// A checker keeping its marks under `prefix`; a digest waits at most `wait` for a listed
    /// log file that is there but not processed.
    pub fn new(keys: PublicKeySet, prefix: Vec<u8>, wait: Duration) -> Checker {
        Checker {
            keys,
            prefix,
            wait,
            tips: HashMap::new(),
            awaiting: BTreeMap::new(),
            cut: Timestamp(i64::MIN),
            failures: None,
            synced: false,
            starts: BTreeMap::new(),
            overflowed: false,
            unsigned: BTreeMap::new(),
            claims: HashMap::new(),
            resolvable: Vec::new(),
            waits: HashMap::new(),
        }
    }

    /// A new pass (or scan) begins: marks handed over from now on may not be readable yet.
    pub fn new_pass(&mut self) {
        self.synced = false;
    }

    /// The mark of `mark_key`, once everything handed over before is durable (waits for the
    /// spooler once per pass, the first time a mark is not found).
    fn mark(&mut self, ctx: &Ctx, mark_key: &[u8]) -> Option<Vec<u8>> {
        if let Some(v) = ctx.spool.mark(mark_key) {
            return Some(v);
        }
        if self.synced {
            return None;
        }
        if ctx.durable().is_err() {
            return None;
        }
        self.synced = true;
        ctx.spool.mark(mark_key)
    }

    /// What a source does with digest `local`, whose mark is `value`: `Some(true)` skip it
    /// for good (checked), `Some(false)` skip it for now (waiting for a successor to name its
    /// signature, known to this process), `None` read and check it.
    pub fn settled(&self, local: &str, value: &[u8]) -> Option<bool> {
        match DigestMark::decode(value)?.state {
            DigestState::Checked => Some(true),
            DigestState::NoSignature | DigestState::Unverified
                if self.unsigned.contains_key(local) && !self.claims.contains_key(local) =>
            {
                Some(false)
            }
            _ => None,
        }
    }

    /// True when a successor named the signature of digest `local` (it needs no sidecar).
    pub fn claimed(&self, local: &str) -> bool {
        self.claims.contains_key(local)
    }

    /// The digests whose signature a successor named in this pass (read them again and
    /// [`Checker::check`] them).
    pub fn take_resolvable(&mut self) -> Vec<String> {
        std::mem::take(&mut self.resolvable)
    }

    fn failures_key(&self) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(b"failures");
        k
    }

    fn load_failures(&mut self, ctx: &Ctx) -> &mut BTreeMap<i64, u64> {
        let key = self.failures_key();
        self.failures.get_or_insert_with(|| {
            ctx.spool
                .mark(&key)
                .and_then(|v| String::from_utf8(v).ok())
                .map(|s| {
                    s.split(',')
                        .filter_map(|e| {
                            let (d, n) = e.split_once(' ')?;
                            Some((d.parse().ok()?, n.parse().ok()?))
                        })
                        .collect()
                })
                .unwrap_or_default()
        })
    }

    /// Publishes the failure gauge (and makes the family served).
    pub fn publish(&mut self, ctx: &Ctx) {
        let n: u64 = self.load_failures(ctx).values().sum();
        let m = ctx.metrics.source(ctx.index);
        m.digests.store(true, std::sync::atomic::Ordering::Relaxed);
        m.digest_failures
            .store(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Forgets the failures reported before `first_day` (days since 1970-01-01), durably:
    /// the gauge counts those of the `s3` source's lookback, of `cloudtrail_dir`'s
    /// `digest_keep_days`. Nothing a pending check needs is kept there.
    pub fn forget_before(&mut self, ctx: &Ctx, first_day: i64) -> bool {
        let f = self.load_failures(ctx);
        if !forget_days(f, first_day) {
            return true;
        }
        let key = self.failures_key();
        let value = self.failures_value(ctx);
        let ok = ctx.send(Item::Mark { key, value });
        self.publish(ctx);
        ok
    }

    /// Stops waiting for digests of the log files stamped before `t` (the `s3` source's
    /// lookback: files it no longer lists), now and when they are found again; and forgets
    /// the digests stamped before `t` that wait (for a signature or a file): they are no
    /// longer listed, so they cannot hold the unlisted check of their location any more.
    pub fn forget_awaiting_before(&mut self, t: Timestamp) {
        self.cut = t;
        for a in self.awaiting.values_mut() {
            *a = a.split_off(&(t, String::new()));
        }
        let keep = |k: &str| TrailKey::parse(k).is_none_or(|tk| tk.stamp >= t);
        self.unsigned.retain(|k, _| keep(k));
        self.waits.retain(|k, _| keep(k));
        self.claims.retain(|k, _| keep(k));
    }

    fn failures_value(&mut self, ctx: &Ctx) -> Vec<u8> {
        let v: Vec<String> = self
            .load_failures(ctx)
            .iter()
            .map(|(d, n)| format!("{d} {n}"))
            .collect();
        v.join(",").into_bytes()
    }

    /// Notes a log file shipped (or found shipped) with a hash and not yet checked by a digest.
    pub fn shipped(&mut self, local: &str, mark: Vec<u8>, value: Vec<u8>) {
        if !matches!(log_hash(&value), Some((false, _))) {
            return;
        }
        let Some(tk) = TrailKey::parse(local) else {
            return;
        };
        if tk.stamp < self.cut {
            return;
        }
        let a = self.awaiting.entry(tk.location).or_default();
        a.insert((tk.stamp, local.to_owned()), Awaiting { mark, value });
        if a.len() > MAX_AWAITING
            && let Some(((_, k), _)) = a.pop_first()
            && !self.overflowed
        {
            self.overflowed = true;
            tracing::warn!(
                key = %k,
                limit = MAX_AWAITING,
                "more log files than this wait for a CloudTrail digest in one location: the oldest are no longer checked for being unlisted (is log file validation on for this trail?)"
            );
        }
    }

    /// The key of the mark of `location`'s starts, and the starts (loaded at the first use).
    fn starts_of(&mut self, ctx: &Ctx, location: &Location) -> (Vec<u8>, &mut Starts) {
        let mut key = self.prefix.clone();
        key.extend_from_slice(b"starts\0");
        key.extend_from_slice(
            format!(
                "{}\0{}\0{}\0{}",
                location.prefix,
                location.org_id.as_deref().unwrap_or_default(),
                location.account,
                location.region
            )
            .as_bytes(),
        );
        let starts = self.starts.entry(location.clone()).or_insert_with(|| {
            ctx.spool
                .mark(&key)
                .map(|v| decode_starts(&v))
                .unwrap_or_default()
        });
        (key, starts)
    }

    fn tip_key(&self, chain: &orgtrail_trailfiles::ChainId) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(b"tip\0");
        let l = &chain.location;
        k.extend_from_slice(
            format!(
                "{}\0{}\0{}\0{}\0{}\0{}\0{}",
                l.prefix,
                l.org_id.as_deref().unwrap_or_default(),
                l.account,
                l.region,
                chain.trail,
                chain.home_region,
                chain.backfill
            )
            .as_bytes(),
        );
        k
    }

    /// Checks digest `local`, read as `read` (hash and inflated bytes, or why it could not be
    /// read), with its metadata `signature` (`None`: it has none, and none is coming);
    /// `tail` goes into its mark (the ETag).
    ///
    /// A digest without a signature is linked into its chain at once and waits
    /// ([`Checked::Pending`]) for its successor to name its signature; called again once that
    /// happened, it is checked with that signature.
    #[allow(clippy::too_many_lines)]
    pub fn check(
        &mut self,
        ctx: &Ctx,
        site: &dyn Site,
        local: &str,
        read: Result<([u8; 32], Vec<u8>), String>,
        mut signature: Option<String>,
        tail: &str,
    ) -> Checked {
        let mut failures: Vec<Failure> = Vec::new();
        let mut marks: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let fail = |failures: &mut Vec<Failure>, key: &str, result, reason: String| {
            failures.push(Failure {
                key: key.to_owned(),
                result,
                reason,
            })
        };
        let parsed: Option<ParsedDigest> = match read {
            Err(reason) => {
                fail(
                    &mut failures,
                    local,
                    DigestResult::InvalidDigest,
                    format!("cannot read: {reason}"),
                );
                None
            }
            Ok((hash, bytes)) => match parse_digest(&bytes, hex::encode(&hash)) {
                Ok(p) => Some(p),
                Err(reason) => {
                    fail(&mut failures, local, DigestResult::InvalidDigest, reason);
                    None
                }
            },
        };
        // Read before without a signature: linked into its chain then (the same bytes). Memory
        // first: its mark may not be durable (readable) yet.
        let before = match self.unsigned.get(local) {
            Some(u) => Some(u.mark.clone()),
            None => self
                .mark(ctx, &site.mark_key(local))
                .as_deref()
                .and_then(DigestMark::decode)
                .filter(|m| m.state != DigestState::Checked),
        };
        let linked = before
            .as_ref()
            .zip(parsed.as_ref())
            .is_some_and(|(m, p)| m.hash == p.sha256_hex);
        let mut claimed = None;
        if signature.is_none() {
            claimed = self.claims.get(local).cloned().or_else(|| {
                before
                    .as_ref()
                    .filter(|m| m.state == DigestState::Claimed && linked)
                    .and_then(|m| m.signature.clone())
            });
            signature.clone_from(&claimed);
        }
        let mut digest_ok = false;
        if let Some(p) = &parsed {
            let d = &p.digest;
            let home = site.at_home(local, d);
            // Links the digest into its chain (a digest whose key names no trail has none).
            let link = |this: &mut Self,
                        signature: &Option<String>,
                        failures: &mut Vec<Failure>,
                        marks: &mut Vec<(Vec<u8>, Vec<u8>)>| {
                if let Some(tk) = TrailKey::parse(local)
                    && let Some(chain) = tk.chain()
                {
                    this.check_chain(
                        ctx, site, local, tk.stamp, &chain, p, signature, failures, marks,
                    );
                }
            };
            if !home {
                fail(
                    &mut failures,
                    local,
                    DigestResult::InvalidDigest,
                    format!(
                        "has been moved from its original location s3://{}/{}",
                        d.digest_s3_bucket, d.digest_s3_object
                    ),
                );
            }
            if home && !linked && self.predecessor_due(ctx, site, local, p) {
                return Checked::Waiting;
            }
            if home && signature.is_none() {
                // No signature of its own: its chain now, its signature from its successor.
                if !linked {
                    link(self, &signature, &mut failures, &mut marks);
                }
                let tk = TrailKey::parse(local);
                let state = before
                    .as_ref()
                    .filter(|_| linked)
                    .map_or(DigestState::NoSignature, |m| m.state);
                let mark = DigestMark {
                    state,
                    hash: p.sha256_hex.clone(),
                    signature: None,
                    tail: tail.to_owned(),
                };
                if let Some(tk) = tk {
                    self.unsigned.insert(
                        local.to_owned(),
                        Unsigned {
                            location: tk.location,
                            start: p.start,
                            mark: mark.clone(),
                        },
                    );
                }
                if linked && failures.is_empty() {
                    return Checked::Pending;
                }
                marks.push((site.mark_key(local), mark.encode()));
                return match self.report(ctx, local, false, 0, failures, marks) {
                    Checked::Done => Checked::Pending,
                    other => other,
                };
            }
            let verified = match verify_signature(p, signature.as_deref(), &self.keys) {
                Ok(()) => true,
                Err((kind, reason)) => {
                    let result = if kind == FindingKind::DigestBadSignature {
                        DigestResult::BadSignature
                    } else {
                        DigestResult::InvalidDigest
                    };
                    let reason = if claimed.is_some() {
                        format!(
                            "{reason}, with the signature its successor names (previousDigestSignature)"
                        )
                    } else if kind == FindingKind::DigestNoSignature {
                        "no signature (x-amz-meta-signature, or the .sig sidecar in a directory)"
                            .to_owned()
                    } else {
                        reason
                    };
                    fail(&mut failures, local, result, reason);
                    false
                }
            };
            digest_ok = home && verified;
            if digest_ok {
                // Wait for listed files that are there but not processed yet, up to `wait`.
                let since = self.waits.get(local).map_or_else(Instant::now, |w| w.0);
                if since.elapsed() < self.wait
                    && let Some(tk) = TrailKey::parse(local)
                {
                    for lf in &d.log_files {
                        if let Some(l) = site.local(d, &lf.s3_bucket, &lf.s3_object)
                            && site.in_window(&l)
                            && self.mark(ctx, &site.mark_key(&l)).is_none()
                            && site.waiting(&l)
                        {
                            self.waits
                                .insert(local.to_owned(), (since, tk.location, p.start));
                            return Checked::Waiting;
                        }
                    }
                }
            }
            if !linked {
                link(self, &signature, &mut failures, &mut marks);
            }
        }
        let waited = self.waits.remove(local).is_some();
        self.unsigned.remove(local);
        self.claims.remove(local);
        let mut ok_logs = 0u64;
        if digest_ok && let Some(p) = &parsed {
            let d = &p.digest;
            for lf in &d.log_files {
                let Some(l) = site.local(d, &lf.s3_bucket, &lf.s3_object) else {
                    fail(
                        &mut failures,
                        &lf.s3_object,
                        DigestResult::Missing,
                        format!(
                            "listed in bucket {}, which this source does not read",
                            lf.s3_bucket
                        ),
                    );
                    continue;
                };
                if !site.in_window(&l) {
                    continue;
                }
                let mark = site.mark_key(&l);
                if let Some(tk) = TrailKey::parse(&l)
                    && let Some(a) = self.awaiting.get_mut(&tk.location)
                {
                    a.remove(&(tk.stamp, l.clone()));
                }
                match self.mark(ctx, &mark) {
                    None if waited && site.waiting(&l) => fail(
                        &mut failures,
                        &l,
                        DigestResult::Missing,
                        format!(
                            "listed by digest {local}, there, but not read within digest_wait ({} s): it keeps failing (see the warnings about it)",
                            self.wait.as_secs()
                        ),
                    ),
                    None => fail(
                        &mut failures,
                        &l,
                        DigestResult::Missing,
                        format!("listed by digest {local} but never delivered to this source"),
                    ),
                    Some(v) => match log_hash(&v) {
                        None => fail(
                            &mut failures,
                            &l,
                            DigestResult::Unverified,
                            "shipped without a hash (before digest checking was on, or unreadable as a log file): not verified".into(),
                        ),
                        Some((checked, got)) => {
                            if got.eq_ignore_ascii_case(&lf.hash_value) {
                                ok_logs += 1;
                            } else {
                                fail(
                                    &mut failures,
                                    &l,
                                    DigestResult::Modified,
                                    format!(
                                        "hash value doesn't match: digest {local} says {}, the file shipped hashes to {got}",
                                        lf.hash_value
                                    ),
                                );
                            }
                            if !checked {
                                marks.push((mark, as_checked(&v)));
                            }
                        }
                    },
                }
            }
            // Unlisted: shipped from this location before the period of the latest digest of
            // every trail digesting it (trails quiet for over two hours aside), in no digest,
            // and not in the period of a digest still waiting (for its signature or a file).
            if let Some(tk) = TrailKey::parse(local)
                && let Some(chain) = tk.chain()
                && !chain.backfill
            {
                let (key, starts) = self.starts_of(ctx, &tk.location);
                let s = starts
                    .entry((chain.trail.clone(), chain.home_region.clone()))
                    .or_insert(p.start);
                *s = (*s).max(p.start);
                marks.push((key, encode_starts(starts)));
                let newest = starts.values().copied().max().unwrap_or(p.start);
                let mut until = starts
                    .values()
                    .copied()
                    .filter(|s| s.millis() >= newest.millis() - 2 * 3600 * 1000)
                    .min()
                    .unwrap_or(p.start);
                let held = self.unsigned.values().map(|u| (&u.location, u.start));
                for (location, start) in held.chain(self.waits.values().map(|w| (&w.1, w.2))) {
                    if *location == tk.location {
                        until = until.min(start);
                    }
                }
                let a = self.awaiting.entry(tk.location.clone()).or_default();
                let newer = a.split_off(&(until, String::new()));
                let late = std::mem::replace(a, newer);
                for ((_, k), w) in late {
                    fail(
                        &mut failures,
                        &k,
                        DigestResult::Unlisted,
                        format!(
                            "shipped, stamped before the period of digest {local} (from {until}), and listed in no digest"
                        ),
                    );
                    marks.push((w.mark, as_checked(&w.value)));
                }
            }
        }
        let hash = parsed
            .as_ref()
            .map(|p| p.sha256_hex.clone())
            .unwrap_or_default();
        marks.push((
            site.mark_key(local),
            DigestMark {
                state: DigestState::Checked,
                hash,
                signature,
                tail: tail.to_owned(),
            }
            .encode(),
        ));
        self.report(ctx, local, digest_ok, ok_logs, failures, marks)
    }

    /// True when the digest `local` waits for its previous digest: that one is there but
    /// not read yet (delivered or settled later, or waiting for its sidecar), so the chain
    /// check would call it never seen. Bounded by `wait`, as a wait for a log file is.
    fn predecessor_due(
        &mut self,
        ctx: &Ctx,
        site: &dyn Site,
        local: &str,
        p: &ParsedDigest,
    ) -> bool {
        let d = &p.digest;
        let Some(prev) = &d.previous_digest_s3_object else {
            return false;
        };
        let bucket = d
            .previous_digest_s3_bucket
            .as_deref()
            .unwrap_or(&d.digest_s3_bucket);
        let (Some(pl), Some(tk)) = (site.local(d, bucket, prev), TrailKey::parse(local)) else {
            return false;
        };
        let Some(chain) = tk.chain() else {
            return false;
        };
        let tip_key = self.tip_key(&chain);
        let tip = self
            .tips
            .entry(tip_key.clone())
            .or_insert_with(|| ctx.spool.mark(&tip_key).as_deref().and_then(Tip::decode));
        if tip.as_ref().is_some_and(|t| t.key == pl) || self.unsigned.contains_key(&pl) {
            return false;
        }
        let since = self.waits.get(local).map_or_else(Instant::now, |w| w.0);
        if since.elapsed() >= self.wait
            || !site.in_window(&pl)
            || self.mark(ctx, &site.mark_key(&pl)).is_some()
            || !site.waiting(&pl)
        {
            return false;
        }
        tracing::info!(source = %ctx.name, digest = %local, previous = %pl, "CloudTrail digest waits for its previous digest, which is there but not read yet");
        self.waits
            .insert(local.to_owned(), (since, tk.location, p.start));
        true
    }

    /// At the end of a pass: each digest read without a signature that no successor has
    /// named is reported `unverified`, once (the newest digest of a copy without its `.sig`
    /// sidecars: nothing can verify it until its successor arrives).
    pub fn end_pass(&mut self, ctx: &Ctx, site: &dyn Site) -> bool {
        let due: Vec<String> = self
            .unsigned
            .iter()
            .filter(|(k, u)| {
                u.mark.state == DigestState::NoSignature && !self.claims.contains_key(*k)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for local in due {
            let Some(u) = self.unsigned.get_mut(&local) else {
                continue;
            };
            u.mark.state = DigestState::Unverified;
            let value = u.mark.encode();
            let failure = Failure {
                key: local.clone(),
                result: DigestResult::Unverified,
                reason: "no signature (no .sig sidecar, or x-amz-meta-signature), and no later digest of its chain names it yet: its log files are checked once its successor arrives".into(),
            };
            if self.report(
                ctx,
                &local,
                false,
                0,
                vec![failure],
                vec![(site.mark_key(&local), value)],
            ) == Checked::Stopping
            {
                return false;
            }
        }
        true
    }

    /// Reports what a digest's check found and hands over its marks, with the failures
    /// counted, in one durable append: a crash before it is durable leaves the digest to be
    /// checked (and reported) again, a crash after it leaves nothing to report again.
    fn report(
        &mut self,
        ctx: &Ctx,
        local: &str,
        digest_ok: bool,
        ok_logs: u64,
        failures: Vec<Failure>,
        mut marks: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Checked {
        let mut checks = Vec::with_capacity(failures.len() + 1);
        let oks = u64::from(digest_ok && !failures.iter().any(|f| f.key == local)) + ok_logs;
        if oks > 0 {
            checks.push((DigestResult::Ok, oks));
        }
        let mut new_failures = 0u64;
        for f in &failures {
            checks.push((f.result, 1));
            if f.result.is_failure() {
                new_failures += 1;
                tracing::error!(source = %ctx.name, key = %f.key, result = f.result.label(), reason = %f.reason, "CloudTrail digest check failed");
            } else {
                tracing::warn!(source = %ctx.name, key = %f.key, result = f.result.label(), reason = %f.reason, "CloudTrail digest check");
            }
        }
        if new_failures > 0 {
            *self.load_failures(ctx).entry(today()).or_default() += new_failures;
            marks.insert(0, (self.failures_key(), self.failures_value(ctx)));
            self.publish(ctx);
        }
        if digest_ok {
            tracing::debug!(source = %ctx.name, key = %local, logs = ok_logs, "CloudTrail digest checked");
        }
        if !ctx.send(Item::Marks {
            source: ctx.index,
            marks,
            checks,
        }) {
            return Checked::Stopping;
        }
        if new_failures > 0 && crash_after_report() && ctx.durable().is_ok() {
            eprintln!(
                "orgtrail: crash point {CRASH_AFTER_REPORT} reached (ORGTRAIL_CRASH_AT): aborting"
            );
            std::process::abort();
        }
        Checked::Done
    }

    #[allow(clippy::too_many_arguments)]
    fn check_chain(
        &mut self,
        ctx: &Ctx,
        site: &dyn Site,
        local: &str,
        stamp: Timestamp,
        chain: &orgtrail_trailfiles::ChainId,
        p: &ParsedDigest,
        signature: &Option<String>,
        failures: &mut Vec<Failure>,
        marks: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) {
        let tip_key = self.tip_key(chain);
        let tip = self
            .tips
            .entry(tip_key.clone())
            .or_insert_with(|| ctx.spool.mark(&tip_key).as_deref().and_then(Tip::decode))
            .clone();
        let d = &p.digest;
        let mut broken = |reason: String| {
            failures.push(Failure {
                key: local.to_owned(),
                result: DigestResult::BrokenChain,
                reason,
            })
        };
        match &d.previous_digest_s3_object {
            None => {
                if let Some(t) = &tip {
                    tracing::warn!(source = %ctx.name, key = %local, previous = %t.key, "CloudTrail digest starts a new chain: no log files were delivered between the previous digest and this one (trail stopped, or validation turned off)");
                }
            }
            Some(prev) => {
                let prev_local = site.local(
                    d,
                    d.previous_digest_s3_bucket
                        .as_deref()
                        .unwrap_or(&d.digest_s3_bucket),
                    prev,
                );
                // The previous digest as read: waiting for its signature (memory, or its
                // mark), the chain's tip, or its mark.
                let unsigned = prev_local.as_ref().and_then(|pl| {
                    self.unsigned.get(pl).map(|u| u.mark.clone()).or_else(|| {
                        self.mark(ctx, &site.mark_key(pl))
                            .as_deref()
                            .and_then(DigestMark::decode)
                            .filter(|m| m.state.awaits_signature())
                    })
                });
                let record = match (&unsigned, &tip, &prev_local) {
                    (Some(m), _, _) => Some((m.hash.clone(), None)),
                    (None, Some(t), Some(pl)) if t.key == *pl => {
                        Some((t.hash.clone(), t.signature.clone()))
                    }
                    (None, _, Some(pl)) => self
                        .mark(ctx, &site.mark_key(pl))
                        .as_deref()
                        .and_then(DigestMark::decode)
                        .map(|m| (m.hash, m.signature)),
                    (None, _, None) => None,
                };
                match record {
                    Some((hash, sig)) => {
                        if d.previous_digest_hash_value
                            .as_deref()
                            .is_none_or(|h| !h.eq_ignore_ascii_case(&hash))
                        {
                            broken(format!(
                                "previousDigestHashValue does not match the previous digest {prev} as read (SHA-256 {hash}): it was modified or replaced"
                            ));
                        } else if let Some(s) = &sig
                            && d.previous_digest_signature
                                .as_deref()
                                .is_none_or(|x| !x.eq_ignore_ascii_case(s))
                        {
                            broken(format!(
                                "previousDigestSignature differs from the signature the previous digest {prev} was read with"
                            ));
                        } else if let (Some(m), Some(pl), Some(claim)) =
                            (&unsigned, &prev_local, &d.previous_digest_signature)
                        {
                            // The previous digest's signature, named here: it is checked with
                            // it (durably noted with this digest's marks).
                            let value = DigestMark {
                                state: DigestState::Claimed,
                                hash: m.hash.clone(),
                                signature: Some(claim.clone()),
                                tail: m.tail.clone(),
                            };
                            marks.push((site.mark_key(pl), value.encode()));
                            self.claims.insert(pl.clone(), claim.clone());
                            self.resolvable.push(pl.clone());
                        }
                    }
                    None => {
                        if let Some(t) = &tip
                            && t.key != *prev
                        {
                            broken(format!(
                                "the previous digest {prev} was never seen (deleted?); the last digest read in this chain is {}",
                                t.key
                            ));
                        }
                    }
                }
            }
        }
        if tip.as_ref().is_none_or(|t| t.stamp < stamp) {
            let t = Tip {
                key: local.to_owned(),
                stamp,
                hash: p.sha256_hex.clone(),
                signature: signature.clone(),
            };
            marks.push((tip_key.clone(), t.encode()));
            self.tips.insert(tip_key, Some(t));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_of_days_before_the_first_kept_are_forgotten() {
        let mut f: BTreeMap<i64, u64> = [(10, 2), (11, 1), (17, 4)].into_iter().collect();
        assert!(!forget_days(&mut f, 10), "nothing before day 10");
        assert!(forget_days(&mut f, 11));
        assert_eq!(f.into_iter().collect::<Vec<_>>(), vec![(11, 1), (17, 4)]);
    }
}
