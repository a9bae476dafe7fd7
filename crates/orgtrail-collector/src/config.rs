//! The collector's configuration (`collector.toml`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use orgtrail_core::AccountId;
use serde::Deserialize;

/// Everything the collector needs to run. Unknown keys are refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    /// Address to listen on; port 0 picks a free port (the bound address is printed).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The ledger's data directory.
    pub data_dir: PathBuf,
    /// Directory with keyring.json and signing.key (`orgtrail keys init`).
    pub keys_dir: PathBuf,
    pub tls: TlsConfig,
    pub organization: OrganizationConfig,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub storage: StorageConfig,
    /// The ops listener (plain HTTP: `/healthz`, `/readyz`, `/metrics`); off when absent.
    #[serde(default)]
    pub ops: Option<orgtrail_ops::OpsConfig>,
    /// Detection rules evaluated on every newly stored event (`[rules]`); off when absent.
    #[serde(default)]
    pub rules: Option<RulesConfig>,
    /// Where alerts go (`[[alerts.file]]`).
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// Insights (`[insights]`): unusual rates of write calls and errors, written as Insight
    /// events (see docs/insights.md); off unless `enabled = true`.
    #[serde(default)]
    pub insights: orgtrail_insights::InsightsConfig,
    /// The continuous archive (`[archive]`): every stored event written once into an archive
    /// in CloudTrail's layout, with signed digests; off when absent.
    #[serde(default)]
    pub archive: Option<ArchiveConfig>,
}

/// `[archive]`: where and how often the collector archives stored events (see the
/// `archive` module).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    /// The archive directory (created if missing): `AWSLogs/...` and `.orgtrail-export/`.
    /// With `[archive.s3]`, only the export's lock, state and scratch files.
    pub dir: PathBuf,
    /// The S3 bucket the digests name (each digest signs its bucket and key). Fixed for an
    /// archive.
    #[serde(default = "archive_defaults::bucket")]
    pub bucket: String,
    /// The S3 key prefix `dir` stands for ("" for the bucket's root). Fixed for an archive.
    #[serde(default)]
    pub prefix: String,
    /// An organization id (`o-...`): keys start `AWSLogs/o-ID/ACCOUNT/`. Fixed for an archive.
    #[serde(default)]
    pub org_id: Option<String>,
    /// How often the sink looks for newly stored events, milliseconds (or a duration).
    #[serde(
        default = "archive_defaults::interval_ms",
        deserialize_with = "orgtrail_core::units::millis"
    )]
    pub interval_ms: u64,
    /// Most events one pass writes; with more behind, the next pass starts after a pause as
    /// long as this one took.
    #[serde(default = "archive_defaults::max_batch_events")]
    pub max_batch_events: u64,
    /// Largest inflated log file, bytes (or a size).
    #[serde(
        default = "archive_defaults::max_file_bytes",
        deserialize_with = "orgtrail_core::units::bytes"
    )]
    pub max_file_bytes: u64,
    /// gzip level of the log files, 1 (least CPU) to 9 (smallest files).
    #[serde(default = "archive_defaults::gzip_level")]
    pub gzip_level: u32,
    /// While catching up, the share of one core's time the passes may take, 1 to 100 (after
    /// a pass of t seconds the next waits t * (100 - p) / p).
    #[serde(default = "archive_defaults::max_busy_percent")]
    pub max_busy_percent: u32,
    /// `[archive.s3]`: PUT the archive into `s3://bucket/prefix` instead of writing it under
    /// `dir` (which then keeps only the state).
    #[serde(default)]
    pub s3: Option<ArchiveS3Config>,
}

/// `[archive.s3]`: how the archive sink reaches its bucket (`archive.bucket`, under
/// `archive.prefix`). Secrets come from the `*_file`s, else the `AWS_*` environment, web
/// identity or the instance metadata service.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveS3Config {
    /// An S3-compatible endpoint; none: AWS.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The bucket's region (the signing region); "us-east-1" when unset.
    #[serde(default)]
    pub region: Option<String>,
    /// Path-style requests; unset: exactly when `endpoint` is set.
    #[serde(default)]
    pub path_style: Option<bool>,
    /// Permit a plain `http://` endpoint (loopback test servers only).
    #[serde(default)]
    pub allow_http: bool,
    /// A PEM CA trusted beside the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// A file holding the access key id.
    #[serde(default)]
    pub access_key_id_file: Option<PathBuf>,
    /// A file holding the secret access key.
    #[serde(default)]
    pub secret_access_key_file: Option<PathBuf>,
    /// A file holding a session token (temporary credentials).
    #[serde(default)]
    pub session_token_file: Option<PathBuf>,
}

impl ArchiveS3Config {
    /// The client's options for `bucket`.
    pub fn options(&self, bucket: &str) -> orgtrail_s3::S3Options {
        let mut o = orgtrail_s3::S3Options::new(bucket);
        o.endpoint = self.endpoint.clone();
        if let Some(r) = &self.region {
            o.region = r.clone();
        }
        o.path_style = self.path_style;
        o.allow_http = self.allow_http;
        o.ca_file = self.ca_file.clone();
        o.access_key_id_file = self.access_key_id_file.clone();
        o.secret_access_key_file = self.secret_access_key_file.clone();
        o.session_token_file = self.session_token_file.clone();
        o
    }
}

mod archive_defaults {
    pub(super) fn bucket() -> String {
        orgtrail_trailfiles::export::DEFAULT_BUCKET.into()
    }
    pub(super) fn interval_ms() -> u64 {
        60_000
    }
    pub(super) fn max_batch_events() -> u64 {
        100_000
    }
    pub(super) fn max_file_bytes() -> u64 {
        8 << 20
    }
    pub(super) fn gzip_level() -> u32 {
        1
    }
    pub(super) fn max_busy_percent() -> u32 {
        50
    }
}

impl ArchiveConfig {
    /// The export's options for one pass.
    pub fn export_options(&self) -> orgtrail_trailfiles::ExportOptions {
        orgtrail_trailfiles::ExportOptions {
            bucket: self.bucket.clone(),
            prefix: self.prefix.clone(),
            org_id: self.org_id.clone(),
            max_file_bytes: self.max_file_bytes,
            max_events: Some(self.max_batch_events),
            gzip_level: self.gzip_level,
            ..orgtrail_trailfiles::ExportOptions::default()
        }
    }

    /// Every problem of these settings.
    pub fn problems(&self, keys_dir: &Path) -> Vec<String> {
        let mut p = Vec::new();
        if let Err(e) = orgtrail_trailfiles::export::check_options(&self.export_options()) {
            p.push(format!("archive: {e}"));
        }
        if !(100..=86_400_000).contains(&self.interval_ms) {
            p.push("archive.interval_ms: 100 ms to 1 day".into());
        }
        if self.max_batch_events == 0 {
            p.push("archive.max_batch_events: at least 1".into());
        }
        if !(1..=100).contains(&self.max_busy_percent) {
            p.push("archive.max_busy_percent: 1 to 100".into());
        }
        if let Some(s3) = &self.s3 {
            for e in s3.options(&self.bucket).problems() {
                p.push(format!("archive.s3: {e}"));
            }
        }
        if !keys_dir.join("signing.key").is_file() {
            p.push(format!(
                "archive: the digests are signed with the store's signing key, and {} has no signing.key (`orgtrail keys init`)",
                keys_dir.display()
            ));
        }
        p
    }
}

/// `[rules]`: which rules the collector evaluates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// A directory of rule files (`.toml`, `.json`; see `orgtrail rules check`).
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Built-in packs: `cis` (CIS AWS Foundations v5.0, monitoring 4.1 to 4.15).
    #[serde(default)]
    pub packs: Vec<String>,
    /// How often `dir` is checked for changed rule files (their names and contents), which
    /// are then reloaded, milliseconds (or a duration: "1s"); 0: only on SIGHUP.
    #[serde(
        default = "default_rules_poll_ms",
        deserialize_with = "orgtrail_core::units::millis"
    )]
    pub poll_ms: u64,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            dir: None,
            packs: Vec::new(),
            poll_ms: default_rules_poll_ms(),
        }
    }
}

fn default_rules_poll_ms() -> u64 {
    1_000
}

/// `[alerts]`: the sinks alerts are delivered to, each by a name rules refer to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// JSON-lines files: one alert a line, appended and synced.
    #[serde(default)]
    pub file: Vec<FileSinkConfig>,
    /// Webhooks: each alert POSTed as JSON, signed with HMAC-SHA-256.
    #[serde(default)]
    pub webhook: Vec<WebhookSinkConfig>,
    /// NATS subjects: one message an alert, its id in the `Nats-Msg-Id` header.
    #[serde(default)]
    pub nats: Vec<NatsSinkConfig>,
}

impl AlertsConfig {
    /// Every sink's name, in configuration order.
    pub fn sink_names(&self) -> Vec<String> {
        self.file
            .iter()
            .map(|f| f.name.clone())
            .chain(self.webhook.iter().map(|w| w.name.clone()))
            .chain(self.nats.iter().map(|n| n.name.clone()))
            .collect()
    }
}

/// `[[alerts.file]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The name rules use in `actions`.
    pub name: String,
    /// The file alerts are appended to (created with mode 0600).
    pub path: PathBuf,
}

/// `[[alerts.webhook]]`: alerts POSTed to an HTTP(S) receiver (see `alerts::webhook` for the
/// request and its signature).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSinkConfig {
    /// The name rules use in `actions`.
    pub name: String,
    /// The receiver: `https://HOST[:PORT]/PATH` (or `http://`, for a receiver on the same
    /// host or a trusted network).
    pub url: String,
    /// A file holding the HMAC-SHA-256 key the requests are signed with (its bytes, a
    /// trailing newline dropped). Missing, empty or unreadable refuses to start.
    pub secret_file: PathBuf,
    /// A PEM file of the CA(s) an `https://` receiver's certificate must chain to (a private
    /// CA); without it, Mozilla's roots (compiled in).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Connecting (TCP and TLS) must finish within this, milliseconds (or a duration: "5s").
    #[serde(
        default = "webhook_defaults::connect_timeout_ms",
        deserialize_with = "orgtrail_core::units::millis"
    )]
    pub connect_timeout_ms: u64,
    /// One request (connecting included) must be answered within this, milliseconds (or a
    /// duration: "10s").
    #[serde(
        default = "webhook_defaults::timeout_ms",
        deserialize_with = "orgtrail_core::units::millis"
    )]
    pub timeout_ms: u64,
    /// Attempts at one alert before it becomes a dead letter for this sink.
    #[serde(default = "webhook_defaults::max_attempts")]
    pub max_attempts: u32,
    /// The first wait after a failed attempt, milliseconds (or a duration: "200ms"); it
    /// doubles (with jitter) up to `backoff_max_ms`.
    #[serde(
        default = "webhook_defaults::backoff_initial_ms",
        deserialize_with = "orgtrail_core::units::millis"
    )]
    pub backoff_initial_ms: u64,
    /// The longest wait between attempts, milliseconds (or a duration: "1m").
    #[serde(
        default = "webhook_defaults::backoff_max_ms",
        deserialize_with = "orgtrail_core::units::millis"
    )]
    pub backoff_max_ms: u64,
}

/// The defaults of `[[alerts.webhook]]`.
pub mod webhook_defaults {
    pub(crate) fn connect_timeout_ms() -> u64 {
        5_000
    }
    pub(crate) fn timeout_ms() -> u64 {
        10_000
    }
    pub(crate) fn max_attempts() -> u32 {
        10
    }
    pub(crate) fn backoff_initial_ms() -> u64 {
        200
    }
    pub(crate) fn backoff_max_ms() -> u64 {
        60_000
    }
}

impl WebhookSinkConfig {
    /// Every problem of this sink's settings, its secret and CA files read.
    pub fn problems(&self) -> Vec<String> {
        let at = format!("alerts.webhook {:?}", self.name);
        let mut p = Vec::new();
        if let Err(e) = crate::alerts::webhook::Target::parse(&self.url) {
            p.push(format!("{at}: url: {e}"));
        }
        if let Err(e) = crate::alerts::webhook::read_secret(&self.secret_file) {
            p.push(format!("{at}: secret_file: {e}"));
        }
        if let Some(ca) = &self.ca_file
            && let Err(e) = orgtrail_crypto::tls::read_roots(ca)
        {
            p.push(format!("{at}: ca_file: {e}"));
        }
        for (key, v, least, most) in [
            ("connect_timeout_ms", self.connect_timeout_ms, 1, 600_000),
            ("timeout_ms", self.timeout_ms, 1, 600_000),
            ("backoff_initial_ms", self.backoff_initial_ms, 1, 3_600_000),
            ("backoff_max_ms", self.backoff_max_ms, 1, 86_400_000),
            ("max_attempts", u64::from(self.max_attempts), 1, 1_000_000),
        ] {
            if !(least..=most).contains(&v) {
                p.push(format!(
                    "{at}: {key} = {v} is out of range: give {least} to {most}"
                ));
            }
        }
        if self.backoff_max_ms < self.backoff_initial_ms {
            p.push(format!(
                "{at}: backoff_max_ms ({}) is smaller than backoff_initial_ms ({})",
                self.backoff_max_ms, self.backoff_initial_ms
            ));
        }
        p
    }
}

/// `[[alerts.nats]]`: a NATS subject alerts are published to. Secrets come from files only.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSinkConfig {
    /// The name rules use in `actions`.
    pub name: String,
    /// The servers, `nats://HOST:PORT` or `tls://HOST:PORT` (TLS required); the client
    /// connects to one of them and moves to another when it fails.
    pub urls: Vec<String>,
    /// The subject each alert is published to (no wildcards).
    pub subject: String,
    /// A file holding the token the server requires (`authorization { token }`).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// A user name, with `password_file`.
    #[serde(default)]
    pub user: Option<String>,
    /// A file holding the password of `user`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// A file holding an nkey seed (`SU...`): the client signs the server's challenge with it.
    #[serde(default)]
    pub nkey_seed_file: Option<PathBuf>,
    /// A credentials file (`.creds`: a user JWT and its nkey seed), as `nsc` writes it.
    #[serde(default)]
    pub creds_file: Option<PathBuf>,
    /// The CA certificates (PEM) the server's certificate must chain to; TLS is then
    /// required. Without it a `tls://` URL is checked against Mozilla's roots (compiled in).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM) for mutual TLS, with `key_file`; TLS is then required.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// The key of `cert_file` (PEM).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Connecting (TCP, TLS, the NATS handshake) must finish within this, milliseconds (or
    /// a duration: "5s").
    #[serde(
        default = "default_nats_connect_ms",
        deserialize_with = "orgtrail_core::units::millis"
    )]
    pub connect_timeout_ms: u64,
    /// A publish must be taken within this (flushed to the server, or acknowledged by
    /// JetStream), milliseconds (or a duration: "10s"); else it is tried again later.
    #[serde(
        default = "default_nats_publish_ms",
        deserialize_with = "orgtrail_core::units::millis"
    )]
    pub publish_timeout_ms: u64,
    /// Publish through JetStream: an alert counts as taken only once a stream stored it and
    /// acknowledged it (a stream must capture `subject`). Otherwise once the server has it.
    #[serde(default)]
    pub jetstream: bool,
}

fn default_nats_connect_ms() -> u64 {
    5_000
}

fn default_nats_publish_ms() -> u64 {
    10_000
}

impl NatsSinkConfig {
    /// The secret and certificate files it names, by key.
    pub fn files(&self) -> Vec<(&'static str, &Path)> {
        [
            ("token_file", &self.token_file),
            ("password_file", &self.password_file),
            ("nkey_seed_file", &self.nkey_seed_file),
            ("creds_file", &self.creds_file),
            ("ca_file", &self.ca_file),
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
        ]
        .into_iter()
        .filter_map(|(k, p)| p.as_deref().map(|p| (k, p)))
        .collect()
    }

    fn paths_mut(&mut self) -> [&mut Option<PathBuf>; 7] {
        [
            &mut self.token_file,
            &mut self.password_file,
            &mut self.nkey_seed_file,
            &mut self.creds_file,
            &mut self.ca_file,
            &mut self.cert_file,
            &mut self.key_file,
        ]
    }
}

/// How the ledger uses its disk.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Free space kept on the data directory's filesystem, e.g. "1 GiB". Below it the collector
    /// refuses batches with RESOURCE_EXHAUSTED ("disk full: N bytes free, reserve M"), reports
    /// not ready, keeps answering queries, and resumes by itself when space returns. The store
    /// never meets a full disk this way. "0 B" turns the reserve off (not recommended).
    pub reserve: bytesize::ByteSize,
    /// Events whose index is kept in memory before it is written out as an index run file.
    /// The index of older events is on disk, so memory does not grow with the history: about
    /// 250 bytes per event of this (twice, while one is written out).
    pub index_memtable_events: u64,
    /// Memory for the Bloom filters of index run files (10 bits per event), e.g. "4 MiB". The
    /// newest runs keep theirs in memory while they fit; a new event is checked against each
    /// other run's filter with one read of 64 bytes from the file (the page cache serves it).
    /// Without a bound they would grow with the history.
    pub index_filter_memory: bytesize::ByteSize,
    /// The size at which a part of a counter rollup (a day's or 32 days' counts, which grow
    /// with the distinct groups of their time) is full, e.g. "1 MiB": the writer then starts a
    /// new part instead of rewriting the whole rollup, so that what a merge of the counters
    /// holds does not grow with the history.
    pub count_rollup_part: bytesize::ByteSize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            reserve: bytesize::ByteSize::b(orgtrail_store::DEFAULT_RESERVE),
            index_memtable_events: orgtrail_store::LedgerConfig::default().index_run_events,
            index_filter_memory: bytesize::ByteSize::b(
                orgtrail_store::LedgerConfig::default().index_filter_bytes,
            ),
            count_rollup_part: bytesize::ByteSize::b(
                orgtrail_store::LedgerConfig::default().count_rollup_part_bytes as u64,
            ),
        }
    }
}

/// The collector's certificate and the CA its clients must present certificates from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Server certificate (`orgtrail certs issue --role server`).
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// The organization CA (`ca.pem`): client certificates must chain to it.
    pub client_ca: PathBuf,
}

/// Which accounts may ship events.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrganizationConfig {
    /// Organization id, e.g. o-example.
    pub id: String,
    /// Accounts allowed to ship; empty with `allow_any_account = true` admits any account
    /// with a valid certificate.
    /// Each exactly 12 digits: a typo is refused at load, with its line.
    #[serde(default)]
    pub accounts: Vec<AccountId>,
    /// Admit any account whose agent certificate the organization CA signed.
    #[serde(default)]
    pub allow_any_account: bool,
    /// A file of revoked certificates, one a line: a serial number in hex (colons allowed) or
    /// `sha256:` and the 64-hex-digit fingerprint; `#` comments, blank lines ignored. A
    /// missing or invalid file refuses to start; it is re-read within a second of a change,
    /// and a change that cannot be read or parsed keeps the last good list (logged, counted).
    /// See `revocation` for the exact format.
    #[serde(default)]
    pub revoked: Option<PathBuf>,
}

/// Bounds on what a client may send.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest gRPC message (one batch), bytes (or a size: "16MiB"), after decompression.
    #[serde(deserialize_with = "orgtrail_core::units::bytes_usize")]
    pub max_message_bytes: usize,
    /// Most events in one batch.
    pub max_batch_events: usize,
    /// Largest event, bytes or a size (CloudTrail's limit is 256 KiB).
    #[serde(deserialize_with = "orgtrail_core::units::bytes_usize")]
    pub max_event_bytes: usize,
    /// Batches of one stream being stored at once.
    pub max_in_flight: usize,
    /// Batches being stored at once across all streams; a stream over it waits (its agent
    /// sees slower acknowledgements, nothing is refused). Also bounds the queue of batches
    /// waiting for a CPU worker.
    pub max_in_flight_total: usize,
    /// Most events a `Stats` call decrypts for what the counters kept at append time cannot
    /// serve (the edges of a range not on whole hours, filters on other attributes); past it
    /// that part counts only the newest ones and the answer says the limit was hit.
    pub max_stats_events: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 16 << 20,
            max_batch_events: 10_000,
            max_event_bytes: orgtrail_core::MAX_EVENT_BYTES,
            max_in_flight: 32,
            max_in_flight_total: 256,
            max_stats_events: 1_000_000,
        }
    }
}

/// A limit's name, how to read it, and its accepted range.
type LimitRange = (&'static str, fn(&Limits) -> usize, usize, usize);

/// The accepted range of each limit.
const LIMIT_RANGES: [LimitRange; 6] = [
    (
        "max_message_bytes",
        |l| l.max_message_bytes,
        1 << 10,
        1 << 30,
    ),
    ("max_batch_events", |l| l.max_batch_events, 1, 1_000_000),
    ("max_event_bytes", |l| l.max_event_bytes, 1 << 10, 16 << 20),
    ("max_in_flight", |l| l.max_in_flight, 1, 4096),
    ("max_in_flight_total", |l| l.max_in_flight_total, 1, 65_536),
    ("max_stats_events", |l| l.max_stats_events, 1, 1_000_000_000),
];

impl Limits {
    /// Every problem with these limits: each within its range, and consistent.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        for (name, get, least, most) in LIMIT_RANGES {
            let v = get(self);
            if !(least..=most).contains(&v) {
                p.push(format!(
                    "limits.{name} = {v} is out of range: give {least} to {most}"
                ));
            }
        }
        if self.max_message_bytes < self.max_event_bytes {
            p.push(format!(
                "limits.max_message_bytes ({}) is smaller than limits.max_event_bytes ({}): no batch could hold a largest event",
                self.max_message_bytes, self.max_event_bytes
            ));
        }
        if self.max_in_flight_total < self.max_in_flight {
            p.push(format!(
                "limits.max_in_flight_total ({}) is smaller than limits.max_in_flight ({})",
                self.max_in_flight_total, self.max_in_flight
            ));
        }
        p
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 4317))
}

/// Why a configuration was refused: every problem, at once.
#[derive(Debug, thiserror::Error)]
#[error("invalid collector configuration {path}:\n  - {}", problems.join("\n  - "))]
pub struct ConfigError {
    pub path: String,
    pub problems: Vec<String>,
}

impl CollectorConfig {
    /// Reads and checks a configuration file. Relative paths are relative to the file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let fail = |p: String| ConfigError {
            path: path.display().to_string(),
            problems: vec![p],
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
        // `${VAR}` and `${VAR:-default}` from the environment, every unset one named.
        let text = orgtrail_core::interpolate::interpolate(&text, |v| std::env::var(v).ok())
            .map_err(|problems| ConfigError {
                path: path.display().to_string(),
                problems,
            })?;
        // Every value serde refuses, each with its line, not only the first.
        let mut cfg: CollectorConfig =
            orgtrail_core::config_toml::from_toml_all(&text).map_err(|problems| ConfigError {
                path: path.display().to_string(),
                problems,
            })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut cfg.data_dir,
            &mut cfg.keys_dir,
            &mut cfg.tls.cert,
            &mut cfg.tls.key,
            &mut cfg.tls.client_ca,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if let Some(r) = cfg.organization.revoked.as_mut()
            && r.is_relative()
        {
            *r = base.join(&*r);
        }
        if let Some(d) = cfg.rules.as_mut().and_then(|r| r.dir.as_mut())
            && d.is_relative()
        {
            *d = base.join(&*d);
        }
        if let Some(a) = cfg.archive.as_mut() {
            if a.dir.is_relative() {
                a.dir = base.join(&a.dir);
            }
            if let Some(s3) = a.s3.as_mut() {
                for p in [
                    &mut s3.ca_file,
                    &mut s3.access_key_id_file,
                    &mut s3.secret_access_key_file,
                    &mut s3.session_token_file,
                ]
                .into_iter()
                .flatten()
                {
                    if p.is_relative() {
                        *p = base.join(&*p);
                    }
                }
            }
        }
        for f in &mut cfg.alerts.file {
            if f.path.is_relative() {
                f.path = base.join(&f.path);
            }
        }
        for w in &mut cfg.alerts.webhook {
            for p in std::iter::once(&mut w.secret_file).chain(w.ca_file.as_mut()) {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        }
        for n in &mut cfg.alerts.nats {
            for p in n.paths_mut().into_iter().flatten() {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        }
        let problems = cfg.problems();
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError {
                path: path.display().to_string(),
                problems,
            })
        }
    }

    /// Every problem with this configuration.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        for (name, f) in [
            ("tls.cert", &self.tls.cert),
            ("tls.key", &self.tls.key),
            ("tls.client_ca", &self.tls.client_ca),
        ] {
            if !f.is_file() {
                p.push(format!("{name}: {} does not exist", f.display()));
            }
        }
        if !self.keys_dir.join("keyring.json").is_file() {
            p.push(format!(
                "keys_dir: {} has no keyring.json (run `orgtrail keys init --out {}`)",
                self.keys_dir.display(),
                self.keys_dir.display()
            ));
        }
        if self.organization.accounts.is_empty() && !self.organization.allow_any_account {
            p.push("organization: list `accounts`, or set `allow_any_account = true`".into());
        }
        p.extend(self.limits.problems());
        p.extend(self.alert_problems());
        if let Some(a) = &self.archive {
            p.extend(a.problems(&self.keys_dir));
        }
        if let Err(e) = self.insights.validate() {
            // Each problem names its key (`insights.min_count: ...`).
            p.extend(e.problems);
        }
        p
    }

    /// Problems of `[rules]` and `[alerts]`: every rule file loads, every sink named once,
    /// every rule's actions name configured sinks.
    fn alert_problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let names = self.alerts.sink_names();
        let mut seen = std::collections::HashSet::new();
        for n in &names {
            if n.is_empty()
                || n.len() > 64
                || !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
            {
                p.push(format!(
                    "alerts: sink name {n:?}: use 1 to 64 letters, digits, '-' or '_'"
                ));
            }
            if !seen.insert(n) {
                p.push(format!("alerts: two sinks are named {n:?}"));
            }
        }
        for w in &self.alerts.webhook {
            p.extend(w.problems());
        }
        for n in &self.alerts.nats {
            p.extend(
                crate::alerts::nats_sink::problems(n)
                    .into_iter()
                    .map(|m| format!("alerts.nats[{}]: {m}", n.name)),
            );
        }
        let Some(rules) = &self.rules else {
            return p;
        };
        if rules.dir.is_none() && rules.packs.is_empty() {
            p.push(
                "rules: give `dir` (a directory of rule files) or `packs` (e.g. [\"cis\"])".into(),
            );
        }
        if names.is_empty() {
            p.push("rules: alerts need somewhere to go: add an [[alerts.file]] or [[alerts.webhook]] sink".into());
        }
        match crate::alerts::load_rules(rules) {
            Ok(set) => {
                for r in &set.rules {
                    for a in r.actions.iter().flatten() {
                        if !names.contains(a) {
                            p.push(format!(
                                "rules: rule {} ({}) sends to {a:?}, which no [alerts] sink is named",
                                r.id,
                                r.file.display()
                            ));
                        }
                    }
                }
            }
            Err(problems) => p.extend(problems.iter().map(|e| format!("rules: {e}"))),
        }
        p
    }
}

/// A commented example configuration.
pub const EXAMPLE: &str = r#"# orgtrail collector configuration.
# Relative paths are relative to this file.

# Address to listen on (gRPC over mutual TLS). Port 0 picks a free port.
listen = "0.0.0.0:4317"

# Where the ledger lives, and the keys from `orgtrail keys init`.
data_dir = "data"
keys_dir = "keys"

[tls]
# `orgtrail certs issue --ca ca --role server --dns collector.example --out collector`
cert = "collector.pem"
key = "collector.key"
# The organization CA: every client certificate must chain to it.
client_ca = "ca/ca.pem"

[organization]
id = "o-example"
# Accounts allowed to ship events...
accounts = ["111122223333", "444455556666"]
# ...or any account with a certificate from the organization CA:
# allow_any_account = true
# Revoked certificates, one a line: a serial in hex (3f1c..., or 3F:1C:...) or
# sha256:FINGERPRINT (64 hex digits); # comments. Must exist and be valid to start; re-read
# within a second of a change (a bad change keeps the last good list and is logged).
# revoked = "revoked.txt"

[storage]
# Free space kept on the data directory's filesystem. Below it batches are refused with
# RESOURCE_EXHAUSTED (agents keep them spooled and retry), /readyz reports not ready, queries
# go on, and ingest resumes by itself when space returns.
reserve = "128 MiB"
# The newest events' index is kept in memory (about 250 bytes an event, twice while one part is
# written out); older events' index is in run files on disk, so memory does not grow with the
# history.
index_memtable_events = 131072
# Memory for the Bloom filters of older index runs (10 bits an event): the newest runs keep
# theirs in memory while they fit, the others are read 64 bytes at a time from the page cache.
index_filter_memory = "4 MiB"
# A counter rollup (a day's or 32 days' counts) is kept in parts of about this size: a full
# part is never rewritten, so merging the counters holds at most about this much of one.
count_rollup_part = "1 MiB"

# The ops listener, plain HTTP (off when absent): GET /healthz (alive), /readyz (200, or 503
# with the reason: disk below the reserve, store recovering, shutting down) and /metrics
# (Prometheus text). No TLS: keep it on loopback or an address only the scraper reaches.
# [ops]
# listen = "127.0.0.1:9464"

# Insights (off unless enabled): unusual rates of write calls and of errors per account,
# region, eventSource and eventName, stored as CloudTrail Insight events (docs/insights.md).
# The continuous archive (off when absent): every stored event written once, in CloudTrail's
# own layout (AWSLogs/ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/...json.gz) with digests signed by
# keys_dir/signing.key, for Athena, DuckDB and `orgtrail validate-logs` (docs/archive-sql.md).
# [archive]
# dir = "archive"
# bucket = "orgtrail-archive"  # the bucket the digests name, if the archive is copied to S3
# interval_ms = "60s"          # how often newly stored events are written
# max_batch_events = 100000    # most events a pass writes

# [insights]
# enabled = true
# min_history_ms = "1h"        # a key's baseline must cover this before it can fire
# sensitivity = 1e-7           # smaller: fewer Insights
# min_count = 5                # calls a minute needs to start one, whatever the baseline

[limits]
max_message_bytes = 16777216   # one batch, after decompression
max_batch_events = 10000
max_event_bytes = 262144       # CloudTrail's limit
max_in_flight = 32             # batches of one stream stored at once
max_in_flight_total = 256      # batches stored at once across all streams
max_stats_events = 1000000     # most events one Stats call decrypts (beyond its counters)
"#;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_example_configuration_parses() {
        let cfg: CollectorConfig = toml::from_str(EXAMPLE).unwrap();
        assert!(!cfg.organization.id.is_empty());
        assert_eq!(cfg.storage.reserve.as_u64(), 128 << 20);
    }

    #[test]
    fn the_reserve_reads_human_sizes() {
        let base = "data_dir = \"d\"\nkeys_dir = \"k\"\n[tls]\ncert = \"c\"\nkey = \"k\"\nclient_ca = \"a\"\n[organization]\nid = \"o\"\n";
        let cfg: CollectorConfig =
            toml::from_str(&format!("{base}[storage]\nreserve = \"2 GiB\"\n")).unwrap();
        assert_eq!(cfg.storage.reserve.as_u64(), 2 << 30);
        let cfg: CollectorConfig = toml::from_str(base).unwrap();
        assert_eq!(
            cfg.storage.reserve.as_u64(),
            orgtrail_store::DEFAULT_RESERVE
        );
        assert!(
            toml::from_str::<CollectorConfig>(&format!("{base}[storage]\nreserve = \"lots\"\n"))
                .is_err()
        );
    }

    #[test]
    fn the_archive_is_off_by_default_and_every_problem_is_reported() {
        let base = "data_dir = \"d\"\nkeys_dir = \"k\"\n[tls]\ncert = \"c\"\nkey = \"k\"\nclient_ca = \"a\"\n[organization]\nid = \"o\"\n";
        let cfg: CollectorConfig = toml::from_str(base).unwrap();
        assert!(cfg.archive.is_none());
        let cfg: CollectorConfig = toml::from_str(&format!(
            "{base}[archive]\ndir = \"a\"\ninterval_ms = \"5s\"\nmax_file_bytes = \"1 MiB\"\n"
        ))
        .unwrap();
        let a = cfg.archive.unwrap();
        assert_eq!((a.interval_ms, a.max_file_bytes), (5_000, 1 << 20));
        assert_eq!(a.max_batch_events, 100_000);
        let cfg: CollectorConfig = toml::from_str(&format!(
            "{base}[archive]\ndir = \"a\"\nbucket = \"No_Such\"\ninterval_ms = 1\nmax_batch_events = 0\n"
        ))
        .unwrap();
        let problems = cfg.problems();
        for what in [
            "archive: bucket",
            "archive.interval_ms",
            "archive.max_batch_events",
            "no signing.key",
        ] {
            assert!(
                problems.iter().any(|p| p.contains(what)),
                "{what} in {problems:?}"
            );
        }
    }

    #[test]
    fn insights_are_off_by_default_and_every_problem_is_reported() {
        let base = "data_dir = \"d\"\nkeys_dir = \"k\"\n[tls]\ncert = \"c\"\nkey = \"k\"\nclient_ca = \"a\"\n[organization]\nid = \"o\"\n";
        let cfg: CollectorConfig = toml::from_str(base).unwrap();
        assert!(!cfg.insights.enabled);
        let cfg: CollectorConfig = toml::from_str(&format!(
            "{base}[insights]\nenabled = true\nmin_history_ms = \"30m\"\n"
        ))
        .unwrap();
        assert!(cfg.insights.enabled);
        assert_eq!(cfg.insights.min_history_ms, 30 * 60_000);
        assert!(
            toml::from_str::<CollectorConfig>(&format!("{base}[insights]\nenable = true\n"))
                .is_err(),
            "an unknown key is refused"
        );
        let cfg: CollectorConfig = toml::from_str(&format!(
            "{base}[insights]\nenabled = true\nmin_count = 0\nlateness_minutes = 9\n"
        ))
        .unwrap();
        let problems = cfg.problems();
        for key in ["insights.min_count", "insights.lateness_minutes"] {
            assert!(
                problems.iter().any(|p| p.starts_with(key)),
                "{key} in {problems:?}"
            );
        }
    }
}
