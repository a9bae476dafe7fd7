//! kill -9 loops: the collector, then the agent, then both alternately, are killed with SIGKILL
//! about ten times each while events flow. At the end the stored set is exactly the unique
//! input, byte for byte, `verify` finds nothing, and the agent's spool is drained (it exits
//! 0 under `--exit-when-drained` only then).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/org.rs"]
mod org;

use std::path::PathBuf;
use std::process::Child;

use org::{Collector, Log, Org, agent_drains, events, exact_and_verified, p, sigterm, spawn_agent};

const KILLS: usize = 10;

/// An agent configuration with small batches, so that every kill lands mid-stream.
fn agent_config(org: &Org, account: &str, source: &std::path::Path, port: u16) -> PathBuf {
    let cfg = org.path("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "account = \"{account}\"\ncollector = \"https://127.0.0.1:{port}\"\nserver_name = \"localhost\"\nspool_dir = \"spool\"\n[tls]\ncert = \"agent.pem\"\nkey = \"agent.key\"\nca = \"ca/ca.pem\"\n[retry]\ninitial_ms = 20\nmax_ms = 200\n[batch]\nmax_events = 200\nlinger_ms = 20\n[source]\ntype = \"jsonl\"\npath = \"{}\"\n",
            p(source)
        ),
    )
    .unwrap();
    cfg
}

struct Run {
    org: Org,
    want: std::collections::HashSet<String>,
    cfg: PathBuf,
    collector: Collector,
    log: Log,
    port: u16,
}

fn start(seed: u64, count: u64) -> Run {
    let org = Org::new();
    let (account, file, want) = events(&org, "a", count, seed);
    org.issue("agent", "agent", Some(&account));
    let mut collector = org.collector_with_log(0, "", true);
    let port = collector.port;
    let log = Log::of(&mut collector);
    let cfg = agent_config(&org, &account, &file, port);
    Run {
        org,
        want,
        cfg,
        collector,
        log,
        port,
    }
}

impl Run {
    /// Waits until the collector has stored `n` more batches: events are flowing.
    fn flowing(&mut self, n: usize) {
        for _ in 0..n {
            self.log.wait_for("batch stored", 60);
        }
    }

    fn kill_collector(&mut self) {
        self.collector.child.kill().unwrap();
        self.collector.child.wait().unwrap();
        // Same port: the agent reconnects to where it was.
        self.collector = self.org.collector_with_log(self.port, "", true);
        self.log = Log::of(&mut self.collector);
    }

    fn finish(mut self, agent: Child) {
        agent_drains(agent, 120);
        sigterm(&mut self.collector);
        exact_and_verified(&self.org, &self.want);
    }
}

fn kill_agent(agent: &mut Child) {
    agent.kill().unwrap();
    agent.wait().unwrap();
}

#[test]
fn ten_collector_kills_lose_nothing_and_store_nothing_twice() {
    let mut r = start(31, 30_000);
    let agent = spawn_agent(&r.cfg);
    for _ in 0..KILLS {
        r.flowing(3);
        r.kill_collector();
    }
    r.finish(agent);
}

#[test]
fn ten_agent_kills_lose_nothing_and_store_nothing_twice() {
    let mut r = start(32, 30_000);
    for _ in 0..KILLS {
        let mut agent = spawn_agent(&r.cfg);
        r.flowing(3);
        kill_agent(&mut agent);
    }
    let agent = spawn_agent(&r.cfg);
    r.finish(agent);
}

#[test]
fn collector_and_agent_killed_alternately_lose_nothing() {
    let mut r = start(33, 40_000);
    let mut agent = spawn_agent(&r.cfg);
    for i in 0..2 * KILLS {
        r.flowing(3);
        if i % 2 == 0 {
            r.kill_collector();
        } else {
            kill_agent(&mut agent);
            agent = spawn_agent(&r.cfg);
        }
    }
    r.finish(agent);
}
