//! `pyoco-bench soak`: many runs through one worker and one gateway with retention on,
//! sampling both processes' memory after every batch — the check that memory stays flat when
//! runs are removed as fast as they are made, and that none is lost or left unfinished.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures::TryStreamExt;
use serde::Serialize;

use crate::cluster::Cluster;
use crate::procs::Memory;
use crate::runs;

#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// Runs in total
    #[arg(long, default_value_t = 200_000)]
    runs: usize,
    /// Runs per batch (memory is sampled after each)
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
    /// The gateway's PYOCO_RUNS_RETENTION_SEC
    #[arg(long, default_value_t = 10)]
    retention_sec: u64,
    /// Runs in flight
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Also write the samples as JSON to this file
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// Memory after one batch.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub runs_done: usize,
    pub elapsed_s: f64,
    pub runs_per_s: f64,
    pub stored_runs: u64,
    pub gateway: Memory,
    pub worker: Memory,
}

pub async fn run(args: SoakArgs) -> anyhow::Result<bool> {
    let dir = tempfile::Builder::new().prefix("pyoco-soak-").tempdir()?;
    let worker_args = vec!["--concurrency".to_string(), args.concurrency.to_string()];
    let mut cluster = Cluster::start(dir.path(), None, worker_args).await?;
    cluster.gateway_env = vec![(
        "PYOCO_RUNS_RETENTION_SEC".into(),
        args.retention_sec.to_string(),
    )];
    let result = soak(&mut cluster, &args).await;
    cluster.shutdown().await;
    let (samples, stuck) = result?;
    println!(
        "| runs done | elapsed | runs/s | stored runs | gateway RSS (MiB) | worker RSS (MiB) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for s in &samples {
        println!(
            "| {} | {:.0} s | {:.0} | {} | {:.1} | {:.1} |",
            s.runs_done,
            s.elapsed_s,
            s.runs_per_s,
            s.stored_runs,
            s.gateway.rss_mib,
            s.worker.rss_mib
        );
    }
    // Flat: after warm-up (the first quarter), every sample within ±10 % of their median.
    let warm: Vec<&Sample> = samples.iter().skip(samples.len() / 4).collect();
    let flat = |f: fn(&Sample) -> f64| {
        let mut v: Vec<f64> = warm.iter().map(|s| f(s)).collect();
        v.sort_by(f64::total_cmp);
        let median = v.get(v.len() / 2).copied().unwrap_or_default();
        let spread = v
            .iter()
            .map(|x| (x - median).abs() / median.max(f64::MIN_POSITIVE))
            .fold(0.0, f64::max);
        (median, spread)
    };
    let (g, gs) = flat(|s| s.gateway.rss_mib);
    let (w, ws) = flat(|s| s.worker.rss_mib);
    println!(
        "after warm-up: gateway {g:.1} MiB ±{:.1} %, worker {w:.1} MiB ±{:.1} %; {stuck} runs not finished; every run completed (none lost)",
        gs * 100.0,
        ws * 100.0
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&samples)?)?;
    }
    Ok(stuck == 0)
}

/// Runs in the bucket, as the gateway counts them (`GET /stats`): the stream's message count
/// would also count the markers deleted runs leave.
async fn stored_runs(cluster: &Cluster) -> anyhow::Result<u64> {
    let stats: serde_json::Value = cluster
        .http
        .get(format!("{}/stats", cluster.gateway_url()))
        .send()
        .await?
        .json()
        .await?;
    Ok(stats["runs_by_status"]
        .as_object()
        .map(|m| m.values().filter_map(serde_json::Value::as_u64).sum())
        .unwrap_or_default())
}

async fn soak(cluster: &mut Cluster, args: &SoakArgs) -> anyhow::Result<(Vec<Sample>, usize)> {
    cluster.start_gateway(Duration::from_secs(60)).await?;
    cluster.set_workers(1).await?;
    runs::warm_up(cluster).await?;
    let started = Instant::now();
    let mut done = 0;
    let mut samples = Vec::new();
    while done < args.runs {
        let n = args.batch.min(args.runs - done);
        // Fails when a run is lost, fails or does not complete in time.
        let e = runs::end_to_end(cluster, 1, n, args.concurrency)
            .await
            .with_context(|| format!("batch after {done} runs"))?;
        done += n;
        let sample = Sample {
            runs_done: done,
            elapsed_s: started.elapsed().as_secs_f64(),
            runs_per_s: e.runs_per_s,
            stored_runs: stored_runs(cluster).await?,
            gateway: cluster.gateway_memory()?,
            worker: cluster.worker_memory()?,
        };
        eprintln!("pyoco-bench soak: {sample:?}");
        samples.push(sample);
    }
    // Nothing may be left unfinished in the bucket.
    let keys: Vec<String> = cluster.runs.keys().await?.try_collect().await?;
    let mut stuck = 0;
    for key in keys {
        if let Some(doc) = cluster.runs.get(&key).await? {
            let status = serde_json::from_slice::<serde_json::Value>(&doc)?["status"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if !matches!(status.as_str(), "COMPLETED" | "FAILED" | "CANCELLED") {
                stuck += 1;
            }
        }
    }
    Ok((samples, stuck))
}
