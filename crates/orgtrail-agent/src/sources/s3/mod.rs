//! The `s3` source: an existing trail's bucket, on AWS or any S3-compatible endpoint.
//!
//! # Listing
//!
//! A pass finds the locations (`[prefix/]AWSLogs/[o-org/]ACCOUNT/CloudTrail[-Insight]/REGION/`,
//! by delimiter listings, filtered by `accounts` and `regions`) and lists every day prefix
//! `LOC/YYYY/MM/DD/` from `today - lookback_days` to today (UTC, yesterday always) through every
//! continuation page, then handles the keys in key order. Keys are checked against the
//! processed set, never against a last-key cursor: CloudTrail delivers out of key order, and a
//! file that arrives late with a key sorting before ones already read is found at the next
//! pass (a `start-after` cursor would skip it for good).
//!
//! # The processed set
//!
//! Spool marks, keyed `"s3\0" bucket "\0" YYYYMMDD "\0" key` (the day first, so days past the
//! lookback are one range), valued `d VERSION` (read whole) or `p N VERSION` (the first N
//! records are spooled). VERSION is the object's ETag, or from a server that sends none its size
//! and last-modified time (`size=N;modified=SECONDS`, [`orgtrail_s3::Version`]). A mark goes to the spooler in the same channel as the events before it, so it is
//! appended with them in one durable write and is never durable before them: *processed* means
//! the `d` mark only. The `d` mark travels with the object's last event, as one item
//! ([`crate::sources::Item::LastEvent`]), so once the object's events are durable so is its
//! mark, whatever the spooler's linger or batch size: an agent killed after they were
//! acknowledged does not read the object again. After a `kill -9` an object with a `p` mark is read again from the start
//! and its first N records are skipped; at most [`PART_EVERY`]` - 1` records are spooled twice,
//! and the collector's (account, eventID) dedup drops them. An object overwritten (another
//! version) is read again. Memory holds a 16-byte hash per object read whole.
//!
//! # Objects
//!
//! Digest files (`CloudTrail-Digest`) are counted and never opened. An object larger than
//! CloudTrail's 50 MB is a dead letter unread; others are streamed (never held whole) with the
//! `cloudtrail_dir` limits. A corrupt gzip gives its good records, then one dead letter. An
//! object that vanished or changed between the listing and the read gets no mark (the next pass
//! decides); a transfer failure after the client's retries leaves the object unmarked and
//! counted in `orgtrail_agent_s3_failing_objects`, and it is tried again at every pass.
//!
//! # Digests
//!
//! With `digest_public_keys_file`, each log object is hashed (SHA-256 of the inflated bytes)
//! as it is streamed, and its `d` mark becomes `h HEX ETAG` (`c HEX ETAG` once a digest listed
//! it). After the log files of a pass, the digest files of each location
//! (`.../CloudTrail-Digest/REGION/YYYY/MM/DD/`, the same days) are read, with their
//! `x-amz-meta-signature`, and checked (see [`super::digests`]); a checked digest's mark is
//! `g HEX SIG ETAG`, pruned with the lookback like the rest. Log files listed by a digest but
//! lying before the lookback window are not checked.
//!
//! # Failures
//!
//! Refused credentials or a missing bucket at the first listing stop the agent with a non-zero
//! exit and a message naming the server's error code (never the secret). Later, a refused or
//! failed listing abandons the pass and backs off (1 s doubling to 5 min), reconnecting (the
//! key files are read again).

mod plan;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use orgtrail_core::{DecodeLimits, Decoder, InputFormat};
use orgtrail_s3::{Blocking, Listed, S3Error};
use orgtrail_trailfiles::inflate::{HashingInflater, inflate_and_hash};
use orgtrail_trailfiles::{DigestFile, PublicKeySet};
use tokio::runtime::Handle;

use super::digests::{self, Checked, Checker};
use super::dir::{MAX_DECOMPRESSED_BYTES, MAX_FILE_BYTES};
use super::{Ctx, Item};
use crate::config::S3SourceConfig;
use crate::metrics::S3Outcome;
use plan::{Day, Mark};

/// A `p` mark is handed over after this many records of an object.
pub const PART_EVERY: u64 = 1000;

/// The crash point of the end-to-end test: with `ORGTRAIL_CRASH_AT=s3-after-part-mark`, the
/// agent aborts once the first `p` mark is durable (as a `kill -9` would stop it there).
const CRASH_AFTER_PART: &str = "s3-after-part-mark";

fn crash_after_part() -> bool {
    static AT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AT.get_or_init(|| std::env::var("ORGTRAIL_CRASH_AT").is_ok_and(|v| v == CRASH_AFTER_PART))
}

/// Runs the source on this `spawn_blocking` thread (requests are made on `handle`'s runtime).
/// Returns only when the agent stops, after one pass with `ctx.once`, or with a permanent
/// error.
/// With `keys`, CloudTrail's digests are checked.
pub fn run(
    ctx: &Ctx,
    cfg: &S3SourceConfig,
    handle: Handle,
    keys: Option<PublicKeySet>,
) -> Result<(), S3Error> {
    ctx.metrics
        .source(ctx.index)
        .s3
        .store(true, Ordering::Relaxed);
    let mut client = Blocking::in_runtime(&cfg.options(), handle.clone())?;
    let mut state = State {
        checker: keys.map(|k| {
            let mut prefix = plan::bucket_prefix(&cfg.bucket);
            prefix.extend_from_slice(b"~digests\0");
            Checker::new(
                k,
                prefix,
                std::time::Duration::from_millis(cfg.digest_wait_ms),
            )
        }),
        ..State::default()
    };
    if let Some(c) = &mut state.checker {
        c.publish(ctx);
    }
    let mut first = true;
    let mut backoff_ms = 1000u64;
    loop {
        match pass(ctx, cfg, &client, &mut state) {
            Ok(()) => {
                first = false;
                backoff_ms = 1000;
                let m = ctx.metrics.source(ctx.index);
                m.s3_last_pass
                    .store(unix_now().max(0) as u64, Ordering::Relaxed);
                m.s3_failing
                    .store(state.failing.len() as u64, Ordering::Relaxed);
                m.s3_processed.store(
                    state.done.values().map(|d| d.len() as u64).sum(),
                    Ordering::Relaxed,
                );
                if ctx.once {
                    return Ok(());
                }
                if !ctx.pause(cfg.poll_ms) {
                    return Ok(());
                }
            }
            Err(e) if first && e.is_permanent() => return Err(e),
            Err(e) if ctx.once => return Err(e),
            Err(e) => {
                ctx.metrics.source(ctx.index).s3_error(e.kind());
                tracing::warn!(source = %ctx.name, error = %e, retry_in_ms = backoff_ms, "S3 listing failed; the pass is abandoned");
                if !ctx.pause(backoff_ms) {
                    return Ok(());
                }
                backoff_ms = (backoff_ms * 2).min(300_000);
                if e.is_permanent() {
                    // Rotated keys: read the key files again.
                    match Blocking::in_runtime(&cfg.options(), handle.clone()) {
                        Ok(c) => client = c,
                        Err(e) => {
                            tracing::warn!(source = %ctx.name, error = %e, "cannot reconnect")
                        }
                    }
                }
            }
        }
    }
}

use digests::unix_now;

/// What a source keeps between passes.
#[derive(Debug, Default)]
struct State {
    /// Objects read whole (or digests counted), by day, by [`plan::done_hash`] of mark key and
    /// version.
    done: HashMap<Day, HashSet<u128>>,
    /// Objects whose read failed for a transfer reason, and why.
    failing: HashMap<String, String>,
    /// The digest checker, when digests are checked.
    checker: Option<Checker>,
    /// The log keys listed in this pass (digest checking: a listed file not processed yet
    /// makes its digest wait).
    listed: HashSet<String>,
    /// The first day of this pass's window.
    first_day: Option<Day>,
}

impl State {
    /// `(mark key, version, done hash)` of listed object `o` of `day`, unless it was read
    /// in this process already or is not `wanted`.
    fn to_read(
        &self,
        cfg: &S3SourceConfig,
        day: Day,
        o: &Listed,
        wanted: bool,
    ) -> Option<(Vec<u8>, String, u128)> {
        let mark = plan::mark_key(&cfg.bucket, day, &o.key);
        let version = o.version.to_string();
        let h = plan::done_hash(&mark, &version);
        (wanted && !self.done.get(&day).is_some_and(|d| d.contains(&h)))
            .then_some((mark, version, h))
    }
}

/// Where a digest read from the bucket finds its files.
struct S3Site<'a> {
    bucket: &'a str,
    listed: &'a HashSet<String>,
    first_day: Day,
    client: &'a Blocking,
}

impl digests::Site for S3Site<'_> {
    fn local(&self, _d: &DigestFile, bucket: &str, key: &str) -> Option<String> {
        (bucket == self.bucket).then(|| key.to_owned())
    }

    fn at_home(&self, local: &str, d: &DigestFile) -> bool {
        d.digest_s3_object == local && d.digest_s3_bucket == self.bucket
    }

    fn mark_key(&self, local: &str) -> Vec<u8> {
        plan::mark_key(
            self.bucket,
            plan::day_of_key(local).unwrap_or(Day(0)),
            local,
        )
    }

    fn waiting(&self, local: &str) -> bool {
        // Not in this pass's listing: it may have arrived since (a HEAD tells; a failed
        // request makes the digest wait rather than call the file missing).
        self.listed.contains(local)
            || !matches!(
                self.client.metadata(local, "signature"),
                Err(S3Error::NotFound { .. })
            )
    }

    fn in_window(&self, local: &str) -> bool {
        plan::day_of_key(local).is_some_and(|d| d >= self.first_day)
    }
}

/// The common prefixes under `prefix` (every page).
fn prefixes(client: &Blocking, prefix: &str, max_keys: usize) -> Result<Vec<String>, S3Error> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let p = client.list_page(prefix, true, None, token, max_keys)?;
        out.extend(p.prefixes);
        match p.next {
            Some(t) => token = Some(t),
            None => return Ok(out),
        }
    }
}

/// The last segment of a prefix ending in `/`.
fn last_segment(p: &str) -> &str {
    p.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
}

/// The locations `.../CloudTrail[-Insight]/REGION/` this source reads.
fn locations(client: &Blocking, cfg: &S3SourceConfig) -> Result<Vec<String>, S3Error> {
    let mut base = cfg.prefix.trim_matches('/').to_string();
    if !base.is_empty() {
        base.push('/');
    }
    base.push_str("AWSLogs/");
    let is_account = |s: &str| s.len() == 12 && s.bytes().all(|c| c.is_ascii_digit());
    let mut accounts = Vec::new();
    let tops = match &cfg.organization_id {
        Some(o) => vec![format!("{base}{o}/")],
        None => prefixes(client, &base, cfg.max_keys)?,
    };
    for top in tops {
        let seg = last_segment(&top);
        if seg.starts_with("o-") {
            for a in prefixes(client, &top, cfg.max_keys)? {
                if is_account(last_segment(&a)) {
                    accounts.push(a);
                }
            }
        } else if is_account(seg) {
            accounts.push(top);
        }
    }
    accounts
        .retain(|a| cfg.accounts.is_empty() || cfg.accounts.iter().any(|x| x == last_segment(a)));
    let mut locs = Vec::new();
    for a in accounts {
        let mut kinds = vec!["CloudTrail/"];
        if cfg.insights {
            kinds.push("CloudTrail-Insight/");
        }
        for k in kinds {
            for r in prefixes(client, &format!("{a}{k}"), cfg.max_keys)? {
                if cfg.regions.is_empty() || cfg.regions.iter().any(|x| x == last_segment(&r)) {
                    locs.push(r);
                }
            }
        }
    }
    Ok(locs)
}

/// One pass over the lookback window.
fn pass(
    ctx: &Ctx,
    cfg: &S3SourceConfig,
    client: &Blocking,
    state: &mut State,
) -> Result<(), S3Error> {
    let locs = locations(client, cfg)?;
    let days = plan::days(Day::of_unix_secs(unix_now()), cfg.lookback_days);
    forget_before(ctx, cfg, state, days[0]);
    state.listed.clear();
    state.first_day = Some(days[0]);
    if let Some(c) = &mut state.checker {
        c.new_pass();
    }
    for loc in &locs {
        for day in &days {
            let objects = client.list_all(&format!("{loc}{}", day.path()), cfg.max_keys)?;
            if state.checker.is_some() {
                state.listed.extend(objects.iter().map(|o| o.key.clone()));
            }
            for o in objects {
                if ctx.stopping() {
                    return Ok(());
                }
                if !object(ctx, cfg, client, state, *day, &o)? {
                    return Ok(());
                }
            }
        }
    }
    if state.checker.is_some() {
        let mut digests_read = HashMap::new();
        for loc in &locs {
            // Digests of log files (`.../CloudTrail/REGION/`), after all the log files.
            let Some(base) = loc.strip_suffix('/').and_then(|l| l.rsplit_once('/')) else {
                continue;
            };
            let Some(acct) = base.0.strip_suffix("/CloudTrail") else {
                continue;
            };
            let digest_loc = format!("{acct}/CloudTrail-Digest/{}/", base.1);
            for day in &days {
                let objects =
                    client.list_all(&format!("{digest_loc}{}", day.path()), cfg.max_keys)?;
                for o in objects {
                    if ctx.stopping() {
                        return Ok(());
                    }
                    if !digest_object(ctx, cfg, client, state, *day, &o)? {
                        return Ok(());
                    }
                    digests_read.insert(o.key.clone(), (*day, o));
                }
            }
        }
        // Digests whose signature a successor named in this pass.
        let resolvable = state
            .checker
            .as_mut()
            .map(Checker::take_resolvable)
            .unwrap_or_default();
        for key in resolvable {
            if let Some((day, o)) = digests_read.get(&key)
                && !digest_object(ctx, cfg, client, state, *day, o)?
            {
                return Ok(());
            }
        }
        if let Some(c) = &mut state.checker {
            let site = S3Site {
                bucket: &cfg.bucket,
                listed: &state.listed,
                first_day: days[0],
                client,
            };
            if !c.end_pass(ctx, &site) {
                return Ok(());
            }
        }
    }
    if !state.failing.is_empty() {
        tracing::warn!(source = %ctx.name, failing = state.failing.len(), "S3 objects could not be read in this pass; they are tried again at the next");
    }
    Ok(())
}

/// Forgets the processed keys of the days before `first` (no longer listed), in memory and
/// in the spool.
fn forget_before(ctx: &Ctx, cfg: &S3SourceConfig, state: &mut State, first: Day) {
    state.done.retain(|d, _| *d >= first);
    if let Some(c) = &mut state.checker {
        c.forget_before(ctx, first.0);
        c.forget_awaiting_before(orgtrail_core::Timestamp(first.0 * 86_400_000));
    }
    let from = plan::bucket_prefix(&cfg.bucket);
    let mut to = from.clone();
    to.extend_from_slice(first.compact().as_bytes());
    match ctx.spool.forget_marks(&from, &to) {
        Ok(0) => {}
        Ok(n) => {
            tracing::info!(source = %ctx.name, forgotten = n, "processed S3 keys past the lookback forgotten")
        }
        Err(e) => {
            tracing::warn!(source = %ctx.name, error = %e, "cannot forget processed S3 keys past the lookback; trying again at the next pass")
        }
    }
}

/// The outcome of a request about listed object `o`: `Ok(None)` when it vanished or changed
/// since the listing (the next pass sees what is there) or failed for a transfer reason (noted
/// in `failing`, tried again at the next pass); `Err` for an error that stops the pass.
fn handled<T>(
    ctx: &Ctx,
    state: &mut State,
    o: &Listed,
    r: Result<T, S3Error>,
) -> Result<Option<T>, S3Error> {
    let m = ctx.metrics.source(ctx.index);
    match r {
        Ok(v) => Ok(Some(v)),
        Err(S3Error::NotFound { .. } | S3Error::Changed { .. }) => {
            m.s3_object(S3Outcome::Vanished);
            Ok(None)
        }
        Err(e) if e.is_permanent() => {
            m.s3_error(e.kind());
            Err(e)
        }
        Err(e) => {
            m.s3_error(e.kind());
            tracing::warn!(source = %ctx.name, key = %o.key, error = %e, "cannot read S3 object; trying again at the next pass");
            state.failing.insert(o.key.clone(), e.to_string());
            Ok(None)
        }
    }
}

/// Handles one listed object. `Ok(false)` when the agent is stopping; `Err` only for an
/// error that stops the pass (refused credentials).
fn object(
    ctx: &Ctx,
    cfg: &S3SourceConfig,
    client: &Blocking,
    state: &mut State,
    day: Day,
    o: &Listed,
) -> Result<bool, S3Error> {
    let m = ctx.metrics.source(ctx.index);
    let Some((mark, version, h)) = state.to_read(cfg, day, o, plan::is_log_file(&o.key)) else {
        return Ok(true);
    };
    if plan::is_digest(&o.key) {
        m.s3_object(S3Outcome::Digest);
        state.done.entry(day).or_default().insert(h);
        return Ok(true);
    }
    let value = ctx.spool.mark(&mark);
    let skip = match value.as_deref().and_then(Mark::decode) {
        Some(Mark::Done(e)) if e == version => {
            state.done.entry(day).or_default().insert(h);
            return Ok(true);
        }
        Some(Mark::Hashed { etag, .. }) if etag == version => {
            if let (Some(c), Some(v)) = (&mut state.checker, value) {
                c.shipped(&o.key, mark.clone(), v);
            }
            state.done.entry(day).or_default().insert(h);
            return Ok(true);
        }
        Some(Mark::Part(e, n)) if e == version => n,
        Some(_) => {
            tracing::warn!(source = %ctx.name, key = %o.key, "S3 object overwritten since it was read (another ETag); reading it again");
            m.s3_object(S3Outcome::Overwritten);
            0
        }
        None => 0,
    };
    let done_mark = |ctx: &Ctx| {
        ctx.send(Item::Mark {
            key: mark.clone(),
            value: Mark::Done(version.clone()).encode(),
        })
    };
    if o.size > MAX_FILE_BYTES {
        m.s3_object(S3Outcome::Dead);
        state.done.entry(day).or_default().insert(h);
        return Ok(ctx.dead(
            format!(
                "s3://{}/{}: {} bytes, larger than CloudTrail's limit of {MAX_FILE_BYTES} bytes for a log file",
                cfg.bucket, o.key, o.size
            ),
            Vec::new(),
        ) && done_mark(ctx));
    }
    let Some(reader) = handled(ctx, state, o, client.open(&o.key, Some(&o.version)))? else {
        return Ok(true);
    };
    let failure = reader.failure();
    let name = format!("s3://{}/{}", cfg.bucket, o.key);
    let limits = DecodeLimits {
        max_document_bytes: MAX_DECOMPRESSED_BYTES,
        ..DecodeLimits::default()
    };
    let transfer_failed = |state: &mut State, e: &S3Error| {
        m.s3_error(e.kind());
        tracing::warn!(source = %ctx.name, key = %o.key, error = %e, "S3 object transfer failed; trying again at the next pass");
        state.failing.insert(o.key.clone(), e.to_string());
    };
    // With digest checking, the inflated bytes are hashed as the decoder reads them.
    let (mut hashing, mut plain) = (None, None);
    if state.checker.is_some() {
        match HashingInflater::new(reader) {
            Ok(r) => hashing = Some(r),
            Err(e) => {
                if let Some(f) = failure.get() {
                    transfer_failed(state, f);
                    return Ok(true);
                }
                m.s3_object(S3Outcome::Dead);
                state.done.entry(day).or_default().insert(h);
                return Ok(ctx.dead(format!("{name}: {e}"), Vec::new()) && done_mark(ctx));
            }
        }
    } else {
        plain = Some(reader);
    }
    let input: Box<dyn std::io::Read + Send + '_> = match (&mut hashing, plain) {
        (Some(r), _) => Box::new(r),
        (None, Some(r)) => Box::new(r),
        (None, None) => return Ok(true),
    };
    let decoder = match Decoder::new(input, InputFormat::LogFile, limits) {
        Ok(d) => d,
        Err(e) => {
            if let Some(f) = failure.get() {
                transfer_failed(state, f);
                return Ok(true);
            }
            m.s3_object(S3Outcome::Dead);
            state.done.entry(day).or_default().insert(h);
            return Ok(ctx.dead(format!("{name}: {e}"), Vec::new()) && done_mark(ctx));
        }
    };
    let mut n = 0u64;
    // Handed over one behind: the last goes with the object's done-mark as one item, and the
    // one held at a part mark goes before it (a part mark never precedes events it counts).
    // Dropped when the transfer fails: the object is read again from its last part mark.
    let mut held = None;
    for item in decoder {
        let ok = match item {
            Ok(item) => {
                n += 1;
                if n <= skip {
                    continue;
                }
                match item.result {
                    Ok(ev) => held.replace(ev).is_none_or(|prev| ctx.event(prev)),
                    Err(reason) => {
                        ctx.dead(format!("{name}: {}: {reason}", item.position), Vec::new())
                    }
                }
            }
            Err(e) => {
                if let Some(f) = failure.get() {
                    transfer_failed(state, f);
                    return Ok(true);
                }
                // Unreadable from here on (corrupt gzip, too large once inflated): the good
                // records before are handed over, this is one dead letter.
                ctx.dead(format!("{name}: {e}"), Vec::new())
            }
        };
        if !ok {
            return Ok(false);
        }
        if n.is_multiple_of(PART_EVERY) && n > skip {
            if held.take().is_some_and(|ev| !ctx.event(ev)) {
                return Ok(false);
            }
            if !ctx.send(Item::Mark {
                key: mark.clone(),
                value: Mark::Part(version.clone(), n).encode(),
            }) {
                return Ok(false);
            }
            if crash_after_part() && ctx.durable().is_ok() {
                eprintln!(
                    "orgtrail: crash point {CRASH_AFTER_PART} reached (ORGTRAIL_CRASH_AT): aborting"
                );
                std::process::abort();
            }
        }
    }
    let mut value = Mark::Done(version.clone()).encode();
    if let Some(r) = hashing {
        match r.finish(MAX_DECOMPRESSED_BYTES) {
            Ok(hash) => value = digests::hashed_value(&hash, &version),
            Err(e) => {
                if let Some(f) = failure.get() {
                    transfer_failed(state, f);
                    return Ok(true);
                }
                tracing::warn!(source = %ctx.name, key = %o.key, error = %e, "S3 log file not hashed: its digest cannot verify it");
            }
        }
    }
    state.failing.remove(&o.key);
    state.done.entry(day).or_default().insert(h);
    m.s3_object(S3Outcome::Shipped);
    m.s3_bytes.add(o.size);
    tracing::debug!(source = %ctx.name, key = %o.key, records = n, "S3 log file read");
    if let Some(c) = &mut state.checker {
        c.shipped(&o.key, mark.clone(), value.clone());
    }
    Ok(match held {
        Some(last) => ctx.last_event(last, mark, value),
        None => ctx.send(Item::Mark { key: mark, value }),
    })
}

/// Reads and checks one listed digest object (digest checking on). `Ok(false)` when the
/// agent is stopping; `Err` only for an error that stops the pass.
fn digest_object(
    ctx: &Ctx,
    cfg: &S3SourceConfig,
    client: &Blocking,
    state: &mut State,
    day: Day,
    o: &Listed,
) -> Result<bool, S3Error> {
    let m = ctx.metrics.source(ctx.index);
    let Some((mark, version, h)) = state.to_read(cfg, day, o, o.key.ends_with(".json.gz")) else {
        return Ok(true);
    };
    if let Some(v) = ctx.spool.mark(&mark)
        && digests::DigestMark::decode(&v).is_some_and(|d| d.tail == version)
        && let Some(c) = &state.checker
    {
        match c.settled(&o.key, &v) {
            Some(true) => {
                state.done.entry(day).or_default().insert(h);
                return Ok(true);
            }
            Some(false) => return Ok(true),
            None => {}
        }
    }
    let failed = |state: &mut State, e: &S3Error| {
        m.s3_error(e.kind());
        tracing::warn!(source = %ctx.name, key = %o.key, error = %e, "cannot read S3 digest object; trying again at the next pass");
        state.failing.insert(o.key.clone(), e.to_string());
    };
    let read = if o.size > digests::MAX_DIGEST_BYTES {
        Err(format!(
            "{} bytes, larger than a digest file can be",
            o.size
        ))
    } else {
        let Some(reader) = handled(ctx, state, o, client.open(&o.key, Some(&o.version)))? else {
            return Ok(true);
        };
        let failure = reader.failure();
        let r = inflate_and_hash(reader, digests::MAX_DIGEST_BYTES, true);
        if let Some(f) = failure.get() {
            failed(state, f);
            return Ok(true);
        }
        r.map_err(|e| e.to_string())
    };
    let Some(signature) = handled(ctx, state, o, client.metadata(&o.key, "signature"))? else {
        return Ok(true);
    };
    let signature = signature.map(|s| s.trim().to_owned());
    let Some(checker) = state.checker.as_mut() else {
        return Ok(true);
    };
    let site = S3Site {
        bucket: &cfg.bucket,
        listed: &state.listed,
        first_day: state.first_day.unwrap_or(day),
        client,
    };
    match checker.check(ctx, &site, &o.key, read, signature, &version) {
        Checked::Done => {
            state.failing.remove(&o.key);
            state.done.entry(day).or_default().insert(h);
            m.s3_object(S3Outcome::Digest);
            Ok(true)
        }
        Checked::Waiting | Checked::Pending => Ok(true),
        Checked::Stopping => Ok(false),
    }
}
