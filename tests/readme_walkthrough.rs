//! The README's "Run it by hand" walkthrough, run exactly as written.
//!
//! The fenced ```sh blocks between `<!-- walkthrough:begin -->` and `<!-- walkthrough:end -->`
//! are run in order, in one `bash` (so `&`, `$R` and `%1` carry from block to block, as in the
//! reader's shell), in an empty temporary directory, with the `orgtrail` binary cargo built
//! first on `PATH`. The only change to the text: the collector's port 4317 becomes a free one.
//! The ```text block after a ```sh block is what the README says it prints: each of its lines
//! must appear, in order, in the output from that block on (`...` stands for anything).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/procs.rs"]
mod procs;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use procs::Lines;

const BEGIN: &str = "<!-- walkthrough:begin -->";
const END: &str = "<!-- walkthrough:end -->";
/// The port the README's collector listens on.
const README_PORT: &str = "4317";

/// One ```sh block and the lines the README says it prints.
#[derive(Debug)]
struct Block {
    code: String,
    expect: Vec<String>,
}

/// The walkthrough's blocks, in order.
fn walkthrough(readme: &str) -> Vec<Block> {
    let start = readme
        .find(BEGIN)
        .expect("the README marks the walkthrough's start");
    let end = readme
        .find(END)
        .expect("the README marks the walkthrough's end");
    assert!(start < end, "begin marker before the end marker");
    let mut blocks: Vec<Block> = Vec::new();
    let mut lines = readme[start + BEGIN.len()..end].lines();
    while let Some(line) = lines.next() {
        let Some(lang) = line.strip_prefix("```") else {
            continue;
        };
        let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        match lang {
            "sh" => blocks.push(Block {
                code: body.join("\n"),
                expect: Vec::new(),
            }),
            "text" => {
                let b = blocks
                    .last_mut()
                    .expect("a ```text block follows the ```sh block whose output it shows");
                assert!(b.expect.is_empty(), "one output block per command block");
                b.expect = body.iter().map(|l| l.to_string()).collect();
            }
            other => panic!("the walkthrough holds only ```sh and ```text blocks, not {other:?}"),
        }
    }
    blocks
}

/// True when `line` is what `pattern` shows, `...` standing for any text.
fn matches(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split("...").collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return line == pattern;
    }
    if !line.starts_with(first) || !line[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &line[first.len()..line.len() - last.len()];
    for p in &parts[1..parts.len() - 1] {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

/// A port free now on loopback, for the collector (the README's own is 4317), from below the
/// kernel's ephemeral range ([`common::quiet_port`]).
fn free_port() -> u16 {
    common::quiet_port()
}

fn marker(i: usize) -> String {
    format!("@@ walkthrough block {i} @@")
}

const DONE: &str = "@@ walkthrough done @@";

/// Kills what is left of the walkthrough's process group (a collector left running when a
/// block failed).
struct Group(u32);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0)])
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn the_readme_walkthrough_works_as_written() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let blocks = walkthrough(&readme);
    assert!(
        blocks.len() >= 9,
        "the walkthrough's steps: {}",
        blocks.len()
    );
    let all_code: String = blocks.iter().map(|b| b.code.as_str()).collect();
    for step in [
        "orgtrail certs issue --ca ca --role auditor",
        "orgtrail gen-events --count 1000 --account 123456789012",
        "orgtrail agent --config agent.toml",
        "orgtrail lookup $R --resource-name i-ebeaf9e2",
        "--new --public-key keys/signing.pub",
        "orgtrail verify-proof proof.json --public-key keys/signing.pub",
        "orgtrail agent dead-letters --config agent.toml",
        "orgtrail lookup --data-dir data --keys keys --resource-name i-ebeaf9e2",
    ] {
        assert!(all_code.contains(step), "the walkthrough runs {step:?}");
    }

    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let mut script = String::from("set -e\nexec 2>&1\n");
    for (i, b) in blocks.iter().enumerate() {
        script.push_str(&format!("echo '{}'\n", marker(i)));
        script.push_str(&b.code.replace(README_PORT, &port));
        script.push('\n');
    }
    script.push_str(&format!("echo '{DONE}'\n"));
    let script_path = dir.path().join("walkthrough.sh");
    std::fs::write(&script_path, &script).unwrap();

    let bin = PathBuf::from(env!("CARGO_BIN_EXE_orgtrail"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cmd.arg(&script_path)
        .current_dir(dir.path())
        .env("PATH", path)
        // A new user's environment: no settings or profiles of whoever runs the tests.
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0);
    for (k, _) in std::env::vars() {
        if k.starts_with("ORGTRAIL_") || k == "NO_COLOR" {
            cmd.env_remove(&k);
        }
    }
    let mut child = cmd.spawn().unwrap();
    let _group = Group(child.id());
    let out = Lines::drain(child.stdout.take().unwrap());
    let status = procs::wait_exit(&mut child, Duration::from_secs(300), &out);
    assert!(
        status.success(),
        "the walkthrough stopped ({status}); what it printed:\n{}",
        out.text()
    );
    // Everything before the last echo has been read once it is.
    out.wait_for(&[DONE], Duration::from_secs(60));
    let text = out.text();
    check(&blocks, &text, &port);

    // What the text promises beyond its printed lines.
    let d = dir.path();
    for f in [
        "monday.json",
        "proof.json",
        "keys/signing.pub",
        "data",
        "backfill",
    ] {
        assert!(d.join(f).exists(), "{f} is where the walkthrough says");
    }
    let log = std::fs::read_to_string(d.join("collector.log")).unwrap();
    assert!(
        log.contains("collector stopped cleanly"),
        "the collector stopped cleanly on SIGTERM: {log}"
    );
    assert_eq!(
        text.matches("ec2:StartInstances  205.251.233.176  i-ebeaf9e2  Success")
            .count(),
        2,
        "the remote and the offline lookups find StartInstances:\n{text}"
    );
    assert!(text.contains("proof verified: event "), "{text}");
    assert_no_process_left(d);
}

/// Every block's promised lines appear, in order, in what was printed from it on.
fn check(blocks: &[Block], text: &str, port: &str) {
    let lines: Vec<&str> = text.lines().collect();
    for (i, b) in blocks.iter().enumerate() {
        let m = marker(i);
        let mut at = lines
            .iter()
            .position(|l| *l == m)
            .unwrap_or_else(|| panic!("step {} ran; output:\n{text}", i + 1));
        for want in &b.expect {
            let want = want.replace(README_PORT, port);
            if want.trim() == "..." || want.is_empty() {
                continue;
            }
            match lines[at + 1..].iter().position(|l| matches(&want, l)) {
                Some(j) => at += 1 + j,
                None => panic!(
                    "step {} of the walkthrough:\n{}\nshould print a line like\n  {want}\nbut printed (from the step on):\n{}",
                    i + 1,
                    b.code,
                    lines[lines.iter().position(|l| *l == m).unwrap_or(0)..].join("\n")
                ),
            }
        }
    }
}

/// No process of the walkthrough is left running in its directory (the collector was
/// stopped by the text's own `kill %1`).
fn assert_no_process_left(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| std::fs::read_link(e.path().join("cwd")).is_ok_and(|c| c.starts_with(dir)))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes left running in the walkthrough's directory: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn output_patterns() {
    assert!(matches("a ... b", "a x y b"));
    assert!(matches(
        "serial ... fingerprint sha256:...",
        "serial 0f fingerprint sha256:e4"
    ));
    assert!(!matches(
        "serial ... fingerprint",
        "serial 0f fingerprint x"
    ));
    assert!(matches("exact", "exact"));
    assert!(!matches("exact", "exact "));
    assert!(matches(
        "(1001 events in all; ... in groups not shown)",
        "(1001 events in all; 695 in groups not shown)"
    ));
}
