//! What a hostile client can send, against a real gateway and nats-server: YAML bombs and
//! Python tags, ids and tags far past any sane length, slow and parked connections. Every
//! answer is a 4xx, nothing is stored, the gateway's NATS connection never drops, and other
//! clients keep being served.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pyoco::gateway::GatewayState;
use pyoco::testkit::{NatsServer, Stack, fast_config, multipart, wait_for};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn bomb(levels: usize) -> String {
    let mut yaml = String::from(
        "flow: {graph: a}\ntasks:\n  a:\n    callable: 'pyoco:echo'\n    inputs:\n      l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n",
    );
    for i in 1..=levels {
        let refs = vec![format!("*l{}", i - 1); 10].join(", ");
        yaml.push_str(&format!("      l{i}: &l{i} [{refs}]\n"));
    }
    yaml
}

async fn post_yaml(url: &str, yaml: &[u8], tag: Option<&str>) -> (u16, Value) {
    let mut parts: Vec<(&str, Option<&str>, &[u8])> = vec![
        ("workflow", Some("flow.yaml"), yaml),
        ("flow_name", None, b"hostile"),
    ];
    if let Some(tag) = tag {
        parts.push(("tag", None, tag.as_bytes()));
    }
    let (content_type, body) = multipart(&parts);
    let r = reqwest::Client::new()
        .post(format!("{url}/runs/yaml"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn nats_connects(state: &GatewayState) -> u64 {
    state
        .store()
        .unwrap()
        .client()
        .statistics()
        .connects
        .load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_bombs_deep_nesting_and_python_tags_are_422_and_store_nothing() {
    let stack = Stack::builder().no_worker().start().await;
    let url = stack.gateway.url();
    // The peak RSS of this process (gateway in-process), reset just before the bombs.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let started = Instant::now();
    // 10^9 nodes once expanded; the text is under 1 KB.
    let (status, body) = post_yaml(&url, bomb(8).as_bytes(), None).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["reason"], "yaml_too_large");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    // The 9 KB probe of the issue: 80 MB of task inputs once expanded.
    let (status, body) = post_yaml(&url, bomb(5).as_bytes(), None).await;
    assert_eq!((status, &body["reason"]), (422, &json!("yaml_too_large")));
    let peak_mib = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        / 1024;
    assert!(peak_mib < 200, "peak RSS {peak_mib} MiB");
    let deep = format!(
        "flow: {{graph: a}}\ntasks: {{a: {{callable: 'pyoco:echo', inputs: {{v: {}1{}}}}}}}\n",
        "[".repeat(80),
        "]".repeat(80)
    );
    let (status, body) = post_yaml(&url, deep.as_bytes(), None).await;
    assert_eq!(
        (status, body["reason"].clone()),
        (422, json!("yaml_too_deep"))
    );
    for tagged in [
        "flow: {graph: a}\ntasks: {a: {callable: 'pyoco:echo', inputs: {v: !!python/object/apply:os.system [id]}}}\n",
        "flow: {graph: a}\ntasks: {a: {callable: 'pyoco:echo', inputs: {v: !custom 1}}}\n",
    ] {
        let (status, body) = post_yaml(&url, tagged.as_bytes(), None).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["code"], "invalid_workflow_yaml");
        assert_eq!(body["reason"], "invalid_yaml_tag");
    }
    let runs: Value = reqwest::get(format!("{url}/runs"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(runs, json!([]), "nothing was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_ids_and_tags_are_4xx_and_never_cost_the_nats_connection() {
    let stack = Stack::start().await;
    let url = stack.gateway.url();
    let connects = nats_connects(&stack.gateway.state);
    let http = reqwest::Client::new();
    // 60,000: past every NATS limit, under the longest URI an HTTP client library will send.
    for len in [4096, 60_000] {
        let id = "a".repeat(len);
        let requests = [
            http.get(format!("{url}/runs/{id}")),
            http.get(format!("{url}/runs/{id}/tasks")),
            http.get(format!("{url}/runs/{id}/watch")),
            http.post(format!("{url}/runs/{id}/cancel")),
            http.patch(format!("{url}/workers/{id}"))
                .json(&json!({"hidden": true})),
            http.get(format!("{url}/wheels/{id}.whl")),
            http.delete(format!("{url}/wheels/{id}.whl")),
            http.post(format!("{url}/runs"))
                .json(&json!({"flow_name": "hello", "tag": id})),
            http.post(format!("{url}/runs/{id}/replay")),
            http.get(format!("{url}/schedules/{id}/runs")),
            http.delete(format!("{url}/schedules/{id}")),
            http.patch(format!("{url}/schedules/{id}"))
                .json(&json!({"paused": true})),
        ];
        for request in requests {
            let r = request.send().await.unwrap();
            let status = r.status();
            assert!(status.is_client_error(), "{len}: {status}");
            // A path id that cannot exist is a plain 404 (up to the server's URI limit).
            if len == 4096 && r.url().path().len() > 4096 && status != 422 {
                assert_eq!(status, 404, "{}", r.url().path());
            }
        }
        let yaml = b"flow: {graph: a}\ntasks: {a: {callable: 'pyoco:echo'}}\n";
        let (status, _) = post_yaml(&url, yaml, Some(&id)).await;
        assert_eq!(status, 422, "tag of {len}");
        // Filter values never reach NATS: a bulk cancel of them matches nothing.
        let r = http
            .post(format!("{url}/runs/cancel"))
            .json(&json!({"run_ids": [id], "flow": id, "schedule_id": id}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap()["count"], 0);
        let (content_type, body) = multipart(&[
            ("workflow", Some("flow.yaml"), yaml),
            ("flow_name", None, b"hostile"),
            ("interval_seconds", None, b"60"),
            ("tag", None, id.as_bytes()),
        ]);
        let r = http
            .post(format!("{url}/schedules/yaml"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "schedule tag of {len}");
    }
    // Still connected, never reconnected, and a normal run goes through.
    assert_eq!(nats_connects(&stack.gateway.state), connects);
    let run = stack
        .run_to_end(
            "flow: {graph: a}\ntasks: {a: {callable: 'pyoco:echo', inputs: {value: 1}}}\n",
            "after",
        )
        .await;
    assert_eq!(run["status"], "COMPLETED");
}

/// True when the server closed the connection within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 512];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_and_trickling_connections_do_not_stop_other_clients() {
    let server = NatsServer::start();
    let mut config = fast_config(&server);
    config.http_header_timeout = Duration::from_secs(1);
    // Served through the gateway's own accept loop, as `pyoco-gateway up` serves.
    let gateway = pyoco::testkit::GatewayHandle::start(config).await;
    let addr = gateway.addr;
    let url = format!("http://{addr}");

    // 1,000 idle connections and 200 trickling ones.
    let mut parked = Vec::new();
    for i in 0..1200 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        if i % 6 == 0 {
            // Trickling: a few bytes of a request line, never the end of the headers.
            s.write_all(b"GET /health HTTP/1.1\r\nHo").await.unwrap();
        }
        parked.push(s);
    }
    let http = reqwest::Client::new();
    let started = Instant::now();
    let health = http.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let submitted = http
        .post(format!("{url}/runs"))
        .json(&json!({"flow_name": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(submitted.status(), 200);
    // Generous: the point is "served now", not a latency figure (see BENCHMARKS.md).
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // Every parked connection is closed by the header timeout.
    for s in &mut parked {
        assert!(closed_within(s, Duration::from_secs(5)).await);
    }
    wait_for("health after the purge", Duration::from_secs(5), || {
        let http = http.clone();
        let url = url.clone();
        async move {
            let r = http.get(format!("{url}/health")).send().await.ok()?;
            (r.status() == 200).then_some(())
        }
    })
    .await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_reset_right_after_a_submit_strand_no_run() {
    let stack = Stack::start().await;
    let addr = stack.gateway.addr;
    let body = br#"{"flow_name":"hello","params":{"name":"reset"}}"#;
    let request = format!(
        "POST /runs HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let mut clients = Vec::new();
    for i in 0..200 {
        let request = request.clone();
        clients.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(request.as_bytes()).await.unwrap();
            s.write_all(body).await.unwrap();
            // Go away at spread-out moments over 50 ms, so many connections drop while their
            // submit is half done (the snapshot written, the job not yet published) and, even
            // on a loaded machine, some only after it was accepted.
            tokio::time::sleep(Duration::from_micros((i % 40) * 1250)).await;
            if i % 2 == 0 {
                // Reset: SO_LINGER 0 makes the close an RST, discarding the answer.
                s.set_zero_linger().unwrap();
            } else {
                // Half-close, then go away without reading.
                s.shutdown().await.ok();
            }
            drop(s);
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    let http = reqwest::Client::new();
    let url = stack.gateway.url();
    // No worker knows flow "hello": each accepted run ends FAILED (flow_not_found) — what
    // matters is that it ends, i.e. that its job was published.
    let runs: Vec<Value> = wait_for("no run left pending", Duration::from_secs(60), || {
        let http = http.clone();
        let url = url.clone();
        async move {
            let runs: Vec<Value> = http
                .get(format!("{url}/runs?limit=200"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            // An empty list is not "none pending": the gateway may not have indexed the
            // accepted runs yet (under load the first poll can beat the index).
            (!runs.is_empty()
                && runs.iter().all(|r| {
                    ["COMPLETED", "FAILED", "CANCELLED"]
                        .contains(&r["status"].as_str().unwrap_or(""))
                }))
            .then_some(runs)
        }
    })
    .await;
    eprintln!(
        "{} of 200 submits were accepted before their client went away",
        runs.len()
    );
    assert!(
        !runs.is_empty(),
        "no submit reached the gateway: the test proved nothing"
    );
    assert!(runs.len() <= 200, "{}", runs.len());
    let mut ids: Vec<&str> = runs.iter().filter_map(|r| r["run_id"].as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), runs.len(), "no run twice");
}
