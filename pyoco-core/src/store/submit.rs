//! Submitting a run: PENDING snapshot with KV create, then the job with `Nats-Msg-Id =
//! run_id`; if the publish definitely failed the snapshot is deleted so no orphan remains.
//! A YAML run's YAML is stashed under its sha256 first; if the submitter dies between the
//! snapshot and the job, the gateway's orphan sweep (`orphans`) publishes the job later.

use bytes::Bytes;
use serde_json::{Map, Value};
use tracing::Instrument;

use super::{Store, StoreError};
use crate::model::bundle::{APPROVAL_NOT_REQUIRED, APPROVAL_PENDING, BundleJob, RunRelation};
use crate::model::{Job, RunSnapshot, RunStatus, is_valid_tag, new_run_id, now};

/// A workflow YAML travelling with the job.
#[derive(Debug, Clone, PartialEq)]
pub struct YamlPayload {
    pub text: String,
    pub sha256: String,
    pub bytes: u64,
}

/// Everything needed to create a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewRun {
    pub flow_name: String,
    pub params: Map<String, Value>,
    /// Routing tag; `None` means `PYOCO_DEFAULT_TAG`.
    pub tag: Option<String>,
    /// Informational tags; empty means `[tag]`.
    pub tags: Vec<String>,
    pub tenant_id: Option<String>,
    pub api_key_id: Option<String>,
    pub yaml: Option<YamlPayload>,
    /// The parsed graph as the dashboard draws it ([`crate::flow::graph::Graph::drawing`]),
    /// stored in the snapshot as `flow_graph` (YAML runs; for named flows the worker that
    /// resolves the flow adds it at the claim).
    pub flow_graph: Option<Value>,
    /// The run id to use (an `Idempotency-Key` reservation) instead of a new one. A submit
    /// with an id whose snapshot already exists finishes that run's submit instead of making
    /// another: a retry after a crash between the snapshot and the job loses nothing.
    pub run_id: Option<String>,
    /// The schedule that fired this run (YAML runs only; stamped on snapshot and job).
    pub schedule_id: Option<String>,
    /// The run this one replays (`POST /runs/{run_id}/replay`; snapshot key `replay_of`).
    pub replay_of: Option<String>,
    /// The flow registry version the YAML is (snapshot key `flow_version`).
    pub flow_version: Option<u64>,
    /// A bundle run (`POST /runs/bundle` roots and the children their spawn tasks start).
    pub bundle: Option<BundleRun>,
}

/// What makes a run a bundle run: its bundle and its place in the run tree.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BundleRun {
    /// The bundle's text, kept in `pyoco_workflow_bundles` under its sha256.
    pub text: String,
    pub sha256: String,
    pub bytes: u64,
    /// `None` for a root (it is its own root).
    pub root_run_id: Option<String>,
    pub parent_run_id: Option<String>,
    pub spawned_from_task: Option<String>,
    /// 0 for a root, 1 for a child.
    pub spawn_depth: i64,
    pub entry_workflow: String,
    /// The root waits in PENDING_APPROVAL (no job is published until it is approved).
    pub awaiting_approval: bool,
}

/// Why a submit failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    #[error("invalid tag {0:?}: use letters, digits, '_' or '-'")]
    InvalidTag(String),
    #[error("flow_name must not be empty")]
    EmptyFlowName,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Creates the run and queues its job. Returns the run id once the job is stored.
    ///
    /// In a `submit` span (`run_id`, `flow_name`, `tag`) whose trace context the job carries
    /// in its `traceparent` header, so the worker's run span becomes its child.
    pub async fn submit(&self, new: NewRun) -> Result<String, SubmitError> {
        let span = tracing::info_span!(
            "submit",
            run_id = tracing::field::Empty,
            flow_name = %new.flow_name,
            tag = tracing::field::Empty,
        );
        self.submit_in_span(new).instrument(span).await
    }

    async fn submit_in_span(&self, new: NewRun) -> Result<String, SubmitError> {
        if new.flow_name.trim().is_empty() {
            return Err(SubmitError::EmptyFlowName);
        }
        let tag = new
            .tag
            .clone()
            .unwrap_or_else(|| self.config.default_tag.clone());
        if !is_valid_tag(&tag) {
            return Err(SubmitError::InvalidTag(tag));
        }
        let tags = if new.tags.is_empty() {
            vec![tag.clone()]
        } else {
            new.tags.clone()
        };
        let run_id = new.run_id.clone().unwrap_or_else(new_run_id);
        let span = tracing::Span::current();
        span.record("run_id", run_id.as_str());
        span.record("tag", tag.as_str());

        let mut snapshot = RunSnapshot::pending(
            &run_id,
            &new.flow_name,
            &tag,
            tags.clone(),
            new.params.clone(),
        );
        snapshot.tenant_id = new.tenant_id.clone();
        snapshot.api_key_id = new.api_key_id.clone();
        if let Some(original) = &new.replay_of {
            snapshot
                .extra
                .insert("replay_of".into(), Value::String(original.clone()));
        }
        if let Some(yaml) = &new.yaml {
            // Kept first, so an orphan sweep can rebuild this run's job if we die mid-submit.
            self.stash_workflow(&yaml.sha256, &yaml.text).await?;
            snapshot.workflow_yaml_sha256 = Some(yaml.sha256.clone());
            snapshot.workflow_yaml_bytes = Some(yaml.bytes);
            snapshot.schedule_id = new.schedule_id.clone();
        }
        if let Some(version) = new.flow_version {
            snapshot
                .extra
                .insert("flow_version".into(), Value::from(version));
        }
        let relation = match &new.bundle {
            Some(bundle) => Some(self.prepare_bundle_run(bundle, &mut snapshot).await?),
            None => None,
        };
        if let Some(graph) = &new.flow_graph {
            snapshot.extra.insert("flow_graph".into(), graph.clone());
        }
        let revision = match self.runs.create(&mut snapshot).await {
            Ok(revision) => revision,
            // Only a given id can exist already: an earlier attempt of the same request.
            Err(StoreError::AlreadyExists { .. }) if new.run_id.is_some() => {
                match self.runs.get(&run_id).await? {
                    // Still PENDING: its job may never have been published; publishing again
                    // under the same Nats-Msg-Id is deduplicated if it was.
                    Some(current) if current.value.status == crate::model::RunStatus::Pending => {
                        current.revision
                    }
                    // Claimed or finished: the job was published.
                    _ => return Ok(run_id),
                }
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(relation) = &relation {
            if let Err(e) = self.put_relation(relation).await {
                self.roll_back(&run_id, revision).await;
                return Err(e.into());
            }
            if snapshot.status == RunStatus::PendingApproval {
                // Nothing to queue until someone approves it (`POST /runs/{id}/approve`).
                return Ok(run_id);
            }
        }

        let job = Job {
            run_id: run_id.clone(),
            flow_name: new.flow_name,
            tag: tag.clone(),
            tags,
            tenant_id: new.tenant_id,
            api_key_id: new.api_key_id,
            params: new.params,
            submitted_at: now(),
            workflow_yaml: new.yaml.as_ref().map(|y| y.text.clone()),
            workflow_yaml_sha256: new.yaml.as_ref().map(|y| y.sha256.clone()),
            workflow_yaml_bytes: new.yaml.as_ref().map(|y| y.bytes),
            schedule_id: new.yaml.as_ref().map(|_| new.schedule_id.clone()),
            extra: new
                .bundle
                .as_ref()
                .map(|b| bundle_job(b, &run_id).to_extra())
                .unwrap_or_default(),
        };
        let payload = serde_json::to_vec(&job).map_err(|e| StoreError::failed("encode job", e))?;
        let subject = self.layout.work_subject(&tag);
        let published = super::queue::publish_deduplicated(
            &self.js,
            &self.layout.work_stream,
            &subject,
            &run_id,
            Bytes::from(payload),
        )
        .await;
        if let Err(e) = published {
            // Not queued, or unknown after retries: roll the snapshot back so the caller's
            // error is true. If a worker already claimed the run, the job *was* queued.
            match self.roll_back(&run_id, revision).await {
                RollBack::Claimed => {}
                RollBack::Deleted | RollBack::Pending => return Err(e.into()),
            }
        }
        tracing::debug!(run_id = %run_id, %subject, "run submitted");
        Ok(run_id)
    }
}

/// The bundle fields of the job of run `run_id`.
fn bundle_job(bundle: &BundleRun, run_id: &str) -> BundleJob {
    BundleJob {
        text: Some(bundle.text.clone()),
        sha256: bundle.sha256.clone(),
        bytes: Some(bundle.bytes),
        root_run_id: Some(
            bundle
                .root_run_id
                .clone()
                .unwrap_or_else(|| run_id.to_string()),
        ),
        parent_run_id: bundle.parent_run_id.clone(),
        spawned_from_task: bundle.spawned_from_task.clone(),
        spawn_depth: bundle.spawn_depth,
        entry_workflow: Some(bundle.entry_workflow.clone()),
    }
}

impl Store {
    /// Keeps the bundle under its sha256, stamps the bundle fields on the new run's snapshot
    /// (the original's full bundle shape) and returns its relation record.
    async fn prepare_bundle_run(
        &self,
        bundle: &BundleRun,
        snapshot: &mut RunSnapshot,
    ) -> Result<RunRelation, StoreError> {
        self.stash_workflow(&bundle.sha256, &bundle.text).await?;
        let run_id = snapshot.run_id.clone();
        let root = bundle.root_run_id.clone().unwrap_or_else(|| run_id.clone());
        snapshot.bundle_hash = Some(bundle.sha256.clone());
        snapshot.workflow_bundle_bytes = Some(bundle.bytes);
        snapshot.root_run_id = Some(root.clone());
        snapshot.parent_run_id = bundle.parent_run_id.clone();
        snapshot.spawned_from_task = bundle.spawned_from_task.clone();
        snapshot.spawn_depth = Some(bundle.spawn_depth);
        snapshot.entry_workflow = Some(bundle.entry_workflow.clone());
        snapshot.approval_required = Some(bundle.awaiting_approval);
        if bundle.awaiting_approval {
            snapshot.status = RunStatus::PendingApproval;
            snapshot.approval_status = Some(APPROVAL_PENDING.into());
            snapshot.approval_requested_at = snapshot.updated_at;
        } else {
            snapshot.approval_status = Some(APPROVAL_NOT_REQUIRED.into());
        }
        Ok(RunRelation {
            run_id,
            root_run_id: root,
            parent_run_id: bundle.parent_run_id.clone(),
            workflow_name: snapshot.flow_name.clone(),
            bundle_hash: bundle.sha256.clone(),
            spawned_from_task: bundle.spawned_from_task.clone(),
            depth: bundle.spawn_depth,
            entry_workflow: bundle.entry_workflow.clone(),
            submitted_at: now(),
        })
    }
}

enum RollBack {
    Deleted,
    Claimed,
    /// Still being retried in the background.
    Pending,
}

impl Store {
    /// Deletes the PENDING snapshot of a failed submit unless a worker has written it since.
    async fn roll_back(&self, run_id: &str, revision: u64) -> RollBack {
        for _ in 0..5 {
            match self.roll_back_once(run_id, revision).await {
                Some(done) => return done,
                None => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
            }
        }
        // NATS is unreachable: keep trying in the background so no PENDING orphan stays.
        let store = self.clone();
        let run_id = run_id.to_string();
        tokio::spawn(async move {
            for _ in 0..600 {
                if store.roll_back_once(&run_id, revision).await.is_some() {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            tracing::error!(run_id = %run_id, "could not roll back the snapshot of a failed submit");
        });
        RollBack::Pending
    }

    async fn roll_back_once(&self, run_id: &str, revision: u64) -> Option<RollBack> {
        if self
            .runs
            .delete_if_unchanged(run_id, revision)
            .await
            .is_ok()
        {
            return Some(RollBack::Deleted);
        }
        match self.runs.get_raw(run_id).await {
            Ok(None) => Some(RollBack::Deleted),
            Ok(Some(v)) if v.revision != revision => Some(RollBack::Claimed),
            _ => None,
        }
    }
}
