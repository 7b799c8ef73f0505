//! One error type for every handler. Bodies keep the original's shape (`{"detail": ...}`,
//! where a validation `detail` is FastAPI's list of problems) and add a stable `code`
//! (listed in spec/http-api.md).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::store::StoreError;

/// An HTTP error response.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: Value,
    /// Extra machine-readable context (e.g. the YAML reason code).
    pub reason: Option<String>,
}

/// Every `code` the gateway can answer with, for the spec test.
pub const ERROR_CODES: &[&str] = &[
    "route_not_found",
    "method_not_allowed",
    "validation_error",
    "run_not_found",
    "invalid_tag",
    "invalid_workflow_yaml",
    "missing_flow_name",
    "workflow_too_large",
    "request_too_large",
    "invalid_list_query",
    "worker_not_found",
    "invalid_workers_request",
    "invalid_wheel_name",
    "invalid_wheel_filename",
    "invalid_wheel_tags",
    "invalid_wheel_file",
    "wheel_preflight_failed",
    "wheel_too_large",
    "wheel_version_exists",
    "wheel_version_not_newer",
    "wheel_not_found",
    "invalid_action",
    "unhealthy",
    "nats_unavailable",
    "internal_error",
];

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<Value>) -> ApiError {
        ApiError {
            status,
            code,
            detail: detail.into(),
            reason: None,
        }
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> ApiError {
        self.reason = Some(reason.into());
        self
    }

    pub fn run_not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "run_not_found", "run not found")
    }

    pub fn worker_not_found() -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "worker_not_found",
            "worker not found",
        )
    }

    /// A `scope` or `state` of `GET /workers` that is not one of the allowed values.
    pub fn invalid_workers_request() -> ApiError {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_workers_request",
            "invalid workers request",
        )
    }

    pub fn unavailable(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "nats_unavailable",
            format!("nats unavailable: {what}"),
        )
    }

    /// FastAPI-style 422 with a list of problems.
    pub fn validation(problems: Vec<Value>) -> ApiError {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            Value::Array(problems),
        )
    }
}

/// One entry of a FastAPI 422 `detail` list.
pub fn problem(kind: &str, loc: &[Value], msg: &str, input: Value, ctx: Option<Value>) -> Value {
    let mut p = json!({"type": kind, "loc": loc, "msg": msg, "input": input});
    if let Some(ctx) = ctx {
        p["ctx"] = ctx;
    }
    p
}

impl From<StoreError> for ApiError {
    /// The detail names what failed, never the raw NATS error (that goes to the log).
    fn from(e: StoreError) -> ApiError {
        match &e {
            StoreError::Unavailable { op, .. } | StoreError::Failed { op, .. } => {
                tracing::warn!(error = %e, "nats unavailable");
                ApiError::unavailable(&format!("{op} failed"))
            }
            StoreError::Contended { .. } => {
                tracing::warn!(error = %e, "write contention");
                ApiError::unavailable("too many concurrent writes; retry")
            }
            _ => {
                tracing::error!(error = %e, "store error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "internal error",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"detail": self.detail, "code": self.code});
        if let Some(reason) = self.reason {
            body["reason"] = Value::String(reason);
        }
        (self.status, Json(body)).into_response()
    }
}
