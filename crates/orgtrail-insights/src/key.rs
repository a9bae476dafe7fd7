//! What is counted: a [`Call`] taken from an event, and the [`SeriesKey`]s it counts under.
//!
//! - ApiCallRateInsight counts write management calls: `readOnly` false and `eventCategory`
//!   `Management` or absent, failed calls included (AWS's examples attribute them by
//!   errorCode, `"null"` for success). Key: (account, region, eventSource, eventName).
//! - ApiErrorRateInsight counts management calls with an `errorCode`, reads included. Key:
//!   (account, region, eventSource, eventName, errorCode).
//!
//! Insight events themselves, events without `awsRegion`, and data or network-activity events
//! are never counted.

use std::fmt::Write;

use orgtrail_core::{EventCategory, EventFields};

/// The two kinds of Insight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InsightType {
    ApiCallRate,
    ApiErrorRate,
}

/// One API call, as the detector sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call<'a> {
    /// The account the event belongs to (decided by the collector).
    pub account: &'a str,
    pub region: &'a str,
    pub event_source: &'a str,
    pub event_name: &'a str,
    /// Unix minute of `eventTime`.
    pub minute: i64,
    /// `readOnly`; absent is not a write.
    pub read_only: Option<bool>,
    /// A management event (`eventCategory` Management or absent, and not an Insight).
    pub management: bool,
    pub error_code: Option<&'a str>,
    /// `userIdentity.arn`.
    pub user_arn: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

impl<'a> Call<'a> {
    /// The call an event records, or `None` for an event that is never counted (an Insight,
    /// one without `awsRegion`). `account` is the account the collector files it under.
    pub fn from_fields(account: &'a str, f: &'a EventFields) -> Option<Self> {
        if f.is_insight() {
            return None;
        }
        let region = f.aws_region.as_deref().filter(|r| !r.is_empty())?;
        Some(Call {
            account,
            region,
            event_source: &f.event_source,
            event_name: &f.event_name,
            minute: f.event_time.millis().div_euclid(60_000),
            read_only: f.read_only,
            management: f.event_category == EventCategory::Management,
            error_code: f.error_code.as_deref().filter(|e| !e.is_empty()),
            user_arn: f.user_identity.as_ref().and_then(|u| u.arn.as_deref()),
            user_agent: f.user_agent.as_deref(),
        })
    }

    /// Counted by ApiCallRateInsight.
    pub fn is_write(&self) -> bool {
        self.management && self.read_only == Some(false)
    }

    /// Counted by ApiErrorRateInsight.
    pub fn is_error(&self) -> bool {
        self.management && self.error_code.is_some()
    }

    /// Counted by either: the detector passes over any other call
    /// ([`crate::Detector::observe`] does nothing with it).
    pub fn is_counted(&self) -> bool {
        self.is_write() || self.is_error()
    }
}

/// The key of one series: the insight type and (account, region, eventSource, eventName
/// [, errorCode]), encoded as one string (`type` digit, then each part as `len:bytes`) so a
/// lookup needs no allocation beyond a reused buffer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    encoded: Box<str>,
}

/// Writes the encoding of a key into `buf` (cleared first).
pub(crate) fn encode_into(buf: &mut String, t: InsightType, call: &Call<'_>) {
    buf.clear();
    buf.push(match t {
        InsightType::ApiCallRate => 'C',
        InsightType::ApiErrorRate => 'E',
    });
    let mut part = |s: &str| {
        let _ = write!(buf, "{}:", s.len());
        buf.push_str(s);
    };
    part(call.account);
    part(call.region);
    part(call.event_source);
    part(call.event_name);
    if t == InsightType::ApiErrorRate {
        part(call.error_code.unwrap_or(""));
    }
}

impl SeriesKey {
    /// A key from its parts.
    pub fn new(
        t: InsightType,
        account: &str,
        region: &str,
        event_source: &str,
        event_name: &str,
        error_code: Option<&str>,
    ) -> Self {
        let call = Call {
            account,
            region,
            event_source,
            event_name,
            minute: 0,
            read_only: None,
            management: true,
            error_code,
            user_arn: None,
            user_agent: None,
        };
        let mut buf = String::new();
        encode_into(&mut buf, t, &call);
        SeriesKey {
            encoded: buf.into_boxed_str(),
        }
    }

    /// From a stored encoding; `None` if it is not one.
    pub fn from_encoded(s: &str) -> Option<Self> {
        let k = SeriesKey { encoded: s.into() };
        let n = k.parts().count();
        let want = match k.encoded.as_bytes().first() {
            Some(b'C') => 4,
            Some(b'E') => 5,
            _ => return None,
        };
        (n == want && k.parts_len_ok()).then_some(k)
    }

    pub(crate) fn from_boxed(encoded: Box<str>) -> Self {
        SeriesKey { encoded }
    }

    /// The encoding (stable: stored in state, hashed into event ids).
    pub fn encoded(&self) -> &str {
        &self.encoded
    }

    fn parts(&self) -> Parts<'_> {
        Parts {
            rest: self.encoded.get(1..).unwrap_or(""),
        }
    }

    fn parts_len_ok(&self) -> bool {
        let mut p = self.parts();
        while p.next().is_some() {}
        p.rest.is_empty()
    }

    fn part(&self, i: usize) -> &str {
        self.parts().nth(i).unwrap_or("")
    }

    pub fn insight_type(&self) -> InsightType {
        if self.encoded.starts_with('E') {
            InsightType::ApiErrorRate
        } else {
            InsightType::ApiCallRate
        }
    }

    pub fn account(&self) -> &str {
        self.part(0)
    }

    pub fn region(&self) -> &str {
        self.part(1)
    }

    pub fn event_source(&self) -> &str {
        self.part(2)
    }

    pub fn event_name(&self) -> &str {
        self.part(3)
    }

    /// The errorCode of an ApiErrorRateInsight key.
    pub fn error_code(&self) -> Option<&str> {
        match self.insight_type() {
            InsightType::ApiErrorRate => Some(self.part(4)),
            InsightType::ApiCallRate => None,
        }
    }
}

/// The account of an encoded key, without allocating.
pub(crate) fn account_of(encoded: &str) -> &str {
    Parts {
        rest: encoded.get(1..).unwrap_or(""),
    }
    .next()
    .unwrap_or("")
}

struct Parts<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Parts<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let (len, tail) = self.rest.split_once(':')?;
        let len: usize = len.parse().ok()?;
        let part = tail.get(..len)?;
        self.rest = tail.get(len..)?;
        Some(part)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_their_encoding() {
        let k = SeriesKey::new(
            InsightType::ApiErrorRate,
            "111122223333",
            "eu-west-1",
            "s3.amazonaws.com",
            "Put:Bucket",
            Some("AccessDenied"),
        );
        let back = SeriesKey::from_encoded(k.encoded());
        assert_eq!(back.as_ref(), Some(&k));
        assert_eq!(k.event_name(), "Put:Bucket");
        assert_eq!(k.error_code(), Some("AccessDenied"));
        assert_eq!(k.region(), "eu-west-1");
        assert!(SeriesKey::from_encoded("C3:abc").is_none());
        assert!(SeriesKey::from_encoded("X").is_none());
    }
}
