//! The calls of events just stored, kept in memory for the feeder ([`crate::just_stored`]),
//! so that it feeds them without reading the events back from the ledger (decrypting,
//! decompressing and parsing them again).
//!
//! The ingest service takes each event's call from the fields its validation parsed
//! ([`entry`]): only what the detector reads (region, eventSource, eventName, minute,
//! readOnly, management, errorCode, userIdentity arn, userAgent), owned in one allocation,
//! with the account the event is filed under. An event the detector passes over (not a write
//! or error management call, an Insight event, one without `awsRegion`) is kept as passed
//! over, without a record: in ordinary traffic, most events.
//!
//! Memory is bounded by [`CAPACITY`] bytes; what is not kept is read back.

use orgtrail_core::{AccountId, EventFields};
use orgtrail_insights::{Call, CallRecord};

use crate::just_stored::{self, JustStored, Value};

/// The most bytes kept: about 40,000 counted calls of the generator's size.
pub(crate) const CAPACITY: usize = 8 << 20;

/// What the detector needs of one stored event.
#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) account: AccountId,
    pub(crate) call: CallRecord,
}

impl Value for Record {
    fn size(&self) -> usize {
        std::mem::size_of::<AccountId>() + self.call.size()
    }
}

/// What is kept of one stored event: its call, or that the detector passes over it.
pub(crate) type Entry = just_stored::Entry<Record, ()>;
/// What is kept from a sequence number on.
pub(crate) type Kept = just_stored::Kept<Record, ()>;
/// The cache.
pub(crate) type Recent = JustStored<Record, ()>;

/// A cache of [`CAPACITY`].
pub(crate) fn recent() -> Recent {
    Recent::new(CAPACITY)
}

/// The entry for a validated event of `account`, from the fields the validation parsed.
pub(crate) fn entry(account: AccountId, fields: &EventFields) -> Entry {
    match Call::from_fields(account.as_str(), fields) {
        Some(call) if call.is_counted() => Entry::Value(Record {
            account,
            call: CallRecord::of(&call),
        }),
        _ => Entry::Pass(()),
    }
}
