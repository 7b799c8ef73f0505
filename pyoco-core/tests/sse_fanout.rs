//! SSE watchers share the gateway's one KV watch: 2,000 watchers of one run cost no NATS
//! consumer of their own, each gets the terminal snapshot, and past `PYOCO_SSE_MAX_WATCHERS`
//! the answer is 429 with `Retry-After` (it used to be a 503 at watcher 1,000, when each
//! watcher held a consumer).
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::time::Duration;

use pyoco::Registry;
use pyoco::testkit::{Stack, WorkerHandle, wait_for};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WATCHERS: usize = 2_000;

/// Opens a watch on a raw connection and reads its response head and first event.
async fn open_watch(addr: std::net::SocketAddr, run_id: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /runs/{run_id}/watch?timeout_sec=120 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // Up to the first event: the watcher is registered once it has had its first snapshot.
    while !String::from_utf8_lossy(&seen).contains("event: snapshot") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    (s, String::from_utf8_lossy(&seen).into_owned())
}

async fn consumers_of_runs_bucket(stack: &Stack) -> usize {
    let client = pyoco::store::async_nats::connect(stack.config.nats_url.as_str())
        .await
        .unwrap();
    let js = pyoco::store::async_nats::jetstream::new(client);
    let mut stream = js
        .get_stream(format!("KV_{}", stack.config.runs_kv_bucket))
        .await
        .unwrap();
    stream.info().await.unwrap().state.consumer_count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_watchers_of_one_run_share_one_consumer_and_all_see_the_end() {
    let stack = Stack::builder()
        .no_worker()
        .config(|c| c.sse_max_watchers = WATCHERS)
        .start()
        .await;
    let addr = stack.gateway.addr;
    let submitted = stack
        .client
        .submit_run("fanout", json!({}).as_object().unwrap().clone(), None, None)
        .await
        .unwrap();
    let run_id = submitted["run_id"].as_str().unwrap().to_string();
    let baseline = consumers_of_runs_bucket(&stack).await;

    let mut watchers = Vec::with_capacity(WATCHERS);
    let mut opening = tokio::task::JoinSet::new();
    for _ in 0..WATCHERS {
        let run_id = run_id.clone();
        opening.spawn(async move { open_watch(addr, &run_id).await });
        // A few hundred in flight at once: the listen backlog stays far from full.
        if opening.len() >= 200 {
            watchers.push(opening.join_next().await.unwrap().unwrap());
        }
    }
    while let Some(w) = opening.join_next().await {
        watchers.push(w.unwrap());
    }
    for (_, head) in &watchers {
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("\"status\":\"PENDING\""), "{head}");
    }
    assert_eq!(
        consumers_of_runs_bucket(&stack).await,
        baseline,
        "watchers must not create NATS consumers"
    );

    // One more is refused with 429 and Retry-After, not 503.
    let refused = reqwest::Client::new()
        .get(format!("{}/runs/{run_id}/watch", stack.gateway.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().get("retry-after").is_some());
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("PYOCO_SSE_MAX_WATCHERS=2000"),
        "{body}"
    );

    // Now a worker runs it; every watcher gets the terminal snapshot and its stream ends.
    let mut registry = Registry::with_builtins();
    registry.register_flow(
        "fanout",
        pyoco::flow::yaml::parse_flow_yaml(
            b"flow: {graph: a}\ntasks: {a: {callable: 'pyoco:echo', inputs: {value: 1}}}\n",
        )
        .unwrap(),
    );
    let worker =
        WorkerHandle::start(stack.config.clone(), registry, "w-fanout", &["default"]).await;
    let mut reading = tokio::task::JoinSet::new();
    for (mut s, head) in watchers {
        reading.spawn(async move {
            let mut all = head.into_bytes();
            tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut all))
                .await
                .expect("the stream ends after the terminal snapshot")
                .unwrap();
            String::from_utf8_lossy(&all).into_owned()
        });
    }
    let mut completed = 0;
    while let Some(text) = reading.join_next().await {
        let text = text.unwrap();
        if text.contains("\"status\":\"COMPLETED\"") {
            completed += 1;
        } else {
            panic!("a watcher ended without the terminal snapshot: {text}");
        }
    }
    assert_eq!(completed, WATCHERS);
    // Every place is free again.
    wait_for("watchers released", Duration::from_secs(10), || async {
        let r = reqwest::get(format!("{}/runs/{run_id}/watch", stack.gateway.url()))
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    worker.stop().await;
}
