//! orgtrail's rules: EventBridge event patterns ([`pattern`]), the leaves of an event they
//! read and how a condition accepts them ([`leaf`]), a straightforward interpreter
//! ([`interpret`]) and the compiled [`Engine`] that must answer as it does.

pub mod cloudtrail;
pub mod engine;
pub mod interpret;
pub mod leaf;
pub mod packs;
pub mod pattern;
pub mod rule;

pub use engine::Engine;
pub use pattern::{Pattern, PatternError};
pub use rule::{Rule, RuleFileError, RuleSet, Severity};
