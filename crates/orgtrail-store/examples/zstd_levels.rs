//! zstd levels measured against each other for the ledger's records: each event compressed on
//! its own with the store's dictionary (trained as the ledger trains it, on the first `--train`
//! events), with the preparer's frame settings (no dictionary id, no content size). Prints, per
//! level, the compressed bytes per event and the time per event on one core.
//!
//! ```text
//! cargo run --release -p orgtrail-store --example zstd_levels -- [--events 100000] [--seed 7]
//!     [--train 4000] [--levels -5,-3,-1,1,2,3] [--blocks 1,4,16]
//! ```
//!
//! `--blocks K,...` also measures each level with the events compressed K at a time, one frame
//! per K consecutive events of one account (a record block compressed whole instead of each
//! record on its own), and prints beside it the time to decompress one whole block (what a
//! lookup of one event would then pay) against decompressing one event's frame. A level
//! written `nLEVEL` compresses without the dictionary, in either mode; `DICT_BYTES` in the
//! environment sizes the trained dictionary (default 112,640, the ledger's).

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
    let mut blocks: Vec<usize> = vec![1];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().expect("a value after each flag");
        match a.as_str() {
            "--events" => events = v.parse().unwrap(),
            "--seed" => seed = v.parse().unwrap(),
            "--train" => train_n = v.parse().unwrap(),
            "--levels" => levels = v.split(',').map(String::from).collect(),
            "--blocks" => blocks = v.split(',').map(|b| b.parse().unwrap()).collect(),
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
    let dict_bytes = std::env::var("DICT_BYTES").map_or(112_640, |v| v.parse().unwrap());
    let dict = zstd::dict::from_samples(train, dict_bytes).unwrap();
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
    for &k in &blocks {
        if k > 1 {
            block_mode(&dict, test, k, &levels);
        }
    }
    if !blocks.contains(&1) {
        return;
    }
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
        let mut frames = Vec::with_capacity(test.len());
        for e in test {
            out.clear();
            bytes += c.compress_to_buffer(e, &mut out).unwrap();
            frames.push(out.clone());
        }
        let (t, cpu) = (Instant::now(), thread_cpu_secs());
        for _ in 0..PASSES {
            for e in test {
                out.clear();
                c.compress_to_buffer(e, &mut out).unwrap();
            }
        }
        let n = (test.len() * PASSES) as f64;
        let (per_event, wall) = (
            (thread_cpu_secs() - cpu) * 1e6 / n,
            t.elapsed().as_secs_f64() * 1e6 / n,
        );
        let mut d =
            zstd::bulk::Decompressor::with_dictionary(if use_dict { &dict } else { &[] }).unwrap();
        let mut back = Vec::with_capacity(1 << 20);
        let t = Instant::now();
        for f in &frames {
            back.clear();
            d.decompress_to_buffer(f, &mut back).unwrap();
        }
        println!(
            "level {spec:>9}: {:6.1} bytes/event, {per_event:5.2} µs CPU/event ({wall:5.2} µs wall), {:5.2} µs to decompress one",
            bytes as f64 / test.len() as f64,
            t.elapsed().as_secs_f64() * 1e6 / frames.len() as f64,
        );
    }
}

/// The account an event belongs to (its `recipientAccountId`), found without parsing.
fn account_of(e: &[u8]) -> &[u8] {
    let key = b"\"recipientAccountId\":\"";
    let at = e.windows(key.len()).position(|w| w == key).unwrap() + key.len();
    &e[at..at + 12]
}

/// Each level with `k` events of one account per frame (the writer's record blocks: each
/// account's events in arrival order, cut every `k`), with the frame settings of the
/// preparer. Prints bytes and CPU per event, and the time to decompress a whole block.
fn block_mode(dict: &[u8], test: &[Vec<u8>], k: usize, levels: &[String]) {
    let mut by_account: std::collections::BTreeMap<&[u8], Vec<&[u8]>> = Default::default();
    for e in test {
        by_account.entry(account_of(e)).or_default().push(e);
    }
    // Each block's plaintext: the LEB128 lengths, then the events.
    let mut plains: Vec<Vec<u8>> = Vec::new();
    for evs in by_account.values() {
        for chunk in evs.chunks(k) {
            let mut p = Vec::new();
            for e in chunk {
                let mut n = e.len();
                while n >= 0x80 {
                    p.push((n as u8 & 0x7f) | 0x80);
                    n >>= 7;
                }
                p.push(n as u8);
            }
            for e in chunk {
                p.extend_from_slice(e);
            }
            plains.push(p);
        }
    }
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(k << 16));
    for spec in levels {
        // As in the single-event mode: a leading `n` compresses without the dictionary.
        let (dict, levels) = match spec.strip_prefix('n') {
            Some(rest) => (&[][..], rest),
            None => (dict, spec.as_str()),
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
        c.set_dictionary(level, dict).unwrap();
        if std::env::var_os("ATTACH").is_some() {
            c.set_parameter(zstd::zstd_safe::CParameter::ForceAttachDict(
                zstd::zstd_safe::DictAttachPref::ForceAttach,
            ))
            .unwrap();
        }
        c.set_parameter(zstd::zstd_safe::CParameter::DictIdFlag(false))
            .unwrap();
        c.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(false))
            .unwrap();
        let mut frames = Vec::with_capacity(plains.len());
        for p in &plains {
            out.clear();
            c.compress_to_buffer(p, &mut out).unwrap();
            frames.push(out.clone());
        }
        let bytes: usize = frames.iter().map(Vec::len).sum();
        let cpu = thread_cpu_secs();
        for _ in 0..PASSES {
            for p in &plains {
                out.clear();
                c.compress_to_buffer(p, &mut out).unwrap();
            }
        }
        let per_event = (thread_cpu_secs() - cpu) * 1e6 / (test.len() * PASSES) as f64;
        let mut d = zstd::bulk::Decompressor::with_dictionary(dict).unwrap();
        let mut back = Vec::with_capacity(k * (1 << 16));
        let t = Instant::now();
        for _ in 0..PASSES {
            for f in &frames {
                back.clear();
                d.decompress_to_buffer(f, &mut back).unwrap();
            }
        }
        let per_block = t.elapsed().as_secs_f64() * 1e6 / (frames.len() * PASSES) as f64;
        println!(
            "level {spec:>3} block {k:>3}: {:6.1} bytes/event, {:5.2} µs CPU/event, {:6.2} µs to decompress a block",
            bytes as f64 / test.len() as f64,
            per_event,
            per_block,
        );
    }
}
