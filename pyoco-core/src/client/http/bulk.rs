//! Bulk operations: cancel every run matching a filter, replay a run.

use serde_json::{Map, Value, json};

use super::{HttpClient, HttpError, segment};

/// The filter of [`HttpClient::cancel_runs`]: every given criterion must match; at least one
/// must be given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CancelFilter {
    pub status: Option<String>,
    pub flow: Option<String>,
    pub tag: Option<String>,
    pub schedule_id: Option<String>,
    pub run_ids: Option<Vec<String>>,
    /// Only runs last updated before this Unix time.
    pub updated_before: Option<f64>,
}

impl HttpClient {
    /// `POST /runs/cancel` (pyoco only): cancels every matching run the caller may see.
    /// Returns `{"count", "run_ids", "truncated"}`; safe to repeat.
    pub async fn cancel_runs(&self, filter: &CancelFilter) -> Result<Value, HttpError> {
        let mut body = Map::new();
        for (key, value) in [
            ("status", &filter.status),
            ("flow", &filter.flow),
            ("tag", &filter.tag),
            ("schedule_id", &filter.schedule_id),
        ] {
            if let Some(v) = value {
                body.insert(key.into(), json!(v));
            }
        }
        if let Some(ids) = &filter.run_ids {
            body.insert("run_ids".into(), json!(ids));
        }
        if let Some(t) = filter.updated_before {
            body.insert("updated_before".into(), json!(t));
        }
        let body = Value::Object(body);
        self.json(reqwest::Method::POST, "/runs/cancel", |r| r.json(&body))
            .await
    }

    /// `POST /runs/{run_id}/replay` (pyoco only): a new run of the same flow, params and tag.
    /// Returns `{"run_id", "status": "PENDING", "replay_of"}`.
    pub async fn replay_run(&self, run_id: &str) -> Result<Value, HttpError> {
        let path = format!("/runs/{}/replay", segment(run_id));
        self.json(reqwest::Method::POST, &path, |r| r).await
    }
}
