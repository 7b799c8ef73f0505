//! Operations on many runs (pyoco only; no peer on NATS has them): `POST /runs/cancel` cancels
//! every run matching a filter, `POST /runs/{run_id}/replay` starts a run again.

#[allow(unused_imports)]
use super::openapi::*;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use futures::StreamExt;
use std::collections::BTreeSet;

use super::GatewayState;
use super::auth::Caller;
use super::cancel::request_cancel;
use super::error::ApiError;
use super::extract::json::{Fields, json_body};
use super::index::{Field, Query as IndexQuery};
use crate::error_code::ErrorCode;
use crate::flow::yaml::bundle::parse_bundle;
use crate::flow::yaml::{parse_flow_yaml_within, sha256_hex};
use crate::model::{RunSnapshot as Snapshot, RunStatus};
use crate::store::{BundleRun, NewRun, Store, YamlPayload};

type ApiResult<T> = Result<T, ApiError>;

/// At most this many runs are cancelled per request (`truncated` says when more matched;
/// repeating the request cancels the next ones).
const MAX_BULK_CANCEL: usize = 10_000;

/// The filter of a bulk cancel; every given criterion must match.
#[derive(Debug, Default)]
struct CancelFilter {
    status: Option<String>,
    flow: Option<String>,
    tag: Option<String>,
    schedule_id: Option<String>,
    run_ids: Option<BTreeSet<String>>,
    updated_before: Option<f64>,
}

fn parse_filter(body: &serde_json::Value) -> ApiResult<CancelFilter> {
    let mut fields = Fields::of(body)?;
    let status = fields.optional_string("status");
    let flow = fields.optional_string("flow");
    let tag = fields.optional_string("tag");
    let schedule_id = fields.optional_string("schedule_id");
    let run_ids = fields
        .get("run_ids")
        .filter(|v| !v.is_null())
        .map(|_| fields.string_list("run_ids"));
    let updated_before = fields.optional_float("updated_before");
    fields.finish()?;
    let filter = CancelFilter {
        status,
        flow,
        tag,
        schedule_id,
        run_ids: run_ids.map(|ids| ids.into_iter().collect()),
        updated_before,
    };
    let empty = filter.status.is_none()
        && filter.flow.is_none()
        && filter.tag.is_none()
        && filter.schedule_id.is_none()
        && filter.run_ids.is_none()
        && filter.updated_before.is_none();
    if empty {
        // Cancelling every run needs saying so: `{"status": "RUNNING"}` and friends.
        return Err(ApiError::new(
            ErrorCode::EmptyCancelFilter,
            "specify at least one filter",
        ));
    }
    if filter
        .status
        .as_deref()
        .is_some_and(|s| RunStatus::from_wire(s).is_none())
    {
        return Err(ApiError::new(
            ErrorCode::InvalidCancelFilter,
            "invalid status",
        ));
    }
    Ok(filter)
}

/// The ids of the caller's non-terminal runs matching `filter`, newest first, at most
/// [`MAX_BULK_CANCEL`] (and whether more matched).
async fn matching_runs(
    state: &GatewayState,
    caller: &Caller,
    filter: &CancelFilter,
) -> ApiResult<(Vec<String>, bool)> {
    let index = state.run_index().await?;
    let statuses: Vec<String> = match &filter.status {
        Some(s) => vec![s.clone()],
        None => RunStatus::ALL
            .iter()
            .filter(|s| !s.is_terminal())
            .map(|s| s.as_str().to_string())
            .collect(),
    };
    let mut found = Vec::new();
    for status in statuses {
        let mut filters = vec![(Field::Status, status)];
        for (field, value) in [
            (Field::Flow, &filter.flow),
            (Field::Tag, &filter.tag),
            (Field::ScheduleId, &filter.schedule_id),
        ] {
            if let Some(v) = value {
                filters.push((field, v.clone()));
            }
        }
        if let Some(tenant) = caller.tenant() {
            filters.push((Field::Tenant, tenant.to_string()));
        }
        let mut cursor = None;
        loop {
            let page = index.page(&IndexQuery {
                filters: filters.clone(),
                updated_after: None,
                cursor: cursor.clone(),
                limit: 500,
            });
            cursor = page.items.last().map(|(u, r)| (*u, r.clone()));
            for (updated_at, run_id) in page.items {
                let old_enough = filter.updated_before.is_none_or(|b| updated_at < b);
                let listed = filter
                    .run_ids
                    .as_ref()
                    .is_none_or(|ids| ids.contains(&run_id));
                if old_enough && listed {
                    if found.len() == MAX_BULK_CANCEL {
                        return Ok((found, true));
                    }
                    found.push(run_id);
                }
            }
            if !page.more {
                break;
            }
        }
    }
    Ok((found, false))
}

/// `POST /runs/cancel`: cancels every run of the caller matching the filter (JSON body, every
/// field optional, at least one given) exactly as `POST /runs/{run_id}/cancel` would; terminal
/// runs are never matched, so repeating the request is safe.
#[utoipa::path(post, path = "/runs/cancel", request_body = BulkCancelRequest,
    responses((status = 200, body = BulkCancelResponse), (status = 422, body = ErrorBody), (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub async fn cancel_matching(
    State(state): State<GatewayState>,
    caller: Caller,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Json<BulkCancelResponse>> {
    let body = json_body(body)?;
    let filter = parse_filter(&body)?;
    let store = state.store()?;
    let (candidates, truncated) = matching_runs(&state, &caller, &filter).await?;
    let actor = caller.actor();
    let results: Vec<_> = futures::stream::iter(candidates)
        .map(|run_id| {
            let actor = actor.clone();
            async move {
                let updated = request_cancel(store, &run_id, actor).await;
                (run_id, updated)
            }
        })
        .buffered(16)
        .collect()
        .await;
    let mut run_ids = Vec::new();
    for (run_id, updated) in results {
        match updated? {
            // Cancelled now or already on its way: reported either way (idempotent).
            Some(v) if matches!(v.value.status, RunStatus::Cancelling | RunStatus::Cancelled) => {
                run_ids.push(run_id);
            }
            _ => {}
        }
    }
    tracing::info!(count = run_ids.len(), truncated, "bulk cancel");
    Ok(Json(BulkCancelResponse {
        count: run_ids.len(),
        run_ids,
        truncated,
    }))
}

/// The YAML of a run, when it can still be found: the schedule that fired it, or the
/// content-addressed `pyoco_workflow_bundles` entry under its SHA-256. Either must hash to the
/// run's `workflow_yaml_sha256`.
async fn find_workflow_yaml(store: &Store, run: &Snapshot) -> ApiResult<Option<YamlPayload>> {
    let Some(sha) = &run.workflow_yaml_sha256 else {
        return Ok(None);
    };
    let matches = |text: &str| sha256_hex(text.as_bytes()) == *sha;
    if let Some(schedule_id) = &run.schedule_id
        && let Some(s) = store.schedules().get(schedule_id).await?
        && matches(&s.value.workflow_yaml)
    {
        return Ok(Some(payload(s.value.workflow_yaml)));
    }
    if let Some(text) = store.stashed_workflow(sha).await?
        && matches(&text)
    {
        return Ok(Some(payload(text)));
    }
    Err(ApiError::new(
        ErrorCode::ReplayUnavailable,
        "workflow yaml not available",
    ))
}

fn payload(text: String) -> YamlPayload {
    YamlPayload {
        sha256: sha256_hex(text.as_bytes()),
        bytes: text.len() as u64,
        text,
    }
}

/// `POST /runs/{run_id}/replay`: a new run of the same flow (by name, or the same YAML),
/// params, tag and tags, with `replay_of` naming the original. The caller's key is stamped on
/// it; the original must be visible to the caller.
#[utoipa::path(post, path = "/runs/{run_id}/replay", params(("run_id" = String, Path)),
    responses((status = 200, body = ReplayResponse), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub async fn replay(
    State(state): State<GatewayState>,
    caller: Caller,
    Path(run_id): Path<String>,
) -> ApiResult<Json<ReplayResponse>> {
    let store = state.store()?;
    let original = match store.runs().get(&run_id).await? {
        Some(run) if caller.may_see(run.value.tenant_id.as_deref()) => run.value,
        _ => return Err(ApiError::run_not_found()),
    };
    let bundle = match &original.bundle_hash {
        Some(hash) => Some(replay_bundle(&state, store, &original, hash).await?),
        None => None,
    };
    let awaiting_approval = bundle.as_ref().is_some_and(|b| b.awaiting_approval);
    let yaml = find_workflow_yaml(store, &original).await?;
    if let Some(y) = &yaml {
        // Stored text is re-validated: it was accepted once, under today's limits it must be too.
        parse_flow_yaml_within(y.text.as_bytes(), state.config.yaml_limits()).map_err(|e| {
            ApiError::new(ErrorCode::InvalidWorkflowYaml, "invalid workflow yaml")
                .with_reason(e.reason)
        })?;
    }
    let mut run = NewRun {
        flow_name: original.flow_name.clone(),
        params: original.params.clone(),
        tag: original.tag.clone().filter(|t| !t.is_empty()),
        tags: original.tags.clone(),
        yaml,
        bundle,
        replay_of: Some(run_id.clone()),
        ..Default::default()
    };
    super::runs::stamp(&mut run, &caller);
    let store = store.clone();
    let new_id = state
        .spawn_to_end(async move { store.submit(run).await })
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(super::runs::submit_error)?;
    tracing::info!(run_id = %new_id, replay_of = %run_id, "run replayed");
    let status = if awaiting_approval {
        RunStatus::PendingApproval
    } else {
        RunStatus::Pending
    };
    Ok(Json(ReplayResponse {
        run_id: new_id,
        status: status.as_str().into(),
        replay_of: run_id,
    }))
}

/// A bundle root is replayed from the same bundle (found under its hash and re-validated),
/// as a new root that needs approval by the same rule as a submit; a child is not replayed
/// on its own (its parent would not wait for it).
async fn replay_bundle(
    state: &GatewayState,
    store: &Store,
    original: &Snapshot,
    hash: &str,
) -> ApiResult<BundleRun> {
    if original.spawn_depth.unwrap_or(0) >= 1 || original.parent_run_id.is_some() {
        return Err(ApiError::new(
            ErrorCode::ReplayUnavailable,
            "bundle child runs cannot be replayed; replay their root run",
        ));
    }
    let text = store
        .stashed_workflow(hash)
        .await?
        .filter(|text| sha256_hex(text.as_bytes()) == hash)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::ReplayUnavailable,
                "workflow bundle not available",
            )
        })?;
    let bundle = parse_bundle(text.as_bytes(), state.config.yaml_limits()).map_err(|e| {
        ApiError::new(ErrorCode::InvalidWorkflowBundle, "invalid workflow bundle")
            .with_reason(e.reason)
    })?;
    Ok(BundleRun {
        sha256: hash.to_string(),
        bytes: text.len() as u64,
        entry_workflow: original
            .entry_workflow
            .clone()
            .unwrap_or_else(|| bundle.entry_workflow.clone()),
        awaiting_approval: state.config.spawn_requires_approval && bundle.entry_spawns(),
        text,
        ..Default::default()
    })
}
