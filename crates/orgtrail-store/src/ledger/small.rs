//! Small values a prepared event carries inline instead of on the heap: its blind index values
//! and its eventID.
//!
//! A prepared event is made on a preparer's thread and dropped on the writer's. With
//! mimalloc, freeing memory that another thread allocated goes through that thread's delayed
//! free list, which the allocating thread collects later: two such allocations per event
//! (a vector of blind values and a copy of the eventID) cost more than moving their bytes.
//! Values that do not fit (an event with many resources, a long eventID) go to the heap.

use crate::index::Blind;

/// Blind values held inline (an event is indexed under about 8-12 values).
const INLINE_BLINDS: usize = 12;

/// An event's distinct blind index values, in the order they were first pushed.
#[derive(Clone)]
pub(crate) enum Blinds {
    /// The first `len` values of the array.
    Inline(u8, [Blind; INLINE_BLINDS]),
    /// More values than the array holds.
    Heap(Vec<Blind>),
}

impl Default for Blinds {
    fn default() -> Self {
        Blinds::Inline(0, [[0u8; 16]; INLINE_BLINDS])
    }
}

impl Blinds {
    /// The values, in order.
    pub(crate) fn as_slice(&self) -> &[Blind] {
        match self {
            Blinds::Inline(len, a) => &a[..usize::from(*len)],
            Blinds::Heap(v) => v,
        }
    }

    /// Adds `b` unless it is already there.
    pub(crate) fn push_distinct(&mut self, b: Blind) {
        if self.as_slice().contains(&b) {
            return;
        }
        match self {
            Blinds::Inline(len, a) if usize::from(*len) < INLINE_BLINDS => {
                a[usize::from(*len)] = b;
                *len += 1;
            }
            Blinds::Inline(_, a) => {
                let mut v = Vec::with_capacity(INLINE_BLINDS * 2);
                v.extend_from_slice(a);
                v.push(b);
                *self = Blinds::Heap(v);
            }
            Blinds::Heap(v) => v.push(b),
        }
    }
}

impl PartialEq for Blinds {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl std::fmt::Debug for Blinds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blinds")
            .field("len", &self.as_slice().len())
            .finish_non_exhaustive()
    }
}

/// Bytes of an eventID held inline (CloudTrail's are 36-byte UUIDs).
const INLINE_ID: usize = 46;

/// An event's eventID.
pub(crate) enum EventIdBuf {
    /// The first `len` bytes of the array (whole UTF-8: copied from a `str` whole).
    Inline(u8, [u8; INLINE_ID]),
    /// Longer than the array.
    Heap(Box<str>),
}

impl EventIdBuf {
    pub(crate) fn new(id: &str) -> Self {
        let b = id.as_bytes();
        if b.len() <= INLINE_ID {
            let mut a = [0u8; INLINE_ID];
            a[..b.len()].copy_from_slice(b);
            // The length fits: INLINE_ID < 256.
            EventIdBuf::Inline(b.len() as u8, a)
        } else {
            EventIdBuf::Heap(id.into())
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            // Copied from a whole `str`, so always UTF-8 (checking 36 bytes costs nanoseconds).
            EventIdBuf::Inline(len, a) => {
                std::str::from_utf8(&a[..usize::from(*len)]).unwrap_or("")
            }
            EventIdBuf::Heap(s) => s,
        }
    }
}

impl PartialEq<str> for EventIdBuf {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

#[cfg(test)]
mod tests {
    use super::{Blinds, EventIdBuf, INLINE_BLINDS, INLINE_ID};

    /// Values keep their order and stay distinct, past the inline capacity too.
    #[test]
    fn blinds_keep_distinct_values_in_order_beyond_the_array() {
        for n in [
            0usize,
            1,
            INLINE_BLINDS - 1,
            INLINE_BLINDS,
            INLINE_BLINDS + 1,
            40,
        ] {
            let mut b = Blinds::default();
            let mut want: Vec<[u8; 16]> = Vec::new();
            for i in 0..n {
                let v = [i as u8; 16];
                // Every value pushed twice, and an early one again: kept once.
                b.push_distinct(v);
                b.push_distinct(v);
                b.push_distinct([0u8; 16]);
                want.push(v);
            }
            if n == 0 {
                assert!(b.as_slice().is_empty());
            } else {
                assert_eq!(b.as_slice(), &want[..], "{n} values");
            }
        }
    }

    /// Short and long eventIDs (multi-byte characters at the edge too) read back unchanged.
    #[test]
    fn event_ids_read_back_whole() {
        let edge = format!("{}é", "x".repeat(INLINE_ID - 2));
        let long = "é".repeat(INLINE_ID);
        for id in ["", "88cf8c57-bcb9-4feb-8f17-d992fd057364", &edge, &long] {
            let b = EventIdBuf::new(id);
            assert_eq!(b.as_str(), id);
            assert!(b == *id);
        }
    }
}
