//! What a sink receives: the EventBridge envelope of the event, as AWS would deliver it to a
//! rule's target (`version`, `id`, `detail-type`, `source`, `account`, `time`, `region`,
//! `resources`, `detail` = the CloudTrail record), with the alert id as its `id`, plus the
//! rule's `rule-id`, `rule-name` and `severity`. EventBridge consumers need no changes.

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
    let hex: String = d[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The payload of one alert.
pub fn payload(record: &Value, alert_id: &str, rule: &orgtrail_rules::Rule) -> Value {
    let mut v = orgtrail_rules::cloudtrail::envelope(record);
    if let Some(o) = v.as_object_mut() {
        o.insert("id".into(), Value::String(alert_id.to_owned()));
        o.insert("rule-id".into(), Value::String(rule.id.clone()));
        o.insert("rule-name".into(), Value::String(rule.name.clone()));
        o.insert(
            "severity".into(),
            Value::String(rule.severity.as_str().to_owned()),
        );
    }
    v
}

/// The alert of the rule `rule_id` on a stored event: its id and its payload, exactly as sinks
/// receive it. `rule` is that rule if it is still loaded; the alert of a rule removed since it
/// fired keeps its `rule-id` and has no `rule-name` or `severity`. A record without an eventID
/// is stored under the id derived from its bytes (as dedup keys it), and its alert id derives
/// from that one.
pub fn of_stored(
    e: &orgtrail_store::StoredEvent,
    rule_id: &str,
    rule: Option<&orgtrail_rules::Rule>,
) -> Result<(String, Value), serde_json::Error> {
    let record: Value = serde_json::from_slice(&e.bytes)?;
    Ok(of_record(e, &record, rule_id, rule))
}

/// [`of_stored`] with the event's record already parsed (`record`: `e`'s bytes as JSON).
pub fn of_record(
    e: &orgtrail_store::StoredEvent,
    record: &Value,
    rule_id: &str,
    rule: Option<&orgtrail_rules::Rule>,
) -> (String, Value) {
    let event_id = record["eventID"]
        .as_str()
        .map_or_else(|| orgtrail_core::derived_event_id(&e.bytes), str::to_owned);
    let id = alert_id(rule_id, e.account.as_str(), &event_id);
    let body = match rule {
        Some(rule) => payload(record, &id, rule),
        None => {
            let mut v = orgtrail_rules::cloudtrail::envelope(record);
            if let Some(o) = v.as_object_mut() {
                o.insert("id".into(), Value::String(id.clone()));
                o.insert("rule-id".into(), Value::String(rule_id.to_owned()));
            }
            v
        }
    };
    (id, body)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
