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

/// SIGTERM with a watch open on a run that will not finish (no worker): the gateway ends the
/// SSE stream with a final `shutdown` event, stops, and exits 0 well within systemd's stop
/// timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_open_watches_and_exits_0_within_a_bound() {
    let server = NatsServer::start();
    let port = free_port();
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
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = pyoco::HttpClient::new(&base).unwrap();
    pyoco::testkit::wait_for(
        "the gateway to be ready",
        Duration::from_secs(20),
        || async { client.health().await.ok().map(|_| ()) },
    )
    .await;
    let run = client
        .submit_run("never", Default::default(), Some("nobody"), None)
        .await
        .unwrap();
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let mut watch = reqwest::get(format!("{base}/runs/{run_id}/watch?timeout_sec=600"))
        .await
        .unwrap();
    assert_eq!(watch.status().as_u16(), 200);
    let first = watch.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("event: snapshot"));
    let asked = std::time::Instant::now();
    child.terminate();
    // The stream ends with a `shutdown` event instead of staying open for its 600 s.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        let mut rest = String::new();
        while let Ok(Some(chunk)) = watch.chunk().await {
            rest.push_str(&String::from_utf8_lossy(&chunk));
        }
        rest
    })
    .await;
    let rest = ended.expect("the watch stayed open after SIGTERM");
    assert!(rest.contains("event: shutdown"), "{rest}");
    assert!(rest.contains("gateway shutting down"), "{rest}");
    let status = child
        .wait_exit("pyoco-gateway", Duration::from_secs(10))
        .await;
    assert!(status.success(), "{status:?}");
    assert!(asked.elapsed() < Duration::from_secs(10));
}
