//! Detection: rules evaluated on every newly stored event, and their alerts delivered as
//! reliably as events are stored.
//!
//! 1. **Evaluate** ([`evaluate`]): after the group commit, the stored events past the
//!    ledger's alert watermark are taken in sequence order (from memory, [`recent`], or read
//!    back from the ledger; events of a batch still handing them over are waited for, a few
//!    milliseconds at most, rather than read back), matched against the rules, and
//!    their alerts recorded in the ledger's outbox together with the new watermark, in one
//!    durable write. Only stored events are evaluated (a duplicate gets no sequence number),
//!    and each (rule, event) once: a crash before that write evaluates the range again, a
//!    crash after it never does.
//! 2. **Deliver** ([`deliver`]): every alert in the outbox goes to each of its sinks, retried
//!    with exponential backoff while a sink fails, and is noted per sink once taken. A crash
//!    between a sink taking an alert and the note delivers it to that sink again: delivery is
//!    at least once, always with the same alert id ([`payload::alert_id`], derived from the
//!    rule, the account and the eventID), so that a receiver drops a redelivery. Each sink
//!    has a delivery loop of its own, so a failing sink holds back only its own alerts; a
//!    webhook gives up on an alert after `max_attempts` (or a refusal) and keeps it as a dead
//!    letter in the ledger until an operator re-drives it.
//!
//! Threshold rules ([`threshold`]) fire on the event that makes a count over a window cross
//! their threshold; their windows are written with each range's alerts and watermark.
//!
//! Nothing of an event is logged: alerts are named by alert id, rule and sink.

pub(crate) mod background;
pub(crate) mod deliver;
pub(crate) mod evaluate;
pub(crate) mod file_sink;
pub(crate) mod fired;
pub mod history;
pub(crate) mod nats_sink;
pub mod payload;
pub(crate) mod recent;
pub(crate) mod reload;
pub(crate) mod threshold;
pub mod webhook;

use orgtrail_rules::{RuleFileError, RuleSet};

use crate::config::RulesConfig;

/// The rules `[rules]` names: its directory's files and its built-in packs, as one set (ids
/// unique across them), or every problem.
pub fn load_rules(cfg: &RulesConfig) -> Result<RuleSet, Vec<RuleFileError>> {
    let mut rules = Vec::new();
    let mut problems = Vec::new();
    let sources = cfg
        .dir
        .iter()
        .map(|d| d.display().to_string())
        .chain(cfg.packs.iter().map(|p| format!("pack:{p}")));
    for source in sources {
        match RuleSet::load(&source) {
            Ok(set) => rules.extend(set.rules),
            Err(p) => problems.extend(p),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    RuleSet::new(rules)
}

/// The sinks a rule's alerts go to: its `actions`, or every sink.
pub(crate) fn sinks_of(rule: &orgtrail_rules::Rule, all: &[String]) -> Vec<String> {
    match &rule.actions {
        Some(a) => a.clone(),
        None => all.to_vec(),
    }
}
