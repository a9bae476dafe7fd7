//! `docs/configuration.md` against the configuration structs, through the real binary:
//! every key it documents is accepted by `orgtrail config check` with the value it shows, and
//! every key a table of the collector's or the agent's configuration accepts is documented
//! there (the tables' fields are read from serde's own "expected one of ..." message for an
//! unknown key, so a field added to a struct without a line in the reference fails here).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/org.rs"]
mod org;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{run, stderr, stdout};
use org::{Org, p};

/// A documented key, and the value to try it with (from its default column; none for
/// tables and required keys the base configuration already gives).
#[derive(Debug, Clone)]
struct Key {
    key: String,
    value: Option<String>,
}

/// The rows of the reference's tables, for the section `## {title}`.
fn documented(doc: &str, title: &str) -> Vec<Key> {
    let start = doc
        .find(&format!("\n## {title}"))
        .unwrap_or_else(|| panic!("docs/configuration.md has a section {title:?}"));
    let rest = &doc[start + 4..];
    let end = rest.find("\n## ").unwrap_or(rest.len());
    let mut keys = Vec::new();
    for line in rest[..end].lines() {
        let Some(row) = line.strip_prefix("| `") else {
            continue;
        };
        let cells: Vec<&str> = line.split(" | ").collect();
        assert!(cells.len() >= 4, "a row of four cells: {line}");
        let key = row.split('`').next().unwrap().to_string();
        let (ty, default) = (cells[1], cells[2]);
        if ty.contains("table") && !default.contains("e.g. ") {
            // A table: its keys have rows of their own.
            keys.push(Key { key, value: None });
            continue;
        }
        // The value after "e.g.", else the default's literal, else none.
        let from = default.find("e.g. ").map_or(default, |i| &default[i..]);
        let value = from
            .split('`')
            .nth(1)
            .filter(|v| !v.is_empty())
            .map(str::to_string);
        keys.push(Key { key, value });
    }
    assert!(!keys.is_empty(), "{title} documents keys");
    keys
}

/// The table a key belongs to: "" (top level), "tls", "sources[jsonl]", "selectors.basic[]".
fn table_of(key: &str) -> (&str, &str) {
    for arr in [
        "sources[",
        "selectors.basic[]",
        "alerts.file[]",
        "alerts.webhook[]",
        "alerts.nats[]",
    ] {
        if key.starts_with(arr)
            && let Some(i) = key.find("].")
        {
            return (&key[..=i], &key[i + 2..]);
        }
    }
    match key.rsplit_once('.') {
        Some((t, k)) => (t, k),
        None => ("", key),
    }
}

/// A configuration file from (key, TOML value) pairs written as the reference names them.
fn render(entries: &[(String, String)]) -> String {
    let mut top = String::new();
    let mut tables: Vec<(String, String)> = Vec::new();
    let mut arrays: Vec<(String, String)> = Vec::new();
    for (key, value) in entries {
        let (table, k) = table_of(key);
        let line = format!("{k} = {value}\n");
        if table.is_empty() {
            top.push_str(&line);
        } else if let Some(ty) = table
            .strip_prefix("sources[")
            .and_then(|t| t.strip_suffix(']'))
        {
            let mut body = format!("type = \"{ty}\"\n");
            let required = match ty {
                "jsonl" => Some(("path", "\"other.jsonl\"")),
                "cloudtrail_dir" => Some(("path", "\"cloudtrail\"")),
                "s3" => Some(("bucket", "\"acme-cloudtrail\"")),
                _ => None,
            };
            if let Some((rk, rv)) = required
                && k != rk
            {
                body.push_str(&format!("{rk} = {rv}\n"));
            }
            if k != "type" {
                body.push_str(&line);
            }
            arrays.push(("sources".into(), body));
        } else if let Some(t) = table.strip_suffix("[]") {
            // The keys of one array table go in one table.
            match arrays
                .iter_mut()
                .find(|(a, body)| a == t && !body.contains(&format!("{k} = ")))
            {
                Some((_, body)) => body.push_str(&line),
                None => arrays.push((t.into(), line)),
            }
        } else {
            match tables.iter_mut().find(|(t, _)| t == table) {
                Some((_, body)) => body.push_str(&line),
                None => tables.push((table.into(), line)),
            }
        }
    }
    let mut out = top;
    for (t, body) in tables {
        out.push_str(&format!("\n[{t}]\n{body}"));
    }
    for (t, body) in arrays {
        out.push_str(&format!("\n[[{t}]]\n{body}"));
    }
    out
}

fn with(base: &[(&str, &str)], key: &str, value: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = base
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    match v.iter_mut().find(|(k, _)| k == key) {
        Some(e) => e.1 = value.to_string(),
        None => v.push((key.to_string(), value.to_string())),
    }
    v
}

const COLLECTOR_BASE: &[(&str, &str)] = &[
    ("listen", "\"127.0.0.1:0\""),
    ("data_dir", "\"data\""),
    ("keys_dir", "\"keys\""),
    ("tls.cert", "\"server.pem\""),
    ("tls.key", "\"server.key\""),
    ("tls.client_ca", "\"ca/ca.pem\""),
    ("organization.id", "\"o-example\""),
    ("organization.accounts", "[\"123456789012\"]"),
    // A sink, so that the documented rules have somewhere to send alerts.
    ("alerts.file[].name", "\"soc\""),
    ("alerts.file[].path", "\"alerts.jsonl\""),
    // A webhook sink, so that each of its keys is tried in a complete table.
    ("alerts.webhook[].name", "\"hook\""),
    (
        "alerts.webhook[].url",
        "\"https://alerts.example/orgtrail\"",
    ),
    ("alerts.webhook[].secret_file", "\"webhook.secret\""),
    // A NATS sink, so that its keys can be tried (`config check` does not connect).
    ("alerts.nats[].name", "\"bus\""),
    ("alerts.nats[].urls", "[\"nats://127.0.0.1:4222\"]"),
    ("alerts.nats[].subject", "\"orgtrail.alerts\""),
    // The archive sink, so that its keys are tried in a complete table.
    ("archive.dir", "\"archive\""),
];

const AGENT_BASE: &[(&str, &str)] = &[
    ("collector", "\"https://localhost:4317\""),
    ("spool_dir", "\"spool\""),
    ("tls.cert", "\"agent.pem\""),
    ("tls.key", "\"agent.key\""),
    ("tls.ca", "\"ca/ca.pem\""),
    ("source.type", "\"jsonl\""),
    ("source.path", "\"events.jsonl\""),
];

/// `orgtrail config check --kind KIND` of `text`: (success, stdout + stderr).
fn check(dir: &Path, kind: &str, text: &str) -> (bool, String) {
    let file = dir.join(format!("{kind}-probe.toml"));
    std::fs::write(&file, text).unwrap();
    let out = run(&["config", "check", "--kind", kind, &p(&file)], b"");
    (
        out.status.success(),
        format!("{}{}", stdout(&out), stderr(&out)),
    )
}

/// The files the reference's example values name.
fn org() -> Org {
    let org = Org::new();
    org.issue("agent", "agent", Some("123456789012"));
    let d = |n: &str| org.path(n);
    // The reference's examples name the collector's certificate as `certs issue --out
    // collector` writes it.
    std::fs::copy(d("server.pem"), d("collector.pem")).unwrap();
    std::fs::copy(d("server.key"), d("collector.key")).unwrap();
    std::fs::write(d("events.jsonl"), "").unwrap();
    std::fs::write(d("revoked.txt"), "# none yet\n").unwrap();
    std::fs::write(d("webhook.secret"), "not-a-real-secret\n").unwrap();
    // The s3 source's credential files.
    std::fs::write(d("s3.key-id"), "AKIAEXAMPLE\n").unwrap();
    std::fs::write(d("s3.secret"), "not-a-real-secret\n").unwrap();
    std::fs::write(d("s3.token"), "not-a-real-token\n").unwrap();
    std::fs::create_dir_all(d("cloudtrail")).unwrap();
    // The digest-checking sources' public keys, as `aws cloudtrail list-public-keys` prints
    // them (a key made here).
    let rsa = orgtrail_crypto::rsa::RsaKeyPair::generate().unwrap();
    std::fs::write(
        d("cloudtrail-keys.json"),
        serde_json::json!({"PublicKeyList": [{
            "Value": base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                rsa.public_spki_der().unwrap(),
            ),
            "ValidityStartTime": "2024-01-01T00:00:00Z",
            "ValidityEndTime": "2100-01-01T00:00:00Z",
            "Fingerprint": "0123456789abcdef0123456789abcdef",
        }]})
        .to_string(),
    )
    .unwrap();
    std::fs::create_dir_all(d("rules")).unwrap();
    // The NATS sink's secret files: a token, an nkey seed and a credentials file (the seed of
    // async-nats' documentation, nobody's secret).
    std::fs::write(d("nats.token"), "token\n").unwrap();
    let seed = "SUAIO3FHUX5PNV2LQIIP7TZ3N4L7TX3W53MQGEIVYFIGA635OZCKEYHFLM";
    std::fs::write(d("nats.nk"), format!("{seed}\n")).unwrap();
    std::fs::write(
        d("nats.creds"),
        format!("-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJqd3QiLCJhbGciOiJlZDI1NTE5In0.e30.sig\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"),
    )
    .unwrap();
    std::fs::write(
        d("trail-selectors.json"),
        r#"{"EventSelectors":[{"ReadWriteType":"WriteOnly","IncludeManagementEvents":true,"DataResources":[],"ExcludeManagementEventSources":[]}]}"#,
    )
    .unwrap();
    org
}

fn reference() -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::read_to_string(root.join("docs/configuration.md")).unwrap()
}

/// Every documented key, with the value the reference shows, passes `config check`.
#[test]
fn every_documented_key_is_accepted() {
    let doc = reference();
    let org = org();
    let dir = org.path("");
    for (title, kind, base) in [
        ("Collector", "collector", COLLECTOR_BASE),
        ("Agent", "agent", AGENT_BASE),
    ] {
        let base_text = render(&with(base, base[0].0, base[0].1));
        let (ok, out) = check(&dir, kind, &base_text);
        assert!(
            ok,
            "the base {kind} configuration is valid:\n{base_text}\n{out}"
        );
        let mut tried = 0;
        for k in documented(&doc, title) {
            let Some(value) = &k.value else {
                continue;
            };
            let text = render(&with(base, &k.key, value));
            let (ok, out) = check(&dir, kind, &text);
            assert!(
                ok,
                "docs/configuration.md: {title} key `{}` = {value} is refused by `config check`:\n{text}\n{out}",
                k.key
            );
            tried += 1;
        }
        assert!(tried >= 15, "{title}: {tried} keys tried");
    }
}

/// The keys a table accepts, from the error for an unknown key in it.
fn accepted(dir: &Path, kind: &str, base: &[(&str, &str)], table: &str) -> BTreeSet<String> {
    let key = if table.is_empty() {
        "zz_not_a_key".to_string()
    } else {
        format!("{table}.zz_not_a_key")
    };
    let text = render(&with(base, &key, "1"));
    let (ok, out) = check(dir, kind, &text);
    assert!(
        !ok,
        "an unknown key in [{table}] is refused:\n{text}\n{out}"
    );
    let line = out
        .lines()
        .find(|l| l.contains("unknown field `zz_not_a_key`"))
        .unwrap_or_else(|| panic!("serde names the unknown key:\n{text}\n{out}"));
    let expected = line.split("expected").nth(1).unwrap_or_default();
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// Every key each table of the configurations accepts is documented, and nothing else.
#[test]
fn every_accepted_key_is_documented() {
    let doc = reference();
    let org = org();
    let dir = org.path("");
    for (title, kind, base, tables) in [
        (
            "Collector",
            "collector",
            COLLECTOR_BASE,
            &[
                "",
                "tls",
                "organization",
                "limits",
                "storage",
                "ops",
                "rules",
                "alerts",
                "alerts.file[]",
                "alerts.webhook[]",
                "alerts.nats[]",
                "insights",
                "insights.accounts.\"123456789012\"",
                "archive",
                "archive.s3",
            ][..],
        ),
        (
            "Agent",
            "agent",
            AGENT_BASE,
            &[
                "",
                "tls",
                "batch",
                "retry",
                "connection",
                "selectors",
                "ops",
                "metrics",
                "sources[jsonl]",
                "sources[cloudtrail_dir]",
                "sources[http]",
                "sources[s3]",
                "selectors.basic[]",
            ][..],
        ),
    ] {
        let keys = documented(&doc, title);
        let doc_tables: BTreeSet<&str> = keys.iter().map(|k| table_of(&k.key).0).collect();
        for t in &doc_tables {
            assert!(
                tables.contains(t),
                "{title}: the reference documents a table [{t}] this test does not check"
            );
        }
        for table in tables {
            let want: BTreeSet<String> = keys
                .iter()
                .filter_map(|k| {
                    let (t, rest) = table_of(&k.key);
                    if table.is_empty() {
                        // Top level: its own keys, and the tables below it.
                        let first = k.key.split(['.', '[']).next().unwrap();
                        Some(first.to_string())
                    } else if t == *table && !(table.starts_with("sources[") && rest == "type") {
                        Some(rest.to_string())
                    } else {
                        None
                    }
                })
                .collect();
            let got = accepted(&dir, kind, base, table);
            assert_eq!(
                want, got,
                "{title} [{table}]: documented in docs/configuration.md (left) and accepted by the configuration (right) differ"
            );
        }
    }
}

/// The example configurations hold only documented keys.
#[test]
fn the_examples_use_documented_keys() {
    let doc = reference();
    for (title, kind) in [("Collector", "collector"), ("Agent", "agent")] {
        let keys: BTreeSet<String> = documented(&doc, title).into_iter().map(|k| k.key).collect();
        let out = run(&["config", "example", kind], b"");
        assert!(out.status.success());
        let mut table = String::new();
        let mut source_type = String::new();
        for line in stdout(&out).lines() {
            // Commented-out keys count too: `# key = value`.
            let l = line.trim_start_matches('#').trim();
            if let Some(t) = l.strip_prefix("[[").and_then(|t| t.strip_suffix("]]")) {
                table = format!("{t}[]");
                continue;
            }
            if let Some(t) = l.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
                table = t.to_string();
                continue;
            }
            let Some((k, v)) = l.split_once(" = ") else {
                continue;
            };
            let k = k.trim();
            if k.is_empty() || !k.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                continue;
            }
            let key = if table == "sources[]" {
                if k == "type" {
                    source_type = v.split('"').nth(1).unwrap_or_default().to_string();
                }
                format!("sources[{source_type}].{k}")
            } else if table.is_empty() {
                k.to_string()
            } else {
                format!("{table}.{k}")
            };
            assert!(
                keys.contains(&key),
                "`orgtrail config example {kind}` holds `{key}`, which docs/configuration.md does not document"
            );
        }
    }
}
