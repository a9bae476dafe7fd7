//! Integrity served live: an auditor holding only an auditor certificate and `signing.pub`
//! checks a running collector while it keeps ingesting: checkpoints, an event's inclusion
//! proof, consistency between two checkpoints, and the whole log rebuilt on the auditor's side.
//! Real binaries, real mutual TLS on port 0, real sled.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/org.rs"]
mod org;
#[path = "common/procs.rs"]
mod procs;

use std::io::Write;
use std::process::{Child, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::{orgtrail, run, stderr, stdout};
use org::{Collector, Org, agent_drains, events, p, sigterm, spawn_agent};

const DEADLINE: Duration = Duration::from_secs(60);

/// `orgtrail CMD` with the flags of a remote reader using certificate `cert`, then `rest`.
fn remote(org: &Org, c: &Collector, cmd: &str, cert: &str, rest: &[&str]) -> Output {
    let mut args = vec![cmd.to_string()];
    args.extend(org.reader_args(c, cert));
    args.extend(rest.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&args, b"")
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!("not JSON ({e}): {}{}", stdout(o), stderr(o));
    })
}

fn event_id(line: &str) -> String {
    serde_json::from_str::<serde_json::Value>(line).unwrap()["eventID"]
        .as_str()
        .unwrap()
        .to_string()
}

/// An agent following `file` (a JSON lines file that grows), as the collector's account.
fn following_agent(
    org: &Org,
    c: &Collector,
    name: &str,
    account: &str,
) -> (Child, std::path::PathBuf) {
    org.issue(name, "agent", Some(account));
    let file = org.path(&format!("{name}.log"));
    std::fs::write(&file, "").unwrap();
    let sources = format!(
        "[[sources]]\ntype = \"jsonl\"\nname = \"app\"\npath = \"{}\"\nfollow = true\npoll_ms = 20\n",
        p(&file)
    );
    let cfg = org.agent_config_with(name, account, c.port, &sources);
    let agent = orgtrail()
        .args(["agent", "--config", &p(&cfg)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (agent, file)
}

/// Appends `lines` to `file` a slice at a time (after the feeder `after`, if any, is done)
/// until they run out or `stop` is set: a steady stream of new events for the collector while
/// the test asks it questions. The pause only paces the producer; nothing waits on it.
fn feed(
    file: std::path::PathBuf,
    lines: Vec<String>,
    stop: Arc<AtomicBool>,
    after: Option<std::thread::JoinHandle<usize>>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut written = after.map_or(0, |h| h.join().unwrap());
        for chunk in lines.chunks(50) {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&file)
                .unwrap();
            for l in chunk {
                writeln!(f, "{l}").unwrap();
            }
            written += chunk.len();
            std::thread::sleep(Duration::from_millis(30));
        }
        written
    })
}

fn tree_size(v: &serde_json::Value) -> u64 {
    v["tree_size"].as_u64().unwrap()
}

#[test]
fn an_auditor_checks_proofs_checkpoints_and_the_whole_log_while_the_collector_ingests() {
    let org = Org::new();
    let mut c = org.collector(0, "");
    org.issue("auditor", "auditor", None);
    org.issue("admin", "admin", None);
    let public = p(&org.path("keys/signing.pub"));
    let (account, gen_file, _) = events(&org, "gen", 12_000, 71);
    let lines: Vec<String> = std::fs::read_to_string(&gen_file)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let (mut agent, file) = following_agent(&org, &c, "agent-a", &account);
    let stop = Arc::new(AtomicBool::new(false));
    // A third of the events now, the rest once the first checkpoint is taken: the log is
    // certain to grow while it is being checked.
    let (early, late) = lines.split_at(lines.len() / 3);
    let feeder = feed(file.clone(), early.to_vec(), stop.clone(), None);

    // An early event: its proof is fetched as soon as it is stored. The newest checkpoint
    // cannot cover it yet; the collector signs one for the proof.
    let first = event_id(&lines[0]);
    let proof = org.path("proof.json");
    procs::wait_until(DEADLINE, "the first event is stored and proven", || {
        remote(
            &org,
            &c,
            "proof",
            "auditor",
            &[
                "--account",
                &account,
                "--event-id",
                &first,
                "--out",
                &p(&proof),
            ],
        )
        .status
        .success()
    });
    let o = run(&["verify-proof", &p(&proof), "--public-key", &public], b"");
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).starts_with(&format!(
            "proof verified: event {first} of account {account}"
        )),
        "{}",
        stdout(&o)
    );

    // A flipped byte of the audit path: the same checker refuses it.
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&proof).unwrap()).unwrap();
    if v["audit_path"].as_array().unwrap().is_empty() {
        // A proof in a tree of one has no path; flip the event's bytes instead.
        let mut e = B64.decode(v["event"].as_str().unwrap()).unwrap();
        let at = e.len() - 3;
        e[at] ^= 1;
        v["event"] = B64.encode(e).into();
    } else {
        let mut h = B64.decode(v["audit_path"][0].as_str().unwrap()).unwrap();
        h[7] ^= 0x20;
        v["audit_path"][0] = B64.encode(h).into();
    }
    let bad = org.path("proof-tampered.json");
    std::fs::write(&bad, serde_json::to_vec(&v).unwrap()).unwrap();
    let o = run(&["verify-proof", &p(&bad), "--public-key", &public], b"");
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).starts_with("proof FAILED"), "{}", stdout(&o));

    // The newest checkpoint, checked against signing.pub as it is fetched.
    let o = remote(
        &org,
        &c,
        "checkpoint",
        "auditor",
        &["--public-key", &public],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let cp1 = json(&o);
    let cp1_file = org.path("cp1.json");
    std::fs::write(&cp1_file, &o.stdout).unwrap();
    assert!(cp1["note"].as_str().unwrap().starts_with("orgtrail/"));
    let feeder = feed(file, late.to_vec(), stop.clone(), Some(feeder));
    // The same checkpoint by its size.
    let o = remote(
        &org,
        &c,
        "checkpoint",
        "auditor",
        &["--size", &tree_size(&cp1).to_string()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&o)["note"], cp1["note"]);

    // The log grows; an admin has a newer checkpoint signed.
    let mut cp2 = cp1.clone();
    procs::wait_until(DEADLINE, "a newer checkpoint", || {
        let o = remote(&org, &c, "checkpoint", "admin", &["--new"]);
        assert!(o.status.success(), "{}", stderr(&o));
        cp2 = json(&o);
        tree_size(&cp2) > tree_size(&cp1)
    });
    let cp2_file = org.path("cp2.json");
    std::fs::write(&cp2_file, serde_json::to_vec(&cp2).unwrap()).unwrap();

    // Consistency between the two, checked with the public key; and from cp1 to the newest.
    let o = remote(
        &org,
        &c,
        "verify-consistency",
        "auditor",
        &[&p(&cp1_file), &p(&cp2_file), "--public-key", &public],
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains(&format!(
            "consistent: the log of {} events extends the log of {} events unchanged",
            tree_size(&cp2),
            tree_size(&cp1)
        )),
        "{}",
        stdout(&o)
    );
    let o = remote(
        &org,
        &c,
        "verify-consistency",
        "auditor",
        &[&p(&cp1_file), "--public-key", &public],
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).starts_with("consistent: "), "{}", stdout(&o));

    // The whole log, rebuilt here from the stored leaf hashes, against every stored checkpoint
    // and the two saved ones.
    let o = remote(
        &org,
        &c,
        "verify",
        "auditor",
        &[
            "--public-key",
            &public,
            "--checkpoint",
            &p(&cp1_file),
            "--checkpoint",
            &p(&cp2_file),
        ],
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let report = stdout(&o);
    let last = report.lines().last().unwrap();
    assert!(last.starts_with("verified events="), "{report}");
    assert!(last.ends_with("saved-checkpoints=2"), "{report}");
    let verified: u64 = last
        .split_whitespace()
        .find_map(|w| w.strip_prefix("events="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(verified >= tree_size(&cp2), "{report}");
    assert!(
        report.contains("not checked: that the encrypted records"),
        "{report}"
    );

    // Full verification with the master key stays offline: on the store the collector has
    // open, it refuses before claiming anything.
    let o = run(
        &[
            "verify",
            "--data-dir",
            &p(&org.path("data")),
            "--keys",
            &p(&org.path("keys")),
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "", "nothing may be claimed as checked");
    assert!(
        stderr(&o).contains("is in use by another process"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("nothing was checked"), "{}", stderr(&o));

    // Stopped: the remote proof file is exactly what the offline `proof` writes for the same
    // event and checkpoint.
    stop.store(true, Ordering::Relaxed);
    let _ = feeder.join().unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status();
    assert!(agent.wait().unwrap().success());
    sigterm(&mut c);
    let remote_proof: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&proof).unwrap()).unwrap();
    let size = remote_proof["tree_size"].as_u64().unwrap().to_string();
    let o = run(
        &[
            "proof",
            "--data-dir",
            &p(&org.path("data")),
            "--keys",
            &p(&org.path("keys")),
            "--account",
            &account,
            "--event-id",
            &first,
            "--size",
            &size,
        ],
        b"",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&o), remote_proof);
}

#[test]
fn only_readers_may_ask_and_a_limited_auditor_gets_proofs_of_its_accounts_only() {
    let org = Org::new();
    let c = org.collector(0, "");
    let (a, fa, _) = events(&org, "a", 300, 81);
    let (b, fb, _) = events(&org, "b", 200, 82);
    for (name, account, file) in [("agent-a", &a, &fa), ("agent-b", &b, &fb)] {
        org.issue(name, "agent", Some(account));
        let cfg = org.agent_config(name, account, name, file, c.port);
        agent_drains(spawn_agent(&cfg), 60);
    }
    org.issue("auditor-a", "auditor", Some(&a));
    org.issue("auditor", "auditor", None);
    let first =
        |f: &std::path::Path| event_id(std::fs::read_to_string(f).unwrap().lines().next().unwrap());
    let (ea, eb) = (first(&fa), first(&fb));

    // An agent certificate is refused, naming its role.
    let o = remote(&org, &c, "checkpoint", "agent-a", &[]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains(
            "has role agent: only auditor and admin certificates may read checkpoints and proofs"
        ),
        "{e}"
    );
    let o = remote(
        &org,
        &c,
        "proof",
        "agent-a",
        &["--account", &a, "--event-id", &ea],
    );
    assert!(stderr(&o).contains("has role agent"), "{}", stderr(&o));

    // Limited to A: A's proof comes, B's is refused, naming what it may read.
    let o = remote(
        &org,
        &c,
        "proof",
        "auditor-a",
        &["--account", &a, "--event-id", &ea],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&o)["account"], a.as_str());
    let o = remote(
        &org,
        &c,
        "proof",
        "auditor-a",
        &["--account", &b, "--event-id", &eb],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(&format!("may read account {a}, not {b}")),
        "{}",
        stderr(&o)
    );

    // Only an admin may have a checkpoint signed now.
    let o = remote(&org, &c, "checkpoint", "auditor", &["--new"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("only admin certificates may have a checkpoint signed now"),
        "{}",
        stderr(&o)
    );

    // A size at which no checkpoint is stored: the answer names those nearby.
    let o = remote(&org, &c, "checkpoint", "auditor", &[]);
    let newest = tree_size(&json(&o));
    let o = remote(&org, &c, "checkpoint", "auditor", &["--size", "3"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(&format!(
            "no checkpoint is stored at size 3; stored nearby: {newest}"
        )),
        "{}",
        stderr(&o)
    );

    // Another store's key: the streamed log verifies against none of its checkpoints.
    let other = org.path("other-keys");
    assert!(
        run(&["keys", "init", "--out", &p(&other)], b"")
            .status
            .success()
    );
    let o = remote(
        &org,
        &c,
        "verify",
        "auditor",
        &["--public-key", &p(&other.join("signing.pub"))],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("FAILED: stored checkpoint at size")
            && stdout(&o).contains("not signed by this key"),
        "{}",
        stdout(&o)
    );
    assert!(!stdout(&o).contains("verified events="), "{}", stdout(&o));
}
