//! Worker routes: `GET /workers` (the registry with derived `DISCONNECTED` states) and
//! `PATCH /workers/{worker_id}` (the operator's `hidden` flag).
//!
//! Records are served the way the original normalises them ([`WorkerView`], the one decoder
//! of the record), so a record written by a Python worker and one written by pyoco look the
//! same.

#[allow(unused_imports)]
use super::openapi::*;
use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use serde_json::{Value, json};

use super::GatewayState;
use super::error::{ApiError, problem};
use super::extract::json::{Fields, decode_json};
use super::query::{QueryParams, body_bytes};
use crate::model::{WorkerState, WorkerView, now};

type ApiResult<T> = Result<T, ApiError>;

/// Pydantic's lax boolean for query and form strings.
pub(crate) fn lax_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "t" | "yes" | "y" | "on" => Some(true),
        "0" | "false" | "f" | "no" | "n" | "off" => Some(false),
        _ => None,
    }
}

/// The FastAPI 422 problem of a query parameter that is not a boolean.
pub(crate) fn bool_problem(name: &str, raw: &str) -> Value {
    problem(
        "bool_parsing",
        &[json!("query"), json!(name)],
        "Input should be a valid boolean, unable to interpret input",
        json!(raw),
        None,
    )
}

/// Live (`RUNNING`/`IDLE`) workers per tag they serve.
pub(crate) fn live_workers_per_tag(workers: &[WorkerView]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for w in workers.iter().filter(|w| w.is_live()) {
        for tag in &w.tags {
            *out.entry(tag.clone()).or_insert(0) += 1;
        }
    }
    out
}

/// Parsed `GET /workers` query.
#[derive(Debug, Clone, PartialEq)]
struct ListQuery {
    all: bool,
    state: Option<WorkerState>,
    include_hidden: bool,
    limit: usize,
}

/// FastAPI validates types first (a list of problems); the handler then checks `scope` and
/// `state` (a plain `invalid workers request`). When a parameter is repeated the last wins.
fn parse_list_query(mut q: QueryParams) -> ApiResult<ListQuery> {
    let include_hidden = match q.last("include_hidden").map(str::to_string) {
        None => false,
        Some(raw) => lax_bool(&raw).unwrap_or_else(|| {
            q.push_problem(bool_problem("include_hidden", &raw));
            false
        }),
    };
    let limit = q.int_in("limit", 1, 500, 100) as usize;
    q.check()?;
    let last = |k: &str| q.last(k);
    let all = match last("scope")
        .unwrap_or("active")
        .trim()
        .to_ascii_lowercase()
        .as_str()
    {
        "active" => false,
        "all" => true,
        _ => return Err(ApiError::invalid_workers_request()),
    };
    let state = match last("state").map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(WorkerState::parse(s).ok_or_else(ApiError::invalid_workers_request)?),
    };
    Ok(ListQuery {
        all,
        state,
        include_hidden,
        limit,
    })
}

/// Filters and orders: hidden workers only with `include_hidden`, `scope=active` keeps live
/// workers, `state` matches the effective state; newest `last_seen_at` first (ties by id).
fn select(mut workers: Vec<WorkerView>, q: &ListQuery) -> Vec<Value> {
    workers.retain(|w| {
        (q.include_hidden || !w.hidden)
            && (q.all || w.is_live())
            && q.state.is_none_or(|s| s == w.state)
    });
    workers.sort_by(|a, b| {
        b.last_seen_at.total_cmp(&a.last_seen_at).then_with(|| {
            let id = |w: &WorkerView| {
                w.doc
                    .get("worker_id")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            id(a).cmp(&id(b))
        })
    });
    workers
        .into_iter()
        .take(q.limit)
        .map(|w| Value::Object(w.doc))
        .collect()
}

/// `GET /workers`: the registry as an array of records (see spec/http-api.md).
#[utoipa::path(get, path = "/workers",
    params(("scope" = Option<String>, Query, description = "active (default) or all"), ("state" = Option<String>, Query),
        ("include_hidden" = Option<bool>, Query), ("limit" = Option<i64>, Query, minimum = 1, maximum = 500)),
    responses((status = 200, body = [WorkerRecord]), (status = 422, body = ErrorBody), (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub async fn list(
    State(state): State<GatewayState>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Vec<WorkerRecord>>> {
    let q = parse_list_query(QueryParams::parse(&query))?;
    let store = state.store()?;
    let workers = store.workers().list().await?;
    Ok(Json(
        select(workers, &q).into_iter().map(WorkerRecord).collect(),
    ))
}

/// `PATCH /workers/{worker_id}` with `{"hidden": <bool>}`: sets the flag with a
/// compare-and-set write, so a heartbeat racing this request cannot undo it (workers carry
/// `hidden` over on every write).
#[utoipa::path(patch, path = "/workers/{worker_id}", params(("worker_id" = String, Path)), request_body = PatchWorker,
    responses((status = 200, body = PatchWorkerResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub async fn patch(
    State(state): State<GatewayState>,
    Path(worker_id): Path<String>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Json<PatchWorkerResponse>> {
    let hidden = required_bool_field(body, "hidden")?;
    let store = state.store()?;
    let registry = store.workers();
    let Some(current) = registry.get(&worker_id).await? else {
        return Err(ApiError::worker_not_found());
    };
    let updated_at = now();
    // The record is written back whole (its stored state, not the effective one). Should it
    // vanish between the read and the write, the record just read is written back.
    let written = registry
        .update(&worker_id, |previous| {
            let mut record = previous.unwrap_or_else(|| current.clone());
            record.hidden = hidden;
            record.updated_at = Some(updated_at);
            record
        })
        .await?;
    Ok(Json(PatchWorkerResponse {
        worker_id: written.worker_id,
        hidden: written.hidden,
        // Always set by the update above.
        updated_at: written.updated_at.unwrap_or(updated_at),
    }))
}

/// Validates a PATCH body like the original's pydantic model (`field` required, lax bool):
/// `{"hidden": ...}` here, `{"paused": ...}` for schedules.
pub(super) fn required_bool_field(
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
    field: &str,
) -> ApiResult<bool> {
    let body = body_bytes(body)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::validation(vec![problem(
            "missing",
            &[json!("body")],
            "Field required",
            Value::Null,
            None,
        )]));
    }
    let body = decode_json(&body)?;
    let fields = Fields::of(&body)?;
    let loc = [json!("body"), json!(field)];
    let unparsable = |v: &Value| {
        ApiError::validation(vec![problem(
            "bool_parsing",
            &loc,
            "Input should be a valid boolean, unable to interpret input",
            v.clone(),
            None,
        )])
    };
    match fields.get(field) {
        None => Err(ApiError::validation(vec![problem(
            "missing",
            &loc,
            "Field required",
            body.clone(),
            None,
        )])),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v @ Value::Number(n)) => match n.as_f64() {
            Some(0.0) => Ok(false),
            Some(1.0) => Ok(true),
            _ => Err(unparsable(v)),
        },
        Some(v @ Value::String(s)) => lax_bool(s).ok_or_else(|| unparsable(v)),
        Some(other) => Err(ApiError::validation(vec![problem(
            "bool_type",
            &loc,
            "Input should be a valid boolean",
            other.clone(),
            None,
        )])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use std::time::Duration;

    const TIMEOUT: Duration = Duration::from_secs(20);

    fn pairs(q: &str) -> QueryParams {
        QueryParams::parse(&Some(q.to_string()))
    }

    fn worker(id: &str, state: &str, last_seen: f64, hidden: bool) -> WorkerView {
        let raw = json!({"worker_id": id, "state": state, "hidden": hidden, "tags": ["default"],
            "last_seen_at": last_seen, "last_heartbeat_at": last_seen});
        let Value::Object(raw) = raw else {
            unreachable!()
        };
        WorkerView::from_stored(id, raw, 1000.0, TIMEOUT)
    }

    #[test]
    fn list_query_validation_matches_fastapi_then_the_handler() {
        let q = parse_list_query(pairs("")).unwrap();
        assert_eq!(
            q,
            ListQuery {
                all: false,
                state: None,
                include_hidden: false,
                limit: 100
            }
        );
        let q = parse_list_query(pairs(
            "scope=%20ALL%20&state=disconnected&include_hidden=Yes&limit=500",
        ))
        .unwrap();
        assert!(q.all && q.include_hidden);
        assert_eq!((q.state, q.limit), (Some(WorkerState::Disconnected), 500));
        assert_eq!(parse_list_query(pairs("state=")).unwrap().state, None);
        let e = parse_list_query(pairs("include_hidden=maybe&limit=0&scope=bad")).unwrap_err();
        assert_eq!(e.code.as_str(), "validation_error");
        let kinds: Vec<&str> = e
            .detail
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["bool_parsing", "greater_than_equal"]);
        for bad in ["scope=bad", "scope=", "state=SLEEPING"] {
            let e = parse_list_query(pairs(bad)).unwrap_err();
            assert_eq!(
                (e.status(), e.code.as_str(), e.detail),
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_workers_request",
                    json!("invalid workers request")
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn select_filters_hidden_scope_state_and_sorts_newest_first() {
        let workers = vec![
            worker("old", "IDLE", 900.0, false),
            worker("a", "IDLE", 995.0, false),
            worker("b", "RUNNING", 999.0, false),
            worker("h", "IDLE", 998.0, true),
            worker("s", "STOPPED_GRACEFUL", 997.0, false),
        ];
        let ids = |q: ListQuery| -> Vec<String> {
            select(workers.clone(), &q)
                .iter()
                .map(|w| w["worker_id"].as_str().unwrap().to_string())
                .collect()
        };
        let base = ListQuery {
            all: false,
            state: None,
            include_hidden: false,
            limit: 100,
        };
        assert_eq!(ids(base.clone()), ["b", "a"]);
        assert_eq!(
            ids(ListQuery {
                all: true,
                ..base.clone()
            }),
            ["b", "s", "a", "old"]
        );
        assert_eq!(
            ids(ListQuery {
                all: true,
                include_hidden: true,
                limit: 2,
                ..base.clone()
            }),
            ["b", "h"]
        );
        assert_eq!(
            ids(ListQuery {
                all: true,
                state: Some(WorkerState::Disconnected),
                ..base
            }),
            ["old"]
        );
    }

    #[test]
    fn patch_body_is_a_lax_bool() {
        let body = |s: &str| required_bool_field(Ok(Bytes::from(s.to_string())), "hidden");
        assert!(body(r#"{"hidden": true}"#).unwrap());
        assert!(body(r#"{"hidden": "yes"}"#).unwrap());
        assert!(!body(r#"{"hidden": 0}"#).unwrap());
        let kind = |s: &str| body(s).unwrap_err().detail[0]["type"].clone();
        assert_eq!(kind(r#"{"hidden": "maybe"}"#), "bool_parsing");
        assert_eq!(kind(r#"{"hidden": 2}"#), "bool_parsing");
        assert_eq!(kind(r#"{"hidden": null}"#), "bool_type");
        assert_eq!(kind(r#"{}"#), "missing");
        assert_eq!(kind(""), "missing");
        assert_eq!(kind("[1]"), "model_attributes_type");
        assert_eq!(kind("{nope"), "json_invalid");
    }
}
