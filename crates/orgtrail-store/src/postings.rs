//! A posting list: the ascending sequence numbers of the events that carry one attribute value.
//!
//! Most values (resource names, request ids, access keys) are carried by a handful of events,
//! a few (accounts, popular eventNames) by a large share of all events. Short lists stay a
//! plain vector; long ones become a compressed bitmap (roaring), about 2 bytes per entry
//! instead of 8 plus slack, and membership tests stay fast for the time-walk of large results.

use roaring::RoaringTreemap;

/// Above this many entries a list becomes a bitmap.
const FEW: usize = 16;

#[derive(Debug, Clone)]
pub(crate) enum Postings {
    Few(Vec<u64>),
    Many(RoaringTreemap),
}

impl Default for Postings {
    fn default() -> Self {
        Postings::Few(Vec::new())
    }
}

impl Postings {
    /// A list from ascending, distinct sequence numbers.
    pub(crate) fn from_sorted(v: Vec<u64>) -> Self {
        if v.len() <= FEW {
            Postings::Few(v)
        } else {
            let mut m = RoaringTreemap::new();
            for s in v {
                let _ = m.try_push(s);
            }
            Postings::Many(m)
        }
    }

    /// Appends `seq` if it is greater than every entry (appends come in log order).
    pub(crate) fn push(&mut self, seq: u64) {
        match self {
            Postings::Few(v) => {
                if v.last().is_none_or(|&l| l < seq) {
                    if v.len() < FEW {
                        v.push(seq);
                    } else {
                        let mut m = RoaringTreemap::new();
                        for s in v.iter() {
                            let _ = m.try_push(*s);
                        }
                        let _ = m.try_push(seq);
                        *self = Postings::Many(m);
                    }
                }
            }
            Postings::Many(m) => {
                let _ = m.try_push(seq);
            }
        }
    }

    pub(crate) fn contains(&self, seq: u64) -> bool {
        match self {
            Postings::Few(v) => v.binary_search(&seq).is_ok(),
            Postings::Many(m) => m.contains(seq),
        }
    }

    /// About how many bytes of memory the list holds (Roaring keeps dense runs of seqs in
    /// about 2 bytes each).
    pub(crate) fn approx_bytes(&self) -> u64 {
        match self {
            Postings::Few(v) => 8 * v.len() as u64,
            Postings::Many(m) => 2 * m.len(),
        }
    }

    pub(crate) fn len(&self) -> u64 {
        match self {
            Postings::Few(v) => v.len() as u64,
            Postings::Many(m) => m.len(),
        }
    }

    /// The entries, ascending.
    pub(crate) fn iter(&self) -> Box<dyn Iterator<Item = u64> + '_> {
        match self {
            Postings::Few(v) => Box::new(v.iter().copied()),
            Postings::Many(m) => Box::new(m.iter()),
        }
    }

    /// The entries in `from..to`, ascending.
    pub(crate) fn range(&self, from: u64, to: u64) -> Box<dyn Iterator<Item = u64> + '_> {
        match self {
            Postings::Few(v) => {
                let a = v.partition_point(|s| *s < from);
                Box::new(v[a..].iter().copied().take_while(move |s| *s < to))
            }
            Postings::Many(m) => {
                let mut it = m.iter();
                it.advance_to(from);
                Box::new(it.take_while(move |s| *s < to))
            }
        }
    }

    /// The entries of any of `lists`.
    pub(crate) fn union(lists: &[&Postings]) -> Postings {
        if let [one] = lists {
            return (*one).clone();
        }
        let mut m = RoaringTreemap::new();
        for l in lists {
            match l {
                Postings::Few(v) => {
                    for s in v {
                        m.insert(*s);
                    }
                }
                Postings::Many(b) => m |= b,
            }
        }
        Postings::Many(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_answers_the_same_before_and_after_it_becomes_a_bitmap() {
        let mut p = Postings::default();
        let seqs: Vec<u64> = (1..200).map(|i| i * 7 + (i % 3)).collect();
        for (n, &s) in seqs.iter().enumerate() {
            p.push(s);
            p.push(s); // a repeat is ignored
            assert_eq!(p.len(), n as u64 + 1);
            assert!(p.contains(s) && !p.contains(s + 1));
            assert_eq!(p.iter().collect::<Vec<_>>(), seqs[..=n]);
        }
        assert!(matches!(p, Postings::Many(_)));
        let q = Postings::from_sorted(vec![3, 5, 1_000_000_000_000]);
        let u = Postings::union(&[&p, &q]);
        assert_eq!(u.len(), p.len() + 3);
        assert!(u.contains(1_000_000_000_000) && u.contains(seqs[5]));
    }
}

/// Every event's (eventTime, seq), for walking a time range newest first. Events arrive nearly
/// in time order: most go into a small ordered tail, merged into one flat sorted array (16
/// bytes an entry, no tree nodes) whenever the tail grows large.
#[derive(Debug, Default)]
pub(crate) struct TimeIndex {
    main: Vec<(i64, u64)>,
    tail: std::collections::BTreeSet<(i64, u64)>,
}

/// The tail is merged into the main array at this size.
const TAIL_MAX: usize = 1 << 16;

impl TimeIndex {
    pub(crate) fn insert(&mut self, time: i64, seq: u64) {
        self.tail.insert((time, seq));
        if self.tail.len() >= TAIL_MAX {
            let tail = std::mem::take(&mut self.tail);
            let mut merged = Vec::with_capacity(self.main.len() + tail.len());
            let mut a = self.main.iter().copied().peekable();
            let mut b = tail.into_iter().peekable();
            loop {
                let next = match (a.peek(), b.peek()) {
                    (Some(x), Some(y)) if x <= y => a.next(),
                    (Some(_), Some(_)) => b.next(),
                    (Some(_), None) => a.next(),
                    (None, Some(_)) => b.next(),
                    (None, None) => break,
                };
                if let Some(n) = next {
                    merged.push(n);
                }
            }
            self.main = merged;
        }
    }

    /// The entries in `lo..=hi`, newest first.
    pub(crate) fn range_rev(
        &self,
        lo: (i64, u64),
        hi: (i64, u64),
    ) -> impl Iterator<Item = (i64, u64)> + '_ {
        let from = self.main.partition_point(|e| *e < lo);
        let to = self.main.partition_point(|e| *e <= hi).max(from);
        let mut a = self.main[from..to].iter().rev().copied().peekable();
        let mut b = if lo <= hi {
            Some(self.tail.range(lo..=hi).rev().copied().peekable())
        } else {
            None
        };
        std::iter::from_fn(move || {
            let bp = b.as_mut().and_then(|b| b.peek().copied());
            match (a.peek().copied(), bp) {
                (Some(x), Some(y)) if x >= y => a.next(),
                (_, Some(_)) => b.as_mut().and_then(Iterator::next),
                (Some(_), None) => a.next(),
                (None, None) => None,
            }
        })
    }
}

#[cfg(test)]
mod time_tests {
    use super::*;

    #[test]
    fn a_time_range_walks_newest_first_across_merges() {
        let mut t = TimeIndex::default();
        let mut all = Vec::new();
        // Nearly ordered times, some late arrivals, more entries than one tail holds.
        for seq in 1..=(TAIL_MAX as u64 * 2 + 500) {
            let time = (seq as i64) * 10 - if seq % 97 == 0 { 5_000 } else { 0 };
            t.insert(time, seq);
            all.push((time, seq));
        }
        all.sort();
        for (lo, hi) in [
            ((i64::MIN, 0), (i64::MAX, u64::MAX)),
            ((100_000, 0), (700_000, u64::MAX)),
            ((1_000_000, 0), (1_000_000, u64::MAX)),
            ((5, 0), (1, 0)),
        ] {
            let want: Vec<_> = all
                .iter()
                .rev()
                .copied()
                .filter(|e| *e >= lo && *e <= hi)
                .collect();
            assert_eq!(t.range_rev(lo, hi).collect::<Vec<_>>(), want);
        }
    }
}
