//! Completion tracking: a plain NATS subscription on the runs bucket's subjects
//! (`$KV.<bucket>.>`) sees every snapshot write as it is published — no consumer, no polling
//! of the gateway — and records when each run was first written COMPLETED.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use futures::StreamExt;

#[derive(Debug, Default)]
struct Seen {
    completed: HashMap<String, Instant>,
    /// Runs that ended otherwise (FAILED, CANCELLED) with their error.
    other: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct Tracker {
    seen: Arc<Mutex<Seen>>,
    completed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(serde::Deserialize)]
struct StatusOnly {
    #[serde(default)]
    status: String,
    #[serde(default)]
    error: Option<String>,
}

impl Tracker {
    pub async fn start(client: &async_nats::Client, bucket: &str) -> anyhow::Result<Tracker> {
        let prefix = format!("$KV.{bucket}.");
        let mut sub = client.subscribe(format!("{prefix}>")).await?;
        // The subscription is registered on the server before anything is submitted.
        client.flush().await?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let completed = Arc::new(AtomicUsize::new(0));
        let (s, c) = (seen.clone(), completed.clone());
        let task = tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let at = Instant::now();
                let Ok(doc) = serde_json::from_slice::<StatusOnly>(&msg.payload) else {
                    continue;
                };
                let key = msg.subject.as_str().strip_prefix(&prefix).unwrap_or("");
                let Ok(mut seen) = s.lock() else { return };
                match doc.status.as_str() {
                    "COMPLETED" if !seen.completed.contains_key(key) => {
                        seen.completed.insert(key.to_string(), at);
                        c.fetch_add(1, Ordering::Release);
                    }
                    "FAILED" | "CANCELLED" => {
                        let why = format!("{}: {}", doc.status, doc.error.unwrap_or_default());
                        seen.other.push((key.to_string(), why));
                    }
                    _ => {}
                }
            }
        });
        Ok(Tracker {
            seen,
            completed,
            task,
        })
    }

    /// How many runs have been seen COMPLETED so far.
    pub fn completed(&self) -> usize {
        self.completed.load(Ordering::Acquire)
    }

    /// Waits until `target` runs in total have completed; fails on a run that ended
    /// otherwise, or after `timeout`. `alive` is checked now and then (dead processes).
    pub async fn wait_for(
        &self,
        target: usize,
        timeout: Duration,
        mut alive: impl FnMut() -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut polls = 0u32;
        while self.completed() < target {
            if let Ok(seen) = self.seen.lock()
                && let Some((run, why)) = seen.other.first()
            {
                bail!("run {run} did not complete: {why}");
            }
            if Instant::now() > deadline {
                bail!(
                    "only {} of {target} runs completed within {timeout:?}",
                    self.completed()
                );
            }
            polls += 1;
            if polls.is_multiple_of(100) {
                alive()?;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }

    /// When each of `runs` was seen COMPLETED, if it was.
    pub fn seen_completed(&self, runs: &[String]) -> Vec<Option<Instant>> {
        match self.seen.lock() {
            Ok(seen) => runs
                .iter()
                .map(|r| seen.completed.get(r).copied())
                .collect(),
            Err(_) => vec![None; runs.len()],
        }
    }

    /// When each of `runs` was seen COMPLETED.
    pub fn completed_at(&self, runs: &[String]) -> anyhow::Result<Vec<Instant>> {
        let Ok(seen) = self.seen.lock() else {
            bail!("tracker poisoned");
        };
        runs.iter()
            .map(|r| match seen.completed.get(r) {
                Some(at) => Ok(*at),
                None => bail!("run {r} was never seen COMPLETED"),
            })
            .collect()
    }
}
