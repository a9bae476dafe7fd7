//! Memory for many tracked keys: resident memory before and after a detector tracks KEYS keys
//! (default 100,000: the default cap), each called by 1 to 3 of 500 principals with one of 20
//! user agents, over an hour of simulated time; and the size of the persisted state.
//!
//! `cargo run --release -p orgtrail-insights --example memory [KEYS]` (Linux: reads
//! /proc/self/status).

use orgtrail_insights::{Call, Detector, InsightsConfig};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn main() {
    let keys: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let names: Vec<String> = (0..keys).map(|i| format!("Api{i}")).collect();
    let users: Vec<String> = (0..500)
        .map(|i| format!("arn:aws:sts::111122223333:assumed-role/Role{i}/session-{i}"))
        .collect();
    let agents: Vec<String> = (0..20)
        .map(|i| format!("aws-sdk-java/2.25.{i} Linux/6.1 OpenJDK_64-Bit_Server_VM/21.0.2"))
        .collect();
    let before = rss_kib();
    let mut d = Detector::new(InsightsConfig {
        enabled: true,
        max_tracked_keys: keys,
        ..InsightsConfig::default()
    });
    let mut out = Vec::new();
    let start = 29_400_000i64;
    for minute in start..start + 60 {
        d.advance(minute, &mut out);
        // Each key is called in 1 of 6 minutes; half of the keys also fail (error keys).
        for (i, name) in names.iter().enumerate() {
            if !(i + minute as usize).is_multiple_of(6) {
                continue;
            }
            for u in 0..1 + i % 3 {
                let call = Call {
                    account: "111122223333",
                    region: ["us-east-1", "eu-west-1"][i % 2],
                    event_source: "ec2.amazonaws.com",
                    event_name: name,
                    minute,
                    read_only: Some(i % 2 == 1),
                    management: true,
                    error_code: (i % 2 == 1).then_some("AccessDenied"),
                    user_arn: Some(&users[(i * 7 + u) % users.len()]),
                    user_agent: Some(&agents[(i + u) % agents.len()]),
                };
                d.observe(&call, &mut out);
            }
        }
    }
    let after = rss_kib();
    let stats = d.stats();
    let t = std::time::Instant::now();
    let state = d.to_bytes();
    let write_ms = t.elapsed().as_millis();
    let t = std::time::Instant::now();
    let restored = Detector::from_bytes(d.config().clone(), &state).map(|r| r.stats().tracked_keys);
    let read_ms = t.elapsed().as_millis();
    println!(
        "{} keys tracked ({} evicted), {} interned values: resident {} KiB before, {} KiB after: \
         {:.0} bytes per key; persisted state {} bytes ({:.0} per key), written in {write_ms} ms, \
         read back ({restored:?} keys) in {read_ms} ms",
        stats.tracked_keys,
        stats.evicted_keys,
        d.interned_values(),
        before,
        after,
        (after.saturating_sub(before) as f64 * 1024.0) / stats.tracked_keys.max(1) as f64,
        state.len(),
        state.len() as f64 / stats.tracked_keys.max(1) as f64
    );
}
