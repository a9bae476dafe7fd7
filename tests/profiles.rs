//! Profiles and their precedence: `orgtrail profile add|list`, and every command that asks a
//! collector taking its settings from the flags, else the environment, else the profile file,
//! against a real collector over real mutual TLS. Each test has a home of its own (HOME,
//! XDG_CONFIG_HOME), so the user's profiles are never read or written.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/org.rs"]
mod org;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{orgtrail, stderr, stdout};
use org::{Org, events, p};

/// A home directory of its own; the profile file is found through XDG_CONFIG_HOME.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        Home {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join(".config/orgtrail/config.toml")
    }

    fn cmd(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = orgtrail();
        cmd.env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join(".config"))
            .env_remove("ORGTRAIL_CONFIG")
            .args(args)
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.cmd(args, env).output().unwrap()
    }
}

/// The accounts of a `--output jsonl` lookup's events (the lookup must succeed).
fn accounts(o: &Output) -> BTreeSet<String> {
    assert!(o.status.success(), "{}", stderr(o));
    stdout(o)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["recipientAccountId"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Refused with exit status 2 and an error containing every part of `parts`.
fn refused(o: &Output, parts: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "{err}\n{}", stdout(o));
    for part in parts {
        assert!(err.contains(part), "{part:?} missing from: {err}");
    }
    // Refused before any connection was tried.
    assert!(!err.contains("cannot connect"), "{err}");
}

const ALL: &[&str] = &["lookup", "--max", "5000", "--output", "jsonl"];

#[test]
fn a_profile_answers_without_tls_flags_and_env_and_flags_override_it() {
    let org = Org::new();
    let c = org.collector(0, "");
    let (a, fa, _) = events(&org, "a", 200, 31);
    let (b, fb, _) = events(&org, "b", 100, 32);
    org.ship(&c, "agent-a", &a, &fa);
    org.ship(&c, "agent-b", &b, &fb);
    org.issue("auditor", "auditor", None);
    org.issue("auditor-a", "auditor", Some(&a));
    let home = Home::new();
    // The server certificate names localhost: no --server-name needed.
    let url = format!("https://localhost:{}", c.port);
    let both: BTreeSet<String> = [a.clone(), b.clone()].into();
    let only_a: BTreeSet<String> = [a.clone()].into();

    // `profile add` with paths relative to where it runs: stored absolute, file private.
    let add = |name: &str, cert: &str, extra: &[&str]| {
        let (pem, key) = (format!("{cert}.pem"), format!("{cert}.key"));
        let mut args = vec![
            "profile",
            "add",
            name,
            "--collector",
            &url,
            "--ca",
            "ca/ca.pem",
            "--cert",
            &pem,
            "--key",
            &key,
        ];
        args.extend_from_slice(extra);
        let o = home
            .cmd(&args, &[])
            .current_dir(org.path("ca").parent().unwrap())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    assert!(add("all", "auditor", &[]).contains("it is the default"));
    assert!(add("only-a", "auditor-a", &[]).contains("--profile only-a"));
    let text = std::fs::read_to_string(home.config()).unwrap();
    assert!(text.contains("default = \"all\""), "{text}");
    assert!(text.contains(&p(&org.path("auditor-a.pem"))), "{text}");
    assert!(text.contains(&p(&org.path("ca/ca.pem"))), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(home.config())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the profile file is its owner's only");
    }

    // `profile list`: name, collector, the certificate's identity, the default marked.
    let list = stdout(&home.run(&["profile", "list"], &[]));
    let row = |name: &str| {
        list.lines()
            .find(|l| l.split_whitespace().any(|w| w == name))
            .unwrap_or_else(|| panic!("no {name} in:\n{list}"))
            .to_string()
    };
    assert!(row("all").starts_with('*'), "{list}");
    assert!(row("all").contains(&url), "{list}");
    assert!(row("all").contains("auditor certificate auditor"), "{list}");
    assert!(!row("only-a").starts_with('*'), "{list}");
    assert!(
        row("only-a").contains(&format!("for account {a}")),
        "{list}"
    );

    // The default profile: `lookup --event-name X` just works.
    let first_b: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&fb)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let name = first_b["eventName"].as_str().unwrap();
    let o = home.run(
        &[
            "lookup",
            "--event-name",
            name,
            "--output",
            "jsonl",
            "--max",
            "5000",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let found = stdout(&o);
    assert!(found.lines().count() >= 1, "{found}");
    for l in found.lines() {
        assert!(l.contains(&format!("\"eventName\":\"{name}\"")), "{l}");
    }
    assert_eq!(accounts(&home.run(ALL, &[])), both);

    // ORGTRAIL_PROFILE selects another profile; --profile beats it.
    let env_a = [("ORGTRAIL_PROFILE", "only-a")];
    assert_eq!(accounts(&home.run(ALL, &env_a)), only_a);
    let flag_all = [ALL, &["--profile", "all"]].concat();
    assert_eq!(accounts(&home.run(&flag_all, &env_a)), both);

    // ORGTRAIL_CERT and ORGTRAIL_KEY override the profile's; --cert and --key override them.
    let (cert_a, key_a) = (p(&org.path("auditor-a.pem")), p(&org.path("auditor-a.key")));
    let env_cert = [
        ("ORGTRAIL_CERT", cert_a.as_str()),
        ("ORGTRAIL_KEY", key_a.as_str()),
    ];
    assert_eq!(accounts(&home.run(ALL, &env_cert)), only_a);
    let (cert, key) = (p(&org.path("auditor.pem")), p(&org.path("auditor.key")));
    let flags = [ALL, &["--cert", &cert, "--key", &key]].concat();
    assert_eq!(accounts(&home.run(&flags, &env_cert)), both);

    // ORGTRAIL_COLLECTOR overrides the profile's collector (a plaintext URL is refused, not
    // tried); --collector overrides it.
    let plain = format!("http://127.0.0.1:{}", c.port);
    let env_plain = [("ORGTRAIL_COLLECTOR", plain.as_str())];
    refused(
        &home.run(ALL, &env_plain),
        &[&plain, "TLS only", "https://"],
    );
    let flags = [ALL, &["--collector", &url]].concat();
    assert_eq!(accounts(&home.run(&flags, &env_plain)), both);

    // ORGTRAIL_CA naming a file that is not there: refused, naming the file and the variable.
    let missing = p(&org.path("nope/ca.pem"));
    refused(
        &home.run(ALL, &[("ORGTRAIL_CA", missing.as_str())]),
        &[&format!(
            "the CA certificate {missing} (from ORGTRAIL_CA) does not exist"
        )],
    );

    // stats and a follow use the profile too.
    let o = home.run(&["stats", "--by", "account"], &env_a);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&a) && !stdout(&o).contains(&b),
        "{}",
        stdout(&o)
    );
    let mut follower = home
        .cmd(&["lookup", "--follow", "--output", "jsonl"], &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(follower.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(
        line.contains(&format!("following events as {url}")),
        "{line}"
    );
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn a_missing_profile_or_file_is_refused_and_nothing_falls_back() {
    let home = Home::new();
    let question = ["lookup", "--event-name", "StartInstances"];

    // Nothing configured: say how to set a profile up, and where it would be kept.
    let o = home.run(&question, &[]);
    refused(
        &o,
        &[
            "no collector to ask and no store to open",
            "--collector URL --ca F --cert F --key F",
            "--data-dir DIR --keys DIR",
            "orgtrail profile add NAME",
            &p(&home.config()),
        ],
    );
    // A profile named that does not exist.
    refused(
        &home.run(&question, &[("ORGTRAIL_PROFILE", "prod")]),
        &[
            "no profile \"prod\" (named by ORGTRAIL_PROFILE)",
            "does not exist",
        ],
    );

    // A file with a good default and a profile whose certificate is missing (relative paths
    // are read from the file's directory).
    let org = Org::new();
    org.issue("auditor", "auditor", None);
    let dir = home.config().parent().unwrap().to_path_buf();
    write(
        &home.config(),
        &format!(
            "default = \"good\"\n\n[profiles.good]\ncollector = \"https://localhost:1\"\nca = \"{ca}\"\ncert = \"{cert}\"\nkey = \"{key}\"\n\n[profiles.broken]\ncollector = \"https://localhost:1\"\nca = \"{ca}\"\ncert = \"certs/missing.pem\"\nkey = \"{key}\"\n",
            ca = p(&org.path("ca/ca.pem")),
            cert = p(&org.path("auditor.pem")),
            key = p(&org.path("auditor.key")),
        ),
    );
    let missing = p(&dir.join("certs/missing.pem"));
    refused(
        &home.run(&question, &[("ORGTRAIL_PROFILE", "broken")]),
        &[&format!(
            "the certificate {missing} (from profile \"broken\" in {}) does not exist",
            p(&home.config())
        )],
    );
    refused(
        &home.run(&[&question[..], &["--profile", "typo"]].concat(), &[]),
        &[
            "no profile \"typo\" (named by --profile)",
            "its profiles are broken, good",
        ],
    );
    // A default that names no profile; an unknown key, with its line.
    let text = std::fs::read_to_string(home.config()).unwrap();
    write(
        &home.config(),
        &text.replace("default = \"good\"", "default = \"gone\""),
    );
    refused(
        &home.run(&question, &[]),
        &["no profile \"gone\" (named by `default` in"],
    );
    write(
        &home.config(),
        &text.replace("cert = \"certs/", "certificate = \"certs/"),
    );
    refused(
        &home.run(&question, &[]),
        &["unknown field `certificate`", "line 12"],
    );

    // Flags that say everything need no profile file, however broken it is: the command
    // gets as far as connecting (nothing listens on port 1).
    let (ca, cert, key) = (
        p(&org.path("ca/ca.pem")),
        p(&org.path("auditor.pem")),
        p(&org.path("auditor.key")),
    );
    let full = [
        &question[..],
        &[
            "--collector",
            "https://localhost:1",
            "--ca",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
        ],
    ]
    .concat();
    let o = home.run(&full, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("cannot connect to the collector at https://localhost:1"),
        "{}",
        stderr(&o)
    );

    // `profile add` checks the certificate first and refuses plaintext; the file is unchanged.
    std::fs::remove_file(home.config()).unwrap();
    let ca = p(&org.path("ca/ca.pem"));
    let key = p(&org.path("auditor.key"));
    let add = |collector: &str, cert: &str| {
        home.run(
            &[
                "profile",
                "add",
                "x",
                "--collector",
                collector,
                "--ca",
                &ca,
                "--cert",
                cert,
                "--key",
                &key,
            ],
            &[],
        )
    };
    let nope = p(&org.path("nope.pem"));
    let o = add("https://localhost:1", &nope);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&nope) && stderr(&o).contains("cannot read it"),
        "{}",
        stderr(&o)
    );
    let o = add("http://localhost:1", &p(&org.path("auditor.pem")));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("TLS only"), "{}", stderr(&o));
    assert!(!home.config().exists());
}

#[test]
fn the_demo_writes_a_demo_profile_beside_the_others() {
    let demo_dir = tempfile::tempdir().unwrap();
    let d = demo_dir.path().join("demo");
    let demo = |home: &Home| {
        let o = home.run(&["demo", "--dir", &p(&d), "--events", "200"], &[]);
        assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
        stdout(&o)
    };

    // A user with a default profile of their own: kept, and still the default.
    let home = Home::new();
    write(
        &home.config(),
        "default = \"work\"\n\n[profiles.work]\ncollector = \"https://collector.example:4317\"\n",
    );
    let out = demo(&home);
    assert!(out.contains("--profile demo"), "{out}");
    let list = stdout(&home.run(&["profile", "list"], &[]));
    let demo_row = list
        .lines()
        .find(|l| l.split_whitespace().any(|w| w == "demo"))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(demo_row.contains("https://127.0.0.1:4317"), "{list}");
    assert!(demo_row.contains("auditor certificate auditor"), "{list}");
    assert!(!demo_row.starts_with('*'), "{list}");
    assert!(
        list.lines()
            .any(|l| l.starts_with('*') && l.contains("work")),
        "{list}"
    );
    let text = std::fs::read_to_string(home.config()).unwrap();
    assert!(text.contains(&p(&d.join("auditor.pem"))), "{text}");

    // A user without profiles: `demo` becomes the default, and lookups need no flag.
    let fresh = Home::new();
    let out = demo(&fresh);
    assert!(out.contains("it is the default"), "{out}");
    assert!(out.contains("\n  orgtrail lookup --event-name"), "{out}");
    let text = std::fs::read_to_string(fresh.config()).unwrap();
    assert!(text.contains("default = \"demo\""), "{text}");
}
