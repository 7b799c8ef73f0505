//! The gateway's HTTP contract against a real nats-server: status codes, error bodies,
//! validation, listing, and behaviour while NATS is down.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::time::Duration;

use pyoco::testkit::{GatewayHandle, NatsServer, Stack, fast_config, multipart, wait_for};
use serde_json::{Value, json};

async fn raw(method: &str, url: &str, body: Option<(&str, Vec<u8>)>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut req = client.request(method.parse().unwrap(), url);
    if let Some((ct, b)) = body {
        req = req.header("content-type", ct).body(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

const OK_YAML: &[u8] =
    b"flow: {graph: a}\ntasks: {a: {callable: 'pyoco:echo', inputs: {value: 1}}}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_install_lists_nothing_and_health_is_ok() {
    let stack = Stack::start().await;
    let base = stack.gateway.url();
    let (status, health) = raw("GET", &format!("{base}/health"), None).await;
    assert_eq!((status, &health["status"]), (200, &json!("ok")));
    assert_eq!(
        raw("GET", &format!("{base}/runs"), None).await,
        (200, json!([]))
    );
    assert_eq!(
        raw("GET", &format!("{base}/runs?updated_after=0"), None).await,
        (200, json!({"items": [], "next_cursor": null}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_run_answers_404_run_not_found() {
    let stack = Stack::start().await;
    let base = stack.gateway.url();
    let (status, body) = raw("GET", &format!("{base}/runs/does-not-exist"), None).await;
    assert_eq!(
        (status, &body["detail"], &body["code"]),
        (404, &json!("run not found"), &json!("run_not_found"))
    );
    let (status, body) = raw("GET", &format!("{base}/runs/does-not-exist/tasks"), None).await;
    assert_eq!((status, &body["detail"]), (404, &json!("run not found")));
}

// The bodies of these rejections are checked without NATS in `router.rs`; here, that a
// rejected request writes nothing to a real store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_submits_write_nothing() {
    let stack = Stack::start().await;
    let url = format!("{}/runs", stack.gateway.url());
    let json_body = |v: Value| Some(("application/json", v.to_string().into_bytes()));
    for body in [
        json!({}),
        json!({"flow_name": "x", "tag": "a.b"}),
        json!({"flow_name": "", "params": [1]}),
    ] {
        assert_eq!(
            raw("POST", &url, json_body(body.clone())).await.0,
            422,
            "{body}"
        );
    }
    let (status, _) = raw("POST", &url, Some(("application/json", b"{nope".to_vec()))).await;
    assert_eq!(status, 422);
    let huge = format!(
        "{{\"flow_name\": \"x\", \"params\": {{\"blob\": \"{}\"}}}}",
        "y".repeat(3 << 20)
    );
    let (status, _) = raw("POST", &url, Some(("application/json", huge.into_bytes()))).await;
    assert_eq!(status, 413);
    // Nothing was written by any of these.
    assert_eq!(raw("GET", &url, None).await, (200, json!([])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitted_run_is_stored_with_its_params_and_tags_defaulting_to_its_tag() {
    let stack = Stack::start().await;
    let url = format!("{}/runs", stack.gateway.url());
    let body = json!({"flow_name": "x", "params": {"n": 1}, "tag": "gpu"});
    let (status, body) = raw(
        "POST",
        &url,
        Some(("application/json", body.to_string().into_bytes())),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "PENDING");
    let run = stack
        .client
        .get_run(body["run_id"].as_str().unwrap(), false)
        .await
        .unwrap();
    assert_eq!(
        (
            run["tag"].clone(),
            run["tags"].clone(),
            run["params"].clone()
        ),
        (json!("gpu"), json!(["gpu"]), json!({"n": 1}))
    );
}

/// The parts of a multipart form: name, file name (a file part when given), data.
type Parts<'a> = &'a [(&'a str, Option<&'a str>, &'a [u8])];

/// `POST /runs/yaml` of `parts` to `stack`.
async fn post_yaml(stack: &Stack, parts: Parts<'_>) -> (u16, Value) {
    let (content_type, body) = multipart(parts);
    let url = format!("{}/runs/yaml", stack.gateway.url());
    raw("POST", &url, Some((&content_type, body))).await
}

// As for `POST /runs`: the answers are checked in `router.rs`, the store here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_yaml_uploads_write_nothing() {
    let stack = Stack::start_with(|c| c.workflow_yaml_max_bytes = 1024).await;
    let big = format!(
        "# {}\n{}",
        "x".repeat(2000),
        String::from_utf8_lossy(OK_YAML)
    )
    .into_bytes();
    let (status, _) = post_yaml(
        &stack,
        &[
            ("workflow", Some("flow.yaml"), &big),
            ("flow_name", None, b"f"),
        ],
    )
    .await;
    assert_eq!(status, 413);
    let bad: &[u8] = b"flow: {graph: a}\ntasks: {a: {callable: 'pyoco:echo', use: other}}\n";
    let cyclic: &[u8] = b"flow: {graph: 'a >> b >> a'}\ntasks: {a: {callable: 'pyoco:echo'}, b: {callable: 'pyoco:echo'}}\n";
    let rejected: [Parts; 6] = [
        &[
            ("workflow", Some("flow.yaml"), bad),
            ("flow_name", None, b"f"),
        ],
        &[
            ("workflow", Some("flow.yaml"), cyclic),
            ("flow_name", None, b"f"),
        ],
        &[
            ("workflow", Some("flow.yaml"), OK_YAML),
            ("flow_name", None, b"f"),
            ("tag", None, b"a.b"),
        ],
        &[("flow_name", None, b"f")],
        &[("workflow", None, OK_YAML), ("flow_name", None, b"f")],
        &[
            ("workflow", Some("flow.yaml"), OK_YAML),
            ("flow_name", None, b"   "),
        ],
    ];
    for (i, parts) in rejected.iter().enumerate() {
        assert_eq!(post_yaml(&stack, parts).await.0, 422, "rejected upload {i}");
    }
    let url = format!("{}/runs/yaml", stack.gateway.url());
    let (status, _) = raw("POST", &url, Some(("application/json", b"{}".to_vec()))).await;
    assert_eq!(status, 422);
    // No run was created by any rejected request.
    assert_eq!(
        stack.client.list_runs(&Default::default()).await.unwrap(),
        Vec::<Value>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yaml_upload_within_limits_runs_with_its_trimmed_flow_name() {
    let stack = Stack::start_with(|c| c.workflow_yaml_max_bytes = 1024).await;
    // The tag is used for routing: the worker serves `default`.
    let (status, body) = post_yaml(
        &stack,
        &[
            ("workflow", Some("flow.yaml"), OK_YAML),
            ("flow_name", None, b" f "),
            ("tag", None, b"default"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        stack.wait_terminal(body["run_id"].as_str().unwrap()).await["flow_name"],
        "f"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_sorts_and_pages() {
    let stack = Stack::start().await;
    let mut ids = Vec::new();
    for (i, tag) in ["default", "default", "default", "other"]
        .iter()
        .enumerate()
    {
        let name = format!("flow{}", i % 2);
        ids.push(
            stack
                .client
                .submit_yaml(OK_YAML, &name, Some(tag))
                .await
                .unwrap()["run_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    for id in &ids[..3] {
        stack.wait_terminal(id).await;
    }
    let base = stack.gateway.url();
    // The list is served from an index that follows the bucket within milliseconds.
    let all = wait_for(
        "the list to show every run",
        Duration::from_secs(10),
        || async {
            let (_, all) = raw("GET", &format!("{base}/runs"), None).await;
            (all.as_array()?.len() == 4).then_some(all)
        },
    )
    .await;
    let updated: Vec<f64> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["updated_at"].as_f64().unwrap())
        .collect();
    assert!(updated.windows(2).all(|w| w[0] >= w[1]), "newest first");
    assert!(all[0].get("params").is_none(), "summaries only");
    let (_, pending) = raw("GET", &format!("{base}/runs?status=PENDING"), None).await;
    assert_eq!(pending.as_array().unwrap().len(), 1);
    assert_eq!(pending[0]["tag"], "other");
    let (_, flow0) = raw("GET", &format!("{base}/runs?flow=flow0&tag=default"), None).await;
    assert_eq!(flow0.as_array().unwrap().len(), 2);
    let (_, full) = raw("GET", &format!("{base}/runs?limit=1&include=full"), None).await;
    assert_eq!(full.as_array().unwrap().len(), 1);
    assert!(full[0].get("params").is_some() && full[0].get("task_records").is_none());
    // Diff mode pages with a cursor until exhausted, covering every run once.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) =
            raw("GET", &format!("{base}/runs?limit=3&cursor={cursor}"), None).await;
        assert_eq!(status, 200);
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["run_id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    seen.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(seen, expected);
    // The 422s of bad list queries are checked without NATS in `router.rs`.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_down_answers_503_and_the_gateway_recovers_by_itself() {
    let mut server = NatsServer::start();
    let config = fast_config(&server);
    let gateway = GatewayHandle::start(config.clone()).await;
    let base = gateway.url();
    assert_eq!(raw("GET", &format!("{base}/runs"), None).await.0, 200);
    server.kill();
    let (status, body) = wait_for(
        "503 while NATS is down",
        Duration::from_secs(10),
        || async {
            let r = raw("GET", &format!("{base}/runs"), None).await;
            (r.0 == 503).then_some(r)
        },
    )
    .await;
    assert_eq!(status, 503);
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("nats unavailable: ") && !detail.contains("nats unavailable: nats"),
        "{body}"
    );
    assert_eq!(body["code"], "nats_unavailable");
    let (status, _) = raw(
        "POST",
        &format!("{base}/runs"),
        Some(("application/json", br#"{"flow_name":"x"}"#.to_vec())),
    )
    .await;
    assert_eq!(status, 503);
    let (status, health) = raw("GET", &format!("{base}/health"), None).await;
    assert_eq!(
        (status, &health["status"]),
        (503, &json!("unavailable")),
        "health answers, and says not ready, while NATS is down"
    );
    server.restart();
    wait_for(
        "the gateway to recover",
        Duration::from_secs(15),
        || async { (raw("GET", &format!("{base}/runs"), None).await.0 == 200).then_some(()) },
    )
    .await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_started_before_nats_answers_503_then_serves() {
    let mut server = NatsServer::start();
    server.kill();
    let config = fast_config(&server);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(pyoco::gateway::serve(listener, config, async {
        rx.await.ok();
    }));
    let (status, body) = raw("GET", &format!("{base}/runs/x"), None).await;
    assert_eq!((status, &body["code"]), (503, &json!("nats_unavailable")));
    // NATS comes up later on that port: the gateway connects by itself.
    server.restart();
    wait_for(
        "the gateway to connect",
        Duration::from_secs(15),
        || async {
            (raw("GET", &format!("{base}/runs"), None).await == (200, json!([]))).then_some(())
        },
    )
    .await;
    tx.send(()).ok();
    serving.await.unwrap().unwrap();
}
