//! `GET /workers`, `PATCH /workers/{id}`, `GET /metrics` and `GET /health` against a real
//! nats-server: filters and their 422s, the `hidden` flag surviving heartbeats, dead workers
//! shown as DISCONNECTED, metrics from an empty and a busy install, and health verdicts.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::time::Duration;

use async_nats::jetstream;
use pyoco::Config;
use pyoco::testkit::{GatewayHandle, NatsServer, Stack, fast_config, wait_for};
use serde_json::{Value, json};

const OK_YAML: &[u8] =
    b"flow: {graph: a}\ntasks: {a: {callable: 'pyoco:echo', inputs: {value: 1}}}\n";
const FAIL_YAML: &[u8] =
    b"flow: {graph: a}\ntasks: {a: {callable: 'pyoco:fail', inputs: {message: boom}}}\n";

/// Sends a request; returns the status, the `content-type` and the body (JSON when it parses).
async fn send(method: &str, url: &str, json_body: Option<&str>) -> (u16, String, Value) {
    let client = reqwest::Client::new();
    let mut req = client.request(method.parse().unwrap(), url);
    if let Some(b) = json_body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = resp.text().await.unwrap();
    (
        status,
        content_type,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn raw(method: &str, url: &str, json_body: Option<&str>) -> (u16, Value) {
    let (status, _, body) = send(method, url, json_body).await;
    (status, body)
}

/// `GET /metrics` as text.
async fn metrics_text(base: &str) -> String {
    let (status, content_type, body) = send("GET", &format!("{base}/metrics"), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    body.as_str().unwrap().to_string()
}

fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

/// The worker registry bucket, opened with a client of its own (as another process would).
async fn workers_bucket(config: &Config) -> jetstream::kv::Store {
    let client = async_nats::connect(&config.nats_url).await.unwrap();
    jetstream::new(client)
        .get_key_value(&config.workers_kv_bucket)
        .await
        .unwrap()
}

fn now() -> f64 {
    pyoco::model::now()
}

/// A registry record as a worker would have written it `age` seconds ago.
fn record(worker_id: &str, state: &str, age: f64, hidden: bool, tags: &[&str]) -> Vec<u8> {
    let at = now() - age;
    json!({"worker_id": worker_id, "instance_id": "0123456789abcdef", "state": state,
        "hidden": hidden, "tags": tags, "last_seen_at": at, "last_heartbeat_at": at,
        "heartbeat_at": at, "current_run_id": null, "updated_at": at})
    .to_string()
    .into_bytes()
}

fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|w| w["worker_id"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_list_filters_by_scope_state_hidden_and_limit() {
    let stack = Stack::start().await;
    let base = stack.gateway.url();
    let kv = workers_bucket(&stack.config).await;
    kv.put(
        "ghost",
        record("ghost", "IDLE", 1.0, true, &["default"]).into(),
    )
    .await
    .unwrap();
    kv.put(
        "stopped",
        record("stopped", "STOPPED_GRACEFUL", 5.0, false, &["gpu"]).into(),
    )
    .await
    .unwrap();
    kv.put(
        "dead",
        record("dead", "RUNNING", 3600.0, false, &["gpu"]).into(),
    )
    .await
    .unwrap();
    let get = |q: &str| {
        let url = format!("{base}/workers{q}");
        async move { raw("GET", &url, None).await }
    };

    let (status, active) = get("").await;
    assert_eq!(status, 200);
    assert_eq!(ids(&active), ["w1"], "active and visible only");
    let w1 = &active[0];
    assert_eq!(w1["state"], "IDLE");
    assert_eq!(w1["tags"], json!(["default"]));
    assert_eq!(w1["hidden"], false);
    assert_eq!(w1["heartbeat_at"], w1["last_heartbeat_at"]);
    assert_eq!(w1["wheel_sync"]["last_result"], "disabled");
    for key in [
        "instance_id",
        "last_seen_at",
        "current_run_id",
        "last_run_id",
        "stopped_at",
        "updated_at",
    ] {
        assert!(w1.get(key).is_some(), "{key} missing from {w1}");
    }

    assert_eq!(ids(&get("?scope=all").await.1), ["w1", "stopped", "dead"]);
    assert_eq!(
        ids(&get("?scope=ALL&include_hidden=yes").await.1),
        ["w1", "ghost", "stopped", "dead"],
        "newest last_seen_at first"
    );
    assert_eq!(ids(&get("?scope=all&state=disconnected").await.1), ["dead"]);
    assert_eq!(
        ids(&get("?scope=all&state=STOPPED_GRACEFUL").await.1),
        ["stopped"]
    );
    assert_eq!(ids(&get("?state=DISCONNECTED").await.1), Vec::<&str>::new());
    assert_eq!(
        ids(&get("?scope=all&include_hidden=true&limit=2").await.1),
        ["w1", "ghost"]
    );

    let invalid = json!({"detail": "invalid workers request", "code": "invalid_workers_request"});
    for q in ["?scope=everything", "?scope=", "?state=SLEEPING"] {
        assert_eq!(get(q).await, (422, invalid.clone()), "{q}");
    }
    let problems = |body: &Value| -> Vec<(String, Value)> {
        body["detail"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["type"].as_str().unwrap().to_string(), p["loc"].clone()))
            .collect()
    };
    let (status, body) = get("?include_hidden=maybe&limit=0").await;
    assert_eq!((status, &body["code"]), (422, &json!("validation_error")));
    assert_eq!(
        problems(&body),
        [
            (
                "bool_parsing".to_string(),
                json!(["query", "include_hidden"])
            ),
            ("greater_than_equal".to_string(), json!(["query", "limit"])),
        ]
    );
    let (status, body) = get("?limit=501").await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["type"], "less_than_equal");
    assert_eq!(body["detail"][0]["ctx"], json!({"le": 500}));
    let (status, body) = get("?limit=ten").await;
    assert_eq!(
        (status, &body["detail"][0]["type"]),
        (422, &json!("int_parsing"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_died_shows_disconnected_with_scope_all_and_leaves_active() {
    // Default timings: disconnect after 20 s of silence, records kept for a day.
    let stack = Stack::start().await;
    let base = stack.gateway.url();
    let defaults = Config::default();
    assert!(
        defaults.workers_kv_ttl > defaults.worker_disconnect_timeout * 10,
        "records must outlive the disconnect timeout, or DISCONNECTED never shows"
    );
    let client = async_nats::connect(&stack.config.nats_url).await.unwrap();
    let stream = jetstream::new(client)
        .get_stream(format!("KV_{}", stack.config.workers_kv_bucket))
        .await
        .unwrap();
    assert_eq!(stream.cached_info().config.max_age, defaults.workers_kv_ttl);

    // A worker that crashed mid-run a minute ago: its last write, exactly as it left it.
    let kv = workers_bucket(&stack.config).await;
    let mut last_write: Value =
        serde_json::from_slice(&kv.get("w1").await.unwrap().unwrap()).unwrap();
    let at = now() - 60.0;
    last_write["worker_id"] = json!("crashed");
    last_write["state"] = json!("RUNNING");
    last_write["current_run_id"] = json!("3f1c1d2e-0000-4000-8000-000000000000");
    for key in [
        "last_seen_at",
        "last_heartbeat_at",
        "heartbeat_at",
        "updated_at",
    ] {
        last_write[key] = json!(at);
    }
    kv.put("crashed", last_write.to_string().into())
        .await
        .unwrap();

    let (_, all) = raw("GET", &format!("{base}/workers?scope=all"), None).await;
    let crashed = all
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["worker_id"] == "crashed")
        .unwrap_or_else(|| panic!("crashed worker not listed: {all}"));
    assert_eq!(crashed["state"], "DISCONNECTED");
    assert_eq!(
        crashed["current_run_id"],
        "3f1c1d2e-0000-4000-8000-000000000000"
    );
    let (_, active) = raw("GET", &format!("{base}/workers"), None).await;
    assert_eq!(ids(&active), ["w1"]);
    let (_, disconnected) = raw(
        "GET",
        &format!("{base}/workers?scope=all&state=DISCONNECTED"),
        None,
    )
    .await;
    assert_eq!(ids(&disconnected), ["crashed"]);

    let text = metrics_text(&base).await;
    assert!(
        has_line(&text, "pyoco_workers{state=\"DISCONNECTED\"} 1"),
        "{text}"
    );
    assert!(has_line(&text, "pyoco_workers_alive_total 1"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_set_by_patch_survives_the_workers_next_heartbeats() {
    let stack = Stack::start().await;
    let base = stack.gateway.url();
    let kv = workers_bucket(&stack.config).await;
    let url = format!("{base}/workers/w1");

    for (sent, hidden) in [("true", true), ("\"no\"", false), ("1", true)] {
        let (status, body) = raw("PATCH", &url, Some(&format!("{{\"hidden\": {sent}}}"))).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["worker_id"], "w1");
        assert_eq!(body["hidden"], hidden);
        assert!(body["updated_at"].as_f64().unwrap() > now() - 60.0);
        assert_eq!(body.as_object().unwrap().len(), 3);
        // Two heartbeats later (every 200 ms here) the worker has rewritten its record…
        let revision = kv.entry("w1").await.unwrap().unwrap().revision;
        wait_for("two worker heartbeats", Duration::from_secs(10), || {
            let kv = kv.clone();
            async move {
                let entry = kv.entry("w1").await.ok()??;
                (entry.revision >= revision + 2).then_some(())
            }
        })
        .await;
        // …and kept the flag.
        let stored: Value = serde_json::from_slice(&kv.get("w1").await.unwrap().unwrap()).unwrap();
        assert_eq!(stored["hidden"], hidden, "after heartbeats: {stored}");
        let (_, visible) = raw("GET", &format!("{base}/workers"), None).await;
        assert_eq!(ids(&visible).contains(&"w1"), !hidden);
        let (_, everyone) = raw("GET", &format!("{base}/workers?include_hidden=1"), None).await;
        assert_eq!(everyone[0]["hidden"], hidden);
    }

    assert_eq!(
        raw(
            "PATCH",
            &format!("{base}/workers/nobody"),
            Some(r#"{"hidden": true}"#)
        )
        .await,
        (
            404,
            json!({"detail": "worker not found", "code": "worker_not_found"})
        )
    );
    for (body, kind) in [
        (r#"{}"#, "missing"),
        (r#"{"hidden": "maybe"}"#, "bool_parsing"),
        (r#"{"hidden": [true]}"#, "bool_type"),
        ("{nope", "json_invalid"),
    ] {
        let (status, answer) = raw("PATCH", &url, Some(body)).await;
        assert_eq!(
            (status, &answer["detail"][0]["type"]),
            (422, &json!(kind)),
            "{body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_of_an_empty_install_are_zero() {
    let server = NatsServer::start();
    let gateway = GatewayHandle::start(fast_config(&server)).await;
    let text = metrics_text(&gateway.url()).await;
    assert!(has_line(&text, "pyoco_workers_alive_total 0"), "{text}");
    assert!(has_line(&text, "pyoco_dlq_messages_total 0"), "{text}");
    assert!(has_line(&text, "pyoco_workers{state=\"IDLE\"} 0"), "{text}");
    assert!(
        !text.contains("pyoco_runs_total{"),
        "no runs, no series: {text}"
    );
    assert!(!text.contains("pyoco_queue_depth{"), "{text}");
    assert_eq!(
        raw("GET", &format!("{}/workers?scope=all", gateway.url()), None).await,
        (200, json!([]))
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_runs_queues_unserved_tags_and_requests() {
    let stack = Stack::start().await;
    let base = stack.gateway.url();
    let ok = stack.client.submit_yaml(OK_YAML, "ok", None).await.unwrap();
    let failed = stack
        .client
        .submit_yaml(FAIL_YAML, "bad", None)
        .await
        .unwrap();
    let ok = ok["run_id"].as_str().unwrap();
    assert_eq!(stack.wait_terminal(ok).await["status"], "COMPLETED");
    assert_eq!(
        stack
            .wait_terminal(failed["run_id"].as_str().unwrap())
            .await["status"],
        "FAILED"
    );
    // No worker serves `gpu`: the job waits in the queue.
    stack
        .client
        .submit_yaml(OK_YAML, "later", Some("gpu"))
        .await
        .unwrap();

    for _ in 0..2 {
        assert_eq!(
            raw("GET", &format!("{base}/runs/{ok}/tasks"), None).await.0,
            200
        );
    }
    assert_eq!(
        raw("GET", &format!("{base}/no/such/route"), None).await.0,
        404
    );

    let text = wait_for(
        "the index and the DLQ to catch up",
        Duration::from_secs(10),
        || {
            let base = base.clone();
            async move {
                let text = metrics_text(&base).await;
                (has_line(&text, "pyoco_runs_total{status=\"PENDING\"} 1")
                    && has_line(&text, "pyoco_dlq_messages_total 1"))
                .then_some(text)
            }
        },
    )
    .await;
    for line in [
        "pyoco_runs_total{status=\"COMPLETED\"} 1",
        "pyoco_runs_total{status=\"FAILED\"} 1",
        "pyoco_runs_today_total{status=\"COMPLETED\"} 1",
        "pyoco_runs_today_total{status=\"FAILED\"} 1",
        "pyoco_runs_today_total{status=\"PENDING\"} 1",
        "pyoco_workers_alive_total 1",
        "pyoco_workers{state=\"IDLE\"} 1",
        "pyoco_queue_depth{tag=\"gpu\"} 1",
        "pyoco_queue_depth{tag=\"default\"} 0",
        "pyoco_tag_unserved{tag=\"gpu\"} 1",
        "pyoco_tag_unserved{tag=\"default\"} 0",
        "# TYPE pyoco_http_requests_total counter",
        "pyoco_http_requests_total{method=\"GET\",route=\"/runs/{run_id}/tasks\",status=\"200\"} 2",
        "pyoco_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1",
        "pyoco_http_requests_total{method=\"POST\",route=\"/runs/yaml\",status=\"200\"} 3",
        "# TYPE pyoco_http_request_duration_seconds histogram",
        "pyoco_http_request_duration_seconds_count{method=\"GET\",route=\"/runs/{run_id}/tasks\"} 2",
    ] {
        assert!(has_line(&text, line), "missing {line:?} in\n{text}");
    }
    assert!(!text.contains(ok), "raw paths never become labels");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_healthy_then_degraded_then_unhealthy_and_strict_answers_503() {
    let mut stack = Stack::start().await;
    let base = stack.gateway.url();
    let health = |q: &'static str| {
        let url = format!("{base}/health{q}");
        async move { raw("GET", &url, None).await }
    };

    let (status, body) = health("").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok", "the original's clients still see ok");
    assert_eq!(body["health"], "healthy", "{body}");
    assert_eq!(body["components"]["nats"]["status"], "up");
    assert_eq!(body["components"]["buckets"]["status"], "up");
    assert_eq!(
        body["components"]["tags"]["default"],
        json!({"queued": 0, "live_workers": 1})
    );
    assert_eq!(health("?strict=true").await.0, 200);
    let (status, body) = health("?strict=perhaps").await;
    assert_eq!(
        (status, &body["detail"][0]["type"]),
        (422, &json!("bool_parsing"))
    );

    // Work for a tag nobody serves.
    stack
        .client
        .submit_yaml(OK_YAML, "later", Some("gpu"))
        .await
        .unwrap();
    let (status, body) = health("?strict=1").await;
    assert_eq!(status, 200, "degraded is still served in strict mode");
    assert_eq!(body["health"], "degraded", "{body}");
    assert_eq!(
        body["components"]["tags"]["gpu"],
        json!({"queued": 1, "live_workers": 0})
    );

    stack.server.kill();
    let body = wait_for(
        "health to notice NATS is gone",
        Duration::from_secs(10),
        || async {
            let (status, body) = health("").await;
            (status == 503 && body["health"] == "unhealthy").then_some(body)
        },
    )
    .await;
    // Not ready: the original's clients see a non-200 and wait.
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["code"], "nats_unavailable");
    assert_eq!(body["components"]["nats"]["status"], "down");
    assert_eq!(body["components"]["buckets"]["status"], "unknown");
    let (status, body) = health("?strict=true").await;
    assert_eq!(status, 503);
    assert_eq!(
        (&body["code"], &body["health"]),
        (&json!("unhealthy"), &json!("unhealthy"))
    );
    for route in ["/metrics", "/workers"] {
        let (status, body) = raw("GET", &format!("{base}{route}"), None).await;
        assert_eq!(
            (status, &body["code"]),
            (503, &json!("nats_unavailable")),
            "{route}"
        );
    }
}
