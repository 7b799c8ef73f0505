//! Synchronous runs: `POST /runs?wait_sec=N` and `POST /runs/yaml?wait_sec=N` answer 200 with
//! the terminal snapshot when the run ends in time, 202 with where to watch it otherwise, and
//! exactly as the original (200, PENDING) without `wait_sec`.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::time::Duration;

use pyoco::Registry;
use pyoco::testkit::{Stack, WorkerHandle, multipart};
use serde_json::{Value, json};

const SLEEPY: &str = "flow: {graph: nap >> say}\ntasks:\n  nap: {callable: 'pyoco:sleep', inputs: {seconds: 0.3}}\n  say: {callable: 'pyoco:echo', inputs: {value: done}}\n";

async fn post_yaml(stack: &Stack, query: &str, yaml: &str) -> reqwest::Response {
    let (content_type, body) = multipart(&[
        ("workflow", Some("flow.yaml"), yaml.as_bytes()),
        ("flow_name", None, b"sync"),
    ]);
    reqwest::Client::new()
        .post(format!("{}/runs/yaml{query}", stack.gateway.url()))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn post_run(stack: &Stack, query: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/runs{query}", stack.gateway.url()))
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_ends_in_time_answers_200_with_its_terminal_snapshot() {
    let stack = Stack::start().await;
    // Through the client: the wait covers a task that sleeps, so the answer comes from the
    // pushed writes, not from the first read.
    let client = stack.client.clone().with_sync_wait(Duration::from_secs(30));
    let done = client
        .submit_yaml(SLEEPY.as_bytes(), "sync", None)
        .await
        .unwrap();
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(done["task_records"]["say"]["output"], "done", "{done}");
    assert_eq!(done["worker_id"], "w1");
    assert!(done.get("watch_url").is_none());

    // By name: the worker cannot resolve it, so the run ends FAILED — still a terminal answer.
    let resp = post_run(&stack, "?wait_sec=30", json!({"flow_name": "nowhere"})).await;
    assert_eq!(resp.status(), 200);
    let failed: Value = resp.json().await.unwrap();
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert_eq!(failed["flow_name"], "nowhere");
    // Without include=records the snapshot is the one GET /runs/{id} gives.
    assert!(failed.get("task_records").is_none());
    let get = stack
        .client
        .get_run(failed["run_id"].as_str().unwrap(), false)
        .await
        .unwrap();
    assert_eq!(get["status"], failed["status"]);
    assert_eq!(get["error"], failed["error"]);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_does_not_end_in_time_answers_202_with_where_to_watch_it() {
    // No worker yet, and a server maximum far below the asked wait: the answer comes once the
    // maximum has passed (this test would hang for 10 minutes otherwise).
    let stack = Stack::builder()
        .no_worker()
        .config(|c| c.sync_wait_max = Duration::from_millis(300))
        .start()
        .await;
    // Even a wait no Duration can hold is capped (it once panicked the handler).
    let resp = post_run(&stack, "?wait_sec=1e300", json!({"flow_name": "main"})).await;
    assert_eq!(resp.status(), 202);
    let resp = post_yaml(&stack, "?wait_sec=600", SLEEPY).await;
    assert_eq!(resp.status(), 202);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let body: Value = resp.json().await.unwrap();
    let run_id = body["run_id"].as_str().unwrap();
    assert_eq!(body["status"], "PENDING");
    assert_eq!(location, format!("/runs/{run_id}"));
    assert_eq!(body["watch_url"], format!("/runs/{run_id}/watch"));

    // The run goes on: a worker started now finishes it, and the watch shows the end.
    let worker = WorkerHandle::start(
        stack.config.clone(),
        Registry::with_builtins(),
        "late",
        &["default"],
    )
    .await;
    let done = stack.wait_terminal(run_id).await;
    assert_eq!(done["status"], "COMPLETED");
    worker.stop().await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_wait_sec_a_submit_answers_as_the_original() {
    let stack = Stack::builder().no_worker().start().await;
    let resp = post_run(&stack, "", json!({"flow_name": "main"})).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "PENDING");
    assert_eq!(body["bundle_hash"], Value::Null);
    assert!(body.get("watch_url").is_none());
    let resp = post_yaml(&stack, "", SLEEPY).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "PENDING");

    // wait_sec=0 asks for no wait at all: the run cannot have ended yet.
    let resp = post_run(&stack, "?wait_sec=0", json!({"flow_name": "main"})).await;
    assert_eq!(resp.status(), 202);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_wait_sec_is_a_422_and_no_run_is_made() {
    let stack = Stack::builder().no_worker().start().await;
    for bad in ["-1", "soon", "nan"] {
        let resp = post_run(
            &stack,
            &format!("?wait_sec={bad}"),
            json!({"flow_name": "main"}),
        )
        .await;
        assert_eq!(resp.status(), 422, "{bad}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            body["detail"][0]["loc"],
            json!(["query", "wait_sec"]),
            "{bad}"
        );
    }
    let runs = stack.client.list_runs(&Default::default()).await.unwrap();
    assert!(runs.is_empty(), "{runs:?}");
    stack.stop().await;
}
