//! A gateway and a worker run in-process, each stopped gracefully by its handle.

use crate::config::Config;

/// A gateway served in-process on an ephemeral port.
#[cfg(feature = "gateway")]
#[derive(Debug)]
pub struct GatewayHandle {
    pub addr: std::net::SocketAddr,
    pub state: crate::gateway::GatewayState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

#[cfg(feature = "gateway")]
impl GatewayHandle {
    /// Binds 127.0.0.1:0 and serves; returns once NATS is connected (or after 10 s).
    pub async fn start(config: Config) -> GatewayHandle {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local_addr: {e}"));
        let state = crate::gateway::GatewayState::connect(config);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        // The library's own serving, so stopping also drains the state's background tasks.
        let task = tokio::spawn(crate::gateway::serve_state(
            listener,
            state.clone(),
            async move {
                rx.await.ok();
            },
        ));
        state
            .wait_connected(std::time::Duration::from_secs(10))
            .await;
        GatewayHandle {
            addr,
            state,
            shutdown: Some(tx),
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful stop: ends the server, then waits for the state's background tasks.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            tx.send(()).ok();
        }
        match (&mut self.task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "test gateway ended with an error"),
            Err(e) => tracing::warn!(error = %e, "test gateway task failed"),
        }
    }
}

/// A worker running in-process until stopped.
#[derive(Debug)]
pub struct WorkerHandle {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), crate::Error>>,
}

impl WorkerHandle {
    /// Connects a worker and runs it in the background.
    pub async fn start(
        config: Config,
        registry: crate::Registry,
        worker_id: &str,
        tags: &[&str],
    ) -> WorkerHandle {
        WorkerHandle::start_tuned(config, registry, worker_id, tags, |_| {}).await
    }

    /// [`WorkerHandle::start`] with `tune` applied to the worker before it runs (its
    /// concurrency, poll timeout, shutdown grace...).
    pub async fn start_tuned(
        config: Config,
        registry: crate::Registry,
        worker_id: &str,
        tags: &[&str],
        tune: impl FnOnce(&mut crate::Worker),
    ) -> WorkerHandle {
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        let mut worker = crate::Worker::connect(config, registry, worker_id, &tags)
            .await
            .unwrap_or_else(|e| panic!("worker connect: {e}"));
        tune(&mut worker);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(worker.run(async move {
            rx.await.ok();
        }));
        WorkerHandle {
            stop: Some(tx),
            task,
        }
    }

    /// Graceful stop (the worker ends STOPPED_GRACEFUL).
    pub async fn stop(mut self) {
        self.signal_stop();
        (&mut self.task).await.ok();
    }

    /// Graceful stop, returning how the worker's run ended (panics if its task panicked).
    pub async fn finish(mut self) -> Result<(), crate::Error> {
        self.signal_stop();
        (&mut self.task)
            .await
            .unwrap_or_else(|e| panic!("worker task failed: {e}"))
    }

    fn signal_stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            tx.send(()).ok();
        }
    }
}
