//! Entry points for the fuzz targets in `fuzz/`: the ledger's on-disk value codecs, without a
//! store. Not a stable API.

use orgtrail_crypto::NONCE_LEN;

use crate::error::StoreError;
use crate::format::Reader;
use crate::index::Index;
use crate::ledger::next_record;

/// One record of a record block: segment, dictionary id, nonce, sealed bytes.
pub type BlockRecord<'a> = (u64, u32, [u8; NONCE_LEN], &'a [u8]);

/// Walks a record block (`r <first seq>`) record by record, with the layout and checks of
/// `Ledger::read` and `Ledger::for_each_record`.
pub fn record_block(block: &[u8]) -> Result<Vec<BlockRecord<'_>>, StoreError> {
    let mut r = Reader::new(block, "record block");
    if r.u8()? != 1 {
        return Err(StoreError::Corrupt("record block: unknown version".into()));
    }
    let count = r.u16()?;
    let mut out = Vec::new();
    for _ in 0..count {
        let rec = next_record(&mut r)?;
        out.push((rec.segment, rec.dict, rec.nonce, rec.ct));
    }
    Ok(out)
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
