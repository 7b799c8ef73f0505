//! Bundle runs in NATS: the relation records (`pyoco_run_relations`, key = run_id) and queueing
//! the job of a run that waited for approval. The bundles themselves are kept by
//! [`Store::stash_workflow`] under their sha256 in `pyoco_workflow_bundles`, the raw bytes as
//! the original stores them.

use bytes::Bytes;

use super::{Store, StoreError};
use crate::model::RunSnapshot;
use crate::model::bundle::RunRelation;

impl Store {
    /// Writes the relation record of a bundle run.
    pub async fn put_relation(&self, relation: &RunRelation) -> Result<(), StoreError> {
        let bytes =
            serde_json::to_vec(relation).map_err(|e| StoreError::failed("encode relation", e))?;
        self.resources
            .run_relations
            .put(&relation.run_id, Bytes::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| StoreError::nats("put run relation", e))
    }

    /// The relation record of `run_id`, if it is a bundle run (unreadable records read as
    /// none).
    pub async fn relation(&self, run_id: &str) -> Result<Option<RunRelation>, StoreError> {
        if !super::runs::is_valid_key(run_id) {
            return Ok(None);
        }
        let entry = self
            .resources
            .run_relations
            .get(run_id)
            .await
            .map_err(|e| StoreError::nats("get run relation", e))?;
        Ok(entry.and_then(|b| crate::model::json::from_slice(&b).ok()))
    }

    /// Publishes the job of a run whose snapshot is written (an approved bundle root), rebuilt
    /// from the snapshot and its stored bundle like the orphan sweep does. `Ok(Err(reason))`
    /// when it cannot be rebuilt (the bundle is gone).
    pub async fn publish_run_job(
        &self,
        snapshot: &RunSnapshot,
    ) -> Result<Result<(), String>, StoreError> {
        let job = match self.rebuild_job(snapshot).await? {
            Ok(job) => job,
            Err(reason) => return Ok(Err(reason)),
        };
        self.publish_job(&job).await?;
        Ok(Ok(()))
    }
}
