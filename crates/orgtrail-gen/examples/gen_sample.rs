//! Prints generated events as JSON lines and reports throughput on stderr.
//!
//! `cargo run --release -p orgtrail-gen --example gen_sample -- [COUNT] [SEED] [DUP_RATE]`

use std::io::Write as _;
use std::time::Instant;

use orgtrail_gen::{GenConfig, Generator};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let count = args.next().and_then(|s| s.parse().ok()).unwrap_or(10);
    let seed = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let dup_rate = args.next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let quiet = std::env::var_os("QUIET").is_some();
    let cfg = GenConfig {
        count,
        seed,
        dup_rate,
        ..GenConfig::default()
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let start = Instant::now();
    let mut bytes = 0usize;
    for ev in Generator::new(cfg) {
        bytes += ev.len();
        if !quiet {
            out.write_all(&ev)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{count} events in {secs:.3}s: {:.0} events/s, mean size {:.0} bytes",
        count as f64 / secs,
        bytes as f64 / count.max(1) as f64
    );
    Ok(())
}
