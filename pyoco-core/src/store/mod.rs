//! The only module that talks to NATS: names ([`layout`]), resources ([`resources`]), run
//! snapshots with compare-and-set ([`runs`]), the work queue — publishing, pulling and
//! answering jobs, queue depths ([`queue`]) — the worker registry ([`workers`]), the
//! dead-letter stream ([`dlq`]), advisories and run-key signals ([`signals`]), task cache and
//! circuit breakers ([`services`]), the flow registry ([`flows`]), the wheel registry ([`wheels`]), API key records ([`keys`]), schedules and their slot claims ([`schedules`])
//! and the request memory of nonces and idempotency keys ([`requests`]). Its errors
//! ([`StoreError`]) say whether a retry can help, decided by async-nats' error kinds.

pub mod bundles;
pub mod checkpoints;
pub mod dlq;
mod error;
pub mod flows;
pub mod keys;
pub mod layout;
pub mod orphans;
pub mod queue;
pub mod requests;
pub mod resources;
pub mod retention;
pub mod runs;
pub mod schedules;
pub mod services;
pub mod signals;
pub mod submit;
pub mod trace_context;
pub mod wheels;
pub mod workers;

use std::sync::Arc;
use std::time::Duration;

/// The NATS client crate the store is built on. [`Store::from_client`] and [`Store::client`]
/// name `async_nats::Client`, so an embedder needs this very version; tests also use it to
/// write documents as another writer would.
pub use async_nats;
use async_nats::jetstream;

/// The NATS client's tracing target: its per-message debug lines drown pyoco's, so the
/// binaries' default log filter holds it at `warn`.
pub const NATS_CLIENT_LOG_TARGET: &str = "async_nats";

use crate::config::Config;
pub use error::{StoreError, is_transient_nats};
pub use layout::Layout;
pub use resources::{Resources, ensure_resources};
pub use runs::{Change, RunStore, Versioned};
pub use schedules::{Claim, ScheduleStore, SlotClaim};
pub use submit::{BundleRun, NewRun, SubmitError, YamlPayload};
pub use workers::WorkerStore;

/// A connected, resource-checked handle on everything pyoco keeps in NATS. Other modules use
/// its methods and the typed stores it hands out ([`RunStore`], [`WorkerStore`]); the raw
/// handles ([`Store::client`], [`Store::jetstream`], [`Store::resources`]) are for tests and
/// tools that inspect the server itself.
#[derive(Debug, Clone)]
pub struct Store {
    client: async_nats::Client,
    js: jetstream::Context,
    config: Arc<Config>,
    layout: Layout,
    resources: Resources,
    runs: RunStore,
    workers: WorkerStore,
    /// Workflow YAML hashes this process has stashed (see [`Store::stash_workflow`]).
    stashed: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
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
        // A cluster's URLs, tried in the order given (so each process can prefer a node).
        let urls: Vec<&str> = config.nats_url.split(',').map(str::trim).collect();
        let client = options
            .retain_servers_order()
            .connect(urls.as_slice())
            .await
            .map_err(|e| StoreError::Unavailable {
                op: "connect",
                message: format!("{}: {e}", config.nats_url),
                source: Some(Arc::new(e)),
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
        let workers = WorkerStore::new(resources.workers.clone(), config.worker_disconnect_timeout);
        Ok(Store {
            client,
            js,
            config,
            layout,
            resources,
            runs,
            workers,
            stashed: Arc::default(),
        })
    }

    /// True while the client holds a live connection to the server.
    pub fn is_connected(&self) -> bool {
        matches!(
            self.client.connection_state(),
            async_nats::connection::State::Connected
        )
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// Every NATS name in use.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Run snapshots (compare-and-set).
    pub fn runs(&self) -> &RunStore {
        &self.runs
    }

    /// The worker registry.
    pub fn workers(&self) -> &WorkerStore {
        &self.workers
    }

    /// The raw bucket handles (tests and tools).
    pub fn resources(&self) -> &Resources {
        &self.resources
    }

    /// The raw connection (tests and tools).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// The raw JetStream context (tests and tools).
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// Sends everything buffered on the connection (before a process exits).
    pub async fn flush(&self) {
        if let Err(e) = self.client.flush().await {
            tracing::debug!(error = %e, "flush on close failed");
        }
    }

    fn stashed_known(&self, sha256: &str) -> bool {
        self.stashed.lock().is_ok_and(|s| s.contains(sha256))
    }

    fn remember_stashed(&self, sha256: &str) {
        if let Ok(mut s) = self.stashed.lock() {
            // Bounded: forgetting only costs one more write of a YAML already stored.
            if s.len() >= 4096 {
                s.clear();
            }
            s.insert(sha256.to_string());
        }
    }

    /// Both buckets every route needs answered a cheap round trip (health).
    pub async fn buckets_reachable(&self) -> bool {
        let (runs, workers) = tokio::join!(self.runs.reachable(), self.workers.reachable());
        runs && workers
    }
}

/// The keys under `prefix` of a KV bucket, without the prefix, as their records change (put,
/// delete, purge) from now on. The stream ends when the watch breaks; callers then forget what
/// they cached and watch again.
pub(crate) async fn key_changes(
    kv: &jetstream::kv::Store,
    prefix: &'static str,
    op: &'static str,
) -> Result<impl futures::Stream<Item = Result<String, StoreError>> + use<>, StoreError> {
    use futures::StreamExt;
    let watch = kv
        .watch(format!("{prefix}>"))
        .await
        .map_err(|e| StoreError::nats(op, e))?;
    Ok(watch.map(move |entry| {
        entry
            .map(|e| e.key.strip_prefix(prefix).unwrap_or(&e.key).to_owned())
            .map_err(|e| StoreError::nats(op, e))
    }))
}
