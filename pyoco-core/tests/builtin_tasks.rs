//! The built-in executors `pyoco:http`, `pyoco:shell` and `pyoco:python`, run through the
//! real stack (nats-server, gateway, worker) against a local HTTP server, real processes and
//! a real interpreter. Flows are written as JSON, which is valid YAML, to avoid quoting.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Json};
use axum::routing::{any, get};
use pyoco::testkit::{Stack, submit_yaml, wait_for};
use serde_json::{Value, json};

/// A local HTTP server: `/echo/...` describes the request, `/flaky` fails twice with 500,
/// `/slow` answers after 10 s, anything else is 404. Returns its base url and the number of
/// `/flaky` calls.
async fn test_server() -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = Router::new()
        .route("/echo/{*rest}", any(echo))
        .route(
            "/flaky",
            get(move || {
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    if n < 3 {
                        (StatusCode::INTERNAL_SERVER_ERROR, "try again").into_response()
                    } else {
                        Json(json!({"calls": n})).into_response()
                    }
                }
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                "late"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, calls)
}

async fn echo(method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Json<Value> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let body = serde_json::from_slice::<Value>(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    Json(json!({
        "method": method.as_str(),
        "path": uri.path(),
        "query": uri.query(),
        "authorization": header("authorization"),
        "content_type": header("content-type"),
        "body": body,
    }))
}

/// Submits `flow` and waits until the run is terminal.
async fn run(stack: &Stack, flow: Value) -> Value {
    let run_id = submit(stack, &flow).await;
    stack.wait_terminal(&run_id).await
}

async fn submit(stack: &Stack, flow: &Value) -> String {
    submit_yaml(&stack.client, &flow.to_string(), "builtins", None).await
}

/// True while any live (non-zombie) process is in process group `pgid`.
fn group_alive(pgid: u32) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised command: state, ppid, pgrp, ...
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
    })
}

async fn pid_from(file: &Path) -> u32 {
    wait_for("the pid file", Duration::from_secs(20), || async {
        std::fs::read_to_string(file).ok()?.trim().parse().ok()
    })
    .await
}

async fn wait_group_gone(pgid: u32) {
    wait_for(
        "the process group to be gone",
        Duration::from_secs(10),
        || async { (!group_alive(pgid)).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_templates_params_and_upstream_output_into_url_headers_query_and_json() {
    let (base, _) = test_server().await;
    let stack = Stack::start().await;
    let flow = json!({
        "flow": {"graph": "lookup >> call", "defaults": {"base": base, "token": "s3cret", "tenant": "t1"}},
        "tasks": {
            "lookup": {"callable": "pyoco:echo", "inputs": {"value": {"id": 7, "tags": ["a", "b"]}}},
            "call": {"callable": "pyoco:http", "inputs": {
                "method": "post",
                "url": "{{params.base}}/echo/items/{{steps.lookup.output.id}}",
                "headers": {"Authorization": "Bearer {{params.token}}"},
                "query": {"tenant": "{{params.tenant}}", "task": "{{context.task}}"},
                "json": {"id": "{{steps.lookup.output.id}}", "tags": "{{steps.lookup.output.tags}}", "note": "run {{context.run_id}}"}
            }}
        }
    });
    let done = run(&stack, flow.clone()).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    let out = &done["task_records"]["call"]["output"];
    assert_eq!(out["status"], 200);
    assert!(
        out["headers"]["content-type"]
            .as_str()
            .unwrap()
            .contains("application/json")
    );
    let seen = &out["body"];
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/echo/items/7");
    assert_eq!(seen["query"], "tenant=t1&task=call");
    assert_eq!(seen["authorization"], "Bearer s3cret");
    assert_eq!(seen["content_type"], "application/json");
    let note = format!("run {}", done["run_id"].as_str().unwrap());
    assert_eq!(
        seen["body"],
        json!({"id": 7, "tags": ["a", "b"], "note": note})
    );

    let mut broken = flow;
    broken["tasks"]["call"]["inputs"]["url"] = json!("{{params.base}}/echo/{{params.nope}}");
    let failed = run(&stack, broken).await;
    assert_eq!(failed["status"], "FAILED");
    assert_eq!(
        failed["error"],
        "pyoco:http: template {{params.nope}} in url: 'nope' is not a run param"
    );
    stack.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_5xx_is_retried_until_success_and_other_statuses_fail_or_are_expected() {
    let (base, calls) = test_server().await;
    let stack = Stack::start().await;
    let flaky = json!({
        "flow": {"graph": "call"},
        "tasks": {"call": {"callable": "pyoco:http", "retries": 3, "retry_backoff_ms": 10,
            "inputs": {"url": format!("{base}/flaky")}}}
    });
    let done = run(&stack, flaky).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    let rec = &done["task_records"]["call"];
    assert_eq!(rec["attempts"], 3);
    assert_eq!(rec["output"]["body"], json!({"calls": 3}));
    assert_eq!(
        rec["error"],
        format!("HTTP 500 GET {base}/flaky"),
        "the last failure stays visible"
    );
    assert!(
        rec.get("response").is_none(),
        "no stale failed response on success"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    let missing = |expect: Value| {
        json!({"flow": {"graph": "call"}, "tasks": {"call": {"callable": "pyoco:http",
            "inputs": {"url": format!("{base}/missing?key=secret"), "expect_status": expect}}}})
    };
    let failed = run(&stack, missing(Value::Null)).await;
    assert_eq!(failed["status"], "FAILED");
    assert_eq!(
        failed["error"],
        format!("HTTP 404 GET {base}/missing"),
        "no query in the message"
    );
    assert_eq!(failed["task_records"]["call"]["response"]["status"], 404);
    let expected = run(&stack, missing(json!([404]))).await;
    assert_eq!(expected["status"], "COMPLETED", "{expected}");
    assert_eq!(expected["task_records"]["call"]["output"]["status"], 404);
    stack.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_timeout_fails_fast_against_a_slow_endpoint() {
    let (base, _) = test_server().await;
    let stack = Stack::start().await;
    let t0 = Instant::now();
    let failed = run(
        &stack,
        json!({"flow": {"graph": "call"}, "tasks": {"call": {
        "callable": "pyoco:http", "inputs": {"url": format!("{base}/slow"), "timeout_sec": 0.5}}}}),
    )
    .await;
    assert_eq!(failed["status"], "FAILED");
    assert_eq!(
        failed["error"],
        format!("pyoco:http: HTTP request timed out after 0.5s: GET {base}/slow")
    );
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "took {:?}",
        t0.elapsed()
    );
    stack.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_argv_env_parse_json_and_exit_codes() {
    let stack = Stack::start().await;
    let script = r#"printf '{"greeting": "%s", "n": %s}' "$GREETING" "$N""#;
    let done = run(&stack, json!({"flow": {"graph": "s"}, "tasks": {"s": {"callable": "pyoco:shell",
        "inputs": {"argv": ["sh", "-c", script], "env": {"GREETING": "hello", "N": 3}, "parse_json": true}}}}))
    .await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    let out = &done["task_records"]["s"]["output"];
    assert_eq!(out["json"], json!({"greeting": "hello", "n": 3}));
    assert_eq!(out["exit_code"], 0);
    assert_eq!(out["stdout"], r#"{"greeting": "hello", "n": 3}"#);
    assert_eq!(out["stdout_truncated"], false);

    let failing = |ok: Value| {
        json!({"flow": {"graph": "s"}, "tasks": {"s": {"callable": "pyoco:shell", "inputs": {
            "command": "echo partial; echo first >&2; echo oops >&2; exit 3", "ok_exit_codes": ok}}}})
    };
    let failed = run(&stack, failing(Value::Null)).await;
    assert_eq!(failed["status"], "FAILED");
    assert_eq!(failed["error"], "command exited with code 3: oops");
    assert_eq!(failed["task_records"]["s"]["stdout"], "partial\n");
    assert_eq!(failed["task_records"]["s"]["exit_code"], 3);
    let accepted = run(&stack, failing(json!([0, 3]))).await;
    assert_eq!(accepted["status"], "COMPLETED", "{accepted}");
    assert_eq!(
        accepted["task_records"]["s"]["output"]["stderr"],
        "first\noops\n"
    );

    let big = run(
        &stack,
        json!({"flow": {"graph": "s"}, "tasks": {"s": {"callable": "pyoco:shell",
        "inputs": {"command": "head -c 200000 /dev/zero | tr '\\0' x"}}}}),
    )
    .await;
    let out = &big["task_records"]["s"]["output"];
    assert_eq!(out["stdout"].as_str().unwrap().len(), 64 * 1024);
    assert_eq!(out["stdout_truncated"], true);
    stack.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_policy_timeout_kills_the_whole_process_group() {
    let stack = Stack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let t0 = Instant::now();
    let failed = run(
        &stack,
        json!({"flow": {"graph": "s"}, "tasks": {"s": {"callable": "pyoco:shell",
        "timeout_sec": 0.5,
        "inputs": {"command": format!("echo $$ > {}; sleep 60", pid_file.display())}}}}),
    )
    .await;
    assert_eq!(failed["status"], "FAILED");
    assert_eq!(failed["error"], "Task 's' exceeded timeout of 0.5s");
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t0.elapsed()
    );
    let pgid = pid_from(&pid_file).await;
    wait_group_gone(pgid).await;

    // The executor's own timeout_sec input stops it the same way, with its own message.
    std::fs::remove_file(&pid_file).unwrap();
    let failed = run(&stack, json!({"flow": {"graph": "s"}, "tasks": {"s": {"callable": "pyoco:shell",
        "inputs": {"command": format!("echo $$ > {}; sleep 60", pid_file.display()), "timeout_sec": 0.5}}}}))
    .await;
    assert_eq!(failed["error"], "pyoco:shell: command timed out after 0.5s");
    wait_group_gone(pid_from(&pid_file).await).await;
    stack.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_run_kills_a_long_shell_command() {
    let stack = Stack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let flow = json!({"flow": {"graph": "s"}, "tasks": {"s": {"callable": "pyoco:shell",
        "inputs": {"command": format!("echo $$ > {}; sleep 60 & sleep 61; wait", pid_file.display())}}}});
    let run_id = submit(&stack, &flow).await;
    let pgid = pid_from(&pid_file).await;
    assert!(group_alive(pgid));
    let asked = Instant::now();
    let response = reqwest::Client::new()
        .post(format!("{}/runs/{run_id}/cancel", stack.gateway.url()))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let done = stack.wait_terminal(&run_id).await;
    assert_eq!(done["status"], "CANCELLED");
    assert_eq!(done["tasks"]["s"], "CANCELLED");
    wait_group_gone(pgid).await;
    assert!(asked.elapsed() < Duration::from_secs(15));
    stack.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_script_returns_mains_value_and_exceptions_carry_a_traceback() {
    let stack = Stack::start().await;
    let script = "def main(params, input_payload):\n    print('hello')\n    return {'double': params['x'] * 2, 'count': len(input_payload['items'])}\n";
    let done = run(
        &stack,
        json!({"flow": {"graph": "p", "defaults": {"x": 21}}, "tasks": {"p": {
        "callable": "pyoco:python", "inputs": {"script": script, "input": {"items": [1, 2, 3]}}}}}),
    )
    .await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    let rec = &done["task_records"]["p"];
    assert_eq!(rec["output"], json!({"double": 42, "count": 3}));
    assert_eq!(rec["stdout"], "hello\n");

    let script = "def helper(v):\n    raise ValueError('bad input: %s' % v)\n\ndef main(params, input_payload):\n    helper(input_payload)\n";
    let failed = run(
        &stack,
        json!({"flow": {"graph": "p"}, "tasks": {"p": {
        "callable": "pyoco:python", "inputs": {"script": script, "input": 5}}}}),
    )
    .await;
    assert_eq!(failed["status"], "FAILED");
    assert_eq!(failed["error"], "bad input: 5");
    let tb = failed["task_records"]["p"]["traceback"].as_str().unwrap();
    assert!(
        tb.starts_with("Traceback") && tb.contains("ValueError: bad input: 5"),
        "{tb}"
    );
    assert!(tb.contains("File \"<script>\", line 2, in helper"), "{tb}");

    let none = run(
        &stack,
        json!({"flow": {"graph": "p"}, "tasks": {"p": {
        "callable": "pyoco:python", "inputs": {"script": "x = 1\n"}}}}),
    )
    .await;
    assert_eq!(
        none["error"],
        "the script must define main(params, input_payload)"
    );
    stack.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_memory_and_time_limits_stop_the_script() {
    // Unsandboxed, so the spinning script can write its host pid where the test reads it;
    // the process-group kill is the same with the sandbox (tests/script_sandbox.rs).
    let stack = Stack::start_with(|c| c.script_sandbox = false).await;
    let hog = "def main(params, input_payload):\n    block = bytearray(1024 * 1024 * 1024)\n    return len(block)\n";
    let failed = run(
        &stack,
        json!({"flow": {"graph": "p"}, "tasks": {"p": {
        "callable": "pyoco:python", "inputs": {"script": hog, "memory_mb": 64}}}}),
    )
    .await;
    assert_eq!(failed["status"], "FAILED");
    assert_eq!(
        failed["error"],
        "MemoryError: the script exceeded memory_mb=64"
    );
    assert!(
        failed["task_records"]["p"]["traceback"]
            .as_str()
            .unwrap()
            .contains("MemoryError")
    );

    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let spin = "import os\n\ndef main(params, input_payload):\n    with open(input_payload, 'w') as f:\n        f.write(str(os.getpid()))\n    while True:\n        pass\n";
    let t0 = Instant::now();
    let failed = run(&stack, json!({"flow": {"graph": "p"}, "tasks": {"p": {
        "callable": "pyoco:python", "inputs": {"script": spin, "input": pid_file, "timeout_sec": 1}}}}))
    .await;
    assert_eq!(failed["status"], "FAILED");
    assert_eq!(failed["error"], "pyoco:python: script timed out after 1s");
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t0.elapsed()
    );
    wait_group_gone(pid_from(&pid_file).await).await;
    stack.gateway.stop().await;
}
