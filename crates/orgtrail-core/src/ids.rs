//! Identifiers.

use std::fmt;
use std::str::FromStr;

/// An AWS account id: exactly 12 ASCII digits.
///
/// This is what certificates name and what authorization compares. Events themselves may carry
/// messier values in `recipientAccountId` (redacted, 9 or 13 digits in some corpora); those stay
/// strings in [`crate::EventFields`] and simply never equal a valid `AccountId`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId([u8; 12]);

/// Why a string is not an account id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an AWS account id (expected exactly 12 digits, got {len} characters{digits})")]
pub struct AccountIdError {
    len: usize,
    digits: &'static str,
}

impl AccountId {
    /// The 12 digits.
    pub fn as_str(&self) -> &str {
        // Constructed only from ASCII digits.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl FromStr for AccountId {
    type Err = AccountIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        let all_digits = b.iter().all(u8::is_ascii_digit);
        match <[u8; 12]>::try_from(b) {
            Ok(a) if all_digits => Ok(AccountId(a)),
            _ => Err(AccountIdError {
                len: s.chars().count(),
                digits: if all_digits { "" } else { ", not all digits" },
            }),
        }
    }
}

/// From a string of exactly 12 digits (configuration files): anything else is refused with
/// the reason, at the value's place in the file.
impl<'de> serde::Deserialize<'de> for AccountId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse()
            .map_err(|e: AccountIdError| serde::de::Error::custom(format!("{s:?} is {e}")))
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_are_twelve_digits() {
        let a: AccountId = "123456789012".parse().unwrap();
        assert_eq!(a.to_string(), "123456789012");
        for bad in [
            "redacted",
            "12345678901",
            "1234567890123",
            "12345678901a",
            "",
        ] {
            let e = bad.parse::<AccountId>().unwrap_err();
            assert!(e.to_string().contains("12 digits"), "{e}");
        }
    }
}
