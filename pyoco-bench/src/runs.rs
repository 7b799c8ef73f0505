//! Submit and end-to-end benchmarks over the gateway's HTTP API.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::cluster::{Cluster, CpuPerRun, IDLE_TAG, WORK_TAG};
use crate::stats::Latency;

/// `POST /runs` accepted per second at one concurrency.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Submit {
    pub concurrency: usize,
    pub requests: usize,
    pub seconds: f64,
    pub per_s: f64,
    pub latency: Latency,
}

/// `requests` submits by `concurrency` clients in a closed loop, each waiting for its answer
/// before the next. The runs go to a tag no worker serves, so only the submit path is timed.
pub async fn submit(
    cluster: &Cluster,
    concurrency: usize,
    requests: usize,
) -> anyhow::Result<Submit> {
    let started = Instant::now();
    let timed = submit_many(cluster, concurrency, requests, IDLE_TAG).await?;
    let seconds = started.elapsed().as_secs_f64();
    let mut latencies: Vec<Duration> = timed.iter().map(|t| t.took).collect();
    Ok(Submit {
        concurrency,
        requests,
        seconds,
        per_s: requests as f64 / seconds,
        latency: Latency::of(&mut latencies),
    })
}

/// One accepted submit.
struct Timed {
    run_id: String,
    sent: Instant,
    took: Duration,
}

async fn submit_many(
    cluster: &Cluster,
    concurrency: usize,
    requests: usize,
    tag: &str,
) -> anyhow::Result<Vec<Timed>> {
    let next = Arc::new(AtomicUsize::new(0));
    let clients = (0..concurrency.max(1)).map(|_| {
        let next = next.clone();
        async move {
            let mut out = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                let sent = Instant::now();
                let run_id = cluster.submit(tag).await?;
                out.push(Timed {
                    run_id,
                    sent,
                    took: sent.elapsed(),
                });
            }
            Ok::<_, anyhow::Error>(out)
        }
    });
    let all = futures::future::try_join_all(clients).await?;
    Ok(all.into_iter().flatten().collect())
}

/// Runs through the whole system per second, and per-run submit → COMPLETED latency.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EndToEnd {
    pub workers: usize,
    pub runs: usize,
    pub concurrency: usize,
    pub seconds: f64,
    pub runs_per_s: f64,
    pub latency: Latency,
    /// Submit → COMPLETED with one run in the system at a time (no queueing).
    pub unloaded: Latency,
    /// `runs_per_s` / the floor measured just before, in the same repetition.
    pub floor_fraction: Option<f64>,
    pub cpu: CpuPerRun,
}

/// Submits `runs` runs of the bench flow at `concurrency` and waits until every one is
/// COMPLETED (seen on the runs bucket). Throughput is from the first submit to the last
/// completion.
pub async fn end_to_end(
    cluster: &Cluster,
    workers: usize,
    runs: usize,
    concurrency: usize,
) -> anyhow::Result<EndToEnd> {
    let before = cluster.tracker.completed();
    let cpu_before = cluster.cpu();
    let started = Instant::now();
    let timed = submit_many(cluster, concurrency, runs, WORK_TAG).await?;
    // Generous: a gross slowdown still finishes and is reported, a hang is not waited out.
    let timeout = Duration::from_secs(60) + Duration::from_millis(runs as u64 * 10);
    cluster
        .tracker
        .wait_for(before + runs, timeout, || cluster.check_alive())
        .await
        .context("end to end")?;
    // Work a run causes after its COMPLETED write (the ack, the worker's re-read of the
    // terminal snapshot 500 ms later) belongs to its CPU cost too.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let cpu = cpu_before.per_run(&cluster.cpu(), runs);
    let ids: Vec<String> = timed.iter().map(|t| t.run_id.clone()).collect();
    let done = cluster.tracker.completed_at(&ids)?;
    let last = done.iter().max().copied().unwrap_or(started);
    let seconds = last.duration_since(started).as_secs_f64();
    let mut latencies: Vec<Duration> = timed
        .iter()
        .zip(&done)
        .map(|(t, d)| d.saturating_duration_since(t.sent))
        .collect();
    Ok(EndToEnd {
        workers,
        runs,
        concurrency,
        seconds,
        runs_per_s: runs as f64 / seconds,
        latency: Latency::of(&mut latencies),
        unloaded: Latency::default(),
        floor_fraction: None,
        cpu,
    })
}

/// Submit → COMPLETED latency of `samples` runs submitted one after the other, each once
/// the previous one has completed: the latency of the run path itself, without a queue.
pub async fn unloaded_latency(cluster: &Cluster, samples: usize) -> anyhow::Result<Latency> {
    let mut latencies = Vec::with_capacity(samples);
    for _ in 0..samples {
        let before = cluster.tracker.completed();
        let sent = Instant::now();
        let run_id = cluster.submit(WORK_TAG).await?;
        cluster
            .tracker
            .wait_for(before + 1, Duration::from_secs(30), || {
                cluster.check_alive()
            })
            .await
            .context("one run at a time")?;
        let done = cluster.tracker.completed_at(&[run_id])?;
        latencies.extend(done.iter().map(|d| d.saturating_duration_since(sent)));
    }
    Ok(Latency::of(&mut latencies))
}

/// Waits until one run submitted now completes (proves the worker path is live).
pub async fn warm_up(cluster: &Cluster) -> anyhow::Result<()> {
    let before = cluster.tracker.completed();
    submit_many(cluster, 4, 8, WORK_TAG).await?;
    cluster
        .tracker
        .wait_for(before + 8, Duration::from_secs(60), || {
            cluster.check_alive()
        })
        .await
        .context("warm-up runs")
}
