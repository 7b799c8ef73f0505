//! `pyoco-worker` under systemd's notify protocol: `READY=1` once connected, `WATCHDOG=1`
//! pings at half `WATCHDOG_USEC`, `STOPPING=1` on SIGTERM, then a clean exit — read from a
//! `NOTIFY_SOCKET` the test creates.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::process::{Command, Stdio};
use std::time::Duration;

use pyoco::testkit::{NatsServer, NotifySocket, Spawned};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_says_ready_pings_the_watchdog_and_says_stopping() {
    let server = NatsServer::start();
    let mut notify = NotifySocket::bind();
    let mut child = Spawned(
        Command::new(env!("CARGO_BIN_EXE_pyoco-worker"))
            .args(["--worker-id", "supervised"])
            .env("PYOCO_LOAD_DOTENV", "0")
            .env("PYOCO_NATS_URL", server.url())
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
        ready.contains("STATUS=worker supervised serving tags"),
        "{ready}"
    );
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
        .wait_exit("pyoco-worker", Duration::from_secs(20))
        .await;
    assert!(status.success(), "{status:?}");
}
