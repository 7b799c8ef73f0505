//! The accept loop, with the limits `axum::serve` lacks: a client must send a request's
//! headers within `header_timeout` (the same timer closes keep-alive connections idle that
//! long, so trickling or parked sockets cannot pile up), and at most `max_connections` are
//! open at once — past that a new connection is closed at once rather than left in the
//! kernel's backlog, so file descriptors stay for NATS and for the clients already served.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::extract::Request;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Connection limits (`PYOCO_HTTP_HEADER_TIMEOUT_SEC`, `PYOCO_HTTP_MAX_CONNECTIONS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_timeout: Duration::from_secs(10),
            max_connections: default_max_connections(),
        }
    }
}

/// Three quarters of the soft file-descriptor limit, leaving the rest for NATS, wheel files
/// and the process itself; 1,024 when the limit cannot be read.
pub fn default_max_connections() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<usize>().ok())
        });
    match soft {
        Some(n) => (n / 4 * 3).max(64),
        None => 1024,
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and waits for
/// open requests (SSE streams included) to finish.
pub async fn serve_with_limits<F>(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: F,
) -> std::io::Result<()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    // HTTP/1.1 only, like the original's uvicorn. (hyper-util's auto builder first waits,
    // without any timeout, for the bytes that tell HTTP/1 from HTTP/2: a client that connects
    // and sends nothing would be kept forever.)
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    let mut last_refusal_log: Option<Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            if last_refusal_log.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
                tracing::warn!(
                    max = limits.max_connections,
                    "connection limit reached; closing new connections"
                );
                last_refusal_log = Some(Instant::now());
            }
            drop(stream);
            continue;
        };
        if let Err(e) = stream.set_nodelay(true) {
            // No Nagle delay for small SSE events (see BENCHMARKS.md); not fatal.
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            let app = app.clone();
            async move {
                let response = app.oneshot(req.map(axum::body::Body::new)).await;
                Ok::<_, Infallible>(match response {
                    Ok(r) => r,
                    Err(never) => match never {},
                })
            }
        });
        let builder = builder.clone();
        // No protocol upgrades: the API has no WebSocket or h2c route.
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn start(limits: ConnectionLimits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve_with_limits(listener, app, limits, async {
            rx.await.ok();
        }));
        (addr, tx)
    }

    async fn get_peer(addr: SocketAddr) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    /// True when the server closed the connection (EOF) within `within`.
    async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 256];
        loop {
            match tokio::time::timeout(within, s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue, // e.g. a 408 before the close
                Err(_) => return false,
            }
        }
    }

    #[tokio::test]
    async fn trickling_and_idle_connections_are_closed_after_the_header_timeout() {
        let limits = ConnectionLimits {
            header_timeout: Duration::from_millis(300),
            max_connections: 100,
        };
        let (addr, _stop) = start(limits).await;
        let mut trickling = Vec::new();
        for _ in 0..20 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /peer HTTP/1.1\r\nho").await.unwrap();
            trickling.push(s);
        }
        // Served meanwhile, with the peer address available to handlers.
        assert!(get_peer(addr).await.ends_with("127.0.0.1"));
        for s in &mut trickling {
            assert!(closed_within(s, Duration::from_secs(3)).await);
        }
        // So is a connection that never sends a byte.
        let mut silent = TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut silent, Duration::from_secs(3)).await);
        // A keep-alive connection left idle is closed by the same timer.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(closed_within(&mut idle, Duration::from_secs(3)).await);
    }

    #[tokio::test]
    async fn connections_past_the_limit_are_closed_and_slots_come_back() {
        let limits = ConnectionLimits {
            header_timeout: Duration::from_secs(30),
            max_connections: 3,
        };
        let (addr, _stop) = start(limits).await;
        let mut parked = Vec::new();
        for _ in 0..3 {
            parked.push(TcpStream::connect(addr).await.unwrap());
        }
        // Let the server accept the three before the fourth arrives.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut extra = TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut extra, Duration::from_secs(2)).await);
        drop(parked.pop());
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.ok();
            if out.starts_with("HTTP/1.1 200") {
                break;
            }
            assert!(Instant::now() < deadline, "the freed slot never came back");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[test]
    fn default_limit_leaves_room_below_the_fd_limit() {
        let n = default_max_connections();
        assert!(n >= 64);
    }
}
