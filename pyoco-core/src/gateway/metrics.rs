//! `GET /metrics`: Prometheus text (format 0.0.4), and the middleware that counts and times
//! every HTTP request.
//!
//! The original's gauges keep their names and labels; runs by status come from the run index
//! (no scan), workers from the registry, queue depth from the work stream's per-subject
//! counts. The text is rendered by `metrics-exporter-prometheus` from two recorders that are
//! never installed globally, so several gateways in one process (tests, embedding) stay apart:
//! a long-lived one for the HTTP counters and histogram, and a fresh one per scrape for the
//! gauges derived from NATS, so a status or tag that disappeared leaves no stale series.

#[allow(unused_imports)]
use super::openapi::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use super::GatewayState;
use super::error::ApiError;
use super::workers::live_workers_per_tag;
use crate::model::{WorkerState, WorkerView, now};

/// The original's content type (the Prometheus text format 0.0.4).
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

const REQUESTS: &str = "pyoco_http_requests_total";
const DURATION: &str = "pyoco_http_request_duration_seconds";

/// Latency buckets in seconds: a KV read answers in about a millisecond, a list page or a
/// YAML submit in tens of milliseconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Request counts and latencies for the life of the router, shared by the middleware
/// ([`track`]) and [`metrics`].
#[derive(Clone)]
pub(crate) struct HttpMetrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    /// Drains histogram samples (see [`crate::prom_upkeep`]).
    upkeep: Arc<crate::prom_upkeep::Upkeep>,
}

impl std::fmt::Debug for HttpMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpMetrics")
            .field("recorded", &self.upkeep.count())
            .finish_non_exhaustive()
    }
}

impl Default for HttpMetrics {
    fn default() -> Self {
        // Only fails for an empty bucket list; a summary is then better than no latency.
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(DURATION.into()), LATENCY_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new())
            .build_recorder();
        let handle = recorder.handle();
        ::metrics::with_local_recorder(&recorder, || {
            ::metrics::describe_counter!(
                REQUESTS,
                "HTTP requests answered, by method, route template and status."
            );
            ::metrics::describe_histogram!(
                DURATION,
                "Time to answer an HTTP request in seconds, by method and route template."
            );
        });
        HttpMetrics {
            recorder: Arc::new(recorder),
            handle,
            upkeep: Arc::default(),
        }
    }
}

impl HttpMetrics {
    fn record(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        ::metrics::with_local_recorder(self.recorder.as_ref(), || {
            ::metrics::counter!(REQUESTS, "method" => method.to_string(), "route" => route.to_string(), "status" => status.to_string())
                .increment(1);
            ::metrics::histogram!(DURATION, "method" => method.to_string(), "route" => route.to_string())
                .record(elapsed.as_secs_f64());
        });
        self.upkeep.recorded(&self.handle, 1);
    }

    fn render(&self) -> String {
        self.handle.render()
    }
}

/// Middleware: counts and times each request under its route template (`/runs/{run_id}`,
/// never the raw path, so ids do not explode the label set); requests no route matched are
/// `unmatched`.
pub(crate) async fn track(State(http): State<HttpMetrics>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().as_str().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    http.record(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Queued work and live workers of one tag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TagLoad {
    /// Messages stored on `pyoco.work.<tag>`: waiting, or taken but not yet acked.
    pub queued: u64,
    /// Workers in effective state RUNNING or IDLE that serve the tag.
    pub live_workers: u64,
}

impl TagLoad {
    /// Work is waiting and no live worker will ever take it.
    pub fn unserved(&self) -> bool {
        self.queued > 0 && self.live_workers == 0
    }
}

/// Every tag with queued work or a live worker.
pub(crate) fn tag_loads(
    queued: &BTreeMap<String, u64>,
    workers: &[WorkerView],
) -> BTreeMap<String, TagLoad> {
    let mut out: BTreeMap<String, TagLoad> = BTreeMap::new();
    for (tag, n) in queued {
        out.entry(tag.clone()).or_default().queued = *n;
    }
    for (tag, n) in live_workers_per_tag(workers) {
        out.entry(tag).or_default().live_workers = n;
    }
    out
}

/// The start of the current UTC day, in Unix seconds.
fn utc_day_start(now: f64) -> f64 {
    now - now.rem_euclid(86_400.0)
}

/// What one scrape read from NATS.
#[derive(Debug, Clone, Default, PartialEq)]
struct Scrape {
    runs: Vec<(String, u64)>,
    runs_today: Vec<(String, u64)>,
    workers: Vec<WorkerView>,
    dlq_messages: u64,
    tags: BTreeMap<String, TagLoad>,
}

const WORKER_STATES: [WorkerState; 4] = [
    WorkerState::Running,
    WorkerState::Idle,
    WorkerState::StoppedGraceful,
    WorkerState::Disconnected,
];

/// The derived gauges as Prometheus text.
fn render_scrape(s: &Scrape) -> String {
    let recorder = PrometheusBuilder::new().build_recorder();
    ::metrics::with_local_recorder(&recorder, || {
        use ::metrics::{describe_gauge, gauge};
        describe_gauge!("pyoco_runs_total", "Stored runs by status.");
        for (status, n) in &s.runs {
            gauge!("pyoco_runs_total", "status" => status.clone()).set(*n as f64);
        }
        describe_gauge!(
            "pyoco_runs_today_total",
            "Runs updated since the start of the current UTC day, by status."
        );
        for (status, n) in &s.runs_today {
            gauge!("pyoco_runs_today_total", "status" => status.clone()).set(*n as f64);
        }
        describe_gauge!(
            "pyoco_workers_alive_total",
            "Workers whose effective state is RUNNING or IDLE (hidden ones included)."
        );
        let alive = s.workers.iter().filter(|w| w.is_live()).count();
        gauge!("pyoco_workers_alive_total").set(alive as f64);
        describe_gauge!(
            "pyoco_workers",
            "Workers by effective state (hidden ones included)."
        );
        for state in WORKER_STATES {
            let n = s.workers.iter().filter(|w| w.state == state).count();
            gauge!("pyoco_workers", "state" => state.as_str()).set(n as f64);
        }
        describe_gauge!(
            "pyoco_dlq_messages_total",
            "Messages in the dead-letter stream."
        );
        gauge!("pyoco_dlq_messages_total").set(s.dlq_messages as f64);
        describe_gauge!(
            "pyoco_queue_depth",
            "Jobs stored in the work queue per tag (waiting, or taken and not yet acked)."
        );
        describe_gauge!(
            "pyoco_tag_unserved",
            "1 when a tag has queued jobs and no RUNNING or IDLE worker serves it."
        );
        for (tag, load) in &s.tags {
            gauge!("pyoco_queue_depth", "tag" => tag.clone()).set(load.queued as f64);
            gauge!("pyoco_tag_unserved", "tag" => tag.clone()).set(if load.unserved() {
                1.0
            } else {
                0.0
            });
        }
    });
    recorder.handle().render()
}

/// `GET /metrics`.
#[utoipa::path(get, path = "/metrics",
    responses((status = 200, description = "Prometheus text 0.0.4", content_type = "text/plain", body = String), (status = 503, description = "NATS unavailable", body = ErrorBody)))]
pub(crate) async fn metrics(
    State(state): State<GatewayState>,
    Extension(http): Extension<HttpMetrics>,
) -> Result<Response, ApiError> {
    let index = state.run_index().await?;
    let store = state.store()?;
    let runs = index.status_counts(None);
    let runs_today = index.status_counts(Some(utc_day_start(now())));
    let (workers, queued, dlq_messages) = tokio::try_join!(
        store.workers().list(),
        store.queue_depths(),
        store.dlq_size()
    )?;
    let scrape = Scrape {
        runs,
        runs_today,
        tags: tag_loads(&queued, &workers),
        workers,
        dlq_messages,
    };
    let mut body = render_scrape(&scrape);
    body.push_str(&http.render());
    Ok(([(CONTENT_TYPE, CONTENT_TYPE_TEXT)], body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn worker(id: &str, state: &str, tags: &[&str]) -> WorkerView {
        let Value::Object(raw) = json!({"state": state, "tags": tags, "last_seen_at": 1000.0})
        else {
            unreachable!()
        };
        WorkerView::from_stored(id, raw, 1000.0, Duration::from_secs(20))
    }

    #[test]
    fn utc_day_starts_at_midnight() {
        let midnight = 20_784.0 * 86_400.0;
        assert_eq!(utc_day_start(midnight + 48_000.5), midnight);
        assert_eq!(utc_day_start(midnight), midnight);
    }

    #[test]
    fn a_tag_with_queued_work_and_no_live_worker_is_unserved() {
        let queued = BTreeMap::from([("gpu".to_string(), 3), ("default".to_string(), 2)]);
        let workers = vec![
            worker("w1", "IDLE", &["default"]),
            worker("w2", "STOPPED_GRACEFUL", &["gpu"]),
            worker("w3", "RUNNING", &["cpu"]),
        ];
        let loads = tag_loads(&queued, &workers);
        assert_eq!(
            loads["gpu"],
            TagLoad {
                queued: 3,
                live_workers: 0
            }
        );
        assert!(loads["gpu"].unserved());
        assert!(!loads["default"].unserved());
        assert_eq!(
            loads["cpu"],
            TagLoad {
                queued: 0,
                live_workers: 1
            }
        );
    }

    #[test]
    fn renders_the_originals_gauges_and_ours() {
        let workers = vec![worker("w1", "IDLE", &["default"])];
        let queued = BTreeMap::from([("gpu".to_string(), 2)]);
        let text = render_scrape(&Scrape {
            runs: vec![("COMPLETED".into(), 2), ("FAILED".into(), 1)],
            runs_today: vec![("COMPLETED".into(), 1)],
            tags: tag_loads(&queued, &workers),
            workers,
            dlq_messages: 4,
        });
        for line in [
            "# TYPE pyoco_runs_total gauge",
            "pyoco_runs_total{status=\"COMPLETED\"} 2",
            "pyoco_runs_total{status=\"FAILED\"} 1",
            "pyoco_runs_today_total{status=\"COMPLETED\"} 1",
            "pyoco_workers_alive_total 1",
            "pyoco_workers{state=\"IDLE\"} 1",
            "pyoco_workers{state=\"DISCONNECTED\"} 0",
            "pyoco_dlq_messages_total 4",
            "pyoco_queue_depth{tag=\"gpu\"} 2",
            "pyoco_queue_depth{tag=\"default\"} 0",
            "pyoco_tag_unserved{tag=\"gpu\"} 1",
            "pyoco_tag_unserved{tag=\"default\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn http_requests_are_counted_by_route_template() {
        let http = HttpMetrics::default();
        http.record("GET", "/runs/{run_id}", 404, Duration::from_millis(3));
        http.record("GET", "/runs/{run_id}", 404, Duration::from_millis(30));
        let text = http.render();
        assert!(
            text.contains("# TYPE pyoco_http_requests_total counter"),
            "{text}"
        );
        assert!(
            text.contains(
                "pyoco_http_requests_total{method=\"GET\",route=\"/runs/{run_id}\",status=\"404\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("# TYPE pyoco_http_request_duration_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains(
                "pyoco_http_request_duration_seconds_bucket{method=\"GET\",route=\"/runs/{run_id}\",le=\"0.005\"} 1"
            ),
            "{text}"
        );
    }
}
