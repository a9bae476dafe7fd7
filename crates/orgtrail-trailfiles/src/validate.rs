//! `validate-logs`: walks each digest chain from its newest digest to its oldest, as
//! `aws cloudtrail validate-logs` does, checks every log file a valid digest lists, and looks
//! for log files no digest lists.
//!
//! Per chain (trail, account, region; backfill digests form chains of their own):
//!
//! 1. The newest digest's signature comes from the store's metadata (a `.sig` sidecar in a
//!    directory); each older digest's from its successor's `previousDigestSignature`, or from
//!    its own metadata when present.
//! 2. A digest must be gzip JSON with aws-cli's required fields, lie where it says it does
//!    (`digestS3Bucket`/`digestS3Object`), name a known public key valid at its end time, and
//!    verify as `SHA256withRSA` over the string to sign (or as `Ed25519`, orgtrail's own
//!    archives, under a key of that algorithm).
//! 3. Stricter than aws-cli: when the successor is valid, its `previousDigestHashValue` must be
//!    the SHA-256 of this inflated digest, and its `previousDigestSignature` must equal this
//!    digest's own metadata signature when it has one. After a missing digest, the time left
//!    between the next digest found and the missing one's successor tells how many more are
//!    missing (two deleted in a row are reported as two, where aws-cli reports one). Digests
//!    in the range that no walk reached are reported too (moved, or outside every chain).
//! 4. The walk follows `previousDigestS3Object`; a null link is a gap (reported, not invalid)
//!    and the walk resumes at the next older digest in the listing, as it does after a missing
//!    or invalid digest.
//! 5. Every log file of a valid digest is streamed, inflated and hashed against `hashValue`.
//!    Log files in the store that no digest lists, stamped inside the period the digests
//!    cover (from the oldest digest's start to the newest one's start, so that files still
//!    waiting for their digest are not blamed), are reported as unlisted.
//!
//! Memory holds the digest keys and the log keys no digest has listed yet (about 200 bytes a
//! file); file contents are streamed (digests, which are small, are held one at a time).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use orgtrail_core::Timestamp;

use crate::digest::DigestFile;
use crate::inflate::inflate_and_hash;
use crate::layout::{ChainId, Location, TrailKey};
use crate::report::{FindingKind as K, Report};
use crate::{ObjectStore, PublicKeySet, ReadError, TrailFilesError, hex};

const HOUR_MS: i64 = 3600 * 1000;

/// What to validate, and the limits that keep a hostile tree from exhausting memory.
#[derive(Debug, Clone)]
pub struct ValidateOptions {
    /// Digests that end before this are not validated (aws-cli's `--start-time`).
    pub start: Option<Timestamp>,
    /// Digests stamped more than an hour after this are not validated (`--end-time`); newer
    /// digests are still read to carry signatures down the chain.
    pub end: Option<Timestamp>,
    /// Largest inflated digest file held in memory.
    pub max_digest_bytes: u64,
    /// Largest inflated log file hashed (streamed; a limit on work, not on memory).
    pub max_log_bytes: u64,
}

impl Default for ValidateOptions {
    fn default() -> Self {
        ValidateOptions {
            start: None,
            end: None,
            max_digest_bytes: 64 << 20,
            max_log_bytes: 16 << 30,
        }
    }
}

/// Validates every digest chain and log file in `store` against `keys`.
pub fn validate(
    store: &dyn ObjectStore,
    keys: &PublicKeySet,
    opts: &ValidateOptions,
) -> Result<Report, TrailFilesError> {
    let mut chains: BTreeMap<ChainId, BTreeSet<(Timestamp, String)>> = BTreeMap::new();
    // Log keys present and not yet listed by any digest read; what is left at the end is
    // checked against the period the digests cover. Keys far outside the requested range are
    // not kept.
    let mut unlisted: HashSet<String> = HashSet::new();
    let keep_log = |t: Timestamp| {
        opts.start
            .is_none_or(|s| t.millis() >= s.millis() - 2 * HOUR_MS)
            && opts
                .end
                .is_none_or(|e| t.millis() <= e.millis() + 3 * HOUR_MS)
    };
    for key in store.list()? {
        let Some(tk) = TrailKey::parse(&key) else {
            continue;
        };
        match tk.chain() {
            Some(chain) => {
                if opts.start.is_none_or(|s| tk.stamp >= s) {
                    chains.entry(chain).or_default().insert((tk.stamp, key));
                }
            }
            None => {
                if keep_log(tk.stamp) {
                    unlisted.insert(key);
                }
            }
        }
    }
    let mut v = Validator {
        store,
        keys,
        opts,
        report: Report::default(),
        unlisted,
        windows: BTreeMap::new(),
    };
    for (chain, pending) in chains {
        v.walk(&chain, pending);
    }
    v.report_unlisted();
    Ok(v.report)
}

struct Validator<'a> {
    store: &'a dyn ObjectStore,
    keys: &'a PublicKeySet,
    opts: &'a ValidateOptions,
    report: Report,
    /// Log keys in the store that no digest read so far lists.
    unlisted: HashSet<String>,
    /// Per location: the earliest and latest `digestStartTime` of the digests read.
    windows: BTreeMap<Location, (Timestamp, Timestamp)>,
}

/// How the walk arrived at a digest.
#[derive(Debug, Default)]
struct Link {
    /// The digest that named this one (None for the newest).
    successor: Option<String>,
    /// The successor's `previousDigestSignature`.
    signature: Option<String>,
    /// The successor's `previousDigestHashValue`.
    hash: Option<String>,
    /// The successor is valid, so its `previous*` fields are authentic.
    trusted: bool,
    /// The `digestStartTime` and period of the last valid digest above this one.
    period: Option<Period>,
    /// The key of the missing digest the walk skipped to reach this one.
    after_missing: Option<String>,
}

#[derive(Debug, Clone, Copy)]
struct Period {
    start: Timestamp,
    span_ms: i64,
}

enum Outcome {
    Missing,
    Invalid(Option<Box<Parsed>>),
    Valid(Box<Parsed>),
}

struct Parsed {
    digest: DigestFile,
    start: Timestamp,
    end: Timestamp,
}

impl Validator<'_> {
    fn in_range(&self, stamp: Timestamp) -> bool {
        self.opts
            .end
            .is_none_or(|e| stamp.millis() <= e.millis() + HOUR_MS)
    }

    fn walk(&mut self, chain: &ChainId, mut pending: BTreeSet<(Timestamp, String)>) {
        self.report.chains += 1;
        let in_range_keys: Vec<(Timestamp, String)> = pending
            .iter()
            .filter(|(t, _)| self.in_range(*t))
            .cloned()
            .collect();
        let mut reached: HashSet<String> = HashSet::new();
        let mut next = pending.pop_last().map(|(t, k)| (k, t, Link::default()));
        let mut last_start: Option<Timestamp> = None;
        let mut stopped_at: Option<Timestamp> = None;
        while let Some((key, stamp, link)) = next.take() {
            if let (Some(start), Some(ls)) = (self.opts.start, last_start)
                && ls < start
            {
                stopped_at = Some(stamp);
                break;
            }
            pending.remove(&(stamp, key.clone()));
            if !reached.insert(key.clone()) {
                // Only forged links could loop; never walk one twice.
                break;
            }
            let counted = self.in_range(stamp);
            let outcome = if counted {
                self.check_digest(&key, &link, &chain.location, chain.backfill)
            } else {
                // Newer than the range: read only to carry its signature down the chain.
                let saved = std::mem::take(&mut self.report);
                let o = self.check_digest(&key, &link, &chain.location, true);
                self.report = saved;
                o
            };
            let older = |pending: &mut BTreeSet<(Timestamp, String)>| {
                let found = pending.range(..(stamp, String::new())).next_back().cloned();
                if let Some(f) = &found {
                    pending.remove(f);
                }
                found
            };
            match outcome {
                Outcome::Missing => {
                    if counted {
                        self.report.digests_invalid += 1;
                        let by = link.successor.as_deref().unwrap_or("the listing");
                        self.report.push(
                            &key,
                            K::DigestMissing,
                            format!("not found (named by {by})"),
                        );
                    }
                    next = older(&mut pending).map(|(t, k)| {
                        (
                            k,
                            t,
                            Link {
                                successor: Some(key.clone()),
                                period: link.period,
                                after_missing: Some(key.clone()),
                                ..Link::default()
                            },
                        )
                    });
                }
                Outcome::Invalid(parsed) => {
                    if counted {
                        self.report.digests_invalid += 1;
                    }
                    if let Some(p) = &parsed {
                        last_start = Some(p.start);
                    }
                    next = older(&mut pending).map(|(t, k)| {
                        // An unverified successor's signature can still be tried: a valid
                        // signature stands on its own. Its hash cannot be trusted.
                        let signature = parsed.as_ref().and_then(|p| {
                            (p.digest.previous_digest_s3_object.as_deref() == Some(k.as_str()))
                                .then(|| p.digest.previous_digest_signature.clone())
                                .flatten()
                        });
                        (
                            k,
                            t,
                            Link {
                                successor: Some(key.clone()),
                                signature,
                                ..Link::default()
                            },
                        )
                    });
                }
                Outcome::Valid(p) => {
                    if counted {
                        self.report.digests_valid += 1;
                        self.report.found(p.start, p.end);
                        self.check_logs(&p.digest);
                    }
                    last_start = Some(p.start);
                    let d = &p.digest;
                    match (&d.previous_digest_s3_object, &d.previous_digest_s3_bucket) {
                        (Some(prev), prev_bucket) => {
                            let elsewhere = match (prev_bucket, self.store.bucket()) {
                                (Some(pb), Some(b)) => pb != b,
                                (Some(pb), None) => *pb != d.digest_s3_bucket,
                                (None, _) => false,
                            };
                            if elsewhere {
                                self.report.push(
                                    &key,
                                    K::ChainLeavesStore,
                                    format!(
                                        "the chain continues at s3://{}/{prev}, in another bucket; not followed",
                                        prev_bucket.as_deref().unwrap_or_default()
                                    ),
                                );
                                break;
                            }
                            let prev_stamp = TrailKey::parse(prev)
                                .map(|t| t.stamp)
                                .unwrap_or(Timestamp(stamp.millis() - 1));
                            next = Some((
                                prev.clone(),
                                prev_stamp,
                                Link {
                                    successor: Some(key.clone()),
                                    signature: d.previous_digest_signature.clone(),
                                    hash: d.previous_digest_hash_value.clone(),
                                    trusted: true,
                                    period: Some(Period {
                                        start: p.start,
                                        span_ms: p.end.millis() - p.start.millis(),
                                    }),
                                    after_missing: None,
                                },
                            ));
                        }
                        (None, _) => {
                            next = older(&mut pending).map(|(t, k)| {
                                (
                                    k,
                                    t,
                                    Link {
                                        successor: Some(key.clone()),
                                        ..Link::default()
                                    },
                                )
                            });
                            if counted && let Some((_, t, _)) = &next {
                                self.report.push(
                                    &key,
                                    K::Gap,
                                    format!(
                                        "no log files were delivered by CloudTrail between {t} and {}",
                                        p.start
                                    ),
                                );
                            }
                        }
                    }
                }
            }
        }
        // Digests in the range that no walk reached: moved, or outside every chain.
        for (stamp, key) in in_range_keys {
            if reached.contains(&key) || stopped_at.is_some_and(|s| stamp <= s) {
                continue;
            }
            self.report.digests_invalid += 1;
            self.unreached(&key, &chain.location, chain.backfill);
        }
    }

    fn unreached(&mut self, key: &str, location: &Location, backfill: bool) {
        let Some(p) = self.read_digest(key, location, backfill) else {
            return; // read_digest reported why
        };
        if !self.check_location(key, &p.digest) {
            return;
        }
        self.report.push(
            key,
            K::DigestUnchained,
            "no chain walk from the newest digest reaches it: no digest names it as previous"
                .into(),
        );
    }

    /// Reads and parses a digest, reporting a missing or malformed one. Records its logs as
    /// listed and its period for the unlisted-log check.
    fn read_digest(&mut self, key: &str, location: &Location, backfill: bool) -> Option<Parsed> {
        self.read_digest_bytes(key, location, backfill)
            .map(|(p, _)| p)
    }

    fn read_digest_bytes(
        &mut self,
        key: &str,
        location: &Location,
        backfill: bool,
    ) -> Option<(Parsed, String)> {
        let reader = match self.store.open(key) {
            Ok(r) => r,
            Err(e) => {
                let kind = if matches!(e, ReadError::NotFound) {
                    K::DigestMissing
                } else {
                    K::DigestInvalidFormat
                };
                self.report.push(key, kind, format!("cannot read: {e}"));
                return None;
            }
        };
        let (hash, bytes) = match inflate_and_hash(reader, self.opts.max_digest_bytes, true) {
            Ok(x) => x,
            Err(e) => {
                self.report
                    .push(key, K::DigestInvalidFormat, format!("invalid format: {e}"));
                return None;
            }
        };
        let hash_hex = hex::encode(&hash);
        let parsed = match crate::check::parse_digest(&bytes, hash_hex.clone()) {
            Ok(p) => p,
            Err(reason) => {
                self.report.push(key, K::DigestInvalidFormat, reason);
                return None;
            }
        };
        let (digest, start, end) = (parsed.digest, parsed.start, parsed.end);
        for lf in &digest.log_files {
            self.unlisted.remove(&lf.s3_object);
        }
        if !backfill {
            let w = self
                .windows
                .entry(location.clone())
                .or_insert((start, start));
            w.0 = w.0.min(start);
            w.1 = w.1.max(start);
        }
        Some((Parsed { digest, start, end }, hash_hex))
    }

    /// True when the digest lies where it says it does; reports it as moved otherwise.
    fn check_location(&mut self, key: &str, d: &DigestFile) -> bool {
        let bucket_ok = self.store.bucket().is_none_or(|b| b == d.digest_s3_bucket);
        if d.digest_s3_object == key && bucket_ok {
            return true;
        }
        self.report.push(
            key,
            K::DigestMoved,
            format!(
                "has been moved from its original location s3://{}/{}",
                d.digest_s3_bucket, d.digest_s3_object
            ),
        );
        false
    }

    fn check_digest(
        &mut self,
        key: &str,
        link: &Link,
        location: &Location,
        backfill: bool,
    ) -> Outcome {
        if matches!(self.store.open(key), Err(ReadError::NotFound)) {
            return Outcome::Missing;
        }
        let Some((p, hash_hex)) = self.read_digest_bytes(key, location, backfill) else {
            return Outcome::Invalid(None);
        };
        let d = &p.digest;
        let mut ok = true;

        if let (Some(missing), Some(m)) = (&link.after_missing, link.period)
            && m.span_ms > 0
        {
            let hole = m.start.millis() - p.end.millis();
            let periods = (hole + m.span_ms / 2) / m.span_ms;
            if periods >= 2 {
                // Counted once: a long hole may also hold a period when logging was off,
                // which the missing digest itself would have shown as a gap.
                let more = periods - 1;
                self.report.digests_invalid += 1;
                let what = if more == 1 {
                    "1 more digest".to_owned()
                } else {
                    format!("up to {more} more digests (or a period when logging was off)")
                };
                self.report.push(
                    key,
                    K::DigestsMissingBefore,
                    format!(
                        "{what} between this one (ending {}) and the missing {missing}: no digest left names them",
                        p.end
                    ),
                );
            }
        }
        ok &= self.check_location(key, d);

        if link.trusted
            && let Some(h) = &link.hash
            && !h.eq_ignore_ascii_case(&hash_hex)
        {
            ok = false;
            self.report.push(
                key,
                K::DigestChainMismatch,
                format!(
                    "its SHA-256 is {hash_hex}, but {} says previousDigestHashValue {h}",
                    link.successor.as_deref().unwrap_or_default()
                ),
            );
        }
        let metadata = match self.store.signature(key) {
            Ok(s) => s,
            Err(e) => {
                self.report.push(
                    key,
                    K::DigestNoSignature,
                    format!("cannot read its signature metadata: {e}"),
                );
                return Outcome::Invalid(Some(Box::new(p)));
            }
        };
        let signature = match (metadata, &link.signature) {
            (Some(m), Some(l)) => {
                if link.trusted && !m.eq_ignore_ascii_case(l) {
                    ok = false;
                    self.report.push(
                        key,
                        K::DigestChainMismatch,
                        format!(
                            "its signature metadata differs from the previousDigestSignature of {}",
                            link.successor.as_deref().unwrap_or_default()
                        ),
                    );
                }
                Some(m)
            }
            (Some(m), None) => Some(m),
            (None, l) => l.clone(),
        };
        let checked = crate::check::ParsedDigest {
            digest: p.digest,
            start: p.start,
            end: p.end,
            sha256_hex: hash_hex,
        };
        let result = crate::check::verify_signature(&checked, signature.as_deref(), self.keys);
        let p = Parsed {
            digest: checked.digest,
            start: checked.start,
            end: checked.end,
        };
        match result {
            Ok(()) => {}
            Err((K::DigestNoSignature, _)) => {
                let why = match &link.successor {
                    None => format!(
                        "no signature: this is the newest digest, and {key}.sig (its x-amz-meta-signature) is not there"
                    ),
                    Some(s) => format!(
                        "no signature: its successor {s} is missing or invalid, and it has no .sig sidecar"
                    ),
                };
                self.report.push(key, K::DigestNoSignature, why);
                return Outcome::Invalid(Some(Box::new(p)));
            }
            Err((kind @ K::DigestBadSignature, why)) => {
                self.report.push(key, kind, why);
                ok = false;
            }
            Err((kind, why)) => {
                self.report.push(key, kind, why);
                return Outcome::Invalid(Some(Box::new(p)));
            }
        }
        if ok {
            Outcome::Valid(Box::new(p))
        } else {
            Outcome::Invalid(Some(Box::new(p)))
        }
    }

    fn check_logs(&mut self, d: &DigestFile) {
        for lf in &d.log_files {
            let key = &lf.s3_object;
            let problem = if let Some(b) = self.store.bucket()
                && b != lf.s3_bucket
            {
                Some((
                    K::LogMissing,
                    format!("listed in bucket {}, not in this store", lf.s3_bucket),
                ))
            } else {
                match self.store.open(key) {
                    Err(ReadError::NotFound) | Err(ReadError::BadKey) => {
                        Some((K::LogMissing, "not found".to_owned()))
                    }
                    Err(e) => Some((K::LogInvalidFormat, format!("cannot read: {e}"))),
                    Ok(r) => match inflate_and_hash(r, self.opts.max_log_bytes, false) {
                        Err(e) => Some((K::LogInvalidFormat, format!("invalid format: {e}"))),
                        Ok((h, _)) => {
                            let got = hex::encode(&h);
                            (!got.eq_ignore_ascii_case(&lf.hash_value)).then(|| {
                                (
                                    K::LogModified,
                                    format!(
                                        "hash value doesn't match: the digest says {}, the file hashes to {got}",
                                        lf.hash_value
                                    ),
                                )
                            })
                        }
                    },
                }
            };
            match problem {
                None => self.report.logs_valid += 1,
                Some((kind, msg)) => {
                    self.report.logs_invalid += 1;
                    self.report.push(key, kind, msg);
                }
            }
        }
    }

    fn report_unlisted(&mut self) {
        let mut left: Vec<(Location, Timestamp, String)> = std::mem::take(&mut self.unlisted)
            .into_iter()
            .filter_map(|key| {
                let tk = TrailKey::parse(&key)?;
                Some((tk.location, tk.stamp, key))
            })
            .collect();
        left.sort();
        for (location, stamp, key) in left {
            let Some((from, until)) = self.windows.get(&location).copied() else {
                continue;
            };
            if stamp >= from && stamp < until {
                self.report.logs_invalid += 1;
                self.report.push(
                    &key,
                    K::LogUnlisted,
                    format!(
                        "in the period the digests cover ({from} to {until}) but listed in no digest"
                    ),
                );
            }
        }
    }
}
