//! Runs whose last allowed delivery was lost (the worker was killed, or handed the job back
//! at shutdown) would stay RUNNING forever: the server stops redelivering and keeps the
//! message. The server announces this with a `MAX_DELIVERIES` advisory; one live worker (a
//! queue group) fails the run, dead-letters it (`max_deliveries`) and removes the message.

use futures::StreamExt;
use tokio_util::task::AbortOnDropHandle;

use super::process::dlq_context;
use super::terminal::fail_run;
use crate::model::{DlqReason, Job};
use crate::store::signals::MaxDeliveries;
use crate::store::{Store, StoreError};

/// Subscribes to the advisories of every consumer this worker serves; the listener stops
/// when the returned handle is dropped.
pub(super) async fn spawn(
    store: &Store,
    worker_id: &str,
    tags: &[String],
) -> Result<AbortOnDropHandle<()>, StoreError> {
    let mut advisories = store.subscribe_max_deliveries(tags).await?;
    let store = store.clone();
    let worker_id = worker_id.to_string();
    Ok(AbortOnDropHandle::new(tokio::spawn(async move {
        while let Some(advisory) = advisories.next().await {
            give_up(&store, &worker_id, advisory).await;
        }
    })))
}

async fn give_up(store: &Store, worker_id: &str, advisory: MaxDeliveries) {
    let MaxDeliveries {
        stream_seq: seq,
        deliveries,
    } = advisory;
    let payload = match store.queued_job(seq).await {
        Ok(Some(payload)) => payload,
        // Already removed (acked late, or handled by another worker).
        Ok(None) => return,
        Err(e) => {
            tracing::error!(error = %e, seq, "cannot read the work stream for a max-deliveries advisory");
            return;
        }
    };
    match Job::decode(&payload) {
        Ok(job) => {
            let reason = format!(
                "gave up after {deliveries} deliveries: the worker running it stopped before finishing"
            );
            tracing::error!(run_id = %job.run_id, %reason, "run abandoned at its delivery limit");
            let still_open = matches!(store.runs().get(&job.run_id).await, Ok(Some(s)) if !s.value.status.is_terminal());
            if still_open {
                store
                    .publish_dlq(
                        &job.tag,
                        DlqReason::MaxDeliveries,
                        Some(&reason),
                        dlq_context(&job, worker_id),
                    )
                    .await;
                if let Err(e) = fail_run(store, worker_id, &job, &reason).await {
                    tracing::error!(run_id = %job.run_id, error = %e, "could not fail an abandoned run");
                    return;
                }
            }
        }
        Err(e) => {
            tracing::warn!(seq, error = %e, "undeliverable message is not a job; removing it")
        }
    }
    if let Err(e) = store.remove_queued_job(seq).await {
        tracing::warn!(seq, error = %e, "could not remove an undeliverable job");
    }
}
