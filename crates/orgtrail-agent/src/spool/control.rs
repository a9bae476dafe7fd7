//! Working on a spool from another process while the agent runs.
//!
//! * The agent holds an exclusive lock on `lock` in the spool directory for as long as it
//!   has the spool open (released by the kernel when the process dies, kill -9 included).
//! * Listing dead letters needs no lock: the dead-letter file is append-only and sealed, and
//!   a reader stops at an incomplete last record.
//! * Replay and purge change the spool, which has one writer. A command that finds the lock
//!   free takes it and does the work itself (without the agent's side effects: nothing
//!   acknowledged is deleted). Otherwise it writes a request file into `requests/`
//!   (`<id>.json`, written to a temporary name and renamed), and the running agent's spool
//!   thread, which looks there every quarter second, carries it out and answers in
//!   `<id>.done`. A request left behind by an agent that stopped first is carried out by the
//!   waiting command once the lock comes free, or else by the agent at its next start.
//!
//! Why not the metrics HTTP endpoint: it is optional, unauthenticated, and may be reachable
//! by others; the request directory needs no configuration and is guarded by the spool
//! directory's own permissions (whoever may write there may change the spool anyway).

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{SpoolError, io};

/// The lock file's name.
pub const LOCK: &str = "lock";
/// The request directory's name.
pub const REQUESTS: &str = "requests";

/// A change to the dead letters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Put dead letters back in the spool to be shipped again: those whose reason contains
    /// `reason` (all when none) and whose bytes are an event.
    Replay { reason: Option<String> },
    /// Delete dead letters set aside before `before_ms` (milliseconds since the epoch).
    Purge { before_ms: i64 },
}

/// What a request did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    /// Dead letters put back in the spool.
    pub replayed: u64,
    /// Dead letters chosen for replay that stay (no bytes, or bytes that are not an event).
    pub not_replayable: u64,
    /// Dead letters deleted.
    pub purged: u64,
    /// Dead letters left.
    pub left: u64,
    /// Why the request failed, if it did.
    pub error: Option<String>,
}

/// Takes the spool's lock: `Ok(None)` when another process holds it.
pub fn try_lock(dir: &Path) -> Result<Option<File>, SpoolError> {
    let path = dir.join(LOCK);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(SpoolError::Io { path, cause: e }),
    }
}

/// Takes the lock, waiting up to `wait` for another holder (a command working on the dead
/// letters, or an agent that is just stopping).
pub fn lock(dir: &Path, wait: std::time::Duration) -> Result<File, SpoolError> {
    let deadline = std::time::Instant::now() + wait;
    let mut pause = std::time::Duration::from_millis(5);
    loop {
        if let Some(f) = try_lock(dir)? {
            return Ok(f);
        }
        if std::time::Instant::now() >= deadline {
            return Err(SpoolError::Locked(dir.to_path_buf()));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_millis(200));
    }
}

/// Writes a request for the running agent; returns its id.
pub fn submit(dir: &Path, req: &Request) -> Result<String, SpoolError> {
    let rdir = dir.join(REQUESTS);
    std::fs::create_dir_all(&rdir).map_err(io(&rdir))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let id = format!("{nanos}-{}", std::process::id());
    let tmp = rdir.join(format!("{id}.tmp"));
    let body = serde_json::to_vec(req).map_err(|e| SpoolError::Corrupt(e.to_string()))?;
    std::fs::write(&tmp, body).map_err(io(&tmp))?;
    let path = rdir.join(format!("{id}.json"));
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok(id)
}

/// The requests waiting, oldest first: (id, request or why it cannot be read).
pub(crate) fn pending(dir: &Path) -> Vec<(String, Result<Request, String>)> {
    let Ok(rd) = std::fs::read_dir(dir.join(REQUESTS)) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Result<Request, String>)> = rd
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            let id = p.file_name()?.to_str()?.strip_suffix(".json")?.to_owned();
            let req = std::fs::read(&p)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()));
            Some((id, req))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Answers request `id` and removes it.
pub(crate) fn answer(dir: &Path, id: &str, outcome: &Outcome) -> Result<(), SpoolError> {
    let rdir = dir.join(REQUESTS);
    let tmp = rdir.join(format!("{id}.done.tmp"));
    let body = serde_json::to_vec(outcome).map_err(|e| SpoolError::Corrupt(e.to_string()))?;
    std::fs::write(&tmp, body).map_err(io(&tmp))?;
    let done = rdir.join(format!("{id}.done"));
    std::fs::rename(&tmp, &done).map_err(io(&done))?;
    let req = rdir.join(format!("{id}.json"));
    std::fs::remove_file(&req).map_err(io(&req))?;
    Ok(())
}

/// The answer to request `id`, if there is one yet (taken: the file is removed).
pub fn take_answer(dir: &Path, id: &str) -> Result<Option<Outcome>, SpoolError> {
    let done: PathBuf = dir.join(REQUESTS).join(format!("{id}.done"));
    match std::fs::read(&done) {
        Ok(b) => {
            let o = serde_json::from_slice(&b)
                .map_err(|e| SpoolError::Corrupt(format!("{}: {e}", done.display())))?;
            let _ = std::fs::remove_file(&done);
            Ok(Some(o))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SpoolError::Io {
            path: done,
            cause: e,
        }),
    }
}

/// True while request `id` waits.
pub fn is_pending(dir: &Path, id: &str) -> bool {
    dir.join(REQUESTS).join(format!("{id}.json")).exists()
}
