//! Crash points: a test hook that kills the process at a named step of a write.
//!
//! The writer calls [`hit`] at each step where a crash leaves the files in a distinct state
//! (before and after a group's batch is applied and flushed, after an index run file is
//! written, after it is registered, after a merge...). When the environment variable
//! `ORGTRAIL_CRASH_AT` names that step, the process aborts there, as a power cut or a `kill
//! -9` would stop it: no destructor runs, nothing more is written. The end-to-end crash test
//! (`tests/crash_steps.rs`) runs `orgtrail import` once per step this way and checks the
//! store it leaves.
//!
//! It is not a setting: production never sets the variable. The variable is read once; after
//! that a hit costs one relaxed atomic load when it is unset, so the hook stays compiled into
//! release builds and the test exercises the binary as shipped.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

/// The environment variable naming the step to crash at.
pub const ENV: &str = "ORGTRAIL_CRASH_AT";

/// Every crash point, in the order a group commit and the index's background work reach them.
pub const STEPS: &[&str] = &[
    "group-before-log",
    "group-before-apply",
    "group-after-apply",
    "group-after-flush",
    "group-before-ack",
    "dict-after-flush",
    "run-tmp-synced",
    "run-written",
    "run-register-applied",
    "run-registered",
    "merge-written",
    "merge-registered",
    "close-before-checkpoint",
];

/// Crash points of `orgtrail store upgrade` (its index runs also reach the `run-tmp-synced`,
/// `run-register-applied` and `run-registered` points of [`STEPS`]).
pub const UPGRADE_STEPS: &[&str] = &["upgrade-subtrees-flushed", "upgrade-before-format"];

/// Crash points of the collector's alert pipeline (its hooks call [`hit_alerts`]): after an
/// evaluated range's alerts are recorded and before any is delivered; after a sink took an
/// alert and before the outbox notes it.
pub const ALERT_STEPS: &[&str] = &["alerts-recorded", "alert-sent"];

/// Crash points of the collector's archive sink (its export calls [`hit_archive`]): log files
/// in place and no digest yet; digests in place and the run not committed to the watermark.
pub const ARCHIVE_STEPS: &[&str] = &["archive-files-written", "archive-digests-written"];

/// Aborts the process if `ORGTRAIL_CRASH_AT` names `step`, one of [`ARCHIVE_STEPS`].
#[inline]
pub fn hit_archive(step: &'static str) {
    debug_assert!(ARCHIVE_STEPS.contains(&step), "unlisted crash point {step}");
    hit(step);
}

/// Aborts the process if `ORGTRAIL_CRASH_AT` names `step`, one of [`ALERT_STEPS`].
#[inline]
pub fn hit_alerts(step: &'static str) {
    debug_assert!(ALERT_STEPS.contains(&step), "unlisted crash point {step}");
    hit(step);
}

/// Stall points: where a thread waits forever instead of going on when `ORGTRAIL_CRASH_AT`
/// names the point (a hang, not a crash): `release-stalls`, letting go of a database after a
/// write failure, as sled's flush on release does after some write failures (see
/// `ledger::writer`). The end-to-end full-disk test uses it to take the collector's way out of
/// that state (it exits for a restart) every time, not only when sled happens to hang.
pub const STALL_STEPS: &[&str] = &["release-stalls"];

/// Waits forever if `ORGTRAIL_CRASH_AT` names `step`, one of [`STALL_STEPS`].
pub(crate) fn stall(step: &'static str) {
    if STATE.load(Ordering::Relaxed) != OFF && named(step) {
        eprintln!("orgtrail: stall point {step} reached ({ENV}): waiting forever");
        loop {
            std::thread::park();
        }
    }
}

const UNKNOWN: u8 = 0;
const OFF: u8 = 1;
const ON: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);
static AT: OnceLock<Option<String>> = OnceLock::new();

/// Aborts the process if `ORGTRAIL_CRASH_AT` names `step`.
#[inline]
pub(crate) fn hit(step: &'static str) {
    if STATE.load(Ordering::Relaxed) != OFF {
        check(step);
    }
}

#[cold]
fn check(step: &'static str) {
    debug_assert!(
        STEPS.contains(&step)
            || UPGRADE_STEPS.contains(&step)
            || ALERT_STEPS.contains(&step)
            || ARCHIVE_STEPS.contains(&step),
        "unlisted crash point {step}"
    );
    if named(step) {
        // Said on stderr so that a test can tell this abort from any other.
        eprintln!("orgtrail: crash point {step} reached ({ENV}): aborting");
        std::process::abort();
    }
}

/// True if `ORGTRAIL_CRASH_AT` names `step` (read once).
fn named(step: &str) -> bool {
    let at = AT.get_or_init(|| std::env::var(ENV).ok().filter(|s| !s.is_empty()));
    STATE.store(if at.is_some() { ON } else { OFF }, Ordering::Relaxed);
    at.as_deref() == Some(step)
}

#[cfg(test)]
mod tests {
    use super::{STEPS, UPGRADE_STEPS};

    /// Every hook in the sources names a listed step, and every listed step has one hook: the
    /// crash test runs the listed steps, so a hook missing from the list would go untested.
    #[test]
    fn every_crash_point_is_listed_once() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut found: Vec<String> = Vec::new();
        let mut dirs = vec![src];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
                let p = e.unwrap_or_else(|e| panic!("{}: {e}", d.display())).path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    let text = std::fs::read_to_string(&p)
                        .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                    for part in text.split("crashpoint::hit(\"").skip(1) {
                        if let Some((name, _)) = part.split_once('"') {
                            found.push(name.to_string());
                        }
                    }
                }
            }
        }
        found.sort();
        let mut listed: Vec<String> = STEPS
            .iter()
            .chain(UPGRADE_STEPS)
            .map(|s| s.to_string())
            .collect();
        listed.sort();
        assert_eq!(found, listed);
    }
}
