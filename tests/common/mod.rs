//! Helpers shared by the end-to-end tests: run the real `orgtrail` binary.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// The `orgtrail` binary cargo built for these tests, kept away from the user's profiles:
/// HOME, XDG_CONFIG_HOME and ORGTRAIL_CONFIG point into the build's scratch directory, and the
/// `ORGTRAIL_*` connection variables of the caller's shell are cleared. A test of profiles
/// sets its own on the returned command.
pub(crate) fn orgtrail() -> Command {
    let home = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("orgtrail-test-home");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_orgtrail"));
    cmd.env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("ORGTRAIL_CONFIG", home.join(".config/orgtrail/config.toml"));
    for var in [
        "ORGTRAIL_PROFILE",
        "ORGTRAIL_COLLECTOR",
        "ORGTRAIL_CA",
        "ORGTRAIL_CERT",
        "ORGTRAIL_KEY",
        "ORGTRAIL_SERVER_NAME",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs `orgtrail ARGS` with `stdin` as standard input.
pub(crate) fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = orgtrail()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("orgtrail binary starts");
    let mut input = child.stdin.take().expect("stdin piped");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        // The child may exit before reading everything; that is its business.
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("orgtrail finishes");
    writer.join().expect("stdin writer");
    out
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The repository's tests/fixtures directory.
pub(crate) fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

pub(crate) fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).expect("gzip in memory");
    e.finish().expect("gzip in memory")
}

/// One HTTP/1.1 request on a fresh connection: (status, body).
pub(crate) fn http(addr: &str, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

pub(crate) mod fs;

/// A port free on 127.0.0.1 now, for a server a test starts later on it (a port that must be
/// known before its server runs: an agent started first, the README's own commands). Drawn at
/// random from 10000 up to the kernel's ephemeral range (`net.ipv4.ip_local_port_range`),
/// which the kernel never gives to a `:0` bind or an outgoing connection: a port taken from a
/// `:0` bind and released could be given to another test's connection before the server binds
/// it.
pub(crate) fn quiet_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    const LOW: u16 = 10_000;
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let high = start.max(LOW + 1_000);
    let mut x = std::hash::RandomState::new().build_hasher().finish();
    loop {
        // A 64-bit LCG step (Knuth's MMIX constants); the high bits pick the port.
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let port = LOW + ((x >> 33) % u64::from(high - LOW)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
