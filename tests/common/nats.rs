//! A real `nats-server` (Debian's, which `scripts/test-deps` installs) on loopback, for the
//! tests of the NATS alert sink: on a port of its choosing (`-p -1`), learnt from the ports
//! file it writes once it listens (`--ports_file_dir`), or on a given port (to start it again
//! where a client expects it). Its log goes to `DIR/nats-server.log`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct NatsServer {
    child: Option<Child>,
    pub(crate) port: u16,
    dir: PathBuf,
}

/// The server binary: on PATH, else where Debian puts it.
fn binary() -> PathBuf {
    let debian = PathBuf::from("/usr/sbin/nats-server");
    if debian.is_file() {
        debian
    } else {
        PathBuf::from("nats-server")
    }
}

impl NatsServer {
    /// Starts `nats-server -a 127.0.0.1` with `args` (e.g. `-js`, `--auth`, TLS flags) in
    /// `dir`, on `port` (None: any free port), and waits up to 60 s until it listens.
    pub(crate) fn start(dir: &Path, port: Option<u16>, args: &[&str]) -> NatsServer {
        let ports = dir.join("nats-ports");
        std::fs::create_dir_all(&ports).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("nats-server.log"))
            .unwrap();
        let port_arg = port.map_or_else(|| "-1".to_string(), |p| p.to_string());
        let child = Command::new(binary())
            .args(["-a", "127.0.0.1", "-p", &port_arg, "--ports_file_dir"])
            .arg(&ports)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("nats-server starts (scripts/test-deps installs it)");
        let file = ports.join(format!("nats-server_{}.ports", child.id()));
        let mut server = NatsServer {
            child: Some(child),
            port: 0,
            dir: dir.to_owned(),
        };
        let end = Instant::now() + Duration::from_secs(60);
        let text = loop {
            if let Ok(t) = std::fs::read_to_string(&file)
                && t.trim_end().ends_with('}')
            {
                break t;
            }
            if let Some(status) = server.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("nats-server exited ({status}); its log:\n{}", server.log());
            }
            assert!(
                Instant::now() < end,
                "nats-server wrote no ports file within 60 s; its log:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let url = v["nats"][0].as_str().unwrap();
        server.port = url.rsplit(':').next().unwrap().parse().unwrap();
        if let Some(p) = port {
            assert_eq!(server.port, p);
        }
        server
    }

    /// `nats://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("nats-server.log")).unwrap_or_default()
    }

    /// Stops the server cleanly (SIGTERM: JetStream's files are complete) and waits for it.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let term = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(term.success());
            let end = Instant::now() + Duration::from_secs(60);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > end {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("nats-server did not stop within 60 s");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
