//! Error handling in flows, end to end through a worker: the fail policies (`stop`, `isolate`,
//! `continue` and its alias `continue_on_error`) and `on_error` handlers, per task and per
//! flow, that run when a task fails for good and receive the error.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::sync::{Arc, Mutex};

use pyoco::Registry;
use pyoco::testkit::Stack;
use serde_json::{Value, json};

fn state<'a>(run: &'a Value, task: &str) -> &'a Value {
    &run["task_records"][task]["state"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_policies_decide_what_a_failure_does_to_the_run() {
    let stack = Stack::start().await;

    // stop (the default): the run fails, the tasks after it never start.
    let run = stack
        .run_to_end(
            "flow: {graph: a >> b >> c}\ntasks:\n  a: {callable: 'pyoco:echo', inputs: {value: 1}}\n  b: {callable: 'pyoco:fail', inputs: {message: boom}}\n  c: {callable: 'pyoco:echo', inputs: {value: 3}}\n",
            "stop",
        )
        .await;
    assert_eq!(run["status"], "FAILED", "{run}");
    assert_eq!(run["error"], "boom");
    assert_eq!(state(&run, "a"), "SUCCEEDED");
    assert_eq!(state(&run, "b"), "FAILED");
    assert_eq!(state(&run, "c"), "PENDING");

    // isolate: what needs the failed task fails without running, the rest goes on.
    let run = stack
        .run_to_end(
            "flow: {graph: (b >> c) & d}\ntasks:\n  b: {callable: 'pyoco:fail', inputs: {message: boom}, fail_policy: isolate}\n  c: {callable: 'pyoco:echo', inputs: {value: 3}}\n  d: {callable: 'pyoco:echo', inputs: {value: 4}}\n",
            "isolate",
        )
        .await;
    assert_eq!(run["status"], "COMPLETED", "{run}");
    assert_eq!(run["error"], "boom");
    assert_eq!(state(&run, "b"), "FAILED");
    assert_eq!(state(&run, "c"), "FAILED");
    assert_eq!(
        run["task_records"]["c"]["error"],
        "upstream task of 'c' failed"
    );
    assert_eq!(run["task_records"]["d"]["output"], 4);

    // continue and its alias continue_on_error: the next task runs and sees null.
    for option in ["fail_policy: continue", "continue_on_error: true"] {
        let yaml = format!(
            "flow: {{graph: b >> c}}\ntasks:\n  b: {{callable: 'pyoco:fail', inputs: {{message: boom}}, {option}}}\n  c: {{callable: 'pyoco:echo', inputs: {{value: $node.b.output}}}}\n"
        );
        let run = stack.run_to_end(&yaml, "continue").await;
        assert_eq!(run["status"], "COMPLETED", "{option}: {run}");
        assert_eq!(run["error"], "boom", "{option}");
        assert_eq!(state(&run, "b"), "FAILED", "{option}");
        assert_eq!(state(&run, "c"), "SUCCEEDED", "{option}");
        assert_eq!(run["task_records"]["c"]["output"], Value::Null, "{option}");
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_on_error_handler_runs_once_its_retries_are_spent_and_gets_the_error() {
    let stack = Stack::start().await;
    let yaml = "flow: {graph: a >> b >> c}\ntasks:\n  a: {callable: 'pyoco:echo', inputs: {value: 1}}\n  b: {callable: 'pyoco:fail', inputs: {message: boom}, retries: 1, retry_backoff_ms: 1, on_error: alert}\n  c: {callable: 'pyoco:echo', inputs: {value: 3}}\n  alert: {callable: 'pyoco:echo', inputs: {failed: $error.task, why: $error.message, tries: $error.attempts}}\n";
    let run = stack.run_to_end(yaml, "handled").await;
    // The handler does not rescue the run: fail policy stop still fails it.
    assert_eq!(run["status"], "FAILED", "{run}");
    assert_eq!(run["error"], "boom");
    assert_eq!(state(&run, "c"), "PENDING");
    assert_eq!(state(&run, "alert"), "SUCCEEDED", "{run}");
    assert_eq!(
        run["task_records"]["alert"]["output"],
        json!({"failed": "b", "why": "boom", "tries": 2})
    );
    assert_eq!(run["tasks"]["alert"], "SUCCEEDED");

    // A run without failures never runs the handler.
    let ok = stack
        .run_to_end(
            "flow: {graph: a}\ntasks:\n  a: {callable: 'pyoco:echo', inputs: {value: 1}, on_error: alert}\n  alert: {callable: 'pyoco:fail', inputs: {message: should not run}}\n",
            "quiet",
        )
        .await;
    assert_eq!(ok["status"], "COMPLETED", "{ok}");
    assert!(ok["task_records"].get("alert").is_none(), "{ok}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flow_on_error_handler_gets_the_error_wired_by_parameter_name() {
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let mut registry = Registry::with_builtins();
    let log = seen.clone();
    registry.register("t:alert", &["error"], move |call| {
        let log = log.clone();
        async move {
            let error = call.args.get("error").cloned().unwrap_or(Value::Null);
            log.lock().unwrap().push(error.clone());
            Ok(json!({"alerted": error["task"]}))
        }
    });
    let stack = Stack::builder().registry(registry).start().await;
    // Two tasks fail and go on; one has its own handler, the other falls back to the flow's.
    let yaml = "flow: {graph: x & y, on_error: notify}\ntasks:\n  x: {callable: 'pyoco:fail', inputs: {message: x broke}, continue_on_error: true}\n  y: {callable: 'pyoco:fail', inputs: {message: y broke}, continue_on_error: true, on_error: own}\n  notify: {callable: 't:alert'}\n  own: {callable: 'pyoco:echo', inputs: {value: $error.message}}\n";
    let run = stack.run_to_end(yaml, "flow-handler").await;
    assert_eq!(run["status"], "COMPLETED", "{run}");
    assert_eq!(
        run["task_records"]["notify"]["output"],
        json!({"alerted": "x"})
    );
    assert_eq!(run["task_records"]["own"]["output"], "y broke");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["message"], "x broke");
    assert_eq!(seen[0]["attempts"], 1);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_is_recorded_and_changes_nothing_else() {
    let stack = Stack::start().await;
    let yaml = "flow: {graph: b >> c}\ntasks:\n  b: {callable: 'pyoco:fail', inputs: {message: boom}, continue_on_error: true, on_error: alert}\n  c: {callable: 'pyoco:echo', inputs: {value: 3}}\n  alert: {callable: 'pyoco:fail', inputs: {message: pager down}}\n";
    let run = stack.run_to_end(yaml, "handler-fails").await;
    assert_eq!(run["status"], "COMPLETED", "{run}");
    assert_eq!(run["error"], "boom");
    assert_eq!(run["task_records"]["c"]["output"], 3);
    assert_eq!(state(&run, "alert"), "FAILED");
    assert_eq!(run["task_records"]["alert"]["error"], "pager down");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_error_handling_options_are_refused_at_submit() {
    let stack = Stack::builder().no_worker().start().await;
    for (yaml, reason) in [
        (
            "flow: {graph: a}\ntasks: {a: {callable: 'pyoco:echo', on_error: ghost}}\n",
            "unknown_on_error_task: a: ghost",
        ),
        (
            "flow: {graph: a >> b}\ntasks: {a: {callable: 'pyoco:echo', on_error: b}, b: {callable: 'pyoco:echo'}}\n",
            "invalid_on_error: a: 'b' is in the graph",
        ),
        (
            "flow: {graph: a, on_error: h}\ntasks: {a: {callable: 'pyoco:echo'}, h: {callable: 'pyoco:echo', on_error: h2}, h2: {callable: 'pyoco:echo'}}\n",
            "invalid_on_error: flow: 'h' has an on_error of its own",
        ),
        (
            "flow: {graph: a, on_error: [h]}\ntasks: {a: {callable: 'pyoco:echo'}}\n",
            "invalid_on_error: flow",
        ),
        (
            "flow: {graph: a}\ntasks: {a: {callable: 'pyoco:echo', continue_on_error: true, fail_policy: stop}}\n",
            "invalid_task_fail_policy: a",
        ),
    ] {
        let err = stack
            .client
            .submit_yaml(yaml.as_bytes(), "bad", None)
            .await
            .unwrap_err();
        let pyoco::client::http::HttpError::Status(status) = &err else {
            panic!("{err}")
        };
        assert_eq!(status.status, 422, "{yaml}");
        let body: Value = serde_json::from_str(&status.body).unwrap();
        assert_eq!(body["reason"], reason, "{yaml}");
    }
    stack.stop().await;
}
