//! The worker: pulls jobs from one durable consumer per tag (`pyoco_workers_<tag>`), runs
//! each flow with the engine, keeps the run snapshot current with compare-and-set writes, and
//! acks only after the terminal snapshot is stored.
//!
//! Failure handling (DESIGN §5): a bad job is TERMed and dead-lettered (`invalid_job`); an
//! unknown flow ends FAILED (+ `flow_not_found`); a task failure ends FAILED (+
//! `execution_error` when configured); a NATS error NAKs with a delay, and once the consumer's
//! delivery limit is reached the run is failed and dead-lettered (`max_deliveries`) instead of
//! looping forever.

mod advisory;
mod cancel_watch;
mod claim;
mod concurrent;
pub mod metrics;
mod process;
mod progress;
mod registry;
mod spawn;
mod terminal;
mod wheel_sync;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};

use crate::config::Config;
use crate::error::Error;
use crate::flow::tasks::Registry;
use crate::model::is_valid_tag;
use crate::store::Store;
use crate::store::queue::{Delivery, WorkConsumer};
use registry::RegistryHeartbeat;

/// What one `run_once` did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Processed {
    /// No message arrived within the timeout.
    Idle,
    /// A job was handled; the run id and what became of the message.
    Job {
        run_id: String,
        disposition: Disposition,
    },
    /// A message that was not a job: dead-lettered and terminated.
    Invalid,
}

/// What happened to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Disposition {
    /// Acked: the run reached a terminal state (or was already terminal).
    Acked,
    /// NAKed for redelivery after a transient failure.
    Retried,
    /// Handed back because the worker is shutting down.
    HandedBack,
    /// Terminated after the last allowed delivery.
    GaveUp,
    /// Another delivery of a run a live worker is running: held (its lease kept) until that
    /// run ends (then acked) or its worker goes silent (then handed back to be taken over).
    Held,
}

/// A worker process's connection to the queue.
#[derive(Debug)]
pub struct Worker {
    store: Store,
    registry: Arc<Registry>,
    worker_id: String,
    tags: Vec<String>,
    consumers: Vec<WorkConsumer>,
    /// Round-robin start position so a busy tag cannot starve the others.
    next_tag: AtomicUsize,
    /// Jobs processed at once (`set_concurrency`; default from `PYOCO_WORKER_CONCURRENCY`).
    concurrency: usize,
    /// Runs started and not yet finished, for the registry record (see `registry_started`).
    running: Arc<tokio::sync::Mutex<HashSet<String>>>,
    heartbeat: RegistryHeartbeat,
    /// Set when shutdown starts; a running flow gets `shutdown_grace` to finish.
    shutdown: CancellationToken,
    shutdown_grace: Duration,
    /// Poll window of `run` (`--poll-timeout`).
    poll_timeout: Duration,
    /// Fails runs abandoned at their delivery limit (see `advisory`); stopped on close.
    advisories: AbortOnDropHandle<()>,
    /// Short background checks spawned per run (`terminal::guard_terminal`); close waits
    /// for them, so none outlives the worker.
    tasks: TaskTracker,
    /// Task cache and circuit breakers shared with every other worker (KV), and our counters.
    services: Arc<dyn crate::flow::services::TaskServices>,
    /// This worker's Prometheus counters (`--metrics-addr`).
    metrics: metrics::TaskMetrics,
    /// Installs the registry's wheels before polls (`PYOCO_WHEEL_SYNC_ENABLED`).
    wheel_sync: Option<wheel_sync::WheelSync>,
}

impl Worker {
    /// Connects, ensures resources, creates or updates one consumer per tag, and registers the
    /// worker (IDLE). Empty tags fall back to `PYOCO_DEFAULT_TAG`; a tag with a dot or another
    /// invalid character is an error.
    pub async fn connect(
        config: Config,
        registry: Registry,
        worker_id: &str,
        tags: &[String],
    ) -> Result<Worker, Error> {
        let mut clean: Vec<String> = Vec::new();
        for tag in tags.iter().map(|t| t.trim()).filter(|t| !t.is_empty()) {
            if !is_valid_tag(tag) {
                return Err(Error::InvalidArgument(format!(
                    "invalid tag {tag:?}: tags may only contain letters, digits, '_' and '-'"
                )));
            }
            if !clean.iter().any(|t| t == tag) {
                clean.push(tag.to_string());
            }
        }
        if clean.is_empty() {
            clean.push(config.default_tag.clone());
        }
        if worker_id.trim().is_empty() || !crate::store::runs::is_valid_key(worker_id) {
            return Err(Error::InvalidArgument(format!(
                "invalid worker id {worker_id:?}: use letters, digits, '-', '_' or '.'"
            )));
        }
        let mut registry = registry;
        registry.use_sql(config.sql_urls.clone());
        if registry.task("pyoco:python").is_some() {
            // Probed now, so a worker that cannot sandbox says so at start-up, not per task.
            let sandbox =
                crate::flow::builtins::sandbox::probe_at_start_up(config.script_sandbox).await;
            registry.use_script_sandbox(sandbox);
        }
        // Kept for the wheel sync, which restarts the runners after installing.
        let mut python_pool = None;
        if registry.python_is_default() {
            // SIGTERM, then SIGKILL this long after, for a cancelled or timed-out Python task.
            let kill_grace = config.cancel_grace_period.min(Duration::from_secs(5));
            let pool = crate::flow::python::PythonPool::new(config.python.clone(), kill_grace)
                .with_memory_limit(Some(config.python_memory_mb))
                .with_runners(config.effective_python_runners());
            registry.use_python(pool.clone());
            python_pool = Some(pool);
        }
        let concurrency = config.effective_worker_concurrency();
        let config = Arc::new(config);
        let store =
            Store::connect(config.clone(), &format!("pyoco-nats-worker:{worker_id}")).await?;
        let mut consumers = Vec::new();
        for tag in &clean {
            consumers.push(store.ensure_consumer(tag).await?);
        }
        let heartbeat = RegistryHeartbeat::start(&store, worker_id, &clean).await?;
        let metrics = metrics::TaskMetrics::default();
        let services = Arc::new(metrics::WorkerServices {
            shared: store.task_services(),
            metrics: metrics.clone(),
        });
        let advisories = advisory::spawn(&store, worker_id, &clean).await?;
        let wheel_sync = if config.wheel_sync_enabled {
            // The first round runs before the first poll, so jobs find their code installed.
            let mut sync = wheel_sync::WheelSync::new(&store, &config, &clean, python_pool);
            heartbeat.set_wheel_sync(sync.state()).await;
            let state = sync.sync_now().await;
            heartbeat.set_wheel_sync(state).await;
            Some(sync)
        } else {
            // Do not keep showing a sync state this worker no longer maintains.
            let stored = match store.workers().get(worker_id).await {
                Ok(stored) => stored,
                Err(e) => {
                    tracing::warn!(worker_id, error = %e, "cannot read the registry record");
                    None
                }
            };
            if let Some(mut state) = stored
                .map(|r| r.wheel_sync)
                .filter(|w| w["enabled"] == true)
            {
                state["enabled"] = serde_json::json!(false);
                state["last_result"] = serde_json::json!("disabled");
                heartbeat.set_wheel_sync(state).await;
            }
            None
        };
        tracing::info!(worker_id, tags = ?clean, "worker connected");
        Ok(Worker {
            store,
            registry: Arc::new(registry),
            worker_id: worker_id.to_string(),
            tags: clean,
            consumers,
            next_tag: AtomicUsize::new(0),
            concurrency,
            running: Arc::default(),
            heartbeat,
            shutdown: CancellationToken::new(),
            shutdown_grace: Duration::from_secs(10),
            poll_timeout: Duration::from_secs(1),
            advisories,
            tasks: TaskTracker::new(),
            services,
            metrics,
            wheel_sync,
        })
    }

    /// How long a running flow may still run once shutdown starts before it is handed back to
    /// the queue (default 10 s).
    pub fn set_shutdown_grace(&mut self, grace: Duration) {
        self.shutdown_grace = grace;
    }

    /// How long `run` waits for a job in one poll (default 1 s); shutdown is noticed between
    /// polls.
    pub fn set_poll_timeout(&mut self, timeout: Duration) {
        self.poll_timeout = timeout.max(Duration::from_millis(10));
    }

    /// How many jobs `run` processes at once (default: `PYOCO_WORKER_CONCURRENCY`, 0 = eight
    /// per core; `1` is the original's one at a time). Each is handled exactly as when
    /// one runs at a time; they overlap, so NATS round trips of one run no longer idle the
    /// worker. Keep it at or below `PYOCO_CONSUMER_MAX_ACK_PENDING`.
    pub fn set_concurrency(&mut self, jobs: usize) {
        self.concurrency = jobs.max(1);
    }

    /// This worker's task and run counters (Prometheus text via `render()`).
    pub fn metrics(&self) -> metrics::TaskMetrics {
        self.metrics.clone()
    }

    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Waits up to `timeout` for one job and processes it completely. With wheel sync on,
    /// first syncs the wheels when `PYOCO_WHEEL_SYNC_INTERVAL_SEC` has passed (so never
    /// while a run is in progress).
    pub async fn run_once(&mut self, timeout: Duration) -> Result<Processed, Error> {
        if let Some(sync) = self.wheel_sync.as_mut()
            && let Some(state) = sync.maybe_sync().await
        {
            self.heartbeat.set_wheel_sync(state).await;
        }
        let Some(msg) = self.next_message(timeout).await? else {
            return Ok(Processed::Idle);
        };
        Ok(self.process(msg).await)
    }

    /// Processes jobs until `shutdown` resolves (e.g. SIGINT/SIGTERM), then lets the current
    /// run finish (or hands it back after the grace period) and marks the worker
    /// `STOPPED_GRACEFUL`.
    pub async fn run<F>(mut self, shutdown: F) -> Result<(), Error>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let token = self.shutdown.clone();
        // Owned: dropped (and so stopped) when `run` returns.
        let _signal = AbortOnDropHandle::new(tokio::spawn(async move {
            shutdown.await;
            token.cancel();
        }));
        while !self.shutdown.is_cancelled() {
            // Boxed, so the future of `run` (often built on a caller's stack) stays small.
            let polled = if self.concurrency > 1 {
                Box::pin(self.run_concurrently(self.poll_timeout))
                    .await
                    .map(|_| ())
            } else {
                Box::pin(self.run_once(self.poll_timeout)).await.map(|_| ())
            };
            match polled {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(error = %e, worker_id = %self.worker_id, "poll failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = self.shutdown.cancelled() => {}
                    }
                }
            }
        }
        self.close().await;
        Ok(())
    }

    /// Stops the advisory listener, waits for the per-run background checks, marks the
    /// worker STOPPED_GRACEFUL and stops its heartbeat.
    pub async fn close(self) {
        drop(self.advisories);
        self.tasks.close();
        self.tasks.wait().await;
        self.heartbeat.stop().await;
        self.store.flush().await;
        tracing::info!(worker_id = %self.worker_id, "worker stopped");
    }

    /// Fetches one message, polling the tags fairly: one tag is long-polled; several are
    /// polled round-robin, starting one further each time.
    async fn next_message(&mut self, timeout: Duration) -> Result<Option<Delivery>, Error> {
        if timeout.is_zero() || self.consumers.is_empty() {
            return Ok(None);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let n = self.consumers.len();
        loop {
            let start = self.next_tag.fetch_add(1, Ordering::Relaxed) % n;
            for k in 0..n {
                let consumer = &self.consumers[(start + k) % n];
                let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                let wait = if n == 1 {
                    remaining
                } else {
                    remaining.min(Duration::from_millis(100))
                };
                if wait < Duration::from_millis(1) {
                    return Ok(None);
                }
                let mut pull = consumer.pull(1, wait).await?;
                if let Some(item) = pull.next().await {
                    match item {
                        Ok(msg) => return Ok(Some(msg)),
                        Err(e) => {
                            tracing::debug!(tag = %consumer.tag(), error = %e, "pull ended without a message");
                        }
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }
}
