//! Schedule routes: the original 0.7's `POST /schedules/yaml`, `GET /schedules`,
//! `GET /schedules/{id}/runs` and `DELETE /schedules/{id}`, plus `PATCH /schedules/{id}`
//! (pause/resume). The dispatcher that fires them is `super::scheduler`.

#[allow(unused_imports)]
use super::openapi::*;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Multipart, Path, RawQuery, State};
use futures::StreamExt;
use serde_json::{Value, json};

use super::GatewayState;
use super::auth::Caller;
use super::error::ApiError;
use super::extract::multipart::{Form, part_problem};
use super::index::{Field, Query as IndexQuery};
use super::query::QueryParams;
use super::runs::{project, workflow_too_large};
use crate::error_code::ErrorCode;
use crate::flow::yaml::{parse_flow_yaml_within, sha256_hex};
use crate::model::schedule::{
    ACTIVE, COMPLETED, PAUSED, Schedule, TimingForm, apply_timing, slot_after, sort_schedules,
};
use crate::model::{is_valid_tag, new_run_id, now};
use crate::store::{Store, Versioned};

type ApiResult<T> = Result<T, ApiError>;

fn schedule_not_found() -> ApiError {
    ApiError::new(ErrorCode::ScheduleNotFound, "schedule not found")
}

/// `POST /schedules/yaml` (multipart: file `workflow`, text `flow_name`, `tag`, one of
/// `run_at` / `interval_seconds` / `cron` (+ `timezone`), `start_at`, `misfire`).
#[utoipa::path(post, path = "/schedules/yaml", request_body(content = ScheduleYamlForm, content_type = "multipart/form-data"),
    responses((status = 200, body = ScheduleView), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub async fn create(
    State(state): State<GatewayState>,
    caller: Caller,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> ApiResult<Json<ScheduleView>> {
    let limit = state.config.workflow_yaml_max_bytes;
    let mut form = Form::read(multipart, "workflow", limit, workflow_too_large(limit)).await?;
    // Form validation first, every problem at once (FastAPI's order: the declared fields).
    let mut problems: Vec<Value> = form.file_problem().into_iter().collect();
    let flow_name = form.required_text("flow_name", &mut problems);
    let interval_seconds = match form.text("interval_seconds") {
        None => None,
        Some(raw) => match raw.trim().parse::<f64>() {
            Ok(f) if f.is_finite() => Some(f),
            _ => {
                problems.push(part_problem(
                    "float_parsing",
                    "interval_seconds",
                    "Input should be a valid number, unable to parse string as a number",
                    json!(raw),
                ));
                None
            }
        },
    };
    if !problems.is_empty() {
        return Err(ApiError::validation(problems));
    }
    let tag = form
        .text("tag")
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    if tag.as_deref().is_some_and(|t| !is_valid_tag(t)) {
        return Err(ApiError::new(ErrorCode::InvalidTag, "invalid tag"));
    }
    let workflow = form.take_file();
    if workflow.size > limit {
        return Err(workflow_too_large(limit));
    }
    let spec = parse_flow_yaml_within(&workflow.data, state.config.yaml_limits()).map_err(|e| {
        ApiError::new(ErrorCode::InvalidWorkflowYaml, "invalid workflow yaml").with_reason(e.reason)
    })?;
    let flow_name = flow_name.unwrap_or_default().trim().to_string();
    if flow_name.is_empty() {
        return Err(ApiError::new(
            ErrorCode::MissingFlowName,
            "missing flow_name",
        ));
    }
    // Blank values count as absent (the original's rule for run_at, and FastAPI's for forms).
    let text = |name: &str| {
        form.text(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let timing = TimingForm {
        run_at: text("run_at"),
        interval_seconds,
        start_at: text("start_at"),
        cron: text("cron"),
        timezone: text("timezone"),
        misfire: text("misfire"),
    };
    let mut schedule = Schedule::new(new_run_id(), flow_name, now());
    apply_timing(&mut schedule, &timing)
        .map_err(|e| ApiError::new(ErrorCode::InvalidSchedule, e.0))?;
    schedule.tag = Some(tag.unwrap_or_else(|| state.config.default_tag.clone()));
    schedule.workflow_yaml = String::from_utf8_lossy(&workflow.data).into_owned();
    schedule.workflow_yaml_sha256 = Some(sha256_hex(&workflow.data));
    schedule.workflow_yaml_bytes = Some(workflow.data.len() as u64);
    schedule.params = spec.defaults.clone();
    if let Some(id) = &caller.0 {
        schedule.tenant_id = Some(id.tenant_id.clone());
        schedule.api_key_id = Some(id.key_id.clone());
    }
    let store = state.store()?;
    store.schedules().create(&schedule).await?;
    tracing::info!(schedule_id = %schedule.schedule_id, schedule_type = %schedule.schedule_type, "schedule created");
    Ok(Json(ScheduleView(schedule.view())))
}

/// `GET /schedules`: the caller's schedules, ACTIVE first, then by next run.
#[utoipa::path(get, path = "/schedules",
    responses((status = 200, body = Vec<ScheduleView>), (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub async fn list(
    State(state): State<GatewayState>,
    caller: Caller,
) -> ApiResult<Json<Vec<ScheduleView>>> {
    let store = state.store()?;
    let mut all: Vec<Schedule> = store
        .schedules()
        .list()
        .await?
        .into_iter()
        .map(|v| v.value)
        .filter(|s| caller.may_see(s.tenant_id.as_deref()))
        .collect();
    sort_schedules(&mut all);
    Ok(Json(all.iter().map(|s| ScheduleView(s.view())).collect()))
}

/// The caller's schedule, or 404.
async fn visible(
    store: &Store,
    caller: &Caller,
    schedule_id: &str,
) -> ApiResult<Versioned<Schedule>> {
    match store.schedules().get(schedule_id).await? {
        Some(s) if caller.may_see(s.value.tenant_id.as_deref()) => Ok(s),
        _ => Err(schedule_not_found()),
    }
}

/// `GET /schedules/{schedule_id}/runs`: the schedule's runs, newest first (always an array).
#[utoipa::path(get, path = "/schedules/{schedule_id}/runs",
    params(("schedule_id" = String, Path), ("include" = Option<Vec<String>>, Query), ("limit" = Option<i64>, Query, minimum = 1, maximum = 200)),
    responses((status = 200, body = RunList), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub async fn runs(
    State(state): State<GatewayState>,
    caller: Caller,
    Path(schedule_id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<RunList>> {
    let mut q = QueryParams::parse(&query);
    let limit = q.int_in("limit", 1, 200, 50) as usize;
    q.check()?;
    let include: Vec<&str> = q.all("include").collect();
    let full = include.iter().any(|i| matches!(*i, "full" | "all"));
    let records = include
        .iter()
        .any(|i| matches!(*i, "records" | "task_records"));
    let store = state.store()?;
    visible(store, &caller, &schedule_id).await?;
    let index = state.run_index().await?;
    let mut filters = vec![(Field::ScheduleId, schedule_id.clone())];
    if let Some(tenant) = caller.tenant() {
        filters.push((Field::Tenant, tenant.to_string()));
    }
    let page = index.page(&IndexQuery {
        filters,
        updated_after: None,
        cursor: None,
        limit,
    });
    let runs = store.runs();
    let docs: Vec<Value> = futures::stream::iter(page.items)
        .map(|(_, run_id)| async move { runs.get_json(&run_id).await })
        .buffered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .filter_map(|r| match r {
            Ok(Some(v)) => Some(Ok(project(v.value, full, records))),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<_, _>>()?;
    Ok(Json(RunList(Value::Array(docs))))
}

/// `DELETE /schedules/{schedule_id}`: stops it; runs already made are kept.
#[utoipa::path(delete, path = "/schedules/{schedule_id}", params(("schedule_id" = String, Path)),
    responses((status = 200, body = ScheduleDeleted), (status = 404, body = ErrorBody), (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub async fn delete(
    State(state): State<GatewayState>,
    caller: Caller,
    Path(schedule_id): Path<String>,
) -> ApiResult<Json<ScheduleDeleted>> {
    let store = state.store()?;
    visible(store, &caller, &schedule_id).await?;
    store.schedules().delete(&schedule_id).await?;
    Ok(Json(ScheduleDeleted {
        schedule_id,
        deleted: true,
    }))
}

/// `PATCH /schedules/{schedule_id}` with `{"paused": bool}` (pyoco only). Pausing sets
/// `status: PAUSED` and `next_run_at: null` (the original's dispatcher reads an unknown status
/// as ACTIVE, but never fires a schedule without a next run); resuming sets `ACTIVE` and
/// `next_run_at` to the first slot after now for interval and cron schedules (slots passed
/// while paused are not misfires) and back to `run_at` for a once-schedule. A completed
/// schedule is 409.
#[utoipa::path(patch, path = "/schedules/{schedule_id}", params(("schedule_id" = String, Path)), request_body = PatchSchedule,
    responses((status = 200, body = ScheduleView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub async fn patch(
    State(state): State<GatewayState>,
    caller: Caller,
    Path(schedule_id): Path<String>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Json<ScheduleView>> {
    let paused = super::workers::required_bool_field(body, "paused")?;
    let store = state.store()?;
    for _ in 0..16 {
        let current = visible(store, &caller, &schedule_id).await?;
        let mut next = current.value.clone();
        match next.status.as_str() {
            ACTIVE | PAUSED => {}
            COMPLETED => {
                return Err(ApiError::new(
                    ErrorCode::ScheduleCompleted,
                    "schedule is completed",
                ));
            }
            _ => {}
        }
        let at = now();
        if paused {
            // No next slot while paused: the original's dispatcher (which knows no PAUSED and
            // reads it as ACTIVE) then finds nothing due either.
            if next.status != PAUSED {
                next.status = PAUSED.into();
                next.next_run_at = None;
            }
        } else if next.status != ACTIVE {
            next.status = ACTIVE.into();
            next.next_run_at = match next.schedule_type.as_str() {
                // A once-schedule whose time passed while paused fires per its misfire policy.
                "once" => next.run_at,
                _ => slot_after(&next, at)
                    .map_err(|e| ApiError::new(ErrorCode::InvalidSchedule, e.0))?,
            };
        }
        next.updated_at = at;
        if store
            .schedules()
            .update(&next, current.revision)
            .await?
            .is_some()
        {
            return Ok(Json(ScheduleView(next.view())));
        }
    }
    Err(ApiError::unavailable("schedule changed too often; retry"))
}
