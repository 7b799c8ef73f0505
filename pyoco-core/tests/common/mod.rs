//! Shared helpers for the integration tests (each test starts its own nats-server).
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use pyoco::testkit::{GatewayHandle, NatsServer, WorkerHandle, wait_for};
use pyoco::{Config, HttpClient, Registry};
use serde_json::Value;

/// A config for fast tests: short heartbeats and ack wait.
pub fn fast_config(server: &NatsServer) -> Config {
    let mut c = server.config();
    c.run_heartbeat_interval = Duration::from_millis(100);
    c.worker_heartbeat_interval = Duration::from_millis(200);
    c
}

/// nats-server + gateway + one worker with the built-in tasks.
#[derive(Debug)]
pub struct Stack {
    pub server: NatsServer,
    pub gateway: GatewayHandle,
    pub worker: Option<WorkerHandle>,
    pub client: HttpClient,
    pub config: Config,
}

impl Stack {
    pub async fn start() -> Stack {
        Stack::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Stack {
        let server = NatsServer::start();
        let mut config = fast_config(&server);
        tweak(&mut config);
        let gateway = GatewayHandle::start(config.clone()).await;
        let worker = WorkerHandle::start(
            config.clone(),
            Registry::with_builtins(),
            "w1",
            &["default"],
        )
        .await;
        let client = HttpClient::new(&gateway.url()).expect("client");
        Stack {
            server,
            gateway,
            worker: Some(worker),
            client,
            config,
        }
    }

    /// Waits until the run is terminal and returns it (with records).
    pub async fn wait_terminal(&self, run_id: &str) -> Value {
        wait_for(
            &format!("run {run_id} to finish"),
            Duration::from_secs(20),
            || async {
                let run = self.client.get_run(run_id, true).await.ok()?;
                let status = run["status"].as_str()?.to_string();
                matches!(status.as_str(), "COMPLETED" | "FAILED" | "CANCELLED").then_some(run)
            },
        )
        .await
    }
}
