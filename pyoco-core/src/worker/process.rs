//! Processing one message: decode, claim the run ([`super::claim`]), run the flow while the
//! progress writer keeps the snapshot current ([`super::progress`]) and a watch listens for
//! cancels ([`super::cancel_watch`]), write the terminal snapshot ([`super::terminal`]), then
//! ack. Every ack, NAK and TERM that fails is logged with its run.

use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use super::cancel_watch::watch_for_cancel;
use super::claim::{Claim, Claimed};
use super::progress::{ProgressWriter, progress_writer, spawn_ack_progress};
use super::spawn::Spawner;
use super::terminal::{cancel_unfinished, fail_run, finished_with};
use super::{Disposition, Processed, Worker};
use crate::flow::engine::{Outcome, RunInfo, run_flow};
use crate::model::bundle::BundleJob;
use crate::model::{DlqReason, InvalidJob, Job, RunStatus, now};
use crate::store::StoreError;
use crate::store::queue::{Delivery, NAK_DELAY, Reply};

enum Exec {
    /// The run is terminal (or was never ours to run): ack.
    Done,
    /// Shutdown: give the message back for another worker.
    HandBack,
    /// Another delivery of a run a live worker is running: hold it (see [`Worker::hold`]).
    Elsewhere,
}

/// Sends `kind` for the message of `run_id`; a failure is logged, never dropped (the server
/// redelivers after the ack wait, and the run's compare-and-set writes keep that safe).
async fn reply(msg: &Delivery, reply: Reply, run_id: Option<&str>) {
    if let Err(e) = msg.reply(reply).await {
        tracing::warn!(run_id = run_id.unwrap_or(""), subject = %msg.subject(), ?reply, error = %e, "could not answer the job");
    }
}

impl Worker {
    pub(super) async fn process(&self, msg: Delivery) -> Processed {
        let msg = Arc::new(msg);
        let delivered = msg.delivered();
        let job = match Job::decode(msg.payload()) {
            Ok(job) => job,
            Err(e) => {
                self.dead_letter_invalid(&msg, delivered, &e).await;
                reply(&msg, Reply::Term, None).await;
                return Processed::Invalid;
            }
        };
        let stop_progress = CancellationToken::new();
        let progress = spawn_ack_progress(
            msg.clone(),
            job.run_id.clone(),
            self.store.config().effective_ack_progress_interval(),
            stop_progress.clone(),
        );
        // Every event of the run and its tasks carries the run (a span the log lines show);
        // as a trace, the run is a child of the submit that queued it (`traceparent`).
        let span = tracing::info_span!("run", run_id = %job.run_id, flow_name = %job.flow_name, worker_id = %self.worker_id);
        crate::store::trace_context::set_parent(&span, msg.headers());
        // Boxed: the run's state is large, and callers' futures stay small (debug-build
        // stacks overflowed when it was inlined into `Worker::run`).
        let result = Box::pin(self.execute(&job).instrument(span)).await;
        stop_progress.cancel();
        if let Some(task) = progress
            && let Err(e) = task.await
        {
            tracing::warn!(run_id = %job.run_id, error = %e, "in-progress ack task failed");
        }
        let disposition = match result {
            Ok(Exec::Done) => {
                // The run is terminal, so a redelivery is acked and skipped.
                reply(&msg, Reply::Ack, Some(&job.run_id)).await;
                Disposition::Acked
            }
            Ok(Exec::HandBack) => {
                reply(&msg, Reply::Nak(None), Some(&job.run_id)).await;
                Disposition::HandedBack
            }
            Ok(Exec::Elsewhere) => {
                self.hold(msg.clone(), job.run_id.clone());
                Disposition::Held
            }
            Err(e) => self.retry_or_give_up(&msg, &job, delivered, e).await,
        };
        Processed::Job {
            run_id: job.run_id,
            disposition,
        }
    }

    /// Holds a second delivery of a run another live worker is running, in the background
    /// (this worker goes on with other jobs): keeps its lease with in-progress acks and looks
    /// at the run every heartbeat; acks it once the run is terminal (or gone), hands it back
    /// at once when the run's worker has gone silent (the redelivery is then taken over), and
    /// hands it back when this worker shuts down. No delivery is spent while waiting, so a
    /// long run cannot exhaust the delivery limit this way.
    fn hold(&self, msg: Arc<Delivery>, run_id: String) {
        let store = self.store.clone();
        let interval = self.store.config().run_heartbeat_interval;
        let lease = self.store.config().effective_ack_progress_interval();
        let shutdown = self.shutdown.clone();
        let (me, running) = (self.worker_id.clone(), self.running.clone());
        self.tasks.spawn(async move {
            let mut last_progress = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = shutdown.cancelled() => {
                        reply(&msg, Reply::Nak(None), Some(&run_id)).await;
                        return;
                    }
                }
                if lease.is_some_and(|every| last_progress.elapsed() >= every) {
                    reply(&msg, Reply::Progress, Some(&run_id)).await;
                    last_progress = tokio::time::Instant::now();
                }
                let current = match store.runs().get(&run_id).await {
                    Ok(current) => current,
                    // NATS trouble: keep holding; the lease is kept meanwhile.
                    Err(_) => continue,
                };
                match current {
                    None => {
                        reply(&msg, Reply::Ack, Some(&run_id)).await;
                        return;
                    }
                    Some(run) if run.value.status.is_terminal() => {
                        reply(&msg, Reply::Ack, Some(&run_id)).await;
                        return;
                    }
                    Some(run) => {
                        if !super::claim::live_owner(&run.value, &me, &running, interval).await {
                            tracing::warn!(run_id = %run_id, "the worker running this run went silent; handing its job back");
                            reply(&msg, Reply::Nak(None), Some(&run_id)).await;
                            return;
                        }
                    }
                }
            }
        });
    }

    /// A transient failure: NAK with a delay, unless this was the last allowed delivery.
    async fn retry_or_give_up(
        &self,
        msg: &Delivery,
        job: &Job,
        delivered: i64,
        error: StoreError,
    ) -> Disposition {
        let max = self.store.config().consumer_max_deliver;
        self.registry_finished(&job.run_id, RunStatus::Failed).await;
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
            reply(msg, Reply::Term, Some(&job.run_id)).await;
            return Disposition::GaveUp;
        }
        tracing::error!(run_id = %job.run_id, error = %error, delivered, "transient nats error during job processing; will retry");
        reply(msg, Reply::Nak(Some(NAK_DELAY)), Some(&job.run_id)).await;
        Disposition::Retried
    }

    async fn execute(&self, job: &Job) -> Result<Exec, StoreError> {
        // Boxed: see `claim`.
        let claimed = match Box::pin(self.claim(job)).await? {
            Claim::Claimed(claimed) => claimed,
            Claim::Settled => return Ok(Exec::Done),
            Claim::RunningElsewhere => return Ok(Exec::Elsewhere),
        };
        let Claimed {
            job,
            spec,
            snapshot: claimed,
            start_time,
            initial,
        } = *claimed;
        let job = &job;
        self.registry_started(&job.run_id).await;
        tracing::info!(run_id = %job.run_id, flow_name = %job.flow_name, tag = %job.tag, worker_id = %self.worker_id, "run started");

        let (tx, rx) = watch::channel(initial);
        let cancel = CancellationToken::new();
        if claimed.value.cancel_requested() {
            cancel.cancel();
        }
        let stop_writer = CancellationToken::new();
        let writer = AbortOnDropHandle::new(tokio::spawn(progress_writer(ProgressWriter {
            runs: self.store.runs().clone(),
            job: job.clone(),
            worker_id: self.worker_id.clone(),
            start_time,
            rx,
            cancel: cancel.clone(),
            stop: stop_writer.clone(),
            heartbeat: self.store.config().run_heartbeat_interval,
            last: Some(claimed.clone()),
        })));
        // A bundle run's spawn tasks start child runs through a registry of its own.
        let spawner = BundleJob::of(job).and_then(|b| Spawner::new(&self.store, job, b, &spec));
        let bundle_registry = spawner.as_ref().map(|s| s.registry(&self.registry));
        let registry = bundle_registry.as_ref().unwrap_or(&self.registry);
        let run = RunInfo {
            run_id: job.run_id.clone(),
            flow_name: job.flow_name.clone(),
            params: Arc::new(job.params.clone()),
            services: self.services.clone(),
            tenant_id: job.tenant_id.clone(),
            tag: job.tag.clone(),
        };
        let mut handed_back = false;
        let cancel_watch = AbortOnDropHandle::new(tokio::spawn(watch_for_cancel(
            self.store.clone(),
            job.run_id.clone(),
            cancel.clone(),
        )));
        let outcome = {
            // In the `run` span of `process`.
            let engine = run_flow(&spec, registry, &run, &tx, &cancel);
            tokio::pin!(engine);
            // Shutdown: the flow may finish within the grace period, then it is handed back.
            let shutdown_over = async {
                self.shutdown.cancelled().await;
                tokio::time::sleep(self.shutdown_grace).await;
            };
            tokio::pin!(shutdown_over);
            // A cancelled flow gets PYOCO_CANCEL_GRACE_PERIOD_SEC to stop; then it is dropped.
            let grace = self.store.config().cancel_grace_period;
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
        if let Some(spawner) = &spawner
            && !handed_back
            && !matches!(outcome, Outcome::Completed(_))
        {
            // The parent will not wait for them any more.
            spawner.cancel_children().await;
        }
        stop_writer.cancel();
        // The last document written (the claim, or the writer's last write) is where the
        // terminal compare-and-set starts.
        let known = match writer.await {
            Ok(last) => last.unwrap_or(claimed),
            Err(e) => {
                tracing::warn!(run_id = %job.run_id, error = %e, "progress writer failed");
                claimed
            }
        };
        if handed_back {
            tracing::warn!(run_id = %job.run_id, "shutdown grace period over; handing the run back to the queue");
            self.registry_finished(&job.run_id, RunStatus::Running)
                .await;
            return Ok(Exec::HandBack);
        }

        let mut final_state = tx.borrow().clone();
        if outcome == Outcome::Cancelled {
            cancel_unfinished(&mut final_state, now());
        }
        if let (Outcome::Failed(e), true) =
            (&outcome, self.store.config().dlq_publish_execution_error)
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
        let end = finished_with(&outcome, start_time);
        let stored = self.finish(job, &final_state, end, Some(known)).await?;
        let final_status = stored.as_ref().map_or(end.status, |s| s.value.status);
        tracing::info!(run_id = %job.run_id, status = %final_status, "run finished");
        if let Some(stored) = &stored
            && !self.store.config().terminal_guard.is_zero()
        {
            self.guard_terminal(job, final_state, &stored.value);
        }
        self.registry_finished(&job.run_id, final_status).await;
        self.metrics
            .run_finished(final_status, &job.flow_name, now() - start_time);
        Ok(Exec::Done)
    }

    async fn dead_letter_invalid(&self, msg: &Delivery, delivered: i64, error: &InvalidJob) {
        tracing::error!(subject = %msg.subject(), %error, reason = "invalid_job", "invalid job payload");
        let subject = msg.subject().to_string();
        let tag = subject.rsplit('.').next().unwrap_or("default").to_string();
        let payload = msg.payload();
        let head = &payload[..payload.len().min(4096)];
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

    /// The registry record shows RUNNING while this worker runs anything. One job at a time,
    /// every start and finish is written, as always; with several at once only the first
    /// start and the last finish are, so concurrent runs do not contend for the record.
    pub(super) async fn registry_started(&self, run_id: &str) {
        let mut running = self.running.lock().await;
        running.insert(run_id.to_string());
        if self.concurrency <= 1 || running.len() == 1 {
            self.heartbeat.run_started(run_id).await;
        }
    }

    pub(super) async fn registry_finished(&self, run_id: &str, status: RunStatus) {
        let mut running = self.running.lock().await;
        running.remove(run_id);
        if self.concurrency <= 1 || running.is_empty() {
            self.heartbeat.run_finished(run_id, status).await;
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dlq_context_names_the_run_and_the_worker() {
        let job =
            Job::decode(br#"{"run_id":"r1","flow_name":"f","tag":"gpu","tenant_id":"t"}"#).unwrap();
        let ctx = dlq_context(&job, "w1");
        assert_eq!(ctx["run_id"], "r1");
        assert_eq!(ctx["tags"], serde_json::json!(["gpu"]));
        assert_eq!(ctx["tenant_id"], "t");
        assert_eq!(ctx["api_key_id"], Value::Null);
        assert_eq!(ctx["worker_id"], "w1");
    }
}
