//! Master keys and the key provider.
//!
//! KMS-style envelope encryption: records are sealed under *data keys*; a data key is stored only
//! *wrapped* (AES-256-GCM) under a versioned *master key*; master keys live in a keyring file
//! outside the data directory. Rotating adds a master key version that new wraps use; old
//! versions stay until every wrapped key has been rewrapped, then they can be retired.
//!
//! Keyring file (`keyring.json`, mode 0600):
//! ```json
//! {"format":"orgtrail-keyring-v1","current":2,
//!  "master_keys":[{"version":1,"created":"...","key":"<base64 32 bytes>"}, ...]}
//! ```
//! Wrapped key (64 bytes): `master version (u32 BE) || nonce (12) || AES-256-GCM(key) || tag`,
//! with AAD `"orgtrail/wrap/v1" || 0x00 || context`; the context binds a wrapped key to its
//! purpose (e.g. a segment id), so wrapped keys cannot be swapped around.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::CryptoError;
use crate::envelope::{DataKey, KEY_LEN, NONCE_LEN};

const WRAP_AAD: &[u8] = b"orgtrail/wrap/v1";
/// Length of a [`WrappedKey`] in bytes.
pub const WRAPPED_LEN: usize = 4 + NONCE_LEN + KEY_LEN + crate::TAG_LEN;

/// A secret wrapped under a master key version.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub master_version: u32,
    nonce: [u8; NONCE_LEN],
    ciphertext: Vec<u8>,
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedKey")
            .field("master_version", &self.master_version)
            .finish_non_exhaustive()
    }
}

impl WrappedKey {
    /// The 64-byte encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(WRAPPED_LEN);
        out.extend_from_slice(&self.master_version.to_be_bytes());
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Parses the 64-byte encoding.
    pub fn from_bytes(b: &[u8]) -> Result<Self, CryptoError> {
        if b.len() != WRAPPED_LEN {
            return Err(CryptoError::MalformedWrappedKey { len: b.len() });
        }
        let mut v = [0u8; 4];
        v.copy_from_slice(&b[..4]);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&b[4..4 + NONCE_LEN]);
        Ok(WrappedKey {
            master_version: u32::from_be_bytes(v),
            nonce,
            ciphertext: b[4 + NONCE_LEN..].to_vec(),
        })
    }
}

/// Where data keys come from. The built-in provider is a local keyring file
/// ([`LocalKeyProvider`]); a KMS or Vault transit can implement this trait.
pub trait KeyProvider: Send + Sync + fmt::Debug {
    /// Wraps a 32-byte secret under the current master key, bound to `context`.
    fn wrap(&self, secret: &[u8; KEY_LEN], context: &[u8]) -> Result<WrappedKey, CryptoError>;

    /// Unwraps a secret wrapped by [`KeyProvider::wrap`] with the same `context`.
    fn unwrap(
        &self,
        wrapped: &WrappedKey,
        context: &[u8],
    ) -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError>;

    /// The master key version new wraps use.
    fn current_version(&self) -> u32;

    /// A fresh data key and its wrapped form.
    fn generate_data_key(&self, context: &[u8]) -> Result<(DataKey, WrappedKey), CryptoError> {
        let key = DataKey::generate()?;
        let wrapped = self.wrap(key.expose(), context)?;
        Ok((key, wrapped))
    }

    /// The data key inside `wrapped`.
    fn decrypt_data_key(
        &self,
        wrapped: &WrappedKey,
        context: &[u8],
    ) -> Result<DataKey, CryptoError> {
        let raw = self.unwrap(wrapped, context)?;
        DataKey::from_bytes(&raw)
    }

    /// `wrapped` re-wrapped under the current master key; the secret does not change.
    fn rewrap(&self, wrapped: &WrappedKey, context: &[u8]) -> Result<WrappedKey, CryptoError> {
        let raw = self.unwrap(wrapped, context)?;
        self.wrap(&raw, context)
    }
}

struct MasterKey {
    created: String,
    key: DataKey,
}

/// Versioned master keys.
pub struct Keyring {
    current: u32,
    keys: BTreeMap<u32, MasterKey>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current)
            .field("versions", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyringFile {
    format: String,
    current: u32,
    master_keys: Vec<MasterKeyFile>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MasterKeyFile {
    version: u32,
    created: String,
    key: String,
}

const FORMAT: &str = "orgtrail-keyring-v1";

impl Keyring {
    /// A keyring with one fresh master key, version 1.
    pub fn generate(created: &str) -> Result<Self, CryptoError> {
        let mut keys = BTreeMap::new();
        keys.insert(
            1,
            MasterKey {
                created: created.to_owned(),
                key: DataKey::generate()?,
            },
        );
        Ok(Keyring { current: 1, keys })
    }

    /// Adds a new master key version and makes it current. Returns the new version.
    pub fn rotate(&mut self, created: &str) -> Result<u32, CryptoError> {
        let version = self.keys.keys().next_back().copied().unwrap_or(0) + 1;
        self.keys.insert(
            version,
            MasterKey {
                created: created.to_owned(),
                key: DataKey::generate()?,
            },
        );
        self.current = version;
        Ok(version)
    }

    /// Removes an old master key version. Only safe once nothing is wrapped under it any more
    /// (`orgtrail keys rewrap`); the current version cannot be retired.
    pub fn retire(&mut self, version: u32) -> Result<(), CryptoError> {
        if version == self.current {
            return Err(CryptoError::CannotRetire {
                version,
                reason: "it is the current version".into(),
            });
        }
        if self.keys.remove(&version).is_none() {
            return Err(CryptoError::CannotRetire {
                version,
                reason: "no such version in the keyring".into(),
            });
        }
        Ok(())
    }

    /// The current version.
    pub fn current(&self) -> u32 {
        self.current
    }

    /// All versions, oldest first.
    pub fn versions(&self) -> Vec<u32> {
        self.keys.keys().copied().collect()
    }

    /// When a version was created (as recorded in the file).
    pub fn created(&self, version: u32) -> Option<&str> {
        self.keys.get(&version).map(|k| k.created.as_str())
    }

    fn available(&self) -> String {
        let v: Vec<String> = self.keys.keys().map(|v| format!("v{v}")).collect();
        v.join(", ")
    }

    /// Reads a keyring file.
    pub fn load(path: &Path) -> Result<Self, CryptoError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
            CryptoError::ReadKeyring {
                path: path.to_owned(),
                source,
            }
        })?);
        let bad = |reason: String| CryptoError::MalformedKeyring {
            path: path.to_owned(),
            reason,
        };
        let file: KeyringFile =
            serde_json::from_str(&text).map_err(|e| bad(format!("not a keyring: {e}")))?;
        if file.format != FORMAT {
            return Err(bad(format!(
                "format is {:?}, expected {FORMAT:?}",
                file.format
            )));
        }
        let mut keys = BTreeMap::new();
        for k in file.master_keys {
            let raw = Zeroizing::new(
                B64.decode(k.key.as_bytes())
                    .map_err(|_| bad(format!("master key v{} is not base64", k.version)))?,
            );
            let arr: [u8; KEY_LEN] = raw[..].try_into().map_err(|_| {
                bad(format!(
                    "master key v{} is {} bytes, expected {KEY_LEN}",
                    k.version,
                    raw.len()
                ))
            })?;
            let arr = Zeroizing::new(arr);
            let key = DataKey::from_bytes(&arr)?;
            if keys
                .insert(
                    k.version,
                    MasterKey {
                        created: k.created,
                        key,
                    },
                )
                .is_some()
            {
                return Err(bad(format!("master key v{} appears twice", k.version)));
            }
        }
        if !keys.contains_key(&file.current) {
            return Err(bad(format!("current version v{} has no key", file.current)));
        }
        Ok(Keyring {
            current: file.current,
            keys,
        })
    }

    /// The keyring file's text. A serialisation failure is an error, never an empty file.
    fn to_file(&self, path: &Path) -> Result<Zeroizing<String>, CryptoError> {
        let file = KeyringFile {
            format: FORMAT.to_owned(),
            current: self.current,
            master_keys: self
                .keys
                .iter()
                .map(|(v, k)| MasterKeyFile {
                    version: *v,
                    created: k.created.clone(),
                    key: B64.encode(k.key.expose()),
                })
                .collect(),
        };
        let text = serde_json::to_string_pretty(&file).map_err(|e| CryptoError::Write {
            path: path.to_owned(),
            source: std::io::Error::other(format!("cannot serialise the keyring: {e}")),
        })?;
        Ok(Zeroizing::new(text + "\n"))
    }

    /// Writes a new keyring file (mode 0600), refusing to overwrite an existing one. The file
    /// appears whole or not at all: written to a temporary file, fsynced, linked into place
    /// (which fails if the name exists), and the directory fsynced.
    pub fn save_new(&self, path: &Path) -> Result<(), CryptoError> {
        let text = self.to_file(path)?;
        create_secret_file(path, text.as_bytes())
    }

    /// Atomically replaces the keyring file: the new text is written to a temporary file and
    /// fsynced, renamed over the old one, and the directory fsynced. A failure at any step
    /// leaves the old file as it was (and no temporary file behind).
    pub fn save(&self, path: &Path) -> Result<(), CryptoError> {
        let text = self.to_file(path)?;
        let tmp = temp_path(path);
        let _ = std::fs::remove_file(&tmp);
        if let Err(e) = write_secret_file(&tmp, text.as_bytes(), true) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        if let Err(source) = std::fs::rename(&tmp, path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(CryptoError::Write {
                path: path.to_owned(),
                source,
            });
        }
        sync_parent(path)
    }

    fn key(&self, version: u32) -> Result<&DataKey, CryptoError> {
        self.keys
            .get(&version)
            .map(|k| &k.key)
            .ok_or_else(|| CryptoError::MissingMasterKey {
                version,
                available: self.available(),
            })
    }
}

fn wrap_aad(context: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(WRAP_AAD.len() + 1 + context.len());
    aad.extend_from_slice(WRAP_AAD);
    aad.push(0);
    aad.extend_from_slice(context);
    aad
}

/// Writes `bytes` to a new file readable only by its owner, and fsyncs it.
pub fn write_secret_file(path: &Path, bytes: &[u8], exclusive: bool) -> Result<(), CryptoError> {
    use std::fs::OpenOptions;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| CryptoError::Write {
        path: path.to_owned(),
        source,
    };
    let mut opts = OpenOptions::new();
    opts.write(true);
    if exclusive {
        opts.create_new(true);
    } else {
        opts.create(true).truncate(true);
    }
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            CryptoError::Exists {
                path: path.to_owned(),
            }
        } else {
            err(source)
        }
    })?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    Ok(())
}

/// Creates a new secret file (mode 0600) whole or not at all, never overwriting one: the bytes
/// go to a temporary file that is fsynced, then linked to `path` (which fails if the name
/// exists), and the directory is fsynced. A temporary file left by a crash during an earlier
/// creation holds nothing anyone used, and is replaced.
pub(crate) fn create_secret_file(path: &Path, bytes: &[u8]) -> Result<(), CryptoError> {
    let tmp = temp_path(path);
    let _ = std::fs::remove_file(&tmp);
    write_secret_file(&tmp, bytes, true)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    linked.map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            CryptoError::Exists {
                path: path.to_owned(),
            }
        } else {
            CryptoError::Write {
                path: path.to_owned(),
                source,
            }
        }
    })?;
    sync_parent(path)
}

/// A temporary name beside `path`, unique to this process.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp.{}", std::process::id()));
    path.with_file_name(name)
}

/// Fsyncs the directory holding `path`, so that a rename or link into it is durable.
fn sync_parent(path: &Path) -> Result<(), CryptoError> {
    let dir: PathBuf = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let err = |source| CryptoError::Write {
        path: dir.clone(),
        source,
    };
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(err)
}

/// The built-in [`KeyProvider`]: master keys from a local [`Keyring`].
#[derive(Debug)]
pub struct LocalKeyProvider {
    keyring: Keyring,
}

impl LocalKeyProvider {
    pub fn new(keyring: Keyring) -> Self {
        LocalKeyProvider { keyring }
    }

    /// Loads `DIR/keyring.json`.
    pub fn load(keys_dir: &Path) -> Result<Self, CryptoError> {
        Ok(Self::new(Keyring::load(&keys_dir.join("keyring.json"))?))
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }
}

impl KeyProvider for LocalKeyProvider {
    fn wrap(&self, secret: &[u8; KEY_LEN], context: &[u8]) -> Result<WrappedKey, CryptoError> {
        let version = self.keyring.current;
        let key = self.keyring.key(version)?;
        let (nonce, ciphertext) = key.seal(&wrap_aad(context), secret)?;
        Ok(WrappedKey {
            master_version: version,
            nonce,
            ciphertext,
        })
    }

    fn unwrap(
        &self,
        wrapped: &WrappedKey,
        context: &[u8],
    ) -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
        let key = self.keyring.key(wrapped.master_version)?;
        let plain = Zeroizing::new(
            key.open(&wrapped.nonce, &wrap_aad(context), &wrapped.ciphertext)
                .map_err(|_| CryptoError::UnwrapFailed {
                    version: wrapped.master_version,
                })?,
        );
        let arr: [u8; KEY_LEN] = plain[..]
            .try_into()
            .map_err(|_| CryptoError::UnwrapFailed {
                version: wrapped.master_version,
            })?;
        Ok(Zeroizing::new(arr))
    }

    fn current_version(&self) -> u32 {
        self.keyring.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_unwrap_rotate_rewrap_retire() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring.json");
        let kr = Keyring::generate("2026-11-24T00:00:00Z").unwrap();
        kr.save_new(&path).unwrap();
        assert!(matches!(
            kr.save_new(&path),
            Err(CryptoError::Exists { .. })
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let p = LocalKeyProvider::load(dir.path()).unwrap();
        let (dk, wrapped) = p.generate_data_key(b"segment-1").unwrap();
        assert_eq!(wrapped.master_version, 1);
        let (n, c) = dk.seal(b"aad", b"event").unwrap();
        let wrapped = WrappedKey::from_bytes(&wrapped.to_bytes()).unwrap();
        let dk2 = p.decrypt_data_key(&wrapped, b"segment-1").unwrap();
        assert_eq!(dk2.open(&n, b"aad", &c).unwrap(), b"event");
        // Bound to its context.
        assert!(matches!(
            p.decrypt_data_key(&wrapped, b"segment-2"),
            Err(CryptoError::UnwrapFailed { version: 1 })
        ));

        // Rotate: new wraps use v2, v1 still opens.
        let mut kr = Keyring::load(&path).unwrap();
        assert_eq!(kr.rotate("2026-11-25T00:00:00Z").unwrap(), 2);
        kr.save(&path).unwrap();
        let p2 = LocalKeyProvider::load(dir.path()).unwrap();
        assert_eq!(p2.current_version(), 2);
        let dk3 = p2.decrypt_data_key(&wrapped, b"segment-1").unwrap();
        assert_eq!(dk3.open(&n, b"aad", &c).unwrap(), b"event");
        let rewrapped = p2.rewrap(&wrapped, b"segment-1").unwrap();
        assert_eq!(rewrapped.master_version, 2);

        // Retire v1: the rewrapped key still opens, the old one names what is missing.
        let mut kr = Keyring::load(&path).unwrap();
        assert!(kr.retire(2).is_err());
        kr.retire(1).unwrap();
        let p3 = LocalKeyProvider::new(kr);
        let dk4 = p3.decrypt_data_key(&rewrapped, b"segment-1").unwrap();
        assert_eq!(dk4.open(&n, b"aad", &c).unwrap(), b"event");
        let e = p3.decrypt_data_key(&wrapped, b"segment-1").unwrap_err();
        assert_eq!(
            e.to_string(),
            "master key v1 is not in the keyring (it holds v2); use the keyring that sealed this data"
        );
    }

    #[test]
    fn malformed_keyrings_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring.json");
        std::fs::write(
            &path,
            "{\"format\":\"orgtrail-keyring-v1\",\"current\":3,\"master_keys\":[]}",
        )
        .unwrap();
        let e = Keyring::load(&path).unwrap_err();
        assert!(
            e.to_string().contains("current version v3 has no key"),
            "{e}"
        );
        std::fs::write(&path, "not json").unwrap();
        assert!(
            Keyring::load(&path)
                .unwrap_err()
                .to_string()
                .contains("not a keyring")
        );
        let e = Keyring::load(&dir.path().join("nope.json")).unwrap_err();
        assert!(e.to_string().starts_with("cannot read keyring"), "{e}");
    }

    #[test]
    fn saving_replaces_the_file_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring.json");
        let mut ring = Keyring::generate("2026-01-01T00:00:00Z").unwrap();
        ring.save_new(&path).unwrap();
        // save_new never overwrites, and leaves no temporary file behind.
        assert!(matches!(
            ring.save_new(&path),
            Err(CryptoError::Exists { .. })
        ));
        let names = |d: &Path| -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(dir.path()), vec!["keyring.json"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let before = std::fs::read(&path).unwrap();

        // A write that fails (here: the temporary name is taken by a directory) leaves the
        // old file exactly as it was, loadable.
        let v2 = ring.rotate("2026-02-01T00:00:00Z").unwrap();
        std::fs::create_dir(temp_path(&path)).unwrap();
        assert!(matches!(
            ring.save(&path),
            Err(CryptoError::Write { .. } | CryptoError::Exists { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(Keyring::load(&path).unwrap().current(), 1);
        std::fs::remove_dir(temp_path(&path)).unwrap();

        // A save that succeeds replaces it whole: never an empty or partial file.
        ring.save(&path).unwrap();
        let after = Keyring::load(&path).unwrap();
        assert_eq!(after.current(), v2);
        assert_eq!(after.versions(), vec![1, v2]);
        assert_eq!(names(dir.path()), vec!["keyring.json"]);
    }

    #[test]
    fn debug_never_shows_key_material() {
        let kr = Keyring::generate("t").unwrap();
        let text = format!("{kr:?}");
        assert_eq!(text, "Keyring { current: 1, versions: [1] }");
    }
}
