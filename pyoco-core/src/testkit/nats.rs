//! A real nats-server per test on a random port with its own store directory, cleaned up on
//! drop.
//!
//! The server binary is found through `PYOCO_NATS_SERVER`, then the repository's
//! `.tools/nats/bin/nats-server`, then `PATH` (only if ≥ 2.10). When none is found,
//! `scripts/install-nats.sh` is run once to install one. Without a server the test fails —
//! never skips — so CI can't go green without running anything.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::config::Config;

/// A running nats-server with JetStream, owned by one test.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

/// The repository root (this crate's parent directory).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Finds (or, via `scripts/install-nats.sh`, installs) a nats-server ≥ 2.10.
pub fn nats_server_binary() -> Result<PathBuf, String> {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            if let Some(found) = crate::devnats::find_nats_server() {
                return Ok(found);
            }
            let script = repo_root().join("scripts/install-nats.sh");
            let out = Command::new("bash")
                .arg(&script)
                .stderr(Stdio::inherit())
                .output()
                .map_err(|e| format!("could not run {}: {e}", script.display()))?;
            let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string());
            if out.status.success() && crate::devnats::is_recent_enough(&path) {
                Ok(path)
            } else {
                Err("no nats-server >= 2.10 found and scripts/install-nats.sh failed; set PYOCO_NATS_SERVER".into())
            }
        })
        .clone()
}

impl NatsServer {
    /// Starts a server on a random port. Panics with a clear message when no server binary can
    /// be had: a test that needs NATS must fail, not pass vacuously.
    pub fn start() -> NatsServer {
        let bin = nats_server_binary().unwrap_or_else(|e| panic!("{e}"));
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let mut server = NatsServer {
            child: None,
            dir,
            bin,
            port: 0,
        };
        server.spawn(None);
        server
    }

    fn spawn(&mut self, port: Option<u16>) {
        let ports_dir = self.dir.path().join("ports");
        std::fs::create_dir_all(&ports_dir).ok();
        for entry in std::fs::read_dir(&ports_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            std::fs::remove_file(entry.path()).ok();
        }
        let port_arg = port.map(|p| p.to_string()).unwrap_or_else(|| "-1".into());
        let child = Command::new(&self.bin)
            .args(["-a", "127.0.0.1", "-p", &port_arg, "-js", "-sd"])
            .arg(self.dir.path().join("store"))
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", self.bin.display()));
        let deadline = Instant::now() + Duration::from_secs(10);
        let file = ports_dir.join(format!("nats-server_{}.ports", child.id()));
        self.child = Some(child);
        loop {
            if let Some(p) = std::fs::read_to_string(&file)
                .ok()
                .and_then(|t| parse_port(&t))
            {
                self.port = p;
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not write its ports file in 10 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Default config pointing at this server, with short intervals suited to tests.
    pub fn config(&self) -> Config {
        Config {
            nats_url: self.url(),
            ..Config::default()
        }
    }

    /// The server's process id while it runs (to pause it with SIGSTOP, say).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server (SIGKILL), keeping its store.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// Starts the server again on the same port and store directory.
    pub fn restart(&mut self) {
        self.kill();
        let port = self.port;
        self.spawn(Some(port));
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn parse_port(text: &str) -> Option<u16> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let url = v.get("nats")?.get(0)?.as_str()?;
    url.rsplit(':').next()?.parse().ok()
}
