//! `GET /health`: `200 {"status":"ok", ...}` for the original's clients, plus an overall
//! `health` (`healthy`, `degraded`, `unhealthy`) and the `components` it was derived from.
//!
//! 200 means ready: NATS is connected, every resource has been ensured and the run index has
//! loaded, so a client that waits for health and then submits is served. Before that the
//! answer is 503 with `status` `starting` (never connected yet) or `unavailable` (connection
//! lost), which the original's clients treat as not ready. `?strict=true` also answers 503
//! when the buckets do not answer (any `unhealthy` verdict).
//!
//! Every NATS check runs under one short deadline, so the route answers within a second even
//! when NATS hangs; a disconnected client fails at once.

#[allow(unused_imports)]
use super::openapi::*;
use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::GatewayState;
use super::error::ApiError;
use super::metrics::{TagLoad, tag_loads};
use super::workers::{bool_problem, lax_bool};
use crate::error_code::ErrorCode;
use crate::store::{Store, StoreError};

/// Deadline of each NATS check (they run concurrently).
const PROBE_DEADLINE: Duration = Duration::from_millis(800);

/// The overall verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Healthy,
    Degraded,
    Unhealthy,
}

impl Health {
    fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Unhealthy => "unhealthy",
        }
    }
}

/// What the checks found.
#[derive(Debug, Clone, PartialEq)]
struct Findings {
    /// `Err(detail)` when the gateway holds no NATS connection.
    nats: Result<(), String>,
    /// The runs and workers buckets answered; `None` when not checked (NATS down).
    buckets: Option<bool>,
    /// Queue and live workers per tag; `None` when they could not be read.
    tags: Option<BTreeMap<String, TagLoad>>,
    /// Resources whose replicas differ from `PYOCO_JS_REPLICAS` (found at start-up).
    replicas: Vec<String>,
}

impl Findings {
    /// NATS or the buckets down is unhealthy; queued work nobody will take (or tags that
    /// could not be read) is degraded.
    fn health(&self) -> Health {
        if self.nats.is_err() || self.buckets != Some(true) {
            Health::Unhealthy
        } else if !self.replicas.is_empty()
            || self
                .tags
                .as_ref()
                .is_none_or(|tags| tags.values().any(TagLoad::unserved))
        {
            Health::Degraded
        } else {
            Health::Healthy
        }
    }

    fn components(&self) -> Value {
        let nats = match &self.nats {
            Ok(()) => json!({"status": "up"}),
            Err(detail) => json!({"status": "down", "detail": detail}),
        };
        let buckets = match self.buckets {
            Some(true) => "up",
            Some(false) => "down",
            None => "unknown",
        };
        let tags = self.tags.as_ref().map(|tags| {
            tags.iter()
                .map(|(tag, load)| {
                    (
                        tag.clone(),
                        json!({"queued": load.queued, "live_workers": load.live_workers}),
                    )
                })
                .collect::<serde_json::Map<_, _>>()
        });
        let replicas = if self.replicas.is_empty() {
            json!({"status": "ok"})
        } else {
            json!({"status": "mismatch", "detail": self.replicas})
        };
        json!({"nats": nats, "buckets": {"status": buckets}, "tags": tags, "replicas": replicas})
    }
}

async fn read_tags(store: &Store) -> Result<BTreeMap<String, TagLoad>, StoreError> {
    let (queued, workers) = tokio::try_join!(store.queue_depths(), store.workers().list())?;
    Ok(tag_loads(&queued, &workers))
}

async fn check(state: &GatewayState) -> Findings {
    let store = match state.store() {
        Ok(store) => store,
        Err(e) => {
            let detail = e.detail.as_str().unwrap_or("nats unavailable").to_string();
            return Findings {
                nats: Err(detail),
                buckets: None,
                tags: None,
                replicas: Vec::new(),
            };
        }
    };
    let (buckets, tags) = tokio::join!(
        tokio::time::timeout(PROBE_DEADLINE, store.buckets_reachable()),
        tokio::time::timeout(PROBE_DEADLINE, read_tags(store))
    );
    let tags = match tags {
        Ok(Ok(tags)) => Some(tags),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health: cannot read queue or workers");
            None
        }
        Err(_) => {
            tracing::warn!("health: reading queue and workers timed out");
            None
        }
    };
    Findings {
        nats: Ok(()),
        buckets: Some(buckets.unwrap_or(false)),
        tags,
        replicas: store.resources().replica_mismatches.clone(),
    }
}

/// `Some(status)` while the gateway cannot serve requests yet: `starting` before its first
/// connection (or while the run index loads), `unavailable` after losing it.
fn not_ready(state: &GatewayState, findings: &Findings) -> Option<&'static str> {
    if findings.nats.is_err() {
        Some(if state.has_connected() {
            "unavailable"
        } else {
            "starting"
        })
    } else if !state.index.is_ready() {
        Some("starting")
    } else {
        None
    }
}

/// `GET /health[?strict=true]`.
#[utoipa::path(get, path = "/health", params(("strict" = Option<bool>, Query, description = "503 when unhealthy")),
    responses((status = 200, body = HealthReport), (status = 503, body = ErrorBody)))]
pub async fn health(
    State(state): State<GatewayState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let strict = match query
        .as_deref()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned())
        .and_then(|pairs| pairs.filter(|(k, _)| k == "strict").last())
    {
        None => false,
        Some((_, raw)) => lax_bool(&raw)
            .ok_or_else(|| ApiError::validation(vec![bool_problem("strict", &raw)]))?,
    };
    let findings = check(&state).await;
    let health = findings.health();
    let components = findings.components();
    if strict && health == Health::Unhealthy {
        return Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "detail": "gateway unhealthy",
                "code": ErrorCode::Unhealthy,
                "health": health.as_str(),
                "components": components,
            })),
        )
            .into_response());
    }
    if let Some(status) = not_ready(&state, &findings) {
        let detail = match &findings.nats {
            Err(detail) => detail.clone(),
            Ok(()) => "nats unavailable: run index still loading".into(),
        };
        return Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": status,
                "detail": detail,
                "code": ErrorCode::NatsUnavailable,
                "health": Health::Unhealthy.as_str(),
                "components": components,
            })),
        )
            .into_response());
    }
    Ok(Json(HealthReport {
        status: "ok".into(),
        health: health.as_str().into(),
        components,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn findings(nats: bool, buckets: Option<bool>, tags: Option<&[(&str, u64, u64)]>) -> Findings {
        Findings {
            nats: if nats {
                Ok(())
            } else {
                Err("nats unavailable: not connected yet".into())
            },
            buckets,
            tags: tags.map(|t| {
                t.iter()
                    .map(|(tag, queued, live_workers)| {
                        (
                            tag.to_string(),
                            TagLoad {
                                queued: *queued,
                                live_workers: *live_workers,
                            },
                        )
                    })
                    .collect()
            }),
            replicas: Vec::new(),
        }
    }

    #[test]
    fn verdict_follows_the_components() {
        let h = |f: Findings| f.health();
        assert_eq!(
            h(findings(true, Some(true), Some(&[("default", 0, 1)]))),
            Health::Healthy
        );
        assert_eq!(h(findings(true, Some(true), Some(&[]))), Health::Healthy);
        assert_eq!(
            h(findings(true, Some(true), Some(&[("gpu", 2, 0)]))),
            Health::Degraded
        );
        assert_eq!(h(findings(true, Some(true), None)), Health::Degraded);
        assert_eq!(h(findings(true, Some(false), Some(&[]))), Health::Unhealthy);
        assert_eq!(h(findings(false, None, None)), Health::Unhealthy);
        let mut mismatch = findings(true, Some(true), Some(&[]));
        mismatch.replicas = vec!["KV_pyoco_runs has 1 replicas".into()];
        assert_eq!(h(mismatch), Health::Degraded);
    }

    #[test]
    fn components_name_each_check() {
        let c = findings(true, Some(true), Some(&[("gpu", 2, 0)])).components();
        assert_eq!(
            c,
            json!({"nats": {"status": "up"}, "buckets": {"status": "up"},
                   "tags": {"gpu": {"queued": 2, "live_workers": 0}}, "replicas": {"status": "ok"}})
        );
        let c = findings(false, None, None).components();
        assert_eq!(c["nats"]["status"], "down");
        assert_eq!(c["buckets"]["status"], "unknown");
        assert_eq!(c["tags"], Value::Null);
    }
}
