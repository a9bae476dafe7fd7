//! Record formats measured against each other on the generator's events: bytes per event,
//! the writer's encode rate on one core, and the latency of reading one event back.
//!
//! ```text
//! cargo run --release -p orgtrail-store --example record_formats -- [--events 200000]
//!     [--accounts 20] [--seed 7] [--group 2048] [--lookups 20000] [--no-sled]
//! ```
//!
//! The first half of the events trains the dictionaries (at most 4,000 samples each, as the
//! ledger does); every figure is measured on the second half, which no dictionary has seen.
//! Events are cut into group commits of `--group` events in arrival order, as the writer
//! receives them. Variants:
//! * `per-record/8`: today's layout. Blocks of 8 consecutive records (any accounts); each
//!   record compressed on its own and sealed on its own: segment (8), dictionary id (4), nonce
//!   (12), length (4), ciphertext and tag (16).
//! * `block/K`: within a group the events of one account get consecutive sequence numbers;
//!   they are cut into blocks of at most K; a block is one zstd frame of
//!   (LEB128 lengths, then the records) sealed once: version (1), count (1), segment (8),
//!   dictionary id (4), nonce (12), ciphertext and tag (16).
//! * dictionaries: one per store, one per account, one per eventSource (sources with fewer
//!   than 200 training samples fall back to the store's).
//!
//! Then some of the layouts are written into a real sled database, one batch and one flush
//! per group with the group's 32-byte Merkle leaf hashes, at several sled segment sizes: the
//! directory's size against the key and value bytes is sled's own overhead.

// A measurement tool: a failure is a bug of the tool, reported by a panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Instant;

use orgtrail_core::CloudTrailEvent;
use orgtrail_crypto::{DataKey, NONCE_LEN};
use orgtrail_gen::{GenConfig, Generator};

const DICT_SIZE: usize = 112_640;
const DICT_SAMPLES: usize = 4000;
const MIN_SOURCE_SAMPLES: usize = 200;

struct Ev {
    account: u32,
    source: u32,
    bytes: Vec<u8>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Dicting {
    Store,
    Account,
    Source,
}

#[derive(Clone, Copy, Debug)]
enum Layout {
    PerRecord {
        block: usize,
    },
    Block {
        k: usize,
    },
    /// Records compressed one by one (zstd frames without dictionary id and content size),
    /// blocks of at most K records of one account sealed once.
    Sealed {
        k: usize,
    },
}

#[derive(Clone, Copy, Debug)]
struct Variant {
    layout: Layout,
    dict: Dicting,
    level: i32,
}

impl Variant {
    fn name(&self) -> String {
        let l = match self.layout {
            Layout::PerRecord { block } => format!("per-record/{block}"),
            Layout::Block { k } => format!("block/{k}"),
            Layout::Sealed { k } => format!("sealed/{k}"),
        };
        let d = match self.dict {
            Dicting::Store => "store",
            Dicting::Account => "account",
            Dicting::Source => "source",
        };
        format!("{l} dict={d} zstd-{}", self.level)
    }
}

/// Trained dictionaries: id -> bytes; which id serves which account / source.
struct Dicts {
    raw: Vec<Vec<u8>>,
    store: u32,
    by_account: HashMap<u32, u32>,
    by_source: HashMap<u32, u32>,
}

impl Dicts {
    fn id(&self, d: Dicting, ev: &Ev) -> u32 {
        match d {
            Dicting::Store => self.store,
            Dicting::Account => *self.by_account.get(&ev.account).unwrap_or(&self.store),
            Dicting::Source => *self.by_source.get(&ev.source).unwrap_or(&self.store),
        }
    }
    fn bytes_for(&self, d: Dicting) -> usize {
        let ids: Vec<u32> = match d {
            Dicting::Store => vec![self.store],
            Dicting::Account => self.by_account.values().copied().collect(),
            Dicting::Source => {
                let mut v: Vec<u32> = self.by_source.values().copied().collect();
                v.push(self.store);
                v
            }
        };
        ids.iter().map(|i| self.raw[*i as usize].len()).sum()
    }
}

fn train(samples: &[&[u8]]) -> Vec<u8> {
    zstd::dict::from_samples(samples, DICT_SIZE).expect("dictionary training")
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(b: &[u8], pos: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let x = b[*pos];
        *pos += 1;
        v |= u64::from(x & 0x7f) << shift;
        if x & 0x80 == 0 {
            return v;
        }
        shift += 7;
    }
}

fn rec_aad(segment: u64, seq: u64, account: u32, dict: u32) -> Vec<u8> {
    let mut a = b"orgtrail/rec/v1".to_vec();
    a.extend_from_slice(&segment.to_be_bytes());
    a.extend_from_slice(&seq.to_be_bytes());
    a.extend_from_slice(format!("{account:012}").as_bytes());
    a.extend_from_slice(&dict.to_be_bytes());
    a
}

fn block_aad(segment: u64, first: u64, count: u8, account: u32, dict: u32) -> Vec<u8> {
    let mut a = b"orgtrail/blk/v1".to_vec();
    a.extend_from_slice(&segment.to_be_bytes());
    a.extend_from_slice(&first.to_be_bytes());
    a.push(count);
    a.extend_from_slice(format!("{account:012}").as_bytes());
    a.extend_from_slice(&dict.to_be_bytes());
    a
}

struct Encoded {
    /// (first seq, value), in seq order.
    blocks: Vec<(u64, Vec<u8>)>,
    /// seq -> event index, for checking.
    order: Vec<usize>,
    /// Leaf-hash value bytes per group (for the sled runs).
    groups: Vec<(u64, usize, usize)>,
    secs: f64,
}

struct Ctx<'a> {
    evs: &'a [Ev],
    dicts: &'a Dicts,
    keys: &'a [DataKey],
}

fn compressors(dicts: &Dicts, level: i32, lean: bool) -> Vec<zstd::bulk::Compressor<'static>> {
    dicts
        .raw
        .iter()
        .map(|d| {
            let mut c = zstd::bulk::Compressor::with_dictionary(level, d).expect("compressor");
            if lean {
                use zstd::zstd_safe::CParameter;
                c.set_parameter(CParameter::DictIdFlag(false))
                    .expect("param");
                c.set_parameter(CParameter::ContentSizeFlag(false))
                    .expect("param");
            }
            c
        })
        .collect()
}

fn encode(ctx: &Ctx<'_>, eval: &[usize], group: usize, v: Variant) -> Encoded {
    let mut comps = compressors(
        ctx.dicts,
        v.level,
        matches!(v.layout, Layout::Sealed { .. }),
    );
    let started = Instant::now();
    let mut blocks = Vec::new();
    let mut order = Vec::with_capacity(eval.len());
    let mut groups = Vec::new();
    let mut seq = 1u64;
    for g in eval.chunks(group) {
        let group_first = seq;
        match v.layout {
            Layout::PerRecord { block } => {
                for chunk in g.chunks(block) {
                    let first = seq;
                    let mut val = vec![1u8, 0, chunk.len() as u8];
                    for &i in chunk {
                        let ev = &ctx.evs[i];
                        let d = ctx.dicts.id(v.dict, ev);
                        let c = comps[d as usize].compress(&ev.bytes).expect("compress");
                        let segment = u64::from(ev.account) + 1;
                        val.extend_from_slice(&segment.to_be_bytes());
                        val.extend_from_slice(&d.to_be_bytes());
                        let at = val.len();
                        val.extend_from_slice(&[0u8; NONCE_LEN + 4]);
                        let body = val.len();
                        let nonce = ctx.keys[ev.account as usize]
                            .seal_into(&rec_aad(segment, seq, ev.account, d), &c, &mut val)
                            .expect("seal");
                        let len = (val.len() - body) as u32;
                        val[at..at + NONCE_LEN].copy_from_slice(&nonce);
                        val[at + NONCE_LEN..at + NONCE_LEN + 4].copy_from_slice(&len.to_be_bytes());
                        order.push(i);
                        seq += 1;
                    }
                    blocks.push((first, val));
                }
            }
            Layout::Sealed { k } => {
                let mut sorted: Vec<usize> = g.to_vec();
                sorted.sort_by_key(|&i| ctx.evs[i].account);
                let mut plain = Vec::new();
                // Compressed in the preparers (off the writer): done here, same cost.
                for run in sorted.chunk_by(|a, b| ctx.evs[*a].account == ctx.evs[*b].account) {
                    for chunk in run.chunks(k) {
                        let first = seq;
                        let ev0 = &ctx.evs[chunk[0]];
                        let d = ctx.dicts.id(v.dict, ev0);
                        let frames: Vec<Vec<u8>> = chunk
                            .iter()
                            .map(|&i| {
                                comps[d as usize]
                                    .compress(&ctx.evs[i].bytes)
                                    .expect("compress")
                            })
                            .collect();
                        plain.clear();
                        for f in &frames {
                            put_varint(&mut plain, f.len() as u64);
                        }
                        for (f, &i) in frames.iter().zip(chunk) {
                            plain.extend_from_slice(f);
                            order.push(i);
                        }
                        let segment = u64::from(ev0.account) + 1;
                        let count = chunk.len() as u8;
                        let mut val = Vec::with_capacity(26 + plain.len() + 16);
                        val.push(1);
                        val.push(count);
                        val.extend_from_slice(&segment.to_be_bytes());
                        val.extend_from_slice(&d.to_be_bytes());
                        let at = val.len();
                        val.extend_from_slice(&[0u8; NONCE_LEN]);
                        let nonce = ctx.keys[ev0.account as usize]
                            .seal_into(
                                &block_aad(segment, first, count, ev0.account, d),
                                &plain,
                                &mut val,
                            )
                            .expect("seal");
                        val[at..at + NONCE_LEN].copy_from_slice(&nonce);
                        seq += chunk.len() as u64;
                        blocks.push((first, val));
                    }
                }
            }
            Layout::Block { k } => {
                let mut sorted: Vec<usize> = g.to_vec();
                sorted.sort_by_key(|&i| ctx.evs[i].account);
                let mut plain = Vec::new();
                for run in sorted.chunk_by(|a, b| ctx.evs[*a].account == ctx.evs[*b].account) {
                    for chunk in run.chunks(k) {
                        let first = seq;
                        let ev0 = &ctx.evs[chunk[0]];
                        let d = ctx.dicts.id(v.dict, ev0);
                        plain.clear();
                        for &i in chunk {
                            put_varint(&mut plain, ctx.evs[i].bytes.len() as u64);
                        }
                        for &i in chunk {
                            plain.extend_from_slice(&ctx.evs[i].bytes);
                            order.push(i);
                        }
                        let c = comps[d as usize].compress(&plain).expect("compress");
                        let segment = u64::from(ev0.account) + 1;
                        let count = chunk.len() as u8;
                        let mut val = Vec::with_capacity(26 + c.len() + 16);
                        val.push(1);
                        val.push(count);
                        val.extend_from_slice(&segment.to_be_bytes());
                        val.extend_from_slice(&d.to_be_bytes());
                        let at = val.len();
                        val.extend_from_slice(&[0u8; NONCE_LEN]);
                        let nonce = ctx.keys[ev0.account as usize]
                            .seal_into(
                                &block_aad(segment, first, count, ev0.account, d),
                                &c,
                                &mut val,
                            )
                            .expect("seal");
                        val[at..at + NONCE_LEN].copy_from_slice(&nonce);
                        seq += chunk.len() as u64;
                        blocks.push((first, val));
                    }
                }
            }
        }
        groups.push((group_first, g.len(), blocks.len()));
    }
    Encoded {
        blocks,
        order,
        groups,
        secs: started.elapsed().as_secs_f64(),
    }
}

struct Reader<'a> {
    ctx: &'a Ctx<'a>,
    decs: Vec<zstd::bulk::Decompressor<'static>>,
}

impl<'a> Reader<'a> {
    fn new(ctx: &'a Ctx<'a>) -> Self {
        let decs = ctx
            .dicts
            .raw
            .iter()
            .map(|d| zstd::bulk::Decompressor::with_dictionary(d).expect("decompressor"))
            .collect();
        Reader { ctx, decs }
    }

    /// Opens the record at `seq` from its block `(first, value)`.
    fn read(&mut self, v: Variant, first: u64, val: &[u8], seq: u64) -> Vec<u8> {
        match v.layout {
            Layout::PerRecord { .. } => {
                let count = val[2] as u64;
                let mut pos = 3;
                for i in 0..count {
                    let segment = u64::from_be_bytes(val[pos..pos + 8].try_into().unwrap());
                    let d = u32::from_be_bytes(val[pos + 8..pos + 12].try_into().unwrap());
                    let nonce: [u8; NONCE_LEN] = val[pos + 12..pos + 24].try_into().unwrap();
                    let len =
                        u32::from_be_bytes(val[pos + 24..pos + 28].try_into().unwrap()) as usize;
                    let ct = &val[pos + 28..pos + 28 + len];
                    pos += 28 + len;
                    if first + i == seq {
                        let account = (segment - 1) as u32;
                        let c = self.ctx.keys[account as usize]
                            .open(&nonce, &rec_aad(segment, seq, account, d), ct)
                            .expect("open");
                        return self.decs[d as usize].decompress(&c, 1 << 20).expect("dec");
                    }
                }
                panic!("record {seq} not in its block");
            }
            Layout::Sealed { .. } | Layout::Block { .. } => {
                let sealed = matches!(v.layout, Layout::Sealed { .. });
                let count = val[1];
                let segment = u64::from_be_bytes(val[2..10].try_into().unwrap());
                let d = u32::from_be_bytes(val[10..14].try_into().unwrap());
                let nonce: [u8; NONCE_LEN] = val[14..26].try_into().unwrap();
                let account = (segment - 1) as u32;
                let c = self.ctx.keys[account as usize]
                    .open(
                        &nonce,
                        &block_aad(segment, first, count, account, d),
                        &val[26..],
                    )
                    .expect("open");
                let plain = if sealed {
                    c
                } else {
                    self.decs[d as usize].decompress(&c, 64 << 20).expect("dec")
                };
                let mut pos = 0;
                let mut lens = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    lens.push(get_varint(&plain, &mut pos) as usize);
                }
                let want = (seq - first) as usize;
                let start = pos + lens[..want].iter().sum::<usize>();
                let one = &plain[start..start + lens[want]];
                if sealed {
                    self.decs[d as usize].decompress(one, 1 << 20).expect("dec")
                } else {
                    one.to_vec()
                }
            }
        }
    }
}

fn lookup_seqs(n: usize, lookups: usize) -> Vec<u64> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..lookups)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            1 + x % n as u64
        })
        .collect()
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

fn block_index(blocks: &[(u64, Vec<u8>)], seq: u64) -> usize {
    blocks.partition_point(|(f, _)| *f <= seq) - 1
}

fn dir_size(p: &std::path::Path) -> u64 {
    let mut t = 0;
    for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
        let m = e.metadata().unwrap();
        t += if m.is_dir() {
            dir_size(&e.path())
        } else {
            m.len()
        };
    }
    t
}

fn main() {
    let mut events = 200_000u64;
    let mut accounts = 20u32;
    let mut seed = 7u64;
    let mut group = 2048usize;
    let mut lookups = 20_000usize;
    let mut sled_runs = true;
    let mut levels_only = false;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let val = || args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--events" => events = val().parse().expect("--events N"),
            "--accounts" => accounts = val().parse().expect("--accounts N"),
            "--seed" => seed = val().parse().expect("--seed N"),
            "--group" => group = val().parse().expect("--group N"),
            "--lookups" => lookups = val().parse().expect("--lookups N"),
            "--no-sled" => {
                sled_runs = false;
                i += 1;
                continue;
            }
            "--levels-only" => {
                levels_only = true;
                i += 1;
                continue;
            }
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }

    // Events, their accounts and sources.
    let mut account_ids: HashMap<String, u32> = HashMap::new();
    let mut source_ids: HashMap<String, u32> = HashMap::new();
    let evs: Vec<Ev> = Generator::new(GenConfig {
        count: events,
        accounts,
        seed,
        dup_rate: 0.0,
        ..GenConfig::default()
    })
    .map(|b| {
        let e = CloudTrailEvent::parse(b).expect("generated event parses");
        let f = e.fields();
        let na = account_ids.len() as u32;
        let a = *account_ids
            .entry(
                f.recipient_account_id
                    .as_deref()
                    .unwrap_or_default()
                    .to_string(),
            )
            .or_insert(na);
        let ns = source_ids.len() as u32;
        let s = *source_ids.entry(f.event_source.to_string()).or_insert(ns);
        Ev {
            account: a,
            source: s,
            bytes: e.into_bytes(),
        }
    })
    .collect();
    let half = evs.len() / 2;
    let eval: Vec<usize> = (half..evs.len()).collect();
    let raw_mean =
        eval.iter().map(|&i| evs[i].bytes.len()).sum::<usize>() as f64 / eval.len() as f64;
    println!(
        "{} events ({} accounts, {} eventSources), mean {raw_mean:.0} bytes; dictionaries from the first {half}, figures on the last {}; groups of {group}",
        evs.len(),
        account_ids.len(),
        source_ids.len(),
        eval.len()
    );

    // Dictionaries.
    let t = Instant::now();
    let mut raw = Vec::new();
    let store_samples: Vec<&[u8]> = evs[..half.min(DICT_SAMPLES)]
        .iter()
        .map(|e| &e.bytes[..])
        .collect();
    raw.push(train(&store_samples));
    let store = 0u32;
    let mut by_account = HashMap::new();
    let mut by_source = HashMap::new();
    if !levels_only {
        let mut per_a: HashMap<u32, Vec<&[u8]>> = HashMap::new();
        let mut per_s: HashMap<u32, Vec<&[u8]>> = HashMap::new();
        for e in &evs[..half] {
            let a = per_a.entry(e.account).or_default();
            if a.len() < DICT_SAMPLES {
                a.push(&e.bytes);
            }
            let s = per_s.entry(e.source).or_default();
            if s.len() < DICT_SAMPLES {
                s.push(&e.bytes);
            }
        }
        let mut accts: Vec<_> = per_a.into_iter().collect();
        accts.sort_by_key(|a| a.0);
        for (a, s) in accts {
            by_account.insert(a, raw.len() as u32);
            raw.push(train(&s));
        }
        let mut srcs: Vec<_> = per_s.into_iter().collect();
        srcs.sort_by_key(|a| a.0);
        for (src, s) in srcs {
            if s.len() >= MIN_SOURCE_SAMPLES {
                by_source.insert(src, raw.len() as u32);
                raw.push(train(&s));
            }
        }
    }
    let dicts = Dicts {
        raw,
        store,
        by_account,
        by_source,
    };
    println!(
        "trained {} dictionaries in {:.1} s ({} of eventSources with >= {MIN_SOURCE_SAMPLES} samples)",
        dicts.raw.len(),
        t.elapsed().as_secs_f64(),
        dicts.by_source.len()
    );
    let keys: Vec<DataKey> = (0..account_ids.len())
        .map(|_| DataKey::generate().expect("key"))
        .collect();
    let ctx = Ctx {
        evs: &evs,
        dicts: &dicts,
        keys: &keys,
    };

    let mut variants = Vec::new();
    let v = |layout, dict, level| Variant {
        layout,
        dict,
        level,
    };
    let pr = Layout::PerRecord { block: 8 };
    if levels_only {
        for level in [1, 3, 5, 7, 9, 12, 15, 19] {
            variants.push(v(Layout::Block { k: 16 }, Dicting::Store, level));
            variants.push(v(Layout::Block { k: 32 }, Dicting::Store, level));
        }
    } else {
        variants.push(v(pr, Dicting::Store, 3));
        variants.push(v(pr, Dicting::Account, 3));
        variants.push(v(pr, Dicting::Source, 3));
        variants.push(v(pr, Dicting::Store, 9));
        for k in [8, 16, 32, 64] {
            variants.push(v(Layout::Block { k }, Dicting::Store, 3));
        }
        for k in [16, 32] {
            variants.push(v(Layout::Block { k }, Dicting::Account, 3));
        }
        for k in [8, 16, 32] {
            variants.push(v(Layout::Sealed { k }, Dicting::Store, 3));
        }
        for k in [16, 32] {
            variants.push(v(Layout::Sealed { k }, Dicting::Account, 3));
        }
        for level in [6, 9, 12] {
            variants.push(v(Layout::Block { k: 16 }, Dicting::Store, level));
            variants.push(v(Layout::Block { k: 32 }, Dicting::Store, level));
        }
    }

    println!();
    println!(
        "{:<38} {:>9} {:>9} {:>9} {:>11} {:>10} {:>10}",
        "variant", "B/event", "vs today", "dict B/ev", "encode ev/s", "read p50", "read p99"
    );
    let n = eval.len();
    let seqs = lookup_seqs(n, lookups);
    let mut baseline = 0.0;
    let mut encoded_keep: Vec<(Variant, Encoded)> = Vec::new();
    for var in variants {
        let enc = encode(&ctx, &eval, group, var);
        let bytes: usize = enc.blocks.iter().map(|(_, v)| v.len() + 9).sum();
        let per = bytes as f64 / n as f64;
        if baseline == 0.0 {
            baseline = per;
        }
        // Check, then time, reads of single events.
        let mut reader = Reader::new(&ctx);
        for &s in seqs.iter().take(200) {
            let b = block_index(&enc.blocks, s);
            let (first, val) = &enc.blocks[b];
            let got = reader.read(var, *first, val, s);
            assert_eq!(
                got,
                evs[enc.order[(s - 1) as usize]].bytes,
                "{}",
                var.name()
            );
        }
        let mut lat = Vec::with_capacity(seqs.len());
        for &s in &seqs {
            let t = Instant::now();
            let b = block_index(&enc.blocks, s);
            let (first, val) = &enc.blocks[b];
            std::hint::black_box(reader.read(var, *first, val, s));
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
        lat.sort_by(f64::total_cmp);
        println!(
            "{:<38} {:>9.1} {:>8.0}% {:>9.1} {:>11.0} {:>8.1}us {:>8.1}us",
            var.name(),
            per,
            per / baseline * 100.0,
            dicts.bytes_for(var.dict) as f64 / n as f64,
            n as f64 / enc.secs,
            pct(&lat, 0.5),
            pct(&lat, 0.99)
        );
        let keep = matches!(
            (var.layout, var.dict, var.level),
            (Layout::PerRecord { .. }, Dicting::Store, 3)
                | (Layout::Block { k: 32 }, Dicting::Store, 3)
                | (Layout::Sealed { k: 16 }, Dicting::Store, 3)
        );
        if keep {
            encoded_keep.push((var, enc));
        }
    }

    if !sled_runs {
        return;
    }
    println!();
    println!(
        "in sled: one batch and one flush per group (with the group's 32-byte leaf hashes: h)"
    );
    println!(
        "{:<38} {:<20} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10}",
        "variant",
        "what",
        "seg size",
        "logical",
        "files",
        "overhead",
        "write ev/s",
        "get p50",
        "get p99"
    );
    let tmp = std::env::temp_dir().join(format!("orgtrail-record-formats-{}", std::process::id()));
    for (var, enc) in &encoded_keep {
        // (sled segment size, leaf hashes too, records in an append-only file beside sled)
        let runs: &[(usize, bool, bool)] = if matches!(var.layout, Layout::Sealed { k: 16 }) {
            &[
                (1 << 19, true, false),
                (1 << 19, false, false),
                (1 << 18, true, false),
                (1 << 21, true, false),
                (1 << 19, true, true),
            ]
        } else {
            &[(1 << 19, true, false)]
        };
        for &(seg, with_h, in_file) in runs {
            let _ = std::fs::remove_dir_all(&tmp);
            let db = sled::Config::new()
                .path(&tmp)
                .segment_size(seg)
                .cache_capacity(256 << 20)
                .open()
                .expect("sled");
            let tree = db.open_tree("ledger").expect("tree");
            let mut file = in_file
                .then(|| std::fs::File::create(tmp.join("records.dat")).expect("records file"));
            let mut offset = 0u64;
            let mut logical = 0u64;
            let t = Instant::now();
            let mut from = 0;
            for &(first, count, until) in &enc.groups {
                let mut batch = sled::Batch::default();
                for (f, val) in &enc.blocks[from..until] {
                    let mut k = vec![b'r'];
                    k.extend_from_slice(&f.to_be_bytes());
                    match &mut file {
                        Some(file) => {
                            use std::io::Write;
                            file.write_all(val).expect("write");
                            let mut ptr = offset.to_be_bytes().to_vec();
                            ptr.extend_from_slice(&(val.len() as u32).to_be_bytes());
                            offset += val.len() as u64;
                            logical += (k.len() + ptr.len() + val.len()) as u64;
                            batch.insert(k, ptr);
                        }
                        None => {
                            logical += (k.len() + val.len()) as u64;
                            batch.insert(k, val.clone());
                        }
                    }
                }
                from = until;
                if let Some(file) = &file {
                    file.sync_data().expect("fdatasync");
                }
                if with_h {
                    let mut hk = vec![b'h'];
                    hk.extend_from_slice(&first.to_be_bytes());
                    let hv = vec![0x5a; 32 * count];
                    logical += (hk.len() + hv.len()) as u64;
                    batch.insert(hk, hv);
                }
                tree.apply_batch(batch).expect("batch");
                db.flush().expect("flush");
            }
            let write_secs = t.elapsed().as_secs_f64();
            drop(tree);
            drop(db);
            drop(file);
            let files = dir_size(&tmp);
            // Reopen and read single events through sled.
            let db = sled::Config::new()
                .path(&tmp)
                .segment_size(seg)
                .cache_capacity(256 << 20)
                .open()
                .expect("sled reopen");
            let tree = db.open_tree("ledger").expect("tree");
            let file = in_file.then(|| std::fs::File::open(tmp.join("records.dat")).expect("open"));
            let mut reader = Reader::new(&ctx);
            let mut lat = Vec::with_capacity(seqs.len());
            for &s in &seqs {
                let t = Instant::now();
                let mut lo = vec![b'r'];
                lo.extend_from_slice(&0u64.to_be_bytes());
                let mut hi = vec![b'r'];
                hi.extend_from_slice(&s.to_be_bytes());
                let (k, val) = tree.range(lo..=hi).next_back().expect("block").expect("io");
                let first = u64::from_be_bytes(k[1..9].try_into().unwrap());
                let val = match &file {
                    Some(f) => {
                        use std::os::unix::fs::FileExt;
                        let off = u64::from_be_bytes(val[..8].try_into().unwrap());
                        let len = u32::from_be_bytes(val[8..12].try_into().unwrap()) as usize;
                        let mut buf = vec![0u8; len];
                        f.read_exact_at(&mut buf, off).expect("read");
                        buf
                    }
                    None => val.to_vec(),
                };
                std::hint::black_box(reader.read(*var, first, &val, s));
                lat.push(t.elapsed().as_secs_f64() * 1e6);
            }
            lat.sort_by(f64::total_cmp);
            let what = match (with_h, in_file) {
                (_, true) => "records in a file, h",
                (true, false) => "records, h",
                (false, false) => "records only",
            };
            println!(
                "{:<38} {:<20} {:>8}K {:>9.1} {:>9.1} {:>9.1} {:>10.0} {:>8.1}us {:>8.1}us",
                var.name(),
                what,
                seg >> 10,
                logical as f64 / n as f64,
                files as f64 / n as f64,
                (files as f64 - logical as f64) / n as f64,
                n as f64 / write_secs,
                pct(&lat, 0.5),
                pct(&lat, 0.99)
            );
            drop(tree);
            drop(db);
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
