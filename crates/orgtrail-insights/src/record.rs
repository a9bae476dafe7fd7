//! A [`Call`] owned, for a caller that keeps calls between taking them from events and
//! feeding them (the collector keeps the calls of events just stored, so that it need not
//! read the events back from its ledger).

use crate::key::Call;

/// A [`Call`] owned, without its account (the caller keeps that): its strings in one
/// allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// region, eventSource, eventName, errorCode, userIdentity arn, userAgent, one after the
    /// other.
    text: Box<str>,
    /// Where each of them ends in `text`.
    ends: [usize; 6],
    /// Which of errorCode, arn and userAgent are present (bits 0, 1, 2).
    present: u8,
    minute: i64,
    read_only: Option<bool>,
    management: bool,
}

impl CallRecord {
    /// The call, owned (its account dropped).
    pub fn of(call: &Call<'_>) -> Self {
        let parts = [
            Some(call.region),
            Some(call.event_source),
            Some(call.event_name),
            call.error_code,
            call.user_arn,
            call.user_agent,
        ];
        let mut text = String::with_capacity(parts.iter().flatten().map(|p| p.len()).sum());
        let mut ends = [0; 6];
        let mut present = 0u8;
        for (i, p) in parts.iter().enumerate() {
            if let Some(p) = p {
                text.push_str(p);
                if i >= 3 {
                    present |= 1 << (i - 3);
                }
            }
            ends[i] = text.len();
        }
        CallRecord {
            text: text.into_boxed_str(),
            ends,
            present,
            minute: call.minute,
            read_only: call.read_only,
            management: call.management,
        }
    }

    /// The call again, as `account`'s.
    pub fn call<'a>(&'a self, account: &'a str) -> Call<'a> {
        let part = |i: usize| {
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            self.text.get(start..self.ends[i]).unwrap_or("")
        };
        let optional = |i: usize| (self.present & (1 << (i - 3)) != 0).then(|| part(i));
        Call {
            account,
            region: part(0),
            event_source: part(1),
            event_name: part(2),
            minute: self.minute,
            read_only: self.read_only,
            management: self.management,
            error_code: optional(3),
            user_arn: optional(4),
            user_agent: optional(5),
        }
    }

    /// The bytes it takes in memory, about.
    pub fn size(&self) -> usize {
        std::mem::size_of::<Self>() + self.text.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_kept_is_the_same_call() {
        let full = Call {
            account: "111122223333",
            region: "us-east-1",
            event_source: "iam.amazonaws.com",
            event_name: "CreateUser",
            minute: 29_000_000,
            read_only: Some(false),
            management: true,
            error_code: Some("AccessDenied"),
            user_arn: Some("arn:aws:iam::111122223333:user/u"),
            user_agent: Some(""),
        };
        let bare = Call {
            error_code: None,
            user_arn: None,
            user_agent: None,
            read_only: None,
            management: false,
            ..full
        };
        for c in [full, bare] {
            assert_eq!(CallRecord::of(&c).call("111122223333"), c);
        }
    }
}
