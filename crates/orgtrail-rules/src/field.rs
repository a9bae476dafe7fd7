//! One field-path layer for everything that reads a CloudTrail record: rules, trail selectors
//! and lookups name a field the same way, by its dotted path in the record (`eventName`,
//! `userIdentity.arn`, `resources.ARN`: `resources` is an array, so `resources.ARN` is the ARN
//! of each of its elements).
//!
//! A path is resolved in one of two ways, which must agree:
//!
//! * on a parsed record (JSON), by [`crate::leaf::leaves_at`] (and the engine's path trie):
//!   every scalar reached along the path, through every element of every array;
//! * on the fields orgtrail-core parses once per event ([`EventFields`]), without JSON, by
//!   [`RecordField`]: the agent's trail selectors decide on these, before an event is spooled.
//!
//! The test `record_fields_read_what_their_paths_hold` (tests/field_paths.rs) holds the two to
//! agreeing on every field of the shared corpus. Where orgtrail-core gives a field a meaning
//! of its own, it is said here: `eventCategory` is the effective category (`Management` for an
//! older record without one), the boolean fields read `true`/`false` as the selectors
//! compare them (leniently: some exports write `"True"`), and `resources.ARN` also reads an element's `arn` (some exports lowercase
//! it; a pattern names that one `resources.arn`).
//!
//! Values are compared through [`crate::leaf::str_op`], the comparison the pattern engine makes
//! of a string leaf for an exact value, a prefix or a suffix.

use orgtrail_core::{EventFields, Resource};

/// A field of a CloudTrail record that [`EventFields`] holds, named by its dotted path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordField {
    EventCategory,
    EventSource,
    EventName,
    EventType,
    ReadOnly,
    ResourcesType,
    ResourcesArn,
    UserIdentityArn,
    ErrorCode,
    SessionCredentialFromConsole,
    AwsRegion,
    RecipientAccountId,
    SourceIpAddress,
    UserAgent,
    ErrorMessage,
    UserIdentityType,
    UserIdentityAccountId,
    UserIdentityPrincipalId,
    UserIdentityUserName,
    ManagementEvent,
}

/// Every [`RecordField`] with its dotted path.
pub const RECORD_FIELDS: [(&str, RecordField); 20] = [
    ("eventCategory", RecordField::EventCategory),
    ("eventSource", RecordField::EventSource),
    ("eventName", RecordField::EventName),
    ("eventType", RecordField::EventType),
    ("readOnly", RecordField::ReadOnly),
    ("resources.type", RecordField::ResourcesType),
    ("resources.ARN", RecordField::ResourcesArn),
    ("userIdentity.arn", RecordField::UserIdentityArn),
    ("errorCode", RecordField::ErrorCode),
    (
        "sessionCredentialFromConsole",
        RecordField::SessionCredentialFromConsole,
    ),
    ("awsRegion", RecordField::AwsRegion),
    ("recipientAccountId", RecordField::RecipientAccountId),
    ("sourceIPAddress", RecordField::SourceIpAddress),
    ("userAgent", RecordField::UserAgent),
    ("errorMessage", RecordField::ErrorMessage),
    ("userIdentity.type", RecordField::UserIdentityType),
    ("userIdentity.accountId", RecordField::UserIdentityAccountId),
    (
        "userIdentity.principalId",
        RecordField::UserIdentityPrincipalId,
    ),
    ("userIdentity.userName", RecordField::UserIdentityUserName),
    ("managementEvent", RecordField::ManagementEvent),
];

fn bool_str(b: Option<bool>) -> Option<&'static str> {
    b.map(|b| if b { "true" } else { "false" })
}

impl RecordField {
    /// The field at a dotted path, if [`EventFields`] holds it.
    pub fn from_path(path: &str) -> Option<RecordField> {
        RECORD_FIELDS
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, f)| *f)
    }

    /// Its dotted path.
    pub fn path(self) -> &'static str {
        RECORD_FIELDS
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("?", |(p, _)| p)
    }

    /// Whether the field is one of each element of `resources[]` ([`RecordField::in_resource`]).
    pub fn is_resource(self) -> bool {
        matches!(self, RecordField::ResourcesType | RecordField::ResourcesArn)
    }

    /// Whether the field is a boolean (read as `true`/`false`).
    pub fn is_bool(self) -> bool {
        matches!(
            self,
            RecordField::ReadOnly
                | RecordField::SessionCredentialFromConsole
                | RecordField::ManagementEvent
        )
    }

    /// A boolean field's value; `None` for an absent one (or a field that is not boolean).
    #[inline]
    pub fn bool_in(self, f: &EventFields) -> Option<bool> {
        match self {
            RecordField::ReadOnly => f.read_only,
            RecordField::SessionCredentialFromConsole => f.session_credential_from_console,
            RecordField::ManagementEvent => f.management_event,
            _ => None,
        }
    }

    /// The field's value as a string (booleans as `true`/`false`); `None` when the event does
    /// not have it, and for the fields of `resources[]`, which have one value per element.
    #[inline]
    pub fn str_in(self, f: &EventFields) -> Option<&str> {
        let id = || f.user_identity.as_ref();
        match self {
            RecordField::EventCategory => Some(f.event_category.as_str()),
            RecordField::EventSource => Some(&f.event_source),
            RecordField::EventName => Some(&f.event_name),
            RecordField::EventType => f.event_type.as_deref(),
            RecordField::UserIdentityArn => id().and_then(|u| u.arn.as_deref()),
            RecordField::ErrorCode => f.error_code.as_deref(),
            RecordField::ReadOnly
            | RecordField::SessionCredentialFromConsole
            | RecordField::ManagementEvent => bool_str(self.bool_in(f)),
            RecordField::AwsRegion => f.aws_region.as_deref(),
            RecordField::RecipientAccountId => f.recipient_account_id.as_deref(),
            RecordField::SourceIpAddress => f.source_ip_address.as_deref(),
            RecordField::UserAgent => f.user_agent.as_deref(),
            RecordField::ErrorMessage => f.error_message.as_deref(),
            RecordField::UserIdentityType => id().and_then(|u| u.identity_type.as_deref()),
            RecordField::UserIdentityAccountId => id().and_then(|u| u.account_id.as_deref()),
            RecordField::UserIdentityPrincipalId => id().and_then(|u| u.principal_id.as_deref()),
            RecordField::UserIdentityUserName => id().and_then(|u| u.user_name.as_deref()),
            RecordField::ResourcesType | RecordField::ResourcesArn => None,
        }
    }

    /// A field of one element of `resources[]`; `None` for the other fields.
    #[inline]
    pub fn in_resource(self, r: &Resource) -> Option<&str> {
        match self {
            RecordField::ResourcesArn => r.arn.as_deref(),
            RecordField::ResourcesType => r.resource_type.as_deref(),
            _ => None,
        }
    }
}
