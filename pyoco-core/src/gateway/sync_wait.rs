//! Synchronous submits: `POST /runs?wait_sec=N` (and `/runs/yaml`) hold the request open until
//! the run ends, for at most `N` seconds (capped by `PYOCO_SYNC_WAIT_MAX_SEC`). A run that ends
//! in time is answered 200 with its terminal snapshot; one that does not, 202 with its run id,
//! current status and where to watch it. Without `wait_sec` the submit answers as the
//! original does (200, PENDING).
//!
//! The wait is pushed, never polled: it subscribes to the gateway's [`super::fanout`] hub (the
//! one KV watch of the runs bucket that also feeds SSE) before it reads the current snapshot,
//! so no write falls between the two. A waiting submit takes one watcher place; when every
//! place is taken it answers 202 at once (the client can watch or poll instead).

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::GatewayState;
use super::error::{ApiError, problem};
use super::fanout::Received;
use super::openapi::SubmitResponse;
use super::query::QueryParams;
use crate::model::{RunStatus, json as lenient};

/// What the submit's query asked for.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct SyncWait {
    /// `wait_sec`, capped; `None` answers at once as the original.
    wait: Option<Duration>,
    /// `include=records`: keep `task_records` in a terminal answer.
    records: bool,
}

impl SyncWait {
    /// Reads `wait_sec` (a number ≥ 0, capped at `max`) and `include` from the query.
    pub(super) fn parse(raw: &Option<String>, max: Duration) -> Result<SyncWait, ApiError> {
        let mut q = QueryParams::parse(raw);
        let wait = q.float("wait_sec");
        let records = q.wants_records();
        q.check()?;
        let wait = match wait {
            Some(w) if w < 0.0 => {
                return Err(ApiError::validation(vec![problem(
                    "greater_than_equal",
                    &[Value::from("query"), Value::from("wait_sec")],
                    "Input should be greater than or equal to 0",
                    Value::from(w),
                    Some(serde_json::json!({"ge": 0})),
                )]));
            }
            // Capped before converting: 1e300 seconds is no Duration.
            Some(w) => Some(Duration::try_from_secs_f64(w).map_or(max, |w| w.min(max))),
            None => None,
        };
        Ok(SyncWait { wait, records })
    }

    /// The answer to a submit of `run_id`: at once without `wait_sec`, else after the wait.
    pub(super) async fn answer(self, state: &GatewayState, run_id: String) -> Response {
        let Some(wait) = self.wait else {
            return Json(SubmitResponse::pending(run_id)).into_response();
        };
        match wait_for_end(state, &run_id, wait).await {
            Ended::Terminal(mut doc) => {
                super::runs::present(state, &mut doc, self.records).await;
                Json(doc).into_response()
            }
            Ended::Still(status) => {
                let location = format!("/runs/{run_id}");
                let body = SubmitResponse {
                    watch_url: Some(format!("{location}/watch")),
                    status,
                    ..SubmitResponse::pending(run_id)
                };
                let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
                if let Ok(v) = HeaderValue::from_str(&location) {
                    response.headers_mut().insert(header::LOCATION, v);
                }
                response
            }
        }
    }
}

enum Ended {
    /// The terminal snapshot.
    Terminal(Value),
    /// Not ended in time; its last status seen.
    Still(String),
}

/// Notes the status of `doc`; true when it is terminal.
fn is_terminal(doc: &Value, status: &mut String) -> bool {
    match doc.get("status").and_then(Value::as_str) {
        Some(s) => {
            s.clone_into(status);
            RunStatus::is_terminal_str(s)
        }
        None => false,
    }
}

/// Waits up to `wait` for run `run_id` to reach a terminal status.
async fn wait_for_end(state: &GatewayState, run_id: &str, wait: Duration) -> Ended {
    let deadline = tokio::time::Instant::now() + wait;
    let mut status = RunStatus::Pending.as_str().to_string();
    let Ok(store) = state.store() else {
        return Ended::Still(status);
    };
    let runs = store.runs();
    // Subscribe first, then read: a write between the two still reaches the feed.
    let feed = state.hub().subscribe(run_id);
    if let Ok(Some(current)) = runs.get_json(run_id).await
        && is_terminal(&current.value, &mut status)
    {
        return Ended::Terminal(current.value);
    }
    let Ok(mut feed) = feed else {
        return Ended::Still(status);
    };
    let stopping = state.stopping();
    loop {
        let doc = tokio::select! {
            received = feed.recv() => match received {
                Received::Update(update) => update
                    .value
                    .as_deref()
                    .and_then(|v| lenient::from_slice::<Value>(v).ok()),
                // Fell behind: the current snapshot has everything the skipped writes had.
                Received::Lagged => runs.get_json(run_id).await.ok().flatten().map(|v| v.value),
                Received::Closed => break,
            },
            _ = tokio::time::sleep_until(deadline) => break,
            _ = stopping.cancelled() => break,
        };
        if let Some(doc) = doc
            && is_terminal(&doc, &mut status)
        {
            return Ended::Terminal(doc);
        }
    }
    Ended::Still(status)
}
