//! Worker routes: `GET /workers` (the registry with derived `DISCONNECTED` states) and
//! `PATCH /workers/{worker_id}` (the operator's `hidden` flag).
//!
//! Records are served the way the original normalises them, so a record written by a Python
//! worker and one written by pyoco look the same. The registry is also read here for
//! `/metrics` and `/health` ([`read_workers`]).

#[allow(unused_imports)]
use super::openapi::*;
use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use futures::{StreamExt, TryStreamExt};
use serde_json::{Map, Value, json};

use super::GatewayState;
use super::error::{ApiError, problem};
use super::extract::json::{Fields, decode_json};
use super::query::{QueryParams, body_bytes};
use crate::model::worker::disabled_wheel_sync;
use crate::model::{WorkerState, json as lenient_json, now};
use crate::store::workers::{get_worker, update_worker};
use crate::store::{Store, StoreError};

type ApiResult<T> = Result<T, ApiError>;

/// Keys served as stored (`null` when missing), in the original's order.
const OPTIONAL_KEYS: &[&str] = &[
    "current_run_id",
    "last_run_id",
    "last_run_status",
    "last_run_started_at",
    "last_run_finished_at",
    "stopped_at",
    "stop_reason",
];

/// One registry record as served: the normalised document plus what filters and metrics need.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Worker {
    pub doc: Map<String, Value>,
    /// Effective state: `RUNNING`/`IDLE` become `DISCONNECTED` when the worker went silent.
    pub state: WorkerState,
    pub hidden: bool,
    pub tags: Vec<String>,
    pub last_seen_at: f64,
}

impl Worker {
    /// True while the worker pulls jobs (effective `RUNNING` or `IDLE`).
    pub fn is_live(&self) -> bool {
        matches!(self.state, WorkerState::Running | WorkerState::Idle)
    }

    /// Normalises a stored record like the original: an unknown or missing state is `IDLE`,
    /// missing timestamps fall back to `heartbeat_at`, `heartbeat_at` is `last_heartbeat_at`,
    /// every key of the record is present, and unknown keys are kept after them.
    pub fn from_stored(
        key: &str,
        mut raw: Map<String, Value>,
        now: f64,
        timeout: Duration,
    ) -> Worker {
        let number = |v: Option<&Value>| v.and_then(Value::as_f64);
        let legacy_heartbeat = number(raw.get("heartbeat_at"));
        let last_heartbeat_at = number(raw.get("last_heartbeat_at")).or(legacy_heartbeat);
        let last_seen_at = number(raw.get("last_seen_at")).or(last_heartbeat_at);
        let updated_at = number(raw.get("updated_at")).or(last_seen_at);
        let stored = raw
            .get("state")
            .and_then(Value::as_str)
            .and_then(parse_state)
            .unwrap_or(WorkerState::Idle);
        let last_seen = last_seen_at.unwrap_or(0.0);
        let state = effective_state(stored, last_seen, now, timeout);
        let hidden = raw.get("hidden").is_some_and(truthy);
        let tags: Vec<String> = match raw.get("tags") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        let mut doc = Map::new();
        let worker_id = match raw.shift_remove("worker_id") {
            Some(Value::String(id)) if !id.is_empty() => id,
            _ => key.to_string(),
        };
        doc.insert("worker_id".into(), json!(worker_id));
        let instance_id = match raw.shift_remove("instance_id") {
            Some(Value::String(s)) => s,
            _ => String::new(),
        };
        doc.insert("instance_id".into(), json!(instance_id));
        doc.insert("state".into(), json!(state.as_str()));
        doc.insert("hidden".into(), json!(hidden));
        doc.insert("tags".into(), json!(tags));
        doc.insert("last_seen_at".into(), json!(last_seen_at));
        doc.insert("last_heartbeat_at".into(), json!(last_heartbeat_at));
        doc.insert("heartbeat_at".into(), json!(last_heartbeat_at));
        for key in OPTIONAL_KEYS {
            doc.insert((*key).into(), raw.shift_remove(*key).unwrap_or(Value::Null));
        }
        doc.insert("updated_at".into(), json!(updated_at));
        let wheel_sync = match raw.shift_remove("wheel_sync") {
            Some(Value::Object(m)) => Value::Object(m),
            _ => disabled_wheel_sync(),
        };
        doc.insert("wheel_sync".into(), wheel_sync);
        for (k, v) in raw {
            if !doc.contains_key(&k) {
                doc.insert(k, v);
            }
        }
        Worker {
            doc,
            state,
            hidden,
            tags,
            last_seen_at: last_seen,
        }
    }
}

/// `RUNNING`/`IDLE` become `DISCONNECTED` once `last_seen_at` is older than `timeout` (a zero
/// timeout never disconnects); `STOPPED_GRACEFUL` and `DISCONNECTED` stay as stored.
pub fn effective_state(
    stored: WorkerState,
    last_seen_at: f64,
    now: f64,
    timeout: Duration,
) -> WorkerState {
    let silent = !timeout.is_zero() && now - last_seen_at > timeout.as_secs_f64();
    match stored {
        WorkerState::Running | WorkerState::Idle if silent => WorkerState::Disconnected,
        other => other,
    }
}

fn parse_state(s: &str) -> Option<WorkerState> {
    match s.trim().to_ascii_uppercase().as_str() {
        "IDLE" => Some(WorkerState::Idle),
        "RUNNING" => Some(WorkerState::Running),
        "STOPPED_GRACEFUL" => Some(WorkerState::StoppedGraceful),
        "DISCONNECTED" => Some(WorkerState::Disconnected),
        _ => None,
    }
}

/// Python truthiness, which is how the original reads a stored `hidden`.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

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

/// Every registry record, normalised, with effective states as of now. An empty bucket is an
/// empty list (the original answered 503). Records that are not JSON objects are skipped.
pub(crate) async fn read_workers(store: &Store) -> Result<Vec<Worker>, StoreError> {
    let kv = &store.resources.workers;
    let keys: Vec<String> = kv
        .keys()
        .await
        .map_err(|e| StoreError::nats("list workers", e))?
        .try_collect()
        .await
        .map_err(|e| StoreError::nats("list workers", e))?;
    let docs: Vec<(String, Option<Bytes>)> = futures::stream::iter(keys)
        .map(|key| async move {
            let value = kv.get(&key).await?;
            Ok::<_, async_nats::jetstream::kv::EntryError>((key, value))
        })
        .buffer_unordered(16)
        .try_collect()
        .await
        .map_err(|e| StoreError::nats("get worker", e))?;
    let (now, timeout) = (now(), store.config.worker_disconnect_timeout);
    Ok(docs
        .into_iter()
        .filter_map(|(key, value)| {
            // Expired or deleted since the key listing.
            let value = value?;
            match lenient_json::from_slice::<Value>(&value) {
                Ok(Value::Object(raw)) => Some(Worker::from_stored(&key, raw, now, timeout)),
                _ => {
                    tracing::warn!(worker_id = %key, "unreadable worker record skipped");
                    None
                }
            }
        })
        .collect())
}

/// Live (`RUNNING`/`IDLE`) workers per tag they serve.
pub(crate) fn live_workers_per_tag(workers: &[Worker]) -> BTreeMap<String, u64> {
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
        Some(s) => Some(parse_state(s).ok_or_else(ApiError::invalid_workers_request)?),
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
fn select(mut workers: Vec<Worker>, q: &ListQuery) -> Vec<Value> {
    workers.retain(|w| {
        (q.include_hidden || !w.hidden)
            && (q.all || w.is_live())
            && q.state.is_none_or(|s| s == w.state)
    });
    workers.sort_by(|a, b| {
        b.last_seen_at.total_cmp(&a.last_seen_at).then_with(|| {
            let id = |w: &Worker| {
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
    let workers = read_workers(store).await?;
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
    let hidden = parse_patch_body(body)?;
    let store = state.store()?;
    let kv = &store.resources.workers;
    let Some(current) = get_worker(kv, &worker_id).await? else {
        return Err(ApiError::worker_not_found());
    };
    let updated_at = now();
    // The record is written back whole (its stored state, not the effective one). Should it
    // vanish between the read and the write, the record just read is written back.
    let written = update_worker(kv, &worker_id, |previous| {
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

/// Validates the PATCH body like the original's pydantic model (`hidden` required, lax bool).
fn parse_patch_body(
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
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
    let loc = [json!("body"), json!("hidden")];
    let unparsable = |v: &Value| {
        ApiError::validation(vec![problem(
            "bool_parsing",
            &loc,
            "Input should be a valid boolean, unable to interpret input",
            v.clone(),
            None,
        )])
    };
    match fields.get("hidden") {
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

    const TIMEOUT: Duration = Duration::from_secs(20);

    fn pairs(q: &str) -> QueryParams {
        QueryParams::parse(&Some(q.to_string()))
    }

    fn worker(id: &str, state: &str, last_seen: f64, hidden: bool) -> Worker {
        let raw = json!({"worker_id": id, "state": state, "hidden": hidden, "tags": ["default"],
            "last_seen_at": last_seen, "last_heartbeat_at": last_seen});
        let Value::Object(raw) = raw else {
            unreachable!()
        };
        Worker::from_stored(id, raw, 1000.0, TIMEOUT)
    }

    #[test]
    fn silent_running_and_idle_workers_are_disconnected() {
        let at = |stored, last_seen| effective_state(stored, last_seen, 100.0, TIMEOUT);
        assert_eq!(at(WorkerState::Idle, 85.0), WorkerState::Idle);
        assert_eq!(at(WorkerState::Running, 79.0), WorkerState::Disconnected);
        assert_eq!(at(WorkerState::Idle, 79.0), WorkerState::Disconnected);
        assert_eq!(
            at(WorkerState::StoppedGraceful, 0.0),
            WorkerState::StoppedGraceful
        );
        assert_eq!(
            effective_state(WorkerState::Idle, 0.0, 100.0, Duration::ZERO),
            WorkerState::Idle,
            "a zero timeout never disconnects"
        );
    }

    #[test]
    fn normalises_python_records_and_keeps_unknown_keys() {
        let raw = json!({"state": "weird", "heartbeat_at": 990.0, "custom": 1, "hidden": 1});
        let Value::Object(raw) = raw else {
            unreachable!()
        };
        let w = Worker::from_stored("w9", raw, 1000.0, TIMEOUT);
        assert_eq!(w.state, WorkerState::Idle);
        assert!(w.hidden);
        assert_eq!(w.doc["worker_id"], "w9");
        assert_eq!(w.doc["last_seen_at"], 990.0);
        assert_eq!(w.doc["last_heartbeat_at"], 990.0);
        assert_eq!(w.doc["heartbeat_at"], 990.0);
        assert_eq!(w.doc["custom"], 1);
        assert_eq!(w.doc["wheel_sync"]["last_result"], "disabled");
        let keys: Vec<&str> = w.doc.keys().map(String::as_str).collect();
        assert_eq!(&keys[..3], ["worker_id", "instance_id", "state"]);
        assert_eq!(keys.last(), Some(&"custom"));
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
        let body = |s: &str| parse_patch_body(Ok(Bytes::from(s.to_string())));
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
