//! Checkpoints of the gateway's run index (pyoco only): one object, `runs-index`, in the
//! object store `<runs bucket>_index`. A gateway that finds one loads it and replays only the
//! runs bucket's writes after the revision it was taken at, instead of every stored run
//! (`gateway::index`). Any gateway may write it; the revision it covers travels in the
//! object's metadata, so a gateway holding an older state does not replace a newer one.
//!
//! Only pyoco reads and writes this bucket, so it goes through async-nats' `ObjectStore` (the
//! wheel registry's header quirk does not apply).

use std::time::Duration;

use async_nats::jetstream::{object_store, stream};
use tokio::io::AsyncReadExt;

use super::{Store, StoreError};

/// The one object of the bucket.
const OBJECT: &str = "runs-index";
/// Metadata key: the runs-bucket revision the checkpoint covers.
const REVISION: &str = "revision";

/// The checkpoint object store.
#[derive(Clone)]
pub struct IndexCheckpoints {
    store: object_store::ObjectStore,
}

impl std::fmt::Debug for IndexCheckpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexCheckpoints").finish_non_exhaustive()
    }
}

impl Store {
    /// Binds the checkpoint store, creating it when missing (replicas `PYOCO_JS_REPLICAS`).
    pub async fn index_checkpoints(&self) -> Result<IndexCheckpoints, StoreError> {
        let bucket = self.layout.index_checkpoints_bucket.clone();
        let js = &self.js;
        let store = match Box::pin(js.get_object_store(&bucket)).await {
            Ok(store) => store,
            Err(_) => {
                let created = Box::pin(js.create_object_store(object_store::Config {
                    bucket: bucket.clone(),
                    description: Some("pyoco run index checkpoints".into()),
                    storage: stream::StorageType::File,
                    num_replicas: self.config.js_replicas,
                    ..Default::default()
                }))
                .await;
                match created {
                    Ok(store) => store,
                    // Lost a race with another gateway: bind the winner's.
                    Err(e) => Box::pin(js.get_object_store(&bucket))
                        .await
                        .map_err(|_| StoreError::nats("create checkpoint store", e))?,
                }
            }
        };
        Ok(IndexCheckpoints { store })
    }
}

impl IndexCheckpoints {
    /// The stored checkpoint's info; `None` when there is none.
    async fn info(&self) -> Result<Option<object_store::ObjectInfo>, StoreError> {
        match self.store.info(OBJECT).await {
            Ok(info) if info.deleted => Ok(None),
            Ok(info) => Ok(Some(info)),
            Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::nats("read checkpoint info", e)),
        }
    }

    /// The revision the stored checkpoint covers; `None` when there is none.
    pub async fn revision(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .info()
            .await?
            .and_then(|info| info.metadata.get(REVISION)?.parse().ok()))
    }

    /// The stored checkpoint's bytes; `None` when there is none. One larger than
    /// `max_bytes` is refused (it is not read into memory).
    pub async fn get(&self, max_bytes: usize) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(info) = self.info().await? else {
            return Ok(None);
        };
        if info.size > max_bytes {
            return Err(StoreError::Failed {
                op: "read checkpoint",
                message: format!("{} bytes, more than {max_bytes}", info.size),
                source: None,
            });
        }
        let mut object = self
            .store
            .get(OBJECT)
            .await
            .map_err(|e| StoreError::nats("read checkpoint", e))?;
        let mut bytes = Vec::with_capacity(info.size);
        // The reader checks the object's SHA-256 digest at the end.
        object
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| StoreError::nats("read checkpoint", e))?;
        Ok(Some(bytes))
    }

    /// Stores `bytes` as the checkpoint at `revision`, replacing the previous one (whose
    /// chunks the object store then removes).
    pub async fn put(&self, bytes: &[u8], revision: u64) -> Result<(), StoreError> {
        let meta = object_store::ObjectMetadata {
            name: OBJECT.to_string(),
            // 512 KiB chunks (under the 1 MiB default max payload with headers): a
            // million-run checkpoint is ~60 chunks, not the default size's ~240.
            chunk_size: Some(512 << 10),
            metadata: [(REVISION.to_string(), revision.to_string())].into(),
            ..Default::default()
        };
        let mut reader = bytes;
        tokio::time::timeout(Duration::from_secs(120), self.store.put(meta, &mut reader))
            .await
            .map_err(|_| StoreError::Unavailable {
                op: "write checkpoint",
                message: "timed out after 120 s".into(),
                source: None,
            })?
            .map_err(|e| StoreError::nats("write checkpoint", e))?;
        Ok(())
    }
}
