//! `orgtrail rules check|list|test` as a security engineer writing rules runs them: rule files
//! in TOML and JSON, every bad file named, a dry run over real CloudTrail files with reasons,
//! JSON-lines output, and `--raw` answering every EventBridge conformance case as AWS did.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{fixtures, run, stderr, stdout};
use serde_json::Value;

fn p(path: &std::path::Path) -> &str {
    path.to_str().unwrap()
}

/// A rules directory: a root sign-in rule in TOML (record form) and a trail-tampering rule in
/// JSON (EventBridge envelope form, as copied from AWS).
fn rules_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("root-login.toml"),
        r#"id = "root-console-login"
name = "Root user signed in to the console"
severity = "critical"

[pattern]
eventName = ["ConsoleLogin"]
userIdentity = { type = ["Root"] }
"#,
    )
    .unwrap();
    std::fs::write(
        d.path().join("trail.json"),
        r#"{"id": "trail-tampering", "severity": "high",
            "pattern": {"source": ["aws.cloudtrail"], "detail-type": ["AWS API Call via CloudTrail"],
                        "detail": {"eventName": ["StopLogging", "DeleteTrail", "UpdateTrail", "PutEventSelectors"]}}}"#,
    )
    .unwrap();
    std::fs::write(
        d.path().join("failed.json"),
        r#"{"id": "console-login-failed", "pattern": {"eventName": ["ConsoleLogin"], "responseElements": {"ConsoleLogin": ["Failure"]}}}"#,
    )
    .unwrap();
    d
}

fn corpus() -> String {
    let dir = fixtures().join("corpus/events");
    let mut all = String::new();
    for f in [
        "awsdocs.jsonl",
        "opensearch-catalog.jsonl",
        "panther-analysis.jsonl",
    ] {
        all.push_str(&std::fs::read_to_string(dir.join(f)).unwrap());
    }
    all
}

#[test]
fn check_and_list_a_good_directory() {
    let d = rules_dir();
    let out = run(&["rules", "check", p(d.path())], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("3 rules, 3 enabled, all valid"),
        "{}",
        stdout(&out)
    );
    let out = run(&["rules", "list", p(d.path())], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("root-console-login"), "{text}");
    assert!(text.contains("critical"), "{text}");
    // Defaults: the name is the id, the severity medium.
    let line = text
        .lines()
        .find(|l| l.starts_with("console-login-failed"))
        .unwrap();
    assert!(
        line.contains("medium") && line.matches("console-login-failed").count() == 2,
        "{line}"
    );
    assert!(text.contains("(3 rules)"), "{text}");
}

#[test]
fn the_built_in_cis_pack_lists_and_fires_on_real_events() {
    let out = run(&["rules", "list", "pack:cis"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("cis-4.3-root-account-usage"), "{text}");
    assert!(text.contains("(15 rules)"), "{text}");
    let d = tempfile::tempdir().unwrap();
    let events = d.path().join("events.jsonl");
    std::fs::write(&events, corpus()).unwrap();
    let out = run(&["rules", "test", "pack:cis", p(&events)], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(": cis-4.3-root-account-usage (critical): "),
        "{text}"
    );
    assert!(
        text.contains(": cis-4.5-cloudtrail-configuration-changes (high): "),
        "{text}"
    );
    let out = run(&["rules", "check", "pack:nope"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no built-in pack \"nope\" (packs: cis)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn every_bad_rule_file_is_named_with_its_reason() {
    let d = rules_dir();
    std::fs::write(
        d.path().join("empty.json"),
        r#"{"id": "e", "pattern": {"eventName": []}}"#,
    )
    .unwrap();
    std::fs::write(
        d.path().join("op.toml"),
        "id = \"op\"\n[pattern]\neventName = [{ EXISTS = true }]\n",
    )
    .unwrap();
    std::fs::write(
        d.path().join("mixed.json"),
        r#"{"id": "mixed", "pattern": {"source": ["aws.iam"], "eventName": ["DeleteUser"]}}"#,
    )
    .unwrap();
    let out = run(&["rules", "check", p(d.path())], b"");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for want in [
        "empty.json: pattern: eventName: an empty array matches nothing",
        "op.toml: pattern: eventName: unknown operator \"EXISTS\"",
        "mixed.json: pattern: eventName:",
    ] {
        assert!(err.contains(want), "{want:?} in:\n{err}");
    }
    assert!(stdout(&out).is_empty());
    // `rules test` refuses the same directory before reading any event.
    let out = run(&["rules", "test", p(d.path()), "-"], b"");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_dry_run_on_real_events_says_which_rules_fire_and_why() {
    let d = rules_dir();
    let events = d.path().join("events.jsonl");
    std::fs::write(&events, corpus()).unwrap();
    let out = run(
        &["rules", "test", p(d.path()), p(&events), "--explain"],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let fired = |id: &str| {
        text.lines()
            .filter(|l| l.contains(&format!(": {id} (")))
            .count()
    };
    assert!(fired("root-console-login") >= 1, "{text}");
    assert!(fired("trail-tampering") >= 1, "{text}");
    assert!(fired("console-login-failed") >= 1, "{text}");
    // Every root sign-in line says why: the values that satisfied the pattern.
    for l in text
        .lines()
        .filter(|l| l.contains(": root-console-login (critical): ConsoleLogin"))
    {
        assert!(l.contains("eventName = \"ConsoleLogin\""), "{l}");
        assert!(l.contains("userIdentity.type = \"Root\""), "{l}");
    }
    // The envelope-form rule is explained against the envelope it is written for.
    let l = text
        .lines()
        .find(|l| l.contains(": trail-tampering (high): "))
        .unwrap();
    assert!(l.contains("source = \"aws.cloudtrail\""), "{l}");
    assert!(l.contains("detail.eventName = "), "{l}");
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with("events=") && last.contains(" matches="),
        "{last}"
    );

    // The same run as JSON lines: one object per match, by 0-based event index.
    let out = run(
        &[
            "rules",
            "test",
            p(d.path()),
            p(&events),
            "--output",
            "jsonl",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let matches: usize = text
        .lines()
        .filter(|l| l.contains(" (") && l.contains("): "))
        .count();
    assert_eq!(lines.len(), matches);
    let records: Vec<Value> = corpus()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for m in &lines {
        let e = &records[m["event"].as_u64().unwrap() as usize];
        if m["rule"] == "root-console-login" {
            assert_eq!(e["eventName"], "ConsoleLogin");
            assert_eq!(e["userIdentity"]["type"], "Root");
        }
    }
}

#[test]
fn raw_mode_answers_every_conformance_case_as_aws_did() {
    // One rule per case, and the case's event on the line of the same number: each pair
    // must match exactly when AWS said it does.
    let text = std::fs::read_to_string(fixtures().join("rules/eventbridge-cases.jsonl")).unwrap();
    let cases: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let d = tempfile::tempdir().unwrap();
    let rules = d.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let mut events = String::new();
    let mut valid = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        if c["expect"] == "invalid" {
            continue;
        }
        let rule = serde_json::json!({"id": format!("case-{i}"), "pattern": c["pattern"]});
        std::fs::write(rules.join(format!("case-{i}.json")), rule.to_string()).unwrap();
        events.push_str(&c["event"].to_string());
        events.push('\n');
        valid.push(i);
    }
    let ev = d.path().join("events.jsonl");
    std::fs::write(&ev, events).unwrap();
    let out = run(
        &[
            "rules",
            "test",
            p(&rules),
            p(&ev),
            "--raw",
            "--output",
            "jsonl",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let got: std::collections::BTreeSet<(usize, String)> = stdout(&out)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["event"].as_u64().unwrap() as usize,
                v["rule"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut wrong = Vec::new();
    for (line, i) in valid.iter().enumerate() {
        let want = cases[*i]["expect"] == "match";
        let has = got.contains(&(line, format!("case-{i}")));
        if want != has {
            wrong.push(cases[*i]["name"].as_str().unwrap().to_owned());
        }
    }
    assert!(wrong.is_empty(), "answered unlike AWS: {wrong:?}");
    assert_eq!(valid.len(), 71);

    // And each pattern AWS refused is refused by `rules check`, naming its file.
    for (i, c) in cases
        .iter()
        .enumerate()
        .filter(|(_, c)| c["expect"] == "invalid")
    {
        let bad = d.path().join(format!("bad-{i}"));
        std::fs::create_dir(&bad).unwrap();
        let rule = serde_json::json!({"id": format!("case-{i}"), "pattern": c["pattern"]});
        std::fs::write(bad.join("r.json"), rule.to_string()).unwrap();
        let out = run(&["rules", "check", p(&bad)], b"");
        assert_eq!(out.status.code(), Some(1), "{}", c["name"]);
        assert!(
            stderr(&out).contains("r.json: pattern:"),
            "{}",
            stderr(&out)
        );
    }
}

/// `rules import-sigma` on SigmaHQ's CloudTrail rules: a table of every rule (exact, with its
/// caveats, or refused with the reason), the counts, and with `--out` one YAML rule file per
/// translated rule, which `rules check` accepts and `rules test` fires on a matching event.
#[test]
fn import_sigma_reports_every_rule_and_writes_files_that_load() {
    let sigma = fixtures().join("sigma/rules");
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("imported");
    let o = run(&["rules", "import-sigma", p(&sigma), "--out", p(&dir)], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("rules=57 exact=46 with_caveats=6 refused=5"),
        "{text}"
    );
    assert!(text.contains("wrote 52 rule files"), "{text}");
    let refused = text.lines().filter(|l| l.contains("  refused  ")).count();
    let reasons = text.lines().filter(|l| l.contains("reason: ")).count();
    assert_eq!((refused, reasons), (5, 5), "{text}");
    assert!(
        text.contains("caveat: userAgent: Sigma's `contains` is case-insensitive"),
        "{text}"
    );
    let o = run(&["rules", "check", p(&dir)], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("52 rules, 52 enabled, all valid"));
    // The root-usage rule fires on a root call and not on the same call by a user.
    let events = out.path().join("events.jsonl");
    std::fs::write(
        &events,
        concat!(
            r#"{"eventVersion":"1.08","userIdentity":{"type":"Root","arn":"arn:aws:iam::111122223333:root","accountId":"111122223333"},"eventTime":"2026-11-27T10:00:00Z","eventSource":"iam.amazonaws.com","eventName":"ListUsers","awsRegion":"us-east-1","sourceIPAddress":"192.0.2.1","userAgent":"aws-cli","requestID":"r1","eventID":"11111111-1111-4111-8111-111111111111","eventType":"AwsApiCall","recipientAccountId":"111122223333"}"#,
            "\n",
            r#"{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/a","accountId":"111122223333"},"eventTime":"2026-11-27T10:00:00Z","eventSource":"iam.amazonaws.com","eventName":"ListUsers","awsRegion":"us-east-1","sourceIPAddress":"192.0.2.1","userAgent":"aws-cli","requestID":"r2","eventID":"11111111-1111-4111-8111-111111111112","eventType":"AwsApiCall","recipientAccountId":"111122223333"}"#,
            "\n"
        ),
    )
    .unwrap();
    let o = run(
        &["rules", "test", p(&dir), p(&events), "--output", "jsonl"],
        b"",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let hits: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        hits,
        [serde_json::json!({"event": 0, "rule": "8ad1600d-e9dc-4251-b0ee-a65268f29add"})],
        "only the root call fires, and only the root-usage rule"
    );
}

/// A dry run counts a threshold rule's matches in input order, by eventTime: the imported
/// Sigma rule `count() > 10` within 30m fires on the 11th of twelve calls a minute apart, once.
#[test]
fn a_dry_run_fires_a_threshold_rule_once_on_the_event_that_crosses_it() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("imported");
    let sigma = fixtures().join("sigma/aggregations");
    let o = run(&["rules", "import-sigma", p(&sigma), "--out", p(&dir)], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("rules=8 exact=6 with_caveats=1 refused=1"));
    let lines: Vec<String> = (0..12)
        .map(|i| {
            serde_json::json!({
                "eventVersion": "1.08",
                "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/a", "accountId": "111122223333"},
                "eventTime": format!("2026-11-27T10:{i:02}:00Z"),
                "eventSource": "ec2.amazonaws.com", "eventName": "DescribeInstanceAttribute",
                "requestParameters": {"attribute": "userData", "instanceId": format!("i-{i}")},
                "awsRegion": "us-east-1", "sourceIPAddress": "192.0.2.1", "userAgent": "aws-cli",
                "requestID": format!("r{i}"), "eventID": format!("11111111-1111-4111-8111-{i:012}"),
                "eventType": "AwsApiCall", "recipientAccountId": "111122223333"
            })
            .to_string()
        })
        .collect();
    let events = out.path().join("userdata.jsonl");
    std::fs::write(&events, lines.join("\n") + "\n").unwrap();
    let o = run(&["rules", "test", p(&dir), p(&events), "--explain"], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("line 11: 26ff4080-194e-47e7-9889-ef7602efed0c (medium)"),
        "{text}"
    );
    assert!(
        text.contains("more than 10 such events within 30m"),
        "{text}"
    );
    assert!(text.ends_with("events=12 matches=1\n"), "{text}");
}
