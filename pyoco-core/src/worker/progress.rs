//! Keeping a running job alive: the progress writer (engine progress and run heartbeats as
//! compare-and-set snapshot writes, which is also how it notices a cancel) and the
//! `in_progress` acks that keep the message's lease.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::flow::engine::EngineState;
use crate::model::{Job, RunSnapshot, RunStatus, WorkerWrite, now};
use crate::store::queue::{Delivery, Reply};
use crate::store::{RunStore, Versioned};

/// Progress writes are coalesced to at most one per this interval (the original's 0.25 s);
/// the terminal write is never delayed.
const FLUSH_INTERVAL: Duration = Duration::from_millis(250);

pub(super) struct ProgressWriter {
    pub runs: RunStore,
    pub job: Job,
    pub worker_id: String,
    pub start_time: f64,
    pub rx: watch::Receiver<EngineState>,
    /// Cancelled when a write finds that a cancel was asked for.
    pub cancel: CancellationToken,
    pub stop: CancellationToken,
    pub heartbeat: Duration,
    /// The last document written (the claim at first): the next write starts from it.
    pub last: Option<Versioned<RunSnapshot>>,
}

/// When the writer writes: on every heartbeat tick, and a flush interval after the engine's
/// first unsaved change (so a burst of changes costs one write).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Coalescer {
    dirty: bool,
    next_flush: Instant,
}

impl Coalescer {
    /// The claim was just written: the first progress write waits a flush interval too, so a
    /// run shorter than that writes only its claim and its terminal snapshot.
    fn new(now: Instant) -> Coalescer {
        Coalescer {
            dirty: false,
            next_flush: now + FLUSH_INTERVAL,
        }
    }

    fn changed(&mut self) {
        self.dirty = true;
    }

    /// A write is made at `now`.
    fn wrote(&mut self, now: Instant) {
        self.dirty = false;
        self.next_flush = now + FLUSH_INTERVAL;
    }
}

/// Writes engine progress (coalesced) and a heartbeat every `PYOCO_RUN_HEARTBEAT_INTERVAL_SEC`;
/// every write is compare-and-set, so a cancel written by the gateway is seen on the next
/// write and passed to the engine. Returns the last document written.
pub(super) async fn progress_writer(mut w: ProgressWriter) -> Option<Versioned<RunSnapshot>> {
    let mut heartbeat = tokio::time::interval(w.heartbeat);
    heartbeat.tick().await;
    let mut flush = Coalescer::new(Instant::now());
    loop {
        let write_now = tokio::select! {
            _ = w.stop.cancelled() => break,
            changed = w.rx.changed() => {
                if changed.is_err() { break; }
                flush.changed();
                false
            }
            _ = heartbeat.tick() => true,
            _ = tokio::time::sleep_until(flush.next_flush), if flush.dirty => true,
        };
        if !write_now {
            continue;
        }
        flush.wrote(Instant::now());
        let state = w.rx.borrow().clone();
        let write = WorkerWrite {
            job: &w.job,
            worker_id: &w.worker_id,
            tasks: &state.tasks,
            task_records: &state.task_records,
            status: RunStatus::Running,
            start_time: Some(w.start_time),
            end_time: None,
            error: None,
        };
        let written = w
            .runs
            .update_from(&w.job.run_id, w.last.take(), |doc| write.apply(doc, now()))
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

/// Sends `+WPI` at once and then every `interval` until stopped, so a long run keeps its
/// lease. Aborted if dropped.
pub(super) fn spawn_ack_progress(
    msg: Arc<Delivery>,
    run_id: String,
    interval: Option<Duration>,
    stop: CancellationToken,
) -> Option<AbortOnDropHandle<()>> {
    let interval = interval?;
    Some(AbortOnDropHandle::new(tokio::spawn(async move {
        loop {
            if let Err(e) = msg.reply(Reply::Progress).await {
                // The lease may lapse and the job be redelivered; the run's compare-and-set
                // writes keep that from running it twice at once.
                tracing::warn!(run_id = %run_id, error = %e, "in-progress ack failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.cancelled() => break,
            }
        }
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_wait_a_flush_interval_after_the_claim_and_after_each_write() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(t0);
        assert!(!c.dirty);
        assert_eq!(c.next_flush, t0 + FLUSH_INTERVAL);
        c.changed();
        c.changed();
        assert!(c.dirty);
        let t1 = t0 + Duration::from_secs(1);
        c.wrote(t1);
        assert!(!c.dirty);
        assert_eq!(c.next_flush, t1 + FLUSH_INTERVAL);
    }
}
