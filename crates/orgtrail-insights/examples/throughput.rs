//! What the detector adds to the cost of taking an event in: parsing with orgtrail-core (what
//! ingest does to every event) against parsing plus `Call::from_fields` and `observe`, on the
//! same generated events (orgtrail-gen), in alternating rounds of the same run.
//!
//! `cargo run --release -p orgtrail-insights --example throughput [EVENTS] [ROUNDS]`
//! (defaults 300000, 3). Ingest proper (sealing, the ledger) costs far more than parsing, so
//! the ratio printed is a floor for ingest throughput with Insights on against off.

use std::time::Instant;

use orgtrail_core::CloudTrailEvent;
use orgtrail_gen::{GenConfig, Generator};
use orgtrail_insights::{Call, Detector, InsightsConfig};

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let count = arg(1, 300_000);
    let rounds = arg(2, 3);
    let events: Vec<Vec<u8>> = Generator::new(GenConfig {
        count,
        accounts: 20,
        seed: 1,
        ..GenConfig::default()
    })
    .collect();
    let config = InsightsConfig {
        enabled: true,
        ..InsightsConfig::default()
    };
    let (mut off_total, mut on_total) = (0.0, 0.0);
    for round in 0..rounds {
        let t = Instant::now();
        let mut n = 0usize;
        for e in &events {
            if let Ok(ev) = CloudTrailEvent::parse(e.clone()) {
                n += ev.fields().event_name.len();
            }
        }
        let off = events.len() as f64 / t.elapsed().as_secs_f64();

        let mut d = Detector::new(config.clone());
        let mut out = Vec::new();
        let t = Instant::now();
        for e in &events {
            if let Ok(ev) = CloudTrailEvent::parse(e.clone()) {
                let account = ev.fields().recipient_account_id.as_deref().unwrap_or("");
                if let Some(call) = Call::from_fields(account, ev.fields()) {
                    d.observe(&call, &mut out);
                }
            }
        }
        let on = events.len() as f64 / t.elapsed().as_secs_f64();
        println!(
            "round {round}: parse {off:.0} events/s, parse + insights {on:.0} events/s: {:.3} \
             ({} keys, {} Insight events, checksum {n})",
            on / off,
            d.stats().tracked_keys,
            out.len()
        );
        off_total += off;
        on_total += on;
    }
    println!(
        "mean over {rounds} rounds of {count} events: insights on/off = {:.3}",
        on_total / off_total
    );
}
