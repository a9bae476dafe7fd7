//! Insights against a running collector, end to end over mutual TLS: a day-old burst of write
//! calls and a burst of AccessDenied errors, imported before the collector's first start with
//! Insights on (so its live detector never watches them), get their Insight events from a
//! remote `orgtrail insights replay` as an admin (an auditor is refused); a second replay adds
//! nothing. `lookup --event-category Insight` and `--insight-type` find those events and
//! nothing else, remotely and offline, through the store's index. On a store written before
//! those attributes were indexed, the lookups say from which seq their answer is complete.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/iam_calls.rs"]
mod iam_calls;
#[path = "common/org.rs"]
mod org;

use std::collections::BTreeSet;
use std::path::Path;

use iam_calls::{ACCOUNT, Calls};
use org::Org;
use serde_json::{Value, json};

/// Yesterday, for `name`: two hours of one call every 4 minutes, then 40 in one minute.
fn baseline_and_burst(minute: i64, name: &str, error: bool, tag: u32) -> Vec<String> {
    let calls = Calls {
        name,
        error,
        baseline_tag: tag,
        burst_tag: tag + 1,
        burst_user: iam_calls::OPS,
    };
    iam_calls::baseline_and_burst(minute, minute + 30, &calls)
}

const EXTRA: &str = "[insights]\nenabled = true\nmin_history_ms = \"30m\"\nend_after_minutes = 1\nlateness_minutes = 0\n";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `orgtrail ARGS... <remote as CERT>`.
fn remote(org: &Org, c: &org::Collector, cert: &str, args: &[&str]) -> std::process::Output {
    let reader = org.reader_args(c, cert);
    let mut all: Vec<&str> = args.to_vec();
    all.extend(reader.iter().map(String::as_str));
    common::run(&all, b"")
}

/// `orgtrail ARGS... --data-dir data --keys keys`.
fn offline(org: &Org, args: &[&str]) -> std::process::Output {
    let (data, keys) = (org.path("data"), org.path("keys"));
    common::run(
        &[args, &["--data-dir", s(&data), "--keys", s(&keys)][..]].concat(),
        b"",
    )
}

/// The events a lookup printed (`--output jsonl`), checking it succeeded and said nothing
/// about a partial answer (this store indexes every attribute from its first event).
fn events(out: &std::process::Output) -> Vec<Value> {
    assert!(out.status.success(), "{}", common::stderr(out));
    assert!(
        !common::stderr(out).contains("note:"),
        "{}",
        common::stderr(out)
    );
    common::stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn ids(evs: &[Value]) -> BTreeSet<String> {
    evs.iter()
        .map(|e| e["eventID"].as_str().unwrap().to_owned())
        .collect()
}

fn insight_type(e: &Value) -> &str {
    e["insightDetails"]["insightType"].as_str().unwrap()
}

#[test]
fn remote_replay_as_admin_stores_the_insights_once_and_lookup_finds_them_by_category_and_type() {
    let org = Org::new();
    org.issue("admin", "admin", None);
    org.issue("auditor", "auditor", None);
    let yesterday = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 86_400;
    let minute = yesterday - yesterday % 60;
    let mut lines = baseline_and_burst(minute, "CreateUser", false, 8000);
    lines.extend(baseline_and_burst(minute, "GetUser", true, 8100));
    let file = org.path("calls.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    // Stored before the collector's first start with Insights on: never watched live.
    let out = offline(&org, &["import", s(&file)]);
    assert!(out.status.success(), "{}", common::stderr(&out));

    let mut c = org.collector(0, EXTRA);
    let lookup = |cert: &str, filter: &[&str]| {
        let args = [
            &["lookup"][..],
            filter,
            &["--max", "1000", "--output", "jsonl"],
        ]
        .concat();
        events(&remote(&org, &c, cert, &args))
    };
    assert!(lookup("auditor", &["--event-category", "Insight"]).is_empty());

    // An auditor may not replay: refused by its certificate's role, nothing stored.
    let out = remote(
        &org,
        &c,
        "auditor",
        &["insights", "replay", "--since", "2d"],
    );
    assert!(!out.status.success());
    let err = common::stderr(&out);
    assert!(
        err.contains("only admin certificates may replay Insights"),
        "{err}"
    );
    assert!(err.contains("refused"), "{err}");

    // The admin's replay finds and stores a Start and an End for each burst.
    let out = remote(&org, &c, "admin", &["insights", "replay", "--since", "2d"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(
        common::stdout(&out).trim(),
        "fed=140 found=4 stored=4 duplicates=0"
    );
    // Again: the same eventIDs, nothing new.
    let out = remote(&org, &c, "admin", &["insights", "replay", "--since", "2d"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(
        common::stdout(&out).trim(),
        "fed=140 found=4 stored=0 duplicates=4"
    );

    // By category: the four Insight events, and nothing else.
    let found = lookup("auditor", &["--event-category", "Insight"]);
    assert_eq!(found.len(), 4, "{found:?}");
    assert!(
        found
            .iter()
            .all(|e| e["eventType"] == "AwsCloudTrailInsight"
                && e["eventCategory"] == "Insight"
                && e["recipientAccountId"] == ACCOUNT)
    );
    let states: Vec<(&str, &str)> = found
        .iter()
        .map(|e| {
            (
                insight_type(e),
                e["insightDetails"]["state"].as_str().unwrap(),
            )
        })
        .collect();
    for want in [
        ("ApiCallRateInsight", "Start"),
        ("ApiCallRateInsight", "End"),
        ("ApiErrorRateInsight", "Start"),
        ("ApiErrorRateInsight", "End"),
    ] {
        assert!(states.contains(&want), "{want:?} in {states:?}");
    }
    // By type: two each, those of that type.
    let calls = lookup("auditor", &["--insight-type", "ApiCallRateInsight"]);
    let errors = lookup("admin", &["--insight-type", "ApiErrorRateInsight"]);
    assert_eq!(calls.len(), 2);
    assert_eq!(errors.len(), 2);
    assert!(
        calls
            .iter()
            .all(|e| insight_type(e) == "ApiCallRateInsight")
    );
    assert!(
        errors
            .iter()
            .all(|e| insight_type(e) == "ApiErrorRateInsight"
                && e["insightDetails"]["errorCode"] == "AccessDenied")
    );
    let mut both = ids(&calls);
    both.extend(ids(&errors));
    assert_eq!(both, ids(&found));
    // Combined with another filter: the error rate Insights of GetUser.
    let get_user = lookup(
        "auditor",
        &["--event-category", "Insight", "--event-name", "GetUser"],
    );
    assert_eq!(ids(&get_user), ids(&errors));
    // The other category: the 140 calls, none of the Insight events.
    let management = lookup("auditor", &["--event-category", "Management"]);
    assert_eq!(management.len(), 140);
    assert!(ids(&management).is_disjoint(&ids(&found)));
    // `insights list` asks the same of the index.
    let out = remote(
        &org,
        &c,
        "auditor",
        &["insights", "list", "--output", "jsonl"],
    );
    assert_eq!(ids(&events(&out)), ids(&found));

    // Offline, once the collector stopped: the same answers from the store on disk.
    org::sigterm(&mut c);
    drop(c);
    let offline_lookup = |filter: &[&str]| {
        let args = [
            &["lookup"][..],
            filter,
            &["--max", "1000", "--output", "jsonl"],
        ]
        .concat();
        events(&offline(&org, &args))
    };
    assert_eq!(
        ids(&offline_lookup(&["--event-category", "Insight"])),
        ids(&found)
    );
    assert_eq!(
        ids(&offline_lookup(&["--insight-type", "ApiErrorRateInsight"])),
        ids(&errors)
    );
    assert_eq!(
        ids(&offline_lookup(&["--insight-type", "ApiCallRateInsight"])),
        ids(&calls)
    );
    let out = offline(&org, &["insights", "list", "--output", "jsonl"]);
    assert_eq!(ids(&events(&out)), ids(&found));
}

/// A store written before eventCategory and insightType were indexed (the store crate's format
/// 2 fixture, 1,600 events): an Insight event imported now is found by both lookups and by
/// `insights list`, and each says on stderr from which seq its answer is complete; a lookup
/// by another attribute says nothing.
#[test]
fn on_a_store_written_before_category_indexing_lookups_by_it_say_they_may_be_partial() {
    let org = Org::new();
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../orgtrail-store/tests/fixtures/format2");
    common::fs::copy_dir(&fixture.join("data"), &org.path("data"));
    common::fs::copy_dir(&fixture.join("keys"), &org.path("keys"));
    let insight = json!({
        "eventVersion": "1.09",
        "eventTime": "2026-11-20T10:00:00Z",
        "awsRegion": "us-east-1",
        "eventID": "00000000-0000-4000-9999-000000000001",
        "eventType": "AwsCloudTrailInsight",
        "recipientAccountId": ACCOUNT,
        "sharedEventID": "00000000-0000-4000-9999-000000000002",
        "insightDetails": {
            "state": "Start",
            "eventSource": "iam.amazonaws.com",
            "eventName": "CreateUser",
            "insightType": "ApiCallRateInsight",
            "insightContext": {"statistics": {"baseline": {"average": 0.1}, "insight": {"average": 40.0}, "insightDuration": 1, "baselineDuration": 120}}
        },
        "eventCategory": "Insight"
    });
    let file = org.path("insight.jsonl");
    std::fs::write(&file, format!("{insight}\n")).unwrap();
    let out = offline(&org, &["import", s(&file)]);
    assert!(out.status.success(), "{}", common::stderr(&out));

    let note = "note: this store indexes eventCategory and insightType only for the events stored from seq 1601 on";
    for args in [
        &["lookup", "--event-category", "Insight"][..],
        &["lookup", "--insight-type", "ApiCallRateInsight"][..],
        &["insights", "list"][..],
    ] {
        let out = offline(&org, &[args, &["--output", "jsonl"]].concat());
        assert!(out.status.success(), "{}", common::stderr(&out));
        assert!(
            common::stderr(&out).contains(note),
            "{args:?}: {}",
            common::stderr(&out)
        );
        let found: Vec<Value> = common::stdout(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(found, vec![insight.clone()], "{args:?}");
    }
    let out = offline(&org, &["lookup", "--region", "us-east-1", "--max", "1"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(
        !common::stderr(&out).contains("note:"),
        "{}",
        common::stderr(&out)
    );
}
