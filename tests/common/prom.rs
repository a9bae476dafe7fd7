//! Scrapes of an ops listener's `/metrics`, read with a Prometheus text parser
//! (`prometheus-parse`). That parser skips lines it does not understand, so every line is
//! also checked to be one it does.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use prometheus_parse::{LineInfo, Value};

/// One scrape, parsed.
pub(crate) struct Scrape(prometheus_parse::Scrape);

/// GETs `/metrics` from the ops listener at `addr` and parses it.
pub(crate) fn scrape(addr: &str) -> Scrape {
    let (status, body) = crate::common::http(addr, "GET", "/metrics", b"");
    assert_eq!(status, 200, "{body}");
    parse(&body)
}

/// Parses a Prometheus text exposition; fails on any line the parser would skip.
pub(crate) fn parse(body: &str) -> Scrape {
    for line in body.lines() {
        assert!(
            !matches!(LineInfo::parse(line), LineInfo::Ignored),
            "a line that is not Prometheus text: {line:?}\nin:\n{body}"
        );
        if !line.starts_with('#') && !line.trim().is_empty() {
            let value = line.rsplit(' ').next().unwrap();
            assert!(
                value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
                "a sample without a number: {line:?}"
            );
        }
    }
    Scrape(prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap())
}

impl Scrape {
    /// The value of the sample `name` whose labels are exactly `labels`; None when there is
    /// no such sample. A histogram's value is its count.
    pub(crate) fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0
            .samples
            .iter()
            .find(|s| {
                s.metric == name
                    && s.labels.len() == labels.len()
                    && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
            })
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                Value::Histogram(b) => b.last().map_or(0.0, |b| b.count),
                Value::Summary(_) => f64::NAN,
            })
    }

    /// Like [`Scrape::get`], failing when the sample is absent.
    pub(crate) fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?}; samples: {:#?}", self.names()))
    }

    /// Every sample's name and labels, for failure messages.
    pub(crate) fn names(&self) -> Vec<String> {
        self.0
            .samples
            .iter()
            .map(|s| format!("{}{{{}}}", s.metric, s.labels))
            .collect()
    }
}
