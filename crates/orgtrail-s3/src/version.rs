//! Which version of an object a reader holds: what overwrite detection compares and what a
//! resumed read asks for again.

use std::fmt;

use object_store::{GetOptions, GetRange, ObjectMeta};

/// An object's version: its ETag, or, from a server that sends none, its size and
/// last-modified time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Version {
    /// The ETag, opaque, quotes included (a multipart ETag is not a content hash). A read of
    /// this version sends it as `If-Match`.
    ETag(String),
    /// The server sent no ETag (or an empty one): the size and the last-modified time in whole
    /// seconds (a listing gives milliseconds, a GET's `Last-Modified` header seconds). Weaker
    /// than an ETag: an overwrite of the same size within the same second goes unnoticed.
    /// Never sent as `If-Match`: a read of this version compares what the server answers
    /// instead.
    SizeModified { size: u64, modified: i64 },
}

impl Version {
    /// The version `meta` describes.
    pub(crate) fn of(meta: &ObjectMeta) -> Version {
        Version::from_parts(
            meta.e_tag.as_deref(),
            meta.size,
            meta.last_modified.timestamp(),
        )
    }

    fn from_parts(etag: Option<&str>, size: u64, modified: i64) -> Version {
        match etag {
            Some(t) if !t.is_empty() => Version::ETag(t.to_owned()),
            _ => Version::SizeModified { size, modified },
        }
    }

    /// The ETag, if the server sent one.
    pub fn etag(&self) -> Option<&str> {
        match self {
            Version::ETag(t) => Some(t),
            Version::SizeModified { .. } => None,
        }
    }
}

/// The ETag as it is, or `size=N;modified=SECONDS` (unquoted, so never an ETag as S3 sends
/// them): a string to keep in a mark and compare with the next listing's.
impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Version::ETag(t) => f.write_str(t),
            Version::SizeModified { size, modified } => {
                write!(f, "size={size};modified={modified}")
            }
        }
    }
}

/// A GET of `want` (any version if `None`) from byte `pos`: `If-Match` only with an ETag.
pub(crate) fn get_options(want: Option<&Version>, pos: u64) -> GetOptions {
    GetOptions {
        if_match: want.and_then(Version::etag).map(str::to_string),
        range: (pos > 0).then_some(GetRange::Offset(pos)),
        ..Default::default()
    }
}

/// Whether a GET answered by `got` read the version `want` (the server checked an ETag
/// itself, through `If-Match`).
pub(crate) fn is_wanted(want: Option<&Version>, got: &Version) -> bool {
    match want {
        None | Some(Version::ETag(_)) => true,
        Some(w) => w == got,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_etag_is_the_version_and_is_sent_as_if_match() {
        let v = Version::from_parts(Some("\"abc\""), 10, 1_700_000_000);
        assert_eq!(v, Version::ETag("\"abc\"".into()));
        assert_eq!(v.to_string(), "\"abc\"");
        assert_eq!(
            get_options(Some(&v), 0).if_match.as_deref(),
            Some("\"abc\"")
        );
        assert_eq!(
            get_options(Some(&v), 5).range,
            Some(GetRange::Offset(5)),
            "a resumed read asks for the rest"
        );
    }

    #[test]
    fn without_an_etag_the_version_is_size_and_last_modified_and_no_if_match_is_sent() {
        for missing in [None, Some("")] {
            let v = Version::from_parts(missing, 10, 1_700_000_000);
            assert_eq!(
                v,
                Version::SizeModified {
                    size: 10,
                    modified: 1_700_000_000
                }
            );
            assert_eq!(v.etag(), None);
            assert_eq!(v.to_string(), "size=10;modified=1700000000");
            assert_eq!(get_options(Some(&v), 0).if_match, None);
            assert_eq!(get_options(Some(&v), 3).if_match, None);
            // The same object read again is that version; an overwrite (another size or
            // another second) is not.
            assert!(is_wanted(
                Some(&v),
                &Version::from_parts(None, 10, 1_700_000_000)
            ));
            assert!(!is_wanted(
                Some(&v),
                &Version::from_parts(None, 11, 1_700_000_000)
            ));
            assert!(!is_wanted(
                Some(&v),
                &Version::from_parts(None, 10, 1_700_000_001)
            ));
            // Two objects that differ only in size differ in version: overwrite detection
            // compares these.
            assert_ne!(
                v.to_string(),
                Version::from_parts(missing, 12, 1_700_000_000).to_string()
            );
        }
        assert_eq!(get_options(None, 0).if_match, None);
    }
}
