//! Waiting for a condition instead of sleeping a fixed time, and the "submit, then wait until
//! the run is terminal" steps most end-to-end tests start with.

use std::time::Duration;

#[cfg(feature = "client")]
use serde_json::Value;

#[cfg(feature = "client")]
use crate::client::http::HttpClient;

/// How long [`wait_terminal`] and [`run_to_end`] wait: a bound for a broken test, never a
/// timing rule (a run that should finish does so in well under a second).
#[cfg(feature = "client")]
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// Waits until `check` returns `Some`, polling every 10 ms; panics after `timeout` with `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// True when the snapshot's `status` is COMPLETED, FAILED or CANCELLED. Kept on the JSON the
/// client returns so a test reads exactly what went over the wire.
#[cfg(feature = "client")]
pub fn is_terminal(run: &Value) -> bool {
    matches!(
        run["status"].as_str(),
        Some("COMPLETED" | "FAILED" | "CANCELLED")
    )
}

/// Polls `GET /runs/{run_id}?include=records` until the run is terminal and returns it.
#[cfg(feature = "client")]
pub async fn wait_terminal(client: &HttpClient, run_id: &str) -> Value {
    wait_for(&format!("run {run_id} to finish"), RUN_TIMEOUT, || async {
        let run = client.get_run(run_id, true).await.ok()?;
        is_terminal(&run).then_some(run)
    })
    .await
}

/// Submits `yaml` as flow `flow_name` on `tag` (the default tag when `None`) and returns the
/// run id; panics when the gateway refuses it.
#[cfg(feature = "client")]
pub async fn submit_yaml(
    client: &HttpClient,
    yaml: &str,
    flow_name: &str,
    tag: Option<&str>,
) -> String {
    let answer = client
        .submit_yaml(yaml.as_bytes(), flow_name, tag)
        .await
        .unwrap_or_else(|e| panic!("submit {flow_name}: {e}"));
    answer["run_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no run_id in {answer}"))
        .to_string()
}

/// Submits `yaml` as flow `flow_name` on the default tag and returns the terminal snapshot
/// (with task records).
#[cfg(feature = "client")]
pub async fn run_to_end(client: &HttpClient, yaml: &str, flow_name: &str) -> Value {
    let run_id = submit_yaml(client, yaml, flow_name, None).await;
    wait_terminal(client, &run_id).await
}
