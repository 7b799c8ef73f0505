//! The run path end to end against a real nats-server: submit over HTTP, a worker runs the
//! flow, the snapshot is read back.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

mod common;

use common::Stack;
use serde_json::json;

const FAN_OUT_IN: &str = r#"
version: 1
flow:
  graph: a >> (b & c) >> d
  defaults: {greeting: hello}
tasks:
  a: {callable: "pyoco:echo", inputs: {value: "$ctx.params.greeting"}}
  b: {callable: "pyoco:sleep", inputs: {seconds: 0.3}}
  c: {callable: "pyoco:sleep", inputs: {seconds: 0.3}}
  d: {callable: "pyoco:echo", inputs: {value: "$node.a.output"}}
  unused: {callable: "pyoco:fail"}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_flow_with_fan_out_and_fan_in_completes() {
    let stack = Stack::start().await;
    let submitted = stack
        .client
        .submit_yaml(FAN_OUT_IN.as_bytes(), "fan", None)
        .await
        .expect("submit");
    assert_eq!(submitted["status"], "PENDING");
    assert_eq!(submitted["bundle_hash"], serde_json::Value::Null);
    let run_id = submitted["run_id"].as_str().expect("run_id").to_string();

    let run = stack.wait_terminal(&run_id).await;
    assert_eq!(run["status"], "COMPLETED", "{run:#}");
    assert_eq!(run["flow_name"], "fan");
    assert_eq!(
        run["tasks"],
        json!({"a": "SUCCEEDED", "b": "SUCCEEDED", "c": "SUCCEEDED", "d": "SUCCEEDED"})
    );
    assert_eq!(run["params"], json!({"greeting": "hello"}));
    assert_eq!(run["worker_id"], "w1");
    assert_eq!(
        run["workflow_yaml_sha256"],
        pyoco::flow::yaml::sha256_hex(FAN_OUT_IN.as_bytes())
    );
    assert!(run["end_time"].as_f64().unwrap() >= run["start_time"].as_f64().unwrap());
    let rec = &run["task_records"];
    assert_eq!(rec["a"]["output"], "hello");
    assert_eq!(rec["d"]["output"], "hello");
    assert_eq!(rec["d"]["inputs"], json!({"value": "hello"}));
    // b and c ran concurrently, d only after both.
    let (b0, b1) = (
        rec["b"]["started_at"].as_f64().unwrap(),
        rec["b"]["ended_at"].as_f64().unwrap(),
    );
    let (c0, c1) = (
        rec["c"]["started_at"].as_f64().unwrap(),
        rec["c"]["ended_at"].as_f64().unwrap(),
    );
    assert!(b0 < c1 && c0 < b1, "b and c should overlap");
    assert!(rec["d"]["started_at"].as_f64().unwrap() >= b1.max(c1));
    // A task not named in the graph never runs.
    assert!(run["tasks"].get("unused").is_none());
    // Without include=records, records are left out.
    let plain = stack.client.get_run(&run_id, false).await.unwrap();
    assert!(plain.get("task_records").is_none());
    assert_eq!(plain["worker_alive"], true);
}
