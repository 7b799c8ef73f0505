//! Dead-letter publishing: best effort, never fails the caller (a DLQ outage must not turn a
//! finished run into a redelivery).

use bytes::Bytes;
use serde_json::{Map, Value};

use super::Store;
use crate::model::{DlqReason, dlq_message};

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
}
