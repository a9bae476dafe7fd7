//! Attributions: which userIdentityArn, userAgent and errorCode values made a key's calls, in
//! bounded memory.
//!
//! Each attribute of a key keeps a weighted space-saving sketch of at most [`SKETCH_SLOTS`]
//! values (the three attributes of a period share one vector) (Metwally et al., 2005): a value already tracked adds its weight; a new value takes a
//! free slot, or else replaces the value of least weight and inherits that weight plus its own.
//! A value's weight therefore over-estimates its true weight by at most the smallest weight in
//! the sketch, and any value with more than `1/SKETCH_SLOTS` of the total is tracked. The top 5
//! are reported.
//!
//! Values are interned (`Interner`): one copy of each ARN or user agent string is shared by
//! every key and sketch holding it, so a slot is a pointer, an `f32` weight and the attribute
//! (24 bytes).

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

/// One tracked value: which attribute, the value, its weight.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Slot {
    pub(crate) attr: u8,
    pub(crate) value: Arc<str>,
    pub(crate) weight: f32,
}

/// The weighted space-saving sketches of the three attributes of one period (baseline or
/// recent) of a key, in one vector: at most [`SKETCH_SLOTS`] slots per attribute, 24 bytes each.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Attribution {
    pub(crate) slots: Vec<Slot>,
}

/// The attribute values of one call, interned.
#[derive(Debug, Clone)]
pub(crate) struct Values {
    pub(crate) by: [Option<Arc<str>>; 3],
}

impl Attribution {
    /// Adds `weight` to each of the call's values.
    pub(crate) fn add(&mut self, values: &Values, weight: f64) {
        for (attr, v) in values.by.iter().enumerate() {
            if let Some(v) = v {
                self.add_one(attr as u8, v, weight as f32);
            }
        }
    }

    /// Adds `weight` to `value` (already interned) of attribute `attr`: one pass over the
    /// slots finds the value, or counts the attribute's slots and finds its lightest one.
    pub(crate) fn add_one(&mut self, attr: u8, value: &Arc<str>, weight: f32) {
        let mut held = 0;
        let mut min: Option<usize> = None;
        for i in 0..self.slots.len() {
            let s = &self.slots[i];
            if s.attr != attr {
                continue;
            }
            if Arc::ptr_eq(&s.value, value) {
                self.slots[i].weight += weight;
                return;
            }
            held += 1;
            let lighter = min.is_none_or(|m| {
                let cur = &self.slots[m];
                s.weight
                    .total_cmp(&cur.weight)
                    .then_with(|| s.value.cmp(&cur.value))
                    .is_lt()
            });
            if lighter {
                min = Some(i);
            }
        }
        match min {
            Some(m) if held >= SKETCH_SLOTS => {
                let slot = &mut self.slots[m];
                slot.weight += weight;
                slot.value = Arc::clone(value);
            }
            _ => self.slots.push(Slot {
                attr,
                value: Arc::clone(value),
                weight,
            }),
        }
    }

    /// Multiplies every weight by `factor`, dropping those that become negligible.
    pub(crate) fn scale(&mut self, factor: f64) {
        let f = factor as f32;
        for s in &mut self.slots {
            s.weight *= f;
        }
        self.slots.retain(|s| f64::from(s.weight) > NEGLIGIBLE);
    }

    pub(crate) fn clear(&mut self) {
        self.slots.clear();
    }

    /// The total weight of attribute `attr`.
    pub(crate) fn total(&self, attr: u8) -> f64 {
        self.slots
            .iter()
            .filter(|s| s.attr == attr)
            .map(|s| f64::from(s.weight))
            .sum()
    }

    /// The top [`REPORTED`] values of `attr` with their weights scaled so that the
    /// attribute's total maps to `average`: heaviest first, ties by value.
    pub(crate) fn top(&self, attr: u8, average: f64) -> Vec<(String, f64)> {
        let total = self.total(attr);
        if total <= 0.0 {
            return Vec::new();
        }
        let mut v: Vec<(String, f64)> = self
            .slots
            .iter()
            .filter(|s| s.attr == attr)
            .map(|s| (s.value.to_string(), f64::from(s.weight) / total * average))
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(REPORTED);
        v
    }

    /// The top values of the three attributes.
    pub(crate) fn tops(&self, average: f64) -> [Vec<(String, f64)>; 3] {
        [0, 1, 2].map(|a| self.top(a, average))
    }

    /// Rebuilds from (attribute, value, weight) slots, dropping what is out of range.
    pub(crate) fn from_slots(slots: impl IntoIterator<Item = (u8, Arc<str>, f32)>) -> Self {
        let mut out = Attribution::default();
        for (attr, value, weight) in slots {
            let held = out.slots.iter().filter(|s| s.attr == attr).count();
            if usize::from(attr) < ATTRIBUTES.len()
                && held < SKETCH_SLOTS
                && weight.is_finite()
                && weight > 0.0
            {
                out.slots.push(Slot {
                    attr,
                    value,
                    weight,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heavy_value_is_kept_among_many_light_ones() {
        let mut i = Interner::default();
        let mut s = Attribution::default();
        let heavy = i.intern("arn:aws:iam::111122223333:user/heavy");
        let agent = i.intern("aws-cli/2");
        for n in 0..1000 {
            let light = i.intern(&format!("arn:aws:iam::111122223333:user/u{n}"));
            s.add_one(0, &light, 1.0);
            s.add_one(1, &agent, 1.0);
            if n % 4 == 0 {
                s.add_one(0, &heavy, 1.0);
            }
        }
        let top = s.top(0, 1.0);
        assert_eq!(top[0].0, "arn:aws:iam::111122223333:user/heavy");
        assert!(top.len() <= REPORTED);
        assert!(s.slots.iter().filter(|x| x.attr == 0).count() <= SKETCH_SLOTS);
        // The other attribute is untouched by the churn.
        assert_eq!(s.top(1, 2.0), vec![("aws-cli/2".to_owned(), 2.0)]);
    }

    #[test]
    fn top_is_sorted_and_sums_to_the_average() {
        let mut i = Interner::default();
        let mut s = Attribution::default();
        for (v, n) in [("a", 1), ("b", 3), ("c", 2)] {
            let a = i.intern(v);
            for _ in 0..n {
                s.add_one(2, &a, 1.0);
            }
        }
        let top = s.top(2, 0.6);
        let names: Vec<&str> = top.iter().map(|t| t.0.as_str()).collect();
        assert_eq!(names, ["b", "c", "a"]);
        let sum: f64 = top.iter().map(|t| t.1).sum();
        assert!((sum - 0.6).abs() < 1e-9);
        let back = Attribution::from_slots(
            s.slots
                .iter()
                .map(|x| (x.attr, Arc::clone(&x.value), x.weight)),
        );
        assert_eq!(back, s);
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
