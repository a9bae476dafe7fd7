//! Durations and sizes in configuration files, in human form or as plain numbers.
//!
//! Use with `#[serde(deserialize_with = "orgtrail_core::units::millis")]` (and friends) on a
//! field whose name says its unit (`linger_ms`, `max_bytes`): a plain integer is read in that
//! unit, as before; a string is read in human form: durations as `humantime` reads them
//! (`"250ms"`, `"5s"`, `"1m 30s"`, `"2h"`), sizes as `bytesize` does (`"64MiB"`, `"1 GiB"`,
//! `"512KB"`; KiB/MiB/GiB are powers of 1024, KB/MB/GB of 1000). Anything else is refused
//! with a hint naming both forms.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};

/// A duration as whole milliseconds: an integer (milliseconds) or a human string.
pub fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(Units(Kind::Millis))
}

/// A size in bytes: an integer (bytes) or a human string.
pub fn bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(Units(Kind::Bytes))
}

/// [`bytes`] as a `usize`.
pub fn bytes_usize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let b = bytes(d)?;
    usize::try_from(b).map_err(|_| de::Error::custom(format!("{b} bytes is too large here")))
}

/// Parses a human duration (`"5s"`) to whole milliseconds.
pub fn parse_millis(s: &str) -> Result<u64, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| {
        format!("{s:?} is not a duration ({e}): write e.g. \"250ms\", \"5s\", \"1m 30s\", or a number of milliseconds")
    })?;
    u64::try_from(d.as_millis()).map_err(|_| format!("{s:?} is too long"))
}

/// Parses a human size (`"64MiB"`) to bytes.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| {
            format!("{s:?} is not a size ({e}): write e.g. \"512KiB\", \"64MiB\", \"1 GiB\", or a number of bytes")
        })
}

#[derive(Clone, Copy)]
enum Kind {
    Millis,
    Bytes,
}

struct Units(Kind);

impl<'de> Visitor<'de> for Units {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Kind::Millis => {
                f.write_str("a duration: \"5s\", \"250ms\", or a number of milliseconds")
            }
            Kind::Bytes => f.write_str("a size: \"64MiB\", \"1 GiB\", or a number of bytes"),
        }
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom(format!("{v} is negative")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        match self.0 {
            Kind::Millis => parse_millis(v),
            Kind::Bytes => parse_bytes(v),
        }
        .map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct T {
        #[serde(deserialize_with = "millis")]
        wait_ms: u64,
        #[serde(deserialize_with = "bytes")]
        max_bytes: u64,
    }

    fn t(json: &str) -> Result<T, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn human_forms_are_read() {
        let v = t(r#"{"wait_ms": "5s", "max_bytes": "64MiB"}"#).unwrap();
        assert_eq!((v.wait_ms, v.max_bytes), (5_000, 64 << 20));
        let v = t(r#"{"wait_ms": "1m 30s", "max_bytes": "1 GiB"}"#).unwrap();
        assert_eq!((v.wait_ms, v.max_bytes), (90_000, 1 << 30));
        let v = t(r#"{"wait_ms": "250ms", "max_bytes": "512KB"}"#).unwrap();
        assert_eq!((v.wait_ms, v.max_bytes), (250, 512_000));
    }

    #[test]
    fn plain_numbers_keep_the_unit_of_the_name() {
        let v = t(r#"{"wait_ms": 200, "max_bytes": 4096}"#).unwrap();
        assert_eq!((v.wait_ms, v.max_bytes), (200, 4096));
    }

    #[test]
    fn nonsense_is_refused_with_a_hint() {
        let e = t(r#"{"wait_ms": "5 parsecs", "max_bytes": 1}"#).unwrap_err();
        assert!(
            e.contains("is not a duration") && e.contains("milliseconds"),
            "{e}"
        );
        let e = t(r#"{"wait_ms": 1, "max_bytes": "lots"}"#).unwrap_err();
        assert!(
            e.contains("is not a size") && e.contains("number of bytes"),
            "{e}"
        );
        let e = t(r#"{"wait_ms": -1, "max_bytes": 1}"#).unwrap_err();
        assert!(e.contains("negative"), "{e}");
        let e = t(r#"{"wait_ms": 1.5, "max_bytes": 1}"#).unwrap_err();
        assert!(e.contains("a duration"), "{e}");
    }
}
