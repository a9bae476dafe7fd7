//! Attributions: which userIdentityArn, userAgent and errorCode values made a key's calls, in
//! bounded memory.
//!
//! Each attribute of a key keeps a weighted space-saving sketch of at most [`SKETCH_SLOTS`]
//! values (Metwally et al., 2005): a value already tracked adds its weight; a new value takes a
//! free slot, or else replaces the value of least weight and inherits that weight plus its own.
//! A value's weight therefore over-estimates its true weight by at most the smallest weight in
//! the sketch, and any value with more than `1/SKETCH_SLOTS` of the total is tracked. The top 5
//! are reported.
//!
//! Values are interned ([`Interner`]): one copy of each ARN or user agent string is shared by
//! every key and sketch holding it, so a sketch slot is a pointer and a weight.

use std::collections::HashSet;
use std::sync::Arc;

/// Values tracked per attribute and key.
pub const SKETCH_SLOTS: usize = 8;

/// Values reported per attribute (CloudTrail's "top 5").
pub const REPORTED: usize = 5;

/// The attributes, in the order CloudTrail lists them.
pub const ATTRIBUTES: [&str; 3] = ["userIdentityArn", "userAgent", "errorCode"];

/// Weights below this are dropped when a sketch decays.
const NEGLIGIBLE: f64 = 1e-12;

/// One copy of each value string.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    set: HashSet<Arc<str>, foldhash::fast::RandomState>,
    /// Size after the last sweep: the next sweep waits until the set has doubled.
    swept_at: usize,
}

impl Interner {
    pub(crate) fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.set.get(s) {
            return Arc::clone(a);
        }
        let a: Arc<str> = Arc::from(s);
        self.set.insert(Arc::clone(&a));
        a
    }

    /// Forgets strings no sketch holds any more, once the set has doubled since the last sweep.
    pub(crate) fn sweep(&mut self) {
        if self.set.len() >= 2 * self.swept_at.max(1024) {
            self.set.retain(|a| Arc::strong_count(a) > 1);
            self.swept_at = self.set.len();
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }
}

/// A weighted space-saving sketch of one attribute.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Sketch {
    pub(crate) slots: Vec<(Arc<str>, f64)>,
}

impl Sketch {
    /// Adds `weight` to `value` (already interned).
    pub(crate) fn add(&mut self, value: &Arc<str>, weight: f64) {
        if let Some(slot) = self.slots.iter_mut().find(|(v, _)| Arc::ptr_eq(v, value)) {
            slot.1 += weight;
            return;
        }
        if self.slots.len() < SKETCH_SLOTS {
            self.slots.push((Arc::clone(value), weight));
            return;
        }
        if let Some(min) = self
            .slots
            .iter_mut()
            .min_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)))
        {
            let inherited = min.1;
            *min = (Arc::clone(value), inherited + weight);
        }
    }

    /// Multiplies every weight by `factor`, dropping those that become negligible.
    pub(crate) fn scale(&mut self, factor: f64) {
        for s in &mut self.slots {
            s.1 *= factor;
        }
        self.slots.retain(|s| s.1 > NEGLIGIBLE);
    }

    pub(crate) fn total(&self) -> f64 {
        self.slots.iter().map(|s| s.1).sum()
    }

    /// The top [`REPORTED`] values with their weights scaled so that the sketch's total maps
    /// to `average`: heaviest first, ties by value.
    pub(crate) fn top(&self, average: f64) -> Vec<(String, f64)> {
        let total = self.total();
        if total <= 0.0 {
            return Vec::new();
        }
        let mut v: Vec<(String, f64)> = self
            .slots
            .iter()
            .map(|(s, w)| (s.to_string(), w / total * average))
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(REPORTED);
        v
    }
}

/// The three sketches of one period (baseline or insight) of a key.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Attribution {
    pub(crate) by: [Sketch; 3],
}

/// The attribute values of one call, interned.
#[derive(Debug, Clone)]
pub(crate) struct Values {
    pub(crate) by: [Option<Arc<str>>; 3],
}

impl Attribution {
    pub(crate) fn add(&mut self, values: &Values, weight: f64) {
        for (sketch, v) in self.by.iter_mut().zip(&values.by) {
            if let Some(v) = v {
                sketch.add(v, weight);
            }
        }
    }

    pub(crate) fn scale(&mut self, factor: f64) {
        for s in &mut self.by {
            s.scale(factor);
        }
    }

    pub(crate) fn clear(&mut self) {
        for s in &mut self.by {
            s.slots.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heavy_value_is_kept_among_many_light_ones() {
        let mut i = Interner::default();
        let mut s = Sketch::default();
        let heavy = i.intern("arn:aws:iam::111122223333:user/heavy");
        for n in 0..1000 {
            let light = i.intern(&format!("arn:aws:iam::111122223333:user/u{n}"));
            s.add(&light, 1.0);
            if n % 4 == 0 {
                s.add(&heavy, 1.0);
            }
        }
        let top = s.top(1.0);
        assert_eq!(top[0].0, "arn:aws:iam::111122223333:user/heavy");
        assert!(top.len() <= REPORTED);
        assert!(s.slots.len() <= SKETCH_SLOTS);
    }

    #[test]
    fn top_is_sorted_and_sums_to_the_average() {
        let mut i = Interner::default();
        let mut s = Sketch::default();
        for (v, n) in [("a", 1), ("b", 3), ("c", 2)] {
            let a = i.intern(v);
            for _ in 0..n {
                s.add(&a, 1.0);
            }
        }
        let top = s.top(0.6);
        let names: Vec<&str> = top.iter().map(|t| t.0.as_str()).collect();
        assert_eq!(names, ["b", "c", "a"]);
        let sum: f64 = top.iter().map(|t| t.1).sum();
        assert!((sum - 0.6).abs() < 1e-12);
    }

    #[test]
    fn the_interner_forgets_what_no_sketch_holds() {
        let mut i = Interner::default();
        let kept = i.intern("kept");
        for n in 0..3000 {
            i.intern(&format!("gone{n}"));
        }
        i.sweep();
        assert_eq!(i.len(), 1);
        assert!(Arc::ptr_eq(&kept, &i.intern("kept")));
    }
}
