//! The DAG executor end to end, with native tasks and no NATS.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::flow::yaml::parse_flow_yaml;

fn run_info(params: Value) -> RunInfo {
    RunInfo {
        run_id: "r".into(),
        flow_name: "f".into(),
        params: Arc::new(params.as_object().cloned().unwrap_or_default()),
        services: Arc::new(crate::flow::services::NoServices),
        tenant_id: None,
        tag: "default".into(),
    }
}

async fn run(yaml: &str, registry: &Registry, params: Value) -> (Outcome, EngineState) {
    let spec = parse_flow_yaml(yaml.as_bytes()).expect("valid flow");
    let (tx, _rx) = watch::channel(EngineState::default());
    let outcome = run_flow(
        &spec,
        registry,
        &run_info(params),
        &tx,
        &CancellationToken::new(),
    )
    .await;
    let state = tx.borrow().clone();
    (outcome, state)
}

#[tokio::test]
async fn params_and_upstream_outputs_are_wired_by_name() {
    let mut reg = Registry::with_builtins();
    reg.register("t:add_one", &["x"], |c| async move {
        Ok(json!(c.args["x"].as_i64().unwrap_or(0) + 1))
    });
    reg.register("t:to_text", &["add_one"], |c| async move {
        Ok(json!(format!("v={}", c.args["add_one"])))
    });
    let yaml = "flow: {graph: 'add_one >> to_text'}\ntasks: {add_one: {callable: 't:add_one'}, to_text: {callable: 't:to_text'}}\n";
    let (outcome, state) = run(yaml, &reg, json!({"x": 41})).await;
    assert_eq!(outcome, Outcome::Completed(None));
    assert_eq!(state.task_records["add_one"].output, json!(42));
    assert_eq!(state.task_records["to_text"].output, json!("v=42"));
    assert_eq!(
        state.task_records["to_text"].inputs,
        json!({"add_one": 42}).as_object().cloned().unwrap()
    );
}

#[tokio::test]
async fn explicit_inputs_resolve_selectors_and_fail_clearly() {
    let reg = Registry::with_builtins();
    let yaml = "flow: {graph: 'a >> b'}\ntasks:\n  a: {callable: 'pyoco:echo', inputs: {value: {k: [1, 2]}}}\n  b: {callable: 'pyoco:echo', inputs: {value: '$node.a.output.k'}}\n";
    let (outcome, state) = run(yaml, &reg, json!({})).await;
    assert_eq!(outcome, Outcome::Completed(None));
    assert_eq!(state.task_records["b"].output, json!([1, 2]));

    let yaml = "flow: {graph: a}\ntasks: {a: {callable: 'pyoco:echo', inputs: {value: '$ctx.params.missing'}}}\n";
    let (outcome, state) = run(yaml, &reg, json!({})).await;
    assert_eq!(
        outcome,
        Outcome::Failed("'missing' (from $ctx.params.missing) is not a run param".into())
    );
    assert_eq!(state.tasks["a"], TaskState::Failed);
    let yaml =
        "flow: {graph: a}\ntasks: {a: {callable: 'pyoco:echo', inputs: {value: '$bogus'}}}\n";
    assert!(
        matches!(run(yaml, &reg, json!({})).await.0, Outcome::Failed(e) if e.starts_with("invalid reference '$bogus'"))
    );
}

#[tokio::test]
async fn or_join_runs_after_the_first_success() {
    let reg = Registry::with_builtins();
    let yaml = "flow: {graph: '(fast | slow) >> after'}\ntasks:\n  fast: {callable: 'pyoco:echo', inputs: {value: 1}}\n  slow: {callable: 'pyoco:sleep', inputs: {seconds: 0.3}}\n  after: {callable: 'pyoco:echo', inputs: {value: 2}}\n";
    let (outcome, state) = run(yaml, &reg, json!({})).await;
    assert_eq!(outcome, Outcome::Completed(None));
    let after_start = state.task_records["after"].started_at.unwrap();
    assert!(
        after_start < state.task_records["slow"].ended_at.unwrap(),
        "after must not wait for slow"
    );
}

#[tokio::test]
async fn a_failure_stops_the_flow_and_cancels_running_siblings() {
    let started = Arc::new(AtomicUsize::new(0));
    let mut reg = Registry::with_builtins();
    let s = started.clone();
    reg.register("t:count", &[], move |_| {
        let s = s.clone();
        async move {
            s.fetch_add(1, Ordering::SeqCst);
            Ok(Value::Null)
        }
    });
    let yaml = "flow: {graph: '(long & boom) >> later'}\ntasks:\n  long: {callable: 'pyoco:sleep', inputs: {seconds: 30}}\n  boom: {callable: 'pyoco:fail', inputs: {message: boom}}\n  later: {callable: 't:count'}\n";
    let t0 = std::time::Instant::now();
    let (outcome, state) = run(yaml, &reg, json!({})).await;
    assert_eq!(outcome, Outcome::Failed("boom".into()));
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "the long sibling was not awaited"
    );
    assert_eq!(state.tasks["long"], TaskState::Cancelled);
    assert_eq!(state.tasks["later"], TaskState::Pending);
    assert_eq!(started.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn cancel_stops_running_and_pending_tasks() {
    let reg = Registry::with_builtins();
    let spec = parse_flow_yaml(b"flow: {graph: 'a >> b'}\ntasks: {a: {callable: 'pyoco:sleep', inputs: {seconds: 30}}, b: {callable: 'pyoco:echo'}}\n").unwrap();
    let (tx, _rx) = watch::channel(EngineState::default());
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        c.cancel();
    });
    let outcome = run_flow(&spec, &reg, &run_info(json!({})), &tx, &cancel).await;
    assert_eq!(outcome, Outcome::Cancelled);
    let state = tx.borrow().clone();
    assert_eq!(state.tasks["a"], TaskState::Cancelled);
    assert_eq!(state.tasks["b"], TaskState::Cancelled);
    assert!(state.task_records["a"].ended_at.is_some());
}

#[tokio::test]
async fn unknown_callables_fail_with_a_reason() {
    let reg = Registry::with_builtins();
    let (outcome, _) = run(
        "flow: {graph: a}\ntasks: {a: {callable: 'pyoco:nope'}}\n",
        &reg,
        json!({}),
    )
    .await;
    assert_eq!(
        outcome,
        Outcome::Failed(
            "unknown task callable 'pyoco:nope': namespace 'pyoco' has no such task".into()
        )
    );
    let (outcome, _) = run("flow: {graph: a}\ntasks: {a: {}}\n", &reg, json!({})).await;
    assert_eq!(outcome, Outcome::Failed("task 'a' has no callable".into()));
}

async fn run_with(
    yaml: &str,
    registry: &Registry,
    services: Arc<dyn TaskServices>,
) -> (Outcome, EngineState) {
    let spec = parse_flow_yaml(yaml.as_bytes()).expect("valid flow");
    let (tx, _rx) = watch::channel(EngineState::default());
    let run = RunInfo {
        services,
        ..run_info(json!({}))
    };
    let outcome = run_flow(&spec, registry, &run, &tx, &CancellationToken::new()).await;
    let state = tx.borrow().clone();
    (outcome, state)
}

/// A task that fails its first `n` calls, then returns the call count.
fn flaky(reg: &mut Registry, name: &str, n: usize) -> Arc<AtomicUsize> {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    reg.register(name, &[], move |_| {
        let c = c.clone();
        async move {
            let k = c.fetch_add(1, Ordering::SeqCst) + 1;
            if k <= n {
                Err(TaskError::new(format!("failure {k}")))
            } else {
                Ok(json!(k))
            }
        }
    });
    calls
}

#[tokio::test]
async fn retries_with_backoff_until_success_and_count_attempts() {
    let mut reg = Registry::with_builtins();
    let calls = flaky(&mut reg, "t:flaky", 2);
    let yaml =
        "flow: {graph: a}\ntasks: {a: {callable: 't:flaky', retries: 3, retry_backoff_ms: 10}}\n";
    let (outcome, state) = run(yaml, &reg, json!({})).await;
    assert_eq!(outcome, Outcome::Completed(None));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let rec = &state.task_records["a"];
    assert_eq!(rec.extra["attempts"], json!(3));
    assert_eq!(rec.output, json!(3));
    assert_eq!(
        rec.error.as_deref(),
        Some("failure 2"),
        "the last failure stays visible, as in the original"
    );
    let yaml =
        "flow: {graph: a}\ntasks: {a: {callable: 't:flaky', retries: 1, retry_backoff_ms: 1}}\n";
    let mut reg = Registry::with_builtins();
    flaky(&mut reg, "t:flaky", 5);
    let (outcome, state) = run(yaml, &reg, json!({})).await;
    assert_eq!(outcome, Outcome::Failed("failure 2".into()));
    assert_eq!(state.task_records["a"].extra["attempts"], json!(2));
}

#[tokio::test]
async fn a_timeout_really_stops_the_task() {
    let reg = Registry::with_builtins();
    let t0 = std::time::Instant::now();
    let yaml = "flow: {graph: a}\ntasks: {a: {callable: 'pyoco:sleep', inputs: {seconds: 30}, timeout_sec: 0.2}}\n";
    let (outcome, state) = run(yaml, &reg, json!({})).await;
    assert_eq!(
        outcome,
        Outcome::Failed("Task 'a' exceeded timeout of 0.2s".into())
    );
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(state.tasks["a"], TaskState::Failed);
}

#[tokio::test]
async fn isolate_and_continue_fail_policies() {
    let reg = Registry::with_builtins();
    let yaml = "flow: {graph: 'bad >> after; other'}\ntasks:\n  bad: {callable: 'pyoco:fail', inputs: {message: nope}, fail_policy: isolate}\n  after: {callable: 'pyoco:echo'}\n  other: {callable: 'pyoco:echo', inputs: {value: 1}}\n";
    let (outcome, state) = run(yaml, &reg, json!({})).await;
    assert_eq!(outcome, Outcome::Completed(Some("nope".into())));
    assert_eq!(state.tasks["bad"], TaskState::Failed);
    assert_eq!(
        state.tasks["after"],
        TaskState::Failed,
        "a task needing an isolated failure does not run"
    );
    assert_eq!(
        state.task_records["after"].error.as_deref(),
        Some("upstream task of 'after' failed")
    );
    assert_eq!(state.tasks["other"], TaskState::Succeeded);
    let yaml = "flow: {graph: 'bad >> after'}\ntasks:\n  bad: {callable: 'pyoco:fail', inputs: {message: nope}, fail_policy: continue}\n  after: {callable: 'pyoco:echo', inputs: {value: 2}}\n";
    let (outcome, state) = run(yaml, &reg, json!({})).await;
    assert_eq!(outcome, Outcome::Completed(Some("nope".into())));
    assert_eq!(
        state.tasks["after"],
        TaskState::Succeeded,
        "continue lets the next task run"
    );
}

#[tokio::test]
async fn cache_hits_skip_the_call() {
    let mut reg = Registry::with_builtins();
    let calls = flaky(&mut reg, "t:count", 0);
    let services: Arc<dyn TaskServices> =
        Arc::new(crate::flow::services::MemoryServices::default());
    let yaml =
        "flow: {graph: a}\ntasks: {a: {callable: 't:count', inputs: {k: 1}, cache_ttl_sec: 60}}\n";
    let (_, first) = run_with(yaml, &reg, services.clone()).await;
    let (outcome, second) = run_with(yaml, &reg, services.clone()).await;
    assert_eq!(outcome, Outcome::Completed(None));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(first.task_records["a"].extra["cache"], json!("miss"));
    assert_eq!(second.task_records["a"].extra["cache"], json!("hit"));
    assert_eq!(second.task_records["a"].output, json!(1));
    // Other inputs are another cache entry.
    run_with(&yaml.replace("k: 1", "k: 2"), &reg, services).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_open_breaker_fails_fast() {
    let mut reg = Registry::with_builtins();
    let calls = flaky(&mut reg, "t:down", 100);
    let services: Arc<dyn TaskServices> =
        Arc::new(crate::flow::services::MemoryServices::default());
    let yaml = "flow: {graph: a}\ntasks: {a: {callable: 't:down', circuit_breaker: {failure_threshold: 2, reset_after_sec: 60}}}\n";
    for _ in 0..2 {
        run_with(yaml, &reg, services.clone()).await;
    }
    let (outcome, _) = run_with(yaml, &reg, services).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the third call never reached the task"
    );
    assert!(
        matches!(outcome, Outcome::Failed(e) if e.starts_with("circuit open for 't:down' after 2 consecutive failures"))
    );
}
