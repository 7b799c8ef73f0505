//! Spawn tasks of bundle runs. A `spawn:` task starts a child run of another workflow of the
//! same bundle (on `PYOCO_SPAWN_CHILD_TAG`, else the parent's tag), records it in the
//! parent's snapshot (`child_run_ids`, `spawn_count`) and in `pyoco_run_relations`, and waits
//! for it: the child's snapshot key is followed as it is written (a subscription, not
//! polling). The child's `result_summary` becomes the task's output; a child that ends
//! FAILED or CANCELLED fails the task (its fail policy decides the rest).
//!
//! Limits per parent execution: at most `PYOCO_SPAWN_MAX_CHILD_RUNS` children
//! (`spawn_max_child_runs_exceeded`), at most `PYOCO_SPAWN_MAX_PARALLEL_CHILD_RUNS` running at
//! once (further spawns wait for a slot), and `PYOCO_SPAWN_TIMEOUT_SEC` per child
//! (`child_wait_timeout`; the child is cancelled). Children may not spawn
//! (`child_respawn_not_allowed`). When the parent does not complete (cancelled, failed), the
//! worker cancels the children still running ([`Spawner::cancel_children`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::flow::tasks::{Registry, SPAWN_CALLABLE, TaskCall, TaskError};
use crate::flow::yaml::FlowSpec;
use crate::model::bundle::{BundleJob, result_summary};
use crate::model::{Change, Job, RunSnapshot, RunStatus, StatusPeek};
use crate::store::{BundleRun, NewRun, Store, StoreError};

/// While waiting, the child is read again this often in case a write was missed (core NATS
/// drops messages published while this connection is reconnecting); the writes themselves
/// are what wakes the wait.
const MISSED_WRITE_CHECK: Duration = Duration::from_secs(5);

/// The spawn side of one bundle run's execution.
#[derive(Debug)]
pub(super) struct Spawner {
    store: Store,
    parent: Job,
    bundle: BundleJob,
    /// Spawn task name → the workflow it starts.
    targets: HashMap<String, String>,
    /// Every child started so far, in order.
    children: Mutex<Vec<String>>,
    /// Spawns started (reserved before the child exists), for the child-run limit.
    started: Mutex<usize>,
    slots: Arc<Semaphore>,
}

impl Spawner {
    /// The spawner of `parent`'s run of `flow`; `None` when the flow has no spawn task.
    pub(super) fn new(
        store: &Store,
        parent: &Job,
        bundle: BundleJob,
        flow: &FlowSpec,
    ) -> Option<Arc<Spawner>> {
        let targets: HashMap<String, String> = flow
            .tasks
            .iter()
            .filter_map(|t| t.spawn.clone().map(|target| (t.name.clone(), target)))
            .collect();
        if targets.is_empty() {
            return None;
        }
        let parallel = usize::try_from(store.config().spawn_max_parallel_child_runs)
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or(Semaphore::MAX_PERMITS);
        Some(Arc::new(Spawner {
            store: store.clone(),
            parent: parent.clone(),
            bundle,
            targets,
            children: Mutex::default(),
            started: Mutex::default(),
            slots: Arc::new(Semaphore::new(parallel)),
        }))
    }

    /// `base` plus the spawn callable bound to this run.
    pub(super) fn registry(self: &Arc<Self>, base: &Registry) -> Registry {
        let mut registry = base.clone();
        let me = self.clone();
        registry.register(SPAWN_CALLABLE, &[], move |call| {
            let me = me.clone();
            async move { me.spawn(call).await }
        });
        registry
    }

    /// The children started so far.
    fn children(&self) -> Vec<String> {
        self.children.lock().map(|c| c.clone()).unwrap_or_default()
    }

    async fn spawn(&self, call: TaskCall) -> Result<Value, TaskError> {
        if self.bundle.spawn_depth >= 1 {
            return Err(TaskError::new("child_respawn_not_allowed"));
        }
        let target =
            self.targets.get(&call.task).cloned().ok_or_else(|| {
                TaskError::new(format!("task '{}' is not a spawn task", call.task))
            })?;
        let config = self.store.config();
        {
            let Ok(mut started) = self.started.lock() else {
                return Err(TaskError::new("spawn bookkeeping is poisoned"));
            };
            let max = config.spawn_max_child_runs;
            if max > 0 && *started >= usize::try_from(max).unwrap_or(usize::MAX) {
                return Err(TaskError::new("spawn_max_child_runs_exceeded"));
            }
            *started += 1;
        }
        let _slot = tokio::select! {
            slot = self.slots.clone().acquire_owned() => slot.map_err(|_| TaskError::new("spawn slots closed"))?,
            _ = call.cancel.cancelled() => return Err(TaskError::new("parent_cancelled_during_child_wait")),
        };
        let child_id = self
            .start_child(&call, &target)
            .await
            .map_err(|e| TaskError::new(format!("spawn of '{target}' failed: {e}")))?;
        if let Ok(mut record) = call.record.lock() {
            record.insert("child_run_id".into(), Value::String(child_id.clone()));
        }
        let child = self.wait(&child_id, &call).await?;
        let summary = match &child.result_summary {
            Some(summary @ Value::Object(_)) => summary.clone(),
            _ => result_summary(&child),
        };
        if child.status != RunStatus::Completed {
            let mut message = format!(
                "child_run_{}: {child_id}",
                child.status.as_str().to_ascii_lowercase()
            );
            if let Some(error) = &child.error {
                message.push_str(": ");
                message.push_str(error);
            }
            return Err(TaskError::new(message));
        }
        Ok(summary)
    }

    /// Creates the child run (snapshot, relation, job) and lists it in the parent.
    async fn start_child(&self, call: &TaskCall, target: &str) -> Result<String, StoreError> {
        let config = self.store.config();
        let tag = Some(config.spawn_child_tag.trim())
            .filter(|t| !t.is_empty())
            .unwrap_or(&self.parent.tag)
            .to_string();
        let mut params = (*call.params).clone();
        params.extend(call.args.clone());
        let bundle = &self.bundle;
        let new = NewRun {
            flow_name: target.to_string(),
            params,
            tag: Some(tag),
            tenant_id: self.parent.tenant_id.clone(),
            api_key_id: self.parent.api_key_id.clone(),
            bundle: Some(BundleRun {
                text: bundle.text.clone().unwrap_or_default(),
                sha256: bundle.sha256.clone(),
                bytes: bundle
                    .bytes
                    .unwrap_or(bundle.text.as_ref().map_or(0, |t| t.len() as u64)),
                root_run_id: Some(
                    bundle
                        .root_run_id
                        .clone()
                        .unwrap_or_else(|| self.parent.run_id.clone()),
                ),
                parent_run_id: Some(self.parent.run_id.clone()),
                spawned_from_task: Some(call.task.clone()),
                spawn_depth: bundle.spawn_depth + 1,
                entry_workflow: bundle
                    .entry_workflow
                    .clone()
                    .unwrap_or_else(|| self.parent.flow_name.clone()),
                awaiting_approval: false,
            }),
            ..Default::default()
        };
        let child_id = self.store.submit(new).await.map_err(|e| match e {
            crate::store::SubmitError::Store(e) => e,
            other => StoreError::failed("submit child run", other),
        })?;
        if let Ok(mut children) = self.children.lock() {
            children.push(child_id.clone());
        }
        let id = child_id.clone();
        let listed = self
            .store
            .runs()
            .update(&self.parent.run_id, |doc| {
                if doc.child_run_ids.contains(&id) {
                    return Change::Keep;
                }
                doc.child_run_ids.push(id.clone());
                doc.spawn_count = doc.child_run_ids.len() as u64;
                Change::Write
            })
            .await;
        if let Err(e) = listed {
            tracing::warn!(run_id = %self.parent.run_id, child = %child_id, error = %e, "could not list the child run in its parent");
        }
        tracing::info!(run_id = %self.parent.run_id, child = %child_id, workflow = %target, "child run spawned");
        Ok(child_id)
    }

    /// Follows the child's snapshot until it is terminal; cancels it when the wait ends
    /// otherwise (timeout, parent cancelled).
    async fn wait(&self, child_id: &str, call: &TaskCall) -> Result<RunSnapshot, TaskError> {
        let nats =
            |e: StoreError| TaskError::new(format!("cannot follow child run {child_id}: {e}"));
        // Subscribed before the read: a write made after the read reaches the subscription.
        let mut writes = self.store.run_writes(child_id).await.map_err(nats)?;
        let timeout = self.store.config().spawn_timeout;
        let deadline = (!timeout.is_zero()).then(|| tokio::time::Instant::now() + timeout);
        loop {
            if let Some(child) = self.store.runs().get(child_id).await.map_err(nats)?
                && child.value.status.is_terminal()
            {
                return Ok(child.value);
            }
            // Wait for a write that makes it terminal (then read it once more, whole).
            let recheck = tokio::time::sleep(MISSED_WRITE_CHECK);
            tokio::pin!(recheck);
            loop {
                tokio::select! {
                    payload = writes.next() => match payload {
                        Some(p) if StatusPeek::decode(&p).is_some_and(|s| s.is_terminal()) => break,
                        Some(_) => {}
                        None => {
                            writes = self.store.run_writes(child_id).await.map_err(nats)?;
                            break;
                        }
                    },
                    _ = &mut recheck => break,
                    _ = sleep_until(deadline) => {
                        self.cancel_child(child_id).await;
                        return Err(TaskError::new("child_wait_timeout"));
                    }
                    _ = call.cancel.cancelled() => {
                        self.cancel_child(child_id).await;
                        return Err(TaskError::new("parent_cancelled_during_child_wait"));
                    }
                }
            }
        }
    }

    async fn cancel_child(&self, child_id: &str) {
        let by = Some(format!("run:{}", self.parent.run_id));
        if let Err(e) = self.store.runs().request_cancel(child_id, by).await {
            tracing::warn!(run_id = %self.parent.run_id, child = %child_id, error = %e, "could not cancel a child run");
        }
    }

    /// Cancels every child that has not finished (the parent ended without completing).
    pub(super) async fn cancel_children(&self) {
        for child in self.children() {
            self.cancel_child(&child).await;
        }
    }
}

/// Sleeps until `deadline`, or for ever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
