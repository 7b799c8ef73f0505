//! Task states and records in the engine's progress: the fields of `tasks` and `task_records`
//! the original writes when a task starts, ends or is cancelled.

use serde_json::{Map, Value};
use tokio::sync::watch;

use super::EngineState;
use crate::flow::tasks::TaskError;
use crate::model::{TaskRecord, TaskState, now};

/// Task `name` (running `callable`) started at `started` with `inputs`. The callable is our
/// addition to the record: the operations routes group failures by it.
pub(super) fn mark_running(
    progress: &watch::Sender<EngineState>,
    name: &str,
    callable: &str,
    started: f64,
    inputs: &Map<String, Value>,
) {
    progress.send_modify(|s| {
        s.tasks.insert(name.to_string(), TaskState::Running);
        let rec = s
            .task_records
            .entry(name.to_string())
            .or_insert_with(TaskRecord::pending);
        rec.state = TaskState::Running;
        rec.started_at = Some(started);
        rec.inputs = inputs.clone();
        rec.extra.insert("callable".into(), callable.into());
    });
}

/// When task `name` started, as its record says; now if it has no start (it never ran).
pub(crate) fn started_at(progress: &watch::Sender<EngineState>, name: &str) -> f64 {
    progress
        .borrow()
        .task_records
        .get(name)
        .and_then(|r| r.started_at)
        .unwrap_or_else(now)
}

/// Task `name` ended with `result`; `extra` carries the attempt count, the cache outcome and
/// the fields the task reported.
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

/// Task `name` was cancelled (running or never started).
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
