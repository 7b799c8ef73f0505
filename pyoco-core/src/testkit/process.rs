//! Child processes of a test (the built binaries, a Python gateway): killed on drop, even when
//! the test panics, so a failed test leaves nothing running.

use std::net::TcpListener;

/// A spawned child process, killed (SIGKILL) and reaped on drop unless it already exited.
/// Derefs to the [`std::process::Child`], so a test can still signal, wait or kill it.
#[derive(Debug)]
pub struct Spawned(pub std::process::Child);

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
