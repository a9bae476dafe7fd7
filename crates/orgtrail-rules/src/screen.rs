//! Screening: ruling an event out without parsing it for the rules.
//!
//! The collector validates every event when it arrives, and so already holds a few of its
//! top-level fields (`eventName`, `eventSource`, ...). Every rule alternative that has an
//! anchor (see [`crate::engine`]) can only match an event with a leaf that hits the anchor's
//! index. When every alternative has one, and the anchors are on fields the collector holds,
//! the values of those fields alone prove that no rule matches most events: detection rules
//! name rare event names. Such an event is never parsed or matched again by the evaluator.
//!
//! The answer is exact, never a guess: a field is answered only when its value at the record's
//! top level is known for certain (a string, the only leaf at its path), or known to be absent.
//! Anything else (a field of another type, absent or null where the validation parse cannot
//! tell; an Insight event, whose eventName may come from its insightDetails; `userIdentity.type`
//! or `.arn` when a member named `userIdentity.…` could also reach them) is [`Known::Unknown`],
//! and the event is matched in full.

use std::cell::OnceCell;

use orgtrail_core::{CloudTrailEvent, EventFields};

use crate::RuleSet;

/// What is known of a record's field, by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known<'a> {
    /// A string, the only leaf at the path.
    Str(&'a str),
    /// The same, computed.
    Owned(String),
    /// The record has no such member: no leaf.
    Absent,
    /// Not known without parsing the record.
    Unknown,
}

/// Whether [`known`] may know the value at `path` (the paths rules are screened by).
pub(crate) fn screenable(path: &str) -> bool {
    path.starts_with('$')
        || !path.contains('.')
        || matches!(path, "userIdentity.type" | "userIdentity.arn")
}

/// What the validation parse knows of a record's top-level field `path`.
///
/// - `eventName` and `eventSource` are strings, or the event was refused (outside Insight
///   events, where they may come from `insightDetails`: those are never answered).
/// - `recipientAccountId` is a string, or absent or null (not answered), or refused.
/// - `eventID` is a string; or, in an eventVersion 1.0 record, absent or null (derived: no
///   envelope `id`, and the record path is not answered); or refused.
/// - The lenient fields (`eventType`, `awsRegion`, `errorCode`, `errorMessage`,
///   `sourceIPAddress`, `userAgent`) are strings, absent, or of another type ([`EventFields::other_types`]: not
///   answered).
/// - Duplicate members of these fields are refused by the validation parse, so a known value
///   is the only one.
fn known<'f>(f: &'f EventFields, identity: &Identity<'_>, path: &str) -> Known<'f> {
    use crate::cloudtrail::{DETAIL_TYPE, ID, detail_type_of_str};
    use orgtrail_core::Lenient;
    if f.is_insight() {
        return Known::Unknown;
    }
    let lenient = |v: Option<&'f str>, field: Lenient| match v {
        Some(s) => Known::Str(s),
        None if f.other_types.contains(field) => Known::Unknown,
        None => Known::Absent,
    };
    match path {
        "eventName" => Known::Str(&f.event_name),
        "eventSource" => Known::Str(&f.event_source),
        "recipientAccountId" => f
            .recipient_account_id
            .as_deref()
            .map_or(Known::Unknown, Known::Str),
        "eventID" if f.event_id_derived => Known::Unknown,
        "eventID" => Known::Str(&f.event_id),
        ID if f.event_id_derived => Known::Absent,
        ID => Known::Str(&f.event_id),
        "eventType" => lenient(f.event_type.as_deref(), Lenient::EventType),
        "awsRegion" => lenient(f.aws_region.as_deref(), Lenient::AwsRegion),
        "errorCode" => lenient(f.error_code.as_deref(), Lenient::ErrorCode),
        "errorMessage" => lenient(f.error_message.as_deref(), Lenient::ErrorMessage),
        "sourceIPAddress" => lenient(f.source_ip_address.as_deref(), Lenient::SourceIpAddress),
        "userAgent" => lenient(f.user_agent.as_deref(), Lenient::UserAgent),
        // Not an Insight (above), so eventCategory is not the string `Insight`: eventType
        // decides, and the default stands when it is absent or not a string.
        DETAIL_TYPE => Known::Str(detail_type_of_str(false, f.event_type.as_deref())),
        "userIdentity.type" | "userIdentity.arn" if identity.only_member() => {
            let id = f.user_identity.as_ref();
            let v = match path {
                "userIdentity.type" => id.and_then(|u| u.identity_type.as_deref()),
                _ => id.and_then(|u| u.arn.as_deref()),
            };
            // Read leniently: `None` may be absent or another type.
            v.map_or(Known::Unknown, Known::Str)
        }
        _ => Known::Unknown,
    }
}

/// Whether `userIdentity`'s members are the only way to its paths: a top-level member named
/// `userIdentity.type` would reach `userIdentity.type` too. Such a name is written either
/// plainly (`"userIdentity.`) or with a `\u` escape, so an event with neither has none.
/// Found once per event, when first asked (a search of its bytes).
struct Identity<'b> {
    bytes: &'b [u8],
    only: OnceCell<bool>,
}

/// The plain form of such a name, searched for with a finder built once.
static DOTTED_IDENTITY: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"userIdentity."));

impl Identity<'_> {
    fn only_member(&self) -> bool {
        *self.only.get_or_init(|| {
            // A `\u` escape: each backslash found by the one-byte search, the fastest there is
            // (backslashes are rare in events), and its next byte looked at.
            let escaped = memchr::memchr_iter(b'\\', self.bytes)
                .any(|i| self.bytes.get(i + 1) == Some(&b'u'));
            !escaped && DOTTED_IDENTITY.find(self.bytes).is_none()
        })
    }
}

impl RuleSet {
    /// Whether some enabled rule may match `event` (validated): `false` proves that none does
    /// (see the module docs), so the event need not be parsed for the rules. Costs a hash
    /// lookup or two, and at most one search of the event's bytes.
    pub fn may_match(&self, event: &CloudTrailEvent) -> bool {
        let identity = Identity {
            bytes: event.bytes(),
            only: OnceCell::new(),
        };
        self.matcher
            .may_match(|path| known(event.fields(), &identity, path))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::Path;

    use orgtrail_core::CloudTrailEvent;
    use serde_json::json;

    use crate::Rule;

    use super::*;

    fn set(patterns: &[serde_json::Value]) -> RuleSet {
        let rules = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Rule::from_json(
                    &json!({"id": format!("r{i}"), "pattern": p}),
                    Path::new("x.json"),
                )
                .unwrap()
            })
            .collect();
        RuleSet::new(rules).unwrap()
    }

    fn event(v: &serde_json::Value) -> CloudTrailEvent {
        CloudTrailEvent::parse(serde_json::to_vec(v).unwrap()).unwrap()
    }

    fn base() -> serde_json::Value {
        json!({
            "eventVersion": "1.08", "eventID": "11111111-2222-3333-4444-555555555555",
            "eventTime": "2026-11-27T10:00:00Z", "eventName": "GetObject",
            "eventSource": "s3.amazonaws.com", "awsRegion": "eu-west-1",
            "recipientAccountId": "123456789012", "eventType": "AwsApiCall",
            "userIdentity": {"type": "Root", "arn": "arn:aws:iam::123456789012:root"}
        })
    }

    /// The screen never rules out an event that a rule matches, and rules out the events no
    /// anchor could be hit by.
    #[test]
    fn rules_out_only_events_no_rule_matches() {
        let rules = set(&[
            json!({"eventName": ["DeleteTrail", "StopLogging"]}),
            json!({"source": ["aws.kms"], "detail": {"eventName": [{"prefix": "ScheduleKey"}]}}),
            json!({"detail-type": ["AWS Console Sign In via CloudTrail"]}),
            json!({"region": [{"equals-ignore-case": "AP-SOUTH-1"}], "detail": {"errorCode": ["AccessDenied"]}}),
        ]);
        let cases = [
            (json!({}), false),
            (json!({"eventName": "DeleteTrail"}), true),
            (
                json!({"eventName": "ScheduleKeyDeletion", "eventSource": "kms.amazonaws.com"}),
                true,
            ),
            // Another service's key deletion: the KMS rule's anchor is not hit.
            (json!({"eventName": "ScheduleKeyDeletion"}), false),
            (json!({"eventType": "AwsConsoleSignIn"}), true),
            (
                json!({"awsRegion": "ap-south-1", "errorCode": "AccessDenied"}),
                true,
            ),
            // The rule on region and errorCode is anchored on one of them, here errorCode.
            (json!({"awsRegion": "ap-south-1"}), false),
            // A number where a string is usual: not known, so matched in full.
            // errorCode not a string: not known, so the rule anchored there is screened by its
            // other condition, the region.
            (json!({"errorCode": 7}), false),
            (json!({"errorCode": null, "awsRegion": "ap-south-1"}), true),
            // The anchor (errorCode) is hit, but the region, also known, is wrong.
            (
                json!({"errorCode": "AccessDenied", "awsRegion": "us-east-1"}),
                false,
            ),
            (
                json!({"errorCode": "Throttling", "awsRegion": "ap-south-1"}),
                false,
            ),
        ];
        for (change, may) in cases {
            let mut v = base();
            for (k, x) in change.as_object().unwrap() {
                v[k] = x.clone();
            }
            let e = event(&v);
            let mut hits = Vec::new();
            rules.matches(&v, &mut hits);
            assert_eq!(rules.may_match(&e), may, "{change}");
            assert!(
                hits.is_empty() || may,
                "{change}: a matching event was ruled out"
            );
        }
    }

    #[test]
    fn the_user_identity_is_screened_unless_a_dotted_member_could_reach_it() {
        let rules = set(&[json!({"$or": [
            {"eventName": ["DeleteTrail"]},
            {"userIdentity": {"type": ["Root"]}, "eventName": [{"suffix": "Policy"}]}
        ]})]);
        let mut v = base();
        v["userIdentity"]["type"] = json!("IAMUser");
        assert!(!rules.may_match(&event(&v)));
        v["userIdentity"]["type"] = json!("Root");
        assert!(
            !rules.may_match(&event(&v)),
            "the name does not end in Policy"
        );
        v["eventName"] = json!("PutRolePolicy");
        assert!(rules.may_match(&event(&v)));
        // A top-level member named with a dot reaches the same path: matched in full.
        let dotted = br#"{"eventVersion":"1.08","eventID":"e1","eventTime":"2026-11-27T10:00:00Z","eventName":"PutRolePolicy","eventSource":"iam.amazonaws.com","userIdentity":{"type":"IAMUser"},"userIdentity.type":"Root"}"#;
        let escaped = br#"{"eventVersion":"1.08","eventID":"e1","eventTime":"2026-11-27T10:00:00Z","eventName":"PutRolePolicy","eventSource":"iam.amazonaws.com","userIdentity":{"type":"IAMUser"},"userIdentity\u002etype":"Root"}"#;
        for bytes in [&dotted[..], &escaped[..]] {
            let e = CloudTrailEvent::parse(bytes.to_vec()).unwrap();
            let record: serde_json::Value = serde_json::from_slice(bytes).unwrap();
            let mut hits = Vec::new();
            rules.matches(&record, &mut hits);
            assert_eq!(hits.len(), 1, "{}", String::from_utf8_lossy(bytes));
            assert!(rules.may_match(&e));
        }
    }

    #[test]
    fn rules_without_an_anchor_are_screened_by_their_known_conditions() {
        let e = event(&base());
        let p = json!({"requestParameters": {"bucketName": ["logs"]}});
        assert!(set(&[p]).may_match(&e));
        // No anchor, but a condition on a known field: evaluated on its value.
        let p = json!({"eventName": [{"anything-but": "GetObject"}]});
        assert!(!set(std::slice::from_ref(&p)).may_match(&e));
        let mut v = base();
        v["eventName"] = json!("PutObject");
        assert!(set(&[p]).may_match(&event(&v)));
        // An Insight event's name may not be its record's eventName.
        let insight = event(&json!({
            "eventVersion": "1.08", "eventID": "11111111-2222-3333-4444-555555555556",
            "eventTime": "2026-11-27T10:00:00Z", "eventCategory": "Insight",
            "insightDetails": {"eventName": "DeleteTrail", "eventSource": "cloudtrail.amazonaws.com"}
        }));
        assert!(set(&[json!({"eventName": ["X"]})]).may_match(&insight));
    }

    /// Property: over generated events and the benchmark's rule mix, an event ruled out
    /// matches no rule.
    #[test]
    fn generated_events_ruled_out_match_no_rule() {
        let events = orgtrail_gen::Generator::new(orgtrail_gen::GenConfig {
            count: 3000,
            seed: 5,
            ..orgtrail_gen::GenConfig::default()
        });
        let anchored = set(&[
            json!({"eventName": ["ConsoleLogin"]}),
            json!({"eventSource": ["iam.amazonaws.com"], "eventName": [{"prefix": "Delete"}]}),
            json!({"source": ["aws.ec2"], "detail": {"eventName": ["RunInstances"]}}),
            json!({"errorCode": [{"prefix": "AccessDenied"}]}),
        ]);
        let cis = RuleSet::load("pack:cis").unwrap();
        let events: Vec<Vec<u8>> = events.collect();
        for (name, rules) in [("anchored", &anchored), ("cis", &cis)] {
            let (mut ruled_out, mut matched) = (0, 0);
            for bytes in &events {
                let e = CloudTrailEvent::parse(bytes.clone()).unwrap();
                let record: serde_json::Value = serde_json::from_slice(bytes).unwrap();
                let mut hits = Vec::new();
                rules.matches(&record, &mut hits);
                matched += usize::from(!hits.is_empty());
                if !rules.may_match(&e) {
                    ruled_out += 1;
                    assert!(hits.is_empty(), "{name}: a matching event was ruled out");
                }
            }
            eprintln!(
                "{name}: {ruled_out} of {} ruled out, {matched} matched",
                events.len()
            );
            assert!(
                ruled_out > 1000 && matched > 0,
                "{name}: {ruled_out} {matched}"
            );
        }
    }
}
