//! `/health` is a readiness probe: a gateway started before its nats-server answers 503
//! `starting` until it can serve, and a client that waits for a 200 and then submits is
//! served at once.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::time::{Duration, Instant};

use pyoco::testkit::{GatewayHandle, NatsServer, fast_config};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_503_starting_until_the_gateway_can_serve_then_a_submit_succeeds() {
    let mut server = NatsServer::start();
    let config = fast_config(&server);
    // The gateway comes first; its nats-server only 3 s later.
    server.kill();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = pyoco::gateway::GatewayState::connect(config);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(pyoco::gateway::serve_state(listener, state, async {
        stopped.await.ok();
    }));
    let http = reqwest::Client::new();
    let nats_back_at = Instant::now() + Duration::from_secs(3);
    let mut restarted = false;
    let mut starting_seen = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if !restarted && Instant::now() >= nats_back_at {
            server.restart();
            restarted = true;
        }
        let r = http.get(format!("{url}/health")).send().await.unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        if status == 200 {
            assert!(restarted, "200 before nats-server was even running: {body}");
            assert_eq!(body["status"], "ok");
            // Ready means usable: the very next submit and list are served.
            let submitted = http
                .post(format!("{url}/runs"))
                .json(&json!({"flow_name": "hello"}))
                .send()
                .await
                .unwrap();
            assert_eq!(submitted.status(), 200, "{:?}", submitted.text().await);
            let listed = http.get(format!("{url}/runs")).send().await.unwrap();
            assert_eq!(listed.status(), 200);
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["status"], "starting", "{body}");
        assert_eq!(body["code"], "nats_unavailable");
        starting_seen += 1;
        assert!(Instant::now() < deadline, "never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(starting_seen > 10, "{starting_seen}");
    stop.send(()).ok();
    served.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_gateway_is_ready_at_once() {
    let server = NatsServer::start();
    let gateway = GatewayHandle::start(fast_config(&server)).await;
    let r = reqwest::get(format!("{}/health", gateway.url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    gateway.stop().await;
}
