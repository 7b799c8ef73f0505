//! Bundle run documents: the run relation record (`pyoco_run_relations` KV, key = run_id),
//! the `result_summary` every bundle run's terminal snapshot carries, and the bundle fields a
//! bundle job holds.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{Job, RunSnapshot};

/// `approval_status` values.
pub const APPROVAL_PENDING: &str = "pending";
pub const APPROVAL_NOT_REQUIRED: &str = "not_required";
pub const APPROVAL_APPROVED: &str = "approved";
pub const APPROVAL_REJECTED: &str = "rejected";

/// Where a bundle run sits in its tree, as the original writes it (field order kept).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRelation {
    pub run_id: String,
    pub root_run_id: String,
    #[serde(default)]
    pub parent_run_id: Option<String>,
    /// The bundle workflow the run runs.
    pub workflow_name: String,
    pub bundle_hash: String,
    #[serde(default)]
    pub spawned_from_task: Option<String>,
    /// 0 for the root, 1 for a child.
    pub depth: i64,
    pub entry_workflow: String,
    pub submitted_at: f64,
}

/// The bundle fields of a job (`extra` of [`Job`]), read back by the worker.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BundleJob {
    /// The bundle text (`workflow_bundle`); `None` when the job does not carry it.
    pub text: Option<String>,
    /// `workflow_bundle_sha256`, falling back to `bundle_hash` (the original's rule).
    pub sha256: String,
    pub bytes: Option<u64>,
    pub root_run_id: Option<String>,
    pub parent_run_id: Option<String>,
    pub spawned_from_task: Option<String>,
    pub spawn_depth: i64,
    pub entry_workflow: Option<String>,
}

impl BundleJob {
    /// The bundle fields of `job`; `None` for a job that is not a bundle run's.
    pub fn of(job: &Job) -> Option<BundleJob> {
        let s = |k: &str| job.extra.get(k).and_then(Value::as_str).map(str::to_string);
        let sha256 = s("workflow_bundle_sha256").or_else(|| s("bundle_hash"))?;
        Some(BundleJob {
            text: s("workflow_bundle"),
            sha256,
            bytes: job
                .extra
                .get("workflow_bundle_bytes")
                .and_then(Value::as_u64),
            root_run_id: s("root_run_id"),
            parent_run_id: s("parent_run_id"),
            spawned_from_task: s("spawned_from_task"),
            spawn_depth: job
                .extra
                .get("spawn_depth")
                .and_then(Value::as_f64)
                .map_or(0, |d| d as i64),
            entry_workflow: s("entry_workflow"),
        })
    }

    /// The job fields of a bundle run, in the original's order and with its rule of writing
    /// optional ones only when set (`spawn_depth` always).
    pub fn to_extra(&self) -> Map<String, Value> {
        let mut m = Map::new();
        if let Some(text) = &self.text {
            m.insert("workflow_bundle".into(), json!(text));
        }
        m.insert("workflow_bundle_sha256".into(), json!(self.sha256));
        m.insert("bundle_hash".into(), json!(self.sha256));
        if let Some(bytes) = self.bytes {
            m.insert("workflow_bundle_bytes".into(), json!(bytes));
        }
        for (k, v) in [
            ("root_run_id", &self.root_run_id),
            ("parent_run_id", &self.parent_run_id),
            ("spawned_from_task", &self.spawned_from_task),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), json!(v));
            }
        }
        m.insert("spawn_depth".into(), json!(self.spawn_depth));
        if let Some(entry) = &self.entry_workflow {
            m.insert("entry_workflow".into(), json!(entry));
        }
        m
    }
}

/// The original's `result_summary` of a finished bundle run: every task output, the numeric
/// ones (and numeric values of object outputs, as `<task>.<key>`) as `summary_metrics`, the
/// task artifacts, and the run's error.
pub fn result_summary(snapshot: &RunSnapshot) -> Value {
    let mut outputs = Map::new();
    let mut metrics = Map::new();
    let mut artifacts = Vec::new();
    for (task, record) in &snapshot.task_records {
        outputs.insert(task.clone(), record.output.clone());
        match &record.output {
            Value::Number(n) => {
                metrics.insert(task.clone(), json!(n.as_f64()));
            }
            Value::Object(fields) => {
                for (key, v) in fields {
                    if let Value::Number(n) = v {
                        metrics.insert(format!("{task}.{key}"), json!(n.as_f64()));
                    }
                }
            }
            _ => {}
        }
        for (name, value) in &record.artifacts {
            artifacts.push(json!({"task": task, "name": name, "value": value}));
        }
    }
    json!({
        "run_id": snapshot.run_id,
        "status": snapshot.status,
        "outputs": outputs,
        "summary_metrics": metrics,
        "artifacts": artifacts,
        "error_summary": snapshot.error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{RunStatus, TaskRecord};

    #[test]
    fn summary_collects_outputs_and_numeric_metrics() {
        let mut snap = RunSnapshot::pending("r", "f", "default", vec![], Map::new());
        snap.status = RunStatus::Completed;
        let mut a = TaskRecord::pending();
        a.output = json!(3);
        let mut b = TaskRecord::pending();
        b.output = json!({"loss": 0.5, "ok": true, "name": "x"});
        snap.task_records.insert("a".into(), a);
        snap.task_records.insert("b".into(), b);
        let s = result_summary(&snap);
        assert_eq!(s["status"], "COMPLETED");
        assert_eq!(s["outputs"]["a"], 3);
        assert_eq!(s["summary_metrics"], json!({"a": 3.0, "b.loss": 0.5}));
        assert_eq!(s["artifacts"], json!([]));
        assert_eq!(s["error_summary"], Value::Null);
    }

    #[test]
    fn bundle_job_fields_round_trip() {
        let fields = BundleJob {
            text: Some("t".into()),
            sha256: "h".into(),
            bytes: Some(1),
            root_run_id: Some("r".into()),
            spawn_depth: 0,
            entry_workflow: Some("main".into()),
            ..Default::default()
        };
        let mut job = Job::decode(br#"{"run_id":"r","flow_name":"main"}"#).unwrap();
        job.extra = fields.to_extra();
        assert!(!job.extra.contains_key("parent_run_id"));
        assert_eq!(job.extra["bundle_hash"], "h");
        assert_eq!(BundleJob::of(&job), Some(fields));
    }
}
