//! A `nats-server` for the benchmarks' NATS sink: started on loopback, on a port it picks
//! itself (and writes to a ports file, read here), stopped when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `nats-server`; killed when dropped.
pub(crate) struct NatsServer {
    child: Child,
    /// Its client URL (`nats://127.0.0.1:PORT`).
    pub(crate) url: String,
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `nats-server` (from `PATH`) with its ports file and log in `dir`.
pub(crate) fn start(dir: &Path) -> anyhow::Result<NatsServer> {
    let ports = dir.join("nats-ports");
    std::fs::create_dir_all(&ports)?;
    let log = std::fs::File::create(dir.join("nats-server.log"))?;
    let child = Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", "-1", "--ports_file_dir"])
        .arg(&ports)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!(
                "--sink nats needs nats-server on PATH (Debian's package nats-server): {e}"
            )
        })?;
    let mut server = NatsServer {
        child,
        url: String::new(),
    };
    let file = ports.join(format!("nats-server_{}.ports", server.child.id()));
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(&file)
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(url) = v["nats"][0].as_str()
        {
            server.url = url.to_owned();
            return Ok(server);
        }
        if let Some(status) = server.child.try_wait()? {
            anyhow::bail!(
                "nats-server exited ({status}); see {}",
                dir.join("nats-server.log").display()
            );
        }
        if Instant::now() > end {
            anyhow::bail!("nats-server wrote no ports file within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
