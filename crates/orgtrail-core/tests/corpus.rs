//! Every event of the real corpus (tests/fixtures/corpus, copied from shared/corpus with its
//! provenance and licenses) parses, and comes back byte-identical, in every input shape.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::PathBuf;

use orgtrail_core::{
    CloudTrailEvent, DecodeLimits, EventCategory, InputFormat, InputShape, Position, decode_bytes,
};

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/corpus")
}

fn jsonl_files() -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(corpus().join("events"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    v.sort();
    assert_eq!(v.len(), 3, "three corpus sources expected");
    v
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

#[test]
fn every_corpus_event_parses_and_keeps_its_bytes() {
    let mut total = 0;
    for path in jsonl_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, line) in text.lines().enumerate() {
            let ev = CloudTrailEvent::parse(line.as_bytes()).unwrap_or_else(|e| {
                panic!("{}:{} refused: {e}", path.display(), i + 1);
            });
            assert_eq!(ev.bytes(), line.as_bytes());
            total += 1;
        }
    }
    assert_eq!(total, 891 + 400 + 107);
}

#[test]
fn corpus_files_decode_as_json_lines_plain_and_gzip() {
    for path in jsonl_files() {
        let raw = std::fs::read(&path).unwrap();
        let lines: Vec<&[u8]> = raw
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        for input in [raw.clone(), gzip(&raw)] {
            let items = decode_bytes(&input, InputFormat::Auto, DecodeLimits::default()).unwrap();
            assert_eq!(items.len(), lines.len(), "{}", path.display());
            for (i, (item, line)) in items.iter().zip(&lines).enumerate() {
                assert_eq!(item.position, Position::Line(i as u64 + 1));
                let ev = item.result.as_ref().unwrap();
                assert_eq!(ev.bytes(), *line);
            }
        }
    }
}

#[test]
fn delivered_log_files_decode_record_by_record() {
    let mut files = 0;
    for entry in std::fs::read_dir(corpus().join("logfiles")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        files += 1;
        let raw = std::fs::read(&path).unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        let records = doc["Records"].as_array().unwrap();
        for input in [raw.clone(), gzip(&raw)] {
            let mut dec =
                orgtrail_core::Decoder::new(&input[..], InputFormat::Auto, DecodeLimits::default())
                    .unwrap();
            assert_eq!(dec.shape(), InputShape::LogFile);
            let items: Vec<_> = dec.by_ref().map(Result::unwrap).collect();
            assert_eq!(items.len(), records.len(), "{}", path.display());
            for (i, item) in items.iter().enumerate() {
                assert_eq!(item.position, Position::Record(i + 1));
                let ev = item.result.as_ref().unwrap();
                // The event's bytes are a verbatim slice of the file...
                assert!(raw.windows(ev.bytes().len()).any(|w| w == ev.bytes()));
                // ...and they are that record.
                let v: serde_json::Value = serde_json::from_slice(ev.bytes()).unwrap();
                assert_eq!(&v, &records[i]);
            }
        }
    }
    assert_eq!(files, 13);
}

#[test]
fn start_instances_from_the_docs_answers_who_and_what() {
    let raw = std::fs::read(
        corpus().join("logfiles/aws-cloudtrail-user-guide_cloudtrail-log-file-examples_02.json"),
    )
    .unwrap();
    let items = decode_bytes(&raw, InputFormat::LogFile, DecodeLimits::default()).unwrap();
    let ev = items[0].result.as_ref().unwrap();
    let f = ev.fields();
    assert_eq!(f.event_name, "StartInstances");
    assert_eq!(f.event_source, "ec2.amazonaws.com");
    assert_eq!(f.username(), Some("Alice"));
    assert_eq!(f.aws_region.as_deref(), Some("us-east-2"));
    assert_eq!(f.source_ip_address.as_deref(), Some("205.251.233.176"));
    assert!(f.resource_names.iter().any(|n| n == "i-ebeaf9e2"));
    assert_eq!(f.event_time.to_string(), "2014-03-06T21:22:54Z");
    assert_eq!(f.event_category, EventCategory::Management);
    // eventVersion 1.0: no recipientAccountId and no eventID; the latter is derived.
    assert_eq!(f.recipient_account_id, None);
    assert!(f.event_id_derived);
    let id = f.user_identity.as_ref().unwrap();
    assert_eq!(id.access_key_id.as_deref(), Some("EXAMPLE_KEY_ID"));
}

#[test]
fn messy_real_records_are_valid_events() {
    let mut insights = 0;
    let mut no_recipient = 0;
    let mut siem_times = 0;
    let mut string_read_only = 0;
    for path in jsonl_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let ev = CloudTrailEvent::parse(line.as_bytes()).unwrap();
            let f = ev.fields();
            if v.get("insightDetails").is_some() {
                insights += 1;
                assert_eq!(f.event_category, EventCategory::Insight);
                assert!(f.is_insight());
                assert_eq!(
                    f.event_name,
                    v.get("eventName")
                        .or(v["insightDetails"].get("eventName"))
                        .and_then(|n| n.as_str())
                        .unwrap()
                );
            }
            if v.get("recipientAccountId").is_none() {
                no_recipient += 1;
                assert_eq!(f.recipient_account_id, None);
            }
            if v["eventTime"].as_str().unwrap().as_bytes()[10] == b' ' {
                siem_times += 1;
            }
            if v["readOnly"].is_string() {
                string_read_only += 1;
                assert_eq!(f.read_only, Some(true));
            }
            if v.get("eventCategory").is_none() && v.get("insightDetails").is_none() {
                assert_eq!(f.event_category, EventCategory::Management);
            }
            assert_eq!(f.event_id, v["eventID"].as_str().unwrap());
            assert_eq!(f.error_code.as_deref(), v["errorCode"].as_str());
        }
    }
    assert_eq!(insights, 5);
    assert_eq!(no_recipient, 8);
    assert!(siem_times >= 100, "{siem_times}");
    assert_eq!(string_read_only, 1);
}
