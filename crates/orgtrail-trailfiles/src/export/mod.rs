//! `orgtrail export`: a store's events as a CloudTrail archive, in CloudTrail's layout, with
//! orgtrail digest files that `validate-logs --public-key signing.pub` checks.
//!
//! ```text
//! DIR/AWSLogs/[o-ID/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/
//!     ACCOUNT_CloudTrail_REGION_YYYYMMDDTHH00Z_<first sequence number, 16 hex>.json.gz
//! DIR/AWSLogs/[o-ID/]ACCOUNT/CloudTrail-Digest/REGION/YYYY/MM/DD/
//!     ACCOUNT_CloudTrail-Digest_REGION_orgtrail_REGION_YYYYMMDDTHHMMSSZ.json.gz (+ .sig)
//! DIR/.orgtrail-export/state.json, lock, tmp/
//! ```
//!
//! * Log files ([`files`]): `{"Records":[...]}` gzip, each record an event's stored bytes,
//!   byte for byte; one file per account, region and UTC hour of eventTime (more when a
//!   file reaches the size bound, or when events of many hours interleave).
//! * Digests ([`digests`]): CloudTrail's digest JSON with `digestSignatureAlgorithm`
//!   `Ed25519`, each with a `.sig` sidecar holding its hex signature (what S3 keeps in
//!   `x-amz-meta-signature`).
//! * Exactly once ([`state`]): the state file records what each run exported; a rerun
//!   exports only what no run has, and an interrupted run is finished by the next one.
//! * Atomic ([`atomic`]): every file is written aside, flushed, renamed into place and its
//!   directory flushed; the state is committed after the last digest.
//! * To S3 ([`export_s3`], [`target`]): the same objects PUT into a bucket, each digest with
//!   its signature in `x-amz-meta-signature`; the lock, state and scratch files stay in a
//!   local state directory. A rerun of a pending run PUTs the same names and bytes.
//!
//! * Incremental ([`ExportOptions::max_events`]): the collector's archive sink calls
//!   [`export`] every few seconds with a bound on the events of one run; the state file's
//!   committed runs are its durable watermark (the ledger sequence number exported through),
//!   and an interrupted bounded run is finished by the next call with the same files. A call
//!   with nothing new writes nothing. An hour still receiving events gets a new file (and a
//!   new digest, chained) at each run that has events of it: files are never appended to.
//!
//! The events come from an [`EventSource`] (the CLI's adapter over the store), read in
//! sequence order a chunk at a time: memory holds the open files' encoders and one small
//! entry per file written (for the digests), never the events of a whole run.

mod atomic;
mod digests;
mod files;
mod region;
mod state;
mod target;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use orgtrail_core::{AccountId, Timestamp};
use orgtrail_crypto::signing::SigningKey;
use orgtrail_s3::Blocking;

pub use digests::TRAIL_NAME;
pub use state::ExportFilter;

use files::{Group, HOUR_MS, LogWriter};
use region::region_of;
use state::{Run, State};
use target::Target;

/// The directory beside `AWSLogs` that holds the export's own files.
pub const META_DIR: &str = ".orgtrail-export";

/// The bucket digests name when none is given: replace it with `--bucket` before an archive
/// is meant to live in S3, since each digest signs its bucket and key.
pub const DEFAULT_BUCKET: &str = "orgtrail-archive";

/// Events read from the source at a time.
const CHUNK: u64 = 1024;

/// One stored event, as the export reads it.
#[derive(Clone)]
pub struct SourceEvent {
    pub seq: u64,
    pub account: AccountId,
    /// eventTime.
    pub time: Timestamp,
    /// The event's stored bytes.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for SourceEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceEvent")
            .field("seq", &self.seq)
            .field("account", &self.account)
            .field("time", &self.time)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// Where the events come from: a store, read in sequence order.
pub trait EventSource {
    /// The store's identity (its checkpoint origin); an archive holds one store's events.
    fn origin(&self) -> String;
    /// The sequence number of the newest event (events are numbered from 1).
    fn head(&self) -> Result<u64, Box<dyn std::error::Error + Send + Sync>>;
    /// The events `first..=last`, in order.
    fn read(
        &self,
        first: u64,
        last: u64,
    ) -> Result<Vec<SourceEvent>, Box<dyn std::error::Error + Send + Sync>>;
}

/// How to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The bucket the digests name (`digestS3Bucket`, `s3Bucket`).
    pub bucket: String,
    /// The S3 key prefix the directory stands for ("" for the bucket's root).
    pub prefix: String,
    /// An organization id (`o-...`): keys start `AWSLogs/o-ID/ACCOUNT/`, as an organization
    /// trail's do.
    pub org_id: Option<String>,
    pub filter: ExportFilter,
    /// Largest inflated log file. DuckDB's `read_json` reads objects up to 16 MiB by default.
    pub max_file_bytes: u64,
    /// gzip level of the log files, 1 (fastest) to 9 (smallest); 6 by default. The
    /// collector's sink uses 1 by default (`archive.gzip_level`): measured (zlib-rs), level 6
    /// made files 0.62x the size for 1.95x the CPU.
    pub gzip_level: u32,
    /// Most events one call exports past what is already exported (`None`: all up to the
    /// store's head). A bounded call is a complete run: the next call goes on from there.
    pub max_events: Option<u64>,
    /// Called at each step where a crash leaves a distinct state (the crash-point hook of
    /// the collector's sink): `archive-files-written` (log files in place, no digest yet) and
    /// `archive-digests-written` (digests in place, the run not yet committed).
    pub step_hook: Option<fn(&'static str)>,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            bucket: DEFAULT_BUCKET.into(),
            prefix: String::new(),
            org_id: None,
            filter: ExportFilter::default(),
            max_file_bytes: 8 << 20,
            gzip_level: 6,
            max_events: None,
            step_hook: None,
        }
    }
}

/// What an export did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// Events written.
    pub events: u64,
    /// Events in the range skipped because an earlier run exported them.
    pub already: u64,
    pub files: u64,
    pub digests: u64,
    /// Compressed bytes of the log files written.
    pub gz_bytes: u64,
    /// Inflated bytes of the events written.
    pub event_bytes: u64,
    /// The interrupted run this export finished first, if any (its counts are included).
    pub finished_interrupted: bool,
    /// The newest sequence number exported through.
    pub through: u64,
    /// The store's newest sequence number when the export read it (`through` is lower when
    /// `max_events` bounded the run).
    pub head: u64,
}

/// Why an export could not run or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("another export is writing to {path}")]
    Busy { path: PathBuf },
    #[error("export state {path}: {reason}")]
    State { path: PathBuf, reason: String },
    #[error("{dir} {reason}")]
    Refused { dir: PathBuf, reason: String },
    #[error("reading the store: {0}")]
    Source(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("{0}")]
    Invalid(String),
    #[error("writing to S3: {0}")]
    S3(#[source] orgtrail_s3::S3Error),
}

/// Keys and paths of one archive.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub(crate) root: PathBuf,
    pub(crate) bucket: String,
    /// With its trailing `/`, or "".
    key_prefix: String,
    pub(crate) target: Target,
}

impl Layout {
    fn new(root: &Path, opts: &ExportOptions, target: Target) -> Self {
        let prefix = opts.prefix.trim_matches('/');
        let mut key_prefix = String::new();
        if !prefix.is_empty() {
            key_prefix.push_str(prefix);
            key_prefix.push('/');
        }
        key_prefix.push_str("AWSLogs/");
        if let Some(o) = &opts.org_id {
            key_prefix.push_str(o);
            key_prefix.push('/');
        }
        Layout {
            root: root.to_owned(),
            bucket: opts.bucket.clone(),
            key_prefix,
            target,
        }
    }

    /// The file a key names: the key without the prefix, under the root.
    pub(crate) fn path_of(&self, key: &str) -> PathBuf {
        let at = key.find("AWSLogs/").unwrap_or(0);
        self.root.join(&key[at..])
    }

    fn log_key(&self, g: &Group, first_seq: u64) -> String {
        let t = Timestamp(g.hour).to_string();
        let (y, m, d, h) = (&t[0..4], &t[5..7], &t[8..10], &t[11..13]);
        format!(
            "{}{acct}/CloudTrail/{region}/{y}/{m}/{d}/{acct}_CloudTrail_{region}_{y}{m}{d}T{h}00Z_{first_seq:016x}.json.gz",
            self.key_prefix,
            acct = g.account,
            region = g.region,
        )
    }

    fn digest_key(&self, account: &AccountId, region: &str, end: Timestamp) -> String {
        let t = end.to_string();
        let (y, m, d) = (&t[0..4], &t[5..7], &t[8..10]);
        let (h, mi, s) = (&t[11..13], &t[14..16], &t[17..19]);
        format!(
            "{}{account}/CloudTrail-Digest/{region}/{y}/{m}/{d}/{account}_CloudTrail-Digest_{region}_{TRAIL_NAME}_{region}_{y}{m}{d}T{h}{mi}{s}Z.json.gz",
            self.key_prefix,
        )
    }
}

/// Exports the events of `source` into `dir` (see the module docs).
pub fn export(
    dir: &Path,
    source: &dyn EventSource,
    signer: &SigningKey,
    opts: &ExportOptions,
) -> Result<ExportSummary, ExportError> {
    check_options(opts)?;
    std::fs::create_dir_all(dir).map_err(atomic::io(dir, "creating"))?;
    let meta = dir.join(META_DIR);
    if !state::path(&meta).exists() && dir.join("AWSLogs").exists() {
        return Err(ExportError::Refused {
            dir: dir.to_owned(),
            reason: "already holds AWSLogs/ that orgtrail export did not write (no .orgtrail-export/state.json); export into a new directory".into(),
        });
    }
    export_with(dir, &meta, Target::Dir, source, signer, opts)
}

/// Exports the events of `source` into the bucket of `client`, under `opts.prefix` (which
/// with `opts.bucket` must name that bucket): each log file and digest PUT, the lock, state
/// and scratch files kept in the local `state_dir` (see [`target`]'s docs). A fresh
/// `state_dir` refuses a location that already holds `AWSLogs/`.
pub fn export_s3(
    state_dir: &Path,
    client: Arc<Blocking>,
    source: &dyn EventSource,
    signer: &SigningKey,
    opts: &ExportOptions,
) -> Result<ExportSummary, ExportError> {
    check_options(opts)?;
    std::fs::create_dir_all(state_dir).map_err(atomic::io(state_dir, "creating"))?;
    if !state::path(state_dir).exists() {
        let layout = Layout::new(state_dir, opts, Target::Dir);
        let page = client
            .list_page(&layout.key_prefix, false, None, None, 1)
            .map_err(ExportError::S3)?;
        if !page.objects.is_empty() {
            return Err(ExportError::Refused {
                dir: state_dir.to_owned(),
                reason: format!(
                    "holds no export state, and {} already holds {} that it did not record; give the --state-dir of the export that wrote them, or export to a new prefix",
                    client.place(),
                    layout.key_prefix
                ),
            });
        }
    }
    export_with(
        state_dir,
        state_dir,
        Target::S3(client),
        source,
        signer,
        opts,
    )
}

/// The export into `target`, with its own files (lock, state, tmp) in `meta`.
fn export_with(
    dir: &Path,
    meta: &Path,
    target: Target,
    source: &dyn EventSource,
    signer: &SigningKey,
    opts: &ExportOptions,
) -> Result<ExportSummary, ExportError> {
    let refused = |reason: String| ExportError::Refused {
        dir: dir.to_owned(),
        reason,
    };
    std::fs::create_dir_all(meta).map_err(atomic::io(meta, "creating"))?;
    let lock_path = meta.join("lock");
    let lock = File::create(&lock_path).map_err(atomic::io(&lock_path, "creating"))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(ExportError::Busy {
                path: dir.to_owned(),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(atomic::io(&lock_path, "locking")(e)),
    }
    let tmp = meta.join("tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(atomic::io(&tmp, "clearing"))?;
    }
    std::fs::create_dir_all(&tmp).map_err(atomic::io(&tmp, "creating"))?;

    let origin = source.origin();
    let mut st = match state::load(meta)? {
        Some(s) => {
            let mismatch = |what: &str, had: &str, now: &str| {
                refused(format!(
                    "was exported with {what} {had:?}, not {now:?}: digests sign their location, so one archive keeps one; export into a new directory"
                ))
            };
            if s.store != origin {
                return Err(refused(format!(
                    "holds the export of another store ({}), not of {origin}",
                    s.store
                )));
            }
            if s.bucket != opts.bucket {
                return Err(mismatch("--bucket", &s.bucket, &opts.bucket));
            }
            if s.prefix != opts.prefix.trim_matches('/') {
                return Err(mismatch("--prefix", &s.prefix, &opts.prefix));
            }
            if s.org_id != opts.org_id {
                return Err(mismatch(
                    "--org-id",
                    s.org_id.as_deref().unwrap_or("(none)"),
                    opts.org_id.as_deref().unwrap_or("(none)"),
                ));
            }
            s
        }
        None => State {
            version: state::STATE_VERSION,
            store: origin,
            bucket: opts.bucket.clone(),
            prefix: opts.prefix.trim_matches('/').to_owned(),
            org_id: opts.org_id.clone(),
            runs: Vec::new(),
            pending: None,
            chains: BTreeMap::new(),
        },
    };
    let layout = Layout::new(dir, opts, target);
    let ctx = Ctx {
        layout: &layout,
        tmp: &tmp,
        source,
        signer,
        hook: opts.step_hook,
    };
    let mut summary = ExportSummary::default();
    if let Some(pending) = st.pending.clone() {
        summary.finished_interrupted = true;
        run(&ctx, &mut st, pending, &mut summary)?;
        state::save(meta, &st)?;
    }
    let head = source.head().map_err(ExportError::Source)?;
    let done = st.done_through(&opts.filter);
    let through = match opts.max_events {
        Some(max) => head.min(done.saturating_add(max.max(1))),
        None => head,
    };
    summary.head = head;
    if through <= done {
        // Nothing new: no run, no state write (the sink asks every few seconds).
        summary.through = done;
        drop(lock);
        return Ok(summary);
    }
    let this = Run {
        through,
        filter: opts.filter.clone(),
        max_file_bytes: opts.max_file_bytes,
        gzip_level: opts.gzip_level,
    };
    st.pending = Some(this.clone());
    state::save(meta, &st)?;
    run(&ctx, &mut st, this, &mut summary)?;
    state::save(meta, &st)?;
    summary.through = through;
    drop(lock);
    Ok(summary)
}

/// Checks the options before anything is written: the bucket, prefix and organization id are
/// usable in S3 keys, the time range is not empty, the file bound is sane.
pub fn check_options(opts: &ExportOptions) -> Result<(), ExportError> {
    let bucket_ok = (3..=63).contains(&opts.bucket.len())
        && opts
            .bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !bucket_ok {
        return Err(ExportError::Invalid(format!(
            "bucket {:?}: an S3 bucket name is 3 to 63 lower-case letters, digits, '-' and '.'",
            opts.bucket
        )));
    }
    if opts
        .prefix
        .trim_matches('/')
        .split('/')
        .any(|s| s == "." || s == ".." || s == "AWSLogs")
        || opts.prefix.contains("//")
    {
        return Err(ExportError::Invalid(format!(
            "prefix {:?}: segments may not be '.', '..' or AWSLogs",
            opts.prefix
        )));
    }
    if let Some(o) = &opts.org_id {
        let ok = o.len() > 2
            && o.starts_with("o-")
            && o[2..]
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !ok {
            return Err(ExportError::Invalid(format!(
                "organization id {o:?}: expected o- and lower-case letters or digits"
            )));
        }
    }
    if let (Some(s), Some(u)) = (opts.filter.since, opts.filter.until)
        && s >= u
    {
        return Err(ExportError::Invalid(format!(
            "--since {s} is not before --until {u}"
        )));
    }
    if !(1..=9).contains(&opts.gzip_level) {
        return Err(ExportError::Invalid(format!(
            "gzip level {}: 1 to 9",
            opts.gzip_level
        )));
    }
    if opts.max_file_bytes < 1024 {
        return Err(ExportError::Invalid(
            "the largest log file must be at least 1 KiB".into(),
        ));
    }
    Ok(())
}

/// What every run of one export uses.
struct Ctx<'a> {
    layout: &'a Layout,
    tmp: &'a Path,
    source: &'a dyn EventSource,
    signer: &'a SigningKey,
    hook: Option<fn(&'static str)>,
}

/// Exports one run and commits it into `st` (the caller saves `st`).
fn run(
    ctx: &Ctx<'_>,
    st: &mut State,
    this: Run,
    summary: &mut ExportSummary,
) -> Result<(), ExportError> {
    let Ctx {
        layout,
        tmp,
        source,
        signer,
        hook,
    } = *ctx;
    let hook = |step| {
        if let Some(h) = hook {
            h(step);
        }
    };
    let mut writer = LogWriter::new(layout, tmp, this.max_file_bytes, this.gzip_level);
    let mut next = st.done_through(&this.filter) + 1;
    while next <= this.through {
        let last = (next + CHUNK - 1).min(this.through);
        let events = source.read(next, last).map_err(ExportError::Source)?;
        for e in events {
            if !this.filter.matches(&e.account, e.time) {
                continue;
            }
            if st.exported(e.seq, &e.account, e.time) {
                summary.already += 1;
                continue;
            }
            let group = Group {
                account: e.account,
                region: region_of(&e.bytes),
                hour: e.time.millis().div_euclid(HOUR_MS) * HOUR_MS,
            };
            writer.push(group, e.seq, e.time, &e.bytes)?;
            summary.events += 1;
            summary.event_bytes += e.bytes.len() as u64;
        }
        next = last + 1;
    }
    let written = writer.finish()?;
    hook("archive-files-written");
    summary.files += written.len() as u64;
    summary.gz_bytes += written.iter().map(|w| w.gz_bytes).sum::<u64>();
    let mut chains = st.chains.clone();
    summary.digests += digests::write_digests(layout, tmp, signer, &written, &mut chains)?;
    hook("archive-digests-written");
    st.commit(this, chains);
    Ok(())
}
