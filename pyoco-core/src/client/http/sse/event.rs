//! The typed events of a run watch.

use serde_json::{Value, json};

use crate::model::RunStatus;

/// One event of a run watch.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum WatchEvent {
    /// A new version of the run snapshot (the first one is the current snapshot).
    Snapshot {
        run_id: String,
        /// The stored run document (without `task_records` unless asked for).
        snapshot: Value,
        /// The KV revision (the SSE `id:`); `None` from servers that send no ids (the Python
        /// original).
        revision: Option<u64>,
        /// When the gateway sent the event (float Unix seconds).
        ts: f64,
    },
    /// Nothing changed for a while; the connection is alive.
    Heartbeat { run_id: String, ts: f64 },
}

impl WatchEvent {
    /// The SSE event name: `snapshot` or `heartbeat`.
    pub fn name(&self) -> &'static str {
        match self {
            WatchEvent::Snapshot { .. } => "snapshot",
            WatchEvent::Heartbeat { .. } => "heartbeat",
        }
    }

    /// The run the event is about.
    pub fn run_id(&self) -> &str {
        match self {
            WatchEvent::Snapshot { run_id, .. } | WatchEvent::Heartbeat { run_id, .. } => run_id,
        }
    }

    /// When the gateway sent the event.
    pub fn ts(&self) -> f64 {
        match self {
            WatchEvent::Snapshot { ts, .. } | WatchEvent::Heartbeat { ts, .. } => *ts,
        }
    }

    /// The snapshot of a `snapshot` event.
    pub fn snapshot(&self) -> Option<&Value> {
        match self {
            WatchEvent::Snapshot { snapshot, .. } => Some(snapshot),
            WatchEvent::Heartbeat { .. } => None,
        }
    }

    /// The run status carried by a `snapshot` event.
    pub fn status(&self) -> Option<&str> {
        self.snapshot()?.get("status")?.as_str()
    }

    /// `true` for a snapshot whose status is COMPLETED, FAILED or CANCELLED.
    pub fn is_terminal(&self) -> bool {
        self.status().is_some_and(RunStatus::is_terminal_str)
    }

    /// The event as the original's client yields it: `{"event": <name>, "data": {"run_id",
    /// "snapshot", "ts"}}` (no `snapshot` for heartbeats).
    pub fn to_json(&self) -> Value {
        let data = match self {
            WatchEvent::Snapshot {
                run_id,
                snapshot,
                ts,
                ..
            } => json!({"run_id": run_id, "snapshot": snapshot, "ts": ts}),
            WatchEvent::Heartbeat { run_id, ts } => json!({"run_id": run_id, "ts": ts}),
        };
        json!({"event": self.name(), "data": data})
    }
}
