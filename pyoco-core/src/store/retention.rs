//! Retention of finished runs (`PYOCO_RUNS_RETENTION_SEC`): a run that is COMPLETED, FAILED
//! or CANCELLED and was last written before the cutoff is deleted from the runs bucket, with
//! its relation record. The delete is conditional on the revision just read, so a run written
//! meanwhile is kept, and several gateways sweeping at once are harmless (a second delete of
//! a deleted run finds nothing). A KV delete leaves a marker every watcher sees, so every
//! gateway's index and open SSE watches drop the run too.

use super::{Store, StoreError};
use crate::model::RunStatus;

impl Store {
    /// Deletes `run_id` if it is finished and was last written before `cutoff` (epoch
    /// seconds). `true` when this call deleted it.
    pub async fn expire_run(&self, run_id: &str, cutoff: f64) -> Result<bool, StoreError> {
        let Some(current) = self.runs.get(run_id).await? else {
            return Ok(false);
        };
        let run = &current.value;
        let finished = matches!(
            run.status,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled
        );
        if !finished || run.updated_at.is_none_or(|at| at >= cutoff) {
            return Ok(false);
        }
        if self
            .runs
            .delete_if_unchanged(run_id, current.revision)
            .await
            .is_err()
        {
            // Written since (or deleted by another gateway): not ours to remove now.
            return Ok(false);
        }
        if let Err(e) = self.resources.run_relations.delete(run_id).await {
            tracing::debug!(run_id, error = %e, "relation record not deleted");
        }
        Ok(true)
    }
}
