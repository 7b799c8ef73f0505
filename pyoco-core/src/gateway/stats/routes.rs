//! The operations routes: `GET /stats`, `/progress`, `/throughput`, `/logs`, `/results`.
//! Counts come from [`super::Stats`] (O(groups)), pages from the run index (O(page) plus one
//! KV get per listed run), queue, DLQ and workers from NATS as `/metrics` reads them. With API
//! keys on, run counts and lists are the caller's tenant's only.

#[allow(unused_imports)]
use crate::gateway::openapi::*;
use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{RawQuery, State};
use serde_json::{Map, Value, json};

use super::Filter;
use super::window::Totals;
use crate::error_code::ErrorCode;
use crate::gateway::GatewayState;
use crate::gateway::auth::Caller;
use crate::gateway::error::{ApiError, problem};
use crate::gateway::index::{Field, Query as IndexQuery};
use crate::gateway::metrics::tag_loads;
use crate::gateway::query::QueryParams;
use crate::gateway::runs::{decode_cursor, encode_cursor};
use crate::model::{RunStatus, WorkerState, now};

type ApiResult<T> = Result<T, ApiError>;

/// Newest DLQ messages `/logs` reads, and how many of those (matching the filter) it shows.
const DLQ_LOOKED_AT: usize = 20;
const DLQ_SHOWN: usize = 5;

/// The throughput windows: name and seconds.
const WINDOWS: [(&str, u64); 3] = [("1m", 60), ("5m", 300), ("15m", 900)];

/// `flow`, `tag` and `schedule_id` (last one wins, empty means unset) and the caller's tenant.
fn filter_of(q: &QueryParams, caller: &Caller) -> Filter {
    let last = |k: &str| q.last(k).filter(|v| !v.is_empty()).map(str::to_string);
    Filter {
        tenant: caller.tenant().map(str::to_string),
        flow: last("flow"),
        tag: last("tag"),
        schedule_id: last("schedule_id"),
    }
}

fn filter_json(f: &Filter) -> Value {
    json!({"flow": f.flow, "tag": f.tag, "schedule_id": f.schedule_id})
}

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

/// `GET /stats`.
#[utoipa::path(get, path = "/stats",
    params(("flow" = Option<String>, Query), ("tag" = Option<String>, Query), ("schedule_id" = Option<String>, Query)),
    responses((status = 200, description = "runs by status, totals, queue per tag, DLQ size, workers by state (spec/http-api.md)", body = Object),
        (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub(crate) async fn stats(
    State(state): State<GatewayState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    let q = QueryParams::parse(&query);
    let filter = filter_of(&q, &caller);
    state.run_index().await?;
    let store = state.store()?;
    let (workers, queued, dlq_messages) = tokio::try_join!(
        store.workers().list(),
        store.queue_depths(),
        store.dlq_size()
    )?;
    let counts = state.stats().status_counts(&filter);
    let count = |s: RunStatus| counts.get(s.as_str()).copied().unwrap_or(0);
    let stored: u64 = counts.values().sum();
    let finished =
        count(RunStatus::Completed) + count(RunStatus::Failed) + count(RunStatus::Cancelled);
    let mut queue = Map::new();
    let mut depth = 0;
    for (tag, load) in tag_loads(&queued, &workers) {
        if filter.tag.as_deref().is_some_and(|t| t != tag) {
            continue;
        }
        depth += load.queued;
        queue.insert(
            tag,
            json!({"queued": load.queued, "live_workers": load.live_workers, "unserved": load.unserved()}),
        );
    }
    let mut by_state = Map::new();
    for ws in [
        WorkerState::Running,
        WorkerState::Idle,
        WorkerState::StoppedGraceful,
        WorkerState::Disconnected,
    ] {
        let n = workers.iter().filter(|w| w.state == ws).count();
        by_state.insert(ws.as_str().into(), json!(n));
    }
    Ok(Json(json!({
        "filter": filter_json(&filter),
        "runs_by_status": counts,
        "totals": {
            "submitted": stored,
            "completed": count(RunStatus::Completed),
            "failed": count(RunStatus::Failed),
            "cancelled": count(RunStatus::Cancelled),
            "active": stored - finished,
        },
        "queue": queue,
        "queue_depth": depth,
        "dlq_messages": dlq_messages,
        "workers": by_state,
        "ts": now(),
    })))
}

/// `GET /progress`.
#[utoipa::path(get, path = "/progress",
    params(("flow" = Option<String>, Query), ("tag" = Option<String>, Query), ("schedule_id" = Option<String>, Query)),
    responses((status = 200, description = "{total, completed, failed, cancelled, running, pending, percent_done}", body = Object),
        (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub(crate) async fn progress(
    State(state): State<GatewayState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    let filter = filter_of(&QueryParams::parse(&query), &caller);
    state.run_index().await?;
    let counts = state.stats().status_counts(&filter);
    let count = |s: RunStatus| counts.get(s.as_str()).copied().unwrap_or(0);
    let total: u64 = counts.values().sum();
    let completed = count(RunStatus::Completed);
    let failed = count(RunStatus::Failed);
    let cancelled = count(RunStatus::Cancelled);
    let done = completed + failed + cancelled;
    Ok(Json(json!({
        "filter": filter_json(&filter),
        "total": total,
        "completed": completed,
        "failed": failed,
        "cancelled": cancelled,
        "running": count(RunStatus::Running) + count(RunStatus::Cancelling),
        "pending": count(RunStatus::Pending) + count(RunStatus::PendingApproval),
        "percent_done": if total == 0 { 0.0 } else { round(100.0 * done as f64 / total as f64, 2) },
    })))
}

fn window_json(t: &Totals, seconds: f64) -> Value {
    let rate = |n: u64| round(n as f64 / seconds.max(1e-9), 4);
    let q = |p: f64| t.quantile(p).map(|v| round(v, 4));
    json!({
        "seconds": round(seconds, 3),
        "completed": t.completed,
        "failed": t.failed,
        "cancelled": t.cancelled,
        "completed_per_sec": rate(t.completed),
        "failed_per_sec": rate(t.failed),
        "duration_p50_sec": q(0.5),
        "duration_p95_sec": q(0.95),
        "duration_p99_sec": q(0.99),
    })
}

/// `GET /throughput`.
#[utoipa::path(get, path = "/throughput",
    params(("flow" = Option<String>, Query), ("tag" = Option<String>, Query), ("schedule_id" = Option<String>, Query)),
    responses((status = 200, description = "completed and failed per second over 1, 5 and 15 minutes and since start, with duration percentiles", body = Object),
        (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub(crate) async fn throughput(
    State(state): State<GatewayState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    let filter = filter_of(&QueryParams::parse(&query), &caller);
    state.run_index().await?;
    let stats = state.stats();
    let t = now();
    let elapsed = (t - stats.started_at()).max(0.0);
    let mut windows = Map::new();
    for (name, seconds) in WINDOWS {
        let totals = stats.window(&filter, t, seconds);
        windows.insert(name.into(), window_json(&totals, seconds as f64));
    }
    let [completed, failed, cancelled] = stats.since_start(&filter);
    let since = json!({
        "seconds": round(elapsed, 3),
        "completed": completed,
        "failed": failed,
        "cancelled": cancelled,
        "completed_per_sec": round(completed as f64 / elapsed.max(1.0), 4),
        "failed_per_sec": round(failed as f64 / elapsed.max(1.0), 4),
    });
    windows.insert("since_start".into(), since);
    Ok(Json(json!({
        "filter": filter_json(&filter),
        "started_at": stats.started_at(),
        "elapsed_sec": round(elapsed, 3),
        "runs_completed": completed,
        "runs_failed": failed,
        "runs_per_sec": round(completed as f64 / elapsed.max(1.0), 4),
        "windows": windows,
    })))
}

/// `GET /logs[?limit=N]`.
#[utoipa::path(get, path = "/logs",
    params(("flow" = Option<String>, Query), ("tag" = Option<String>, Query), ("schedule_id" = Option<String>, Query),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "error groups (default 50)")),
    responses((status = 200, description = "recent failures grouped by error class and callable, and warnings", body = Object),
        (status = 422, body = ErrorBody), (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub(crate) async fn logs(
    State(state): State<GatewayState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    let mut q = QueryParams::parse(&query);
    let limit = q.int_in("limit", 1, 200, 50) as usize;
    q.check()?;
    let filter = filter_of(&q, &caller);
    state.run_index().await?;
    let store = state.store()?;
    let stats = state.stats();
    let failures = stats.failures(&filter);
    // Newest first, so the first failure of a group is its example and its last_seen. A
    // group is an error class and a callable (the task's name when its record has none).
    let mut groups: Vec<(String, Option<String>)> = Vec::new();
    let mut by_group: BTreeMap<(String, Option<String>), Map<String, Value>> = BTreeMap::new();
    for f in &failures {
        let key = (
            f.error_class.clone(),
            f.callable.clone().or_else(|| f.task.clone()),
        );
        match by_group.get_mut(&key) {
            Some(g) => {
                let n = g.get("count").and_then(Value::as_u64).unwrap_or(0);
                g.insert("count".into(), json!(n + 1));
                g.insert("first_seen".into(), json!(f.at));
            }
            None => {
                groups.push(key.clone());
                let Value::Object(m) = json!({
                    "error_class": f.error_class,
                    "callable": f.callable,
                    "task": f.task,
                    "count": 1,
                    "first_seen": f.at,
                    "last_seen": f.at,
                    "example_run_id": &*f.run_id,
                    "example_message": f.message,
                }) else {
                    continue;
                };
                by_group.insert(key, m);
            }
        }
    }
    let errors: Vec<Value> = groups
        .iter()
        .take(limit)
        .filter_map(|k| by_group.remove(k).map(Value::Object))
        .collect();
    let (workers, queued, dlq_messages) = tokio::try_join!(
        store.workers().list(),
        store.queue_depths(),
        store.dlq_size()
    )?;
    let mut warnings = Vec::new();
    for (tag, load) in tag_loads(&queued, &workers) {
        if load.unserved() && filter.tag.as_deref().is_none_or(|t| t == tag) {
            warnings.push(json!({"kind": "unserved_tag", "tag": tag, "queued": load.queued,
                "message": format!("{} job(s) queued on tag {tag} and no live worker serves it", load.queued)}));
        }
    }
    if dlq_messages > 0 {
        warnings.push(json!({"kind": "dlq", "messages": dlq_messages,
            "message": format!("{dlq_messages} message(s) in the dead-letter stream")}));
        // The newest dead-lettered jobs the caller may see (O(1): a bounded read by sequence).
        let recent = store.recent_dlq(DLQ_LOOKED_AT).await?;
        let field = |m: &Value, k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
        for m in recent
            .iter()
            .filter(|m| {
                let same = |want: &Option<String>, k: &str| {
                    want.as_ref()
                        .is_none_or(|w| field(m, k).as_ref() == Some(w))
                };
                same(&filter.tenant, "tenant_id")
                    && same(&filter.flow, "flow_name")
                    && same(&filter.tag, "tag")
            })
            .take(DLQ_SHOWN)
        {
            let reason = field(m, "reason").unwrap_or_default();
            let run_id = field(m, "run_id");
            warnings.push(json!({"kind": "dlq_job", "reason": reason, "run_id": run_id,
                "flow_name": field(m, "flow_name"), "tag": field(m, "tag"),
                "error": m.get("error").cloned().unwrap_or(Value::Null),
                "timestamp": m.get("timestamp").cloned().unwrap_or(Value::Null),
                "message": format!("job of run {} dead-lettered: {reason}", run_id.as_deref().unwrap_or("?"))}));
        }
    }
    let retried = stats.window(&filter, now(), 900).retried_tasks;
    if retried > 0 {
        warnings.push(json!({"kind": "retries", "tasks": retried, "window_sec": 900,
            "message": format!("{retried} task(s) of runs finished in the last 15 minutes needed retries")}));
    }
    Ok(Json(json!({
        "filter": filter_json(&filter),
        "errors": errors,
        "error_groups": groups.len(),
        "failures_considered": failures.len(),
        "retained_limit": super::FAILURES_KEPT,
        "warnings": warnings,
    })))
}

/// Keys of a `/results` item, in order.
const RESULT_KEYS: &[&str] = &[
    "run_id",
    "flow_name",
    "tag",
    "schedule_id",
    "status",
    "start_time",
    "end_time",
    "updated_at",
    "worker_id",
    "result_summary",
    "error",
];

/// `GET /results[?status=&limit=&cursor=]`.
#[utoipa::path(get, path = "/results",
    params(("flow" = Option<String>, Query), ("tag" = Option<String>, Query), ("schedule_id" = Option<String>, Query),
        ("status" = Option<String>, Query, description = "COMPLETED, FAILED or CANCELLED (default: all three)"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 200), ("cursor" = Option<String>, Query)),
    responses((status = 200, description = "{items, next_cursor}: the newest terminal runs with result_summary", body = Object),
        (status = 422, body = ErrorBody), (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub(crate) async fn results(
    State(state): State<GatewayState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    let mut q = QueryParams::parse(&query);
    let limit = q.int_in("limit", 1, 200, 50) as usize;
    let statuses: Vec<&'static str> = match q.last("status").filter(|s| !s.is_empty()) {
        None => vec!["COMPLETED", "FAILED", "CANCELLED"],
        Some(s) => match RunStatus::parse(s).filter(|s| s.is_terminal()) {
            Some(st) => vec![st.as_str()],
            None => {
                let raw = s.to_string();
                q.push_problem(problem(
                    "enum",
                    &[json!("query"), json!("status")],
                    "Input should be 'COMPLETED', 'FAILED' or 'CANCELLED'",
                    json!(raw),
                    Some(json!({"expected": "'COMPLETED', 'FAILED' or 'CANCELLED'"})),
                ));
                Vec::new()
            }
        },
    };
    q.check()?;
    let cursor = match q.last("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            decode_cursor(c)
                .ok_or_else(|| ApiError::new(ErrorCode::InvalidListQuery, "invalid list query"))?,
        ),
    };
    let filter = filter_of(&q, &caller);
    let index = state.run_index().await?;
    let store = state.store()?;
    let mut base = Vec::new();
    for (field, value) in [
        (Field::Flow, &filter.flow),
        (Field::Tag, &filter.tag),
        (Field::ScheduleId, &filter.schedule_id),
        (Field::Tenant, &filter.tenant),
    ] {
        if let Some(v) = value {
            base.push((field, v.clone()));
        }
    }
    // One page per terminal status, merged newest first: O(statuses × page).
    let mut merged: Vec<(f64, String)> = Vec::new();
    let mut more = false;
    for status in statuses {
        let mut filters = base.clone();
        filters.push((Field::Status, status.to_string()));
        let page = index.page(&IndexQuery {
            filters,
            updated_after: None,
            cursor: cursor.clone(),
            limit,
        });
        more |= page.more;
        merged.extend(page.items);
    }
    merged.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
    if merged.len() > limit {
        merged.truncate(limit);
        more = true;
    }
    let next_cursor = if more {
        merged.last().map(|(u, r)| encode_cursor(*u, r))
    } else {
        None
    };
    let docs = store
        .runs()
        .get_listed(merged.into_iter().map(|(_, run_id)| run_id))
        .await?;
    let items: Vec<Value> = docs
        .into_iter()
        .map(|doc| {
            let mut out = Map::new();
            for key in RESULT_KEYS {
                out.insert((*key).into(), doc.get(*key).cloned().unwrap_or(Value::Null));
            }
            let duration = match (
                doc.get("start_time").and_then(Value::as_f64),
                doc.get("end_time").and_then(Value::as_f64),
            ) {
                (Some(s), Some(e)) if e >= s => json!(round(e - s, 6)),
                _ => Value::Null,
            };
            out.insert("duration_sec".into(), duration);
            Value::Object(out)
        })
        .collect();
    Ok(Json(json!({"items": items, "next_cursor": next_cursor})))
}
