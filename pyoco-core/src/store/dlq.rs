//! Dead-letter publishing: best effort, never fails the caller (a DLQ outage must not turn a
//! finished run into a redelivery).

use bytes::Bytes;
use serde_json::{Map, Value};

use super::{Store, StoreError};
use crate::model::{DlqReason, dlq_message};

/// Sequences looked at per message asked for by [`Store::recent_dlq`] (gaps are rare: the
/// DLQ only loses its oldest messages, to age and size limits).
const LOOK_PER_MESSAGE: u64 = 2;

impl Store {
    /// Publishes a DLQ message on `pyoco.dlq.<tag>`; failures are logged, not returned.
    pub async fn publish_dlq(
        &self,
        tag: &str,
        reason: DlqReason,
        error: Option<&str>,
        context: Map<String, Value>,
    ) {
        let body = dlq_message(reason, error, context);
        let subject = self.layout.dlq_subject(tag);
        let payload = match serde_json::to_vec(&body) {
            Ok(p) => Bytes::from(p),
            Err(e) => {
                tracing::error!(%e, "could not encode DLQ message");
                return;
            }
        };
        if let Err(e) =
            super::queue::publish(&self.js, &self.layout.dlq_stream, &subject, payload).await
        {
            tracing::error!(error = %e, reason = reason.as_str(), %subject, "DLQ publish failed");
        }
    }

    /// The newest `limit` DLQ messages, newest first, as stored (unreadable ones skipped):
    /// at most `2 × limit` direct reads by sequence, whatever the size of the stream.
    pub async fn recent_dlq(&self, limit: usize) -> Result<Vec<Value>, StoreError> {
        use async_nats::jetstream::stream::RawMessageErrorKind;
        let stream = self
            .js
            .get_stream(&self.layout.dlq_stream)
            .await
            .map_err(|e| StoreError::nats("dlq stream info", e))?;
        let state = &stream.cached_info().state;
        if state.messages == 0 || limit == 0 {
            return Ok(Vec::new());
        }
        let (first, last) = (state.first_sequence, state.last_sequence);
        let lowest = last
            .saturating_sub((limit as u64).saturating_mul(LOOK_PER_MESSAGE))
            .max(first)
            .max(1);
        let mut out = Vec::new();
        for seq in (lowest..=last).rev() {
            if out.len() == limit {
                break;
            }
            match stream.get_raw_message(seq).await {
                Ok(msg) => {
                    if let Ok(v) = crate::model::json::from_slice::<Value>(&msg.payload) {
                        out.push(v);
                    }
                }
                // Deleted or aged out between the info and the read.
                Err(e)
                    if matches!(
                        e.kind(),
                        RawMessageErrorKind::NoMessageFound | RawMessageErrorKind::JetStream(_)
                    ) => {}
                Err(e) => return Err(StoreError::nats("dlq read", e)),
            }
        }
        Ok(out)
    }
}
