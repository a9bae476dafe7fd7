//! What a sink receives: the EventBridge envelope of the event, as AWS would deliver it to a
//! rule's target (`version`, `id`, `detail-type`, `source`, `account`, `time`, `region`,
//! `resources`, `detail` = the CloudTrail record), with the alert id as its `id`, plus the
//! rule's `rule-id`, `rule-name` and `severity`. EventBridge consumers need no changes.

use orgtrail_rules::cloudtrail;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The alert id of `rule` firing on the event `event_id` of `account`: the first 16 bytes of
/// SHA-256(`orgtrail/alert/v1` 0 rule 0 account 0 eventID), written as a UUID. The same alert
/// always has the same id, across restarts and redeliveries.
pub fn alert_id(rule: &str, account: &str, event_id: &str) -> String {
    let mut h = Sha256::new();
    for part in ["orgtrail/alert/v1", rule, account, event_id] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    let d = h.finalize();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(36);
    for (i, b) in d[..16].iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            id.push('-');
        }
        id.push(char::from(HEX[usize::from(b >> 4)]));
        id.push(char::from(HEX[usize::from(b & 15)]));
    }
    id
}

/// The alert of the rule `rule_id` on a stored event: its id and its payload, exactly as sinks
/// receive it (compact JSON). `rule` is that rule if it is still loaded; the alert of a rule
/// removed since it fired keeps its `rule-id` and has no `rule-name` or `severity`. A record
/// without an eventID is stored under the id derived from its bytes (as dedup keys it), and its
/// alert id derives from that one.
///
/// The envelope's keys come in name order, and its `detail` is the record's stored bytes as
/// they are (a key given twice stays twice): only the few fields the envelope is made of are
/// read, the record is never built into a value nor written again. A record those fields
/// cannot be read from alone (one of them named twice), or spread over lines (which would
/// split a line of the file sink), is parsed in full and written compact.
pub fn of_stored(
    e: &orgtrail_store::StoredEvent,
    rule_id: &str,
    rule: Option<&orgtrail_rules::Rule>,
) -> Result<(String, Vec<u8>), serde_json::Error> {
    of_record(&e.account, &e.bytes, rule_id, rule)
}

/// [`of_stored`] from the stored bytes of an event and the account it is stored under.
pub fn of_record(
    account: &orgtrail_core::AccountId,
    stored: &[u8],
    rule_id: &str,
    rule: Option<&orgtrail_rules::Rule>,
) -> Result<(String, Vec<u8>), serde_json::Error> {
    let bytes = stored.trim_ascii();
    let one_line = !bytes.contains(&b'\n') && !bytes.contains(&b'\r');
    let head = match serde_json::from_slice::<Head>(bytes) {
        Ok(head) if one_line => head,
        _ => {
            return Ok(of_value(
                account,
                stored,
                &serde_json::from_slice(stored)?,
                rule_id,
                rule,
            ));
        }
    };
    let id = match head.event_id.as_ref().and_then(Value::as_str) {
        Some(id) => alert_id(rule_id, account.as_str(), id),
        None => alert_id(
            rule_id,
            account.as_str(),
            &orgtrail_core::derived_event_id(stored),
        ),
    };
    let detail_type = cloudtrail::detail_type_of_str(
        head.event_category.as_ref().and_then(Value::as_str) == Some("Insight"),
        head.event_type.as_ref().and_then(Value::as_str),
    );
    let source = head
        .event_source
        .as_ref()
        .and_then(Value::as_str)
        .map(cloudtrail::source_of);
    let mut out = Vec::with_capacity(bytes.len() + 512);
    out.extend_from_slice(b"{\"account\":");
    write(&mut out, &head.account)?;
    out.extend_from_slice(b",\"detail\":");
    out.extend_from_slice(bytes);
    out.extend_from_slice(b",\"detail-type\":");
    write(&mut out, detail_type)?;
    out.extend_from_slice(b",\"id\":");
    write(&mut out, &id)?;
    out.extend_from_slice(b",\"region\":");
    write(&mut out, &head.region)?;
    out.extend_from_slice(b",\"resources\":[");
    let arns = head
        .resources
        .as_ref()
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("ARN"));
    for (i, arn) in arns.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(&mut out, arn)?;
    }
    out.extend_from_slice(b"],\"rule-id\":");
    write(&mut out, rule_id)?;
    if let Some(rule) = rule {
        out.extend_from_slice(b",\"rule-name\":");
        write(&mut out, &rule.name)?;
        out.extend_from_slice(b",\"severity\":");
        write(&mut out, rule.severity.as_str())?;
    }
    out.extend_from_slice(b",\"source\":");
    write(&mut out, &source)?;
    out.extend_from_slice(b",\"time\":");
    write(&mut out, &head.time)?;
    out.extend_from_slice(b",\"version\":\"0\"}");
    Ok((id, out))
}

/// The record fields the envelope is made of (a missing field and `null` alike: the envelope
/// writes both as `null`). Every other field is skipped unread.
#[derive(Deserialize)]
struct Head {
    #[serde(rename = "eventID")]
    event_id: Option<Value>,
    #[serde(rename = "eventSource")]
    event_source: Option<Value>,
    #[serde(rename = "eventType")]
    event_type: Option<Value>,
    #[serde(rename = "eventCategory")]
    event_category: Option<Value>,
    #[serde(rename = "recipientAccountId")]
    account: Option<Value>,
    #[serde(rename = "eventTime")]
    time: Option<Value>,
    #[serde(rename = "awsRegion")]
    region: Option<Value>,
    resources: Option<Value>,
}

/// Appends `v` as compact JSON.
fn write(out: &mut Vec<u8>, v: &(impl Serialize + ?Sized)) -> Result<(), serde_json::Error> {
    serde_json::to_writer(out, v)
}

/// [`of_stored`] from the record parsed in full (`record`: `e`'s bytes as JSON): the envelope
/// built as a value and written compact.
fn of_value(
    account: &orgtrail_core::AccountId,
    stored: &[u8],
    record: &Value,
    rule_id: &str,
    rule: Option<&orgtrail_rules::Rule>,
) -> (String, Vec<u8>) {
    let event_id = record["eventID"]
        .as_str()
        .map_or_else(|| orgtrail_core::derived_event_id(stored), str::to_owned);
    let id = alert_id(rule_id, account.as_str(), &event_id);
    let mut v = cloudtrail::envelope(record);
    if let Some(o) = v.as_object_mut() {
        o.insert("id".into(), Value::String(id.clone()));
        o.insert("rule-id".into(), Value::String(rule_id.to_owned()));
        if let Some(rule) = rule {
            o.insert("rule-name".into(), Value::String(rule.name.clone()));
            o.insert(
                "severity".into(),
                Value::String(rule.severity.as_str().to_owned()),
            );
        }
    }
    (id, v.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use orgtrail_store::StoredEvent;
    use serde_json::json;

    #[test]
    fn an_alert_id_is_stable_and_names_rule_account_and_event() {
        let a = alert_id("root-login", "111122223333", "e1");
        assert_eq!(a, alert_id("root-login", "111122223333", "e1"));
        assert_eq!(a.len(), 36);
        assert_ne!(a, alert_id("root-login", "111122223333", "e2"));
        assert_ne!(a, alert_id("root-login", "444455556666", "e1"));
        assert_ne!(a, alert_id("other", "111122223333", "e1"));
        // No ambiguity from concatenation.
        assert_ne!(alert_id("a", "b1", "c"), alert_id("ab", "1", "c"));
        // The first 16 bytes of the SHA-256, as a UUID.
        let mut h = Sha256::new();
        h.update(b"orgtrail/alert/v1\x00root-login\x00111122223333\x00e1\x00");
        let hex: String = h.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let uuid = [
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..],
        ]
        .join("-");
        assert_eq!(a, uuid);
    }

    fn stored(bytes: &[u8]) -> StoredEvent {
        StoredEvent {
            seq: 7,
            account: "111122223333".parse().unwrap(),
            time: orgtrail_core::Timestamp(0),
            bytes: bytes.to_vec(),
        }
    }

    fn rule() -> orgtrail_rules::Rule {
        orgtrail_rules::Rule::from_json(
            &json!({"id": "r1", "name": "Root \"login\"", "severity": "high",
                    "pattern": {"eventName": ["ConsoleLogin"]}}),
            std::path::Path::new("r1.json"),
        )
        .unwrap()
    }

    /// Records whose envelope reads every field: strings, odd types, missing ones.
    fn records() -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = [
            json!({"eventVersion": "1.08", "eventID": "e1", "eventName": "DeleteUser",
                   "eventSource": "iam.amazonaws.com", "eventType": "AwsApiCall",
                   "recipientAccountId": "111122223333", "eventTime": "2024-01-02T03:04:05Z",
                   "awsRegion": "us-east-1",
                   "resources": [{"ARN": "arn:aws:iam::111122223333:user/a", "type": "AWS::IAM::User"},
                                 {"type": "no arn"}, "odd", {"ARN": 5}],
                   "requestParameters": {"userName": "a\u{e9}\n\"q\"", "z": [1, 2.5, null, true]}}),
            json!({"eventID": "e2", "eventType": "AwsConsoleSignIn", "eventSource": "signin.amazonaws.com"}),
            json!({"eventID": "e3", "eventCategory": "Insight", "eventType": "AwsApiCall"}),
            json!({"eventType": "AwsServiceEvent", "recipientAccountId": 111_122_223_333u64,
                   "awsRegion": null, "resources": {"ARN": "not a list"}}),
            json!({"eventID": 12, "eventSource": "custom", "eventType": "AwsConsoleAction",
                   "eventTime": {"nested": ["x"]}}),
            json!({}),
        ]
        .iter()
        .map(|v| serde_json::to_vec(v).unwrap())
        .collect();
        // As they arrived: spaces between tokens, another key order, a field named twice, and
        // lines (which the file sink must not get).
        out.push(
            br#" { "eventName" : "X", "eventID" : "e4" , "eventSource":"s3.amazonaws.com" } "#
                .to_vec(),
        );
        out.push(br#"{"eventID":"e5","eventID":"e6","awsRegion":"eu-west-1"}"#.to_vec());
        out.push(
            b"{\n  \"eventID\": \"e7\",\r\n  \"eventSource\": \"ec2.amazonaws.com\"\n}".to_vec(),
        );
        out
    }

    #[test]
    fn the_payload_is_the_envelope_of_the_record_as_stored() {
        for bytes in records() {
            let e = stored(&bytes);
            let record: Value = serde_json::from_slice(&bytes).unwrap();
            for rule in [Some(rule()), None] {
                let (id, body) = of_stored(&e, "r1", rule.as_ref()).unwrap();
                let (want_id, want) = of_value(&e.account, &e.bytes, &record, "r1", rule.as_ref());
                assert_eq!(id, want_id);
                let got: Value = serde_json::from_slice(&body).unwrap();
                let want: Value = serde_json::from_slice(&want).unwrap();
                assert_eq!(got, want, "{}", String::from_utf8_lossy(&bytes));
                assert_eq!(got["detail"], record, "the record as stored");
                assert_eq!(got["id"], id.as_str());
                assert!(!body.contains(&b'\n'), "one line for the file sink");
                assert_eq!(got.get("severity").is_some(), rule.is_some());
            }
        }
    }

    #[test]
    fn the_detail_is_the_stored_bytes_unchanged() {
        let bytes = br#"{"eventName":"X","eventID":"e4", "eventSource":"s3.amazonaws.com"}"#;
        let (_, body) = of_stored(&stored(bytes), "r1", None).unwrap();
        let detail = [&b"\"detail\":"[..], bytes].concat();
        assert!(body.windows(detail.len()).any(|w| w == detail.as_slice()));
    }

    #[test]
    fn the_alert_id_of_a_record_without_an_event_id_derives_from_its_bytes() {
        let bytes = br#"{"eventVersion":"1.0","eventName":"X"}"#;
        let (id, _) = of_stored(&stored(bytes), "r1", None).unwrap();
        assert_eq!(
            id,
            alert_id(
                "r1",
                "111122223333",
                &orgtrail_core::derived_event_id(bytes)
            )
        );
    }

    #[test]
    fn bytes_that_are_not_json_are_an_error() {
        assert!(of_stored(&stored(b"{\"eventID\":"), "r1", None).is_err());
    }
}
