//! Record blocks: the sealed events.
//!
//! # Record block, version 3 (written now for the events of a run; in the record log, where its group's `r <first seq u64 BE>` value locates it, see the `log` module)
//!
//! The header of version 2 (below) with version 3: version, count, segment, dictionary id,
//! nonce, then AES-256-GCM(plaintext) with its tag, under the AAD of [`block_aad`] with the
//! label `"orgtrail/blk/v3"`. The plaintext is one zstd frame (compressed with the named
//! dictionary, without dictionary id, with its content size) of: `count` LEB128 lengths, then
//! the `count` events' bytes. Decompression is bounded by `count` times (`MAX_EVENT_BYTES` +
//! 3), and the frame's content size must lie within it.
//!
//! A run is up to `block_records` events of one account prepared together (the bulk path:
//! `Preparer::prepare_batch`), compressed whole on the preparing thread: one frame costs less
//! CPU than one per event and compresses better (the events of one account share most of
//! their text). The writer seals a run as one version 3 block when the group stores all of
//! its events, consecutively, in one segment; otherwise (an event of it is a duplicate of one
//! stored before, or the events were appended apart) it compresses again the events that
//! follow each other in the group as a smaller run, and a lone one on its own into a version
//! 2 block (see `packing`). A lookup opens the block and decompresses the whole run.
//!
//! # Record block, version 2 (written for events prepared one at a time)
//!
//! | bytes | field |
//! |---|---|
//! | 1 | version, 2 |
//! | 2 | count of records (u16 BE, at least 1), seqs `first..first + count` |
//! | 8 | segment id (u64 BE): every record of a block is of this one segment, so one account |
//! | 4 | dictionary id (u32 BE, 0: none) every record of the block was compressed with |
//! | 12 | nonce |
//! | rest | AES-256-GCM(plaintext) with its 16-byte tag |
//!
//! The plaintext: `count` LEB128 lengths, then the `count` records, each one zstd frame of one
//! event's bytes (without dictionary id or content size in the frame header: the block names
//! the dictionary, and decompression is bounded by `MAX_EVENT_BYTES`). The block is sealed
//! once under the data key of its segment (see `segments`), with a random nonce and the AAD
//! of [`block_aad`]: `"orgtrail/blk/v2" || segment (u64 BE) || first seq (u64 BE) || count
//! (u16 BE) || account (12 ASCII digits) || dictionary id (u32 BE)`, 49 bytes. A block moved,
//! swapped, cut, or relabelled (segment, dictionary) fails to open as a whole.
//!
//! The writer gives the events of one account in a group commit consecutive sequence numbers
//! (in the order they came), so each account's events form runs; it cuts each run into
//! blocks of at most `block_records` records, breaking where the segment or dictionary
//! changes (and around a run, which is a version 3 block of its own). A block never spans
//! group commits: a group is wholly durable or absent. Each event is compressed on its own by
//! the preparers (off the writer thread); a lookup reads one block, opens it (AES-GCM over a
//! few KiB) and decompresses only its record.
//!
//! # Version 1 (read only)
//!
//! | bytes | field |
//! |---|---|
//! | 1 | version, 1 |
//! | 2 | count of records (u16 BE) |
//! | per record | segment id (u64 BE), dictionary id (u32 BE), nonce (12), length (u32 BE), then `length` bytes: AES-256-GCM(zstd(event bytes)) with its tag |
//!
//! Each record sealed on its own with the AAD of [`record_aad`]: `"orgtrail/rec/v1" || segment
//! || seq || account || dictionary id`, 47 bytes. Blocks held 8 consecutive records of any
//! accounts. Measured on the generator's events, version 2 takes 272 instead of 317 bytes per
//! event (the 44 bytes of per-record header, nonce and tag, less 2 bytes of length).

use std::ops::Range;
use std::sync::Arc;

use orgtrail_core::{AccountId, Timestamp};
use orgtrail_crypto::{DataKey, NONCE_LEN};

use super::{Ledger, Shared, be_u64};
use crate::error::StoreError;
use crate::format::{RECORDS, Reader, key, put_varint};
use crate::query::StoredEvent;

/// Blocks of per-record sealed records (read only).
const BLOCK_V1: u8 = 1;
/// Blocks sealed once, each record its own zstd frame (written for single events).
const BLOCK_V2: u8 = 2;
/// Blocks sealed once, one zstd frame for all their records (written for runs).
const BLOCK_V3: u8 = 3;
/// The AAD label of each block version.
const LABEL_V2: &[u8; 15] = b"orgtrail/blk/v2";
const LABEL_V3: &[u8; 15] = b"orgtrail/blk/v3";
/// Bytes before a version 2 block's ciphertext.
const V2_HEADER: usize = 1 + 2 + 8 + 4 + NONCE_LEN;

/// The AAD of a version 1 record at `seq` (layout in the module docs).
pub(super) fn record_aad(segment: u64, seq: u64, account: &AccountId, dict: u32) -> [u8; 47] {
    let mut aad = [0u8; 47];
    aad[..15].copy_from_slice(b"orgtrail/rec/v1");
    aad[15..23].copy_from_slice(&segment.to_be_bytes());
    aad[23..31].copy_from_slice(&seq.to_be_bytes());
    aad[31..43].copy_from_slice(account.as_str().as_bytes());
    aad[43..47].copy_from_slice(&dict.to_be_bytes());
    aad
}

/// The AAD of a version 2 or 3 block (layout in the module docs; `label` names the version).
pub(super) fn block_aad(
    label: &[u8; 15],
    segment: u64,
    first: u64,
    count: u16,
    account: &AccountId,
    dict: u32,
) -> [u8; 49] {
    let mut aad = [0u8; 49];
    aad[..15].copy_from_slice(label);
    aad[15..23].copy_from_slice(&segment.to_be_bytes());
    aad[23..31].copy_from_slice(&first.to_be_bytes());
    aad[31..33].copy_from_slice(&count.to_be_bytes());
    aad[33..45].copy_from_slice(account.as_str().as_bytes());
    aad[45..49].copy_from_slice(&dict.to_be_bytes());
    aad
}

/// The block being built: records of one segment and dictionary, consecutive seqs.
struct Open {
    first: u64,
    segment: u64,
    account: AccountId,
    dict: u32,
    key: Arc<DataKey>,
    count: u16,
    lens: Vec<u8>,
    records: Vec<u8>,
}

/// Builds the record blocks of a group commit, record by record (see the module docs).
pub(super) struct BlockEncoder {
    max: u16,
    open: Option<Open>,
    /// The buffers of the last block sealed, reused by the next one.
    spare: Option<(Vec<u8>, Vec<u8>)>,
    /// The plaintext being sealed, reused from block to block.
    plain: Vec<u8>,
}

impl BlockEncoder {
    /// Blocks of at most `max` records (at least 1, at most 65,535).
    pub(super) fn new(max: usize) -> Self {
        BlockEncoder {
            max: u16::try_from(max.max(1)).unwrap_or(u16::MAX),
            open: None,
            spare: None,
            plain: Vec::new(),
        }
    }

    /// Adds the record at `seq` of `segment` (whose data key is `key`), compressed with
    /// dictionary `dict`. Returns the block it closed, (first seq, value), when the record
    /// could not join the open one.
    pub(super) fn push(
        &mut self,
        seq: u64,
        segment: u64,
        account: &AccountId,
        dict: u32,
        key: &Arc<DataKey>,
        compressed: &[u8],
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let joins = self.open.as_ref().is_some_and(|o| {
            o.segment == segment
                && o.dict == dict
                && o.count < self.max
                && o.first + u64::from(o.count) == seq
        });
        let closed = if joins { None } else { self.finish()? };
        if self.open.is_none() {
            let (lens, records) = self.spare.take().unwrap_or_default();
            self.open = Some(Open {
                first: seq,
                segment,
                account: *account,
                dict,
                key: key.clone(),
                count: 0,
                lens,
                records,
            });
        }
        let Some(o) = self.open.as_mut() else {
            return Err(StoreError::Corrupt("no open record block".into()));
        };
        put_varint(&mut o.lens, compressed.len() as u64);
        o.records.extend_from_slice(compressed);
        o.count += 1;
        Ok(closed)
    }

    /// Seals the open block, if any: (first seq, value). The next record starts a new block.
    pub(super) fn finish(&mut self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let Some(mut o) = self.open.take() else {
            return Ok(None);
        };
        let plain = &mut self.plain;
        plain.clear();
        plain.extend_from_slice(&o.lens);
        plain.extend_from_slice(&o.records);
        o.lens.clear();
        o.records.clear();
        self.spare = Some((std::mem::take(&mut o.lens), std::mem::take(&mut o.records)));
        let place = Place {
            first: o.first,
            count: o.count,
            segment: o.segment,
            account: &o.account,
            dict: o.dict,
        };
        let v = seal_block(BLOCK_V2, &place, &o.key, &self.plain)?;
        Ok(Some((o.first, v)))
    }

    /// Seals a run (see the module docs) as a version 3 block at `place`: (first seq, value).
    /// The open block, if any, must have been finished first.
    pub(super) fn seal_run(
        &mut self,
        place: &Place<'_>,
        key: &DataKey,
        frame: &[u8],
    ) -> Result<(u64, Vec<u8>), StoreError> {
        debug_assert!(self.open.is_none());
        Ok((place.first, seal_block(BLOCK_V3, place, key, frame)?))
    }
}

/// What a version 2 or 3 block's header and AAD name: its records' first seq and count, their
/// segment, its account, and their dictionary.
pub(super) struct Place<'a> {
    pub(super) first: u64,
    pub(super) count: u16,
    pub(super) segment: u64,
    pub(super) account: &'a AccountId,
    pub(super) dict: u32,
}

/// A version 2 or 3 block's value: its header, then `plain` sealed under `key`.
fn seal_block(
    version: u8,
    at: &Place<'_>,
    key: &DataKey,
    plain: &[u8],
) -> Result<Vec<u8>, StoreError> {
    let mut v = Vec::with_capacity(V2_HEADER + plain.len() + orgtrail_crypto::TAG_LEN);
    v.push(version);
    v.extend_from_slice(&at.count.to_be_bytes());
    v.extend_from_slice(&at.segment.to_be_bytes());
    v.extend_from_slice(&at.dict.to_be_bytes());
    v.extend_from_slice(&[0u8; NONCE_LEN]);
    let label = if version == BLOCK_V3 {
        LABEL_V3
    } else {
        LABEL_V2
    };
    let aad = block_aad(label, at.segment, at.first, at.count, at.account, at.dict);
    let nonce = key.seal_into(&aad, plain, &mut v)?;
    v[V2_HEADER - NONCE_LEN..V2_HEADER].copy_from_slice(&nonce);
    Ok(v)
}

/// One record of a version 1 block, still sealed.
pub(crate) struct Sealed<'a> {
    pub(crate) segment: u64,
    pub(crate) dict: u32,
    pub(crate) nonce: [u8; NONCE_LEN],
    pub(crate) ct: &'a [u8],
}

/// Reads the next record of a version 1 block from `r`, which is past the block's version and
/// count.
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

/// A version 2 or 3 block (past its version and count), still sealed: its segment,
/// dictionary, nonce and ciphertext.
pub(crate) fn block_v2<'a>(r: &mut Reader<'a>) -> Result<Sealed<'a>, StoreError> {
    let segment = r.u64()?;
    let dict = r.u32()?;
    let nonce: [u8; NONCE_LEN] = r.array()?;
    let ct = r.rest();
    Ok(Sealed {
        segment,
        dict,
        nonce,
        ct,
    })
}

/// The `count` records of an opened version 2 block's plaintext (zstd frames), or of a
/// version 3 block's decompressed frame (events' bytes): `count` LEB128 lengths, then the
/// records.
pub(crate) fn block_records(plain: &[u8], count: u16) -> Result<Vec<&[u8]>, StoreError> {
    let mut r = Reader::new(plain, "record block");
    let mut lens = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        lens.push(usize::try_from(r.varint()?).unwrap_or(usize::MAX));
    }
    let mut out = Vec::with_capacity(lens.len());
    for len in lens {
        out.push(r.take(len)?);
    }
    if !r.done() {
        return Err(StoreError::Corrupt(
            "record block: bytes after its records".into(),
        ));
    }
    Ok(out)
}

impl Shared {
    /// Opens the version 1 record at `seq`: its segment's account and the event bytes.
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

    /// Opens a version 2 or 3 block of `count` records from `first` (decrypts it, and
    /// decompresses a version 3 block's run whole) and finds where each record lies in it:
    /// its segment's account and what [`OpenBlock::record`] takes each record from. `seq` names
    /// the record asked for in the error. The one way a block is opened, for a lookup's page
    /// ([`Ledger::read_many`]) and for a range ([`Ledger::for_each_record`]) alike.
    fn open_body(
        &self,
        version: u8,
        first: u64,
        count: u16,
        seq: u64,
        blk: &Sealed<'_>,
    ) -> Result<(AccountId, Body), StoreError> {
        let (account, key) = self.segment_key(blk.segment)?;
        let label = if version == BLOCK_V3 {
            LABEL_V3
        } else {
            LABEL_V2
        };
        let aad = block_aad(label, blk.segment, first, count, &account, blk.dict);
        let plain = key
            .open(&blk.nonce, &aad, blk.ct)
            .map_err(|source| StoreError::RecordOpen { seq, source })?;
        let body = if version == BLOCK_V3 {
            let run = self.decompress_run(blk.dict, &plain, count)?;
            let spans = record_spans(&run, count)?;
            Body::Run(run, spans)
        } else {
            let spans = record_spans(&plain, count)?;
            Body::EachCompressed {
                dict: blk.dict,
                plain,
                spans,
            }
        };
        Ok((account, body))
    }
}

/// A record block read and opened (see [`Ledger::read_many`]).
struct OpenBlock {
    first: u64,
    count: u16,
    /// The account of every record (versions 2 and 3); version 1 records name their own.
    account: Option<AccountId>,
    body: Body,
}

/// What an opened block holds of its records.
enum Body {
    /// Version 3: the decompressed run (lengths, then the events' bytes) and where each
    /// record lies in it (parsed once for all the records a page reads from the block).
    Run(Vec<u8>, Vec<Range<usize>>),
    /// Version 2: the plaintext, each record a zstd frame of its own, and where each lies.
    EachCompressed {
        dict: u32,
        plain: Vec<u8>,
        spans: Vec<Range<usize>>,
    },
    /// Version 1: the block as stored, each record sealed on its own.
    EachSealed(Vec<u8>),
}

impl OpenBlock {
    /// The (account, bytes) of record `seq`, which lies in this block.
    fn record(&self, sh: &Shared, seq: u64) -> Result<(AccountId, Vec<u8>), StoreError> {
        let missing = || StoreError::Corrupt(format!("record {seq} is missing"));
        let i = usize::try_from(seq - self.first).map_err(|_| missing())?;
        match (&self.body, &self.account) {
            (Body::Run(run, spans), Some(account)) => {
                let one = spans.get(i).and_then(|r| run.get(r.clone()));
                Ok((*account, one.ok_or_else(missing)?.to_vec()))
            }
            (Body::EachCompressed { dict, plain, spans }, Some(account)) => {
                let one = spans.get(i).and_then(|r| plain.get(r.clone()));
                Ok((*account, sh.decompress(*dict, one.ok_or_else(missing)?)?))
            }
            (Body::EachSealed(block), _) => {
                let mut r = Reader::new(block, "record block");
                r.u8()?;
                r.u16()?;
                for _ in 0..i {
                    next_record(&mut r)?;
                }
                sh.open_record(seq, &next_record(&mut r)?)
            }
            _ => Err(missing()),
        }
    }
}

/// Where each of the `count` records of `plain` (see [`block_records`]) lies in it.
fn record_spans(plain: &[u8], count: u16) -> Result<Vec<Range<usize>>, StoreError> {
    let base = plain.as_ptr() as usize;
    Ok(block_records(plain, count)?
        .into_iter()
        .map(|r| {
            let at = r.as_ptr() as usize - base;
            at..at + r.len()
        })
        .collect())
}

/// A record read (or why it could not be).
type Read = Result<(AccountId, Vec<u8>), StoreError>;
/// Takes each record of a block in turn, read on demand (see [`Ledger::for_each_record`]).
type Emit<'a> = dyn FnMut(u64, &mut dyn FnMut() -> Read) -> Result<(), StoreError> + 'a;

impl Ledger {
    /// Record blocks must cover sequence numbers 1..=n exactly, in order.
    pub(crate) fn record_layout_problems(&self, n: u64) -> Result<Vec<String>, StoreError> {
        let mut problems = Vec::new();
        let mut expected = 1u64;
        for kv in self.shared.tree()?.scan_prefix([RECORDS]) {
            let (k, v) = kv?;
            let first = be_u64(&k[1..])?;
            let count = crate::log::record_count(&v)?;
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
        let mut one = self.read_many(&[(None, seq)])?;
        one.pop()
            .ok_or_else(|| StoreError::Corrupt(format!("record {seq} is missing")))
    }

    /// The records `wanted` (seq, with its time when the caller has it from the index, in any
    /// order), each as [`Ledger::read`] answers it, in the order asked; the records of one block
    /// are read, opened and decompressed once (a lookup's page often holds several events of
    /// one run: an account's events stored together).
    pub fn read_many(&self, wanted: &[(Option<i64>, u64)]) -> Result<Vec<StoredEvent>, StoreError> {
        let mut order: Vec<usize> = (0..wanted.len()).collect();
        order.sort_unstable_by_key(|&i| wanted[i].1);
        let mut out: Vec<Option<StoredEvent>> = (0..wanted.len()).map(|_| None).collect();
        let mut at = 0;
        while let Some(&i) = order.get(at) {
            let block = self.open_block_of(wanted[i].1)?;
            while let Some(&j) = order.get(at) {
                let (time, seq) = wanted[j];
                if seq >= block.first + u64::from(block.count) {
                    break;
                }
                let (account, bytes) = block.record(&self.shared, seq)?;
                out[j] = Some(match time {
                    Some(t) => StoredEvent {
                        seq,
                        account,
                        time: Timestamp(t),
                        bytes,
                    },
                    None => self.stored_event(seq, account, bytes)?,
                });
                at += 1;
            }
        }
        out.into_iter()
            .zip(wanted)
            .map(|(e, &(_, seq))| {
                e.ok_or_else(|| StoreError::Corrupt(format!("record {seq} is missing")))
            })
            .collect()
    }

    /// The record block holding `seq`, read and opened.
    fn open_block_of(&self, seq: u64) -> Result<OpenBlock, StoreError> {
        let sh = &self.shared;
        let (block_key, block) = sh
            .tree()?
            .range(key(RECORDS, 0)..=key(RECORDS, seq))
            .next_back()
            .ok_or_else(|| StoreError::Corrupt(format!("record {seq} is missing")))??;
        if block_key.first() != Some(&RECORDS) {
            return Err(StoreError::Corrupt(format!("record {seq} is missing")));
        }
        let b = crate::log::blocks_of(be_u64(&block_key[1..])?, &block)?
            .into_iter()
            .rfind(|b| b.first <= seq)
            .filter(|b| seq < b.first + u64::from(b.count))
            .ok_or_else(|| StoreError::Corrupt(format!("record {seq} is missing")))?;
        let first = b.first;
        let block = sh.log.block(&b, &block)?;
        let mut r = Reader::new(&block, "record block");
        let version = r.u8()?;
        let count = r.u16()?;
        if seq >= first + u64::from(count) {
            return Err(StoreError::Corrupt(format!("record {seq} is missing")));
        }
        let (account, body) = match version {
            BLOCK_V2 | BLOCK_V3 => {
                let (account, body) =
                    sh.open_body(version, first, count, seq, &block_v2(&mut r)?)?;
                (Some(account), body)
            }
            // Each record is sealed on its own, naming its account: opened when asked.
            BLOCK_V1 => (None, Body::EachSealed(block.into_owned())),
            _ => {
                return Err(StoreError::Corrupt(format!(
                    "record block {first}: unknown version"
                )));
            }
        };
        Ok(OpenBlock {
            first,
            count,
            account,
            body,
        })
    }

    /// A record read and opened, with its time from the index.
    fn stored_event(
        &self,
        seq: u64,
        account: AccountId,
        bytes: Vec<u8>,
    ) -> Result<StoredEvent, StoreError> {
        let time = self
            .shared
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

    /// The records `first..=last`, in order, each as [`Ledger::read`] answers it, with each
    /// record block read and opened once for the range (a block holds up to 16 records, and
    /// [`Ledger::read`] opens the whole block for one).
    pub fn read_range(&self, first: u64, last: u64) -> Result<Vec<StoredEvent>, StoreError> {
        let mut out = Vec::with_capacity(
            usize::try_from(last.saturating_sub(first) + 1)
                .unwrap_or(0)
                .min(4096),
        );
        if first == 0 {
            return Err(StoreError::Corrupt("record 0 is missing".into()));
        }
        self.for_each_record(first, last, |seq, rec| {
            let (account, bytes) = rec?;
            out.push(self.stored_event(seq, account, bytes)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Calls `f` with every record in `first..=last`, in order, reading and opening each block
    /// once: the record's (account, bytes), or why it could not be read (a block that fails to
    /// open fails for each of its records). Blocks that are missing or out of place are
    /// reported by `record_layout_problems`, not here.
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
        // Hands `f` the record at `seq`, after reporting the ones skipped before it as missing;
        // records before `next` (overlapping blocks) or after `last` are left out.
        let mut emit = |seq: u64,
                        rec: &mut dyn FnMut() -> Result<(AccountId, Vec<u8>), StoreError>|
         -> Result<(), StoreError> {
            if seq < next || seq > last {
                return Ok(());
            }
            while next < seq {
                f(
                    next,
                    Err(StoreError::Corrupt(format!("record {next} is missing"))),
                )?;
                next += 1;
            }
            f(seq, rec())?;
            next = seq + 1;
            Ok(())
        };
        let values = tree.range(start..key(RECORDS, last.saturating_add(1)).to_vec());
        for kv in values {
            let (k, located) = kv?;
            for b in crate::log::blocks_of(be_u64(&k[1..])?, &located)? {
                if b.first > last || b.first + u64::from(b.count) <= first {
                    continue;
                }
                self.for_block(&b, &located, first, &mut emit)?;
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

    /// Hands `emit` each record of block `b` of the `r` value `located` (see
    /// [`Ledger::for_each_record`]).
    fn for_block(
        &self,
        b: &crate::log::BlockRef,
        located: &[u8],
        first: u64,
        emit: &mut Emit<'_>,
    ) -> Result<(), StoreError> {
        let sh = &self.shared;
        let block_first = b.first;
        let block = match sh.log.block(b, located) {
            Ok(b) => b,
            Err(e) => {
                // Its records are reported missing; the layout check names the block.
                tracing::warn!(first = block_first, error = %e, "a record block cannot be read");
                return Ok(());
            }
        };
        let mut r = Reader::new(&block, "record block");
        let version = r.u8()?;
        let count = r.u16()?;
        match version {
            BLOCK_V2 | BLOCK_V3 => {
                let end = block_first + u64::from(count);
                if end <= first {
                    return Ok(());
                }
                let blk = block_v2(&mut r)?;
                let asked = block_first.max(first);
                match sh.open_body(version, block_first, count, asked, &blk) {
                    Ok((account, body)) => {
                        let opened = OpenBlock {
                            first: block_first,
                            count,
                            account: Some(account),
                            body,
                        };
                        for seq in block_first..end {
                            emit(seq, &mut || opened.record(sh, seq))?;
                        }
                    }
                    Err(e) => {
                        let why = e.to_string();
                        let open_failed = matches!(e, StoreError::RecordOpen { .. });
                        for seq in block_first..end {
                            emit(seq, &mut || {
                                Err(if open_failed {
                                    StoreError::RecordOpen {
                                        seq,
                                        source: orgtrail_crypto::CryptoError::OpenFailed,
                                    }
                                } else {
                                    StoreError::Corrupt(format!("record {seq}: {why}"))
                                })
                            })?;
                        }
                    }
                }
            }
            BLOCK_V1 => {
                for i in 0..u64::from(count) {
                    let seq = block_first + i;
                    let rec = next_record(&mut r)?;
                    emit(seq, &mut || sh.open_record(seq, &rec))?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}
