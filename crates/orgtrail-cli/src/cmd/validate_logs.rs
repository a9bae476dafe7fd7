//! `orgtrail validate-logs`: CloudTrail digest validation of a trail's bucket, in place
//! (`s3://`) or a local copy of it (the logic is in orgtrail-trailfiles).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use orgtrail_core::Timestamp;
use orgtrail_crypto::signing::VerifyingKey;
use orgtrail_s3::S3Url;
use orgtrail_trailfiles::{
    DirStore, FindingKind, ObjectStore, PublicKeySet, Report, S3Store, ValidateOptions, validate,
};
use serde_json::json;

/// Validate CloudTrail log files with CloudTrail's own digest files, like
/// `aws cloudtrail validate-logs`, on the trail's bucket itself (`s3://BUCKET[/PREFIX]`, on AWS
/// or any S3-compatible --endpoint) or on a local copy of it
/// (`aws s3 sync s3://BUCKET[/PREFIX] DIR`).
///
/// For each trail, account and region, the digest chain is walked from the newest digest to
/// the oldest. Each digest must lie where it says it does, name a public key from
/// --public-keys, and carry a valid SHA256withRSA signature; each log file a valid digest lists
/// must inflate to the SHA-256 the digest records. Stricter than aws-cli: each link is checked
/// both ways (previousDigestHashValue and previousDigestSignature against the previous digest
/// itself), several digests deleted in a row are all counted, digests no chain reaches are
/// reported, and log files that no digest lists are reported as unlisted.
///
/// The newest digest's signature is not in the file: S3 keeps it in the object's metadata
/// (`x-amz-meta-signature`), where an s3:// location reads it. For a copy, save it beside the
/// digest as `<digest file>.sig`, e.g.
/// `aws s3api head-object --bucket B --key K --query Metadata.signature --output text > DIR/K.sig`.
/// Older digests take their signature from their successor's previousDigestSignature (or from
/// their own .sig when present, which is then compared with it).
///
/// An archive written by `orgtrail export` is checked the same way with the store's own key:
/// `--public-key signing.pub` (its digests say `digestSignatureAlgorithm` "Ed25519").
///
/// Prints each problem as `Digest file|Log file <TAB> KEY <TAB> INVALID: reason`, then a summary
/// like aws-cli's. Exit status: 0 when everything is valid, 1 when anything is invalid, 2 on a
/// usage error (bad arguments, unreadable key file or directory).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The trail's bucket, `s3://BUCKET[/PREFIX]`, or a directory holding a copy of it, in
    /// CloudTrail's layout (`[PREFIX/]AWSLogs/[o-ID/]ACCOUNT/CloudTrail[-Digest]/REGION/YYYY/MM/DD/...`).
    #[arg(value_name = "DIR|s3://BUCKET[/PREFIX]")]
    location: String,

    /// The JSON that `aws cloudtrail list-public-keys` prints (may be repeated, e.g. one file
    /// per home region). Keys are base64 DER, PKCS#1 or SubjectPublicKeyInfo.
    #[arg(long, value_name = "FILE", required_unless_present = "public_key")]
    public_keys: Vec<PathBuf>,

    /// An orgtrail store's Ed25519 public key (`signing.pub`, as `orgtrail keys init` writes
    /// it), for an archive `orgtrail export` wrote (may be repeated).
    #[arg(long, value_name = "FILE")]
    public_key: Vec<PathBuf>,

    /// Validate digests that end at or after this time (RFC 3339, e.g. 2024-03-01T00:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    start: Option<Timestamp>,

    /// Validate digests up to this time (plus one hour, for the digest that covers it).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    end: Option<Timestamp>,

    /// The bucket DIR is a copy of (for s3://, the location's bucket). When given, each
    /// digest's digestS3Bucket (and each log file's s3Bucket) must name it; when not, bucket
    /// names are not checked.
    #[arg(long, value_name = "NAME")]
    bucket: Option<String>,

    /// The S3 key prefix DIR is a copy of, when it is not the bucket's root (as in
    /// `aws s3 sync s3://BUCKET/PREFIX DIR`).
    #[arg(long, value_name = "PREFIX", default_value = "")]
    prefix: String,

    /// Print the report as one JSON object instead of text.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    s3: super::s3_args::S3Args,
}

fn parse_time(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse(s).map_err(|e| e.to_string())
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let (Some(s), Some(e)) = (args.start, args.end)
        && s > e
    {
        bail!("--start {s} is after --end {e}");
    }
    let keys = load_keys(&args.public_keys, &args.public_key)?;
    let store: Box<dyn ObjectStore> = if args.location.starts_with("s3://") {
        let url = S3Url::parse(&args.location)?;
        if !args.prefix.is_empty() {
            bail!("--prefix is for a directory; an s3:// location names its prefix itself");
        }
        if let Some(b) = &args.bucket
            && *b != url.bucket
        {
            bail!("--bucket {b} differs from the bucket of {}", args.location);
        }
        Box::new(S3Store::new(&args.s3.options(&url.bucket)?, &url.prefix)?)
    } else {
        Box::new(DirStore::new(
            &args.location,
            args.bucket.clone(),
            &args.prefix,
        )?)
    };
    let opts = ValidateOptions {
        start: args.start,
        end: args.end,
        ..ValidateOptions::default()
    };
    let report = validate(store.as_ref(), &keys, &opts)?;
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    if args.json {
        let v = json!({
            "location": args.location,
            "requested_start": args.start.map(|t| t.to_string()),
            "requested_end": args.end.map(|t| t.to_string()),
            "valid": report.is_valid(),
            "report": report,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        write_text(&mut out, &args.location, args.start, args.end, &report)?;
    }
    out.flush()?;
    Ok(if report.is_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The keys of `--public-keys` (CloudTrail's `list-public-keys` JSON) and `--public-key`
/// (an orgtrail store's Ed25519 `signing.pub`) files.
pub(crate) fn load_keys(
    public_keys: &[PathBuf],
    public_key: &[PathBuf],
) -> anyhow::Result<PublicKeySet> {
    let mut keys = PublicKeySet::default();
    for path in public_keys {
        let text =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        keys.extend(PublicKeySet::from_json(&text, &path.display().to_string())?);
    }
    for path in public_key {
        keys.add_ed25519(
            VerifyingKey::load(path).with_context(|| format!("reading {}", path.display()))?,
        );
    }
    Ok(keys)
}

/// The report as text, like aws-cli's.
pub(crate) fn write_text(
    out: &mut impl Write,
    location: &str,
    start: Option<Timestamp>,
    end: Option<Timestamp>,
    r: &Report,
) -> anyhow::Result<()> {
    let show =
        |t: Option<Timestamp>, none: &str| t.map_or_else(|| none.to_owned(), |t| t.to_string());
    let (start, end) = (show(start, "the oldest digest"), show(end, "the newest"));
    writeln!(
        out,
        "Validating log files in {location} between {start} and {end}\n"
    )?;
    for f in &r.findings {
        let line = match f.kind {
            FindingKind::Gap => format!("Digest file\t{}\t{}", f.key, capitalize(&f.message)),
            FindingKind::ChainLeavesStore => format!("Digest file\t{}\tnote: {}", f.key, f.message),
            k if k.is_log() => format!("Log file\t{}\tINVALID: {}", f.key, f.message),
            _ => format!("Digest file\t{}\tINVALID: {}", f.key, f.message),
        };
        writeln!(out, "{line}")?;
    }
    if !r.findings.is_empty() {
        writeln!(out)?;
    }
    writeln!(out, "Results requested for {start} to {end}")?;
    if r.digests_valid + r.digests_invalid == 0 {
        writeln!(out, "No digests found")?;
        return Ok(());
    }
    match (&r.found_start, &r.found_end) {
        (Some(s), Some(e)) => writeln!(out, "Results found for {s} to {e}:")?,
        _ => writeln!(out, "No valid digests found in range")?,
    }
    ratio(out, r.digests_valid, r.digests_invalid, "digest")?;
    ratio(out, r.logs_valid, r.logs_invalid, "log")?;
    writeln!(out)?;
    Ok(())
}

fn ratio(out: &mut impl Write, valid: u64, invalid: u64, name: &str) -> std::io::Result<()> {
    let total = valid + invalid;
    if total > 0 {
        write!(out, "\n{valid}/{total} {name} files valid")?;
        if invalid > 0 {
            write!(out, ", {invalid}/{total} {name} files INVALID")?;
        }
    }
    Ok(())
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}
