//! The flags that reach an S3 bucket (`s3://BUCKET/PREFIX` locations), shared by the commands
//! that take one.

use std::path::PathBuf;

use orgtrail_s3::S3Options;

/// How to reach an `s3://` location. Credentials come from the `*_file` flags, else from
/// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, web identity or the
/// instance metadata service; the endpoint from --endpoint, else `AWS_ENDPOINT`, else AWS.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct S3Args {
    /// An S3-compatible endpoint for s3:// locations (e.g. https://s3.example.internal:9000).
    #[arg(long, value_name = "URL")]
    pub(crate) endpoint: Option<String>,

    /// The bucket's region (the signing region).
    #[arg(long, value_name = "REGION", default_value = "us-east-1")]
    pub(crate) region: String,

    /// Permit a plain http:// endpoint (a loopback test server).
    #[arg(long)]
    pub(crate) allow_http: bool,

    /// A PEM CA trusted beside the system's, for the endpoint's certificate.
    #[arg(long, value_name = "FILE")]
    pub(crate) ca_file: Option<PathBuf>,

    /// A file holding the access key id (overrides AWS_ACCESS_KEY_ID).
    #[arg(long, value_name = "FILE")]
    pub(crate) access_key_id_file: Option<PathBuf>,

    /// A file holding the secret access key (overrides AWS_SECRET_ACCESS_KEY).
    #[arg(long, value_name = "FILE")]
    pub(crate) secret_access_key_file: Option<PathBuf>,

    /// A file holding a session token (temporary credentials).
    #[arg(long, value_name = "FILE")]
    pub(crate) session_token_file: Option<PathBuf>,
}

impl S3Args {
    /// The client options for `bucket`, checked.
    pub(crate) fn options(&self, bucket: &str) -> anyhow::Result<S3Options> {
        let mut o = S3Options::new(bucket);
        o.endpoint = self.endpoint.clone();
        o.region = self.region.clone();
        o.allow_http = self.allow_http;
        o.ca_file = self.ca_file.clone();
        o.access_key_id_file = self.access_key_id_file.clone();
        o.secret_access_key_file = self.secret_access_key_file.clone();
        o.session_token_file = self.session_token_file.clone();
        let p = o.problems();
        if !p.is_empty() {
            anyhow::bail!("{}", p.join("; "));
        }
        Ok(o)
    }
}
