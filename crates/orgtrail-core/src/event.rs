//! The CloudTrail event: the exact bytes it arrived with, plus the fields orgtrail indexes and
//! authorizes on, parsed once.
//!
//! Invariant: [`CloudTrailEvent::bytes`] is always exactly the input given to
//! [`CloudTrailEvent::parse`]; nothing orgtrail learns about an event is ever written into it.

use std::borrow::Cow;

use compact_str::CompactString;
use serde::Deserialize;

use crate::error::EventError;
use crate::lenient::{JsonKind, LBool, LList, LObj, LStr, Seen, Val};
use crate::time::Timestamp;

/// CloudTrail's limit on the size of one event: 256 KiB.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// The deepest JSON nesting accepted in an event. Deeper input is refused with
/// [`EventError::TooDeep`] instead of exhausting the stack.
pub const MAX_DEPTH: usize = 128;

/// `eventCategory`. Absent in older records, where it means `Management` (or `Insight` for an
/// Insight event).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventCategory {
    Management,
    Data,
    Insight,
    NetworkActivity,
    /// A category this version of orgtrail does not know; kept, not refused, so that a new AWS
    /// category never loses events.
    Other(String),
}

impl EventCategory {
    /// The category as CloudTrail writes it.
    pub fn as_str(&self) -> &str {
        match self {
            EventCategory::Management => "Management",
            EventCategory::Data => "Data",
            EventCategory::Insight => "Insight",
            EventCategory::NetworkActivity => "NetworkActivity",
            EventCategory::Other(s) => s,
        }
    }

    fn from_name(s: &str) -> Self {
        match s {
            "Management" => EventCategory::Management,
            "Data" => EventCategory::Data,
            "Insight" => EventCategory::Insight,
            "NetworkActivity" => EventCategory::NetworkActivity,
            other => EventCategory::Other(other.to_owned()),
        }
    }
}

/// `userIdentity`: who made the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserIdentity {
    /// `type`: IAMUser, AssumedRole, Root, AWSService, FederatedUser, ...
    pub identity_type: Option<CompactString>,
    pub principal_id: Option<CompactString>,
    pub arn: Option<CompactString>,
    pub account_id: Option<CompactString>,
    pub access_key_id: Option<CompactString>,
    pub user_name: Option<CompactString>,
    /// `sessionContext.sessionIssuer.userName`: the role behind an assumed-role session.
    pub session_issuer_user_name: Option<CompactString>,
    /// `invokedBy`: the AWS service that made the request on the principal's behalf.
    pub invoked_by: Option<CompactString>,
}

/// One element of `resources[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resource {
    pub arn: Option<CompactString>,
    /// `type`, e.g. `AWS::S3::Object`.
    pub resource_type: Option<CompactString>,
    pub account_id: Option<CompactString>,
}

/// The fields of an event that orgtrail indexes, authorizes and filters on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFields {
    pub event_version: Option<CompactString>,
    /// `eventID`. Records of eventVersion 1.0 predate eventID; for them (and only them) a
    /// missing eventID is derived from the event's bytes, see [`derived_event_id`].
    pub event_id: String,
    /// True when `event_id` was derived, not read from the event.
    pub event_id_derived: bool,
    pub event_time: Timestamp,
    /// `eventName`, or `insightDetails.eventName` for an Insight event.
    pub event_name: CompactString,
    /// `eventSource`, or `insightDetails.eventSource` for an Insight event.
    pub event_source: CompactString,
    pub event_type: Option<CompactString>,
    pub event_category: EventCategory,
    /// `insightDetails.insightType` of an Insight event (`ApiCallRateInsight`,
    /// `ApiErrorRateInsight`); `None` for other events, and when it is not a string.
    pub insight_type: Option<CompactString>,
    pub aws_region: Option<CompactString>,
    /// As written in the event; `None` when absent. Which account an event belongs to is decided
    /// by the collector (this, else the sending agent's account), never by rewriting the bytes.
    pub recipient_account_id: Option<CompactString>,
    pub read_only: Option<bool>,
    pub management_event: Option<bool>,
    pub error_code: Option<CompactString>,
    pub error_message: Option<String>,
    pub source_ip_address: Option<CompactString>,
    pub user_agent: Option<String>,
    pub session_credential_from_console: Option<bool>,
    pub user_identity: Option<UserIdentity>,
    pub resources: Vec<Resource>,
    /// Names a forensic search looks for, without duplicates: the ARNs in `resources[]`, and
    /// identifiers in `requestParameters` (bucketName, instanceId(s), roleName, userName,
    /// dBInstanceIdentifier, functionName, keyId, ...) and in `responseElements.instancesSet`.
    pub resource_names: Vec<CompactString>,
    /// Which of the top-level fields read leniently (kept only when strings) the event has
    /// with a value of another type, null included: with it, `None` in one of those fields
    /// tells an absent member from one that is not a string.
    pub other_types: OtherTypes,
}

/// The top-level fields of [`EventFields`] that are kept only when they are strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lenient {
    EventType,
    AwsRegion,
    ErrorCode,
    ErrorMessage,
    SourceIpAddress,
    UserAgent,
}

impl Lenient {
    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of [`Lenient`] fields: those present with a value that is not a string.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OtherTypes(u8);

impl OtherTypes {
    pub fn contains(self, field: Lenient) -> bool {
        self.0 & field.bit() != 0
    }
}

impl EventFields {
    /// True for an Insight event (`insightDetails`, eventType `AwsCloudTrailInsight`).
    pub fn is_insight(&self) -> bool {
        self.event_category == EventCategory::Insight
    }

    /// The user name LookupEvents shows: `userName`, else the session name of an assumed role,
    /// else the issuing role's name, else `root` for the root user, else the invoking service.
    pub fn username(&self) -> Option<&str> {
        let id = self.user_identity.as_ref()?;
        if let Some(u) = &id.user_name {
            return Some(u);
        }
        if id.identity_type.as_deref() == Some("AssumedRole")
            && let Some(session) = id.arn.as_deref().and_then(|a| a.rsplit_once('/'))
        {
            return Some(session.1);
        }
        if let Some(u) = &id.session_issuer_user_name {
            return Some(u);
        }
        if id.identity_type.as_deref() == Some("Root") {
            return Some("root");
        }
        id.invoked_by.as_deref()
    }

    /// `resources[].type` values, without duplicates.
    pub fn resource_types(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for t in self
            .resources
            .iter()
            .filter_map(|r| r.resource_type.as_deref())
        {
            if !out.contains(&t) {
                out.push(t);
            }
        }
        out
    }
}

/// A CloudTrail event: its exact bytes, and the fields parsed from them once.
///
/// `Debug` shows the size of the bytes, never the bytes: audit payloads stay out of logs.
#[derive(Clone, PartialEq, Eq)]
pub struct CloudTrailEvent {
    bytes: Vec<u8>,
    fields: EventFields,
}

impl std::fmt::Debug for CloudTrailEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudTrailEvent")
            .field("len", &self.bytes.len())
            .field("event_id", &self.fields.event_id)
            .field("event_time", &self.fields.event_time)
            .field("event_name", &self.fields.event_name)
            .finish_non_exhaustive()
    }
}

impl CloudTrailEvent {
    /// Validates and parses one event, refusing events larger than [`MAX_EVENT_BYTES`].
    pub fn parse(bytes: impl Into<Vec<u8>>) -> Result<Self, EventError> {
        Self::parse_with_limit(bytes, MAX_EVENT_BYTES)
    }

    /// [`CloudTrailEvent::parse`] that hands the bytes back with the error (to keep them,
    /// e.g. as a dead letter, without copying every event).
    pub fn parse_or_return(bytes: Vec<u8>) -> Result<Self, (EventError, Vec<u8>)> {
        match parse_fields(&bytes, MAX_EVENT_BYTES) {
            Ok(fields) => Ok(CloudTrailEvent { bytes, fields }),
            Err(e) => Err((e, bytes)),
        }
    }

    /// Validates and parses one event with a custom size limit.
    pub fn parse_with_limit(
        bytes: impl Into<Vec<u8>>,
        max_bytes: usize,
    ) -> Result<Self, EventError> {
        let bytes = bytes.into();
        let fields = parse_fields(&bytes, max_bytes)?;
        Ok(CloudTrailEvent { bytes, fields })
    }

    /// The exact bytes the event arrived with.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Gives back the exact bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The parsed fields.
    pub fn fields(&self) -> &EventFields {
        &self.fields
    }

    /// Splits into bytes and fields.
    pub fn into_parts(self) -> (Vec<u8>, EventFields) {
        (self.bytes, self.fields)
    }
}

/// Validates `bytes` as one CloudTrail event and extracts its fields, without copying the bytes.
pub fn parse_fields(bytes: &[u8], max_bytes: usize) -> Result<EventFields, EventError> {
    if bytes.len() > max_bytes {
        return Err(EventError::TooLarge {
            size: bytes.len(),
            limit: max_bytes,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| EventError::InvalidUtf8 {
        offset: e.valid_up_to(),
    })?;
    check_depth(bytes)?;
    match text.trim_start().as_bytes().first() {
        Some(b'{') => {}
        None => return Err(EventError::Empty),
        Some(_) => {
            // Not an object: say what it is, if it is JSON at all.
            let v: Val<'_> = serde_json::from_str(text).map_err(EventError::from_json)?;
            let found = match v {
                Val::Str(_) => "a string",
                Val::Other(k) => k.name(),
            };
            return Err(EventError::NotAnObject { found });
        }
    }
    let raw: RawEvent<'_> = serde_json::from_str(text).map_err(EventError::from_json)?;
    raw.into_fields(bytes)
}

/// The eventID given to an eventVersion 1.0 record, which has none of its own: the first 128
/// bits of SHA-256 over the event's exact bytes, written as a UUID (version 8, "custom").
/// Identical bytes get the same id, so redelivered 1.0 records still deduplicate.
pub fn derived_event_id(bytes: &[u8]) -> String {
    use sha2::Digest;
    uuid_from_digest(&sha2::Sha256::digest(bytes).into())
}

/// The first 128 bits of a SHA-256 digest written as a UUID of version 8 ("custom"), the shape
/// of a CloudTrail eventID: the ids orgtrail derives ([`derived_event_id`], Insight events).
pub fn uuid_from_digest(digest: &[u8; 32]) -> String {
    use std::fmt::Write;
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        let _ = write!(s, "{byte:02x}");
    }
    s
}

/// Refuses JSON nested deeper than [`MAX_DEPTH`]. serde_json limits recursion only where it
/// builds values; the parts of an event we skip are skipped iteratively, at any depth, so the
/// bound is enforced here. Fast path: fewer opening brackets than the bound in the whole event
/// (true of nearly every real event) proves the depth without tracking strings.
fn check_depth(bytes: &[u8]) -> Result<(), EventError> {
    if count_openers(bytes) <= MAX_DEPTH {
        return Ok(());
    }
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(EventError::TooDeep { limit: MAX_DEPTH });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// How many `[` and `{` bytes there are. Counted in byte-wide lanes, 255 bytes at a time (a
/// lane cannot overflow), which the compiler turns into wide vector compares and adds: a
/// fifth of the cost of counting into `usize`, a cost paid on every event.
fn count_openers(bytes: &[u8]) -> usize {
    bytes
        .chunks(255)
        .map(|chunk| {
            let n = chunk.iter().fold(0u8, |n, &b| {
                n.wrapping_add(u8::from(b == b'[') + u8::from(b == b'{'))
            });
            usize::from(n)
        })
        .sum()
}

fn required<'a>(v: Option<Val<'a>>, field: &'static str) -> Result<Cow<'a, str>, EventError> {
    match v {
        None => Err(EventError::MissingField(field)),
        Some(Val::Str(s)) if s.is_empty() => Err(EventError::InvalidField {
            field,
            reason: "empty".into(),
        }),
        Some(Val::Str(s)) => Ok(s),
        Some(Val::Other(kind)) => Err(wrong_type(field, kind)),
    }
}

fn optional_strict<'a>(
    v: Option<Val<'a>>,
    field: &'static str,
) -> Result<Option<Cow<'a, str>>, EventError> {
    match v {
        None => Ok(None),
        Some(Val::Str(s)) => Ok(Some(s)),
        Some(Val::Other(kind)) => Err(wrong_type(field, kind)),
    }
}

fn wrong_type(field: &'static str, kind: JsonKind) -> EventError {
    EventError::InvalidField {
        field,
        reason: format!("expected a string, found {}", kind.name()),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawEvent<'a> {
    #[serde(rename = "eventVersion", borrow)]
    event_version: LStr<'a>,
    #[serde(rename = "eventID", borrow)]
    event_id: Option<Val<'a>>,
    #[serde(rename = "eventTime", borrow)]
    event_time: Option<Val<'a>>,
    #[serde(rename = "eventName", borrow)]
    event_name: Option<Val<'a>>,
    #[serde(rename = "eventSource", borrow)]
    event_source: Option<Val<'a>>,
    #[serde(rename = "eventType", borrow)]
    event_type: Seen<'a>,
    #[serde(rename = "eventCategory", borrow)]
    event_category: LStr<'a>,
    #[serde(rename = "awsRegion", borrow)]
    aws_region: Seen<'a>,
    #[serde(rename = "recipientAccountId", borrow)]
    recipient_account_id: Option<Val<'a>>,
    #[serde(rename = "readOnly")]
    read_only: LBool,
    #[serde(rename = "managementEvent")]
    management_event: LBool,
    #[serde(rename = "errorCode", borrow)]
    error_code: Seen<'a>,
    #[serde(rename = "errorMessage", borrow)]
    error_message: Seen<'a>,
    #[serde(rename = "sourceIPAddress", borrow)]
    source_ip_address: Seen<'a>,
    #[serde(rename = "userAgent", borrow)]
    user_agent: Seen<'a>,
    #[serde(rename = "sessionCredentialFromConsole")]
    session_credential_from_console: LBool,
    #[serde(rename = "userIdentity", borrow)]
    user_identity: LObj<RawIdentity<'a>>,
    #[serde(borrow)]
    resources: LList<LObj<RawResource<'a>>>,
    #[serde(rename = "requestParameters", borrow)]
    request_parameters: LObj<RawParams<'a>>,
    #[serde(rename = "responseElements", borrow)]
    response_elements: LObj<RawResponse<'a>>,
    #[serde(rename = "insightDetails", borrow)]
    insight_details: LObj<RawInsight<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawIdentity<'a> {
    #[serde(rename = "type", borrow)]
    identity_type: LStr<'a>,
    #[serde(rename = "principalId", borrow)]
    principal_id: LStr<'a>,
    #[serde(borrow)]
    arn: LStr<'a>,
    #[serde(rename = "accountId", borrow)]
    account_id: LStr<'a>,
    #[serde(rename = "accessKeyId", borrow)]
    access_key_id: LStr<'a>,
    #[serde(rename = "userName", borrow)]
    user_name: LStr<'a>,
    #[serde(rename = "invokedBy", borrow)]
    invoked_by: LStr<'a>,
    #[serde(rename = "sessionContext", borrow)]
    session_context: LObj<RawSessionContext<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawSessionContext<'a> {
    #[serde(rename = "sessionIssuer", borrow)]
    session_issuer: LObj<RawIssuer<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawIssuer<'a> {
    #[serde(rename = "userName", borrow)]
    user_name: LStr<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawResource<'a> {
    #[serde(rename = "ARN", alias = "arn", borrow)]
    arn: LStr<'a>,
    #[serde(rename = "type", borrow)]
    resource_type: LStr<'a>,
    #[serde(rename = "accountId", borrow)]
    account_id: LStr<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawItem<'a> {
    #[serde(rename = "instanceId", borrow)]
    instance_id: LStr<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawItems<'a> {
    #[serde(borrow)]
    items: LList<LObj<RawItem<'a>>>,
}

/// The identifiers in `requestParameters` that name the resource acted upon.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawParams<'a> {
    #[serde(rename = "bucketName", borrow)]
    bucket_name: LStr<'a>,
    #[serde(rename = "instanceId", borrow)]
    instance_id: LStr<'a>,
    #[serde(rename = "instanceIds", borrow)]
    instance_ids: LList<LStr<'a>>,
    #[serde(rename = "instancesSet", borrow)]
    instances_set: LObj<RawItems<'a>>,
    #[serde(rename = "roleName", borrow)]
    role_name: LStr<'a>,
    #[serde(rename = "userName", borrow)]
    user_name: LStr<'a>,
    #[serde(rename = "groupName", borrow)]
    group_name: LStr<'a>,
    #[serde(rename = "policyArn", borrow)]
    policy_arn: LStr<'a>,
    #[serde(rename = "roleArn", borrow)]
    role_arn: LStr<'a>,
    #[serde(rename = "dBInstanceIdentifier", borrow)]
    db_instance: LStr<'a>,
    #[serde(rename = "dBClusterIdentifier", borrow)]
    db_cluster: LStr<'a>,
    #[serde(rename = "dBSnapshotIdentifier", borrow)]
    db_snapshot: LStr<'a>,
    #[serde(rename = "functionName", borrow)]
    function_name: LStr<'a>,
    #[serde(rename = "keyId", borrow)]
    key_id: LStr<'a>,
    #[serde(rename = "groupId", borrow)]
    group_id: LStr<'a>,
    #[serde(rename = "topicArn", borrow)]
    topic_arn: LStr<'a>,
    #[serde(rename = "queueUrl", borrow)]
    queue_url: LStr<'a>,
    #[serde(rename = "secretId", borrow)]
    secret_id: LStr<'a>,
    #[serde(rename = "tableName", borrow)]
    table_name: LStr<'a>,
    #[serde(rename = "logGroupName", borrow)]
    log_group_name: LStr<'a>,
    #[serde(rename = "stackName", borrow)]
    stack_name: LStr<'a>,
    #[serde(rename = "trailName", borrow)]
    trail_name: LStr<'a>,
    #[serde(rename = "volumeId", borrow)]
    volume_id: LStr<'a>,
    #[serde(rename = "snapshotId", borrow)]
    snapshot_id: LStr<'a>,
    #[serde(rename = "imageId", borrow)]
    image_id: LStr<'a>,
    #[serde(rename = "vpcId", borrow)]
    vpc_id: LStr<'a>,
    #[serde(borrow)]
    name: LStr<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawResponse<'a> {
    #[serde(rename = "instancesSet", borrow)]
    instances_set: LObj<RawItems<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawInsight<'a> {
    #[serde(rename = "eventSource", borrow)]
    event_source: LStr<'a>,
    #[serde(rename = "eventName", borrow)]
    event_name: LStr<'a>,
    #[serde(rename = "insightType", borrow)]
    insight_type: LStr<'a>,
}

fn push_name(out: &mut Vec<CompactString>, name: LStr<'_>) {
    if let Some(n) = name.0
        && !n.is_empty()
        && !out.iter().any(|o| *o == *n)
    {
        out.push(CompactString::from(n));
    }
}

fn push_items(out: &mut Vec<CompactString>, items: LObj<RawItems<'_>>) {
    if let Some(set) = items.0 {
        for item in set.items.0.into_iter().filter_map(|i| i.0) {
            push_name(out, item.instance_id);
        }
    }
}

impl<'a> RawEvent<'a> {
    fn into_fields(self, bytes: &[u8]) -> Result<EventFields, EventError> {
        let event_version = self.event_version.compact();
        let pre_event_id = matches!(event_version.as_deref(), Some("1.0" | "1.00"));
        let (event_id, event_id_derived) = match self.event_id {
            None if pre_event_id => (derived_event_id(bytes), true),
            v => (required(v, "eventID")?.into_owned(), false),
        };
        let time_text = required(self.event_time, "eventTime")?;
        let event_time = Timestamp::parse(&time_text).map_err(|e| EventError::InvalidField {
            field: "eventTime",
            reason: e.to_string(),
        })?;
        let mut other_types = OtherTypes::default();
        let mut lenient = |v: Seen<'a>, field: Lenient| -> Option<Cow<'a, str>> {
            match v.0 {
                None => None,
                Some(Val::Str(s)) => Some(s),
                Some(Val::Other(_)) => {
                    other_types.0 |= field.bit();
                    None
                }
            }
        };
        let event_type = lenient(self.event_type, Lenient::EventType).map(CompactString::from);
        let aws_region = lenient(self.aws_region, Lenient::AwsRegion).map(CompactString::from);
        let error_code = lenient(self.error_code, Lenient::ErrorCode).map(CompactString::from);
        let error_message = lenient(self.error_message, Lenient::ErrorMessage).map(Cow::into_owned);
        let source_ip_address =
            lenient(self.source_ip_address, Lenient::SourceIpAddress).map(CompactString::from);
        let user_agent = lenient(self.user_agent, Lenient::UserAgent).map(Cow::into_owned);
        let insight = self.insight_details.0;
        let is_insight = insight.is_some() || event_type.as_deref() == Some("AwsCloudTrailInsight");
        let (insight_source, insight_name, insight_type) = match insight {
            Some(i) => (i.event_source.0, i.event_name.0, i.insight_type.compact()),
            None => (None, None, None),
        };
        let event_source = match optional_strict(self.event_source, "eventSource")? {
            Some(s) => CompactString::from(s),
            None => match insight_source {
                Some(s) if is_insight => CompactString::from(s),
                _ => return Err(EventError::MissingField("eventSource")),
            },
        };
        let event_name = match optional_strict(self.event_name, "eventName")? {
            Some(s) => CompactString::from(s),
            None => match insight_name {
                Some(s) if is_insight => CompactString::from(s),
                _ => return Err(EventError::MissingField("eventName")),
            },
        };
        let recipient_account_id =
            optional_strict(self.recipient_account_id, "recipientAccountId")?
                .map(CompactString::from);
        let event_category = match self.event_category.0 {
            Some(c) => EventCategory::from_name(&c),
            None if is_insight => EventCategory::Insight,
            None => EventCategory::Management,
        };

        let mut resources = Vec::new();
        let mut resource_names = Vec::new();
        for r in self.resources.0.into_iter().filter_map(|r| r.0) {
            let arn = r.arn.compact();
            if let Some(a) = &arn
                && !resource_names.contains(a)
            {
                resource_names.push(a.clone());
            }
            resources.push(Resource {
                arn,
                resource_type: r.resource_type.compact(),
                account_id: r.account_id.compact(),
            });
        }
        if let Some(p) = self.request_parameters.0 {
            let out = &mut resource_names;
            push_name(out, p.bucket_name);
            push_name(out, p.instance_id);
            for id in p.instance_ids.0 {
                push_name(out, id);
            }
            push_items(out, p.instances_set);
            for n in [
                p.role_name,
                p.user_name,
                p.group_name,
                p.policy_arn,
                p.role_arn,
                p.db_instance,
                p.db_cluster,
                p.db_snapshot,
                p.function_name,
                p.key_id,
                p.group_id,
                p.topic_arn,
                p.queue_url,
                p.secret_id,
                p.table_name,
                p.log_group_name,
                p.stack_name,
                p.trail_name,
                p.volume_id,
                p.snapshot_id,
                p.image_id,
                p.vpc_id,
                p.name,
            ] {
                push_name(out, n);
            }
        }
        if let Some(r) = self.response_elements.0 {
            push_items(&mut resource_names, r.instances_set);
        }

        let user_identity = self.user_identity.0.map(|u| UserIdentity {
            identity_type: u.identity_type.compact(),
            principal_id: u.principal_id.compact(),
            arn: u.arn.compact(),
            account_id: u.account_id.compact(),
            access_key_id: u.access_key_id.compact(),
            user_name: u.user_name.compact(),
            session_issuer_user_name: u
                .session_context
                .0
                .and_then(|c| c.session_issuer.0)
                .and_then(|i| i.user_name.compact()),
            invoked_by: u.invoked_by.compact(),
        });

        Ok(EventFields {
            event_version,
            event_id,
            event_id_derived,
            event_time,
            event_name,
            event_source,
            event_type,
            event_category,
            insight_type,
            other_types,
            aws_region,
            recipient_account_id,
            read_only: self.read_only.0,
            management_event: self.management_event.0,
            error_code,
            error_message,
            source_ip_address,
            user_agent,
            session_credential_from_console: self.session_credential_from_console.0,
            user_identity,
            resources,
            resource_names,
        })
    }
}

#[cfg(test)]
mod count_tests {
    /// The lane count equals a plain count, across chunk boundaries and at full lanes.
    #[test]
    fn openers_are_counted_exactly() {
        for (len, every) in [
            (0usize, 1usize),
            (1, 1),
            (254, 1),
            (255, 1),
            (256, 1),
            (5000, 1),
            (5000, 3),
            (70_000, 7),
        ] {
            let bytes: Vec<u8> = (0..len)
                .map(|i| match i % (2 * every) {
                    0 => b'[',
                    x if x == every => b'{',
                    _ => b'a',
                })
                .collect();
            let want = bytes.iter().filter(|&&b| b == b'[' || b == b'{').count();
            assert_eq!(
                super::count_openers(&bytes),
                want,
                "{len} bytes, every {every}"
            );
        }
    }
}
