//! The worker's own Prometheus metrics: per-callable task counts and time, and runs finished
//! by status. Rendered by `metrics-exporter-prometheus` from a recorder owned by the worker
//! (never installed globally, so several workers in one process stay apart). The
//! `pyoco-worker` binary serves them on `--metrics-addr` with [`serve_metrics`].

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use serde_json::Value;

use crate::flow::policy::BreakerPolicy;
use crate::flow::services::TaskServices;
use crate::model::RunStatus;

const TASK_RUNS: &str = "pyoco_task_runs_total";
const TASK_MS: &str = "pyoco_task_duration_ms_total";
const RUNS: &str = "pyoco_worker_runs_total";

/// Counters of one worker.
#[derive(Clone)]
pub struct TaskMetrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for TaskMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskMetrics").finish_non_exhaustive()
    }
}

impl Default for TaskMetrics {
    fn default() -> Self {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::describe_counter!(
                TASK_RUNS,
                "Tasks finished by this worker, by callable and result (ok or fail)."
            );
            metrics::describe_counter!(
                TASK_MS,
                "Milliseconds spent in tasks (all attempts), by callable."
            );
            metrics::describe_counter!(RUNS, "Runs finished by this worker, by final status.");
        });
        TaskMetrics {
            recorder: Arc::new(recorder),
            handle,
        }
    }
}

impl TaskMetrics {
    pub fn task_finished(&self, callable: &str, ok: bool, elapsed: Duration) {
        metrics::with_local_recorder(self.recorder.as_ref(), || {
            let result = if ok { "ok" } else { "fail" };
            metrics::counter!(TASK_RUNS, "callable" => callable.to_string(), "result" => result)
                .increment(1);
            metrics::counter!(TASK_MS, "callable" => callable.to_string())
                .increment(elapsed.as_millis() as u64);
        });
    }

    /// Counts a run that reached `status` (labelled with its wire name).
    pub fn run_finished(&self, status: RunStatus) {
        metrics::with_local_recorder(self.recorder.as_ref(), || {
            metrics::counter!(RUNS, "status" => status.as_str()).increment(1);
        });
    }

    /// Prometheus text format 0.0.4.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}

/// Serves `GET /metrics` (Prometheus text) for one worker on `listener` until `shutdown`
/// resolves; the caller awaits it so the server is drained with the worker, not leaked.
/// Needs axum, which feature `gateway` brings.
#[cfg(feature = "gateway")]
pub async fn serve_metrics<F>(
    listener: tokio::net::TcpListener,
    metrics: TaskMetrics,
    shutdown: F,
) -> std::io::Result<()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    metrics.render(),
                )
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// The worker's task services: shared cache and breakers, plus its own counters.
#[derive(Debug)]
pub(super) struct WorkerServices {
    pub(super) shared: crate::store::services::KvServices,
    pub(super) metrics: TaskMetrics,
}

impl TaskServices for WorkerServices {
    fn cache_get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Value>> {
        self.shared.cache_get(key)
    }
    fn cache_put<'a>(&'a self, key: &'a str, value: &'a Value, ttl: Duration) -> BoxFuture<'a, ()> {
        self.shared.cache_put(key, value, ttl)
    }
    fn breaker_allow<'a>(
        &'a self,
        callable: &'a str,
        policy: &'a BreakerPolicy,
    ) -> BoxFuture<'a, Result<(), String>> {
        self.shared.breaker_allow(callable, policy)
    }
    fn breaker_record<'a>(
        &'a self,
        callable: &'a str,
        policy: &'a BreakerPolicy,
        ok: bool,
    ) -> BoxFuture<'a, ()> {
        self.shared.breaker_record(callable, policy, ok)
    }
    fn task_finished(&self, callable: &str, ok: bool, elapsed: Duration) {
        self.metrics.task_finished(callable, ok, elapsed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_tasks_by_callable_and_result() {
        let m = TaskMetrics::default();
        m.task_finished("m:f", true, Duration::from_millis(20));
        m.task_finished("m:f", false, Duration::from_millis(5));
        m.run_finished(RunStatus::Completed);
        let text = m.render();
        assert!(
            text.contains("pyoco_task_runs_total{callable=\"m:f\",result=\"ok\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("pyoco_task_runs_total{callable=\"m:f\",result=\"fail\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("pyoco_task_duration_ms_total{callable=\"m:f\"} 25"),
            "{text}"
        );
        assert!(
            text.contains("pyoco_worker_runs_total{status=\"COMPLETED\"} 1"),
            "{text}"
        );
    }

    #[cfg(feature = "gateway")]
    #[tokio::test]
    async fn the_metrics_server_answers_and_stops_on_shutdown() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let m = TaskMetrics::default();
        m.run_finished(RunStatus::Failed);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_metrics(listener, m, async {
            stopped.await.ok();
        }));
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut reply = String::new();
        conn.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(
            reply.contains("pyoco_worker_runs_total{status=\"FAILED\"} 1"),
            "{reply}"
        );
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("server stops on shutdown")
            .unwrap()
            .unwrap();
    }
}
