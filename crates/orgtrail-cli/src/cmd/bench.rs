//! `orgtrail bench store`: the ledger's figures on generated events.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use orgtrail_core::{AccountId, CloudTrailEvent};
use orgtrail_crypto::{Keyring, LocalKeyProvider};
use orgtrail_gen::{GenConfig, Generator};
use orgtrail_store::{Attr, Ledger, LedgerConfig, Query};

/// Measure orgtrail's components and print the figures.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// Import generated events into a fresh store (parse, dedup, compress, seal, index, durable
    /// group commits), then time selective lookups on it and measure its size on disk.
    Store(StoreArgs),
    /// Ship events from one agent into one collector (both real processes, mutual TLS on
    /// loopback): end-to-end throughput, acknowledgement latency at a steady rate, peak memory.
    Transport(crate::cmd::bench_transport::TransportArgs),
    /// Remote lookup latency over mutual TLS on a collector holding many events while it
    /// ingests at a steady rate.
    Query(crate::cmd::bench_query::QueryArgs),
    /// Decode delivered CloudTrail log files (`.json.gz`, built in memory from generated events)
    /// into events on one thread: MiB/s of uncompressed JSON and events/s.
    Gz(crate::cmd::bench_parse::GzArgs),
    /// Evaluate 10 advanced event selectors over pre-parsed generated events on one thread:
    /// events/s.
    Selectors(crate::cmd::bench_parse::SelectorsArgs),
}

#[derive(Debug, clap::Args)]
struct StoreArgs {
    /// How many events to import (duplicates included).
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Fraction of redelivered duplicates.
    #[arg(long, default_value_t = 0.05)]
    dup_rate: f64,
    #[arg(long, default_value_t = 20)]
    accounts: u32,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// How many lookups of each kind to time.
    #[arg(long, default_value_t = 2000)]
    lookups: usize,
    /// Where to build the store (must not exist). Default: a fresh directory under the
    /// system's temporary directory, removed afterwards.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.what {
        What::Store(a) => store(a),
        What::Transport(a) => crate::cmd::bench_transport::run(a),
        What::Query(a) => crate::cmd::bench_query::run(a),
        What::Gz(a) => crate::cmd::bench_parse::gz(a),
        What::Selectors(a) => crate::cmd::bench_parse::selectors(a),
    }
}

fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_size(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// Bytes per stored event by component: key and value bytes per key prefix, the files beside
/// sled's, and what sled's files hold beyond the keys and values.
fn print_usage(u: &orgtrail_store::DiskUsage, events: u64) {
    let per = |b: f64| b / events.max(1) as f64;
    println!("disk by component (bytes per stored event; keys and values as sled is given them):");
    for p in &u.prefixes {
        println!(
            "  {:<32} {:>8.1}  ({} keys, {} key bytes, {} value bytes)",
            format!("`{}` {}", p.prefix as char, p.name()),
            per(p.bytes() as f64),
            p.keys,
            p.key_bytes,
            p.value_bytes
        );
    }
    if u.other_trees > 0 {
        println!(
            "  {:<32} {:>8.1}",
            "other sled trees",
            per(u.other_trees as f64)
        );
    }
    for f in u.files.iter().filter(|f| !f.sled) {
        println!(
            "  {:<32} {:>8.1}  ({} bytes)",
            format!("file {}", f.name),
            per(f.len as f64),
            f.len
        );
    }
    println!(
        "  {:<32} {:>8.1}  (sled's files {} bytes minus {} bytes of keys and values)",
        "sled overhead",
        per(u.sled_overhead() as f64),
        u.sled_files(),
        u.logical()
    );
    let allocated: u64 = u.files.iter().map(|f| f.allocated).sum();
    println!(
        "  {:<32} {:>8.1}  ({} bytes; allocated on the filesystem {:.1} per event; sled files: {})",
        "total",
        per(u.total() as f64),
        u.total(),
        per(allocated as f64),
        u.files
            .iter()
            .filter(|f| f.sled)
            .map(|f| format!("{} {}", f.name, f.len))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn store(a: StoreArgs) -> anyhow::Result<ExitCode> {
    let (root, remove) = match a.dir {
        Some(d) => {
            if d.exists() {
                bail!("{} exists; give a new directory", d.display());
            }
            (d, false)
        }
        None => (
            std::env::temp_dir().join(format!("orgtrail-bench-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(root.join("keys"))
        .with_context(|| format!("creating {}", root.display()))?;
    Keyring::generate("bench")?.save_new(&root.join("keys/keyring.json"))?;
    let provider = Arc::new(LocalKeyProvider::load(&root.join("keys"))?);

    println!(
        "generating {} events ({} accounts, {:.0}% duplicates, seed {})",
        a.events,
        a.accounts,
        a.dup_rate * 100.0,
        a.seed
    );
    let raw: Vec<Vec<u8>> = Generator::new(GenConfig {
        count: a.events,
        accounts: a.accounts,
        seed: a.seed,
        dup_rate: a.dup_rate,
        ..GenConfig::default()
    })
    .collect();
    let raw_bytes: u64 = raw.iter().map(|r| r.len() as u64 + 1).sum();

    let data = root.join("data");
    let ledger = Ledger::open(&data, provider.clone(), LedgerConfig::default())?;
    let started = Instant::now();
    let totals = crate::cmd::ingest::ingest(&ledger, &|_, _| {}, |push| {
        for bytes in &raw {
            let event = CloudTrailEvent::parse(bytes.clone())?;
            let owner: AccountId = event
                .fields()
                .recipient_account_id
                .as_deref()
                .unwrap_or_default()
                .parse()?;
            push(event, owner)?;
        }
        Ok(())
    })?;
    let import_secs = started.elapsed().as_secs_f64();
    ledger.close()?;
    drop(ledger);
    let disk = dir_size(&data);

    let started = Instant::now();
    let ledger = Ledger::open(&data, provider, LedgerConfig::default())?;
    let open_secs = started.elapsed().as_secs_f64();
    let usage = ledger.disk_usage()?;

    // Selective lookups: values taken from stored events, spread over the store.
    let step = (raw.len() / a.lookups.max(1)).max(1);
    let mut kinds: Vec<(&str, Vec<f64>, usize)> = vec![
        ("username", Vec::new(), 0),
        ("resource-name", Vec::new(), 0),
        ("event-id", Vec::new(), 0),
        ("username+event-name, last 24h", Vec::new(), 0),
    ];
    for bytes in raw.iter().step_by(step).take(a.lookups) {
        let ev = CloudTrailEvent::parse(bytes.clone())?;
        let f = ev.fields();
        let queries: [Option<Query>; 4] = [
            f.username().map(|u| Query {
                filters: vec![(Attr::Username, u.to_string())],
                ..Query::default()
            }),
            f.resource_names.first().map(|r| Query {
                filters: vec![(Attr::ResourceName, r.clone())],
                ..Query::default()
            }),
            Some(Query {
                event_id: Some(f.event_id.clone()),
                ..Query::default()
            }),
            f.username().map(|u| Query {
                filters: vec![
                    (Attr::Username, u.to_string()),
                    (Attr::EventName, f.event_name.clone()),
                ],
                start: Some(orgtrail_core::Timestamp(f.event_time.millis() - 86_400_000)),
                end: Some(f.event_time),
                ..Query::default()
            }),
        ];
        for (k, q) in kinds.iter_mut().zip(queries) {
            if let Some(q) = q {
                let t = Instant::now();
                let page = ledger.query(&q)?;
                k.1.push(t.elapsed().as_secs_f64() * 1000.0);
                k.2 += page.events.len();
            }
        }
    }
    let stats = ledger.stats();

    // Proofs: inclusion of events spread over the log, in the tree of every event so far.
    let (size, _) = ledger.tree_head()?;
    let mut inclusion = Vec::new();
    for i in 0..a.lookups.min(size as usize) {
        let seq = 1 + (i as u64 * 7919) % size;
        let t = Instant::now();
        let _ = ledger.inclusion_proof(seq, size)?;
        inclusion.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let mut consistency = Vec::new();
    for i in 1..=a.lookups.min(size as usize) {
        let old = (i as u64 * 104_729) % size;
        let t = Instant::now();
        let _ = ledger.consistency_proof(old, size)?;
        consistency.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ledger.close()?;
    drop(ledger);

    // Verification, against plain SHA-256 over the same event bytes.
    let stored_bytes: u64 = raw_bytes; // upper bound: includes duplicates and newlines
    let t = Instant::now();
    let mut sink = 0u8;
    for r in &raw {
        sink ^= orgtrail_crypto::hash::sha256(r)[0];
    }
    let sha_secs = t.elapsed().as_secs_f64();
    let vk = {
        let (key, _) = orgtrail_crypto::signing::SigningKey::generate()?;
        orgtrail_crypto::signing::VerifyingKey::from_raw(key.public_key())
    };
    let provider2 = Arc::new(LocalKeyProvider::load(&root.join("keys"))?);
    let t = Instant::now();
    let full = orgtrail_store::verify_full(&data, provider2, &vk, &[]);
    let full_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let public = orgtrail_store::verify_public(&data, &vk, &[]);
    let public_secs = t.elapsed().as_secs_f64();
    if !full.ok() || !public.ok() {
        bail!(
            "verification of the benchmark store failed: {:?} {:?}",
            full.problems.first(),
            public.problems.first()
        );
    }

    // Append-time hashing: the content hash (which dedup needs anyway), then what the Merkle
    // log adds on top of it: the leaf hash and the tree.
    let t = Instant::now();
    let contents: Vec<[u8; 32]> = raw
        .iter()
        .map(|r| orgtrail_crypto::hash::sha256(r))
        .collect();
    let content_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut frontier = orgtrail_crypto::merkle::Frontier::new();
    for (i, h) in contents.iter().enumerate() {
        frontier.push(orgtrail_store::event_leaf(
            i as u64 + 1,
            "123456789012",
            "00000000-0000-4000-8000-000000000000",
            h,
        ));
    }
    let hashing_secs = t.elapsed().as_secs_f64();
    sink ^= frontier.root()[0];

    let n = a.events as f64;
    println!(
        "store benchmark: {} events in, {} stored",
        a.events, totals.stored
    );
    println!(
        "import: {:.2} s, {:.0} events/s, {:.1} MiB/s of raw JSON (stored={} duplicates={} conflicts={})",
        import_secs,
        n / import_secs,
        raw_bytes as f64 / import_secs / (1024.0 * 1024.0),
        totals.stored,
        totals.duplicates,
        totals.conflicts
    );
    println!(
        "disk: {} bytes, {:.0} bytes per stored event, raw JSON {:.0} bytes per event, ratio {:.2}",
        disk,
        disk as f64 / stats.events.max(1) as f64,
        raw_bytes as f64 / n,
        disk as f64 / raw_bytes as f64 * (n / stats.events.max(1) as f64)
    );
    print_usage(&usage, stats.events);
    println!(
        "open (index rebuild): {:.2} s for {} events",
        open_secs, stats.events
    );
    let mib = |bytes: u64, secs: f64| bytes as f64 / secs / (1024.0 * 1024.0);
    println!(
        "sha-256 over the event bytes: {:.0} MiB/s (one core)",
        mib(stored_bytes, sha_secs)
    );
    println!(
        "verify (full: decrypt, decompress, parse, recompute leaves, tree, indexes): {:.2} s, {:.0} events/s, {:.0} MiB/s = {:.2}x sha-256",
        full_secs,
        stats.events as f64 / full_secs,
        mib(stored_bytes, full_secs),
        sha_secs / full_secs
    );
    println!(
        "verify (public key only: tree from stored leaf hashes): {:.2} s, {:.0} events/s = {:.2}x sha-256 over the bytes",
        public_secs,
        stats.events as f64 / public_secs,
        sha_secs / public_secs
    );
    println!(
        "append-time hashing on one core: content hashes {:.2} s (dedup needs them too), Merkle leaves and tree {:.2} s = {:.1}% of the import time",
        content_secs,
        hashing_secs,
        hashing_secs / import_secs * 100.0
    );
    for (name, mut lat) in [("inclusion", inclusion), ("consistency", consistency)] {
        lat.sort_by(f64::total_cmp);
        println!(
            "{name} proof in a log of {size}: n={} p50={:.3} ms p99={:.3} ms",
            lat.len(),
            percentile(&lat, 0.50),
            percentile(&lat, 0.99)
        );
    }
    std::hint::black_box(sink);
    for (name, mut lat, hits) in kinds {
        lat.sort_by(f64::total_cmp);
        println!(
            "lookup {name}: n={} p50={:.3} ms p99={:.3} ms max={:.3} ms (mean {:.1} events per page)",
            lat.len(),
            percentile(&lat, 0.50),
            percentile(&lat, 0.99),
            lat.last().copied().unwrap_or(0.0),
            hits as f64 / lat.len().max(1) as f64
        );
    }
    if remove {
        let _ = std::fs::remove_dir_all(&root);
    }
    Ok(ExitCode::SUCCESS)
}
