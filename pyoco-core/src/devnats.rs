//! Finding and starting a local nats-server for development (`pyoco-gateway up --with-nats`)
//! and tests. pyoco needs nats-server ≥ 2.10 (async-nats cannot create KV buckets on 2.9).
//!
//! Lookup order: `PYOCO_NATS_SERVER`, `.tools/nats/bin/nats-server` in the current directory
//! or any parent, the repository this crate was built from, then `PATH`.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::backoff::Backoff;

/// Why a local server could not be started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DevNatsError {
    #[error(
        "no nats-server >= 2.10 found; run scripts/install-nats.sh or set PYOCO_NATS_SERVER=/path/to/nats-server"
    )]
    NotFound,
    #[error("NATS port {0} is already in use: stop the other server or choose another port")]
    PortInUse(SocketAddr),
    #[error("could not start {bin}: {message}")]
    Spawn { bin: String, message: String },
    #[error(
        "nats-server did not accept connections on {0} within 10 s (see nats-server.log in its store directory)"
    )]
    StartTimeout(SocketAddr),
}

/// True when `bin --version` reports 2.10 or newer.
pub fn is_recent_enough(bin: &Path) -> bool {
    let Ok(out) = Command::new(bin).arg("--version").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    // "nats-server: v2.15.1"
    let Some(v) = text.split_whitespace().find_map(|w| {
        w.strip_prefix('v')
            .filter(|r| r.starts_with(|c: char| c.is_ascii_digit()))
    }) else {
        return false;
    };
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    major > 2 || (major == 2 && minor >= 10)
}

/// The candidate locations, in lookup order.
fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(p) = std::env::var("PYOCO_NATS_SERVER") {
        out.push(PathBuf::from(p));
    }
    let tools = Path::new(".tools/nats/bin/nats-server");
    if let Ok(cwd) = std::env::current_dir() {
        out.extend(cwd.ancestors().map(|d| d.join(tools)));
    }
    if let Some(repo) = Path::new(env!("CARGO_MANIFEST_DIR")).parent() {
        out.push(repo.join(tools));
    }
    if let Some(path) = std::env::var_os("PATH") {
        out.extend(std::env::split_paths(&path).map(|d| d.join("nats-server")));
    }
    out
}

/// Finds a usable nats-server binary.
pub fn find_nats_server() -> Option<PathBuf> {
    candidates().into_iter().find(|c| is_recent_enough(c))
}

/// A nats-server child process, stopped on drop.
#[derive(Debug)]
pub struct LocalNats {
    child: Option<Child>,
    pub addr: SocketAddr,
}

impl LocalNats {
    /// Starts `nats-server -js` on `addr` with its store in `store_dir` and waits until it
    /// accepts connections.
    pub fn start(addr: SocketAddr, store_dir: &Path) -> Result<LocalNats, DevNatsError> {
        let bin = find_nats_server().ok_or(DevNatsError::NotFound)?;
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Err(DevNatsError::PortInUse(addr));
        }
        std::fs::create_dir_all(store_dir).map_err(|e| DevNatsError::Spawn {
            bin: bin.display().to_string(),
            message: format!("{}: {e}", store_dir.display()),
        })?;
        // The server's own log goes next to its store, out of the user's terminal.
        let log_path = store_dir.join("nats-server.log");
        let log = std::fs::File::create(&log_path)
            .map(Stdio::from)
            .map_err(|e| DevNatsError::Spawn {
                bin: bin.display().to_string(),
                message: format!("{}: {e}", log_path.display()),
            })?;
        let child = Command::new(&bin)
            .args([
                "-a",
                &addr.ip().to_string(),
                "-p",
                &addr.port().to_string(),
                "-js",
                "-sd",
            ])
            .arg(store_dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| DevNatsError::Spawn {
                bin: bin.display().to_string(),
                message: e.to_string(),
            })?;
        let mut nats = LocalNats {
            child: Some(child),
            addr,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        // The server is usually ready within ~25 ms: poll fast first, then back off.
        let poll = Backoff::new(Duration::from_millis(10), 2.0, Duration::from_millis(200));
        let mut attempt = 0;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
            if Instant::now() > deadline {
                nats.stop();
                return Err(DevNatsError::StartTimeout(addr));
            }
            attempt += 1;
            std::thread::sleep(poll.jittered(attempt));
        }
        Ok(nats)
    }

    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Stops the server: SIGTERM, then SIGKILL after 5 s.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(5));
        }
    }
}

/// Stops a child process: SIGTERM (so it can shut down cleanly), then SIGKILL if it is still
/// running after `grace`; reaps it either way.
pub fn terminate(child: &mut Child, grace: Duration) {
    crate::shutdown::terminate_process(child.id());
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().ok();
    child.wait().ok();
}

impl Drop for LocalNats {
    fn drop(&mut self) {
        self.stop();
    }
}
