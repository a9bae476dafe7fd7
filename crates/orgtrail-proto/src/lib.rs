//! orgtrail's wire types, generated at build time from `proto/orgtrail/v1/*.proto` with protox
//! (no system `protoc`), and the conversions between them and `orgtrail-core` types.
//!
//! Handlers convert at the edge: nothing past a service module sees these `pb` types.

/// Generated code of package `orgtrail.v1`.
#[allow(
    missing_debug_implementations,
    unreachable_pub,
    clippy::all,
    clippy::unwrap_used,
    clippy::expect_used
)]
pub mod v1 {
    tonic::include_proto!("orgtrail.v1");
}

pub mod channel;

use orgtrail_core::{EventError, RejectKind};

/// Metadata keys by which the collector tells an agent its limits (in the response headers of
/// `Ingest.Push`, and in the trailers of a RESOURCE_EXHAUSTED status).
pub mod limits {
    /// The largest encoded `EventBatch` the collector decodes, bytes, after decompression.
    pub const MAX_MESSAGE_BYTES: &str = "orgtrail-max-message-bytes";
    /// The most events one `EventBatch` may hold.
    pub const MAX_BATCH_EVENTS: &str = "orgtrail-max-batch-events";
    /// The most leaf hashes one `PublicVerifyMessage` carries (32 bytes each: 128 KiB).
    pub const LEAVES_PER_MESSAGE: usize = 4096;
    /// The most checkpoints the collector names in a NOT_FOUND answer (below and above).
    pub const NEARBY_CHECKPOINTS: usize = 3;
}

impl v1::RejectReason {
    /// The reason as a metric label (snake case): `wrong_account`, ..., `unspecified`.
    pub fn label(self) -> &'static str {
        match self {
            v1::RejectReason::WrongAccount => "wrong_account",
            v1::RejectReason::AccountNotAllowed => "account_not_allowed",
            v1::RejectReason::TooLarge => "too_large",
            v1::RejectReason::NotJson => "not_json",
            v1::RejectReason::InvalidUtf8 => "invalid_utf8",
            v1::RejectReason::NotAnObject => "not_an_object",
            v1::RejectReason::MissingField => "missing_field",
            v1::RejectReason::InvalidField => "invalid_field",
            v1::RejectReason::TooDeep => "too_deep",
            v1::RejectReason::Unspecified => "unspecified",
        }
    }
}

impl From<RejectKind> for v1::RejectReason {
    fn from(k: RejectKind) -> Self {
        match k {
            RejectKind::InvalidUtf8 => v1::RejectReason::InvalidUtf8,
            RejectKind::NotJson => v1::RejectReason::NotJson,
            RejectKind::NotAnObject => v1::RejectReason::NotAnObject,
            RejectKind::MissingField => v1::RejectReason::MissingField,
            RejectKind::InvalidField => v1::RejectReason::InvalidField,
            RejectKind::TooLarge => v1::RejectReason::TooLarge,
            RejectKind::TooDeep => v1::RejectReason::TooDeep,
        }
    }
}

impl v1::Rejection {
    /// The rejection of the event at `index` of a batch, for a validation failure.
    pub fn invalid(index: u32, err: &EventError) -> Self {
        v1::Rejection {
            index,
            reason: v1::RejectReason::from(err.kind()) as i32,
            message: err.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn a_rejection_survives_the_wire_with_its_reason() {
        let err = orgtrail_core::CloudTrailEvent::parse(b"[1]".to_vec()).unwrap_err();
        let ack = v1::BatchAck {
            batch_id: 7,
            stored: 2,
            duplicates: 1,
            conflicts: 0,
            rejections: vec![v1::Rejection::invalid(3, &err)],
            conflict_indexes: vec![],
        };
        let back = v1::BatchAck::decode(&ack.encode_to_vec()[..]).unwrap();
        assert_eq!(back, ack);
        assert_eq!(back.rejections[0].reason(), v1::RejectReason::NotAnObject);
        assert_eq!(
            back.rejections[0].message,
            "event is an array, not a JSON object"
        );
    }
}
