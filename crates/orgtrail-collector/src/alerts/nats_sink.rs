//! The NATS sink (`[[alerts.nats]]`): each alert published to a subject as one message, its
//! body the alert's JSON payload, its headers naming it:
//!
//! | header | value |
//! |---|---|
//! | `Nats-Msg-Id` | the alert id: JetStream drops a redelivery within the stream's duplicate window |
//! | `Orgtrail-Alert-Id` | the alert id |
//! | `Orgtrail-Rule-Id` | the rule's id |
//! | `Content-Type` | `application/json` |
//!
//! The alerts pending for the sink are published as a batch (up to 256, in outbox order), as
//! the file sink writes them: an alert counts as taken once the server has it: the batch's
//! publishes are followed by one flush (a PING answered by the server's PONG, which it sends
//! after it processed the messages before it), or, with `jetstream = true`, once a stream
//! stored each message and acknowledged it. Either must happen within `publish_timeout_ms`;
//! otherwise the batch failed and the deliverer publishes it again later, whole, with the same
//! alert ids (so a receiver may see an alert of a failed batch twice: drop it by its id, as
//! JetStream does within its duplicate window). Core NATS acknowledges nothing per message: a subject the
//! credentials may not publish to is answered by an asynchronous `-ERR` (logged here, at
//! error), and a message no one subscribes to is dropped by the server. Use JetStream for a
//! per-message acknowledgement.
//!
//! The connection is opened on the first alert and kept; the client reconnects by itself when
//! the server goes away, and while it is disconnected a publish fails at once (nothing is
//! queued for later, so a long outage does not pile up copies of one alert). Secrets (token,
//! password, nkey seed, credentials) are read from their files when the sink is created and
//! never logged.

use std::path::Path;
use std::time::Duration;

use async_nats::{ConnectOptions, HeaderMap, ServerAddr};
use orgtrail_crypto::tls::rustls;

use crate::config::NatsSinkConfig;

/// How the sink authenticates.
enum Auth {
    None,
    Token(String),
    UserPassword(String, String),
    NkeySeed(String),
    /// The contents of a `.creds` file.
    Creds(String),
}

/// One configured NATS sink and its connection.
pub(crate) struct NatsSink {
    name: String,
    urls: Vec<ServerAddr>,
    subject: String,
    auth: Auth,
    tls: Option<rustls::ClientConfig>,
    connect_timeout: Duration,
    publish_timeout: Duration,
    jetstream: bool,
    /// Opened on the first alert, then kept (the client reconnects by itself).
    client: tokio::sync::Mutex<Option<async_nats::Client>>,
}

impl std::fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No secrets.
        f.debug_struct("NatsSink")
            .field("name", &self.name)
            .field("subject", &self.subject)
            .field("jetstream", &self.jetstream)
            .finish_non_exhaustive()
    }
}

/// Reads a secret file: its contents without the final line break; empty is refused.
fn secret(key: &str, path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{key}: {}: cannot read it: {e}", path.display()))?;
    let text = text.trim_end_matches(['\n', '\r']).to_owned();
    if text.trim().is_empty() {
        return Err(format!("{key}: {} is empty", path.display()));
    }
    Ok(text)
}

/// A subject to publish to: dot-separated tokens, none empty, no wildcards or white space.
fn subject_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("subject: give one, e.g. \"orgtrail.alerts\"".into());
    }
    if s.split('.').any(str::is_empty) {
        return Some(format!(
            "subject {s:?}: an empty token (a leading, trailing or double '.')"
        ));
    }
    if s.chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '*' | '>'))
    {
        return Some(format!(
            "subject {s:?}: no wildcards ('*', '>') or white space in a subject to publish to"
        ));
    }
    None
}

fn parse_urls(urls: &[String]) -> Result<Vec<ServerAddr>, Vec<String>> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    if urls.is_empty() {
        problems.push("urls: give at least one, e.g. [\"nats://127.0.0.1:4222\"]".into());
    }
    for u in urls {
        match u.parse::<ServerAddr>() {
            Ok(a) if matches!(a.scheme(), "nats" | "tls") && !a.host().is_empty() => {
                if a.has_user_pass() {
                    problems.push(format!(
                        "urls: {:?} carries a user or password: use user and password_file",
                        a.host()
                    ));
                } else {
                    out.push(a);
                }
            }
            Ok(_) => problems.push(format!(
                "urls: {u:?}: write nats://HOST:PORT or tls://HOST:PORT"
            )),
            Err(e) => problems.push(format!(
                "urls: {u:?}: {e}: write nats://HOST:PORT or tls://HOST:PORT"
            )),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Every problem of a `[[alerts.nats]]` table, without connecting: its URLs and subject, one
/// way to authenticate, every secret and certificate file readable (and the TLS files
/// usable), the timeouts in range.
pub(crate) fn problems(cfg: &NatsSinkConfig) -> Vec<String> {
    match NatsSink::new(cfg) {
        Ok(_) => Vec::new(),
        Err(p) => p,
    }
}

/// The accepted range of the timeouts, milliseconds.
const TIMEOUT_MS: std::ops::RangeInclusive<u64> = 1..=600_000;

impl NatsSink {
    /// Checks the configuration and reads its secrets and TLS files; connects later, on the
    /// first alert. Every problem at once, each naming its key (and file).
    pub(crate) fn new(cfg: &NatsSinkConfig) -> Result<NatsSink, Vec<String>> {
        let mut problems = Vec::new();
        let urls = parse_urls(&cfg.urls).unwrap_or_else(|p| {
            problems.extend(p);
            Vec::new()
        });
        if let Some(p) = subject_problem(&cfg.subject) {
            problems.push(p);
        }
        for (key, v) in [
            ("connect_timeout_ms", cfg.connect_timeout_ms),
            ("publish_timeout_ms", cfg.publish_timeout_ms),
        ] {
            if !TIMEOUT_MS.contains(&v) {
                problems.push(format!(
                    "{key} = {v} is out of range: give 1 to 600000 (10 minutes)"
                ));
            }
        }
        let ways = [
            cfg.token_file.is_some(),
            cfg.user.is_some() || cfg.password_file.is_some(),
            cfg.nkey_seed_file.is_some(),
            cfg.creds_file.is_some(),
        ]
        .iter()
        .filter(|w| **w)
        .count();
        let mut auth = Auth::None;
        if ways > 1 {
            problems.push(
                "give one way to authenticate: token_file, user and password_file, nkey_seed_file or creds_file"
                    .into(),
            );
        } else {
            let mut read =
                |key: &str, path: &Path| secret(key, path).map_err(|p| problems.push(p)).ok();
            if let Some(f) = &cfg.token_file {
                auth = read("token_file", f).map_or(Auth::None, Auth::Token);
            } else if let Some(f) = &cfg.nkey_seed_file {
                auth = read("nkey_seed_file", f)
                    .map_or(Auth::None, |s| Auth::NkeySeed(s.trim().to_owned()));
            } else if let Some(f) = &cfg.creds_file {
                // Its parser wants the line break after the last line.
                auth = read("creds_file", f).map_or(Auth::None, |c| Auth::Creds(c + "\n"));
            } else if cfg.user.is_some() || cfg.password_file.is_some() {
                match (&cfg.user, &cfg.password_file) {
                    (Some(u), Some(f)) if !u.is_empty() => {
                        if let Some(p) = read("password_file", f) {
                            auth = Auth::UserPassword(u.clone(), p);
                        }
                    }
                    (Some(_), Some(_)) => problems.push("user: empty".into()),
                    (Some(_), None) => problems.push("user needs password_file".into()),
                    (None, _) => problems.push("password_file needs user".into()),
                }
            }
        }
        if let (Auth::NkeySeed(seed), Some(f)) = (&auth, &cfg.nkey_seed_file)
            && nkeys::KeyPair::from_seed(seed).is_err()
        {
            // The error could quote the seed: not shown.
            problems.push(format!(
                "nkey_seed_file: {}: not an nkey seed (a line of 58 characters starting with S)",
                f.display()
            ));
        }
        if let (Auth::Creds(text), Some(f)) = (&auth, &cfg.creds_file)
            && let Err(e) = ConnectOptions::with_credentials(text)
        {
            problems.push(format!(
                "creds_file: {}: not a NATS credentials file: {e}",
                f.display()
            ));
        }
        let tls_wanted = cfg.ca_file.is_some()
            || cfg.cert_file.is_some()
            || cfg.key_file.is_some()
            || urls.iter().any(ServerAddr::tls_required);
        let mut tls = None;
        if tls_wanted {
            let own = match (&cfg.cert_file, &cfg.key_file) {
                (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
                (Some(_), None) => {
                    problems.push("cert_file needs key_file".into());
                    None
                }
                (None, Some(_)) => {
                    problems.push("key_file needs cert_file".into());
                    None
                }
                (None, None) => None,
            };
            match orgtrail_crypto::tls::external_client_config(cfg.ca_file.as_deref(), own) {
                Ok(c) => tls = Some(c),
                Err(e) => problems.push(format!("TLS: {e}")),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(NatsSink {
            name: cfg.name.clone(),
            urls,
            subject: cfg.subject.clone(),
            auth,
            tls,
            connect_timeout: Duration::from_millis(cfg.connect_timeout_ms),
            publish_timeout: Duration::from_millis(cfg.publish_timeout_ms),
            jetstream: cfg.jetstream,
            client: tokio::sync::Mutex::new(None),
        })
    }

    fn options(&self) -> Result<ConnectOptions, String> {
        let mut o = match &self.auth {
            Auth::None => ConnectOptions::new(),
            Auth::Token(t) => ConnectOptions::with_token(t.clone()),
            Auth::UserPassword(u, p) => {
                ConnectOptions::with_user_and_password(u.clone(), p.clone())
            }
            Auth::NkeySeed(s) => ConnectOptions::with_nkey(s.clone()),
            Auth::Creds(c) => ConnectOptions::with_credentials(c)
                .map_err(|e| format!("the credentials file cannot be used: {e}"))?,
        };
        if let Some(tls) = &self.tls {
            o = o.require_tls(true).tls_client_config(tls.clone());
        }
        let name = self.name.clone();
        Ok(o.name("orgtrail-collector")
            .connection_timeout(self.connect_timeout)
            .event_callback(move |event| {
                let name = name.clone();
                async move { log_event(&name, event) }
            }))
    }

    /// The connection, opened if it is not yet.
    async fn client(&self) -> Result<async_nats::Client, String> {
        // An async lock, held while connecting: one connection, however many callers.
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let options = self.options()?;
        let connect = options.connect(self.urls.clone());
        let client = match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(format!("cannot connect: {e}")),
            Err(_) => {
                return Err(format!(
                    "cannot connect within {} ms",
                    self.connect_timeout.as_millis()
                ));
            }
        };
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Publishes a batch of alerts (body, alert id, rule id), in order; `Ok` once the server
    /// (or, with JetStream, a stream) has every one of them. Core NATS: every message is
    /// published, then one flush covers them all (the server answers the PING after it
    /// processed what came before it). JetStream: every message is published, then each
    /// acknowledgement is awaited. The whole batch must be taken within `publish_timeout_ms`;
    /// a batch that failed is published again whole, under the same alert ids.
    pub(crate) async fn send_batch(
        &self,
        alerts: &[(bytes::Bytes, &str, &str)],
    ) -> Result<(), String> {
        let client = self.client().await?;
        if client.connection_state() != async_nats::connection::State::Connected {
            // The client reconnects by itself; nothing is queued meanwhile.
            return Err("not connected to the NATS server (reconnecting)".into());
        }
        let message = |alert_id: &str, rule: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", alert_id);
            headers.insert("Orgtrail-Alert-Id", alert_id);
            headers.insert("Orgtrail-Rule-Id", rule);
            headers.insert("Content-Type", "application/json");
            headers
        };
        let publish = async {
            if self.jetstream {
                let mut js = async_nats::jetstream::new(client.clone());
                js.set_timeout(self.publish_timeout);
                let mut acks = Vec::with_capacity(alerts.len());
                for (body, alert_id, rule) in alerts {
                    let ack = js
                        .publish_with_headers(
                            self.subject.clone(),
                            message(alert_id, rule),
                            body.clone(),
                        )
                        .await
                        .map_err(|e| format!("JetStream publish failed: {e}"))?;
                    acks.push((*alert_id, ack));
                }
                for (alert_id, ack) in acks {
                    let ack = ack
                        .await
                        .map_err(|e| format!("JetStream did not acknowledge: {e}"))?;
                    if ack.duplicate {
                        tracing::debug!(sink = %self.name, alert = %alert_id, stream = %ack.stream, "JetStream already had this alert");
                    }
                }
                Ok(())
            } else {
                for (body, alert_id, rule) in alerts {
                    client
                        .publish_with_headers(
                            self.subject.clone(),
                            message(alert_id, rule),
                            body.clone(),
                        )
                        .await
                        .map_err(|e| format!("publish failed: {e}"))?;
                }
                client
                    .flush()
                    .await
                    .map_err(|e| format!("flush failed: {e}"))
            }
        };
        match tokio::time::timeout(self.publish_timeout, publish).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "not taken within {} ms",
                self.publish_timeout.as_millis()
            )),
        }
    }
}

fn log_event(sink: &str, event: async_nats::Event) {
    use async_nats::Event;
    match event {
        Event::Connected => tracing::info!(sink, "connected to NATS"),
        Event::Disconnected => tracing::warn!(sink, "NATS connection lost; reconnecting"),
        Event::LameDuckMode => tracing::info!(sink, "the NATS server is entering lame duck mode"),
        Event::ServerError(e) => {
            tracing::error!(sink, error = %e, "the NATS server reported an error")
        }
        Event::ClientError(e) => tracing::warn!(sink, error = %e, "NATS client error"),
        Event::SlowConsumer(_) | Event::Draining | Event::Closed => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A sink table: `extra` lines, over a name, URL and subject given unless `extra` does.
    fn cfg(extra: &str) -> NatsSinkConfig {
        let mut text = String::from("name = \"bus\"\n");
        if !extra.contains("urls =") {
            text.push_str("urls = [\"nats://127.0.0.1:4222\"]\n");
        }
        if !extra.contains("subject =") {
            text.push_str("subject = \"orgtrail.alerts\"\n");
        }
        text.push_str(extra);
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn a_plain_sink_is_valid_and_its_defaults_are_set() {
        let c = cfg("");
        assert!(problems(&c).is_empty(), "{:?}", problems(&c));
        assert_eq!(c.connect_timeout_ms, 5_000);
        assert_eq!(c.publish_timeout_ms, 10_000);
        assert!(!c.jetstream);
    }

    #[test]
    fn a_missing_secret_file_refuses_naming_it() {
        let p = problems(&cfg("token_file = \"/nonexistent/nats.token\"\n"));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("token_file: /nonexistent/nats.token: cannot read it"),
            "{p:?}"
        );
        let p = problems(&cfg("user = \"u\"\npassword_file = \"/nonexistent/pw\"\n"));
        assert!(p[0].starts_with("password_file: /nonexistent/pw"), "{p:?}");
    }

    #[test]
    fn secrets_are_read_without_their_line_break_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "s3cret\n").unwrap();
        let s = NatsSink::new(&cfg(&format!("token_file = {:?}\n", f))).unwrap();
        assert!(matches!(&s.auth, Auth::Token(t) if t == "s3cret"));
        assert!(!format!("{s:?}").contains("s3cret"));
        std::fs::write(&f, "\n").unwrap();
        let p = problems(&cfg(&format!("token_file = {:?}\n", f)));
        assert!(p[0].contains("is empty"), "{p:?}");
    }

    #[test]
    fn bad_urls_subjects_and_auth_combinations_are_named() {
        let p = problems(&cfg("urls = [\"http://x:1\", \"nats://u:p@h:1\"]\n"));
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("write nats://HOST:PORT"), "{p:?}");
        assert!(p[1].contains("use user and password_file"), "{p:?}");
        assert!(problems(&cfg("urls = []\n"))[0].contains("at least one"));
        for bad in ["orgtrail.*", "a..b", "a.>", "with space", ".a"] {
            let p = problems(&cfg(&format!("subject = {bad:?}\n")));
            assert_eq!(p.len(), 1, "{bad}: {p:?}");
            assert!(p[0].starts_with("subject"), "{p:?}");
        }
        let p = problems(&cfg("user = \"u\"\n"));
        assert_eq!(p, vec!["user needs password_file".to_string()]);
        let p = problems(&cfg("user = \"u\"\ntoken_file = \"t\"\n"));
        assert!(p[0].starts_with("give one way to authenticate"), "{p:?}");
        let p = problems(&cfg("cert_file = \"c.pem\"\n"));
        assert!(p.iter().any(|m| m == "cert_file needs key_file"), "{p:?}");
        let p = problems(&cfg("publish_timeout_ms = 0\n"));
        assert!(
            p[0].starts_with("publish_timeout_ms = 0 is out of range"),
            "{p:?}"
        );
    }

    /// The example seed of async-nats' documentation (not a secret of anyone's).
    const SEED: &str = "SUAIO3FHUX5PNV2LQIIP7TZ3N4L7TX3W53MQGEIVYFIGA635OZCKEYHFLM";

    #[test]
    fn nkey_seeds_and_credentials_are_checked_without_showing_them() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("seed");
        std::fs::write(&f, format!("{SEED}\n")).unwrap();
        assert!(problems(&cfg(&format!("nkey_seed_file = {f:?}\n"))).is_empty());
        std::fs::write(
            &f,
            "SUAIO3FHUX5PNV2LQIIP7TZ3N4L7TX3W53MQGEIVYFIGA635OZCKEYHFLX\n",
        )
        .unwrap();
        let p = problems(&cfg(&format!("nkey_seed_file = {f:?}\n")));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("not an nkey seed") && !p[0].contains("SUAIO3"),
            "{p:?}"
        );
        let creds = dir.path().join("u.creds");
        std::fs::write(
            &creds,
            format!("-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJqd3QiLCJhbGciOiJlZDI1NTE5In0.e30.sig\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n{SEED}\n------END USER NKEY SEED------\n"),
        )
        .unwrap();
        let p = problems(&cfg(&format!("creds_file = {creds:?}\n")));
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn a_bad_credentials_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.creds");
        std::fs::write(&f, "not a creds file\n").unwrap();
        let p = problems(&cfg(&format!("creds_file = {:?}\n", f)));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("not a NATS credentials file"), "{p:?}");
    }
}
