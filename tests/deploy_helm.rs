//! The Helm chart (deploy/helm/orgtrail), checked three ways:
//! - `deploy/helm/check.py`: helm lint and template (Helm's SDK through helm-python-sdk) with
//!   the default values and with ci/two-agents-values.yaml (ServiceMonitor on, two agents), and
//!   `kubernetes-validate --strict` on every rendered manifest;
//! - every rendered collector.toml and agent.toml passes `orgtrail config check`;
//! - the rendered pods run under `podman kube play` (the collector's StatefulSet as a Pod, its
//!   claim as a volume, certificates and keys as Secrets), from the image deploy/image/build.sh
//!   makes of this binary, and events from the agent pod reach the collector pod: an auditor
//!   asks it from this host and gets exactly the agent's events back.
//!
//! A missing tool (python3, helm_python, kubernetes-validate, podman) fails the test with what to
//! install (`scripts/test-deps`), it never skips.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/org.rs"]
mod org;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{run, stderr, stdout};
use org::{Org, p};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn output(cmd: &mut Command, what: &str) -> Output {
    cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {what} ({e}): install the deployment test tools with scripts/test-deps")
    })
}

/// `python3 deploy/helm/check.py ARGS`, which must succeed.
fn check_py(args: &[&str]) -> String {
    let out = output(
        Command::new("python3")
            .arg(repo().join("deploy/helm/check.py"))
            .args(args),
        "python3",
    );
    assert!(
        out.status.success(),
        "check.py {args:?} failed ({:?}):\n{}{}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    stdout(&out) + &stderr(&out)
}

#[test]
fn chart_lints_renders_and_passes_kubernetes_validate_strict() {
    let text = check_py(&["check"]);
    assert!(
        text.contains("default values: ") && text.contains("two-agents-values.yaml: "),
        "{text}"
    );
    // The ServiceMonitor is rendered when enabled, and is the only resource without a schema.
    assert!(
        text.contains("check.py: chart ok:")
            && text.contains("1 ServiceMonitor(s) checked structurally"),
        "{text}"
    );
    // Bad values (unquoted or malformed accounts, duplicates, no sources, ...) are refused.
    assert!(
        text.contains("8 kinds of bad values refused with their reason: ok"),
        "{text}"
    );
    assert!(!text.contains("FAILED"), "{text}");
}

/// Renders the chart with `values` (files) into `dir`; returns the ConfigMaps' entries:
/// (configmap name, key, path of the file holding it).
fn render(dir: &Path, values: &[&Path]) -> Vec<(String, String, PathBuf)> {
    let mut args = vec![
        "render".to_string(),
        "--out".into(),
        p(dir),
        "--name".into(),
        "ot".into(),
    ];
    for v in values {
        args.push("--values".into());
        args.push(p(v));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    check_py(&args);
    let mut entries = Vec::new();
    for cm in std::fs::read_dir(dir.join("configmaps")).unwrap() {
        let cm = cm.unwrap();
        for e in std::fs::read_dir(cm.path()).unwrap() {
            let e = e.unwrap();
            entries.push((
                cm.file_name().to_string_lossy().into_owned(),
                e.file_name().to_string_lossy().into_owned(),
                e.path(),
            ));
        }
    }
    entries.sort();
    entries
}

/// Lays out what the pod mounts for `config` (a rendered TOML, its absolute paths moved under a
/// root of its own): the CA, the certificate the pod's Secret would hold (the collector's, or
/// the agent's of the configured account), the keys, the revocation list, source directories.
fn lay_out(org: &Org, config: &str) {
    let t: toml::Table = toml::from_str(config).unwrap();
    let file = |rel: &str, from: &Path| {
        let to = Path::new(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap();
    };
    let tls = t["tls"].as_table().unwrap();
    let (cert, key) = match t.get("account").and_then(|a| a.as_str()) {
        Some(account) => {
            org.issue(&format!("agent-{account}"), "agent", Some(account));
            (
                org.path(&format!("agent-{account}.pem")),
                org.path(&format!("agent-{account}.key")),
            )
        }
        None => (org.path("server.pem"), org.path("server.key")),
    };
    file(tls["cert"].as_str().unwrap(), &cert);
    file(tls["key"].as_str().unwrap(), &key);
    let ca = tls.get("ca").or(tls.get("client_ca")).unwrap();
    file(ca.as_str().unwrap(), &org.path("ca/ca.pem"));
    if let Some(k) = t.get("keys_dir").and_then(|k| k.as_str()) {
        for f in ["keyring.json", "signing.key", "signing.pub"] {
            file(&format!("{k}/{f}"), &org.path(&format!("keys/{f}")));
        }
    }
    if let Some(r) = t
        .get("organization")
        .and_then(|o| o.get("revoked"))
        .and_then(|r| r.as_str())
    {
        let to = Path::new(r);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, "# no certificate revoked\n").unwrap();
    }
    for s in t
        .get("sources")
        .and_then(|s| s.as_array())
        .into_iter()
        .flatten()
    {
        if s["type"].as_str() == Some("cloudtrail_dir") {
            std::fs::create_dir_all(s["path"].as_str().unwrap()).unwrap();
        }
    }
}

#[test]
fn rendered_configurations_pass_orgtrail_config_check() {
    let org = Org::new();
    let ci = repo().join("deploy/helm/orgtrail/ci/two-agents-values.yaml");
    let mut checked = Vec::new();
    for (case, values) in [("default", vec![]), ("two-agents", vec![ci.as_path()])] {
        let dir = org.path(&format!("render-{case}"));
        for (cm, key, path) in render(&dir, &values) {
            assert!(
                key.ends_with(".toml"),
                "{case}: ConfigMap {cm} holds {key}, not a configuration"
            );
            let text = std::fs::read_to_string(&path).unwrap();
            // The pod's absolute paths (/etc/orgtrail, /var/lib/orgtrail, /data) under a root of
            // their own; everything else is checked as rendered.
            let root = org.path(&format!("root-{case}-{cm}"));
            let moved = text.replace("= \"/", &format!("= \"{}/", p(&root)));
            assert_ne!(moved, text, "{case}: {cm} names no absolute path");
            lay_out(&org, &moved);
            let file = root.join(&key);
            std::fs::write(&file, &moved).unwrap();
            let out = run(&["config", "check", &p(&file)], b"");
            assert!(
                out.status.success(),
                "{case}: ConfigMap {cm} ({key}) fails `orgtrail config check`:\n{}\n--- as rendered:\n{text}",
                stderr(&out)
            );
            let kind = if key == "collector.toml" {
                "a valid collector configuration"
            } else {
                "a valid agent configuration"
            };
            assert!(stdout(&out).contains(kind), "{case} {cm}: {}", stdout(&out));
            checked.push(format!("{case}/{cm}/{key}"));
        }
    }
    // The default values render the collector alone; the CI values add two agents.
    assert_eq!(
        checked,
        [
            "default/ot-orgtrail-collector/collector.toml",
            "two-agents/ot-orgtrail-agent-111122223333/agent.toml",
            "two-agents/ot-orgtrail-agent-444455556666/agent.toml",
            "two-agents/ot-orgtrail-collector/collector.toml",
        ]
    );
}

/// `podman ARGS` with the project's containers.conf.
fn podman(args: &[&str]) -> Output {
    output(
        Command::new("podman")
            .env(
                "CONTAINERS_CONF",
                repo().join("deploy/podman/containers.conf"),
            )
            .args(args),
        "podman",
    )
}

fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {args:?} failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// Everything the kube play test creates in podman, removed on drop (also when the test fails):
/// the pods of the played YAML, the Secrets, the volumes (claims, ConfigMaps and Secrets become
/// named volumes, all named after the unique prefix), the network and the image.
struct Podman {
    unique: String,
    kube: Option<PathBuf>,
    secrets: Vec<String>,
    network: Option<String>,
    image: Option<String>,
}

impl Drop for Podman {
    fn drop(&mut self) {
        if let Some(k) = &self.kube {
            let _ = podman(&["kube", "down", &p(k)]);
        }
        let pods = podman(&[
            "pod",
            "ps",
            "-q",
            "--filter",
            &format!("name={}", self.unique),
        ]);
        for id in stdout(&pods).split_whitespace() {
            let _ = podman(&["pod", "rm", "-f", id]);
        }
        for s in &self.secrets {
            let _ = podman(&["secret", "rm", s]);
        }
        let vols = podman(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("name={}", self.unique),
        ]);
        for v in stdout(&vols).split_whitespace() {
            let _ = podman(&["volume", "rm", "-f", v]);
        }
        if let Some(n) = &self.network {
            let _ = podman(&["network", "rm", "-f", n]);
        }
        if let Some(i) = &self.image {
            let _ = podman(&["rmi", "-f", i]);
        }
    }
}

/// Creates the podman secret `name` a Secret volume of `kube play` mounts: a Kubernetes Secret
/// (JSON) of `files`, (key, path). Podman 4.3 writes each `data` entry into the volume as it
/// stands, without base64-decoding it, and ignores `stringData`; so the secret is created with
/// `podman secret create` holding the files' text as it is (the `kube play` of a Secret manifest
/// would insist on base64 and then mount the encoded text).
fn create_secret(dir: &Path, name: &str, files: &[(&str, PathBuf)]) {
    let data: serde_json::Map<String, serde_json::Value> = files
        .iter()
        .map(|(k, f)| (k.to_string(), std::fs::read_to_string(f).unwrap().into()))
        .collect();
    let doc = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name}, "data": data,
    });
    let file = dir.join(format!("{name}.json"));
    std::fs::write(&file, doc.to_string()).unwrap();
    podman_ok(&["secret", "create", name, &p(&file)]);
}

/// One HTTP GET, or None when nothing answers yet.
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let sock: std::net::SocketAddr = addr.parse().unwrap();
    let mut s = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text.split("\r\n\r\n").nth(1)?.to_string()))
}

/// The IP address of `pod` on `network`.
fn pod_ip(pod: &str, network: &str) -> String {
    let infra = podman_ok(&["pod", "inspect", pod, "--format", "{{.InfraContainerID}}"]);
    let nets = podman_ok(&[
        "inspect",
        infra.trim(),
        "--format",
        "{{json .NetworkSettings.Networks}}",
    ]);
    let v: serde_json::Value = serde_json::from_str(&nets).unwrap();
    v[network]["IPAddress"]
        .as_str()
        .filter(|ip| !ip.is_empty())
        .unwrap_or_else(|| panic!("pod {pod} has no address on {network}: {nets}"))
        .to_string()
}

/// The last lines each container logged, for failure messages.
fn logs(containers: &[&str]) -> String {
    containers
        .iter()
        .map(|c| {
            let out = podman(&["logs", "--tail", "30", c]);
            format!("--- {c}:\n{}{}", stdout(&out), stderr(&out))
        })
        .collect()
}

fn poll<T>(
    within: Duration,
    what: &str,
    diag: &dyn Fn() -> String,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let end = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "{what}: not within {within:?}\n{}",
            diag()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Waits up to 120 s for `GET ip:9464/path` to answer 200.
fn answers_200(ip: &str, path: &str, diag: &dyn Fn() -> String) {
    poll(
        Duration::from_secs(120),
        &format!("GET {ip}:9464{path} answers 200"),
        diag,
        || get(&format!("{ip}:9464"), path).filter(|(s, _)| *s == 200),
    );
}

/// The auditor asking the collector pod at its address, by the name in its certificate.
struct Auditor<'a> {
    org: &'a Org,
    service: &'a str,
}

impl Auditor<'_> {
    fn ask(&self, ip: &str, cmd: &str, extra: &[&str]) -> Output {
        let o = self.org;
        let mut args = vec![
            cmd.to_string(),
            "--collector".into(),
            format!("https://{ip}:4317"),
            "--server-name".into(),
            self.service.to_string(),
            "--ca".into(),
            p(&o.path("ca/ca.pem")),
            "--cert".into(),
            p(&o.path("auditor.pem")),
            "--key".into(),
            p(&o.path("auditor.key")),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args, b"")
    }

    /// Every stored event (as JSON lines) once there are at least `n`, polled up to 120 s.
    fn events_when(&self, ip: &str, n: usize, diag: &dyn Fn() -> String) -> Vec<String> {
        poll(
            Duration::from_secs(120),
            &format!("the collector pod at {ip} holds the agent's {n} events"),
            diag,
            || {
                let out = self.ask(ip, "lookup", &["--output", "jsonl", "--max", "100000"]);
                let lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
                (out.status.success() && lines.len() >= n).then_some(lines)
            },
        )
    }
}

#[test]
fn kube_play_of_the_rendered_pods_ships_agent_events_to_the_collector_pod() {
    let started = Instant::now();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    // Lower case, short, unique across parallel runs: the release name and every podman name.
    let unique = format!("oth{}x{:x}", std::process::id(), nanos);
    let mut guard = Podman {
        unique: unique.clone(),
        kube: None,
        secrets: Vec::new(),
        network: None,
        image: None,
    };
    let fullname = format!("{unique}-orgtrail");
    let service = format!("{fullname}-collector");

    // The organization, as the chart's README has users create it.
    let org = Org::new();
    assert!(
        run(
            &[
                "certs",
                "issue",
                "--ca",
                &p(&org.path("ca")),
                "--role",
                "server",
                "--dns",
                &service,
                "--dns",
                &format!("{service}.orgtrail.svc"),
                "--out",
                &p(&org.path("collector")),
            ],
            b""
        )
        .status
        .success()
    );
    let (account, events, want) = org::events(&org, "events", 300, 13);
    org.issue("agent", "agent", Some(&account));
    org.issue("auditor", "auditor", None);
    // The agent's source: a host directory the pod mounts read-only (uid 65532 reads it).
    let src = org.path("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::copy(&events, src.join("events.jsonl")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(
            src.join("events.jsonl"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
    }

    // The image, from this very binary.
    let tag = format!("localhost/orgtrail-helm-{unique}:test");
    guard.image = Some(tag.clone());
    let build = output(
        Command::new(repo().join("deploy/image/build.sh"))
            .env(
                "CONTAINERS_CONF",
                repo().join("deploy/podman/containers.conf"),
            )
            .args([env!("CARGO_BIN_EXE_orgtrail"), &tag]),
        "deploy/image/build.sh",
    );
    assert!(build.status.success(), "build.sh: {}", stderr(&build));

    // The Secrets the chart expects.
    let secrets: [(&str, Vec<(&str, PathBuf)>); 4] = [
        ("ca", vec![("ca.pem", org.path("ca/ca.pem"))]),
        (
            "collector-tls",
            vec![
                ("tls.crt", org.path("collector.pem")),
                ("tls.key", org.path("collector.key")),
            ],
        ),
        (
            "keys",
            vec![
                ("keyring.json", org.path("keys/keyring.json")),
                ("signing.key", org.path("keys/signing.key")),
                ("signing.pub", org.path("keys/signing.pub")),
            ],
        ),
        (
            "agent",
            vec![
                ("tls.crt", org.path("agent.pem")),
                ("tls.key", org.path("agent.key")),
            ],
        ),
    ];
    for (name, files) in &secrets {
        let name = format!("{unique}-{name}");
        guard.secrets.push(name.clone());
        create_secret(&org.path(""), &name, files);
    }

    // The chart, rendered for podman with one agent reading the mounted JSON lines.
    let values = serde_json::json!({
        "image": {"repository": format!("localhost/orgtrail-helm-{unique}"), "tag": "test"},
        "caSecret": format!("{unique}-ca"),
        "collector": {
            "tlsSecret": format!("{unique}-collector-tls"),
            "keysSecret": format!("{unique}-keys"),
        },
        "agentDefaults": {
            "batch": {"linger_ms": "20ms"},
            "retry": {"initial_ms": "50ms", "max_ms": "1s"},
        },
        "agents": [{
            "account": account,
            "tlsSecret": format!("{unique}-agent"),
            "sources": [{"type": "jsonl", "name": "events", "path": "/data/events/events.jsonl", "follow": true}],
            "volumes": [{"name": "events", "hostPath": {"path": p(&src), "type": "Directory"}}],
            "volumeMounts": [{"name": "events", "mountPath": "/data/events", "readOnly": true}],
        }],
    });
    let values_file = org.path("values.json");
    std::fs::write(&values_file, values.to_string()).unwrap();
    let kube = org.path("kube.yaml");
    let left_out = check_py(&[
        "podman",
        "--out",
        &p(&kube),
        "--name",
        &unique,
        "--values",
        &p(&values_file),
    ]);
    let kube_again = org.path("kube-again.yaml");
    check_py(&[
        "podman",
        "--out",
        &p(&kube_again),
        "--name",
        &unique,
        "--values",
        &p(&values_file),
        "--collector-only",
    ]);
    for kind in ["Service/", "NetworkPolicy/"] {
        assert!(left_out.contains(kind), "{left_out}");
    }

    let network = format!("{unique}-net");
    podman_ok(&["network", "create", &network]);
    guard.network = Some(network.clone());
    guard.kube = Some(kube.clone());
    podman_ok(&["kube", "play", "--network", &network, &p(&kube)]);

    let agent_pod = format!("{fullname}-agent-{account}-pod-0");
    let collector_c = format!("{service}-collector");
    let agent_c = format!("{agent_pod}-agent");
    let diag = || logs(&[&collector_c, &agent_c]);
    let diag: &dyn Fn() -> String = &diag;

    // The security context reached the containers: uid 65532, read-only root, no capabilities.
    for c in [&collector_c, &agent_c] {
        let info = podman_ok(&[
            "inspect",
            c,
            "--format",
            "{{.Config.User}}|{{.HostConfig.ReadonlyRootfs}}|{{.EffectiveCaps}}",
        ]);
        let f: Vec<&str> = info.trim().split('|').collect();
        assert!(f[0].starts_with("65532"), "{c} runs as {info}");
        assert_eq!(f[1], "true", "{c}: root filesystem not read-only: {info}");
        assert!(
            f[2] == "[]" || f[2] == "<nil>",
            "{c} keeps capabilities: {info}"
        );
    }

    // The probes' endpoints on the ops listeners, as the kubelet would call them (podman runs
    // an httpGet probe with curl inside the container, which a FROM-scratch image lacks).
    let collector_ip = pod_ip(&service, &network);
    let agent_ip = pod_ip(&agent_pod, &network);
    for ip in [&collector_ip, &agent_ip] {
        for path in ["/healthz", "/readyz"] {
            answers_200(ip, path, diag);
        }
    }

    // An auditor asks the collector pod, by the name in its certificate (the Service's), and
    // gets exactly the agent's events.
    let auditor = Auditor {
        org: &org,
        service: &service,
    };
    let stored = auditor.events_when(&collector_ip, want.len(), diag);
    let got: HashSet<String> = stored.iter().cloned().collect();
    assert_eq!(got.len(), stored.len(), "nothing stored twice");
    assert_eq!(got, want, "exactly the agent's events, byte for byte");
    let stats = auditor.ask(&collector_ip, "stats", &["--by", "account"]);
    assert!(stats.status.success(), "{}", stderr(&stats));
    assert!(
        stdout(&stats).contains(&account) && stdout(&stats).contains(&want.len().to_string()),
        "stats by account: {}",
        stdout(&stats)
    );

    // The collector's metrics count them, on the port the ServiceMonitor scrapes.
    let (_, metrics) = get(&format!("{collector_ip}:9464"), "/metrics").unwrap();
    assert!(metrics.contains(&account), "metrics name the account");

    // The ledger lives on the claim: the collector pod recreated alone (no agent to ship
    // anything again), on the claim's volume kept as a StatefulSet's is, holds every event.
    podman_ok(&["kube", "down", &p(&kube)]);
    guard.kube = Some(kube_again.clone());
    podman_ok(&["kube", "play", "--network", &network, &p(&kube_again)]);
    let collector_ip = pod_ip(&service, &network);
    answers_200(&collector_ip, "/readyz", diag);
    let again = auditor.events_when(&collector_ip, want.len(), diag);
    assert_eq!(again.len(), want.len(), "nothing stored twice");
    assert_eq!(
        again.into_iter().collect::<HashSet<_>>(),
        want,
        "the recreated collector pod holds the same events"
    );

    drop(guard);
    let left = podman(&["volume", "ls", "-q", "--filter", &format!("name={unique}")]);
    assert_eq!(stdout(&left).trim(), "", "volumes left behind");
    let pods = podman(&["pod", "ps", "-q", "--filter", &format!("name={unique}")]);
    assert_eq!(stdout(&pods).trim(), "", "pods left behind");
    let secrets = podman(&["secret", "ls", "--format", "{{.Name}}"]);
    assert!(!stdout(&secrets).contains(&unique), "secrets left behind");
    let networks = podman(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(!stdout(&networks).contains(&unique), "network left behind");
    assert!(
        !podman(&["image", "exists", &tag]).status.success(),
        "image left behind"
    );
    eprintln!(
        "kube play test: {} events from the agent pod in the collector pod; {:.1} s wall",
        want.len(),
        started.elapsed().as_secs_f64()
    );
}
