//! Measures the detector's false-positive rate per key-day on steady Poisson traffic with the
//! default configuration: `cargo run --release -p orgtrail-insights --example false_positives
//! [KEYS_PER_RATE] [DAYS] [SEEDS]` (defaults 10, 7, 3).

#[path = "../tests/common/mod.rs"]
mod common;

use common::{STEADY_RATES, steady};

fn arg(n: usize, default: f64) -> f64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let per_rate = arg(1, 10.0) as usize;
    let days = arg(2, 7.0);
    let seeds = arg(3, 3.0) as u64;
    let (mut key_days, mut starts, mut calls) = (0.0, 0u64, 0u64);
    for seed in 0..seeds {
        let o = steady(seed, days, &STEADY_RATES, per_rate);
        println!(
            "seed {seed}: {} keys x {days} days, {} calls, {} starts",
            o.keys, o.calls, o.starts
        );
        key_days += o.keys as f64 * o.days;
        starts += o.starts;
        calls += o.calls;
    }
    println!(
        "total: {key_days:.0} key-days, {calls} calls, {starts} starts: {:.6} false positives per key-day \
         (rates per minute {STEADY_RATES:?}; the model's bound is 1e-7 per key-minute, 0.000144 per key-day)",
        starts as f64 / key_days
    );
}
