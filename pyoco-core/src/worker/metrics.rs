//! The worker's own Prometheus metrics: per-callable task counts and time, and runs finished
//! by status. Rendered by `metrics-exporter-prometheus` from a recorder owned by the worker
//! (never installed globally, so several workers in one process stay apart). The
//! `pyoco-worker` binary serves them on `--metrics-addr` with [`serve_metrics`].

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use serde_json::Value;

use crate::flow::policy::BreakerPolicy;
use crate::flow::services::TaskServices;
use crate::model::RunStatus;

const TASK_RUNS: &str = "pyoco_task_runs_total";
const TASK_MS: &str = "pyoco_task_duration_ms_total";
const RUNS: &str = "pyoco_worker_runs_total";
const TASK_SECONDS: &str = "pyoco_task_duration_seconds";
const RUN_SECONDS: &str = "pyoco_run_duration_seconds";
const QUEUE_WAIT: &str = "pyoco_queue_wait_seconds";

/// Task durations: a built-in task takes a millisecond, a Python task up to hours.
const TASK_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    1800.0, 7200.0,
];
/// Run durations: claim to terminal write.
const RUN_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
    3600.0, 7200.0,
];
/// Queue waits: milliseconds on an idle system, hours behind a backlog.
const WAIT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    3600.0, 14400.0,
];

/// Counters of one worker.
#[derive(Clone)]
pub struct TaskMetrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    /// Drains histogram samples, so a worker nobody scrapes does not keep them all.
    upkeep: Arc<crate::prom_upkeep::Upkeep>,
}

impl std::fmt::Debug for TaskMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskMetrics").finish_non_exhaustive()
    }
}

impl Default for TaskMetrics {
    fn default() -> Self {
        let builder = [
            (TASK_SECONDS, TASK_BUCKETS),
            (RUN_SECONDS, RUN_BUCKETS),
            (QUEUE_WAIT, WAIT_BUCKETS),
        ]
        .into_iter()
        .try_fold(PrometheusBuilder::new(), |b, (name, buckets)| {
            b.set_buckets_for_metric(Matcher::Full(name.into()), buckets)
        })
        // Only fails for an empty bucket list; summaries are then better than nothing.
        .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::describe_histogram!(
                TASK_SECONDS,
                "Task duration in seconds (all attempts), by callable and result."
            );
            metrics::describe_histogram!(
                RUN_SECONDS,
                "Run duration in seconds, from claim to terminal write, by flow and final status."
            );
            metrics::describe_histogram!(
                QUEUE_WAIT,
                "Time from submit to a worker's first claim of the run, in seconds, by tag."
            );
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
            upkeep: Arc::default(),
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
            metrics::histogram!(TASK_SECONDS, "callable" => callable.to_string(), "result" => result)
                .record(elapsed.as_secs_f64());
        });
        self.upkeep.recorded(&self.handle, 1);
    }

    /// Counts a run of `flow` that reached `status` (labelled with its wire name) after
    /// `seconds` since its claim.
    pub fn run_finished(&self, status: RunStatus, flow: &str, seconds: f64) {
        metrics::with_local_recorder(self.recorder.as_ref(), || {
            metrics::counter!(RUNS, "status" => status.as_str()).increment(1);
            metrics::histogram!(RUN_SECONDS, "flow" => flow.to_string(), "status" => status.as_str())
                .record(seconds.max(0.0));
        });
        self.upkeep.recorded(&self.handle, 1);
    }

    /// Records the wait of a job on `tag` between its submit and its first claim (negative
    /// waits, from clocks apart, count as 0).
    pub fn queue_wait(&self, tag: &str, seconds: f64) {
        let seconds = if seconds.is_finite() {
            seconds.max(0.0)
        } else {
            0.0
        };
        metrics::with_local_recorder(self.recorder.as_ref(), || {
            metrics::histogram!(QUEUE_WAIT, "tag" => tag.to_string()).record(seconds);
        });
        self.upkeep.recorded(&self.handle, 1);
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
        m.run_finished(RunStatus::Completed, "etl", 1.5);
        m.queue_wait("gpu", 0.02);
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
        for line in [
            "# TYPE pyoco_task_duration_seconds histogram",
            "pyoco_task_duration_seconds_bucket{callable=\"m:f\",result=\"ok\",le=\"0.025\"} 1",
            "pyoco_task_duration_seconds_bucket{callable=\"m:f\",result=\"fail\",le=\"0.001\"} 0",
            "pyoco_task_duration_seconds_bucket{callable=\"m:f\",result=\"fail\",le=\"0.005\"} 1",
            "pyoco_run_duration_seconds_bucket{flow=\"etl\",status=\"COMPLETED\",le=\"1\"} 0",
            "pyoco_run_duration_seconds_bucket{flow=\"etl\",status=\"COMPLETED\",le=\"2.5\"} 1",
            "pyoco_run_duration_seconds_count{flow=\"etl\",status=\"COMPLETED\"} 1",
            "pyoco_queue_wait_seconds_bucket{tag=\"gpu\",le=\"0.025\"} 1",
            "pyoco_queue_wait_seconds_count{tag=\"gpu\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    /// Samples are drained into the histograms as they go (nobody scrapes here), and every
    /// one is counted.
    #[test]
    fn samples_are_drained_without_a_scrape() {
        let m = TaskMetrics::default();
        let n = crate::prom_upkeep::EVERY * 3 + 5;
        for _ in 0..n {
            m.run_finished(RunStatus::Completed, "etl", 0.01);
        }
        assert_eq!(m.upkeep.count(), n);
        let text = m.render();
        let line =
            format!("pyoco_run_duration_seconds_count{{flow=\"etl\",status=\"COMPLETED\"}} {n}");
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }

    #[cfg(feature = "gateway")]
    #[tokio::test]
    async fn the_metrics_server_answers_and_stops_on_shutdown() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let m = TaskMetrics::default();
        m.run_finished(RunStatus::Failed, "etl", 0.1);
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
