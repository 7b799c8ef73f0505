//! List latency at scale: fill the runs bucket straight through async-nats with realistic
//! finished snapshots, start a fresh gateway (it loads its run index with a KV watch), then
//! time `GET /runs?limit=50`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use pyoco::model::{RunStatus, new_run_id, now};
use serde::Serialize;

use crate::cluster::Cluster;
use crate::docs::snapshot;
use crate::procs::Memory;
use crate::stats::Latency;

/// Puts in flight while filling.
const FILL_CONCURRENCY: usize = 512;

/// One stored-run count.
#[derive(Debug, Clone, Serialize)]
pub struct List {
    pub stored_runs: u64,
    /// Runs written by the bench to reach `stored_runs`, and how fast.
    pub filled: u64,
    pub fill_per_s: f64,
    /// From gateway start until `GET /runs` answers (index loaded).
    pub index_load_s: f64,
    /// From a second gateway start until `GET /runs` answers, loading the checkpoint the
    /// first one wrote (`None` below `PYOCO_INDEX_CHECKPOINT_MIN_RUNS`: no checkpoint).
    pub index_load_checkpoint_s: Option<f64>,
    /// That checkpoint: its size, and how long after the first gateway's index had loaded it
    /// was stored (encoding and upload).
    pub checkpoint_bytes: Option<u64>,
    pub checkpoint_write_s: Option<f64>,
    /// The replay floor: a bare KV watch of the bucket (every stored snapshot delivered, none
    /// parsed) from start until caught up — what any index loaded from NATS pays.
    pub replay_floor_s: f64,
    pub gateway: Memory,
    /// Median over the repetitions.
    pub latency: Latency,
    pub repetitions: Vec<Latency>,
}

/// Measures each size in `sizes` (ascending), `requests` sequential list calls per repetition.
pub async fn measure(
    cluster: &mut Cluster,
    sizes: &[u64],
    requests: usize,
    repeat: usize,
) -> anyhow::Result<Vec<List>> {
    let mut out = Vec::new();
    for &size in sizes {
        // The running gateway would index every fill write; start a fresh one after.
        cluster.stop_gateway().await;
        let have = cluster.stored_runs().await?;
        let missing = size.saturating_sub(have);
        let started = Instant::now();
        fill(cluster, missing).await?;
        let fill_s = started.elapsed().as_secs_f64();
        let stored = cluster.stored_runs().await?;
        let replay_floor = replay(cluster, stored).await?;
        let index_load = cluster
            .start_gateway(Duration::from_secs(900))
            .await
            .with_context(|| format!("gateway start with {stored} stored runs"))?;
        let checkpoint = restart_from_checkpoint(cluster, stored).await?;
        let url = format!("{}/runs?limit=50", cluster.gateway_url());
        let mut reps = Vec::new();
        for _ in 0..repeat.max(1) {
            let mut samples = Vec::with_capacity(requests);
            for _ in 0..requests {
                let sent = Instant::now();
                let response = cluster.http.get(&url).send().await?;
                let status = response.status();
                let body = response.bytes().await?;
                samples.push(sent.elapsed());
                if !status.is_success() {
                    bail!("GET /runs answered {status}");
                }
                let items: Vec<serde_json::Value> = serde_json::from_slice(&body)?;
                if items.len() != 50.min(stored as usize) {
                    bail!("GET /runs?limit=50 listed {} runs", items.len());
                }
            }
            reps.push(Latency::of(&mut samples));
        }
        out.push(List {
            stored_runs: stored,
            filled: missing,
            fill_per_s: if fill_s > 0.0 {
                missing as f64 / fill_s
            } else {
                0.0
            },
            index_load_s: index_load.as_secs_f64(),
            index_load_checkpoint_s: checkpoint.as_ref().map(|c| c.load.as_secs_f64()),
            checkpoint_bytes: checkpoint.as_ref().map(|c| c.bytes),
            checkpoint_write_s: checkpoint.as_ref().map(|c| c.written.as_secs_f64()),
            replay_floor_s: replay_floor.as_secs_f64(),
            gateway: cluster.gateway_memory()?,
            latency: Latency::median_of(&reps),
            repetitions: reps,
        });
    }
    Ok(out)
}

/// A gateway start from a checkpoint.
struct FromCheckpoint {
    load: Duration,
    bytes: u64,
    /// From the first gateway's index being loaded until the checkpoint was stored.
    written: Duration,
}

/// Waits for the running gateway's checkpoint of the whole bucket (written once its replay
/// has caught up), then restarts the gateway and times its start from that checkpoint.
/// `None` when no checkpoint comes (an index smaller than the policy's minimum).
async fn restart_from_checkpoint(
    cluster: &mut Cluster,
    stored: u64,
) -> anyhow::Result<Option<FromCheckpoint>> {
    let config = pyoco::Config::from_env().context("PYOCO_* configuration")?;
    if config.index_checkpoint_interval.is_zero()
        || stored < config.index_checkpoint_min_runs as u64
    {
        return Ok(None);
    }
    let bucket = format!("{}_index", cluster.runs_bucket);
    let last = cluster
        .js
        .get_stream(format!("KV_{}", cluster.runs_bucket))
        .await?
        .info()
        .await?
        .state
        .last_sequence;
    let waiting = Instant::now();
    let deadline = waiting + Duration::from_secs(300);
    let bytes = loop {
        let info = match cluster.js.get_object_store(&bucket).await {
            Ok(store) => store.info("runs-index").await.ok(),
            Err(_) => None,
        };
        let covers = |i: &async_nats::jetstream::object_store::ObjectInfo| {
            i.metadata
                .get("revision")
                .and_then(|r| r.parse::<u64>().ok())
                .is_some_and(|r| r >= last)
        };
        if let Some(info) = info.filter(covers) {
            break info.size as u64;
        }
        if Instant::now() > deadline {
            bail!("no checkpoint of the {stored} stored runs within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let written = waiting.elapsed();
    cluster.stop_gateway().await;
    let load = cluster
        .start_gateway(Duration::from_secs(900))
        .await
        .with_context(|| format!("gateway restart with {stored} stored runs"))?;
    Ok(Some(FromCheckpoint {
        load,
        bytes,
        written,
    }))
}

/// Times a bare watch of every stored snapshot until it has caught up (nothing parsed).
async fn replay(cluster: &Cluster, stored: u64) -> anyhow::Result<Duration> {
    if stored == 0 {
        return Ok(Duration::ZERO);
    }
    let started = Instant::now();
    let mut watch = cluster
        .runs
        .watch_with_history(">")
        .await
        .context("watch the runs bucket")?;
    let mut bytes = 0usize;
    while let Some(entry) = watch.next().await {
        let entry = entry.context("replay the runs bucket")?;
        bytes += entry.value.len();
        if entry.delta == 0 {
            break;
        }
    }
    std::hint::black_box(bytes);
    Ok(started.elapsed())
}

/// Writes `n` finished runs (90 % COMPLETED, 10 % FAILED), newest first, into the bucket.
async fn fill(cluster: &Cluster, n: u64) -> anyhow::Result<()> {
    let base = now() - 1.0;
    let kv = &cluster.runs;
    futures::stream::iter(0..n)
        .map(|i| async move {
            let status = if i % 10 == 9 {
                RunStatus::Failed
            } else {
                RunStatus::Completed
            };
            let id = new_run_id();
            let doc = snapshot(&id, status, base - i as f64 * 0.001);
            let bytes = Bytes::from(serde_json::to_vec(&doc)?);
            kv.put(&id, bytes).await.context("fill the runs bucket")?;
            Ok::<(), anyhow::Error>(())
        })
        .buffer_unordered(FILL_CONCURRENCY)
        .try_collect::<()>()
        .await
}
