//! Each reason an event or an input is refused, with its precise message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;

use orgtrail_core::{
    CloudTrailEvent, DecodeError, DecodeLimits, EventError, InputFormat, MAX_EVENT_BYTES, Position,
    RejectKind, decode_bytes,
};

const GOOD: &str = r#"{"eventVersion":"1.08","eventID":"e-1","eventTime":"2024-01-02T03:04:05Z","eventSource":"s3.amazonaws.com","eventName":"ListBuckets","awsRegion":"us-east-1","recipientAccountId":"111122223333"}"#;

fn with(field: &str, value: &str) -> String {
    let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(GOOD).unwrap();
    v.insert(field.into(), serde_json::from_str(value).unwrap());
    serde_json::to_string(&v).unwrap()
}

fn without(field: &str) -> String {
    let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(GOOD).unwrap();
    v.remove(field).unwrap();
    serde_json::to_string(&v).unwrap()
}

fn reject(input: &[u8]) -> EventError {
    CloudTrailEvent::parse(input).unwrap_err()
}

#[test]
fn good_event_is_valid() {
    CloudTrailEvent::parse(GOOD).unwrap();
}

#[test]
fn not_json() {
    let e = reject(b"{\"eventID\": ");
    assert_eq!(e.kind(), RejectKind::NotJson);
    assert!(e.to_string().contains("line 1"), "{e}");
    let e = reject(b"{eventID: 1}");
    assert!(matches!(e, EventError::NotJson { .. }), "{e}");
    assert!(matches!(reject(b"   "), EventError::Empty));
    assert!(matches!(reject(b"nope"), EventError::NotJson { .. }));
}

#[test]
fn not_an_object() {
    for (input, found) in [
        ("[1,2]", "an array"),
        ("\"x\"", "a string"),
        ("42", "a number"),
        ("null", "null"),
        ("true", "a boolean"),
    ] {
        let e = reject(input.as_bytes());
        assert_eq!(e, EventError::NotAnObject { found });
        assert_eq!(
            e.to_string(),
            format!("event is {found}, not a JSON object")
        );
    }
}

#[test]
fn missing_required_fields() {
    for field in ["eventID", "eventTime", "eventSource", "eventName"] {
        let e = reject(without(field).as_bytes());
        assert_eq!(e, EventError::MissingField(field));
        assert_eq!(e.to_string(), format!("event has no `{field}`"));
    }
}

#[test]
fn insight_events_carry_source_and_name_inside_insight_details() {
    let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(GOOD).unwrap();
    v.remove("eventSource");
    v.remove("eventName");
    v.insert("eventType".into(), "AwsCloudTrailInsight".into());
    v.insert(
        "insightDetails".into(),
        serde_json::json!({"state":"Start","eventSource":"ec2.amazonaws.com","eventName":"RunInstances","insightType":"ApiCallRateInsight"}),
    );
    let ev = CloudTrailEvent::parse(serde_json::to_vec(&v).unwrap()).unwrap();
    assert_eq!(ev.fields().event_name, "RunInstances");
    assert_eq!(ev.fields().event_source, "ec2.amazonaws.com");
    assert!(ev.fields().is_insight());
    // Without insightDetails' names it is refused.
    v.insert(
        "insightDetails".into(),
        serde_json::json!({"state":"Start"}),
    );
    assert_eq!(
        reject(&serde_json::to_vec(&v).unwrap()),
        EventError::MissingField("eventSource")
    );
}

#[test]
fn event_time_must_be_a_timestamp() {
    for bad in [
        "\"redacted\"",
        "\"2024-01-02\"",
        "\"1700000000\"",
        "\"2024-02-30T00:00:00Z\"",
    ] {
        let e = reject(with("eventTime", bad).as_bytes());
        assert_eq!(e.kind(), RejectKind::InvalidField, "{bad}");
        assert!(
            e.to_string()
                .starts_with("event's `eventTime` is invalid: not a timestamp"),
            "{e}"
        );
    }
    let e = reject(with("eventTime", "1700000000").as_bytes());
    assert_eq!(
        e.to_string(),
        "event's `eventTime` is invalid: expected a string, found a number"
    );
    for good in [
        "\"2022-12-11 19:42:55\"",
        "\"2022-12-11 19:42:55.123456789\"",
    ] {
        CloudTrailEvent::parse(with("eventTime", good)).unwrap();
    }
}

#[test]
fn required_fields_must_be_non_empty_strings() {
    let e = reject(with("eventID", "12").as_bytes());
    assert_eq!(
        e.to_string(),
        "event's `eventID` is invalid: expected a string, found a number"
    );
    let e = reject(with("eventID", "\"\"").as_bytes());
    assert_eq!(e.to_string(), "event's `eventID` is invalid: empty");
    let e = reject(with("recipientAccountId", "111122223333").as_bytes());
    assert_eq!(e.kind(), RejectKind::InvalidField);
}

#[test]
fn duplicate_keys_are_refused() {
    let dup = GOOD.replace(
        "\"eventID\":\"e-1\"",
        "\"eventID\":\"e-1\",\"eventID\":\"e-2\"",
    );
    let e = reject(dup.as_bytes());
    assert_eq!(
        e,
        EventError::DuplicateField {
            field: "eventID".into()
        }
    );
}

#[test]
fn larger_than_256_kib_is_refused() {
    let pad = "x".repeat(MAX_EVENT_BYTES);
    let big = with("requestParameters", &format!("{{\"p\":\"{pad}\"}}"));
    let e = reject(big.as_bytes());
    assert_eq!(
        e,
        EventError::TooLarge {
            size: big.len(),
            limit: MAX_EVENT_BYTES
        }
    );
    // Exactly at the limit is fine.
    let fill = MAX_EVENT_BYTES - with("requestParameters", "{\"p\":\"\"}").len();
    let exact = with(
        "requestParameters",
        &format!("{{\"p\":\"{}\"}}", "x".repeat(fill)),
    );
    assert_eq!(exact.len(), MAX_EVENT_BYTES);
    CloudTrailEvent::parse(exact).unwrap();
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    let depth = 100_000;
    let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let e = CloudTrailEvent::parse_with_limit(with_raw(&nested), usize::MAX).unwrap_err();
    assert!(matches!(e, EventError::TooDeep { limit: 128 }), "{e}");
    let e = CloudTrailEvent::parse_with_limit(nested.as_bytes(), usize::MAX).unwrap_err();
    assert!(matches!(e, EventError::TooDeep { .. }), "{e}");
    let objs = format!("{}{}", "{\"a\":".repeat(depth), "}".repeat(depth));
    let e = CloudTrailEvent::parse_with_limit(objs.as_bytes(), usize::MAX).unwrap_err();
    assert!(matches!(e, EventError::TooDeep { .. }), "{e}");
    // Moderate nesting, as in real requestParameters, is fine.
    let ok = format!("{}{}", "[".repeat(50), "]".repeat(50));
    CloudTrailEvent::parse(with_raw(&ok)).unwrap();
}

fn with_raw(value: &str) -> Vec<u8> {
    let mut s = GOOD[..GOOD.len() - 1].to_string();
    s.push_str(",\"requestParameters\":");
    s.push_str(value);
    s.push('}');
    s.into_bytes()
}

#[test]
fn invalid_utf8_is_refused_with_its_offset() {
    let mut b = GOOD.as_bytes().to_vec();
    let at = GOOD.find("ListBuckets").unwrap();
    b[at] = 0xff;
    assert_eq!(reject(&b), EventError::InvalidUtf8 { offset: at });
}

#[test]
fn error_messages_never_quote_event_content() {
    let secret = "AKIASECRETSECRETSECR";
    let inputs = [
        format!("{{\"eventID\":\"{secret}\""),
        format!("[\"{secret}\"]"),
        with("eventTime", &format!("\"{secret}\"")),
        format!("{{\"eventID\":\"{secret}\",\"eventID\":\"{secret}\"}}"),
    ];
    for i in inputs {
        let e = reject(i.as_bytes());
        assert!(!e.to_string().contains("SECRET"), "{e}");
    }
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

#[test]
fn gzip_bomb_is_refused_not_swallowed() {
    // 64 MiB of whitespace inside a log file compresses to ~64 KiB.
    let mut doc = b"{\"Records\":[".to_vec();
    doc.extend(std::iter::repeat_n(b' ', 64 << 20));
    doc.extend_from_slice(b"]}");
    let bomb = gzip(&doc);
    assert!(bomb.len() < 1 << 20);
    let limits = DecodeLimits {
        max_document_bytes: 8 << 20,
        ..DecodeLimits::default()
    };
    let e = decode_bytes(&bomb, InputFormat::Auto, limits).unwrap_err();
    assert!(
        matches!(e, DecodeError::TooLarge { limit } if limit == 8 << 20),
        "{e}"
    );
    assert!(e.to_string().contains("after decompression"));
    // The same bomb as a JSON-lines stream of blank lines is refused too.
    let lines = gzip(&vec![b'\n'; 16 << 20]);
    let e = decode_bytes(&lines, InputFormat::JsonLines, limits).unwrap_err();
    assert!(matches!(e, DecodeError::TooLarge { .. }), "{e}");
}

#[test]
fn corrupt_gzip_is_a_decode_error() {
    let mut gz = gzip(GOOD.as_bytes());
    let n = gz.len();
    gz[n / 2] ^= 0xff;
    gz.truncate(n - 4);
    let e = decode_bytes(&gz, InputFormat::Auto, DecodeLimits::default()).unwrap_err();
    assert!(matches!(e, DecodeError::Gzip(_)), "{e}");
}

#[test]
fn bad_log_files() {
    let l = DecodeLimits::default();
    // Truncated: the complete records come first, then the error, naming where it stopped.
    let mut d = orgtrail_core::Decoder::new(&b"{\"Records\":[{\"a\":1},"[..], InputFormat::Auto, l)
        .unwrap();
    let first = d.next().unwrap().unwrap();
    assert_eq!(first.position, Position::Record(1));
    assert_eq!(
        first.result.unwrap_err(),
        EventError::MissingField("eventID")
    );
    let e = d.next().unwrap().unwrap_err();
    assert!(matches!(e, DecodeError::Syntax { offset: 20, .. }), "{e}");
    assert!(e.to_string().contains("unexpected end of input"), "{e}");
    assert!(d.next().is_none());
    let e = decode_bytes(b"{\"Records\":[{\"a\":1},", InputFormat::LogFile, l).unwrap_err();
    assert!(matches!(e, DecodeError::Syntax { .. }), "{e}");
    let e = decode_bytes(b"{\"Records\":{}}", InputFormat::Auto, l).unwrap_err();
    assert!(matches!(e, DecodeError::RecordsNotArray), "{e}");
    let e = decode_bytes(GOOD.as_bytes(), InputFormat::LogFile, l).unwrap_err();
    assert!(matches!(e, DecodeError::NotALogFile), "{e}");
    let e = decode_bytes(b"{\"Records\":[],\"Records\":[]}", InputFormat::LogFile, l).unwrap_err();
    assert!(matches!(e, DecodeError::DuplicateRecords), "{e}");
    let e = decode_bytes(b"{\"Records\":[{]}", InputFormat::LogFile, l).unwrap_err();
    assert!(matches!(e, DecodeError::Syntax { offset: 13, .. }), "{e}");
    let e = decode_bytes(b"{\"Records\":[]} x", InputFormat::LogFile, l).unwrap_err();
    assert!(matches!(e, DecodeError::Syntax { offset: 15, .. }), "{e}");
    let e = decode_bytes(b"{\"Records\":[{},]}", InputFormat::LogFile, l).unwrap_err();
    assert!(matches!(e, DecodeError::Syntax { .. }), "{e}");
    let deep = format!("{{\"Records\":[{}", "[".repeat(5000));
    let e = decode_bytes(deep.as_bytes(), InputFormat::LogFile, l).unwrap_err();
    assert!(matches!(e, DecodeError::TooDeep { .. }), "{e}");
    // Invalid UTF-8 inside one record rejects that record, not the file.
    let mut bad = format!("{{\"Records\":[{GOOD},{}]}}", GOOD.replace("e-1", "e-2")).into_bytes();
    let at = "{\"Records\":[".len() + GOOD.len() - 5;
    bad[at] = 0xfe;
    let items = decode_bytes(&bad, InputFormat::LogFile, l).unwrap();
    assert_eq!(items.len(), 2);
    assert!(matches!(
        items[0].result,
        Err(EventError::InvalidUtf8 { .. })
    ));
    assert_eq!(items[1].result.as_ref().unwrap().fields().event_id, "e-2");
}

#[test]
fn log_files_keep_each_record_exact_whatever_the_layout() {
    let l = DecodeLimits::default();
    let two = GOOD.replace("e-1", "e-2");
    // Other keys before and after, escapes, pretty-printing, a key spelled with an escape.
    for file in [
        format!("{{\"Records\":[{GOOD},{two}]}}"),
        format!(
            "\n\n  {{ \"x\": {{\"Records\": [1, \"]\\\"\"]}},\n \"Records\" :\n [\n  {GOOD} ,\n  {two}\n ] , \"y\":[] }}\n"
        ),
        format!("{{\"R\\u0065cords\":[{GOOD},{two}]}}"),
    ] {
        for format in [InputFormat::Auto, InputFormat::LogFile] {
            let items = decode_bytes(file.as_bytes(), format, l).unwrap();
            let got: Vec<&[u8]> = items
                .iter()
                .map(|i| i.result.as_ref().unwrap().bytes())
                .collect();
            assert_eq!(got, vec![GOOD.as_bytes(), two.as_bytes()], "{file}");
        }
    }
    // Read a byte at a time: the window refills anywhere, inside strings and escapes too.
    struct Trickle<'a>(&'a [u8]);
    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() || out.is_empty() {
                return Ok(0);
            }
            out[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }
    let esc = with("requestParameters", r#"{"p":"a\"]}\\","q":"[{"}"#);
    let file = format!("{{\"Records\":[{esc},{two}]}}");
    let items: Vec<_> = orgtrail_core::Decoder::new(Trickle(file.as_bytes()), InputFormat::Auto, l)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(items[0].result.as_ref().unwrap().bytes(), esc.as_bytes());
    assert_eq!(items[1].result.as_ref().unwrap().bytes(), two.as_bytes());
}

#[test]
fn a_record_over_the_limit_is_counted_not_held_and_the_rest_decode() {
    let huge = with(
        "requestParameters",
        &format!("{{\"p\":\"{}\"}}", "y".repeat(3 << 20)),
    );
    let file = format!("{{\"Records\":[{huge},{GOOD}]}}");
    let items = decode_bytes(
        &gzip(file.as_bytes()),
        InputFormat::Auto,
        DecodeLimits::default(),
    )
    .unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(
        items[0].result.as_ref().unwrap_err(),
        &EventError::TooLarge {
            size: huge.len(),
            limit: MAX_EVENT_BYTES
        }
    );
    assert!(items[1].result.is_ok());
}

#[test]
fn one_bad_record_does_not_hide_the_others() {
    let file = format!(
        "{{\"Records\":[{GOOD},{},{}]}}",
        without("eventTime"),
        GOOD.replace("e-1", "e-2")
    );
    let items = decode_bytes(file.as_bytes(), InputFormat::Auto, DecodeLimits::default()).unwrap();
    assert_eq!(items.len(), 3);
    assert!(items[0].result.is_ok());
    assert_eq!(items[1].position, Position::Record(2));
    assert_eq!(
        items[1].result.as_ref().unwrap_err(),
        &EventError::MissingField("eventTime")
    );
    assert_eq!(items[2].result.as_ref().unwrap().fields().event_id, "e-2");
}

#[test]
fn json_lines_report_each_bad_line_and_keep_going() {
    let huge = with(
        "requestParameters",
        &format!("{{\"p\":\"{}\"}}", "y".repeat(300_000)),
    );
    let input = format!(
        "{GOOD}\n\nnot json\r\n{huge}\n[1]\n{}\n",
        GOOD.replace("e-1", "e-9")
    );
    let items = decode_bytes(input.as_bytes(), InputFormat::Auto, DecodeLimits::default()).unwrap();
    let summary: Vec<(Position, Option<RejectKind>)> = items
        .iter()
        .map(|i| (i.position, i.result.as_ref().err().map(EventError::kind)))
        .collect();
    assert_eq!(
        summary,
        vec![
            (Position::Line(1), None),
            (Position::Line(3), Some(RejectKind::NotJson)),
            (Position::Line(4), Some(RejectKind::TooLarge)),
            (Position::Line(5), Some(RejectKind::NotAnObject)),
            (Position::Line(6), None),
        ]
    );
    // A first line that is garbage still leaves the rest judged line by line.
    let input = format!("garbage {{\n{GOOD}\n");
    let items = decode_bytes(input.as_bytes(), InputFormat::Auto, DecodeLimits::default()).unwrap();
    assert_eq!(items.len(), 2);
    assert!(items[0].result.is_err());
    assert!(items[1].result.is_ok());
}

#[test]
fn a_pretty_printed_single_event_is_one_event() {
    let v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
    let pretty = serde_json::to_string_pretty(&v).unwrap();
    let items = decode_bytes(
        pretty.as_bytes(),
        InputFormat::Auto,
        DecodeLimits::default(),
    )
    .unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].position, Position::Document);
    assert_eq!(items[0].result.as_ref().unwrap().bytes(), pretty.as_bytes());
}

#[test]
fn event_version_1_0_records_predate_event_id_and_get_a_derived_one() {
    let old = without("eventID").replace("\"1.08\"", "\"1.0\"");
    let ev = CloudTrailEvent::parse(old.as_bytes()).unwrap();
    assert!(ev.fields().event_id_derived);
    assert_eq!(
        ev.fields().event_id,
        orgtrail_core::derived_event_id(old.as_bytes())
    );
    assert_eq!(ev.fields().event_id.len(), 36);
    assert_eq!(&ev.fields().event_id[14..15], "8");
    // The same bytes give the same id; other bytes another.
    let again = CloudTrailEvent::parse(old.as_bytes()).unwrap();
    assert_eq!(again.fields().event_id, ev.fields().event_id);
    let other = old.replace("ListBuckets", "GetBucketAcl");
    assert_ne!(
        CloudTrailEvent::parse(other).unwrap().fields().event_id,
        ev.fields().event_id
    );
    // Any later eventVersion must carry its eventID.
    assert_eq!(
        reject(without("eventID").as_bytes()),
        EventError::MissingField("eventID")
    );
}

#[test]
fn a_damaged_gzip_file_yields_no_event_when_verified_first() {
    // Many records, then damage near the end: deflate yields the records before it, and only
    // the CRC at the end tells. The verified decoder refuses the file before any event.
    let records: Vec<String> = (0..2000)
        .map(|i| GOOD.replace("e-1", &format!("e-{i}")))
        .collect();
    let file = format!("{{\"Records\":[{}]}}", records.join(","));
    let mut gz = gzip(file.as_bytes());
    let n = gz.len();
    gz[n - 12] ^= 0x01;
    let l = DecodeLimits::default();
    let streamed = orgtrail_core::Decoder::new(&gz[..], InputFormat::Auto, l)
        .unwrap()
        .take_while(Result::is_ok)
        .count();
    assert!(streamed > 0, "the damage should come after some records");
    let e = orgtrail_core::Decoder::new_verified(std::io::Cursor::new(&gz), InputFormat::Auto, l)
        .unwrap_err();
    assert!(matches!(e, DecodeError::Gzip(_)), "{e}");
    // An intact file decodes the same either way, and a plain one is read once.
    let gz = gzip(file.as_bytes());
    let verified: Vec<_> =
        orgtrail_core::Decoder::new_verified(std::io::Cursor::new(&gz), InputFormat::Auto, l)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    assert_eq!(verified.len(), 2000);
    let plain: Vec<_> = orgtrail_core::Decoder::new_verified(
        std::io::Cursor::new(file.as_bytes()),
        InputFormat::Auto,
        l,
    )
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap();
    assert_eq!(plain.len(), 2000);
    // A bomb is refused by the verifying pass, before any event.
    let mut doc = b"{\"Records\":[".to_vec();
    doc.extend(std::iter::repeat_n(b' ', 16 << 20));
    doc.extend_from_slice(b"]}");
    let limits = DecodeLimits {
        max_document_bytes: 1 << 20,
        ..l
    };
    let e = orgtrail_core::Decoder::new_verified(
        std::io::Cursor::new(gzip(&doc)),
        InputFormat::Auto,
        limits,
    )
    .unwrap_err();
    assert!(
        matches!(e, DecodeError::TooLarge { limit } if limit == 1 << 20),
        "{e}"
    );
}
