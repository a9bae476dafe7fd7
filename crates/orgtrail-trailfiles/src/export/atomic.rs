//! Files that appear whole or not at all: written under a temporary name in the export's own
//! scratch directory (on the same file system as the archive), flushed to disk, renamed to
//! their final name, and the directory that now holds them flushed too. A crash leaves a
//! temporary file (removed by the next export), never a partial file under a final name.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::ExportError;

pub(super) fn io(path: &Path, what: &'static str) -> impl FnOnce(std::io::Error) -> ExportError {
    let path = path.to_owned();
    move |source| ExportError::Io { what, path, source }
}

/// Flushes a directory's entries (a rename or a creation in it) to disk.
pub(super) fn sync_dir(dir: &Path) -> Result<(), ExportError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir, "flushing the directory"))
}

/// Creates `dir` and its missing parents below `root`, flushing each parent whose entries
/// changed, so that a file renamed into `dir` survives a crash with its path.
pub(super) fn ensure_dir(root: &Path, dir: &Path) -> Result<(), ExportError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing: Vec<PathBuf> = Vec::new();
    let mut at = dir;
    while !at.is_dir() {
        missing.push(at.to_owned());
        match at.parent() {
            Some(p) if p.starts_with(root) => at = p,
            _ => break,
        }
    }
    for d in missing.iter().rev() {
        match std::fs::create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(d, "creating the directory")(e)),
        }
        if let Some(parent) = d.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Moves a finished temporary file (already flushed) to `dest`, creating its directory.
pub(super) fn publish(root: &Path, tmp: &Path, dest: &Path) -> Result<(), ExportError> {
    let dir = dest.parent().unwrap_or(root);
    ensure_dir(root, dir)?;
    std::fs::rename(tmp, dest).map_err(io(dest, "renaming into place"))?;
    sync_dir(dir)
}

/// Writes `bytes` to `dest` atomically, through `tmp`.
pub(super) fn write(root: &Path, tmp: &Path, dest: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    let mut f = File::create(tmp).map_err(io(tmp, "creating"))?;
    f.write_all(bytes).map_err(io(tmp, "writing"))?;
    f.sync_all().map_err(io(tmp, "flushing"))?;
    drop(f);
    publish(root, tmp, dest)
}
