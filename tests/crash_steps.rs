//! A crash at each step of a group commit and of the index's background work.
//!
//! For every crash point of the store (`orgtrail_store::crashpoint::STEPS`), `orgtrail import
//! --progress` runs with `ORGTRAIL_CRASH_AT=<step>` and small groups, index runs and
//! dictionary samples, so that a short import goes through every step. The test feeds it
//! events on standard input one batch at a time, each after the previous one is acknowledged,
//! until the process aborts at the step (it must: a step never reached would make the check
//! vacuous). The store it leaves must then:
//! - open and pass a full verification (records, leaves, tree, checkpoints, indexes);
//! - hold every acknowledged event, found by its eventID, and no event twice;
//! - be completed exactly by a re-run of the same import (stored + duplicates = input), with
//!   no temporary index file left behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use common::{orgtrail, run, stderr, stdout};

/// Events per batch, group and memtable in the crashing import.
const BATCH: usize = 100;
/// Events available to a child: the dictionary step needs training to finish (a second or
/// two in a debug build) while groups keep coming.
const POOL: usize = 20_000;
/// How long a child may take to acknowledge a batch or abort.
const DEADLINE: Duration = Duration::from_secs(60);
const SIGABRT: i32 = 6;

fn event_ids(jsonl: &str) -> Vec<String> {
    jsonl
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["eventID"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Names of the index files in `data` that process `pid` was writing (`run-*.idx.PID-N.tmp`).
fn temporaries_of(pid: u32, data: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(data.join("index")) else {
        return Vec::new();
    };
    let mark = format!(".{pid}-");
    entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(&mark) && n.ends_with(".tmp"))
        .collect()
}

/// What the crashing import did: the events it was given and the ranges it acknowledged.
struct Crashed {
    pid: u32,
    fed: usize,
    acked: Vec<(usize, usize)>,
}

/// Runs the import with `ORGTRAIL_CRASH_AT=step`, feeding `lines` a batch at a time, and
/// asserts that it aborted at `step`.
fn crash_at(step: &str, lines: &[&str], keys: &Path, data: &Path) -> Crashed {
    let mut child = orgtrail()
        .env(orgtrail_store::crashpoint::ENV, step)
        .args([
            "import",
            "--progress",
            "--data-dir",
            data.to_str().unwrap(),
            "--keys",
            keys.to_str().unwrap(),
            "--batch-events",
            &BATCH.to_string(),
            "--max-group-events",
            &BATCH.to_string(),
            "--index-memtable-events",
            &BATCH.to_string(),
            "--dict-train-after",
            "1000",
            "--format",
            "jsonl",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Standard error is read on a thread so that a hung child fails the deadline instead of
    // blocking the test.
    let (tx, rx) = mpsc::channel::<String>();
    let err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let mut acked = Vec::new();
    let mut said = Vec::new();
    let mut fed = 0;
    // The closing checkpoint is reached at the end of the input: a short one will do.
    let lines = if step == "close-before-checkpoint" {
        &lines[..5 * BATCH]
    } else {
        lines
    };
    'feed: for chunk in lines.chunks(BATCH) {
        let mut text = chunk.join("\n");
        text.push('\n');
        if stdin.write_all(text.as_bytes()).is_err() {
            break; // it died
        }
        fed += chunk.len();
        // Wait for this batch's acknowledgement, or the end of the child.
        loop {
            match rx.recv_timeout(DEADLINE) {
                Ok(line) => {
                    if let Some(range) = line.strip_prefix("acked ") {
                        let (a, b) = range.split_once('-').unwrap();
                        let last: usize = b.parse().unwrap();
                        acked.push((a.parse().unwrap(), last));
                        if last == fed {
                            break;
                        }
                    } else {
                        said.push(line);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break 'feed,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    panic!(
                        "{step}: the import neither acknowledged nor aborted within {DEADLINE:?} (after {fed} events)"
                    );
                }
            }
        }
    }
    drop(stdin);
    // Acknowledgements already on their way when it died count too.
    while let Ok(line) = rx.recv_timeout(DEADLINE) {
        if let Some(range) = line.strip_prefix("acked ") {
            let (a, b) = range.split_once('-').unwrap();
            acked.push((a.parse().unwrap(), b.parse().unwrap()));
        } else {
            said.push(line);
        }
    }
    reader.join().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(SIGABRT),
        "{step}: the import must abort at the step (it was fed {fed} events, status {status}); it said: {said:?}"
    );
    let announced = format!("crash point {step} reached");
    assert!(
        said.iter().any(|l| l.contains(&announced)),
        "{step}: the abort is the crash point's: {said:?}"
    );
    Crashed { pid, fed, acked }
}

fn check_step(step: &str, all: &[&str], ids: &[String], keys: &Path, dir: &Path) {
    let data = dir.join(step);
    let started = std::time::Instant::now();
    let crashed = crash_at(step, all, keys, &data);
    let crash_time = started.elapsed();
    let (d, k) = (data.to_str().unwrap(), keys.to_str().unwrap());
    let left = temporaries_of(crashed.pid, &data);
    if step == "run-tmp-synced" {
        assert!(
            !left.is_empty(),
            "{step}: the crash left the run's temporary file"
        );
    }

    // It opens and passes a full verification, as the crash left it.
    let v = run(&["verify", "--data-dir", d, "--keys", k], b"");
    assert!(
        v.status.success(),
        "{step}: verify after the crash: {}{}",
        stdout(&v),
        stderr(&v)
    );

    // Every acknowledged event is there, nothing twice.
    let dump = run(
        &[
            "lookup",
            "--data-dir",
            d,
            "--keys",
            k,
            "--max",
            "1000000",
            "--output",
            "jsonl",
        ],
        b"",
    );
    assert!(dump.status.success(), "{step}: lookup: {}", stderr(&dump));
    let stored = event_ids(&stdout(&dump));
    let unique: HashSet<&String> = stored.iter().collect();
    assert_eq!(
        unique.len(),
        stored.len(),
        "{step}: an event is stored twice"
    );
    assert!(stored.len() <= crashed.fed, "{step}: more stored than fed");
    for &(a, b) in &crashed.acked {
        for ordinal in a..=b {
            assert!(
                unique.contains(&ids[ordinal - 1]),
                "{step}: acknowledged event {ordinal} is missing"
            );
        }
    }
    // ...and found by its eventID (the dedup index; verify checked every entry).
    if let (Some(&(first, _)), Some(&(_, last))) = (crashed.acked.first(), crashed.acked.last()) {
        for ordinal in [first, last] {
            let one = run(
                &[
                    "lookup",
                    "--data-dir",
                    d,
                    "--keys",
                    k,
                    "--event-id",
                    &ids[ordinal - 1],
                    "--output",
                    "jsonl",
                ],
                b"",
            );
            assert_eq!(
                event_ids(&stdout(&one)),
                vec![ids[ordinal - 1].clone()],
                "{step}: acknowledged event {ordinal} by its eventID: {}",
                stderr(&one)
            );
        }
    }

    // The same import again completes the store exactly.
    let input = dir.join(format!("{step}.jsonl"));
    let mut text = all[..crashed.fed].join("\n");
    text.push('\n');
    std::fs::write(&input, text).unwrap();
    let again = run(
        &[
            "import",
            "--data-dir",
            d,
            "--keys",
            k,
            input.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(
        stdout(&again).trim(),
        format!(
            "stored={} duplicates={} conflicts=0 rejected=0",
            crashed.fed - stored.len(),
            stored.len()
        ),
        "{step}: {}",
        stderr(&again)
    );
    let v = run(&["verify", "--data-dir", d, "--keys", k], b"");
    assert!(
        stdout(&v).contains(&format!("verified events={} ", crashed.fed)),
        "{step}: verify after the re-run: {}{}",
        stdout(&v),
        stderr(&v)
    );
    // The temporary files the crash left were removed when the store was opened for writing.
    // (The re-run's own abandoned merge may leave one of its own: the next open removes it.)
    let still: Vec<String> = temporaries_of(crashed.pid, &data);
    assert!(
        still.is_empty(),
        "{step}: {still:?} left in the index directory after a reopen (there were {left:?})"
    );
    eprintln!(
        "{step}: aborted after {} events fed, {} acknowledged, {} stored ({:.1} s; checks {:.1} s)",
        crashed.fed,
        crashed.acked.iter().map(|(a, b)| b + 1 - a).sum::<usize>(),
        stored.len(),
        crash_time.as_secs_f64(),
        (started.elapsed() - crash_time).as_secs_f64()
    );
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::remove_file(&input).unwrap();
}

#[test]
fn a_crash_at_every_step_of_a_group_commit_loses_nothing_acknowledged_and_stores_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    assert!(
        run(&["keys", "init", "--out", keys.to_str().unwrap()], b"")
            .status
            .success()
    );
    let gen_out = run(
        &[
            "gen-events",
            "--count",
            &POOL.to_string(),
            "--seed",
            "12",
            "--accounts",
            "3",
        ],
        b"",
    );
    let text = stdout(&gen_out);
    let all: Vec<&str> = text.lines().collect();
    let ids = event_ids(&text);
    assert_eq!(ids.len(), POOL);

    // Two steps at a time: each is a process of its own on a store of its own.
    let steps = orgtrail_store::crashpoint::STEPS;
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(step) = steps.get(i) else { break };
                    check_step(step, &all, &ids, &keys, dir.path());
                }
            });
        }
    });
}

/// `orgtrail store upgrade` of a format 1 store, aborted at each of its steps: the store stays
/// refused as format 1 (never half-read), and running the upgrade again finishes it with the
/// same events and the same tree (the fixture's old checkpoint verifies).
#[test]
fn an_upgrade_aborted_at_any_step_is_finished_by_running_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../orgtrail-store/tests/fixtures/format1");
    let keys = fixture.join("keys");
    let k = keys.to_str().unwrap();
    let checkpoint = fixture.join("checkpoint.json");
    let mut steps: Vec<&str> = orgtrail_store::crashpoint::UPGRADE_STEPS.to_vec();
    steps.extend(["run-tmp-synced", "run-register-applied", "run-registered"]);
    for step in steps {
        let data = dir.path().join(step);
        common::fs::copy_dir(&fixture.join("data"), &data);
        let d = data.to_str().unwrap();
        let upgrade = [
            "store",
            "upgrade",
            "--data-dir",
            d,
            "--keys",
            k,
            "--index-memtable-events",
            "100",
        ];
        let crashed = orgtrail()
            .env(orgtrail_store::crashpoint::ENV, step)
            .args(upgrade)
            .output()
            .unwrap();
        assert_eq!(
            crashed.status.signal(),
            Some(SIGABRT),
            "{step}: the upgrade must abort at the step: {} {}",
            stdout(&crashed),
            stderr(&crashed)
        );
        assert!(
            stderr(&crashed).contains(&format!("crash point {step} reached")),
            "{step}: {}",
            stderr(&crashed)
        );
        let refused = run(&["verify", "--data-dir", d, "--keys", k], b"");
        assert!(
            !refused.status.success() && stderr(&refused).contains("has format 1"),
            "{step}: a half-upgraded store is refused as format 1: {}{}",
            stdout(&refused),
            stderr(&refused)
        );
        let again = run(&upgrade, b"");
        assert!(
            again.status.success() && stdout(&again).contains("from format 1 to 4: 600 events"),
            "{step}: upgrade again: {}{}",
            stdout(&again),
            stderr(&again)
        );
        let v = run(
            &[
                "verify",
                "--data-dir",
                d,
                "--keys",
                k,
                "--checkpoint",
                checkpoint.to_str().unwrap(),
            ],
            b"",
        );
        assert!(
            v.status.success() && stdout(&v).contains("verified events=600 "),
            "{step}: verify after the upgrade: {}{}",
            stdout(&v),
            stderr(&v)
        );
        let dump = run(
            &[
                "lookup",
                "--data-dir",
                d,
                "--keys",
                k,
                "--max",
                "100000",
                "--output",
                "jsonl",
            ],
            b"",
        );
        let ids = event_ids(&stdout(&dump));
        let unique: HashSet<&String> = ids.iter().collect();
        assert_eq!((ids.len(), unique.len()), (600, 600), "{step}");
        // The upgrade writes its runs itself, so nothing of its own is left either.
        for e in std::fs::read_dir(data.join("index")).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                !name.ends_with(".tmp"),
                "{step}: {name} left in the index directory"
            );
        }
        std::fs::remove_dir_all(&data).unwrap();
    }
}
