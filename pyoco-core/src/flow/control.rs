//! The control-flow executor: runs graphs that use switch, repeat, foreach or until.
//!
//! A graph in control-flow mode is a tree of [`Block`]s. Each block is scheduled like the
//! DAG engine schedules a flow: a step starts once its condition holds, independent steps run
//! concurrently, AND/OR joins and fail policies work as in DAG mode. A step is a task (its
//! attempts run through the DAG engine's own `prepare`/`attempt`, so retries, timeouts,
//! cache and breakers apply) or a control construct, which runs its body block to completion
//! — once per iteration for loops, the chosen case for a switch — and then counts as one
//! finished step. A `flow >> a >> b[3] >> c` chain therefore runs its steps in order.
//!
//! A body block succeeds when its tails hold; a loop stops (and counts as failed, like a
//! task with fail policy `isolate`) after an iteration that did not succeed. Loop state is
//! passed down as frames: to expressions (`$ctx.loop`, `$ctx.loops`, foreach aliases) and to
//! tasks ([`super::tasks::TaskCall::loop_ctx`]). Task records are overwritten by each run of
//! the task and count them in `iterations`. The cancel token is checked before every step
//! and every iteration; running tasks are then dropped (a Python runner is killed) and, as
//! in DAG mode, recorded CANCELLED together with every task still PENDING.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::{Map, Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::engine::{
    EngineState, Outcome, RunInfo, TaskRun, attempt, mark_cancelled, prepare, record_end,
    started_at,
};
use super::expr::{Expr, Vars, py_eq, py_repr, truthy};
use super::graph::{Block, Control, ControlKind, Step};
use super::policy::FailPolicy;
use super::tasks::{Registry, TaskError};
use super::yaml::FlowSpec;
use crate::model::{TaskRecord, TaskState, now};

/// `Ok(succeeded)` when a block or construct ran to its end; `Err` ends the run.
type Ended = Result<bool, Outcome>;

/// Everything the steps of one run share.
struct Exec<'a> {
    spec: &'a FlowSpec,
    registry: &'a Registry,
    run: &'a RunInfo,
    progress: &'a watch::Sender<EngineState>,
    cancel: &'a CancellationToken,
    /// Given to tasks; cancelled when the run fails or is cancelled.
    tasks_cancel: CancellationToken,
    /// Task outputs by task name (the latest run of each).
    results: Mutex<HashMap<String, Value>>,
    /// The first error of an isolated or continued task.
    tolerated: Mutex<Option<String>>,
    /// How often each task started.
    iterations: Mutex<HashMap<String, u64>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Running,
    Done { ok: bool },
}

enum StepEnd {
    Task(TaskRun),
    Control(Ended),
}

/// Runs a control-flow program to the end (see the module docs).
pub(crate) async fn run_program(
    spec: &FlowSpec,
    program: &Block,
    registry: &Registry,
    run: &RunInfo,
    progress: &watch::Sender<EngineState>,
    cancel: &CancellationToken,
) -> Outcome {
    progress.send_replace(EngineState::for_flow(spec));
    let exec = Exec {
        spec,
        registry,
        run,
        progress,
        cancel,
        tasks_cancel: cancel.child_token(),
        results: Mutex::default(),
        tolerated: Mutex::default(),
        iterations: Mutex::default(),
    };
    let outcome = match run_block(&exec, program, &[]).await {
        Ok(_) if cancel.is_cancelled() => Outcome::Cancelled,
        Ok(_) => Outcome::Completed(lock(&exec.tolerated).take()),
        Err(outcome) => outcome,
    };
    if let Outcome::Completed(_) = outcome {
        return outcome;
    }
    exec.tasks_cancel.cancel();
    // Tasks dropped mid-run never reported their end. After a failure, tasks that never
    // started stay PENDING, as in DAG mode; after a cancel they are CANCELLED too.
    let cancelled = outcome == Outcome::Cancelled;
    let open: Vec<String> = progress
        .borrow()
        .tasks
        .iter()
        .filter(|(_, s)| **s == TaskState::Running || (cancelled && **s == TaskState::Pending))
        .map(|(name, _)| name.clone())
        .collect();
    for name in open {
        mark_cancelled(progress, &name);
    }
    outcome
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Schedules the steps of `block` like the DAG engine; `Ok(true)` when its tails hold.
fn run_block<'b>(
    exec: &'b Exec<'_>,
    block: &'b Block,
    frames: &'b [Value],
) -> BoxFuture<'b, Ended> {
    Box::pin(async move {
        let n = block.steps.len();
        let mut state = vec![State::Pending; n];
        let mut running: FuturesUnordered<BoxFuture<'b, (usize, StepEnd)>> =
            FuturesUnordered::new();
        loop {
            for i in 0..n {
                if state[i] != State::Pending {
                    continue;
                }
                let ready = match &block.conditions[i] {
                    None => Some(true),
                    Some(cond) => cond.eval(&|j| match state[j] {
                        State::Done { ok } => Some(ok),
                        _ => None,
                    }),
                };
                match ready {
                    Some(true) => {}
                    // A step it needs failed (fail policy isolate): it fails without running.
                    Some(false) => {
                        state[i] = State::Done { ok: false };
                        if let Step::Task(name) = &block.steps[i] {
                            let err = TaskError::new(format!("upstream task of '{name}' failed"));
                            record_end(exec.progress, name, now(), Err(&err), None);
                        }
                        continue;
                    }
                    None => continue,
                }
                if exec.cancel.is_cancelled() {
                    return Err(Outcome::Cancelled);
                }
                state[i] = State::Running;
                match &block.steps[i] {
                    Step::Task(name) => {
                        let task = start_task(exec, name, frames)?;
                        running.push(Box::pin(async move { (i, StepEnd::Task(task.await)) }));
                    }
                    Step::Control(control) => {
                        let body = run_control(exec, control, frames);
                        running.push(Box::pin(async move { (i, StepEnd::Control(body.await)) }));
                    }
                }
            }
            if running.is_empty() {
                break;
            }
            let (i, end) = tokio::select! {
                next = running.next() => match next {
                    Some(next) => next,
                    None => continue,
                },
                _ = exec.cancel.cancelled() => return Err(Outcome::Cancelled),
            };
            state[i] = State::Done {
                ok: match (end, &block.steps[i]) {
                    (StepEnd::Task(task_run), Step::Task(name)) => {
                        finish_task(exec, name, task_run)?
                    }
                    (StepEnd::Control(ended), _) => ended?,
                    (StepEnd::Task(_), Step::Control(_)) => false,
                },
            };
        }
        if state.contains(&State::Pending) {
            // Cycles are rejected at parse time; this is the original's message for a stuck graph.
            return Err(Outcome::Failed(
                "Deadlock or cycle detected in workflow".to_string(),
            ));
        }
        Ok(block.tails.as_ref().is_none_or(|tails| {
            tails.eval(&|j| match state[j] {
                State::Done { ok } => Some(ok),
                _ => None,
            }) == Some(true)
        }))
    })
}

/// Prepares the task and spawns its attempts; a task that cannot be prepared fails the run.
fn start_task(
    exec: &Exec<'_>,
    name: &str,
    frames: &[Value],
) -> Result<impl Future<Output = TaskRun> + Send + 'static, Outcome> {
    let started = now();
    let prepared = exec
        .spec
        .task(name)
        .ok_or_else(|| TaskError::new(format!("task '{name}' is not defined")))
        .and_then(|task| {
            let results = lock(&exec.results);
            prepare(task, exec.registry, exec.run, &results, &exec.tasks_cancel)
        });
    let mut task = match prepared {
        Ok(task) => task,
        Err(err) => {
            record_end(exec.progress, name, started, Err(&err), None);
            exec.tasks_cancel.cancel();
            return Err(Outcome::Failed(err.message));
        }
    };
    task.call.loop_ctx = loop_ctx(frames);
    let iteration = {
        let mut iterations = lock(&exec.iterations);
        let count = iterations.entry(name.to_string()).or_insert(0);
        *count += 1;
        *count
    };
    exec.progress.send_modify(|s| {
        s.tasks.insert(name.to_string(), TaskState::Running);
        // Each run of the task overwrites its record.
        let mut rec = TaskRecord::pending();
        rec.state = TaskState::Running;
        rec.started_at = Some(started);
        rec.inputs = task.call.args.clone();
        rec.extra.insert("iterations".into(), iteration.into());
        s.task_records.insert(name.to_string(), rec);
    });
    let name = name.to_string();
    // Aborted when dropped: the run stopped while the task was running.
    let handle = AbortOnDropHandle::new(tokio::spawn(attempt(
        task,
        exec.run.services.clone(),
        exec.progress.clone(),
        exec.tasks_cancel.clone(),
    )));
    Ok(async move {
        match handle.await {
            Ok(task_run) => task_run,
            Err(e) => TaskRun {
                result: Err(TaskError::new(if e.is_panic() {
                    format!("task '{name}' panicked")
                } else {
                    "cancelled".to_string()
                })),
                attempts: 1,
                cache: None,
                extra: Map::new(),
            },
        }
    })
}

/// Records a finished task; `Ok(ok)` is the step's state, `Err` ends the run.
fn finish_task(exec: &Exec<'_>, name: &str, task_run: TaskRun) -> Ended {
    let progress = exec.progress;
    let started = started_at(progress, name);
    let policy = exec.spec.fail_policy(name);
    let extra = (task_run.attempts, task_run.cache, task_run.extra);
    match task_run.result {
        Ok(value) => {
            record_end(progress, name, started, Ok(&value), Some(extra));
            lock(&exec.results).insert(name.to_string(), value);
            Ok(true)
        }
        // A run cancel reaches the tasks' tokens at the same moment; it wins.
        Err(_) if exec.cancel.is_cancelled() => {
            mark_cancelled(progress, name);
            Err(Outcome::Cancelled)
        }
        Err(err) => {
            record_end(progress, name, started, Err(&err), Some(extra));
            match policy {
                FailPolicy::Stop => {
                    exec.tasks_cancel.cancel();
                    Err(Outcome::Failed(err.message))
                }
                FailPolicy::Isolate => {
                    lock(&exec.tolerated).get_or_insert(err.message);
                    Ok(false)
                }
                FailPolicy::Continue => {
                    lock(&exec.results).insert(name.to_string(), Value::Null);
                    lock(&exec.tolerated).get_or_insert(err.message);
                    Ok(true)
                }
            }
        }
    }
}

/// The innermost frame plus `loops` (all frames), as tasks see it.
fn loop_ctx(frames: &[Value]) -> Option<Value> {
    let mut innermost = frames.last()?.as_object().cloned().unwrap_or_default();
    innermost.insert("loops".into(), Value::Array(frames.to_vec()));
    Some(Value::Object(innermost))
}

fn eval(exec: &Exec<'_>, expr: &Expr, frames: &[Value], what: &str) -> Result<Value, Outcome> {
    let results = lock(&exec.results);
    let vars = Vars {
        params: &exec.run.params,
        results: &results,
        frames,
    };
    expr.eval(&vars)
        .map_err(|e| Outcome::Failed(format!("{what} '{}' failed: {e}", expr.source())))
}

/// One loop frame, as expressions and tasks see it.
fn frame(kind: &str, index: u64, count: Option<u64>, item: Value, alias: &Option<String>) -> Value {
    json!({
        "type": kind,
        "index": index,
        "iteration": index + 1,
        "count": count,
        "item": item,
        "alias": alias,
    })
}

/// Runs one iteration of a loop body with `frame` pushed; `Ok(false)` stops the loop.
async fn iteration(exec: &Exec<'_>, body: &Block, frames: &[Value], frame: Value) -> Ended {
    if exec.cancel.is_cancelled() {
        return Err(Outcome::Cancelled);
    }
    let mut inner = frames.to_vec();
    inner.push(frame);
    run_block(exec, body, &inner).await
}

fn run_control<'b>(
    exec: &'b Exec<'_>,
    control: &'b Control,
    frames: &'b [Value],
) -> BoxFuture<'b, Ended> {
    Box::pin(async move {
        match &control.kind {
            ControlKind::Switch { on, cases, default } => {
                let value = eval(exec, on, frames, "switch expression")?;
                let branch = cases
                    .iter()
                    .find(|(case, _)| py_eq(case, &value))
                    .map(|(_, block)| block)
                    .or(default.as_ref());
                match branch {
                    Some(block) => run_block(exec, block, frames).await,
                    None => Err(Outcome::Failed(format!(
                        "SwitchNoMatch: no case matches {}",
                        py_repr(&value)
                    ))),
                }
            }
            ControlKind::Repeat { count, body } => {
                for index in 0..*count {
                    let f = frame("repeat", index, Some(*count), Value::Null, &None);
                    if !iteration(exec, body, frames, f).await? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            ControlKind::Foreach { over, alias, body } => {
                let items = match eval(exec, over, frames, "foreach source")? {
                    Value::Array(items) => items,
                    other => {
                        return Err(Outcome::Failed(format!(
                            "foreach source '{}' is not a list: {}",
                            over.source(),
                            py_repr(&other)
                        )));
                    }
                };
                let count = items.len() as u64;
                for (index, item) in (0..count).zip(&items) {
                    let f = frame("foreach", index, Some(count), item.clone(), alias);
                    if !iteration(exec, body, frames, f).await? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            ControlKind::Until {
                cond,
                max_iter,
                body,
            } => {
                for index in 0..*max_iter {
                    let f = frame("until", index, None, Value::Null, &None);
                    let mut inner = frames.to_vec();
                    inner.push(f.clone());
                    if !iteration(exec, body, frames, f).await? {
                        return Ok(false);
                    }
                    if truthy(&eval(exec, cond, &inner, "until condition")?) {
                        return Ok(true);
                    }
                }
                Err(Outcome::Failed(format!(
                    "UntilMaxIterationsExceeded: {max_iter}"
                )))
            }
        }
    })
}

#[cfg(test)]
mod tests;
