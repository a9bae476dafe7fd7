//! Generated traffic for the detector's tests: seeded, deterministic, simulated time.
#![allow(dead_code, unreachable_pub)]

use orgtrail_core::CloudTrailEvent;
use orgtrail_insights::{Call, Detector, InsightEvent, InsightsConfig};

/// 2026-11-23T00:00:00Z as a unix minute.
pub const MONDAY: i64 = 1_763_856_000 / 60;

pub const ACCOUNT: &str = "111122223333";

/// SplitMix64: small, seeded, good enough for traffic.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// A Poisson draw of mean `lambda` (inversion by sequential search; fine below ~500).
    pub fn poisson(&mut self, lambda: f64) -> u32 {
        if lambda <= 0.0 {
            return 0;
        }
        if lambda > 200.0 {
            // Sum of smaller draws.
            let half = lambda / 2.0;
            return self.poisson(half) + self.poisson(lambda - half);
        }
        let u = self.unit();
        let mut k = 0u32;
        let mut p = (-lambda).exp();
        let mut cdf = p;
        while u > cdf && k < 10_000 {
            k += 1;
            p *= lambda / f64::from(k);
            cdf += p;
        }
        k
    }
}

/// One write API call as CloudTrail would record it.
#[derive(Debug, Clone)]
pub struct Spec {
    pub region: &'static str,
    pub source: &'static str,
    pub name: &'static str,
    pub read_only: bool,
    pub error: Option<&'static str>,
    pub user: String,
    pub agent: String,
}

impl Spec {
    pub fn write(source: &'static str, name: &'static str) -> Self {
        Spec {
            region: "us-east-1",
            source,
            name,
            read_only: false,
            error: None,
            user: "arn:aws:sts::111122223333:assumed-role/Deployer/ci".into(),
            agent: "aws-cli/2.15.0".into(),
        }
    }

    pub fn by(mut self, user: &str, agent: &str) -> Self {
        self.user = user.into();
        self.agent = agent.into();
        self
    }

    pub fn failing(mut self, code: &'static str) -> Self {
        self.error = Some(code);
        self
    }

    pub fn read(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// The event's JSON, with second `sec` of `minute`.
    pub fn json(&self, minute: i64, sec: u32, n: u64) -> String {
        let time = orgtrail_core::Timestamp((minute * 60 + i64::from(sec % 60)) * 1000);
        let error = match self.error {
            Some(e) => format!(r#","errorCode":"{e}","errorMessage":"denied""#),
            None => String::new(),
        };
        format!(
            r#"{{"eventVersion":"1.09","userIdentity":{{"type":"AssumedRole","arn":"{user}","accountId":"{ACCOUNT}"}},"eventTime":"{time}","eventSource":"{src}","eventName":"{name}","awsRegion":"{region}","sourceIPAddress":"198.51.100.7","userAgent":"{agent}"{error},"requestParameters":null,"responseElements":null,"eventID":"00000000-0000-4000-8000-{n:012x}","readOnly":{ro},"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"{ACCOUNT}","eventCategory":"Management"}}"#,
            user = self.user,
            src = self.source,
            name = self.name,
            region = self.region,
            agent = self.agent,
            ro = self.read_only,
        )
    }
}

/// Feeds events through the same path as ingest: JSON bytes, orgtrail-core's parser, then
/// [`Call::from_fields`].
#[derive(Debug)]
pub struct Feed {
    pub detector: Detector,
    pub out: Vec<InsightEvent>,
    n: u64,
}

impl Feed {
    pub fn new(config: InsightsConfig) -> Self {
        Feed {
            detector: Detector::new(config),
            out: Vec::new(),
            n: 0,
        }
    }

    pub fn event(&mut self, spec: &Spec, minute: i64, sec: u32) {
        self.n += 1;
        let ev = CloudTrailEvent::parse(spec.json(minute, sec, self.n).into_bytes())
            .unwrap_or_else(|e| panic!("generated event refused: {e}"));
        let call = Call::from_fields(ACCOUNT, ev.fields());
        let call = call.unwrap_or_else(|| panic!("generated event not a call"));
        self.detector.observe(&call, &mut self.out);
    }

    /// `count` events of `spec` spread over `minute`.
    pub fn events(&mut self, spec: &Spec, minute: i64, count: u32) {
        for i in 0..count {
            self.event(spec, minute, i * 60 / count.max(1));
        }
    }

    pub fn advance(&mut self, minute: i64) {
        self.detector.advance(minute, &mut self.out);
    }
}

/// Insights enabled, all other settings at their defaults.
pub fn enabled() -> InsightsConfig {
    InsightsConfig {
        enabled: true,
        ..InsightsConfig::default()
    }
}

/// What a simulated stretch of steady traffic gave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SteadyOutcome {
    pub keys: usize,
    pub days: f64,
    pub calls: u64,
    pub starts: u64,
}

impl SteadyOutcome {
    /// Insight Starts per key-day.
    pub fn false_positive_rate(&self) -> f64 {
        self.starts as f64 / (self.keys as f64 * self.days)
    }
}

/// The rates (calls per minute) of the steady keys: from once in 100 minutes to 40 a minute.
pub const STEADY_RATES: [f64; 7] = [0.01, 0.05, 0.2, 1.0, 3.0, 10.0, 40.0];

/// Poisson traffic at constant rates for `days` simulated days: per rate in `rates`, `per_rate`
/// write keys (distinct eventNames and regions) and `per_rate` error keys (read calls failing
/// with one errorCode), so `2 * per_rate * rates.len()` keys. Calls are built directly (not
/// parsed) to keep a week fast.
pub fn steady(seed: u64, days: f64, rates: &[f64], per_rate: usize) -> SteadyOutcome {
    let names: Vec<String> = (0..rates.len() * per_rate * 2)
        .map(|i| format!("Api{i}"))
        .collect();
    let regions = ["us-east-1", "eu-west-1", "ap-southeast-2"];
    let users = [
        "arn:aws:sts::111122223333:assumed-role/App/a",
        "arn:aws:sts::111122223333:assumed-role/App/b",
        "arn:aws:iam::111122223333:user/ops",
    ];
    let mut keys: Vec<(f64, String, &str, bool)> = Vec::new();
    let mut names = names.into_iter();
    for &rate in rates {
        for j in 0..per_rate {
            for error in [false, true] {
                let name = names.next().unwrap_or_default();
                keys.push((rate, name, regions[j % regions.len()], error));
            }
        }
    }
    let mut d = Detector::new(enabled());
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    let mut calls = 0u64;
    let minutes = (days * 1440.0) as i64;
    for m in MONDAY..MONDAY + minutes {
        d.advance(m, &mut out);
        for (rate, name, region, error) in &keys {
            for _ in 0..rng.poisson(*rate) {
                let call = Call {
                    account: ACCOUNT,
                    region,
                    event_source: "ec2.amazonaws.com",
                    event_name: name,
                    minute: m,
                    read_only: Some(*error),
                    management: true,
                    error_code: error.then_some("Client.UnauthorizedOperation"),
                    user_arn: Some(users[rng.below(users.len())]),
                    user_agent: Some("aws-sdk-go-v2/1.30.0"),
                };
                d.observe(&call, &mut out);
                calls += 1;
            }
        }
    }
    d.advance(MONDAY + minutes + 10, &mut out);
    let starts = out
        .iter()
        .filter(|e| e.state == orgtrail_insights::InsightState::Start)
        .count() as u64;
    assert_eq!(d.stats().tracked_keys as usize, keys.len());
    SteadyOutcome {
        keys: keys.len(),
        days,
        calls,
        starts,
    }
}
