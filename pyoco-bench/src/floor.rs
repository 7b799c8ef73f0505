//! The floor: the raw JetStream sequence one run needs, driven directly with async-nats at the
//! benchmark's concurrency — KV create (PENDING), publish the job and await its ack, fetch it,
//! KV update RUNNING, KV update COMPLETED, ack. Nothing pyoco does per run can be cheaper, so
//! this is the physical limit on this machine, measured in the same run as pyoco.
//!
//! It uses its own stream and bucket (`PYOCO_BENCH_FLOOR*`), so it never touches pyoco's.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, kv, stream};
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;

use crate::docs::RunDocs;

const STREAM: &str = "PYOCO_BENCH_FLOOR";
const SUBJECT: &str = "pyoco_bench.floor.work";
const BUCKET: &str = "pyoco_bench_floor_runs";

/// One floor measurement.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Floor {
    pub runs: usize,
    pub concurrency: usize,
    pub seconds: f64,
    pub seq_per_s: f64,
    /// CPU per sequence (filled in by the caller, which knows the processes).
    pub cpu: crate::cluster::CpuPerRun,
}

/// Runs `runs` sequences with `concurrency` in flight on each side (producer and consumer).
/// `docs` are realistic documents (their size matters); `seq` keeps keys unique across
/// repetitions.
pub async fn measure(
    client: &async_nats::Client,
    runs: usize,
    concurrency: usize,
    docs: &RunDocs,
    seq: usize,
) -> anyhow::Result<Floor> {
    let js = jetstream::new(client.clone());
    // A fresh stream and bucket each time, so every repetition starts from the same state.
    js.delete_stream(STREAM).await.ok();
    js.delete_key_value(BUCKET).await.ok();
    let work = js
        .create_stream(stream::Config {
            name: STREAM.into(),
            subjects: vec![SUBJECT.into()],
            retention: stream::RetentionPolicy::WorkQueue,
            duplicate_window: Duration::from_secs(120),
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .context("floor: create stream")?;
    let bucket = js
        .create_key_value(kv::Config {
            bucket: BUCKET.into(),
            history: 1,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .context("floor: create bucket")?;
    let consumer: consumer::PullConsumer = work
        .create_consumer(consumer::pull::Config {
            durable_name: Some("floor".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            max_ack_pending: (concurrency as i64).max(1) * 4,
            ..Default::default()
        })
        .await
        .context("floor: create consumer")?;

    let pending = Bytes::from(docs.pending.clone());
    let running = Bytes::from(docs.running.clone());
    let completed = Bytes::from(docs.completed.clone());
    let started = Instant::now();

    let produced = Arc::new(AtomicUsize::new(0));
    let producer = {
        let (js, bucket, produced) = (js.clone(), bucket.clone(), produced.clone());
        tokio::spawn(async move {
            let tasks = (0..concurrency).map(|_| {
                let (js, bucket, produced, pending) = (
                    js.clone(),
                    bucket.clone(),
                    produced.clone(),
                    pending.clone(),
                );
                async move {
                    loop {
                        let i = produced.fetch_add(1, Ordering::Relaxed);
                        if i >= runs {
                            return Ok::<(), anyhow::Error>(());
                        }
                        let key = format!("r{seq}-{i}");
                        let rev = bucket.create(&key, pending.clone()).await?;
                        let mut headers = HeaderMap::new();
                        headers.insert("Nats-Msg-Id", key.as_str());
                        // The consumer needs the revision for its compare-and-set updates.
                        let job = format!("{key} {rev}");
                        js.publish_with_headers(SUBJECT, headers, job.into())
                            .await?
                            .await?;
                    }
                }
            });
            futures::future::try_join_all(tasks).await.map(|_| ())
        })
    };

    let done = AtomicUsize::new(0);
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(concurrency.max(1))
        .messages()
        .await
        .context("floor: pull")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut in_flight = futures::stream::FuturesUnordered::new();
    while done.load(Ordering::Relaxed) < runs {
        tokio::select! {
            msg = messages.next(), if in_flight.len() < concurrency => {
                let msg = msg.context("floor: pull stream ended")?.map_err(|e| anyhow::anyhow!("floor: pull: {e}"))?;
                let (bucket, running, completed, done) = (&bucket, running.clone(), completed.clone(), &done);
                in_flight.push(async move {
                    let text = std::str::from_utf8(&msg.payload)?;
                    let (key, rev) = text.split_once(' ').context("bad floor job")?;
                    let rev: u64 = rev.parse()?;
                    let rev = bucket.update(key, running, rev).await?;
                    bucket.update(key, completed, rev).await?;
                    msg.ack().await.map_err(|e| anyhow::anyhow!("ack: {e}"))?;
                    done.fetch_add(1, Ordering::Relaxed);
                    Ok::<(), anyhow::Error>(())
                });
            }
            Some(result) = in_flight.next(), if !in_flight.is_empty() => result?,
            _ = tokio::time::sleep_until(deadline) => bail!("floor: only {} of {runs} sequences finished in 120 s", done.load(Ordering::Relaxed)),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    producer.await??;
    drop(messages);
    js.delete_stream(STREAM).await.ok();
    js.delete_key_value(BUCKET).await.ok();
    Ok(Floor {
        runs,
        concurrency,
        seconds,
        seq_per_s: runs as f64 / seconds,
        cpu: Default::default(),
    })
}
