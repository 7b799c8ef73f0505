//! Runs whose last allowed delivery was lost (the worker was killed, or handed the job back
//! at shutdown) would stay RUNNING forever: the server stops redelivering and keeps the
//! message. The server announces this with a `MAX_DELIVERIES` advisory; one live worker (a
//! queue group) fails the run, dead-letters it (`max_deliveries`) and removes the message.

use futures::StreamExt;
use serde_json::Value;
use tokio::task::JoinHandle;

use super::process::{dlq_context, fail_run};
use crate::model::{DlqReason, Job};
use crate::store::Store;

/// Subscribes to the advisories of every consumer this worker serves.
pub(super) async fn spawn(
    store: &Store,
    worker_id: &str,
    tags: &[String],
) -> Result<JoinHandle<()>, crate::store::StoreError> {
    let mut subs = Vec::new();
    for tag in tags {
        let subject = format!(
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{}",
            store.layout.work_stream,
            store.layout.consumer_name(tag)
        );
        let group = format!("{}_max_deliveries", store.layout.consumer_prefix);
        let sub = store
            .client
            .queue_subscribe(subject, group)
            .await
            .map_err(|e| crate::store::StoreError::nats("subscribe to advisories", e))?;
        subs.push(sub);
    }
    let store = store.clone();
    let worker_id = worker_id.to_string();
    Ok(tokio::spawn(async move {
        let mut all = futures::stream::select_all(subs);
        while let Some(msg) = all.next().await {
            let Ok(advisory) = serde_json::from_slice::<Value>(&msg.payload) else {
                continue;
            };
            let Some(seq) = advisory.get("stream_seq").and_then(Value::as_u64) else {
                continue;
            };
            let deliveries = advisory
                .get("deliveries")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            give_up(&store, &worker_id, seq, deliveries).await;
        }
    }))
}

async fn give_up(store: &Store, worker_id: &str, seq: u64, deliveries: u64) {
    let stream = match store.js.get_stream(&store.layout.work_stream).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, seq, "cannot read the work stream for a max-deliveries advisory");
            return;
        }
    };
    let Ok(message) = stream.get_raw_message(seq).await else {
        // Already removed (acked late, or handled by another worker).
        return;
    };
    match Job::decode(&message.payload) {
        Ok(job) => {
            let reason = format!(
                "gave up after {deliveries} deliveries: the worker running it stopped before finishing"
            );
            tracing::error!(run_id = %job.run_id, %reason, "run abandoned at its delivery limit");
            let still_open = matches!(store.runs.get(&job.run_id).await, Ok(Some(s)) if !s.value.status.is_terminal());
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
    if let Err(e) = stream.delete_message(seq).await {
        tracing::warn!(seq, error = %e, "could not remove an undeliverable job");
    }
}
