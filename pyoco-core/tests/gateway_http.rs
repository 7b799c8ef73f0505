//! The gateway's HTTP contract against a real nats-server: status codes, error bodies,
//! validation, listing, and behaviour while NATS is down.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::time::Duration;

use pyoco::testkit::{GatewayHandle, NatsServer, Stack, fast_config, wait_for};
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

fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "XyZpyocoBoundary";
    let mut body = Vec::new();
    for (name, filename, data) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match filename {
            Some(f) => body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/x-yaml\r\n\r\n").as_bytes()),
            None => body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
        }
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
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
async fn unknown_runs_routes_and_methods_answer_404_and_405() {
    let stack = Stack::start().await;
    let base = stack.gateway.url();
    let (status, body) = raw("GET", &format!("{base}/runs/does-not-exist"), None).await;
    assert_eq!(
        (status, &body["detail"], &body["code"]),
        (404, &json!("run not found"), &json!("run_not_found"))
    );
    let (status, body) = raw("GET", &format!("{base}/runs/does-not-exist/tasks"), None).await;
    assert_eq!((status, &body["detail"]), (404, &json!("run not found")));
    let (status, body) = raw("GET", &format!("{base}/nowhere"), None).await;
    assert_eq!((status, &body["detail"]), (404, &json!("Not Found")));
    let (status, body) = raw("DELETE", &format!("{base}/runs"), None).await;
    assert_eq!(
        (status, &body["detail"]),
        (405, &json!("Method Not Allowed"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_validation_errors_are_fastapi_shaped_422s() {
    let stack = Stack::start().await;
    let url = format!("{}/runs", stack.gateway.url());
    let json_body = |v: Value| Some(("application/json", v.to_string().into_bytes()));
    let (status, body) = raw("POST", &url, json_body(json!({}))).await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["type"], "missing");
    assert_eq!(body["detail"][0]["loc"], json!(["body", "flow_name"]));
    let (status, body) = raw(
        "POST",
        &url,
        json_body(json!({"flow_name": "x", "tag": "a.b"})),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["type"], "string_pattern_mismatch");
    assert_eq!(body["detail"][0]["loc"], json!(["body", "tag"]));
    let (status, body) = raw(
        "POST",
        &url,
        json_body(json!({"flow_name": "", "params": [1]})),
    )
    .await;
    assert_eq!(status, 422);
    let kinds: Vec<&str> = body["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["string_too_short", "dict_type"]);
    let (status, body) = raw("POST", &url, Some(("application/json", b"{nope".to_vec()))).await;
    assert_eq!(
        (status, &body["detail"][0]["type"]),
        (422, &json!("json_invalid"))
    );
    let huge = format!(
        "{{\"flow_name\": \"x\", \"params\": {{\"blob\": \"{}\"}}}}",
        "y".repeat(3 << 20)
    );
    let (status, body) = raw("POST", &url, Some(("application/json", huge.into_bytes()))).await;
    assert_eq!((status, &body["code"]), (413, &json!("request_too_large")));
    // Nothing was written by any of these.
    assert_eq!(raw("GET", &url, None).await, (200, json!([])));
    // A valid one works; tags default to [tag].
    let (status, body) = raw(
        "POST",
        &url,
        json_body(json!({"flow_name": "x", "params": {"n": 1}, "tag": "gpu"})),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_upload_errors_413_and_422_write_nothing() {
    let stack = Stack::start_with(|c| c.workflow_yaml_max_bytes = 1024).await;
    let url = format!("{}/runs/yaml", stack.gateway.url());
    let post = |parts: Vec<(&'static str, Option<&'static str>, Vec<u8>)>| {
        let url = url.clone();
        async move {
            let borrowed: Vec<(&str, Option<&str>, &[u8])> = parts
                .iter()
                .map(|(n, f, d)| (*n, *f, d.as_slice()))
                .collect();
            let (ct, body) = multipart(&borrowed);
            raw("POST", &url, Some((&ct, body))).await
        }
    };
    // Too large: 413.
    let big = format!(
        "# {}\n{}",
        "x".repeat(2000),
        String::from_utf8_lossy(OK_YAML)
    )
    .into_bytes();
    let (status, body) = post(vec![
        ("workflow", Some("flow.yaml"), big),
        ("flow_name", None, b"f".to_vec()),
    ])
    .await;
    assert_eq!(
        (status, &body["detail"], &body["code"]),
        (
            413,
            &json!("workflow too large"),
            &json!("workflow_too_large")
        )
    );
    // Invalid YAML: 422 with the reason code.
    let bad = b"flow: {graph: a}\ntasks: {a: {callable: 'pyoco:echo', use: other}}\n".to_vec();
    let (status, body) = post(vec![
        ("workflow", Some("flow.yaml"), bad),
        ("flow_name", None, b"f".to_vec()),
    ])
    .await;
    assert_eq!(
        (status, &body["detail"]),
        (422, &json!("invalid workflow yaml"))
    );
    assert_eq!(body["reason"], "unknown_task_keys: a: ['use']");
    let cyclic = b"flow: {graph: 'a >> b >> a'}\ntasks: {a: {callable: 'pyoco:echo'}, b: {callable: 'pyoco:echo'}}\n".to_vec();
    let (status, body) = post(vec![
        ("workflow", Some("flow.yaml"), cyclic),
        ("flow_name", None, b"f".to_vec()),
    ])
    .await;
    assert_eq!(status, 422);
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .starts_with("invalid_flow_graph: cycle"),
        "{body}"
    );
    // Bad tag, missing parts, blank flow name.
    let (status, body) = post(vec![
        ("workflow", Some("flow.yaml"), OK_YAML.to_vec()),
        ("flow_name", None, b"f".to_vec()),
        ("tag", None, b"a.b".to_vec()),
    ])
    .await;
    assert_eq!((status, &body["detail"]), (422, &json!("invalid tag")));
    let (status, body) = post(vec![("flow_name", None, b"f".to_vec())]).await;
    assert_eq!(
        (status, &body["detail"][0]["loc"]),
        (422, &json!(["body", "workflow"]))
    );
    let (status, body) = post(vec![
        ("workflow", None, OK_YAML.to_vec()),
        ("flow_name", None, b"f".to_vec()),
    ])
    .await;
    assert_eq!(
        (status, &body["detail"][0]["type"]),
        (422, &json!("value_error"))
    );
    let (status, body) = post(vec![
        ("workflow", Some("flow.yaml"), OK_YAML.to_vec()),
        ("flow_name", None, b"   ".to_vec()),
    ])
    .await;
    assert_eq!(
        (status, &body["detail"]),
        (422, &json!("missing flow_name"))
    );
    let (status, _) = raw("POST", &url, Some(("application/json", b"{}".to_vec()))).await;
    assert_eq!(status, 422);
    // No run was created by any rejected request.
    assert_eq!(
        stack.client.list_runs(&Default::default()).await.unwrap(),
        Vec::<Value>::new()
    );
    // The same file within limits is accepted, with the tag used for routing.
    let (status, body) = post(vec![
        ("workflow", Some("flow.yaml"), OK_YAML.to_vec()),
        ("flow_name", None, b" f ".to_vec()),
        ("tag", None, b"default".to_vec()),
    ])
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
    let (status, body) = raw("GET", &format!("{base}/runs?cursor=%%%bad"), None).await;
    assert_eq!(
        (status, &body["detail"]),
        (422, &json!("invalid list query"))
    );
    let (status, body) = raw("GET", &format!("{base}/runs?limit=500"), None).await;
    assert_eq!(
        (status, &body["detail"][0]["type"]),
        (422, &json!("less_than_equal"))
    );
    let (status, body) = raw("GET", &format!("{base}/runs?updated_after=soon"), None).await;
    assert_eq!(
        (status, &body["detail"][0]["type"]),
        (422, &json!("float_parsing"))
    );
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
    assert_eq!(
        raw("GET", &format!("{base}/health"), None).await.0,
        200,
        "health answers while NATS is down"
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
