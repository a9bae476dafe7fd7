//! The JSON-lines file sink: one alert a line, appended and synced before the alert counts as
//! taken. Alerts come in batches (those pending when the sink's loop reads the outbox): a batch
//! is written at once and synced once. The file is created with mode 0600 (alerts carry the
//! event).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// An alerts file, opened on first use. Cheap to clone (its delivery loop hands a clone to a
/// blocking thread for each write).
#[derive(Debug, Clone)]
pub(crate) struct FileSink {
    path: PathBuf,
    file: Arc<Mutex<Option<std::fs::File>>>,
}

impl FileSink {
    pub(crate) fn new(path: &Path) -> FileSink {
        FileSink {
            path: path.to_owned(),
            file: Arc::new(Mutex::new(None)),
        }
    }

    /// Appends one line per alert and syncs them. Blocking.
    pub(crate) fn send(&self, lines: &[bytes::Bytes]) -> std::io::Result<()> {
        let mut file = self
            .file
            .lock()
            .map_err(|_| std::io::Error::other("the alerts file's lock is poisoned"))?;
        if file.is_none() {
            *file = Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(&self.path)?,
            );
        }
        let result = file.as_mut().map_or(Ok(()), |f| {
            let mut buf = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
            for line in lines {
                buf.extend_from_slice(line);
                buf.push(b'\n');
            }
            f.write_all(&buf).and_then(|()| f.sync_data())
        });
        if result.is_err() {
            // Reopened on the next try (the file may have been moved or its disk replaced).
            *file = None;
        }
        result
    }
}
