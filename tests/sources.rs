//! The agent's sources end to end, real processes over mutual TLS: a CloudTrail log tree
//! shipped once across a restart, a followed file through rotation and truncation, and the
//! PutAuditEvents endpoint. Progress is observed through a live `lookup --follow` (blocking
//! reads), never by sleeping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/org.rs"]
mod org;
#[path = "common/sources.rs"]
mod sources;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::Stdio;

use common::{fixtures, gzip, http, orgtrail, run, stderr, stdout};
use org::{Follower, p};
use sources::{ACCOUNT, agent_drained, generated, id, log_file, setup, stored};

/// Runs the agent once over its sources until all is acknowledged; returns its log.
fn agent_once(cfg: &Path) -> String {
    let o = agent_drained(cfg, &[]);
    let log = stderr(&o);
    // Exit 0 exactly when the summary line says nothing was dead-lettered.
    let summary = stdout(&o);
    assert!(summary.contains("orgtrail agent: shipped="), "{summary}");
    assert_eq!(
        o.status.success(),
        summary.contains("dead_lettered=0"),
        "{summary}\n{log}"
    );
    log
}

/// The `read=N` the agent logged for a source.
fn read_count(log: &str, source: &str) -> u64 {
    log.lines()
        .find(|l| l.contains(&format!("{source}: read=")))
        .and_then(|l| l.split("read=").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .map_or(0, |n| n.parse().unwrap())
}

#[test]
fn a_cloudtrail_log_tree_is_shipped_exactly_once_across_a_restart() {
    let (org, c) = setup();
    let root = org.path("trail");
    let day = root.join(format!(
        "AWSLogs/o-example/{ACCOUNT}/CloudTrail/us-east-1/2026/11/24"
    ));
    std::fs::create_dir_all(&day).unwrap();
    let name = |stamp: &str, tag: &str| {
        format!("{ACCOUNT}_CloudTrail_us-east-1_20261124T{stamp}Z_{tag}.json.gz")
    };
    let mut want: HashSet<String> = HashSet::new();
    // Real log files from CloudTrail's documentation (events of this account, or without
    // recipientAccountId, which then belong to the agent's account).
    let corpus = fixtures().join("corpus/logfiles");
    for (i, f) in [
        "aws-cloudtrail-user-guide_cloudtrail-log-file-examples_02.json",
        "aws-cloudtrail-user-guide_cloudtrail-log-file-examples_07.json",
        "aws-cloudtrail-user-guide_cloudtrail-log-file-examples_08.json",
        "aws-lambda-developer-guide_with-cloudtrail_02.json",
    ]
    .iter()
    .enumerate()
    {
        let bytes = std::fs::read(corpus.join(f)).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        for r in v["Records"].as_array().unwrap() {
            want.insert(r["eventTime"].as_str().unwrap().to_string());
        }
        if i == 0 {
            // Plain .json is read too.
            std::fs::write(day.join(name("0000", "plain").replace(".gz", "")), &bytes).unwrap();
        } else {
            std::fs::write(day.join(name(&format!("000{i}"), "doc")), gzip(&bytes)).unwrap();
        }
    }
    // Generated events in delivered files of 400 records.
    let evs = generated(1200, 41);
    for (i, chunk) in evs.chunks(400).enumerate() {
        std::fs::write(
            day.join(name(&format!("01{i}0"), "gen")),
            gzip(&log_file(chunk)),
        )
        .unwrap();
    }
    // A digest file is not events; a corrupt file is a dead letter.
    let digest = root.join(format!(
        "AWSLogs/o-example/{ACCOUNT}/CloudTrail-Digest/us-east-1/2026/11/24"
    ));
    std::fs::create_dir_all(&digest).unwrap();
    std::fs::write(
        digest.join(format!("{ACCOUNT}_CloudTrail-Digest_us-east-1_t_us-east-1_20261124T0100Z.json.gz")),
        gzip(br#"{"awsAccountId":"123456789012","digestStartTime":"2026-11-24T00:00:00Z","logFiles":[]}"#),
    )
    .unwrap();
    let mut bad = gzip(&log_file(&evs[..10]));
    bad.truncate(bad.len() / 2);
    std::fs::write(day.join(name("0200", "bad")), bad).unwrap();
    // Over CloudTrail's 50 MB cap for a delivered file: refused unread.
    let big = std::fs::File::create(day.join(name("0210", "big"))).unwrap();
    big.set_len(50_000_001).unwrap();

    let sources = format!(
        "[[sources]]\ntype = \"cloudtrail_dir\"\nname = \"trail\"\npath = \"{}\"\n",
        p(&root)
    );
    let cfg = org.agent_config_with("agent", ACCOUNT, c.port, &sources);
    let log = agent_once(&cfg);
    let first_read = read_count(&log, "trail");
    let stored1 = stored(&org, &c);
    let key = |l: &String| {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        v["eventTime"].as_str().unwrap().to_string()
    };
    let got: HashSet<String> = stored1.iter().map(key).collect();
    assert!(
        want.iter().all(|w| got.contains(w)),
        "every documented record is stored"
    );
    let gen_ids: HashSet<String> = evs.iter().map(|l| id(l)).collect();
    let stored_ids: HashSet<String> = stored1.iter().map(|l| id(l)).collect();
    assert!(gen_ids.is_subset(&stored_ids));
    assert_eq!(
        first_read as usize,
        stored1.len() + 2,
        "each record read once, and the two bad files: {log}"
    );

    // The corrupt file is in the dead letters with the reason; the digest file is not.
    let dl = run(
        &[
            "agent",
            "dead-letters",
            "--spool",
            &p(&org.path("spool-agent")),
        ],
        b"",
    );
    let dl = stdout(&dl);
    assert!(
        dl.contains("_bad.json.gz") && dl.contains("corrupt gzip"),
        "{dl}"
    );
    assert!(!dl.contains("Digest"), "{dl}");
    assert!(
        dl.contains("dead-letters=2")
            && dl.contains("_big.json.gz: 50000001 bytes, larger than CloudTrail's limit"),
        "{dl}"
    );

    // Restart with one new file: only it is read.
    let more = generated(300, 42);
    std::fs::write(day.join(name("0300", "new")), gzip(&log_file(&more))).unwrap();
    let log = agent_once(&cfg);
    assert_eq!(read_count(&log, "trail"), 300, "{log}");
    let stored2 = stored(&org, &c);
    assert_eq!(stored2.len(), stored1.len() + 300);
    let unique: HashSet<&String> = stored2.iter().collect();
    assert_eq!(unique.len(), stored2.len(), "nothing stored twice");
}

#[test]
fn a_followed_file_survives_rotation_truncation_and_a_restart() {
    let (org, c) = setup();
    let evs = generated(40, 51);
    let file = org.path("app.log");
    std::fs::write(&file, "").unwrap();
    let sources = format!(
        "[[sources]]\ntype = \"jsonl\"\nname = \"app\"\npath = \"{}\"\nfollow = true\npoll_ms = 20\n",
        p(&file)
    );
    let cfg = org.agent_config_with("agent", ACCOUNT, c.port, &sources);
    let mut follower = Follower::start(&org, &c, "admin");
    let start_agent = || {
        orgtrail()
            .args(["agent", "--config", &p(&cfg)])
            .env("ORGTRAIL_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut agent = start_agent();
    let append = |path: &Path, lines: &[String]| {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .unwrap();
        for l in lines {
            writeln!(f, "{l}").unwrap();
        }
    };
    let ids = |lines: &[String]| -> Vec<String> { lines.iter().map(|l| id(l)).collect() };

    append(&file, &evs[0..10]);
    assert_eq!(follower.next(10), ids(&evs[0..10]));
    // Rotation: the file is renamed away and a new one starts.
    std::fs::rename(&file, org.path("app.log.1")).unwrap();
    append(&file, &evs[10..15]);
    assert_eq!(follower.next(5), ids(&evs[10..15]));
    // Truncation in place (copytruncate): read again from the start.
    std::fs::write(&file, "").unwrap();
    append(&file, &evs[15..20]);
    assert_eq!(follower.next(5), ids(&evs[15..20]));

    // Stop the agent, write more while it is down, restart: it resumes after the last line.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status();
    assert!(agent.wait().unwrap().success());
    append(&file, &evs[20..25]);
    agent = start_agent();
    assert_eq!(follower.next(5), ids(&evs[20..25]));
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status();
    let mut log = String::new();
    agent
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(agent.wait().unwrap().success());
    assert_eq!(
        read_count(&log, "app"),
        5,
        "the restarted agent read only the new lines: {log}"
    );
    assert_eq!(stored(&org, &c).len(), 25);
}

#[test]
fn the_http_source_answers_after_durability_and_a_retry_is_stored_once() {
    let (org, c) = setup();
    let sources = "[[sources]]\ntype = \"http\"\nname = \"apps\"\nlisten = \"127.0.0.1:0\"\n[ops]\nlisten = \"127.0.0.1:0\"\n";
    let cfg = org.agent_config_with("agent", ACCOUNT, c.port, sources);
    let mut agent = orgtrail()
        .args(["agent", "--config", &p(&cfg)])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(agent.stdout.take().unwrap()).lines();
    let mut addrs = std::collections::HashMap::new();
    for _ in 0..2 {
        let l = out.next().unwrap().unwrap();
        let (name, addr) = l
            .trim_start_matches("orgtrail agent: ")
            .split_once(" listening on ")
            .unwrap();
        addrs.insert(name.to_string(), addr.to_string());
    }
    let api = addrs["apps"].clone();
    let mut follower = Follower::start(&org, &c, "admin");

    let data = |name: &str| {
        serde_json::json!({"eventTime": "2026-11-24T10:00:00Z", "eventSource": "billing.example.com",
            "eventName": name, "awsRegion": "us-east-1", "recipientAccountId": ACCOUNT,
            "userIdentity": {"type": "IAMUser", "userName": "carol"}})
        .to_string()
    };
    let with_id = serde_json::json!({"eventID": "6f1e2d3c-0000-4000-8000-000000000001",
        "eventTime": "2026-11-24T10:00:01Z", "eventSource": "billing.example.com",
        "eventName": "Refund"})
    .to_string();
    use base64::Engine;
    use sha2::Digest;
    let sum = |s: &str| {
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(s.as_bytes()))
    };
    let req = serde_json::json!({"auditEvents": [
        {"id": "a1", "eventData": data("CreateInvoice"), "eventDataChecksum": sum(&data("CreateInvoice"))},
        {"id": "a2", "eventData": with_id},
        {"id": "a3", "eventData": "{not json"},
        {"id": "a4", "eventData": data("Pay"), "eventDataChecksum": "AAAA"},
        {"id": "a5", "eventData": "{\"eventSource\":\"x\",\"eventName\":\"y\"}"},
    ]})
    .to_string();
    let (status, body) = http(&api, "POST", "/", req.as_bytes());
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let ok: Vec<(String, String)> = v["successful"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().into(),
                s["eventID"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(ok.len(), 2);
    assert_eq!(
        ok[1],
        ("a2".into(), "6f1e2d3c-0000-4000-8000-000000000001".into())
    );
    let failed: Vec<(String, String)> = v["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().into(),
                f["errorCode"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        failed,
        vec![
            ("a3".into(), "InvalidEventData".into()),
            ("a4".into(), "InvalidChecksum".into()),
            ("a5".into(), "InvalidEventData".into()),
        ]
    );
    let mut got = follower.next(2);
    got.sort();
    let mut want: Vec<String> = ok.iter().map(|o| o.1.clone()).collect();
    want.sort();
    assert_eq!(got, want);

    // The client retries the same request: the same eventIDs, nothing stored twice.
    let (_, body2) = http(&api, "POST", "/", req.as_bytes());
    let v2: serde_json::Value = serde_json::from_str(&body2).unwrap();
    assert_eq!(v2["successful"], v["successful"]);
    // Bad requests are refused whole, with the reason.
    let many: Vec<serde_json::Value> = (0..101)
        .map(|i| serde_json::json!({"id": format!("m{i}"), "eventData": data("X")}))
        .collect();
    let (status, body) = http(
        &api,
        "POST",
        "/",
        serde_json::json!({"auditEvents": many})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(status, 400);
    assert!(body.contains("1 to 100 auditEvents"), "{body}");
    let (status, _) = http(&api, "POST", "/", &vec![b' '; (1 << 20) + 10]);
    assert_eq!(status, 413);
    let (status, body) = http(&api, "POST", "/", b"[1,2]");
    assert_eq!(status, 400);
    assert!(body.contains("PutAuditEvents"), "{body}");
    // A new event after the retry arrives next: the retry added nothing.
    let req3 =
        serde_json::json!({"auditEvents": [{"id": "b1", "eventData": data("Close")}]}).to_string();
    let (_, body3) = http(&api, "POST", "/", req3.as_bytes());
    let v3: serde_json::Value = serde_json::from_str(&body3).unwrap();
    assert_eq!(
        follower.next(1),
        vec![v3["successful"][0]["eventID"].as_str().unwrap().to_string()]
    );
    assert_eq!(stored(&org, &c).len(), 3);

    // The metrics say what happened, per source.
    let (status, metrics) = http(&addrs["ops"], "GET", "/metrics", b"");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("orgtrail_agent_events_total{source=\"apps\",stage=\"read\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("orgtrail_agent_events_total{source=\"apps\",stage=\"spooled\"} 5"),
        "{metrics}"
    );
    let _ = agent.kill();
    let _ = agent.wait();
}

#[test]
fn a_pasted_aws_selector_configuration_ships_only_what_it_selects() {
    let (org, c) = setup();
    let evs = generated(3000, 61);
    let file = org.path("events.jsonl");
    std::fs::write(&file, evs.join("\n") + "\n").unwrap();
    // `aws cloudtrail get-event-selectors` output of a trail logging management writes and
    // S3 object-level writes, pasted as is.
    std::fs::write(
        org.path("trail-selectors.json"),
        r#"{
    "TrailARN": "arn:aws:cloudtrail:us-east-1:123456789012:trail/management-events",
    "AdvancedEventSelectors": [
        {
            "Name": "Management writes",
            "FieldSelectors": [
                { "Field": "eventCategory", "Equals": ["Management"] },
                { "Field": "readOnly", "Equals": ["false"] }
            ]
        },
        {
            "Name": "S3 object writes",
            "FieldSelectors": [
                { "Field": "eventCategory", "Equals": ["Data"] },
                { "Field": "resources.type", "Equals": ["AWS::S3::Object"] },
                { "Field": "readOnly", "Equals": ["false"] }
            ]
        }
    ]
}"#,
    )
    .unwrap();
    let sources = format!(
        "[selectors]\naws_json = \"trail-selectors.json\"\nregions = [\"us-east-1\", \"eu-west-1\"]\n[[sources]]\ntype = \"jsonl\"\nname = \"file\"\npath = \"{}\"\n",
        p(&file)
    );
    let cfg = org.agent_config_with("agent", ACCOUNT, c.port, &sources);
    let log = agent_once(&cfg);
    // The oracle: the documented meaning of those selectors, evaluated on the JSON.
    let selected: Vec<&String> = evs
        .iter()
        .filter(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let region_ok = matches!(v["awsRegion"].as_str(), Some("us-east-1" | "eu-west-1"));
            let write = v["readOnly"] == serde_json::json!(false);
            let mgmt = v["eventCategory"] == "Management";
            let s3_object = v["eventCategory"] == "Data"
                && v["resources"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r["type"] == "AWS::S3::Object"));
            region_ok && write && (mgmt || s3_object)
        })
        .collect();
    let want: HashSet<String> = selected.iter().map(|l| id(l)).collect();
    assert!(!want.is_empty() && want.len() < evs.len());
    let got: HashSet<String> = stored(&org, &c).iter().map(|l| id(l)).collect();
    assert_eq!(got, want);
    assert!(
        log.contains(&format!(
            "file: read={} filtered={}",
            evs.len(),
            evs.len() - selected.len()
        )),
        "{log}"
    );

    // An invalid configuration is refused at startup, every problem listed.
    std::fs::write(
        org.path("trail-selectors.json"),
        r#"{"AdvancedEventSelectors":[{"Name":"x","FieldSelectors":[{"Field":"eventNam","Equals":["A"]},{"Field":"readOnly","StartsWith":["t"]}]}]}"#,
    )
    .unwrap();
    let o = orgtrail()
        .args(["agent", "--exit-when-drained", "--config", &p(&cfg)])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("eventNam") && e.contains("readOnly") && e.contains("eventCategory"),
        "{e}"
    );
}

#[test]
fn a_log_file_still_being_written_is_picked_up_once_complete() {
    let (org, c) = setup();
    let root = org.path("trail");
    let day = root.join(format!("AWSLogs/{ACCOUNT}/CloudTrail/eu-west-1/2026/11/24"));
    std::fs::create_dir_all(&day).unwrap();
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
    let a = generated(50, 71);
    let b = generated(30, 72);
    let ids = |lines: &[String]| -> HashSet<String> { lines.iter().map(|l| id(l)).collect() };
    // The first file arrives half-written (a copy in progress), the second whole.
    let full_a = gzip(&log_file(&a));
    let path_a = day.join(format!(
        "{ACCOUNT}_CloudTrail_eu-west-1_20261124T0000Z_a.json.gz"
    ));
    std::fs::write(&path_a, &full_a[..full_a.len() / 2]).unwrap();
    std::fs::write(
        day.join(format!(
            "{ACCOUNT}_CloudTrail_eu-west-1_20261124T0005Z_b.json.gz"
        )),
        gzip(&log_file(&b)),
    )
    .unwrap();
    // The complete file flows while the other waits.
    assert_eq!(
        follower.next(30).into_iter().collect::<HashSet<_>>(),
        ids(&b)
    );
    // The copy finishes: its events follow, none lost to a premature "corrupt".
    std::fs::write(&path_a, &full_a).unwrap();
    assert_eq!(
        follower.next(50).into_iter().collect::<HashSet<_>>(),
        ids(&a)
    );
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status();
    assert!(agent.wait().unwrap().success());
    let dl = stdout(&run(
        &[
            "agent",
            "dead-letters",
            "--spool",
            &p(&org.path("spool-agent")),
        ],
        b"",
    ));
    assert!(dl.contains("dead-letters=0"), "{dl}");
}
