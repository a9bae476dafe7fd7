//! `orgtrail config check FILE`: collector and agent configurations checked without starting
//! anything, every problem reported at once with its place, `${VAR}` interpolation from the
//! environment (set, unset, default, `$${` escape), typed account ids.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/org.rs"]
mod org;

use std::process::Output;

use common::{orgtrail, stderr, stdout};
use org::{Org, p};

fn check(file: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = orgtrail();
    c.args(["config", "check", &p(file)]).args(extra);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn org_with_agent() -> Org {
    let org = Org::new();
    org.issue("agent-a", "agent", Some("111122223333"));
    org
}

#[test]
fn good_configurations_pass_with_one_line_and_start_nothing() {
    let org = org_with_agent();
    let c = org.collector_config(0, "");
    let out = check(&c, &[], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("a valid collector configuration"), "{text}");
    assert!(text.contains("listen 127.0.0.1:0"), "{text}");
    // Nothing started: no data directory was created.
    assert!(!org.path("data").exists());

    let src = org.path("events.jsonl");
    std::fs::write(&src, "").unwrap();
    let a = org.agent_config("agent", "111122223333", "agent-a", &src, 1);
    let out = check(&a, &[], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains("a valid agent configuration (account 111122223333"),
        "{text}"
    );
    assert!(!org.path("spool-agent").exists(), "no spool created");

    // The kind can be named; the wrong kind is refused.
    assert!(check(&a, &["--kind", "agent"], &[]).status.success());
    let out = check(&a, &["--kind", "collector"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("invalid collector configuration"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let org = Org::new();
    let bad = org.path("bad-collector.toml");
    std::fs::write(
        &bad,
        "data_dir = \"data\"\nkeys_dir = \"nokeys\"\n[tls]\ncert = \"missing.pem\"\nkey = \"missing.key\"\nclient_ca = \"ca/ca.pem\"\n[organization]\nid = \"o\"\n[limits]\nmax_in_flight = 0\nmax_batch_events = 0\n",
    )
    .unwrap();
    let out = check(&bad, &[], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for want in [
        "tls.cert:",
        "missing.pem does not exist",
        "tls.key:",
        "keys_dir:",
        "has no keyring.json",
        "organization: list `accounts`",
        "limits.max_in_flight = 0 is out of range",
        "limits.max_batch_events = 0 is out of range",
    ] {
        assert!(err.contains(want), "{want:?} in:\n{err}");
    }
    assert!(stdout(&out).is_empty());

    let bad = org.path("bad-agent.toml");
    std::fs::write(
        &bad,
        "collector = \"http://collector:4317\"\nspool_dir = \"spool\"\n[tls]\ncert = \"a.pem\"\nkey = \"a.key\"\nca = \"ca/ca.pem\"\n[batch]\nmax_events = 0\n",
    )
    .unwrap();
    let out = check(&bad, &[], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for want in [
        "invalid agent configuration",
        "no source",
        "must be an https:// URL",
        "batch.max_events",
    ] {
        assert!(err.contains(want), "{want:?} in:\n{err}");
    }
}

#[test]
fn every_wrong_value_is_reported_at_once_each_with_its_line() {
    // Values of the wrong type, an unknown key, and a wrong account id in one file: a user
    // fixing a templated configuration learns every one in one run, not one per run.
    let org = Org::new();
    let bad = org.path("typed-collector.toml");
    std::fs::write(
        &bad,
        "listen = \"nowhere\"\ndata_dir = \"data\"\nkeys_dir = \"keys\"\ncolour = \"blue\"\n[tls]\ncert = \"c.pem\"\nkey = \"c.key\"\nclient_ca = \"ca.pem\"\n[organization]\nid = \"o\"\naccounts = [\"12345\"]\n[limits]\nmax_in_flight = \"many\"\nmax_event_bytes = \"huge\"\n",
    )
    .unwrap();
    let out = check(&bad, &[], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for want in [
        "line 1",
        "invalid socket address",
        "line 4",
        "unknown field `colour`",
        "line 11",
        "\"12345\" is not an AWS account id",
        "line 13",
        "line 14",
    ] {
        assert!(err.contains(want), "{want:?} in:\n{err}");
    }
    // In the order of their lines.
    let at = |s: &str| err.find(s).unwrap();
    assert!(
        at("line 1,") < at("line 4,") && at("line 4,") < at("line 11,"),
        "{err}"
    );
    assert!(
        at("line 11,") < at("line 13,") && at("line 13,") < at("line 14,"),
        "{err}"
    );
}

#[test]
fn a_typo_in_an_account_id_is_refused_with_its_line() {
    let org = org_with_agent();
    let c = org.collector_config(0, "");
    let text = std::fs::read_to_string(&c)
        .unwrap()
        .replace("allow_any_account = true", "accounts = [\"11112222333\"]");
    std::fs::write(&c, text).unwrap();
    let out = check(&c, &[], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("line 10"), "{err}");
    assert!(
        err.contains("\"11112222333\" is not an AWS account id"),
        "{err}"
    );

    let src = org.path("events.jsonl");
    std::fs::write(&src, "").unwrap();
    let a = org.agent_config("agent", "1111222233334", "agent-a", &src, 1);
    let out = check(&a, &[], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("line 1"), "{err}");
    assert!(
        err.contains("\"1111222233334\" is not an AWS account id"),
        "{err}"
    );
}

#[test]
fn values_come_from_the_environment_with_defaults_and_an_escape() {
    let org = org_with_agent();
    let c = org.collector_config(0, "");
    let text = std::fs::read_to_string(&c)
        .unwrap()
        .replace("data_dir = \"data\"", "data_dir = \"${OT_DATA}-$${HOME}\"")
        .replace("keys_dir = \"keys\"", "keys_dir = \"${OT_KEYS:-keys}\"")
        .replace(
            "listen = \"127.0.0.1:0\"",
            "listen = \"127.0.0.1:${OT_PORT:-0}\"",
        );
    std::fs::write(&c, text).unwrap();

    // Set: used; unset with a default: the default; `$${` stays a literal `${`.
    let out = check(&c, &[], &[("OT_DATA", "store")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let line = stdout(&out);
    assert!(line.contains("store-${HOME}"), "{line}");
    assert!(line.contains("listen 127.0.0.1:0"), "{line}");
    let out = check(&c, &[], &[("OT_DATA", "store"), ("OT_PORT", "4318")]);
    assert!(
        stdout(&out).contains("listen 127.0.0.1:4318"),
        "{}",
        stdout(&out)
    );
    // A set value replaces the default: a keys directory that does not exist is a problem.
    let out = check(&c, &[], &[("OT_DATA", "store"), ("OT_KEYS", "elsewhere")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("elsewhere has no keyring.json"),
        "{}",
        stderr(&out)
    );

    // Unset without a default: refused, naming the variable and its line.
    let out = orgtrail()
        .args(["config", "check", &p(&c)])
        .env_remove("OT_DATA")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("line 2: the environment variable OT_DATA is not set"),
        "{err}"
    );

    // The collector itself reads the same way: unset, it refuses to start.
    let out = orgtrail()
        .args(["collector", "--config", &p(&c)])
        .env_remove("OT_DATA")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("OT_DATA is not set"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn durations_and_sizes_read_in_human_form_or_as_plain_numbers() {
    let org = org_with_agent();
    let src = org.path("events.jsonl");
    std::fs::write(&src, "").unwrap();
    let a = org.agent_config("agent", "111122223333", "agent-a", &src, 1);
    let base = std::fs::read_to_string(&a).unwrap();
    // Human forms, and the plain numbers of before (milliseconds, bytes) beside them.
    let human = format!(
        "spool_max_bytes = \"64MiB\"\nspool_min_free_bytes = 8388608\n{}",
        base.replace(
            "[retry]\ninitial_ms = 20\nmax_ms = 200\n",
            "[retry]\ninitial_ms = \"250ms\"\nmax_ms = \"1m 30s\"\n[batch]\nmax_bytes = \"1 MiB\"\nlinger_ms = 50\n[connection]\nack_timeout_ms = \"2m\"\n",
        )
    );
    assert!(human.contains("250ms"));
    std::fs::write(&a, &human).unwrap();
    let out = check(&a, &[], &[]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Out of range in human form is still out of range, in the unit of the name.
    std::fs::write(&a, human.replace("\"64MiB\"", "\"512KiB\"")).unwrap();
    let out = check(&a, &[], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("spool_max_bytes"), "{}", stderr(&out));

    // Nonsense is refused with its line and a hint naming both forms.
    std::fs::write(&a, human.replace("\"250ms\"", "\"5 parsecs\"")).unwrap();
    let out = check(&a, &[], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let line = human.lines().position(|l| l.contains("250ms")).unwrap() + 1;
    assert!(err.contains(&format!("line {line}")), "{err}");
    assert!(
        err.contains("is not a duration") && err.contains("or a number of milliseconds"),
        "{err}"
    );

    let c = org.collector_config(
        0,
        "[limits]\nmax_message_bytes = \"32MiB\"\nmax_event_bytes = \"lots\"\n",
    );
    let out = check(&c, &[], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("is not a size") && err.contains("or a number of bytes"),
        "{err}"
    );
    let c = org.collector_config(
        0,
        "[limits]\nmax_message_bytes = \"32MiB\"\nmax_event_bytes = 262144\n",
    );
    assert!(check(&c, &[], &[]).status.success());
}
