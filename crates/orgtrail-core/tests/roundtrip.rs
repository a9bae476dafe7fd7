//! Property: encoding events into any input shape and decoding them gives back each event's
//! exact bytes and the same fields.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;

use orgtrail_core::{CloudTrailEvent, DecodeLimits, InputFormat, Timestamp, decode_bytes};
use proptest::prelude::*;
use serde_json::json;

#[derive(Debug, Clone)]
struct Spec {
    id: String,
    secs: i64,
    name: String,
    source: String,
    user: Option<String>,
    account: Option<String>,
    read_only: Option<bool>,
    error: Option<String>,
    bucket: Option<String>,
    extra: String,
}

fn text() -> impl Strategy<Value = String> {
    // Any Unicode, including quotes, backslashes and control characters (JSON-escaped).
    "\\PC{1,24}|[\"\\\\\u{0}-\u{1f}a-z]{1,8}"
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        text(),
        0i64..4_102_444_800,
        text(),
        text(),
        proptest::option::of(text()),
        proptest::option::of("[0-9]{12}"),
        proptest::option::of(any::<bool>()),
        proptest::option::of(text()),
        proptest::option::of(text()),
        "\\PC{0,40}",
    )
        .prop_map(
            |(id, secs, name, source, user, account, read_only, error, bucket, extra)| Spec {
                id,
                secs,
                name,
                source,
                user,
                account,
                read_only,
                error,
                bucket,
                extra,
            },
        )
}

fn encode(s: &Spec, pretty: bool) -> Vec<u8> {
    let mut v = json!({
        "eventVersion": "1.08",
        "eventID": s.id,
        "eventTime": Timestamp::from_unix_secs(s.secs).to_string(),
        "eventSource": s.source,
        "eventName": s.name,
        "additional": {"deep": [s.extra, {"x": [1, 2.5, null]}]},
    });
    let m = v.as_object_mut().unwrap();
    if let Some(u) = &s.user {
        m.insert(
            "userIdentity".into(),
            json!({"type": "IAMUser", "userName": u}),
        );
    }
    if let Some(a) = &s.account {
        m.insert("recipientAccountId".into(), json!(a));
    }
    if let Some(r) = s.read_only {
        m.insert("readOnly".into(), json!(r));
    }
    if let Some(e) = &s.error {
        m.insert("errorCode".into(), json!(e));
    }
    if let Some(b) = &s.bucket {
        m.insert("requestParameters".into(), json!({"bucketName": b}));
    }
    if pretty {
        serde_json::to_vec_pretty(&v).unwrap()
    } else {
        serde_json::to_vec(&v).unwrap()
    }
}

fn check(ev: &CloudTrailEvent, s: &Spec) {
    let f = ev.fields();
    assert_eq!(f.event_id, s.id);
    assert_eq!(f.event_time, Timestamp::from_unix_secs(s.secs));
    assert_eq!(f.event_name, s.name);
    assert_eq!(f.event_source, s.source);
    assert_eq!(f.username(), s.user.as_deref());
    assert_eq!(f.recipient_account_id.as_deref(), s.account.as_deref());
    assert_eq!(f.read_only, s.read_only);
    assert_eq!(f.error_code.as_deref(), s.error.as_deref());
    let names: Vec<String> = s.bucket.iter().filter(|b| !b.is_empty()).cloned().collect();
    assert_eq!(f.resource_names, names);
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn decode_of_encode_preserves_bytes_and_fields(specs in proptest::collection::vec(spec(), 1..6), pretty in any::<bool>(), gz in any::<bool>()) {
        let events: Vec<Vec<u8>> = specs.iter().map(|s| encode(s, pretty)).collect();
        let maybe_gz = |b: Vec<u8>| if gz { gzip(&b) } else { b };

        // A delivered log file.
        let mut file = b"{\"Records\":[".to_vec();
        for (i, e) in events.iter().enumerate() {
            if i > 0 { file.extend_from_slice(if pretty { b",\n  " } else { b"," }); }
            file.extend_from_slice(e);
        }
        file.extend_from_slice(b"]}\n");
        let items = decode_bytes(&maybe_gz(file), InputFormat::Auto, DecodeLimits::default()).unwrap();
        prop_assert_eq!(items.len(), specs.len());
        for ((item, e), s) in items.iter().zip(&events).zip(&specs) {
            let ev = item.result.as_ref().unwrap();
            prop_assert_eq!(ev.bytes(), &e[..]);
            check(ev, s);
        }

        // A single event.
        let items = decode_bytes(&maybe_gz(events[0].clone()), InputFormat::Auto, DecodeLimits::default()).unwrap();
        prop_assert_eq!(items.len(), 1);
        prop_assert_eq!(items[0].result.as_ref().unwrap().bytes(), &events[0][..]);
        check(items[0].result.as_ref().unwrap(), &specs[0]);

        // JSON lines (compact only: one event per line).
        let compact: Vec<Vec<u8>> = specs.iter().map(|s| encode(s, false)).collect();
        let mut lines = Vec::new();
        for e in &compact { lines.extend_from_slice(e); lines.extend_from_slice(b"\r\n"); }
        let items = decode_bytes(&maybe_gz(lines), InputFormat::Auto, DecodeLimits::default()).unwrap();
        prop_assert_eq!(items.len(), specs.len());
        for ((item, e), s) in items.iter().zip(&compact).zip(&specs) {
            let ev = item.result.as_ref().unwrap();
            prop_assert_eq!(ev.bytes(), &e[..]);
            check(ev, s);
        }
    }
}
