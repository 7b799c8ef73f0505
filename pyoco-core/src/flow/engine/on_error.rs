//! `on_error` handlers: when a task fails for good (its retries spent), the task named by its
//! `on_error` (or the flow's) runs once with the failure. The handler is outside the graph: it
//! never changes how the run ends (a `stop` failure still fails the run, after the handler has
//! run), and its own failure is recorded, not handled again.
//!
//! The handler sees the failure as an upstream result named `error` — `{task, message,
//! traceback, attempts}` — so a parameter called `error` is wired to it (native tasks and
//! Python functions alike), and its inputs may select from it with `$error[.<key>...]`.

use std::collections::HashMap;

use serde_json::{Map, Value, json};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::record::{mark_running, record_end};
use super::{EngineState, RunInfo, TaskRun, attempt, prepare};
use crate::flow::tasks::{Registry, TaskError};
use crate::flow::yaml::FlowSpec;
use crate::model::now;

/// The name the failure goes by in the handler's inputs.
const ERROR: &str = "error";

/// A task that failed for good.
pub(super) struct Failure {
    pub(super) task: String,
    pub(super) error: TaskError,
    pub(super) attempts: u32,
}

/// Handlers started and not yet ended.
#[derive(Default)]
pub(super) struct Handlers {
    set: JoinSet<(String, TaskRun)>,
    /// A handler that panicked or was aborted returns nothing: its name, by task id.
    names: HashMap<tokio::task::Id, String>,
}

impl Handlers {
    pub(super) fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    pub(super) fn abort_all(&mut self) {
        self.set.abort_all();
    }

    /// The next handler to end (`None` when none is running).
    pub(super) async fn join_next(
        &mut self,
    ) -> Option<Result<(String, TaskRun), (String, tokio::task::JoinError)>> {
        match self.set.join_next_with_id().await? {
            Ok((id, done)) => {
                self.names.remove(&id);
                Some(Ok(done))
            }
            Err(e) => {
                let name = self.names.remove(&e.id()).unwrap_or_default();
                Some(Err((name, e)))
            }
        }
    }
}

/// Starts the handler of `failure`'s task, if it has one. `cancel` is the run's own token:
/// a handler outlives the stop of the other tasks that a failure causes.
#[allow(clippy::too_many_arguments)]
pub(super) fn start(
    spec: &FlowSpec,
    registry: &Registry,
    run: &RunInfo,
    results: &HashMap<String, Value>,
    progress: &watch::Sender<EngineState>,
    cancel: &CancellationToken,
    handlers: &mut Handlers,
    failure: Failure,
) {
    let Some(handler) = spec.error_handler(&failure.task) else {
        return;
    };
    let name = handler.name.clone();
    tracing::info!(task = %failure.task, handler = %name, "task failed; running its on_error handler");
    let mut seen = results.clone();
    seen.insert(
        ERROR.to_string(),
        json!({
            "task": failure.task,
            "message": failure.error.message,
            "traceback": failure.error.traceback,
            "attempts": failure.attempts,
        }),
    );
    let mut task = handler.clone();
    task.inputs = task
        .inputs
        .into_iter()
        .map(|(k, v)| (k, error_selector(v)))
        .collect::<Map<_, _>>();
    let started = now();
    match prepare(&task, registry, run, &seen, cancel) {
        Ok(prepared) => {
            mark_running(
                progress,
                &name,
                &prepared.callable,
                started,
                &prepared.call.args,
            );
            let fut = attempt(
                prepared,
                run.services.clone(),
                progress.clone(),
                cancel.clone(),
            );
            let id = name.clone();
            let handle = handlers
                .set
                .spawn(tracing::Instrument::in_current_span(async move {
                    (name, fut.await)
                }));
            handlers.names.insert(handle.id(), id);
        }
        Err(err) => record_end(progress, &name, started, Err(&err), None),
    }
}

/// `$error[.<path>]` in a handler's inputs is the failure: the engine's own selector for the
/// upstream result `error`.
fn error_selector(value: Value) -> Value {
    match &value {
        Value::String(s) if s == "$error" => Value::String(format!("$node.{ERROR}.output")),
        Value::String(s) if s.starts_with("$error.") => {
            Value::String(format!("$node.{ERROR}.output{}", &s["$error".len()..]))
        }
        _ => value,
    }
}

/// Records the end of a handler (from [`Handlers::join_next`]).
pub(super) fn finished(
    progress: &watch::Sender<EngineState>,
    joined: Result<(String, TaskRun), (String, tokio::task::JoinError)>,
) {
    match joined {
        Ok((name, task_run)) => {
            let started = super::started_at(progress, &name);
            let extra = Some((task_run.attempts, task_run.cache, task_run.extra));
            match &task_run.result {
                Ok(value) => record_end(progress, &name, started, Ok(value), extra),
                Err(err) => {
                    tracing::warn!(handler = %name, error = %err.message, "on_error handler failed");
                    record_end(progress, &name, started, Err(err), extra);
                }
            }
        }
        Err((name, e)) if e.is_cancelled() => super::mark_cancelled(progress, &name),
        Err((name, _)) => {
            let err = TaskError::new(format!("task '{name}' panicked"));
            record_end(progress, &name, now(), Err(&err), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_selectors_become_selectors_of_the_upstream_result_error() {
        assert_eq!(error_selector(json!("$error")), json!("$node.error.output"));
        assert_eq!(
            error_selector(json!("$error.message")),
            json!("$node.error.output.message")
        );
        for kept in [json!("$errors"), json!("error"), json!(3)] {
            assert_eq!(error_selector(kept.clone()), kept);
        }
    }
}
