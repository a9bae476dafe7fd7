//! orgtrail's rules: EventBridge event patterns ([`pattern`]), the leaves of an event they
//! read and how a condition accepts them ([`leaf`]), a straightforward interpreter
//! ([`interpret`]) and the compiled [`Engine`] that must answer as it does; the field-path
//! layer ([`field`]) and the trail event selectors ([`selectors`]) the agent applies, which
//! resolve and compare fields through the same primitives.

pub mod cloudtrail;
pub mod engine;
pub mod field;
pub mod interpret;
pub mod leaf;
pub mod packs;
pub mod pattern;
pub mod rule;
pub mod screen;
pub mod selectors;
pub mod sigma;
pub mod threshold;

pub use engine::Engine;
pub use pattern::{Pattern, PatternError};
pub use rule::{Origin, Rule, RuleFileError, RuleSet, Severity};
pub use threshold::{Threshold, Windows};
