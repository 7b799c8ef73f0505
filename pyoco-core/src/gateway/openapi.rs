//! The OpenAPI document of the gateway, generated from the handlers' `#[utoipa::path]`
//! annotations (listed, with their tags, in the route table `super::routes`) and the schema
//! types below. The response types are what the handlers send, so the document cannot drift
//! from the bytes; a `Value` inside one passes stored documents through unchanged. The
//! request types only describe: handlers read bodies with `super::extract` to answer
//! FastAPI-shaped 422s. Served at `/openapi.json` and kept in
//! `spec/openapi.json` (a test fails when they differ or when a route is missing).

use axum::Json;
use serde::Serialize;
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

/// `POST /runs/bundle`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct SubmitBundleForm {
    /// The bundle YAML file.
    #[schema(value_type = String, format = Binary)]
    bundle: Vec<u8>,
    /// Routing tag of the root run (default `PYOCO_DEFAULT_TAG`).
    tag: Option<String>,
}

/// The body of `POST /runs/{run_id}/approve` and `/reject` (a JSON object is required; `{}`
/// will do).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ApprovalDecision {
    /// Stored as `approval_comment` by approve.
    comment: Option<String>,
    /// Stored as `rejection_reason` by reject.
    reason: Option<String>,
}

/// Answer of both submit routes.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubmitResponse {
    pub run_id: String,
    /// `PENDING` (`PENDING_APPROVAL` for a bundle that waits for approval); with `wait_sec`
    /// (202) the status when the wait ran out.
    pub status: String,
    /// The bundle's sha256 for `POST /runs/bundle`; null for the other submit routes.
    #[schema(value_type = Option<String>)]
    pub bundle_hash: Option<String>,
    /// Where to follow the run: only in a 202 answer to a submit with `wait_sec`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch_url: Option<String>,
}

impl SubmitResponse {
    /// The answer of a submit: the new run, PENDING, no bundle.
    pub fn pending(run_id: String) -> SubmitResponse {
        SubmitResponse {
            run_id,
            status: "PENDING".into(),
            bundle_hash: None,
            watch_url: None,
        }
    }
}

/// The 200 answer of a submit: a [`SubmitResponse`] without `wait_sec`, the run's terminal
/// snapshot (a [`RunSnapshot`]) with it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
pub struct SubmitAnswer(pub Value);

/// A run snapshot (see spec/documents.md); unknown fields are passed through.
#[derive(Debug, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
pub struct RunSnapshot(pub Value);

/// `{"items", "next_cursor"}` of `GET /runs` in diff mode, or an array in compat mode.
#[derive(Debug, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Value)]
pub struct RunList(pub Value);

// The values are copied from the stored snapshot as they are (another writer may have
// stored other types), hence `Value` fields.
/// `GET /runs/{run_id}/tasks`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunTasks {
    #[schema(value_type = String)]
    pub run_id: Value,
    #[schema(value_type = Option<String>)]
    pub flow_name: Value,
    #[schema(value_type = Option<String>)]
    pub status: Value,
    #[schema(value_type = Object)]
    pub tasks: Value,
    #[schema(value_type = Object)]
    pub task_records: Value,
    #[schema(value_type = bool)]
    pub task_records_truncated: Value,
}

/// A worker registry record (see spec/documents.md).
#[derive(Debug, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
pub struct WorkerRecord(pub Value);

/// `PATCH /workers/{worker_id}` body.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct PatchWorker {
    hidden: bool,
}

/// `PATCH /workers/{worker_id}` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct PatchWorkerResponse {
    pub worker_id: String,
    pub hidden: bool,
    pub updated_at: f64,
}

/// `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthReport {
    /// Always `ok` (compatible with the original).
    pub status: String,
    /// `healthy`, `degraded` or `unhealthy`.
    pub health: String,
    #[schema(value_type = Object)]
    pub components: Value,
}

/// Every error body: `detail` (a string, or FastAPI's list of problems for validation
/// errors) and a stable `code` (spec/http-api.md).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A sentence, or FastAPI's list of problems: any JSON value.
    #[schema(value_type = Value)]
    pub detail: Value,
    #[schema(value_type = String)]
    pub code: crate::error_code::ErrorCode,
    /// The flow.yaml reason code, for `invalid_workflow_yaml`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A wheel in `GET /wheels` (the original's keys, then ours parsed from the file name).
#[derive(Debug, Serialize, ToSchema)]
pub struct WheelItem {
    pub name: String,
    pub size_bytes: u64,
    /// `SHA-256=<base64url with padding>`.
    pub digest: Option<String>,
    /// The part of `digest` after `SHA-256=`.
    pub sha256_b64: Option<String>,
    /// ISO-8601, e.g. `2026-11-22T02:05:17.039151+00:00`.
    pub mtime: Option<String>,
    /// Changes on every upload; workers reinstall when it changes.
    pub nuid: String,
    /// Routing tags (`[]`: every worker).
    pub tags: Vec<String>,
    /// PEP 503 canonical project name (our addition).
    pub package_name: Option<String>,
    /// PEP 440 version (our addition).
    pub package_version: Option<String>,
    /// `python-abi-platform` tags of the file name (our addition).
    pub compatibility_tags: Vec<String>,
}

/// `POST /wheels` multipart form.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct WheelUploadForm {
    /// The wheel; its file name is the object name.
    #[schema(value_type = String, format = Binary)]
    wheel: Vec<u8>,
    /// Comma-separated routing tags.
    tags: Option<String>,
    /// Recorded in the history (default true).
    replace: Option<bool>,
    /// `strict`, `warn` or `off` (default): the client's preflight checks on the server (our addition).
    preflight: Option<String>,
    allow_no_entry_points: Option<bool>,
    allow_missing_usage_doc: Option<bool>,
}

/// `POST /wheels` answer: a wheel item plus `sha256_hex` (and `preflight_warnings` when a
/// preflight ran).
#[derive(Debug, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
pub struct WheelUploaded(pub Value);

/// A wheel history event (see spec/documents.md).
#[derive(Debug, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
pub struct WheelHistoryEvent(pub Value);

/// `DELETE /wheels/{wheel_name}` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct WheelDeleted {
    pub name: String,
    /// Always true.
    pub deleted: bool,
}

/// `POST /schedules/yaml` multipart form.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ScheduleYamlForm {
    /// The flow.yaml file.
    #[schema(value_type = String, format = Binary)]
    workflow: Vec<u8>,
    flow_name: String,
    tag: Option<String>,
    /// ISO 8601 with offset: fire once at this time.
    run_at: Option<String>,
    /// Fire every this many seconds.
    interval_seconds: Option<f64>,
    /// ISO 8601 with offset: the anchor of an interval schedule.
    start_at: Option<String>,
    /// A 5- or 6-field cron expression (our addition).
    cron: Option<String>,
    /// IANA timezone of `cron` (default `UTC`; our addition).
    timezone: Option<String>,
    /// `skip` or `run_once` (default): slots missed while no gateway was up (our addition).
    misfire: Option<String>,
}

/// A schedule as the routes show it: the original's 19 keys, then `cron`, `timezone`,
/// `misfire` and `missed_slots` (see spec/documents.md).
#[derive(Debug, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
pub struct ScheduleView(pub Value);

/// `DELETE /schedules/{schedule_id}` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleDeleted {
    pub schedule_id: String,
    /// Always true.
    pub deleted: bool,
}

/// `PATCH /schedules/{schedule_id}` body.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct PatchSchedule {
    /// true pauses, false resumes.
    paused: bool,
}

/// `POST /runs/cancel` body: every given criterion must match; at least one is required.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct BulkCancelRequest {
    /// A run status (e.g. `RUNNING`); without it every non-terminal status.
    status: Option<String>,
    flow: Option<String>,
    tag: Option<String>,
    schedule_id: Option<String>,
    /// Only these runs.
    run_ids: Option<Vec<String>>,
    /// Only runs whose `updated_at` is earlier.
    updated_before: Option<f64>,
}

/// `POST /runs/cancel` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkCancelResponse {
    /// How many runs are now CANCELLING or CANCELLED.
    pub count: usize,
    pub run_ids: Vec<String>,
    /// More than 10,000 runs matched; repeat the request for the rest.
    pub truncated: bool,
}

/// `POST /runs/{run_id}/replay` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayResponse {
    /// The new run.
    pub run_id: String,
    /// `PENDING` (`PENDING_APPROVAL` for a bundle root that waits for approval).
    pub status: String,
    /// The replayed run.
    pub replay_of: String,
}

/// Answer of `POST /flows`.
#[derive(Debug, Serialize, ToSchema)]
pub struct FlowRegistered {
    pub name: String,
    /// The version this YAML is: the new one, or the latest when it was identical.
    pub version: u64,
    /// Hex SHA-256 of the YAML bytes.
    pub sha256: String,
    /// False when the YAML was identical to the latest version (nothing stored).
    pub created: bool,
    pub active_version: u64,
}

/// One entry of `GET /flows`.
#[derive(Debug, Serialize, ToSchema)]
pub struct FlowSummary {
    pub name: String,
    pub active_version: u64,
    pub latest_version: u64,
    pub updated_at: f64,
}

/// A flow record of the registry (see spec/documents.md, "Flow registry").
#[derive(Debug, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
pub struct FlowRecordView(pub Value);

/// One version of a registered flow, with its YAML (see spec/documents.md).
#[derive(Debug, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
pub struct FlowVersionView(pub Value);

/// `POST /flows/{name}/rollback` body.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct FlowRollbackRequest {
    /// The version to make active.
    #[schema(minimum = 1)]
    version: u64,
}

/// `POST /flows/validate` multipart form.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct FlowValidateForm {
    /// The flow.yaml file.
    #[schema(value_type = String, format = Binary)]
    workflow: Vec<u8>,
}

/// Answer of `POST /flows/validate`.
#[derive(Debug, Serialize, ToSchema)]
pub struct FlowValidation {
    pub valid: bool,
    pub sha256: String,
    /// `{code, reason, path, line, column}` per problem, in validation order.
    #[schema(value_type = Vec<Object>)]
    pub problems: Vec<Value>,
    /// The execution plan, when valid (as `POST /flows/{name}/dry-run` gives it).
    #[schema(value_type = Option<Object>)]
    pub plan: Option<Value>,
}

/// Answer of `POST /flows/{name}/dry-run`.
#[derive(Debug, Serialize, ToSchema)]
pub struct FlowDryRun {
    pub name: String,
    pub version: u64,
    /// Whether this is the active version.
    pub active: bool,
    pub sha256: String,
    /// `{mode, stages, tasks, on_error, params}` (see spec/http-api.md).
    #[schema(value_type = Object)]
    pub plan: Value,
}

/// Answer of `DELETE /flows/{name}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct FlowDeleted {
    pub name: String,
    pub deleted: bool,
}

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "pyoco gateway",
        description = "HTTP API of pyoco, wire-compatible with pyoco-server 0.7.0. See spec/http-api.md."
    ),
    components(schemas(
        SubmitRunRequest,
        SubmitYamlForm,
        SubmitBundleForm,
        ApprovalDecision,
        SubmitResponse,
        SubmitAnswer,
        RunSnapshot,
        RunList,
        RunTasks,
        WorkerRecord,
        PatchWorker,
        PatchWorkerResponse,
        HealthReport,
        WheelItem,
        WheelUploadForm,
        WheelUploaded,
        WheelHistoryEvent,
        WheelDeleted,
        ScheduleYamlForm,
        ScheduleView,
        ScheduleDeleted,
        PatchSchedule,
        BulkCancelRequest,
        BulkCancelResponse,
        ReplayResponse,
        FlowRegistered,
        FlowSummary,
        FlowRecordView,
        FlowVersionView,
        FlowRollbackRequest,
        FlowDeleted,
        FlowValidateForm,
        FlowValidation,
        FlowDryRun,
        ErrorBody
    ))
)]
pub struct ApiDoc;

/// The document as JSON: the info and schemas above, the paths from the route table.
pub fn document() -> Value {
    let mut doc = ApiDoc::openapi();
    doc.paths = super::routes::openapi_paths();
    serde_json::to_value(doc).unwrap_or(Value::Null)
}

/// `GET /openapi.json`.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "This OpenAPI document", body = Object)))]
pub async fn openapi_json() -> Json<Value> {
    Json(document())
}
