//! Watch delay: with `GET /runs/{id}/watch` open, write a snapshot straight into the runs
//! bucket and time how long until the SSE `snapshot` event carrying it reaches the client.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::cluster::{Cluster, IDLE_TAG};
use crate::stats::Latency;

/// Field the bench adds to each written snapshot to recognise its event.
pub(crate) const SEQ_FIELD: &str = "pyoco_bench_seq";

/// `samples` write → event delays on one open stream (a PENDING run no worker touches).
pub async fn delay(cluster: &Cluster, samples: usize) -> anyhow::Result<Latency> {
    let run_id = cluster.submit(IDLE_TAG).await?;
    let response = cluster
        .http
        .get(format!(
            "{}/runs/{run_id}/watch?timeout_sec=600",
            cluster.gateway_url()
        ))
        .timeout(Duration::from_secs(600))
        .send()
        .await
        .context("GET /runs/{id}/watch")?;
    if !response.status().is_success() {
        bail!("GET /runs/{{id}}/watch answered {}", response.status());
    }
    let (tx, mut events) = mpsc::unbounded_channel::<(Instant, Value)>();
    let reader = tokio::spawn(read_events(response, tx));
    let mut next = async |what: &str| -> anyhow::Result<(Instant, Value)> {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Some(e)) => Ok(e),
            Ok(None) => bail!("the watch stream ended while waiting for {what}"),
            Err(_) => bail!("no SSE event within 10 s while waiting for {what}"),
        }
    };
    // The stream opens with the current snapshot.
    let (_, first) = next("the first snapshot").await?;
    let mut doc = first
        .get("snapshot")
        .cloned()
        .context("snapshot event without a snapshot")?;
    let mut delays = Vec::with_capacity(samples);
    for k in 0..samples {
        if let Value::Object(m) = &mut doc {
            m.insert(SEQ_FIELD.into(), k.into());
            m.insert("updated_at".into(), pyoco::model::now().into());
        }
        let bytes = Bytes::from(serde_json::to_vec(&doc)?);
        let written = Instant::now();
        cluster.runs.put(&run_id, bytes).await?;
        loop {
            let (at, event) = next("the written snapshot").await?;
            let seq = event
                .get("snapshot")
                .and_then(|s| s.get(SEQ_FIELD))
                .and_then(Value::as_u64);
            if seq == Some(k as u64) {
                delays.push(at.saturating_duration_since(written));
                break;
            }
        }
    }
    reader.abort();
    Ok(Latency::of(&mut delays))
}

/// Parses the SSE byte stream into `snapshot` events (arrival time, JSON data).
pub(crate) async fn read_events(
    response: reqwest::Response,
    tx: mpsc::UnboundedSender<(Instant, Value)>,
) {
    let mut body = response.bytes_stream();
    let mut buf = String::new();
    while let Some(Ok(chunk)) = body.next().await {
        let at = Instant::now();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut event = "message";
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
            }
            if event == "snapshot"
                && let Ok(v) = serde_json::from_str::<Value>(&data)
                && tx.send((at, v)).is_err()
            {
                return;
            }
        }
    }
}
