//! What went wrong with an S3 request, in kinds a caller can act on.
//!
//! object_store's `Display` already carries the source chain (the HTTP status and the
//! server's XML error), so a reason is its text once; it names the request URL and the
//! server's error code, never a secret (requests are signed in headers, not presigned).

use thiserror::Error;

use crate::Version;

/// An S3 failure.
#[derive(Debug, Error)]
pub enum S3Error {
    /// The server refused the credentials or the permission: retrying the same keys cannot
    /// mend it.
    #[error(
        "{place} refused the credentials ({code}): check secret_access_key_file / AWS_SECRET_ACCESS_KEY and access_key_id_file / AWS_ACCESS_KEY_ID, and the bucket policy"
    )]
    Auth { place: String, code: String },
    /// The bucket does not exist.
    #[error("{place}: no such bucket")]
    NoSuchBucket { place: String },
    /// The object is gone (deleted between the listing and the read).
    #[error("{place}: {key} not found")]
    NotFound { place: String, key: String },
    /// The object was overwritten while it was read (its version, the ETag or the size and
    /// last-modified time, no longer matches).
    #[error("{place}: {key} changed while being read (version {version} no longer matches)")]
    Changed {
        place: String,
        key: String,
        version: String,
    },
    /// Anything else (5xx, timeouts, connection errors) after object_store's own retries.
    #[error("{place}: {op}: {reason}")]
    Transient {
        place: String,
        op: &'static str,
        reason: String,
    },
    /// The options cannot make a client (unreadable secret file, bad endpoint...).
    #[error("{place}: {reason}")]
    Config { place: String, reason: String },
}

impl S3Error {
    /// True for errors that retrying with the same configuration cannot mend.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            S3Error::Auth { .. } | S3Error::NoSuchBucket { .. } | S3Error::Config { .. }
        )
    }

    /// A low-cardinality name of the kind, for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            S3Error::Auth { .. } => "auth",
            S3Error::NoSuchBucket { .. } => "no_such_bucket",
            S3Error::NotFound { .. } => "not_found",
            S3Error::Changed { .. } => "changed",
            S3Error::Transient { .. } => "transient",
            S3Error::Config { .. } => "config",
        }
    }
}

/// Error codes S3 answers when it refuses credentials or access.
const AUTH_CODES: &[&str] = &[
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "AccessDenied",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
];

/// The `<Code>...</Code>` of the server's XML error, if any.
fn xml_code(text: &str) -> Option<&str> {
    let start = text.find("<Code>")? + "<Code>".len();
    let len = text[start..].find("</Code>")?;
    Some(&text[start..start + len])
}

/// Sorts an object_store error into an [`S3Error`]. `key` is the object concerned, if any.
pub(crate) fn classify(
    e: object_store::Error,
    place: &str,
    op: &'static str,
    key: &str,
    version: Option<&Version>,
) -> S3Error {
    let text = e.to_string();
    let code = xml_code(&text).map(str::to_string).or_else(|| {
        AUTH_CODES
            .iter()
            .chain(&["NoSuchBucket"])
            .find(|c| text.contains(**c))
            .map(|c| c.to_string())
    });
    let place = place.to_string();
    if code.as_deref() == Some("NoSuchBucket") {
        return S3Error::NoSuchBucket { place };
    }
    let auth = |code: Option<String>| S3Error::Auth {
        place: place.clone(),
        code: code.unwrap_or_else(|| "403 Forbidden".into()),
    };
    match e {
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => auth(code),
        object_store::Error::NotFound { .. } => S3Error::NotFound {
            place,
            key: key.to_string(),
        },
        object_store::Error::Precondition { .. } => S3Error::Changed {
            place,
            key: key.to_string(),
            version: version.map(ToString::to_string).unwrap_or_default(),
        },
        _ if code.as_deref().is_some_and(|c| AUTH_CODES.contains(&c))
            || text.contains("403 Forbidden") =>
        {
            auth(code)
        }
        _ => S3Error::Transient {
            place,
            op,
            reason: text,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(msg: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: msg.to_string().into(),
        }
    }

    #[test]
    fn a_refused_signature_on_a_listing_is_an_auth_error_naming_the_code() {
        let e = classify(
            generic(
                "Client error with status 403 Forbidden: <Error><Code>SignatureDoesNotMatch</Code><Message>..</Message></Error>",
            ),
            "s3://b at http://h",
            "list",
            "",
            None,
        );
        assert!(e.is_permanent());
        let s = e.to_string();
        assert!(
            s.contains("s3://b at http://h refused the credentials (SignatureDoesNotMatch)"),
            "{s}"
        );
    }

    #[test]
    fn a_missing_bucket_is_permanent_and_a_server_error_is_not() {
        let e = classify(
            generic(
                "Client error with status 404 Not Found: <Error><Code>NoSuchBucket</Code></Error>",
            ),
            "p",
            "list",
            "",
            None,
        );
        assert!(matches!(e, S3Error::NoSuchBucket { .. }));
        let e = classify(
            generic("Server error, body contains Error, with status 503"),
            "p",
            "get",
            "k",
            None,
        );
        assert!(matches!(e, S3Error::Transient { .. }) && !e.is_permanent());
    }
}
