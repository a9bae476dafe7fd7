//! Bounds: gzip bombs are refused in bounded memory by `validate`, `import` and the agent, and
//! the valid input after a bomb still goes through. Real binary, real files.
//!
//! Peak memory is the child's own `VmHWM` (peak resident set), read from /proc while the
//! child is alive and done with the bomb: `validate` and `import` are given a FIFO as their
//! last input, and the test opens its writing end, which returns once the child has finished
//! every earlier input and opened the FIFO; the agent is asked after the file that follows the
//! bomb was stored. The bombs decompress to more than the bound the test asserts, so holding
//! one whole (as the decoder did before it streamed) cannot pass.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/org.rs"]
mod org;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use common::{orgtrail, run, stdout};
use org::{Follower, Org, p};

const ACCOUNT: &str = "123456789012";
const MIB: u64 = 1 << 20;
/// What the bombs decompress to (each twice `BOUND`).
const BOMB: u64 = 256 * MIB;
/// The most a child may hold at its peak while refusing a bomb: twice what the agent and
/// `import` take at their peak without holding one (about 60 MiB in a debug build: runtime,
/// spool, allocator arenas), so that a change to that base does not decide the test, and half
/// a bomb, which a child holding one whole cannot stay under.
const BOUND: u64 = 128 * MIB;

const EVENT: &str = r#"{"eventVersion":"1.08","eventID":"after-the-bomb","eventTime":"2026-11-24T10:00:00Z","eventSource":"s3.amazonaws.com","eventName":"ListBuckets","awsRegion":"eu-west-1","recipientAccountId":"123456789012"}"#;

/// `{"Records":[...]}` holding one record with a string of `size` bytes, gzipped (~100 KiB).
fn string_bomb(path: &Path, size: u64) {
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::default(),
    );
    gz.write_all(b"{\"Records\":[{\"eventVersion\":\"1.08\",\"x\":\"")
        .unwrap();
    let chunk = vec![b'a'; MIB as usize];
    for _ in 0..size / MIB {
        gz.write_all(&chunk).unwrap();
    }
    gz.write_all(b"\"}]}").unwrap();
    gz.finish().unwrap();
}

/// `{"Records":[` + `size` spaces + `]}`, gzipped.
fn space_bomb(path: &Path, size: u64) {
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::default(),
    );
    gz.write_all(b"{\"Records\":[").unwrap();
    let chunk = vec![b' '; MIB as usize];
    for _ in 0..size / MIB {
        gz.write_all(&chunk).unwrap();
    }
    gz.write_all(b"]}").unwrap();
    gz.finish().unwrap();
}

fn mkfifo(path: &Path) {
    assert!(
        std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap()
            .success()
    );
}

/// Peak resident set of a live process, bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/PID/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kib * 1024
}

/// Runs `orgtrail ARGS... FIFO`; once the child opened the FIFO (it is done with every
/// earlier input), returns its peak RSS, feeds `last` through the FIFO and waits.
fn peak_before_last_input(
    args: &[String],
    fifo: &Path,
    last: &[u8],
) -> (u64, std::process::Output) {
    let child = orgtrail()
        .args(args)
        .arg(fifo)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Blocks until the child opens the FIFO for reading.
    let mut w = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
    let peak = peak_rss(child.id());
    w.write_all(last).unwrap();
    drop(w);
    (peak, child.wait_with_output().unwrap())
}

#[test]
fn validate_refuses_bombs_in_bounded_memory_and_checks_the_next_file() {
    let dir = tempfile::tempdir().unwrap();
    let spaces = dir.path().join("spaces.json.gz");
    let string = dir.path().join("string.json.gz");
    space_bomb(&spaces, BOMB + 32 * MIB);
    string_bomb(&string, BOMB);
    assert!(std::fs::metadata(&spaces).unwrap().len() < MIB);
    let fifo = dir.path().join("next.json");
    mkfifo(&fifo);
    let args: Vec<String> = vec![
        "validate".into(),
        "--max-input-bytes".into(),
        (BOMB + 4 * MIB).to_string(),
        p(&spaces),
        p(&string),
    ];
    let (peak, out) = peak_before_last_input(
        &args,
        &fifo,
        format!("{{\"Records\":[{EVENT}]}}").as_bytes(),
    );
    let text = stdout(&out);
    eprintln!(
        "validate: peak RSS {} MiB refusing two {} MiB bombs",
        peak / MIB,
        BOMB / MIB
    );
    assert!(peak < BOUND, "validate peaked at {} MiB", peak / MIB);
    assert!(
        text.contains(&format!(
            "spaces.json.gz: input is larger than the limit of {} bytes (after decompression)",
            BOMB + 4 * MIB
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "string.json.gz: record 1: event is {} bytes, larger than the limit of 262144 bytes",
            BOMB + 30
        )),
        "{text}"
    );
    assert!(text.ends_with("valid=1 invalid=2\n"), "{text}");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn import_refuses_a_bomb_in_bounded_memory_and_stores_the_next_file() {
    let org = Org::new();
    let string = org.path("string.json.gz");
    string_bomb(&string, BOMB);
    let fifo = org.path("next.json");
    mkfifo(&fifo);
    let args: Vec<String> = vec![
        "import".into(),
        "--data-dir".into(),
        p(&org.path("data")),
        "--keys".into(),
        p(&org.path("keys")),
        p(&string),
    ];
    let (peak, out) = peak_before_last_input(
        &args,
        &fifo,
        format!("{{\"Records\":[{EVENT}]}}").as_bytes(),
    );
    let text = stdout(&out);
    eprintln!(
        "import: peak RSS {} MiB refusing a {} MiB bomb",
        peak / MIB,
        BOMB / MIB
    );
    assert!(peak < BOUND, "import peaked at {} MiB", peak / MIB);
    assert!(
        text.contains("string.json.gz: record 1: event is")
            && text.contains("larger than the limit"),
        "{text}"
    );
    assert!(
        text.ends_with("stored=1 duplicates=0 conflicts=0 rejected=1\n"),
        "{text}"
    );
    assert_eq!(org.stored(), vec![EVENT.to_string()]);
}

#[test]
fn the_agent_refuses_a_bomb_in_bounded_memory_and_ships_the_next_file() {
    let org = Org::new();
    let c = org.collector(0, "");
    org.issue("admin", "admin", None);
    org.issue("agent", "agent", Some(ACCOUNT));
    let root = org.path("trail");
    let day = root.join(format!("AWSLogs/{ACCOUNT}/CloudTrail/eu-west-1/2026/11/24"));
    std::fs::create_dir_all(&day).unwrap();
    // Both files are there before the agent starts: they settle in the same scan and are
    // read in name order, the bomb first.
    string_bomb(
        &day.join(format!(
            "{ACCOUNT}_CloudTrail_eu-west-1_20261124T0000Z_a.json.gz"
        )),
        BOMB,
    );
    std::fs::write(
        day.join(format!(
            "{ACCOUNT}_CloudTrail_eu-west-1_20261124T0005Z_b.json.gz"
        )),
        common::gzip(format!("{{\"Records\":[{EVENT}]}}").as_bytes()),
    )
    .unwrap();
    let sources = format!(
        "[[sources]]\ntype = \"cloudtrail_dir\"\nname = \"trail\"\npath = \"{}\"\npoll_ms = 20\n",
        p(&root)
    );
    let cfg = org.agent_config_with("agent", ACCOUNT, c.port, &sources);
    let mut follower = Follower::start(&org, &c, "admin");
    let mut agent = orgtrail()
        .args(["agent", "--config", &p(&cfg)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The file after the bomb is stored: the bomb is behind the agent.
    assert_eq!(follower.next(1), vec!["after-the-bomb".to_string()]);
    let peak = peak_rss(agent.id());
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status();
    assert!(agent.wait().unwrap().success());
    eprintln!(
        "agent: peak RSS {} MiB refusing a {} MiB bomb",
        peak / MIB,
        BOMB / MIB
    );
    assert!(peak < BOUND, "the agent peaked at {} MiB", peak / MIB);
    let dl = stdout(&run(
        &[
            "agent",
            "dead-letters",
            "--spool",
            &p(&org.path("spool-agent")),
        ],
        b"",
    ));
    assert!(dl.contains("dead-letters=1"), "{dl}");
}
