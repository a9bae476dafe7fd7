//! Helpers shared by this crate's integration tests.

use orgtrail_core::{AccountId, CloudTrailEvent};

/// The account an event belongs to: its recipientAccountId (generated events all carry one).
pub(crate) fn account_of(e: &CloudTrailEvent) -> AccountId {
    e.fields()
        .recipient_account_id
        .as_ref()
        .unwrap()
        .parse()
        .unwrap()
}
