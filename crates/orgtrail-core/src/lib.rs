//! orgtrail's domain types: the CloudTrail event (its exact bytes plus the fields orgtrail
//! indexes and authorizes on), validation with precise reasons, and decoders for the input
//! shapes users have (delivered log files, JSON lines, single events).
//!
//! No I/O happens here beyond reading from a caller-supplied `Read`; no tokio, no sled.

pub mod config_toml;
mod decode;
mod error;
mod event;
mod ids;
pub mod interpolate;
mod lenient;
mod time;
pub mod units;

/// The string type of an event's short fields (see [`EventFields`]).
pub use compact_str::CompactString;
pub use decode::{
    DecodeError, DecodeLimits, Decoder, InputFormat, InputShape, Item, Position, decode_bytes,
};
pub use error::{EventError, RejectKind};
pub use event::{
    CloudTrailEvent, EventCategory, EventFields, Lenient, MAX_DEPTH, MAX_EVENT_BYTES, OtherTypes,
    Resource, UserIdentity, derived_event_id, parse_fields, uuid_from_digest,
};
pub use ids::{AccountId, AccountIdError};
pub use time::{Timestamp, TimestampError};
