//! Reloading the rules while the collector runs: when a file of `[rules] dir` changes, and on
//! SIGHUP.
//!
//! The directory is polled (every `[rules] poll_ms`, 1 s by default): a SHA-256 over the
//! names and contents of the files a load would read (non-hidden `.toml` and `.json`). Polling
//! the contents, not watching for file-system events, sees every way a file is replaced: an
//! editor's rename over the old file, a Kubernetes ConfigMap's swapped `..data` symlink, a
//! network file system that sends no events, a change within one second of the last (which a
//! modification time can miss). A rule directory is small; reading it once a second costs
//! little. SIGHUP reloads at once, changed or not.
//!
//! A reload loads the whole set again (the directory and the packs) and checks it as a start
//! does: every file valid, ids unique, every rule's `actions` naming a configured sink. A set
//! with any problem is refused whole: the rules in force stay, each problem is logged at
//! error with its file and reason, and `orgtrail_collector_rules_reloads_total{outcome="refused"}`
//! counts it. A good set replaces the old one at once (`outcome="ok"`).
//!
//! Evaluation takes the set in force when it starts on a range of events past the watermark,
//! so the new rules apply to events evaluated after the swap: events already evaluated are not
//! evaluated again (a rule added now does not fire on the past), and alerts already recorded
//! are delivered even when their rule was removed.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use orgtrail_rules::{RuleFileError, RuleSet};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::config::RulesConfig;

/// The rules in force, as the evaluator and the deliverer read them: each takes the current
/// set (an `Arc`, cheap) when it starts a piece of work.
#[derive(Debug, Clone)]
pub(crate) struct LiveRules(watch::Receiver<Arc<RuleSet>>);

impl LiveRules {
    pub(crate) fn current(&self) -> Arc<RuleSet> {
        self.0.borrow().clone()
    }
}

/// The rules in force, starting with `set`, and the sender that swaps them.
pub(crate) fn live(set: RuleSet) -> (watch::Sender<Arc<RuleSet>>, LiveRules) {
    let (tx, rx) = watch::channel(Arc::new(set));
    (tx, LiveRules(rx))
}

/// What a load of `dir` would read: names and contents of its rule files. Blocking.
pub(crate) fn fingerprint(dir: Option<&Path>) -> [u8; 32] {
    let mut h = Sha256::new();
    if let Some(dir) = dir {
        match std::fs::read_dir(dir) {
            Ok(entries) => {
                let mut files: Vec<_> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| {
                        let hidden = p
                            .file_name()
                            .and_then(|n| n.to_str())
                            .is_none_or(|n| n.starts_with('.'));
                        let ext = p.extension().and_then(|x| x.to_str());
                        !hidden && matches!(ext, Some("toml" | "json"))
                    })
                    .collect();
                files.sort();
                for f in files {
                    h.update(f.as_os_str().as_encoded_bytes());
                    h.update([0]);
                    match std::fs::read(&f) {
                        Ok(b) => {
                            h.update((b.len() as u64).to_be_bytes());
                            h.update(&b);
                        }
                        Err(e) => h.update(format!("unreadable: {}", e.kind()).as_bytes()),
                    }
                    h.update([0]);
                }
            }
            Err(e) => h.update(format!("no directory: {}", e.kind()).as_bytes()),
        }
    }
    h.finalize().into()
}

/// The rules `[rules]` names, checked as a start checks them: loaded (see
/// [`super::load_rules`]), and every rule's actions naming one of `sinks`. Blocking.
pub(crate) fn load_checked(
    cfg: &RulesConfig,
    sinks: &[String],
) -> Result<RuleSet, Vec<RuleFileError>> {
    let set = super::load_rules(cfg)?;
    let mut problems = Vec::new();
    for r in &set.rules {
        for a in r.actions.iter().flatten() {
            if !sinks.contains(a) {
                problems.push(RuleFileError {
                    file: r.file.clone(),
                    reason: format!(
                        "rule {} sends to {a:?}, which no [alerts] sink is named",
                        r.id
                    ),
                });
            }
        }
    }
    if problems.is_empty() {
        Ok(set)
    } else {
        Err(problems)
    }
}

/// Reloads the rules on a change of their directory or on SIGHUP, until the collector stops.
#[derive(Debug)]
pub(crate) struct Reloader {
    cfg: RulesConfig,
    sinks: Vec<String>,
    tx: watch::Sender<Arc<RuleSet>>,
    metrics: Arc<crate::ops::Metrics>,
    /// The fingerprint of the directory as last loaded (or refused).
    seen: [u8; 32],
    hangup: Option<tokio::signal::unix::Signal>,
}

impl Reloader {
    /// `seen`: the directory's fingerprint taken before the rules in force were loaded (a
    /// change after it is then reloaded at the first poll). Installs the SIGHUP handler now,
    /// so that a SIGHUP right after the start is a reload, never the default exit. Call
    /// inside the runtime.
    pub(crate) fn new(
        cfg: RulesConfig,
        sinks: Vec<String>,
        tx: watch::Sender<Arc<RuleSet>>,
        metrics: Arc<crate::ops::Metrics>,
        seen: [u8; 32],
    ) -> Reloader {
        Reloader {
            cfg,
            sinks,
            tx,
            metrics,
            seen,
            hangup: hangup_signal(),
        }
    }

    pub(crate) async fn run(mut self, mut stopping: watch::Receiver<bool>) {
        let dir = self.cfg.dir.clone();
        let polling = dir.is_some() && self.cfg.poll_ms > 0;
        let mut tick = tokio::time::interval(Duration::from_millis(self.cfg.poll_ms.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let trigger = tokio::select! {
                () = hangup(&mut self.hangup) => "SIGHUP",
                _ = tick.tick(), if polling => "change",
                _ = stopping.changed() => return,
            };
            let d = dir.clone();
            let Ok(now) = tokio::task::spawn_blocking(move || fingerprint(d.as_deref())).await
            else {
                continue;
            };
            if trigger == "change" && now == self.seen {
                continue;
            }
            self.seen = now;
            self.reload(trigger).await;
        }
    }

    async fn reload(&self, trigger: &'static str) {
        let cfg = self.cfg.clone();
        let sinks = self.sinks.clone();
        let loaded = match tokio::task::spawn_blocking(move || load_checked(&cfg, &sinks)).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "the rules reload task failed");
                return;
            }
        };
        match loaded {
            Ok(set) => {
                let n = set.len();
                self.tx.send_replace(Arc::new(set));
                self.metrics.rules_reloaded(true);
                self.metrics.rules_loaded(n);
                tracing::info!(
                    trigger,
                    rules = n,
                    "rules reloaded: events evaluated from now on use them"
                );
            }
            Err(problems) => {
                for p in &problems {
                    tracing::error!(file = %p.file.display(), reason = %p.reason, "rule file refused");
                }
                self.metrics.rules_reloaded(false);
                tracing::warn!(
                    trigger,
                    problems = problems.len(),
                    rules = self.tx.borrow().len(),
                    "rules reload refused; the rules in force stay"
                );
            }
        }
    }
}

fn hangup_signal() -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot handle SIGHUP; rules reload on change only");
            None
        }
    }
}

/// Completes on the next SIGHUP (never without a handler).
async fn hangup(s: &mut Option<tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            if s.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

/// Without `[rules]`: a SIGHUP is logged and otherwise ignored (it must not stop the
/// collector, as its default action would). Installs the handler now; call inside the runtime.
pub(crate) fn ignore_hangups(mut stopping: watch::Receiver<bool>) {
    let mut s = hangup_signal();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = hangup(&mut s) => {
                    tracing::info!("SIGHUP: no [rules] configured, nothing to reload");
                }
                _ = stopping.changed() => return,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_fingerprint_follows_names_and_contents_of_rule_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let d = Some(dir.path());
        let empty = fingerprint(d);
        std::fs::write(dir.path().join("a.json"), "{}").unwrap();
        let one = fingerprint(d);
        assert_ne!(empty, one);
        assert_eq!(one, fingerprint(d), "stable");
        // Same size, other contents.
        std::fs::write(dir.path().join("a.json"), "[]").unwrap();
        assert_ne!(one, fingerprint(d));
        let two = fingerprint(d);
        // Files a load ignores change nothing.
        std::fs::write(dir.path().join(".hidden.json"), "x").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        assert_eq!(two, fingerprint(d));
        // A rename is a change.
        std::fs::rename(dir.path().join("a.json"), dir.path().join("b.json")).unwrap();
        assert_ne!(two, fingerprint(d));
        assert_ne!(fingerprint(Some(&dir.path().join("missing"))), empty);
    }

    #[test]
    fn a_rule_sending_to_an_unknown_sink_is_refused_naming_its_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("r.json"),
            r#"{"id": "r", "actions": ["pager"], "pattern": {"eventName": ["DeleteTrail"]}}"#,
        )
        .unwrap();
        let cfg = RulesConfig {
            dir: Some(dir.path().to_owned()),
            ..RulesConfig::default()
        };
        let e = load_checked(&cfg, &["log".into()]).unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].file, dir.path().join("r.json"));
        assert!(e[0].reason.contains("\"pager\""), "{}", e[0].reason);
        assert_eq!(load_checked(&cfg, &["pager".into()]).unwrap().len(), 1);
    }
}
