//! The agent's `s3` source end to end: real `orgtrail` processes over mutual TLS reading a real
//! SeaweedFS bucket that checks SigV4 signatures. Files put out of key order, late (sorting
//! before keys already read), while a listing is paged, and overwritten are each stored exactly
//! once; an agent killed (abort) after a partial-object mark ships the object exactly once on
//! restart; a wrong secret stops the agent with a clear error. Progress is observed on the
//! agent's `/metrics` and in the collector's store, never by sleeping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/org.rs"]
mod org;
#[path = "common/procs.rs"]
mod procs;
#[path = "common/prom.rs"]
mod prom;
#[path = "common/sources.rs"]
mod sources;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{gzip, orgtrail, stderr};
use org::{Collector, Org, p};
use orgtrail_s3::Blocking;
use orgtrail_s3::test_server::{SECRET_KEY, Weed};
use procs::{Lines, wait_exit, wait_until};
use sources::{ACCOUNT, agent_drained, generated, id, stored_exactly_once};

const ORG_ID: &str = "o-abcdef1234";
const BUCKET: &str = "trail-src";
const SOURCE: &str = "bucket";
const WITHIN: Duration = Duration::from_secs(90);

fn setup() -> (Org, Collector, Weed, Blocking) {
    let (org, c) = sources::setup();
    let weed = Weed::start(&org.path("weed"));
    let b = weed.bucket(BUCKET);
    (org, c, weed, b)
}

/// A gzipped log file of `records`.
fn log_file(records: &[String]) -> Vec<u8> {
    gzip(&sources::log_file(records))
}

/// Puts a log file of `records` at `key`; returns their eventIDs.
fn put(b: &Blocking, key: &str, records: &[String]) -> Vec<String> {
    b.put(key, log_file(records), &[]).unwrap();
    records.iter().map(|l| id(l)).collect()
}

/// Today (UTC) as (YYYY, MM, DD).
fn today() -> (i64, u32, u32) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The key of today's log file stamped `hhmm`, with `tag`.
fn key(hhmm: &str, tag: &str) -> String {
    let (y, m, d) = today();
    format!(
        "AWSLogs/{ORG_ID}/{ACCOUNT}/CloudTrail/us-east-1/{y:04}/{m:02}/{d:02}/{ACCOUNT}_CloudTrail_us-east-1_{y:04}{m:02}{d:02}T{hhmm}Z_{tag}.json.gz"
    )
}

/// The agent's configuration (in the organization) with one source: this bucket on `weed`,
/// signed with the secret in `secret_file`, with `extra` keys.
fn agent_config(org: &Org, c: &Collector, weed: &Weed, secret_file: &Path, extra: &str) -> PathBuf {
    let source = format!(
        "[[sources]]\ntype = \"s3\"\nname = \"{SOURCE}\"\nbucket = \"{BUCKET}\"\nendpoint = \"{}\"\nallow_http = true\naccess_key_id_file = \"{}\"\nsecret_access_key_file = \"{}\"\nlookback_days = 1\nmax_retries = 2\nretry_timeout_ms = \"2s\"\n{extra}",
        weed.endpoint(),
        p(&weed.access_key_id_file()),
        p(secret_file),
    );
    org.agent_config_with("agent", ACCOUNT, c.port, &source)
}

/// A running agent (not `--exit-when-drained`) and its ops address.
fn agent_with_ops(cfg: &Path) -> (std::process::Child, String, Lines) {
    procs::agent_with_ops(cfg, &[])
}

fn objects(ops: &str, outcome: &str) -> f64 {
    prom::scrape(ops)
        .get(
            "orgtrail_agent_s3_objects_total",
            &[("source", SOURCE), ("outcome", outcome)],
        )
        .unwrap_or(0.0)
}

fn gauge(ops: &str, name: &str) -> f64 {
    prom::scrape(ops)
        .get(name, &[("source", SOURCE)])
        .unwrap_or(0.0)
}

fn acknowledged(ops: &str) -> f64 {
    prom::scrape(ops)
        .get(
            "orgtrail_agent_events_total",
            &[("source", SOURCE), ("stage", "shipped")],
        )
        .unwrap_or(0.0)
}

#[test]
fn files_out_of_order_late_during_listing_and_overwritten_are_each_stored_once() {
    let (org, c, weed, b) = setup();
    let evs = generated(2_000, 61);
    let mut chunks = evs.chunks(40);
    let mut want: HashSet<String> = HashSet::new();
    // Out of key order: 03:00, 01:00, 02:00.
    for hhmm in ["0300", "0100", "0200"] {
        want.extend(put(&b, &key(hhmm, "a"), chunks.next().unwrap()));
    }
    // A digest named file where log files are: counted, never parsed (no dead letter).
    let (y, m, d) = today();
    b.put(
        &format!("AWSLogs/{ORG_ID}/{ACCOUNT}/CloudTrail/us-east-1/{y:04}/{m:02}/{d:02}/{ACCOUNT}_CloudTrail-Digest_us-east-1_t_us-east-1_{y:04}{m:02}{d:02}T010000Z.json.gz"),
        gzip(br#"{"awsAccountId":"123456789012","logFiles":[]}"#),
        &[],
    )
    .unwrap();

    let secret = weed.secret_access_key_file();
    let cfg = agent_config(
        &org,
        &c,
        &weed,
        &secret,
        "poll_ms = \"100ms\"\nmax_keys = 2\n",
    );
    let (mut agent, ops, log) = agent_with_ops(&cfg);
    wait_until(WITHIN, "the three files read", || {
        objects(&ops, "shipped") == 3.0
    });
    assert_eq!(objects(&ops, "digest"), 1.0);

    // Late: a file whose key sorts before every key read, after passes went past them.
    let pass = gauge(&ops, "orgtrail_agent_s3_last_pass_timestamp_seconds");
    assert!(pass > 0.0);
    want.extend(put(&b, &key("0000", "late"), chunks.next().unwrap()));
    wait_until(WITHIN, "the late file read", || {
        objects(&ops, "shipped") == 4.0
    });

    // During listing: pages of two keys while 30 files are put on both sides of the cursor.
    let opts = weed.options(BUCKET);
    let more: Vec<(String, Vec<String>)> = (0..30)
        .map(|i| {
            let side = if i % 2 == 0 { "0030" } else { "2330" };
            (
                key(side, &format!("busy{i:02}")),
                chunks.next().unwrap().to_vec(),
            )
        })
        .collect();
    let writer = std::thread::spawn(move || {
        let b = Blocking::owned(&opts).unwrap();
        more.iter()
            .flat_map(|(k, r)| put(&b, k, r))
            .collect::<Vec<_>>()
    });
    want.extend(writer.join().unwrap());
    wait_until(WITHIN, "the 30 files put while listing read", || {
        objects(&ops, "shipped") == 34.0
    });

    // Overwritten: the same key with other content (another ETag) is read again.
    let k = key("0100", "a");
    want.extend(put(&b, &k, chunks.next().unwrap()));
    wait_until(WITHIN, "the overwritten file read again", || {
        objects(&ops, "shipped") == 35.0
    });
    assert_eq!(objects(&ops, "overwritten"), 1.0);

    // Everything acknowledged; two more passes change nothing.
    let total = want.len() as f64;
    wait_until(WITHIN, "every event acknowledged", || {
        acknowledged(&ops) == total
    });
    let after = gauge(&ops, "orgtrail_agent_s3_last_pass_timestamp_seconds");
    wait_until(WITHIN, "two more passes", || {
        gauge(&ops, "orgtrail_agent_s3_last_pass_timestamp_seconds") >= after + 2.0
    });
    assert_eq!(objects(&ops, "shipped"), 35.0);
    assert_eq!(acknowledged(&ops), total);
    assert_eq!(gauge(&ops, "orgtrail_agent_s3_failing_objects"), 0.0);
    // Every s3 family served is in the README's agent metrics table, with its type.
    let body = common::http(&ops, "GET", "/metrics", b"").1;
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"),
    )
    .unwrap();
    let mut families = 0;
    for l in body.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE orgtrail_agent_s3_") {
            let (name, ty) = rest.split_once(' ').unwrap();
            let name = match ty {
                "counter" if !name.ends_with("_total") => format!("orgtrail_agent_s3_{name}_total"),
                _ => format!("orgtrail_agent_s3_{name}"),
            };
            assert!(
                readme.contains(&format!("| `{name}` | {ty} |")),
                "{name} ({ty}) is not in the README's agent metrics table"
            );
            families += 1;
        }
    }
    assert_eq!(families, 6, "{body}");
    let _ = agent.kill();
    let _ = agent.wait();
    let text = log.text();
    assert!(!text.contains(SECRET_KEY), "the secret is never logged");
    assert!(!text.contains("dead letter"), "{text}");
    stored_exactly_once(&org, &c, &want);
}

#[test]
fn an_agent_aborted_after_a_partial_object_mark_ships_the_object_exactly_once() {
    let (org, c, weed, b) = setup();
    let evs = generated(3_600, 62);
    let want: HashSet<String> = evs.iter().map(|l| id(l)).collect();
    // The big object sorts first; two small ones after it.
    put(&b, &key("0100", "big"), &evs[..3_500]);
    put(&b, &key("0200", "s1"), &evs[3_500..3_550]);
    put(&b, &key("0300", "s2"), &evs[3_550..]);
    let secret = weed.secret_access_key_file();
    let cfg = agent_config(&org, &c, &weed, &secret, "");
    let once = |crash: bool| {
        let env: &[(&str, &str)] = if crash {
            &[("ORGTRAIL_CRASH_AT", "s3-after-part-mark")]
        } else {
            &[]
        };
        agent_drained(&cfg, env)
    };
    let o = once(true);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("crash point s3-after-part-mark reached"),
        "{}",
        stderr(&o)
    );
    let o = once(false);
    let log = stderr(&o);
    assert!(o.status.success(), "{log}");
    // The first 1,000 records of the big object were durable: the restart skips them.
    assert!(
        log.contains(&format!("{SOURCE}: read={}", 2_500 + 100)),
        "{log}"
    );
    stored_exactly_once(&org, &c, &want);
    // A third run reads nothing.
    let o = once(false);
    assert!(o.status.success());
    assert!(
        stderr(&o).contains("agent stopped read=0 "),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_wrong_secret_stops_the_agent_with_a_clear_error_that_does_not_show_it() {
    let (org, c, weed, b) = setup();
    put(&b, &key("0100", "a"), &generated(5, 63));
    let wrong = org.path("wrong-secret");
    std::fs::write(&wrong, "wrong-secret-do-not-print-77\n").unwrap();
    let cfg = agent_config(&org, &c, &weed, &wrong, "");
    let mut agent = orgtrail()
        .args(["agent", "--config", &p(&cfg)])
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = Lines::drain(agent.stderr.take().unwrap());
    let status = wait_exit(&mut agent, Duration::from_secs(30), &err);
    assert!(!status.success());
    // The stderr reader thread may still be collecting the last lines.
    err.wait_for(&["refused the credentials"], WITHIN);
    let text = err.text();
    assert!(
        text.contains(&format!(
            "s3://{BUCKET} at {} refused the credentials (SignatureDoesNotMatch)",
            weed.endpoint()
        )),
        "{text}"
    );
    assert!(text.contains("secret_access_key_file"), "{text}");
    assert!(!text.contains("wrong-secret-do-not-print-77"), "{text}");
    assert!(!text.contains(SECRET_KEY), "{text}");
}

#[test]
fn a_bucket_that_goes_away_and_comes_back_loses_nothing() {
    let (org, c, mut weed, b) = setup();
    let evs = generated(200, 64);
    let want: HashSet<String> = evs.iter().map(|l| id(l)).collect();
    for (i, chunk) in evs[..120].chunks(40).enumerate() {
        put(&b, &key(&format!("01{i}0"), "before"), chunk);
    }
    let secret = weed.secret_access_key_file();
    let cfg = agent_config(&org, &c, &weed, &secret, "poll_ms = \"100ms\"\n");
    let (mut agent, ops, log) = agent_with_ops(&cfg);
    wait_until(WITHIN, "the first files read", || {
        objects(&ops, "shipped") == 3.0
    });

    // The server dies: listings fail, counted; the agent stays up and marks nothing.
    weed.kill();
    let errors = |ops: &str| {
        prom::scrape(ops)
            .get(
                "orgtrail_agent_s3_errors_total",
                &[("source", SOURCE), ("kind", "transient")],
            )
            .unwrap_or(0.0)
    };
    wait_until(WITHIN, "a failed listing counted", || errors(&ops) >= 1.0);
    assert!(agent.try_wait().unwrap().is_none(), "{}", log.text());

    // Back on the same ports with its data, and two more files: all of them read once.
    weed.restart();
    let b = Blocking::owned(&weed.options(BUCKET)).unwrap();
    for (i, chunk) in evs[120..].chunks(40).enumerate() {
        put(&b, &key(&format!("00{i}0"), "after"), chunk);
    }
    wait_until(WITHIN, "the files put after the restart read", || {
        objects(&ops, "shipped") == 5.0
    });
    wait_until(WITHIN, "every event acknowledged", || {
        acknowledged(&ops) == want.len() as f64
    });
    let _ = agent.kill();
    let _ = agent.wait();
    stored_exactly_once(&org, &c, &want);
}

#[test]
fn fifty_files_survive_three_kill_9s_at_different_points_exactly_once() {
    let (org, c, weed, b) = setup();
    let evs = generated(3_000, 65);
    let want: HashSet<String> = evs.iter().map(|l| id(l)).collect();
    for (i, chunk) in evs.chunks(60).enumerate() {
        // Stamps spread over the day, put in a shuffled order.
        let n = (i * 37) % 50;
        put(
            &b,
            &key(
                &format!("{:02}{:02}", n / 3, (n % 3) * 20),
                &format!("k{i:02}"),
            ),
            chunk,
        );
    }
    let secret = weed.secret_access_key_file();
    let cfg = agent_config(
        &org,
        &c,
        &weed,
        &secret,
        "poll_ms = \"100ms\"\nmax_keys = 7\n",
    );
    let base = std::fs::read_to_string(&cfg).unwrap();
    // Killed (SIGKILL) once it has spooled at least 100, 400 and 700 events in that run (or
    // finished a pass, when less was left).
    for at in [100.0, 400.0, 700.0] {
        std::fs::write(&cfg, &base).unwrap();
        let (mut agent, ops, _log) = agent_with_ops(&cfg);
        wait_until(WITHIN, "events spooled", || {
            prom::scrape(&ops)
                .get(
                    "orgtrail_agent_events_total",
                    &[("source", SOURCE), ("stage", "spooled")],
                )
                .unwrap_or(0.0)
                >= at
                || gauge(&ops, "orgtrail_agent_s3_last_pass_timestamp_seconds") > 0.0
        });
        agent.kill().unwrap();
        agent.wait().unwrap();
    }
    std::fs::write(&cfg, &base).unwrap();
    let o = agent_drained(&cfg, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    stored_exactly_once(&org, &c, &want);
}
