//! The deployment files run for real: the runtime image built by `deploy/image/build.sh` from
//! the binary under test, and `deploy/compose/compose.yaml` under podman and podman-compose.
//!
//! - the compose file passes the compose-spec JSON schema (and a broken copy does not);
//! - deploy/Dockerfile passes hadolint and keeps build.sh's layout (user, volume, entrypoint);
//! - the image runs `--version` on a read-only root as uid 65532, and `orgtrail collector` in it
//!   answers `/healthz` and `/readyz` on its ops listener;
//! - compose: `up` brings the init services, the collector and both agents up; every record
//!   of the sample AWSLogs tree reaches the collector, counted per account by `stats` asked
//!   over the compose network; the StartInstances lookup names its user; `up` again keeps the
//!   certificates and the store; `down -v` leaves no container, volume, network or pod.
//!
//! Names (image tags, project, containers, volumes) are unique per run, so these tests run
//! beside any other. Every resource is removed by a guard, also when a test fails. podman,
//! podman-compose and check-jsonschema are required (scripts/test-deps installs them): a
//! missing one fails the test, it is never skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/procs.rs"]
mod procs;

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use procs::wait_until;

/// Deadline for one poll: generous, the machine is shared and loaded.
const WITHIN: Duration = Duration::from_secs(120);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn compose_dir() -> PathBuf {
    repo().join("deploy/compose")
}

/// A name no other test run uses: process id and time.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}{}x{}", std::process::id(), nanos % 1_000_000_000)
}

/// A tool of the deployment tests, with podman's settings for these machines.
fn tool(name: &str) -> Command {
    let mut c = Command::new(name);
    c.env(
        "CONTAINERS_CONF",
        repo().join("deploy/podman/containers.conf"),
    );
    c.stdin(Stdio::null());
    c
}

/// Runs `cmd` to its end; a tool that is not installed fails the test with what to do.
fn output(cmd: &mut Command) -> Output {
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {program}: {e} (scripts/test-deps installs the deployment tools)")
    })
}

/// Runs `cmd` and fails the test, with its output, unless it succeeds; returns stdout.
fn ok(cmd: &mut Command) -> String {
    let what = format!("{cmd:?}");
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        common::stdout(&out),
        common::stderr(&out)
    );
    common::stdout(&out)
}

/// The image `deploy/image/build.sh` makes from the binary under test; removed on drop.
struct Image(String);

impl Image {
    fn build() -> Image {
        let tag = format!("localhost/orgtrail-test:{}", unique("t"));
        let started = Instant::now();
        let printed = ok(tool("bash")
            .arg(repo().join("deploy/image/build.sh"))
            .arg(env!("CARGO_BIN_EXE_orgtrail"))
            .arg(&tag));
        assert_eq!(printed.trim(), tag, "build.sh prints the tag it built");
        eprintln!("image {tag} built in {:?}", started.elapsed());
        Image(tag)
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = tool("podman").args(["rmi", "-f", &self.0]).output();
    }
}

#[test]
fn compose_file_passes_the_compose_spec_schema() {
    let file = compose_dir().join("compose.yaml");
    let check = |path: &Path| {
        output(
            tool("check-jsonschema")
                .args(["--builtin-schema", "vendor.compose-spec"])
                .arg(path),
        )
    };
    let out = check(&file);
    assert!(
        out.status.success(),
        "compose.yaml does not pass the compose-spec schema:\n{}{}",
        common::stdout(&out),
        common::stderr(&out)
    );

    // The validator does look: a misspelt service key is refused.
    let text = std::fs::read_to_string(&file).unwrap();
    let broken = text.replacen(
        "    restart: unless-stopped\n",
        "    restart: unless-stopped\n    restrat: always\n",
        1,
    );
    assert_ne!(broken, text);
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("compose.yaml");
    std::fs::write(&copy, broken).unwrap();
    let out = check(&copy);
    assert!(
        !out.status.success() && common::stdout(&out).contains("restrat"),
        "a broken compose file passed the schema check:\n{}{}",
        common::stdout(&out),
        common::stderr(&out)
    );
}

/// `deploy/Dockerfile` cannot be built here (its base images are out of reach), so it is
/// linted, and its runtime stage is held to the layout of the image the tests do run.
#[test]
fn dockerfile_passes_hadolint_and_keeps_the_layout_of_build_sh() {
    let dockerfile = repo().join("deploy/Dockerfile");
    let out = output(tool("hadolint").arg(&dockerfile));
    assert!(
        out.status.success(),
        "hadolint deploy/Dockerfile:\n{}{}",
        common::stdout(&out),
        common::stderr(&out)
    );
    let docker = std::fs::read_to_string(&dockerfile).unwrap();
    let script = std::fs::read_to_string(repo().join("deploy/image/build.sh")).unwrap();
    let runtime = docker.split("\nFROM ").last().expect("a runtime stage");
    assert!(
        runtime.starts_with("gcr.io/distroless/cc-debian12:nonroot"),
        "{runtime}"
    );
    for line in [
        "USER 65532:65532",
        "WORKDIR /var/lib/orgtrail",
        r#"VOLUME ["/var/lib/orgtrail"]"#,
        r#"ENTRYPOINT ["/usr/local/bin/orgtrail"]"#,
    ] {
        assert!(
            runtime.lines().any(|l| l == line),
            "Dockerfile lacks {line}"
        );
        assert!(script.lines().any(|l| l == line), "build.sh lacks {line}");
    }
    assert!(docker.contains("cargo build --release --locked"));
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l == "target/"), "{ignore}");
}

/// A container and a volume of the image test; removed on drop.
struct Container {
    name: String,
    volume: String,
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Ok(o) = tool("podman").args(["logs", &self.name]).output()
        {
            eprintln!(
                "log of {}:\n{}{}",
                self.name,
                common::stdout(&o),
                common::stderr(&o)
            );
        }
        let _ = tool("podman").args(["rm", "-f", &self.name]).output();
        let _ = tool("podman")
            .args(["volume", "rm", "-f", &self.volume])
            .output();
    }
}

#[test]
fn image_runs_read_only_as_uid_65532_and_its_collector_answers_healthz() {
    let image = Image::build();

    let version = ok(tool("podman").args(["run", "--rm", "--read-only", &image.0, "--version"]));
    assert_eq!(
        version.trim(),
        format!("orgtrail {}", env!("CARGO_PKG_VERSION"))
    );
    let config = ok(tool("podman").args([
        "image",
        "inspect",
        "--format",
        "{{.Config.User}} {{json .Config.Entrypoint}} {{json .Config.Volumes}}",
        &image.0,
    ]));
    assert_eq!(
        config.trim(),
        r#"65532:65532 ["/usr/local/bin/orgtrail"] {"/var/lib/orgtrail":{}}"#
    );

    // Certificates made on the host by the binary under test, mounted read-only with the
    // collector's configuration; the keys made by the image itself in its volume.
    let etc = tempfile::tempdir().unwrap();
    let pki = etc.path().join("pki");
    ok(common::orgtrail()
        .args(["certs", "bootstrap", "--dir"])
        .arg(&pki)
        .args(["--server", "localhost", "--agent", "123456789012"]));
    // The container's uid must read the private key (mode 0600 on the host).
    ok(Command::new("chown").args(["-R", "65532:65532"]).arg(&pki));
    std::fs::write(
        etc.path().join("collector.toml"),
        r#"listen = "0.0.0.0:4317"
data_dir = "/var/lib/orgtrail/data"
keys_dir = "/var/lib/orgtrail/keys"
[tls]
cert = "/etc/orgtrail/pki/collector.pem"
key = "/etc/orgtrail/pki/collector.key"
client_ca = "/etc/orgtrail/pki/ca/ca.pem"
[organization]
id = "o-example"
accounts = ["123456789012"]
[ops]
listen = "0.0.0.0:9464"
"#,
    )
    .unwrap();

    let c = Container {
        name: unique("orgtrail-test-collector-"),
        volume: unique("orgtrail-test-data-"),
    };
    let volume_mount = format!("{}:/var/lib/orgtrail", c.volume);
    let etc_mount = format!("{}:/etc/orgtrail:ro", etc.path().display());
    ok(tool("podman").args(["volume", "create", &c.volume]));
    let keys = ok(tool("podman").args([
        "run",
        "--rm",
        "--read-only",
        "-v",
        &volume_mount,
        &image.0,
        "keys",
        "init",
        "--out",
        "/var/lib/orgtrail/keys",
    ]));
    assert!(keys.contains("created /var/lib/orgtrail/keys/keyring.json"));
    // Written by uid 65532 (the image's user) into the volume.
    let mountpoint = ok(tool("podman").args([
        "volume",
        "inspect",
        "--format",
        "{{.Mountpoint}}",
        &c.volume,
    ]));
    let keyring = Path::new(mountpoint.trim()).join("keys/keyring.json");
    let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&keyring).unwrap());
    assert_eq!(uid, 65532, "{} is owned by uid {uid}", keyring.display());

    ok(tool("podman").args([
        "run",
        "-d",
        "--read-only",
        "--name",
        &c.name,
        "-p",
        "127.0.0.1::9464",
        "-v",
        &volume_mount,
        "-v",
        &etc_mount,
        &image.0,
        "collector",
        "--config",
        "/etc/orgtrail/collector.toml",
    ]));
    // The host port podman chose for the ops listener.
    let port = ok(tool("podman").args(["port", &c.name, "9464/tcp"]));
    let addr = port.trim().to_string();
    assert!(addr.starts_with("127.0.0.1:"), "podman port: {addr}");
    // The port is published before the collector listens: a refused or reset connection is
    // "not yet"; only a whole HTTP answer counts.
    let answers = |path: &str| get(&addr, path).is_some_and(|(s, _)| s == 200);
    wait_until(WITHIN, "the collector's /healthz answers 200", || {
        answers("/healthz")
    });
    wait_until(WITHIN, "the collector's /readyz answers 200", || {
        answers("/readyz")
    });
    let (status, body) = get(&addr, "/metrics").expect("/metrics answers");
    assert_eq!(status, 200);
    assert!(body.contains("# TYPE"), "metrics:\n{body}");
}

/// `GET path` on a fresh connection: (status, body), or None when there is no whole answer.
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let status = resp.split_whitespace().nth(1)?.parse().ok()?;
    let (_, body) = resp.split_once("\r\n\r\n")?;
    Some((status, body.to_string()))
}

/// The compose project of one test run: `down -v` on drop, after printing the services'
/// logs when the test failed.
struct Project {
    name: String,
    image: String,
}

impl Project {
    fn compose(&self) -> Command {
        let mut c = tool("podman-compose");
        c.current_dir(compose_dir())
            .env("ORGTRAIL_IMAGE", &self.image)
            .env("ORGTRAIL_LOG", "info")
            .args(["-p", &self.name, "-f", "compose.yaml"]);
        c
    }

    /// `run --rm SERVICE ARGS` of a run-only auditor service: its stdout, and whether it
    /// succeeded.
    fn run(&self, service: &str, args: &[&str]) -> (bool, String) {
        let out = output(
            self.compose()
                .args(["--profile", "tools", "run", "--rm", "-T", service])
                .args(args),
        );
        (out.status.success(), common::stdout(&out))
    }

    fn log(&self, service: &str) -> String {
        let out = output(tool("podman").args(["logs", &format!("{}_{service}_1", self.name)]));
        format!("{}{}", common::stdout(&out), common::stderr(&out))
    }

    /// Names of what podman holds of this project: containers, volumes, networks, pods.
    fn leftovers(&self) -> Vec<String> {
        let mut found = Vec::new();
        for (what, args) in [
            ("container", ["ps", "-a", "--format", "{{.Names}}"]),
            ("volume", ["volume", "ls", "--format", "{{.Name}}"]),
            ("network", ["network", "ls", "--format", "{{.Name}}"]),
            ("pod", ["pod", "ls", "--format", "{{.Name}}"]),
        ] {
            let names = ok(tool("podman").args(args));
            found.extend(
                names
                    .lines()
                    .filter(|n| n.contains(&self.name))
                    .map(|n| format!("{what} {n}")),
            );
        }
        found
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for service in ["init", "init-keys", "collector", "agent-a", "agent-b"] {
                eprintln!("---- log of {service}:\n{}", self.log(service));
            }
        }
        let _ = self.compose().args(["down", "-v"]).output();
    }
}

/// Records of each account in the sample tree (`AWSLogs/ACCOUNT/CloudTrail/...json.gz`),
/// checking that no eventID repeats (the collector would count a repeat once).
fn sample_counts() -> BTreeMap<String, u64> {
    let root = compose_dir().join("AWSLogs");
    let mut counts = BTreeMap::new();
    let mut ids = HashSet::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(".json.gz") {
                let account = p.strip_prefix(&root).unwrap().iter().next().unwrap();
                let mut text = String::new();
                flate2::read::GzDecoder::new(std::fs::File::open(&p).unwrap())
                    .read_to_string(&mut text)
                    .unwrap();
                let file: serde_json::Value = serde_json::from_str(&text).unwrap();
                for r in file["Records"].as_array().unwrap() {
                    assert_eq!(r["recipientAccountId"].as_str(), account.to_str());
                    assert!(ids.insert(r["eventID"].to_string()), "repeated {r}");
                    *counts
                        .entry(account.to_string_lossy().into_owned())
                        .or_default() += 1;
                }
            }
        }
    }
    counts
}

/// `ACCOUNT COUNT` rows of `stats --by account`.
fn account_rows(table: &str) -> BTreeMap<String, u64> {
    table
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (a, n) = (it.next()?, it.next()?);
            (a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()) && it.next().is_none())
                .then(|| (a.to_string(), n.parse().ok()))
                .and_then(|(a, n)| Some((a, n?)))
        })
        .collect()
}

#[test]
fn compose_up_ships_both_accounts_answers_a_lookup_and_down_leaves_nothing() {
    let expected = sample_counts();
    assert_eq!(
        expected.len(),
        2,
        "two accounts in the sample: {expected:?}"
    );
    let image = Image::build();
    let project = Project {
        name: unique("otc"),
        image: image.0.clone(),
    };

    let t0 = Instant::now();
    ok(project.compose().args(["up", "-d"]));
    let up = t0.elapsed();
    let init = project.log("init");
    assert!(
        init.contains("created /var/lib/orgtrail/ca/ca.pem")
            && init.contains("issued /var/lib/orgtrail/agent-123456789012.pem")
            && init.contains("issued /var/lib/orgtrail/agent-347283850106.pem"),
        "init log:\n{init}"
    );

    // Every record of both accounts' trees reaches the collector: asked as the auditor over
    // the compose network.
    let mut last = String::new();
    let t1 = Instant::now();
    wait_until(
        WITHIN,
        "stats counts every sample record per account",
        || {
            let (_, table) = project.run("stats", &["--by", "account"]);
            last = table;
            account_rows(&last) == expected
        },
    );
    let flowed = t1.elapsed();
    eprintln!("stats:\n{last}");

    let (ran, table) = project.run("lookup", &["--event-name", "StartInstances"]);
    assert!(ran, "lookup failed:\n{table}");
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.contains("StartInstances"))
        .collect();
    assert_eq!(rows.len(), 1, "one StartInstances in the sample:\n{table}");
    let row: Vec<&str> = rows[0].split_whitespace().collect();
    assert_eq!(
        row[1..4],
        ["123456789012", "us-east-1", "Mateo"],
        "who started the instances:\n{table}"
    );
    assert!(rows[0].contains("i-EXAMPLE56126103cb"), "{table}");

    // `up` again: the certificates are kept (the agents' and the collector's still match),
    // the store and the spools too, and nothing is shipped twice.
    ok(project.compose().args(["up", "-d"]));
    let init = project.log("init");
    let tail: Vec<&str> = init.lines().rev().take(5).collect();
    assert!(
        tail.iter().all(|l| l.starts_with("kept ")),
        "init on the second up:\n{init}"
    );
    let (_, table) = project.run("stats", &["--by", "account"]);
    assert_eq!(
        account_rows(&table),
        expected,
        "after the second up:\n{table}"
    );

    let t2 = Instant::now();
    ok(project.compose().args(["down", "-v"]));
    let down = t2.elapsed();
    assert_eq!(project.leftovers(), Vec::<String>::new(), "after down -v");
    eprintln!(
        "compose timings: up {up:?}, events of both agents counted after {flowed:?}, down -v {down:?}, whole test {:?}",
        t0.elapsed()
    );
}

/// What the compose `init` services run: once to create, then again and again to keep.
#[test]
fn certs_bootstrap_and_keys_init_if_missing_keep_what_exists() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let bootstrap = |agents: &[&str]| {
        let mut c = common::orgtrail();
        c.args(["certs", "bootstrap", "--dir"]).arg(&pki).args([
            "--server",
            "collector",
            "--auditor",
        ]);
        for a in agents {
            c.args(["--agent", a]);
        }
        output(&mut c)
    };
    let first = bootstrap(&["123456789012"]);
    assert!(first.status.success(), "{}", common::stderr(&first));
    assert_eq!(
        common::stdout(&first)
            .lines()
            .map(|l| l.split(' ').next().unwrap())
            .collect::<Vec<_>>(),
        ["created", "issued", "issued", "issued"],
        "{}",
        common::stdout(&first)
    );
    let read = |f: &str| std::fs::read(pki.join(f)).unwrap();
    let (ca, agent) = (read("ca/ca.pem"), read("agent-123456789012.pem"));

    // Again, with one more account: everything kept, only the new agent issued.
    let again = bootstrap(&["123456789012", "347283850106"]);
    assert!(again.status.success(), "{}", common::stderr(&again));
    let text = common::stdout(&again);
    assert_eq!(
        text.lines().filter(|l| l.starts_with("kept ")).count(),
        4,
        "{text}"
    );
    assert!(
        text.contains("issued ") && text.contains("agent-347283850106.pem"),
        "{text}"
    );
    assert_eq!(read("ca/ca.pem"), ca);
    assert_eq!(read("agent-123456789012.pem"), agent);

    // Half a pair is an error naming both files, and nothing is overwritten.
    std::fs::remove_file(pki.join("agent-123456789012.key")).unwrap();
    let half = bootstrap(&["123456789012"]);
    assert_eq!(half.status.code(), Some(2));
    let err = common::stderr(&half);
    assert!(
        err.contains("agent-123456789012.pem exist") && err.contains("agent-123456789012.key"),
        "{err}"
    );
    assert_eq!(read("agent-123456789012.pem"), agent);

    let keys = dir.path().join("keys");
    let init = |extra: &[&str]| {
        output(
            common::orgtrail()
                .args(["keys", "init", "--out"])
                .arg(&keys)
                .args(extra),
        )
    };
    assert!(init(&["--if-missing"]).status.success());
    let keyring = std::fs::read(keys.join("keyring.json")).unwrap();
    let kept = init(&["--if-missing"]);
    assert!(kept.status.success(), "{}", common::stderr(&kept));
    assert!(common::stdout(&kept).starts_with("kept the existing keys"));
    assert_eq!(std::fs::read(keys.join("keyring.json")).unwrap(), keyring);
    // Without the flag, existing keys are still refused.
    assert!(!init(&[]).status.success());
}
