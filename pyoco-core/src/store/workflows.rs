//! Workflow texts kept by content hash in `pyoco_workflow_bundles` (key = hex SHA-256 of the
//! bytes, the original's layout for bundles): read here for replays.

use async_nats::jetstream::kv;

use super::StoreError;

impl super::Store {
    /// The UTF-8 text stored under `sha256` in the bundles bucket, if any. Callers check that
    /// it hashes to what they expect; a key that cannot be a hex digest is not looked up.
    pub async fn stored_workflow(&self, sha256: &str) -> Result<Option<String>, StoreError> {
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let entry = self
            .resources
            .bundles
            .entry(sha256)
            .await
            .map_err(|e| StoreError::nats("read stored workflow", e))?;
        Ok(entry
            .filter(|e| e.operation == kv::Operation::Put)
            .and_then(|e| String::from_utf8(e.value.to_vec()).ok()))
    }
}
