//! The command line's manners: a closed pipe is a quiet end, `verify` does not claim what it
//! could not check, `--follow` is refused where it cannot work and says when it stops, pasted
//! selectors JSON lists every problem, and errors say each cause once. Real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/org.rs"]
mod org;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::{orgtrail, run, stderr, stdout};
use org::{Org, p};

/// Runs `orgtrail ARGS` with its standard output closed before it writes anything.
fn with_closed_stdout(args: &[&str]) -> std::process::Output {
    let mut child = orgtrail()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

#[test]
fn a_closed_pipe_is_a_quiet_end_for_every_kind_of_output() {
    // println! output (demo), and buffered writes (lookup), gen-events, help.
    let dir = tempfile::tempdir().unwrap();
    let demo = with_closed_stdout(&[
        "demo",
        "--dir",
        &p(&dir.path().join("demo")),
        "--events",
        "100",
    ]);
    assert_eq!(demo.status.code(), Some(0), "{}", stderr(&demo));
    assert!(!stderr(&demo).contains("panicked"), "{}", stderr(&demo));

    let org = Org::new();
    let events = stdout(&run(
        &["gen-events", "--count", "300", "--accounts", "1"],
        b"",
    ));
    let file = org.path("events.jsonl");
    std::fs::write(&file, &events).unwrap();
    let import = run(
        &[
            "import",
            "--data-dir",
            &p(&org.path("data")),
            "--keys",
            &p(&org.path("keys")),
            &p(&file),
        ],
        b"",
    );
    assert!(import.status.success(), "{}", stderr(&import));
    for output in ["table", "jsonl", "json"] {
        let o = with_closed_stdout(&[
            "lookup",
            "--data-dir",
            &p(&org.path("data")),
            "--keys",
            &p(&org.path("keys")),
            "--max",
            "300",
            "--output",
            output,
        ]);
        assert_eq!(o.status.code(), Some(0), "{output}: {}", stderr(&o));
        assert_eq!(stderr(&o), "", "{output}");
    }
    for args in [
        &["gen-events", "--count", "1000"][..],
        &[
            "stats",
            "--data-dir",
            &p(&org.path("data")),
            "--keys",
            &p(&org.path("keys")),
        ][..],
        &["config", "example", "collector"][..],
    ] {
        let o = with_closed_stdout(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o), "", "{args:?}");
    }
}

#[test]
fn verify_refuses_a_store_in_use_before_claiming_anything() {
    let org = Org::new();
    let _c = org.collector(0, "");
    let out = run(
        &[
            "verify",
            "--data-dir",
            &p(&org.path("data")),
            "--keys",
            &p(&org.path("keys")),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "", "nothing may be claimed as checked");
    let e = stderr(&out);
    assert!(
        e.contains("store cannot be opened") && e.contains("nothing was checked"),
        "{e}"
    );
}

#[test]
fn follow_needs_a_collector() {
    let org = Org::new();
    let out = run(
        &[
            "lookup",
            "--follow",
            "--data-dir",
            &p(&org.path("data")),
            "--keys",
            &p(&org.path("keys")),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--follow watches a running collector"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_follow_resumes_after_the_collector_restarts_and_misses_nothing() {
    let org = Org::new();
    org.issue("admin", "admin", None);
    let text = stdout(&run(
        &[
            "gen-events",
            "--count",
            "60",
            "--accounts",
            "1",
            "--seed",
            "5",
        ],
        b"",
    ));
    let lines: Vec<&str> = text.lines().collect();
    let account =
        serde_json::from_str::<serde_json::Value>(lines[0]).unwrap()["recipientAccountId"]
            .as_str()
            .unwrap()
            .to_string();
    org.issue("agent", "agent", Some(&account));
    let part = |name: &str, range: std::ops::Range<usize>| {
        let path = org.path(name);
        std::fs::write(&path, lines[range].join("\n") + "\n").unwrap();
        path
    };
    let (a, b, c_file) = (
        part("a.jsonl", 0..20),
        part("b.jsonl", 20..40),
        part("c.jsonl", 40..60),
    );
    let ship = |name: &str, file: &std::path::Path, port: u16| {
        let cfg = org.agent_config(name, &account, "agent", file, port);
        let o = orgtrail()
            .args(["agent", "--exit-when-drained", "--config", &p(&cfg)])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    };

    // Restarted on the same port below: one the kernel never hands to a connection meanwhile.
    let mut c = org.collector(common::quiet_port(), "");
    let port = c.port;
    let mut follower = orgtrail()
        .arg("lookup")
        .args(org.reader_args(&c, "admin"))
        .args(["--follow", "--output", "jsonl"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(follower.stderr.take().unwrap()).lines();
    let first = err.next().unwrap().unwrap();
    assert!(first.contains("following events"), "{first}");
    let mut out = BufReader::new(follower.stdout.take().unwrap()).lines();
    let mut next =
        |n: usize| -> Vec<String> { (0..n).map(|_| out.next().unwrap().unwrap()).collect() };

    ship("agent-a", &a, port);
    let mut seen = next(20);
    // The collector stops (the stream ends); while it is down, events are stored offline.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &c.child.id().to_string()])
        .status();
    assert!(c.child.wait().unwrap().success());
    drop(c);
    let import = run(
        &[
            "import",
            "--data-dir",
            &p(&org.path("data")),
            "--keys",
            &p(&org.path("keys")),
            &p(&b),
        ],
        b"",
    );
    assert!(import.status.success(), "{}", stderr(&import));
    // It comes back on the same port: the follower reconnects and is replayed what it missed,
    // then follows live.
    let c = org.collector(port, "");
    seen.extend(next(20));
    ship("agent-c", &c_file, c.port);
    seen.extend(next(20));
    let mut want: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    want.sort();
    seen.sort();
    assert_eq!(seen, want, "every event once, none missed");
    let _ = follower.kill();
    let _ = follower.wait();
    let log: Vec<String> = err.map_while(Result::ok).collect();
    assert!(log.iter().any(|l| l.contains("reconnecting")), "{log:?}");
    assert!(
        log.iter()
            .any(|l| l.contains("reconnected") && l.contains("resuming after seq 20")),
        "{log:?}"
    );
}

#[test]
fn pasted_selectors_json_lists_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("selectors.json");
    std::fs::write(
        &json,
        r#"{"AdvancedEventSelectors":[{"Name":"x","FieldSelectors":[
            {"Field":"eventCategory","Equals":["Management"]},
            {"Field":"eventNam","Equals":["a"]},
            {"Field":"readOnly","Equalz":["true"]}]}]}"#,
    )
    .unwrap();
    let out = run(&["selectors", "check", "--aws-json", &p(&json), "-"], b"");
    assert_eq!(out.status.code(), Some(2));
    let e = stderr(&out);
    assert!(e.contains("unknown key \"Equalz\""), "{e}");
    assert!(e.contains("unknown field \"eventNam\""), "{e}");
}

#[test]
fn an_error_says_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing");
    for args in [
        vec![
            "keys".to_string(),
            "rotate".into(),
            "--keys".into(),
            p(&missing),
        ],
        vec![
            "lookup".into(),
            "--data-dir".into(),
            p(&missing),
            "--keys".into(),
            p(&missing),
        ],
        vec![
            "collector".into(),
            "--config".into(),
            p(&missing.join("c.toml")),
        ],
        vec![
            "agent".into(),
            "--config".into(),
            p(&missing.join("a.toml")),
        ],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&args, b"");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let e = stderr(&out);
        assert_eq!(e.matches("(os error 2)").count(), 1, "{args:?}: {e}");
    }
}
