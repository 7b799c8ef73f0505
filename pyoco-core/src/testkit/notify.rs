//! A `NOTIFY_SOCKET` a test owns: what systemd would receive from a `Type=notify` service.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A unix datagram socket in a temporary directory; pass [`NotifySocket::path`] to a child
/// process as `NOTIFY_SOCKET` and read its messages with [`NotifySocket::wait_for`].
#[derive(Debug)]
pub struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    /// Every message received so far, in order.
    pub received: Vec<String>,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    pub fn bind() -> NotifySocket {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap_or_else(|e| panic!("bind {path:?}: {e}"));
        NotifySocket {
            socket,
            path,
            received: Vec::new(),
            _dir: dir,
        }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Reads messages until one satisfies `pred` (returned) or `timeout` passes (panics).
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out after {timeout:?} waiting for {what}; got {:?}",
                self.received
            );
            self.socket
                .set_read_timeout(Some(left))
                .unwrap_or_else(|e| panic!("set_read_timeout: {e}"));
            if let Ok(n) = self.socket.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.received.push(msg.clone());
                if pred(&msg) {
                    return msg;
                }
            }
        }
    }
}
