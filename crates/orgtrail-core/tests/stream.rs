//! Property: the streaming log-file scanner splits `{"Records":[...]}` exactly as a full JSON
//! parser does, whatever the whitespace, the escapes, the other keys and the read sizes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;

use orgtrail_core::{DecodeLimits, Decoder, InputFormat, Position};
use proptest::prelude::*;
use serde_json::value::RawValue;

/// Any JSON value (records may be anything: the event parser judges them).
fn value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "\\PC{0,12}|[\"\\\\\\[\\]{}\u{0}-\u{1f}]{0,6}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z\"\\\\]{0,5}", inner, 0..5)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn ws() -> impl Strategy<Value = String> {
    "[ \t\r\n]{0,3}"
}

/// A reader that hands out the input in the given chunk sizes (cycling).
struct Chunky {
    data: Vec<u8>,
    at: usize,
    sizes: Vec<usize>,
    i: usize,
}

impl Read for Chunky {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let want = self.sizes[self.i % self.sizes.len()].max(1);
        self.i += 1;
        let n = want.min(out.len()).min(self.data.len() - self.at);
        out[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn the_scanner_splits_records_as_serde_does(
        records in prop::collection::vec(value(), 0..8),
        before in proptest::option::of(value()),
        after in proptest::option::of(value()),
        spaces in prop::collection::vec(ws(), 12),
        sizes in prop::collection::vec(1usize..70_000, 1..5),
        format in prop_oneof![Just(InputFormat::Auto), Just(InputFormat::LogFile)],
    ) {
        let s = |i: usize| spaces[i].as_str();
        let mut doc = format!("{}{{{}", s(0), s(1));
        if let Some(b) = &before {
            doc += &format!("\"before\"{}:{}{}{},", s(2), s(3), b, s(4));
        }
        doc += &format!("\"Records\"{}:{}[{}", s(5), s(6), s(7));
        for (i, r) in records.iter().enumerate() {
            if i > 0 {
                doc += &format!("{},{}", s(8), s(9));
            }
            // Most records are events carrying the random value; some are the bare value.
            let text = r.to_string();
            if text.len() % 5 == 0 {
                doc += &text;
            } else {
                doc += &format!(
                    "{{\"eventVersion\":\"1.08\",\"eventID\":\"e-{i}\",\"eventTime\":\"2024-01-02T03:04:05Z\",{}\"eventSource\":\"s3.amazonaws.com\",\"eventName\":\"X\",\"awsRegion\":\"us-east-1\",\"extra\":{}{}}}",
                    s(i % 12), s((i + 3) % 12), text
                );
            }
        }
        doc += &format!("{}]", s(10));
        if let Some(a) = &after {
            doc += &format!(",\"after\":{a}");
        }
        doc += &format!("}}{}", s(11));

        // The reference: a full parse borrowing each record's exact text.
        #[derive(serde::Deserialize)]
        struct Reference<'a> {
            #[serde(rename = "Records", borrow)]
            records: Vec<&'a RawValue>,
        }
        let reference: Reference<'_> = serde_json::from_str(&doc).unwrap();
        let expected: Vec<&str> = reference.records.iter().map(|r| r.get()).collect();

        let reader = Chunky { data: doc.clone().into_bytes(), at: 0, sizes, i: 0 };
        let d = Decoder::new(reader, format, DecodeLimits::default()).unwrap();
        let mut got = Vec::new();
        let mut events = 0;
        for (i, item) in d.enumerate() {
            let item = item.unwrap();
            prop_assert_eq!(item.position, Position::Record(i + 1));
            // Records that are not events fail to parse; compare the bytes of those that do.
            if let Ok(e) = &item.result {
                prop_assert_eq!(std::str::from_utf8(e.bytes()).unwrap(), expected[i]);
                events += 1;
            }
            got.push(i);
        }
        prop_assert_eq!(got.len(), expected.len());
        let wrapped = records.iter().filter(|r| r.to_string().len() % 5 != 0).count();
        prop_assert_eq!(events, wrapped);
    }
}

/// JSON lines decode to the events of their lines, numbered, however the lines fall across the
/// decoder's read buffer (64 KiB) and the reads: blank and whitespace-only lines, CRLF, spaces
/// around an event, an invalid line, an event over the limit, a line too long to hold, and a
/// last line without its newline.
#[test]
fn json_lines_decode_line_by_line_across_any_read_boundaries() {
    use orgtrail_core::{CloudTrailEvent, EventError};
    let max = 2000;
    let event = |i: usize, pad: usize| {
        format!(
            r#"{{"eventVersion":"1.08","eventID":"e-{i}","eventTime":"2024-01-01T00:00:00Z","eventName":"GetObject","eventSource":"s3.amazonaws.com","userAgent":"{}"}}"#,
            "a".repeat(pad)
        )
    };
    let mut lines: Vec<String> = Vec::new();
    for i in 0..400 {
        lines.push(match i % 13 {
            0 => String::new(),
            1 => " \t ".into(),
            2 => format!("  {}\r", event(i, 40)),
            3 => "{not json".into(),
            4 if i % 26 == 4 => event(i, 2500),
            5 if i % 39 == 5 => event(i, 7000),
            _ => event(i, (i * 37) % 1500),
        });
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text.push_str(&event(1000, 10));
    lines.push(event(1000, 10));
    assert!(text.len() > 3 * 64 * 1024);
    let mut want = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let t = line.trim_matches(|c: char| c.is_ascii_whitespace());
        if t.is_empty() {
            continue;
        }
        let result = if line.len() > max + 4096 {
            Err(EventError::TooLarge {
                size: line.len(),
                limit: max,
            })
        } else {
            CloudTrailEvent::parse_with_limit(t.as_bytes(), max)
        };
        want.push((Position::Line(n as u64 + 1), result));
    }
    let limits = DecodeLimits {
        max_event_bytes: max,
        ..DecodeLimits::default()
    };
    for sizes in [
        vec![usize::MAX],
        vec![1, 7, 4096],
        vec![65_535, 3, 100_000],
        vec![999],
    ] {
        let reader = Chunky {
            data: text.clone().into_bytes(),
            at: 0,
            sizes,
            i: 0,
        };
        let got: Vec<_> = Decoder::new(reader, InputFormat::JsonLines, limits)
            .unwrap()
            .map(|item| {
                let item = item.unwrap();
                (item.position, item.result)
            })
            .collect();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g, w);
        }
    }
}
