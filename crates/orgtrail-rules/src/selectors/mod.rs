//! Trail event selectors: which events the agent ships, with CloudTrail's semantics.
//!
//! A trail's selectors are written in the agent's TOML (`[selectors]`, see [`SelectorConfig`]),
//! or pasted verbatim as the JSON that `aws cloudtrail get-event-selectors` prints (see
//! [`parse_aws_json`]). [`Selectors::compile`] checks them and reports every problem at once,
//! each with its location. The compiled [`Selectors`] decide per event without allocating
//! ([`Selectors::matches`]; about 130 ns for ten advanced selectors on one core, see
//! `orgtrail bench selectors`), and say why ([`Selectors::explain`]).
//!
//! They live beside the rules so that the agent (which applies them before spooling), the
//! CLI (`orgtrail selectors check`) and the collector share one field-path and matching layer:
//! a selector's field is a dotted path of the record resolved by [`crate::field::RecordField`]
//! (the same path a pattern names), and its values are compared by
//! [`crate::leaf::str_op`], the comparison the pattern engine makes of a string leaf
//! (`Equals` is an exact value, `StartsWith` a prefix, `EndsWith` a suffix). What differs from
//! a pattern is kept where CloudTrail says so: a negated operator passes an absent field, and
//! the category is the effective one (below).
//!
//! Modules: [`config`] reads the two ways of writing selectors (the agent's TOML and the
//! `get-event-selectors` JSON), `compile` checks them and builds [`Selectors`], `eval` decides
//! (and explains) per event.
//!
//! # Semantics
//!
//! References: AWS CloudTrail API Reference, `EventSelector`, `DataResource`,
//! `AdvancedEventSelector`, `AdvancedFieldSelector`; CloudTrail User Guide, "Logging data
//! events" (`logging-data-events-with-cloudtrail.md`).
//!
//! * **No selectors at all** (neither basic nor advanced): every event is shipped. This is the
//!   agent's default: ship everything, filter (if ever) in one place.
//! * **Region filter** (`regions`, an orgtrail addition): when given, an event whose
//!   `awsRegion` is not listed is filtered, whatever the selectors say. Absent means every
//!   region, as CloudTrail's best practice of a multi-Region trail recommends. An event without
//!   `awsRegion` is shipped: orgtrail never drops an audit record for lacking a field.
//! * **Basic and advanced are mutually exclusive** ("You cannot apply both event selectors and
//!   advanced event selectors to a trail", `EventSelector`).
//! * **Basic event selectors** (`EventSelector`): "if the event matches any event selector, the
//!   trail processes and logs the event". One selector matches
//!   - a management event when `IncludeManagementEvents` (default true) is set, the
//!     `ReadWriteType` fits, and `eventSource` is not in `ExcludeManagementEventSources`;
//!   - a data event when the `ReadWriteType` fits and some `DataResources` entry has the `Type`
//!     of one of the event's `resources[]` and a value matching that resource's ARN. Values are
//!     ARN prefixes (`DataResource.Values`): `arn:aws:s3` (or `arn:aws:s3:::`) selects every
//!     bucket, `arn:aws:s3:::bucket/` every object of a bucket, `arn:aws:s3:::bucket/images`
//!     the objects under a prefix, `arn:aws:lambda` every function and `arn:aws:dynamodb` every
//!     table. "Lambda function ARNs are exact": a complete function ARN (text after
//!     `:function:`) matches only that function, not `helloworld2` for `helloworld`; a complete
//!     table ARN (text after `:table/`) is treated the same way.
//!   - never a network activity event: those need advanced selectors.
//!
//!   `ReadWriteType` `All` (default) fits every event, `ReadOnly` an event with
//!   `readOnly: true`, `WriteOnly` one with `readOnly: false`; an event without `readOnly`
//!   fits only `All`.
//! * **Advanced event selectors**: selectors are OR'ed, the field selectors of one selector are
//!   AND'ed, and "for fields that accept an array (more than one value), CloudTrail adds an OR
//!   between values" (User Guide). `Equals`/`StartsWith`/`EndsWith` hold when any value
//!   matches; `NotEquals`/`NotStartsWith`/`NotEndsWith` ("excludes events that match") hold when
//!   no value matches. Several operators on one field are AND'ed. Comparison is exact and
//!   case-sensitive; there are no wildcards ("Selectors don't support the use of wildcards").
//!   - A field the event does not have (no `errorCode`, no `userIdentity.arn`, no `readOnly`)
//!     fails every positive operator and passes every negative one: the event does not match
//!     the excluded value, so it is not excluded.
//!   - `readOnly` and `sessionCredentialFromConsole` compare as the strings `true`/`false`.
//!   - `resources.type` and `resources.ARN` describe one resource: "the value must exactly
//!     match the ARN of a valid resource of the type you've specified ... as the value of
//!     `resources.type`" (`AdvancedFieldSelector`). So all resource conditions of a selector
//!     hold when **one element** of `resources[]` satisfies all of them together. This makes
//!     the documented exclusion (`resources.ARN NotStartsWith arn:aws:s3:::bucket/`) work: the
//!     bucket's own `AWS::S3::Bucket` element does not rescue the excluded object. An event
//!     without `resources[]` is treated as one resource without type or ARN.
//!   - `eventCategory` is required and takes only `Equals` (`Management`, `Data`,
//!     `NetworkActivity`); `readOnly` and `resources.type` take only `Equals`; a selector for
//!     data events needs `resources.type` (`AdvancedFieldSelector`).
//!     `sessionCredentialFromConsole` takes `Equals`/`NotEquals` with `true`/`false`. The other
//!     fields take any operator. CloudTrail offers some fields to event data stores only
//!     (e.g. `userIdentity.arn` on management events); the agent can evaluate every field on
//!     every category and accepts them.
//! * **Category of an event**: `eventCategory`; a record without it whose `managementEvent`
//!   is `false` is a data event (older eventVersions); otherwise orgtrail-core's default
//!   (`Management`) applies.
//! * **Insight events** are chosen by a trail's insight selectors, not its event selectors, so
//!   they are shipped unfiltered (only the region filter applies). So is an event of a category
//!   this version does not know, rather than lose it.
//!
//! Deliberately not enforced: CloudTrail's quotas (5 basic selectors, 250 data resources, 500
//! advanced values) and its short list of excludable management event sources; the agent does
//! not need those limits.

mod compile;
pub mod config;
mod eval;

pub use config::{
    AdvancedSelectorConfig, AwsAdvancedEventSelector, AwsDataResource, AwsEventSelector,
    AwsEventSelectors, AwsFieldSelector, BasicSelectorConfig, DataResourceConfig,
    FieldSelectorConfig, SelectorConfig, parse_aws_json, parse_aws_json_all,
};

use eval::Rules;

/// Compiled selectors: decide which events are shipped. See the module docs for the semantics.
#[derive(Debug, Clone)]
pub struct Selectors {
    regions: Option<Vec<Box<str>>>,
    rules: Rules,
}

impl Default for Selectors {
    /// No selectors, every region: every event is shipped.
    fn default() -> Self {
        Selectors {
            regions: None,
            rules: Rules::All,
        }
    }
}
