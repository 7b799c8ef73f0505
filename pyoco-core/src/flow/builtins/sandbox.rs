//! The sandbox of `pyoco:python` inline scripts: bubblewrap (`bwrap`) with every namespace
//! unshared, so a script has
//!
//! - no network (a new network namespace with only its own loopback),
//! - a read-only view of the file system (`/` bound read-only, a fresh read-only `/tmp` and
//!   `/dev`, its own `/proc`) except a private `/tmp/work` (a size-limited tmpfs: its working
//!   and temporary directory),
//! - no inherited environment (`PATH`, `HOME`, `TMPDIR`, `LANG` only),
//! - no other processes in sight (a PID namespace), and it dies with its parent;
//! - and, as a worker running as root, the unprivileged uid/gid 65534 (`nobody`, through
//!   `setpriv`): root inside a user namespace would still own root's files such as
//!   `/etc/shadow`, so the uid itself must change.
//!
//! Resource limits (CPU time, processes, file size) are set by the script runner before the
//! script runs (`script_runner.py`), memory as before (`RLIMIT_AS`). The sandbox is probed
//! once (at worker start-up); when it cannot be set up, scripts are refused with the reason,
//! unless `PYOCO_SCRIPT_SANDBOX=off` turns it off.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::OnceCell;

/// The unprivileged uid and gid scripts run as when the worker is root (`nobody`/`nogroup`).
const SANDBOX_ID: &str = "65534";
/// The private working directory inside the sandbox.
pub(super) const WORK_DIR: &str = "/tmp/work";
/// Size of the private working directory (a tmpfs), and the largest file a script may write.
pub(super) const WORK_DIR_BYTES: u64 = 64 * 1024 * 1024;
/// Processes (threads included) a script may add: enough for a small pool of workers, too
/// few for a fork bomb.
pub(super) const EXTRA_PROCESSES: u64 = 64;

/// Whether and how scripts are sandboxed; the probe result is kept for the worker's life.
#[derive(Debug)]
pub struct ScriptSandbox {
    enabled: bool,
    probed: OnceCell<Result<Plan, String>>,
}

/// How to start a sandboxed process on this machine.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    bwrap: PathBuf,
    /// `setpriv` when the worker is root (scripts then run as 65534).
    setpriv: Option<PathBuf>,
}

impl ScriptSandbox {
    /// `enabled: false` is `PYOCO_SCRIPT_SANDBOX=off`: scripts run as plain child processes.
    pub fn new(enabled: bool) -> ScriptSandbox {
        ScriptSandbox {
            enabled,
            probed: OnceCell::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Probes the sandbox once by running `interpreter` in it: `Ok` when scripts can run
    /// sandboxed (or the sandbox is off), else why not.
    pub async fn probe(&self, interpreter: &str) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        self.plan(interpreter).await.map(|_| ())
    }

    pub(super) async fn plan(&self, interpreter: &str) -> Result<Plan, String> {
        self.probed.get_or_init(|| probe(interpreter)).await.clone()
    }
}

/// The worker's sandbox (`PYOCO_SCRIPT_SANDBOX`), probed with the scripts' interpreter; the
/// outcome is logged once.
pub async fn probe_at_start_up(enabled: bool) -> std::sync::Arc<ScriptSandbox> {
    let sandbox = ScriptSandbox::new(enabled);
    let interpreter = super::script::interpreter(enabled);
    match sandbox.probe(&interpreter).await {
        Ok(()) if enabled => {
            tracing::info!(interpreter, "pyoco:python scripts run sandboxed (bwrap)")
        }
        Ok(()) => {
            tracing::warn!("PYOCO_SCRIPT_SANDBOX=off: pyoco:python scripts run without a sandbox")
        }
        Err(e) => tracing::error!(
            error = %e,
            "pyoco:python scripts will be refused: the sandbox cannot be set up (PYOCO_SCRIPT_SANDBOX=off runs them without it)"
        ),
    }
    std::sync::Arc::new(sandbox)
}

async fn probe(interpreter: &str) -> Result<Plan, String> {
    let bwrap = which("bwrap").ok_or(
        "bubblewrap (bwrap) is not installed (Debian: apt-get install bubblewrap; scripts/install-bubblewrap.sh)",
    )?;
    let root = rustix::process::geteuid().is_root();
    let setpriv = match root {
        false => None,
        true => Some(which("setpriv").ok_or(
            "the worker runs as root and setpriv (util-linux) is missing to drop to uid 65534",
        )?),
    };
    let plan = Plan { bwrap, setpriv };
    let program = resolve(interpreter)
        .ok_or_else(|| format!("the Python interpreter '{interpreter}' was not found"))?;
    let mut command = plan.command(&program, &["-I", "-S", "-c", "print('sandboxed')"]);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(20), command.output())
        .await
        .map_err(|_| "the probe did not finish in 20 s".to_string())?
        .map_err(|e| format!("could not start {}: {e}", plan.bwrap.display()))?;
    if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "sandboxed" {
        return Ok(plan);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let why = stderr
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("no error output");
    Err(format!(
        "running '{interpreter}' in bwrap{} failed ({}): {why}",
        if root { " as uid 65534" } else { "" },
        out.status
    ))
}

impl Plan {
    /// `program args…` inside the sandbox. `program` must be an absolute path.
    pub(super) fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut command = match &self.setpriv {
            Some(setpriv) => {
                let mut c = Command::new(setpriv);
                c.args([
                    "--reuid",
                    SANDBOX_ID,
                    "--regid",
                    SANDBOX_ID,
                    "--clear-groups",
                    "--",
                ])
                .arg(&self.bwrap);
                c
            }
            None => Command::new(&self.bwrap),
        };
        let work_bytes = WORK_DIR_BYTES.to_string();
        command
            .args(["--unshare-all", "--die-with-parent", "--new-session"])
            .args(["--ro-bind", "/", "/"])
            .args(["--dev", "/dev", "--remount-ro", "/dev"])
            .args(["--proc", "/proc"])
            .args(["--tmpfs", "/tmp"])
            .args(["--size", &work_bytes, "--tmpfs", WORK_DIR])
            .args(["--remount-ro", "/tmp"])
            .arg("--clearenv")
            .args(["--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin"])
            .args(["--setenv", "HOME", WORK_DIR])
            .args(["--setenv", "TMPDIR", WORK_DIR])
            .args(["--setenv", "LANG", "C.UTF-8"])
            .args(["--chdir", WORK_DIR, "--"])
            .arg(program)
            .args(args)
            // bwrap itself must not see the worker's secrets either.
            .env_clear();
        command
    }

    /// The process limit for a script: counted per real uid across the machine, so as
    /// 65534 it is a fixed number (shared by scripts running at the same time) and as the
    /// worker's own uid it is what that uid already runs plus [`EXTRA_PROCESSES`].
    pub(super) fn process_limit(&self) -> u64 {
        if self.setpriv.is_some() {
            return EXTRA_PROCESSES;
        }
        tasks_of_uid(rustix::process::getuid().as_raw()) + EXTRA_PROCESSES
    }
}

/// Threads of `uid` on the machine (RLIMIT_NPROC counts threads).
fn tasks_of_uid(uid: u32) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut count = 0;
    for process in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(tasks) = std::fs::read_dir(process.path().join("task")) else {
            continue;
        };
        for task in tasks.flatten() {
            if task.metadata().is_ok_and(|m| m.uid() == uid) {
                count += 1;
            }
        }
    }
    count
}

/// `program` as an absolute path: itself if it has a `/`, else found on `PATH`.
pub(super) fn resolve(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        // Not canonicalized: a virtualenv's interpreter finds its environment by its path.
        let path = Path::new(program);
        let path = match path.is_absolute() {
            true => path.to_path_buf(),
            false => std::env::current_dir().ok()?.join(path),
        };
        return path.is_file().then_some(path);
    }
    which(program)
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}
