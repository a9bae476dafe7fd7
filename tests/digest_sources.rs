//! CloudTrail digest checking on the agent's `cloudtrail_dir` and `s3` sources
//! (`digest_public_keys_file`), end to end: the real agent against a real collector over
//! mutual TLS, reading real files and a real SeaweedFS bucket that checks SigV4 signatures.
//! Trails are built here with an RSA key pair made here (digests chained and signed as
//! CloudTrail signs them). A valid chain ships everything and counts `ok`; a modified log file,
//! a deleted one and a digest signed by another key are each reported by key (log at error
//! level, metrics) while everything readable is still shipped; an agent killed with SIGKILL
//! after shipping the log files and before their digests arrive checks them after its restart
//! from what it kept. Progress is observed on `/metrics`, never by sleeping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/org.rs"]
mod org;
#[path = "common/procs.rs"]
mod procs;
#[path = "common/prom.rs"]
mod prom;
// The trail builder the trailfiles and validate-logs tests use.
#[path = "../crates/orgtrail-trailfiles/tests/support/mod.rs"]
mod support;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use common::{orgtrail, stderr};
use org::{Collector, Org, p};
use orgtrail_agent::sources::digests::DigestResult;
use orgtrail_s3::test_server::Weed;
use procs::{Lines, wait_until};
use support::{ACCOUNT, BUCKET, Keys, Signer, Trail};

const SOURCE: &str = "trail";
const WITHIN: Duration = Duration::from_secs(90);

fn setup() -> (Org, Collector) {
    let org = Org::new();
    let c = org.collector(0, "");
    org.issue("admin", "admin", None);
    org.issue("agent", "agent", Some(ACCOUNT));
    (org, c)
}

/// The eventIDs stored, each once (fails on a duplicate).
fn stored_once(org: &Org, c: &Collector) -> HashSet<String> {
    let ids: Vec<String> = org
        .stored_lines(c, "admin")
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["eventID"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let unique: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "nothing stored twice");
    unique
}

/// The eventIDs of the trail's log files `logs` (as the builder writes them).
fn ids_of(trail: &Trail, keep: impl Fn(&str) -> bool) -> HashSet<String> {
    let mut out = HashSet::new();
    for (i, hour) in trail.logs.iter().enumerate() {
        for (n, k) in hour.iter().enumerate() {
            if keep(k) {
                out.insert(format!("e-{i}-{n}"));
            }
        }
    }
    out
}

/// A running agent and its ops address.
fn agent_with_ops(cfg: &Path) -> (std::process::Child, String, Lines) {
    procs::agent_with_ops(cfg, &[])
}

fn checks(ops: &str, result: &str) -> f64 {
    prom::scrape(ops)
        .get(
            "orgtrail_agent_digest_checks_total",
            &[("source", SOURCE), ("result", result)],
        )
        .unwrap_or(0.0)
}

fn failures(ops: &str) -> f64 {
    prom::scrape(ops)
        .get("orgtrail_agent_digest_failures", &[("source", SOURCE)])
        .unwrap_or(-1.0)
}

fn events(ops: &str, stage: &str) -> f64 {
    prom::scrape(ops)
        .get(
            "orgtrail_agent_events_total",
            &[("source", SOURCE), ("stage", stage)],
        )
        .unwrap_or(0.0)
}

/// Every result but those named is 0.
fn only(ops: &str, want: &[(&str, f64)]) {
    for r in DigestResult::ALL {
        let expected = want.iter().find(|(w, _)| *w == r).map_or(0.0, |(_, n)| *n);
        assert_eq!(checks(ops, r), expected, "digest checks with result {r}");
    }
}

/// Waits until the checks with each result named reach their counts, then asserts that every
/// other result is 0.
fn settle(ops: &str, what: &str, want: &[(&str, f64)]) {
    wait_until(WITHIN, what, || {
        want.iter().all(|(r, n)| checks(ops, r) == *n)
    });
    only(ops, want);
}

/// The agent logged an error naming `key` with `result`.
/// (Waits for it: the line may still be on its way when the metrics already count it.)
fn reported(log: &Lines, key: &str, result: &str) {
    log.wait_for(
        &["ERROR", "CloudTrail digest check failed", key, result],
        WITHIN,
    );
}

/// What an agent reports of a trail of 4 hours whose log file `modified` was replaced, whose
/// `deleted` was deleted and whose digest 1 was signed by another key: each by key, and
/// everything readable shipped.
fn tampered_reported(ops: &str, log: &Lines, trail: &Trail, modified: &str, deleted: &str) {
    wait_until(WITHIN, "the 4 digests checked", || {
        checks(ops, "ok") == 7.0 && checks(ops, "unlisted") == 2.0
    });
    // Digests 0, 2, 3 and the 4 intact log files they list are ok; digest 1's log files are
    // listed by no valid digest: unlisted once digest 2 arrived.
    only(
        ops,
        &[
            ("ok", 7.0),
            ("modified", 1.0),
            ("missing", 1.0),
            ("unlisted", 2.0),
            ("bad_signature", 1.0),
        ],
    );
    assert_eq!(failures(ops), 5.0);
    reported(log, modified, "modified");
    reported(log, deleted, "missing");
    reported(log, &trail.digests[1], "bad_signature");
    reported(log, &trail.logs[1][0], "unlisted");
    reported(log, &trail.logs[1][1], "unlisted");
    // Detection, not refusal: everything readable is shipped, the forged event included.
    wait_until(WITHIN, "every event acknowledged", || {
        events(ops, "shipped") == 7.0
    });
}

/// A log file with one event of the account, other than the trail's.
fn forged_log(at: &str) -> Vec<u8> {
    support::gzip(
        format!(
            r#"{{"Records":[{{"eventVersion":"1.08","eventID":"forged","eventTime":"{at}","eventSource":"s3.amazonaws.com","eventName":"ListBuckets","recipientAccountId":"{ACCOUNT}","awsRegion":"us-east-1"}}]}}"#
        )
        .as_bytes(),
    )
}

// ---------------------------------------------------------------------------------------
// cloudtrail_dir

fn dir_source(org: &Org, root: &Path, c: &Collector) -> std::path::PathBuf {
    dir_source_with(org, root, c, "")
}

/// [`dir_source`] with `extra` keys.
fn dir_source_with(org: &Org, root: &Path, c: &Collector, extra: &str) -> std::path::PathBuf {
    let sources = format!(
        "[[sources]]\ntype = \"cloudtrail_dir\"\nname = \"{SOURCE}\"\npath = \"{}\"\npoll_ms = \"50ms\"\ndigest_public_keys_file = \"{}\"\n{extra}",
        p(root),
        p(&org.path("keys.json")),
    );
    org.agent_config_with("agent", ACCOUNT, c.port, &sources)
}

/// A trail of `hours` in the org's directory, each digest with its `.sig` sidecar (as a copy
/// that saves `x-amz-meta-signature` beside each digest has them).
fn dir_trail(org: &Org, hours: usize, signer: impl Fn(usize) -> Signer) -> Trail {
    let keys = Keys::new();
    keys.write_list(&org.path("keys.json"));
    let trail = Trail::build(&org.path("bucket"), &keys, hours, signer, None);
    for i in 0..hours {
        trail.save_signature(i);
    }
    trail
}

#[test]
fn dir_a_valid_chain_ships_everything_and_every_check_is_ok() {
    let (org, c) = setup();
    let trail = dir_trail(&org, 3, |_| Signer::Trail);
    let cfg = dir_source(&org, &trail.root, &c);
    let (mut agent, ops, log) = agent_with_ops(&cfg);
    // 3 digests and the 6 log files they list.
    wait_until(WITHIN, "3 digests and 6 log files checked", || {
        checks(&ops, "ok") == 9.0
    });
    wait_until(WITHIN, "every event acknowledged", || {
        events(&ops, "shipped") == 6.0
    });
    only(&ops, &[("ok", 9.0)]);
    assert_eq!(failures(&ops), 0.0);
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(!log.text().contains("ERROR"), "{}", log.text());
    assert_eq!(stored_once(&org, &c), ids_of(&trail, |_| true));
}

#[test]
fn dir_a_modified_and_a_deleted_log_file_and_a_foreign_signature_are_reported_by_key() {
    let (org, c) = setup();
    // Digest 1 is signed with another key that claims the trail key's fingerprint.
    let trail = dir_trail(&org, 4, |i| {
        if i == 1 {
            Signer::ForeignClaimingTrail
        } else {
            Signer::Trail
        }
    });
    let modified = trail.logs[0][0].clone();
    std::fs::write(trail.path(&modified), forged_log("2024-03-01T00:05:00Z")).unwrap();
    let deleted = trail.logs[2][1].clone();
    std::fs::remove_file(trail.path(&deleted)).unwrap();
    let cfg = dir_source(&org, &trail.root, &c);
    let (mut agent, ops, log) = agent_with_ops(&cfg);
    tampered_reported(&ops, &log, &trail, &modified, &deleted);
    let _ = agent.kill();
    let _ = agent.wait();
    let text = log.text();
    assert!(!text.contains("ListBuckets"), "never an event body: {text}");
    let mut want = ids_of(&trail, |k| k != modified && k != deleted);
    want.insert("forged".into());
    assert_eq!(stored_once(&org, &c), want);
}

#[test]
fn dir_an_agent_killed_before_the_digests_arrive_checks_the_files_after_restart() {
    killed_before_the_digests_arrive(None);
}

/// Each log file of the trail holds one event: with batches of one event, each file's last
/// event fills a batch, and a mark sent after it would wait for the linger (5 s here) to be
/// made durable, long after the kill. The file's done-mark travels with its last event, so
/// the restarted agent still reads nothing again.
#[test]
fn dir_a_file_whose_last_event_fills_a_batch_is_not_read_again_after_a_kill() {
    killed_before_the_digests_arrive(Some("linger_ms = \"5s\"\nmax_events = 1"));
}

/// Replaces the test configuration's `[batch]` keys in the agent configuration `cfg`.
fn set_batch(cfg: &std::path::Path, keys: &str) {
    let text = std::fs::read_to_string(cfg).unwrap();
    assert!(text.contains("[batch]\nlinger_ms = 20\n"), "{text}");
    let text = text.replace("[batch]\nlinger_ms = 20\n", &format!("[batch]\n{keys}\n"));
    std::fs::write(cfg, text).unwrap();
}

/// A trail of 3 hours shipped, the agent SIGKILLed before the digests arrive, restarted when
/// they have: every file is checked from the hash kept with its mark, none read again.
/// `batch`: the agent's `[batch]` keys instead of the test configuration's.
fn killed_before_the_digests_arrive(batch: Option<&str>) {
    let (org, c) = setup();
    let trail = dir_trail(&org, 3, |_| Signer::Trail);
    // The digests arrive later: moved aside for now.
    let digests = trail
        .root
        .join(format!("AWSLogs/{ACCOUNT}/CloudTrail-Digest"));
    let aside = org.path("digests-aside");
    std::fs::rename(&digests, &aside).unwrap();
    let cfg = dir_source(&org, &trail.root, &c);
    if let Some(keys) = batch {
        set_batch(&cfg, keys);
    }
    let (mut agent, ops, _log) = agent_with_ops(&cfg);
    wait_until(WITHIN, "the 6 log files shipped", || {
        events(&ops, "shipped") == 6.0
    });
    assert_eq!(checks(&ops, "ok"), 0.0);
    // SIGKILL: nothing is flushed or said goodbye to.
    agent.kill().unwrap();
    agent.wait().unwrap();
    std::fs::rename(&aside, &digests).unwrap();
    let (mut agent, ops, log) = agent_with_ops(&cfg);
    wait_until(WITHIN, "3 digests and 6 log files checked", || {
        checks(&ops, "ok") == 9.0
    });
    only(&ops, &[("ok", 9.0)]);
    assert_eq!(failures(&ops), 0.0);
    // Checked from the hashes kept with the files' marks: nothing was read again.
    assert_eq!(events(&ops, "read"), 0.0);
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(!log.text().contains("ERROR"), "{}", log.text());
    assert_eq!(stored_once(&org, &c), ids_of(&trail, |_| true));
}

#[test]
fn dir_a_one_pass_run_reports_a_deleted_digest_as_a_broken_chain() {
    let (org, c) = setup();
    let trail = dir_trail(&org, 4, |_| Signer::Trail);
    std::fs::remove_file(trail.path(&trail.digests[1])).unwrap();
    std::fs::remove_file(trail.path(&format!("{}.sig", trail.digests[1]))).unwrap();
    let cfg = dir_source(&org, &trail.root, &c);
    let o = orgtrail()
        .args(["agent", "--exit-when-drained", "--config", &p(&cfg)])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let log = stderr(&o);
    assert!(o.status.success(), "{log}");
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("CloudTrail digest check failed"))
        .collect();
    // Digest 2 names digest 1, which was never seen after digest 0; digest 1's log files are
    // listed by no digest the agent read.
    assert_eq!(failed.len(), 3, "{log}");
    assert!(
        failed.iter().any(|l| l.contains(&trail.digests[2])
            && l.contains("broken_chain")
            && l.contains(&trail.digests[1])),
        "{log}"
    );
    for k in &trail.logs[1] {
        assert!(
            failed
                .iter()
                .any(|l| l.contains(k.as_str()) && l.contains("unlisted")),
            "{log}"
        );
    }
    assert_eq!(stored_once(&org, &c), ids_of(&trail, |_| true));
}

/// Every file under `root` made a day old, as `aws s3 sync` leaves a copy (each file's time
/// is its object's LastModified).
fn age_tree(root: &Path) {
    let old = std::time::SystemTime::now() - Duration::from_secs(2 * 86_400);
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                let f = std::fs::File::options().write(true).open(e.path()).unwrap();
                f.set_modified(old).unwrap();
            }
        }
    }
}

/// The agent logged a warning naming `key` with `result` (not a failure).
/// How many times; waits for the first (see [`reported`]).
fn noted(log: &Lines, key: &str, result: &str) -> usize {
    let parts = ["WARN", "CloudTrail digest check", key, result];
    log.wait_for(&parts, WITHIN);
    log.text()
        .lines()
        .filter(|l| {
            l.contains("WARN")
                && l.contains("CloudTrail digest check")
                && l.contains(key)
                && l.contains(result)
        })
        .count()
}

#[test]
fn dir_a_copy_without_signature_sidecars_is_verified_by_each_digests_successor() {
    let (org, c) = setup();
    // A copy made by `aws s3 sync`: no object metadata, so no `.sig` sidecar at all.
    let keys = Keys::new();
    keys.write_list(&org.path("keys.json"));
    let trail = Trail::build(&org.path("bucket"), &keys, 4, |_| Signer::Trail, None);
    std::fs::remove_file(trail.path(&format!("{}.sig", trail.digests[3]))).unwrap();
    age_tree(&trail.root);
    // Digest 3 comes with a later sync.
    let later = org.path("digest-3");
    std::fs::rename(trail.path(&trail.digests[3]), &later).unwrap();
    let cfg = dir_source(&org, &trail.root, &c);
    let (mut agent, ops, log) = agent_with_ops(&cfg);
    // Digests 0 and 1 are verified with the signatures their successors name, and so are
    // their 4 log files; digest 2, the newest, cannot be verified yet: unverified, once.
    settle(
        &ops,
        "digests 0 and 1 checked, digest 2 unverified",
        &[("ok", 6.0), ("unverified", 1.0)],
    );
    assert_eq!(failures(&ops), 0.0);
    assert_eq!(noted(&log, &trail.digests[2], "unverified"), 1);
    // The next sync brings digest 3: it names digest 2's signature, which verifies it.
    std::fs::rename(&later, trail.path(&trail.digests[3])).unwrap();
    settle(
        &ops,
        "digest 2 checked, digest 3 unverified",
        &[("ok", 9.0), ("unverified", 2.0)],
    );
    assert_eq!(failures(&ops), 0.0);
    assert_eq!(noted(&log, &trail.digests[2], "unverified"), 1);
    assert_eq!(noted(&log, &trail.digests[3], "unverified"), 1);
    wait_until(WITHIN, "every event acknowledged", || {
        events(&ops, "shipped") == 8.0
    });
    agent.kill().unwrap();
    agent.wait().unwrap();
    assert!(!log.text().contains("ERROR"), "{}", log.text());
    // After a restart (a one-pass run) digest 3 still waits for its successor: nothing is
    // reported again.
    let o = orgtrail()
        .args(["agent", "--exit-when-drained", "--config", &p(&cfg)])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = stderr(&o);
    assert!(o.status.success(), "{text}");
    assert!(!text.contains("CloudTrail digest check"), "{text}");
    assert_eq!(stored_once(&org, &c), ids_of(&trail, |_| true));
}

#[test]
fn dir_a_digest_read_before_its_predecessor_waits_for_it_instead_of_breaking_the_chain() {
    let (org, c) = setup();
    let trail = dir_trail(&org, 3, |_| Signer::Trail);
    // Digest 1's sidecar comes late: digest 1 waits for it, and digest 2 (complete) is read
    // first; its chain check must wait for digest 1, not call it never seen.
    let sidecar = trail.path(&format!("{}.sig", trail.digests[1]));
    std::fs::remove_file(&sidecar).unwrap();
    let cfg = dir_source(&org, &trail.root, &c);
    let (mut agent, ops, log) = procs::agent_with_ops(&cfg, &[("ORGTRAIL_LOG", "info")]);
    // Two scans in which digest 2 waited for digest 1.
    wait_until(WITHIN, "digest 2 waiting for digest 1 twice", || {
        log.text()
            .lines()
            .filter(|l| {
                l.contains("waits for its previous digest") && l.contains(&trail.digests[2])
            })
            .count()
            >= 2
    });
    only(&ops, &[("ok", 3.0)]);
    std::fs::write(&sidecar, trail.signature_of(1)).unwrap();
    settle(&ops, "every digest checked", &[("ok", 9.0)]);
    assert_eq!(failures(&ops), 0.0);
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(!log.text().contains("ERROR"), "{}", log.text());
}

#[test]
fn dir_a_listed_log_file_that_keeps_failing_is_reported_missing_after_digest_wait() {
    let (org, c) = setup();
    let trail = dir_trail(&org, 2, |_| Signer::Trail);
    // A log file cut short, still young: the source tries it again at every scan (it may
    // still be arriving), and digest 0, which lists it, waits for it, at most 1 s.
    let failing = trail.logs[0][1].clone();
    let bytes = std::fs::read(trail.path(&failing)).unwrap();
    std::fs::write(trail.path(&failing), &bytes[..bytes.len() / 2]).unwrap();
    let cfg = dir_source_with(&org, &trail.root, &c, "digest_wait_ms = \"1s\"\n");
    let (mut agent, ops, log) = agent_with_ops(&cfg);
    wait_until(WITHIN, "both digests checked", || {
        checks(&ops, "ok") == 5.0 && checks(&ops, "missing") == 1.0
    });
    only(&ops, &[("ok", 5.0), ("missing", 1.0)]);
    assert_eq!(failures(&ops), 1.0);
    reported(&log, &failing, "digest_wait");
    wait_until(WITHIN, "the 3 readable log files acknowledged", || {
        events(&ops, "shipped") == 3.0
    });
    let _ = agent.kill();
    let _ = agent.wait();
    assert_eq!(stored_once(&org, &c), ids_of(&trail, |k| k != failing));
}

#[test]
fn dir_failures_are_counted_once_across_a_crash_right_after_they_are_reported() {
    let (org, c) = setup();
    let trail = dir_trail(&org, 3, |_| Signer::Trail);
    let modified = trail.logs[1][0].clone();
    std::fs::write(trail.path(&modified), forged_log("2024-03-01T01:05:00Z")).unwrap();
    let cfg = dir_source(&org, &trail.root, &c);
    // The agent aborts once digest 1 has reported the modified file and its marks are
    // durable: before the restart's checks, as a kill -9 at that point would.
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{text}[ops]\nlisten = \"127.0.0.1:0\"\n")).unwrap();
    let (mut agent, _out, log) =
        procs::spawn_agent(&cfg, &[], &[("ORGTRAIL_CRASH_AT", "digest-after-report")]);
    let status = procs::wait_exit(&mut agent, WITHIN, &log);
    assert!(!status.success(), "{}", log.text());
    // Read to its end (the lines before the crash come first).
    log.wait_for(&["crash point digest-after-report"], WITHIN);
    reported(&log, &modified, "modified");
    let (mut agent, ops, log) = agent_with_ops(&cfg);
    // Digest 2 and its log files: the rest was checked before the crash.
    settle(&ops, "digest 2 checked", &[("ok", 3.0)]);
    assert_eq!(failures(&ops), 1.0, "the modified file counted once");
    let mut want = ids_of(&trail, |k| k != modified);
    want.insert("forged".into());
    wait_until(WITHIN, "every event stored", || {
        stored_once(&org, &c) == want
    });
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(
        !log.text().contains("ERROR"),
        "reported once: {}",
        log.text()
    );
}

#[test]
fn dir_two_trails_in_one_location_keep_their_unlisted_check_across_a_restart() {
    let (org, c) = setup();
    // Trails "main" and "other" both deliver to the same account and region.
    let keys = Keys::new();
    keys.write_list(&org.path("keys.json"));
    let root = org.path("bucket");
    let main = Trail::build(&root, &keys, 4, |_| Signer::Trail, None);
    let other = Trail::build_named(&root, &keys, 4, "other");
    for t in [&main, &other] {
        for i in 0..4 {
            t.save_signature(i);
        }
    }
    // Main's digest of hour 0 and other's of hours 0 and 1 come first (each trail's first
    // digest tells the agent the trail is there), then main's of hours 1 and 2; main's of
    // hour 3 and other's of hours 2 and 3 later.
    let aside = org.path("aside");
    std::fs::create_dir_all(&aside).unwrap();
    let hide = |t: &Trail, i: usize| {
        let to = aside.join(t.digests[i].rsplit('/').next().unwrap());
        std::fs::rename(t.path(&t.digests[i]), &to).unwrap();
        to
    };
    let mains: Vec<_> = (1..4).map(|i| hide(&main, i)).collect();
    hide(&other, 2);
    hide(&other, 3);
    let cfg = dir_source(&org, &root, &c);
    let (mut agent, ops, _log) = agent_with_ops(&cfg);
    wait_until(WITHIN, "3 digests and their 6 log files checked", || {
        checks(&ops, "ok") == 9.0
    });
    for i in 1..3 {
        std::fs::rename(&mains[i - 1], main.path(&main.digests[i])).unwrap();
    }
    wait_until(WITHIN, "main's digests of hours 1 and 2 checked", || {
        checks(&ops, "ok") == 15.0
    });
    only(&ops, &[("ok", 15.0)]);
    wait_until(WITHIN, "the 16 log files acknowledged", || {
        events(&ops, "shipped") == 16.0
    });
    agent.kill().unwrap();
    agent.wait().unwrap();
    // After the restart main's digest of hour 3 arrives: other's log files of hour 2 are
    // still in its period (its digest is due), not unlisted; the restarted agent knows it
    // from what it kept of each trail's latest digest.
    std::fs::rename(&mains[2], main.path(&main.digests[3])).unwrap();
    let (mut agent, ops, log) = agent_with_ops(&cfg);
    wait_until(WITHIN, "main's digest of hour 3 checked", || {
        checks(&ops, "ok") == 3.0
    });
    only(&ops, &[("ok", 3.0)]);
    assert_eq!(failures(&ops), 0.0);
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(!log.text().contains("ERROR"), "{}", log.text());
}

// ---------------------------------------------------------------------------------------
// s3

/// The start of today (UTC), Unix seconds: the trail's hour 0 (inside the lookback window).
fn today_start() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    secs - secs.rem_euclid(86_400)
}

fn s3_source(org: &Org, weed: &Weed, c: &Collector) -> std::path::PathBuf {
    let sources = format!(
        "[[sources]]\ntype = \"s3\"\nname = \"{SOURCE}\"\nbucket = \"{BUCKET}\"\nendpoint = \"{}\"\nallow_http = true\naccess_key_id_file = \"{}\"\nsecret_access_key_file = \"{}\"\nlookback_days = 1\nmax_retries = 2\nretry_timeout_ms = \"2s\"\npoll_ms = \"100ms\"\ndigest_public_keys_file = \"{}\"\n",
        weed.endpoint(),
        p(&weed.access_key_id_file()),
        p(&weed.secret_access_key_file()),
        p(&org.path("keys.json")),
    );
    org.agent_config_with("agent", ACCOUNT, c.port, &sources)
}

/// A trail of `hours` from today's midnight, built in a local directory (uploaded by the test).
fn s3_trail(org: &Org, hours: usize, signer: impl Fn(usize) -> Signer) -> Trail {
    let keys = Keys::new();
    keys.write_list_valid(
        &org.path("keys.json"),
        "2020-01-01T00:00:00Z",
        "2100-01-01T00:00:00Z",
    );
    Trail::build_from(&org.path("copy"), &keys, hours, signer, today_start())
}

/// Uploads digest `i` as CloudTrail delivers it: the signature in `x-amz-meta-signature`.
fn put_digest(b: &orgtrail_s3::Blocking, trail: &Trail, i: usize) {
    let d = &trail.digests[i];
    b.put(
        d,
        std::fs::read(trail.path(d)).unwrap(),
        &[
            ("signature", &trail.signature_of(i)),
            ("signature-algorithm", "SHA256withRSA"),
        ],
    )
    .unwrap();
}

fn put_log(b: &orgtrail_s3::Blocking, trail: &Trail, key: &str) {
    b.put(key, std::fs::read(trail.path(key)).unwrap(), &[])
        .unwrap();
}

#[test]
fn s3_a_valid_chain_is_checked_ok_after_an_agent_killed_before_the_digests_arrived() {
    s3_killed_before_the_digests_arrive(None);
}

/// As [`dir_a_file_whose_last_event_fills_a_batch_is_not_read_again_after_a_kill`], for
/// objects: each object's done-mark travels with its last event.
#[test]
fn s3_an_object_whose_last_event_fills_a_batch_is_not_read_again_after_a_kill() {
    s3_killed_before_the_digests_arrive(Some("linger_ms = \"5s\"\nmax_events = 1"));
}

/// A trail of 3 hours in a bucket, shipped; the agent SIGKILLed before the digests arrive,
/// restarted once they have: every object is checked from the hash kept with its mark, none
/// read again. `batch`: the agent's `[batch]` keys instead of the test configuration's.
fn s3_killed_before_the_digests_arrive(batch: Option<&str>) {
    let (org, c) = setup();
    let weed = Weed::start(&org.path("weed"));
    let b = weed.bucket(BUCKET);
    let trail = s3_trail(&org, 3, |_| Signer::Trail);
    for hour in &trail.logs {
        for k in hour {
            put_log(&b, &trail, k);
        }
    }
    let cfg = s3_source(&org, &weed, &c);
    if let Some(keys) = batch {
        set_batch(&cfg, keys);
    }
    let (mut agent, ops, _log) = agent_with_ops(&cfg);
    wait_until(WITHIN, "the 6 log files shipped", || {
        events(&ops, "shipped") == 6.0
    });
    assert_eq!(checks(&ops, "ok"), 0.0);
    agent.kill().unwrap();
    agent.wait().unwrap();
    // CloudTrail delivers the digests while the agent is down.
    for i in 0..3 {
        put_digest(&b, &trail, i);
    }
    let (mut agent, ops, log) = agent_with_ops(&cfg);
    wait_until(WITHIN, "3 digests and 6 log files checked", || {
        checks(&ops, "ok") == 9.0
    });
    only(&ops, &[("ok", 9.0)]);
    assert_eq!(failures(&ops), 0.0);
    // Checked from the hashes kept with the objects' marks: nothing was read again.
    assert_eq!(events(&ops, "read"), 0.0);
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(!log.text().contains("ERROR"), "{}", log.text());
    assert_eq!(stored_once(&org, &c), ids_of(&trail, |_| true));
}

#[test]
fn s3_a_modified_and_a_deleted_log_file_and_a_foreign_signature_are_reported_by_key() {
    let (org, c) = setup();
    let weed = Weed::start(&org.path("weed"));
    let b = weed.bucket(BUCKET);
    let trail = s3_trail(&org, 4, |i| {
        if i == 1 {
            Signer::ForeignClaimingTrail
        } else {
            Signer::Trail
        }
    });
    let modified = trail.logs[0][0].clone();
    let deleted = trail.logs[2][1].clone();
    for hour in &trail.logs {
        for k in hour {
            if *k == modified {
                b.put(k, forged_log(&support::iso(today_start() + 300)), &[])
                    .unwrap();
            } else if *k != deleted {
                put_log(&b, &trail, k);
            }
        }
    }
    for i in 0..4 {
        put_digest(&b, &trail, i);
    }
    let cfg = s3_source(&org, &weed, &c);
    let (mut agent, ops, log) = agent_with_ops(&cfg);
    tampered_reported(&ops, &log, &trail, &modified, &deleted);
    let _ = agent.kill();
    let _ = agent.wait();
    let mut want = ids_of(&trail, |k| k != modified && k != deleted);
    want.insert("forged".into());
    assert_eq!(stored_once(&org, &c), want);
}

#[test]
fn s3_digests_copied_without_their_signature_metadata_are_verified_by_each_successor() {
    let (org, c) = setup();
    let weed = Weed::start(&org.path("weed"));
    let b = weed.bucket(BUCKET);
    let trail = s3_trail(&org, 4, |_| Signer::Trail);
    for hour in &trail.logs {
        for k in hour {
            put_log(&b, &trail, k);
        }
    }
    // A copy that kept no object metadata: no x-amz-meta-signature.
    let put_bare = |i: usize| {
        let d = &trail.digests[i];
        b.put(d, std::fs::read(trail.path(d)).unwrap(), &[])
            .unwrap();
    };
    for i in 0..3 {
        put_bare(i);
    }
    let cfg = s3_source(&org, &weed, &c);
    let (mut agent, ops, log) = agent_with_ops(&cfg);
    settle(
        &ops,
        "digests 0 and 1 checked, digest 2 unverified",
        &[("ok", 6.0), ("unverified", 1.0)],
    );
    put_bare(3);
    settle(
        &ops,
        "digest 2 checked, digest 3 unverified",
        &[("ok", 9.0), ("unverified", 2.0)],
    );
    assert_eq!(failures(&ops), 0.0);
    assert_eq!(noted(&log, &trail.digests[2], "unverified"), 1);
    wait_until(WITHIN, "every event acknowledged", || {
        events(&ops, "shipped") == 8.0
    });
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(!log.text().contains("ERROR"), "{}", log.text());
    assert_eq!(stored_once(&org, &c), ids_of(&trail, |_| true));
}
