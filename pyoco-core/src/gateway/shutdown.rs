//! `POST /shutdown`: a graceful stop over HTTP, for supervisors that cannot send signals.
//! Admin keys only (or, without keys, `PYOCO_HTTP_ALLOW_SHUTDOWN=true`).

#[allow(unused_imports)]
use super::openapi::*;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::GatewayState;
use super::auth::Caller;
use super::error::ApiError;
use crate::config::AuthMode;
use crate::error_code::ErrorCode;

/// Starts a graceful shutdown and answers 202 before the listener closes.
#[utoipa::path(post, path = "/shutdown",
    responses((status = 202, description = "shutting down", body = Object), (status = 403, body = ErrorBody)))]
pub async fn shutdown(
    State(state): State<GatewayState>,
    caller: Caller,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let allowed = match state.config.http_auth_mode {
        // The route's Admin access already refused other keys; check again, cheaply.
        AuthMode::ApiKey => caller.0.as_ref().is_some_and(|id| id.admin),
        _ => state.config.http_allow_shutdown,
    };
    if !allowed {
        let detail = if state.config.http_auth_mode == AuthMode::ApiKey {
            "shutdown needs an admin api key"
        } else {
            "shutdown is disabled (set PYOCO_HTTP_ALLOW_SHUTDOWN=true or use admin api keys)"
        };
        return Err(ApiError::new(ErrorCode::ShutdownNotAllowed, detail));
    }
    tracing::warn!(actor = ?caller.actor(), "shutdown requested");
    // In-flight requests (this one included) finish: the graceful shutdown waits for them.
    state.request_shutdown();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"status": "shutting down"})),
    ))
}
