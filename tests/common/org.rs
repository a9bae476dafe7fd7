//! An organization in a temporary directory: CA, certificates, keys, a collector process
//! and agent configurations, for the end-to-end tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::{self, orgtrail, run, stdout};

pub(crate) struct Org {
    dir: tempfile::TempDir,
}

pub(crate) struct Collector {
    pub(crate) child: Child,
    pub(crate) port: u16,
    pub(crate) log: Option<std::io::Lines<BufReader<std::process::ChildStderr>>>,
    /// The ops listener's address (host:port), when `extra` configured `[ops]`.
    pub(crate) ops: Option<String>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn p(path: &Path) -> String {
    path.to_str().unwrap().to_string()
}

impl Org {
    pub(crate) fn new() -> Org {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(
            run(&["certs", "init", "--out", &p(&d.join("ca"))], b"")
                .status
                .success()
        );
        assert!(
            run(
                &[
                    "certs",
                    "issue",
                    "--ca",
                    &p(&d.join("ca")),
                    "--role",
                    "server",
                    "--dns",
                    "localhost",
                    "--ip",
                    "127.0.0.1",
                    "--out",
                    &p(&d.join("server"))
                ],
                b""
            )
            .status
            .success()
        );
        assert!(
            run(&["keys", "init", "--out", &p(&d.join("keys"))], b"")
                .status
                .success()
        );
        Org { dir }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn issue(&self, name: &str, role: &str, account: Option<&str>) {
        let mut args = vec![
            "certs".to_string(),
            "issue".into(),
            "--ca".into(),
            p(&self.path("ca")),
            "--role".into(),
            role.into(),
            "--out".into(),
            p(&self.path(name)),
        ];
        if let Some(a) = account {
            args.push("--account".into());
            args.push(a.into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert!(run(&args, b"").status.success());
    }

    /// Starts the collector on `port` (0: any free port) and waits until it listens.
    pub(crate) fn collector(&self, port: u16, extra: &str) -> Collector {
        self.collector_with_log(port, extra, false)
    }

    /// Writes collector.toml: listening on `port`, `extra` appended to `[organization]`.
    pub(crate) fn collector_config(&self, port: u16, extra: &str) -> PathBuf {
        let cfg = self.path("collector.toml");
        std::fs::write(&cfg, format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"data\"\nkeys_dir = \"keys\"\n[tls]\ncert = \"server.pem\"\nkey = \"server.key\"\nclient_ca = \"ca/ca.pem\"\n[organization]\nid = \"o-example\"\nallow_any_account = true\n{extra}"
        )).unwrap();
        cfg
    }

    pub(crate) fn collector_with_log(&self, port: u16, extra: &str, log: bool) -> Collector {
        self.collector_with(port, extra, log, |_| {})
    }

    /// [`Org::collector_with_log`], with `configure` changing the command last (environment:
    /// the log format or level).
    pub(crate) fn collector_with(
        &self,
        port: u16,
        extra: &str,
        log: bool,
        configure: impl FnOnce(&mut Command),
    ) -> Collector {
        let cfg = self.collector_config(port, extra);
        let mut cmd = orgtrail();
        cmd.args(["collector", "--config", &p(&cfg)])
            .env(
                "ORGTRAIL_LOG",
                if log {
                    "orgtrail_collector=debug,orgtrail_store=info"
                } else {
                    "info"
                },
            )
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            // Without a log reader, standard error goes to a file, shown if the start fails.
            .stderr(if log {
                Stdio::piped()
            } else {
                Stdio::from(std::fs::File::create(self.path("collector.stderr")).unwrap())
            });
        configure(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let log = child.stderr.take().map(|e| BufReader::new(e).lines());
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
        let port = match line.trim().rsplit(':').next().map(str::parse) {
            Some(Ok(port)) => port,
            _ => panic!(
                "the collector did not print its address (exit: {:?}); its standard error:\n{}",
                child.wait().ok(),
                std::fs::read_to_string(self.path("collector.stderr")).unwrap_or_default()
            ),
        };
        // With `[ops]`, the collector prints the ops listener's address on the next line.
        let ops = extra.contains("[ops]").then(|| {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            line.trim()
                .strip_prefix("orgtrail collector: ops listening on ")
                .unwrap_or_else(|| panic!("the collector prints its ops address: {line:?}"))
                .to_string()
        });
        Collector {
            child,
            port,
            log,
            ops,
        }
    }

    pub(crate) fn agent_config(
        &self,
        name: &str,
        account: &str,
        cert: &str,
        source: &Path,
        port: u16,
    ) -> PathBuf {
        let cfg = self.path(&format!("{name}.toml"));
        std::fs::write(&cfg, format!(
            "account = \"{account}\"\ncollector = \"https://127.0.0.1:{port}\"\nserver_name = \"localhost\"\nspool_dir = \"spool-{name}\"\n[tls]\ncert = \"{cert}.pem\"\nkey = \"{cert}.key\"\nca = \"ca/ca.pem\"\n[retry]\ninitial_ms = 20\nmax_ms = 200\n[source]\ntype = \"jsonl\"\npath = \"{}\"\n",
            p(source)
        )).unwrap();
        cfg
    }

    /// An agent configuration with the given source tables (TOML).
    pub(crate) fn agent_config_with(
        &self,
        name: &str,
        account: &str,
        port: u16,
        sources: &str,
    ) -> PathBuf {
        let cfg = self.path(&format!("{name}.toml"));
        std::fs::write(&cfg, format!(
            "account = \"{account}\"\ncollector = \"https://127.0.0.1:{port}\"\nserver_name = \"localhost\"\nspool_dir = \"spool-{name}\"\n[tls]\ncert = \"{name}.pem\"\nkey = \"{name}.key\"\nca = \"ca/ca.pem\"\n[retry]\ninitial_ms = 20\nmax_ms = 200\n[batch]\nlinger_ms = 20\n{sources}\n"
        )).unwrap();
        cfg
    }

    /// Ships a file of events with an agent for `account` (certificate `name`, issued when
    /// missing) and waits until all is acknowledged.
    pub(crate) fn ship(&self, c: &Collector, name: &str, account: &str, file: &Path) {
        if !self.path(&format!("{name}.pem")).exists() {
            self.issue(name, "agent", Some(account));
        }
        let cfg = self.agent_config(name, account, name, file, c.port);
        let out = orgtrail()
            .args(["agent", "--config", &p(&cfg), "--exit-when-drained"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", common::stderr(&out));
    }

    /// The flags of a remote lookup with the certificate `cert` (auditor or admin).
    /// Every event the collector stored, as JSON lines (`orgtrail lookup` as `cert`).
    pub(crate) fn stored_lines(&self, c: &Collector, cert: &str) -> Vec<String> {
        let mut args = vec!["lookup".to_string()];
        args.extend(self.reader_args(c, cert));
        args.extend(["--max", "100000", "--output", "jsonl"].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run(&args, b"");
        assert!(o.status.success(), "{}", common::stderr(&o));
        stdout(&o).lines().map(String::from).collect()
    }

    pub(crate) fn reader_args(&self, c: &Collector, cert: &str) -> Vec<String> {
        vec![
            "--collector".into(),
            format!("https://127.0.0.1:{}", c.port),
            "--server-name".into(),
            "localhost".into(),
            "--ca".into(),
            p(&self.path("ca/ca.pem")),
            "--cert".into(),
            p(&self.path(&format!("{cert}.pem"))),
            "--key".into(),
            p(&self.path(&format!("{cert}.key"))),
        ]
    }

    pub(crate) fn stored(&self) -> Vec<String> {
        let out = run(
            &[
                "lookup",
                "--data-dir",
                &p(&self.path("data")),
                "--keys",
                &p(&self.path("keys")),
                "--max",
                "10000000",
                "--output",
                "jsonl",
            ],
            b"",
        );
        assert!(out.status.success(), "{}", common::stderr(&out));
        stdout(&out).lines().map(str::to_string).collect()
    }

    /// Of `events` (eventID -> event), those the store holds: what a kill left stored. Reads
    /// the store offline, so the collector must be stopped.
    pub(crate) fn keep_stored(
        &self,
        events: std::collections::BTreeMap<String, serde_json::Value>,
    ) -> std::collections::BTreeMap<String, serde_json::Value> {
        let stored: HashSet<String> = self
            .stored()
            .iter()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["eventID"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        events
            .into_iter()
            .filter(|(id, _)| stored.contains(id))
            .collect()
    }
}

/// `orgtrail gen-events` for one account, with `more` arguments: (its account, the JSON lines).
pub(crate) fn generated_one_account(count: u64, seed: u64, more: &[&str]) -> (String, String) {
    let (count, seed) = (count.to_string(), seed.to_string());
    let mut args = vec![
        "gen-events",
        "--count",
        &count,
        "--accounts",
        "1",
        "--seed",
        &seed,
    ];
    args.extend_from_slice(more);
    let text = stdout(&run(&args, b""));
    let account = serde_json::from_str::<serde_json::Value>(text.lines().next().unwrap()).unwrap()
        ["recipientAccountId"]
        .as_str()
        .unwrap()
        .to_string();
    (account, text)
}

/// Generated events for one account: (account, file, the unique lines).
pub(crate) fn events(
    org: &Org,
    name: &str,
    count: u64,
    seed: u64,
) -> (String, PathBuf, HashSet<String>) {
    let (account, text) = generated_one_account(count, seed, &["--dup-rate", "0.05"]);
    let path = org.path(&format!("{name}.jsonl"));
    std::fs::write(&path, &text).unwrap();
    (account, path, text.lines().map(str::to_string).collect())
}

/// A `lookup --follow` that has subscribed.
pub(crate) struct Follower {
    pub(crate) child: Child,
    pub(crate) out: std::io::Lines<BufReader<ChildStdout>>,
}

impl Follower {
    /// Follows everything `cert` may read, as JSON lines.
    pub(crate) fn start(org: &Org, c: &Collector, cert: &str) -> Follower {
        Self::start_with(org, c, cert, &[])
    }

    /// Follows with extra lookup filters.
    pub(crate) fn start_with(org: &Org, c: &Collector, cert: &str, filters: &[&str]) -> Follower {
        let mut child = orgtrail()
            .arg("lookup")
            .args(org.reader_args(c, cert))
            .args(["--follow", "--output", "jsonl"])
            .args(filters)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        err.read_line(&mut line).unwrap();
        assert!(line.contains("following events"), "{line}");
        let out = BufReader::new(child.stdout.take().unwrap()).lines();
        Follower { child, out }
    }

    /// The next `n` events stored, as their eventIDs.
    /// The next `n` events stored, as printed (their original bytes).
    pub(crate) fn lines(&mut self, n: usize) -> Vec<String> {
        (0..n).map(|_| self.out.next().unwrap().unwrap()).collect()
    }

    pub(crate) fn next(&mut self, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| {
                let line = self.out.next().unwrap().unwrap();
                serde_json::from_str::<serde_json::Value>(&line).unwrap()["eventID"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The collector's log lines, read on a thread of their own so the collector never blocks
/// on a full pipe.
pub(crate) struct Log {
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Log {
    pub(crate) fn of(c: &mut Collector) -> Log {
        let lines = c.log.take().expect("collector started with its log");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in lines.map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Log {
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle`; fails with what was logged after `secs`.
    pub(crate) fn wait_for(&mut self, needle: &str, secs: u64) -> String {
        self.wait_for_any(&[needle], secs)
    }

    /// Waits for a line containing any of `needles`; fails with what was logged after `secs`.
    pub(crate) fn wait_for_any(&mut self, needles: &[&str], secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if needles.iter().any(|n| l.contains(n)) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "no log line with any of {needles:?} within {secs} s; the last lines:\n{}",
                    self.seen[self.seen.len().saturating_sub(30)..].join("\n")
                ),
            }
        }
    }

    /// Like [`Log::wait_for`], but a line already read (while waiting for another) counts:
    /// for two lines that two tasks of the collector log in either order.
    pub(crate) fn seen_or_wait_for(&mut self, needle: &str, secs: u64) -> String {
        if let Some(l) = self.drain().iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        self.wait_for(needle, secs)
    }

    /// Everything logged so far (without waiting).
    pub(crate) fn drain(&mut self) -> &[String] {
        while let Ok(l) = self.rx.try_recv() {
            self.seen.push(l);
        }
        &self.seen
    }
}

pub(crate) fn spawn_agent(cfg: &Path) -> Child {
    orgtrail()
        .args(["agent", "--config", &p(cfg), "--exit-when-drained"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for the agent to drain and exit; its exit status must be success.
pub(crate) fn agent_drains(mut agent: Child, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = agent.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(agent.stderr.as_mut().unwrap(), &mut err).unwrap();
            assert!(status.success(), "the agent failed: {err}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not drain within {secs} s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn sigterm(c: &mut Collector) {
    let term = Command::new("kill")
        .args(["-TERM", &c.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = c.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean stop");
}

/// The stored set is exactly the unique input, byte for byte, and verify finds no problem.
pub(crate) fn exact_and_verified(org: &Org, want: &HashSet<String>) {
    let stored = org.stored();
    let got: HashSet<String> = stored.iter().cloned().collect();
    assert_eq!(got.len(), stored.len(), "nothing stored twice");
    assert_eq!(got.len(), want.len(), "every unique event stored");
    assert_eq!(&got, want, "exactly the unique events, byte-identical");
    let v = run(
        &[
            "verify",
            "--data-dir",
            &p(&org.path("data")),
            "--keys",
            &p(&org.path("keys")),
        ],
        b"",
    );
    assert!(
        v.status.success(),
        "verify: {}{}",
        stdout(&v),
        common::stderr(&v)
    );
}
