//! The values of the digest checker's spool marks, and how they are written.
//!
//! All of it is written as spool marks through the source's channel, so it is durable with,
//! and never before, the events it describes; it survives a restart and a `kill -9`:
//!
//! * a log file's processed mark carries its hash: `h HEX[ TAIL]` (shipped, waiting for its
//!   digest) or `c HEX[ TAIL]` (checked by a digest, or reported unlisted), where TAIL is the
//!   `s3` source's ETag; older marks (`done`, `d ETAG`) still read as processed, without a
//!   hash;
//! * a digest's mark: `STATE HEX SIG[ TAIL]` (its hash and signature, `-` for none), STATE
//!   `g` (checked), `w` / `u` (read without a signature; `u`: reported unverified) or `s`
//!   (SIG named by its successor, to be checked with it);
//! * per chain, the newest digest read (`PREFIX tip\0CHAIN` = `KEY\nHEX\nSIG`), never pruned
//!   (one per chain);
//! * per location, the latest `digestStartTime` of each trail digesting it (`PREFIX
//!   starts\0LOCATION` = `TRAIL HOME_REGION MILLIS` lines), never pruned (one per location):
//!   the unlisted check of a location several trails deliver to holds across a restart;
//! * the failures reported, by UTC day (`PREFIX failures` = `DAY N,...`): the gauge; the `s3`
//!   source drops the days past its lookback, `cloudtrail_dir` those past `digest_keep_days`.

use std::collections::HashMap;

use orgtrail_core::Timestamp;
use orgtrail_trailfiles::{TrailKey, hex};

/// The processed-mark value of a log file shipped with hash `hash`; `tail` is what the
/// source keeps after it (the `s3` source's ETag), "" for none.
pub fn hashed_value(hash: &[u8; 32], tail: &str) -> Vec<u8> {
    let mut v = format!("h {}", hex::encode(hash));
    if !tail.is_empty() {
        v.push(' ');
        v.push_str(tail);
    }
    v.into_bytes()
}

/// `(checked, hex)` of a log file's processed-mark value, when it carries a hash.
pub fn log_hash(value: &[u8]) -> Option<(bool, &str)> {
    let checked = match value.first()? {
        b'h' => false,
        b'c' => true,
        _ => return None,
    };
    let rest = std::str::from_utf8(value.get(2..66)?).ok()?;
    (value.get(1) == Some(&b' ') && matches!(value.get(66), None | Some(b' '))).then_some(())?;
    Some((checked, rest))
}

/// What follows the hash in a hashed mark value (`h HEX TAIL`), "" for none.
pub fn hashed_tail(value: &[u8]) -> Option<&str> {
    log_hash(value)?;
    std::str::from_utf8(value.get(67..).unwrap_or_default()).ok()
}

/// A hashed mark value made `checked`.
pub(super) fn as_checked(value: &[u8]) -> Vec<u8> {
    let mut v = value.to_vec();
    v[0] = b'c';
    v
}

/// Where a digest stands, first letter of its mark value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestState {
    /// `g`: checked (whatever it found is reported).
    Checked,
    /// `w`: read without a signature of its own (a copy without its `.sig` sidecar): its
    /// chain is checked; its signature comes from its successor's `previousDigestSignature`.
    NoSignature,
    /// `u`: as `w`, and reported `unverified` (no successor had named it by the end of a pass).
    Unverified,
    /// `s`: its successor named its signature (`previousDigestSignature`): verify with it.
    Claimed,
}

impl DigestState {
    fn letter(self) -> char {
        match self {
            DigestState::Checked => 'g',
            DigestState::NoSignature => 'w',
            DigestState::Unverified => 'u',
            DigestState::Claimed => 's',
        }
    }

    /// Read, but waiting for its signature from its successor.
    pub fn awaits_signature(self) -> bool {
        matches!(self, DigestState::NoSignature | DigestState::Unverified)
    }
}

/// A digest's mark value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestMark {
    pub state: DigestState,
    /// Hex SHA-256 of the inflated digest ("" when unreadable).
    pub hash: String,
    pub signature: Option<String>,
    /// The `s3` source's ETag, "" for none.
    pub tail: String,
}

impl DigestMark {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = format!(
            "{} {} {}",
            self.state.letter(),
            if self.hash.is_empty() {
                "-"
            } else {
                &self.hash
            },
            self.signature.as_deref().unwrap_or("-")
        );
        if !self.tail.is_empty() {
            v.push(' ');
            v.push_str(&self.tail);
        }
        v.into_bytes()
    }

    pub fn decode(value: &[u8]) -> Option<DigestMark> {
        let s = std::str::from_utf8(value).ok()?;
        let state = match s.get(..2)? {
            "g " => DigestState::Checked,
            "w " => DigestState::NoSignature,
            "u " => DigestState::Unverified,
            "s " => DigestState::Claimed,
            _ => return None,
        };
        let (hash, rest) = s[2..].split_once(' ')?;
        let (sig, tail) = rest.split_once(' ').unwrap_or((rest, ""));
        Some(DigestMark {
            state,
            hash: if hash == "-" {
                String::new()
            } else {
                hash.to_owned()
            },
            signature: (sig != "-").then(|| sig.to_owned()),
            tail: tail.to_owned(),
        })
    }
}

/// The newest digest read in a chain.
#[derive(Debug, Clone)]
pub(super) struct Tip {
    pub(super) key: String,
    pub(super) stamp: Timestamp,
    pub(super) hash: String,
    pub(super) signature: Option<String>,
}

impl Tip {
    pub(super) fn encode(&self) -> Vec<u8> {
        format!(
            "{}\n{}\n{}",
            self.key,
            self.hash,
            self.signature.as_deref().unwrap_or("-")
        )
        .into_bytes()
    }

    pub(super) fn decode(v: &[u8]) -> Option<Tip> {
        let s = std::str::from_utf8(v).ok()?;
        let mut it = s.split('\n');
        let key = it.next()?.to_owned();
        let hash = it.next()?.to_owned();
        let sig = it.next()?;
        let stamp = TrailKey::parse(&key)?.stamp;
        Some(Tip {
            key,
            stamp,
            hash,
            signature: (sig != "-").then(|| sig.to_owned()),
        })
    }
}

/// The latest `digestStartTime` read per trail digesting a location, by (trail, home region).
pub(super) type Starts = HashMap<(String, String), Timestamp>;

/// A location's starts as a mark value: `TRAIL HOME_REGION MILLIS` lines.
pub(super) fn encode_starts(starts: &Starts) -> Vec<u8> {
    let mut lines: Vec<String> = starts
        .iter()
        .map(|((trail, home), t)| format!("{trail} {home} {}", t.millis()))
        .collect();
    lines.sort();
    lines.join("\n").into_bytes()
}

pub(super) fn decode_starts(v: &[u8]) -> Starts {
    String::from_utf8_lossy(v)
        .lines()
        .filter_map(|l| {
            let mut it = l.split(' ');
            let (trail, home, t) = (it.next()?, it.next()?, it.next()?.parse().ok()?);
            Some(((trail.to_owned(), home.to_owned()), Timestamp(t)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_round_trip() {
        let s: Starts = [
            (
                ("main".into(), "us-east-1".into()),
                Timestamp(1_709_251_200_000),
            ),
            (("org-trail".into(), "eu-west-1".into()), Timestamp(5)),
        ]
        .into_iter()
        .collect();
        assert_eq!(decode_starts(&encode_starts(&s)), s);
    }

    #[test]
    fn mark_values_round_trip() {
        let h = [0xabu8; 32];
        let v = hashed_value(&h, "\"e t\"");
        assert_eq!(log_hash(&v), Some((false, hex::encode(&h).as_str())));
        assert_eq!(hashed_tail(&v), Some("\"e t\""));
        let c = as_checked(&v);
        assert_eq!(log_hash(&c), Some((true, hex::encode(&h).as_str())));
        let bare = hashed_value(&h, "");
        assert_eq!(hashed_tail(&bare), Some(""));
        assert_eq!(log_hash(b"done"), None);
        assert_eq!(log_hash(b"d \"etag\""), None);
        let g = DigestMark {
            state: DigestState::Checked,
            hash: "00ff".into(),
            signature: Some("abcd".into()),
            tail: "\"x y\"".into(),
        };
        assert_eq!(g.encode(), b"g 00ff abcd \"x y\"");
        assert_eq!(DigestMark::decode(&g.encode()), Some(g));
        for state in [
            DigestState::Checked,
            DigestState::NoSignature,
            DigestState::Unverified,
            DigestState::Claimed,
        ] {
            let m = DigestMark {
                state,
                hash: String::new(),
                signature: None,
                tail: String::new(),
            };
            assert_eq!(DigestMark::decode(&m.encode()), Some(m));
        }
        assert_eq!(DigestMark::decode(b"h 00ff"), None);
    }
}
