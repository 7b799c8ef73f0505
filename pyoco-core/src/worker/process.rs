//! Processing one message: decode, claim the run with compare-and-set, run the flow while a
//! writer task keeps the snapshot current, write the terminal snapshot, then ack.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{AckKind, Message};
use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{AbortOnDrop, Disposition, Processed, Worker};
use crate::flow::engine::{EngineState, Outcome, RunInfo, run_flow};
use crate::flow::tasks::FlowLookupError;
use crate::flow::yaml::{FlowSpec, parse_flow_yaml};
use crate::model::{DlqReason, InvalidJob, Job, RunSnapshot, RunStatus, TaskState, now};
use crate::store::{Change, RunStore, Store, StoreError, Versioned, queue::NAK_DELAY};

/// Progress writes are coalesced to at most one per this interval (the original's 0.25 s);
/// the terminal write is never delayed.
const FLUSH_INTERVAL: Duration = Duration::from_millis(250);

/// How long the terminal write keeps retrying through a NATS outage before the message is
/// handed back for redelivery.
const TERMINAL_WRITE_PATIENCE: Duration = Duration::from_secs(120);

/// A flow still running after this long starts listening for cancels on its run key. Shorter
/// runs never subscribe (their terminal compare-and-set write sees a cancel anyway), which
/// keeps subscription churn off the server when runs are short and many.
const CANCEL_WATCH_DELAY: Duration = Duration::from_millis(50);

enum Exec {
    /// The run is terminal (or was never ours to run): ack.
    Done,
    /// Shutdown: give the message back for another worker.
    HandBack,
}

impl Worker {
    pub(super) async fn process(&self, msg: Message) -> Processed {
        let msg = Arc::new(msg);
        let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
        let job = match Job::decode(&msg.payload) {
            Ok(job) => job,
            Err(e) => {
                self.dead_letter_invalid(&msg, delivered, &e).await;
                if let Err(err) = msg.ack_with(AckKind::Term).await {
                    tracing::warn!(error = %err, "could not TERM an invalid job");
                }
                return Processed::Invalid;
            }
        };
        let stop_progress = CancellationToken::new();
        let progress = spawn_ack_progress(
            msg.clone(),
            self.store.config.effective_ack_progress_interval(),
            stop_progress.clone(),
        );
        // Boxed: the run's state is large, and callers' futures stay small (debug-build
        // stacks overflowed when it was inlined into `Worker::run`).
        let result = Box::pin(self.execute(&job)).await;
        stop_progress.cancel();
        if let Some(task) = progress {
            task.await.ok();
        }
        let disposition = match result {
            Ok(Exec::Done) => {
                if let Err(e) = msg.ack().await {
                    // The run is terminal, so a redelivery is acked and skipped.
                    tracing::warn!(run_id = %job.run_id, error = %e, "ack failed");
                }
                Disposition::Acked
            }
            Ok(Exec::HandBack) => {
                msg.ack_with(AckKind::Nak(None)).await.ok();
                Disposition::HandedBack
            }
            Err(e) => self.retry_or_give_up(&msg, &job, delivered, e).await,
        };
        Processed::Job {
            run_id: job.run_id,
            disposition,
        }
    }

    /// A transient failure: NAK with a delay, unless this was the last allowed delivery.
    async fn retry_or_give_up(
        &self,
        msg: &Message,
        job: &Job,
        delivered: i64,
        error: StoreError,
    ) -> Disposition {
        let max = self.store.config.consumer_max_deliver;
        self.registry_finished(&job.run_id, "FAILED").await;
        let exhausted = max > 0 && delivered >= max;
        // Retrying only helps with transient trouble; anything else (a corrupt snapshot, a
        // document over the server's size limit) fails the run now instead of 20 times.
        if exhausted || !error.is_transient() {
            let (kind, reason) = if exhausted {
                (
                    DlqReason::MaxDeliveries,
                    format!("gave up after {delivered} deliveries: {error}"),
                )
            } else {
                (
                    DlqReason::ExecutionError,
                    format!("cannot process the job: {error}"),
                )
            };
            tracing::error!(run_id = %job.run_id, %reason, "job failed for the last time");
            self.store
                .publish_dlq(
                    &job.tag,
                    kind,
                    Some(&reason),
                    dlq_context(job, &self.worker_id),
                )
                .await;
            if let Err(e) = fail_run(&self.store, &self.worker_id, job, &reason).await {
                tracing::error!(run_id = %job.run_id, error = %e, "could not mark the run FAILED");
            }
            msg.ack_with(AckKind::Term).await.ok();
            return Disposition::GaveUp;
        }
        tracing::error!(run_id = %job.run_id, error = %error, delivered, "transient nats error during job processing; will retry");
        msg.ack_with(AckKind::Nak(Some(NAK_DELAY))).await.ok();
        Disposition::Retried
    }

    async fn execute(&self, job: &Job) -> Result<Exec, StoreError> {
        let runs = &self.store.runs;
        let Some(current) = runs.get(&job.run_id).await? else {
            // The submitter rolled the run back (its publish failed), or it was deleted.
            tracing::warn!(run_id = %job.run_id, "job has no run snapshot; dropping it");
            return Ok(Exec::Done);
        };
        let status = current.value.status;
        if status.is_terminal() {
            tracing::info!(run_id = %job.run_id, %status, "run already terminal; skipping redelivered job");
            return Ok(Exec::Done);
        }
        if status == RunStatus::PendingApproval {
            tracing::warn!(run_id = %job.run_id, "run awaits approval; dropping its job");
            return Ok(Exec::Done);
        }
        if current.value.cancel_requested() {
            // Cancelled before any worker ran it: finish it without running anything.
            self.finish(
                job,
                &EngineState::default(),
                RunStatus::Cancelled,
                None,
                None,
                Some(current),
            )
            .await?;
            self.registry_finished(&job.run_id, "CANCELLED").await;
            return Ok(Exec::Done);
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
                self.registry_finished(&job.run_id, "FAILED").await;
                return Ok(Exec::Done);
            }
            Err(FlowProblem::Invalid(error)) => {
                tracing::error!(run_id = %job.run_id, %error, "invalid workflow for job");
                fail_run(&self.store, &self.worker_id, job, &error).await?;
                self.registry_finished(&job.run_id, "FAILED").await;
                return Ok(Exec::Done);
            }
        };

        // A named flow's `defaults` fill in params the submitter did not give (YAML jobs
        // already carry them).
        let merged;
        let job = if job.workflow_yaml.is_none() && !spec.defaults.is_empty() {
            let mut params = spec.defaults.clone();
            params.extend(job.params.clone());
            merged = Job {
                params,
                ..job.clone()
            };
            &merged
        } else {
            job
        };

        // Claim: PENDING (or RUNNING, when redelivered after a worker died) -> RUNNING,
        // compare-and-set against the snapshot just read (no second read).
        let start_time = now();
        let initial = EngineState::for_flow(&spec);
        let claimed = runs
            .update_from(&job.run_id, Some(current), |doc| {
                apply(
                    doc,
                    job,
                    &self.worker_id,
                    &initial,
                    RunStatus::Running,
                    Some(start_time),
                    None,
                    None,
                )
            })
            .await?;
        let Some(claimed) = claimed else {
            return Ok(Exec::Done);
        };
        if claimed.value.status.is_terminal() {
            return Ok(Exec::Done);
        }
        self.registry_started(&job.run_id).await;
        tracing::info!(run_id = %job.run_id, flow_name = %job.flow_name, tag = %job.tag, worker_id = %self.worker_id, "run started");

        let (tx, rx) = watch::channel(initial);
        let cancel = CancellationToken::new();
        if claimed.value.cancel_requested() {
            cancel.cancel();
        }
        let stop_writer = CancellationToken::new();
        let writer = tokio::spawn(progress_writer(ProgressWriter {
            runs: runs.clone(),
            job: job.clone(),
            worker_id: self.worker_id.clone(),
            start_time,
            rx,
            cancel: cancel.clone(),
            stop: stop_writer.clone(),
            heartbeat: self.store.config.run_heartbeat_interval,
            last: Some(claimed.clone()),
        }));
        let run = RunInfo {
            run_id: job.run_id.clone(),
            flow_name: job.flow_name.clone(),
            params: Arc::new(job.params.clone()),
            services: self.services.clone(),
        };
        let mut handed_back = false;
        let cancel_watch = AbortOnDrop(tokio::spawn(watch_for_cancel(
            self.store.client.clone(),
            runs.clone(),
            job.run_id.clone(),
            cancel.clone(),
        )));
        let outcome = {
            let engine = run_flow(&spec, &self.registry, &run, &tx, &cancel);
            tokio::pin!(engine);
            // Shutdown: the flow may finish within the grace period, then it is handed back.
            let shutdown_over = async {
                self.shutdown.cancelled().await;
                tokio::time::sleep(self.shutdown_grace).await;
            };
            tokio::pin!(shutdown_over);
            // A cancelled flow gets PYOCO_CANCEL_GRACE_PERIOD_SEC to stop; then it is dropped.
            let grace = self.store.config.cancel_grace_period;
            let cancel_over = async {
                cancel.cancelled().await;
                tokio::time::sleep(grace).await;
            };
            tokio::pin!(cancel_over);
            loop {
                tokio::select! {
                    outcome = &mut engine => break outcome,
                    _ = &mut shutdown_over, if !handed_back => {
                        handed_back = true;
                        cancel.cancel();
                    }
                    _ = &mut cancel_over => {
                        tracing::warn!(run_id = %job.run_id, "flow did not stop within the cancel grace period; dropping it");
                        break Outcome::Cancelled;
                    }
                }
            }
        };
        drop(cancel_watch);
        stop_writer.cancel();
        // The last document written (the claim, or the writer's last write) is where the
        // terminal compare-and-set starts.
        let known = writer.await.ok().flatten().unwrap_or(claimed);
        if handed_back {
            tracing::warn!(run_id = %job.run_id, "shutdown grace period over; handing the run back to the queue");
            self.registry_finished(&job.run_id, "RUNNING").await;
            return Ok(Exec::HandBack);
        }

        let mut final_state = tx.borrow().clone();
        if outcome == Outcome::Cancelled {
            // Tasks dropped with the flow never reported their end.
            let ended = now();
            for (name, state) in final_state.tasks.iter_mut() {
                if !state.is_finished() {
                    *state = TaskState::Cancelled;
                    if let Some(rec) = final_state.task_records.get_mut(name) {
                        rec.state = TaskState::Cancelled;
                        rec.ended_at.get_or_insert(ended);
                    }
                }
            }
        }
        let (status, error) = match &outcome {
            Outcome::Completed(warning) => (RunStatus::Completed, warning.as_deref()),
            Outcome::Failed(e) => (RunStatus::Failed, Some(e.as_str())),
            Outcome::Cancelled => (RunStatus::Cancelled, None),
        };
        if let (Outcome::Failed(e), true) =
            (&outcome, self.store.config.dlq_publish_execution_error)
        {
            self.store
                .publish_dlq(
                    &job.tag,
                    DlqReason::ExecutionError,
                    Some(e),
                    dlq_context(job, &self.worker_id),
                )
                .await;
        }
        let stored = self
            .finish(
                job,
                &final_state,
                status,
                Some(start_time),
                error,
                Some(known),
            )
            .await?;
        let end_time = stored.as_ref().and_then(|s| s.value.end_time);
        let final_status = stored.map(|s| s.value.status).unwrap_or(status);
        tracing::info!(run_id = %job.run_id, status = %final_status, "run finished");
        self.guard_terminal(
            job,
            final_state,
            final_status,
            start_time,
            end_time,
            error.map(str::to_string),
        );
        self.registry_finished(&job.run_id, final_status.as_str())
            .await;
        self.metrics.run_finished(final_status.as_str());
        Ok(Exec::Done)
    }

    /// Writers without compare-and-set (the original gateway's cancel is read-then-put) can
    /// put a stale, non-terminal snapshot over our terminal one. Shortly after the terminal
    /// write, look again and restore it if that happened (the original worker's trailing
    /// writes repaired this by accident).
    fn guard_terminal(
        &self,
        job: &Job,
        state: EngineState,
        status: RunStatus,
        start_time: f64,
        end_time: Option<f64>,
        error: Option<String>,
    ) {
        let (runs, job, worker_id) = (self.store.runs.clone(), job.clone(), self.worker_id.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            // Nearly always the run is still terminal: a read of its status settles that
            // without parsing the whole snapshot; only a stale one pays for the repair.
            // Both NATS futures are boxed: inline, their size would be reserved in every
            // one of these tasks for the whole sleep (at thousands of runs a second, MBs).
            if let Ok(Some(raw)) = Box::pin(runs.get_raw(&job.run_id)).await
                && crate::model::json::from_slice::<StatusFields>(&raw.value).is_ok_and(|d| {
                    d.status
                        .as_deref()
                        .and_then(RunStatus::parse)
                        .is_some_and(RunStatus::is_terminal)
                })
            {
                return;
            }
            let repaired = Box::pin(runs.update(&job.run_id, |doc| {
                    if doc.status.is_terminal() {
                        return Change::Keep;
                    }
                    tracing::warn!(run_id = %job.run_id, stale = %doc.status, "a stale write replaced the terminal snapshot; restoring it");
                    apply(doc, &job, &worker_id, &state, status, Some(start_time), end_time, error.as_deref())
                }))
                .await;
            if let Err(e) = repaired {
                tracing::warn!(run_id = %job.run_id, error = %e, "could not re-check the terminal snapshot");
            }
        });
    }

    fn resolve(&self, job: &Job) -> Result<Arc<FlowSpec>, FlowProblem> {
        if let Some(yaml) = &job.workflow_yaml {
            return parse_flow_yaml(yaml.as_bytes())
                .map(Arc::new)
                .map_err(|e| FlowProblem::Invalid(e.reason));
        }
        self.registry.flow(&job.flow_name).map_err(|e| match e {
            FlowLookupError::NotFound(_) => FlowProblem::NotFound(e.to_string()),
            other => FlowProblem::Invalid(other.to_string()),
        })
    }

    /// Writes the terminal snapshot, retrying through NATS outages for a while. `known` is
    /// the last document this worker read or wrote (saves a read when still current).
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        job: &Job,
        state: &EngineState,
        status: RunStatus,
        start_time: Option<f64>,
        error: Option<&str>,
        mut known: Option<Versioned<RunSnapshot>>,
    ) -> Result<Option<Versioned<RunSnapshot>>, StoreError> {
        let end = now();
        let deadline = Instant::now() + TERMINAL_WRITE_PATIENCE;
        loop {
            let result = self
                .store
                .runs
                .update_from(&job.run_id, known.take(), |doc| {
                    apply(
                        doc,
                        job,
                        &self.worker_id,
                        state,
                        status,
                        start_time,
                        Some(end),
                        error,
                    )
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

    async fn dead_letter_invalid(&self, msg: &Message, delivered: i64, error: &InvalidJob) {
        tracing::error!(subject = %msg.subject, %error, reason = "invalid_job", "invalid job payload");
        let subject = msg.subject.to_string();
        let tag = subject.rsplit('.').next().unwrap_or("default").to_string();
        let head = &msg.payload[..msg.payload.len().min(4096)];
        let mut ctx = Map::new();
        ctx.insert("subject".into(), subject.clone().into());
        ctx.insert("worker_id".into(), self.worker_id.clone().into());
        ctx.insert("num_delivered".into(), delivered.into());
        ctx.insert(
            "payload".into(),
            String::from_utf8_lossy(head).into_owned().into(),
        );
        self.store
            .publish_dlq(&tag, DlqReason::InvalidJob, Some(&error.to_string()), ctx)
            .await;
    }
}

impl Worker {
    /// The registry record shows RUNNING while this worker runs anything. One job at a time,
    /// every start and finish is written, as always; with several at once only the first
    /// start and the last finish are, so concurrent runs do not contend for the record.
    async fn registry_started(&self, run_id: &str) {
        let mut running = self.running.lock().await;
        running.insert(run_id.to_string());
        if self.concurrency <= 1 || running.len() == 1 {
            self.heartbeat.run_started(run_id).await;
        }
    }

    async fn registry_finished(&self, run_id: &str, status: &str) {
        let mut running = self.running.lock().await;
        running.remove(run_id);
        if self.concurrency <= 1 || running.is_empty() {
            self.heartbeat.run_finished(run_id, status).await;
        }
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
    store
        .runs
        .update(&job.run_id, |doc| {
            let recorded = EngineState {
                tasks: doc.tasks.clone(),
                task_records: doc.task_records.clone(),
            };
            let state = if doc.tasks.is_empty() {
                &empty
            } else {
                &recorded
            };
            apply(
                doc,
                job,
                worker_id,
                state,
                RunStatus::Failed,
                None,
                None,
                Some(error),
            )
        })
        .await
        .map(|_| ())
}

/// The context keys of `flow_not_found` / `execution_error` / `max_deliveries` DLQ messages.
pub(super) fn dlq_context(job: &Job, worker_id: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("run_id".into(), job.run_id.clone().into());
    m.insert("flow_name".into(), job.flow_name.clone().into());
    m.insert("tag".into(), job.tag.clone().into());
    m.insert("tags".into(), job.effective_tags().into());
    m.insert("tenant_id".into(), job.tenant_id.clone().into());
    m.insert("api_key_id".into(), job.api_key_id.clone().into());
    m.insert("worker_id".into(), worker_id.into());
    m
}

enum FlowProblem {
    NotFound(String),
    Invalid(String),
}

/// Applies the worker's view to the freshest stored document. Gateway-owned fields (cancel,
/// approval, unknown keys) are kept; a cancel turns RUNNING into CANCELLING and a completion
/// into CANCELLED; terminal runs are never touched.
#[allow(clippy::too_many_arguments)]
fn apply(
    doc: &mut RunSnapshot,
    job: &Job,
    worker_id: &str,
    state: &EngineState,
    status: RunStatus,
    start_time: Option<f64>,
    end_time: Option<f64>,
    error: Option<&str>,
) -> Change {
    if doc.status.is_terminal() {
        return Change::Keep;
    }
    let target = match status {
        RunStatus::Running if doc.cancel_requested() => RunStatus::Cancelling,
        RunStatus::Completed if doc.cancel_requested() => RunStatus::Cancelled,
        other => other,
    };
    if doc.status != target && !doc.status.can_become(target) {
        return Change::Keep;
    }
    let now = now();
    doc.flow_name = job.flow_name.clone();
    doc.tag = Some(job.tag.clone());
    doc.tags = job.effective_tags();
    doc.tenant_id = job.tenant_id.clone().or(doc.tenant_id.take());
    doc.api_key_id = job.api_key_id.clone().or(doc.api_key_id.take());
    if job.workflow_yaml_sha256.is_some() {
        doc.workflow_yaml_sha256 = job.workflow_yaml_sha256.clone();
        doc.workflow_yaml_bytes = job.workflow_yaml_bytes;
    }
    if let Some(schedule_id) = &job.schedule_id {
        doc.schedule_id = schedule_id.clone();
    }
    doc.spawn_depth.get_or_insert(0);
    doc.params = job.params.clone();
    doc.status = target;
    if !state.tasks.is_empty() {
        doc.tasks = state.tasks.clone();
        doc.task_records = state.task_records.clone();
    }
    doc.worker_id = Some(worker_id.to_string());
    if start_time.is_some() {
        doc.start_time = start_time;
    }
    doc.end_time = end_time;
    doc.error = error.map(str::to_string);
    doc.heartbeat_at = Some(now);
    doc.updated_at = Some(now);
    Change::Write
}

struct ProgressWriter {
    runs: RunStore,
    job: Job,
    worker_id: String,
    start_time: f64,
    rx: watch::Receiver<EngineState>,
    cancel: CancellationToken,
    stop: CancellationToken,
    heartbeat: Duration,
    /// The last document written (the claim at first): the next write starts from it.
    last: Option<Versioned<RunSnapshot>>,
}

/// Writes engine progress (coalesced) and a heartbeat every `PYOCO_RUN_HEARTBEAT_INTERVAL_SEC`;
/// every write is compare-and-set, so a cancel written by the gateway is seen on the next
/// write and passed to the engine. Returns the last document written.
async fn progress_writer(mut w: ProgressWriter) -> Option<Versioned<RunSnapshot>> {
    let mut heartbeat = tokio::time::interval(w.heartbeat);
    heartbeat.tick().await;
    let mut dirty = false;
    // The claim was just written: the first progress write waits a flush interval too, so a
    // run shorter than that writes only its claim and its terminal snapshot.
    let mut next_flush = Instant::now() + FLUSH_INTERVAL;
    loop {
        let write_now = tokio::select! {
            _ = w.stop.cancelled() => break,
            changed = w.rx.changed() => {
                if changed.is_err() { break; }
                dirty = true;
                false
            }
            _ = heartbeat.tick() => true,
            _ = tokio::time::sleep_until(next_flush), if dirty => true,
        };
        if !write_now {
            continue;
        }
        dirty = false;
        next_flush = Instant::now() + FLUSH_INTERVAL;
        let state = w.rx.borrow().clone();
        let written = w
            .runs
            .update_from(&w.job.run_id, w.last.take(), |doc| {
                apply(
                    doc,
                    &w.job,
                    &w.worker_id,
                    &state,
                    RunStatus::Running,
                    Some(w.start_time),
                    None,
                    None,
                )
            })
            .await;
        match written {
            Ok(Some(doc)) => {
                if doc.value.cancel_requested() && !w.cancel.is_cancelled() {
                    tracing::info!(run_id = %w.job.run_id, "cancel requested; stopping the flow");
                    w.cancel.cancel();
                }
                w.last = Some(doc);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(run_id = %w.job.run_id, error = %e, "progress write failed"),
        }
    }
    w.last
}

/// Sends `+WPI` at once and then every `interval` until stopped, so a long run keeps its lease.
fn spawn_ack_progress(
    msg: Arc<Message>,
    interval: Option<Duration>,
    stop: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let interval = interval?;
    Some(tokio::spawn(async move {
        loop {
            if let Err(e) = msg.ack_with(AckKind::Progress).await {
                tracing::debug!(error = %e, "in-progress ack failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.cancelled() => break,
            }
        }
    }))
}

/// The few fields the worker checks in a stored snapshot without parsing all of it: the
/// status, and whether a cancel was asked for (see [`RunSnapshot::cancel_requested`]).
#[derive(serde::Deserialize)]
struct StatusFields {
    #[serde(default)]
    cancel_requested_at: Option<f64>,
    #[serde(default)]
    status: Option<String>,
}

/// Once the flow has run for [`CANCEL_WATCH_DELAY`], cancels `cancel` as soon as the run asks
/// for it. It subscribes to the run's key subject, so it sees every later write at once
/// (deletes carry no document and are skipped) — and unlike a KV watch it leaves no
/// JetStream consumer behind per run (those piled up under load until the server refused
/// new ones, the gateway's SSE watches included). Then it reads the run once: the read is
/// sent after the subscription on the same connection, so a cancel written before is in
/// the read and one written after reaches the subscription — none is missed.
async fn watch_for_cancel(
    client: async_nats::Client,
    runs: RunStore,
    run_id: String,
    cancel: CancellationToken,
) {
    use futures::StreamExt;
    tokio::time::sleep(CANCEL_WATCH_DELAY).await;
    let mut sub = match client.subscribe(runs.key_subject(&run_id)).await {
        Ok(sub) => sub,
        Err(e) => {
            // The heartbeat's compare-and-set writes still notice a cancel, only later.
            tracing::warn!(run_id = %run_id, error = %e, "cannot watch the run for cancels");
            return;
        }
    };
    let asked = |payload: &[u8]| {
        crate::model::json::from_slice::<StatusFields>(payload).is_ok_and(|doc| {
            doc.cancel_requested_at.is_some()
                || matches!(doc.status.as_deref(), Some("CANCELLING" | "CANCELLED"))
        })
    };
    let mut requested = match runs.get_raw(&run_id).await {
        Ok(Some(doc)) => asked(&doc.value),
        _ => false,
    };
    while !requested {
        match sub.next().await {
            Some(msg) => requested = asked(&msg.payload),
            None => return,
        }
    }
    if !cancel.is_cancelled() {
        tracing::info!(run_id = %run_id, "cancel requested; stopping the flow");
        cancel.cancel();
    }
}
