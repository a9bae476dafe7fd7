//! The agent spool's segment record codec (`orgtrail_agent::spool::fuzzing`): the record
//! header, CRC, chunk payload (`len u32 || bytes` per event) and mark payload.
//!
//! Input: the first byte is a flag; bit 0 set means "fix the CRCs": the harness walks the
//! records as framed (magic, kind, 3 zero bytes, first_seq u64, count u32, len u32, crc32
//! u32, payload) and writes the right CRC into each, so the fuzzer gets past the checksum
//! into the payload decoders. The rest is written to a file and scanned like a segment at
//! `Spool::open`, then every intact chunk is decoded as `Spool::chunk_from` does. The same
//! bytes are also decoded directly as a chunk payload (count from the first 4 bytes) and as
//! a mark. Properties: nothing panics or allocates beyond the input's size; the intact
//! records end within the file.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use orgtrail_agent::spool::fuzzing::{decode_chunk, decode_mark_payload, decode_segment};

const HEADER: usize = 28;

fn path() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        std::env::temp_dir().join(format!("orgtrail-fuzz-spool-{}.seg", std::process::id()))
    })
}

fn fix_crcs(seg: &mut [u8]) {
    let mut at = 0usize;
    while at + HEADER <= seg.len() {
        let len =
            u32::from_be_bytes([seg[at + 20], seg[at + 21], seg[at + 22], seg[at + 23]]) as usize;
        let Some(end) = (at + HEADER).checked_add(len).filter(|&e| e <= seg.len()) else {
            return;
        };
        let mut h = crc32fast::Hasher::new();
        h.update(&seg[at + 4..at + 24]);
        h.update(&seg[at + HEADER..end]);
        let crc = h.finalize().to_be_bytes();
        seg[at + 24..at + 28].copy_from_slice(&crc);
        at = end;
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flag, rest)) = data.split_first() else {
        return;
    };
    let mut seg = rest.to_vec();
    if flag & 1 == 1 {
        fix_crcs(&mut seg);
    }
    let p = path();
    std::fs::write(p, &seg).expect("write the segment file");
    if let Ok(s) = decode_segment(p) {
        assert!(s.good_end <= s.size && s.size == seg.len() as u64);
        assert!(s.marks <= s.records);
    }
    let _ = std::fs::remove_file(p);
    if rest.len() >= 4 {
        let count = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        if let Ok(events) = decode_chunk(&rest[4..], count) {
            assert_eq!(events.len(), count as usize);
            let total: usize = events.iter().map(|e| e.len() + 4).sum();
            assert!(total <= rest.len() - 4);
        }
    }
    if let Some((k, v)) = decode_mark_payload(rest) {
        assert_eq!(2 + k.len() + v.len(), rest.len());
    }
});
