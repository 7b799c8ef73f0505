//! The DAG executor: runs every task whose condition holds, concurrently on tokio, applies
//! each task's policy (retries with backoff, timeout, fail policy, cache, circuit breaker),
//! records `tasks` and `task_records` like the original, and stops at the first failure (fail
//! policy `stop`) or a cancel.
//!
//! Progress is published on a `watch` channel; the caller (the worker) decides when to write
//! it to KV. The engine never talks to NATS: cache and breakers come through
//! [`TaskServices`].

use std::collections::HashMap;
use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::policy::{FailPolicy, TaskPolicy};
use super::services::{TaskServices, cache_key};
use super::tasks::{Registry, TaskCall, TaskDef, TaskError};
use super::yaml::{FlowSpec, TaskSpec};
use crate::model::{TaskRecord, TaskState, now};

/// The part of the run snapshot the engine owns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineState {
    pub tasks: IndexMap<String, TaskState>,
    pub task_records: IndexMap<String, TaskRecord>,
}

impl EngineState {
    /// Every task of the graph, PENDING.
    pub fn for_flow(spec: &FlowSpec) -> EngineState {
        let mut s = EngineState::default();
        for name in &spec.graph.nodes {
            s.tasks.insert(name.clone(), TaskState::Pending);
            s.task_records.insert(name.clone(), TaskRecord::pending());
        }
        s
    }
}

/// How a flow ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every task ran. The first error of a task with fail policy `isolate` or `continue`, if
    /// any, becomes the run's `error` (as in the original).
    Completed(Option<String>),
    /// The failing task's error, which becomes the run's `error`.
    Failed(String),
    Cancelled,
}

/// Identifies the run for task functions, and the services task policies use.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub run_id: String,
    pub flow_name: String,
    pub params: Arc<Map<String, Value>>,
    pub services: Arc<dyn TaskServices>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Pending,
    Running,
    Done { ok: bool },
}

/// What one task's attempts came to.
pub(crate) struct TaskRun {
    pub(crate) result: Result<Value, TaskError>,
    pub(crate) attempts: u32,
    /// `hit` / `miss` when the task has a cache.
    pub(crate) cache: Option<&'static str>,
    /// Record fields the task reported (captured output, the inputs a Python function got).
    pub(crate) extra: Map<String, Value>,
}

/// Runs `spec` to the end. `progress` receives every state change; `cancel` stops the flow:
/// running tasks are dropped (their futures cancelled) and recorded CANCELLED, pending ones too.
pub async fn run_flow(
    spec: &FlowSpec,
    registry: &Registry,
    run: &RunInfo,
    progress: &watch::Sender<EngineState>,
    cancel: &CancellationToken,
) -> Outcome {
    // Graphs with switch, repeat, foreach or until run in control-flow mode.
    if let Some(program) = &spec.graph.control {
        return super::control::run_program(spec, program, registry, run, progress, cancel).await;
    }
    let graph = &spec.graph;
    let n = graph.nodes.len();
    let mut nodes = vec![Node::Pending; n];
    let mut results: HashMap<String, Value> = HashMap::new();
    let tasks_cancel = cancel.child_token();
    let mut running: JoinSet<(usize, TaskRun)> = JoinSet::new();
    let mut spawned: HashMap<tokio::task::Id, usize> = HashMap::new();
    let mut outcome: Option<Outcome> = None;
    // The first error of an isolated or continued task.
    let mut tolerated: Option<String> = None;

    progress.send_replace(EngineState::for_flow(spec));

    loop {
        if outcome.is_none() && cancel.is_cancelled() {
            outcome = Some(Outcome::Cancelled);
            running.abort_all();
        }
        if outcome.is_none() {
            // Start everything that became ready (in graph order).
            for i in 0..n {
                if nodes[i] != Node::Pending {
                    continue;
                }
                let ready = match &graph.conditions[i] {
                    None => Some(true),
                    Some(cond) => cond.eval(&|j| match nodes[j] {
                        Node::Done { ok } => Some(ok),
                        _ => None,
                    }),
                };
                let name = &graph.nodes[i];
                match ready {
                    Some(true) => {}
                    // A task it needs failed (fail policy isolate): it fails without running.
                    Some(false) => {
                        nodes[i] = Node::Done { ok: false };
                        let err = TaskError::new(format!("upstream task of '{name}' failed"));
                        record_end(progress, name, now(), Err(&err), None);
                        continue;
                    }
                    None => continue,
                }
                let started = now();
                let prepared = spec
                    .task(name)
                    .ok_or_else(|| TaskError::new(format!("task '{name}' is not defined")))
                    .and_then(|task| prepare(task, registry, run, &results, &tasks_cancel));
                match prepared {
                    Ok(task) => {
                        nodes[i] = Node::Running;
                        progress.send_modify(|s| {
                            s.tasks.insert(name.clone(), TaskState::Running);
                            let rec = s
                                .task_records
                                .entry(name.clone())
                                .or_insert_with(TaskRecord::pending);
                            rec.state = TaskState::Running;
                            rec.started_at = Some(started);
                            rec.inputs = task.call.args.clone();
                        });
                        let fut = attempt(
                            task,
                            run.services.clone(),
                            progress.clone(),
                            tasks_cancel.clone(),
                        );
                        let handle = running.spawn(async move { (i, fut.await) });
                        spawned.insert(handle.id(), i);
                    }
                    Err(err) => {
                        nodes[i] = Node::Done { ok: false };
                        record_end(progress, name, started, Err(&err), None);
                        outcome = Some(Outcome::Failed(err.message));
                        tasks_cancel.cancel();
                        running.abort_all();
                        break;
                    }
                }
            }
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            joined = running.join_next_with_id() => {
                let Some(joined) = joined else { continue };
                let (i, task_run) = match joined {
                    Ok((_, (i, task_run))) => (i, task_run),
                    Err(e) => {
                        let Some(&i) = spawned.get(&e.id()) else { continue };
                        if e.is_cancelled() {
                            nodes[i] = Node::Done { ok: false };
                            mark_cancelled(progress, &graph.nodes[i]);
                            continue;
                        }
                        let err = TaskError::new(format!("task '{}' panicked", graph.nodes[i]));
                        (i, TaskRun { result: Err(err), attempts: 1, cache: None, extra: Map::new() })
                    }
                };
                let name = &graph.nodes[i];
                let started = progress.borrow().task_records.get(name).and_then(|r| r.started_at).unwrap_or_else(now);
                let policy = spec.task(name).map(|t| t.policy.fail_policy).unwrap_or_default();
                let extra = (task_run.attempts, task_run.cache, task_run.extra);
                match task_run.result {
                    Ok(value) => {
                        nodes[i] = Node::Done { ok: true };
                        record_end(progress, name, started, Ok(&value), Some(extra));
                        results.insert(name.clone(), value);
                    }
                    // A run cancel reaches the tasks' tokens at the same moment; it wins.
                    Err(_) if outcome.is_some() || cancel.is_cancelled() => {
                        if outcome.is_none() {
                            outcome = Some(Outcome::Cancelled);
                            running.abort_all();
                        }
                        nodes[i] = Node::Done { ok: false };
                        mark_cancelled(progress, name);
                    }
                    Err(err) => {
                        record_end(progress, name, started, Err(&err), Some(extra));
                        match policy {
                            FailPolicy::Stop => {
                                nodes[i] = Node::Done { ok: false };
                                outcome = Some(Outcome::Failed(err.message));
                                tasks_cancel.cancel();
                                running.abort_all();
                            }
                            FailPolicy::Isolate => {
                                nodes[i] = Node::Done { ok: false };
                                tolerated.get_or_insert(err.message);
                            }
                            FailPolicy::Continue => {
                                nodes[i] = Node::Done { ok: true };
                                results.insert(name.clone(), Value::Null);
                                tolerated.get_or_insert(err.message);
                            }
                        }
                    }
                }
            }
            _ = cancel.cancelled(), if outcome.is_none() => {
                outcome = Some(Outcome::Cancelled);
                tasks_cancel.cancel();
                running.abort_all();
            }
        }
    }

    let outcome = match outcome {
        Some(o) => o,
        None if cancel.is_cancelled() => Outcome::Cancelled,
        None if nodes.iter().all(|s| matches!(s, Node::Done { .. })) => {
            Outcome::Completed(tolerated)
        }
        // Cycles are rejected at parse time; this is the original's message for a stuck graph.
        None => Outcome::Failed("Deadlock or cycle detected in workflow".to_string()),
    };
    if outcome == Outcome::Cancelled {
        // Tasks that never started are CANCELLED too; after a failure they stay PENDING, as in
        // the original.
        for (i, state) in nodes.iter().enumerate() {
            if *state == Node::Pending {
                mark_cancelled(progress, &graph.nodes[i]);
            }
        }
    }
    outcome
}

/// A task ready to be attempted.
pub(crate) struct Prepared {
    pub(crate) name: String,
    pub(crate) callable: String,
    pub(crate) def: TaskDef,
    pub(crate) call: TaskCall,
    pub(crate) policy: TaskPolicy,
}

/// Resolves the callable and wires its arguments.
pub(crate) fn prepare(
    task: &TaskSpec,
    registry: &Registry,
    run: &RunInfo,
    results: &HashMap<String, Value>,
    cancel: &CancellationToken,
) -> Result<Prepared, TaskError> {
    let callable = task
        .callable
        .as_deref()
        .ok_or_else(|| TaskError::new(format!("task '{}' has no callable", task.name)))?;
    let def = registry.resolve(callable)?;
    let mut args = Map::new();
    for (key, value) in &task.inputs {
        args.insert(key.clone(), resolve_input(value, &run.params, results)?);
    }
    for param in &def.params {
        if args.contains_key(param) {
            continue;
        }
        if let Some(v) = run.params.get(param) {
            args.insert(param.clone(), v.clone());
        } else if let Some(v) = results.get(param) {
            args.insert(param.clone(), v.clone());
        }
    }
    let call = TaskCall {
        args,
        run_id: run.run_id.clone(),
        flow_name: run.flow_name.clone(),
        task: task.name.clone(),
        params: run.params.clone(),
        cancel: cancel.child_token(),
        upstream: Arc::new(
            results
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        record: Arc::default(),
        loop_ctx: None,
    };
    Ok(Prepared {
        name: task.name.clone(),
        callable: callable.to_string(),
        def,
        call,
        policy: task.policy.clone(),
    })
}

/// Runs a task's attempts: cache lookup, circuit breaker, timeout per attempt, retries with
/// backoff (the record shows the last error and the attempt count meanwhile).
pub(crate) async fn attempt(
    task: Prepared,
    services: Arc<dyn TaskServices>,
    progress: watch::Sender<EngineState>,
    cancel: CancellationToken,
) -> TaskRun {
    let policy = &task.policy;
    let key = policy
        .cache_ttl
        .map(|_| cache_key(&task.callable, &task.call.args));
    if let Some(key) = &key
        && let Some(hit) = services.cache_get(key).await
    {
        return TaskRun {
            result: Ok(hit),
            attempts: 0,
            cache: Some("hit"),
            extra: Map::new(),
        };
    }
    let cache = key.as_ref().map(|_| "miss");
    let started = std::time::Instant::now();
    let finished = |ok: bool| services.task_finished(&task.callable, ok, started.elapsed());
    let reported = |task: &Prepared| {
        task.call
            .record
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    };
    let mut attempts = 0;
    loop {
        attempts += 1;
        let result = match &policy.breaker {
            Some(b) => match services.breaker_allow(&task.callable, b).await {
                Err(message) => Err(TaskError::new(message)),
                Ok(()) => {
                    let r = call_once(&task).await;
                    services.breaker_record(&task.callable, b, r.is_ok()).await;
                    r
                }
            },
            None => call_once(&task).await,
        };
        match result {
            Ok(value) => {
                if let (Some(key), Some(ttl)) = (&key, policy.cache_ttl) {
                    services.cache_put(key, &value, ttl).await;
                }
                finished(true);
                return TaskRun {
                    result: Ok(value),
                    attempts,
                    cache,
                    extra: reported(&task),
                };
            }
            Err(err) if attempts <= policy.retries && !cancel.is_cancelled() => {
                let wait = policy.schedule().jittered(attempts);
                tracing::info!(task = %task.name, attempt = attempts, error = %err, ?wait, "task failed; retrying");
                progress.send_modify(|s| {
                    if let Some(rec) = s.task_records.get_mut(&task.name) {
                        rec.error = Some(err.message.clone());
                        rec.traceback = err.traceback.clone();
                        rec.extra.insert("attempts".into(), attempts.into());
                    }
                });
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = cancel.cancelled() => return TaskRun { result: Err(err), attempts, cache, extra: reported(&task) },
                }
            }
            Err(err) => {
                finished(false);
                return TaskRun {
                    result: Err(err),
                    attempts,
                    cache,
                    extra: reported(&task),
                };
            }
        }
    }
}

/// One attempt, bounded by the task's timeout (the future is dropped when it runs out, which
/// cancels a native task and kills a subprocess).
async fn call_once(task: &Prepared) -> Result<Value, TaskError> {
    let fut = task.def.call(task.call.clone());
    match task.policy.timeout {
        None => fut.await,
        Some(limit) => match tokio::time::timeout(limit, fut).await {
            Ok(r) => r,
            Err(_) => Err(TaskError::new(format!(
                "Task '{}' exceeded timeout of {}s",
                task.name,
                limit.as_secs_f64()
            ))),
        },
    }
}

/// Resolves one `inputs` value: top-level strings starting with `$` are selectors
/// (`$node.<task>.output[.path]`, `$ctx.params.<key>`, `$env.<KEY>`); anything else is literal.
pub fn resolve_input(
    value: &Value,
    params: &Map<String, Value>,
    results: &HashMap<String, Value>,
) -> Result<Value, TaskError> {
    let Value::String(s) = value else {
        return Ok(value.clone());
    };
    let Some(selector) = s.strip_prefix('$') else {
        return Ok(value.clone());
    };
    if let Some(rest) = selector.strip_prefix("node.") {
        let (task, path) = match rest.split_once(".output") {
            Some((task, path)) if path.is_empty() || path.starts_with('.') => {
                (task, path.trim_start_matches('.'))
            }
            _ => {
                return Err(TaskError::new(format!(
                    "invalid reference '{s}': expected $node.<task>.output[.<key>...]"
                )));
            }
        };
        let mut current = results
            .get(task)
            .ok_or_else(|| TaskError::new(format!("Node '{task}' result not found in context.")))?;
        if !path.is_empty() {
            for key in path.split('.') {
                current = current.get(key).ok_or_else(|| {
                    TaskError::new(format!("'{key}' not found in the output of '{task}' ({s})"))
                })?;
            }
        }
        return Ok(current.clone());
    }
    if let Some(key) = selector.strip_prefix("ctx.params.") {
        return params
            .get(key)
            .cloned()
            .ok_or_else(|| TaskError::new(format!("'{key}' (from {s}) is not a run param")));
    }
    if let Some(key) = selector.strip_prefix("env.") {
        return std::env::var(key).map(Value::String).map_err(|_| {
            TaskError::new(format!(
                "environment variable '{key}' (from {s}) is not set"
            ))
        });
    }
    Err(TaskError::new(format!(
        "invalid reference '{s}': use $node.<task>.output, $ctx.params.<key> or $env.<KEY>"
    )))
}

pub(crate) fn record_end(
    progress: &watch::Sender<EngineState>,
    name: &str,
    started: f64,
    result: Result<&Value, &TaskError>,
    extra: Option<(u32, Option<&'static str>, Map<String, Value>)>,
) {
    let ended = now();
    progress.send_modify(|s| {
        let state = if result.is_ok() {
            TaskState::Succeeded
        } else {
            TaskState::Failed
        };
        s.tasks.insert(name.to_string(), state);
        let rec = s
            .task_records
            .entry(name.to_string())
            .or_insert_with(TaskRecord::pending);
        rec.state = state;
        rec.started_at.get_or_insert(started);
        rec.ended_at = Some(ended);
        rec.duration_ms = Some((ended - started) * 1000.0);
        match result {
            Ok(v) => rec.output = v.clone(),
            Err(e) => {
                rec.error = Some(e.message.clone());
                rec.traceback = e.traceback.clone();
            }
        }
        if let Some((attempts, cache, reported)) = extra {
            rec.extra.insert("attempts".into(), attempts.into());
            if let Some(cache) = cache {
                rec.extra.insert("cache".into(), cache.into());
            }
            for (key, value) in reported {
                match (key.as_str(), value) {
                    ("inputs", Value::Object(inputs)) => rec.inputs = inputs,
                    (_, value) => {
                        rec.extra.insert(key, value);
                    }
                }
            }
        }
    });
}

pub(crate) fn mark_cancelled(progress: &watch::Sender<EngineState>, name: &str) {
    let ended = now();
    progress.send_modify(|s| {
        s.tasks.insert(name.to_string(), TaskState::Cancelled);
        let rec = s
            .task_records
            .entry(name.to_string())
            .or_insert_with(TaskRecord::pending);
        rec.state = TaskState::Cancelled;
        if rec.ended_at.is_none() {
            rec.ended_at = Some(ended);
        }
        if let Some(started) = rec.started_at {
            rec.duration_ms = Some((ended - started) * 1000.0);
        }
    });
}

#[cfg(test)]
mod tests {
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
        let yaml = "flow: {graph: a}\ntasks: {a: {callable: 't:flaky', retries: 3, retry_backoff_ms: 10}}\n";
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
        let yaml = "flow: {graph: a}\ntasks: {a: {callable: 't:flaky', retries: 1, retry_backoff_ms: 1}}\n";
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
        let yaml = "flow: {graph: a}\ntasks: {a: {callable: 't:count', inputs: {k: 1}, cache_ttl_sec: 60}}\n";
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
}
