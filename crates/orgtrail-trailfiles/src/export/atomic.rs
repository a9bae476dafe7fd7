//! Files that appear whole or not at all: written under a temporary name in the export's own
//! scratch directory (on the same file system as the archive), flushed to disk, renamed to
//! their final name, and the directory that now holds them flushed too. A crash leaves a
//! temporary file (removed by the next export), never a partial file under a final name.
//!
//! A directory that receives many files in a run is flushed once, before the run is
//! committed ([`Dirs::sync`]): until then the run is pending, and a crash makes the next
//! export write the same files again.

use std::collections::BTreeSet;
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

/// Directories that received files and are still to be flushed.
#[derive(Debug, Default)]
pub(super) struct Dirs(BTreeSet<PathBuf>);

impl Dirs {
    /// Flushes every directory that received a file.
    pub(super) fn sync(&mut self) -> Result<(), ExportError> {
        for d in std::mem::take(&mut self.0) {
            sync_dir(&d)?;
        }
        Ok(())
    }
}

/// Moves a finished temporary file (already flushed) to `dest`, creating its directory; the
/// directory is flushed by [`Dirs::sync`].
pub(super) fn publish(
    root: &Path,
    tmp: &Path,
    dest: &Path,
    dirs: &mut Dirs,
) -> Result<(), ExportError> {
    let dir = dest.parent().unwrap_or(root);
    ensure_dir(root, dir)?;
    std::fs::rename(tmp, dest).map_err(io(dest, "renaming into place"))?;
    dirs.0.insert(dir.to_owned());
    Ok(())
}

/// Writes `bytes` to `tmp` and flushes it, for [`publish`].
pub(super) fn write_tmp(tmp: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    let mut f = File::create(tmp).map_err(io(tmp, "creating"))?;
    f.write_all(bytes).map_err(io(tmp, "writing"))?;
    f.sync_all().map_err(io(tmp, "flushing"))
}

/// Writes `bytes` to `dest` atomically, through `tmp`, and flushes its directory.
pub(super) fn write(root: &Path, tmp: &Path, dest: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    write_tmp(tmp, bytes)?;
    let mut dirs = Dirs::default();
    publish(root, tmp, dest, &mut dirs)?;
    dirs.sync()
}
