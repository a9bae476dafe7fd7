//! Processes watched without blocking: their output drained into memory by a thread (so a
//! chatty process never stalls on a full pipe), lines awaited with a deadline, exits awaited
//! with a deadline.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The lines of a stream, collected as they come.
#[derive(Clone)]
pub(crate) struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    pub(crate) fn drain(r: impl Read + Send + 'static) -> Lines {
        Self::collect(BufReader::new(r).lines())
    }

    /// Collects the lines an iterator yields (e.g. a collector's log).
    pub(crate) fn collect(
        it: impl Iterator<Item = std::io::Result<String>> + Send + 'static,
    ) -> Lines {
        let lines = Lines(Arc::new(Mutex::new(Vec::new())));
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in it {
                let Ok(line) = line else { break };
                l.0.lock().unwrap().push(line);
            }
        });
        lines
    }

    pub(crate) fn text(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }

    /// The first line containing every one of `parts`, if any yet.
    pub(crate) fn find(&self, parts: &[&str]) -> Option<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .find(|l| parts.iter().all(|p| l.contains(p)))
            .cloned()
    }

    /// Waits up to `within` for a line containing every one of `parts`.
    pub(crate) fn wait_for(&self, parts: &[&str], within: Duration) -> String {
        let end = Instant::now() + within;
        loop {
            if let Some(l) = self.find(parts) {
                return l;
            }
            assert!(
                Instant::now() < end,
                "no line with {parts:?} within {within:?}; got:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Waits up to `within` for `child` to exit; kills it and fails with `log` otherwise.
pub(crate) fn wait_exit(child: &mut Child, within: Duration, log: &Lines) -> ExitStatus {
    let end = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the process did not finish within {within:?}; its log:\n{}",
                log.text()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `cond` until it holds, up to `within`.
pub(crate) fn wait_until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < end, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts `orgtrail agent --config CFG ARGS` with `env` and `NO_COLOR`, its stdout and
/// stderr drained: (child, stdout, stderr).
pub(crate) fn spawn_agent(
    cfg: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Child, Lines, Lines) {
    let mut child = crate::common::orgtrail()
        .args(["agent", "--config", cfg.to_str().unwrap()])
        .args(args)
        .envs(env.iter().copied())
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = Lines::drain(child.stdout.take().unwrap());
    let err = Lines::drain(child.stderr.take().unwrap());
    (child, out, err)
}

/// A running agent (not `--exit-when-drained`) serving `/metrics` on a loopback port (an
/// `[ops]` table is added to `cfg` when it has none): (child, ops address, stderr).
pub(crate) fn agent_with_ops(
    cfg: &std::path::Path,
    env: &[(&str, &str)],
) -> (Child, String, Lines) {
    let text = std::fs::read_to_string(cfg).unwrap();
    if !text.contains("[ops]") {
        std::fs::write(cfg, format!("{text}[ops]\nlisten = \"127.0.0.1:0\"\n")).unwrap();
    }
    let (child, out, err) = spawn_agent(cfg, &[], env);
    let line = out.wait_for(
        &["orgtrail agent: ops listening on "],
        Duration::from_secs(90),
    );
    (child, line.rsplit(' ').next().unwrap().to_string(), err)
}
