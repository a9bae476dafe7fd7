//! `orgtrail export`: a stopped store's events as an archive in CloudTrail's layout (the
//! writer is orgtrail-trailfiles' `export`; this wires the store to it).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use orgtrail_core::{AccountId, Timestamp};
use orgtrail_crypto::signing::SigningKey;
use orgtrail_store::Ledger;
use orgtrail_trailfiles::export::{DEFAULT_BUCKET, export};
use orgtrail_trailfiles::{EventSource, ExportFilter, ExportOptions, SourceEvent};

/// Export a store's events as an archive in CloudTrail's own layout, with digest files signed
/// by the store's signing key, for Athena, DuckDB and `orgtrail validate-logs` (offline: no
/// collector may be running on the store).
///
/// Writes DIR/AWSLogs/[o-ID/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/
/// ACCOUNT_CloudTrail_REGION_YYYYMMDDTHH00Z_SEQ.json.gz: `{"Records":[...]}` holding each
/// event's stored bytes, one file per account, region and UTC hour of eventTime (SEQ is the
/// file's first sequence number, in hex). Beside them, one digest per account, region and
/// hour, CloudTrail's digest JSON chained per account and region and signed with Ed25519
/// (`digestSignatureAlgorithm` "Ed25519"; AWS signs with SHA256withRSA), each with a `.sig`
/// file holding its signature. Check it with
/// `orgtrail validate-logs DIR --public-key KEYS/signing.pub --bucket NAME`.
///
/// Running it again exports only events no earlier export to DIR wrote (the state is in
/// DIR/.orgtrail-export/), so a rerun never duplicates an event; an interrupted export is
/// finished by the next. Prints `exported events=N files=F digests=D ...`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The store's data directory (the collector must not be running on it).
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Directory holding keyring.json and signing.key (digests are signed with it).
    #[arg(long, value_name = "DIR")]
    keys: PathBuf,
    /// The archive directory (created if missing). `s3://` is not supported yet.
    #[arg(long, value_name = "DIR")]
    to: String,
    /// Export events whose eventTime is at or after this (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: Option<Timestamp>,
    /// Export events whose eventTime is before this (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    until: Option<Timestamp>,
    /// Export only this account's events (may be repeated).
    #[arg(long, value_name = "ACCOUNT")]
    account: Vec<AccountId>,
    /// The S3 bucket the archive will live in: each digest signs its own bucket and key, so
    /// name the bucket before copying the archive there. Fixed for an archive.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_BUCKET)]
    bucket: String,
    /// The S3 key prefix DIR will be copied to (`aws s3 sync DIR s3://BUCKET/PREFIX`).
    #[arg(long, value_name = "PREFIX", default_value = "")]
    prefix: String,
    /// An organization id (o-...): keys start AWSLogs/o-ID/ACCOUNT/, as an organization
    /// trail's do.
    #[arg(long, value_name = "ID")]
    org_id: Option<String>,
    /// Largest inflated log file, in bytes (DuckDB's read_json reads objects up to 16 MiB by
    /// default).
    #[arg(long, value_name = "BYTES", default_value_t = 8 << 20)]
    max_file_bytes: u64,
}

fn parse_time(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse(s).map_err(|e| e.to_string())
}

/// The store, read in sequence order.
struct LedgerSource<'a>(&'a Ledger);

impl EventSource for LedgerSource<'_> {
    fn origin(&self) -> String {
        self.0.origin().to_owned()
    }

    fn head(&self) -> Result<u64, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.0.tree_head()?.0)
    }

    fn read(
        &self,
        first: u64,
        last: u64,
    ) -> Result<Vec<SourceEvent>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self
            .0
            .read_range(first, last)?
            .into_iter()
            .map(|e| SourceEvent {
                seq: e.seq,
                account: e.account,
                time: e.time,
                bytes: e.bytes,
            })
            .collect())
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.to.starts_with("s3://") {
        bail!(
            "{}: exporting to S3 is not supported yet; export to a directory and copy it \
             (aws s3 sync DIR s3://BUCKET/PREFIX, with --bucket BUCKET --prefix PREFIX here)",
            args.to
        );
    }
    let signing = args.keys.join("signing.key");
    if !signing.exists() {
        bail!(
            "{} is missing: export signs its digests with the store's signing key (from `orgtrail keys init`)",
            signing.display()
        );
    }
    let signer = SigningKey::load(&signing)?;
    let ledger = crate::cmd::keys::open_read_only(&args.keys, &args.data_dir)?;
    let opts = ExportOptions {
        bucket: args.bucket.clone(),
        prefix: args.prefix.clone(),
        org_id: args.org_id.clone(),
        filter: ExportFilter {
            since: args.since,
            until: args.until,
            accounts: args.account.iter().copied().collect(),
        },
        max_file_bytes: args.max_file_bytes,
        ..ExportOptions::default()
    };
    let started = Instant::now();
    let to = Path::new(&args.to);
    let summary = export(to, &LedgerSource(&ledger), &signer, &opts)
        .with_context(|| format!("exporting to {}", to.display()));
    ledger.close().context("closing the store")?;
    let s = summary?;
    let secs = started.elapsed().as_secs_f64();
    if s.finished_interrupted {
        println!("finished the interrupted export first");
    }
    println!(
        "exported events={} files={} digests={} already-exported={} through-seq={} bytes={} gz-bytes={} seconds={secs:.2}",
        s.events, s.files, s.digests, s.already, s.through, s.event_bytes, s.gz_bytes
    );
    Ok(ExitCode::SUCCESS)
}
