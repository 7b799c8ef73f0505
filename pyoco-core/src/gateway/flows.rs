//! The flow registry routes (pyoco only): register a `flow.yaml` as the next version of a
//! name, list and show flows and versions, roll back, delete. Each tenant (API key mode) has a
//! registry of its own; without keys there is one. `POST /runs` by name runs the active
//! version (see [`resolve_registered`]).

#[allow(unused_imports)]
use super::openapi::*;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Multipart, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::sync::Arc;

use super::GatewayState;
use super::auth::Caller;
use super::error::ApiError;
use super::extract::json::{Fields, json_body};
use super::extract::multipart::Form;
use super::query::QueryParams;
use crate::error_code::ErrorCode;
use crate::flow::plan::plan;
use crate::flow::yaml::{parse_flow_yaml_within, sha256_hex, validate_all};
use crate::model::flow_registry::FlowVersion;
use crate::model::ident::{IdKind, check_id};
use crate::model::now;
use crate::store::flows::{FlowStore, NewVersion, RolledBack};
use crate::store::{NewRun, Store, YamlPayload};

type ApiResult<T> = Result<T, ApiError>;

fn flow_not_found() -> ApiError {
    ApiError::new(ErrorCode::FlowNotFound, "flow not found")
}

fn version_not_found() -> ApiError {
    ApiError::new(ErrorCode::FlowVersionNotFound, "flow version not found")
}

/// This gateway's cache of `name` is stale after a registry write, whatever its outcome (the
/// other gateways hear of it from their watch).
fn changed(state: &GatewayState, caller: &Caller, name: &str) {
    state
        .flow_cache()
        .forget(Some(&FlowStore::scope_of(caller.tenant(), name)));
}

fn to_value<T: serde::Serialize>(doc: &T) -> Value {
    serde_json::to_value(doc).unwrap_or(Value::Null)
}

/// `POST /flows` (multipart: file `workflow`, text `flow_name`): validates the YAML and stores
/// it as the next version of the name, which becomes active. 201 for a new version; 200 when
/// the YAML is identical to the latest version (nothing is stored).
#[utoipa::path(post, path = "/flows", request_body(content = SubmitYamlForm, content_type = "multipart/form-data"),
    responses((status = 201, description = "a new version, now active", body = FlowRegistered),
        (status = 200, description = "identical to the latest version: not a new version", body = FlowRegistered),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub async fn register(
    State(state): State<GatewayState>,
    caller: Caller,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> ApiResult<Response> {
    let limit = state.config.workflow_yaml_max_bytes;
    let form = super::runs::read_yaml_form(multipart, limit).await?;
    if form.workflow_size > limit {
        return Err(super::runs::workflow_too_large(limit));
    }
    parse_flow_yaml_within(&form.workflow, state.config.yaml_limits())
        .map_err(super::runs::invalid_workflow_yaml)?;
    let name = form.flow_name.trim();
    if name.is_empty() {
        return Err(ApiError::new(
            ErrorCode::MissingFlowName,
            "missing flow_name",
        ));
    }
    check_id(IdKind::FlowName, name)
        .map_err(|e| ApiError::new(ErrorCode::MissingFlowName, e.to_string()))?;
    let yaml = String::from_utf8_lossy(&form.workflow);
    let sha256 = sha256_hex(&form.workflow);
    let store = state.store()?;
    let registered = store
        .flows()
        .register(&NewVersion {
            tenant: caller.tenant(),
            name,
            yaml: &yaml,
            sha256: &sha256,
            registered_by: caller.0.as_ref().map(|id| id.key_id.as_str()),
            now: now(),
        })
        .await;
    changed(&state, &caller, name);
    let registered = registered?;
    let status = if registered.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = FlowRegistered {
        name: registered.record.name,
        version: registered.version,
        sha256,
        created: registered.created,
        active_version: registered.record.active_version,
    };
    Ok((status, Json(body)).into_response())
}

/// `GET /flows`: the caller's registered flows, by name.
#[utoipa::path(get, path = "/flows",
    responses((status = 200, body = Vec<FlowSummary>), (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub async fn list(
    State(state): State<GatewayState>,
    caller: Caller,
) -> ApiResult<Json<Vec<FlowSummary>>> {
    let records = state.store()?.flows().list(caller.tenant()).await?;
    Ok(Json(
        records
            .into_iter()
            .map(|r| FlowSummary {
                name: r.name,
                active_version: r.active_version,
                latest_version: r.latest_version,
                updated_at: r.updated_at,
            })
            .collect(),
    ))
}

/// `GET /flows/{name}`: the flow's record — every version (sha256, size, when and by whom),
/// the active and latest one.
#[utoipa::path(get, path = "/flows/{name}", params(("name" = String, Path)),
    responses((status = 200, body = FlowRecordView), (status = 404, body = ErrorBody), (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub async fn show(
    State(state): State<GatewayState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<FlowRecordView>> {
    let record = state
        .store()?
        .flows()
        .get(caller.tenant(), &name)
        .await?
        .ok_or_else(flow_not_found)?;
    Ok(Json(FlowRecordView(to_value(&record.value))))
}

/// `GET /flows/{name}/versions/{version}`: one version with its YAML.
#[utoipa::path(get, path = "/flows/{name}/versions/{version}", params(("name" = String, Path), ("version" = u64, Path)),
    responses((status = 200, body = FlowVersionView), (status = 404, body = ErrorBody), (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub async fn version(
    State(state): State<GatewayState>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Json<FlowVersionView>> {
    let flows = state.store()?.flows();
    let Ok(version) = version.parse::<u64>() else {
        return Err(version_not_found());
    };
    match flows.version(caller.tenant(), &name, version).await? {
        Some(v) => Ok(Json(FlowVersionView(to_value(&v)))),
        None if flows.get(caller.tenant(), &name).await?.is_none() => Err(flow_not_found()),
        None => Err(version_not_found()),
    }
}

/// `POST /flows/{name}/rollback` (`{"version": n}`): makes version `n` the active one. Runs
/// already submitted keep the version they were submitted with.
#[utoipa::path(post, path = "/flows/{name}/rollback", params(("name" = String, Path)), request_body = FlowRollbackRequest,
    responses((status = 200, body = FlowRecordView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub async fn rollback(
    State(state): State<GatewayState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Json<FlowRecordView>> {
    let body = json_body(body)?;
    let mut fields = Fields::of(&body)?;
    let version = fields.required_int_at_least("version", 1);
    fields.finish()?;
    let store = state.store()?;
    let rolled_back = store
        .flows()
        .rollback(caller.tenant(), &name, version as u64, now())
        .await;
    changed(&state, &caller, &name);
    match rolled_back? {
        RolledBack::Done(record) => Ok(Json(FlowRecordView(to_value(&record)))),
        RolledBack::NoFlow => Err(flow_not_found()),
        _ => Err(version_not_found()),
    }
}

/// `DELETE /flows/{name}`: removes the flow and every version of it (runs keep their YAML).
#[utoipa::path(delete, path = "/flows/{name}", params(("name" = String, Path)),
    responses((status = 200, body = FlowDeleted), (status = 404, body = ErrorBody), (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub async fn delete(
    State(state): State<GatewayState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<FlowDeleted>> {
    let deleted = state.store()?.flows().delete(caller.tenant(), &name).await;
    changed(&state, &caller, &name);
    if deleted? {
        Ok(Json(FlowDeleted {
            name,
            deleted: true,
        }))
    } else {
        Err(flow_not_found())
    }
}

/// `POST /flows/validate` (multipart: file `workflow`): every problem of the YAML at once, each
/// with its reason code and the line and column it is about; for a valid flow, its plan.
/// Nothing is stored.
#[utoipa::path(post, path = "/flows/validate", request_body(content = FlowValidateForm, content_type = "multipart/form-data"),
    responses((status = 200, body = FlowValidation), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn validate(
    State(state): State<GatewayState>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> ApiResult<Json<FlowValidation>> {
    let limit = state.config.workflow_yaml_max_bytes;
    let too_large = super::runs::workflow_too_large(limit);
    let mut form = Form::read(multipart, "workflow", limit, too_large.clone()).await?;
    if let Some(problem) = form.file_problem() {
        return Err(ApiError::validation(vec![problem]));
    }
    let file = form.take_file();
    if file.size > limit {
        return Err(too_large);
    }
    let limits = state.config.yaml_limits();
    let problems = validate_all(&file.data, limits);
    let plan = problems
        .is_empty()
        .then(|| parse_flow_yaml_within(&file.data, limits).ok())
        .flatten()
        .map(|spec| plan(&spec));
    Ok(Json(FlowValidation {
        valid: problems.is_empty(),
        sha256: sha256_hex(&file.data),
        problems: problems.iter().map(to_value).collect(),
        plan,
    }))
}

/// `POST /flows/{name}/dry-run` (`?version=n`, default the active one): parses and resolves
/// the version and answers its execution plan — stages, joins, fan-out, policies — without
/// running anything.
#[utoipa::path(post, path = "/flows/{name}/dry-run", params(("name" = String, Path), ("version" = Option<u64>, Query, description = "default: the active version")),
    responses((status = 200, body = FlowDryRun), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub async fn dry_run(
    State(state): State<GatewayState>,
    caller: Caller,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<FlowDryRun>> {
    let mut q = QueryParams::parse(&query);
    let version = q
        .last("version")
        .is_some()
        .then(|| q.int_in("version", 1, i64::MAX, 1) as u64);
    q.check()?;
    let flows = state.store()?.flows();
    let record = flows
        .get(caller.tenant(), &name)
        .await?
        .ok_or_else(flow_not_found)?;
    let version = version.unwrap_or(record.value.active_version);
    let doc = flows
        .version(caller.tenant(), &name, version)
        .await?
        .ok_or_else(version_not_found)?;
    let spec = parse_flow_yaml_within(doc.yaml.as_bytes(), state.config.yaml_limits())
        .map_err(super::runs::invalid_workflow_yaml)?;
    Ok(Json(FlowDryRun {
        name,
        version,
        active: version == record.value.active_version,
        sha256: doc.info.sha256,
        plan: plan(&spec),
    }))
}

/// A registered name's active version, read and parsed once per change of the registry
/// (what [`super::FlowCache`] keeps), not once per submit.
#[derive(Debug)]
pub(crate) struct ActiveFlow {
    version: FlowVersion,
    defaults: serde_json::Map<String, Value>,
    graph: Value,
}

/// A name in the flow registry (the caller's tenant's) runs its active version: the run
/// carries that YAML, so a later registration or rollback never changes it, and records the
/// version (`flow_version`) and the YAML's sha256. The body's params override the flow's
/// defaults. Other names are left to the worker to resolve, as in the original.
///
/// Whether a name is registered (and its active version, parsed) is remembered while the
/// gateway watches the registry, so most submits by name cost a map lookup, not two KV reads
/// and a YAML parse; another gateway's registration reaches this one as fast as NATS delivers
/// the change. A stored YAML that no longer parses is not remembered (422 on every submit).
pub(super) async fn resolve_registered(
    state: &GatewayState,
    store: &Store,
    caller: &Caller,
    run: &mut NewRun,
) -> ApiResult<()> {
    let cache = state.flow_cache();
    let scope = FlowStore::scope_of(caller.tenant(), &run.flow_name);
    let active = match cache.get(&scope) {
        Some(known) => known,
        None => {
            let epoch = cache.epoch();
            let found = match store
                .flows()
                .active(caller.tenant(), &run.flow_name)
                .await?
            {
                Some(version) => {
                    let spec =
                        parse_flow_yaml_within(version.yaml.as_bytes(), state.config.yaml_limits())
                            .map_err(super::runs::invalid_workflow_yaml)?;
                    Some(Arc::new(ActiveFlow {
                        defaults: spec.defaults,
                        graph: spec.graph.drawing(),
                        version,
                    }))
                }
                None => None,
            };
            cache.remember(&scope, found.clone(), epoch);
            found
        }
    };
    let Some(flow) = active else {
        return Ok(());
    };
    let mut params = flow.defaults.clone();
    params.extend(std::mem::take(&mut run.params));
    run.params = params;
    run.flow_graph = Some(flow.graph.clone());
    run.flow_version = Some(flow.version.info.version);
    run.yaml = Some(YamlPayload {
        bytes: flow.version.info.bytes,
        sha256: flow.version.info.sha256.clone(),
        text: flow.version.yaml.clone(),
    });
    Ok(())
}
