//! The worker registry record (`pyoco_workers` KV, key = worker_id).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Stored worker states. `DISCONNECTED` is never stored: readers derive it from the last
/// heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WorkerState {
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

    /// Touches the three heartbeat timestamps and `updated_at`.
    pub fn touch(&mut self) {
        let now = super::now();
        self.last_seen_at = Some(now);
        self.last_heartbeat_at = Some(now);
        self.heartbeat_at = Some(now);
        self.updated_at = Some(now);
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
