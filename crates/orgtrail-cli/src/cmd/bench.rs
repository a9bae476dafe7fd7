//! `orgtrail bench store`: the ledger's figures on generated events.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use orgtrail_core::CloudTrailEvent;
use orgtrail_crypto::{Keyring, LocalKeyProvider};
use orgtrail_gen::GenConfig;
use orgtrail_store::{Attr, Group, Ledger, LedgerConfig, Query};

use crate::cmd::bench_peaks::WindowPeaks;
use crate::cmd::bench_scale::{self, Figures, Rss};

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
    /// Match pre-parsed generated events against 10, 100 and 1,000 rules of mixed operators
    /// on one thread: events/s, beside the rate of parsing the same events.
    Rules(crate::cmd::bench_rules::RulesArgs),
    /// Alert latency: from an event's acknowledgement to its alert's arrival at a webhook on
    /// loopback (a real collector, one rule firing on every event), p50 and p99.
    Alerts(crate::cmd::bench_alerts::AlertsArgs),
    /// Ingest throughput of one agent into a collector with rules (100 by default) against
    /// one with none, in the same run, and when evaluation caught up.
    IngestRules(crate::cmd::bench_ingest_rules::IngestRulesArgs),
    /// Ingest throughput of one agent into a collector with Insights on against one with them
    /// off, in the same run, alternated; the collector's CPU on and off, counted until the
    /// detector was fed every event.
    IngestInsights(crate::cmd::bench_ingest_insights::IngestInsightsArgs),
    /// Ingest throughput of one agent into a collector with the continuous archive on
    /// (`[archive]`, writing every second) against one without, in the same run, alternated;
    /// the collector's CPU on and off, counted until every event was archived.
    IngestArchive(crate::cmd::bench_ingest_archive::IngestArchiveArgs),
}

#[derive(Debug, clap::Args)]
struct StoreArgs {
    /// How many events to import (duplicates included).
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Run the benchmark once per size (e.g. `1000000,10000000`), each in a process of its
    /// own, then print the figures side by side with the ratio of the last size to the first.
    #[arg(
        long,
        value_delimiter = ',',
        conflicts_with = "events",
        value_name = "N,N,.."
    )]
    sizes: Option<Vec<u64>>,
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
    /// system's temporary directory, removed afterwards. With `--sizes`, each size builds its
    /// store in DIR/<size>, removed once that size is measured.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Print the figures as one `figures {json}` line at the end (how `--sizes` collects them
    /// from its child processes).
    #[arg(long, hide = true)]
    figures: bool,
    /// Skip verification and the append-time hashing figures (both read or generate every
    /// event again: minutes at 10M events).
    #[arg(long)]
    no_verify: bool,
    /// Open the store a previous run built in `--dir` (same events, seed and lookups) and only
    /// time the lookups, on a sample generated again: for iterating on lookups at 10M events.
    #[arg(long, hide = true, requires = "dir", conflicts_with = "sizes")]
    reopen: bool,
    /// With `--reopen`: open the store read-only (as `orgtrail stats --data-dir` does) and time
    /// only `stats`: the first count after open (cold) and the median of 20 more (warm), over
    /// everything, by account,eventName and by user.
    #[arg(long, hide = true, requires = "reopen")]
    stats: bool,
    /// Also print the peak RSS of each window of this many acknowledged events within the
    /// import: the first window's and the last window's peaks and their ratio are the memory
    /// target's figures, measured in one process.
    #[arg(long, default_value_t = 1_000_000, value_name = "EVENTS")]
    rss_window: u64,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.what {
        What::Store(a) => match a.sizes.clone() {
            Some(sizes) => crate::cmd::bench_scale::run(&a.child_args(), &sizes, a.dir.as_deref()),
            None if a.stats => reopen_stats(a),
            None if a.reopen => reopen(a),
            None => store(a),
        },
        What::Transport(a) => crate::cmd::bench_transport::run(a),
        What::Query(a) => crate::cmd::bench_query::run(a),
        What::Gz(a) => crate::cmd::bench_parse::gz(a),
        What::Selectors(a) => crate::cmd::bench_parse::selectors(a),
        What::Rules(a) => crate::cmd::bench_rules::rules_bench(a),
        What::Alerts(a) => crate::cmd::bench_alerts::run(a),
        What::IngestRules(a) => crate::cmd::bench_ingest_rules::run(a),
        What::IngestInsights(a) => crate::cmd::bench_ingest_insights::run(a),
        What::IngestArchive(a) => crate::cmd::bench_ingest_archive::run(a),
    }
}

pub(crate) fn dir_size(p: &Path) -> u64 {
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

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn store(a: StoreArgs) -> anyhow::Result<ExitCode> {
    let (root, remove) = match a.dir.clone() {
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
        "generating and importing {} events ({} accounts, {:.0}% duplicates, seed {})",
        a.events,
        a.accounts,
        a.dup_rate * 100.0,
        a.seed
    );
    let data = root.join("data");
    let ledger = Ledger::open(&data, provider.clone(), LedgerConfig::default())?;
    let started = Instant::now();
    let windows = WindowPeaks::start(a.rss_window);
    let imported = bench_scale::import_generated(&ledger, a.gen_config(), a.lookups, &|f, l| {
        windows.acked(f, l)
    })?;
    let import_secs = started.elapsed().as_secs_f64();
    let peaks = windows.finish();
    peaks.print();
    // The windows reset the kernel's peak: the import's is the largest of theirs.
    let rss_import = Rss {
        peak_kib: peaks.overall_kib,
        ..Rss::now()
    };
    let (totals, sample, raw_bytes) = (imported.totals, imported.sample, imported.raw_bytes);
    ledger.close()?;
    drop(ledger);
    let disk = dir_size(&data);

    let started = Instant::now();
    let ledger = Ledger::open(&data, provider, LedgerConfig::default())?;
    let open_secs = started.elapsed().as_secs_f64();
    let rss_open = Rss::now();
    let rss_open = Rss {
        peak_kib: rss_open.peak_kib.max(rss_import.peak_kib),
        ..rss_open
    };
    let usage = ledger.disk_usage()?;

    let kinds = time_lookups(&ledger, &sample)?;
    let stats = ledger.stats();
    let stats_lines = stats_latency(&ledger, &sample)?;

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
    let mut sink = 0u8;
    let vk = {
        let (key, _) = orgtrail_crypto::signing::SigningKey::generate()?;
        orgtrail_crypto::signing::VerifyingKey::from_raw(key.public_key())
    };
    let provider2 = Arc::new(LocalKeyProvider::load(&root.join("keys"))?);
    let verify = !a.no_verify;
    let t = Instant::now();
    let full = match verify {
        true => orgtrail_store::verify_full(&data, provider2, &vk, &[]),
        false => Default::default(),
    };
    let full_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let public = match verify {
        true => orgtrail_store::verify_public(&data, &vk, &[]),
        false => Default::default(),
    };
    let public_secs = t.elapsed().as_secs_f64();
    if !full.ok() || !public.ok() {
        bail!(
            "verification of the benchmark store failed: {:?} {:?}",
            full.problems.first(),
            public.problems.first()
        );
    }

    // Append-time hashing: the content hash (which dedup needs anyway), then what the Merkle
    // log adds on top of it: the leaf hash and the tree. The events are generated again, in
    // chunks, outside the timed parts.
    let (content_secs, hashing_secs, root_byte) = match verify {
        true => bench_scale::time_hashing(a.gen_config()),
        false => (0.0, 0.0, 0),
    };
    let sha_secs = content_secs;
    sink ^= root_byte;

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
    println!("open: {:.3} s for {} events", open_secs, stats.events);
    print_usage(&usage, stats.events);
    println!(
        "generation of the events (on a thread of its own, beside the import): {:.2} s",
        imported.gen_secs
    );
    let mut figures = Figures::default();
    figures.add("stored events", stats.events as f64);
    figures.add("import, events/s", n / import_secs);
    figures.memory(rss_import, rss_open);
    figures.window_peaks(&peaks);
    figures.add("open, s", open_secs);
    figures.add(
        "disk, bytes per stored event",
        disk as f64 / stats.events.max(1) as f64,
    );
    let mib = |bytes: u64, secs: f64| bytes as f64 / secs / (1024.0 * 1024.0);
    if verify {
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
    }
    for (name, mut lat) in [("inclusion", inclusion), ("consistency", consistency)] {
        lat.sort_by(f64::total_cmp);
        figures.latency(&format!("{name} proof"), &lat);
        println!(
            "{name} proof in a log of {size}: n={} p50={:.3} ms p99={:.3} ms",
            lat.len(),
            percentile(&lat, 0.50),
            percentile(&lat, 0.99)
        );
    }
    std::hint::black_box(sink);
    print_lookups(kinds, &mut figures);
    for l in stats_lines {
        println!("{l}");
    }
    if a.figures {
        figures.print_line()?;
    }
    if remove {
        let _ = std::fs::remove_dir_all(&root);
    }
    Ok(ExitCode::SUCCESS)
}

/// Latencies (ms) and hits of one kind of lookup.
type Lookups = Vec<(&'static str, Vec<f64>, usize)>;

/// Times selective lookups of every kind, with values taken from the sampled events (spread
/// over the store).
fn time_lookups(ledger: &Ledger, sample: &[Vec<u8>]) -> anyhow::Result<Lookups> {
    let mut kinds: Lookups = vec![
        ("username", Vec::new(), 0),
        ("resource-name", Vec::new(), 0),
        ("event-id", Vec::new(), 0),
        ("username+event-name, last 24h", Vec::new(), 0),
        ("time range, 1 h, no filter", Vec::new(), 0),
    ];
    for bytes in sample {
        let ev = CloudTrailEvent::parse(bytes.clone())?;
        let f = ev.fields();
        let queries: [Option<Query>; 5] = [
            f.username().map(|u| Query {
                filters: vec![(Attr::Username, u.to_string())],
                ..Query::default()
            }),
            f.resource_names.first().map(|r| Query {
                filters: vec![(Attr::ResourceName, r.to_string())],
                ..Query::default()
            }),
            Some(Query {
                event_id: Some(f.event_id.clone()),
                ..Query::default()
            }),
            f.username().map(|u| Query {
                filters: vec![
                    (Attr::Username, u.to_string()),
                    (Attr::EventName, f.event_name.to_string()),
                ],
                start: Some(orgtrail_core::Timestamp(f.event_time.millis() - 86_400_000)),
                end: Some(f.event_time),
                ..Query::default()
            }),
            Some(Query {
                start: Some(orgtrail_core::Timestamp(f.event_time.millis() - 3_600_000)),
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
    Ok(kinds)
}

fn print_lookups(kinds: Lookups, figures: &mut Figures) {
    for (name, mut lat, hits) in kinds {
        lat.sort_by(f64::total_cmp);
        figures.latency(&format!("lookup {name}"), &lat);
        println!(
            "lookup {name}: n={} p50={:.3} ms p99={:.3} ms max={:.3} ms (mean {:.1} events per page)",
            lat.len(),
            percentile(&lat, 0.50),
            percentile(&lat, 0.99),
            lat.last().copied().unwrap_or(0.0),
            hits as f64 / lat.len().max(1) as f64
        );
    }
}

/// `--reopen --stats`: `stats` alone, on the store of a previous run in `--dir`, opened
/// read-only so that runs of different builds leave it as it is.
fn reopen_stats(a: StoreArgs) -> anyhow::Result<ExitCode> {
    let root = a.dir.clone().context("--reopen needs --dir")?;
    let started = Instant::now();
    let ledger = crate::cmd::keys::open_read_only(&root.join("keys"), &root.join("data"))?;
    println!(
        "open (read-only): {:.3} s for {} events",
        started.elapsed().as_secs_f64(),
        ledger.stats().events
    );
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1000.0;
    for (what, by) in [
        (
            "by account,eventName",
            &[Group::Account, Group::EventName][..],
        ),
        ("by user", &[Group::User][..]),
    ] {
        let q = Query::default();
        let t = Instant::now();
        let first = ledger.count_at_most(&q, by, 20, 0)?;
        let cold = ms(t);
        let mut warm = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            let c = ledger.count_at_most(&q, by, 20, 0)?;
            warm.push(ms(t));
            if c.total != first.total || c.groups != first.groups {
                bail!("stats from the counters changed between calls");
            }
        }
        warm.sort_by(f64::total_cmp);
        println!(
            "stats over everything, {what} ({} events): {cold:.2} ms cold, p50 {:.2} ms warm",
            first.total,
            percentile(&warm, 0.5)
        );
    }
    ledger.close()?;
    Ok(ExitCode::SUCCESS)
}

/// `--reopen`: the lookups alone, on the store of a previous run in `--dir`.
fn reopen(a: StoreArgs) -> anyhow::Result<ExitCode> {
    let root = a.dir.clone().context("--reopen needs --dir")?;
    let provider = Arc::new(LocalKeyProvider::load(&root.join("keys"))?);
    // Generating the sample again means generating every event before its last one: kept in
    // the directory for the next `--reopen`.
    let kept = root.join(format!("lookup-sample-{}.jsonl", a.lookups));
    let sample: Vec<Vec<u8>> = match std::fs::read(&kept) {
        Ok(b) => b
            .split(|c| *c == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect(),
        Err(_) => {
            let t = Instant::now();
            let sample = bench_scale::sample_generated(a.gen_config(), a.lookups);
            println!(
                "sample of {} events generated again in {:.1} s",
                sample.len(),
                t.elapsed().as_secs_f64()
            );
            std::fs::write(&kept, sample.join(&b'\n'))
                .with_context(|| format!("writing {}", kept.display()))?;
            sample
        }
    };
    let started = Instant::now();
    let ledger = Ledger::open(&root.join("data"), provider, LedgerConfig::default())?;
    println!(
        "open: {:.3} s for {} events",
        started.elapsed().as_secs_f64(),
        ledger.stats().events
    );
    let kinds = time_lookups(&ledger, &sample)?;
    ledger.close()?;
    print_lookups(kinds, &mut Figures::default());
    Ok(ExitCode::SUCCESS)
}

/// `stats` latency from the counters (the first call, with the counters' cache cold, then the
/// median of 20 warm calls), beside the decrypting scan it replaces, measured in the same run:
/// over everything, and with one eventName filter.
fn stats_latency(ledger: &Ledger, raw: &[Vec<u8>]) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    let (deltas, merged, bytes) = ledger.counter_footprint()?;
    let events = ledger.stats().events.max(1);
    lines.push(format!(
        "counters on disk: {merged} merged hours + {deltas} deltas, {bytes} bytes ({:.1} bytes per stored event)",
        bytes as f64 / events as f64
    ));
    let name = match raw.first() {
        Some(b) => CloudTrailEvent::parse(b.clone())?
            .fields()
            .event_name
            .to_string(),
        None => return Ok(lines),
    };
    let by = [Group::Account, Group::EventName];
    let cases = [
        ("over everything, by account,eventName", Query::default()),
        (
            "eventName filter, by account,eventName",
            Query {
                filters: vec![(Attr::EventName, name)],
                ..Query::default()
            },
        ),
    ];
    for (what, q) in cases {
        let ms = |t: Instant| t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        let first = ledger.count_at_most(&q, &by, 20, 0)?;
        let cold = ms(t);
        let mut warm = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            let c = ledger.count_at_most(&q, &by, 20, 0)?;
            warm.push(ms(t));
            if c.total != first.total {
                bail!("stats from the counters changed between calls");
            }
        }
        warm.sort_by(f64::total_cmp);
        let t = Instant::now();
        let scanned = ledger.count_by_scan(&q, &by, 20, usize::MAX)?;
        let scan = ms(t);
        if scanned.total != first.total || scanned.groups != first.groups {
            bail!(
                "stats from the counters ({}) disagree with the decrypting scan ({})",
                first.total,
                scanned.total
            );
        }
        lines.push(format!(
            "stats {what} ({} events): counters {cold:.2} ms cold, p50 {:.2} ms warm; decrypting scan (count_by_scan, the old count) {scan:.0} ms = {:.0}x the cold figure",
            first.total,
            percentile(&warm, 0.5),
            scan / cold.max(0.001)
        ));
    }
    Ok(lines)
}

impl StoreArgs {
    fn gen_config(&self) -> GenConfig {
        GenConfig {
            count: self.events,
            accounts: self.accounts,
            seed: self.seed,
            dup_rate: self.dup_rate,
            ..GenConfig::default()
        }
    }

    /// The flags each child of `--sizes` repeats.
    fn child_args(&self) -> Vec<String> {
        let mut args = vec![
            "--dup-rate".into(),
            self.dup_rate.to_string(),
            "--accounts".into(),
            self.accounts.to_string(),
            "--seed".into(),
            self.seed.to_string(),
            "--lookups".into(),
            self.lookups.to_string(),
            "--rss-window".into(),
            self.rss_window.to_string(),
        ];
        if self.no_verify {
            args.push("--no-verify".into());
        }
        args
    }
}
