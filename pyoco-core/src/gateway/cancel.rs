//! `POST /runs/{run_id}/cancel`: PENDING/RUNNING → CANCELLING with compare-and-set, so the
//! request is never lost to a worker's progress write. A run no worker has started yet is
//! CANCELLED at once (the original leaves it CANCELLING forever when its tag has no worker);
//! a worker that receives its job later sees a terminal run and skips it.

#[allow(unused_imports)]
use super::openapi::*;
use axum::Json;
use axum::extract::{Path, State};

use super::GatewayState;
use super::auth::Caller;
use super::error::ApiError;
use crate::store::{Store, StoreError, Versioned};

/// Cancels the run and answers its snapshot (without `task_records`). Idempotent: a terminal
/// run is returned unchanged, a second cancel keeps the first `cancel_requested_at`.
#[utoipa::path(post, path = "/runs/{run_id}/cancel", params(("run_id" = String, Path)),
    responses((status = 200, body = RunSnapshot), (status = 404, body = ErrorBody), (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub async fn cancel(
    State(state): State<GatewayState>,
    caller: Caller,
    Path(run_id): Path<String>,
) -> Result<Json<RunSnapshot>, ApiError> {
    let store = state.store()?;
    // A run's tenant never changes, so checking it before the compare-and-set is enough.
    match store.runs().get(&run_id).await? {
        Some(current) if caller.may_see(current.value.tenant_id.as_deref()) => {}
        _ => return Err(ApiError::run_not_found()),
    }
    let updated = request_cancel(store, &run_id, caller.actor()).await?;
    let Some(updated) = updated else {
        return Err(ApiError::run_not_found());
    };
    tracing::info!(run_id = %run_id, status = %updated.value.status, "cancel requested");
    super::runs::snapshot_answer(&updated.value)
}

/// Asks `run_id` to stop with compare-and-set (see the module doc); `None` when it does not
/// exist. A terminal run is left as it is. Shared by the single and the bulk cancel.
pub(super) async fn request_cancel(
    store: &Store,
    run_id: &str,
    requested_by: Option<String>,
) -> Result<Option<Versioned<crate::model::RunSnapshot>>, StoreError> {
    store.runs().request_cancel(run_id, requested_by).await
}
