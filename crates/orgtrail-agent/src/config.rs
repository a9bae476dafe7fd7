//! The agent's configuration (`agent.toml`).

use std::path::{Path, PathBuf};

use orgtrail_core::AccountId;
use serde::Deserialize;

/// Everything an agent needs. Unknown keys are refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The account this agent ships for. Its certificate names it; when given here it must
    /// be the same (a mismatch is refused at start), when absent the certificate's is used.
    /// After [`AgentConfig::load`] it always holds the certificate's account.
    /// Exactly 12 digits: a typo is refused at load, with its line.
    #[serde(default)]
    pub account: Option<AccountId>,
    /// The collector, e.g. https://collector.example:4317.
    pub collector: String,
    /// The name the collector's certificate is checked against (default: the URL's host).
    #[serde(default)]
    pub server_name: Option<String>,
    pub tls: AgentTls,
    /// The durable spool directory.
    pub spool_dir: PathBuf,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub connection: ConnectionConfig,
    /// Largest spool, bytes (or a size: "10GiB"). When full, the source pauses; nothing accepted is dropped.
    #[serde(
        default = "default_spool_max",
        deserialize_with = "orgtrail_core::units::bytes"
    )]
    pub spool_max_bytes: u64,
    /// The spool's data key (32 bytes, mode 0600, created on first run). Default
    /// `SPOOL_DIR/spool.key`; put it on another volume so that a copy of the spool's volume
    /// alone cannot be read.
    #[serde(default)]
    pub spool_key_file: PathBuf,
    /// Free space kept on the spool's file system, bytes or a size (at least 1 MiB): below it the
    /// sources pause (and readiness fails) until space returns.
    #[serde(
        default = "default_spool_min_free",
        deserialize_with = "orgtrail_core::units::bytes"
    )]
    pub spool_min_free_bytes: u64,
    /// One source (`[source]`), or several (`[[sources]]`); at least one in all.
    #[serde(default)]
    pub source: Option<SourceConfig>,
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// The trail's event selectors and region filter (`[selectors]`); none: ship everything.
    #[serde(default)]
    pub selectors: Option<crate::selectors::SelectorConfig>,
    /// The ops listener (plain HTTP: `/healthz`, `/readyz`, `/metrics`); off when absent.
    #[serde(default)]
    pub ops: Option<orgtrail_ops::OpsConfig>,
    /// The former name of `[ops]` (deprecated, still accepted): after [`AgentConfig::load`]
    /// its address is in `ops`.
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
}

/// `[metrics] listen`: the deprecated name of `[ops] listen`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    pub listen: std::net::SocketAddr,
}

/// What a deprecated `[metrics]` table says when the agent starts.
pub const METRICS_DEPRECATED: &str = "[metrics] listen is deprecated: rename the table to [ops] (same address; it also serves /healthz and /readyz)";

/// The agent's certificate and the organization CA.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// How events are grouped on the wire.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    pub max_events: usize,
    /// Largest batch on the wire, bytes (or a size: "4MiB").
    #[serde(deserialize_with = "orgtrail_core::units::bytes_usize")]
    pub max_bytes: usize,
    /// How long a partial batch waits for more events, milliseconds (or
    /// a duration: "5s").
    #[serde(deserialize_with = "orgtrail_core::units::millis")]
    pub linger_ms: u64,
    /// Batches sent and not yet acknowledged.
    pub max_in_flight: usize,
    /// Wire compression: `zstd` (default; CloudTrail JSON shrinks about 5x), `gzip`, or
    /// `none` (saves the agent's CPU when the collector is on the same host or LAN).
    pub compression: Compression,
}

/// Wire compression of batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    Zstd,
    Gzip,
    None,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_events: 1000,
            max_bytes: 4 << 20,
            linger_ms: 200,
            max_in_flight: 4,
            compression: Compression::Zstd,
        }
    }
}

/// Reconnection: exponential backoff with jitter, back to `initial_ms` once a batch is
/// acknowledged.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// The first wait after a failure, milliseconds (or
    /// a duration: "5s").
    #[serde(deserialize_with = "orgtrail_core::units::millis")]
    pub initial_ms: u64,
    /// The longest wait, milliseconds (or
    /// a duration: "5s").
    #[serde(deserialize_with = "orgtrail_core::units::millis")]
    pub max_ms: u64,
}

/// How a dead or silent connection to the collector is noticed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionConfig {
    /// Connecting (TCP, TLS handshake and HTTP/2 setup) and opening the stream must finish
    /// within this, milliseconds (or
    /// a duration: "5s").
    #[serde(deserialize_with = "orgtrail_core::units::millis")]
    pub connect_timeout_ms: u64,
    /// An HTTP/2 PING is sent this often, also while idle, milliseconds (or
    /// a duration: "5s").
    #[serde(deserialize_with = "orgtrail_core::units::millis")]
    pub keepalive_interval_ms: u64,
    /// A PING not answered within this closes the connection, milliseconds (or
    /// a duration: "5s").
    #[serde(deserialize_with = "orgtrail_core::units::millis")]
    pub keepalive_timeout_ms: u64,
    /// No acknowledgement within this while batches wait (counted from the later of the
    /// oldest batch's sending and the last acknowledgement) tears the stream down (logged at
    /// warn); the agent reconnects and sends every unacknowledged batch again (the collector
    /// drops duplicates), milliseconds (or
    /// a duration: "5s").
    #[serde(deserialize_with = "orgtrail_core::units::millis")]
    pub ack_timeout_ms: u64,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            connect_timeout_ms: 10_000,
            keepalive_interval_ms: 10_000,
            keepalive_timeout_ms: 10_000,
            ack_timeout_ms: 60_000,
        }
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_ms: 100,
            max_ms: 30_000,
        }
    }
}

/// Where events come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "snake_case")]
pub enum SourceConfig {
    /// JSON lines from a file, or standard input with `path = "-"`. With `follow`, the file is
    /// followed as it grows, across rotation and truncation.
    Jsonl {
        path: PathBuf,
        #[serde(default)]
        follow: bool,
        #[serde(default)]
        name: Option<String>,
        /// How often a followed file is checked for more, milliseconds (or a duration: "1s").
        #[serde(
            default = "default_poll_ms",
            deserialize_with = "orgtrail_core::units::millis"
        )]
        poll_ms: u64,
    },
    /// A directory tree in CloudTrail's delivered layout (AWSLogs/...); every new log file's
    /// Records are shipped once.
    CloudtrailDir {
        path: PathBuf,
        #[serde(default)]
        name: Option<String>,
        /// How often the tree is scanned for new files, milliseconds (or a duration: "1s").
        #[serde(
            default = "default_poll_ms",
            deserialize_with = "orgtrail_core::units::millis"
        )]
        poll_ms: u64,
        /// CloudTrail's public keys (the JSON `aws cloudtrail list-public-keys` prints): when
        /// set, every digest file is checked as it arrives (signature from its `.sig`
        /// sidecar, chain, and the hash of each log file shipped). Unset: no checking.
        #[serde(default)]
        digest_public_keys_file: Option<PathBuf>,
        /// How long a digest waits for a log file it lists that is there but not read yet
        /// (still being written, or failing), milliseconds (or a duration: "1h"); then the
        /// file is reported missing.
        #[serde(
            default = "default_digest_wait_ms",
            deserialize_with = "orgtrail_core::units::millis"
        )]
        digest_wait_ms: u64,
        /// Days of digest-check state kept: failures counted in
        /// `orgtrail_agent_digest_failures`, and shipped log files waiting for a digest (the
        /// unlisted check).
        #[serde(default = "default_digest_keep_days")]
        digest_keep_days: u32,
    },
    /// An existing trail's S3 bucket (any S3-compatible endpoint): every log file in the
    /// lookback window is shipped once, late and out-of-order files included.
    S3(Box<S3SourceConfig>),
    /// A local HTTP endpoint taking CloudTrail Lake's PutAuditEvents requests.
    Http {
        #[serde(default = "default_http_listen")]
        listen: std::net::SocketAddr,
        #[serde(default)]
        name: Option<String>,
    },
}

impl SourceConfig {
    /// The source's name in metrics and logs: its `name`, else its type and path or address.
    pub fn name(&self) -> String {
        match self {
            SourceConfig::Jsonl { name: Some(n), .. }
            | SourceConfig::CloudtrailDir { name: Some(n), .. }
            | SourceConfig::Http { name: Some(n), .. } => n.clone(),
            SourceConfig::S3(s) => match &s.name {
                Some(n) => n.clone(),
                None if s.prefix.is_empty() => format!("s3:{}", s.bucket),
                None => format!("s3:{}/{}", s.bucket, s.prefix),
            },
            SourceConfig::Jsonl { path, .. } => format!("jsonl:{}", path.display()),
            SourceConfig::CloudtrailDir { path, .. } => {
                format!("cloudtrail_dir:{}", path.display())
            }
            SourceConfig::Http { listen, .. } => format!("http:{listen}"),
        }
    }
}

fn default_poll_ms() -> u64 {
    1000
}

/// The `s3` source: an existing trail's bucket.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3SourceConfig {
    #[serde(default)]
    pub name: Option<String>,
    /// The trail's bucket.
    pub bucket: String,
    /// The trail's key prefix, before `AWSLogs/` ("" for none).
    #[serde(default)]
    pub prefix: String,
    /// The organization trail's id (`o-...`): only `AWSLogs/o-.../` is read. Unset: both an
    /// account trail's `AWSLogs/ACCOUNT/` and any organization's are read.
    #[serde(default)]
    pub organization_id: Option<String>,
    /// Accounts to read (12 digits each); empty: every account found in the bucket.
    #[serde(default)]
    pub accounts: Vec<String>,
    /// Regions to read; empty: every region found.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Read CloudTrail Insights files (`CloudTrail-Insight/`) too.
    #[serde(default = "default_true")]
    pub insights: bool,
    /// An S3-compatible endpoint (`https://...`); unset: AWS.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The bucket's region (signing region).
    #[serde(default = "default_s3_region")]
    pub region: String,
    /// Path-style requests; unset: path style exactly when `endpoint` is set.
    #[serde(default)]
    pub path_style: Option<bool>,
    /// Permits an `http://` endpoint (a loopback test server).
    #[serde(default)]
    pub allow_http: bool,
    /// A PEM CA bundle trusted beside the system's (an on-premises store's private CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// A file holding the access key id (with `secret_access_key_file`). Unset: the `AWS_*`
    /// environment, web identity, or the instance metadata service.
    #[serde(default)]
    pub access_key_id_file: Option<PathBuf>,
    /// A file holding the secret access key.
    #[serde(default)]
    pub secret_access_key_file: Option<PathBuf>,
    /// A file holding a session token (temporary credentials).
    #[serde(default)]
    pub session_token_file: Option<PathBuf>,
    /// CloudTrail's public keys (the JSON `aws cloudtrail list-public-keys` prints): when set,
    /// every digest file is checked as it arrives (signature from `x-amz-meta-signature`,
    /// chain, and the hash of each log file shipped). Unset: no checking.
    #[serde(default)]
    pub digest_public_keys_file: Option<PathBuf>,
    /// How long a digest waits for a log object it lists that is there but not read yet
    /// (failing transfers), milliseconds (or a duration: "1h"); then the object is reported
    /// missing.
    #[serde(
        default = "default_digest_wait_ms",
        deserialize_with = "orgtrail_core::units::millis"
    )]
    pub digest_wait_ms: u64,
    /// Days before today (UTC) listed again at every pass, so a late file is still read; the
    /// processed set keeps this window (yesterday is always listed).
    #[serde(default = "default_lookback_days")]
    pub lookback_days: u32,
    /// How often the lookback window is listed, milliseconds (or a duration: "1m").
    #[serde(
        default = "default_s3_poll_ms",
        deserialize_with = "orgtrail_core::units::millis"
    )]
    pub poll_ms: u64,
    /// Keys per listing request (1 to 1000).
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// A whole request, body included, milliseconds (or a duration).
    #[serde(
        default = "default_s3_request_timeout_ms",
        deserialize_with = "orgtrail_core::units::millis"
    )]
    pub request_timeout_ms: u64,
    /// Retries of a request that failed for a transient reason (connection, 5xx).
    #[serde(default = "default_s3_max_retries")]
    pub max_retries: usize,
    /// How long those retries may take in all, milliseconds (or a duration).
    #[serde(
        default = "default_s3_retry_timeout_ms",
        deserialize_with = "orgtrail_core::units::millis"
    )]
    pub retry_timeout_ms: u64,
}

fn default_true() -> bool {
    true
}
fn default_s3_region() -> String {
    "us-east-1".into()
}
fn default_lookback_days() -> u32 {
    2
}

fn default_digest_wait_ms() -> u64 {
    3_600_000
}

fn default_digest_keep_days() -> u32 {
    7
}
fn default_s3_poll_ms() -> u64 {
    60_000
}
fn default_max_keys() -> usize {
    1000
}
fn default_s3_request_timeout_ms() -> u64 {
    120_000
}
fn default_s3_max_retries() -> usize {
    10
}
fn default_s3_retry_timeout_ms() -> u64 {
    180_000
}

impl S3SourceConfig {
    /// The client's options.
    pub fn options(&self) -> orgtrail_s3::S3Options {
        let mut o = orgtrail_s3::S3Options::new(&self.bucket);
        o.endpoint = self.endpoint.clone();
        o.region = self.region.clone();
        o.path_style = self.path_style;
        o.allow_http = self.allow_http;
        o.ca_file = self.ca_file.clone();
        o.access_key_id_file = self.access_key_id_file.clone();
        o.secret_access_key_file = self.secret_access_key_file.clone();
        o.session_token_file = self.session_token_file.clone();
        o.request_timeout = std::time::Duration::from_millis(self.request_timeout_ms);
        o.max_retries = self.max_retries;
        o.retry_timeout = std::time::Duration::from_millis(self.retry_timeout_ms);
        o
    }

    /// Every problem with this source's settings.
    fn problems(&self, name: &str) -> Vec<String> {
        let mut p: Vec<String> = self
            .options()
            .problems()
            .into_iter()
            .map(|e| format!("source {name:?}: {e}"))
            .collect();
        for a in &self.accounts {
            if a.len() != 12 || !a.bytes().all(|c| c.is_ascii_digit()) {
                p.push(format!(
                    "source {name:?}: accounts: {a:?} is not a 12-digit account id"
                ));
            }
        }
        if let Some(o) = &self.organization_id {
            let ok = o.len() >= 12
                && o.len() <= 34
                && o.starts_with("o-")
                && o[2..]
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
            if !ok {
                p.push(format!(
                    "source {name:?}: organization_id: {o:?} is not an organization id (o- and 10 to 32 lowercase letters or digits)"
                ));
            }
        }
        if self.prefix.starts_with('/') || self.prefix.contains("//") {
            p.push(format!(
                "source {name:?}: prefix {:?} must not start with / or hold an empty segment",
                self.prefix
            ));
        }
        if !(1..=1000).contains(&self.max_keys) {
            p.push(format!(
                "source {name:?}: max_keys must be 1 to 1000, not {}",
                self.max_keys
            ));
        }
        if self.lookback_days > 90 {
            p.push(format!(
                "source {name:?}: lookback_days must be at most 90, not {}",
                self.lookback_days
            ));
        }
        p
    }
}

fn default_http_listen() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 4318))
}

/// The smallest reserve of free space on the spool's file system.
pub const MIN_SPOOL_RESERVE: u64 = 1 << 20;

fn default_spool_min_free() -> u64 {
    64 << 20
}

fn default_spool_max() -> u64 {
    256 << 20
}

/// Why a configuration was refused: every problem at once.
#[derive(Debug, thiserror::Error)]
#[error("invalid agent configuration {path}:\n  - {}", problems.join("\n  - "))]
pub struct ConfigError {
    pub path: String,
    pub problems: Vec<String>,
}

impl AgentConfig {
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
        let mut cfg: AgentConfig =
            orgtrail_core::config_toml::from_toml_all(&text).map_err(|problems| ConfigError {
                path: path.display().to_string(),
                problems,
            })?;
        let base = path.parent().unwrap_or(Path::new("."));
        if cfg.spool_key_file.as_os_str().is_empty() {
            cfg.spool_key_file = cfg.spool_dir.join(crate::spool::KEY_FILE);
        }
        for p in [
            &mut cfg.spool_key_file,
            &mut cfg.spool_dir,
            &mut cfg.tls.cert,
            &mut cfg.tls.key,
            &mut cfg.tls.ca,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        let mut problems = Vec::new();
        if let Some(sel) = &mut cfg.selectors {
            if let Some(j) = &mut sel.aws_json
                && j.is_relative()
            {
                *j = base.join(&*j);
            }
            if let Err(p) = crate::selectors::Selectors::load(sel, base) {
                problems.extend(p);
            }
        }
        if let Some(s) = cfg.source.take() {
            cfg.sources.insert(0, s);
        }
        if cfg.sources.is_empty() {
            problems.push("no source: add a [source] or [[sources]] table".into());
        }
        let mut names = std::collections::HashSet::new();
        for s in &mut cfg.sources {
            match s {
                SourceConfig::Jsonl { path: src, .. } => {
                    if src.as_os_str() != "-" && src.is_relative() {
                        *src = base.join(&*src);
                    }
                }
                SourceConfig::CloudtrailDir {
                    path: src,
                    digest_public_keys_file: keys,
                    ..
                } => {
                    if src.is_relative() {
                        *src = base.join(&*src);
                    }
                    if let Some(k) = keys
                        && k.is_relative()
                    {
                        *k = base.join(&*k);
                    }
                }
                SourceConfig::Http { .. } => {}
                SourceConfig::S3(s3) => {
                    for f in [
                        &mut s3.ca_file,
                        &mut s3.access_key_id_file,
                        &mut s3.secret_access_key_file,
                        &mut s3.session_token_file,
                        &mut s3.digest_public_keys_file,
                    ]
                    .into_iter()
                    .flatten()
                    {
                        if f.is_relative() {
                            *f = base.join(&*f);
                        }
                    }
                }
            }
            let name = s.name();
            if let SourceConfig::S3(s3) = &*s {
                problems.extend(s3.problems(&name));
            }
            if let SourceConfig::Jsonl {
                path, follow: true, ..
            } = s
                && path.as_os_str() == "-"
            {
                problems.push("source jsonl: `follow` needs a file, not standard input".into());
            }
            if let SourceConfig::CloudtrailDir { path, .. } = s
                && !path.is_dir()
            {
                problems.push(format!(
                    "source cloudtrail_dir: {} is not a directory",
                    path.display()
                ));
            }
            let keys = match &*s {
                SourceConfig::CloudtrailDir {
                    digest_public_keys_file: Some(k),
                    ..
                } => Some(k),
                SourceConfig::S3(s3) => s3.digest_public_keys_file.as_ref(),
                _ => None,
            };
            if let Some(k) = keys
                && let Err(e) = crate::sources::digests::load_keys(k)
            {
                problems.push(format!("source {name}: digest_public_keys_file: {e}"));
            }
            if !names.insert(s.name()) {
                problems.push(format!(
                    "two sources are named {:?}: give each a distinct `name`",
                    s.name()
                ));
            }
        }
        let configured = cfg.account;
        // A certificate that cannot be read or is not an agent's is reported when the agent
        // starts (and refused by the collector); here only the account is compared.
        if cfg.tls.cert.is_file()
            && let Some(a) = certificate_account(&cfg.tls.cert)
        {
            match configured {
                Some(c) if c != a => problems.push(format!(
                    "account: {c} is not the account of the certificate {} ({a}): the collector would refuse every event; remove `account` (the certificate's is used) or use this account's certificate",
                    cfg.tls.cert.display()
                )),
                _ => cfg.account = Some(a),
            }
        }
        if !cfg.collector.starts_with("https://") {
            problems.push(format!(
                "collector: {:?} must be an https:// URL (mutual TLS)",
                cfg.collector
            ));
        }
        for (n, f) in [
            ("tls.cert", &cfg.tls.cert),
            ("tls.key", &cfg.tls.key),
            ("tls.ca", &cfg.tls.ca),
        ] {
            if !f.is_file() {
                problems.push(format!("{n}: {} does not exist", f.display()));
            }
        }
        match (&cfg.ops, &cfg.metrics) {
            (Some(_), Some(_)) => problems.push(
                "[metrics] and [ops] are both given: keep [ops] only ([metrics] is its former name)"
                    .into(),
            ),
            (None, Some(m)) => cfg.ops = Some(orgtrail_ops::OpsConfig { listen: m.listen }),
            _ => {}
        }
        if cfg.spool_min_free_bytes < MIN_SPOOL_RESERVE {
            problems.push(format!(
                "spool_min_free_bytes: {} is below the minimum of {MIN_SPOOL_RESERVE} bytes (the spool's state database needs room for its small writes even when the disk is otherwise full)",
                cfg.spool_min_free_bytes
            ));
        }
        problems.extend(cfg.limit_problems());
        let c = &cfg.connection;
        for (name, v) in [
            ("connect_timeout_ms", c.connect_timeout_ms),
            ("keepalive_interval_ms", c.keepalive_interval_ms),
            ("keepalive_timeout_ms", c.keepalive_timeout_ms),
            ("ack_timeout_ms", c.ack_timeout_ms),
        ] {
            if v == 0 {
                problems.push(format!("connection.{name} must be positive"));
            }
        }
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError {
                path: path.display().to_string(),
                problems,
            })
        }
    }
}

/// The account an agent certificate names; None when the file is not an agent certificate.
fn certificate_account(path: &Path) -> Option<AccountId> {
    let pem = std::fs::read_to_string(path).ok()?;
    let der = orgtrail_crypto::certs::pem_to_der(&pem).ok()?;
    orgtrail_crypto::certs::identity_from_der(&der)
        .ok()?
        .agent_account()
}

/// A number a configuration may hold: (name, value, least, most).
type Range = (String, u64, u64, u64);

impl AgentConfig {
    /// Every limit out of its range, or inconsistent with another.
    pub fn limit_problems(&self) -> Vec<String> {
        const HOUR_MS: u64 = 3_600_000;
        let b = &self.batch;
        let mut ranges: Vec<Range> = [
            ("batch.max_events", b.max_events as u64, 1, 100_000),
            ("batch.max_bytes", b.max_bytes as u64, 1 << 10, 1 << 30),
            ("batch.linger_ms", b.linger_ms, 0, HOUR_MS),
            ("batch.max_in_flight", b.max_in_flight as u64, 1, 1024),
            ("retry.initial_ms", self.retry.initial_ms, 1, HOUR_MS),
            ("retry.max_ms", self.retry.max_ms, 1, 24 * HOUR_MS),
            ("spool_max_bytes", self.spool_max_bytes, 1 << 20, 1 << 40),
        ]
        .into_iter()
        .map(|(n, v, l, m)| (n.to_string(), v, l, m))
        .collect();
        for s in &self.sources {
            if let SourceConfig::Jsonl { poll_ms, .. }
            | SourceConfig::CloudtrailDir { poll_ms, .. } = s
            {
                ranges.push((
                    format!("source {:?}: poll_ms", s.name()),
                    *poll_ms,
                    1,
                    HOUR_MS,
                ));
            }
        }
        let mut p = Vec::new();
        for (name, v, least, most) in ranges {
            if !(least..=most).contains(&v) {
                p.push(format!(
                    "{name} = {v} is out of range: give {least} to {most}"
                ));
            }
        }
        if self.retry.max_ms < self.retry.initial_ms {
            p.push(format!(
                "retry.max_ms ({}) is smaller than retry.initial_ms ({})",
                self.retry.max_ms, self.retry.initial_ms
            ));
        }
        p
    }
}

/// A commented example configuration.
pub const EXAMPLE: &str = r#"# orgtrail agent configuration. Relative paths are relative to this file.

# The account this agent ships for. Optional: the agent's certificate names its account, and
# an `account` that differs is refused at start.
# account = "111122223333"
# The collector.
collector = "https://collector.example:4317"
# server_name = "collector.example"   # default: the URL's host

# Durable spool: every event is stored here before it is shipped, and kept until the
# collector acknowledged it.
spool_dir = "spool"
spool_max_bytes = 268435456    # when full, the source pauses; nothing is dropped
spool_min_free_bytes = 67108864  # free space kept on the spool's disk; below it the sources pause
# The spool is sealed (AES-256-GCM) under a key created on first run (default spool/spool.key).
# spool_key_file = "/etc/orgtrail/spool.key"

[tls]
cert = "agent.pem"     # orgtrail certs issue --role agent --account 111122223333
key = "agent.key"
ca = "ca/ca.pem"       # the organization CA

[batch]
max_events = 1000
max_bytes = 4194304
linger_ms = 200
max_in_flight = 4
compression = "zstd"   # zstd | gzip | none

[retry]
initial_ms = 100     # exponential backoff with jitter; back to initial_ms once a batch is acknowledged
max_ms = 30000

[connection]
connect_timeout_ms = 10000     # TCP + TLS + HTTP/2 setup and opening the stream
keepalive_interval_ms = 10000  # HTTP/2 PING this often, also while idle
keepalive_timeout_ms = 10000   # an unanswered PING closes the connection
ack_timeout_ms = 60000         # no acknowledgement this long while batches wait: reconnect, send again

# Sources: one [source] table, or several [[sources]] (each may have a `name`, used in
# metrics and logs). Every event a source reads is durable in the spool before the source
# moves on; a source's position is kept with it, so a restart neither skips nor repeats.
#
# CloudTrail's delivered log files (AWSLogs/[o-org/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/
# *.json.gz or .json), e.g. an `aws s3 sync` of the trail's bucket. Each new file's Records
# are shipped once; digest files are skipped; a corrupt or oversized file (over 50 MB, or
# 512 MiB decompressed) becomes a dead letter. A file is read once its size and mtime hold
# still across two scans.
[[sources]]
type = "cloudtrail_dir"
name = "trail"
path = "/var/lib/cloudtrail"
poll_ms = 1000

# JSON lines: a file, followed as it grows (across rotation and truncation), or "-" for
# standard input.
# [[sources]]
# type = "jsonl"
# path = "/var/log/app/audit.jsonl"
# follow = true

# Applications' own audit events, in CloudTrail Lake's PutAuditEvents shape:
#   POST http://127.0.0.1:4318/  {"auditEvents":[{"id":"...","eventData":"{...}"}]}
# answered once the events are durable. At most 100 events and 1 MB per request.
# [[sources]]
# type = "http"
# listen = "127.0.0.1:4318"

# The ops listener, plain HTTP (off when absent): GET /healthz (alive), /readyz (200, or 503
# with the reason: the spool's disk is full, the collector is not reachable) and /metrics
# (Prometheus text: events read, filtered, spooled, shipped, dead-lettered per source, ...).
# No TLS: keep it on loopback or an address only the scraper reaches. ([metrics] is its
# former, deprecated name.)
# [ops]
# listen = "127.0.0.1:9464"
"#;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_example_configuration_parses() {
        let cfg: AgentConfig = toml::from_str(EXAMPLE).unwrap();
        assert_eq!(cfg.sources.len(), 1);
        assert_eq!(cfg.sources[0].name(), "trail");
    }

    const BASE: &str = "account = \"111122223333\"\ncollector = \"https://c:1\"\nspool_dir = \"sp\"\n[tls]\ncert = \"a.pem\"\nkey = \"a.key\"\nca = \"ca.pem\"\n[source]\ntype = \"jsonl\"\npath = \"-\"\n";

    fn load(text: &str) -> Result<AgentConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        for f in ["a.pem", "a.key", "ca.pem"] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        std::fs::write(&path, text).unwrap();
        AgentConfig::load(&path)
    }

    #[test]
    fn the_ops_listener_and_its_former_name() {
        let cfg = load(&format!("{BASE}[ops]\nlisten = \"127.0.0.1:9464\"\n")).unwrap();
        assert_eq!(cfg.ops.unwrap().listen, "127.0.0.1:9464".parse().unwrap());
        // The deprecated [metrics] table still works, as [ops].
        let cfg = load(&format!("{BASE}[metrics]\nlisten = \"127.0.0.1:9465\"\n")).unwrap();
        assert_eq!(cfg.ops.unwrap().listen, "127.0.0.1:9465".parse().unwrap());
        assert!(
            cfg.metrics.is_some(),
            "kept, so the agent can say it is deprecated"
        );
        let e = load(&format!(
            "{BASE}[ops]\nlisten = \"127.0.0.1:1\"\n[metrics]\nlisten = \"127.0.0.1:2\"\n"
        ))
        .unwrap_err();
        assert!(
            e.problems.iter().any(|p| p.contains("keep [ops] only")),
            "{e}"
        );
        let e = load(&format!("{BASE}[ops]\nlisten = \"metrics.local:9464\"\n")).unwrap_err();
        assert!(
            e.to_string()
                .contains("\"metrics.local:9464\" is not an IP address and port"),
            "{e}"
        );
        assert!(load(BASE).unwrap().ops.is_none(), "off by default");
    }

    #[test]
    fn a_tiny_spool_reserve_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "account = \"111122223333\"\ncollector = \"https://c:1\"\nspool_dir = \"sp\"\nspool_min_free_bytes = 1000\n[tls]\ncert = \"a.pem\"\nkey = \"a.key\"\nca = \"ca.pem\"\n[source]\ntype = \"jsonl\"\npath = \"-\"\n",
        )
        .unwrap();
        let e = AgentConfig::load(&path).unwrap_err();
        assert!(
            e.problems.iter().any(|p| p
                == "spool_min_free_bytes: 1000 is below the minimum of 1048576 bytes (the spool's state database needs room for its small writes even when the disk is otherwise full)"),
            "{e}"
        );
    }
}
