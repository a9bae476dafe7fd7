//! The revocation list: certificates the collector refuses although the CA signed them.
//!
//! # File format
//! UTF-8 text, one entry per line; `#` starts a comment; blank lines are ignored; a line may
//! end in `\r\n`. An entry is one of:
//! * a certificate serial number in hex, as `orgtrail certs issue` prints it
//!   (`3f1c...`), 1 to 40 hex digits, colons allowed (`3F:1C:...`, as OpenSSL prints it),
//!   leading zeros ignored;
//! * `sha256:` and the certificate's SHA-256 fingerprint, 64 hex digits, colons allowed (a bare
//!   64-digit hex string is taken as a fingerprint too: no serial is that long).
//!
//! Case does not matter. Any other line refuses the whole file, naming the line.
//!
//! # Failing closed
//! At start a missing, unreadable or invalid file refuses to start. While running, the file is
//! watched (size, modification time, inode; checked every second on a thread of its own) and
//! re-read when it changes; a file that became unreadable or invalid keeps the last good list
//! in force, logs an error and counts a reload failure. Requests read an already parsed list
//! (an `Arc` behind a read lock): no file access per request. Each successful reload is
//! announced on a watch channel, so open ingest streams check their certificate again at once.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime};

use orgtrail_crypto::certs::PeerIdentity;
use tokio::sync::watch;

/// How often the file is checked for changes.
pub const POLL: Duration = Duration::from_secs(1);

/// Why a revocation list cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    // The I/O error is in the message, not a `source`: printed once.
    #[error("revocation list {}: cannot read it: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("revocation list {} line {line}: {problem}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        problem: String,
    },
}

/// A parsed list: serials (hex, no leading zeros) and SHA-256 fingerprints (hex).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RevocationList {
    serials: HashSet<String>,
    fingerprints: HashSet<String>,
}

/// A line that is not an entry: its number (from 1) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub problem: String,
}

fn serial_key(hex: &str) -> String {
    let t = hex.trim_start_matches('0');
    if t.is_empty() { "0".into() } else { t.into() }
}

/// A line's text for a message: short, and printable.
fn shown(line: &str) -> String {
    let mut s: String = line.chars().take(40).collect();
    if line.chars().count() > 40 {
        s.push('…');
    }
    format!("{s:?}")
}

impl RevocationList {
    /// Parses the file format described in the module documentation.
    pub fn parse(bytes: &[u8]) -> Result<Self, LineError> {
        let mut list = RevocationList::default();
        for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
            let line = i + 1;
            let text = std::str::from_utf8(raw).map_err(|e| LineError {
                line,
                problem: format!("not UTF-8 (byte {} of the line)", e.valid_up_to() + 1),
            })?;
            let entry = text.split('#').next().unwrap_or_default().trim();
            if entry.is_empty() {
                continue;
            }
            let lower = entry.to_ascii_lowercase();
            let (fingerprint, digits) = match lower.strip_prefix("sha256:") {
                Some(rest) => (true, rest.replace(':', "")),
                None => (false, lower.replace(':', "")),
            };
            if fingerprint && !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(LineError {
                    line,
                    problem: format!(
                        "{} is not a SHA-256 fingerprint: sha256: and 64 hex digits",
                        shown(entry)
                    ),
                });
            }
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(LineError {
                    line,
                    problem: format!(
                        "{} is not a serial number (hex) or a sha256:FINGERPRINT",
                        shown(entry)
                    ),
                });
            }
            if fingerprint || digits.len() == 64 {
                if digits.len() != 64 {
                    return Err(LineError {
                        line,
                        problem: format!(
                            "{} is not a SHA-256 fingerprint: {} hex digits, not 64",
                            shown(entry),
                            digits.len()
                        ),
                    });
                }
                list.fingerprints.insert(digits);
            } else if digits.len() > 40 {
                return Err(LineError {
                    line,
                    problem: format!(
                        "{} is not a serial number: {} hex digits, more than 40 (20 bytes); a fingerprint is written sha256:HEX",
                        shown(entry),
                        digits.len()
                    ),
                });
            } else {
                list.serials.insert(serial_key(&digits));
            }
        }
        Ok(list)
    }

    /// Reads and parses a revocation file.
    pub fn load(path: &Path) -> Result<Self, RevocationError> {
        let bytes = std::fs::read(path).map_err(|error| RevocationError::Read {
            path: path.to_owned(),
            error,
        })?;
        Self::parse(&bytes).map_err(|e| RevocationError::Line {
            path: path.to_owned(),
            line: e.line,
            problem: e.problem,
        })
    }

    /// True when the certificate's serial or fingerprint is listed.
    pub fn contains(&self, id: &PeerIdentity) -> bool {
        self.serials
            .contains(&serial_key(&id.serial.to_ascii_lowercase()))
            || self
                .fingerprints
                .contains(&id.fingerprint.to_ascii_lowercase())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.serials.len() + self.fingerprints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What identifies a version of the file without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
    changed_ns: i64,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let m = std::fs::metadata(path)?;
    #[cfg(unix)]
    let (inode, changed_ns) = {
        use std::os::unix::fs::MetadataExt;
        (
            m.ino(),
            m.ctime().saturating_mul(1_000_000_000) + m.ctime_nsec(),
        )
    };
    #[cfg(not(unix))]
    let (inode, changed_ns) = (0, 0);
    Ok(Stamp {
        len: m.len(),
        modified: m.modified().ok(),
        inode,
        changed_ns,
    })
}

/// The revocation list in force, reloaded in the background when its file changes.
#[derive(Debug)]
pub struct Revocation {
    path: Option<PathBuf>,
    current: RwLock<Arc<RevocationList>>,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
    /// Bumped after each successful reload.
    generation: watch::Sender<u64>,
}

impl Revocation {
    /// No revocation list configured: nothing is revoked.
    pub fn none() -> Arc<Self> {
        Arc::new(Revocation {
            path: None,
            current: RwLock::new(Arc::default()),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
            generation: watch::Sender::new(0),
        })
    }

    /// Loads the configured list (refusing a missing, unreadable or invalid file) and, when
    /// there is one, starts watching it on a thread that ends when the `Revocation` is dropped.
    pub fn start(path: Option<&Path>) -> Result<Arc<Self>, RevocationError> {
        let Some(path) = path else {
            return Ok(Self::none());
        };
        let first = stamp(path).map_err(|error| RevocationError::Read {
            path: path.to_owned(),
            error,
        })?;
        let list = RevocationList::load(path)?;
        tracing::info!(path = %path.display(), entries = list.len(), "revocation list loaded");
        let r = Arc::new(Revocation {
            path: Some(path.to_owned()),
            current: RwLock::new(Arc::new(list)),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
            generation: watch::Sender::new(0),
        });
        let weak = Arc::downgrade(&r);
        let path = path.to_owned();
        std::thread::Builder::new()
            .name("orgtrail-revocation".into())
            .spawn(move || watch_file(&weak, &path, first))
            .map_err(|error| RevocationError::Read {
                path: r.path.clone().unwrap_or_default(),
                error,
            })?;
        Ok(r)
    }

    /// True when the certificate is revoked. A poisoned lock (a panic while swapping lists)
    /// counts as revoked: fail closed.
    pub fn is_revoked(&self, id: &PeerIdentity) -> bool {
        match self.current.read() {
            Ok(list) => list.contains(id),
            Err(_) => true,
        }
    }

    /// Entries in the list in force.
    pub fn entries(&self) -> usize {
        self.current.read().map_or(0, |l| l.len())
    }

    /// Successful reloads since start.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// Reloads that failed (the file vanished, became unreadable or invalid) since start; the
    /// last good list stayed in force each time.
    pub fn reload_failures(&self) -> u64 {
        self.reload_failures.load(Ordering::Relaxed)
    }

    /// Changes after each successful reload.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Re-reads the file: a good list replaces the one in force, a bad one is logged and
    /// counted, and the last good list stays.
    fn reload(&self, path: &Path) {
        match RevocationList::load(path) {
            Ok(list) => {
                let n = list.len();
                if let Ok(mut cur) = self.current.write() {
                    *cur = Arc::new(list);
                }
                self.reloads.fetch_add(1, Ordering::Relaxed);
                self.generation.send_modify(|g| *g += 1);
                tracing::info!(path = %path.display(), entries = n, "revocation list reloaded");
            }
            Err(e) => self.failed(&e),
        }
    }

    fn failed(&self, e: &RevocationError) {
        let n = self.reload_failures.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::error!(
            error = %e,
            kept_entries = self.entries(),
            reload_failures = n,
            "revocation list not reloaded; the last good list stays in force"
        );
    }
}

/// How long a changed file must stay unchanged before it is read: a writer that truncates
/// and rewrites in place is not caught half way (an atomic rename is safer still).
const SETTLE: Duration = Duration::from_millis(100);

fn watch_file(r: &Weak<Revocation>, path: &Path, first: Stamp) {
    let mut last: Result<Stamp, std::io::ErrorKind> = Ok(first);
    loop {
        std::thread::sleep(POLL);
        let Some(r) = r.upgrade() else { return };
        let now = stamp(path);
        let key = now.as_ref().map(Clone::clone).map_err(std::io::Error::kind);
        if key == last {
            continue;
        }
        match now {
            Ok(seen) => {
                std::thread::sleep(SETTLE);
                if stamp(path).ok().as_ref() != Some(&seen) {
                    // Still being written: look again at the next poll.
                    continue;
                }
                r.reload(path);
                last = Ok(seen);
            }
            Err(error) => {
                r.failed(&RevocationError::Read {
                    path: path.to_owned(),
                    error,
                });
                last = key;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use orgtrail_crypto::certs::Role;

    fn id(serial: &str, fingerprint: &str) -> PeerIdentity {
        PeerIdentity {
            role: Role::Agent,
            accounts: vec![],
            org: None,
            serial: serial.into(),
            fingerprint: fingerprint.into(),
            name: "agent-1".into(),
        }
    }

    const FP: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn serials_and_fingerprints_in_every_accepted_spelling() {
        let text = format!(
            "# revoked on 2026-11-26\n\n3F:1C:0A   # laptop stolen\r\n00ab\nSHA256:{}\n{}\n",
            FP.to_ascii_uppercase(),
            "ff".repeat(32)
        );
        let l = RevocationList::parse(text.as_bytes()).unwrap();
        assert_eq!(l.len(), 4);
        assert!(l.contains(&id("3f1c0a", "")));
        assert!(l.contains(&id("ab", "")), "leading zeros do not matter");
        assert!(l.contains(&id("00ab", "")));
        assert!(l.contains(&id("1234", FP)));
        assert!(l.contains(&id("1234", &"ff".repeat(32))));
        assert!(!l.contains(&id("3f1c", "00")));
        // A serial is never taken for a fingerprint or the other way round.
        assert!(!l.contains(&id(FP, "")));
        assert!(RevocationList::parse(b"").unwrap().is_empty());
        assert!(
            RevocationList::parse(b"# only comments\n\n")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_bad_line_is_named_and_refuses_the_file() {
        let cases: [(&[u8], usize, &str); 7] = [
            (
                b"ab\nnot-a-serial\n",
                2,
                "is not a serial number (hex) or a sha256:FINGERPRINT",
            ),
            (b"ab\n\n\xff\xfe\n", 3, "not UTF-8"),
            (
                b"sha256:abcd\n",
                1,
                "not a SHA-256 fingerprint: 4 hex digits, not 64",
            ),
            (b"sha256:\n", 1, "is not a serial number"),
            (
                b"sha256:xyz\n",
                1,
                "is not a SHA-256 fingerprint: sha256: and 64 hex digits",
            ),
            (&[b'a'; 41], 1, "more than 40"),
            (b"12 34\n", 1, "is not a serial number"),
        ];
        for (text, line, problem) in cases {
            let e = RevocationList::parse(text).unwrap_err();
            assert_eq!(e.line, line, "{e:?}");
            assert!(e.problem.contains(problem), "{e:?}");
        }
    }

    #[test]
    fn loading_names_the_file_and_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.txt");
        let e = Revocation::start(Some(&missing)).unwrap_err();
        assert!(e.to_string().contains("missing.txt: cannot read it"), "{e}");
        let e = Revocation::start(Some(dir.path())).unwrap_err();
        assert!(e.to_string().contains("cannot read it"), "{e}");
        let bad = dir.path().join("bad.txt");
        std::fs::write(&bad, "ab\ncd\nzz\n").unwrap();
        let e = Revocation::start(Some(&bad)).unwrap_err();
        assert!(e.to_string().contains("bad.txt line 3: \"zz\""), "{e}");
    }

    #[test]
    fn reloads_keep_the_last_good_list_when_the_file_goes_bad() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revoked.txt");
        std::fs::write(&path, "ab\n").unwrap();
        let r = Revocation::start(Some(&path)).unwrap();
        let mut changes = r.subscribe();
        assert!(r.is_revoked(&id("ab", "")));
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let wait = |what: &dyn Fn() -> bool| {
            while !what() {
                assert!(std::time::Instant::now() < deadline, "timed out");
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        // A new entry takes effect, and open streams hear of it.
        std::fs::write(&path, "ab\ncd\n").unwrap();
        wait(&|| r.is_revoked(&id("cd", "")));
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        // Corrupted: counted, the last good list stays.
        std::fs::write(&path, b"ab\ncd\n\xff\n").unwrap();
        wait(&|| r.reload_failures() == 1);
        assert!(r.is_revoked(&id("cd", "")));
        assert!(!changes.has_changed().unwrap());
        // Removed: counted once, the list stays.
        std::fs::remove_file(&path).unwrap();
        wait(&|| r.reload_failures() == 2);
        assert!(r.is_revoked(&id("ab", "")) && r.is_revoked(&id("cd", "")));
        // Back and good: in force again.
        std::fs::write(&path, "ef\n").unwrap();
        wait(&|| r.is_revoked(&id("ef", "")));
        assert!(!r.is_revoked(&id("ab", "")));
        assert_eq!(r.reload_failures(), 2);
    }
}
