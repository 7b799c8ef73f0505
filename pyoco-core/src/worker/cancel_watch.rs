//! Noticing a cancel of a running flow at once, instead of at the next heartbeat write.

use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::model::StatusPeek;
use crate::store::Store;

/// A flow still running after this long starts listening for cancels on its run key. Shorter
/// runs never subscribe (their terminal compare-and-set write sees a cancel anyway), which
/// keeps subscription churn off the server when runs are short and many.
const CANCEL_WATCH_DELAY: Duration = Duration::from_millis(50);

/// Whether a stored (or just written) snapshot asks for a cancel; deletes (empty payloads)
/// and unreadable documents do not.
fn asks_to_cancel(payload: &[u8]) -> bool {
    StatusPeek::decode(payload).is_some_and(|p| p.cancel_requested())
}

/// Once the flow has run for [`CANCEL_WATCH_DELAY`], cancels `cancel` as soon as the run asks
/// for it: it follows every write of the run's snapshot ([`Store::run_writes`]), then reads
/// the run once — the read is sent after the subscription on the same connection, so a
/// cancel written before is in the read and one written after reaches the subscription.
pub(super) async fn watch_for_cancel(store: Store, run_id: String, cancel: CancellationToken) {
    tokio::time::sleep(CANCEL_WATCH_DELAY).await;
    let mut writes = match store.run_writes(&run_id).await {
        Ok(writes) => writes,
        Err(e) => {
            // The heartbeat's compare-and-set writes still notice a cancel, only later.
            tracing::warn!(run_id = %run_id, error = %e, "cannot watch the run for cancels");
            return;
        }
    };
    let mut requested = match store.runs().get_raw(&run_id).await {
        Ok(Some(doc)) => asks_to_cancel(&doc.value),
        Ok(None) => false,
        Err(e) => {
            tracing::debug!(run_id = %run_id, error = %e, "cannot read the run; following its writes");
            false
        }
    };
    while !requested {
        match writes.next().await {
            Some(payload) => requested = asks_to_cancel(&payload),
            None => return,
        }
    }
    if !cancel.is_cancelled() {
        tracing::info!(run_id = %run_id, "cancel requested; stopping the flow");
        cancel.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_is_a_timestamp_or_a_cancel_status() {
        assert!(asks_to_cancel(
            br#"{"status":"RUNNING","cancel_requested_at":1.5}"#
        ));
        assert!(asks_to_cancel(br#"{"status":"CANCELLING"}"#));
        assert!(asks_to_cancel(br#"{"status":"CANCELLED"}"#));
        assert!(!asks_to_cancel(
            br#"{"status":"RUNNING","cancel_requested_at":null}"#
        ));
        assert!(!asks_to_cancel(b""), "a delete carries no document");
    }
}
