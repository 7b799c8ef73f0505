//! The crate's top-level error; each module has its own enum and converts into this one.

use crate::config::ConfigError;
use crate::flow::yaml::YamlError;
use crate::store::{StoreError, SubmitError};

/// Any pyoco error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error("invalid workflow yaml: {0}")]
    Workflow(#[from] YamlError),
    #[error("workflow too large: {size} bytes (limit {limit}, PYOCO_WORKFLOW_YAML_MAX_BYTES)")]
    WorkflowTooLarge { size: usize, limit: usize },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("timed out: {0}")]
    Timeout(String),
}
