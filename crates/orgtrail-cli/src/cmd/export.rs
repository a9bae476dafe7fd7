//! `orgtrail export`: a stopped store's events as an archive in CloudTrail's layout (the
//! writer is orgtrail-trailfiles' `export`; this wires the store to it).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use orgtrail_collector::archive::StoreSource;
use orgtrail_core::{AccountId, Timestamp};
use orgtrail_crypto::signing::SigningKey;
use orgtrail_s3::{Blocking, S3Url};
use orgtrail_trailfiles::export::{DEFAULT_BUCKET, export, export_s3};
use orgtrail_trailfiles::{ExportFilter, ExportOptions};

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
/// finished by the next.
///
/// `--to s3://BUCKET[/PREFIX] --state-dir S` PUTs the same objects into the bucket (the
/// digests sign that bucket and key), the state staying in the local S; check it with
/// `orgtrail validate-logs s3://BUCKET[/PREFIX] --public-key KEYS/signing.pub`. Prints `exported events=N files=F digests=D ...`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The store's data directory (the collector must not be running on it).
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Directory holding keyring.json and signing.key (digests are signed with it).
    #[arg(long, value_name = "DIR")]
    keys: PathBuf,
    /// The archive directory (created if missing), or `s3://BUCKET[/PREFIX]`: each log file
    /// and digest PUT there (the digest's signature in `x-amz-meta-signature`, and a `.sig`
    /// object), with the export's state kept in --state-dir.
    #[arg(long, value_name = "DIR|s3://BUCKET[/PREFIX]")]
    to: String,
    /// For an s3:// --to: the local directory holding the export's lock, state (what was
    /// exported) and scratch files. Keep it: a rerun with it exports only what is new.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
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
    #[command(flatten)]
    s3: super::s3_args::S3Args,
}

fn parse_time(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse(s).map_err(|e| e.to_string())
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let s3 = if args.to.starts_with("s3://") {
        let url = S3Url::parse(&args.to)?;
        let Some(state_dir) = args.state_dir.clone() else {
            bail!(
                "{}: an s3:// export needs --state-dir DIR, a local directory for its state (what was exported); keep it for the next run",
                args.to
            );
        };
        if args.bucket != DEFAULT_BUCKET && args.bucket != url.bucket {
            bail!("--bucket is for a directory; an s3:// --to names its bucket itself");
        }
        if !args.prefix.is_empty() {
            bail!("--prefix is for a directory; an s3:// --to names its prefix itself");
        }
        let client = Blocking::owned(&args.s3.options(&url.bucket)?)?;
        Some((url, state_dir, Arc::new(client)))
    } else {
        if args.state_dir.is_some() {
            bail!(
                "--state-dir is for an s3:// --to; a directory keeps its state in DIR/.orgtrail-export/"
            );
        }
        None
    };
    let signing = args.keys.join("signing.key");
    if !signing.exists() {
        bail!(
            "{} is missing: export signs its digests with the store's signing key (from `orgtrail keys init`)",
            signing.display()
        );
    }
    let signer = SigningKey::load(&signing)?;
    let ledger = crate::cmd::keys::open_read_only(&args.keys, &args.data_dir)?;
    let (bucket, prefix) = match &s3 {
        Some((url, _, _)) => (url.bucket.clone(), url.prefix.clone()),
        None => (args.bucket.clone(), args.prefix.clone()),
    };
    let opts = ExportOptions {
        bucket,
        prefix,
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
    let summary = match s3 {
        Some((_, state_dir, client)) => {
            export_s3(&state_dir, client, &StoreSource(&ledger), &signer, &opts)
        }
        None => export(Path::new(&args.to), &StoreSource(&ledger), &signer, &opts),
    }
    .with_context(|| format!("exporting to {}", args.to));
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
