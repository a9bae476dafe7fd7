//! `orgtrail bench rules`: the rule engine's matching rate on one thread, over generated
//! CloudTrail events parsed up front, with 10, 100 and 1,000 rules of mixed operators, beside
//! the rate of parsing the same events (the work every event costs anyway) from the same run.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use orgtrail_gen::{GenConfig, Generator};
use orgtrail_rules::Pattern;
use orgtrail_rules::cloudtrail::CloudTrailRules;
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub(crate) struct RulesArgs {
    /// How many generated events to match.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Rule counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    rules: Vec<usize>,
    /// Timed passes over all events per rule count; the best is reported.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

/// The values the generated events hold, to write rules that sometimes match.
pub(crate) struct Vocabulary {
    names: Vec<String>,
    sources: Vec<String>,
    regions: Vec<String>,
    /// Only rare event names: the rules are keyed on them (see [`Vocabulary::rare`]).
    rare: bool,
}

impl Vocabulary {
    /// A vocabulary of the event names that each make at most `share` of `events`: rules
    /// written with it fire rarely, as detection rules for unusual actions do. Every rule is
    /// then keyed on an event name (the one keyed on an event source gets a name too). An
    /// error when no event name is that rare (the share is too small for these events).
    pub(crate) fn rare(events: &[Value], share: f64) -> anyhow::Result<Vocabulary> {
        let mut count: std::collections::BTreeMap<&str, usize> = Default::default();
        for e in events {
            if let Some(n) = e["eventName"].as_str() {
                *count.entry(n).or_default() += 1;
            }
        }
        let most = (share * events.len() as f64) as usize;
        let rarest = count.values().copied().min().unwrap_or(0);
        let mut v = vocabulary(events);
        v.names = count
            .into_iter()
            .filter(|(_, c)| *c <= most)
            .map(|(n, _)| n.to_owned())
            .collect();
        if v.names.is_empty() {
            anyhow::bail!(
                "--rare {share}: no event name makes at most that share of the {} events (the rarest makes {rarest} of them, a share of {:.6}); raise --rare",
                events.len(),
                rarest as f64 / events.len().max(1) as f64
            );
        }
        v.rare = true;
        Ok(v)
    }
}

pub(crate) fn vocabulary(events: &[Value]) -> Vocabulary {
    let pick = |field: &str| -> Vec<String> {
        events
            .iter()
            .filter_map(|e| e[field].as_str().map(str::to_owned))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    Vocabulary {
        names: pick("eventName"),
        sources: pick("eventSource"),
        regions: pick("awsRegion"),
        rare: false,
    }
}

/// `n` rules cycling through the operators: exact names (most rules, as real rule sets are),
/// envelope-form source plus name, prefixes, `equals-ignore-case`, an error's presence, CIDR,
/// `anything-but`, wildcard ARNs, suffixes and `$or`.
/// One benchmark rule: its pattern as written, and checked.
pub(crate) struct BenchRule {
    pub(crate) json: Value,
    pub(crate) pattern: Pattern,
}

pub(crate) fn rules(n: usize, v: &Vocabulary) -> anyhow::Result<Vec<BenchRule>> {
    let at = |list: &Vec<String>, i: usize| list[i % list.len().max(1)].clone();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let name = at(&v.names, i * 7);
        let source = at(&v.sources, i * 3);
        let p = match i % 10 {
            0..=2 => json!({"eventName": [name]}),
            3 => {
                json!({"source": [format!("aws.{}", source.trim_end_matches(".amazonaws.com"))], "detail-type": ["AWS API Call via CloudTrail"], "detail": {"eventName": [name]}})
            }
            4 => {
                json!({"eventSource": [source], "eventName": [{"prefix": name.chars().take(4).collect::<String>()}]})
            }
            5 => {
                json!({"eventName": [{"equals-ignore-case": name.to_uppercase()}], "errorCode": [{"exists": true}]})
            }
            6 => json!({"eventName": [name], "sourceIPAddress": [{"cidr": "10.0.0.0/8"}]}),
            7 => json!({"eventName": [name], "awsRegion": [{"anything-but": at(&v.regions, i)}]}),
            8 if v.rare => {
                json!({"eventName": [name], "userIdentity": {"arn": [{"wildcard": "arn:aws:iam::*:user/*"}]}})
            }
            8 => {
                json!({"eventSource": [source], "userIdentity": {"arn": [{"wildcard": "arn:aws:iam::*:user/*"}]}})
            }
            _ => {
                json!({"$or": [{"eventName": [name]}, {"userIdentity": {"type": ["Root"]}, "eventName": [{"suffix": "Policy"}]}]})
            }
        };
        let pattern = Pattern::from_json(&p).with_context(|| format!("benchmark rule {i}: {p}"))?;
        out.push(BenchRule { json: p, pattern });
    }
    Ok(out)
}

fn best_of(rounds: u32, mut f: impl FnMut() -> u64) -> (Duration, u64) {
    let mut best: Option<(Duration, u64)> = None;
    for _ in 0..rounds.max(1) {
        let t = Instant::now();
        let v = f();
        let d = t.elapsed();
        if best.is_none_or(|(b, _)| d < b) {
            best = Some((d, v));
        }
    }
    best.unwrap_or_default()
}

pub(crate) fn rules_bench(a: RulesArgs) -> anyhow::Result<ExitCode> {
    println!("generating {} events (seed {})", a.events, a.seed);
    let raw: Vec<Vec<u8>> = Generator::new(GenConfig {
        count: a.events,
        accounts: 20,
        seed: a.seed,
        ..GenConfig::default()
    })
    .collect();
    // The baseline: parsing the same events into JSON values, on one thread.
    let mut events: Vec<Value> = Vec::new();
    let (parse, _) = best_of(a.rounds, || {
        events = raw
            .iter()
            .filter_map(|b| serde_json::from_slice(b).ok())
            .collect();
        events.len() as u64
    });
    let n = events.len() as f64;
    let parse_rate = n / parse.as_secs_f64();
    println!(
        "baseline: parsing the events into JSON values on one thread: {parse_rate:.0} events/s ({:.0} ns per event)",
        parse.as_secs_f64() * 1e9 / n
    );
    let vocab = vocabulary(&events);
    println!(
        "{:>6}  {:>12}  {:>9}  {:>10}  {:>9}  {:>12}",
        "RULES", "EVENTS/S", "NS/EVENT", "MATCHES", "/ PARSE", "UNANCHORED"
    );
    for count in &a.rules {
        let patterns = rules(*count, &vocab)?
            .into_iter()
            .map(|r| r.pattern)
            .collect();
        let engine = CloudTrailRules::new(patterns)
            .map_err(|(i, e)| anyhow::anyhow!("benchmark rule {i}: {e}"))?;
        let mut hits = Vec::new();
        let (d, matches) = best_of(a.rounds, || {
            let mut m = 0u64;
            for e in &events {
                engine.matches(std::hint::black_box(e), &mut hits);
                m += hits.len() as u64;
            }
            m
        });
        let rate = n / d.as_secs_f64();
        println!(
            "{count:>6}  {rate:>12.0}  {:>9.0}  {matches:>10}  {:>8.2}x  {:>12}",
            d.as_secs_f64() * 1e9 / n,
            rate / parse_rate,
            engine.unanchored()
        );
    }
    println!(
        "(target: >= 1,000,000 events/s with 100 rules; `/ PARSE` is the matching rate over the parsing rate of the same run)"
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_share_no_event_name_is_that_rare_in_is_refused_with_what_to_do() {
        // 1,000 events: "Rare" makes 2 of them (0.2%), "Common" the rest.
        let events: Vec<Value> = (0..1000)
            .map(|i| {
                let name = if i < 2 { "Rare" } else { "Common" };
                json!({"eventName": name, "eventSource": "s3.amazonaws.com", "awsRegion": "us-east-1"})
            })
            .collect();
        let err = Vocabulary::rare(&events, 0.00001)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("raise --rare"), "{err}");
        assert!(err.contains("the rarest makes 2 of them"), "{err}");
        let v = Vocabulary::rare(&events, 0.002).unwrap();
        assert_eq!(v.names, vec!["Rare".to_owned()]);
        // Rules written with it name only that event.
        let rules = rules(10, &v).unwrap();
        assert_eq!(rules.len(), 10);
    }
}
