//! The straightforward interpreter: each condition's path walked on its own, every pattern
//! tried in turn. The engine must answer exactly as this does; the property tests hold it to
//! that, and `rules test --explain` uses it to say why a rule fired.

use serde_json::Value;

use crate::leaf::{Leaf, alternative_holds, leaves_at};
use crate::pattern::Pattern;

/// Whether `pattern` matches `event`.
pub fn matches(pattern: &Pattern, event: &Value) -> bool {
    pattern.alternatives.iter().any(|alt| {
        let leaves: Vec<Vec<Leaf<'_>>> = alt.iter().map(|c| leaves_at(event, &c.path)).collect();
        let refs: Vec<&[Leaf<'_>]> = leaves.iter().map(Vec::as_slice).collect();
        alternative_holds(alt, &refs)
    })
}

/// Why `pattern` matches `event`: for the first alternative that holds, each condition's path
/// and the value that satisfied it (or that it is absent, for `exists: false`). `None` when
/// it does not match.
pub fn explain(pattern: &Pattern, event: &Value) -> Option<String> {
    for alt in &pattern.alternatives {
        let leaves: Vec<Vec<Leaf<'_>>> = alt.iter().map(|c| leaves_at(event, &c.path)).collect();
        let refs: Vec<&[Leaf<'_>]> = leaves.iter().map(Vec::as_slice).collect();
        if !alternative_holds(alt, &refs) {
            continue;
        }
        let parts: Vec<String> = alt
            .iter()
            .zip(&leaves)
            .map(|(c, at)| {
                match at
                    .iter()
                    .find(|l| c.matchers.iter().any(|m| crate::leaf::accepts(m, l.value)))
                {
                    Some(l) => format!("{} = {}", c.path, l.value),
                    None => format!("{} is absent", c.path),
                }
            })
            .collect();
        return Some(parts.join(", "));
    }
    None
}
