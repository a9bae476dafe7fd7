//! The ledger's on-disk value codecs (`orgtrail_store::fuzzing`): record blocks
//! (`r <first seq>`), index chunks (`x <first seq>`, loaded as at open), segment values
//! (`s <segment>`), counter plaintexts (`n`/`N`, after AES-GCM), and the plaintext of an
//! opened version 2 record block; and the record log's locators (`r`/`h` values). The first
//! byte chooses the codec, the rest is the value.
//! Properties: nothing panics or allocates beyond the input's size; a record block's records
//! lie within it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orgtrail_store::fuzzing::{
    block_plaintext, counter_plain, index_chunk, locators, record_block, segment,
};

fuzz_target!(|data: &[u8]| {
    let Some((&which, value)) = data.split_first() else {
        return;
    };
    match which % 5 {
        0 => {
            if let Ok((_, parts)) = record_block(value) {
                // Each sealed part lies within the block, after its own header (24 bytes in a
                // version 2 block, 28 per record in a version 1 block).
                let sealed: usize = parts.iter().map(|r| 24 + r.3.len()).sum();
                assert!(3 + sealed <= value.len());
            }
            // The same bytes as the plaintext of an opened version 2 block.
            let count = u16::from(value.first().copied().unwrap_or(0));
            if let Ok(records) = block_plaintext(value, count) {
                assert_eq!(records.len(), usize::from(count));
                assert!(records.iter().map(|r| r.len()).sum::<usize>() <= value.len());
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
        3 => {
            // Locators of the record log: a located `h` value is 17 bytes, its leaves 32 each.
            if let Ok((_, n, Some((_, _, len)))) = locators(value) {
                assert_eq!(len, n * 32);
            }
        }
        _ => {
            if let Err(e) = counter_plain(value) {
                let _ = e.to_string();
            }
        }
    }
});
