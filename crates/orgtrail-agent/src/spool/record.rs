//! Record framing, shared by segment files and the dead-letter file.
//!
//! ```text
//! magic "OTS2" | kind u8 | 0 0 0 | first_seq u64 | count u32 | len u32 | crc32 u32 | payload
//! payload = nonce (12) | AES-256-GCM(plaintext) | tag (16)
//! AAD     = "orgtrail-spool/2" | kind | first_seq | count
//! ```
//!
//! The CRC covers the header from `kind` on and the sealed payload, so a torn or damaged
//! record is found without the key; the AAD binds a record to its kind and sequence number,
//! so a record copied to another place does not open. Magic `OTS1` marks a record of the
//! earlier plain format (payload = plaintext): still read, never written.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use orgtrail_crypto::{DataKey, NONCE_LEN, TAG_LEN};

use super::{SpoolError, io};

pub(crate) const MAGIC_PLAIN: &[u8; 4] = b"OTS1";
pub(crate) const MAGIC_SEALED: &[u8; 4] = b"OTS2";
pub(crate) const HEADER: usize = 28;
pub(crate) const KIND_CHUNK: u8 = 1;
pub(crate) const KIND_MARK: u8 = 2;
pub(crate) const KIND_DEAD: u8 = 3;
/// No record is larger than this (a wire batch is capped far below it).
const MAX_RECORD: u32 = 256 << 20;
const AAD_LABEL: &[u8; 16] = b"orgtrail-spool/2";

/// A parsed record header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub(crate) sealed: bool,
    pub(crate) kind: u8,
    pub(crate) first_seq: u64,
    pub(crate) count: u32,
    pub(crate) len: u32,
    crc: u32,
}

fn aad(kind: u8, first_seq: u64, count: u32) -> [u8; 29] {
    let mut a = [0u8; 29];
    a[..16].copy_from_slice(AAD_LABEL);
    a[16] = kind;
    a[17..25].copy_from_slice(&first_seq.to_be_bytes());
    a[25..].copy_from_slice(&count.to_be_bytes());
    a
}

/// Appends one sealed record holding `plain` to `out`.
pub(crate) fn seal_record(
    key: &DataKey,
    kind: u8,
    first_seq: u64,
    count: u32,
    plain: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), SpoolError> {
    let start = out.len();
    let len = NONCE_LEN + plain.len() + TAG_LEN;
    let len32 = u32::try_from(len)
        .ok()
        .filter(|l| *l <= MAX_RECORD)
        .ok_or_else(|| SpoolError::Corrupt(format!("a record of {len} bytes is too large")))?;
    out.extend_from_slice(MAGIC_SEALED);
    out.extend_from_slice(&[kind, 0, 0, 0]);
    out.extend_from_slice(&first_seq.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&len32.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    let nonce_at = out.len();
    out.extend_from_slice(&[0; NONCE_LEN]);
    let nonce = key
        .seal_into(&aad(kind, first_seq, count), plain, out)
        .map_err(SpoolError::Seal)?;
    out[nonce_at..nonce_at + NONCE_LEN].copy_from_slice(&nonce);
    let mut h = crc32fast::Hasher::new();
    h.update(&out[start + 4..start + 24]);
    h.update(&out[start + HEADER..]);
    let crc = h.finalize().to_be_bytes();
    out[start + 24..start + 28].copy_from_slice(&crc);
    Ok(())
}

/// The plaintext of a record whose header is `hd` and whose stored payload is `payload`.
/// `Err(None)` means the record does not open under `key`.
pub(crate) fn open_payload(
    key: &DataKey,
    hd: &Header,
    payload: &[u8],
) -> Result<Vec<u8>, Option<SpoolError>> {
    if !hd.sealed {
        return Ok(payload.to_vec());
    }
    if payload.len() < NONCE_LEN + TAG_LEN {
        return Err(None);
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&payload[..NONCE_LEN]);
    key.open(
        &nonce,
        &aad(hd.kind, hd.first_seq, hd.count),
        &payload[NONCE_LEN..],
    )
    .map_err(|_| None)
}

pub(crate) fn parse_header(h: &[u8; HEADER]) -> Option<Header> {
    let sealed = match &h[..4] {
        m if m == MAGIC_SEALED => true,
        m if m == MAGIC_PLAIN => false,
        _ => return None,
    };
    let u32_at = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    let mut s = [0u8; 8];
    s.copy_from_slice(&h[8..16]);
    let hd = Header {
        sealed,
        kind: h[4],
        first_seq: u64::from_be_bytes(s),
        count: u32_at(16),
        len: u32_at(20),
        crc: u32_at(24),
    };
    (matches!(hd.kind, KIND_CHUNK | KIND_MARK | KIND_DEAD) && hd.len <= MAX_RECORD).then_some(hd)
}

/// What a scan of one file found.
#[derive(Debug)]
pub(crate) struct Scanned {
    /// Every intact record: its header, its offset, and its stored payload when `keep` asked
    /// for that kind.
    pub(crate) records: Vec<(Header, u64, Option<Vec<u8>>)>,
    /// Offset of the first byte that is not an intact record.
    pub(crate) good_end: u64,
    pub(crate) size: u64,
}

/// Reads the intact records at the start of `path` (CRC-checked, not opened).
pub(crate) fn scan(path: &Path, keep: impl Fn(u8) -> bool) -> Result<Scanned, SpoolError> {
    let file = File::open(path).map_err(io(path))?;
    let size = file.metadata().map_err(io(path))?.len();
    let mut f = std::io::BufReader::with_capacity(1 << 20, file);
    let mut records = Vec::new();
    let mut at = 0u64;
    let mut payload = Vec::new();
    while at + HEADER as u64 <= size {
        let mut h = [0u8; HEADER];
        if f.read_exact(&mut h).is_err() {
            break;
        }
        let Some(hd) = parse_header(&h) else { break };
        if at + HEADER as u64 + u64::from(hd.len) > size {
            break;
        }
        payload.resize(hd.len as usize, 0);
        if f.read_exact(&mut payload).is_err() {
            break;
        }
        let mut c = crc32fast::Hasher::new();
        c.update(&h[4..24]);
        c.update(&payload);
        if c.finalize() != hd.crc {
            break;
        }
        let kept = keep(hd.kind).then(|| payload.clone());
        records.push((hd, at, kept));
        at += HEADER as u64 + payload.len() as u64;
    }
    Ok(Scanned {
        records,
        good_end: at,
        size,
    })
}

/// True when the file at `path` starts with a sealed record.
pub(crate) fn starts_sealed(path: &Path) -> bool {
    let mut m = [0u8; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut m))
        .is_ok_and(|()| &m == MAGIC_SEALED)
}

impl Header {
    /// The header of a chunk record known from the spool's index.
    pub(crate) fn chunk(sealed: bool, first_seq: u64, count: u32, len: u32) -> Self {
        Header {
            sealed,
            kind: KIND_CHUNK,
            first_seq,
            count,
            len,
            crc: 0,
        }
    }
}
