//! The ledger's on-disk value codecs (`orgtrail_store::fuzzing`): record blocks
//! (`r <first seq>`), index chunks (`x <first seq>`, loaded as at open), segment values
//! (`s <segment>`) and counter plaintexts (`n`/`N`, after AES-GCM). The first byte chooses the
//! codec, the rest is the value.
//! Properties: nothing panics or allocates beyond the input's size; a record block's records
//! lie within it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orgtrail_store::fuzzing::{counter_plain, index_chunk, record_block, segment};

fuzz_target!(|data: &[u8]| {
    let Some((&which, value)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            if let Ok(records) = record_block(value) {
                let sealed: usize = records.iter().map(|r| 28 + r.3.len()).sum();
                assert!(3 + sealed <= value.len());
            }
        }
        1 => {
            if let Ok(n) = index_chunk(value) {
                // Each event takes 32 bytes of the chunk.
                assert!(n * 32 <= value.len());
            }
        }
        2 => {
            if let Err(e) = segment(value) {
                let _ = e.to_string();
            }
        }
        _ => {
            if let Err(e) = counter_plain(value) {
                let _ = e.to_string();
            }
        }
    }
});
