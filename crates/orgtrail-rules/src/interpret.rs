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
