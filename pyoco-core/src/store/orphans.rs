//! Orphan runs: a PENDING snapshot whose job never reached the work stream, because the
//! submitter died between the two writes (a gateway SIGKILLed mid-submit). The gateway's
//! sweep ([`Store::requeue_orphan`], driven by `gateway::orphans`) publishes such a run's job
//! again under the same `Nats-Msg-Id`.
//!
//! Whether a job is in the stream cannot be asked per run, so the rule is conservative:
//! - within the stream's duplicate window of the submit, publishing again is always safe (a
//!   job that is there is de-duplicated: nothing changes), so each sweeper publishes a run
//!   once there ([`Store::republish_within_window`]); only a publish that was new to the
//!   stream is recorded in the snapshot;
//! - later, only when the run's tag has no message at all in the stream (none queued, none in
//!   flight): then its job is certainly not there ([`Store::requeue_orphan`]). That re-publish
//!   is claimed first by a compare-and-set write of the snapshot (`requeue_count`,
//!   `requeued_at`, `updated_at`), so of many gateways sweeping at once one publishes, and a
//!   run that keeps coming back is failed after [`MAX_REQUEUES`] with a reason instead of
//!   looping.
//!
//! A YAML run's job is rebuilt from the YAML kept under its sha256 at submit
//! ([`Store::stash_workflow`]).

use std::time::Duration;

use async_nats::jetstream::stream::LastRawMessageErrorKind;
use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::{Store, StoreError};
use crate::model::{Change, Job, RunSnapshot, RunStatus, now};

/// Re-publishes of one run before it is failed as unqueueable.
pub const MAX_REQUEUES: u64 = 3;

/// Within this age of its last write a PENDING run's job, if it was published, is still in
/// the work stream's 120 s duplicate window: publishing it again cannot duplicate it.
pub const DEDUP_SAFE_AGE: Duration = Duration::from_secs(100);

/// Snapshot fields of a bundle or child run that its job carries too.
const JOB_FIELDS: [&str; 9] = [
    "bundle_hash",
    "workflow_bundle_sha256",
    "workflow_bundle_bytes",
    "root_run_id",
    "parent_run_id",
    "spawned_from_task",
    "spawn_depth",
    "entry_workflow",
    "schedule_id",
];

/// What the sweep did with one candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requeue {
    /// Its job was published again.
    Published,
    /// Not an orphan (any more): gone, claimed, too young, or another gateway took it.
    NotOrphan,
    /// Its tag has work queued and it is past the duplicate window: cannot tell, left alone.
    Undecidable,
    /// Marked FAILED with this reason (its job cannot be rebuilt, or it kept coming back).
    Failed(String),
}

impl Store {
    /// Keeps a workflow YAML under its hex sha256 in the bundles bucket (before the run that
    /// uses it is written), so an orphaned YAML run's job can be rebuilt. Each distinct YAML
    /// is written once per process.
    pub async fn stash_workflow(&self, sha256: &str, text: &str) -> Result<(), StoreError> {
        if self.stashed_known(sha256) {
            return Ok(());
        }
        self.resources
            .bundles
            .put(sha256, Bytes::copy_from_slice(text.as_bytes()))
            .await
            .map_err(|e| StoreError::nats("stash workflow yaml", e))?;
        self.remember_stashed(sha256);
        Ok(())
    }

    /// The YAML (or bundle) text stored under `sha256`, if any.
    pub async fn stashed_workflow(&self, sha256: &str) -> Result<Option<String>, StoreError> {
        if !super::runs::is_valid_key(sha256) {
            return Ok(None);
        }
        let entry = self
            .resources
            .bundles
            .get(sha256)
            .await
            .map_err(|e| StoreError::nats("read stashed workflow", e))?;
        Ok(entry.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// True when the work stream holds any message of `tag`, queued or in flight (a
    /// work-queue stream removes a job only when it is acked).
    pub async fn tag_has_jobs(&self, tag: &str) -> Result<bool, StoreError> {
        let stream = self
            .js
            .get_stream_no_info(&self.layout.work_stream)
            .await
            .map_err(|e| StoreError::nats("get work stream", e))?;
        match stream
            .get_last_raw_message_by_subject(&self.layout.work_subject(tag))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(false),
            Err(e) => Err(StoreError::nats("look up queued jobs", e)),
        }
    }

    /// The run's snapshot if it is still PENDING and was last written at least
    /// `orphan_after` ago.
    async fn pending_since(
        &self,
        run_id: &str,
        orphan_after: Duration,
    ) -> Result<Option<super::Versioned<RunSnapshot>>, StoreError> {
        let Some(current) = self.runs.get(run_id).await? else {
            return Ok(None);
        };
        let age = now() - current.value.updated_at.unwrap_or(0.0);
        Ok(
            (current.value.status == RunStatus::Pending && age >= orphan_after.as_secs_f64())
                .then_some(current),
        )
    }

    /// For a PENDING run still within the work stream's duplicate window of its submit:
    /// publishes its job again under the same `Nats-Msg-Id`. A job that is in the stream is
    /// de-duplicated and nothing is written; a job that was not ([`Requeue::Published`]) is
    /// recorded in the snapshot (`requeue_count`, `requeued_at`).
    pub async fn republish_within_window(
        &self,
        run_id: &str,
        orphan_after: Duration,
    ) -> Result<Requeue, StoreError> {
        let Some(current) = self.pending_since(run_id, orphan_after).await? else {
            return Ok(Requeue::NotOrphan);
        };
        // A job that cannot be rebuilt may still be queued: decide after the window.
        let Ok(job) = self.rebuild_job(&current.value).await? else {
            return Ok(Requeue::Undecidable);
        };
        let count = requeue_count(&current.value);
        if !self.publish_job(&job).await? {
            return Ok(Requeue::NotOrphan);
        }
        // New to the stream: it was an orphan. Record it (best effort: a worker may have
        // claimed it already, which is fine).
        self.mark_requeued(current, count).await?;
        tracing::warn!(run_id, tag = %job.tag, "orphaned PENDING run queued again");
        Ok(Requeue::Published)
    }

    /// For a PENDING run past the duplicate window whose tag has no message in the stream
    /// (the caller checked [`Store::tag_has_jobs`]): its job is certainly not queued.
    /// Claims the re-publish with a compare-and-set write (so of many gateways one
    /// publishes), then publishes; fails the run instead when its job cannot be rebuilt or it
    /// has been queued [`MAX_REQUEUES`] times already.
    pub async fn requeue_orphan(
        &self,
        run_id: &str,
        orphan_after: Duration,
    ) -> Result<Requeue, StoreError> {
        let Some(current) = self.pending_since(run_id, orphan_after).await? else {
            return Ok(Requeue::NotOrphan);
        };
        let count = requeue_count(&current.value);
        if count >= MAX_REQUEUES {
            let reason = format!(
                "orphaned run: its job was queued {count} times and never taken; submit it again"
            );
            return self.fail_orphan(current, count, reason).await;
        }
        let job = match self.rebuild_job(&current.value).await? {
            Ok(job) => job,
            Err(reason) => return self.fail_orphan(current, count, reason).await,
        };
        if !self.mark_requeued(current, count).await? {
            return Ok(Requeue::NotOrphan);
        }
        let fresh = self.publish_job(&job).await?;
        tracing::warn!(
            run_id,
            tag = %job.tag,
            requeue = count + 1,
            duplicate = !fresh,
            "orphaned PENDING run queued again"
        );
        Ok(Requeue::Published)
    }

    /// Publishes `job` with `Nats-Msg-Id = run_id`; `true` when it was new to the stream.
    pub(super) async fn publish_job(&self, job: &Job) -> Result<bool, StoreError> {
        let payload = serde_json::to_vec(job).map_err(|e| StoreError::failed("encode job", e))?;
        super::queue::publish_deduplicated(
            &self.js,
            &self.layout.work_stream,
            &self.layout.work_subject(&job.tag),
            &job.run_id,
            Bytes::from(payload),
        )
        .await
    }

    /// Records one more re-publish (`requeue_count`, `requeued_at`, `updated_at`), if the
    /// run is still PENDING at `count`; `true` when this write landed.
    async fn mark_requeued(
        &self,
        current: super::Versioned<RunSnapshot>,
        count: u64,
    ) -> Result<bool, StoreError> {
        let run_id = current.value.run_id.clone();
        let stamp = now();
        let written = self
            .runs
            .update_from(&run_id, Some(current), |doc| {
                if doc.status != RunStatus::Pending || requeue_count(doc) != count {
                    return Change::Keep;
                }
                doc.extra.insert("requeue_count".into(), json!(count + 1));
                doc.extra.insert("requeued_at".into(), json!(stamp));
                doc.updated_at = Some(stamp);
                Change::Write
            })
            .await?;
        Ok(written.is_some_and(|c| {
            c.value.status == RunStatus::Pending
                && requeue_count(&c.value) == count + 1
                && c.value.extra.get("requeued_at") == Some(&json!(stamp))
        }))
    }

    /// The job of a PENDING run, from its snapshot (plus its stashed YAML or bundle); `Err`
    /// says why it cannot be rebuilt.
    pub(super) async fn rebuild_job(
        &self,
        snapshot: &RunSnapshot,
    ) -> Result<Result<Job, String>, StoreError> {
        let tag = snapshot
            .tag
            .clone()
            .unwrap_or_else(|| self.config.default_tag.clone());
        let mut extra = Map::new();
        let raw = serde_json::to_value(snapshot).unwrap_or(Value::Null);
        for field in JOB_FIELDS {
            if let Some(v) = raw.get(field).filter(|v| !v.is_null()) {
                extra.insert(field.to_string(), v.clone());
            }
        }
        let mut job = Job {
            run_id: snapshot.run_id.clone(),
            flow_name: snapshot.flow_name.clone(),
            tag: tag.clone(),
            tags: if snapshot.tags.is_empty() {
                vec![tag]
            } else {
                snapshot.tags.clone()
            },
            tenant_id: snapshot.tenant_id.clone(),
            api_key_id: snapshot.api_key_id.clone(),
            params: snapshot.params.clone(),
            submitted_at: now(),
            workflow_yaml: None,
            workflow_yaml_sha256: None,
            workflow_yaml_bytes: None,
            schedule_id: None,
            extra,
        };
        if let Some(sha) = &snapshot.workflow_yaml_sha256 {
            let Some(text) = self.stashed_workflow(sha).await? else {
                return Ok(Err(format!(
                    "orphaned run: its job was never queued and its workflow YAML ({sha}) is not stored; submit it again"
                )));
            };
            job.workflow_yaml = Some(text);
            job.workflow_yaml_sha256 = Some(sha.clone());
            job.workflow_yaml_bytes = snapshot.workflow_yaml_bytes;
            job.schedule_id = Some(snapshot.schedule_id.clone());
            job.extra.remove("schedule_id");
        }
        let bundle = raw
            .get("workflow_bundle_sha256")
            .or_else(|| raw.get("bundle_hash"))
            .and_then(Value::as_str);
        if let Some(hash) = bundle {
            let Some(text) = self.stashed_workflow(hash).await? else {
                return Ok(Err(format!(
                    "orphaned run: its job was never queued and its bundle ({hash}) is not stored; submit it again"
                )));
            };
            job.extra
                .insert("workflow_bundle".into(), Value::String(text));
            job.extra.insert(
                "workflow_bundle_sha256".into(),
                Value::String(hash.to_string()),
            );
            job.extra.entry("spawn_depth").or_insert(Value::from(0));
        }
        Ok(Ok(job))
    }

    /// Marks an orphan FAILED with `reason` (unless something else wrote it meanwhile).
    async fn fail_orphan(
        &self,
        current: super::Versioned<RunSnapshot>,
        count: u64,
        reason: String,
    ) -> Result<Requeue, StoreError> {
        let run_id = current.value.run_id.clone();
        let written = self
            .runs
            .update_from(&run_id, Some(current), |doc| {
                if doc.status != RunStatus::Pending || requeue_count(doc) != count {
                    return Change::Keep;
                }
                let at = now();
                doc.status = RunStatus::Failed;
                doc.error = Some(reason.clone());
                doc.end_time = Some(at);
                doc.updated_at = Some(at);
                Change::Write
            })
            .await?;
        if written.is_some_and(|w| w.value.status == RunStatus::Failed) {
            tracing::error!(run_id, %reason, "orphaned run failed");
            Ok(Requeue::Failed(reason))
        } else {
            Ok(Requeue::NotOrphan)
        }
    }
}

/// How often the sweep has re-published this run (`requeue_count`, ours).
pub fn requeue_count(snapshot: &RunSnapshot) -> u64 {
    snapshot
        .extra
        .get("requeue_count")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}
