//! A full disk under the collector: ingest pauses with a precise status, queries go on, and
//! everything resumes by itself when space returns; a write that does meet ENOSPC (reserve
//! off) never leaves a store that the next open rejects, nor a false tamper report, nor a lost
//! acknowledged event, whether the collector recovers in place or is killed with SIGKILL.
//!
//! The data directory is a small tmpfs: these tests mount, resize and unmount it, so they run
//! as root (as CI does).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/org.rs"]
mod org;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{orgtrail, run, stdout};
use org::{Collector, Org, events, p};

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                &p(path),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the disk-full tests mount a tmpfs and need root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs {
            path: path.to_owned(),
        }
    }

    fn resize(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}"), &p(&self.path)])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").args(["-l", &p(&self.path)]).status();
    }
}

/// The collector's log lines, read on a thread of their own so the collector never blocks
/// on a full pipe.
struct Log {
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Log {
    fn of(c: &mut Collector) -> Log {
        let lines = c.log.take().expect("collector started with its log");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in lines.map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Log {
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle`; fails with what was logged after `secs`.
    fn wait_for(&mut self, needle: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "no log line with {needle:?} within {secs} s; the last lines:\n{}",
                    self.seen[self.seen.len().saturating_sub(30)..].join("\n")
                ),
            }
        }
    }

    /// Everything logged so far (without waiting).
    fn drain(&mut self) -> &[String] {
        while let Ok(l) = self.rx.try_recv() {
            self.seen.push(l);
        }
        &self.seen
    }
}

fn spawn_agent(cfg: &Path) -> Child {
    orgtrail()
        .args(["agent", "--config", &p(cfg), "--exit-when-drained"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for the agent to drain and exit; its exit status must be success.
fn agent_drains(mut agent: Child, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = agent.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(agent.stderr.as_mut().unwrap(), &mut err).unwrap();
            assert!(status.success(), "the agent failed: {err}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not drain within {secs} s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sigterm(c: &mut Collector) {
    let term = Command::new("kill")
        .args(["-TERM", &c.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = c.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean stop");
}

/// The stored set is exactly the unique input, byte for byte, and verify finds no problem.
fn exact_and_verified(org: &Org, want: &HashSet<String>) {
    let stored = org.stored();
    let got: HashSet<String> = stored.iter().cloned().collect();
    assert_eq!(got.len(), stored.len(), "nothing stored twice");
    assert_eq!(got.len(), want.len(), "every unique event stored");
    assert_eq!(&got, want, "exactly the unique events, byte-identical");
    let v = run(
        &[
            "verify",
            "--data-dir",
            &p(&org.path("data")),
            "--keys",
            &p(&org.path("keys")),
        ],
        b"",
    );
    assert!(
        v.status.success(),
        "verify: {}{}",
        stdout(&v),
        common::stderr(&v)
    );
}

#[test]
fn a_full_disk_pauses_ingest_keeps_answering_queries_and_resumes_when_space_returns() {
    let org = Org::new();
    let (account, file, want) = events(&org, "a", 40_000, 5);
    org.issue("agent", "agent", Some(&account));
    org.issue("auditor", "auditor", None);
    let fs = Tmpfs::mount(&org.path("data"), "24m");
    let mut collector = org.collector_with_log(0, "[storage]\nreserve = \"12 MiB\"\n", true);
    let mut log = Log::of(&mut collector);
    let cfg = org.agent_config("agent", &account, "agent", &file, collector.port);
    let mut agent = spawn_agent(&cfg);

    let line = log.wait_for("disk full", 120);
    assert!(line.contains("reserve"), "{line}");
    log.wait_for("ingest not ready", 30);
    // Paused, not failed: the agent keeps its events and waits.
    assert!(agent.try_wait().unwrap().is_none(), "the agent waits");
    // Queries are still answered while ingest is paused.
    let mut args = vec!["stats".to_string(), "--by".into(), "account".into()];
    args.extend(org.reader_args(&collector, "auditor"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let stats = run(&args, b"");
    assert!(stats.status.success(), "{}", common::stderr(&stats));
    assert!(stdout(&stats).contains(&account), "{}", stdout(&stats));

    // Space returns: ingest resumes by itself, and the agent drains.
    fs.resize("1g");
    log.wait_for("ingest ready again", 60);
    agent_drains(agent, 180);
    sigterm(&mut collector);
    let logged = log.drain().join("\n");
    assert!(
        !logged.contains("group commit failed"),
        "the reserve kept every write away from ENOSPC"
    );
    exact_and_verified(&org, &want);
}

#[test]
fn a_write_that_meets_enospc_is_recovered_in_place_and_loses_nothing() {
    let org = Org::new();
    let (account, file, want) = events(&org, "a", 40_000, 6);
    org.issue("agent", "agent", Some(&account));
    let fs = Tmpfs::mount(&org.path("data"), "16m");
    // No reserve: sled itself meets the full disk.
    let mut collector = org.collector_with_log(0, "[storage]\nreserve = \"0 B\"\n", true);
    let mut log = Log::of(&mut collector);
    let cfg = org.agent_config("agent", &account, "agent", &file, collector.port);
    let agent = spawn_agent(&cfg);

    log.wait_for("group commit failed", 120);
    log.wait_for("ingest not ready", 30);
    fs.resize("1g");
    log.wait_for("the store reopened after a write failure", 60);
    log.wait_for("ingest ready again", 30);
    agent_drains(agent, 180);
    sigterm(&mut collector);
    exact_and_verified(&org, &want);
}

#[test]
fn a_collector_killed_on_a_full_disk_reopens_and_loses_nothing() {
    let org = Org::new();
    let (account, file, want) = events(&org, "a", 40_000, 8);
    org.issue("agent", "agent", Some(&account));
    let fs = Tmpfs::mount(&org.path("data"), "16m");
    let mut collector = org.collector_with_log(0, "[storage]\nreserve = \"0 B\"\n", true);
    let port = collector.port;
    let mut log = Log::of(&mut collector);
    let cfg = org.agent_config("agent", &account, "agent", &file, port);
    let agent = spawn_agent(&cfg);

    log.wait_for("group commit failed", 120);
    // The worst moment: SIGKILL right after a write failed on the full disk.
    collector.child.kill().unwrap();
    collector.child.wait().unwrap();
    drop(collector);
    fs.resize("1g");
    // The store opens (any torn tail is cut), and the agent resends what was not acknowledged.
    let mut restarted = org.collector(port, "");
    agent_drains(agent, 180);
    sigterm(&mut restarted);
    exact_and_verified(&org, &want);
}

#[test]
fn a_store_on_a_disk_with_no_free_byte_refuses_to_start_and_opens_once_space_returns() {
    let org = Org::new();
    let (account, file, want) = events(&org, "a", 2_000, 9);
    org.issue("agent", "agent", Some(&account));
    let fs = Tmpfs::mount(&org.path("data"), "16m");
    let mut collector = org.collector(0, "[storage]\nreserve = \"0 B\"\n");
    let cfg = org.agent_config("agent", &account, "agent", &file, collector.port);
    agent_drains(spawn_agent(&cfg), 120);
    sigterm(&mut collector);
    // Fill every byte.
    let filler = org.path("data/filler");
    let dd = Command::new("dd")
        .args(["if=/dev/zero", &format!("of={}", p(&filler)), "bs=64k"])
        .output()
        .unwrap();
    assert!(!dd.status.success(), "dd stops at a full disk");
    let out = orgtrail()
        .args(["collector", "--config", &p(&org.path("collector.toml"))])
        .output()
        .unwrap();
    assert!(!out.status.success(), "no room to open the store");
    assert!(
        common::stderr(&out).contains("No space left on device")
            || common::stderr(&out).contains("disk full"),
        "{}",
        common::stderr(&out)
    );
    // Space returns: the store opens as if nothing happened.
    std::fs::remove_file(&filler).unwrap();
    let mut again = org.collector(0, "");
    sigterm(&mut again);
    exact_and_verified(&org, &want);
    drop(fs);
}
