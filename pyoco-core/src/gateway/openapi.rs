//! The OpenAPI document of the gateway, generated from the handlers' `#[utoipa::path]`
//! annotations and the schema types below (the wire shapes; handlers parse bodies themselves
//! to answer FastAPI-compatible 422s). Served at `/openapi.json` and kept in
//! `spec/openapi.json` (a test fails when they differ or when a route is missing).

use axum::Json;
use serde_json::Value;
use utoipa::{OpenApi, ToSchema};

/// `POST /runs` body.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct SubmitRunRequest {
    /// Name of the flow the worker resolves.
    #[schema(min_length = 1)]
    flow_name: String,
    /// Run params (default `{}`).
    #[schema(value_type = Object)]
    params: Option<Value>,
    /// Routing tag (default `PYOCO_DEFAULT_TAG`).
    #[schema(pattern = "^[A-Za-z0-9_-]+$")]
    tag: Option<String>,
    /// Informational tags (default `[tag]`).
    tags: Option<Vec<String>>,
}

/// `POST /runs/yaml` multipart form.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct SubmitYamlForm {
    /// The flow.yaml file.
    #[schema(value_type = String, format = Binary)]
    workflow: Vec<u8>,
    flow_name: String,
    tag: Option<String>,
}

/// Answer of both submit routes.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct SubmitResponse {
    run_id: String,
    /// Always `PENDING`.
    status: String,
    /// Always null for these routes.
    #[schema(value_type = Option<String>)]
    bundle_hash: Option<String>,
}

/// A run snapshot (see spec/documents.md); unknown fields are passed through.
#[derive(Debug, ToSchema)]
#[schema(value_type = Object)]
#[allow(dead_code)]
pub struct RunSnapshot(Value);

/// `{"items", "next_cursor"}` of `GET /runs` in diff mode, or an array in compat mode.
#[derive(Debug, ToSchema)]
#[schema(value_type = Object)]
#[allow(dead_code)]
pub struct RunList(Value);

/// `GET /runs/{run_id}/tasks`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct RunTasks {
    run_id: String,
    flow_name: Option<String>,
    status: Option<String>,
    #[schema(value_type = Object)]
    tasks: Value,
    #[schema(value_type = Object)]
    task_records: Value,
    task_records_truncated: bool,
}

/// A worker registry record (see spec/documents.md).
#[derive(Debug, ToSchema)]
#[schema(value_type = Object)]
#[allow(dead_code)]
pub struct WorkerRecord(Value);

/// `PATCH /workers/{worker_id}` body.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct PatchWorker {
    hidden: bool,
}

/// `PATCH /workers/{worker_id}` answer.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct PatchWorkerResponse {
    worker_id: String,
    hidden: bool,
    updated_at: f64,
}

/// `GET /health`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct HealthReport {
    /// Always `ok` (compatible with the original).
    status: String,
    /// `healthy`, `degraded` or `unhealthy`.
    health: String,
    #[schema(value_type = Object)]
    components: Value,
}

/// Every error body: `detail` (a string, or FastAPI's list of problems for validation
/// errors) and a stable `code` (spec/http-api.md).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    #[schema(value_type = Object)]
    detail: Value,
    code: String,
    /// The flow.yaml reason code, for `invalid_workflow_yaml`.
    reason: Option<String>,
}

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "pyoco gateway",
        description = "HTTP API of pyoco, wire-compatible with pyoco-server 0.7.0. See spec/http-api.md."
    ),
    paths(
        super::health::health,
        super::runs::submit,
        super::runs::list,
        super::runs::submit_yaml,
        super::runs::get_run,
        super::runs::get_tasks,
        super::watch::watch,
        super::cancel::cancel,
        super::workers::list,
        super::workers::patch,
        super::metrics::metrics,
        openapi_json,
    ),
    components(schemas(
        SubmitRunRequest,
        SubmitYamlForm,
        SubmitResponse,
        RunSnapshot,
        RunList,
        RunTasks,
        WorkerRecord,
        PatchWorker,
        PatchWorkerResponse,
        HealthReport,
        ErrorBody
    ))
)]
pub struct ApiDoc;

/// The document as JSON.
pub fn document() -> Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null)
}

/// `GET /openapi.json`.
#[utoipa::path(get, path = "/openapi.json", tag = "meta", responses((status = 200, description = "This OpenAPI document", body = Object)))]
pub async fn openapi_json() -> Json<Value> {
    Json(document())
}
