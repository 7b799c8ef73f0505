//! The flow registry's documents (pyoco only, bucket `pyoco_flows`): one [`FlowRecord`] per
//! registered name (its versions, which one is active, who registered them and when) and one
//! [`FlowVersion`] per version (the `flow.yaml` text itself). Versions are immutable: a
//! rollback only moves `active_version`, and a run records the version and sha256 it was
//! submitted with, so nothing done to the registry changes a run already submitted.

use serde::{Deserialize, Serialize};

/// One version as its flow's record lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub version: u64,
    /// Hex SHA-256 of the YAML bytes.
    pub sha256: String,
    pub bytes: u64,
    /// Unix seconds.
    pub registered_at: f64,
    /// The API key id that registered it (`null` without API keys).
    pub registered_by: Option<String>,
}

/// A registered flow name: key `m.<scope hash>` of the bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowRecord {
    pub name: String,
    /// The tenant that owns it (`null` without API keys).
    pub tenant_id: Option<String>,
    /// The version `POST /runs` by name uses.
    pub active_version: u64,
    pub latest_version: u64,
    /// Oldest first.
    pub versions: Vec<VersionInfo>,
    pub created_at: f64,
    pub updated_at: f64,
}

impl FlowRecord {
    /// The listing of version `version`.
    pub fn version(&self, version: u64) -> Option<&VersionInfo> {
        self.versions.iter().find(|v| v.version == version)
    }
}

/// One version with its YAML: key `v.<scope hash>.<version>` of the bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowVersion {
    pub name: String,
    pub tenant_id: Option<String>,
    #[serde(flatten)]
    pub info: VersionInfo,
    /// The `flow.yaml` text.
    pub yaml: String,
}
