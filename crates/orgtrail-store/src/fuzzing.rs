//! Entry points for the fuzz targets in `fuzz/`: the ledger's on-disk value codecs, without a
//! store. Not a stable API.

use orgtrail_crypto::NONCE_LEN;

use crate::error::StoreError;
use crate::format::Reader;
use crate::index::Index;
use crate::ledger::{block_records, block_v2, next_record};

/// One sealed part of a record block: segment, dictionary id, nonce, sealed bytes. A version 1
/// block has one per record; a version 2 or 3 block one for the whole block.
pub type BlockRecord<'a> = (u64, u32, [u8; NONCE_LEN], &'a [u8]);

/// Walks a record block (`r <first seq>`) with the layout and checks of `Ledger::read` and
/// `Ledger::for_each_record`: its version and count, then its sealed parts.
pub fn record_block(block: &[u8]) -> Result<(u16, Vec<BlockRecord<'_>>), StoreError> {
    let mut r = Reader::new(block, "record block");
    let version = r.u8()?;
    let count = r.u16()?;
    let mut out = Vec::new();
    match version {
        1 => {
            for _ in 0..count {
                let rec = next_record(&mut r)?;
                out.push((rec.segment, rec.dict, rec.nonce, rec.ct));
            }
        }
        2 | 3 => {
            let blk = block_v2(&mut r)?;
            out.push((blk.segment, blk.dict, blk.nonce, blk.ct));
        }
        _ => return Err(StoreError::Corrupt("record block: unknown version".into())),
    }
    Ok((count, out))
}

/// Splits the plaintext of an opened version 2 record block into its `count` records, as
/// `Ledger::read` does.
pub fn block_plaintext(plain: &[u8], count: u16) -> Result<Vec<&[u8]>, StoreError> {
    block_records(plain, count)
}

/// Loads one index chunk (`x <first seq>`) into an empty index as `Ledger::open` does; returns
/// how many events it holds.
pub fn index_chunk(chunk: &[u8]) -> Result<usize, StoreError> {
    let mut index = Index::default();
    crate::ledger::load_chunk(chunk, &mut index)?;
    Ok(index.len() as usize)
}

/// Decodes a segment value (`s <segment>`) as `Ledger::open` does; returns its day.
pub fn segment(value: &[u8]) -> Result<i64, StoreError> {
    crate::ledger::decode_segment(value).map(|(_, day, _, _)| day)
}

/// Decodes the plaintext of a counter value (`n`/`N`/`U` keys, after AES-GCM) as `stats` does;
/// returns how many rows it holds.
pub fn counter_plain(plain: &[u8]) -> Result<usize, StoreError> {
    crate::counts::Table::decode(plain).map(|t| t.rows())
}

/// Reads an `r` and an `h` value as the record log's locators, as every reader of those values
/// does first: (the first block's locator (file, offset, length), leaf count and where the
/// leaves are).
pub type Located = (Option<(u32, u64, u64)>, u64, Option<(u32, u64, u64)>);

/// Parses `value` as a located (or inline) `r` value and as an `h` value.
pub fn locators(value: &[u8]) -> Result<Located, StoreError> {
    let b = crate::log::blocks_of(0, value)?
        .first()
        .and_then(|b| b.loc)
        .map(|l| (l.file, l.offset, l.len));
    let n = crate::log::leaf_count(value)?;
    let h = crate::log::leaves_loc(value)?.map(|l| (l.file, l.offset, l.len));
    Ok((b, n, h))
}
