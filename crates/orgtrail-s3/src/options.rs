//! Where a bucket is and how requests to it are made.

use std::path::PathBuf;
use std::time::Duration;

use crate::S3Error;

/// How to reach a bucket. Secrets are never inline: they come from the `*_file`s (read again
/// at each [`crate::connect`]) or, when those are unset, from the `AWS_*` environment, web
/// identity or the instance metadata service.
#[derive(Debug, Clone)]
pub struct S3Options {
    pub bucket: String,
    /// `None`: AWS itself (the region's endpoint).
    pub endpoint: Option<String>,
    pub region: String,
    /// Path-style requests (`http://host/bucket/key`); `None`: path style exactly when an
    /// endpoint is set.
    pub path_style: Option<bool>,
    /// Permits an `http://` endpoint (a loopback test server); off by default.
    pub allow_http: bool,
    /// A PEM CA bundle to trust beside the system's (an on-premises store with a private CA).
    pub ca_file: Option<PathBuf>,
    /// Each file, when given, overrides its `AWS_*` variable.
    pub access_key_id_file: Option<PathBuf>,
    pub secret_access_key_file: Option<PathBuf>,
    pub session_token_file: Option<PathBuf>,
    /// A whole request, body included.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// object_store's retries of connection errors and 5xx answers.
    pub max_retries: usize,
    pub retry_timeout: Duration,
}

impl S3Options {
    /// Options for `bucket` with the defaults.
    pub fn new(bucket: impl Into<String>) -> Self {
        S3Options {
            bucket: bucket.into(),
            endpoint: None,
            region: "us-east-1".into(),
            path_style: None,
            allow_http: false,
            ca_file: None,
            access_key_id_file: None,
            secret_access_key_file: None,
            session_token_file: None,
            request_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(5),
            max_retries: 10,
            retry_timeout: Duration::from_secs(180),
        }
    }

    /// `s3://BUCKET at ENDPOINT`, for messages (no secret in it).
    pub fn place(&self) -> String {
        match &self.endpoint {
            Some(e) => format!("s3://{} at {e}", self.bucket),
            None => format!("s3://{} at AWS {}", self.bucket, self.region),
        }
    }

    /// Every problem with the options, at once.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if let Err(e) = check_bucket(&self.bucket) {
            p.push(e);
        }
        if let Some(e) = &self.endpoint {
            if e.starts_with("http://") && !self.allow_http {
                p.push(format!(
                    "endpoint {e} is plain http: permit it explicitly with allow_http = true (--allow-http; loopback test servers only)"
                ));
            } else if !e.starts_with("http://") && !e.starts_with("https://") {
                p.push(format!(
                    "endpoint {e} must start with https:// (or http://)"
                ));
            }
        }
        for f in [
            &self.access_key_id_file,
            &self.secret_access_key_file,
            &self.session_token_file,
            &self.ca_file,
        ]
        .into_iter()
        .flatten()
        {
            match std::fs::read(f) {
                Ok(b) if b.iter().all(u8::is_ascii_whitespace) => {
                    p.push(format!("{} is empty", f.display()))
                }
                Ok(_) => {}
                Err(e) => p.push(format!("cannot read {}: {e}", f.display())),
            }
        }
        if self.request_timeout.is_zero() {
            p.push("request_timeout_ms must be positive".into());
        }
        p
    }
}

/// An S3 bucket name: 3 to 63 lowercase letters, digits, dots and hyphens.
fn check_bucket(b: &str) -> Result<(), String> {
    let ok = (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && b.as_bytes()[0].is_ascii_alphanumeric()
        && b.as_bytes()[b.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bucket {b:?} is not an S3 bucket name (3 to 63 lowercase letters, digits, dots and hyphens)"
        ))
    }
}

/// `s3://bucket/prefix`, as the command line takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    /// Without leading or trailing `/`; empty for the whole bucket.
    pub prefix: String,
}

impl S3Url {
    pub fn parse(s: &str) -> Result<S3Url, S3Error> {
        let bad = |reason: String| S3Error::Config {
            place: s.to_string(),
            reason,
        };
        let rest = s
            .strip_prefix("s3://")
            .ok_or_else(|| bad("an S3 location starts with s3://".into()))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket(bucket).map_err(bad)?;
        Ok(S3Url {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_bucket_names() {
        let u = S3Url::parse("s3://acme-trail/logs/").unwrap();
        assert_eq!(
            (u.bucket.as_str(), u.prefix.as_str()),
            ("acme-trail", "logs")
        );
        assert_eq!(S3Url::parse("s3://acme-trail").unwrap().prefix, "");
        assert!(S3Url::parse("s3://b3").is_err());
        assert!(S3Url::parse("/tmp/x").is_err());
        assert!(S3Url::parse("s3://Upper").is_err());
    }

    #[test]
    fn plain_http_needs_allow_http_and_key_files_must_be_readable() {
        let mut o = S3Options::new("trail");
        o.endpoint = Some("http://127.0.0.1:1".into());
        o.access_key_id_file = Some("/nonexistent/key".into());
        let p = o.problems();
        assert!(p.iter().any(|p| p.contains("allow_http")), "{p:?}");
        assert!(
            p.iter().any(|p| p.contains("cannot read /nonexistent/key")),
            "{p:?}"
        );
        o.allow_http = true;
        o.access_key_id_file = None;
        assert!(o.problems().is_empty());
    }
}
