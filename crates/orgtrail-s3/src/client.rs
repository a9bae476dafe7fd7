//! Building the object_store client from [`S3Options`].

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::{BackoffConfig, Certificate, ClientOptions, RetryConfig};

use crate::{S3Error, S3Options};

/// A file's text, trimmed (a secret file usually ends with a newline).
fn read_secret(path: &std::path::Path, place: &str) -> Result<String, S3Error> {
    let text = std::fs::read_to_string(path).map_err(|e| S3Error::Config {
        place: place.to_string(),
        reason: format!("cannot read {}: {e}", path.display()),
    })?;
    let t = text.trim();
    if t.is_empty() {
        return Err(S3Error::Config {
            place: place.to_string(),
            reason: format!("{} is empty", path.display()),
        });
    }
    Ok(t.to_string())
}

/// A client for `o.bucket`: the explicit options over `AWS_*` from the environment (and web
/// identity, ECS and IMDS credentials when no key is given). Reads the `*_file`s now, so a
/// reconnect picks up rotated keys. Makes no request.
pub fn connect(o: &S3Options) -> Result<AmazonS3, S3Error> {
    let place = o.place();
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(&o.bucket)
        .with_region(&o.region)
        .with_allow_http(o.allow_http);
    if let Some(e) = &o.endpoint {
        b = b
            .with_endpoint(e)
            .with_virtual_hosted_style_request(!o.path_style.unwrap_or(true));
    } else if let Some(ps) = o.path_style {
        b = b.with_virtual_hosted_style_request(!ps);
    }
    if let Some(k) = &o.access_key_id_file {
        b = b.with_access_key_id(read_secret(k, &place)?);
    }
    if let Some(s) = &o.secret_access_key_file {
        b = b.with_secret_access_key(read_secret(s, &place)?);
    }
    if let Some(t) = &o.session_token_file {
        b = b.with_token(read_secret(t, &place)?);
    }
    let mut client = ClientOptions::new()
        .with_allow_http(o.allow_http)
        .with_timeout(o.request_timeout)
        .with_connect_timeout(o.connect_timeout);
    if let Some(ca) = &o.ca_file {
        let pem = std::fs::read(ca).map_err(|e| S3Error::Config {
            place: place.clone(),
            reason: format!("cannot read {}: {e}", ca.display()),
        })?;
        let cert = Certificate::from_pem(&pem).map_err(|e| S3Error::Config {
            place: place.clone(),
            reason: format!("{}: {e}", ca.display()),
        })?;
        client = client.with_root_certificate(cert);
    }
    b.with_client_options(client)
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: o.max_retries,
            retry_timeout: o.retry_timeout,
        })
        .build()
        .map_err(|e| S3Error::Config {
            place,
            reason: e.to_string(),
        })
}
