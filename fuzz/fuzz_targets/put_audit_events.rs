//! The http source's `PutAuditEvents` body parser (`sources::http::parse_body`).
//! Properties: nothing panics; every event is answered exactly once (successful or failed);
//! each accepted event carries the eventID the answer names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orgtrail_agent::sources::http::{MAX_EVENTS, parse_body};

fuzz_target!(|data: &[u8]| {
    let Ok(parsed) = parse_body(data) else {
        return;
    };
    assert_eq!(parsed.accepted.len(), parsed.successful.len());
    let answered = parsed.successful.len() + parsed.failed.len();
    assert!((1..=MAX_EVENTS).contains(&answered), "{answered} answers");
    for (event, ok) in parsed.accepted.iter().zip(&parsed.successful) {
        assert_eq!(
            ok["eventID"].as_str(),
            Some(event.fields().event_id.as_str()),
            "the answer names the stored eventID"
        );
        let again = orgtrail_core::CloudTrailEvent::parse(event.bytes().to_vec())
            .expect("an accepted event parses again");
        assert_eq!(again.fields(), event.fields());
    }
});
