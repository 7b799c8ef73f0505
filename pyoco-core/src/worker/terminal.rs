//! The end of a run: the terminal snapshot (retried through NATS outages), the give-up write
//! (FAILED without running anything more), and the guard that restores a terminal snapshot a
//! writer without compare-and-set put a stale one over.

use std::time::Duration;

use tokio::time::Instant;

use super::Worker;
use crate::flow::engine::{EngineState, Outcome};
use crate::model::bundle::result_summary;
use crate::model::{Change, Job, RunSnapshot, RunStatus, StatusPeek, TaskState, WorkerWrite, now};
use crate::store::{Store, StoreError, Versioned};

/// How long the terminal write keeps retrying through a NATS outage before the message is
/// handed back for redelivery.
const TERMINAL_WRITE_PATIENCE: Duration = Duration::from_secs(120);

/// How the run ended, as the terminal write records it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct FinishedWith<'a> {
    pub status: RunStatus,
    /// `None` leaves the stored one (a run cancelled before it started has none).
    pub start_time: Option<f64>,
    pub error: Option<&'a str>,
}

/// The run status and error an engine outcome is written as.
pub(super) fn finished_with(outcome: &Outcome, start_time: f64) -> FinishedWith<'_> {
    let (status, error) = match outcome {
        Outcome::Completed(warning) => (RunStatus::Completed, warning.as_deref()),
        Outcome::Failed(e) => (RunStatus::Failed, Some(e.as_str())),
        Outcome::Cancelled => (RunStatus::Cancelled, None),
    };
    FinishedWith {
        status,
        start_time: Some(start_time),
        error,
    }
}

/// Tasks dropped with a cancelled flow never reported their end: they end CANCELLED at `now`.
pub(super) fn cancel_unfinished(state: &mut EngineState, now: f64) {
    for (name, task) in state.tasks.iter_mut() {
        if !task.is_finished() {
            *task = TaskState::Cancelled;
            if let Some(rec) = state.task_records.get_mut(name) {
                rec.state = TaskState::Cancelled;
                rec.ended_at.get_or_insert(now);
            }
        }
    }
}

impl Worker {
    /// Writes the terminal snapshot, retrying through NATS outages for a while. `known` is
    /// the last document this worker read or wrote (saves a read when still current).
    pub(super) async fn finish(
        &self,
        job: &Job,
        state: &EngineState,
        end: FinishedWith<'_>,
        mut known: Option<Versioned<RunSnapshot>>,
    ) -> Result<Option<Versioned<RunSnapshot>>, StoreError> {
        let write = WorkerWrite {
            job,
            worker_id: &self.worker_id,
            tasks: &state.tasks,
            task_records: &state.task_records,
            status: end.status,
            start_time: end.start_time,
            end_time: Some(now()),
            error: end.error,
        };
        let deadline = Instant::now() + TERMINAL_WRITE_PATIENCE;
        loop {
            let result = self
                .store
                .runs()
                .update_from(&job.run_id, known.take(), |doc| {
                    let change = write.apply(doc, now());
                    // Every finished bundle run carries its summary (its parent reads it).
                    if change == Change::Write
                        && doc.status.is_terminal()
                        && doc.bundle_hash.is_some()
                    {
                        doc.result_summary = Some(result_summary(doc));
                    }
                    change
                })
                .await;
            match result {
                Err(e) if e.is_transient() && Instant::now() < deadline => {
                    tracing::warn!(run_id = %job.run_id, error = %e, "terminal write failed; retrying");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                other => return other,
            }
        }
    }

    /// Writers without compare-and-set (the original gateway's cancel is read-then-put) can
    /// put a stale, non-terminal snapshot over our terminal one. Shortly after the terminal
    /// write, look again and restore it if that happened (the original worker's trailing
    /// writes repaired this by accident). The check is a task the worker owns: shutdown
    /// waits for it. Only with `PYOCO_TERMINAL_GUARD_SEC` set: pyoco's own writers all use
    /// compare-and-set, and the read costs NATS and the worker work on every run.
    pub(super) fn guard_terminal(&self, job: &Job, state: EngineState, stored: &RunSnapshot) {
        let runs = self.store.runs().clone();
        let delay = self.store.config().terminal_guard;
        let (job, worker_id) = (job.clone(), self.worker_id.clone());
        let (status, start_time, end_time, error) = (
            stored.status,
            stored.start_time,
            stored.end_time,
            stored.error.clone(),
        );
        self.tasks.spawn(async move {
            tokio::time::sleep(delay).await;
            // Nearly always the run is still terminal: a read of its status settles that
            // without parsing the whole snapshot; only a stale one pays for the repair.
            // Both NATS futures are boxed: inline, their size would be reserved in every
            // one of these tasks for the whole sleep (at thousands of runs a second, MBs).
            if let Ok(Some(raw)) = Box::pin(runs.get_raw(&job.run_id)).await
                && StatusPeek::decode(&raw.value).is_some_and(|p| p.is_terminal())
            {
                return;
            }
            let write = WorkerWrite {
                job: &job,
                worker_id: &worker_id,
                tasks: &state.tasks,
                task_records: &state.task_records,
                status,
                start_time,
                end_time,
                error: error.as_deref(),
            };
            let repaired = Box::pin(runs.update(&job.run_id, |doc| {
                if doc.status.is_terminal() {
                    return Change::Keep;
                }
                tracing::warn!(run_id = %job.run_id, stale = %doc.status, "a stale write replaced the terminal snapshot; restoring it");
                write.apply(doc, now())
            }))
            .await;
            if let Err(e) = repaired {
                tracing::warn!(run_id = %job.run_id, error = %e, "could not re-check the terminal snapshot");
            }
        });
    }
}

/// FAILED without running anything more (unknown or invalid flow, give-up). `end_time` stays
/// null, as in the original; tasks already recorded are kept.
pub(super) async fn fail_run(
    store: &Store,
    worker_id: &str,
    job: &Job,
    error: &str,
) -> Result<(), StoreError> {
    let empty = EngineState::default();
    let write = WorkerWrite {
        job,
        worker_id,
        tasks: &empty.tasks,
        task_records: &empty.task_records,
        status: RunStatus::Failed,
        start_time: None,
        end_time: None,
        error: Some(error),
    };
    store
        .runs()
        .update(&job.run_id, |doc| write.apply(doc, now()))
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TaskRecord;

    #[test]
    fn outcomes_become_statuses_and_errors() {
        let done = Outcome::Completed(Some("warn".into()));
        assert_eq!(
            finished_with(&done, 1.0),
            FinishedWith {
                status: RunStatus::Completed,
                start_time: Some(1.0),
                error: Some("warn")
            }
        );
        let failed = Outcome::Failed("boom".into());
        assert_eq!(finished_with(&failed, 1.0).status, RunStatus::Failed);
        assert_eq!(finished_with(&failed, 1.0).error, Some("boom"));
        let cancelled = finished_with(&Outcome::Cancelled, 1.0);
        assert_eq!(
            (cancelled.status, cancelled.error),
            (RunStatus::Cancelled, None)
        );
    }

    #[test]
    fn a_cancel_ends_only_the_unfinished_tasks() {
        let mut state = EngineState::default();
        state.tasks.insert("done".into(), TaskState::Succeeded);
        state.tasks.insert("busy".into(), TaskState::Running);
        state.tasks.insert("next".into(), TaskState::Pending);
        let mut busy = TaskRecord::pending();
        busy.state = TaskState::Running;
        state.task_records.insert("busy".into(), busy);
        let mut done = TaskRecord::pending();
        done.state = TaskState::Succeeded;
        done.ended_at = Some(3.0);
        state.task_records.insert("done".into(), done);
        cancel_unfinished(&mut state, 9.0);
        assert_eq!(state.tasks["done"], TaskState::Succeeded);
        assert_eq!(state.tasks["busy"], TaskState::Cancelled);
        assert_eq!(state.tasks["next"], TaskState::Cancelled);
        assert_eq!(state.task_records["busy"].state, TaskState::Cancelled);
        assert_eq!(state.task_records["busy"].ended_at, Some(9.0));
        assert_eq!(state.task_records["done"].ended_at, Some(3.0));
    }
}
