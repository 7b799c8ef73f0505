//! Child processes of a test (the built binaries, a Python gateway): killed on drop, even when
//! the test panics, so a failed test leaves nothing running.

use std::net::TcpListener;
use std::process::ExitStatus;
use std::time::Duration;

use super::wait_for;

/// A spawned child process, killed (SIGKILL) and reaped on drop unless it already exited.
/// Derefs to the [`std::process::Child`], so a test can still signal, wait or kill it.
#[derive(Debug)]
pub struct Spawned(pub std::process::Child);

impl Spawned {
    /// Sends SIGTERM, what an operator's stop (or systemd, or Kubernetes) sends first; a
    /// signal that was not delivered shows as the process not exiting in [`Self::wait_exit`].
    pub fn terminate(&self) {
        crate::shutdown::terminate_process(self.0.id());
    }

    /// Waits until the process has exited (polling, at most `timeout`) and returns its status;
    /// `what` names it in the failure message.
    pub async fn wait_exit(&mut self, what: &str, timeout: Duration) -> ExitStatus {
        let child = &mut self.0;
        wait_for(&format!("{what} to exit"), timeout, || {
            let status = child
                .try_wait()
                .unwrap_or_else(|e| panic!("waiting for {what}: {e}"));
            async move { status }
        })
        .await
    }
}

impl std::ops::Deref for Spawned {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Spawned {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            self.0.kill().ok();
            self.0.wait().ok();
        }
    }
}

/// A TCP port that was free a moment ago, for a child process that must be told its port
/// (in-process servers bind port 0 instead).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// Runs the repository's `scripts/<script>` — an `install-*.sh` that installs a Python tool
/// into a git-ignored virtualenv when missing and prints its path last — and returns that
/// path. Panics when it fails: a test that needs the tool must fail, not pass vacuously.
pub fn python_tool(script: &str) -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(script);
    let out = std::process::Command::new("bash")
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("could not run {}: {e}", path.display()));
    let venv = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    assert!(
        out.status.success() && !venv.is_empty(),
        "{} failed ({}): the test needs it from PyPI",
        path.display(),
        out.status
    );
    std::path::PathBuf::from(venv)
}
