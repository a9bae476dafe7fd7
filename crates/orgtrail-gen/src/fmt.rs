//! Text formats for identifiers and timestamps, all drawn from [`Rng`].

use crate::rng::Rng;

const HEX: &[u8; 16] = b"0123456789abcdef";
const HEX_UP: &[u8; 16] = b"0123456789ABCDEF";
/// The alphabet of IAM unique ids and access key ids.
const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn push_from(out: &mut String, rng: &mut Rng, alphabet: &[u8], n: usize) {
    debug_assert!(alphabet.len().is_power_of_two());
    let bits = alphabet.len().trailing_zeros();
    let mask = (alphabet.len() - 1) as u64;
    let per_word = (64 / bits) as usize;
    let mut left = n;
    while left > 0 {
        let mut w = rng.next_u64();
        for _ in 0..left.min(per_word) {
            out.push(char::from(alphabet[(w & mask) as usize]));
            w >>= bits;
        }
        left = left.saturating_sub(per_word);
    }
}

/// `n` lowercase hex digits.
pub(crate) fn hex(rng: &mut Rng, n: usize) -> String {
    let mut s = String::with_capacity(n);
    push_from(&mut s, rng, HEX, n);
    s
}

/// `n` uppercase hex digits (S3 request ids).
pub(crate) fn hex_upper(rng: &mut Rng, n: usize) -> String {
    let mut s = String::with_capacity(n);
    push_from(&mut s, rng, HEX_UP, n);
    s
}

/// `prefix` followed by `n` characters of the IAM id alphabet, e.g. `AKIA` + 16.
pub(crate) fn iam_id(rng: &mut Rng, prefix: &str, n: usize) -> String {
    let mut s = String::with_capacity(prefix.len() + n);
    s.push_str(prefix);
    push_from(&mut s, rng, B32, n);
    s
}

/// `n` characters of standard base64 text (fake tokens, `x-amz-id-2`).
pub(crate) fn b64(rng: &mut Rng, n: usize) -> String {
    let mut s = String::with_capacity(n);
    push_from(&mut s, rng, B64, n);
    s
}

/// `n` characters of URL-safe base64 text (encoded authorization messages).
pub(crate) fn b64url(rng: &mut Rng, n: usize) -> String {
    let mut s = String::with_capacity(n);
    push_from(&mut s, rng, B64URL, n);
    s
}

/// Mixed-case alphanumerics (Secrets Manager ARN suffixes).
pub(crate) fn alnum(rng: &mut Rng, n: usize) -> String {
    const A: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut s = String::with_capacity(n);
    for _ in 0..n {
        s.push(char::from(rng.choose(A)));
    }
    s
}

/// A random (version 4, RFC 9562 variant) UUID in lowercase hyphenated text.
pub(crate) fn uuid4(rng: &mut Rng) -> String {
    let hi = (rng.next_u64() & 0xFFFF_FFFF_FFFF_0FFF) | 0x0000_0000_0000_4000;
    let lo = (rng.next_u64() & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
    let v = (u128::from(hi) << 64) | u128::from(lo);
    let mut s = String::with_capacity(36);
    for i in 0..32 {
        if matches!(i, 8 | 12 | 16 | 20) {
            s.push('-');
        }
        let nib = ((v >> (124 - 4 * i)) & 0xF) as usize;
        s.push(char::from(HEX[nib]));
    }
    s
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

struct Parts {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    min: u32,
    sec: u32,
}

fn parts(unix: i64) -> Parts {
    let days = unix.div_euclid(86_400);
    let rem = unix.rem_euclid(86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    Parts {
        year,
        month,
        day,
        hour: rem / 3600,
        min: rem / 60 % 60,
        sec: rem % 60,
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn rfc3339(unix: i64) -> String {
    use std::fmt::Write as _;
    let p = parts(unix);
    let mut s = String::with_capacity(20);
    // Writing to a String cannot fail.
    let _ = write!(
        s,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        p.year, p.month, p.day, p.hour, p.min, p.sec
    );
    s
}

/// The `Nov 1, 2026 1:05:09 PM` format STS and SSM use in response elements.
pub(crate) fn us_datetime(unix: i64) -> String {
    use std::fmt::Write as _;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let p = parts(unix);
    let (h12, ampm) = match p.hour {
        0 => (12, "AM"),
        1..=11 => (p.hour, "AM"),
        12 => (12, "PM"),
        h => (h - 12, "PM"),
    };
    let mut s = String::with_capacity(24);
    let _ = write!(
        s,
        "{} {}, {} {}:{:02}:{:02} {}",
        MONTHS[(p.month - 1) as usize],
        p.day,
        p.year,
        h12,
        p.min,
        p.sec,
        ampm
    );
    s
}

/// `YYYY/MM/DD` (log stream and object key prefixes).
pub(crate) fn ymd_slash(unix: i64) -> String {
    let p = parts(unix);
    format!("{:04}/{:02}/{:02}", p.year, p.month, p.day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_format() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_793_491_200), "2026-11-01T00:00:00Z");
        assert_eq!(rfc3339(951_825_600), "2000-02-29T12:00:00Z");
        assert_eq!(us_datetime(1_793_491_200), "Nov 1, 2026 12:00:00 AM");
        assert_eq!(
            us_datetime(1_793_491_200 + 13 * 3600 + 65),
            "Nov 1, 2026 1:01:05 PM"
        );
        assert_eq!(ymd_slash(1_793_491_200), "2026/11/01");
    }

    #[test]
    fn ids_have_the_right_shape() {
        let mut r = Rng::new(7);
        let u = uuid4(&mut r);
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
        let k = iam_id(&mut r, "AKIA", 16);
        assert_eq!(k.len(), 20);
        assert!(k[4..].bytes().all(|b| B32.contains(&b)));
        assert_eq!(hex(&mut r, 17).len(), 17);
        assert_eq!(b64(&mut r, 101).len(), 101);
    }
}
