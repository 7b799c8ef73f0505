//! Bundle routes: `POST /runs/bundle` (a multi-workflow YAML whose entry workflow runs as the
//! root run) and the approval of roots that wait in PENDING_APPROVAL (`POST
//! /runs/{run_id}/approve` and `/reject`), with the original's messages and checks in its
//! order. Approve and reject are compare-and-set writes, so of two racing decisions one wins
//! and the other gets the original's 409.

#[allow(unused_imports)]
use super::openapi::*;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Multipart, Path, State};
use serde_json::{Value, json};

use super::GatewayState;
use super::auth::Caller;
use super::error::{ApiError, problem};
use super::extract::json::{Fields, decode_json};
use super::extract::multipart::Form;
use super::runs::{snapshot_answer, stamp, submit_error, visible_to};
use crate::error_code::ErrorCode;
use crate::flow::yaml::bundle::parse_bundle;
use crate::flow::yaml::sha256_hex;
use crate::model::bundle::{APPROVAL_APPROVED, APPROVAL_PENDING, APPROVAL_REJECTED};
use crate::model::{Change, RunStatus, is_valid_tag, now};
use crate::store::{BundleRun, NewRun, Versioned};

type ApiResult<T> = Result<T, ApiError>;

fn bundle_too_large(limit: usize) -> ApiError {
    ApiError::new(
        ErrorCode::WorkflowBundleTooLarge,
        "workflow bundle too large",
    )
    .with_reason(format!(
        "the bundle is over PYOCO_WORKFLOW_BUNDLE_MAX_BYTES ({limit} bytes)"
    ))
}

/// `POST /runs/bundle` (multipart: file `bundle`, optional text `tag`).
#[utoipa::path(post, path = "/runs/bundle", request_body(content = SubmitBundleForm, content_type = "multipart/form-data"),
    responses((status = 200, body = SubmitResponse), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub async fn submit_bundle(
    State(state): State<GatewayState>,
    caller: Caller,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> ApiResult<Json<SubmitResponse>> {
    let limit = state.config.workflow_bundle_max_bytes;
    let mut form = Form::read(multipart, "bundle", limit, bundle_too_large(limit)).await?;
    if let Some(p) = form.file_problem() {
        return Err(ApiError::validation(vec![p]));
    }
    let tag = form
        .text("tag")
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| state.config.default_tag.clone());
    if !is_valid_tag(&tag) {
        return Err(ApiError::new(ErrorCode::InvalidTag, "invalid tag"));
    }
    let file = form.take_file();
    if file.size > limit {
        return Err(bundle_too_large(limit));
    }
    let bundle = parse_bundle(&file.data, state.config.yaml_limits()).map_err(|e| {
        tracing::info!(reason = %e.reason, "invalid workflow bundle");
        ApiError::new(ErrorCode::InvalidWorkflowBundle, "invalid workflow bundle")
            .with_reason(e.reason)
    })?;
    let awaiting_approval = state.config.spawn_requires_approval && bundle.entry_spawns();
    let sha256 = sha256_hex(&file.data);
    let entry = bundle.entry_workflow.clone();
    let flow_graph = bundle.workflow(&entry).map(|w| w.graph.drawing());
    let mut run = NewRun {
        flow_name: entry.clone(),
        params: bundle.inputs,
        tag: Some(tag),
        flow_graph,
        bundle: Some(BundleRun {
            text: String::from_utf8_lossy(&file.data).into_owned(),
            sha256: sha256.clone(),
            bytes: file.data.len() as u64,
            entry_workflow: entry,
            awaiting_approval,
            ..Default::default()
        }),
        ..Default::default()
    };
    stamp(&mut run, &caller);
    let store = state.store()?.clone();
    let run_id = state
        .spawn_to_end(async move { store.submit(run).await })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "bundle submit task failed");
            ApiError::internal()
        })?
        .map_err(submit_error)?;
    let status = if awaiting_approval {
        RunStatus::PendingApproval
    } else {
        RunStatus::Pending
    };
    Ok(Json(SubmitResponse {
        run_id,
        status: status.as_str().into(),
        bundle_hash: Some(sha256),
        watch_url: None,
    }))
}

/// The approve/reject body: a JSON object is required (`{}` will do), as in the original.
fn decision_body(
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Value> {
    let bytes = super::extract::query::body_bytes(body)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::validation(vec![problem(
            "missing",
            &[json!("body")],
            "Field required",
            Value::Null,
            None,
        )]));
    }
    decode_json(&bytes)
}

/// The run as the caller may see it, still waiting for approval; the original's 404 and 409.
async fn pending_approval(
    state: &GatewayState,
    caller: &Caller,
    run_id: &str,
) -> ApiResult<Versioned<crate::model::RunSnapshot>> {
    let store = state.store()?;
    let Some(current) = store.runs().get(run_id).await? else {
        return Err(ApiError::run_not_found());
    };
    visible_to(caller, &json!({"tenant_id": current.value.tenant_id}))?;
    if current.value.status != RunStatus::PendingApproval {
        return Err(not_pending());
    }
    Ok(current)
}

/// Writes a decision on `run_id` with `decide` (given the decision's time), compare-and-set
/// from `current`, only while the run still waits for approval; the original's 409 when a
/// racing decision or a cancel got there first (its write must not count as ours).
async fn decide(
    store: &crate::store::Store,
    run_id: &str,
    current: Versioned<crate::model::RunSnapshot>,
    mut decide: impl FnMut(&mut crate::model::RunSnapshot, f64),
) -> ApiResult<Versioned<crate::model::RunSnapshot>> {
    let mut wrote = false;
    store
        .runs()
        .update_from(run_id, Some(current), |doc| {
            wrote = doc.status == RunStatus::PendingApproval;
            if !wrote {
                return Change::Keep;
            }
            let at = now();
            decide(doc, at);
            doc.updated_at = Some(at);
            Change::Write
        })
        .await?
        .filter(|_| wrote)
        .ok_or_else(not_pending)
}

fn not_pending() -> ApiError {
    ApiError::new(
        ErrorCode::RunNotPendingApproval,
        "run is not pending approval",
    )
}

/// `POST /runs/{run_id}/approve`: PENDING_APPROVAL → PENDING, then the job is published; if
/// the publish fails the approval is taken back and the answer is 503.
#[utoipa::path(post, path = "/runs/{run_id}/approve", params(("run_id" = String, Path)), request_body = ApprovalDecision,
    responses((status = 200, body = RunSnapshot), (status = 404, body = ErrorBody), (status = 409, description = "not pending approval, or its bundle is gone", body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub async fn approve(
    State(state): State<GatewayState>,
    caller: Caller,
    Path(run_id): Path<String>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Json<RunSnapshot>> {
    let body = decision_body(body)?;
    let mut fields = Fields::of(&body)?;
    let comment = fields.optional_string("comment");
    fields.optional_string("reason");
    fields.finish()?;
    let current = pending_approval(&state, &caller, &run_id).await?;
    let store = state.store()?;
    let hash = current
        .value
        .bundle_hash
        .as_deref()
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or_else(|| ApiError::new(ErrorCode::BundleHashMissing, "bundle hash missing"))?;
    if store.stashed_workflow(hash).await?.is_none() {
        return Err(ApiError::new(
            ErrorCode::WorkflowBundleNotFound,
            "workflow bundle not found",
        ));
    }
    let approved_by = caller.actor();
    let approved = decide(store, &run_id, current, |doc, at| {
        doc.status = RunStatus::Pending;
        doc.approval_status = Some(APPROVAL_APPROVED.into());
        doc.approved_at = Some(at);
        doc.approved_by = approved_by.clone();
        doc.approval_comment = comment.clone();
    })
    .await?;
    let published = match store.publish_run_job(&approved.value).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(reason)) => Err(ApiError::new(
            ErrorCode::WorkflowBundleNotFound,
            "workflow bundle not found",
        )
        .with_reason(reason)),
        Err(e) => Err(ApiError::from(e)),
    };
    if let Err(e) = published {
        // Not queued: back to waiting, unless a worker or a cancel wrote the run meanwhile.
        let revision = approved.revision;
        let restored = store
            .runs()
            .update_from(&run_id, Some(approved), |doc| {
                if doc.status != RunStatus::Pending || doc.worker_id.is_some() {
                    return Change::Keep;
                }
                doc.status = RunStatus::PendingApproval;
                doc.approval_status = Some(APPROVAL_PENDING.into());
                doc.approved_at = None;
                doc.approved_by = None;
                doc.approval_comment = None;
                Change::Write
            })
            .await;
        if let Err(restore) = restored {
            tracing::error!(run_id = %run_id, revision, error = %restore, "could not take back an approval whose job was not queued");
        }
        return Err(e);
    }
    tracing::info!(run_id = %run_id, "bundle run approved");
    snapshot_answer(&approved.value)
}

/// `POST /runs/{run_id}/reject`: PENDING_APPROVAL → CANCELLED with the reason.
#[utoipa::path(post, path = "/runs/{run_id}/reject", params(("run_id" = String, Path)), request_body = ApprovalDecision,
    responses((status = 200, body = RunSnapshot), (status = 404, body = ErrorBody), (status = 409, description = "not pending approval", body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub async fn reject(
    State(state): State<GatewayState>,
    caller: Caller,
    Path(run_id): Path<String>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Json<RunSnapshot>> {
    let body = decision_body(body)?;
    let mut fields = Fields::of(&body)?;
    fields.optional_string("comment");
    let reason = fields.optional_string("reason");
    fields.finish()?;
    let current = pending_approval(&state, &caller, &run_id).await?;
    let rejected_by = caller.actor();
    let rejected = decide(state.store()?, &run_id, current, |doc, at| {
        doc.status = RunStatus::Cancelled;
        doc.approval_status = Some(APPROVAL_REJECTED.into());
        doc.rejected_at = Some(at);
        doc.rejected_by = rejected_by.clone();
        doc.rejection_reason = reason.clone();
        doc.end_time = Some(at);
    })
    .await?;
    tracing::info!(run_id = %run_id, "bundle run rejected");
    snapshot_answer(&rejected.value)
}
