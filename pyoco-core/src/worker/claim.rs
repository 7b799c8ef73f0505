//! Claiming a job's run: the checks made on the stored snapshot before anything runs (already
//! terminal, awaiting approval, cancelled while PENDING), the flow lookup, and the
//! compare-and-set PENDING → RUNNING.

use std::sync::Arc;

use super::terminal::{FinishedWith, fail_run};
use super::{Worker, process::dlq_context};
use crate::flow::engine::EngineState;
use crate::flow::tasks::FlowLookupError;
use crate::flow::yaml::bundle::{parse_bundle, reachable_spawn_tasks};
use crate::flow::yaml::{FlowSpec, parse_flow_yaml_within};
use crate::model::bundle::BundleJob;
use crate::model::{Change, DlqReason, Job, RunSnapshot, RunStatus, WorkerWrite, now};
use crate::store::{StoreError, Versioned};

/// What the claim decided.
pub(super) enum Claim {
    /// Nothing to run: the message is acked (terminal, dropped, or failed before running).
    Settled,
    /// The run is ours and RUNNING.
    Claimed(Box<Claimed>),
    /// A redelivered job of a run that a live worker is still running (a consumer leader
    /// change in a NATS cluster redelivers what was in flight): not run a second time.
    RunningElsewhere,
}

/// How long after its owner's last write a RUNNING run counts as abandoned: a few run
/// heartbeats, at least 5 s (a NATS failover takes seconds).
pub(super) fn abandoned_after(run_heartbeat: std::time::Duration) -> std::time::Duration {
    (run_heartbeat * 5).max(std::time::Duration::from_secs(5))
}

/// A claimed run, ready to execute.
pub(super) struct Claimed {
    /// The job with the flow's `defaults` merged into its params.
    pub job: Job,
    pub spec: Arc<FlowSpec>,
    /// The claim as written: where the next compare-and-set write starts.
    pub snapshot: Versioned<RunSnapshot>,
    pub start_time: f64,
    pub initial: EngineState,
}

enum FlowProblem {
    NotFound(String),
    Invalid(String),
}

impl Worker {
    pub(super) async fn claim(&self, job: &Job) -> Result<Claim, StoreError> {
        let Some(current) = self.store.runs().get(&job.run_id).await? else {
            // The submitter rolled the run back (its publish failed), or it was deleted.
            tracing::warn!(run_id = %job.run_id, "job has no run snapshot; dropping it");
            return Ok(Claim::Settled);
        };
        let status = current.value.status;
        if status.is_terminal() {
            tracing::info!(run_id = %job.run_id, %status, "run already terminal; skipping redelivered job");
            return Ok(Claim::Settled);
        }
        if matches!(status, RunStatus::Running | RunStatus::Cancelling)
            && self.owned_by_live_worker(&current.value).await
        {
            tracing::warn!(
                run_id = %job.run_id,
                owner = current.value.worker_id.as_deref().unwrap_or(""),
                "redelivered job of a run that is still running; not running it twice"
            );
            return Ok(Claim::RunningElsewhere);
        }
        if status == RunStatus::PendingApproval {
            tracing::warn!(run_id = %job.run_id, "run awaits approval; dropping its job");
            return Ok(Claim::Settled);
        }
        if current.value.cancel_requested() {
            // Cancelled before any worker ran it: finish it without running anything. Boxed,
            // like every NATS write on this path: inline, debug builds overflow the stack.
            Box::pin(self.finish(
                job,
                &EngineState::default(),
                FinishedWith {
                    status: RunStatus::Cancelled,
                    start_time: None,
                    error: None,
                },
                Some(current),
            ))
            .await?;
            self.registry_finished(&job.run_id, RunStatus::Cancelled)
                .await;
            return Ok(Claim::Settled);
        }

        let spec = match self.resolve(job) {
            Ok(spec) => spec,
            Err(FlowProblem::NotFound(error)) => {
                tracing::error!(run_id = %job.run_id, flow_name = %job.flow_name, "flow not found");
                self.store
                    .publish_dlq(
                        &job.tag,
                        DlqReason::FlowNotFound,
                        Some(&error),
                        dlq_context(job, &self.worker_id),
                    )
                    .await;
                fail_run(&self.store, &self.worker_id, job, &error).await?;
                self.registry_finished(&job.run_id, RunStatus::Failed).await;
                return Ok(Claim::Settled);
            }
            Err(FlowProblem::Invalid(error)) => {
                tracing::error!(run_id = %job.run_id, %error, "invalid workflow for job");
                fail_run(&self.store, &self.worker_id, job, &error).await?;
                self.registry_finished(&job.run_id, RunStatus::Failed).await;
                return Ok(Claim::Settled);
            }
        };
        let job = with_defaults(job, &spec);

        // Claim: PENDING (or RUNNING, when redelivered after its worker died: see above) -> RUNNING,
        // compare-and-set against the snapshot just read (no second read).
        let start_time = now();
        let initial = EngineState::for_flow(&spec);
        let write = WorkerWrite {
            job: &job,
            worker_id: &self.worker_id,
            tasks: &initial.tasks,
            task_records: &initial.task_records,
            status: RunStatus::Running,
            start_time: Some(start_time),
            end_time: None,
            error: None,
        };
        let claimed = self
            .store
            .runs()
            .update_from(&job.run_id, Some(current), |doc| {
                let change = write.apply(doc, now());
                // A named flow is only resolved here: record its graph for the dashboard, as
                // the submitter does for YAML runs (documents.md, flow_graph).
                if change == Change::Write && !doc.extra.contains_key("flow_graph") {
                    doc.extra.insert("flow_graph".into(), spec.graph.drawing());
                }
                change
            })
            .await?;
        match claimed {
            Some(snapshot) if !snapshot.value.status.is_terminal() => {
                // Queue wait counts first claims only: a redelivery waited for a dead worker.
                if status == RunStatus::Pending {
                    self.metrics
                        .queue_wait(&job.tag, start_time - job.submitted_at);
                }
                Ok(Claim::Claimed(Box::new(Claimed {
                    job,
                    spec,
                    snapshot,
                    start_time,
                    initial,
                })))
            }
            _ => Ok(Claim::Settled),
        }
    }

    /// True when `run` (RUNNING or CANCELLING) is being run right now: by this worker, or
    /// by another one that wrote it within [`abandoned_after`].
    pub(super) async fn owned_by_live_worker(&self, run: &RunSnapshot) -> bool {
        live_owner(
            run,
            &self.worker_id,
            &self.running,
            self.store.config().run_heartbeat_interval,
        )
        .await
    }

    fn resolve(&self, job: &Job) -> Result<Arc<FlowSpec>, FlowProblem> {
        if let Some(bundle) = BundleJob::of(job) {
            return self.resolve_bundle(job, &bundle);
        }
        if let Some(yaml) = &job.workflow_yaml {
            return parse_flow_yaml_within(yaml.as_bytes(), self.store.config().yaml_limits())
                .map(Arc::new)
                .map_err(|e| FlowProblem::Invalid(e.reason));
        }
        self.registry.flow(&job.flow_name).map_err(|e| match e {
            FlowLookupError::NotFound(_) => FlowProblem::NotFound(e.to_string()),
            other => FlowProblem::Invalid(other.to_string()),
        })
    }
}

impl Worker {
    /// A bundle job's workflow: the one named `flow_name` in the bundle it carries. A child
    /// (depth 1) whose workflow spawns is refused (`child_respawn_not_allowed`), as in the
    /// original.
    fn resolve_bundle(&self, job: &Job, bundle: &BundleJob) -> Result<Arc<FlowSpec>, FlowProblem> {
        let Some(text) = &bundle.text else {
            return Err(FlowProblem::NotFound(
                "flow_not_found: 'missing_workflow_bundle'".into(),
            ));
        };
        let parsed = parse_bundle(text.as_bytes(), self.store.config().yaml_limits())
            .map_err(|e| FlowProblem::Invalid(e.reason))?;
        let Some(flow) = parsed.workflow(&job.flow_name) else {
            return Err(FlowProblem::NotFound(format!(
                "flow_not_found: '{}'",
                job.flow_name
            )));
        };
        if bundle.spawn_depth >= 1 && !reachable_spawn_tasks(flow).is_empty() {
            return Err(FlowProblem::Invalid("child_respawn_not_allowed".into()));
        }
        Ok(Arc::new(flow.clone()))
    }
}

/// [`Worker::owned_by_live_worker`] for a task that has no `Worker`: `me` and the runs this
/// worker is running (`running`).
pub(super) async fn live_owner(
    run: &RunSnapshot,
    me: &str,
    running: &tokio::sync::Mutex<std::collections::HashSet<String>>,
    run_heartbeat: std::time::Duration,
) -> bool {
    if run.worker_id.as_deref() == Some(me) {
        return running.lock().await.contains(&run.run_id);
    }
    let silent = now() - run.heartbeat_at.unwrap_or(0.0);
    silent < abandoned_after(run_heartbeat).as_secs_f64()
}

/// A named flow's `defaults` fill in params the submitter did not give (YAML jobs already
/// carry them).
fn with_defaults(job: &Job, spec: &FlowSpec) -> Job {
    // Bundle workflows carry no defaults either (their params are the submit's or spawn's).
    if job.workflow_yaml.is_some() || spec.defaults.is_empty() {
        return job.clone();
    }
    let mut params = spec.defaults.clone();
    params.extend(job.params.clone());
    Job {
        params,
        ..job.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_fill_only_missing_params_of_named_flows() {
        let mut spec = crate::flow::yaml::parse_flow_yaml(
            b"flow: {graph: a}\ntasks: {a: {callable: 'pyoco:echo'}}",
        )
        .unwrap();
        spec.defaults.insert("x".into(), json!(1));
        spec.defaults.insert("y".into(), json!(2));
        let job = Job::decode(br#"{"run_id":"r","flow_name":"f","params":{"y":3}}"#).unwrap();
        let merged = with_defaults(&job, &spec);
        assert_eq!(merged.params["x"], json!(1));
        assert_eq!(merged.params["y"], json!(3));
        let mut yaml_job = job.clone();
        yaml_job.workflow_yaml = Some("flow: {graph: a}".into());
        assert_eq!(with_defaults(&yaml_job, &spec).params, job.params);
    }
}
