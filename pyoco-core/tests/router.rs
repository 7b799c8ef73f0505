//! The gateway's router without a nats-server, driven with `tower::ServiceExt::oneshot` as in
//! axum's testing example: everything it answers before it needs NATS — unknown routes and
//! methods, FastAPI-shaped 422s of bodies and queries, 413s — and the 503 it answers once a
//! request is valid. The state's store points at a closed port and never connects, so a
//! validation that ran after the store lookup would show up here as a 503.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use pyoco::Config;
use pyoco::gateway::{GatewayState, router};
use pyoco::testkit::multipart;
use serde_json::{Value, json};
use tower::ServiceExt;

/// The router over a state that never reaches NATS, with `tweak` applied to the config.
fn app_with(tweak: impl FnOnce(&mut Config)) -> Router {
    let mut config = Config {
        nats_url: "nats://127.0.0.1:1".into(),
        ..Config::default()
    };
    tweak(&mut config);
    router(GatewayState::connect(config))
}

fn app() -> Router {
    app_with(|_| {})
}

/// Sends one request through `app` and returns the status and the body (JSON, or the text).
async fn send(app: Router, method: &str, uri: &str, body: Option<(&str, Vec<u8>)>) -> (u16, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    let body = match body {
        Some((content_type, bytes)) => {
            req = req.header("content-type", content_type);
            Body::from(bytes)
        }
        None => Body::empty(),
    };
    let resp = app.oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn json_body(v: Value) -> Option<(&'static str, Vec<u8>)> {
    Some(("application/json", v.to_string().into_bytes()))
}

async fn post_runs(body: Option<(&str, Vec<u8>)>) -> (u16, Value) {
    send(app(), "POST", "/runs", body).await
}

const OK_YAML: &[u8] =
    b"flow: {graph: a}\ntasks: {a: {callable: 'pyoco:echo', inputs: {value: 1}}}\n";

/// `POST /runs/yaml` with a 1 KiB workflow limit.
async fn post_yaml(parts: &[(&str, Option<&str>, &[u8])]) -> (u16, Value) {
    let (content_type, body) = multipart(parts);
    let app = app_with(|c| c.workflow_yaml_max_bytes = 1024);
    send(app, "POST", "/runs/yaml", Some((&content_type, body))).await
}

#[tokio::test]
async fn an_unknown_route_answers_404_not_found() {
    let (status, body) = send(app(), "GET", "/nowhere", None).await;
    assert_eq!((status, &body["detail"]), (404, &json!("Not Found")));
}

#[tokio::test]
async fn a_wrong_method_answers_405() {
    let (status, body) = send(app(), "DELETE", "/runs", None).await;
    assert_eq!(
        (status, &body["detail"]),
        (405, &json!("Method Not Allowed"))
    );
}

#[tokio::test]
async fn a_valid_submit_without_nats_answers_503() {
    let (status, _) = post_runs(json_body(json!({"flow_name": "x"}))).await;
    assert_eq!(status, 503);
}

#[tokio::test]
async fn submit_without_flow_name_is_a_missing_422() {
    let (status, body) = post_runs(json_body(json!({}))).await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["type"], "missing");
    assert_eq!(body["detail"][0]["loc"], json!(["body", "flow_name"]));
}

#[tokio::test]
async fn submit_with_a_dotted_tag_is_a_pattern_422() {
    let (status, body) = post_runs(json_body(json!({"flow_name": "x", "tag": "a.b"}))).await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["type"], "string_pattern_mismatch");
    assert_eq!(body["detail"][0]["loc"], json!(["body", "tag"]));
}

#[tokio::test]
async fn submit_reports_every_problem_of_the_body_at_once() {
    let (status, body) = post_runs(json_body(json!({"flow_name": "", "params": [1]}))).await;
    assert_eq!(status, 422);
    let kinds: Vec<&str> = body["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["string_too_short", "dict_type"]);
}

#[tokio::test]
async fn submit_of_broken_json_is_a_json_invalid_422() {
    let (status, body) = post_runs(Some(("application/json", b"{nope".to_vec()))).await;
    assert_eq!(
        (status, &body["detail"][0]["type"]),
        (422, &json!("json_invalid"))
    );
}

#[tokio::test]
async fn submit_over_the_body_limit_is_a_413() {
    let huge = format!(
        "{{\"flow_name\": \"x\", \"params\": {{\"blob\": \"{}\"}}}}",
        "y".repeat(3 << 20)
    );
    let (status, body) = post_runs(Some(("application/json", huge.into_bytes()))).await;
    assert_eq!((status, &body["code"]), (413, &json!("request_too_large")));
}

#[tokio::test]
async fn yaml_over_the_workflow_limit_is_a_413() {
    let big = format!(
        "# {}\n{}",
        "x".repeat(2000),
        String::from_utf8_lossy(OK_YAML)
    )
    .into_bytes();
    let (status, body) = post_yaml(&[
        ("workflow", Some("flow.yaml"), &big),
        ("flow_name", None, b"f"),
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
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("PYOCO_WORKFLOW_YAML_MAX_BYTES ("),
        "{body}"
    );
}

#[tokio::test]
async fn yaml_with_an_unknown_task_key_is_a_422_with_the_reason() {
    let bad = b"flow: {graph: a}\ntasks: {a: {callable: 'pyoco:echo', use: other}}\n";
    let (status, body) = post_yaml(&[
        ("workflow", Some("flow.yaml"), bad),
        ("flow_name", None, b"f"),
    ])
    .await;
    assert_eq!(
        (status, &body["detail"]),
        (422, &json!("invalid workflow yaml"))
    );
    assert_eq!(body["reason"], "unknown_task_keys: a: ['use']");
}

#[tokio::test]
async fn yaml_with_a_cyclic_graph_is_a_422() {
    let cyclic = b"flow: {graph: 'a >> b >> a'}\ntasks: {a: {callable: 'pyoco:echo'}, b: {callable: 'pyoco:echo'}}\n";
    let (status, body) = post_yaml(&[
        ("workflow", Some("flow.yaml"), cyclic),
        ("flow_name", None, b"f"),
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
}

#[tokio::test]
async fn yaml_with_a_dotted_tag_is_an_invalid_tag_422() {
    let (status, body) = post_yaml(&[
        ("workflow", Some("flow.yaml"), OK_YAML),
        ("flow_name", None, b"f"),
        ("tag", None, b"a.b"),
    ])
    .await;
    assert_eq!((status, &body["detail"]), (422, &json!("invalid tag")));
}

#[tokio::test]
async fn yaml_without_the_workflow_part_is_a_422_at_its_location() {
    let (status, body) = post_yaml(&[("flow_name", None, b"f")]).await;
    assert_eq!(
        (status, &body["detail"][0]["loc"]),
        (422, &json!(["body", "workflow"]))
    );
}

#[tokio::test]
async fn yaml_whose_workflow_is_not_a_file_is_a_value_error_422() {
    let (status, body) = post_yaml(&[("workflow", None, OK_YAML), ("flow_name", None, b"f")]).await;
    assert_eq!(
        (status, &body["detail"][0]["type"]),
        (422, &json!("value_error"))
    );
}

#[tokio::test]
async fn yaml_with_a_blank_flow_name_is_a_422() {
    let (status, body) = post_yaml(&[
        ("workflow", Some("flow.yaml"), OK_YAML),
        ("flow_name", None, b"   "),
    ])
    .await;
    assert_eq!(
        (status, &body["detail"]),
        (422, &json!("missing flow_name"))
    );
}

#[tokio::test]
async fn yaml_sent_as_json_is_a_422() {
    let app = app_with(|c| c.workflow_yaml_max_bytes = 1024);
    let (status, _) = send(
        app,
        "POST",
        "/runs/yaml",
        Some(("application/json", b"{}".to_vec())),
    )
    .await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn a_valid_yaml_upload_without_nats_answers_503() {
    let (status, _) = post_yaml(&[
        ("workflow", Some("flow.yaml"), OK_YAML),
        ("flow_name", None, b"f"),
    ])
    .await;
    assert_eq!(status, 503);
}

#[tokio::test]
async fn list_with_a_bad_cursor_is_an_invalid_list_query_422() {
    let (status, body) = send(app(), "GET", "/runs?cursor=%25%25%25bad", None).await;
    assert_eq!(
        (status, &body["detail"]),
        (422, &json!("invalid list query"))
    );
}

#[tokio::test]
async fn list_with_a_limit_over_200_is_a_less_than_equal_422() {
    let (status, body) = send(app(), "GET", "/runs?limit=500", None).await;
    assert_eq!(
        (status, &body["detail"][0]["type"]),
        (422, &json!("less_than_equal"))
    );
}

#[tokio::test]
async fn list_with_a_non_numeric_updated_after_is_a_float_parsing_422() {
    let (status, body) = send(app(), "GET", "/runs?updated_after=soon", None).await;
    assert_eq!(
        (status, &body["detail"][0]["type"]),
        (422, &json!("float_parsing"))
    );
}

#[tokio::test]
async fn watch_queries_are_validated_before_the_run_is_looked_up() {
    for query in ["timeout_sec=0", "since=soon"] {
        let (status, _) = send(app(), "GET", &format!("/runs/any/watch?{query}"), None).await;
        assert_eq!(status, 422, "{query}");
    }
}

#[tokio::test]
async fn workers_with_an_unknown_scope_or_state_is_an_invalid_workers_request() {
    let invalid = json!({"detail": "invalid workers request", "code": "invalid_workers_request"});
    for q in ["?scope=everything", "?scope=", "?state=SLEEPING"] {
        let answer = send(app(), "GET", &format!("/workers{q}"), None).await;
        assert_eq!(answer, (422, invalid.clone()), "{q}");
    }
}

#[tokio::test]
async fn workers_query_type_errors_are_listed_together() {
    let (status, body) = send(app(), "GET", "/workers?include_hidden=maybe&limit=0", None).await;
    assert_eq!((status, &body["code"]), (422, &json!("validation_error")));
    let problems: Vec<(&str, &Value)> = body["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["type"].as_str().unwrap(), &p["loc"]))
        .collect();
    assert_eq!(
        problems,
        [
            ("bool_parsing", &json!(["query", "include_hidden"])),
            ("greater_than_equal", &json!(["query", "limit"])),
        ]
    );
    let (status, body) = send(app(), "GET", "/workers?limit=501", None).await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["ctx"], json!({"le": 500}));
}

#[tokio::test]
async fn patch_worker_bodies_are_validated_before_the_worker_is_looked_up() {
    for (body, kind) in [
        (r#"{}"#, "missing"),
        (r#"{"hidden": "maybe"}"#, "bool_parsing"),
        (r#"{"hidden": [true]}"#, "bool_type"),
        ("{nope", "json_invalid"),
    ] {
        let (status, answer) = send(
            app(),
            "PATCH",
            "/workers/anyone",
            Some(("application/json", body.as_bytes().to_vec())),
        )
        .await;
        assert_eq!(
            (status, &answer["detail"][0]["type"]),
            (422, &json!(kind)),
            "{body}"
        );
    }
}

#[tokio::test]
async fn every_route_that_reads_a_body_answers_413_over_its_limit() {
    // 3 MiB: over the 2 MiB of every route without a limit of its own.
    let huge = vec![b'{'; 3 << 20];
    for (method, uri) in [("POST", "/runs"), ("PATCH", "/workers/w1")] {
        let (status, body) =
            send(app(), method, uri, Some(("application/json", huge.clone()))).await;
        assert_eq!(
            (status, &body["code"]),
            (413, &json!("request_too_large")),
            "{method} {uri}: {body}"
        );
        assert_eq!(
            body["detail"], "request body too large (limit 2097152 bytes)",
            "the detail names the limit"
        );
    }
    // The wheel route's limit is PYOCO_WHEEL_MAX_BYTES + 1 MiB: set it small to see it.
    let small = app_with(|c| c.wheel_max_bytes = 1024);
    let (content_type, form) = pyoco::testkit::multipart(&[(
        "wheel",
        Some("mypkg-1.0-py3-none-any.whl"),
        &vec![0u8; 2 << 20],
    )]);
    let (status, body) = send(
        small,
        "POST",
        "/wheels",
        Some((content_type.as_str(), form)),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    // The original's detail, with the limit in `reason`.
    assert_eq!(body["detail"], "wheel too large");
    assert_eq!(
        body["reason"],
        "the wheel is over PYOCO_WHEEL_MAX_BYTES (1024 bytes)"
    );
}
