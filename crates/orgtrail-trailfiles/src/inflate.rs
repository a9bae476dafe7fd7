//! Streaming gzip inflation with SHA-256 of the inflated bytes.
//!
//! CloudTrail writes each file as one gzip member; data after it (a second member, junk)
//! makes the file invalid, as does a size beyond the caller's limit. Nothing is held in memory
//! beyond one buffer, unless the caller asks for the inflated bytes (digests, which are small).

use std::io::{BufRead, BufReader, Read};

use flate2::bufread::GzDecoder;
use orgtrail_crypto::hash::Sha256;

/// Why a gzip file could not be inflated.
#[derive(Debug, thiserror::Error)]
pub enum InflateError {
    #[error("not a valid gzip file: {0}")]
    Corrupt(#[source] std::io::Error),
    #[error("data after the end of the gzip member")]
    TrailingData,
    #[error("inflates to more than {limit} bytes")]
    TooLarge { limit: u64 },
}

const CHUNK: usize = 64 * 1024;

/// Inflates `input`, returning the SHA-256 of the inflated bytes and, when `keep` is set, the
/// bytes themselves. Refuses more than `limit` inflated bytes.
pub fn inflate_and_hash(
    input: impl Read,
    limit: u64,
    keep: bool,
) -> Result<([u8; 32], Vec<u8>), InflateError> {
    let mut gz = GzDecoder::new(BufReader::with_capacity(CHUNK, input));
    let mut hasher = Sha256::default();
    let mut kept = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = match gz.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(InflateError::Corrupt(e)),
        };
        total += n as u64;
        if total > limit {
            return Err(InflateError::TooLarge { limit });
        }
        hasher.update(&buf[..n]);
        if keep {
            kept.extend_from_slice(&buf[..n]);
        }
    }
    let mut rest = gz.into_inner();
    let trailing = rest.fill_buf().map_err(InflateError::Corrupt)?;
    if !trailing.is_empty() {
        return Err(InflateError::TrailingData);
    }
    Ok((hasher.finish(), kept))
}

/// A reader that inflates a log file as it is read (gzip, or plain JSON as it is) and hashes
/// the inflated bytes, for a reader that parses them in the same pass (the agent's sources:
/// one read of each object, no second download). Several gzip members are inflated one after
/// the other, as the agent's decoder does; CloudTrail writes one, so a file with more does not
/// hash to its digest's `hashValue`. After the parser is done, [`HashingInflater::finish`]
/// reads what it left (trailing whitespace) and returns the hash.
pub struct HashingInflater<R: Read> {
    inner: Inner<R>,
    hasher: Sha256,
    total: u64,
}

enum Inner<R: Read> {
    // Boxed: the decoder holds its inflate state inline (over 300 bytes with zlib-rs).
    Gzip(Box<flate2::bufread::MultiGzDecoder<BufReader<R>>>),
    Plain(BufReader<R>),
}

impl<R: Read> std::fmt::Debug for HashingInflater<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashingInflater")
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl<R: Read> HashingInflater<R> {
    /// Starts reading `input` (reads its first bytes to tell gzip from plain JSON).
    pub fn new(input: R) -> std::io::Result<Self> {
        let mut buf = BufReader::with_capacity(CHUNK, input);
        let gzip = loop {
            match buf.fill_buf() {
                Ok(head) => break head.starts_with(&[0x1f, 0x8b]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        let inner = if gzip {
            Inner::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(buf)))
        } else {
            Inner::Plain(buf)
        };
        Ok(HashingInflater {
            inner,
            hasher: Sha256::default(),
            total: 0,
        })
    }

    /// Inflated bytes read so far.
    pub fn inflated_bytes(&self) -> u64 {
        self.total
    }

    /// Reads the rest (at most `limit` more inflated bytes) and returns the SHA-256 of all the
    /// inflated bytes.
    pub fn finish(mut self, limit: u64) -> Result<[u8; 32], InflateError> {
        let mut buf = vec![0u8; CHUNK];
        let mut rest = 0u64;
        loop {
            let n = match self.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(InflateError::Corrupt(e)),
            };
            rest += n as u64;
            if rest > limit {
                return Err(InflateError::TooLarge { limit });
            }
        }
        Ok(self.hasher.finish())
    }
}

impl<R: Read> Read for HashingInflater<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = match &mut self.inner {
            Inner::Gzip(g) => g.read(out)?,
            Inner::Plain(p) => p.read(out)?,
        };
        self.hasher.update(&out[..n]);
        self.total += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gz(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn the_hashing_inflater_hashes_what_it_inflates_and_what_is_left() {
        let z = gz(b"abc");
        let mut r = HashingInflater::new(&z[..]).unwrap();
        let mut first = [0u8; 1];
        r.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"a");
        let h = r.finish(10).unwrap();
        assert_eq!(h, inflate_and_hash(&gz(b"abc")[..], 10, false).unwrap().0);
        let plain = HashingInflater::new(&b"abc"[..])
            .unwrap()
            .finish(10)
            .unwrap();
        assert_eq!(plain, h);
    }

    #[test]
    fn hashes_the_inflated_bytes() {
        let (h, kept) = inflate_and_hash(&gz(b"abc")[..], 10, true).unwrap();
        assert_eq!(crate::hex::encode(&h)[..8], *"ba7816bf");
        assert_eq!(kept, b"abc");
    }

    #[test]
    fn trailing_data_a_second_member_and_oversize_are_refused() {
        let mut junk = gz(b"abc");
        junk.extend_from_slice(b"x");
        assert!(matches!(
            inflate_and_hash(&junk[..], 10, false),
            Err(InflateError::TrailingData)
        ));
        let mut two = gz(b"abc");
        two.extend_from_slice(&gz(b"def"));
        assert!(matches!(
            inflate_and_hash(&two[..], 10, false),
            Err(InflateError::TrailingData)
        ));
        assert!(matches!(
            inflate_and_hash(&gz(b"abcdef")[..], 5, false),
            Err(InflateError::TooLarge { limit: 5 })
        ));
        assert!(matches!(
            inflate_and_hash(&b"plain text"[..], 100, false),
            Err(InflateError::Corrupt(_))
        ));
    }
}
