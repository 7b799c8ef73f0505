//! The DAG executor: runs every task whose condition holds, concurrently on tokio, applies
//! each task's policy (retries with backoff, timeout, fail policy, cache, circuit breaker),
//! records `tasks` and `task_records` like the original, and stops at the first failure (fail
//! policy `stop`) or a cancel.
//!
//! Progress is published on a `watch` channel; the caller (the worker) decides when to write
//! it to KV. The engine never talks to NATS: cache and breakers come through
//! [`TaskServices`].

//!
//! Split by job: `schedule` is the pure bookkeeping (what may start, what a failure does,
//! how the run ends), `attempt` runs one task (argument wiring, cache, breaker, timeout,
//! retries), `record` writes task states and records into the progress.

mod attempt;
mod on_error;
mod record;
mod schedule;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::services::TaskServices;
use super::tasks::{Registry, TaskError};
use super::yaml::FlowSpec;
use crate::model::{TaskRecord, TaskState, now};
pub use attempt::resolve_input;
pub(crate) use attempt::{attempt, prepare};
pub(crate) use record::{mark_cancelled, record_end, started_at};
use schedule::{AfterFailure, Ready, Schedule};

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
    /// The run's tenant (API key mode) and routing tag, for templates.
    pub tenant_id: Option<String>,
    pub tag: String,
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
    let mut schedule = Schedule::new(graph.nodes.len());
    let mut results: HashMap<String, Value> = HashMap::new();
    let tasks_cancel = cancel.child_token();
    let mut running: JoinSet<(usize, TaskRun)> = JoinSet::new();
    let mut spawned: HashMap<tokio::task::Id, usize> = HashMap::new();
    let mut handlers = on_error::Handlers::default();

    progress.send_replace(EngineState::for_flow(spec));

    loop {
        if cancel.is_cancelled() && schedule.stop(Outcome::Cancelled) {
            running.abort_all();
        }
        // Start everything that became ready (in graph order).
        let mut from = 0;
        while !schedule.is_stopped() {
            let Some(ready) = schedule.next_ready(from, &graph.conditions) else {
                break;
            };
            let i = match ready {
                Ready::Start(i) => i,
                Ready::UpstreamFailed(i) => {
                    let name = &graph.nodes[i];
                    let err = TaskError::new(format!("upstream task of '{name}' failed"));
                    record_end(progress, name, now(), Err(&err), None);
                    from = i + 1;
                    continue;
                }
            };
            from = i + 1;
            let name = &graph.nodes[i];
            let started = now();
            let prepared = spec
                .task(name)
                .ok_or_else(|| TaskError::new(format!("task '{name}' is not defined")))
                .and_then(|task| prepare(task, registry, run, &results, &tasks_cancel));
            match prepared {
                Ok(task) => {
                    schedule.start(i);
                    record::mark_running(progress, name, &task.callable, started, &task.call.args);
                    let fut = attempt(
                        task,
                        run.services.clone(),
                        progress.clone(),
                        tasks_cancel.clone(),
                    );
                    // In the caller's span, so a task's log lines name its run.
                    let handle = running.spawn(tracing::Instrument::in_current_span(async move {
                        (i, fut.await)
                    }));
                    spawned.insert(handle.id(), i);
                }
                Err(err) => {
                    record_end(progress, name, started, Err(&err), None);
                    schedule.not_started(i, err.message.clone());
                    tasks_cancel.cancel();
                    running.abort_all();
                    let failure = on_error::Failure {
                        task: name.clone(),
                        error: err,
                        attempts: 0,
                    };
                    on_error::start(
                        spec,
                        registry,
                        run,
                        &results,
                        progress,
                        cancel,
                        &mut handlers,
                        failure,
                    );
                }
            }
        }
        if running.is_empty() && handlers.is_empty() {
            break;
        }
        tokio::select! {
            joined = running.join_next_with_id(), if !running.is_empty() => {
                let Some(joined) = joined else { continue };
                let (i, task_run) = match joined {
                    Ok((_, (i, task_run))) => (i, task_run),
                    Err(e) => {
                        let Some(&i) = spawned.get(&e.id()) else { continue };
                        if e.is_cancelled() {
                            schedule.cancelled(i);
                            mark_cancelled(progress, &graph.nodes[i]);
                            continue;
                        }
                        let err = TaskError::new(format!("task '{}' panicked", graph.nodes[i]));
                        (i, TaskRun { result: Err(err), attempts: 1, cache: None, extra: Map::new() })
                    }
                };
                let (stopped, failure) = finished(spec, &mut schedule, &mut results, progress, cancel, i, task_run);
                if stopped {
                    tasks_cancel.cancel();
                    running.abort_all();
                }
                if let Some(failure) = failure {
                    on_error::start(spec, registry, run, &results, progress, cancel, &mut handlers, failure);
                }
            }
            Some(joined) = handlers.join_next(), if !handlers.is_empty() => {
                on_error::finished(progress, joined);
            }
            _ = cancel.cancelled(), if !schedule.is_stopped() || !handlers.is_empty() => {
                schedule.stop(Outcome::Cancelled);
                tasks_cancel.cancel();
                running.abort_all();
                handlers.abort_all();
            }
        }
    }

    let (outcome, never_started) = schedule.finish(cancel.is_cancelled());
    if outcome == Outcome::Cancelled {
        // Tasks that never started are CANCELLED too; after a failure they stay PENDING, as in
        // the original.
        for i in never_started {
            mark_cancelled(progress, &graph.nodes[i]);
        }
    }
    outcome
}

/// Books the end of node `i`; true when it stopped the run (running tasks must stop), and the
/// failure when the task failed for good (its `on_error` handler runs).
fn finished(
    spec: &FlowSpec,
    schedule: &mut Schedule,
    results: &mut HashMap<String, Value>,
    progress: &watch::Sender<EngineState>,
    cancel: &CancellationToken,
    i: usize,
    task_run: TaskRun,
) -> (bool, Option<on_error::Failure>) {
    let name = &spec.graph.nodes[i];
    let started = started_at(progress, name);
    let policy = spec.fail_policy(name);
    let extra = (task_run.attempts, task_run.cache, task_run.extra);
    match task_run.result {
        Ok(value) => {
            schedule.succeeded(i);
            record_end(progress, name, started, Ok(&value), Some(extra));
            results.insert(name.clone(), value);
            (false, None)
        }
        // A run cancel reaches the tasks' tokens at the same moment; it wins.
        Err(_) if schedule.is_stopped() || cancel.is_cancelled() => {
            let stopped_now = schedule.stop(Outcome::Cancelled);
            schedule.cancelled(i);
            mark_cancelled(progress, name);
            (stopped_now, None)
        }
        Err(err) => {
            record_end(progress, name, started, Err(&err), Some(extra));
            let failure = on_error::Failure {
                task: name.clone(),
                error: err.clone(),
                attempts: task_run.attempts,
            };
            let stopped = match schedule.failed(i, policy, err.message) {
                AfterFailure::StopRun => true,
                AfterFailure::Isolated => false,
                AfterFailure::Continued => {
                    results.insert(name.clone(), Value::Null);
                    false
                }
            };
            (stopped, Some(failure))
        }
    }
}
