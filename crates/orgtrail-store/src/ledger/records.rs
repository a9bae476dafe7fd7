//! Record blocks: the sealed events.
//!
//! # `r <first seq u64 BE>` (record block value, version 1)
//!
//! | bytes | field |
//! |---|---|
//! | 1 | version, 1 |
//! | 2 | count of records (u16 BE), seqs `first..first + count` |
//! | per record | segment id (u64 BE), dictionary id (u32 BE, 0: none), nonce (12), length (u32 BE), then `length` bytes: AES-256-GCM(zstd(event bytes)) with its 16-byte tag |
//!
//! A record is sealed under the data key of its segment (see `segments`), with a random nonce
//! and the AAD of [`record_aad`]: `"orgtrail/rec/v1" || segment (u64 BE) || seq (u64 BE) ||
//! account (12 ASCII digits) || dictionary id (u32 BE)`, 47 bytes. A record moved, swapped or
//! relabelled fails to open. A group commit writes blocks of at most `block_records` records;
//! a lookup reads the one block holding its record.

use orgtrail_core::{AccountId, Timestamp};
use orgtrail_crypto::{DataKey, NONCE_LEN};

use super::{Ledger, Shared, be_u64};
use crate::error::StoreError;
use crate::format::{RECORDS, Reader, key};
use crate::query::StoredEvent;

/// The version byte of the record blocks written now.
const BLOCK_VERSION: u8 = 1;

/// The AAD of the record at `seq` (layout in the module docs).
pub(super) fn record_aad(segment: u64, seq: u64, account: &AccountId, dict: u32) -> [u8; 47] {
    let mut aad = [0u8; 47];
    aad[..15].copy_from_slice(b"orgtrail/rec/v1");
    aad[15..23].copy_from_slice(&segment.to_be_bytes());
    aad[23..31].copy_from_slice(&seq.to_be_bytes());
    aad[31..43].copy_from_slice(account.as_str().as_bytes());
    aad[43..47].copy_from_slice(&dict.to_be_bytes());
    aad
}

/// Builds the record blocks of a group commit, record by record.
pub(super) struct BlockEncoder {
    buf: Vec<u8>,
    first: u64,
    count: u16,
}

impl BlockEncoder {
    pub(super) fn new(first: u64) -> Self {
        BlockEncoder {
            buf: Vec::new(),
            first,
            count: 0,
        }
    }

    /// Records in the block being built.
    pub(super) fn records(&self) -> usize {
        usize::from(self.count)
    }

    /// Seals the record at `seq` (compressed with dictionary `dict`) under `key`, the data key
    /// of `segment`, and adds it to the block.
    pub(super) fn push(
        &mut self,
        seq: u64,
        segment: u64,
        account: &AccountId,
        dict: u32,
        key: &DataKey,
        compressed: &[u8],
    ) -> Result<(), StoreError> {
        let block = &mut self.buf;
        if self.count == 0 {
            block.clear();
            block.push(BLOCK_VERSION);
            block.extend_from_slice(&[0, 0]);
            self.first = seq;
        }
        block.extend_from_slice(&segment.to_be_bytes());
        block.extend_from_slice(&dict.to_be_bytes());
        let len_at = block.len() + NONCE_LEN;
        block.extend_from_slice(&[0u8; NONCE_LEN + 4]);
        let body_at = block.len();
        let nonce = key.seal_into(&record_aad(segment, seq, account, dict), compressed, block)?;
        let body_len = u32::try_from(block.len() - body_at)
            .map_err(|_| StoreError::Compression("record too large".into()))?;
        block[len_at - NONCE_LEN..len_at].copy_from_slice(&nonce);
        block[len_at..len_at + 4].copy_from_slice(&body_len.to_be_bytes());
        self.count += 1;
        Ok(())
    }

    /// The block built so far, (first seq, value), unless it is empty; the next record starts
    /// a new block.
    pub(super) fn finish(&mut self) -> Option<(u64, Vec<u8>)> {
        if self.count == 0 {
            return None;
        }
        self.buf[1..3].copy_from_slice(&self.count.to_be_bytes());
        self.count = 0;
        Some((self.first, std::mem::take(&mut self.buf)))
    }
}

/// One record of a block, still sealed.
pub(crate) struct Sealed<'a> {
    pub(crate) segment: u64,
    pub(crate) dict: u32,
    pub(crate) nonce: [u8; NONCE_LEN],
    pub(crate) ct: &'a [u8],
}

/// Reads the next record of a block from `r`, which is past the block's version and count.
pub(crate) fn next_record<'a>(r: &mut Reader<'a>) -> Result<Sealed<'a>, StoreError> {
    let segment = r.u64()?;
    let dict = r.u32()?;
    let nonce: [u8; NONCE_LEN] = r.array()?;
    let len = r.u32()? as usize;
    let ct = r.take(len)?;
    Ok(Sealed {
        segment,
        dict,
        nonce,
        ct,
    })
}

impl Shared {
    /// Opens the record at `seq`: its segment's account and the event bytes.
    fn open_record(&self, seq: u64, rec: &Sealed<'_>) -> Result<(AccountId, Vec<u8>), StoreError> {
        let (account, key) = self.segment_key(rec.segment)?;
        let compressed = key
            .open(
                &rec.nonce,
                &record_aad(rec.segment, seq, &account, rec.dict),
                rec.ct,
            )
            .map_err(|source| StoreError::RecordOpen { seq, source })?;
        Ok((account, self.decompress(rec.dict, &compressed)?))
    }
}

impl Ledger {
    /// Record blocks must cover sequence numbers 1..=n exactly, in order.
    pub(crate) fn record_layout_problems(&self, n: u64) -> Result<Vec<String>, StoreError> {
        let mut problems = Vec::new();
        let mut expected = 1u64;
        for kv in self.shared.tree()?.scan_prefix([RECORDS]) {
            let (k, v) = kv?;
            let first = be_u64(&k[1..])?;
            let mut r = Reader::new(&v, "record block");
            let _version = r.u8()?;
            let count = u64::from(r.u16()?);
            if first > n {
                problems.push(format!(
                    "records {first}..{} lie beyond the log's {n} events: they were inserted",
                    first + count - 1
                ));
            } else if first > expected {
                problems.push(format!("records {expected}..{} are missing", first - 1));
            } else if first < expected {
                problems.push(format!(
                    "records at {first} overlap records before {expected}: they were inserted"
                ));
            }
            expected = expected.max(first + count);
        }
        if expected <= n {
            problems.push(format!("records {expected}..{n} are missing"));
        }
        Ok(problems)
    }

    /// Reads and opens the record at `seq`.
    pub fn read(&self, seq: u64) -> Result<StoredEvent, StoreError> {
        let sh = &self.shared;
        let (block_key, block) = sh
            .tree()?
            .range(key(RECORDS, 0)..=key(RECORDS, seq))
            .next_back()
            .ok_or_else(|| StoreError::Corrupt(format!("record {seq} is missing")))??;
        if block_key.first() != Some(&RECORDS) {
            return Err(StoreError::Corrupt(format!("record {seq} is missing")));
        }
        let first = be_u64(&block_key[1..])?;
        let mut r = Reader::new(&block, "record block");
        if r.u8()? != BLOCK_VERSION {
            return Err(StoreError::Corrupt(format!(
                "record block {first}: unknown version"
            )));
        }
        let count = u64::from(r.u16()?);
        if seq >= first + count {
            return Err(StoreError::Corrupt(format!("record {seq} is missing")));
        }
        let mut rec = None;
        for i in 0..count {
            let sealed = next_record(&mut r)?;
            if first + i == seq {
                rec = Some(sealed);
                break;
            }
        }
        let rec = rec.ok_or_else(|| StoreError::Corrupt(format!("record {seq} is missing")))?;
        let (account, bytes) = sh.open_record(seq, &rec)?;
        let time = sh
            .index
            .read()
            .map_err(|_| StoreError::WriterGone)?
            .time_of(seq)?
            .ok_or_else(|| StoreError::Corrupt(format!("record {seq} has no index entry")))?;
        Ok(StoredEvent {
            seq,
            account,
            time: Timestamp(time),
            bytes,
        })
    }

    /// Calls `f` with every record in `first..=last`, in order, reading each block once: the
    /// record's (account, bytes), or why it could not be read. Blocks that are missing or out of
    /// place are reported by `record_layout_problems`, not here.
    pub(crate) fn for_each_record(
        &self,
        first: u64,
        last: u64,
        mut f: impl FnMut(u64, Result<(AccountId, Vec<u8>), StoreError>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let sh = &self.shared;
        let tree = sh.tree()?;
        let start = match tree
            .range(key(RECORDS, 0)..=key(RECORDS, first))
            .next_back()
        {
            Some(kv) => kv?.0.to_vec(),
            None => key(RECORDS, first).to_vec(),
        };
        let mut next = first;
        for kv in tree.range(start..key(RECORDS, last.saturating_add(1)).to_vec()) {
            let (k, block) = kv?;
            let block_first = be_u64(&k[1..])?;
            let mut r = Reader::new(&block, "record block");
            if r.u8()? != BLOCK_VERSION {
                continue;
            }
            let count = u64::from(r.u16()?);
            for i in 0..count {
                let seq = block_first + i;
                let rec = next_record(&mut r)?;
                if seq < next || seq > last {
                    continue;
                }
                while next < seq {
                    f(
                        next,
                        Err(StoreError::Corrupt(format!("record {next} is missing"))),
                    )?;
                    next += 1;
                }
                f(seq, sh.open_record(seq, &rec))?;
                next = seq + 1;
            }
        }
        while next <= last {
            f(
                next,
                Err(StoreError::Corrupt(format!("record {next} is missing"))),
            )?;
            next += 1;
        }
        Ok(())
    }
}
