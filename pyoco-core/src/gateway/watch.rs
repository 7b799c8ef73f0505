//! `GET /runs/{run_id}/watch`: Server-Sent Events pushed from the gateway's one KV watch of the
//! runs bucket through the [`super::fanout`] hub (no polling, no NATS consumer per watcher). Each `snapshot` event carries `id: <KV revision>`, so a client reconnecting with
//! `Last-Event-ID` resumes after the last revision it saw, without gaps or repeats. Quiet
//! periods get `heartbeat` events every 2 s (the original client gives up after 5 s of
//! silence). The stream ends after the terminal snapshot, when the run is deleted, or after
//! `timeout_sec`.

#[allow(unused_imports)]
use super::openapi::*;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::GatewayState;
use super::auth::Caller;
use super::error::ApiError;
use super::fanout::{Received, Subscription, Update};
use super::query::QueryParams;
use crate::error_code::ErrorCode;
use crate::model::{json as lenient, now};
use crate::store::RunStore;

/// Quiet time after which a heartbeat event is sent.
const HEARTBEAT: Duration = Duration::from_secs(2);

/// `Retry-After` when every watcher place is taken.
const RETRY_WHEN_FULL: Duration = Duration::from_secs(2);

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
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, description = "PYOCO_SSE_MAX_WATCHERS watches are open; see Retry-After", body = ErrorBody), (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub async fn watch(
    State(state): State<GatewayState>,
    caller: Caller,
    Path(run_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let q = parse_query(&query)?;
    let store = state.store()?;
    // Subscribe before reading, so no write falls between the read and the feed.
    let feed = state.hub().subscribe(&run_id).map_err(|full| {
        ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "too many SSE watchers on this gateway (PYOCO_SSE_MAX_WATCHERS={}); retry later",
                full.max
            ),
        )
        .with_reason("sse_watchers")
        .with_retry_after(RETRY_WHEN_FULL)
    })?;
    let Some(current) = store.runs().get_raw(&run_id).await? else {
        return Err(ApiError::run_not_found());
    };
    // The same tenant rule as GET /runs/{run_id}.
    let doc = lenient::from_slice::<Value>(&current.value).unwrap_or(Value::Null);
    super::runs::visible_to(&caller, &doc)?;
    // A client reconnecting with `Last-Event-ID` resumes after the last revision it saw (the
    // bucket keeps one revision per run: what it missed is in the current snapshot).
    let seen = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let first = Arc::new(Update::new(current.revision, Some(current.value)));
    let (tx, rx) = mpsc::channel::<Event>(16);
    let runs = store.runs().clone();
    // Not cancelled with the other background tasks: at shutdown the pump sends a last
    // `shutdown` event itself, then ends (shutdown waits for it).
    let stopping = state.stopping();
    state.spawn_to_end(pump(feed, runs, first, seen, tx, run_id, q, stopping));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    let mut response = Sse::new(stream).into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// What a watcher does with one write.
enum Step {
    Continue,
    End,
}

/// Sends `update` unless the client has seen it; ends at the terminal snapshot or deletion.
async fn forward(
    update: &Update,
    last: &mut Option<u64>,
    tx: &mpsc::Sender<Event>,
    run_id: &str,
    q: &WatchQuery,
) -> Step {
    if last.is_some_and(|seen| update.revision <= seen) {
        return Step::Continue;
    }
    *last = Some(update.revision);
    // A delete or purge ends the stream: the run is gone.
    if update.value.is_none() {
        return Step::End;
    }
    let Some(rendered) = update.rendered(run_id) else {
        return Step::Continue;
    };
    if q.since.is_none_or(|since| rendered.updated_at >= since) {
        let data = if q.records {
            &rendered.with_records
        } else {
            &rendered.without_records
        };
        let event = Event::default()
            .event("snapshot")
            .id(update.revision.to_string())
            .data(data.as_str());
        if tx.send(event).await.is_err() {
            return Step::End;
        }
    }
    if rendered.terminal {
        Step::End
    } else {
        Step::Continue
    }
}

/// Forwards the run's writes as events until the run is terminal or deleted, the timeout
/// passes, the client goes away (the channel closes), or the gateway shuts down (then a last
/// `shutdown` event tells the client to reconnect, elsewhere or later, with `Last-Event-ID`).
#[allow(clippy::too_many_arguments)]
async fn pump(
    mut feed: Subscription,
    runs: RunStore,
    first: Arc<Update>,
    seen: Option<u64>,
    tx: mpsc::Sender<Event>,
    run_id: String,
    q: WatchQuery,
    stopping: tokio_util::sync::CancellationToken,
) {
    let deadline = tokio::time::Instant::now() + q.timeout;
    let mut last = seen;
    if let Step::End = forward(&first, &mut last, &tx, &run_id, &q).await {
        return;
    }
    loop {
        let update = tokio::select! {
            received = feed.recv() => match received {
                Received::Update(update) => update,
                // Fell behind: the current snapshot has everything the skipped writes had.
                Received::Lagged => match runs.get_raw(&run_id).await {
                    Ok(Some(current)) => Arc::new(Update::new(current.revision, Some(current.value))),
                    Ok(None) => return,
                    Err(_) => continue,
                },
                Received::Closed => return,
            },
            _ = tokio::time::sleep(HEARTBEAT) => {
                let data = json!({"run_id": run_id, "ts": now()}).to_string();
                if tx.send(Event::default().event("heartbeat").data(data)).await.is_err() {
                    return;
                }
                continue;
            }
            _ = tokio::time::sleep_until(deadline) => return,
            _ = tx.closed() => return,
            _ = stopping.cancelled() => {
                let data = json!({"run_id": run_id, "reason": "gateway shutting down", "ts": now()}).to_string();
                // Best effort and bounded: a client that does not read is not waited for.
                let bye = Event::default().event("shutdown").data(data);
                let _ = tokio::time::timeout(Duration::from_millis(500), tx.send(bye)).await;
                return;
            }
        };
        if let Step::End = forward(&update, &mut last, &tx, &run_id, &q).await {
            return;
        }
    }
}
