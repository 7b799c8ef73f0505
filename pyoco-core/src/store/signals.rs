//! Core-NATS signals the worker listens to: the server's delivery-limit advisories (with the
//! reads and deletes that settle them) and the writes of one run's snapshot.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::Deserialize;

use super::{Store, StoreError};

/// The server gave up redelivering a job: its `MAX_DELIVERIES` advisory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct MaxDeliveries {
    /// The job's sequence in the work stream.
    pub stream_seq: u64,
    /// How many times it was delivered.
    #[serde(default)]
    pub deliveries: u64,
}

impl MaxDeliveries {
    /// Reads an advisory payload; `None` when it is not one.
    pub fn decode(payload: &[u8]) -> Option<MaxDeliveries> {
        serde_json::from_slice(payload).ok()
    }
}

impl Store {
    /// The delivery-limit advisories of every consumer in `tags`, in one queue group so one
    /// live worker handles each.
    pub async fn subscribe_max_deliveries(
        &self,
        tags: &[String],
    ) -> Result<impl Stream<Item = MaxDeliveries> + Send + Unpin + use<>, StoreError> {
        let mut subs = Vec::new();
        for tag in tags {
            let sub = self
                .client
                .queue_subscribe(
                    self.layout.max_deliveries_advisory(tag),
                    self.layout.max_deliveries_group(),
                )
                .await
                .map_err(|e| StoreError::nats("subscribe to advisories", e))?;
            subs.push(sub);
        }
        Ok(futures::stream::select_all(subs)
            .filter_map(|msg| std::future::ready(MaxDeliveries::decode(&msg.payload))))
    }

    /// The payload of the job at `seq` in the work stream; `None` once it is gone (acked late,
    /// or handled by another worker).
    pub async fn queued_job(&self, seq: u64) -> Result<Option<Bytes>, StoreError> {
        let stream = self
            .js
            .get_stream(&self.layout.work_stream)
            .await
            .map_err(|e| StoreError::nats("get work stream", e))?;
        Ok(stream.get_raw_message(seq).await.ok().map(|m| m.payload))
    }

    /// Removes the job at `seq` from the work stream.
    pub async fn remove_queued_job(&self, seq: u64) -> Result<(), StoreError> {
        let stream = self
            .js
            .get_stream(&self.layout.work_stream)
            .await
            .map_err(|e| StoreError::nats("get work stream", e))?;
        stream
            .delete_message(seq)
            .await
            .map(|_| ())
            .map_err(|e| StoreError::nats("delete queued job", e))
    }

    /// Every later write of `run_id`'s snapshot, as it is made: a plain subscription to the
    /// key's subject, so unlike a KV watch it leaves no JetStream consumer behind (those piled
    /// up under load until the server refused new ones). Deletes carry no document and arrive
    /// as empty payloads. A read sent after this returns on the same connection, so a write
    /// made before it is in the read and one made after reaches the stream — none is missed.
    pub async fn run_writes(
        &self,
        run_id: &str,
    ) -> Result<impl Stream<Item = Bytes> + Send + Unpin + use<>, StoreError> {
        let sub = self
            .client
            .subscribe(self.runs.key_subject(run_id))
            .await
            .map_err(|e| StoreError::nats("subscribe to run writes", e))?;
        Ok(sub.map(|msg| msg.payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_servers_advisory() {
        let raw = br#"{"type":"io.nats.jetstream.advisory.v1.max_deliver","stream":"PYOCO_WORK","consumer":"pyoco_workers_default","stream_seq":42,"deliveries":20}"#;
        assert_eq!(
            MaxDeliveries::decode(raw),
            Some(MaxDeliveries {
                stream_seq: 42,
                deliveries: 20
            })
        );
        assert_eq!(MaxDeliveries::decode(b"{}"), None);
        assert_eq!(MaxDeliveries::decode(b"nope"), None);
    }
}
