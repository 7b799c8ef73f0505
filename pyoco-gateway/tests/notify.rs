//! `pyoco-gateway up` under systemd's notify protocol: `READY=1` once listening,
//! `WATCHDOG=1` pings at half `WATCHDOG_USEC`, `STOPPING=1` on SIGTERM, then exit 0 — read
//! from a `NOTIFY_SOCKET` the test creates.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::process::{Command, Stdio};
use std::time::Duration;

use pyoco::testkit::{NatsServer, NotifySocket, Spawned, free_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_says_ready_pings_the_watchdog_and_says_stopping() {
    let server = NatsServer::start();
    let port = free_port();
    let mut notify = NotifySocket::bind();
    let mut child = Spawned(
        Command::new(env!("CARGO_BIN_EXE_pyoco-gateway"))
            .args([
                "up",
                "--port",
                &port.to_string(),
                "--nats-url",
                &server.url(),
            ])
            .env("PYOCO_LOAD_DOTENV", "0")
            .env("NOTIFY_SOCKET", notify.path())
            .env("WATCHDOG_USEC", "200000")
            .env_remove("WATCHDOG_PID")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ready = notify.wait_for("READY=1", Duration::from_secs(20), |m| {
        m.lines().any(|l| l == "READY=1")
    });
    assert!(
        ready.contains(&format!("STATUS=listening on http://127.0.0.1:{port}")),
        "{ready}"
    );
    // Ready means listening: the port answers now.
    let health = reqwest::get(format!("http://127.0.0.1:{port}/health")).await;
    assert!(health.is_ok(), "{health:?}");
    for _ in 0..3 {
        notify.wait_for("a watchdog ping", Duration::from_secs(5), |m| {
            m.lines().any(|l| l == "WATCHDOG=1")
        });
    }
    child.terminate();
    notify.wait_for("STOPPING=1", Duration::from_secs(10), |m| {
        m.lines().any(|l| l == "STOPPING=1")
    });
    let status = child
        .wait_exit("pyoco-gateway", Duration::from_secs(20))
        .await;
    assert!(status.success(), "{status:?}");
}
