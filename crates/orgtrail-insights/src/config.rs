//! The `[insights]` configuration: typed, with defaults, checked by [`InsightsConfig::validate`]
//! which reports every problem at once.
//!
//! Durations follow the project's convention (a key ending in `_ms` takes milliseconds or a
//! human duration such as `"7d"` or `"1h"`) and must be whole minutes: the detector counts
//! per minute.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::upper_tail_z;

const MINUTE_MS: u64 = 60_000;

/// Insights as a whole. `Default` is what an empty `[insights]` table gives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InsightsConfig {
    /// Watch for unusual rates at all. Off unless enabled.
    pub enabled: bool,
    /// ApiCallRateInsight: unusual rates of write management calls.
    pub api_call_rate: bool,
    /// ApiErrorRateInsight: unusual rates of calls that failed with one errorCode.
    pub api_error_rate: bool,
    /// The baseline is the per-minute average over this window (an exponentially weighted
    /// average of this time constant once that much history exists). Default 7 days.
    #[serde(deserialize_with = "orgtrail_core::units::millis")]
    pub baseline_window_ms: u64,
    /// A key's baseline is used once it covers this much history; before that the key is
    /// counted but never fires. Default 1 hour.
    #[serde(deserialize_with = "orgtrail_core::units::millis")]
    pub min_history_ms: u64,
    /// The probability, under the baseline's model, that an ordinary minute of one key reaches
    /// the bound (the upper-tail probability of the Poisson bound). Smaller: fewer, larger
    /// Insights. Default 1e-7 (at most 0.000144 false starts per key-day of Poisson traffic).
    pub sensitivity: f64,
    /// A minute starts an Insight only with at least this many calls, whatever the baseline:
    /// 0 to 2 calls is not an anomaly. Default 5.
    pub min_count: u32,
    /// An Insight ends after this many consecutive minutes back within bounds. Default 3.
    pub end_after_minutes: u32,
    /// Events may arrive this many minutes after their minute and still be counted in it (a
    /// minute is closed once the clock is past it by more than this). 0 to 5; default 1.
    pub lateness_minutes: u32,
    /// Once the clock has been given by [`crate::Detector::advance`], events stamped more than
    /// this many minutes after it are not counted (a wrong clock must not move the detector's).
    /// Default 10.
    pub max_future_minutes: u32,
    /// Event sources never watched (e.g. `"sts.amazonaws.com"`).
    pub ignored_event_sources: Vec<String>,
    /// The most (account, region, eventSource, eventName[, errorCode]) keys tracked at once.
    /// Beyond it the least recently seen keys without an open Insight are evicted first.
    /// Default 100,000.
    pub max_tracked_keys: usize,
    /// Overrides per account id (12 digits).
    pub accounts: BTreeMap<String, AccountInsights>,
}

/// What one account changes from the defaults; absent fields keep them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountInsights {
    /// Watch this account at all.
    pub enabled: Option<bool>,
    /// ApiCallRateInsight for this account.
    pub api_call_rate: Option<bool>,
    /// ApiErrorRateInsight for this account.
    pub api_error_rate: Option<bool>,
    /// [`InsightsConfig::sensitivity`] for this account.
    pub sensitivity: Option<f64>,
    /// [`InsightsConfig::min_count`] for this account.
    pub min_count: Option<u32>,
}

impl Default for InsightsConfig {
    fn default() -> Self {
        InsightsConfig {
            enabled: false,
            api_call_rate: true,
            api_error_rate: true,
            baseline_window_ms: 7 * 24 * 60 * MINUTE_MS,
            min_history_ms: 60 * MINUTE_MS,
            sensitivity: 1e-7,
            min_count: 5,
            end_after_minutes: 3,
            lateness_minutes: 1,
            max_future_minutes: 10,
            ignored_event_sources: Vec::new(),
            max_tracked_keys: 100_000,
            accounts: BTreeMap::new(),
        }
    }
}

/// The most minutes of lateness accepted ([`InsightsConfig::lateness_minutes`]).
pub const MAX_LATENESS_MINUTES: u32 = 5;

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid [insights] configuration: {}", .problems.join("; "))]
pub struct ConfigError {
    /// One line per problem, naming the key.
    pub problems: Vec<String>,
}

fn check_sensitivity(key: &str, p: f64, problems: &mut Vec<String>) {
    if !(p > 0.0 && p < 0.5) {
        problems.push(format!(
            "{key} = {p}: must be a probability above 0 and below 0.5 (e.g. 1e-6)"
        ));
    }
}

impl InsightsConfig {
    /// Checks every value and reports all problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let whole = |key: &str, ms: u64, problems: &mut Vec<String>| {
            if ms == 0 || !ms.is_multiple_of(MINUTE_MS) {
                problems.push(format!(
                    "insights.{key} = {ms} ms: must be a whole number of minutes, at least one"
                ));
            }
        };
        whole("baseline_window_ms", self.baseline_window_ms, &mut problems);
        whole("min_history_ms", self.min_history_ms, &mut problems);
        if self.baseline_window_ms / MINUTE_MS > u64::from(u32::MAX) {
            problems.push("insights.baseline_window_ms: at most 2^32 minutes".into());
        }
        if self.min_history_ms > self.baseline_window_ms {
            problems.push(format!(
                "insights.min_history_ms ({} min) is longer than insights.baseline_window_ms ({} min)",
                self.min_history_ms / MINUTE_MS,
                self.baseline_window_ms / MINUTE_MS
            ));
        }
        check_sensitivity("insights.sensitivity", self.sensitivity, &mut problems);
        if self.min_count == 0 {
            problems.push("insights.min_count: must be at least 1".into());
        }
        if self.end_after_minutes == 0 {
            problems.push("insights.end_after_minutes: must be at least 1".into());
        }
        if self.lateness_minutes > MAX_LATENESS_MINUTES {
            problems.push(format!(
                "insights.lateness_minutes = {}: at most {MAX_LATENESS_MINUTES}",
                self.lateness_minutes
            ));
        }
        if self.max_tracked_keys == 0 {
            problems.push("insights.max_tracked_keys: must be at least 1".into());
        }
        for (account, o) in &self.accounts {
            if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
                problems.push(format!(
                    "insights.accounts.{account:?}: an account id is 12 digits"
                ));
            }
            if let Some(p) = o.sensitivity {
                check_sensitivity(
                    &format!("insights.accounts.{account}.sensitivity"),
                    p,
                    &mut problems,
                );
            }
            if o.min_count == Some(0) {
                problems.push(format!(
                    "insights.accounts.{account}.min_count: must be at least 1"
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    /// The baseline window in minutes.
    pub fn baseline_window_minutes(&self) -> u32 {
        u32::try_from(self.baseline_window_ms / MINUTE_MS)
            .unwrap_or(u32::MAX)
            .max(1)
    }

    /// The minimum history in minutes.
    pub fn min_history_minutes(&self) -> u32 {
        u32::try_from(self.min_history_ms / MINUTE_MS).unwrap_or(u32::MAX)
    }

    /// What applies to `account`: the defaults with its overrides.
    pub(crate) fn effective(&self, account: &str) -> Effective {
        let o = self.accounts.get(account);
        let pick = |f: fn(&AccountInsights) -> Option<bool>, d: bool| o.and_then(f).unwrap_or(d);
        let enabled = pick(|o| o.enabled, self.enabled);
        let sensitivity = o.and_then(|o| o.sensitivity).unwrap_or(self.sensitivity);
        Effective {
            api_call_rate: enabled && pick(|o| o.api_call_rate, self.api_call_rate),
            api_error_rate: enabled && pick(|o| o.api_error_rate, self.api_error_rate),
            sensitivity,
            z: upper_tail_z(sensitivity),
            min_count: o.and_then(|o| o.min_count).unwrap_or(self.min_count),
        }
    }
}

/// The settings that apply to one account, resolved once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Effective {
    pub(crate) api_call_rate: bool,
    pub(crate) api_error_rate: bool,
    pub(crate) sensitivity: f64,
    /// The standard normal quantile of `sensitivity` (for large baselines).
    pub(crate) z: f64,
    pub(crate) min_count: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_table_gives_the_documented_defaults() -> Result<(), Box<dyn std::error::Error>> {
        let c: InsightsConfig = toml::from_str("")?;
        assert_eq!(c, InsightsConfig::default());
        assert_eq!(c.baseline_window_minutes(), 10_080);
        assert_eq!(c.min_history_minutes(), 60);
        c.validate()?;
        Ok(())
    }

    #[test]
    fn human_durations_and_overrides_read() -> Result<(), Box<dyn std::error::Error>> {
        let c: InsightsConfig = toml::from_str(
            r#"
            enabled = true
            baseline_window_ms = "3d"
            min_history_ms = "2h"
            sensitivity = 1e-8
            ignored_event_sources = ["sts.amazonaws.com"]
            [accounts.111122223333]
            api_error_rate = false
            min_count = 20
            "#,
        )?;
        c.validate()?;
        assert_eq!(c.baseline_window_minutes(), 3 * 1440);
        assert_eq!(c.min_history_minutes(), 120);
        let e = c.effective("111122223333");
        assert!(e.api_call_rate && !e.api_error_rate);
        assert_eq!(e.min_count, 20);
        let d = c.effective("444455556666");
        assert!(d.api_call_rate && d.api_error_rate);
        assert_eq!(d.min_count, 5);
        Ok(())
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let c = InsightsConfig {
            baseline_window_ms: 90_000,
            sensitivity: 2.0,
            min_count: 0,
            end_after_minutes: 0,
            lateness_minutes: 9,
            accounts: BTreeMap::from([("12".to_owned(), AccountInsights::default())]),
            ..InsightsConfig::default()
        };
        let problems = c.validate().err().map(|e| e.problems).unwrap_or_default();
        for needle in [
            "baseline_window_ms",
            "min_history_ms",
            "sensitivity",
            "min_count",
            "end_after_minutes",
            "lateness_minutes",
            "\"12\"",
        ] {
            assert!(
                problems.iter().any(|p| p.contains(needle)),
                "{needle} not in {problems:?}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<InsightsConfig>("sensitivty = 1e-6").is_err());
    }
}
