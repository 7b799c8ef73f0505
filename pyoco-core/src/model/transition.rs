//! The worker's status transitions on a run snapshot, as pure functions: what a worker's
//! write does to the freshest stored document (the compare-and-set loop in `store::runs`
//! calls it once per attempt), and the cheap status peek readers use on raw bytes.

use indexmap::IndexMap;
use serde::Deserialize;

use super::{Job, RunSnapshot, RunStatus, TaskRecord, TaskState};

/// What an update closure decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// Write the modified document.
    Write,
    /// Leave the stored document as it is.
    Keep,
}

/// One write a worker makes to a run it runs: the claim (RUNNING), a progress or heartbeat
/// write (RUNNING), the terminal write, or a give-up (FAILED). Borrowed, so building one per
/// compare-and-set attempt costs nothing.
#[derive(Debug, Clone, Copy)]
pub struct WorkerWrite<'a> {
    pub job: &'a Job,
    pub worker_id: &'a str,
    /// The engine's task states; empty keeps the stored ones (a give-up before any task ran).
    pub tasks: &'a IndexMap<String, TaskState>,
    pub task_records: &'a IndexMap<String, TaskRecord>,
    /// The status the worker wants; a cancel the gateway wrote may turn it (see [`target`]).
    pub status: RunStatus,
    /// Set on the claim and kept after; `None` leaves the stored one.
    pub start_time: Option<f64>,
    pub end_time: Option<f64>,
    pub error: Option<&'a str>,
}

/// The status a worker's write of `wanted` really makes, given the stored document, or
/// `None` when the write must not be made. Terminal runs are never touched; a cancel turns
/// RUNNING into CANCELLING and a completion into CANCELLED; every other move must be in the
/// transition table ([`RunStatus::can_become`]).
pub fn target(doc: &RunSnapshot, wanted: RunStatus) -> Option<RunStatus> {
    if doc.status.is_terminal() {
        return None;
    }
    let target = match wanted {
        RunStatus::Running if doc.cancel_requested() => RunStatus::Cancelling,
        RunStatus::Completed if doc.cancel_requested() => RunStatus::Cancelled,
        other => other,
    };
    (doc.status == target || doc.status.can_become(target)).then_some(target)
}

impl WorkerWrite<'_> {
    /// Applies the worker's view to the freshest stored document at `now`. Gateway-owned
    /// fields (cancel, approval, unknown keys) are kept; see [`target`] for the status.
    pub fn apply(&self, doc: &mut RunSnapshot, now: f64) -> Change {
        let Some(target) = target(doc, self.status) else {
            return Change::Keep;
        };
        let job = self.job;
        doc.flow_name = job.flow_name.clone();
        doc.tag = Some(job.tag.clone());
        doc.tags = job.effective_tags();
        doc.tenant_id = job.tenant_id.clone().or(doc.tenant_id.take());
        doc.api_key_id = job.api_key_id.clone().or(doc.api_key_id.take());
        if job.workflow_yaml_sha256.is_some() {
            doc.workflow_yaml_sha256 = job.workflow_yaml_sha256.clone();
            doc.workflow_yaml_bytes = job.workflow_yaml_bytes;
        }
        if let Some(schedule_id) = &job.schedule_id {
            doc.schedule_id = schedule_id.clone();
        }
        doc.spawn_depth.get_or_insert(0);
        doc.params = job.params.clone();
        doc.status = target;
        if !self.tasks.is_empty() {
            doc.tasks = self.tasks.clone();
            doc.task_records = self.task_records.clone();
        }
        doc.worker_id = Some(self.worker_id.to_string());
        if self.start_time.is_some() {
            doc.start_time = self.start_time;
        }
        doc.end_time = self.end_time;
        doc.error = self.error.map(str::to_string);
        doc.heartbeat_at = Some(now);
        doc.updated_at = Some(now);
        Change::Write
    }
}

/// A cancel request on `doc` at `now` (the gateway's cancel, and a parent's cancel of its
/// bundle children): PENDING_APPROVAL and never-claimed PENDING runs are CANCELLED at once
/// (nothing runs), others become CANCELLING for their worker to stop; the first
/// `cancel_requested_at` and `cancel_requested_by` are kept; terminal runs are left alone.
pub fn request_cancel(doc: &mut RunSnapshot, now: f64, requested_by: Option<&str>) -> Change {
    match doc.status {
        s if s.is_terminal() => return Change::Keep,
        RunStatus::PendingApproval => {
            doc.status = RunStatus::Cancelled;
            doc.end_time = Some(now);
        }
        // Never claimed by a worker: nothing is running, so nothing has to stop.
        RunStatus::Pending if doc.worker_id.is_none() && doc.start_time.is_none() => {
            doc.status = RunStatus::Cancelled;
            doc.end_time = Some(now);
            doc.cancel_requested_at.get_or_insert(now);
        }
        _ => {
            doc.status = RunStatus::Cancelling;
            doc.cancel_requested_at.get_or_insert(now);
        }
    }
    if doc.cancel_requested_by.is_none() {
        doc.cancel_requested_by = requested_by.map(str::to_string);
    }
    doc.updated_at = Some(now);
    Change::Write
}

/// The few fields a reader checks in a stored snapshot without parsing all of it: the status
/// and whether a cancel was asked for. Lenient: an unknown status reads as `None`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct StatusPeek {
    #[serde(default)]
    cancel_requested_at: Option<f64>,
    #[serde(default, deserialize_with = "lenient_status")]
    status: Option<RunStatus>,
}

fn lenient_status<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<RunStatus>, D::Error> {
    let raw = Option::<serde_json::Value>::deserialize(d)?;
    Ok(raw
        .as_ref()
        .and_then(|v| v.as_str())
        .and_then(RunStatus::parse))
}

impl StatusPeek {
    /// Reads the fields from raw snapshot bytes (Python's NaN/Infinity accepted); `None` when
    /// the bytes are not a JSON object.
    pub fn decode(bytes: &[u8]) -> Option<StatusPeek> {
        super::json::from_slice(bytes).ok()
    }

    pub fn status(&self) -> Option<RunStatus> {
        self.status
    }

    /// The stored status is terminal.
    pub fn is_terminal(&self) -> bool {
        self.status.is_some_and(RunStatus::is_terminal)
    }

    /// The same rule as [`RunSnapshot::cancel_requested`].
    pub fn cancel_requested(&self) -> bool {
        self.cancel_requested_at.is_some()
            || matches!(
                self.status,
                Some(RunStatus::Cancelling | RunStatus::Cancelled)
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, json};

    fn job() -> Job {
        Job::decode(
            br#"{"run_id":"r1","flow_name":"main","tag":"gpu","params":{"x":1},"tenant_id":"t1"}"#,
        )
        .unwrap()
    }

    fn doc(status: RunStatus, cancel: bool) -> RunSnapshot {
        let mut d = RunSnapshot::pending("r1", "main", "gpu", vec![], Map::new());
        d.status = status;
        if cancel {
            d.cancel_requested_at = Some(5.0);
        }
        d
    }

    fn write<'a>(
        job: &'a Job,
        tasks: &'a IndexMap<String, TaskState>,
        records: &'a IndexMap<String, TaskRecord>,
        status: RunStatus,
    ) -> WorkerWrite<'a> {
        WorkerWrite {
            job,
            worker_id: "w1",
            tasks,
            task_records: records,
            status,
            start_time: Some(10.0),
            end_time: None,
            error: None,
        }
    }

    #[test]
    fn targets_follow_the_table_and_the_cancel_rule() {
        use RunStatus::*;
        let cases = [
            // (stored, cancel asked, wanted, result)
            (Pending, false, Running, Some(Running)),
            (Running, false, Running, Some(Running)),
            (Running, false, Completed, Some(Completed)),
            (Running, false, Failed, Some(Failed)),
            (Pending, false, Failed, Some(Failed)),
            (Pending, true, Cancelled, Some(Cancelled)),
            (Pending, true, Running, Some(Cancelling)),
            (Running, true, Running, Some(Cancelling)),
            (Running, true, Completed, Some(Cancelled)),
            (Cancelling, true, Running, Some(Cancelling)),
            (Cancelling, true, Completed, Some(Cancelled)),
            (Cancelling, true, Failed, Some(Failed)),
            (PendingApproval, false, Running, None),
            (Completed, false, Running, None),
            (Failed, false, Completed, None),
            (Cancelled, true, Cancelled, None),
        ];
        for (stored, cancel, wanted, expected) in cases {
            assert_eq!(
                target(&doc(stored, cancel), wanted),
                expected,
                "{stored} (cancel {cancel}) + {wanted}"
            );
        }
    }

    #[test]
    fn a_claim_writes_the_job_and_the_worker() {
        let (job, tasks, records) = (job(), IndexMap::new(), IndexMap::new());
        let mut d = doc(RunStatus::Pending, false);
        d.tenant_id = None;
        assert_eq!(
            write(&job, &tasks, &records, RunStatus::Running).apply(&mut d, 42.0),
            Change::Write
        );
        assert_eq!(d.status, RunStatus::Running);
        assert_eq!(d.worker_id.as_deref(), Some("w1"));
        assert_eq!(d.tag.as_deref(), Some("gpu"));
        assert_eq!(d.tags, ["gpu"]);
        assert_eq!(d.tenant_id.as_deref(), Some("t1"));
        assert_eq!(d.params["x"], json!(1));
        assert_eq!(d.spawn_depth, Some(0));
        assert_eq!((d.start_time, d.end_time), (Some(10.0), None));
        assert_eq!((d.heartbeat_at, d.updated_at), (Some(42.0), Some(42.0)));
    }

    #[test]
    fn task_states_replace_the_stored_ones_only_when_known() {
        let job = job();
        let records = IndexMap::new();
        let mut d = doc(RunStatus::Running, false);
        d.tasks.insert("a".into(), TaskState::Succeeded);
        let empty = IndexMap::new();
        write(&job, &empty, &records, RunStatus::Failed).apply(&mut d, 1.0);
        assert_eq!(
            d.tasks["a"],
            TaskState::Succeeded,
            "a give-up keeps recorded tasks"
        );
        let mut d = doc(RunStatus::Running, false);
        let tasks = IndexMap::from([("b".to_string(), TaskState::Running)]);
        write(&job, &tasks, &records, RunStatus::Running).apply(&mut d, 1.0);
        assert_eq!(d.tasks, tasks);
    }

    #[test]
    fn a_terminal_or_illegal_write_changes_nothing() {
        let (job, tasks, records) = (job(), IndexMap::new(), IndexMap::new());
        for stored in [
            RunStatus::Completed,
            RunStatus::Failed,
            RunStatus::Cancelled,
            RunStatus::PendingApproval,
        ] {
            let mut d = doc(stored, false);
            let before = d.clone();
            let w = write(&job, &tasks, &records, RunStatus::Running);
            assert_eq!(w.apply(&mut d, 1.0), Change::Keep, "{stored}");
            assert_eq!(d, before, "{stored}");
        }
    }

    #[test]
    fn a_cancelled_completion_ends_cancelled_with_the_gateways_fields() {
        let (job, tasks, records) = (job(), IndexMap::new(), IndexMap::new());
        let mut d = doc(RunStatus::Running, true);
        d.cancel_requested_by = Some("alice".into());
        let mut w = write(&job, &tasks, &records, RunStatus::Completed);
        w.end_time = Some(11.0);
        w.error = Some("warning");
        assert_eq!(w.apply(&mut d, 12.0), Change::Write);
        assert_eq!(d.status, RunStatus::Cancelled);
        assert_eq!(d.cancel_requested_by.as_deref(), Some("alice"));
        assert_eq!(
            (d.end_time, d.error.as_deref()),
            (Some(11.0), Some("warning"))
        );
    }

    #[test]
    fn the_peek_reads_status_and_cancel_leniently() {
        let peek = |s: &str| StatusPeek::decode(s.as_bytes()).unwrap();
        assert!(peek(r#"{"status":"COMPLETED","x":NaN}"#).is_terminal());
        assert!(!peek(r#"{"status":"RUNNING"}"#).is_terminal());
        assert!(!peek(r#"{"status":"weird"}"#).is_terminal());
        assert!(!peek(r#"{"status":3}"#).is_terminal());
        assert!(peek(r#"{"status":"RUNNING","cancel_requested_at":1.0}"#).cancel_requested());
        assert!(peek(r#"{"status":"CANCELLING"}"#).cancel_requested());
        assert!(!peek(r#"{}"#).cancel_requested());
        assert!(StatusPeek::decode(b"nope").is_none());
        assert!(RunStatus::is_terminal_str("CANCELLED"));
        assert!(!RunStatus::is_terminal_str("CANCELLING"));
        assert!(!RunStatus::is_terminal_str("completed"));
    }
}
