//! A TCP proxy that can partition what goes through it: [`TcpProxy::cut`] stops moving bytes
//! both ways (connections stay open, nothing is lost or reset — a silent network partition,
//! as a pulled cable or a dropped route looks to both ends); [`TcpProxy::heal`] lets the
//! held bytes through again. Tests put it between one client and its nats-server.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running proxy; stops (and drops its connections) when dropped.
#[derive(Debug)]
pub struct TcpProxy {
    pub addr: SocketAddr,
    open: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on 127.0.0.1 and forwards every connection to `target`.
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("proxy bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("proxy addr: {e}"));
        let (open, _) = watch::channel(true);
        let gate = open.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let gate = gate.subscribe();
                connections.spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pump(cr, sw, gate.clone()), pump(sr, cw, gate));
                });
            }
        });
        TcpProxy { addr, open, task }
    }

    /// The URL of the proxy for a NATS client.
    pub fn nats_url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Stops moving bytes (both directions, every connection) until [`TcpProxy::heal`].
    pub fn cut(&self) {
        self.open.send_replace(false);
    }

    /// Lets bytes through again, the held ones first.
    pub fn heal(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to` while the gate is open; while it is shut, reads nothing (the sender's
/// bytes wait in the kernel buffers).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut gate: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if gate.wait_for(|open| *open).await.is_err() {
            return;
        }
        let n = tokio::select! {
            n = from.read(&mut buf) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            // Cut while waiting for bytes: stop reading until healed.
            _ = gate.wait_for(|open| !*open) => continue,
        };
        // Bytes read just before a cut are held until the heal.
        if gate.wait_for(|open| *open).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
