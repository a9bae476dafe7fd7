//! A local data key in a file of its own: 32 raw bytes, mode 0600.
//!
//! Used where data at rest is sealed on one host without a keyring (the agent's spool). The
//! file is created once, written to a temporary file that is fsynced and then linked into
//! place, so a crash never leaves a half-written key and an existing key is never replaced.
//! Loading refuses a file of the wrong size or one that group or others may read or write.

use std::path::Path;

use zeroize::Zeroizing;

use crate::{CryptoError, DataKey, KEY_LEN};

fn bad(path: &Path, reason: String) -> CryptoError {
    CryptoError::KeyFile {
        path: path.to_owned(),
        reason,
    }
}

/// Reads the data key in `path`. Refuses an unreadable file, one that is not exactly
/// [`KEY_LEN`] bytes, and one whose mode lets group or others in.
pub fn load_key_file(path: &Path) -> Result<DataKey, CryptoError> {
    use std::io::Read;
    #[cfg(unix)]
    use std::os::unix::fs::PermissionsExt;
    let mut f = std::fs::File::open(path).map_err(|e| bad(path, format!("cannot read it: {e}")))?;
    let meta = f
        .metadata()
        .map_err(|e| bad(path, format!("cannot stat it: {e}")))?;
    if !meta.is_file() {
        return Err(bad(path, "not a regular file".into()));
    }
    #[cfg(unix)]
    {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(bad(
                path,
                format!("mode is {mode:04o}; it must be 0600 (readable by its owner only)"),
            ));
        }
    }
    if meta.len() != KEY_LEN as u64 {
        return Err(bad(
            path,
            format!("{} bytes, expected {KEY_LEN}", meta.len()),
        ));
    }
    let mut raw = Zeroizing::new([0u8; KEY_LEN]);
    f.read_exact(&mut raw[..])
        .map_err(|e| bad(path, format!("cannot read it: {e}")))?;
    DataKey::from_bytes(&raw)
}

/// Creates a new random data key in `path` (mode 0600), whole or not at all, never overwriting
/// one (see `keyring::create_secret_file`).
pub fn create_key_file(path: &Path) -> Result<DataKey, CryptoError> {
    let mut raw = Zeroizing::new([0u8; KEY_LEN]);
    crate::random_bytes(&mut raw[..])?;
    crate::keyring::create_secret_file(path, &raw[..])?;
    DataKey::from_bytes(&raw)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_created_key_loads_and_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("spool.key");
        let k = create_key_file(&p).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (n, c) = k.seal(b"a", b"b").unwrap();
        let again = load_key_file(&p).unwrap();
        assert_eq!(again.open(&n, b"a", &c).unwrap(), b"b");
        assert!(matches!(
            create_key_file(&p),
            Err(CryptoError::Exists { .. })
        ));
        assert_eq!(load_key_file(&p).unwrap().open(&n, b"a", &c).unwrap(), b"b");
        assert!(!dir.path().join("spool.key.tmp").exists());
    }

    #[test]
    fn a_key_of_the_wrong_size_or_mode_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        create_key_file(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_key_file(&p).unwrap_err().to_string();
        assert!(e.contains("mode is 0644"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&p, [0u8; 31]).unwrap();
        let e = load_key_file(&p).unwrap_err().to_string();
        assert!(e.contains("31 bytes, expected 32"), "{e}");
        let e = load_key_file(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read it"), "{e}");
    }
}
