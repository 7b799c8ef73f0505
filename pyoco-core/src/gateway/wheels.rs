//! The wheel registry routes (`/wheels*`), with the original's payloads, status codes and
//! `detail` strings: list, upload (version bump rules per canonical project), history,
//! download and delete. Objects live in the `pyoco_wheels` object store
//! ([`crate::store::wheels`]), every upload and delete appends a history event.
//!
//! Beyond the original, an upload is opened and must be a real wheel of the project and
//! version its name claims (422 `invalid_wheel_file`), and the form may ask for the client's
//! preflight checks on the server (`preflight=strict|warn`).

mod form;

#[allow(unused_imports)]
use super::openapi::*;
use std::net::SocketAddr;

use axum::Json;
use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Multipart, Path, RawQuery, State};
use axum::http::{Extensions, HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::GatewayState;
use super::error::ApiError;
use crate::error_code::ErrorCode;
use crate::model::now;
use crate::store::wheels::{TAGS_HEADER, WheelObject, WheelStore, parse_tags_csv};
use crate::wheel::{PreflightMode, is_valid_wheel_name, parse_wheel_filename};

type ApiResult<T> = Result<T, ApiError>;

/// One upload at a time per gateway: the version check and the put must not interleave.
static UPLOAD_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub(crate) fn invalid_wheel_name() -> ApiError {
    ApiError::new(ErrorCode::InvalidWheelName, "invalid wheel name")
}

fn wheel_not_found() -> ApiError {
    ApiError::new(ErrorCode::WheelNotFound, "wheel not found")
}

/// A listing item: the original's keys, then our additions parsed from the file name.
fn item(o: &WheelObject) -> WheelItem {
    let parsed = parse_wheel_filename(&o.name).ok();
    WheelItem {
        name: o.name.clone(),
        size_bytes: o.size,
        digest: o.digest.clone(),
        sha256_b64: o
            .digest
            .as_deref()
            .and_then(|d| d.strip_prefix("SHA-256="))
            .map(str::to_string),
        mtime: o.mtime.clone(),
        nuid: o.nuid.clone(),
        tags: o.tags(),
        package_name: parsed.as_ref().map(|w| w.canonical.clone()),
        package_version: parsed.as_ref().map(|w| w.version.to_string()),
        compatibility_tags: parsed.map(|w| w.tags).unwrap_or_default(),
    }
}

/// `GET /wheels`: every stored wheel (deleted objects and other names skipped), by name.
#[utoipa::path(get, path = "/wheels",
    responses((status = 200, body = [WheelItem]), (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub async fn list(State(state): State<GatewayState>) -> ApiResult<Json<Vec<WheelItem>>> {
    let store = state.store()?;
    let mut objects = WheelStore::new(store).list().await?;
    objects.retain(|o| is_valid_wheel_name(&o.name));
    objects.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(objects.iter().map(item).collect()))
}

/// `POST /wheels` (multipart: file `wheel`, text `tags` CSV, `replace`; our optional
/// `preflight`). Checks in the original's order, then ours (see spec/http-api.md).
#[utoipa::path(post, path = "/wheels",
    request_body(content = WheelUploadForm, content_type = "multipart/form-data"),
    responses((status = 200, body = WheelUploaded), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub async fn upload(
    State(state): State<GatewayState>,
    headers: HeaderMap,
    extensions: Extensions,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> ApiResult<Json<WheelUploaded>> {
    let limit = usize::try_from(state.config.wheel_max_bytes).unwrap_or(usize::MAX);
    let f = form::read_upload_form(multipart, limit).await?;
    if !is_valid_wheel_name(&f.file_name) {
        return Err(invalid_wheel_name());
    }
    let name = parse_wheel_filename(&f.file_name)
        .map_err(|_| ApiError::new(ErrorCode::InvalidWheelFilename, "invalid wheel filename"))?;
    let tags = parse_tags_csv(f.tags.as_deref().unwrap_or(""))
        .map_err(|_| ApiError::new(ErrorCode::InvalidWheelTags, "invalid wheel tags"))?;
    let spooled = match f.spooled {
        Some(spooled) if f.size <= limit => spooled,
        _ => return Err(form::too_large(limit)),
    };
    // Opened from its temporary file (blocking zip reads, off the async threads).
    let (mode, allow_no_entry_points, allow_missing_usage_doc) = (
        f.preflight,
        f.allow_no_entry_points,
        f.allow_missing_usage_doc,
    );
    let wheel_name = name.clone();
    let (mut spooled, contents, report) = tokio::task::spawn_blocking(move || {
        let contents = crate::wheel::inspect_wheel_from(&spooled.file, &wheel_name);
        let report = (mode != PreflightMode::Off).then(|| {
            crate::wheel::preflight_from(
                &spooled.file,
                allow_no_entry_points,
                allow_missing_usage_doc,
            )
            .under(mode)
        });
        (spooled, contents, report)
    })
    .await
    .map_err(|_| ApiError::internal())?;
    let contents = contents.map_err(|e| {
        ApiError::new(ErrorCode::InvalidWheelFile, "invalid wheel file").with_reason(e.to_string())
    })?;
    let mut warnings = Vec::new();
    if let Some(report) = report {
        if let Some(failure) = report.failure() {
            return Err(
                ApiError::new(ErrorCode::WheelPreflightFailed, "wheel preflight failed")
                    .with_reason(failure),
            );
        }
        warnings = report.warnings;
    }
    let store = state.store()?;
    let wheels = WheelStore::new(store);
    let _guard = UPLOAD_LOCK.lock().await;
    let mut latest: Option<pep440_rs::Version> = None;
    for existing in wheels.list().await? {
        let Ok(other) = parse_wheel_filename(&existing.name) else {
            continue;
        };
        if !is_valid_wheel_name(&existing.name) || other.canonical != name.canonical {
            continue;
        }
        if other.version == name.version {
            return Err(ApiError::new(
                ErrorCode::WheelVersionExists,
                "wheel version already exists; bump version",
            ));
        }
        if latest.as_ref().is_none_or(|l| other.version > *l) {
            latest = Some(other.version);
        }
    }
    if latest.is_some_and(|l| name.version < l) {
        return Err(ApiError::new(
            ErrorCode::WheelVersionNotNewer,
            "wheel version must be greater than existing latest version",
        ));
    }
    let sha256_hex = hex::encode(spooled.sha256);
    let compat = if contents.wheel_tags.is_empty() {
        name.tags.clone()
    } else {
        contents.wheel_tags.clone()
    };
    let mut object_headers = vec![
        ("content-type".to_string(), f.content_type.clone()),
        ("sha256".to_string(), sha256_hex.clone()),
    ];
    if !tags.is_empty() {
        object_headers.push((TAGS_HEADER.to_string(), tags.join(",")));
    }
    object_headers.push(("x-pyoco-wheel-compat-tags".to_string(), compat.join(",")));
    std::io::Seek::rewind(&mut spooled.file).map_err(|e| {
        tracing::error!(error = %e, "cannot rewind a spooled wheel");
        ApiError::internal()
    })?;
    let stored = wheels
        .put_from(
            &f.file_name,
            tokio::fs::File::from_std(spooled.file),
            f.size as u64,
            spooled.sha256,
            &object_headers,
        )
        .await?;
    drop(_guard);
    let event = history_event(
        "upload",
        &f.file_name,
        &tags,
        Some(stored.size),
        Some(&sha256_hex),
        Some(f.replace),
        &headers,
        &extensions,
    );
    if let Err(e) = wheels.append_history(&event).await {
        tracing::warn!(wheel = %f.file_name, error = %e, "wheel history not written");
    }
    tracing::info!(wheel = %f.file_name, tags = ?tags, size = stored.size, "wheel uploaded");
    let mut wheel = item(&stored);
    wheel.tags = tags;
    let Value::Object(mut body) = serde_json::to_value(wheel).map_err(|e| {
        tracing::error!(error = %e, "encode wheel item");
        ApiError::internal()
    })?
    else {
        return Err(ApiError::internal());
    };
    body.insert("sha256_hex".into(), json!(sha256_hex));
    if f.preflight != PreflightMode::Off {
        body.insert("preflight_warnings".into(), json!(warnings));
    }
    Ok(Json(WheelUploaded(Value::Object(body))))
}

/// `GET /wheels/history`: upload and delete events, newest first.
#[utoipa::path(get, path = "/wheels/history",
    params(("limit" = Option<i64>, Query, minimum = 1, maximum = 500), ("wheel_name" = Option<String>, Query),
        ("action" = Option<String>, Query, description = "upload or delete")),
    responses((status = 200, body = [WheelHistoryEvent]), (status = 422, body = ErrorBody), (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub async fn history(
    State(state): State<GatewayState>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Vec<WheelHistoryEvent>>> {
    let pairs: Vec<(String, String)> = query
        .as_deref()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let q = form::parse_history_query(&pairs)?;
    let store = state.store()?;
    let mut events = WheelStore::new(store).history().await?;
    events.retain(|e| {
        let text = |k: &str| e.get(k).and_then(Value::as_str);
        q.wheel_name
            .as_deref()
            .is_none_or(|n| text("wheel_name") == Some(n))
            && q.action
                .as_deref()
                .is_none_or(|a| text("action").map(str::to_ascii_lowercase).as_deref() == Some(a))
    });
    let key = |e: &Map<String, Value>| {
        (
            e.get("occurred_at").and_then(Value::as_f64).unwrap_or(0.0),
            e.get("event_id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        )
    };
    events.sort_by(|a, b| {
        let (ta, ia) = key(a);
        let (tb, ib) = key(b);
        tb.total_cmp(&ta).then_with(|| ib.cmp(&ia))
    });
    events.truncate(q.limit);
    Ok(Json(
        events
            .into_iter()
            .map(|e| WheelHistoryEvent(Value::Object(e)))
            .collect(),
    ))
}

/// `GET /wheels/{wheel_name}`: the file (`application/octet-stream`, as an attachment).
#[utoipa::path(get, path = "/wheels/{wheel_name}", params(("wheel_name" = String, Path)),
    responses((status = 200, description = "The wheel file", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, body = ErrorBody), (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub async fn download(
    State(state): State<GatewayState>,
    Path(wheel_name): Path<String>,
) -> ApiResult<Response> {
    if !is_valid_wheel_name(&wheel_name) {
        return Err(wheel_not_found());
    }
    let store = state.store()?;
    let Some((_, data)) = WheelStore::new(store).get(&wheel_name).await? else {
        return Err(wheel_not_found());
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{wheel_name}\""),
            ),
        ],
        Body::from(data),
    )
        .into_response())
}

/// `DELETE /wheels/{wheel_name}`: removes the wheel; workers uninstall it on their next sync.
#[utoipa::path(delete, path = "/wheels/{wheel_name}", params(("wheel_name" = String, Path)),
    responses((status = 200, body = WheelDeleted), (status = 404, body = ErrorBody), (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub async fn delete(
    State(state): State<GatewayState>,
    Path(wheel_name): Path<String>,
    headers: HeaderMap,
    extensions: Extensions,
) -> ApiResult<Json<WheelDeleted>> {
    if !is_valid_wheel_name(&wheel_name) {
        return Err(wheel_not_found());
    }
    let store = state.store()?;
    let wheels = WheelStore::new(store);
    let Some(object) = wheels.delete(&wheel_name).await? else {
        return Err(wheel_not_found());
    };
    let sha = object.sha256_hex();
    let event = history_event(
        "delete",
        &wheel_name,
        &object.tags(),
        Some(object.size),
        sha.as_deref(),
        None,
        &headers,
        &extensions,
    );
    if let Err(e) = wheels.append_history(&event).await {
        tracing::warn!(wheel = %wheel_name, error = %e, "wheel history not written");
    }
    tracing::info!(wheel = %wheel_name, "wheel deleted");
    Ok(Json(WheelDeleted {
        name: wheel_name,
        deleted: true,
    }))
}

/// A history event: who (`actor`: the API key's tenant and id, both null without keys) and
/// from where (`source`, the raw request headers, no trust logic, like the original).
#[allow(clippy::too_many_arguments)]
fn history_event(
    action: &str,
    wheel_name: &str,
    tags: &[String],
    size_bytes: Option<u64>,
    sha256_hex: Option<&str>,
    replace: Option<bool>,
    headers: &HeaderMap,
    extensions: &Extensions,
) -> Value {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let remote = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string());
    let caller = extensions
        .get::<super::auth::Caller>()
        .and_then(|c| c.0.as_ref());
    json!({
        "event_id": uuid::Uuid::new_v4().simple().to_string(),
        "occurred_at": now(),
        "action": action,
        "wheel_name": wheel_name,
        "tags": tags,
        "size_bytes": size_bytes,
        "sha256_hex": sha256_hex,
        "replace": replace,
        "actor": {
            "tenant_id": caller.map(|id| id.tenant_id.as_str()),
            "api_key_id": caller.map(|id| id.key_id.as_str()),
        },
        "source": {
            "remote_addr": remote,
            "x_forwarded_for": h("x-forwarded-for"),
            "x_real_ip": h("x-real-ip"),
            "user_agent": h("user-agent"),
            "host": h("host"),
            "scheme": "http",
        },
    })
}
