//! The end-to-end test stack: a nats-server, an in-process gateway and (usually) one
//! in-process worker, driven through the public [`HttpClient`] — what most end-to-end tests of
//! every crate start with.

use std::time::Duration;

use serde_json::Value;

use super::{GatewayHandle, NatsServer, WorkerHandle};
use crate::client::http::HttpClient;
use crate::config::Config;
use crate::flow::tasks::Registry;

/// A config for fast tests against `server`: run heartbeats every 100 ms and worker
/// heartbeats every 200 ms, so tests that wait on them wait briefly.
pub fn fast_config(server: &NatsServer) -> Config {
    let mut c = server.config();
    c.run_heartbeat_interval = Duration::from_millis(100);
    c.worker_heartbeat_interval = Duration::from_millis(200);
    c
}

/// nats-server + gateway + an optional worker, with a client for the gateway. Fields are
/// public so a test can reach the piece it is about (kill the server, stop the worker).
#[derive(Debug)]
pub struct Stack {
    pub gateway: GatewayHandle,
    /// `None` after a test took it to stop it, or when built with [`StackBuilder::no_worker`].
    pub worker: Option<WorkerHandle>,
    pub client: HttpClient,
    /// The config gateway and worker were started with.
    pub config: Config,
    /// Last, so it is dropped last (fields drop in order): the server outlives its clients.
    pub server: NatsServer,
}

impl Stack {
    /// [`fast_config`], a worker `w1` with the built-in tasks serving tag `default`.
    pub async fn start() -> Stack {
        Stack::builder().start().await
    }

    /// As [`Stack::start`], with `tweak` applied to the config first.
    pub async fn start_with(tweak: impl FnOnce(&mut Config) + Send + 'static) -> Stack {
        Stack::builder().config(tweak).start().await
    }

    /// A stack with another config, registry, worker id or tags, or no worker at all.
    pub fn builder() -> StackBuilder {
        StackBuilder {
            tweak: None,
            registry: None,
            worker_id: "w1".into(),
            tags: vec!["default".into()],
            worker: true,
        }
    }

    /// Waits until the run is terminal and returns it (with task records).
    pub async fn wait_terminal(&self, run_id: &str) -> Value {
        super::wait_terminal(&self.client, run_id).await
    }

    /// Submits `yaml` as flow `flow_name` on the default tag and returns the terminal snapshot.
    pub async fn run_to_end(&self, yaml: &str, flow_name: &str) -> Value {
        super::run_to_end(&self.client, yaml, flow_name).await
    }

    /// Stops the worker (gracefully) and then the gateway; the server stops on drop.
    pub async fn stop(mut self) {
        if let Some(worker) = self.worker.take() {
            worker.stop().await;
        }
        self.gateway.stop().await;
    }
}

/// A change to the config, applied once before the stack starts.
type ConfigTweak = Box<dyn FnOnce(&mut Config) + Send>;

/// How to build a [`Stack`]; see [`Stack::builder`].
pub struct StackBuilder {
    tweak: Option<ConfigTweak>,
    registry: Option<Registry>,
    worker_id: String,
    tags: Vec<String>,
    worker: bool,
}

impl std::fmt::Debug for StackBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackBuilder")
            .field("tweak", &self.tweak.is_some())
            .field("registry", &self.registry)
            .field("worker_id", &self.worker_id)
            .field("tags", &self.tags)
            .field("worker", &self.worker)
            .finish()
    }
}

impl StackBuilder {
    /// Changes the config (after [`fast_config`]) before anything starts.
    pub fn config(mut self, tweak: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        self.tweak = Some(Box::new(tweak));
        self
    }

    /// The worker's task registry (default: [`Registry::with_builtins`]).
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// The worker's id (default `w1`).
    pub fn worker_id(mut self, id: &str) -> Self {
        self.worker_id = id.into();
        self
    }

    /// The tags the worker serves (default `default`).
    pub fn tags(mut self, tags: &[&str]) -> Self {
        self.tags = tags.iter().map(|t| t.to_string()).collect();
        self
    }

    /// Starts no worker: for tests of the gateway alone, or that start their own workers.
    pub fn no_worker(mut self) -> Self {
        self.worker = false;
        self
    }

    /// Starts the server, the gateway (connected) and the worker.
    pub async fn start(self) -> Stack {
        let server = NatsServer::start();
        let mut config = fast_config(&server);
        if let Some(tweak) = self.tweak {
            tweak(&mut config);
        }
        let gateway = GatewayHandle::start(config.clone()).await;
        let worker = if self.worker {
            let tags: Vec<&str> = self.tags.iter().map(String::as_str).collect();
            let registry = self.registry.unwrap_or_else(Registry::with_builtins);
            Some(WorkerHandle::start(config.clone(), registry, &self.worker_id, &tags).await)
        } else {
            None
        };
        let client = HttpClient::new(&gateway.url()).unwrap_or_else(|e| panic!("http client: {e}"));
        Stack {
            gateway,
            worker,
            client,
            config,
            server,
        }
    }
}
