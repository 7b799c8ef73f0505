//! Run routes: submit (JSON and YAML), read, tasks, list.

#[allow(unused_imports)]
use super::openapi::*;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Multipart, Path, RawQuery, State};
use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::GatewayState;
use super::auth::Caller;
use super::error::ApiError;
use super::extract::json::{Fields, json_body};
use super::extract::multipart::Form;
use super::index::{Field, Query as IndexQuery};
use super::query::QueryParams;
use super::sync_wait::SyncWait;
use crate::error_code::ErrorCode;
use crate::flow::yaml::{parse_flow_yaml_within, sha256_hex};
use crate::model::{WorkerState, is_valid_tag, now};
use crate::store::requests::Reservation;
use crate::store::{NewRun, Store, SubmitError, YamlPayload};
use axum::response::Response;

type ApiResult<T> = Result<T, ApiError>;

/// `POST /runs`: submit a run by flow name (the worker resolves it).
#[utoipa::path(post, path = "/runs", request_body = SubmitRunRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "the same key and request within PYOCO_IDEMPOTENCY_TTL_SEC return the first run"),
        ("wait_sec" = Option<f64>, Query, minimum = 0, description = "wait up to this long (capped by PYOCO_SYNC_WAIT_MAX_SEC) for the run to end"),
        ("include" = Option<Vec<String>>, Query, description = "with wait_sec: records keeps task_records in the terminal snapshot")),
    responses((status = 200, description = "SubmitResponse (PENDING); with wait_sec, the terminal run snapshot", body = SubmitAnswer),
        (status = 202, description = "with wait_sec: the run did not end in time; follow watch_url", body = SubmitResponse), (status = 409, description = "the idempotency key was used for another request", body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub async fn submit(
    State(state): State<GatewayState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    RawQuery(query): RawQuery,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Response> {
    let sync = SyncWait::parse(&query, state.config.sync_wait_max)?;
    let body = json_body(body)?;
    let mut run = parse_submit(&body)?;
    stamp(&mut run, &caller);
    let store = state.store()?;
    reserve_idempotency_key(store, &headers, &caller, &mut run).await?;
    // After the reservation: a retry of the same request is the same request even when the
    // name's active version changed in between.
    super::flows::resolve_registered(&state, store, &caller, &mut run).await?;
    let run_id = submit_to_end(&state, store, run).await?;
    Ok(sync.answer(&state, run_id).await)
}

/// 422 `invalid_workflow_yaml` with the validation reason.
pub(super) fn invalid_workflow_yaml(e: crate::flow::yaml::YamlError) -> ApiError {
    tracing::info!(reason = %e.reason, "invalid workflow yaml");
    ApiError::new(ErrorCode::InvalidWorkflowYaml, "invalid workflow yaml").with_reason(e.reason)
}

/// Validates the `POST /runs` body like the original's pydantic model, collecting every problem.
fn parse_submit(body: &Value) -> ApiResult<NewRun> {
    let mut fields = Fields::of(body)?;
    let flow_name = fields.required_string("flow_name");
    let params = fields.object_or_empty("params");
    let tag = fields.optional_pattern("tag", "^[A-Za-z0-9_-]+$", is_valid_tag);
    let tags = fields.string_list("tags");
    fields.finish()?;
    Ok(NewRun {
        flow_name,
        params,
        tag,
        tags,
        ..Default::default()
    })
}

/// Runs submitted with a key carry its tenant and id (bundle children will inherit them).
pub(super) fn stamp(run: &mut NewRun, caller: &Caller) {
    if let Some(id) = &caller.0 {
        run.tenant_id = Some(id.tenant_id.clone());
        run.api_key_id = Some(id.key_id.clone());
    }
}

/// `Idempotency-Key`: the first request with a key (per tenant) reserves a run id for it, and
/// every later one with the same key and the same request gets that run — across gateways and
/// restarts, since the reservation is a KV create. The same key with another request is 409.
async fn reserve_idempotency_key(
    store: &Store,
    headers: &axum::http::HeaderMap,
    caller: &Caller,
    run: &mut NewRun,
) -> ApiResult<()> {
    let Some(raw) = headers.get("idempotency-key") else {
        return Ok(());
    };
    let key = raw
        .to_str()
        .ok()
        .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidIdempotencyKey,
                "invalid idempotency key: use 1 to 255 visible ASCII characters",
            )
        })?;
    // What makes two submits the same request (not the bytes: a multipart boundary differs).
    let fingerprint = json!({
        "flow_name": run.flow_name,
        "params": run.params,
        "tag": run.tag,
        "tags": run.tags,
        "workflow_yaml_sha256": run.yaml.as_ref().map(|y| &y.sha256),
    });
    let fingerprint = sha256_hex(fingerprint.to_string().as_bytes());
    let reservation = store
        .idempotency()
        .reserve(
            caller.tenant(),
            key,
            &fingerprint,
            &crate::model::new_run_id(),
            now(),
        )
        .await?;
    match reservation {
        Reservation::New(rec) | Reservation::Existing(rec) => {
            run.run_id = Some(rec.run_id);
            Ok(())
        }
        Reservation::Conflict(_) => Err(ApiError::new(
            ErrorCode::IdempotencyConflict,
            "idempotency key already used for a different request",
        )),
    }
}

/// Submits in a task of its own: once accepted, a run's snapshot and job are both written (or
/// the snapshot rolled back) even if the client goes away mid-request.
async fn submit_to_end(state: &GatewayState, store: &Store, run: NewRun) -> ApiResult<String> {
    let store = store.clone();
    state
        .spawn_to_end(async move { store.submit(run).await })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "submit task failed");
            ApiError::new(ErrorCode::InternalError, "internal error")
        })?
        .map_err(submit_error)
}

pub(super) fn submit_error(e: SubmitError) -> ApiError {
    match e {
        SubmitError::InvalidTag(_) => ApiError::new(ErrorCode::InvalidTag, "invalid tag"),
        SubmitError::EmptyFlowName => {
            ApiError::new(ErrorCode::MissingFlowName, "missing flow_name")
        }
        SubmitError::Store(e) => e.into(),
    }
}

/// `POST /runs/yaml` (multipart: file `workflow`, text `flow_name`, optional text `tag`).
#[utoipa::path(post, path = "/runs/yaml", request_body(content = SubmitYamlForm, content_type = "multipart/form-data"),
    params(("Idempotency-Key" = Option<String>, Header, description = "the same key and request within PYOCO_IDEMPOTENCY_TTL_SEC return the first run"),
        ("wait_sec" = Option<f64>, Query, minimum = 0, description = "wait up to this long (capped by PYOCO_SYNC_WAIT_MAX_SEC) for the run to end"),
        ("include" = Option<Vec<String>>, Query, description = "with wait_sec: records keeps task_records in the terminal snapshot")),
    responses((status = 200, description = "SubmitResponse (PENDING); with wait_sec, the terminal run snapshot", body = SubmitAnswer),
        (status = 202, description = "with wait_sec: the run did not end in time; follow watch_url", body = SubmitResponse), (status = 409, description = "the idempotency key was used for another request", body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub async fn submit_yaml(
    State(state): State<GatewayState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    RawQuery(query): RawQuery,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> ApiResult<Response> {
    let sync = SyncWait::parse(&query, state.config.sync_wait_max)?;
    let limit = state.config.workflow_yaml_max_bytes;
    let form = read_yaml_form(multipart, limit).await?;
    let tag = form
        .tag
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    if tag.as_deref().is_some_and(|t| !is_valid_tag(t)) {
        return Err(ApiError::new(ErrorCode::InvalidTag, "invalid tag"));
    }
    if form.workflow_size > limit {
        return Err(workflow_too_large(state.config.workflow_yaml_max_bytes));
    }
    let spec = parse_flow_yaml_within(&form.workflow, state.config.yaml_limits())
        .map_err(invalid_workflow_yaml)?;
    let flow_name = form.flow_name.trim().to_string();
    if flow_name.is_empty() {
        return Err(ApiError::new(
            ErrorCode::MissingFlowName,
            "missing flow_name",
        ));
    }
    let store = state.store()?;
    let mut run = NewRun {
        flow_name,
        params: spec.defaults.clone(),
        tag,
        tags: Vec::new(),
        yaml: Some(YamlPayload {
            text: String::from_utf8_lossy(&form.workflow).into_owned(),
            sha256: sha256_hex(&form.workflow),
            bytes: form.workflow.len() as u64,
        }),
        flow_graph: Some(spec.graph.drawing()),
        ..Default::default()
    };
    stamp(&mut run, &caller);
    reserve_idempotency_key(store, &headers, &caller, &mut run).await?;
    let run_id = submit_to_end(&state, store, run).await?;
    Ok(sync.answer(&state, run_id).await)
}

pub(super) struct YamlForm {
    pub(super) workflow: Vec<u8>,
    pub(super) workflow_size: usize,
    pub(super) flow_name: String,
    pub(super) tag: Option<String>,
}

/// Reads the whole form (validation problems are reported before size, as the original
/// does); the workflow is kept up to `limit + 1` bytes and counted in full.
pub(super) async fn read_yaml_form(
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
    limit: usize,
) -> ApiResult<YamlForm> {
    let mut form = Form::read(multipart, "workflow", limit, workflow_too_large(limit)).await?;
    let mut problems: Vec<Value> = form.file_problem().into_iter().collect();
    let flow_name = form.required_text("flow_name", &mut problems);
    if !problems.is_empty() {
        return Err(ApiError::validation(problems));
    }
    let workflow = form.take_file();
    Ok(YamlForm {
        workflow: workflow.data,
        workflow_size: workflow.size,
        flow_name: flow_name.unwrap_or_default(),
        tag: form.text("tag"),
    })
}

/// The original's 413; the limit is in `reason` (the `detail` stays the original's string).
pub(super) fn workflow_too_large(limit: usize) -> ApiError {
    ApiError::new(ErrorCode::WorkflowTooLarge, "workflow too large").with_reason(format!(
        "the workflow is over PYOCO_WORKFLOW_YAML_MAX_BYTES ({limit} bytes)"
    ))
}

/// `GET /runs/{run_id}` (`include=records|task_records|full|all` keeps `task_records`).
#[utoipa::path(get, path = "/runs/{run_id}",
    params(("run_id" = String, Path), ("include" = Option<Vec<String>>, Query, description = "records, task_records, full or all keep task_records")),
    responses((status = 200, body = RunSnapshot), (status = 404, body = ErrorBody), (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub async fn get_run(
    State(state): State<GatewayState>,
    caller: Caller,
    Path(run_id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<RunSnapshot>> {
    let store = state.store()?;
    let Some(doc) = store.runs().get_json(&run_id).await? else {
        return Err(ApiError::run_not_found());
    };
    visible_to(&caller, &doc.value)?;
    let mut doc = doc.value;
    present(&state, &mut doc, QueryParams::parse(&query).wants_records()).await;
    Ok(Json(RunSnapshot(doc)))
}

/// A snapshot as `GET /runs/{run_id}` answers it: without `task_records` unless `records`,
/// with what is known of its worker.
pub(super) async fn present(state: &GatewayState, doc: &mut Value, records: bool) {
    if !records && let Value::Object(m) = doc {
        m.shift_remove("task_records");
        m.shift_remove("task_records_truncated");
    }
    enrich_with_worker(state, doc).await;
}

/// The answer of a route that changed a run (cancel, approve, reject): its snapshot without
/// `task_records` and `task_records_truncated`, as the original answers.
pub(super) fn snapshot_answer(
    snapshot: &crate::model::RunSnapshot,
) -> ApiResult<Json<RunSnapshot>> {
    let mut doc = serde_json::to_value(snapshot).map_err(|e| {
        tracing::error!(error = %e, "encode snapshot");
        ApiError::internal()
    })?;
    if let Value::Object(m) = &mut doc {
        m.shift_remove("task_records");
        m.shift_remove("task_records_truncated");
    }
    Ok(Json(RunSnapshot(doc)))
}

/// Another tenant's run (or, with keys on, one made while they were off) does not exist for
/// the caller: 404, exactly as an unknown id.
pub(super) fn visible_to(caller: &Caller, doc: &Value) -> ApiResult<()> {
    if caller.may_see(doc.get("tenant_id").and_then(Value::as_str)) {
        Ok(())
    } else {
        Err(ApiError::run_not_found())
    }
}

/// Adds `worker_alive`, `worker_state`, … when the snapshot names its worker.
async fn enrich_with_worker(state: &GatewayState, doc: &mut Value) {
    let Some(worker_id) = doc
        .get("worker_id")
        .and_then(Value::as_str)
        .filter(|w| !w.is_empty())
        .map(str::to_string)
    else {
        return;
    };
    let Ok(store) = state.store() else { return };
    let Ok(record) = store.workers().get(&worker_id).await else {
        return;
    };
    let Value::Object(m) = doc else { return };
    match record {
        None => {
            m.insert("worker_alive".into(), json!(false));
            m.insert("worker_state".into(), json!("DISCONNECTED"));
            m.insert("worker_heartbeat_at".into(), Value::Null);
        }
        Some(r) => {
            // The same rule as GET /workers (one place decides DISCONNECTED).
            let last_seen = r.last_seen_at.or(r.heartbeat_at).unwrap_or(0.0);
            let effective = crate::model::effective_state(
                r.state,
                last_seen,
                now(),
                state.config.worker_disconnect_timeout,
            );
            m.insert(
                "worker_alive".into(),
                json!(matches!(
                    effective,
                    WorkerState::Running | WorkerState::Idle
                )),
            );
            m.insert("worker_state".into(), json!(effective.as_str()));
            m.insert(
                "worker_heartbeat_at".into(),
                json!(r.last_heartbeat_at.or(r.heartbeat_at)),
            );
            m.insert("worker_hidden".into(), json!(r.hidden));
            m.insert("worker_tags".into(), json!(r.tags));
        }
    }
}

/// `GET /runs/{run_id}/tasks`.
#[utoipa::path(get, path = "/runs/{run_id}/tasks", params(("run_id" = String, Path)),
    responses((status = 200, body = RunTasks), (status = 404, body = ErrorBody), (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub async fn get_tasks(
    State(state): State<GatewayState>,
    caller: Caller,
    Path(run_id): Path<String>,
) -> ApiResult<Json<RunTasks>> {
    let store = state.store()?;
    let Some(doc) = store.runs().get_json(&run_id).await? else {
        return Err(ApiError::run_not_found());
    };
    visible_to(&caller, &doc.value)?;
    let doc = doc.value;
    let field = |k: &str, default: Value| {
        doc.get(k)
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or(default)
    };
    Ok(Json(RunTasks {
        run_id: field("run_id", json!(run_id)),
        flow_name: field("flow_name", Value::Null),
        status: field("status", Value::Null),
        tasks: field("tasks", json!({})),
        task_records: field("task_records", json!({})),
        task_records_truncated: field("task_records_truncated", json!(false)),
    }))
}

/// Keys of a list summary, in the original's order.
const SUMMARY_KEYS: &[&str] = &[
    "run_id",
    "schedule_id",
    "flow_name",
    "tag",
    "tags",
    "tenant_id",
    "api_key_id",
    "status",
    "updated_at",
    "heartbeat_at",
    "worker_id",
    "error",
];

struct ListQuery {
    status: Option<String>,
    flow: Option<String>,
    tag: Option<String>,
    sha: Option<String>,
    schedule_id: Option<String>,
    updated_after: Option<f64>,
    cursor: Option<(f64, String)>,
    vnext: bool,
    full: bool,
    records: bool,
    limit: usize,
}

fn parse_list_query(mut q: QueryParams) -> ApiResult<ListQuery> {
    let limit = q.int_in("limit", 1, 200, 50) as usize;
    let updated_after = q.float("updated_after");
    q.check()?;
    let last = |k: &str| q.last(k).map(str::to_string);
    let cursor_raw = last("cursor");
    let cursor = match cursor_raw.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            decode_cursor(c)
                .ok_or_else(|| ApiError::new(ErrorCode::InvalidListQuery, "invalid list query"))?,
        ),
    };
    let sha = last("workflow_yaml_sha256").filter(|s| !s.is_empty());
    let include: Vec<&str> = q.all("include").collect();
    Ok(ListQuery {
        status: last("status").filter(|s| !s.is_empty()),
        flow: last("flow").filter(|s| !s.is_empty()),
        tag: last("tag").filter(|s| !s.is_empty()),
        schedule_id: last("schedule_id").filter(|s| !s.is_empty()),
        vnext: sha.is_some() || updated_after.is_some() || cursor_raw.is_some(),
        sha,
        updated_after,
        cursor,
        full: include.iter().any(|i| matches!(*i, "full" | "all")),
        records: include
            .iter()
            .any(|i| matches!(*i, "records" | "task_records")),
        limit,
    })
}

/// The original's cursor: base64url (no padding) of `{"u": updated_at, "r": run_id}`.
pub fn encode_cursor(updated_at: f64, run_id: &str) -> String {
    let json = json!({"u": updated_at, "r": run_id}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

pub(crate) fn decode_cursor(cursor: &str) -> Option<(f64, String)> {
    let cleaned: String = cursor
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cleaned)
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    let u = match v.get("u")? {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.parse().ok()?,
        _ => return None,
    };
    let r = match v.get("r")? {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Some((u, r))
}

/// `GET /runs`: compat mode returns an array; diff mode (`updated_after`, `cursor` or
/// `workflow_yaml_sha256`) returns `{items, next_cursor}`. Served from the run index: the
/// cost is the page, whatever the number of stored runs. An empty store lists `[]`.
#[utoipa::path(get, path = "/runs",
    params(("status" = Option<String>, Query), ("flow" = Option<String>, Query), ("tag" = Option<String>, Query),
        ("schedule_id" = Option<String>, Query), ("workflow_yaml_sha256" = Option<String>, Query, description = "switches to diff mode"),
        ("updated_after" = Option<f64>, Query, description = "switches to diff mode"), ("cursor" = Option<String>, Query, description = "switches to diff mode"),
        ("include" = Option<Vec<String>>, Query), ("limit" = Option<i64>, Query, minimum = 1, maximum = 200)),
    responses((status = 200, body = RunList), (status = 422, body = ErrorBody), (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub async fn list(
    State(state): State<GatewayState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<RunList>> {
    let q = parse_list_query(QueryParams::parse(&query))?;
    let index = state.run_index().await?;
    let store = state.store()?;
    let mut filters = Vec::new();
    for (field, value) in [
        (Field::Status, &q.status),
        (Field::Flow, &q.flow),
        (Field::Tag, &q.tag),
        (Field::WorkflowYamlSha256, &q.sha),
        (Field::ScheduleId, &q.schedule_id),
    ] {
        if let Some(v) = value {
            filters.push((field, v.clone()));
        }
    }
    // With keys on, a caller lists its tenant's runs only.
    if let Some(tenant) = caller.tenant() {
        filters.push((Field::Tenant, tenant.to_string()));
    }
    let page = index.page(&IndexQuery {
        filters,
        updated_after: q.updated_after,
        cursor: q.cursor.clone(),
        limit: q.limit,
    });
    let next_cursor = if page.more {
        page.items.last().map(|(u, r)| encode_cursor(*u, r))
    } else {
        None
    };
    let docs = store
        .runs()
        .get_listed(page.items.into_iter().map(|(_, run_id)| run_id))
        .await?;
    let page: Vec<Value> = docs
        .into_iter()
        .map(|d| project(d, q.full, q.records))
        .collect();
    if q.vnext {
        Ok(Json(RunList(
            json!({"items": page, "next_cursor": next_cursor}),
        )))
    } else {
        Ok(Json(RunList(Value::Array(page))))
    }
}

pub(super) fn project(doc: Value, full: bool, records: bool) -> Value {
    let Value::Object(mut m) = doc else {
        return doc;
    };
    if full {
        if !records {
            m.shift_remove("task_records");
            m.shift_remove("task_records_truncated");
        }
        return Value::Object(m);
    }
    let mut out = Map::new();
    for key in SUMMARY_KEYS {
        if let Some(v) = m.remove(*key) {
            out.insert((*key).to_string(), v);
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_matches_the_original_encoding() {
        let c = encode_cursor(1795313038.6524687, "502db55a-29e3-47d2-999c-e421d6cc10e3");
        assert_eq!(
            c,
            "eyJ1IjoxNzk1MzEzMDM4LjY1MjQ2ODcsInIiOiI1MDJkYjU1YS0yOWUzLTQ3ZDItOTk5Yy1lNDIxZDZjYzEwZTMifQ"
        );
        assert_eq!(
            decode_cursor(&c),
            Some((
                1795313038.6524687,
                "502db55a-29e3-47d2-999c-e421d6cc10e3".into()
            ))
        );
        assert_eq!(decode_cursor("abc"), None);
    }
}
