//! Why an event or an input was refused.
//!
//! Messages name positions, field names and limits, never event content: they end up in logs,
//! dead-letter records and gRPC statuses.

use crate::event::MAX_DEPTH;

/// Why one event is not a valid CloudTrail event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("event is {size} bytes, larger than the limit of {limit} bytes (CloudTrail's 256 KiB)")]
    TooLarge { size: usize, limit: usize },
    #[error("event is not valid UTF-8 (invalid byte at offset {offset})")]
    InvalidUtf8 { offset: usize },
    #[error("event is empty")]
    Empty,
    #[error("event is not JSON: {detail}")]
    NotJson { detail: String },
    #[error("event nests JSON deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("event is {found}, not a JSON object")]
    NotAnObject { found: &'static str },
    #[error("event has the field `{field}` more than once")]
    DuplicateField { field: String },
    #[error("event has no `{0}`")]
    MissingField(&'static str),
    #[error("event's `{field}` is invalid: {reason}")]
    InvalidField { field: &'static str, reason: String },
}

/// A stable, coarse classification of [`EventError`], for metrics and the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectKind {
    InvalidUtf8,
    NotJson,
    NotAnObject,
    MissingField,
    InvalidField,
    TooLarge,
    TooDeep,
}

impl EventError {
    /// The coarse kind of this error.
    pub fn kind(&self) -> RejectKind {
        match self {
            EventError::TooLarge { .. } => RejectKind::TooLarge,
            EventError::InvalidUtf8 { .. } => RejectKind::InvalidUtf8,
            EventError::Empty | EventError::NotJson { .. } => RejectKind::NotJson,
            EventError::TooDeep { .. } => RejectKind::TooDeep,
            EventError::NotAnObject { .. } => RejectKind::NotAnObject,
            EventError::DuplicateField { .. } | EventError::InvalidField { .. } => {
                RejectKind::InvalidField
            }
            EventError::MissingField(_) => RejectKind::MissingField,
        }
    }

    /// Maps a serde_json error without quoting any content.
    pub(crate) fn from_json(e: serde_json::Error) -> Self {
        use serde_json::error::Category;
        let (line, column) = (e.line(), e.column());
        let msg = e.to_string();
        if msg.starts_with("recursion limit exceeded") {
            return EventError::TooDeep { limit: MAX_DEPTH };
        }
        match e.classify() {
            Category::Eof => EventError::NotJson {
                detail: format!("unexpected end of input at line {line} column {column}"),
            },
            Category::Syntax | Category::Io => EventError::NotJson {
                detail: format!("syntax error at line {line} column {column}"),
            },
            Category::Data => {
                // The only data errors our lenient decoders can raise are duplicate keys.
                if let Some(rest) = msg.strip_prefix("duplicate field `") {
                    let field = rest.split('`').next().unwrap_or_default().to_owned();
                    EventError::DuplicateField { field }
                } else {
                    EventError::NotJson {
                        detail: format!("unexpected structure at line {line} column {column}"),
                    }
                }
            }
        }
    }
}
