//! The stable machine `code` of every HTTP error answer (spec/http-api.md, "Error codes").
//!
//! One enum, used on both sides of the wire: the gateway's `ApiError` takes an [`ErrorCode`]
//! (so its status cannot disagree with the spec), and `HttpClient`'s errors and the CLI parse
//! the body's `code` back into one (so they branch on variants, never on strings). It lives
//! outside `gateway` so a client built without the `gateway` feature has it too.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A stable error code; serialized as its snake_case name (`run_not_found`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// No route has this path.
    RouteNotFound,
    /// The path exists but not with this method.
    MethodNotAllowed,
    /// The body, form or query failed validation; `detail` is FastAPI's list of problems.
    ValidationError,
    /// No run with this id.
    RunNotFound,
    /// The routing tag of a YAML submission is not `[A-Za-z0-9_-]+`.
    InvalidTag,
    /// The uploaded `flow.yaml` is invalid; `reason` says why.
    InvalidWorkflowYaml,
    /// `flow_name` is blank after trimming.
    MissingFlowName,
    /// The uploaded workflow exceeds `PYOCO_WORKFLOW_YAML_MAX_BYTES`.
    WorkflowTooLarge,
    /// A `POST /runs` body over the limit.
    RequestTooLarge,
    /// The `cursor` of `GET /runs` cannot be decoded.
    InvalidListQuery,
    /// No worker record with this id.
    WorkerNotFound,
    /// `scope` or `state` of `GET /workers` is not an allowed value.
    InvalidWorkersRequest,
    /// A wheel name does not match `^[A-Za-z0-9._+-]+\.whl$`.
    InvalidWheelName,
    /// The uploaded name is not a PEP 427 wheel file name.
    InvalidWheelFilename,
    /// An upload tag is not `[A-Za-z0-9_-]+`.
    InvalidWheelTags,
    /// The upload is not a wheel of the project and version its name says.
    InvalidWheelFile,
    /// `preflight=strict` found problems.
    WheelPreflightFailed,
    /// The upload exceeds `PYOCO_WHEEL_MAX_BYTES`.
    WheelTooLarge,
    /// The project already has this version.
    WheelVersionExists,
    /// The project has a higher version.
    WheelVersionNotNewer,
    /// No such wheel.
    WheelNotFound,
    /// `action` of `GET /wheels/history` is not `upload` or `delete`.
    InvalidAction,
    /// `GET /health?strict=true` while NATS or the buckets are down.
    Unhealthy,
    /// NATS is not connected or a NATS operation failed; retry later.
    NatsUnavailable,
    /// `PYOCO_HTTP_AUTH_MODE=api_key` and the request carries no API key.
    ApiKeyRequired,
    /// The API key is malformed, unknown, revoked or wrong.
    InvalidApiKey,
    /// Over a request rate limit; `Retry-After` says when to retry.
    RateLimited,
    /// An `Idempotency-Key` already used for a different request.
    IdempotencyConflict,
    /// An `Idempotency-Key` that is empty, too long or not visible ASCII.
    InvalidIdempotencyKey,
    /// `POST /shutdown` without an admin key (or, without keys, `PYOCO_HTTP_ALLOW_SHUTDOWN`).
    ShutdownNotAllowed,
    /// `PYOCO_HTTP_HMAC_SECRET` is set and the request's signature is missing, wrong, stale
    /// or replayed.
    InvalidSignature,
    /// A stored document is corrupt or another internal failure (details only logged).
    InternalError,
    /// No schedule with this id (or another tenant's).
    ScheduleNotFound,
    /// The timing fields of `POST /schedules/yaml` are invalid; `detail` says which rule.
    InvalidSchedule,
    /// `PATCH /schedules/{id}` on a schedule that has completed.
    ScheduleCompleted,
    /// `POST /runs/cancel` without any filter.
    EmptyCancelFilter,
    /// `POST /runs/cancel` with a `status` that is not a run status.
    InvalidCancelFilter,
    /// `POST /runs/{id}/replay` of a run whose flow or bundle can no longer be found (or a
    /// bundle child run).
    ReplayUnavailable,
    /// The uploaded bundle is invalid; `reason` says why.
    InvalidWorkflowBundle,
    /// The uploaded bundle exceeds `PYOCO_WORKFLOW_BUNDLE_MAX_BYTES`.
    WorkflowBundleTooLarge,
    /// `POST /runs/{id}/approve` or `/reject` of a run that is not PENDING_APPROVAL.
    RunNotPendingApproval,
    /// `POST /runs/{id}/approve` of a run without a `bundle_hash`.
    BundleHashMissing,
    /// `POST /runs/{id}/approve` of a run whose bundle is no longer stored.
    WorkflowBundleNotFound,
    /// No registered flow with this name (in the caller's tenant).
    FlowNotFound,
    /// The registered flow has no such version.
    FlowVersionNotFound,
}

impl ErrorCode {
    /// Every code, in the order of the spec's table (the spec test compares the two).
    pub const ALL: [ErrorCode; 45] = [
        ErrorCode::RouteNotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::ValidationError,
        ErrorCode::RunNotFound,
        ErrorCode::InvalidTag,
        ErrorCode::InvalidWorkflowYaml,
        ErrorCode::MissingFlowName,
        ErrorCode::WorkflowTooLarge,
        ErrorCode::RequestTooLarge,
        ErrorCode::InvalidListQuery,
        ErrorCode::WorkerNotFound,
        ErrorCode::InvalidWorkersRequest,
        ErrorCode::InvalidWheelName,
        ErrorCode::InvalidWheelFilename,
        ErrorCode::InvalidWheelTags,
        ErrorCode::InvalidWheelFile,
        ErrorCode::WheelPreflightFailed,
        ErrorCode::WheelTooLarge,
        ErrorCode::WheelVersionExists,
        ErrorCode::WheelVersionNotNewer,
        ErrorCode::WheelNotFound,
        ErrorCode::InvalidAction,
        ErrorCode::Unhealthy,
        ErrorCode::NatsUnavailable,
        ErrorCode::InternalError,
        ErrorCode::ApiKeyRequired,
        ErrorCode::InvalidApiKey,
        ErrorCode::RateLimited,
        ErrorCode::InvalidSignature,
        ErrorCode::IdempotencyConflict,
        ErrorCode::InvalidIdempotencyKey,
        ErrorCode::ShutdownNotAllowed,
        ErrorCode::ScheduleNotFound,
        ErrorCode::InvalidSchedule,
        ErrorCode::ScheduleCompleted,
        ErrorCode::EmptyCancelFilter,
        ErrorCode::InvalidCancelFilter,
        ErrorCode::ReplayUnavailable,
        ErrorCode::InvalidWorkflowBundle,
        ErrorCode::WorkflowBundleTooLarge,
        ErrorCode::RunNotPendingApproval,
        ErrorCode::BundleHashMissing,
        ErrorCode::WorkflowBundleNotFound,
        ErrorCode::FlowNotFound,
        ErrorCode::FlowVersionNotFound,
    ];

    /// The HTTP status the gateway answers this code with (one status per code).
    pub const fn status(self) -> u16 {
        match self {
            ErrorCode::RouteNotFound
            | ErrorCode::RunNotFound
            | ErrorCode::WorkerNotFound
            | ErrorCode::WheelNotFound
            | ErrorCode::ScheduleNotFound
            | ErrorCode::FlowNotFound
            | ErrorCode::FlowVersionNotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::IdempotencyConflict
            | ErrorCode::ScheduleCompleted
            | ErrorCode::ReplayUnavailable
            | ErrorCode::RunNotPendingApproval
            | ErrorCode::BundleHashMissing
            | ErrorCode::WorkflowBundleNotFound => 409,
            ErrorCode::InvalidIdempotencyKey => 422,
            ErrorCode::ApiKeyRequired | ErrorCode::InvalidSignature => 401,
            ErrorCode::InvalidApiKey | ErrorCode::ShutdownNotAllowed => 403,
            ErrorCode::RateLimited => 429,
            ErrorCode::WheelVersionExists | ErrorCode::WheelVersionNotNewer => 409,
            ErrorCode::WorkflowTooLarge
            | ErrorCode::WorkflowBundleTooLarge
            | ErrorCode::RequestTooLarge
            | ErrorCode::WheelTooLarge => 413,
            ErrorCode::ValidationError
            | ErrorCode::InvalidTag
            | ErrorCode::InvalidWorkflowYaml
            | ErrorCode::InvalidWorkflowBundle
            | ErrorCode::MissingFlowName
            | ErrorCode::InvalidListQuery
            | ErrorCode::InvalidWorkersRequest
            | ErrorCode::InvalidWheelName
            | ErrorCode::InvalidWheelFilename
            | ErrorCode::InvalidWheelTags
            | ErrorCode::InvalidWheelFile
            | ErrorCode::WheelPreflightFailed
            | ErrorCode::InvalidAction
            | ErrorCode::InvalidSchedule
            | ErrorCode::EmptyCancelFilter
            | ErrorCode::InvalidCancelFilter => 422,
            ErrorCode::InternalError => 500,
            ErrorCode::Unhealthy | ErrorCode::NatsUnavailable => 503,
        }
    }

    /// The wire name, e.g. `run_not_found` (the same string serde writes).
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::RouteNotFound => "route_not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::ValidationError => "validation_error",
            ErrorCode::RunNotFound => "run_not_found",
            ErrorCode::ApiKeyRequired => "api_key_required",
            ErrorCode::InvalidApiKey => "invalid_api_key",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::InvalidSignature => "invalid_signature",
            ErrorCode::IdempotencyConflict => "idempotency_conflict",
            ErrorCode::InvalidIdempotencyKey => "invalid_idempotency_key",
            ErrorCode::ShutdownNotAllowed => "shutdown_not_allowed",
            ErrorCode::InvalidTag => "invalid_tag",
            ErrorCode::InvalidWorkflowYaml => "invalid_workflow_yaml",
            ErrorCode::MissingFlowName => "missing_flow_name",
            ErrorCode::WorkflowTooLarge => "workflow_too_large",
            ErrorCode::RequestTooLarge => "request_too_large",
            ErrorCode::InvalidListQuery => "invalid_list_query",
            ErrorCode::WorkerNotFound => "worker_not_found",
            ErrorCode::InvalidWorkersRequest => "invalid_workers_request",
            ErrorCode::InvalidWheelName => "invalid_wheel_name",
            ErrorCode::InvalidWheelFilename => "invalid_wheel_filename",
            ErrorCode::InvalidWheelTags => "invalid_wheel_tags",
            ErrorCode::InvalidWheelFile => "invalid_wheel_file",
            ErrorCode::WheelPreflightFailed => "wheel_preflight_failed",
            ErrorCode::WheelTooLarge => "wheel_too_large",
            ErrorCode::WheelVersionExists => "wheel_version_exists",
            ErrorCode::WheelVersionNotNewer => "wheel_version_not_newer",
            ErrorCode::WheelNotFound => "wheel_not_found",
            ErrorCode::InvalidAction => "invalid_action",
            ErrorCode::Unhealthy => "unhealthy",
            ErrorCode::NatsUnavailable => "nats_unavailable",
            ErrorCode::InternalError => "internal_error",
            ErrorCode::ScheduleNotFound => "schedule_not_found",
            ErrorCode::InvalidSchedule => "invalid_schedule",
            ErrorCode::ScheduleCompleted => "schedule_completed",
            ErrorCode::EmptyCancelFilter => "empty_cancel_filter",
            ErrorCode::InvalidCancelFilter => "invalid_cancel_filter",
            ErrorCode::ReplayUnavailable => "replay_unavailable",
            ErrorCode::InvalidWorkflowBundle => "invalid_workflow_bundle",
            ErrorCode::WorkflowBundleTooLarge => "workflow_bundle_too_large",
            ErrorCode::RunNotPendingApproval => "run_not_pending_approval",
            ErrorCode::BundleHashMissing => "bundle_hash_missing",
            ErrorCode::WorkflowBundleNotFound => "workflow_bundle_not_found",
            ErrorCode::FlowNotFound => "flow_not_found",
            ErrorCode::FlowVersionNotFound => "flow_version_not_found",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `code` this version does not know (a newer gateway's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown error code {0:?}")]
pub struct UnknownErrorCode(pub String);

impl FromStr for ErrorCode {
    type Err = UnknownErrorCode;

    fn from_str(s: &str) -> Result<ErrorCode, UnknownErrorCode> {
        ErrorCode::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownErrorCode(s.to_string()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test may panic
mod tests {
    use super::*;

    #[test]
    fn serde_name_is_as_str_and_parses_back() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(code.as_str().parse::<ErrorCode>(), Ok(code));
            assert!((400..600).contains(&code.status()), "{code}");
        }
        assert!("brand_new_code".parse::<ErrorCode>().is_err());
    }

    #[test]
    fn all_lists_each_code_once() {
        let names: std::collections::BTreeSet<_> =
            ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len());
    }
}
