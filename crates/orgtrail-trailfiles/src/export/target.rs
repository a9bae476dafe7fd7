//! Where an export's log files and digests go: a directory (renamed into place, see
//! [`super::atomic`]) or an S3 bucket (each object PUT whole).
//!
//! With S3 the lock, the state file and the scratch files stay local, in the state directory:
//! a log file is written and flushed there, PUT under its key, then removed. A digest is PUT
//! with its signature in `x-amz-meta-signature` (where CloudTrail keeps it, and where
//! `validate-logs s3://` reads it) and `x-amz-meta-signature-algorithm`, after a `.sig` object
//! holding the same bytes as the directory form's `.sig` file. A PUT is atomic in S3 (an
//! object appears whole or not at all), and nothing is committed before every object of a
//! run is PUT: a crash between the PUTs and the commit makes the next export PUT the same
//! names with the same bytes.

use std::path::Path;
use std::sync::Arc;

use orgtrail_s3::Blocking;

use super::{ExportError, Layout, atomic};
use crate::digest::ED25519_ALGORITHM;

/// The destination of an export's objects.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// Under the layout's root directory.
    Dir,
    /// The bucket of this client (the layout's keys carry the prefix).
    S3(Arc<Blocking>),
}

/// Places the finished, flushed temporary log file `tmp` at `key`. A directory that
/// received a file is added to `dirs`, to be flushed before the run commits.
pub(super) fn put_file(
    layout: &Layout,
    tmp: &Path,
    key: &str,
    dirs: &mut atomic::Dirs,
) -> Result<(), ExportError> {
    match &layout.target {
        Target::Dir => atomic::publish(&layout.root, tmp, &layout.path_of(key), dirs),
        Target::S3(client) => {
            let bytes = std::fs::read(tmp).map_err(atomic::io(tmp, "reading"))?;
            client.put(key, bytes, &[]).map_err(ExportError::S3)?;
            std::fs::remove_file(tmp).map_err(atomic::io(tmp, "removing"))
        }
    }
}

/// Places a digest (`gz`, its gzip bytes) at `key`, with its hex `signature`: a `KEY.sig`
/// holding `signature` and a newline, and, in S3, the signature in the digest's metadata.
pub(super) fn put_digest(
    layout: &Layout,
    tmp_dir: &Path,
    key: &str,
    gz: Vec<u8>,
    signature: &str,
    dirs: &mut atomic::Dirs,
) -> Result<(), ExportError> {
    let sig = format!("{signature}\n");
    match &layout.target {
        Target::Dir => {
            let path = layout.path_of(key);
            let mut sig_path = path.clone().into_os_string();
            sig_path.push(".sig");
            let (sig_tmp, gz_tmp) = (tmp_dir.join("digest.sig.tmp"), tmp_dir.join("digest.tmp"));
            atomic::write_tmp(&sig_tmp, sig.as_bytes())?;
            atomic::write_tmp(&gz_tmp, &gz)?;
            atomic::publish(&layout.root, &sig_tmp, Path::new(&sig_path), dirs)?;
            atomic::publish(&layout.root, &gz_tmp, &path, dirs)
        }
        Target::S3(client) => {
            client
                .put(&format!("{key}.sig"), sig.into_bytes(), &[])
                .map_err(ExportError::S3)?;
            client
                .put(
                    key,
                    gz,
                    &[
                        ("signature", signature),
                        ("signature-algorithm", ED25519_ALGORITHM),
                    ],
                )
                .map_err(ExportError::S3)?;
            Ok(())
        }
    }
}
