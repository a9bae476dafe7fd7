//! Running a collector until it aborts at a crash point (`ORGTRAIL_CRASH_AT`), for the alert
//! tests: what the kill left is then checked after a restart.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use crate::org::{Org, spawn_agent};
use crate::procs;

/// Starts a collector (with `extra` configuration) that aborts at crash point `step`, and an
/// agent shipping `file` for `account` to it; waits for the abort, checks that it was that
/// step, and stops the agent.
pub(crate) fn until_crash(org: &Org, extra: &str, step: &str, account: &str, file: &Path) {
    let mut c = org.collector_with(0, extra, false, |cmd| {
        cmd.env("ORGTRAIL_CRASH_AT", step);
    });
    let cfg = org.agent_config("agent", account, "agent-a", file, c.port);
    let mut agent = spawn_agent(&cfg);
    let crashed = procs::wait_exit(
        &mut c.child,
        Duration::from_secs(120),
        &procs::Lines::drain(std::io::empty()),
    );
    assert!(!crashed.success(), "the collector aborted at {step}");
    let stderr = std::fs::read_to_string(org.path("collector.stderr")).unwrap();
    assert!(
        stderr.contains(&format!("crash point {step} reached")),
        "{stderr}"
    );
    let _ = agent.kill();
    let _ = agent.wait();
    drop(c);
}
