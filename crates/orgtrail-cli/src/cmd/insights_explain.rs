//! `orgtrail insights explain ID`: one Insight as an auditor reads it. Finds the Insight
//! event by its eventID, then its partner (the End of a Start, or the Start of an End: same
//! `sharedEventID`, looked for within [`PARTNER_WINDOW_MS`]), counts the key's stored calls
//! per minute from [`BEFORE_MIN`] minutes before the Start to [`AFTER_MIN`] after the End
//! (a bounded lookup: at most `--max-events` events are read), and prints them as a text
//! chart, then the attributions table of the Insight.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::bail;
use orgtrail_core::{AccountId, Timestamp};
use orgtrail_store::{Attr, Query, StoredEvent};
use serde_json::Value;

use crate::cmd::remote::{Target, Where};

/// Minutes shown before the Start.
const BEFORE_MIN: i64 = 30;
/// Minutes shown after the End (or after the Start, while the Insight is open).
const AFTER_MIN: i64 = 10;
/// How far from one state the other is looked for: an Insight longer than this is shown
/// from its Start (or to its End) only.
const PARTNER_WINDOW_MS: i64 = 24 * 3_600_000;
/// Widest bar of the chart, in characters.
const BAR: usize = 50;

/// Explain one Insight: the per-minute count of its key's calls around it, as a text chart,
/// and its attributions. Reads from the collector (an auditor or admin certificate, or a
/// profile) or from a store on disk (--data-dir DIR --keys DIR, the collector not running).
#[derive(Debug, clap::Args)]
pub(crate) struct ExplainArgs {
    /// The eventID of the Insight event (its Start or its End).
    id: String,
    /// The account of the Insight (faster, and needed when two accounts hold the same
    /// eventID).
    #[arg(long)]
    account: Option<AccountId>,
    /// Most of the key's events read to draw the chart (newest first within the window);
    /// when reached, the chart says its oldest minutes are partial.
    #[arg(long, default_value_t = 100_000)]
    max_events: usize,
    #[command(flatten)]
    target: Target,
}

/// Reads pages of events from a store on disk or from a collector.
enum Reader {
    Offline(orgtrail_store::Ledger),
    Remote(tokio::runtime::Runtime, Box<orgtrail_client::Client>),
}

impl Reader {
    fn open(t: &Target) -> anyhow::Result<Self> {
        Ok(match t.resolve()? {
            Where::Offline => Self::Offline(t.open_offline()?),
            Where::Remote(r) => {
                let rt = crate::cmd::remote::runtime()?;
                let c = rt.block_on(crate::cmd::remote::connect(&r))?;
                Self::Remote(rt, Box::new(c))
            }
        })
    }

    /// Every event `q` selects, newest first, at most `max`; and whether more were left.
    fn all(&mut self, q: &Query, max: usize) -> anyhow::Result<(Vec<StoredEvent>, bool)> {
        let mut q = q.clone();
        let mut out = Vec::new();
        loop {
            q.limit = (max - out.len()).min(orgtrail_store::MAX_PAGE);
            let (events, next) = self.page(&q)?;
            out.extend(events);
            match next {
                Some(t) if out.len() < max => q.page_token = Some(t),
                Some(_) => return Ok((out, true)),
                None => return Ok((out, false)),
            }
        }
    }

    fn page(&mut self, q: &Query) -> anyhow::Result<(Vec<StoredEvent>, Option<String>)> {
        match self {
            Self::Offline(l) => {
                let p = l.query(q)?;
                Ok((p.events, p.next_token))
            }
            Self::Remote(rt, c) => rt.block_on(async {
                use orgtrail_proto::v1 as pb;
                let page = c
                    .query
                    .lookup(pb::LookupRequest {
                        filters: orgtrail_client::filters(q),
                        event_id: q.event_id.clone().unwrap_or_default(),
                        start_ms: q.start.map(Timestamp::millis),
                        end_ms: q.end.map(Timestamp::millis),
                        max_results: u32::try_from(q.limit).unwrap_or(u32::MAX),
                        next_token: q.page_token.clone().unwrap_or_default(),
                    })
                    .await
                    .map_err(|s| c.explain(s))?
                    .into_inner();
                let events = page
                    .events
                    .into_iter()
                    .map(orgtrail_client::from_pb)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((
                    events,
                    (!page.next_token.is_empty()).then_some(page.next_token),
                ))
            }),
        }
    }

    fn close(self) -> anyhow::Result<()> {
        if let Self::Offline(l) = self {
            l.close()?;
        }
        Ok(())
    }
}

fn query(filters: Vec<(Attr, String)>, start: i64, end: i64) -> Query {
    Query {
        filters,
        event_id: None,
        accounts: Vec::new(),
        start: Some(Timestamp(start)),
        end: Some(Timestamp(end)),
        limit: 0,
        page_token: None,
    }
}

/// An Insight event, as far as explaining it goes.
struct Insight {
    event: Value,
    account: AccountId,
    time: i64,
}

impl Insight {
    fn from_stored(e: &StoredEvent) -> Option<Self> {
        let event: Value = serde_json::from_slice(&e.bytes).ok()?;
        (event["eventCategory"] == "Insight").then_some(Self {
            event,
            account: e.account,
            time: e.time.millis(),
        })
    }
    fn details(&self) -> &Value {
        &self.event["insightDetails"]
    }
    fn str(&self, v: &Value) -> String {
        v.as_str().unwrap_or_default().to_owned()
    }
    fn state(&self) -> String {
        self.str(&self.details()["state"])
    }
    /// The filters that select the key's calls.
    fn key_filters(&self) -> Vec<(Attr, String)> {
        let d = self.details();
        let mut f = vec![
            (Attr::Account, self.account.to_string()),
            (Attr::Region, self.str(&self.event["awsRegion"])),
            (Attr::EventSource, self.str(&d["eventSource"])),
            (Attr::EventName, self.str(&d["eventName"])),
        ];
        if d["insightType"] == "ApiErrorRateInsight" {
            f.push((Attr::ErrorCode, self.str(&d["errorCode"])));
        } else {
            f.push((Attr::ReadOnly, "false".to_owned()));
        }
        f
    }
}

pub(crate) fn run(a: ExplainArgs) -> anyhow::Result<ExitCode> {
    let mut r = Reader::open(&a.target)?;
    let result = explain(&mut r, &a);
    r.close()?;
    let text = result?;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn explain(r: &mut Reader, a: &ExplainArgs) -> anyhow::Result<String> {
    let mut q = query(Vec::new(), 0, i64::MAX);
    (q.start, q.end) = (None, None);
    q.event_id = Some(a.id.clone());
    if let Some(acct) = a.account {
        q.filters.push((Attr::Account, acct.to_string()));
    }
    let (found, _) = r.all(&q, 10)?;
    let Some(this) = found.iter().find_map(Insight::from_stored) else {
        bail!(
            "no Insight event with eventID {} (is it the eventID of an Insight, and readable by this certificate?)",
            a.id
        );
    };
    // The other state, by sharedEventID, on the Insight's own key.
    let shared = this.event["sharedEventID"].clone();
    let (from, to) = if this.state() == "Start" {
        (this.time, this.time + PARTNER_WINDOW_MS)
    } else {
        (this.time - PARTNER_WINDOW_MS, this.time)
    };
    let mut names = vec![
        (Attr::Account, this.account.to_string()),
        (Attr::EventName, this.str(&this.details()["eventName"])),
    ];
    names.push((Attr::EventSource, this.str(&this.details()["eventSource"])));
    let (near, _) = r.all(&query(names, from, to + 1), a.max_events)?;
    let partner = near
        .iter()
        .filter_map(Insight::from_stored)
        .find(|i| i.event["sharedEventID"] == shared && i.state() != this.state());
    let (start, end) = match (this.state().as_str(), &partner) {
        ("Start", p) => (&this, p.as_ref()),
        (_, Some(p)) => (p, Some(&this)),
        (_, None) => (&this, None),
    };
    let first = minute(start.time) - BEFORE_MIN;
    let last = minute(end.map_or(start.time, |e| e.time)) + AFTER_MIN;
    let (calls, partial) = r.all(
        &query(this.key_filters(), first * 60_000, (last + 1) * 60_000),
        a.max_events,
    )?;
    let mut counts = vec![0u64; usize::try_from(last - first + 1).unwrap_or(0)];
    let mut oldest = i64::MAX;
    for e in &calls {
        if orgtrail_core::parse_fields(&e.bytes, orgtrail_core::MAX_EVENT_BYTES)
            .is_ok_and(|f| f.is_insight())
        {
            continue;
        }
        let m = minute(e.time.millis());
        oldest = oldest.min(m);
        if let Some(c) = usize::try_from(m - first)
            .ok()
            .and_then(|i| counts.get_mut(i))
        {
            *c += 1;
        }
    }
    let mut s = String::new();
    let d = start.details();
    s += &format!(
        "{} {} of {} {}{} in account {} ({}), sharedEventID {}\n",
        start.str(&d["insightType"]),
        if end.is_some() { "ended" } else { "open" },
        start.str(&d["eventSource"]),
        start.str(&d["eventName"]),
        d["errorCode"]
            .as_str()
            .map(|c| format!(" ({c})"))
            .unwrap_or_default(),
        start.account,
        start.str(&start.event["awsRegion"]),
        start.str(&shared),
    );
    let stats = &d["insightContext"]["statistics"];
    s += &format!(
        "baseline {} per minute over {} minutes; insight {} per minute over {} minutes\n\n",
        stats["baseline"]["average"],
        stats["baselineDuration"],
        stats["insight"]["average"],
        stats["insightDuration"],
    );
    s += &format!(
        "calls per minute ({}{}, UTC):\n",
        if d["insightType"] == "ApiErrorRateInsight" {
            "calls failing with this errorCode"
        } else {
            "write calls"
        },
        if partial {
            format!(
                "; stopped after --max-events {}: minutes before {} are partial",
                a.max_events,
                hhmm(oldest)
            )
        } else {
            String::new()
        }
    );
    let marks = |m: i64| {
        if m == minute(start.time) {
            " <- Start"
        } else if end.is_some_and(|e| minute(e.time) == m) {
            " <- End"
        } else {
            ""
        }
    };
    s += &chart(first, &counts, marks);
    s += "\nattributions (average calls per minute):\n";
    s += &attributions(&d["insightContext"]["attributions"]);
    Ok(s)
}

fn minute(ms: i64) -> i64 {
    ms.div_euclid(60_000)
}

/// `HH:MM` of a minute since the epoch.
fn hhmm(minute: i64) -> String {
    let t = Timestamp(minute * 60_000).to_string();
    t.get(11..16).unwrap_or(&t).to_owned()
}

/// One line per minute from `first`: its time, its count and a bar scaled to the largest
/// count, then what `mark` says of it.
fn chart(first: i64, counts: &[u64], mark: impl Fn(i64) -> &'static str) -> String {
    let top = counts.iter().copied().max().unwrap_or(0).max(1);
    let width = counts.iter().max().map_or(1, |m| m.to_string().len());
    let mut s = String::new();
    for (i, &n) in counts.iter().enumerate() {
        let m = first + i as i64;
        let bar = usize::try_from(n.saturating_mul(BAR as u64).div_ceil(top)).unwrap_or(BAR);
        s += &format!("{} {n:>width$}", hhmm(m));
        if bar > 0 {
            s.push(' ');
            s += &"#".repeat(bar);
        }
        s += mark(m);
        s.push('\n');
    }
    s
}

/// The attributions as a table: attribute, value, average in the insight, in the baseline.
fn attributions(a: &Value) -> String {
    let mut rows = vec![[
        "attribute".to_owned(),
        "value".to_owned(),
        "insight".to_owned(),
        "baseline".to_owned(),
    ]];
    for attr in a.as_array().into_iter().flatten() {
        let name = attr["attribute"].as_str().unwrap_or_default();
        let average = |side: &str, value: &Value| {
            attr[side]
                .as_array()
                .into_iter()
                .flatten()
                .find(|v| &v["value"] == value)
                .map_or_else(|| "-".to_owned(), |v| v["average"].to_string())
        };
        let mut values: Vec<&Value> = Vec::new();
        for side in ["insight", "baseline"] {
            for v in attr[side].as_array().into_iter().flatten() {
                if !values.contains(&&v["value"]) {
                    values.push(&v["value"]);
                }
            }
        }
        for v in values {
            rows.push([
                name.to_owned(),
                v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                average("insight", v),
                average("baseline", v),
            ]);
        }
    }
    let widths: Vec<usize> = (0..4)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut s = String::new();
    for r in &rows {
        let line = format!(
            "{:<w0$}  {:<w1$}  {:>w2$}  {:>w3$}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        );
        s += line.trim_end();
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_chart_scales_bars_to_the_busiest_minute_and_marks_the_start() {
        let first = 29_400_000;
        let c = chart(first, &[1, 0, 40], |m| {
            if m == first + 2 { " <- Start" } else { "" }
        });
        let lines: Vec<&str> = c.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], format!("{}  1 {}", hhmm(first), "##"));
        assert_eq!(lines[1], format!("{}  0", hhmm(first + 1)));
        assert!(lines[2].ends_with(&format!("40 {} <- Start", "#".repeat(BAR))));
    }

    #[test]
    fn attributions_pair_each_value_with_its_insight_and_baseline_averages() {
        let a: Value = serde_json::json!([
            {"attribute": "userIdentityArn",
             "insight": [{"value": "arn:a", "average": 0.5}, {"value": "arn:b", "average": 0.1}],
             "baseline": [{"value": "arn:b", "average": 0.01}]},
            {"attribute": "errorCode", "insight": [{"value": "null", "average": 0.6}], "baseline": []}
        ]);
        let t = attributions(&a);
        let rows: Vec<Vec<&str>> = t.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(
            rows,
            [
                vec!["attribute", "value", "insight", "baseline"],
                vec!["userIdentityArn", "arn:a", "0.5", "-"],
                vec!["userIdentityArn", "arn:b", "0.1", "0.01"],
                vec!["errorCode", "null", "0.6", "-"],
            ],
            "{t}"
        );
    }
}
