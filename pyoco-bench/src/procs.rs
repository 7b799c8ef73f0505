//! The processes under test: a nats-server (started here or an existing one), the real
//! `pyoco-gateway` and `pyoco-worker` binaries from the bench's own target directory, each
//! a separate process so its memory is its own, read from `/proc/<pid>/status`.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;

/// A `pyoco-*` binary next to this executable (same target directory and profile).
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("cannot locate the pyoco-bench executable")?;
    let dir = me
        .parent()
        .context("the pyoco-bench executable has no parent directory")?;
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} not found next to pyoco-bench; build them together: cargo build --release -p pyoco-bench -p pyoco-gateway -p pyoco-worker",
            path.display()
        );
    }
    Ok(path)
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough on a quiet box).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("no free port")?;
    Ok(listener.local_addr()?.port())
}

/// Where NATS is: a server this bench started (stopped on drop) or one given by URL.
#[derive(Debug)]
pub struct Nats {
    pub url: String,
    pub version: String,
    /// The server's pid when this bench started it (for its CPU time).
    pub pid: Option<u32>,
    _local: Option<pyoco::devnats::LocalNats>,
}

impl Nats {
    /// Starts `nats-server -js` on a free port with its store under `dir`.
    pub fn start(dir: &Path) -> anyhow::Result<Nats> {
        let bin = pyoco::devnats::find_nats_server().context(
            "no nats-server >= 2.10 found: run scripts/install-nats.sh or set PYOCO_NATS_SERVER",
        )?;
        let version = server_version(&bin);
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let local = pyoco::devnats::LocalNats::start(addr, &dir.join("nats"))?;
        Ok(Nats {
            url: local.url(),
            version,
            pid: child_named("nats-server"),
            _local: Some(local),
        })
    }

    /// An existing server (its version is whatever it is; the bench does not ask).
    pub fn external(url: &str) -> Nats {
        Nats {
            url: url.to_string(),
            version: format!("nats-server at {url}"),
            pid: None,
            _local: None,
        }
    }
}

fn server_version(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// CPU time (user + system, all threads) a process has used so far, in seconds, from
/// `/proc/<pid>/stat` (clock ticks of 1/100 s, the Linux x86/arm default).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = text.get(text.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// The pid of this process's child named `comm` (e.g. the nats-server it started).
pub fn child_named(comm: &str) -> Option<u32> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let text = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let open = text.find('(')?;
            let close = text.rfind(')')?;
            let name = text.get(open + 1..close)?;
            let ppid = text.get(close + 1..)?.split_whitespace().nth(1)?;
            (name == comm && ppid == me).then_some(pid)
        })
}

/// Resident memory of a process, in MiB: now (`VmRSS`) and the peak so far (`VmHWM`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Memory {
    pub rss_mib: f64,
    pub peak_mib: f64,
}

/// A child process, stopped (SIGTERM, then SIGKILL) on drop; its stderr goes to a log file.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    /// Behind a mutex so liveness can be checked through a shared reference.
    child: std::sync::Mutex<Option<Child>>,
    log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, bin: &Path, args: &[String], log: PathBuf) -> anyhow::Result<Proc> {
        Proc::start(name, bin, args, &[], false, log)
    }

    /// [`Proc::spawn`] with extra environment variables, and stdout in the log too (the
    /// other systems of `--compare` log there).
    pub fn spawn_with(
        name: &str,
        bin: &Path,
        args: &[String],
        envs: &[(String, String)],
        log: PathBuf,
    ) -> anyhow::Result<Proc> {
        Proc::start(name, bin, args, envs, true, log)
    }

    /// [`Proc::spawn`] with extra environment variables (`PYOCO_*` settings).
    pub fn spawn_with_env(
        name: &str,
        bin: &Path,
        args: &[String],
        env: &[(String, String)],
        log: PathBuf,
    ) -> anyhow::Result<Proc> {
        Proc::start(name, bin, args, env, false, log)
    }

    fn start(
        name: &str,
        bin: &Path,
        args: &[String],
        envs: &[(String, String)],
        stdout_to_log: bool,
        log: PathBuf,
    ) -> anyhow::Result<Proc> {
        let file = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let out = if stdout_to_log {
            Stdio::from(file.try_clone()?)
        } else {
            Stdio::null()
        };
        let child = Command::new(bin)
            .args(args)
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::from(file))
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        Ok(Proc {
            name: name.to_string(),
            child: std::sync::Mutex::new(Some(child)),
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child
            .lock()
            .ok()
            .and_then(|c| c.as_ref().map(Child::id))
            .unwrap_or(0)
    }

    /// Fails when the process has exited (with its log's tail).
    pub fn check_alive(&self) -> anyhow::Result<()> {
        let exited = match self.child.lock() {
            Ok(mut c) => c.as_mut().and_then(|child| child.try_wait().ok().flatten()),
            Err(_) => None,
        };
        if let Some(status) = exited {
            bail!("{} exited ({status}):\n{}", self.name, self.log_tail());
        }
        Ok(())
    }

    /// `VmRSS` and `VmHWM` from `/proc/<pid>/status`.
    pub fn memory(&self) -> anyhow::Result<Memory> {
        let path = format!("/proc/{}/status", self.pid());
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        let field = |name: &str| -> Option<f64> {
            let line = text.lines().find(|l| l.starts_with(name))?;
            let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib / 1024.0)
        };
        Ok(Memory {
            rss_mib: field("VmRSS:").context("no VmRSS")?,
            peak_mib: field("VmHWM:").context("no VmHWM")?,
        })
    }

    /// The last lines of the process's stderr.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Sends `signal` (`KILL`, `STOP`, `CONT`, ...) with kill(1); false if it could not.
    pub fn signal(&self, signal: &str) -> bool {
        send_signal(self.pid(), signal)
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.get_mut().ok().and_then(Option::take) {
            pyoco::devnats::terminate(&mut child, Duration::from_secs(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends `signal` to `pid` with kill(1) (no unsafe code, no extra crate); false if it failed.
pub fn send_signal(pid: u32, signal: &str) -> bool {
    pid != 0
        && Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .is_ok_and(|s| s.success())
}
