//! One task: resolving its callable, wiring its arguments, and running its attempts under its
//! policy (cache, circuit breaker, timeout, retries with backoff).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{EngineState, RunInfo, TaskRun};
use crate::flow::builtins::template::{Scope, render_value};
use crate::flow::policy::TaskPolicy;
use crate::flow::services::{TaskServices, cache_key};
use crate::flow::tasks::{Registry, TaskCall, TaskDef, TaskError};
use crate::flow::yaml::TaskSpec;

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
    // A bundle's spawn task runs the worker's spawn function (registered per bundle run).
    let callable = task
        .callable
        .as_deref()
        .or(task
            .spawn
            .as_ref()
            .map(|_| crate::flow::tasks::SPAWN_CALLABLE))
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
        memory_mb: task.policy.memory_mb,
        timeout: task.policy.timeout,
        tenant_id: run.tenant_id.clone(),
        tag: run.tag.clone(),
        attempt: 1,
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
///
/// In a `task` span (`task`, `callable`) made where this is called, so it is a child of the
/// caller's span (the worker's `run`): its log lines name the task, and as a trace it is one
/// span of the run's.
pub(crate) fn attempt(
    task: Prepared,
    services: Arc<dyn TaskServices>,
    progress: watch::Sender<EngineState>,
    cancel: CancellationToken,
) -> impl std::future::Future<Output = TaskRun> + Send + 'static {
    let span = tracing::info_span!("task", task = %task.name, callable = %task.callable);
    attempts(task, services, progress, cancel).instrument(span)
}

async fn attempts(
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
        // Templates are rendered once per attempt (`{{context.attempt}}` differs); a template
        // that cannot be rendered fails the task without a retry (it would fail again).
        let call = match render_call(&task.call, &task.callable, attempts) {
            Ok(call) => call,
            Err(err) => {
                finished(false);
                return TaskRun {
                    result: Err(err),
                    attempts,
                    cache,
                    extra: reported(&task),
                };
            }
        };
        let result = match &policy.breaker {
            Some(b) => match services.breaker_allow(&task.callable, b).await {
                Err(message) => Err(TaskError::new(message)),
                Ok(()) => {
                    let r = call_once(&task, call).await;
                    services.breaker_record(&task.callable, b, r.is_ok()).await;
                    r
                }
            },
            None => call_once(&task, call).await,
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
                tracing::warn!(task = %task.name, callable = %task.callable, attempts, error = %err.message,
                    traceback = err.traceback.as_deref(), "task failed");
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

/// The call of attempt `attempt`: every `{{...}}` template in its arguments rendered
/// ([`crate::flow::builtins::template`]), whatever the callable (named in the error).
fn render_call(call: &TaskCall, callable: &str, attempt: u32) -> Result<TaskCall, TaskError> {
    let mut call = call.clone();
    call.attempt = attempt;
    let scope = Scope::of(&call);
    let args = call
        .args
        .iter()
        .map(|(k, v)| Ok((k.clone(), render_value(v, &scope, k)?)))
        .collect::<Result<Map<_, _>, String>>()
        .map_err(|e| TaskError::new(format!("{callable}: {e}")))?;
    call.args = args;
    Ok(call)
}

/// One attempt, bounded by the task's timeout (the future is dropped when it runs out, which
/// cancels a native task and kills a subprocess).
async fn call_once(task: &Prepared, call: TaskCall) -> Result<Value, TaskError> {
    let fut = task.def.call(call);
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
