//! One error type for every handler. Bodies keep the original's shape (`{"detail": ...}`,
//! where a validation `detail` is FastAPI's list of problems) and add a stable `code`
//! (an [`ErrorCode`], listed in spec/http-api.md).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::openapi::ErrorBody;
use crate::error_code::ErrorCode;
use crate::store::StoreError;

/// An HTTP error response; its status follows from its [`ErrorCode`].
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub detail: Value,
    /// Extra machine-readable context (e.g. the YAML reason code).
    pub reason: Option<String>,
    /// Sent as `Retry-After` (whole seconds, at least 1) with a 429 or 503.
    pub retry_after: Option<std::time::Duration>,
}

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<Value>) -> ApiError {
        ApiError {
            code,
            detail: detail.into(),
            reason: None,
            retry_after: None,
        }
    }

    /// The HTTP status of this answer (the code's; see spec/http-api.md).
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> ApiError {
        self.reason = Some(reason.into());
        self
    }

    /// Tells the client when to try again (`Retry-After`).
    pub fn with_retry_after(mut self, after: std::time::Duration) -> ApiError {
        self.retry_after = Some(after);
        self
    }

    /// 413 for a body over `limit` bytes (routes whose limit is not the original's).
    pub fn request_too_large(limit: usize) -> ApiError {
        ApiError::new(
            ErrorCode::RequestTooLarge,
            format!("request body too large (limit {limit} bytes)"),
        )
    }

    pub fn run_not_found() -> ApiError {
        ApiError::new(ErrorCode::RunNotFound, "run not found")
    }

    pub fn worker_not_found() -> ApiError {
        ApiError::new(ErrorCode::WorkerNotFound, "worker not found")
    }

    /// A `scope` or `state` of `GET /workers` that is not one of the allowed values.
    pub fn invalid_workers_request() -> ApiError {
        ApiError::new(ErrorCode::InvalidWorkersRequest, "invalid workers request")
    }

    pub fn unavailable(what: &str) -> ApiError {
        ApiError::new(
            ErrorCode::NatsUnavailable,
            format!("nats unavailable: {what}"),
        )
    }

    /// A failure whose details only go to the log; the body says `internal error`.
    pub fn internal() -> ApiError {
        ApiError::new(ErrorCode::InternalError, "internal error")
    }

    /// FastAPI-style 422 with a list of problems.
    pub fn validation(problems: Vec<Value>) -> ApiError {
        ApiError::new(ErrorCode::ValidationError, Value::Array(problems))
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
                ApiError::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = self.retry_after;
        let body = ErrorBody {
            detail: self.detail,
            code: self.code,
            reason: self.reason,
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(after) = retry_after {
            let secs = after.as_secs_f64().ceil().max(1.0) as u64;
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}
