//! zstd levels measured against each other for the ledger's records: each event compressed on
//! its own with the store's dictionary (trained as the ledger trains it, on the first `--train`
//! events), with the preparer's frame settings (no dictionary id, no content size). Prints, per
//! level, the compressed bytes per event and the time per event on one core.
//!
//! ```text
//! cargo run --release -p orgtrail-store --example zstd_levels -- [--events 100000] [--seed 7]
//!     [--train 4000] [--levels -5,-3,-1,1,2,3]
//! ```

// A measurement tool: a failure is a bug of the tool, reported by a panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use orgtrail_gen::{GenConfig, Generator};

const PASSES: usize = 5;

/// This thread's CPU time (user and system), from `/proc/thread-self/stat` (clock ticks of
/// 10 ms).
fn thread_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    // The fields after the command name (in parentheses, which may hold spaces).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}

fn main() {
    let mut events = 100_000u64;
    let mut seed = 7u64;
    // Events the dictionary is trained on (the ledger's `dict_train_after`).
    let mut train_n = 4000usize;
    let mut levels: Vec<String> = ["-5", "-3", "-1", "1", "2", "3"].map(String::from).to_vec();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().expect("a value after each flag");
        match a.as_str() {
            "--events" => events = v.parse().unwrap(),
            "--seed" => seed = v.parse().unwrap(),
            "--train" => train_n = v.parse().unwrap(),
            "--levels" => levels = v.split(',').map(String::from).collect(),
            other => panic!("unknown flag {other}"),
        }
    }
    let all: Vec<Vec<u8>> = Generator::new(GenConfig {
        count: events + train_n as u64,
        accounts: 20,
        seed,
        ..GenConfig::default()
    })
    .collect();
    let (train, test) = all.split_at(train_n);
    let (t, cpu) = (Instant::now(), thread_cpu_secs());
    let dict = zstd::dict::from_samples(train, 112_640).unwrap();
    println!(
        "training on {train_n} events: {:.2} s CPU ({:.2} s wall)",
        thread_cpu_secs() - cpu,
        t.elapsed().as_secs_f64()
    );
    let raw: usize = test.iter().map(Vec::len).sum();
    println!(
        "{} events, {:.0} bytes each before compression",
        test.len(),
        raw as f64 / test.len() as f64
    );
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(1 << 20));
    for spec in levels {
        // LEVEL or LEVEL/HASHLOG/CHAINLOG (the logs also size the dictionary's tables); a
        // leading `n`: without the dictionary.
        let (use_dict, levels) = match spec.strip_prefix('n') {
            Some(rest) => (false, rest),
            None => (true, spec.as_str()),
        };
        let parts: Vec<i32> = levels.split('/').map(|p| p.parse().unwrap()).collect();
        let level = parts[0];
        let mut c = zstd::bulk::Compressor::new(level).unwrap();
        if let [_, hash, chain] = parts[..] {
            c.set_parameter(zstd::zstd_safe::CParameter::HashLog(hash as u32))
                .unwrap();
            c.set_parameter(zstd::zstd_safe::CParameter::ChainLog(chain as u32))
                .unwrap();
        }
        c.set_dictionary(level, if use_dict { &dict } else { &[] })
            .unwrap();
        c.set_parameter(zstd::zstd_safe::CParameter::DictIdFlag(false))
            .unwrap();
        c.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(false))
            .unwrap();
        // The first pass warms up; then the thread's CPU time over `PASSES` passes (the
        // machine may be shared: CPU time varies less with the load than the clock).
        let mut bytes = 0usize;
        for e in test {
            out.clear();
            bytes += c.compress_to_buffer(e, &mut out).unwrap();
        }
        let (t, cpu) = (Instant::now(), thread_cpu_secs());
        for _ in 0..PASSES {
            for e in test {
                out.clear();
                c.compress_to_buffer(e, &mut out).unwrap();
            }
        }
        let n = (test.len() * PASSES) as f64;
        println!(
            "level {spec:>9}: {:6.1} bytes/event, {:5.2} µs CPU/event ({:5.2} µs wall)",
            bytes as f64 / test.len() as f64,
            (thread_cpu_secs() - cpu) * 1e6 / n,
            t.elapsed().as_secs_f64() * 1e6 / n,
        );
    }
}
