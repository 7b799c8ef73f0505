//! `GET /runs/{run_id}/watch`: Server-Sent Events pushed from a KV watch of the run key (no
//! polling). Each `snapshot` event carries `id: <KV revision>`, so a client reconnecting with
//! `Last-Event-ID` resumes after the last revision it saw, without gaps or repeats. Quiet
//! periods get `heartbeat` events every 2 s (the original client gives up after 5 s of
//! silence). The stream ends after the terminal snapshot, when the run is deleted, or after
//! `timeout_sec`.

#[allow(unused_imports)]
use super::openapi::*;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::GatewayState;
use super::auth::Caller;
use super::error::ApiError;
use super::query::QueryParams;
use crate::model::{RunStatus, json as lenient, now};
use crate::store::runs::KeyEvents;

/// Quiet time after which a heartbeat event is sent.
const HEARTBEAT: Duration = Duration::from_secs(2);

struct WatchQuery {
    records: bool,
    since: Option<f64>,
    timeout: Duration,
}

fn parse_query(raw: &Option<String>) -> Result<WatchQuery, ApiError> {
    let mut q = QueryParams::parse(raw);
    let since = q.float("since");
    let timeout = q.int_in("timeout_sec", 1, 600, 60);
    q.check()?;
    Ok(WatchQuery {
        records: q.wants_records(),
        since,
        timeout: Duration::from_secs(timeout as u64),
    })
}

/// The SSE route.
#[utoipa::path(get, path = "/runs/{run_id}/watch",
    params(("run_id" = String, Path), ("include" = Option<Vec<String>>, Query), ("since" = Option<f64>, Query),
        ("timeout_sec" = Option<i64>, Query, minimum = 1, maximum = 600), ("Last-Event-ID" = Option<String>, Header, description = "resume after this revision")),
    responses((status = 200, description = "Server-Sent Events: snapshot and heartbeat", content_type = "text/event-stream", body = Object),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub async fn watch(
    State(state): State<GatewayState>,
    caller: Caller,
    Path(run_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let q = parse_query(&query)?;
    let store = state.store()?;
    let Some(current) = store.runs().get_raw(&run_id).await? else {
        return Err(ApiError::run_not_found());
    };
    // The same tenant rule as GET /runs/{run_id}.
    let doc = lenient::from_slice::<Value>(&current.value).unwrap_or(Value::Null);
    super::runs::visible_to(&caller, &doc)?;
    let resume_after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    // Start at the current revision (so the first event is the current snapshot), or just
    // after the last one the client saw.
    let from = match resume_after {
        Some(seen) => seen + 1,
        None => current.revision,
    };
    let watch = store.runs().watch_from(&run_id, from).await?;
    let (tx, rx) = mpsc::channel::<Event>(16);
    state.spawn(pump(watch, tx, run_id, q));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    let mut response = Sse::new(stream).into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// Forwards KV entries as events until the run is terminal or deleted, the timeout passes, or
/// the client goes away (the channel closes).
async fn pump(mut entries: KeyEvents, tx: mpsc::Sender<Event>, run_id: String, q: WatchQuery) {
    let deadline = tokio::time::Instant::now() + q.timeout;
    loop {
        let next = tokio::select! {
            next = entries.next() => next,
            _ = tokio::time::sleep(HEARTBEAT) => {
                let data = json!({"run_id": run_id, "ts": now()}).to_string();
                if tx.send(Event::default().event("heartbeat").data(data)).await.is_err() {
                    return;
                }
                continue;
            }
            _ = tokio::time::sleep_until(deadline) => return,
            _ = tx.closed() => return,
        };
        let Some(Ok(entry)) = next else { return };
        // A delete or purge ends the stream: the run is gone.
        let Some(value) = &entry.value else { return };
        let Ok(mut snapshot) = lenient::from_slice::<Value>(value) else {
            continue;
        };
        let terminal = snapshot
            .get("status")
            .and_then(Value::as_str)
            .is_some_and(RunStatus::is_terminal_str);
        let updated_at = snapshot
            .get("updated_at")
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        if q.since.is_none_or(|since| updated_at >= since) {
            if !q.records
                && let Value::Object(m) = &mut snapshot
            {
                m.shift_remove("task_records");
                m.shift_remove("task_records_truncated");
            }
            let data = json!({"run_id": run_id, "snapshot": snapshot, "ts": now()}).to_string();
            let event = Event::default()
                .event("snapshot")
                .id(entry.revision.to_string())
                .data(data);
            if tx.send(event).await.is_err() {
                return;
            }
        }
        if terminal {
            return;
        }
    }
}
