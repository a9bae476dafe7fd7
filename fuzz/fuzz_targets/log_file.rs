//! The log-file decoder: `{"Records":[...]}`, plain or gzip, through the public API.
//!
//! To fuzz another decoder of the same input (for example a streaming one), change only
//! [`decode_log_file`]: it takes the whole input and returns each record's outcome, in order,
//! or the error that ended the file. Everything else here is the harness.
//!
//! Input: the first byte chooses the form (bit 0: gzip the rest first, so the gzip path sees
//! valid streams; bit 1: use `InputFormat::Auto` instead of `InputFormat::LogFile`); the rest
//! is the file. Properties: nothing panics; memory stays bounded by the limits (a gzip bomb
//! ends in an error); every record's bytes are a valid event on their own and, for a plain
//! input, are found in the file.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use orgtrail_core::{CloudTrailEvent, DecodeLimits, Decoder, EventError, InputFormat};

const LIMITS: DecodeLimits = DecodeLimits {
    max_event_bytes: 64 * 1024,
    max_document_bytes: 256 * 1024,
};

/// The decoder under test.
fn decode_log_file(
    file: &[u8],
    format: InputFormat,
) -> Result<Vec<Result<CloudTrailEvent, EventError>>, String> {
    let decoder = Decoder::new(file, format, LIMITS).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for item in decoder {
        let item = item.map_err(|e| e.to_string())?;
        out.push(item.result);
    }
    Ok(out)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let gzip = mode & 1 == 1;
    let format = if mode & 2 == 2 {
        InputFormat::Auto
    } else {
        InputFormat::LogFile
    };
    let file = if gzip {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(rest).expect("gzip into memory");
        enc.finish().expect("gzip into memory")
    } else {
        rest.to_vec()
    };
    let Ok(records) = decode_log_file(&file, format) else {
        return;
    };
    for r in records {
        match r {
            Ok(event) => {
                let again = CloudTrailEvent::parse(event.bytes().to_vec())
                    .expect("a record's bytes parse on their own");
                assert_eq!(again.fields(), event.fields());
                if !gzip && rest.len() <= 16 * 1024 {
                    assert!(
                        contains(rest, event.bytes()),
                        "a record's bytes are in the file"
                    );
                }
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});
