//! Where CloudTrail puts its files, and what a key says about the file.
//!
//! ```text
//! [PREFIX/]AWSLogs/[o-ORGID/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/
//!     ACCOUNT_CloudTrail_REGION_YYYYMMDDTHHmmZ_UNIQUE.json.gz
//! [PREFIX/]AWSLogs/[o-ORGID/]ACCOUNT/CloudTrail-Digest/REGION/YYYY/MM/DD/
//!     ACCOUNT_CloudTrail-Digest_REGION_TRAIL_HOMEREGION_YYYYMMDDTHHMMSSZ[_backfill].json.gz
//! ```
//!
//! A key is recognised only when its directory and its file name agree (account, region and
//! date); anything else (Insights logs, sidecars, stray files) is `None`. Trail names may hold
//! underscores, so a digest name is read from both ends.

use orgtrail_core::Timestamp;

/// Where one account's files for one region live: the unit CloudTrail digests.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// The key prefix before `AWSLogs/`, without its trailing slash ("" for none).
    pub prefix: String,
    /// The organization id of an organization trail (`o-...`).
    pub org_id: Option<String>,
    pub account: String,
    pub region: String,
}

/// What kind of file a key names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileKind {
    /// A log file (`CloudTrail/`).
    Log,
    /// A digest file (`CloudTrail-Digest/`) of trail `trail` whose home region is
    /// `home_region`; `backfill` for the `_backfill` digests CloudTrail writes when it catches
    /// up on a period, which form a chain of their own.
    Digest {
        trail: String,
        home_region: String,
        backfill: bool,
    },
}

/// A parsed CloudTrail key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailKey {
    pub location: Location,
    pub kind: FileKind,
    /// The time in the file name: the minute of a log file, the second of a digest.
    pub stamp: Timestamp,
}

/// The chain a digest belongs to: one per trail, location and kind (standard or backfill).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChainId {
    pub location: Location,
    pub trail: String,
    pub home_region: String,
    pub backfill: bool,
}

impl TrailKey {
    /// Parses `key`; `None` when it is not a CloudTrail log or digest key.
    pub fn parse(key: &str) -> Option<TrailKey> {
        let segs: Vec<&str> = key.split('/').collect();
        let at = segs.iter().position(|s| *s == "AWSLogs")?;
        let prefix = segs[..at].join("/");
        let mut rest = &segs[at + 1..];
        let org_id = match rest.first() {
            Some(s) if s.starts_with("o-") => {
                rest = &rest[1..];
                Some((*s).to_owned())
            }
            _ => None,
        };
        let [account, dir, region, y, m, d, file] = rest else {
            return None;
        };
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if region.is_empty() || region.contains('_') {
            return None;
        }
        let date = format!("{y}{m}{d}");
        let location = Location {
            prefix,
            org_id,
            account: (*account).to_owned(),
            region: (*region).to_owned(),
        };
        let name = file.strip_suffix(".json.gz")?;
        let (kind, stamp) = match *dir {
            "CloudTrail" => {
                let rest = name.strip_prefix(&format!("{account}_CloudTrail_{region}_"))?;
                let (stamp, unique) = rest.split_once('_')?;
                if unique.is_empty() {
                    return None;
                }
                (FileKind::Log, parse_stamp(stamp, &date, false)?)
            }
            "CloudTrail-Digest" => {
                let (name, backfill) = match name.strip_suffix("_backfill") {
                    Some(n) => (n, true),
                    None => (name, false),
                };
                let rest = name.strip_prefix(&format!("{account}_CloudTrail-Digest_{region}_"))?;
                let (rest, stamp) = rest.rsplit_once('_')?;
                let (trail, home_region) = rest.rsplit_once('_')?;
                if trail.is_empty() || home_region.is_empty() {
                    return None;
                }
                (
                    FileKind::Digest {
                        trail: trail.to_owned(),
                        home_region: home_region.to_owned(),
                        backfill,
                    },
                    parse_stamp(stamp, &date, true)?,
                )
            }
            _ => return None,
        };
        Some(TrailKey {
            location,
            kind,
            stamp,
        })
    }

    /// The digest chain of a digest key; `None` for a log file.
    pub fn chain(&self) -> Option<ChainId> {
        match &self.kind {
            FileKind::Log => None,
            FileKind::Digest {
                trail,
                home_region,
                backfill,
            } => Some(ChainId {
                location: self.location.clone(),
                trail: trail.clone(),
                home_region: home_region.clone(),
                backfill: *backfill,
            }),
        }
    }
}

/// `YYYYMMDDTHHmmZ` (log files) or `YYYYMMDDTHHMMSSZ` (digests), whose date must be the
/// directory's `YYYYMMDD`.
fn parse_stamp(s: &str, dir_date: &str, seconds: bool) -> Option<Timestamp> {
    let b = s.as_bytes();
    let len = if seconds { 16 } else { 14 };
    if b.len() != len || b[8] != b'T' || b[len - 1] != b'Z' || s.get(..8)? != dir_date {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| {
        let part = s.get(r)?;
        part.bytes().all(|c| c.is_ascii_digit()).then_some(part)
    };
    let sec = if seconds { digits(13..15)? } else { "00" };
    let text = format!(
        "{}-{}-{}T{}:{}:{}Z",
        digits(0..4)?,
        digits(4..6)?,
        digits(6..8)?,
        digits(9..11)?,
        digits(11..13)?,
        sec
    );
    Timestamp::parse(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    #[test]
    fn a_log_file_key() {
        let k = TrailKey::parse(
            "AWSLogs/111122223333/CloudTrail/us-east-1/2024/01/02/111122223333_CloudTrail_us-east-1_20240102T0305Z_AbCd1234.json.gz",
        )
        .unwrap();
        assert_eq!(k.kind, FileKind::Log);
        assert_eq!(k.location.prefix, "");
        assert_eq!(k.location.org_id, None);
        assert_eq!(k.location.account, "111122223333");
        assert_eq!(k.location.region, "us-east-1");
        assert_eq!(k.stamp, ts("2024-01-02T03:05:00Z"));
        assert_eq!(k.chain(), None);
    }

    #[test]
    fn a_digest_key_of_an_organization_trail_under_a_prefix() {
        let k = TrailKey::parse(
            "logs/ct/AWSLogs/o-abc123/111122223333/CloudTrail-Digest/eu-west-1/2024/01/02/111122223333_CloudTrail-Digest_eu-west-1_my_org_trail_us-east-1_20240102T031500Z.json.gz",
        )
        .unwrap();
        assert_eq!(k.location.prefix, "logs/ct");
        assert_eq!(k.location.org_id.as_deref(), Some("o-abc123"));
        assert_eq!(k.location.region, "eu-west-1");
        assert_eq!(
            k.kind,
            FileKind::Digest {
                trail: "my_org_trail".into(),
                home_region: "us-east-1".into(),
                backfill: false
            }
        );
        assert_eq!(k.stamp, ts("2024-01-02T03:15:00Z"));
        assert!(!k.chain().unwrap().backfill);
    }

    #[test]
    fn a_backfill_digest_is_a_chain_of_its_own() {
        let std = TrailKey::parse("AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2024/01/02/111122223333_CloudTrail-Digest_us-east-1_t_us-east-1_20240102T031500Z.json.gz").unwrap();
        let bf = TrailKey::parse("AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2024/01/02/111122223333_CloudTrail-Digest_us-east-1_t_us-east-1_20240102T031500Z_backfill.json.gz").unwrap();
        assert_eq!(std.stamp, bf.stamp);
        assert!(bf.chain().unwrap().backfill);
        assert_ne!(std.chain(), bf.chain());
    }

    #[test]
    fn keys_that_are_not_cloudtrail_files() {
        for key in [
            // sidecar signature
            "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2024/01/02/111122223333_CloudTrail-Digest_us-east-1_t_us-east-1_20240102T031500Z.json.gz.sig",
            // the date in the name disagrees with the directory
            "AWSLogs/111122223333/CloudTrail/us-east-1/2024/01/03/111122223333_CloudTrail_us-east-1_20240102T0305Z_x.json.gz",
            // another account's name in this account's directory
            "AWSLogs/111122223333/CloudTrail/us-east-1/2024/01/02/444455556666_CloudTrail_us-east-1_20240102T0305Z_x.json.gz",
            // Insights
            "AWSLogs/111122223333/CloudTrail-Insight/us-east-1/2024/01/02/111122223333_CloudTrail-Insight_us-east-1_20240102T0305Z_x.json.gz",
            // no AWSLogs
            "111122223333/CloudTrail/us-east-1/2024/01/02/111122223333_CloudTrail_us-east-1_20240102T0305Z_x.json.gz",
            // a bad hour
            "AWSLogs/111122223333/CloudTrail/us-east-1/2024/01/02/111122223333_CloudTrail_us-east-1_20240102T2505Z_x.json.gz",
        ] {
            assert_eq!(TrailKey::parse(key), None, "{key}");
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any text: no panic, and whatever parses is a key of CloudTrail's shape.
        #[test]
        fn never_panics(key in "\\PC{0,200}") {
            if let Some(k) = TrailKey::parse(&key) {
                prop_assert!(key.contains("AWSLogs/"));
                prop_assert_eq!(k.location.account.len(), 12);
            }
        }

        /// Generated keys parse back to what made them.
        #[test]
        fn generated_keys_round_trip(
            prefix in "([a-z0-9-]{1,8}/){0,2}",
            org in proptest::option::of("o-[a-z0-9]{4,10}"),
            account in "[0-9]{12}",
            region in "[a-z]{2}-[a-z]{4,9}-[1-3]",
            trail in "[A-Za-z0-9._-]{1,20}(_[A-Za-z0-9]{1,5})?",
            secs in 0i64..4_000_000_000,
            backfill in any::<bool>(),
        ) {
            let t = Timestamp::from_unix_secs(secs).to_string();
            let (y, mo, d) = (&t[0..4], &t[5..7], &t[8..10]);
            let (h, mi, s) = (&t[11..13], &t[14..16], &t[17..19]);
            let org_seg = org.as_ref().map(|o| format!("{o}/")).unwrap_or_default();
            let suffix = if backfill { "_backfill" } else { "" };
            let key = format!(
                "{prefix}AWSLogs/{org_seg}{account}/CloudTrail-Digest/{region}/{y}/{mo}/{d}/{account}_CloudTrail-Digest_{region}_{trail}_us-east-1_{y}{mo}{d}T{h}{mi}{s}Z{suffix}.json.gz"
            );
            let k = TrailKey::parse(&key).unwrap();
            prop_assert_eq!(k.stamp, Timestamp::from_unix_secs(secs));
            prop_assert_eq!(&k.location.prefix, prefix.trim_end_matches('/'));
            prop_assert_eq!(&k.location.org_id, &org);
            prop_assert_eq!(
                k.kind,
                FileKind::Digest { trail: trail.clone(), home_region: "us-east-1".into(), backfill }
            );
            let log = format!(
                "{prefix}AWSLogs/{org_seg}{account}/CloudTrail/{region}/{y}/{mo}/{d}/{account}_CloudTrail_{region}_{y}{mo}{d}T{h}{mi}Z_AbC123.json.gz"
            );
            let l = TrailKey::parse(&log).unwrap();
            prop_assert_eq!(l.kind, FileKind::Log);
            prop_assert_eq!(l.stamp.millis(), secs * 1000 - (secs % 60) * 1000);
        }
    }
}
