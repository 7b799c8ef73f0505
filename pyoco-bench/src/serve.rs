//! The gateway's serving figures beyond throughput: submit latency under a fixed open-loop
//! load, `GET /runs/{id}` and `/health` requests per second, and SSE fan-out (many watchers
//! of one run, each write's delay to every one of them).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::cluster::{Cluster, IDLE_TAG};
use crate::stats::Latency;
use crate::watch::{SEQ_FIELD, read_events};

/// How much of each the phase does.
#[derive(Debug, Clone, Copy)]
pub struct ServePlan {
    /// Submits per second of the open-loop load, and for how long.
    pub open_rate: f64,
    pub open_seconds: f64,
    /// Requests of each closed-loop read measurement, and how many in flight.
    pub reads: usize,
    pub read_concurrency: usize,
    /// Watchers of the fan-out, and how many writes each one sees.
    pub watchers: usize,
    pub fanout_writes: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServeSummary {
    pub open_loop: OpenLoop,
    pub get_run: Rate,
    pub health: Rate,
    pub fanout: Fanout,
}

/// `POST /runs` sent at a fixed rate whatever the answers do. `latency` is from the instant
/// each request went out; `from_due` from the instant it was due, which adds the send lag of
/// the bench's own timer (tokio's timer has a 1 ms tick, so up to ~1 ms per request at this
/// rate) — the two together show that no coordinated omission hides in `latency`.
#[derive(Debug, Clone, Serialize)]
pub struct OpenLoop {
    pub rate_per_s: f64,
    pub sent: usize,
    pub achieved_per_s: f64,
    pub latency: Latency,
    pub from_due: Latency,
}

/// A closed-loop request rate.
#[derive(Debug, Clone, Serialize)]
pub struct Rate {
    pub requests: usize,
    pub concurrency: usize,
    pub per_s: f64,
    pub latency: Latency,
}

/// Write → SSE event delay over every watcher of every write.
#[derive(Debug, Clone, Serialize)]
pub struct Fanout {
    pub watchers: usize,
    pub writes: usize,
    pub latency: Latency,
}

pub async fn measure(cluster: &Cluster, plan: ServePlan) -> anyhow::Result<ServeSummary> {
    let open_loop = open_loop(cluster, plan.open_rate, plan.open_seconds).await?;
    let run_id = cluster.submit(IDLE_TAG).await?;
    let get_run = closed_loop(
        cluster,
        &format!("{}/runs/{run_id}", cluster.gateway_url()),
        plan.reads,
        plan.read_concurrency,
    )
    .await?;
    let health = closed_loop(
        cluster,
        &format!("{}/health", cluster.gateway_url()),
        plan.reads,
        plan.read_concurrency,
    )
    .await?;
    let fanout = fanout(cluster, plan.watchers, plan.fanout_writes).await?;
    Ok(ServeSummary {
        open_loop,
        get_run,
        health,
        fanout,
    })
}

async fn open_loop(cluster: &Cluster, rate: f64, seconds: f64) -> anyhow::Result<OpenLoop> {
    let total = (rate * seconds).round().max(1.0) as usize;
    let period = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let started = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    let mut latencies = Vec::with_capacity(total);
    let mut from_due = Vec::with_capacity(total);
    let mut sent = 0;
    while sent < total || !in_flight.is_empty() {
        let due = started + period * sent as u32;
        tokio::select! {
            _ = tokio::time::sleep_until(due.into()), if sent < total => {
                in_flight.push(async move {
                    let sent_at = Instant::now();
                    cluster
                        .submit(IDLE_TAG)
                        .await
                        .map(|_| (sent_at.elapsed(), due.elapsed()))
                });
                sent += 1;
            }
            Some(done) = in_flight.next() => {
                let (latency, since_due) = done?;
                latencies.push(latency);
                from_due.push(since_due);
            }
        }
    }
    let took = started.elapsed().as_secs_f64();
    Ok(OpenLoop {
        rate_per_s: rate,
        sent: total,
        achieved_per_s: total as f64 / took,
        latency: Latency::of(&mut latencies),
        from_due: Latency::of(&mut from_due),
    })
}

async fn closed_loop(
    cluster: &Cluster,
    url: &str,
    requests: usize,
    concurrency: usize,
) -> anyhow::Result<Rate> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let started = Instant::now();
    let clients = (0..concurrency.max(1)).map(|_| async {
        let mut out = Vec::new();
        while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < requests {
            let sent = Instant::now();
            let response = cluster.http.get(url).send().await.context("GET")?;
            let status = response.status();
            response.bytes().await?;
            if !status.is_success() {
                bail!("GET {url} answered {status}");
            }
            out.push(sent.elapsed());
        }
        Ok::<_, anyhow::Error>(out)
    });
    let all = futures::future::try_join_all(clients).await?;
    let seconds = started.elapsed().as_secs_f64();
    let mut latencies: Vec<Duration> = all.into_iter().flatten().collect();
    Ok(Rate {
        requests,
        concurrency,
        per_s: requests as f64 / seconds,
        latency: Latency::of(&mut latencies),
    })
}

async fn fanout(cluster: &Cluster, watchers: usize, writes: usize) -> anyhow::Result<Fanout> {
    let run_id = cluster.submit(IDLE_TAG).await?;
    let url = format!(
        "{}/runs/{run_id}/watch?timeout_sec=600",
        cluster.gateway_url()
    );
    let (tx, mut events) = mpsc::unbounded_channel::<(Instant, Value)>();
    let mut readers = Vec::with_capacity(watchers);
    for _ in 0..watchers {
        let response = cluster
            .http
            .get(&url)
            .timeout(Duration::from_secs(600))
            .send()
            .await
            .context("GET /runs/{id}/watch")?;
        if !response.status().is_success() {
            bail!("GET /runs/{{id}}/watch answered {}", response.status());
        }
        readers.push(tokio::spawn(read_events(response, tx.clone())));
    }
    drop(tx);
    let mut next = async || -> anyhow::Result<(Instant, Value)> {
        match tokio::time::timeout(Duration::from_secs(30), events.recv()).await {
            Ok(Some(e)) => Ok(e),
            Ok(None) => bail!("every watch stream ended"),
            Err(_) => bail!("no SSE event within 30 s"),
        }
    };
    // Every stream opens with the current snapshot.
    let mut doc = Value::Null;
    for _ in 0..watchers {
        let (_, first) = next().await?;
        doc = first.get("snapshot").cloned().unwrap_or(Value::Null);
    }
    let mut delays = Vec::with_capacity(watchers * writes);
    for k in 0..writes {
        if let Value::Object(m) = &mut doc {
            m.insert(SEQ_FIELD.into(), k.into());
            m.insert("updated_at".into(), pyoco::model::now().into());
        }
        let bytes = Bytes::from(serde_json::to_vec(&doc)?);
        let written = Instant::now();
        cluster.runs.put(&run_id, bytes).await?;
        let mut seen = 0;
        while seen < watchers {
            let (at, event) = next().await?;
            let seq = event
                .get("snapshot")
                .and_then(|s| s.get(SEQ_FIELD))
                .and_then(Value::as_u64);
            if seq == Some(k as u64) {
                delays.push(at.saturating_duration_since(written));
                seen += 1;
            }
        }
    }
    for r in readers {
        r.abort();
    }
    Ok(Fanout {
        watchers,
        writes,
        latency: Latency::of(&mut delays),
    })
}
