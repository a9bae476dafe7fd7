//! What a pass lists, computed without I/O: the days of the lookback window, the day
//! prefixes of each location, the processed-set's mark keys and values.

/// (year, month, day) of a day number (days since 1970-01-01), proleptic Gregorian.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A UTC day, `YYYY/MM/DD` as in CloudTrail's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Day(pub(crate) i64);

impl Day {
    pub(crate) fn of_unix_secs(secs: i64) -> Day {
        Day(secs.div_euclid(86_400))
    }

    /// `YYYY/MM/DD/`.
    pub(crate) fn path(self) -> String {
        let (y, m, d) = civil_from_days(self.0);
        format!("{y:04}/{m:02}/{d:02}/")
    }

    /// `YYYYMMDD`, which sorts as the days do.
    pub(crate) fn compact(self) -> String {
        let (y, m, d) = civil_from_days(self.0);
        format!("{y:04}{m:02}{d:02}")
    }
}

/// The days a pass lists: from `today - lookback_days` to today, oldest first; yesterday
/// always (a file of 23:58 delivered at 00:10 sits under yesterday).
pub(crate) fn days(today: Day, lookback_days: u32) -> Vec<Day> {
    let back = i64::from(lookback_days.max(1));
    (today.0 - back..=today.0).map(Day).collect()
}

/// `"s3\0" bucket "\0"`: the start of every mark of `bucket`.
pub(crate) fn bucket_prefix(bucket: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(bucket.len() + 4);
    k.extend_from_slice(b"s3\0");
    k.extend_from_slice(bucket.as_bytes());
    k.push(0);
    k
}

/// The processed-set mark of `key` in `bucket` under `day`: the day first, so that the
/// marks of days past the lookback are one range.
pub(crate) fn mark_key(bucket: &str, day: Day, key: &str) -> Vec<u8> {
    let mut k = bucket_prefix(bucket);
    k.extend_from_slice(day.compact().as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

/// What the processed set says about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mark {
    /// Read whole, at this version (ETag, or size and last-modified time).
    Done(String),
    /// The first `n` records of this version are spooled.
    Part(String, u64),
    /// Read whole at this ETag, with the SHA-256 (hex) of its inflated bytes (digest
    /// checking; see `super::super::digests`), `checked` once a digest listed it.
    Hashed {
        etag: String,
        hash: String,
        checked: bool,
    },
}

impl Mark {
    pub(crate) fn encode(&self) -> Vec<u8> {
        match self {
            Mark::Done(e) => format!("d {e}").into_bytes(),
            Mark::Part(e, n) => format!("p {n} {e}").into_bytes(),
            Mark::Hashed {
                etag,
                hash,
                checked,
            } => format!("{} {hash} {etag}", if *checked { 'c' } else { 'h' }).into_bytes(),
        }
    }

    pub(crate) fn decode(v: &[u8]) -> Option<Mark> {
        if let Some((checked, hash)) = crate::sources::digests::log_hash(v) {
            return Some(Mark::Hashed {
                etag: crate::sources::digests::hashed_tail(v)?.to_string(),
                hash: hash.to_string(),
                checked,
            });
        }
        let s = std::str::from_utf8(v).ok()?;
        if let Some(e) = s.strip_prefix("d ") {
            return Some(Mark::Done(e.to_string()));
        }
        let (n, e) = s.strip_prefix("p ")?.split_once(' ')?;
        Some(Mark::Part(e.to_string(), n.parse().ok()?))
    }
}

/// A 128-bit hash of a mark key and a version: the in-memory processed set.
pub(crate) fn done_hash(mark: &[u8], etag: &str) -> u128 {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(mark);
    h.update([0xff]);
    h.update(etag.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    u128::from_le_bytes(b)
}

/// True for a digest file's key (never opened as a log file).
pub(crate) fn is_digest(key: &str) -> bool {
    key.contains("/CloudTrail-Digest/")
        || key
            .rsplit('/')
            .next()
            .is_some_and(|n| n.contains("_CloudTrail-Digest_"))
}

/// The day a CloudTrail key lies under (`.../YYYY/MM/DD/NAME`), from its path.
pub(crate) fn day_of_key(key: &str) -> Option<Day> {
    let tk = orgtrail_trailfiles::TrailKey::parse(key)?;
    Some(Day(tk.stamp.millis().div_euclid(86_400_000)))
}

/// True for a log file's name (`.json.gz`, or plain `.json`).
pub(crate) fn is_log_file(key: &str) -> bool {
    key.ends_with(".json.gz") || key.ends_with(".json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_their_paths() {
        // 2024-02-29 is day 19782.
        assert_eq!(Day(19_782).path(), "2024/02/29/");
        assert_eq!(Day(0).compact(), "19700101");
        let t = Day::of_unix_secs(1_764_288_000); // 2025-11-28T00:00:00Z
        assert_eq!(t.path(), "2025/11/28/");
        let d: Vec<String> = days(t, 2).iter().map(|d| d.path()).collect();
        assert_eq!(d, ["2025/11/26/", "2025/11/27/", "2025/11/28/"]);
        // Yesterday even with no lookback.
        assert_eq!(days(t, 0).len(), 2);
    }

    #[test]
    fn marks_round_trip_and_sort_by_day() {
        for m in [
            Mark::Done("\"abc-3\"".into()),
            Mark::Part("\"e f\"".into(), 7000),
            Mark::Hashed {
                etag: "\"e f\"".into(),
                hash: "ab".repeat(32),
                checked: false,
            },
            Mark::Hashed {
                etag: "\"x\"".into(),
                hash: "01".repeat(32),
                checked: true,
            },
        ] {
            assert_eq!(Mark::decode(&m.encode()), Some(m));
        }
        assert!(mark_key("b", Day(10), "z") < mark_key("b", Day(11), "a"));
        assert!(mark_key("b", Day(10), "z").starts_with(&bucket_prefix("b")));
        // Every mark of a day before `first` sorts before bucket_prefix ‖ first.
        let mut to = bucket_prefix("b");
        to.extend_from_slice(Day(11).compact().as_bytes());
        assert!(mark_key("b", Day(10), "zzz") < to && mark_key("b", Day(11), "") >= to);
        assert!(is_digest(
            "AWSLogs/1/CloudTrail-Digest/r/2026/01/01/1_CloudTrail-Digest_r_t_r_20260101T000000Z.json.gz"
        ));
        assert!(is_digest(
            "AWSLogs/1/CloudTrail/r/2026/01/01/1_CloudTrail-Digest_r_t.json.gz"
        ));
        assert!(!is_digest(
            "AWSLogs/1/CloudTrail/r/2026/01/01/1_CloudTrail_r_20260101T0000Z_x.json.gz"
        ));
    }
}
