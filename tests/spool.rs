//! The agent's spool end to end, real processes over mutual TLS: a spool disk that fills up
//! (a small tmpfs; the tests run as root) pauses the agent with a clear error in its log, its
//! metrics and its readiness, and the agent goes on by itself once space returns, losing
//! nothing; dead letters are listed, replayed and purged while the agent runs, and purged on
//! a stopped spool. Progress is observed by polling a condition with a deadline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/org.rs"]
mod org;
#[path = "common/procs.rs"]
mod procs;
#[path = "common/tmpfs.rs"]
mod tmpfs;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{http, orgtrail, run, stderr, stdout};
use org::{Org, events, p};
use procs::Lines;
use tmpfs::Tmpfs;

/// Polls `cond` until it holds, failing with `what` after the deadline.
fn wait_until(what: &str, cond: impl FnMut() -> bool) {
    procs::wait_until(DEADLINE, what, cond);
}

const DEADLINE: Duration = Duration::from_secs(60);

/// A running agent: its ops listener's address and its log, collected as it is written.
struct Agent {
    child: Child,
    metrics: String,
    log: Lines,
    /// Its standard output after the first line, kept open (it prints a summary at the end).
    out: Lines,
}

impl Agent {
    fn start(cfg: &Path, args: &[&str]) -> Agent {
        let mut child = orgtrail()
            .args(["agent", "--config", &p(cfg)])
            .args(args)
            .env("NO_COLOR", "1")
            .env("ORGTRAIL_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Lines::drain(child.stderr.take().unwrap());
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let metrics = line
            .trim()
            .strip_prefix("orgtrail agent: ops listening on ")
            .unwrap_or_else(|| panic!("the agent prints its ops address: {line:?}"))
            .to_string();
        Agent {
            child,
            metrics,
            log,
            out: Lines::collect(out.lines()),
        }
    }

    fn log_lines(&self, text: &str) -> usize {
        self.log.text().lines().filter(|l| l.contains(text)).count()
    }

    fn log(&self) -> String {
        self.log.text()
    }

    fn metric(&self, name: &str) -> String {
        let (status, body) = http(&self.metrics, "GET", "/metrics", b"");
        assert_eq!(status, 200);
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("metric {name} in {body}"))
            .to_string()
    }

    fn ready(&self) -> (u16, String) {
        http(&self.metrics, "GET", "/readyz", b"")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The agent configuration `name` with its spool in `spool` and its ops listener on a free
/// port.
fn agent_config(
    org: &Org,
    name: &str,
    account: &str,
    source: &Path,
    port: u16,
    spool: &Path,
    extra: &str,
) -> PathBuf {
    let cfg = org.agent_config(name, account, "agent", source, port);
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        &format!("spool_dir = \"spool-{name}\"\n"),
        &format!("spool_dir = \"{}\"\n{extra}", p(spool)),
    );
    std::fs::write(&cfg, format!("{text}[ops]\nlisten = \"127.0.0.1:0\"\n")).unwrap();
    cfg
}

fn segments(spool: &Path) -> usize {
    std::fs::read_dir(spool.join("segments"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn a_full_spool_disk_pauses_the_agent_visibly_and_it_goes_on_by_itself_losing_nothing() {
    let org = Org::new();
    let (account, file, want) = events(&org, "a", 6000, 61);
    org.issue("agent", "agent", Some(&account));
    let mnt = org.path("spool-disk");
    let _tmpfs = Tmpfs::mount(&mnt, "32m");
    // About 7 MiB stay free; the agent keeps 4 MiB in reserve: room for a fraction of the
    // 9 MB of events before the disk counts as full.
    let filler = mnt.join("filler");
    std::fs::write(&filler, vec![0u8; 25 << 20]).unwrap();
    // The collector is not there yet: everything read stays in the spool.
    let port = common::quiet_port();
    let spool = mnt.join("spool");
    let cfg = agent_config(
        &org,
        "a",
        &account,
        &file,
        port,
        &spool,
        "spool_min_free_bytes = 4194304\n",
    );
    let mut agent = Agent::start(&cfg, &["--exit-when-drained"]);
    let full = "the spool's disk is full";
    wait_until("the agent reports the full disk", || {
        agent.log_lines(full) > 0
    });
    let log = agent.log();
    assert!(log.contains("ERROR"), "{log}");
    assert!(log.contains("spool disk full: "), "{log}");
    assert!(log.contains("reserve 4194304 bytes"), "{log}");
    assert_eq!(agent.metric("orgtrail_agent_spool_disk_full"), "1");
    let (status, body) = agent.ready();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("spool disk full"), "{body}");
    let before = agent.metric("orgtrail_agent_spool_pending_bytes");
    assert!(before.parse::<u64>().unwrap() > 0);

    // Space returns: the agent goes on by itself.
    std::fs::remove_file(&filler).unwrap();
    wait_until("the agent resumes", || {
        agent.log_lines("has space again") > 0
    });
    assert_eq!(agent.metric("orgtrail_agent_spool_disk_full"), "0");
    // Not ready yet all the same: the collector is not there.
    let (status, body) = agent.ready();
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with("not ready: the collector is not reachable: "),
        "{body}"
    );
    assert_eq!(agent.log_lines(full), 1, "one error per episode");

    // The collector comes: everything arrives, once.
    let collector = org.collector(port, "");
    let status = procs::wait_exit(&mut agent.child, DEADLINE, &agent.log);
    assert!(status.success(), "{}\n{}", agent.log(), agent.out.text());
    drop(collector);
    let stored = org.stored();
    let got: HashSet<String> = stored.iter().cloned().collect();
    assert_eq!(got.len(), stored.len(), "nothing stored twice");
    assert_eq!(got, want, "nothing lost");
    // Drained and stopped cleanly: no segment is left behind, the last one included.
    assert_eq!(segments(&spool), 0);
}

fn dead_letters(spool: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["agent", "dead-letters"];
    args.extend_from_slice(extra);
    let sp = p(spool);
    args.extend_from_slice(&["--spool", &sp, "--output", "json"]);
    let out = run(&args, b"");
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn dead_letters_are_listed_replayed_and_purged_while_the_agent_runs() {
    let org = Org::new();
    let collector = org.collector(0, "");
    let (mine, _, _) = events(&org, "mine", 10, 71);
    let (theirs, file, _) = events(&org, "theirs", 120, 72);
    assert_ne!(mine, theirs);
    // 120 lines of another account's events (rejected by the collector), then one line that
    // is not JSON (refused by the source).
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("{not json at all\n");
    std::fs::write(&file, &text).unwrap();
    let theirs_lines: HashSet<String> = text.lines().take(120).map(str::to_string).collect();
    // Every line is refused, repeated ones included.
    let unique = 120;
    org.issue("agent", "agent", Some(&mine));
    let spool = org.path("spool-dl");
    let cfg = agent_config(&org, "dl", &mine, &file, collector.port, &spool, "");
    let agent = Agent::start(&cfg, &[]);
    // Listed while the agent runs (no "spool is in use").
    wait_until("every refused line is a dead letter", || {
        dead_letters(&spool, &[]).len() == unique + 1
    });
    let first = dead_letters(&spool, &[]);
    let bad: Vec<&serde_json::Value> = first
        .iter()
        .filter(|d| d["reason"].as_str().unwrap().contains("not JSON"))
        .collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(
        bad[0]["bytes"], "{not json at all",
        "the source keeps the bytes"
    );
    assert_eq!(
        bad[0]["source"].as_str().unwrap(),
        format!("jsonl:{}", p(&file))
    );
    let rejected: HashSet<String> = first
        .iter()
        .filter(|d| d["source"] == "collector")
        .map(|d| {
            assert!(
                d["reason"].as_str().unwrap().starts_with("wrong account"),
                "{d}"
            );
            d["bytes"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        rejected, theirs_lines,
        "the collector's refusals keep the event bytes"
    );
    assert_eq!(
        agent.metric("orgtrail_agent_dead_letters"),
        (unique + 1).to_string()
    );
    let (text_out, _) = {
        let o = run(&["agent", "dead-letters", "--spool", &p(&spool)], b"");
        assert!(o.status.success(), "{}", stderr(&o));
        (stdout(&o), ())
    };
    assert!(
        text_out.ends_with(&format!("dead-letters={}\n", unique + 1)),
        "{text_out}"
    );

    // Replay the refusals while the agent runs: they are shipped again (and refused again,
    // as new dead letters); the line that is not an event stays.
    let max_first_seq = first
        .iter()
        .map(|d| d["seq"].as_u64().unwrap())
        .max()
        .unwrap();
    let last_time = first
        .iter()
        .map(|d| {
            orgtrail_core::Timestamp::parse(d["time"].as_str().unwrap())
                .unwrap()
                .millis()
        })
        .max()
        .unwrap();
    wait_until("the clock moves past the first dead letters", || {
        orgtrail_core::Timestamp::parse(&now_rfc3339())
            .unwrap()
            .millis()
            > last_time
    });
    let cut = now_rfc3339();
    let out = run(
        &[
            "agent",
            "dead-letters",
            "replay",
            "--reason",
            "wrong account",
            "--spool",
            &p(&spool),
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        format!("replayed={unique} not_replayable=0 left=1")
    );
    assert!(stderr(&out).contains("handed to it"), "{}", stderr(&out));
    wait_until("the replayed events are refused again", || {
        let now = dead_letters(&spool, &[]);
        now.len() == unique + 1
            && now
                .iter()
                .filter(|d| d["source"] == "collector")
                .all(|d| d["seq"].as_u64().unwrap() > max_first_seq)
    });

    // Purge what was set aside before the cut: the line that is not JSON.
    let out = run(
        &[
            "agent",
            "dead-letters",
            "purge",
            "--before",
            &cut,
            "--spool",
            &p(&spool),
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), format!("purged=1 left={unique}"));
    let left = dead_letters(&spool, &[]);
    assert_eq!(left.len(), unique);
    assert!(left.iter().all(|d| d["source"] == "collector"));

    // A closed pipe is a quiet end.
    let st = Command::new("bash")
        .args([
            "-c",
            &format!(
                "set -o pipefail; '{}' agent dead-letters --spool '{}' --output json | head -1 >/dev/null",
                env!("CARGO_BIN_EXE_orgtrail"),
                p(&spool)
            ),
        ])
        .status()
        .unwrap();
    assert!(st.success(), "agent dead-letters | head -1 exits 0");

    // On a stopped spool the command does the work itself, and deletes nothing else.
    drop(agent);
    let segs = segments(&spool);
    let out = run(
        &[
            "agent",
            "dead-letters",
            "purge",
            "--before",
            "2100-01-01T00:00:00Z",
            "--spool",
            &p(&spool),
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), format!("purged={unique} left=0"));
    assert!(!stderr(&out).contains("handed to it"));
    assert!(dead_letters(&spool, &[]).is_empty());
    assert_eq!(
        segments(&spool),
        segs,
        "no segment deleted as a side effect"
    );
    drop(collector);
    assert!(org.stored().is_empty());
}

fn now_rfc3339() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    orgtrail_core::Timestamp(i64::try_from(ms).unwrap()).to_string()
}
