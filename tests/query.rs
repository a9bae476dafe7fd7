//! Asking a running collector: remote lookups and stats over mutual TLS, who may ask what,
//! live follow, and the one-command demo. Real processes, real certificates, real sled.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/org.rs"]
mod org;

use common::{run, stderr, stdout};
use org::{Collector, Follower, Org, events, p};

fn lookup(args: &[String]) -> std::process::Output {
    let mut all = vec!["lookup".to_string()];
    all.extend_from_slice(args);
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    run(&all, b"")
}

/// Two accounts' events in a collector: (org, collector, account A, account B).
fn two_accounts() -> (Org, Collector, String, String) {
    let org = Org::new();
    let c = org.collector(0, "");
    let (a, fa, _) = events(&org, "a", 1500, 21);
    let (b, fb, _) = events(&org, "b", 500, 22);
    org.ship(&c, "agent-a", &a, &fa);
    org.ship(&c, "agent-b", &b, &fb);
    (org, c, a, b)
}

fn field(line: &str, f: &str) -> serde_json::Value {
    serde_json::from_str::<serde_json::Value>(line).unwrap()[f].clone()
}

#[test]
fn remote_lookups_with_each_filter_answer_as_the_store_does() {
    let (org, c, a, _b) = two_accounts();
    org.issue("auditor", "auditor", None);
    // Filter values taken from stored events, so every lookup has answers.
    let all = stdout(&lookup(
        &[
            org.reader_args(&c, "auditor"),
            vec![
                "--max".into(),
                "5000".into(),
                "--output".into(),
                "jsonl".into(),
            ],
        ]
        .concat(),
    ));
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 2000 - dups_of(&org));
    let with = |f: &str| {
        lines
            .iter()
            .find(|l| !field(l, f).is_null())
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .unwrap()
    };
    let ev = with("errorCode");
    let res = with("resources");
    let key = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["userIdentity"]["accessKeyId"].is_string())
        .unwrap();
    let times: Vec<String> = lines
        .iter()
        .map(|l| field(l, "eventTime").as_str().unwrap().to_string())
        .collect();
    let cases: Vec<Vec<String>> = vec![
        vec![
            "--event-name".into(),
            ev["eventName"].as_str().unwrap().into(),
        ],
        vec![
            "--event-source".into(),
            ev["eventSource"].as_str().unwrap().into(),
        ],
        vec![
            "--error-code".into(),
            ev["errorCode"].as_str().unwrap().into(),
        ],
        vec!["--region".into(), ev["awsRegion"].as_str().unwrap().into()],
        vec!["--event-id".into(), ev["eventID"].as_str().unwrap().into()],
        // Account and eventID: one event, fetched directly (GetEvent).
        vec![
            "--event-id".into(),
            ev["eventID"].as_str().unwrap().into(),
            "--account".into(),
            ev["recipientAccountId"].as_str().unwrap().into(),
        ],
        vec!["--account".into(), a.clone()],
        vec!["--read-only".into(), "false".into()],
        vec![
            "--resource-name".into(),
            res["resources"][0]["ARN"].as_str().unwrap().into(),
        ],
        vec![
            "--resource-type".into(),
            res["resources"][0]["type"].as_str().unwrap().into(),
        ],
        vec![
            "--access-key-id".into(),
            key["userIdentity"]["accessKeyId"].as_str().unwrap().into(),
        ],
        vec![
            "--start".into(),
            times[times.len() / 2].clone(),
            "--end".into(),
            times[times.len() / 4].clone(),
        ],
        vec![
            "--event-name".into(),
            ev["eventName"].as_str().unwrap().into(),
            "--account".into(),
            a.clone(),
        ],
    ];
    let out = |args: &[String]| {
        [
            args.to_vec(),
            vec![
                "--max".into(),
                "5000".into(),
                "--output".into(),
                "jsonl".into(),
            ],
        ]
        .concat()
    };
    let mut remote_answers = Vec::new();
    for case in &cases {
        let o = lookup(&[org.reader_args(&c, "auditor"), out(case)].concat());
        assert!(o.status.success(), "{case:?}: {}", stderr(&o));
        remote_answers.push(stdout(&o));
    }
    // The same lookups offline, on the store itself, once the collector has stopped.
    drop(c);
    for (case, remote) in cases.iter().zip(remote_answers) {
        let o = lookup(
            &[
                vec![
                    "--data-dir".into(),
                    p(&org.path("data")),
                    "--keys".into(),
                    p(&org.path("keys")),
                ],
                out(case),
            ]
            .concat(),
        );
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(!remote.is_empty(), "{case:?} found nothing");
        assert_eq!(remote, stdout(&o), "{case:?}");
    }
}

/// Redeliveries among the generated events of `two_accounts` (5% duplicates).
fn dups_of(org: &Org) -> usize {
    ["a.jsonl", "b.jsonl"]
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(org.path(f)).unwrap();
            let all: Vec<&str> = text.lines().collect();
            let uniq: std::collections::HashSet<&str> = all.iter().copied().collect();
            all.len() - uniq.len()
        })
        .sum()
}

#[test]
fn only_readers_may_ask_and_a_limited_auditor_sees_only_its_accounts() {
    let (org, c, a, b) = two_accounts();
    org.issue("auditor-a", "auditor", Some(&a));

    // An agent certificate cannot query.
    let o = lookup(&org.reader_args(&c, "agent-a"));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("role agent") && e.contains("only auditor and admin certificates may query"),
        "{e}"
    );

    // Limited to A: a lookup without an account filter returns only A's events.
    let o = lookup(
        &[
            org.reader_args(&c, "auditor-a"),
            vec![
                "--max".into(),
                "5000".into(),
                "--output".into(),
                "jsonl".into(),
            ],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<String> = stdout(&o).lines().map(String::from).collect();
    assert!(!lines.is_empty());
    assert!(
        lines
            .iter()
            .all(|l| field(l, "recipientAccountId").as_str() == Some(a.as_str()))
    );
    // Asking for B is refused, naming what it may read.
    let o = lookup(
        &[
            org.reader_args(&c, "auditor-a"),
            vec!["--account".into(), b.clone()],
        ]
        .concat(),
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains(&format!("may read account {a}, not {b}")), "{e}");
    // B's events cannot be reached by eventID either.
    let b_line = std::fs::read_to_string(org.path("b.jsonl")).unwrap();
    let b_id = field(b_line.lines().next().unwrap(), "eventID");
    let o = lookup(
        &[
            org.reader_args(&c, "auditor-a"),
            vec!["--event-id".into(), b_id.as_str().unwrap().into()],
        ]
        .concat(),
    );
    assert!(o.status.success());
    assert!(stdout(&o).contains("(0 events)"), "{}", stdout(&o));
    let o = lookup(
        &[
            org.reader_args(&c, "auditor-a"),
            vec![
                "--event-id".into(),
                b_id.as_str().unwrap().into(),
                "--account".into(),
                b.clone(),
            ],
        ]
        .concat(),
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains(&format!("not {b}")), "{}", stderr(&o));
    // Its counts cover A alone.
    let mut args = vec!["stats".to_string(), "--by".into(), "account".into()];
    args.extend(org.reader_args(&c, "auditor-a"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run(&args, b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.contains(&a) && !s.contains(&b), "{s}");
}

#[test]
fn stats_count_by_account_and_event_name() {
    let (org, c, a, b) = two_accounts();
    org.issue("admin", "admin", None);
    let mut args = vec![
        "stats".to_string(),
        "--by".into(),
        "account".into(),
        "--top".into(),
        "10".into(),
    ];
    args.extend(org.reader_args(&c, "admin"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run(&args, b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    let count_of = |acct: &str| -> u64 {
        s.lines()
            .find(|l| l.starts_with(acct))
            .and_then(|l| l.split_whitespace().last())
            .unwrap()
            .parse()
            .unwrap()
    };
    let unique = |f: &str| {
        let text = std::fs::read_to_string(org.path(f)).unwrap();
        text.lines().collect::<std::collections::HashSet<_>>().len() as u64
    };
    assert_eq!(count_of(&a), unique("a.jsonl"));
    assert_eq!(count_of(&b), unique("b.jsonl"));
    assert!(s.contains(&format!(
        "({} events)",
        unique("a.jsonl") + unique("b.jsonl")
    )));
}

#[test]
fn follow_receives_an_event_stored_after_it_started() {
    let org = Org::new();
    let c = org.collector(0, "");
    org.issue("auditor", "auditor", None);
    let (a, file, _) = events(&org, "a", 20, 31);
    let text = std::fs::read_to_string(&file).unwrap();
    let first = text.lines().next().unwrap().to_string();
    let name = field(&first, "eventName").as_str().unwrap().to_string();
    // Subscribed (it says so) before anything is shipped.
    let mut follower = Follower::start_with(&org, &c, "auditor", &["--event-name", &name]);
    org.ship(&c, "agent-a", &a, &file);
    let want: Vec<&str> = text
        .lines()
        .filter(|l| field(l, "eventName") == field(&first, "eventName"))
        .collect();
    assert_eq!(
        follower.lines(1),
        vec![want[0].to_string()],
        "the first matching event, byte-identical"
    );
}

#[test]
fn the_demo_answers_who_started_the_instance() {
    let dir = tempfile::tempdir().unwrap();
    let d = p(&dir.path().join("demo"));
    for round in 0..2 {
        // The second run reuses the directory: certificates, keys and store.
        let o = run(&["demo", "--dir", &d, "--events", "3000"], b"");
        let s = stdout(&o);
        assert!(o.status.success(), "round {round}: {s}\n{}", stderr(&o));
        let row = s
            .lines()
            .find(|l| l.contains("ec2:StartInstances"))
            .unwrap_or_else(|| panic!("no answer row in:\n{s}"));
        for cell in [
            "2014-03-06T21:22:54Z",
            "123456789012",
            "us-east-2",
            "Alice",
            "205.251.233.176",
            "i-ebeaf9e2",
            "Success",
        ] {
            assert!(row.contains(cell), "{cell} missing from {row}");
        }
        assert!(s.contains("verified events=3001"), "{s}");
        assert!(s.contains("ACCOUNT") && s.contains("EVENT NAME"), "{s}");
    }
}

/// Rows of a `stats` table: first column -> count.
fn stats_rows(s: &str) -> std::collections::HashMap<String, u64> {
    s.lines()
        .skip(1)
        .take_while(|l| !l.starts_with('('))
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            (cells[0].to_string(), cells.last().unwrap().parse().unwrap())
        })
        .collect()
}

#[test]
fn stats_counts_whole_hours_from_counters_offline_and_remotely_and_states_its_bounded_scan() {
    let org = Org::new();
    // Events over several UTC hours: three runs starting at different times.
    let mut lines: Vec<String> = Vec::new();
    for (seed, start) in [
        ("31", "2026-11-01T00:35:00Z"),
        ("32", "2026-11-01T02:20:00Z"),
        ("33", "2026-11-01T05:40:00Z"),
    ] {
        let out = run(
            &[
                "gen-events",
                "--count",
                "3000",
                "--seed",
                seed,
                "--start",
                start,
            ],
            b"",
        );
        assert!(out.status.success(), "{}", stderr(&out));
        lines.extend(stdout(&out).lines().map(str::to_string));
    }
    let input = org.path("spread.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let offline = vec![
        "--data-dir".to_string(),
        p(&org.path("data")),
        "--keys".into(),
        p(&org.path("keys")),
    ];
    let imp = run(
        &[&["import".to_string(), p(&input)][..], &offline[..]]
            .concat()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        b"",
    );
    assert!(imp.status.success(), "{}", stderr(&imp));
    let evs: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let oracle = |key: &str, within: &dyn Fn(&str) -> bool| {
        let mut m = std::collections::HashMap::<String, u64>::new();
        for e in &evs {
            if within(e["eventTime"].as_str().unwrap()) {
                *m.entry(e[key].as_str().unwrap().to_string()).or_default() += 1;
            }
        }
        m
    };
    let stats = |target: &[String], extra: &[&str]| {
        let mut args = vec!["stats".to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend_from_slice(target);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run(&args, b"");
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    let rtype = evs
        .iter()
        .find_map(|e| e["resources"][0]["type"].as_str())
        .unwrap()
        .to_string();
    // (arguments, check of the output)
    type Check = Box<dyn Fn(&str)>;
    let everything: Check = {
        let want = oracle("recipientAccountId", &|_| true);
        Box::new(move |s: &str| {
            assert_eq!(stats_rows(s), want, "{s}");
            assert!(s.contains("(9000 events)"), "{s}");
            assert!(
                s.contains("(exact: whole UTC hours from the first event to the last event counted from the counters kept at append time, no record opened)"),
                "{s}"
            );
            assert!(!s.contains("scanned") && !s.contains("limit hit"), "{s}");
        })
    };
    let (from, to) = ("2026-11-01T00:30:00Z", "2026-11-01T05:50:00Z");
    let ragged: Check = {
        let want = oracle("eventSource", &|t| t >= from && t <= to);
        let edges: u64 = evs
            .iter()
            .map(|e| e["eventTime"].as_str().unwrap())
            .filter(|t| {
                (*t >= from && *t < "2026-11-01T01:00:00Z")
                    || (*t >= "2026-11-01T05:00:00Z" && *t <= to)
            })
            .count() as u64;
        assert!(edges > 0);
        Box::new(move |s: &str| {
            assert_eq!(stats_rows(s), want, "{s}");
            assert!(
                s.contains("(exact: whole UTC hours from 2026-11-01T01:00:00Z to 2026-11-01T05:00:00Z counted from the counters"),
                "{s}"
            );
            assert!(
                s.contains(&format!("(scanned: the range does not start or end on a whole UTC hour, so {edges} events were counted by decrypting them, at most 100000)")),
                "{s}"
            );
            assert!(!s.contains("limit hit"), "{s}");
        })
    };
    let unserved: Check = Box::new(|s: &str| {
        assert!(s.contains("(5 events)"), "{s}");
        assert!(
            s.contains("(scanned: a resourceType filter is not counted at append time, so 5 events were counted by decrypting them, at most 5)"),
            "{s}"
        );
        assert!(s.contains("(limit hit:"), "{s}");
        assert!(!s.contains("(exact:"), "{s}");
    });
    let cases: Vec<(Vec<&str>, Check)> = vec![
        (vec!["--by", "account", "--top", "100"], everything),
        (
            vec![
                "--by",
                "eventSource",
                "--top",
                "1000",
                "--start",
                from,
                "--end",
                to,
            ],
            ragged,
        ),
        (
            vec![
                "--by",
                "account",
                "--resource-type",
                &rtype,
                "--scan-limit",
                "5",
            ],
            unserved,
        ),
    ];
    let mut offline_out = Vec::new();
    for (args, check) in &cases {
        let s = stats(&offline, args);
        check(&s);
        offline_out.push(s);
    }
    // The collector on the same store answers the same, over mutual TLS.
    let c = org.collector(0, "");
    org.issue("admin", "admin", None);
    for ((args, check), off) in cases.iter().zip(&offline_out) {
        let s = stats(&org.reader_args(&c, "admin"), args);
        check(&s);
        assert_eq!(&s, off, "remote and offline answers agree");
    }
}
