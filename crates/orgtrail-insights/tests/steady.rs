//! No Insight on a simulated week of steady, Poisson-noisy traffic; the false-positive rate
//! per key-day is printed (`cargo test -p orgtrail-insights --test steady -- --nocapture`;
//! `cargo run --release -p orgtrail-insights --example false_positives` measures more keys).

mod common;

use common::{STEADY_RATES, steady};

#[test]
fn a_week_of_steady_traffic_starts_no_insight() {
    let outcome = steady(2026, 7.0, &STEADY_RATES, 2);
    println!(
        "steady week: {} keys, {:.0} days, {} calls, {} Insight starts: {:.6} false positives per key-day",
        outcome.keys,
        outcome.days,
        outcome.calls,
        outcome.starts,
        outcome.false_positive_rate()
    );
    assert_eq!(outcome.keys, 28);
    assert!(outcome.calls > 500_000, "{outcome:?}");
    assert_eq!(outcome.starts, 0, "{outcome:?}");
}
