//! Byte layouts of everything the ledger writes. See the crate docs for the overview.

use crate::error::StoreError;

/// 4: Merkle subtree hashes (`t`) stored from tiles of 4,096 leaves instead of 256 (see the
/// `tree` module); a format 2 or 3 store opens as it is (it holds every subtree of 4,096
/// leaves or more) and is marked 4 at its first writable open. 3: record blocks and leaf
/// hashes in the record log (`log/`, see the `log` module), sled keeping their locators; a
/// format 2 store's inline values are still read. 2: the index in run files (`i` entries,
/// `index/`), Merkle subtree hashes (`t`); format 1 kept every index chunk and rebuilt the
/// index in memory at open.
pub(crate) const FORMAT_VERSION: u32 = 4;

pub(crate) const META: u8 = b'm';
pub(crate) const SEGMENT: u8 = b's';
pub(crate) const RECORDS: u8 = b'r';
pub(crate) const CHUNK: u8 = b'x';
pub(crate) const CHECKPOINT: u8 = b'c';

pub(crate) fn key(prefix: u8, n: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = prefix;
    k[1..].copy_from_slice(&n.to_be_bytes());
    k
}

pub(crate) fn meta_key(name: &str) -> Vec<u8> {
    let mut k = vec![META];
    k.extend_from_slice(name.as_bytes());
    k
}

/// Appends `v` as an unsigned LEB128 integer.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A little reader over a byte slice that fails with a corruption error instead of panicking.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, pos: 0, what }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(e) => {
                let s = &self.buf[self.pos..e];
                self.pos = e;
                Ok(s)
            }
            None => Err(StoreError::Corrupt(format!(
                "{} truncated at byte {}",
                self.what, self.pos
            ))),
        }
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, StoreError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, StoreError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub(crate) fn i64(&mut self) -> Result<i64, StoreError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    /// An unsigned LEB128 integer.
    #[inline]
    pub(crate) fn varint(&mut self) -> Result<u64, StoreError> {
        // One byte, the common case (a counter row is seven of them, a count reads millions).
        if let Some(&b) = self.buf.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(u64::from(b));
        }
        self.varint_long()
    }

    fn varint_long(&mut self) -> Result<u64, StoreError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(StoreError::Corrupt(format!(
            "{}: integer too long",
            self.what
        )))
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Everything not read yet.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    pub(crate) fn done(&self) -> bool {
        self.pos == self.buf.len()
    }
}
