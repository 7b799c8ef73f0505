//! Submitting and reading runs straight over NATS, without a gateway.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Map, Value};

use crate::config::Config;
use crate::error::Error;
use crate::flow::yaml::{parse_flow_yaml_within, sha256_hex};
use crate::model::{RunSnapshot, json};
use crate::store::{NewRun, Store, YamlPayload};

/// Submits runs and reads snapshots over NATS.
#[derive(Debug, Clone)]
pub struct NatsClient {
    store: Store,
}

impl NatsClient {
    /// Connects to `config.nats_url` and ensures the resources exist.
    pub async fn connect(config: Config) -> Result<NatsClient, Error> {
        let store = Store::connect(Arc::new(config), "pyoco-nats-client").await?;
        Ok(NatsClient { store })
    }

    /// Wraps an existing store handle.
    pub fn from_store(store: Store) -> NatsClient {
        NatsClient { store }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Submits a run of a named flow; the worker resolves the name. Returns the run id.
    pub async fn submit_run(
        &self,
        flow_name: &str,
        params: Map<String, Value>,
        tag: Option<&str>,
        tags: Vec<String>,
    ) -> Result<String, Error> {
        let run = NewRun {
            flow_name: flow_name.to_string(),
            params,
            tag: tag.map(str::to_string),
            tags,
            ..Default::default()
        };
        Ok(self.store.submit(run).await?)
    }

    /// Submits a `flow.yaml` (validated here first); params are the flow's `defaults`.
    pub async fn submit_yaml(
        &self,
        yaml: &[u8],
        flow_name: &str,
        tag: Option<&str>,
    ) -> Result<String, Error> {
        let limit = self.store.config().workflow_yaml_max_bytes;
        if yaml.len() > limit {
            return Err(Error::WorkflowTooLarge {
                size: yaml.len(),
                limit,
            });
        }
        let spec = parse_flow_yaml_within(yaml, self.store.config().yaml_limits())?;
        let text = String::from_utf8_lossy(yaml).into_owned();
        let run = NewRun {
            flow_name: flow_name.to_string(),
            params: spec.defaults.clone(),
            tag: tag.map(str::to_string),
            tags: Vec::new(),
            yaml: Some(YamlPayload {
                text,
                sha256: sha256_hex(yaml),
                bytes: yaml.len() as u64,
            }),
            flow_graph: Some(spec.graph.drawing()),
            ..Default::default()
        };
        Ok(self.store.submit(run).await?)
    }

    /// The run's snapshot, or `None` when there is no such run.
    pub async fn get_run(&self, run_id: &str) -> Result<Option<RunSnapshot>, Error> {
        Ok(self.store.runs().get(run_id).await?.map(|v| v.value))
    }

    /// Waits (with a KV watch, no polling) until the run is terminal and returns it.
    pub async fn wait_for_terminal(
        &self,
        run_id: &str,
        timeout: Duration,
    ) -> Result<RunSnapshot, Error> {
        let wait = async {
            let mut watch = self.store.runs().watch_with_history(run_id).await?;
            while let Some(event) = watch.next().await {
                let Some(value) = event?.value else { continue };
                if let Ok(snap) = json::from_slice::<RunSnapshot>(&value)
                    && snap.status.is_terminal()
                {
                    return Ok(snap);
                }
            }
            Err(Error::Timeout(format!("watch of run {run_id} ended")))
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| Error::Timeout(format!("run {run_id} not terminal after {timeout:?}")))?
    }
}
