//! The event decoder: `CloudTrailEvent::parse` (strict required fields, lenient everything
//! else) and the input-shape detection of `orgtrail_core::Decoder` (single event, JSON lines,
//! auto). Properties: nothing panics; an accepted event keeps its exact bytes and parses to
//! the same fields again; every decoded event's bytes are valid on their own.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orgtrail_core::{
    CloudTrailEvent, DecodeLimits, InputFormat, MAX_EVENT_BYTES, decode_bytes, parse_fields,
};

/// Small limits keep a run fast and reach the size checks.
const LIMITS: DecodeLimits = DecodeLimits {
    max_event_bytes: 64 * 1024,
    max_document_bytes: 256 * 1024,
};

fn check(event: &CloudTrailEvent) {
    let again = CloudTrailEvent::parse(event.bytes().to_vec())
        .expect("an accepted event's bytes parse again");
    assert_eq!(again.fields(), event.fields(), "fields differ on a reparse");
    let f = event.fields();
    let _ = (
        f.username(),
        f.resource_types(),
        f.is_insight(),
        f.event_time.millis(),
    );
    let _ = format!("{event:?}");
}

fuzz_target!(|data: &[u8]| {
    match CloudTrailEvent::parse(data.to_vec()) {
        Ok(event) => {
            assert_eq!(event.bytes(), data, "the event's bytes are the input");
            check(&event);
        }
        Err(e) => {
            let _ = (e.kind(), e.to_string());
            assert!(
                parse_fields(data, MAX_EVENT_BYTES).is_err(),
                "parse and parse_fields disagree"
            );
        }
    }
    for format in [
        InputFormat::Auto,
        InputFormat::JsonLines,
        InputFormat::Event,
    ] {
        let Ok(items) = decode_bytes(data, format, LIMITS) else {
            continue;
        };
        for item in items {
            let _ = item.position.to_string();
            match &item.result {
                Ok(event) => check(event),
                Err(e) => {
                    let _ = e.to_string();
                }
            }
        }
    }
});
