//! Decoders for the three input shapes users have:
//!
//! * a delivered CloudTrail log file, `{"Records":[...]}`, plain or gzip (`.json`, `.json.gz`);
//! * JSON lines, one event per line;
//! * a single event, possibly pretty-printed.
//!
//! [`Decoder`] detects the shape (or is told it), transparently gunzips, and yields one
//! [`Item`] per event with its position and either the parsed event or the reason it is not
//! valid. An error that makes the rest of the input unreadable (corrupt gzip, a log file that is
//! not JSON, a decompressed size over the limit) is a [`DecodeError`] and ends the iteration.
//!
//! Each event's bytes are exactly its JSON text in the input: the line without its line break
//! and surrounding whitespace, or the slice of the log file that holds that record.
//!
//! # Memory
//!
//! Every shape is decoded as a stream. A log file's `Records` array is split by a small
//! scanner that tracks strings, escapes and bracket nesting over a bounded read window, and
//! yields each element's bytes as soon as it is complete. What the decoder holds is the read
//! window (64 KiB, growing to about the event size limit while the shape is detected) plus
//! one event, whatever the size of the input. A record over the event size limit is counted,
//! not kept, and reported as too large; a gzip bomb of whitespace or of one giant string
//! stops at `max_document_bytes` with [`DecodeError::TooLarge`] without ever being held.
//!
//! Because records are yielded as they are read, a log file that turns out to be broken
//! further on (truncated, not JSON) yields its complete records first, then the error. For a
//! file, [`Decoder::new_verified`] checks a gzip input's CRC and size in a first pass, so
//! that a damaged `.gz` yields nothing.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::str::FromStr;

use flate2::bufread::MultiGzDecoder;

use crate::error::EventError;
use crate::event::{CloudTrailEvent, MAX_EVENT_BYTES};

/// Which shape to expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InputFormat {
    /// Detect: a log file if the input is one JSON object with `Records`, JSON lines if the
    /// first line is a complete value followed by more, else a single event.
    #[default]
    Auto,
    /// `{"Records":[...]}`.
    LogFile,
    /// One event per line.
    JsonLines,
    /// One event.
    Event,
}

impl FromStr for InputFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(InputFormat::Auto),
            "records" | "logfile" | "log-file" => Ok(InputFormat::LogFile),
            "jsonl" | "json-lines" | "ndjson" => Ok(InputFormat::JsonLines),
            "event" => Ok(InputFormat::Event),
            _ => Err(format!(
                "unknown input format {s:?}: expected auto, records, jsonl or event"
            )),
        }
    }
}

/// The shape the decoder found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputShape {
    LogFile,
    JsonLines,
    Event,
}

/// Bounds on what a decoder reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest event accepted; CloudTrail's limit is 256 KiB.
    pub max_event_bytes: usize,
    /// Largest log file (read as a stream, never held whole), and the largest decompressed
    /// size of a gzip input. A gzip bomb stops here with an error.
    pub max_document_bytes: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_event_bytes: MAX_EVENT_BYTES,
            max_document_bytes: 1 << 30,
        }
    }
}

/// Where in the input an event was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// 1-based index in a log file's `Records`.
    Record(usize),
    /// 1-based line of a JSON-lines input.
    Line(u64),
    /// The input as a whole was one event.
    Document,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Record(i) => write!(f, "record {i}"),
            Position::Line(n) => write!(f, "line {n}"),
            Position::Document => f.write_str("event"),
        }
    }
}

/// One event of the input, valid or not.
#[derive(Debug)]
pub struct Item {
    pub position: Position,
    pub result: Result<CloudTrailEvent, EventError>,
}

/// Why the input as a whole could not be read further.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("reading input: {0}")]
    Io(#[source] io::Error),
    #[error("corrupt gzip data: {0}")]
    Gzip(#[source] io::Error),
    #[error("input is larger than the limit of {limit} bytes (after decompression)")]
    TooLarge { limit: u64 },
    /// Byte offsets count from the start of the (decompressed) input.
    #[error("log file is not valid JSON at byte {offset}: {detail}")]
    Syntax { offset: u64, detail: String },
    #[error("log file nests JSON deeper than {limit} levels at byte {offset}")]
    TooDeep { offset: u64, limit: usize },
    #[error("log file's `Records` is not an array")]
    RecordsNotArray,
    #[error("log file has `Records` more than once")]
    DuplicateRecords,
    #[error("not a CloudTrail log file: no `Records` array")]
    NotALogFile,
}

#[derive(Debug)]
struct LimitExceeded;

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("decompressed size limit exceeded")
    }
}

impl std::error::Error for LimitExceeded {}

/// A reader that fails once more than `limit` bytes came through.
struct Limited<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        match self.remaining.checked_sub(n as u64) {
            Some(r) => {
                self.remaining = r;
                Ok(n)
            }
            None => Err(io::Error::other(LimitExceeded)),
        }
    }
}

/// Bytes read from the underlying reader at a time.
const CHUNK: usize = 64 * 1024;

/// Deepest nesting the log-file scanner follows (an event deeper than
/// [`crate::MAX_DEPTH`] is refused by the event parser anyway).
const MAX_SCAN_DEPTH: usize = 1024;

/// A buffered source with a bounded, growable window, so that the start of an input can be
/// looked at and read again (`mark`/`rewind`) while its shape is detected.
struct Src<'r> {
    inner: Box<dyn Read + Send + 'r>,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// Where `rewind` goes back to; dropped when it would make the window exceed `window`.
    mark: Option<usize>,
    /// Input offset of `buf[0]`.
    base: u64,
    /// Most bytes the buffer may hold.
    window: usize,
    /// Most bytes read from `inner` in all (plain log files; gzip has its own `Limited`).
    limit: u64,
}

impl<'r> Src<'r> {
    fn new(inner: Box<dyn Read + Send + 'r>, window: usize) -> Self {
        Src {
            inner,
            buf: vec![0; CHUNK],
            pos: 0,
            end: 0,
            mark: None,
            base: 0,
            window: window.max(CHUNK),
            limit: u64::MAX,
        }
    }

    /// Offset of the next byte in the input.
    fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    fn avail(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    fn advance(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.end);
    }

    /// Reads more input into the window; `Ok(false)` at the end of the input.
    fn more(&mut self) -> io::Result<bool> {
        let keep = self.mark.unwrap_or(self.pos);
        if keep > 0 && (keep == self.end || self.end == self.buf.len()) {
            self.buf.copy_within(keep..self.end, 0);
            self.base += keep as u64;
            self.end -= keep;
            self.pos -= keep;
            if let Some(m) = self.mark.as_mut() {
                *m -= keep;
            }
        }
        if self.end == self.buf.len() {
            if self.buf.len() >= self.window {
                if self.mark.take().is_some() {
                    // The marked start no longer fits: it cannot be read again.
                    return self.more();
                }
                return Err(io::Error::other("read window exceeded"));
            }
            let grown = (self.buf.len() * 2).min(self.window);
            self.buf.resize(grown, 0);
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.end += n;
                    if self.base + self.end as u64 > self.limit {
                        return Err(io::Error::other(LimitExceeded));
                    }
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn set_mark(&mut self) {
        self.mark = Some(self.pos);
    }

    /// Goes back to the mark; false if it was dropped (the input since then did not fit).
    fn rewind(&mut self) -> bool {
        match self.mark.take() {
            Some(m) => {
                self.pos = m;
                true
            }
            None => false,
        }
    }

    /// The next byte after JSON whitespace, not consumed; `newlines` counts the line breaks
    /// skipped.
    fn skip_ws(&mut self, newlines: &mut u64) -> io::Result<Option<u8>> {
        loop {
            let a = self.avail();
            match a.iter().position(|&b| !is_json_ws(b)) {
                Some(i) => {
                    let b = a[i];
                    *newlines += memchr::memchr_iter(b'\n', &a[..i]).count() as u64;
                    self.advance(i);
                    return Ok(Some(b));
                }
                None => {
                    *newlines += memchr::memchr_iter(b'\n', a).count() as u64;
                    let n = a.len();
                    self.advance(n);
                    if !self.more()? {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// The next byte, not consumed.
    fn peek(&mut self) -> io::Result<Option<u8>> {
        if self.pos == self.end && !self.more()? {
            return Ok(None);
        }
        Ok(self.buf.get(self.pos).copied())
    }
}

impl Read for Src<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let a = self.fill_buf()?;
        let n = a.len().min(out.len());
        out[..n].copy_from_slice(&a[..n]);
        self.advance(n);
        Ok(n)
    }
}

impl BufRead for Src<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.end {
            self.more()?;
        }
        Ok(self.avail())
    }
    fn consume(&mut self, n: usize) {
        self.advance(n);
    }
}

fn is_json_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Why the log-file scanner stopped.
enum Fault {
    Io(io::Error),
    Syntax(u64, String),
    TooDeep(u64),
    Eof(u64),
    RecordsNotArray,
    DuplicateRecords,
    NotALogFile,
}

impl From<io::Error> for Fault {
    fn from(e: io::Error) -> Self {
        Fault::Io(e)
    }
}

/// Scans one JSON value starting at the next byte (not whitespace): a string, an object or
/// an array by its brackets and strings, anything else up to the next delimiter. Its bytes
/// are appended to `out` while `out` stays within `cap`. Returns the value's length; the
/// content is checked by whoever parses it.
fn scan_value(
    src: &mut Src<'_>,
    out: &mut Vec<u8>,
    cap: usize,
    stack: &mut Vec<u8>,
) -> Result<u64, Fault> {
    stack.clear();
    let start = src.offset();
    let first = match src.peek()? {
        Some(b) => b,
        None => return Err(Fault::Eof(start)),
    };
    if matches!(first, b'}' | b']' | b',' | b':') {
        return Err(Fault::Syntax(
            start,
            format!("expected a value, found `{}`", first as char),
        ));
    }
    let scalar = !matches!(first, b'{' | b'[' | b'"');
    let mut in_str = false;
    let mut esc = false;
    let mut len = 0u64;
    loop {
        if src.pos == src.end && !src.more()? {
            if scalar && len > 0 {
                return Ok(len);
            }
            return Err(Fault::Eof(src.offset()));
        }
        let at = src.offset();
        let a = src.avail();
        let mut i = 0;
        let mut done = false;
        while i < a.len() {
            if in_str {
                if esc {
                    esc = false;
                    i += 1;
                    continue;
                }
                match memchr::memchr2(b'"', b'\\', &a[i..]) {
                    None => i = a.len(),
                    Some(j) => {
                        i += j;
                        if a[i] == b'\\' {
                            esc = true;
                        } else {
                            in_str = false;
                            if stack.is_empty() {
                                i += 1;
                                done = true;
                                break;
                            }
                        }
                        i += 1;
                    }
                }
                continue;
            }
            let b = a[i];
            if scalar {
                if matches!(b, b',' | b']' | b'}') || is_json_ws(b) {
                    done = true;
                    break;
                }
                i += 1;
                continue;
            }
            match b {
                b'"' => in_str = true,
                b'{' | b'[' => {
                    if stack.len() >= MAX_SCAN_DEPTH {
                        return Err(Fault::TooDeep(at + i as u64));
                    }
                    stack.push(b);
                }
                b'}' | b']' => {
                    let open = if b == b'}' { b'{' } else { b'[' };
                    if stack.pop() != Some(open) {
                        return Err(Fault::Syntax(
                            at + i as u64,
                            format!("`{}` does not close what is open", b as char),
                        ));
                    }
                    if stack.is_empty() {
                        i += 1;
                        done = true;
                        break;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        if out.len() + i <= cap {
            out.extend_from_slice(&a[..i]);
        }
        len += i as u64;
        src.advance(i);
        if done {
            return Ok(len);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Expecting `{`.
    Open,
    /// In the top-level object, expecting a key (or `}`); `first`: no key seen yet.
    Key {
        first: bool,
    },
    /// In `Records`, expecting a record (or `]`).
    Record {
        first: bool,
    },
    /// After the top-level object: only whitespace may follow.
    Trailer,
    Done,
}

/// A streaming reader of `{"Records":[...]}`.
struct LogStream<'r> {
    src: Src<'r>,
    phase: Phase,
    index: usize,
    seen_records: bool,
    max_event: usize,
    rec: Vec<u8>,
    stack: Vec<u8>,
}

/// Longest object key compared with `Records` (longer keys are skipped unread).
const MAX_KEY: usize = 256;

impl<'r> LogStream<'r> {
    fn new(src: Src<'r>, phase: Phase, max_event: usize) -> Self {
        LogStream {
            src,
            phase,
            index: 0,
            seen_records: false,
            max_event,
            rec: Vec::new(),
            stack: Vec::new(),
        }
    }

    fn ws(&mut self) -> Result<u8, Fault> {
        let mut nl = 0;
        match self.src.skip_ws(&mut nl)? {
            Some(b) => Ok(b),
            None => Err(Fault::Eof(self.src.offset())),
        }
    }

    fn expected(&self, what: &str, found: u8) -> Fault {
        Fault::Syntax(
            self.src.offset(),
            format!("expected {what}, found `{}`", found.escape_ascii()),
        )
    }

    /// Reads up to the start of `Records`' first element: `Ok(true)` there, `Ok(false)` if
    /// the top-level object ended without `Records`.
    fn find_records(&mut self) -> Result<bool, Fault> {
        loop {
            match self.phase {
                Phase::Record { .. } => return Ok(true),
                Phase::Trailer | Phase::Done => return Ok(false),
                _ => self.step_header()?,
            }
        }
    }

    /// One step outside the records: `{`, a key and its value, `}` or the trailer.
    fn step_header(&mut self) -> Result<(), Fault> {
        match self.phase {
            Phase::Open => {
                let mut nl = 0;
                match self.src.skip_ws(&mut nl)? {
                    Some(b'{') => {
                        self.src.advance(1);
                        self.phase = Phase::Key { first: true };
                    }
                    _ => return Err(Fault::NotALogFile),
                }
            }
            Phase::Key { first } => {
                let mut b = self.ws()?;
                if b == b'}' {
                    self.src.advance(1);
                    self.phase = Phase::Trailer;
                    return Ok(());
                }
                if !first {
                    if b != b',' {
                        return Err(self.expected("`,` or `}` in the top-level object", b));
                    }
                    self.src.advance(1);
                    b = self.ws()?;
                }
                if b != b'"' {
                    return Err(self.expected("a key in the top-level object", b));
                }
                let mut key = Vec::new();
                scan_value(&mut self.src, &mut key, MAX_KEY, &mut self.stack)?;
                let b = self.ws()?;
                if b != b':' {
                    return Err(self.expected("`:` after a key", b));
                }
                self.src.advance(1);
                let b = self.ws()?;
                if is_records(&key) {
                    if self.seen_records {
                        return Err(Fault::DuplicateRecords);
                    }
                    self.seen_records = true;
                    if b != b'[' {
                        return Err(Fault::RecordsNotArray);
                    }
                    self.src.advance(1);
                    self.phase = Phase::Record { first: true };
                } else {
                    let mut sink = Vec::new();
                    scan_value(&mut self.src, &mut sink, 0, &mut self.stack)?;
                    self.phase = Phase::Key { first: false };
                }
            }
            Phase::Trailer => {
                let mut nl = 0;
                if let Some(b) = self.src.skip_ws(&mut nl)? {
                    return Err(Fault::Syntax(
                        self.src.offset(),
                        format!(
                            "`{}` after the end of the top-level object",
                            b.escape_ascii()
                        ),
                    ));
                }
                self.phase = Phase::Done;
                if !self.seen_records {
                    return Err(Fault::NotALogFile);
                }
            }
            Phase::Record { .. } | Phase::Done => {}
        }
        Ok(())
    }

    /// The next record, or `None` after a complete log file.
    fn next_item(&mut self) -> Result<Option<Item>, Fault> {
        loop {
            match self.phase {
                Phase::Done => return Ok(None),
                Phase::Record { first } => {
                    let mut b = self.ws()?;
                    if b == b']' {
                        self.src.advance(1);
                        self.phase = Phase::Key { first: false };
                        continue;
                    }
                    if !first {
                        if b != b',' {
                            return Err(self
                                .expected(&format!("`,` or `]` after record {}", self.index), b));
                        }
                        self.src.advance(1);
                        b = self.ws()?;
                        if b == b']' {
                            return Err(
                                self.expected(&format!("record {} after `,`", self.index + 1), b)
                            );
                        }
                    }
                    self.rec.clear();
                    let cap = self.max_event;
                    let len = scan_value(&mut self.src, &mut self.rec, cap, &mut self.stack)?;
                    self.index += 1;
                    self.phase = Phase::Record { first: false };
                    let result = if len > cap as u64 {
                        Err(EventError::TooLarge {
                            size: usize::try_from(len).unwrap_or(usize::MAX),
                            limit: cap,
                        })
                    } else {
                        CloudTrailEvent::parse_with_limit(&self.rec[..], cap)
                    };
                    // Keep the scratch buffer from pinning a rare large record.
                    if self.rec.capacity() > 4 * CHUNK {
                        self.rec = Vec::new();
                    }
                    return Ok(Some(Item {
                        position: Position::Record(self.index),
                        result,
                    }));
                }
                _ => self.step_header()?,
            }
        }
    }
}

/// Whether a raw JSON string (with its quotes) is `"Records"`, escapes included.
fn is_records(raw: &[u8]) -> bool {
    if raw == b"\"Records\"" {
        return true;
    }
    raw.len() <= MAX_KEY
        && raw.contains(&b'\\')
        && serde_json::from_slice::<String>(raw).is_ok_and(|s| s == "Records")
}

enum State<'r> {
    Lines {
        src: Src<'r>,
        line_no: u64,
        pending: Option<Item>,
        done: bool,
    },
    Log(Box<LogStream<'r>>),
    Single(Option<Item>),
    Failed(Option<DecodeError>),
}

/// Iterates over the events of one input. See the module docs.
pub struct Decoder<'r> {
    state: State<'r>,
    shape: InputShape,
    gzip: bool,
    limits: DecodeLimits,
    /// The line being read (JSON lines), reused from line to line.
    line: Vec<u8>,
}

impl fmt::Debug for Decoder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("shape", &self.shape)
            .field("gzip", &self.gzip)
            .finish_non_exhaustive()
    }
}

enum LineRead {
    Eof,
    Line,
    TooLong(u64),
}

/// Reads one line (without its `\n`) into `buf`, up to `max` bytes; a longer line is consumed
/// and reported as `TooLong` with its length, without being held in memory.
fn read_line_bounded(r: &mut dyn BufRead, buf: &mut Vec<u8>, max: u64) -> io::Result<LineRead> {
    buf.clear();
    let mut len: u64 = 0;
    let mut too_long = false;
    let mut any = false;
    loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            break;
        }
        any = true;
        let (part, found) = match memchr::memchr(b'\n', chunk) {
            Some(i) => (&chunk[..i], true),
            None => (chunk, false),
        };
        len += part.len() as u64;
        if !too_long {
            if len > max {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(part);
            }
        }
        let consumed = part.len() + usize::from(found);
        r.consume(consumed);
        if found {
            break;
        }
    }
    if !any {
        Ok(LineRead::Eof)
    } else if too_long {
        Ok(LineRead::TooLong(len))
    } else {
        Ok(LineRead::Line)
    }
}

/// A line [`whole_line`] found whole in the read buffer.
// Returned once and taken apart at once: boxing the event would cost an allocation per line.
#[allow(clippy::large_enum_variant)]
enum Whole {
    /// Only whitespace.
    Blank,
    /// The line's event, parsed (its bytes copied once, into the event).
    Event(Result<CloudTrailEvent, EventError>),
}

/// The next line, if it lies whole in `src`'s buffer (its `\n` included) and is at most `max`
/// bytes: parsed straight from the buffer (with `max_event` as the event's limit) and consumed.
/// `None` (nothing consumed) when it does not: [`read_line_bounded`] reads it then.
fn whole_line(src: &mut Src<'_>, max: u64, max_event: usize) -> io::Result<Option<Whole>> {
    let chunk = loop {
        match src.fill_buf() {
            Ok(c) => break c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };
    let Some(i) = memchr::memchr(b'\n', chunk) else {
        return Ok(None);
    };
    if i as u64 > max {
        return Ok(None);
    }
    let t = trim(&chunk[..i]);
    let whole = if t.is_empty() {
        Whole::Blank
    } else {
        Whole::Event(CloudTrailEvent::parse_with_limit(t, max_event))
    };
    src.consume(i + 1);
    Ok(Some(whole))
}

/// Reads until `buf` is full or the input ends; returns how much was read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

impl<'r> Decoder<'r> {
    /// Starts decoding `reader`. Detection reads at most about one event's worth of input
    /// (the read window) before returning.
    pub fn new<R: Read + Send + 'r>(
        reader: R,
        format: InputFormat,
        limits: DecodeLimits,
    ) -> Result<Self, DecodeError> {
        let mut plain = BufReader::with_capacity(CHUNK, reader);
        let head = plain.fill_buf().map_err(DecodeError::Io)?;
        let gzip = head.starts_with(&[0x1f, 0x8b]);
        let inner: Box<dyn Read + Send + 'r> = if gzip {
            Box::new(Limited {
                inner: MultiGzDecoder::new(plain),
                remaining: limits.max_document_bytes,
            })
        } else {
            Box::new(plain)
        };
        // Room for one event with its surrounding whitespace, and a read chunk.
        let line_cap = limits.max_event_bytes.saturating_add(4096);
        let mut src = Src::new(inner, line_cap.saturating_add(2 * CHUNK));
        let mut d = Decoder {
            state: State::Failed(None),
            shape: InputShape::Event,
            gzip,
            limits,
            line: Vec::new(),
        };
        match format {
            InputFormat::JsonLines => {
                d.shape = InputShape::JsonLines;
                d.state = State::Lines {
                    src,
                    line_no: 0,
                    pending: None,
                    done: false,
                };
            }
            InputFormat::LogFile => {
                if !gzip {
                    src.limit = limits.max_document_bytes;
                }
                d.shape = InputShape::LogFile;
                d.state = State::Log(Box::new(LogStream::new(
                    src,
                    Phase::Open,
                    limits.max_event_bytes,
                )));
            }
            InputFormat::Event => {
                let mut nl = 0;
                src.skip_ws(&mut nl).map_err(|e| d.io_error(e))?;
                let item = d.read_single(&mut src)?;
                d.state = State::Single(Some(item));
            }
            InputFormat::Auto => d.detect(src)?,
        }
        Ok(d)
    }

    /// Reads the rest of the input as one event (its surrounding whitespace trimmed).
    fn read_single(&self, src: &mut Src<'_>) -> Result<Item, DecodeError> {
        let max = self.limits.max_event_bytes;
        let cap = max.saturating_add(4096) as u64;
        let mut doc = Vec::new();
        (&mut *src)
            .take(cap + 1)
            .read_to_end(&mut doc)
            .map_err(|e| self.io_error(e))?;
        let result = if doc.len() as u64 > cap {
            let rest = io::copy(src, &mut io::sink()).map_err(|e| self.io_error(e))?;
            Err(EventError::TooLarge {
                size: usize::try_from(doc.len() as u64 + rest).unwrap_or(usize::MAX),
                limit: max,
            })
        } else {
            CloudTrailEvent::parse_with_limit(trim(&doc), max)
        };
        Ok(Item {
            position: Position::Document,
            result,
        })
    }

    /// Auto-detection: a log file if the input is an object with `Records`; JSON lines if its
    /// first line is a complete value followed by more; else one event.
    fn detect(&mut self, mut src: Src<'r>) -> Result<(), DecodeError> {
        let mut newlines = 0u64;
        let first = src.skip_ws(&mut newlines).map_err(|e| self.io_error(e))?;
        if first != Some(b'{') {
            return self.lines_or_document(src, newlines);
        }
        let start = src.offset();
        src.set_mark();
        src.advance(1);
        let mut probe =
            LogStream::new(src, Phase::Key { first: true }, self.limits.max_event_bytes);
        match probe.find_records() {
            Ok(true) => {
                probe.src.mark = None;
                if !self.gzip {
                    probe.src.limit = self.limits.max_document_bytes;
                }
                self.shape = InputShape::LogFile;
                self.state = State::Log(Box::new(probe));
                Ok(())
            }
            // Has `Records`, but not as a log file has it.
            Err(f @ (Fault::Io(_) | Fault::RecordsNotArray | Fault::DuplicateRecords)) => {
                Err(self.fault(f))
            }
            Ok(false) | Err(_) => {
                let mut src = probe.src;
                if src.rewind() {
                    self.lines_or_document(src, newlines)
                } else {
                    // Larger than any event, and not a log file.
                    self.too_large_first(src, newlines, start)
                }
            }
        }
    }

    /// The input starts with an object too large to hold that is not a log file: one event
    /// too large, then either the end (a document) or more lines (JSON lines).
    fn too_large_first(
        &mut self,
        mut src: Src<'r>,
        newlines: u64,
        start: u64,
    ) -> Result<(), DecodeError> {
        let size = usize::try_from(src.offset().saturating_sub(start)).unwrap_or(usize::MAX);
        let item = |position| Item {
            position,
            result: Err(EventError::TooLarge {
                size,
                limit: self.limits.max_event_bytes,
            }),
        };
        let mut nl = 0;
        let more = src.skip_ws(&mut nl).map_err(|e| self.io_error(e))?;
        if more.is_none() {
            self.state = State::Single(Some(item(Position::Document)));
            return Ok(());
        }
        self.shape = InputShape::JsonLines;
        let pending = item(Position::Line(newlines + 1));
        self.state = State::Lines {
            src,
            // The rest of the first line is read as line `newlines + 1` again.
            line_no: newlines + nl,
            pending: Some(pending),
            done: false,
        };
        Ok(())
    }

    fn lines_or_document(&mut self, mut src: Src<'r>, newlines: u64) -> Result<(), DecodeError> {
        let max = self.limits.max_event_bytes;
        let too_large = |size: u64| {
            Err(EventError::TooLarge {
                size: usize::try_from(size).unwrap_or(usize::MAX),
                limit: max,
            })
        };
        // The first line, kept readable again by the mark.
        let start = src.offset();
        src.set_mark();
        let mut first = Vec::new();
        let line_cap = max.saturating_add(4096) as u64;
        let read =
            read_line_bounded(&mut src, &mut first, line_cap).map_err(|e| self.io_error(e))?;
        let mut nl = 0;
        let more = match read {
            LineRead::Eof => false,
            LineRead::Line | LineRead::TooLong(_) => src
                .skip_ws(&mut nl)
                .map_err(|e| self.io_error(e))?
                .is_some(),
        };
        let lines_mode = more
            && match read {
                LineRead::Line => match std::str::from_utf8(trim(&first)) {
                    Err(_) => true,
                    Ok(s) => match serde_json::from_str::<&serde_json::value::RawValue>(s) {
                        // A complete value on the first line: JSON lines.
                        Ok(_) => true,
                        // An unfinished value: a pretty-printed document. A syntax error on
                        // the first line: judge each line on its own.
                        Err(e) => e.classify() != serde_json::error::Category::Eof,
                    },
                },
                // A first line longer than any event, and more lines: JSON lines.
                LineRead::TooLong(_) => true,
                LineRead::Eof => false,
            };
        if lines_mode {
            src.mark = None;
            self.shape = InputShape::JsonLines;
            let line_no = newlines + 1;
            let result = match read {
                LineRead::TooLong(len) => too_large(len),
                _ => CloudTrailEvent::parse_with_limit(trim(&first), max),
            };
            self.state = State::Lines {
                src,
                line_no: line_no + nl,
                pending: Some(Item {
                    position: Position::Line(line_no),
                    result,
                }),
                done: false,
            };
            return Ok(());
        }
        // One document: read it again from the start.
        let item = if src.rewind() {
            self.read_single(&mut src)?
        } else {
            // What did not fit in the read window is larger than any event.
            io::copy(&mut src, &mut io::sink()).map_err(|e| self.io_error(e))?;
            Item {
                position: Position::Document,
                result: too_large(src.offset() - start),
            }
        };
        self.shape = InputShape::Event;
        self.state = State::Single(Some(item));
        Ok(())
    }

    /// Like [`Decoder::new`], for an input that can be read twice (a file). A gzip input is
    /// first decompressed once without keeping anything, to check its CRC, its length and
    /// the size limit; only then are events read from it. A corrupt or truncated `.gz`
    /// therefore yields no events at all, rather than the records before the damage (which
    /// deflate cannot tell from good ones until the CRC at the end). Costs a second gunzip,
    /// for gzip inputs only.
    pub fn new_verified<R: Read + io::Seek + Send + 'r>(
        mut reader: R,
        format: InputFormat,
        limits: DecodeLimits,
    ) -> Result<Self, DecodeError> {
        let start = reader.stream_position().map_err(DecodeError::Io)?;
        let mut magic = [0u8; 2];
        let n = read_full(&mut reader, &mut magic).map_err(DecodeError::Io)?;
        if n == 2 && magic == [0x1f, 0x8b] {
            reader
                .seek(io::SeekFrom::Start(start))
                .map_err(DecodeError::Io)?;
            let mut check = Limited {
                inner: MultiGzDecoder::new(BufReader::with_capacity(CHUNK, &mut reader)),
                remaining: limits.max_document_bytes,
            };
            if let Err(e) = io::copy(&mut check, &mut io::sink()) {
                return Err(if e.get_ref().is_some_and(|i| i.is::<LimitExceeded>()) {
                    DecodeError::TooLarge {
                        limit: limits.max_document_bytes,
                    }
                } else {
                    DecodeError::Gzip(e)
                });
            }
        }
        reader
            .seek(io::SeekFrom::Start(start))
            .map_err(DecodeError::Io)?;
        Decoder::new(reader, format, limits)
    }

    /// The shape being decoded.
    pub fn shape(&self) -> InputShape {
        self.shape
    }

    /// Whether the input was gzip-compressed.
    pub fn is_gzip(&self) -> bool {
        self.gzip
    }

    fn io_error(&self, e: io::Error) -> DecodeError {
        if e.get_ref().is_some_and(|i| i.is::<LimitExceeded>()) {
            DecodeError::TooLarge {
                limit: self.limits.max_document_bytes,
            }
        } else if self.gzip {
            DecodeError::Gzip(e)
        } else {
            DecodeError::Io(e)
        }
    }

    fn fault(&self, f: Fault) -> DecodeError {
        match f {
            Fault::Io(e) => self.io_error(e),
            Fault::Syntax(offset, detail) => DecodeError::Syntax { offset, detail },
            Fault::Eof(offset) => DecodeError::Syntax {
                offset,
                detail: "unexpected end of input (truncated?)".into(),
            },
            Fault::TooDeep(offset) => DecodeError::TooDeep {
                offset,
                limit: MAX_SCAN_DEPTH,
            },
            Fault::RecordsNotArray => DecodeError::RecordsNotArray,
            Fault::DuplicateRecords => DecodeError::DuplicateRecords,
            Fault::NotALogFile => DecodeError::NotALogFile,
        }
    }
}

impl Iterator for Decoder<'_> {
    type Item = Result<Item, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        let max_event = self.limits.max_event_bytes;
        let mut failure = None;
        let out = match &mut self.state {
            State::Failed(e) => return e.take().map(Err),
            State::Single(item) => item.take().map(Ok),
            State::Log(log) => {
                let r = log.next_item();
                return match r {
                    Ok(item) => item.map(Ok),
                    Err(f) => {
                        let e = self.fault(f);
                        self.state = State::Failed(None);
                        Some(Err(e))
                    }
                };
            }
            State::Lines {
                src,
                line_no,
                pending,
                done,
            } => {
                if let Some(item) = pending.take() {
                    Some(Ok(item))
                } else if *done {
                    None
                } else {
                    // Room for surrounding whitespace; the event itself is checked exactly.
                    let cap = max_event as u64 + 4096;
                    let line = &mut self.line;
                    loop {
                        // A whole line in the read buffer (nearly every line) is parsed from
                        // there: its bytes are copied once, into the event, instead of into
                        // `line` first. Anything else (a line that crosses the buffer's end,
                        // a too-long line, the end of the input) goes through `line`.
                        match whole_line(src, cap, max_event) {
                            Err(e) => {
                                *done = true;
                                failure = Some(e);
                                break None;
                            }
                            Ok(Some(Whole::Blank)) => {
                                *line_no += 1;
                                continue;
                            }
                            Ok(Some(Whole::Event(result))) => {
                                *line_no += 1;
                                break Some(Ok(Item {
                                    position: Position::Line(*line_no),
                                    result,
                                }));
                            }
                            Ok(None) => {}
                        }
                        match read_line_bounded(src, line, cap) {
                            Err(e) => {
                                *done = true;
                                failure = Some(e);
                                break None;
                            }
                            Ok(LineRead::Eof) => {
                                *done = true;
                                break None;
                            }
                            Ok(LineRead::TooLong(len)) => {
                                *line_no += 1;
                                break Some(Ok(Item {
                                    position: Position::Line(*line_no),
                                    result: Err(EventError::TooLarge {
                                        size: usize::try_from(len).unwrap_or(usize::MAX),
                                        limit: max_event,
                                    }),
                                }));
                            }
                            Ok(LineRead::Line) => {
                                *line_no += 1;
                                let t = trim(line);
                                if t.is_empty() {
                                    continue;
                                }
                                break Some(Ok(Item {
                                    position: Position::Line(*line_no),
                                    result: CloudTrailEvent::parse_with_limit(t, max_event),
                                }));
                            }
                        }
                    }
                }
            }
        };
        if let Some(e) = failure {
            return Some(Err(self.io_error(e)));
        }
        out
    }
}

/// Decodes a whole input held in memory.
pub fn decode_bytes(
    bytes: &[u8],
    format: InputFormat,
    limits: DecodeLimits,
) -> Result<Vec<Item>, DecodeError> {
    Decoder::new(bytes, format, limits)?.collect()
}
