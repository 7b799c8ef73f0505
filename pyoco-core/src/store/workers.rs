//! The worker registry bucket: one record per worker id, read through the one lenient decoder
//! ([`WorkerView`]) and read-modify-written with compare-and-set so the gateway's `hidden`
//! flag is never lost.

use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::StoreError;
use crate::model::{WorkerRecord, WorkerView, now};

/// How many conflicting writes an update retries before giving up (each retry re-reads).
const MAX_CAS_ATTEMPTS: u32 = 32;

/// The registry bucket and the rule that turns silence into `DISCONNECTED`.
#[derive(Debug, Clone)]
pub struct WorkerStore {
    kv: kv::Store,
    /// `PYOCO_WORKER_DISCONNECT_TIMEOUT_SEC`, for the effective state of listed records.
    disconnect_timeout: Duration,
}

impl WorkerStore {
    pub(crate) fn new(kv: kv::Store, disconnect_timeout: Duration) -> WorkerStore {
        WorkerStore {
            kv,
            disconnect_timeout,
        }
    }

    /// Applies `change` to the stored record (or `None` when there is none) and writes the
    /// result with compare-and-set, retrying on conflicts.
    pub async fn update<F>(
        &self,
        worker_id: &str,
        mut change: F,
    ) -> Result<WorkerRecord, StoreError>
    where
        F: FnMut(Option<WorkerRecord>) -> WorkerRecord,
    {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let entry = self
                .kv
                .entry(worker_id)
                .await
                .map_err(|e| StoreError::nats("get worker", e))?;
            let (previous, revision) = match entry {
                Some(e) if e.operation == kv::Operation::Put => {
                    (decode(worker_id, &e.value), Some(e.revision))
                }
                Some(e) => (None, Some(e.revision)),
                None => (None, None),
            };
            let mut record = change(previous);
            record.worker_id = worker_id.to_string();
            let bytes = Bytes::from(
                serde_json::to_vec(&record).map_err(|e| StoreError::failed("encode worker", e))?,
            );
            let written = match revision {
                Some(rev) => self
                    .kv
                    .update(worker_id, bytes.clone(), rev)
                    .await
                    .map_err(|e| e.kind() == kv::UpdateErrorKind::WrongLastRevision),
                None => self
                    .kv
                    .create(worker_id, bytes.clone())
                    .await
                    .map_err(|e| e.kind() == kv::CreateErrorKind::AlreadyExists),
            };
            match written {
                Ok(_) => return Ok(record),
                Err(true) => continue,
                Err(false) => {
                    // Expired TTL keys and other oddities: fall back to a plain put.
                    self.kv
                        .put(worker_id, bytes)
                        .await
                        .map_err(|e| StoreError::nats("put worker", e))?;
                    return Ok(record);
                }
            }
        }
        Err(StoreError::Contended {
            key: worker_id.to_string(),
            attempts: MAX_CAS_ATTEMPTS,
        })
    }

    /// Reads one worker record (`None` when absent, deleted or not a JSON object).
    pub async fn get(&self, worker_id: &str) -> Result<Option<WorkerRecord>, StoreError> {
        if !super::runs::is_valid_key(worker_id) {
            return Ok(None);
        }
        match self.kv.get(worker_id).await {
            Ok(Some(bytes)) => Ok(decode(worker_id, &bytes)),
            Ok(None) => Ok(None),
            Err(e) => Err(StoreError::nats("get worker", e)),
        }
    }

    /// Every registry record, normalised, with effective states as of now. An empty bucket is
    /// an empty list (the original answered 503). Records that are not JSON objects are
    /// skipped.
    pub async fn list(&self) -> Result<Vec<WorkerView>, StoreError> {
        let kv = &self.kv;
        let keys: Vec<String> = kv
            .keys()
            .await
            .map_err(|e| StoreError::nats("list workers", e))?
            .try_collect()
            .await
            .map_err(|e| StoreError::nats("list workers", e))?;
        let docs: Vec<(String, Option<Bytes>)> = futures::stream::iter(keys)
            .map(|key| async move {
                let value = kv.get(&key).await?;
                Ok::<_, kv::EntryError>((key, value))
            })
            .buffer_unordered(16)
            .try_collect()
            .await
            .map_err(|e| StoreError::nats("get worker", e))?;
        let now = now();
        Ok(docs
            .into_iter()
            .filter_map(|(key, value)| {
                // Expired or deleted since the key listing.
                let value = value?;
                let view = WorkerView::decode(&key, &value, now, self.disconnect_timeout);
                if view.is_none() {
                    tracing::warn!(worker_id = %key, "unreadable worker record skipped");
                }
                view
            })
            .collect())
    }

    /// One cheap round trip to the bucket's stream (health).
    pub async fn reachable(&self) -> bool {
        self.kv.stream.get_info().await.is_ok()
    }
}

/// The stored record as every reader sees it (stored state, not the effective one).
fn decode(worker_id: &str, bytes: &[u8]) -> Option<WorkerRecord> {
    WorkerView::decode(worker_id, bytes, 0.0, Duration::ZERO).map(WorkerView::into_record)
}
