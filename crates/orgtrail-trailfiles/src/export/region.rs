//! The region segment of an event's keys: its top-level `awsRegion` when that is a plain
//! region name, else `unknown`.
//!
//! The archive sink asks this of every event it writes. A full [`orgtrail_core::parse_fields`]
//! (every indexed field, allocated) cost about as much CPU as the rest of the export, so the
//! common case is read straight from the bytes: the key `"awsRegion"` appears once as a key
//! (a quoted `awsRegion` followed by `:`), at depth 1, and its value is a string without
//! escapes. Anything else (no such key, two, an escaped value, `\u` escapes that could spell
//! the key) falls back to the full parse, so the answer is the same as the parse's for every
//! event (`region_of_agrees_with_the_parse`). The answer is a [`Region`], held inline: no
//! allocation per event.

const KEY: &[u8] = b"\"awsRegion\"";

/// The searchers, built once (building one cost about as much as a search of an event), with
/// byte frequencies of CloudTrail JSON rather than memchr's default ones (of text and code),
/// so that the search looks for its rarest bytes (`R`, `w`), not for a quote.
static KEY_FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| {
        memchr::memmem::FinderBuilder::new().build_forward_with_ranker(JsonRank, KEY)
    });
static ESCAPE_FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| {
        memchr::memmem::FinderBuilder::new().build_forward_with_ranker(JsonRank, b"\\u")
    });

/// How common a byte is in CloudTrail events (255: most): JSON's punctuation, lower-case
/// letters and digits are everywhere; upper-case letters are rarer.
#[derive(Debug, Clone, Copy)]
struct JsonRank;

impl memchr::arch::all::packedpair::HeuristicFrequencyRank for JsonRank {
    fn rank(&self, byte: u8) -> u8 {
        match byte {
            b'"' | b':' | b',' | b'e' | b'a' | b'o' | b'i' | b'n' | b's' | b't' | b'r' => 255,
            b'a'..=b'z' | b'0'..=b'9' | b'{' | b'}' | b'-' | b'.' | b'/' | b' ' => 200,
            b'A'..=b'Z' | b'_' | b'[' | b']' => 100,
            b'\\' => 60,
            _ => 20,
        }
    }
}

/// Longest region name kept; a longer value is `unknown`.
const MAX_LEN: usize = 32;

/// A region segment: 1 to [`MAX_LEN`] of `a-z`, `0-9`, `-`, held inline (a copy, not an
/// allocation). Ordered and compared as its text.
#[derive(Clone, Copy)]
pub(crate) struct Region {
    len: u8,
    bytes: [u8; MAX_LEN],
}

impl Region {
    const UNKNOWN: Region = Region::new_unchecked(b"unknown");

    /// `r` must be 1 to [`MAX_LEN`] ASCII bytes (what [`checked`] lets through).
    const fn new_unchecked(r: &[u8]) -> Region {
        let mut bytes = [0u8; MAX_LEN];
        let mut i = 0;
        while i < r.len() {
            bytes[i] = r[i];
            i += 1;
        }
        Region {
            len: r.len() as u8,
            bytes,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII is ever stored (see `checked`).
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("unknown")
    }
}

impl PartialEq for Region {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Region {}

impl std::hash::Hash for Region {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for Region {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Region {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::fmt::Display for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

/// The region segment of an event's keys (see the module docs).
pub(super) fn region_of(bytes: &[u8]) -> Region {
    match fast(bytes) {
        Some(Found::Region(r)) => checked(r),
        Some(Found::Absent) => Region::UNKNOWN,
        None => parsed(bytes),
    }
}

enum Found<'a> {
    Region(&'a [u8]),
    Absent,
}

/// The full parse's answer.
fn parsed(bytes: &[u8]) -> Region {
    match orgtrail_core::parse_fields(bytes, usize::MAX)
        .ok()
        .and_then(|f| f.aws_region)
    {
        Some(r) => checked(r.as_bytes()),
        None => Region::UNKNOWN,
    }
}

/// A plain region name (1 to [`MAX_LEN`] of `a-z`, `0-9`, `-`), else `unknown`.
fn checked(r: &[u8]) -> Region {
    if !r.is_empty()
        && r.len() <= MAX_LEN
        && r.iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Region::new_unchecked(r)
    } else {
        Region::UNKNOWN
    }
}

/// The cheap reading, or `None` when only the full parse can tell.
fn fast(bytes: &[u8]) -> Option<Found<'_>> {
    let mut key_at = None;
    for at in KEY_FINDER.find_iter(bytes) {
        let rest = skip_ws(&bytes[at + KEY.len()..]);
        if rest.first() != Some(&b':') {
            // A string value `"awsRegion"`, not a key.
            continue;
        }
        if key_at.is_some() {
            return None;
        }
        key_at = Some(at);
    }
    let Some(at) = key_at else {
        // A key spelled with `\u` escapes would be missed by the search.
        if ESCAPE_FINDER.find(bytes).is_some() {
            return None;
        }
        return Some(Found::Absent);
    };
    if depth_at(&bytes[..at])? != 1 {
        return None;
    }
    let rest = skip_ws(&bytes[at + KEY.len()..]);
    let rest = skip_ws(rest.get(1..)?);
    let value = rest.strip_prefix(b"\"")?;
    let end = memchr::memchr2(b'"', b'\\', value)?;
    if value[end] != b'"' {
        return None;
    }
    Some(Found::Region(&value[..end]))
}

fn skip_ws(b: &[u8]) -> &[u8] {
    let n = b
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        .count();
    &b[n..]
}

/// The nesting depth at the end of `prefix` (1: inside the top-level object), or `None` if
/// `prefix` ends inside a string.
fn depth_at(prefix: &[u8]) -> Option<u32> {
    let mut depth: u32 = 0;
    let mut i = 0;
    while i < prefix.len() {
        match prefix[i] {
            b'"' => {
                // Skip the string: up to the next unescaped quote.
                i += 1;
                loop {
                    let j = memchr::memchr2(b'"', b'\\', prefix.get(i..)?)?;
                    if prefix[i + j] == b'\\' {
                        i += j + 2;
                    } else {
                        i += j;
                        break;
                    }
                }
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.checked_sub(1)?,
            _ => {}
        }
        i += 1;
    }
    Some(depth)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn agree(event: &str) {
        assert_eq!(
            region_of(event.as_bytes()),
            parsed(event.as_bytes()),
            "{event}"
        );
    }

    const BASE: &str = r#""eventVersion":"1.08","eventTime":"2026-11-27T10:00:00Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","recipientAccountId":"111122223333","eventID":"e1""#;

    #[test]
    fn region_of_agrees_with_the_parse() {
        for extra in [
            r#","awsRegion":"eu-west-1""#,
            r#", "awsRegion" : "us-east-1" "#,
            r#","awsRegion":"EU-WEST-1""#,
            r#","awsRegion":"""#,
            r#","awsRegion":"eu\u002dwest-1""#,
            r#","awsRegion":"eu-west-1\"x""#,
            r#","awsRegion":null"#,
            r#","awsRegion":42"#,
            r#","awsRegion":"a-very-long-region-name-that-is-too-long-0""#,
            r#","requestParameters":{"awsRegion":"ap-south-1"}"#,
            r#","requestParameters":{"awsRegion":"ap-south-1"},"awsRegion":"eu-west-1""#,
            r#","awsRegion":"eu-west-1","requestParameters":{"awsRegion":"ap-south-1"}"#,
            r#","requestParameters":{"name":"awsRegion"},"awsRegion":"eu-west-2""#,
            r#","errorMessage":"bad \"awsRegion\": x","awsRegion":"eu-west-3""#,
            r#","errorMessage":"\"awsRegion\":\"zz-1\"""#,
            r#","requestParameters":{"list":["{\"awsRegion\":1}",{"awsRegion":"x"}]}"#,
            r#","aws\u0052egion":"eu-north-1""#,
            r#","awsRegion":"eu-west-1","awsRegion":"us-west-2""#,
            "",
        ] {
            agree(&format!("{{{BASE}{extra}}}"));
            let front = extra.trim_start_matches([',', ' ']);
            if !front.is_empty() {
                agree(&format!("{{{front},{BASE}}}"));
            }
        }
    }

    proptest! {
        #[test]
        fn region_of_agrees_with_the_parse_on_any_nesting(
            region in "[a-z0-9A-Z\\-\"\\\\ ]{0,12}",
            nested in proptest::option::of("[a-z\\-]{0,8}"),
            before in any::<bool>(),
            top in any::<bool>(),
        ) {
            let region = serde_json::to_string(&region).unwrap_or_default();
            let mut fields = vec![BASE.to_owned()];
            if let Some(n) = nested {
                fields.push(format!(r#""requestParameters":{{"awsRegion":{}}}"#, serde_json::to_string(&n).unwrap_or_default()));
            }
            if top {
                let f = format!(r#""awsRegion":{region}"#);
                if before { fields.insert(0, f) } else { fields.push(f) }
            }
            let event = format!("{{{}}}", fields.join(","));
            prop_assert_eq!(region_of(event.as_bytes()), parsed(event.as_bytes()));
        }
    }
}
