//! The wire batch: prost decoding of an ingest `EventBatch`, then per event what the
//! collector's ingest service does before the ledger's writer (`prepare_batch` in
//! `orgtrail-collector/src/ingest.rs`): validate with the event size limit, check
//! `recipientAccountId` against the caller's account, and prepare (compress, blind-index) for
//! the ledger. Keep the per-event steps here in step with that function.
//! Properties: nothing panics; a decoded batch re-encodes to a batch that decodes equal;
//! every event is either prepared or rejected with a reason.
#![no_main]

use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use orgtrail_core::{AccountId, CloudTrailEvent, MAX_EVENT_BYTES};
use orgtrail_proto::v1::{BatchAck, EventBatch, Rejection};
use orgtrail_store::{Ledger, LedgerConfig, Preparer};
use prost::Message;

const ACCOUNT: &str = "123456789012";

/// A ledger in a directory that is removed at once (sled keeps its open files): only its
/// preparer is used, nothing is appended.
fn preparer() -> &'static Mutex<(Ledger, Preparer)> {
    static P: OnceLock<Mutex<(Ledger, Preparer)>> = OnceLock::new();
    P.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("orgtrail-fuzz-wire-{}", std::process::id()));
        let keys = orgtrail_crypto::Keyring::generate("2026-01-01T00:00:00Z").expect("keyring");
        let provider = std::sync::Arc::new(orgtrail_crypto::LocalKeyProvider::new(keys));
        let ledger = Ledger::open(&dir, provider, LedgerConfig::default()).expect("ledger");
        let _ = std::fs::remove_dir_all(&dir);
        let p = ledger.preparer();
        Mutex::new((ledger, p))
    })
}

fuzz_target!(|data: &[u8]| {
    // The agent's side of the stream: an acknowledgement.
    if let Ok(ack) = BatchAck::decode(data) {
        for r in &ack.rejections {
            let _ = (r.reason(), r.index as usize);
        }
    }
    let Ok(batch) = EventBatch::decode(data) else {
        return;
    };
    let again = EventBatch::decode(&batch.encode_to_vec()[..]).expect("re-encoded batch decodes");
    assert_eq!(again, batch);
    let account: AccountId = ACCOUNT.parse().expect("account id");
    let mut guard = preparer().lock().unwrap_or_else(|e| e.into_inner());
    let (_, preparer) = &mut *guard;
    let mut outcomes = 0usize;
    for (i, bytes) in batch.events.into_iter().enumerate() {
        let event = match CloudTrailEvent::parse_with_limit(bytes, MAX_EVENT_BYTES) {
            Ok(e) => e,
            Err(e) => {
                let r = Rejection::invalid(i as u32, &e);
                assert!(!r.message.is_empty());
                outcomes += 1;
                continue;
            }
        };
        if let Some(r) = &event.fields().recipient_account_id
            && r.parse::<AccountId>().ok() != Some(account)
        {
            outcomes += 1;
            continue;
        }
        match preparer.prepare(&event, account) {
            Ok(p) => {
                let _ = format!("{p:?}");
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
        outcomes += 1;
    }
    assert_eq!(outcomes, again.events.len());
});
