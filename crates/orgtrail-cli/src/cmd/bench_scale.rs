//! `orgtrail bench store` at scale: events generated while they are imported (nothing holds
//! them all), the process's resident memory, the figures of one run as a line a parent process
//! reads, and `--sizes`, which runs one child process per size and prints their figures side by
//! side.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{Context, bail};
use orgtrail_core::{AccountId, CloudTrailEvent};
use orgtrail_gen::{GenConfig, Generator};
use orgtrail_store::Ledger;

use crate::cmd::bench_peaks::Peaks;
use crate::cmd::ingest::Totals;

/// Generated events handed from the generator's thread to the importing one at a time.
const CHUNK: usize = 1000;

/// The process's resident memory, from `/proc/self/status` (KiB; zero where there is none).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Rss {
    /// VmHWM: the peak so far.
    pub(crate) peak_kib: u64,
    /// VmRSS: now.
    pub(crate) now_kib: u64,
}

impl Rss {
    pub(crate) fn now() -> Rss {
        let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
            return Rss::default();
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        Rss {
            peak_kib: field("VmHWM:"),
            now_kib: field("VmRSS:"),
        }
    }
}

/// What [`import_generated`] did.
pub(crate) struct Imported {
    pub(crate) totals: Totals,
    /// About `lookups` events spread evenly over the input, kept to draw lookups from.
    pub(crate) sample: Vec<Vec<u8>>,
    /// Bytes of JSON imported, one newline per event included.
    pub(crate) raw_bytes: u64,
    /// Seconds the generator's thread spent generating (it runs beside the import and takes
    /// its share of the cores).
    pub(crate) gen_secs: f64,
}

/// Imports `cfg.count` generated events into `ledger` through the bulk ingest pipeline while a
/// thread of its own generates them, a chunk at a time: memory holds a few chunks, not the
/// input. `on_ack(first, last)` is told of each batch once it is durable (see
/// [`crate::cmd::ingest::ingest`]).
pub(crate) fn import_generated(
    ledger: &Ledger,
    cfg: GenConfig,
    lookups: usize,
    on_ack: &(dyn Fn(u64, u64) + Sync),
) -> anyhow::Result<Imported> {
    let step = sample_step(&cfg, lookups);
    let (tx, rx) = mpsc::sync_channel::<Vec<Vec<u8>>>(4);
    std::thread::scope(|scope| {
        let generator = scope.spawn(move || {
            let mut events = Generator::new(cfg);
            let mut secs = 0.0;
            loop {
                let t = Instant::now();
                let chunk: Vec<Vec<u8>> = events.by_ref().take(CHUNK).collect();
                secs += t.elapsed().as_secs_f64();
                // A send fails when the importer stopped early; its error is the one reported.
                if chunk.is_empty() || tx.send(chunk).is_err() {
                    return secs;
                }
            }
        });
        let mut sample = Vec::with_capacity(lookups);
        let mut raw_bytes = 0u64;
        let mut ordinal = 0u64;
        // Taken (and dropped at the end of the feed, early or not) so that the generator's
        // next send fails instead of blocking once the import stopped.
        let mut rx = Some(rx);
        let totals =
            crate::cmd::ingest::ingest(ledger, crate::cmd::ingest::BATCH, on_ack, |push| {
                for chunk in rx.take().into_iter().flatten() {
                    for bytes in chunk {
                        raw_bytes += bytes.len() as u64 + 1;
                        if ordinal.is_multiple_of(step) && sample.len() < lookups {
                            sample.push(bytes.clone());
                        }
                        ordinal += 1;
                        let event = CloudTrailEvent::parse(bytes)?;
                        let owner: AccountId = event
                            .fields()
                            .recipient_account_id
                            .as_deref()
                            .unwrap_or_default()
                            .parse()?;
                        push(event, owner)?;
                    }
                }
                Ok(())
            });
        let gen_secs = generator
            .join()
            .map_err(|_| anyhow::anyhow!("the event generator panicked"))?;
        Ok(Imported {
            totals: totals?,
            sample,
            raw_bytes,
            gen_secs,
        })
    })
}

/// Every how many input events [`import_generated`] keeps one in its sample.
fn sample_step(cfg: &GenConfig, lookups: usize) -> u64 {
    (cfg.count / lookups.max(1) as u64).max(1)
}

/// The sample [`import_generated`] keeps of the same events, generated again (up to the last
/// one it keeps) without importing anything.
pub(crate) fn sample_generated(cfg: GenConfig, lookups: usize) -> Vec<Vec<u8>> {
    let step = sample_step(&cfg, lookups);
    Generator::new(cfg)
        .step_by(step as usize)
        .take(lookups)
        .collect()
}

/// Times the append-time hashing over the same events, generated again a chunk at a time
/// (generation is not timed): the content hashes (SHA-256 of each event's bytes, which dedup
/// needs anyway), then the Merkle leaves and the tree on top of them. Returns both times and a
/// byte of the root (so that nothing is optimised away).
pub(crate) fn time_hashing(cfg: GenConfig) -> (f64, f64, u8) {
    let mut events = Generator::new(cfg);
    let mut frontier = orgtrail_crypto::merkle::Frontier::new();
    let (mut content_secs, mut tree_secs) = (0.0, 0.0);
    let mut seq = 0u64;
    loop {
        let chunk: Vec<Vec<u8>> = events.by_ref().take(10 * CHUNK).collect();
        if chunk.is_empty() {
            break;
        }
        let t = Instant::now();
        let contents: Vec<[u8; 32]> = chunk
            .iter()
            .map(|r| orgtrail_crypto::hash::sha256(r))
            .collect();
        content_secs += t.elapsed().as_secs_f64();
        let t = Instant::now();
        for h in &contents {
            seq += 1;
            frontier.push(orgtrail_store::event_leaf(
                seq,
                "123456789012",
                "00000000-0000-4000-8000-000000000000",
                h,
            ));
        }
        tree_secs += t.elapsed().as_secs_f64();
    }
    (content_secs, tree_secs, frontier.root()[0])
}

/// The figures of one run, in print order: (name with its unit, value).
#[derive(Debug, Default)]
pub(crate) struct Figures(pub(crate) Vec<(String, f64)>);

impl Figures {
    pub(crate) fn add(&mut self, name: impl Into<String>, value: f64) {
        let v = if value.is_finite() { value } else { 0.0 };
        self.0.push((name.into(), v));
    }

    /// p50 and p99 of latencies (ms), sorted.
    pub(crate) fn latency(&mut self, name: &str, sorted_ms: &[f64]) {
        self.add(
            format!("{name} p50, ms"),
            crate::cmd::bench::percentile(sorted_ms, 0.50),
        );
        self.add(
            format!("{name} p99, ms"),
            crate::cmd::bench::percentile(sorted_ms, 0.99),
        );
    }

    /// Resident memory: the peak during the import, after it, and after a reopen.
    pub(crate) fn memory(&mut self, import: Rss, reopened: Rss) {
        let mib = |kib: u64| kib as f64 / 1024.0;
        println!(
            "memory: peak RSS (VmHWM) {:.1} MiB during the import, RSS {:.1} MiB after it, {:.1} MiB after close and reopen (peak by then {:.1} MiB)",
            mib(import.peak_kib),
            mib(import.now_kib),
            mib(reopened.now_kib),
            mib(reopened.peak_kib),
        );
        self.add("peak RSS during import, MiB", mib(import.peak_kib));
        self.add("RSS after import, MiB", mib(import.now_kib));
        self.add("RSS after reopen, MiB", mib(reopened.now_kib));
    }

    /// The first window's peak RSS, the last's and their ratio (see [`Peaks`]), when measured.
    pub(crate) fn window_peaks(&mut self, peaks: &Peaks) {
        let mib = |kib: u64| kib as f64 / 1024.0;
        if let Some((first, last)) = peaks.first_or_only() {
            self.add(PEAK_FIRST, mib(first));
            self.add(PEAK_LAST, mib(last));
            self.add(PEAK_RATIO, last as f64 / first.max(1) as f64);
        }
        if let Some(((r0, c0), (r1, c1))) = peaks.first_and_last_rate() {
            self.add(RATE_FIRST, r0);
            self.add(RATE_LAST, r1);
            self.add(CPU_FIRST, c0);
            self.add(CPU_LAST, c1);
        }
    }

    /// The `figures [[name, value], ..]` line that `--sizes` reads from its children.
    pub(crate) fn print_line(&self) -> anyhow::Result<()> {
        println!("{FIGURES}{}", serde_json::to_string(&self.0)?);
        Ok(())
    }

    fn get(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|(n, _)| n == name).map(|&(_, v)| v)
    }
}

const FIGURES: &str = "figures ";
const PEAK_FIRST: &str = "peak RSS, first window of import, MiB";
const PEAK_LAST: &str = "peak RSS, last window of import, MiB";
const PEAK_RATIO: &str = "peak RSS, last window / first";
const RATE_FIRST: &str = "import, first window, events/s";
const RATE_LAST: &str = "import, last window, events/s";
const CPU_FIRST: &str = "CPU, first window, us per event";
const CPU_LAST: &str = "CPU, last window, us per event";

/// `bench store --sizes`: one child process per size (so that each has its own peak RSS and
/// allocator), their output passed through, then a table of every size's figures and the
/// ratio of the last size's to the first's, and the targets beside them.
pub(crate) fn run(args: &[String], sizes: &[u64], dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    if sizes.is_empty() || sizes.contains(&0) {
        bail!("--sizes needs one or more sizes above zero");
    }
    let (base, remove_base) = match dir {
        Some(d) => {
            if d.exists() {
                bail!("{} exists; give a new directory", d.display());
            }
            (d.to_path_buf(), false)
        }
        None => (
            std::env::temp_dir().join(format!("orgtrail-bench-sizes-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    let exe = std::env::current_exe().context("finding the orgtrail binary")?;
    let mut all = Vec::new();
    for &n in sizes {
        println!("== {n} events ==");
        let store = base.join(n.to_string());
        let mut child = Command::new(&exe)
            .args(["bench", "store", "--figures", "--events", &n.to_string()])
            .args(args)
            .arg("--dir")
            .arg(&store)
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let mut figures = None;
        if let Some(out) = child.stdout.take() {
            for line in BufReader::new(out).lines() {
                let line = line?;
                match line.strip_prefix(FIGURES) {
                    Some(json) => figures = Some(Figures(serde_json::from_str(json)?)),
                    None => println!("{line}"),
                }
            }
        }
        let status = child.wait()?;
        std::fs::remove_dir_all(&store).with_context(|| format!("removing {}", store.display()))?;
        let Some(figures) = figures.filter(|_| status.success()) else {
            bail!("the run of {n} events failed ({status})");
        };
        all.push((n, figures));
    }
    if remove_base {
        let _ = std::fs::remove_dir_all(&base);
    }
    print_side_by_side(&all);
    Ok(ExitCode::SUCCESS)
}

fn fmt(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn print_side_by_side(all: &[(u64, Figures)]) {
    let (Some((first_n, first)), Some((last_n, last))) = (all.first(), all.last()) else {
        return;
    };
    println!();
    let mut head = format!("{:<44}", "events");
    for (n, _) in all {
        head.push_str(&format!(" {n:>12}"));
    }
    head.push_str(&format!(" {:>10}", format!("{last_n}/{first_n}")));
    println!("{head}");
    for (name, v0) in &first.0 {
        let mut row = format!("{name:<44}");
        for (_, f) in all {
            row.push_str(&format!(" {:>12}", f.get(name).map_or("-".into(), fmt)));
        }
        if let Some(v) = last.get(name).filter(|_| *v0 != 0.0) {
            row.push_str(&format!(" {:>10.2}", v / v0));
        }
        println!("{row}");
    }
    let ratio = |name: &str| Some(last.get(name)? / first.get(name).filter(|v| *v != 0.0)?);
    println!();
    println!("targets (issue 12), at {last_n} against {first_n} events:");
    if let Some(r) = ratio("peak RSS during import, MiB") {
        println!(
            "  peak RSS {} MiB (<= 256 MiB), {r:.2}x the smaller size's (<= 1.10x)",
            last.get("peak RSS during import, MiB")
                .map_or("-".into(), fmt)
        );
    }
    if let (Some(first), Some(last_w), Some(r)) = (
        last.get(PEAK_FIRST),
        last.get(PEAK_LAST),
        last.get(PEAK_RATIO),
    ) {
        println!(
            "  in the run of {last_n} alone: peak RSS {} MiB over its last window of events, {} MiB over its first, {r:.2}x (<= 1.10x)",
            fmt(last_w),
            fmt(first)
        );
    }
    if let Some(r) = ratio("import, events/s") {
        println!("  import rate {r:.2}x the smaller size's (>= 0.90x)");
    }
    // The same comparison inside the larger run: its whole import's rate against the rate of
    // its own first window (as many events as the smaller size has when the window is that
    // size), which two runs minutes apart cannot separate from the machine's drift.
    if let (Some(all), Some(r0), Some(r1), Some(c0), Some(c1)) = (
        last.get("import, events/s"),
        last.get(RATE_FIRST),
        last.get(RATE_LAST),
        last.get(CPU_FIRST),
        last.get(CPU_LAST),
    ) {
        println!(
            "  in the run of {last_n} alone: import {} events/s over all of it, {} over its first window, {:.2}x (>= 0.90x); its last window {:.2}x its first, at {:.2}x the CPU per event",
            fmt(all),
            fmt(r0),
            all / r0.max(1e-9),
            r1 / r0.max(1e-9),
            c1 / c0.max(1e-9)
        );
    }
    if let Some(open) = last.get("open, s") {
        println!("  open {open:.3} s (<= 1 s)");
    }
    if let Some(b) = last.get("disk, bytes per stored event") {
        println!("  disk {b:.0} bytes per stored event (<= 500)");
    }
}
