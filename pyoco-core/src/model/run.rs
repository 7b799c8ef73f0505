//! The run snapshot (`pyoco_runs` KV, key = run_id) and its status machine.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Run status strings of the original. Terminal: COMPLETED, FAILED, CANCELLED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    Pending,
    PendingApproval,
    Running,
    Cancelling,
    Completed,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub const ALL: [RunStatus; 7] = [
        RunStatus::Pending,
        RunStatus::PendingApproval,
        RunStatus::Running,
        RunStatus::Cancelling,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "PENDING",
            RunStatus::PendingApproval => "PENDING_APPROVAL",
            RunStatus::Running => "RUNNING",
            RunStatus::Cancelling => "CANCELLING",
            RunStatus::Completed => "COMPLETED",
            RunStatus::Failed => "FAILED",
            RunStatus::Cancelled => "CANCELLED",
        }
    }

    /// The status of a wire string (exact, as the original writes it); `None` for anything
    /// else.
    pub fn parse(s: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Same as [`RunStatus::parse`]: the name readers of raw JSON reach for.
    pub fn from_wire(s: &str) -> Option<RunStatus> {
        RunStatus::parse(s)
    }

    /// The terminal rule for a status still in its wire form (SSE events, raw snapshots):
    /// `true` for COMPLETED, FAILED and CANCELLED, `false` for anything else.
    pub fn is_terminal_str(s: &str) -> bool {
        RunStatus::parse(s).is_some_and(RunStatus::is_terminal)
    }

    /// COMPLETED, FAILED and CANCELLED: final, no writer moves a run out of them.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled
        )
    }

    /// The one transition table. A write that is not allowed here is never made: a late
    /// writer cannot move a terminal run, and a cancel is never turned back into progress.
    pub fn can_become(self, next: RunStatus) -> bool {
        use RunStatus::*;
        match self {
            Pending => matches!(next, Pending | Running | Cancelling | Cancelled | Failed),
            PendingApproval => matches!(next, PendingApproval | Pending | Cancelled),
            Running => matches!(next, Running | Cancelling | Completed | Failed | Cancelled),
            Cancelling => matches!(next, Cancelling | Cancelled | Failed),
            Completed | Failed | Cancelled => false,
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Task state strings in `tasks` and `task_records[*].state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl TaskState {
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Cancelled
        )
    }
}

/// One entry of `task_records`, shaped like the original's `serialize_task_records`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub state: TaskState,
    #[serde(default)]
    pub started_at: Option<f64>,
    #[serde(default)]
    pub ended_at: Option<f64>,
    #[serde(default)]
    pub duration_ms: Option<f64>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub traceback: Option<String>,
    #[serde(default)]
    pub inputs: Map<String, Value>,
    #[serde(default)]
    pub output: Value,
    #[serde(default)]
    pub artifacts: Map<String, Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl TaskRecord {
    pub fn pending() -> TaskRecord {
        TaskRecord {
            state: TaskState::Pending,
            started_at: None,
            ended_at: None,
            duration_ms: None,
            error: None,
            traceback: None,
            inputs: Map::new(),
            output: Value::Null,
            artifacts: Map::new(),
            extra: Map::new(),
        }
    }
}

/// The latest state of one run. Field order is the original worker's; every field written by
/// either implementation is here, and unknown ones survive in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSnapshot {
    pub run_id: String,
    #[serde(default)]
    pub flow_name: String,
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub api_key_id: Option<String>,
    #[serde(default)]
    pub workflow_yaml_sha256: Option<String>,
    #[serde(default)]
    pub workflow_yaml_bytes: Option<u64>,
    #[serde(default)]
    pub schedule_id: Option<String>,
    #[serde(default)]
    pub bundle_hash: Option<String>,
    #[serde(default)]
    pub workflow_bundle_bytes: Option<u64>,
    #[serde(default)]
    pub root_run_id: Option<String>,
    #[serde(default)]
    pub parent_run_id: Option<String>,
    #[serde(default)]
    pub spawned_from_task: Option<String>,
    #[serde(default)]
    pub spawn_depth: Option<i64>,
    #[serde(default)]
    pub entry_workflow: Option<String>,
    #[serde(default)]
    pub approval_required: Option<bool>,
    #[serde(default)]
    pub approval_status: Option<String>,
    #[serde(default)]
    pub approval_requested_at: Option<f64>,
    #[serde(default)]
    pub approved_at: Option<f64>,
    #[serde(default)]
    pub approved_by: Option<String>,
    #[serde(default)]
    pub approval_comment: Option<String>,
    #[serde(default)]
    pub rejected_at: Option<f64>,
    #[serde(default)]
    pub rejected_by: Option<String>,
    #[serde(default)]
    pub rejection_reason: Option<String>,
    #[serde(default)]
    pub cancel_requested_at: Option<f64>,
    #[serde(default)]
    pub cancel_requested_by: Option<String>,
    pub status: RunStatus,
    #[serde(default)]
    pub params: Map<String, Value>,
    #[serde(default)]
    pub tasks: IndexMap<String, TaskState>,
    #[serde(default)]
    pub task_records: IndexMap<String, TaskRecord>,
    #[serde(default)]
    pub child_run_ids: Vec<String>,
    #[serde(default)]
    pub spawn_count: u64,
    #[serde(default)]
    pub result_summary: Option<Value>,
    #[serde(default)]
    pub start_time: Option<f64>,
    #[serde(default)]
    pub end_time: Option<f64>,
    #[serde(default)]
    pub heartbeat_at: Option<f64>,
    #[serde(default)]
    pub updated_at: Option<f64>,
    #[serde(default)]
    pub error: Option<String>,
    /// Kept in every write (the original drops it after the first one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    /// Present only when compaction dropped `task_records`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub task_records_truncated: bool,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl RunSnapshot {
    /// The PENDING snapshot a submitter writes before publishing the job.
    pub fn pending(
        run_id: &str,
        flow_name: &str,
        tag: &str,
        tags: Vec<String>,
        params: Map<String, Value>,
    ) -> RunSnapshot {
        let now = super::now();
        RunSnapshot {
            run_id: run_id.to_string(),
            flow_name: flow_name.to_string(),
            tag: Some(tag.to_string()),
            tags,
            tenant_id: None,
            api_key_id: None,
            workflow_yaml_sha256: None,
            workflow_yaml_bytes: None,
            schedule_id: None,
            bundle_hash: None,
            workflow_bundle_bytes: None,
            root_run_id: None,
            parent_run_id: None,
            spawned_from_task: None,
            spawn_depth: None,
            entry_workflow: None,
            approval_required: None,
            approval_status: None,
            approval_requested_at: None,
            approved_at: None,
            approved_by: None,
            approval_comment: None,
            rejected_at: None,
            rejected_by: None,
            rejection_reason: None,
            cancel_requested_at: None,
            cancel_requested_by: None,
            status: RunStatus::Pending,
            params,
            tasks: IndexMap::new(),
            task_records: IndexMap::new(),
            child_run_ids: Vec::new(),
            spawn_count: 0,
            result_summary: None,
            start_time: None,
            end_time: None,
            heartbeat_at: Some(now),
            updated_at: Some(now),
            error: None,
            worker_id: None,
            task_records_truncated: false,
            extra: Map::new(),
        }
    }

    /// A cancel was asked for: the original's rule (timestamp set, or status CANCELLING or
    /// CANCELLED).
    pub fn cancel_requested(&self) -> bool {
        self.cancel_requested_at.is_some()
            || matches!(self.status, RunStatus::Cancelling | RunStatus::Cancelled)
    }

    /// Serialises the snapshot, dropping `task_records` when the document exceeds `limit`
    /// bytes (0 = no limit), exactly the original's single compaction step. Applied to every
    /// write, heartbeats included, so an oversized snapshot can never block progress.
    pub fn to_compact_json(&mut self, limit: usize) -> serde_json::Result<Vec<u8>> {
        self.task_records_truncated = false;
        let bytes = serde_json::to_vec(self)?;
        if limit == 0 || bytes.len() <= limit || self.task_records.is_empty() {
            return Ok(bytes);
        }
        // Serialise without the records but keep them in memory: later writes may fit again.
        let records = std::mem::take(&mut self.task_records);
        self.task_records_truncated = true;
        let out = serde_json::to_vec(self);
        self.task_records = records;
        self.task_records_truncated = false;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn terminal_states_are_final() {
        for from in [
            RunStatus::Completed,
            RunStatus::Failed,
            RunStatus::Cancelled,
        ] {
            for to in RunStatus::ALL {
                assert!(!from.can_become(to), "{from} -> {to}");
            }
        }
        assert!(RunStatus::Pending.can_become(RunStatus::Running));
        assert!(RunStatus::Running.can_become(RunStatus::Cancelling));
        assert!(!RunStatus::Cancelling.can_become(RunStatus::Running));
        assert!(!RunStatus::Cancelling.can_become(RunStatus::Completed));
    }

    #[test]
    fn reads_a_python_gateway_snapshot_and_keeps_unknown_fields() {
        let raw = br#"{"run_id":"r1","flow_name":"main","tag":"default","tags":["default"],"tenant_id":null,"api_key_id":null,"status":"PENDING","params":{"x":NaN},"tasks":{},"task_records":{},"start_time":null,"end_time":null,"heartbeat_at":1.5,"updated_at":1.5,"error":null,"future_field":{"a":1}}"#;
        let snap: RunSnapshot = crate::model::json::from_slice(raw).unwrap();
        assert_eq!(snap.status, RunStatus::Pending);
        assert_eq!(snap.params["x"], Value::Null);
        assert_eq!(snap.extra["future_field"], json!({"a": 1}));
        let back: Value = serde_json::to_value(&snap).unwrap();
        assert_eq!(back["future_field"], json!({"a": 1}));
        assert!(back.get("worker_id").is_none());
        assert!(back.get("task_records_truncated").is_none());
    }

    #[test]
    fn compaction_drops_only_task_records() {
        let mut snap = RunSnapshot::pending("r", "f", "default", vec![], Map::new());
        let mut rec = TaskRecord::pending();
        rec.output = Value::String("x".repeat(500));
        snap.task_records.insert("t".into(), rec);
        snap.tasks.insert("t".into(), TaskState::Succeeded);
        let bytes = snap.to_compact_json(200).unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["task_records"], json!({}));
        assert_eq!(v["task_records_truncated"], json!(true));
        assert_eq!(v["tasks"], json!({"t": "SUCCEEDED"}));
    }
}
