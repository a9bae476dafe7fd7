//! A webhook receiver for the end-to-end tests: a small HTTP/1.1 server on 127.0.0.1:0
//! (plain, or TLS with a given certificate) that checks each request's signature as the README
//! tells receivers to (HMAC-SHA-256 over "<timestamp>.<body>", computed here from SHA-256
//! alone, independently of orgtrail's code) and records what it took. It answers 2xx, or a
//! chosen failure status for the next N requests or for all of them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

/// One request the receiver took (answered 2xx).
#[derive(Debug, Clone)]
pub(crate) struct Taken {
    /// The `X-Orgtrail-Alert-Id` header.
    pub(crate) id: String,
    /// The body, parsed.
    pub(crate) body: serde_json::Value,
}

#[derive(Default)]
struct State {
    taken: Vec<Taken>,
    /// Requests refused for a bad or missing signature, with why.
    bad: Vec<String>,
    /// Every request seen, taken or not.
    requests: usize,
    /// When each request arrived.
    arrivals: Vec<std::time::Instant>,
}

struct Shared {
    secret: Vec<u8>,
    state: Mutex<State>,
    /// The next this many requests are answered `fail_status`.
    fail_next: AtomicUsize,
    /// Answered to every request while not 0 (after `fail_next` is used up).
    always: AtomicU16,
    fail_status: AtomicU16,
    /// Sent as `Retry-After: N` (seconds) with failure answers while not 0.
    retry_after: AtomicU64,
}

/// A running receiver (its threads end with the test process).
pub(crate) struct Receiver {
    addr: std::net::SocketAddr,
    tls: bool,
    shared: Arc<Shared>,
}

/// HMAC-SHA-256 (RFC 2104) from SHA-256.
pub(crate) fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

impl Receiver {
    /// A plain-HTTP receiver checking signatures with `secret`.
    pub(crate) fn start(secret: &[u8]) -> Receiver {
        Self::start_with(secret, None)
    }

    /// A receiver speaking TLS with `tls` when given.
    pub(crate) fn start_with(secret: &[u8], tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            secret: secret.to_vec(),
            state: Mutex::new(State::default()),
            fail_next: AtomicUsize::new(0),
            always: AtomicU16::new(0),
            fail_status: AtomicU16::new(500),
            retry_after: AtomicU64::new(0),
        });
        let s = shared.clone();
        let is_tls = tls.is_some();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let _ = conn.set_nodelay(true);
                let (s, tls) = (s.clone(), tls.clone());
                std::thread::spawn(move || match tls {
                    Some(cfg) => {
                        let Ok(server) = rustls::ServerConnection::new(cfg) else {
                            return;
                        };
                        serve(&s, rustls::StreamOwned::new(server, conn));
                    }
                    None => serve(&s, conn),
                });
            }
        });
        Receiver {
            addr,
            tls: is_tls,
            shared,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!(
            "{}://{}/orgtrail/alerts",
            if self.tls { "https" } else { "http" },
            self.addr
        )
    }

    /// Answers the next `n` requests with `status`.
    pub(crate) fn fail_next(&self, n: usize, status: u16) {
        self.shared.fail_status.store(status, Ordering::SeqCst);
        self.shared.fail_next.store(n, Ordering::SeqCst);
    }

    /// Answers every request with `status` (0: back to normal, 200).
    pub(crate) fn always(&self, status: u16) {
        self.shared.always.store(status, Ordering::SeqCst);
    }

    /// Sends `Retry-After: secs` with each failure answer (0: none).
    pub(crate) fn retry_after(&self, secs: u64) {
        self.shared.retry_after.store(secs, Ordering::SeqCst);
    }

    /// When each request arrived, in order.
    pub(crate) fn arrivals(&self) -> Vec<std::time::Instant> {
        self.shared.state.lock().unwrap().arrivals.clone()
    }

    /// What it took, in order.
    pub(crate) fn taken(&self) -> Vec<Taken> {
        self.shared.state.lock().unwrap().taken.clone()
    }

    /// Requests with a bad or missing signature.
    pub(crate) fn bad(&self) -> Vec<String> {
        self.shared.state.lock().unwrap().bad.clone()
    }

    /// Every request seen.
    pub(crate) fn requests(&self) -> usize {
        self.shared.state.lock().unwrap().requests
    }
}

fn respond(w: &mut impl Write, status: u16, retry_after: u64) -> std::io::Result<()> {
    let extra = if status >= 300 && retry_after > 0 {
        format!("Retry-After: {retry_after}\r\n")
    } else {
        String::new()
    };
    // One write: an answer written in pieces waits for the client's delayed ACK (Nagle's
    // algorithm), 40 ms or more per request.
    let answer = format!(
        "HTTP/1.1 {status} X\r\n{extra}Content-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
    );
    w.write_all(answer.as_bytes())?;
    w.flush()
}

/// Serves the requests of one connection (kept alive) until it closes.
fn serve(s: &Shared, stream: impl Read + Write) {
    let mut r = BufReader::new(stream);
    loop {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        assert!(line.starts_with("POST "), "a POST: {line:?}");
        let mut headers = std::collections::HashMap::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        let len: usize = headers["content-length"].parse().unwrap();
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let status = answer(s, &headers, &body);
        let retry_after = s.retry_after.load(Ordering::SeqCst);
        if respond(r.get_mut(), status, retry_after).is_err() {
            return;
        }
    }
}

/// Checks and records one request; the status to answer.
fn answer(s: &Shared, headers: &std::collections::HashMap<String, String>, body: &[u8]) -> u16 {
    let mut st = s.state.lock().unwrap();
    st.requests += 1;
    st.arrivals.push(std::time::Instant::now());
    if s.fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return s.fail_status.load(Ordering::SeqCst);
    }
    let always = s.always.load(Ordering::SeqCst);
    if always != 0 {
        return always;
    }
    // The README's recipe: HMAC-SHA-256(secret, "<timestamp>.<body>"), hex, after "sha256=";
    // the timestamp near now; the id header equal to the payload's id.
    let check = || -> Result<Taken, String> {
        let ts = headers
            .get("x-orgtrail-timestamp")
            .ok_or("no timestamp header")?;
        let sig = headers
            .get("x-orgtrail-signature")
            .ok_or("no signature header")?;
        let mut msg = ts.as_bytes().to_vec();
        msg.push(b'.');
        msg.extend_from_slice(body);
        let want: String = hmac_sha256(&s.secret, &msg)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if *sig != format!("sha256={want}") {
            return Err(format!("bad signature {sig}"));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let t: u64 = ts.parse().map_err(|_| "timestamp not a number")?;
        if t.abs_diff(now) > 300 {
            return Err(format!("timestamp {t} too far from {now}"));
        }
        if headers.get("content-type").map(String::as_str) != Some("application/json") {
            return Err("not application/json".into());
        }
        let id = headers
            .get("x-orgtrail-alert-id")
            .ok_or("no alert id header")?
            .clone();
        let body: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("body not JSON: {e}"))?;
        if body["id"] != id.as_str() {
            return Err(format!("alert id header {id} is not the payload's"));
        }
        Ok(Taken { id, body })
    };
    match check() {
        Ok(t) => {
            st.taken.push(t);
            200
        }
        Err(why) => {
            st.bad.push(why);
            401
        }
    }
}
