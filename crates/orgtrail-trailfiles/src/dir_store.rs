//! A local copy of a trail's bucket (`aws s3 sync s3://bucket[/prefix] DIR`) as an
//! [`ObjectStore`].
//!
//! A file's key is the S3 key prefix the directory stands for (empty when DIR is the bucket's
//! root) followed by its path relative to DIR, with `/` separators. The signature S3 keeps in
//! a digest's metadata is read from a sidecar `<digest file>.sig` holding the hex signature,
//! as `aws s3api head-object` prints it in `Metadata.signature`. Symbolic links are not
//! followed when listing, and a key never resolves outside DIR.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::{ObjectStore, ReadError, TrailFilesError};

/// Longest sidecar signature read (a 4096-bit RSA signature is 1,024 hex characters).
const MAX_SIG_BYTES: u64 = 16 * 1024;

/// A directory holding a trail's files in CloudTrail's layout.
#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
    prefix: String,
    bucket: Option<String>,
}

impl DirStore {
    /// `root` holds the objects of `bucket` (if known) under the key prefix `prefix` ("" for
    /// the bucket's root; a trailing `/` is ignored).
    pub fn new(
        root: impl Into<PathBuf>,
        bucket: Option<String>,
        prefix: &str,
    ) -> Result<Self, TrailFilesError> {
        let root = root.into();
        if !root.is_dir() {
            return Err(TrailFilesError::NotADirectory { path: root });
        }
        Ok(DirStore {
            root,
            prefix: prefix.trim_end_matches('/').to_owned(),
            bucket,
        })
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, ReadError> {
        let rel = if self.prefix.is_empty() {
            key
        } else {
            key.strip_prefix(&self.prefix)
                .and_then(|r| r.strip_prefix('/'))
                .ok_or(ReadError::BadKey)?
        };
        let rel = Path::new(rel);
        if rel.as_os_str().is_empty()
            || !rel.components().all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(ReadError::BadKey);
        }
        Ok(self.root.join(rel))
    }

    fn key_of(&self, rel: &str) -> String {
        if self.prefix.is_empty() {
            rel.to_owned()
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }
}

fn io_err(e: std::io::Error) -> ReadError {
    if e.kind() == std::io::ErrorKind::NotFound {
        ReadError::NotFound
    } else {
        ReadError::Io(e)
    }
}

impl ObjectStore for DirStore {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn bucket(&self) -> Option<&str> {
        self.bucket.as_deref()
    }

    fn list(&self) -> Result<Vec<String>, TrailFilesError> {
        let mut keys = Vec::new();
        let mut stack = vec![(self.root.clone(), String::new())];
        while let Some((dir, rel)) = stack.pop() {
            let entries = std::fs::read_dir(&dir).map_err(|source| TrailFilesError::List {
                path: dir.clone(),
                source,
            })?;
            for entry in entries {
                let entry = entry.map_err(|source| TrailFilesError::List {
                    path: dir.clone(),
                    source,
                })?;
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue; // not UTF-8: cannot be an S3 key CloudTrail wrote
                };
                let child = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                let ft = entry.file_type().map_err(|source| TrailFilesError::List {
                    path: entry.path(),
                    source,
                })?;
                if ft.is_dir() {
                    stack.push((entry.path(), child));
                } else if ft.is_file() {
                    keys.push(self.key_of(&child));
                }
            }
        }
        Ok(keys)
    }

    fn open(&self, key: &str) -> Result<Box<dyn Read + '_>, ReadError> {
        let path = self.path_of(key)?;
        let f = std::fs::File::open(&path).map_err(io_err)?;
        if !f.metadata().map_err(ReadError::Io)?.is_file() {
            return Err(ReadError::NotFound);
        }
        Ok(Box::new(f))
    }

    fn signature(&self, key: &str) -> Result<Option<String>, ReadError> {
        let mut path = self.path_of(key)?.into_os_string();
        path.push(".sig");
        let f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ReadError::Io(e)),
        };
        let mut text = String::new();
        f.take(MAX_SIG_BYTES)
            .read_to_string(&mut text)
            .map_err(ReadError::Io)?;
        // `aws s3api head-object --query Metadata.signature` prints it quoted.
        Ok(Some(text.trim().trim_matches('"').to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_prefix_and_never_leave_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("AWSLogs/a")).unwrap();
        std::fs::write(dir.path().join("AWSLogs/a/f.json.gz"), b"x").unwrap();
        std::fs::write(dir.path().join("AWSLogs/a/f.json.gz.sig"), b"\"00ff\"\n").unwrap();
        let store = DirStore::new(dir.path(), None, "pre/").unwrap();
        let mut keys = store.list().unwrap();
        keys.sort();
        assert_eq!(
            keys,
            ["pre/AWSLogs/a/f.json.gz", "pre/AWSLogs/a/f.json.gz.sig"]
        );
        assert!(store.open("pre/AWSLogs/a/f.json.gz").is_ok());
        assert_eq!(
            store
                .signature("pre/AWSLogs/a/f.json.gz")
                .unwrap()
                .as_deref(),
            Some("00ff")
        );
        assert!(matches!(
            store.open("AWSLogs/a/f.json.gz"),
            Err(ReadError::BadKey)
        ));
        assert!(matches!(store.open("pre/../x"), Err(ReadError::BadKey)));
        assert!(matches!(
            store.open("pre//etc/passwd"),
            Err(ReadError::BadKey)
        ));
        assert!(matches!(
            store.open("pre/AWSLogs/nope"),
            Err(ReadError::NotFound)
        ));
        assert!(matches!(
            store.open("pre/AWSLogs/a"),
            Err(ReadError::NotFound)
        ));
    }
}
