//! The worker registry bucket: one record per worker id, read-modify-written with
//! compare-and-set so the gateway's `hidden` flag is never lost.

use async_nats::jetstream::kv;
use bytes::Bytes;

use super::StoreError;
use crate::model::{WorkerRecord, json};

/// Applies `change` to the stored record (or `None` when there is none) and writes the result
/// with compare-and-set, retrying on conflicts.
pub async fn update_worker<F>(
    kv: &kv::Store,
    worker_id: &str,
    mut change: F,
) -> Result<WorkerRecord, StoreError>
where
    F: FnMut(Option<WorkerRecord>) -> WorkerRecord,
{
    for _ in 0..32 {
        let entry = kv
            .entry(worker_id)
            .await
            .map_err(|e| StoreError::nats("get worker", e))?;
        let (previous, revision) = match entry {
            Some(e) if e.operation == kv::Operation::Put => (
                json::from_slice::<WorkerRecord>(&e.value).ok(),
                Some(e.revision),
            ),
            Some(e) => (None, Some(e.revision)),
            None => (None, None),
        };
        let mut record = change(previous);
        record.worker_id = worker_id.to_string();
        let bytes =
            serde_json::to_vec(&record).map_err(|e| StoreError::failed("encode worker", e))?;
        let written = match revision {
            Some(rev) => kv
                .update(worker_id, Bytes::from(bytes), rev)
                .await
                .map_err(|e| e.kind() == kv::UpdateErrorKind::WrongLastRevision),
            None => kv
                .create(worker_id, Bytes::from(bytes))
                .await
                .map_err(|e| e.kind() == kv::CreateErrorKind::AlreadyExists),
        };
        match written {
            Ok(_) => return Ok(record),
            Err(true) => continue,
            Err(false) => {
                // Expired TTL keys and other oddities: fall back to a plain put.
                let bytes = serde_json::to_vec(&record)
                    .map_err(|e| StoreError::failed("encode worker", e))?;
                kv.put(worker_id, Bytes::from(bytes))
                    .await
                    .map_err(|e| StoreError::nats("put worker", e))?;
                return Ok(record);
            }
        }
    }
    Err(StoreError::Contended {
        key: worker_id.to_string(),
        attempts: 32,
    })
}

/// Reads one worker record.
pub async fn get_worker(
    kv: &kv::Store,
    worker_id: &str,
) -> Result<Option<WorkerRecord>, StoreError> {
    if !super::runs::is_valid_key(worker_id) {
        return Ok(None);
    }
    match kv.get(worker_id).await {
        Ok(Some(bytes)) => Ok(json::from_slice(&bytes).ok()),
        Ok(None) => Ok(None),
        Err(e) => Err(StoreError::nats("get worker", e)),
    }
}
