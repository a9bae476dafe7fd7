//! `orgtrail bench gz` and `orgtrail bench selectors`: single-core figures of the agent's event
//! path before the spool: decoding delivered log files, and applying a trail's selectors.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use orgtrail_core::{CloudTrailEvent, DecodeLimits, Decoder, EventFields, InputFormat};
use orgtrail_gen::{GenConfig, Generator};
use orgtrail_rules::selectors::Selectors;

#[derive(Debug, clap::Args)]
pub(crate) struct GzArgs {
    /// How many generated events, in total.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Records per delivered log file (CloudTrail writes up to a few thousand per file).
    #[arg(long, default_value_t = 2_000)]
    records_per_file: usize,
    /// Timed passes over all files; the best is reported.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

#[derive(Debug, clap::Args)]
pub(crate) struct SelectorsArgs {
    /// How many generated, pre-parsed events to evaluate.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Timed passes over all events; the best is reported.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

const MIB: f64 = 1024.0 * 1024.0;

/// Builds delivered log files in memory: `{"Records":[...]}`, gzipped. Returns
/// (gzipped files, uncompressed bytes, events).
fn log_files(a: &GzArgs) -> anyhow::Result<(Vec<Vec<u8>>, u64, u64)> {
    let mut files = Vec::new();
    let mut plain_bytes = 0u64;
    let mut events = 0u64;
    let mut gen_events = Generator::new(GenConfig {
        count: a.events,
        accounts: 20,
        seed: a.seed,
        ..GenConfig::default()
    })
    .peekable();
    while gen_events.peek().is_some() {
        let mut doc = Vec::with_capacity(a.records_per_file * 1600);
        doc.extend_from_slice(b"{\"Records\":[");
        for (i, e) in gen_events.by_ref().take(a.records_per_file).enumerate() {
            if i > 0 {
                doc.push(b',');
            }
            doc.extend_from_slice(&e);
            events += 1;
        }
        doc.extend_from_slice(b"]}");
        plain_bytes += doc.len() as u64;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&doc)?;
        files.push(gz.finish()?);
    }
    Ok((files, plain_bytes, events))
}

fn best_of<T>(
    rounds: u32,
    mut f: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<(Duration, T)> {
    let mut best: Option<(Duration, T)> = None;
    for _ in 0..rounds.max(1) {
        let t = Instant::now();
        let v = f()?;
        let d = t.elapsed();
        if best.as_ref().is_none_or(|(b, _)| d < *b) {
            best = Some((d, v));
        }
    }
    best.context("no round ran")
}

pub(crate) fn gz(a: GzArgs) -> anyhow::Result<ExitCode> {
    println!(
        "building {} generated events into log files of {} records (gzip level 6)",
        a.events, a.records_per_file
    );
    let (files, plain_bytes, events) = log_files(&a)?;
    let gz_bytes: u64 = files.iter().map(|f| f.len() as u64).sum();
    println!(
        "{} files, {:.1} MiB of JSON, {:.1} MiB gzipped (ratio {:.1}), {:.0} bytes per event",
        files.len(),
        plain_bytes as f64 / MIB,
        gz_bytes as f64 / MIB,
        plain_bytes as f64 / gz_bytes as f64,
        plain_bytes as f64 / events as f64
    );
    let limits = DecodeLimits::default();

    // The whole path: gunzip, split the Records array, parse and validate every event.
    let (full, n) = best_of(a.rounds, || {
        let mut n = 0u64;
        for f in &files {
            for item in Decoder::new(&f[..], InputFormat::LogFile, limits)? {
                let item = item?;
                if item.result.is_err() {
                    bail!("a generated event is invalid: {:?}", item.result.err());
                }
                n += 1;
            }
        }
        Ok(n)
    })?;
    if n != events {
        bail!("decoded {n} events of {events}");
    }
    // Its parts: gunzip alone, and decoding the plain JSON alone.
    let (gunzip, plain) = best_of(a.rounds, || {
        let mut plain = Vec::with_capacity(files.len());
        for f in &files {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&f[..]).read_to_end(&mut out)?;
            plain.push(out);
        }
        Ok(plain)
    })?;
    let (parse, _) = best_of(a.rounds, || {
        let mut n = 0u64;
        for p in &plain {
            for item in Decoder::new(&p[..], InputFormat::LogFile, limits)? {
                n += u64::from(item?.result.is_ok());
            }
        }
        Ok(n)
    })?;
    let rate = |d: Duration| plain_bytes as f64 / MIB / d.as_secs_f64();
    println!(
        "decode .json.gz into events (one thread): {:.2} s, {:.0} MiB/s of uncompressed JSON, {:.0} events/s (target >= 150 MiB/s)",
        full.as_secs_f64(),
        rate(full),
        events as f64 / full.as_secs_f64()
    );
    println!(
        "  of which gunzip alone: {:.0} MiB/s; JSON split + event parse alone: {:.0} MiB/s, {:.0} events/s",
        rate(gunzip),
        rate(parse),
        events as f64 / parse.as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// Ten advanced selectors of the kind a multi-account organization writes: management writes
/// without KMS/RDS Data noise, console activity and errors, root activity, S3 writes and reads
/// on chosen buckets (not the log bucket), Lambda, DynamoDB writes.
pub(crate) const BENCH_SELECTORS: &str = r#"
[[selectors.advanced]]
name = "management writes except KMS and RDS Data"
eventCategory = { equals = ["Management"] }
readOnly = { equals = [false] }
eventSource = { not_equals = ["kms.amazonaws.com", "rdsdata.amazonaws.com"] }

[[selectors.advanced]]
name = "console reads"
eventCategory = { equals = ["Management"] }
sessionCredentialFromConsole = { equals = [true] }
eventName = { starts_with = ["Get", "List", "Describe"] }

[[selectors.advanced]]
name = "denied management calls"
eventCategory = { equals = ["Management"] }
errorCode = { equals = ["AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "Client.UnauthorizedOperation"] }

[[selectors.advanced]]
name = "root user"
eventCategory = { equals = ["Management"] }
"userIdentity.arn" = { ends_with = [":root"] }

[[selectors.advanced]]
name = "S3 writes to prod and data buckets"
eventCategory = { equals = ["Data"] }
"resources.type" = { equals = ["AWS::S3::Object"] }
readOnly = { equals = [false] }
"resources.ARN" = { starts_with = ["arn:aws:s3:::wonka-prod", "arn:aws:s3:::wonka-data", "arn:aws:s3:::acme-prod"] }

[[selectors.advanced]]
name = "S3 reads of exports, not by services"
eventCategory = { equals = ["Data"] }
"resources.type" = { equals = ["AWS::S3::Object"] }
eventName = { equals = ["GetObject"] }
"resources.ARN" = { starts_with = ["arn:aws:s3:::wonka-exports"] }
"userIdentity.arn" = { not_starts_with = ["arn:aws:sts::"] }

[[selectors.advanced]]
name = "S3 deletes anywhere but the log bucket"
eventCategory = { equals = ["Data"] }
"resources.type" = { equals = ["AWS::S3::Object"] }
eventName = { equals = ["DeleteObject", "DeleteObjects"] }
"resources.ARN" = { not_starts_with = ["arn:aws:s3:::org-cloudtrail-logs/"] }

[[selectors.advanced]]
name = "Lambda invocations"
eventCategory = { equals = ["Data"] }
"resources.type" = { equals = ["AWS::Lambda::Function"] }
"resources.ARN" = { not_ends_with = [":function:healthcheck"] }

[[selectors.advanced]]
name = "DynamoDB writes"
eventCategory = { equals = ["Data"] }
"resources.type" = { equals = ["AWS::DynamoDB::Table"] }
eventName = { equals = ["PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"] }

[[selectors.advanced]]
name = "network activity denied"
eventCategory = { equals = ["NetworkActivity"] }
eventSource = { equals = ["s3.amazonaws.com", "kms.amazonaws.com", "secretsmanager.amazonaws.com"] }
errorCode = { equals = ["VpceAccessDenied"] }
"#;

pub(crate) fn selectors(a: SelectorsArgs) -> anyhow::Result<ExitCode> {
    let cfg = orgtrail_rules::selectors::SelectorConfig::from_agent_toml(BENCH_SELECTORS)
        .map_err(anyhow::Error::msg)?;
    let sel = Selectors::compile(&cfg, None)
        .map_err(|p| anyhow::anyhow!("benchmark selectors invalid: {p:?}"))?;
    println!("parsing {} generated events (seed {})", a.events, a.seed);
    let events: Vec<EventFields> = Generator::new(GenConfig {
        count: a.events,
        accounts: 20,
        seed: a.seed,
        ..GenConfig::default()
    })
    .map(|b| CloudTrailEvent::parse(b).map(|e| e.into_parts().1))
    .collect::<Result<_, _>>()?;
    let (d, matched) = best_of(a.rounds, || {
        let mut matched = 0u64;
        for e in &events {
            matched += u64::from(sel.matches(std::hint::black_box(e)));
        }
        Ok(matched)
    })?;
    println!(
        "{} on one thread: {} events in {:.3} s, {:.0} events/s, {:.0} ns per event; shipped {} ({:.1}%) (target >= 2,000,000 events/s)",
        sel.summary(),
        events.len(),
        d.as_secs_f64(),
        events.len() as f64 / d.as_secs_f64(),
        d.as_secs_f64() * 1e9 / events.len() as f64,
        matched,
        matched as f64 * 100.0 / events.len().max(1) as f64
    );
    Ok(ExitCode::SUCCESS)
}
