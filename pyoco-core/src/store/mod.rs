//! The only module that talks to NATS: names ([`layout`]), resources ([`resources`]), run
//! snapshots with compare-and-set ([`runs`]), the work queue ([`queue`]), the worker registry
//! ([`workers`]), the dead-letter stream ([`dlq`]) and the wheel registry ([`wheels`]).

pub mod dlq;
pub mod keys;
pub mod layout;
pub mod queue;
pub mod requests;
pub mod resources;
pub mod runs;
pub mod services;
pub mod submit;
pub mod wheels;
pub mod workers;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;

use crate::config::Config;
pub use layout::Layout;
pub use resources::{Resources, ensure_resources};
pub use runs::{Change, RunStore, Versioned};
pub use submit::{NewRun, SubmitError, YamlPayload};

/// A NATS operation failed. `transient` errors (timeouts, a lost connection) may succeed when
/// retried; the others will not.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("nats unavailable: {op}: {message}")]
    Unavailable { op: &'static str, message: String },
    #[error("{op}: {message}")]
    Failed { op: &'static str, message: String },
    #[error("key already exists: {key}")]
    AlreadyExists { key: String },
    #[error("document {key} is not valid JSON: {message}")]
    Corrupt { key: String, message: String },
    #[error("gave up on {key} after {attempts} conflicting writes")]
    Contended { key: String, attempts: u32 },
}

impl StoreError {
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable { .. } | StoreError::Contended { .. }
        )
    }

    pub(crate) fn nats<E: std::fmt::Display>(op: &'static str, err: E) -> StoreError {
        let message = err.to_string();
        let lower = message.to_ascii_lowercase();
        let transient = [
            "timed out",
            "timeout",
            "disconnected",
            "broken pipe",
            "connection",
            "no responders",
            "i/o",
            "io error",
            "request",
        ]
        .iter()
        .any(|s| lower.contains(s));
        if transient {
            StoreError::Unavailable { op, message }
        } else {
            StoreError::Failed { op, message }
        }
    }
}

/// A connected, resource-checked handle on everything pyoco keeps in NATS.
#[derive(Debug, Clone)]
pub struct Store {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub config: Arc<Config>,
    pub layout: Layout,
    pub resources: Resources,
    pub runs: RunStore,
}

impl Store {
    /// Connects (retrying while the server is not up yet when `wait` is set), ensures every
    /// stream, bucket and object store exists, and binds them.
    pub async fn connect(config: Arc<Config>, connection_name: &str) -> Result<Store, StoreError> {
        let options = async_nats::ConnectOptions::new()
            .name(connection_name)
            .connection_timeout(Duration::from_secs(5))
            // Reconnect quickly after an outage: the default backoff waits up to 4 s.
            .reconnect_delay_callback(|attempt| {
                Duration::from_millis((attempt as u64).saturating_mul(50).min(1000))
            });
        let client = options
            .connect(config.nats_url.as_str())
            .await
            .map_err(|e| StoreError::Unavailable {
                op: "connect",
                message: format!("{}: {e}", config.nats_url),
            })?;
        Store::from_client(client, config).await
    }

    /// Like [`Store::connect`] with an existing client.
    pub async fn from_client(
        client: async_nats::Client,
        config: Arc<Config>,
    ) -> Result<Store, StoreError> {
        let js = jetstream::new(client.clone());
        let layout = Layout::new(&config);
        let resources = ensure_resources(&js, &config).await?;
        let runs = RunStore::new(resources.runs.clone(), config.max_run_snapshot_bytes);
        Ok(Store {
            client,
            js,
            config,
            layout,
            resources,
            runs,
        })
    }

    /// True while the client holds a live connection to the server.
    pub fn is_connected(&self) -> bool {
        matches!(
            self.client.connection_state(),
            async_nats::connection::State::Connected
        )
    }
}
