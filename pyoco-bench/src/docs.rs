//! Realistic run snapshots, built with pyoco's own wire types: the PENDING, RUNNING and
//! COMPLETED documents of the benchmark's two-task flow (`a >> b`, `pyoco:echo`). The floor
//! writes them, and the list benchmark fills the runs bucket with COMPLETED/FAILED ones, so
//! both move documents of the size pyoco really writes.

use pyoco::model::{RunSnapshot, RunStatus, TaskRecord, TaskState, now};
use serde_json::{Map, Value, json};

/// The benchmark flow, served by the workers from `--flows-dir` as flow `bench`.
pub const FLOW_YAML: &str = "\
# pyoco-bench: a trivial two-task native flow.
flow:
  graph: a >> b
tasks:
  a: {callable: \"pyoco:echo\", inputs: {value: 1}}
  b: {callable: \"pyoco:echo\", inputs: {value: \"$node.a.output\"}}
";

/// The flow name the benchmark submits.
pub const FLOW_NAME: &str = "bench";

/// A snapshot of a `bench` run in `status`, as a worker would have written it.
pub fn snapshot(run_id: &str, status: RunStatus, updated_at: f64) -> RunSnapshot {
    let tag = "default";
    let mut s = RunSnapshot::pending(run_id, FLOW_NAME, tag, vec![tag.into()], Map::new());
    s.updated_at = Some(updated_at);
    s.heartbeat_at = Some(updated_at);
    if status == RunStatus::Pending {
        return s;
    }
    s.status = status;
    s.worker_id = Some("bench-w1".into());
    s.start_time = Some(updated_at - 0.002);
    s.spawn_depth = Some(0);
    let finished = status.is_terminal();
    for (name, inputs) in [("a", json!({"value": 1})), ("b", json!({"value": 1}))] {
        let mut rec = TaskRecord::pending();
        if finished {
            let failed = status == RunStatus::Failed && name == "b";
            rec.state = if failed {
                TaskState::Failed
            } else {
                TaskState::Succeeded
            };
            rec.started_at = Some(updated_at - 0.001);
            rec.ended_at = Some(updated_at);
            rec.duration_ms = Some(0.05);
            rec.inputs = inputs.as_object().cloned().unwrap_or_default();
            rec.output = if failed { Value::Null } else { json!(1) };
            if failed {
                rec.error = Some("bench: simulated failure".into());
            }
        }
        s.tasks.insert(name.into(), rec.state);
        s.task_records.insert(name.into(), rec);
    }
    if finished {
        s.end_time = Some(updated_at);
    }
    if status == RunStatus::Failed {
        s.error = Some("bench: simulated failure".into());
    }
    s
}

/// The serialized documents of one run's three writes.
#[derive(Debug, Clone)]
pub struct RunDocs {
    pub pending: Vec<u8>,
    pub running: Vec<u8>,
    pub completed: Vec<u8>,
}

impl RunDocs {
    pub fn new() -> anyhow::Result<RunDocs> {
        let id = pyoco::model::new_run_id();
        let t = now();
        Ok(RunDocs {
            pending: serde_json::to_vec(&snapshot(&id, RunStatus::Pending, t))?,
            running: serde_json::to_vec(&snapshot(&id, RunStatus::Running, t))?,
            completed: serde_json::to_vec(&snapshot(&id, RunStatus::Completed, t))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_read_back_as_snapshots() {
        let docs = RunDocs::new().unwrap();
        for (bytes, status) in [
            (&docs.pending, RunStatus::Pending),
            (&docs.running, RunStatus::Running),
            (&docs.completed, RunStatus::Completed),
        ] {
            let s: RunSnapshot = serde_json::from_slice(bytes).unwrap();
            assert_eq!(s.status, status);
        }
        assert!(docs.completed.len() > docs.pending.len());
        pyoco::parse_flow_yaml(FLOW_YAML.as_bytes()).unwrap();
    }
}
