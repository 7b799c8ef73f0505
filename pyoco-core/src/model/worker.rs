//! The worker registry record (`pyoco_workers` KV, key = worker_id).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Stored worker states. `DISCONNECTED` is never stored: readers derive it from the last
/// heartbeat ([`effective_state`]). The default is a worker that has just started: IDLE.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WorkerState {
    #[default]
    Idle,
    Running,
    StoppedGraceful,
    Disconnected,
}

impl WorkerState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Idle => "IDLE",
            WorkerState::Running => "RUNNING",
            WorkerState::StoppedGraceful => "STOPPED_GRACEFUL",
            WorkerState::Disconnected => "DISCONNECTED",
        }
    }

    /// Reads a state the way the original does: surrounding blanks and case are ignored.
    pub fn parse(s: &str) -> Option<WorkerState> {
        match s.trim().to_ascii_uppercase().as_str() {
            "IDLE" => Some(WorkerState::Idle),
            "RUNNING" => Some(WorkerState::Running),
            "STOPPED_GRACEFUL" => Some(WorkerState::StoppedGraceful),
            "DISCONNECTED" => Some(WorkerState::Disconnected),
            _ => None,
        }
    }

    /// True while the worker pulls jobs (`RUNNING` or `IDLE`).
    pub fn is_live(self) -> bool {
        matches!(self, WorkerState::Running | WorkerState::Idle)
    }
}

/// `RUNNING`/`IDLE` become `DISCONNECTED` once `last_seen_at` is older than `timeout` (a zero
/// timeout never disconnects); `STOPPED_GRACEFUL` and `DISCONNECTED` stay as stored. The one
/// rule behind `GET /workers`, `GET /runs/{id}`'s `worker_state`, `/metrics` and `/health`.
pub fn effective_state(
    stored: WorkerState,
    last_seen_at: f64,
    now: f64,
    timeout: Duration,
) -> WorkerState {
    let silent = !timeout.is_zero() && now - last_seen_at > timeout.as_secs_f64();
    match stored {
        WorkerState::Running | WorkerState::Idle if silent => WorkerState::Disconnected,
        other => other,
    }
}

/// Same keys as the original, `heartbeat_at` being an alias of `last_heartbeat_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerRecord {
    pub worker_id: String,
    #[serde(default)]
    pub instance_id: String,
    pub state: WorkerState,
    #[serde(default)]
    pub hidden: bool,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub last_seen_at: Option<f64>,
    #[serde(default)]
    pub last_heartbeat_at: Option<f64>,
    #[serde(default)]
    pub heartbeat_at: Option<f64>,
    #[serde(default)]
    pub current_run_id: Option<String>,
    #[serde(default)]
    pub last_run_id: Option<String>,
    #[serde(default)]
    pub last_run_status: Option<String>,
    #[serde(default)]
    pub last_run_started_at: Option<f64>,
    #[serde(default)]
    pub last_run_finished_at: Option<f64>,
    #[serde(default)]
    pub stopped_at: Option<f64>,
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub updated_at: Option<f64>,
    #[serde(default)]
    pub wheel_sync: Value,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl WorkerRecord {
    /// The start-up record: IDLE, `last_run_*` reset, `hidden` and `wheel_sync` carried over.
    pub fn starting(
        worker_id: &str,
        instance_id: &str,
        tags: &[String],
        previous: Option<&WorkerRecord>,
    ) -> WorkerRecord {
        let now = super::now();
        WorkerRecord {
            worker_id: worker_id.to_string(),
            instance_id: instance_id.to_string(),
            state: WorkerState::Idle,
            hidden: previous.is_some_and(|p| p.hidden),
            tags: tags.to_vec(),
            last_seen_at: Some(now),
            last_heartbeat_at: Some(now),
            heartbeat_at: Some(now),
            current_run_id: None,
            last_run_id: None,
            last_run_status: None,
            last_run_started_at: None,
            last_run_finished_at: None,
            stopped_at: None,
            stop_reason: None,
            updated_at: Some(now),
            wheel_sync: previous
                .map(|p| p.wheel_sync.clone())
                .filter(|w| !w.is_null())
                .unwrap_or_else(disabled_wheel_sync),
            extra: Map::new(),
        }
    }

    /// The state readers show at `now`: [`effective_state`] from the last time the worker
    /// was seen (falling back to its heartbeats, as the original does).
    pub fn effective_state(&self, now: f64, timeout: Duration) -> WorkerState {
        let last_seen = self
            .last_seen_at
            .or(self.last_heartbeat_at)
            .or(self.heartbeat_at)
            .unwrap_or(0.0);
        effective_state(self.state, last_seen, now, timeout)
    }

    /// Touches the three heartbeat timestamps and `updated_at`.
    pub fn touch(&mut self) {
        let now = super::now();
        self.last_seen_at = Some(now);
        self.last_heartbeat_at = Some(now);
        self.heartbeat_at = Some(now);
        self.updated_at = Some(now);
    }
}

/// Keys served as stored (`null` when missing), in the original's order.
const OPTIONAL_KEYS: &[&str] = &[
    "current_run_id",
    "last_run_id",
    "last_run_status",
    "last_run_started_at",
    "last_run_finished_at",
    "stopped_at",
    "stop_reason",
];

/// A registry record as every reader sees it: the one lenient decoder of the worker document.
/// Records written by a Python worker and by pyoco look the same afterwards, so `GET /workers`,
/// `GET /runs/{id}`'s `worker_state`, `/metrics` and the worker's own read-modify-write agree.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerView {
    /// The normalised document, as served by `GET /workers`.
    pub doc: Map<String, Value>,
    /// Effective state: `RUNNING`/`IDLE` become `DISCONNECTED` when the worker went silent.
    pub state: WorkerState,
    pub hidden: bool,
    pub tags: Vec<String>,
    pub last_seen_at: f64,
}

impl WorkerView {
    /// True while the worker pulls jobs (effective `RUNNING` or `IDLE`).
    pub fn is_live(&self) -> bool {
        self.state.is_live()
    }

    /// Decodes stored bytes (Python's NaN/Infinity accepted); `None` when they are not a JSON
    /// object. A zero `timeout` keeps the stored state.
    pub fn decode(key: &str, bytes: &[u8], now: f64, timeout: Duration) -> Option<WorkerView> {
        match super::json::from_slice::<Value>(bytes) {
            Ok(Value::Object(raw)) => Some(WorkerView::from_stored(key, raw, now, timeout)),
            _ => None,
        }
    }

    /// Normalises a stored record like the original: an unknown or missing state is `IDLE`,
    /// missing timestamps fall back to `heartbeat_at`, `heartbeat_at` is `last_heartbeat_at`,
    /// every key of the record is present, and unknown keys are kept after them.
    pub fn from_stored(
        key: &str,
        mut raw: Map<String, Value>,
        now: f64,
        timeout: Duration,
    ) -> WorkerView {
        let number = |v: Option<&Value>| v.and_then(Value::as_f64);
        let legacy_heartbeat = number(raw.get("heartbeat_at"));
        let last_heartbeat_at = number(raw.get("last_heartbeat_at")).or(legacy_heartbeat);
        let last_seen_at = number(raw.get("last_seen_at")).or(last_heartbeat_at);
        let updated_at = number(raw.get("updated_at")).or(last_seen_at);
        let stored = raw
            .get("state")
            .and_then(Value::as_str)
            .and_then(WorkerState::parse)
            .unwrap_or(WorkerState::Idle);
        let last_seen = last_seen_at.unwrap_or(0.0);
        let state = effective_state(stored, last_seen, now, timeout);
        let hidden = raw.get("hidden").is_some_and(truthy);
        let tags: Vec<String> = match raw.get("tags") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        let mut doc = Map::new();
        let worker_id = match raw.shift_remove("worker_id") {
            Some(Value::String(id)) if !id.is_empty() => id,
            _ => key.to_string(),
        };
        doc.insert("worker_id".into(), json!(worker_id));
        let instance_id = match raw.shift_remove("instance_id") {
            Some(Value::String(s)) => s,
            _ => String::new(),
        };
        doc.insert("instance_id".into(), json!(instance_id));
        doc.insert("state".into(), json!(state.as_str()));
        doc.insert("hidden".into(), json!(hidden));
        doc.insert("tags".into(), json!(tags));
        doc.insert("last_seen_at".into(), json!(last_seen_at));
        doc.insert("last_heartbeat_at".into(), json!(last_heartbeat_at));
        doc.insert("heartbeat_at".into(), json!(last_heartbeat_at));
        for key in OPTIONAL_KEYS {
            doc.insert((*key).into(), raw.shift_remove(*key).unwrap_or(Value::Null));
        }
        doc.insert("updated_at".into(), json!(updated_at));
        let wheel_sync = match raw.shift_remove("wheel_sync") {
            Some(Value::Object(m)) => Value::Object(m),
            _ => disabled_wheel_sync(),
        };
        doc.insert("wheel_sync".into(), wheel_sync);
        for (k, v) in raw {
            if !doc.contains_key(&k) {
                doc.insert(k, v);
            }
        }
        WorkerView {
            doc,
            state,
            hidden,
            tags,
            last_seen_at: last_seen,
        }
    }

    /// The typed record, for read-modify-write. Optional keys of a type the record cannot hold
    /// (a Python writer's oddity) read as missing.
    pub fn into_record(self) -> WorkerRecord {
        let mut doc = self.doc;
        for key in OPTIONAL_KEYS {
            let fits = match doc.get(*key) {
                Some(Value::Null) | None => true,
                Some(Value::String(_)) => !key.ends_with("_at"),
                Some(Value::Number(_)) => key.ends_with("_at"),
                Some(_) => false,
            };
            if !fits {
                doc.insert((*key).into(), Value::Null);
            }
        }
        let worker_id = doc
            .get("worker_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        serde_json::from_value(Value::Object(doc)).unwrap_or_else(|e| {
            // Unreachable for a normalised document; keep the id and start afresh.
            tracing::warn!(worker_id = %worker_id, error = %e, "worker record not decodable; using a fresh one");
            WorkerRecord::starting(&worker_id, "", &[], None)
        })
    }
}

/// Python truthiness, which is how the original reads a stored `hidden`.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

/// The `wheel_sync` object of a worker that does not sync wheels.
pub fn disabled_wheel_sync() -> Value {
    serde_json::json!({
        "enabled": false, "last_result": "disabled", "last_attempt_at": null,
        "last_success_at": null, "last_synced_at": null, "last_error": null,
        "selected_count": 0, "updated_count": 0, "removed_count": 0,
        "skipped_incompatible_count": 0, "selected_wheels": [], "updated_wheels": [],
        "removed_wheels": [], "skipped_incompatible": [], "installed_wheels": []
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(20);

    #[test]
    fn silent_running_and_idle_workers_are_disconnected() {
        let at = |stored, last_seen| effective_state(stored, last_seen, 100.0, TIMEOUT);
        assert_eq!(at(WorkerState::Idle, 85.0), WorkerState::Idle);
        assert_eq!(at(WorkerState::Running, 79.0), WorkerState::Disconnected);
        assert_eq!(at(WorkerState::Idle, 79.0), WorkerState::Disconnected);
        assert_eq!(
            at(WorkerState::StoppedGraceful, 0.0),
            WorkerState::StoppedGraceful
        );
        assert_eq!(
            effective_state(WorkerState::Idle, 0.0, 100.0, Duration::ZERO),
            WorkerState::Idle,
            "a zero timeout never disconnects"
        );
    }

    #[test]
    fn normalises_python_records_and_keeps_unknown_keys() {
        let raw = json!({"state": "weird", "heartbeat_at": 990.0, "custom": 1, "hidden": 1});
        let Value::Object(raw) = raw else {
            unreachable!()
        };
        let w = WorkerView::from_stored("w9", raw, 1000.0, TIMEOUT);
        assert_eq!(w.state, WorkerState::Idle);
        assert!(w.hidden);
        assert_eq!(w.doc["worker_id"], "w9");
        assert_eq!(w.doc["last_seen_at"], 990.0);
        assert_eq!(w.doc["last_heartbeat_at"], 990.0);
        assert_eq!(w.doc["heartbeat_at"], 990.0);
        assert_eq!(w.doc["custom"], 1);
        assert_eq!(w.doc["wheel_sync"]["last_result"], "disabled");
        let keys: Vec<&str> = w.doc.keys().map(String::as_str).collect();
        assert_eq!(&keys[..3], ["worker_id", "instance_id", "state"]);
        assert_eq!(keys.last(), Some(&"custom"));
    }

    #[test]
    fn the_typed_record_reads_what_the_served_view_reads() {
        // A Python record with an unknown state, a truthy hidden and an odd optional key:
        // the strict serde decoder rejected it (and lost `hidden`); the view and the record
        // now agree.
        let bytes = br#"{"state": " running ", "hidden": 1, "last_seen_at": 990.0,
            "last_run_status": 3, "tags": ["a", 1], "custom": true}"#;
        let view = WorkerView::decode("w1", bytes, 1000.0, Duration::ZERO).unwrap();
        let record = view.clone().into_record();
        assert_eq!(record.worker_id, "w1");
        assert_eq!(record.state, WorkerState::Running);
        assert_eq!(view.state, record.state);
        assert!(record.hidden);
        assert_eq!(record.tags, ["a"]);
        assert_eq!(record.last_run_status, None);
        assert_eq!(
            (record.last_seen_at, record.heartbeat_at),
            (Some(990.0), None)
        );
        assert_eq!(record.extra["custom"], true);
        assert_eq!(
            record.effective_state(1000.0, Duration::from_secs(5)),
            WorkerState::Disconnected
        );
        assert!(WorkerView::decode("w1", b"[1]", 0.0, TIMEOUT).is_none());
        assert!(WorkerView::decode("w1", b"{nope", 0.0, TIMEOUT).is_none());
    }

    #[test]
    fn a_written_record_reads_back_unchanged() {
        let record = WorkerRecord::starting("w2", "i", &["gpu".into()], None);
        let bytes = serde_json::to_vec(&record).unwrap();
        let back = WorkerView::decode("w2", &bytes, 0.0, Duration::ZERO)
            .unwrap()
            .into_record();
        assert_eq!(back, record);
    }
}
