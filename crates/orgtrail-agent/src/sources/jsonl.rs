//! JSON lines: from standard input, or from a file, optionally followed as it grows (like
//! `tail -F`): a rotated file (a new file at the path) is read from its start once the old one
//! is finished; a truncated file is read again from its start. The file's identity (device,
//! inode) and the offset after the last line handed over are recorded as the source's mark,
//! so a restarted agent resumes after the last line it spooled.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use orgtrail_core::{CloudTrailEvent, MAX_EVENT_BYTES};

use super::{Ctx, Item};

/// Lines are handed over, and the position marked, in groups of this many.
const GROUP: usize = 1000;

fn mark_key(path: &Path) -> Vec<u8> {
    let mut k = b"jsonl\0".to_vec();
    k.extend_from_slice(path.as_os_str().as_encoded_bytes());
    k
}

/// Splits what was read into lines, bounded: a line longer than an event may be is reported
/// and skipped without being held.
struct Lines {
    buf: Vec<u8>,
    /// Bytes of an overlong line skipped so far (0: not skipping).
    skipped: usize,
}

enum Line {
    Text(Vec<u8>),
    /// An overlong line of this many bytes, now finished.
    TooLong(usize),
    /// Bytes of an overlong line dropped before its end: they only advance the offset.
    Skipped,
}

impl Lines {
    fn reset(&mut self) {
        self.buf.clear();
        self.skipped = 0;
    }

    /// Complete lines in `buf` (each with the bytes it took, newline included).
    fn take(&mut self, out: &mut Vec<(Line, usize)>) {
        let mut start = 0;
        while let Some(nl) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + nl;
            let len = end - start;
            if self.skipped > 0 {
                out.push((Line::TooLong(self.skipped + len), len + 1));
                self.skipped = 0;
            } else {
                out.push((Line::Text(self.buf[start..end].to_vec()), len + 1));
            }
            start = end + 1;
        }
        self.buf.drain(..start);
        if self.buf.len() > MAX_EVENT_BYTES + 2 {
            let held = self.buf.len();
            self.buf.clear();
            self.skipped += held;
            out.push((Line::Skipped, held));
        }
    }
}

/// Where reading stands in one file.
struct Pos<'a> {
    offset: u64,
    line_no: u64,
    key: &'a [u8],
    ident: (u64, u64),
    /// Fingerprint of the file's first bytes: (how many, CRC-32).
    head: (u64, u32),
}

/// Reads one file from `offset` to its current end, handing lines over. Returns the new offset
/// and line number.
fn read_on(
    ctx: &Ctx,
    file: &mut File,
    lines: &mut Lines,
    at: Pos<'_>,
    at_eof_final: bool,
) -> Option<(u64, u64)> {
    let Pos {
        mut offset,
        mut line_no,
        key,
        ident,
        head,
    } = at;
    let mut chunk = vec![0u8; 256 << 10];
    let mut got = Vec::new();
    loop {
        let n = match file.read(&mut chunk) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(source = %ctx.name, error = %e, "read failed; retrying");
                return Some((offset, line_no));
            }
        };
        if n == 0 {
            if at_eof_final && !lines.buf.is_empty() {
                // A last line without a newline, at the end of a finished input.
                let rest = std::mem::take(&mut lines.buf);
                let len = rest.len();
                got.push((Line::Text(rest), len));
            } else if got.is_empty() {
                return Some((offset, line_no));
            }
        } else {
            lines.buf.extend_from_slice(&chunk[..n]);
            lines.take(&mut got);
            if got.len() < GROUP {
                continue;
            }
        }
        for (line, used) in got.drain(..) {
            offset += used as u64;
            match line {
                Line::Skipped => continue,
                Line::TooLong(len) => {
                    line_no += 1;
                    if !ctx.dead(
                        format!(
                            "line {line_no}: event is {len} bytes, larger than the limit of {MAX_EVENT_BYTES} bytes"
                        ),
                        Vec::new(),
                    ) {
                        return None;
                    }
                }
                Line::Text(text) => {
                    line_no += 1;
                    if text.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let ok = match CloudTrailEvent::parse_or_return(text) {
                        Ok(ev) => ctx.event(ev),
                        Err((e, text)) => ctx.dead(format!("line {line_no}: {e}"), text),
                    };
                    if !ok {
                        return None;
                    }
                }
            }
        }
        if !ctx.send(Item::Mark {
            key: key.to_vec(),
            value: format!(
                "{}:{}:{offset}:{line_no}:{}:{}",
                ident.0, ident.1, head.0, head.1
            )
            .into_bytes(),
        }) {
            return None;
        }
        if n == 0 {
            return Some((offset, line_no));
        }
    }
}

fn ident(m: &std::fs::Metadata) -> (u64, u64) {
    (m.dev(), m.ino())
}

/// Bytes of a file's start that identify its content (a file truncated and written again
/// in place keeps its inode, and may be as long as before).
const HEAD: u64 = 4096;

/// CRC-32 of the first `n` bytes of `f`; `None` when it has fewer.
fn fingerprint(f: &File, n: u64) -> Option<u32> {
    use std::os::unix::fs::FileExt;
    let mut b = vec![0u8; usize::try_from(n).ok()?];
    f.read_exact_at(&mut b, 0).ok()?;
    Some(crc32fast::hash(&b))
}

/// Runs the source until its input ends (or, when following, until the agent stops).
pub fn run(ctx: &Ctx, path: &Path, follow: bool, poll_ms: u64) -> Result<(), String> {
    if path.as_os_str() == "-" {
        return stdin(ctx);
    }
    let key = mark_key(path);
    let open = |p: &Path| -> Result<(File, (u64, u64), u64), String> {
        let f = File::open(p).map_err(|e| format!("cannot open {}: {e}", p.display()))?;
        let m = f
            .metadata()
            .map_err(|e| format!("cannot stat {}: {e}", p.display()))?;
        Ok((f, ident(&m), m.len()))
    };
    let (mut file, mut id, len) = loop {
        match open(path) {
            Ok(x) => break x,
            Err(e) if follow && !ctx.once => {
                tracing::info!(source = %ctx.name, "waiting for {}: {e}", path.display());
                if !ctx.pause(poll_ms) {
                    return Ok(());
                }
            }
            Err(e) => return Err(e),
        }
    };
    // Resume after the last line spooled, if it is the same file with the same beginning.
    let (mut offset, mut line_no) = (0u64, 0u64);
    let mut head = (0u64, 0u32);
    if let Some(m) = ctx.spool.mark(&key) {
        let parts: Vec<u64> = String::from_utf8_lossy(&m)
            .split(':')
            .filter_map(|p| p.parse().ok())
            .collect();
        if let [dev, ino, off, line, hn, hc] = parts[..]
            && (dev, ino) == id
            && off <= len
            && fingerprint(&file, hn) == u32::try_from(hc).ok()
        {
            offset = off;
            line_no = line;
            head = (hn, u32::try_from(hc).unwrap_or_default());
        }
    }
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| format!("cannot seek {}: {e}", path.display()))?;
    let mut lines = Lines {
        buf: Vec::new(),
        skipped: 0,
    };
    let mut last_seen = None;
    loop {
        let final_read = !follow || ctx.once;
        let at = Pos {
            offset,
            line_no,
            key: &key,
            ident: id,
            head,
        };
        let Some((o, l)) = read_on(ctx, &mut file, &mut lines, at, final_read) else {
            return Ok(());
        };
        (offset, line_no) = (o, l);
        if final_read {
            return Ok(());
        }
        if head.0 < offset.min(HEAD) {
            let n = offset.min(HEAD);
            if let Some(c) = fingerprint(&file, n) {
                head = (n, c);
            }
        }
        // Wait for a change: more lines, a rotation, a truncation.
        loop {
            if !ctx.pause(poll_ms) {
                return Ok(());
            }
            let Ok(m) = std::fs::metadata(path) else {
                continue;
            };
            let now = (m.len(), m.modified().ok(), ident(&m));
            if last_seen.as_ref() == Some(&now) {
                continue;
            }
            last_seen = Some(now);
            break;
        }
        let m = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(_) => continue,
        };
        if ident(&m) != id {
            // Finish the old file (anything written to it since), then take the new one.
            let at = Pos {
                offset,
                line_no,
                key: &key,
                ident: id,
                head,
            };
            if read_on(ctx, &mut file, &mut lines, at, true).is_none() {
                return Ok(());
            }
            tracing::info!(source = %ctx.name, "{} was rotated; reading the new file", path.display());
            match open(path) {
                Ok((f, i, _)) => {
                    (file, id, offset, line_no, head) = (f, i, 0, 0, (0, 0));
                    lines.reset();
                }
                Err(e) => tracing::warn!(source = %ctx.name, "{e}"),
            }
        } else if m.len() < offset || fingerprint(&file, head.0) != Some(head.1) {
            tracing::warn!(source = %ctx.name, "{} was truncated or rewritten; reading it again from the start", path.display());
            file.seek(SeekFrom::Start(0))
                .map_err(|e| format!("cannot seek {}: {e}", path.display()))?;
            (offset, line_no, head) = (0, 0, (0, 0));
            lines.reset();
        }
    }
}

/// Standard input, to its end. (No position to keep: a pipe cannot be re-read.) Lines are
/// split as for a file, so a line that is not an event keeps its bytes as a dead letter.
fn stdin(ctx: &Ctx) -> Result<(), String> {
    let mut input = std::io::stdin().lock();
    let mut lines = Lines {
        buf: Vec::new(),
        skipped: 0,
    };
    let mut chunk = vec![0u8; 256 << 10];
    let mut got = Vec::new();
    let mut line_no = 0u64;
    loop {
        let n = match input.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("standard input: {e}")),
        };
        if n == 0 {
            if !lines.buf.is_empty() {
                let rest = std::mem::take(&mut lines.buf);
                let len = rest.len();
                got.push((Line::Text(rest), len));
            }
        } else {
            lines.buf.extend_from_slice(&chunk[..n]);
            lines.take(&mut got);
        }
        for (line, _) in got.drain(..) {
            let ok = match line {
                Line::Skipped => true,
                Line::TooLong(len) => {
                    line_no += 1;
                    ctx.dead(
                        format!(
                            "line {line_no}: event is {len} bytes, larger than the limit of {MAX_EVENT_BYTES} bytes"
                        ),
                        Vec::new(),
                    )
                }
                Line::Text(text) => {
                    line_no += 1;
                    if text.iter().all(u8::is_ascii_whitespace) {
                        true
                    } else {
                        match CloudTrailEvent::parse_or_return(text) {
                            Ok(ev) => ctx.event(ev),
                            Err((e, text)) => ctx.dead(format!("line {line_no}: {e}"), text),
                        }
                    }
                }
            };
            if !ok {
                return Ok(());
            }
        }
        if n == 0 {
            return Ok(());
        }
    }
}
