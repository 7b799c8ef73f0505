//! Test support: a real nats-server per test on a random port with its own store directory,
//! cleaned up on drop, plus in-process gateway and worker helpers.
//!
//! The server binary is found through `PYOCO_NATS_SERVER`, then the repository's
//! `.tools/nats/bin/nats-server`, then `PATH` (only if ≥ 2.10). When none is found,
//! `scripts/install-nats.sh` is run once to install one. Without a server the test fails —
//! never skips — so CI can't go green without running anything.

use std::net::SocketAddr;
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

/// A gateway served in-process on an ephemeral port.
#[cfg(feature = "gateway")]
#[derive(Debug)]
pub struct GatewayHandle {
    pub addr: SocketAddr,
    pub state: crate::gateway::GatewayState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

#[cfg(feature = "gateway")]
impl GatewayHandle {
    /// Binds 127.0.0.1:0 and serves; returns once NATS is connected (or after 10 s).
    pub async fn start(config: Config) -> GatewayHandle {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local_addr: {e}"));
        let state = crate::gateway::GatewayState::connect(config);
        // With the peer address, as `gateway::serve` does (the wheel history records it).
        let app = crate::gateway::router(state.clone())
            .into_make_service_with_connect_info::<SocketAddr>();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    rx.await.ok();
                })
                .await
                .ok();
        });
        state.wait_connected(Duration::from_secs(10)).await;
        GatewayHandle {
            addr,
            state,
            shutdown: Some(tx),
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            tx.send(()).ok();
        }
        (&mut self.task).await.ok();
    }
}

/// A worker running in-process until stopped.
#[derive(Debug)]
pub struct WorkerHandle {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), crate::Error>>,
}

impl WorkerHandle {
    /// Connects a worker and runs it in the background.
    pub async fn start(
        config: Config,
        registry: crate::Registry,
        worker_id: &str,
        tags: &[&str],
    ) -> WorkerHandle {
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        let worker = crate::Worker::connect(config, registry, worker_id, &tags)
            .await
            .unwrap_or_else(|e| panic!("worker connect: {e}"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(worker.run(async move {
            rx.await.ok();
        }));
        WorkerHandle {
            stop: Some(tx),
            task,
        }
    }

    /// Graceful stop (the worker ends STOPPED_GRACEFUL).
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            tx.send(()).ok();
        }
        (&mut self.task).await.ok();
    }
}

/// Waits until `check` returns `Some`, polling every 10 ms; panics after `timeout` with `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
