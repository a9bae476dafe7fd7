//! Decoders for the three input shapes users have:
//!
//! * a delivered CloudTrail log file, `{"Records":[...]}`, plain or gzip (`.json`, `.json.gz`);
//! * JSON lines, one event per line (streamed: memory stays bounded by the event size limit);
//! * a single event, possibly pretty-printed.
//!
//! [`Decoder`] detects the shape (or is told it), transparently gunzips, and yields one
//! [`Item`] per event with its position and either the parsed event or the reason it is not
//! valid. An error that makes the rest of the input unreadable (corrupt gzip, a log file that is
//! not JSON, a decompressed size over the limit) is a [`DecodeError`] and ends the iteration.
//!
//! Each event's bytes are exactly its JSON text in the input: the line without its line break
//! and surrounding whitespace, or the slice of the log file that holds that record.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::ops::Range;
use std::str::FromStr;

use flate2::bufread::MultiGzDecoder;
use serde::Deserialize;
use serde_json::value::RawValue;

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

/// Bounds on what a decoder will hold in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest event accepted; CloudTrail's limit is 256 KiB.
    pub max_event_bytes: usize,
    /// Largest whole document (a log file or a single event read at once), and the largest
    /// decompressed size of a gzip input. A gzip bomb stops here with an error.
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
    #[error("log file is not valid UTF-8 (invalid byte at offset {offset})")]
    InvalidUtf8 { offset: usize },
    #[error("log file is not valid JSON: {0}")]
    NotJson(EventError),
    #[error("log file's `Records` is not an array")]
    RecordsNotArray,
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

enum State<'r> {
    Lines {
        reader: Box<dyn BufRead + Send + 'r>,
        line_no: u64,
        pending: Option<(u64, Vec<u8>)>,
        done: bool,
    },
    Records {
        buf: Vec<u8>,
        ranges: std::vec::IntoIter<Range<usize>>,
        index: usize,
    },
    Single(Option<Vec<u8>>),
    Failed(Option<DecodeError>),
}

/// Iterates over the events of one input. See the module docs.
pub struct Decoder<'r> {
    state: State<'r>,
    shape: InputShape,
    gzip: bool,
    limits: DecodeLimits,
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
        let (part, found) = match chunk.iter().position(|&b| b == b'\n') {
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

#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(rename = "Records", borrow, default)]
    records: Option<&'a RawValue>,
}

impl<'r> Decoder<'r> {
    /// Starts decoding `reader`. Detection reads at most the first line (or, for a document,
    /// the whole document) before returning.
    pub fn new<R: Read + Send + 'r>(
        reader: R,
        format: InputFormat,
        limits: DecodeLimits,
    ) -> Result<Self, DecodeError> {
        let mut plain = BufReader::with_capacity(64 * 1024, reader);
        let head = plain.fill_buf().map_err(DecodeError::Io)?;
        let gzip = head.starts_with(&[0x1f, 0x8b]);
        let mut reader: Box<dyn BufRead + Send + 'r> = if gzip {
            Box::new(BufReader::with_capacity(
                64 * 1024,
                Limited {
                    inner: MultiGzDecoder::new(plain),
                    remaining: limits.max_document_bytes,
                },
            ))
        } else {
            Box::new(plain)
        };
        let mut d = Decoder {
            state: State::Failed(None),
            shape: InputShape::Event,
            gzip,
            limits,
        };
        if format == InputFormat::JsonLines {
            d.shape = InputShape::JsonLines;
            d.state = State::Lines {
                reader,
                line_no: 0,
                pending: None,
                done: false,
            };
            return Ok(d);
        }
        // Find the first non-blank line.
        let mut first = Vec::new();
        let mut line_no = 0u64;
        loop {
            match read_line_bounded(&mut *reader, &mut first, limits.max_document_bytes)
                .map_err(|e| d.io_error(e))?
            {
                LineRead::Eof => {
                    first.clear();
                    break;
                }
                LineRead::TooLong(_) => {
                    return Err(DecodeError::TooLarge {
                        limit: limits.max_document_bytes,
                    });
                }
                LineRead::Line => {
                    line_no += 1;
                    if !trim(&first).is_empty() {
                        break;
                    }
                }
            }
        }
        // Is there more than this line?
        let more = loop {
            let chunk = match reader.fill_buf() {
                Ok(c) => c,
                Err(e) => return Err(d.io_error(e)),
            };
            if chunk.is_empty() {
                break false;
            }
            if chunk.iter().any(|c| !c.is_ascii_whitespace()) {
                break true;
            }
            let n = chunk.len();
            reader.consume(n);
        };
        let lines_mode = format == InputFormat::Auto && more && {
            let t = trim(&first);
            match std::str::from_utf8(t) {
                Err(_) => true,
                Ok(s) => match serde_json::from_str::<&RawValue>(s) {
                    // A complete value on the first line: JSON lines, unless it is a log file.
                    Ok(_) => {
                        !s.starts_with('{')
                            || serde_json::from_str::<Probe<'_>>(s)
                                .map(|p| p.records.is_none())
                                .unwrap_or(true)
                    }
                    // An unfinished value: a pretty-printed document. A syntax error on the
                    // first line: judge each line on its own.
                    Err(e) => e.classify() != serde_json::error::Category::Eof,
                },
            }
        };
        if lines_mode {
            d.shape = InputShape::JsonLines;
            d.state = State::Lines {
                reader,
                line_no,
                pending: Some((line_no, first)),
                done: false,
            };
            return Ok(d);
        }
        // A whole document: the first line and everything after it, bounded.
        let mut doc = first;
        if more {
            doc.push(b'\n');
            let budget = limits.max_document_bytes.saturating_sub(doc.len() as u64);
            let mut limited = (&mut reader).take(budget.saturating_add(1));
            limited.read_to_end(&mut doc).map_err(|e| d.io_error(e))?;
            if doc.len() as u64 > limits.max_document_bytes {
                return Err(DecodeError::TooLarge {
                    limit: limits.max_document_bytes,
                });
            }
        }
        d.start_document(doc, format)?;
        Ok(d)
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

    fn start_document(&mut self, doc: Vec<u8>, format: InputFormat) -> Result<(), DecodeError> {
        let t = trim(&doc);
        let looks_like_object = t.first() == Some(&b'{');
        if format == InputFormat::Event || (format == InputFormat::Auto && !looks_like_object) {
            self.shape = InputShape::Event;
            self.state = State::Single(Some(t.to_vec()));
            return Ok(());
        }
        let text = match std::str::from_utf8(&doc) {
            Ok(s) => s,
            Err(e) if format == InputFormat::LogFile => {
                return Err(DecodeError::InvalidUtf8 {
                    offset: e.valid_up_to(),
                });
            }
            Err(_) => {
                self.shape = InputShape::Event;
                self.state = State::Single(Some(t.to_vec()));
                return Ok(());
            }
        };
        let probe = match serde_json::from_str::<Probe<'_>>(text) {
            Ok(p) => p,
            Err(e) if format == InputFormat::LogFile => {
                return Err(DecodeError::NotJson(EventError::from_json(e)));
            }
            Err(_) => {
                self.shape = InputShape::Event;
                self.state = State::Single(Some(t.to_vec()));
                return Ok(());
            }
        };
        let Some(records) = probe.records else {
            if format == InputFormat::LogFile {
                return Err(DecodeError::NotALogFile);
            }
            self.shape = InputShape::Event;
            self.state = State::Single(Some(t.to_vec()));
            return Ok(());
        };
        let list: Vec<&RawValue> =
            serde_json::from_str(records.get()).map_err(|_| DecodeError::RecordsNotArray)?;
        let base = text.as_ptr() as usize;
        let ranges: Vec<Range<usize>> = list
            .iter()
            .map(|r| {
                let start = r.get().as_ptr() as usize - base;
                start..start + r.get().len()
            })
            .collect();
        self.shape = InputShape::LogFile;
        self.state = State::Records {
            buf: doc,
            ranges: ranges.into_iter(),
            index: 0,
        };
        Ok(())
    }
}

impl Iterator for Decoder<'_> {
    type Item = Result<Item, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        let max_event = self.limits.max_event_bytes;
        let mut failure = None;
        let out = match &mut self.state {
            State::Failed(e) => return e.take().map(Err),
            State::Single(doc) => doc.take().map(|b| {
                Ok(Item {
                    position: Position::Document,
                    result: CloudTrailEvent::parse_with_limit(b, max_event),
                })
            }),
            State::Records { buf, ranges, index } => ranges.next().map(|r| {
                *index += 1;
                Ok(Item {
                    position: Position::Record(*index),
                    result: CloudTrailEvent::parse_with_limit(&buf[r], max_event),
                })
            }),
            State::Lines {
                reader,
                line_no,
                pending,
                done,
            } => {
                if let Some((n, line)) = pending.take() {
                    Some(Ok(Item {
                        position: Position::Line(n),
                        result: CloudTrailEvent::parse_with_limit(trim(&line), max_event),
                    }))
                } else if *done {
                    None
                } else {
                    // Room for surrounding whitespace; the event itself is checked exactly.
                    let cap = max_event as u64 + 4096;
                    let mut line = Vec::new();
                    loop {
                        match read_line_bounded(&mut **reader, &mut line, cap) {
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
                                let t = trim(&line);
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
