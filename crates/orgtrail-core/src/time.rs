//! Event timestamps.
//!
//! CloudTrail writes `eventTime` as RFC 3339 in UTC (`2014-03-06T21:22:54Z`). SIEM exports
//! (Panther's, for one) rewrite it as `YYYY-MM-DD HH:MM:SS[.fraction]`, also UTC. Both are
//! accepted; anything else (`redacted`, a bare date, an epoch number) is refused.

use std::fmt;

/// A point in time: milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

/// Why a timestamp string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a timestamp ({reason}); expected RFC 3339 such as 2014-03-06T21:22:54Z")]
pub struct TimestampError {
    reason: &'static str,
}

fn err(reason: &'static str) -> TimestampError {
    TimestampError { reason }
}

impl Timestamp {
    /// Milliseconds since the Unix epoch.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// From whole seconds since the Unix epoch.
    pub fn from_unix_secs(secs: i64) -> Self {
        Timestamp(secs.saturating_mul(1000))
    }

    /// Parses CloudTrail's RFC 3339 form or the `YYYY-MM-DD HH:MM:SS[.fraction][Z]` UTC form.
    pub fn parse(s: &str) -> Result<Self, TimestampError> {
        let b = s.as_bytes();
        if b.len() < 19 {
            return Err(err("too short"));
        }
        let year = digits(b, 0, 4)?;
        expect(b, 4, b'-')?;
        let month = digits(b, 5, 2)?;
        expect(b, 7, b'-')?;
        let day = digits(b, 8, 2)?;
        let rfc3339 = match b[10] {
            b'T' | b't' => true,
            b' ' => false,
            _ => return Err(err("date and time must be separated by 'T' or a space")),
        };
        let hour = digits(b, 11, 2)?;
        expect(b, 13, b':')?;
        let minute = digits(b, 14, 2)?;
        expect(b, 16, b':')?;
        let mut second = digits(b, 17, 2)?;
        if !(1..=12).contains(&month) {
            return Err(err("month out of range"));
        }
        if day < 1 || day > days_in_month(year, month) {
            return Err(err("day out of range"));
        }
        if hour > 23 || minute > 59 || second > 60 {
            return Err(err("time of day out of range"));
        }
        if second == 60 {
            // A leap second: keep ordering sane by pinning it to the last millisecond of :59.
            second = 59;
        }
        let mut i = 19;
        let mut millis = 0i64;
        if i < b.len() && b[i] == b'.' {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                if i - start < 3 {
                    millis = millis * 10 + i64::from(b[i] - b'0');
                }
                i += 1;
            }
            let n = i - start;
            if n == 0 {
                return Err(err("empty fraction of a second"));
            }
            if n > 9 {
                return Err(err("fraction of a second longer than 9 digits"));
            }
            for _ in n..3 {
                millis *= 10;
            }
        }
        let offset_secs: i64 = match &b[i..] {
            b"Z" | b"z" => 0,
            [] if !rfc3339 => 0,
            [] => return Err(err("missing time zone (RFC 3339 needs Z or an offset)")),
            [sign @ (b'+' | b'-'), rest @ ..] if rfc3339 && rest.len() == 5 && rest[2] == b':' => {
                let oh = digits(rest, 0, 2)?;
                let om = digits(rest, 3, 2)?;
                if oh > 23 || om > 59 {
                    return Err(err("time zone offset out of range"));
                }
                let o = i64::from(oh * 3600 + om * 60);
                if *sign == b'+' { o } else { -o }
            }
            _ => return Err(err("unexpected characters after the time")),
        };
        let days = days_from_civil(i64::from(year), month, day);
        let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_secs;
        let ms = if second == 59 && b.get(17..19) == Some(b"60") {
            secs * 1000 + 999
        } else {
            secs * 1000 + millis
        };
        Ok(Timestamp(ms))
    }
}

fn digits(b: &[u8], at: usize, n: usize) -> Result<u32, TimestampError> {
    let s = b.get(at..at + n).ok_or(err("too short"))?;
    let mut v = 0u32;
    for &c in s {
        if !c.is_ascii_digit() {
            return Err(err("expected a digit"));
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Ok(v)
}

fn expect(b: &[u8], at: usize, c: u8) -> Result<(), TimestampError> {
    if b.get(at) == Some(&c) {
        Ok(())
    } else {
        Err(err("malformed date or time"))
    }
}

fn is_leap(y: u32) -> bool {
    (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400)
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC, with milliseconds only when they are not zero.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.div_euclid(1000);
        let ms = self.0.rem_euclid(1000);
        let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            sod / 3600,
            sod % 3600 / 60,
            sod % 60
        )?;
        if ms != 0 {
            write!(f, ".{ms:03}")?;
        }
        f.write_str("Z")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cloudtrail_rfc3339() {
        let t = Timestamp::parse("2014-03-06T21:22:54Z").unwrap();
        assert_eq!(t.millis(), 1_394_140_974_000);
        assert_eq!(t.to_string(), "2014-03-06T21:22:54Z");
    }

    #[test]
    fn parses_siem_space_form_and_fractions() {
        let a = Timestamp::parse("2022-12-11 19:42:55").unwrap();
        let b = Timestamp::parse("2022-12-11T19:42:55Z").unwrap();
        assert_eq!(a, b);
        let c = Timestamp::parse("2022-12-11 19:42:55.123456789").unwrap();
        assert_eq!(c.millis(), b.millis() + 123);
        let d = Timestamp::parse("2022-12-11 19:42:55.5").unwrap();
        assert_eq!(d.millis(), b.millis() + 500);
        assert_eq!(Timestamp::parse("2022-12-11 19:42:55Z").unwrap(), b);
    }

    #[test]
    fn applies_offsets() {
        let a = Timestamp::parse("2020-01-01T01:00:00+01:00").unwrap();
        assert_eq!(a, Timestamp::parse("2020-01-01T00:00:00Z").unwrap());
        let b = Timestamp::parse("2019-12-31T23:00:00-01:00").unwrap();
        assert_eq!(b, a);
    }

    #[test]
    fn refuses_non_timestamps() {
        for s in [
            "redacted",
            "",
            "2020-01-01",
            "1700000000",
            "2020-13-01T00:00:00Z",
            "2021-02-29T00:00:00Z",
            "2020-01-01T24:00:00Z",
            "2020-01-01T00:00:00",
            "2020-01-01T00:00:00Zjunk",
            "2020-01-01 00:00:00+01:00",
            "2020-01-01T00:00:00.Z",
            "2020-01-01X00:00:00Z",
        ] {
            assert!(Timestamp::parse(s).is_err(), "{s:?} should be refused");
        }
        assert!(Timestamp::parse("2020-02-29T00:00:00Z").is_ok());
    }

    #[test]
    fn display_round_trips_over_a_range() {
        for secs in (-2_000_000_000i64..4_000_000_000).step_by(86_399 * 37) {
            let t = Timestamp(secs * 1000 + 7);
            assert_eq!(Timestamp::parse(&t.to_string()).unwrap(), t);
        }
    }
}
