//! The worker's record in the registry bucket: IDLE at start, RUNNING while a run executes,
//! IDLE with `last_run_*` after it, STOPPED_GRACEFUL on close; touched every
//! `PYOCO_WORKER_HEARTBEAT_INTERVAL_SEC`.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::model::{RunStatus, WorkerRecord, WorkerState, now};
use crate::store::{Store, StoreError, WorkerStore};

/// What this process knows about itself; every registry write is built from it. The
/// default is the start-up state: IDLE, no run yet.
#[derive(Debug, Clone, Default)]
struct Local {
    state: WorkerState,
    current_run_id: Option<String>,
    last_run_id: Option<String>,
    last_run_status: Option<String>,
    last_run_started_at: Option<f64>,
    last_run_finished_at: Option<f64>,
    stopped_at: Option<f64>,
    stop_reason: Option<String>,
    /// The wheel sync state to write; `None` keeps the stored one.
    wheel_sync: Option<serde_json::Value>,
}

/// Keeps the record fresh in the background and applies state changes.
#[derive(Debug)]
pub(crate) struct RegistryHeartbeat {
    registry: WorkerStore,
    worker_id: String,
    instance_id: String,
    tags: Vec<String>,
    local: Arc<Mutex<Local>>,
    stop: CancellationToken,
    /// The heartbeat loop; stopped by `stop`, or aborted if the worker is dropped unclosed.
    task: Option<AbortOnDropHandle<()>>,
}

impl RegistryHeartbeat {
    pub(crate) async fn start(
        store: &Store,
        worker_id: &str,
        tags: &[String],
    ) -> Result<RegistryHeartbeat, StoreError> {
        let mut hb = RegistryHeartbeat {
            registry: store.workers().clone(),
            worker_id: worker_id.to_string(),
            instance_id: uuid::Uuid::new_v4().simple().to_string(),
            tags: tags.to_vec(),
            local: Arc::new(Mutex::new(Local::default())),
            stop: CancellationToken::new(),
            task: None,
        };
        // Start-up record: last_run_* reset, hidden and wheel_sync carried over.
        let (instance_id, tags_c) = (hb.instance_id.clone(), hb.tags.clone());
        hb.registry
            .update(worker_id, |prev| {
                WorkerRecord::starting(worker_id, &instance_id, &tags_c, prev.as_ref())
            })
            .await?;
        let interval = store.config().worker_heartbeat_interval;
        let this = hb.writer();
        let stop = hb.stop.clone();
        hb.task = Some(AbortOnDropHandle::new(tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if let Err(e) = this.write().await {
                            tracing::error!(worker_id = %this.worker_id, error = %e, "worker registry heartbeat failed");
                        }
                    }
                    _ = stop.cancelled() => break,
                }
            }
        })));
        Ok(hb)
    }

    fn writer(&self) -> Writer {
        Writer {
            registry: self.registry.clone(),
            worker_id: self.worker_id.clone(),
            instance_id: self.instance_id.clone(),
            tags: self.tags.clone(),
            local: self.local.clone(),
        }
    }

    fn set(&self, f: impl FnOnce(&mut Local)) {
        if let Ok(mut l) = self.local.lock() {
            f(&mut l);
        }
    }

    /// RUNNING with `current_run_id`.
    pub(crate) async fn run_started(&self, run_id: &str) {
        self.set(|l| {
            l.state = WorkerState::Running;
            l.current_run_id = Some(run_id.to_string());
            l.last_run_started_at = Some(now());
        });
        self.write_logged().await;
    }

    /// IDLE with `last_run_*`.
    pub(crate) async fn run_finished(&self, run_id: &str, status: RunStatus) {
        self.set(|l| {
            l.state = WorkerState::Idle;
            l.current_run_id = None;
            l.last_run_id = Some(run_id.to_string());
            l.last_run_status = Some(status.as_str().to_string());
            l.last_run_finished_at = Some(now());
        });
        self.write_logged().await;
    }

    /// Replaces the record's `wheel_sync` object (after each sync attempt).
    pub(crate) async fn set_wheel_sync(&self, state: serde_json::Value) {
        self.set(|l| l.wheel_sync = Some(state));
        self.write_logged().await;
    }

    async fn write_logged(&self) {
        if let Err(e) = self.writer().write().await {
            tracing::warn!(worker_id = %self.worker_id, error = %e, "worker registry write failed");
        }
    }

    /// STOPPED_GRACEFUL, then stops the heartbeat.
    pub(crate) async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            tracing::warn!(worker_id = %self.worker_id, error = %e, "registry heartbeat task failed");
        }
        self.set(|l| {
            l.state = WorkerState::StoppedGraceful;
            l.current_run_id = None;
            l.stopped_at = Some(now());
            l.stop_reason = Some("graceful_shutdown".into());
        });
        self.write_logged().await;
    }
}

#[derive(Debug, Clone)]
struct Writer {
    registry: WorkerStore,
    worker_id: String,
    instance_id: String,
    tags: Vec<String>,
    local: Arc<Mutex<Local>>,
}

impl Writer {
    async fn write(&self) -> Result<(), StoreError> {
        let local = match self.local.lock() {
            Ok(l) => l.clone(),
            Err(_) => return Ok(()),
        };
        self.registry
            .update(&self.worker_id, |prev| {
                let mut r = WorkerRecord::starting(
                    &self.worker_id,
                    &self.instance_id,
                    &self.tags,
                    prev.as_ref(),
                );
                if let Some(prev) = &prev {
                    r.extra = prev.extra.clone();
                }
                r.state = local.state;
                r.current_run_id = local.current_run_id.clone();
                r.last_run_id = local.last_run_id.clone();
                r.last_run_status = local.last_run_status.clone();
                r.last_run_started_at = local.last_run_started_at;
                r.last_run_finished_at = local.last_run_finished_at;
                r.stopped_at = local.stopped_at;
                r.stop_reason = local.stop_reason.clone();
                if let Some(wheel_sync) = &local.wheel_sync {
                    r.wheel_sync = wheel_sync.clone();
                }
                r.touch();
                r
            })
            .await
            .map(|_| ())
    }
}
