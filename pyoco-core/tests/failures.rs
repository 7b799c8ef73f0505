//! Failure paths of the worker against a real nats-server: task failure, unknown flow,
//! unresolvable callable, invalid jobs, orphan and duplicate jobs, bounded redelivery.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::time::Duration;

use async_nats::jetstream;
use pyoco::testkit::{Stack, submit_yaml, wait_for};
use serde_json::{Value, json};

/// Reads every message of the DLQ stream.
async fn dlq_messages(stack: &Stack, expect: usize) -> Vec<Value> {
    let client = async_nats::connect(stack.config.nats_url.as_str())
        .await
        .unwrap();
    let js = jetstream::new(client);
    let stream = js.get_stream("PYOCO_DLQ").await.unwrap();
    wait_for("DLQ messages", Duration::from_secs(10), || {
        let stream = stream.clone();
        async move {
            let info = stream.get_info().await.ok()?;
            (info.state.messages as usize >= expect).then_some(())
        }
    })
    .await;
    let mut out = Vec::new();
    let info = stream.get_info().await.unwrap();
    for seq in info.state.first_sequence..=info.state.last_sequence {
        if let Ok(msg) = stream.get_raw_message(seq).await {
            out.push(serde_json::from_slice(&msg.payload).unwrap());
        }
    }
    out
}

async fn work_stream_messages(stack: &Stack) -> u64 {
    let client = async_nats::connect(stack.config.nats_url.as_str())
        .await
        .unwrap();
    let js = jetstream::new(client);
    js.get_stream("PYOCO_WORK")
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap()
        .state
        .messages
}

const FAILING: &str = r#"
flow: {graph: "first >> broken >> never"}
tasks:
  first: {callable: "pyoco:echo", inputs: {value: 1}}
  broken: {callable: "pyoco:fail", inputs: {message: "disk full"}}
  never: {callable: "pyoco:echo"}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_failure_fails_the_run_and_dead_letters_execution_error() {
    let stack = Stack::start().await;
    let run_id = submit_yaml(&stack.client, FAILING, "failing", None).await;
    let run = stack.wait_terminal(&run_id).await;
    assert_eq!(run["status"], "FAILED");
    assert_eq!(run["error"], "disk full");
    assert_eq!(
        run["tasks"],
        json!({"first": "SUCCEEDED", "broken": "FAILED", "never": "PENDING"})
    );
    assert_eq!(run["task_records"]["broken"]["error"], "disk full");
    assert!(run["end_time"].is_f64());

    let dlq = dlq_messages(&stack, 1).await;
    assert_eq!(dlq.len(), 1);
    let m = &dlq[0];
    assert_eq!(m["reason"], "execution_error");
    assert_eq!(m["error"], "disk full");
    assert_eq!(m["run_id"], run_id.as_str());
    assert_eq!(m["flow_name"], "failing");
    assert_eq!(m["tag"], "default");
    assert_eq!(m["tags"], json!(["default"]));
    assert_eq!(m["worker_id"], "w1");
    assert!(m["timestamp"].is_f64());
    assert!(m.get("tenant_id").is_some() && m.get("api_key_id").is_some());
    assert_eq!(work_stream_messages(&stack).await, 0, "the job is acked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execution_error_dlq_can_be_turned_off() {
    let stack = Stack::start_with(|c| c.dlq_publish_execution_error = false).await;
    let run_id = submit_yaml(&stack.client, FAILING, "failing", None).await;
    assert_eq!(stack.wait_terminal(&run_id).await["status"], "FAILED");
    // A second, unknown-flow run proves the DLQ works and holds only that one.
    let other = stack
        .client
        .submit_run("nope", Default::default(), None, None)
        .await
        .unwrap();
    stack.wait_terminal(other["run_id"].as_str().unwrap()).await;
    let dlq = dlq_messages(&stack, 1).await;
    assert_eq!(
        dlq.iter()
            .map(|m| m["reason"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["flow_not_found"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_named_flow_fails_with_flow_not_found() {
    let stack = Stack::start().await;
    let resp = stack
        .client
        .submit_run("nope", Default::default(), Some("default"), None)
        .await
        .unwrap();
    let run_id = resp["run_id"].as_str().unwrap();
    let run = stack.wait_terminal(run_id).await;
    assert_eq!(run["status"], "FAILED");
    assert_eq!(run["error"], "flow_not_found: 'nope'");
    assert_eq!(run["end_time"], Value::Null);
    let dlq = dlq_messages(&stack, 1).await;
    assert_eq!(dlq[0]["reason"], "flow_not_found");
    assert_eq!(dlq[0]["run_id"], run_id);
    assert_eq!(dlq[0]["flow_name"], "nope");
    assert_eq!(dlq[0]["worker_id"], "w1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unresolvable_callable_fails_the_run_with_a_clear_error() {
    let stack = Stack::start().await;
    let yaml = "flow: {graph: a}\ntasks: {a: {callable: 'mymodule:train'}}\n";
    let run_id = submit_yaml(&stack.client, yaml, "py", None).await;
    let run = stack.wait_terminal(&run_id).await;
    assert_eq!(run["status"], "FAILED");
    let error = run["error"].as_str().unwrap();
    assert!(error.contains("No module named 'mymodule'"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_job_is_terminated_and_dead_lettered() {
    let stack = Stack::start().await;
    let client = async_nats::connect(stack.config.nats_url.as_str())
        .await
        .unwrap();
    let js = jetstream::new(client);
    js.publish("pyoco.work.default", "not json at all".into())
        .await
        .unwrap()
        .await
        .unwrap();
    js.publish("pyoco.work.default", r#"{"run_id":"x"}"#.into())
        .await
        .unwrap()
        .await
        .unwrap();
    let dlq = dlq_messages(&stack, 2).await;
    assert_eq!(dlq.len(), 2);
    for m in &dlq {
        assert_eq!(m["reason"], "invalid_job");
        assert_eq!(m["subject"], "pyoco.work.default");
        assert_eq!(m["worker_id"], "w1");
        assert_eq!(m["num_delivered"], 1);
    }
    assert_eq!(dlq[0]["payload"], "not json at all");
    assert!(
        dlq[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid_json")
    );
    assert!(
        dlq[1]["error"]
            .as_str()
            .unwrap()
            .starts_with("missing_fields")
    );
    wait_for(
        "TERM to remove the jobs",
        Duration::from_secs(5),
        || async { (work_stream_messages(&stack).await == 0).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_without_snapshot_is_dropped_and_duplicate_of_finished_run_is_skipped() {
    let stack = Stack::start().await;
    let client = async_nats::connect(stack.config.nats_url.as_str())
        .await
        .unwrap();
    let js = jetstream::new(client);
    // A job whose submit was rolled back: no snapshot exists.
    let orphan = json!({"run_id": "orphan-1", "flow_name": "hello", "tag": "default", "params": {}, "submitted_at": 1.0});
    js.publish("pyoco.work.default", orphan.to_string().into())
        .await
        .unwrap()
        .await
        .unwrap();
    // A finished run whose job arrives again (e.g. an ack lost in a restart).
    let yaml = "flow: {graph: a}\ntasks: {a: {callable: 'pyoco:echo', inputs: {value: 7}}}\n";
    let run_id = submit_yaml(&stack.client, yaml, "once", None).await;
    let done = stack.wait_terminal(&run_id).await;
    assert_eq!(done["status"], "COMPLETED");
    let again = json!({"run_id": run_id, "flow_name": "once", "tag": "default", "params": {}, "submitted_at": 1.0, "workflow_yaml": yaml});
    js.publish("pyoco.work.default", again.to_string().into())
        .await
        .unwrap()
        .await
        .unwrap();
    wait_for("both jobs acked", Duration::from_secs(10), || async {
        (work_stream_messages(&stack).await == 0).then_some(())
    })
    .await;
    let after = stack.client.get_run(&run_id, true).await.unwrap();
    assert_eq!(after["status"], "COMPLETED");
    assert_eq!(
        after["updated_at"], done["updated_at"],
        "a finished run is never re-run"
    );
    let missing = stack.client.get_run("orphan-1", false).await.unwrap_err();
    assert_eq!(missing.status(), Some(404));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_pending_run_ends_cancelled_without_running() {
    let stack = Stack::start().await;
    // Tag "later" has no worker yet: the run waits in the queue.
    let yaml = "flow: {graph: a}\ntasks: {a: {callable: 'pyoco:fail'}}\n";
    let run_id = submit_yaml(&stack.client, yaml, "late", Some("later")).await;
    let nats = pyoco::NatsClient::connect(stack.config.clone())
        .await
        .unwrap();
    nats.store()
        .runs()
        .update(&run_id, |doc| {
            doc.status = pyoco::RunStatus::Cancelling;
            doc.cancel_requested_at = Some(pyoco::model::now());
            pyoco::store::Change::Write
        })
        .await
        .unwrap();
    let worker = pyoco::testkit::WorkerHandle::start(
        stack.config.clone(),
        pyoco::Registry::with_builtins(),
        "w-later",
        &["later"],
    )
    .await;
    let run = stack.wait_terminal(&run_id).await;
    assert_eq!(run["status"], "CANCELLED");
    assert_eq!(run["error"], Value::Null);
    assert!(run["cancel_requested_at"].is_f64());
    assert_eq!(run["tasks"], json!({}), "nothing ran");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_error_fails_the_job_at_once_instead_of_redelivering() {
    let stack = Stack::start_with(|c| {
        c.consumer_max_deliver = 2;
    })
    .await;
    let yaml = "flow: {graph: a}\ntasks: {a: {callable: 'pyoco:echo'}}\n";
    // Tag "doomed" has no worker yet: submit, then corrupt the snapshot so every attempt fails.
    let nats = pyoco::NatsClient::connect(stack.config.clone())
        .await
        .unwrap();
    let run_id = nats
        .submit_yaml(yaml.as_bytes(), "doomed", Some("doomed"))
        .await
        .unwrap();
    nats.store()
        .runs()
        .put_raw(&run_id, "{corrupt".into())
        .await
        .unwrap();
    let worker = pyoco::testkit::WorkerHandle::start(
        stack.config.clone(),
        pyoco::Registry::with_builtins(),
        "w-doomed",
        &["doomed"],
    )
    .await;
    // A corrupt snapshot cannot get better by retrying: the job is given up at once.
    let dlq = dlq_messages(&stack, 1).await;
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0]["reason"], "execution_error");
    assert_eq!(dlq[0]["run_id"], run_id.as_str());
    let error = dlq[0]["error"].as_str().unwrap();
    assert!(
        error.starts_with("cannot process the job:") && error.contains("not valid JSON"),
        "{error}"
    );
    wait_for(
        "the job to be terminated",
        Duration::from_secs(10),
        || async { (work_stream_messages(&stack).await == 0).then_some(()) },
    )
    .await;
    worker.stop().await;
}
