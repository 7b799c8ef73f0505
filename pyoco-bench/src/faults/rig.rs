//! The system a fault scenario breaks: real `pyoco-gateway` and `pyoco-worker` processes on a
//! nats-server (or cluster) of the testkit, a flow whose only task appends a token to an
//! execution log (so a run executed twice shows), and the counting of what became of every
//! run at the end.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_nats::jetstream::{self, kv};
use futures::{StreamExt, TryStreamExt};

use super::Outcome;
use crate::procs::{Proc, free_port, sibling_binary};

/// The flow the scenarios run: one shell task that sleeps (the window a fault lands in),
/// then appends its run's token to the execution log. Each run's params give the command.
const FLOW: &str = "flow:\n  graph: a\ntasks:\n  a: {callable: 'pyoco:shell'}\n";
pub const FLOW_NAME: &str = "faults";
/// Jobs a worker runs at once: the most runs a lost worker can have been running.
pub const WORKER_CONCURRENCY: usize = 4;
const TAG: &str = "default";

/// Settings every process of a scenario gets: failures are noticed in seconds, not the
/// defaults' half minute.
const ENV: &[(&str, &str)] = &[
    ("PYOCO_LOAD_DOTENV", "0"),
    ("PYOCO_CONSUMER_ACK_WAIT_SEC", "3"),
    ("PYOCO_ACK_PROGRESS_INTERVAL_SEC", "1"),
    ("PYOCO_RUN_HEARTBEAT_INTERVAL_SEC", "0.5"),
    ("PYOCO_WORKER_HEARTBEAT_INTERVAL_SEC", "1"),
    ("PYOCO_ORPHAN_AFTER_SEC", "2"),
    ("PYOCO_CANCEL_GRACE_PERIOD_SEC", "2"),
    // Small reservations, so the disk-full scenario's small store holds every stream.
    ("PYOCO_DLQ_MAX_BYTES", "8388608"),
    ("PYOCO_WHEEL_MAX_BYTES", "8388608"),
];

/// One accepted submit: the run id and the token its task appends.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub run_id: String,
    pub token: String,
}

pub struct Gateway {
    pub proc: Proc,
    pub url: String,
}

pub struct Rig {
    dir: PathBuf,
    pub nats_url: String,
    env: Vec<(String, String)>,
    gateway_bin: PathBuf,
    worker_bin: PathBuf,
    pub gateways: Vec<Gateway>,
    pub workers: Vec<Proc>,
    started_workers: usize,
    pub http: reqwest::Client,
    runs: kv::Store,
    exec_log: PathBuf,
    flows_dir: PathBuf,
    tokens: std::sync::atomic::AtomicUsize,
    /// Submits that were refused or got no answer.
    refused: std::sync::atomic::AtomicUsize,
}

impl Rig {
    /// Connects to NATS at `nats_url` (one URL or a comma-separated list) and creates pyoco's
    /// streams and buckets with `replicas`.
    pub async fn new(dir: &Path, nats_url: &str, replicas: usize) -> anyhow::Result<Rig> {
        std::fs::create_dir_all(dir)?;
        let flows_dir = dir.join("flows");
        std::fs::create_dir_all(&flows_dir)?;
        std::fs::write(flows_dir.join(format!("{FLOW_NAME}.yaml")), FLOW)?;
        let mut env: Vec<(String, String)> = ENV
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.push(("PYOCO_JS_REPLICAS".into(), replicas.to_string()));
        let config = pyoco::Config {
            nats_url: nats_url.to_string(),
            js_replicas: replicas,
            consumer_ack_wait: Duration::from_secs(3),
            dlq_max_bytes: 8 << 20,
            wheel_max_bytes: 8 << 20,
            ..Default::default()
        };
        let urls: Vec<&str> = nats_url.split(',').map(str::trim).collect();
        let client = async_nats::ConnectOptions::new()
            .name("pyoco-bench faults")
            .retry_on_initial_connect()
            .connect(urls.as_slice())
            .await
            .with_context(|| format!("cannot connect to {nats_url}"))?;
        let js = jetstream::new(client);
        // A cluster may still be electing its JetStream leader: try for 30 s.
        let started = Instant::now();
        let resources = loop {
            match pyoco::ensure_resources(&js, &config).await {
                Ok(r) => break r,
                Err(e) if started.elapsed() > Duration::from_secs(30) => {
                    return Err(e).context("ensure pyoco's streams and buckets");
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        };
        Ok(Rig {
            dir: dir.to_path_buf(),
            nats_url: nats_url.to_string(),
            env,
            gateway_bin: sibling_binary("pyoco-gateway")?,
            worker_bin: sibling_binary("pyoco-worker")?,
            gateways: Vec::new(),
            workers: Vec::new(),
            started_workers: 0,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            runs: resources.runs,
            exec_log: dir.join("executions.log"),
            flows_dir,
            tokens: Default::default(),
            refused: Default::default(),
        })
    }

    /// Starts a gateway whose NATS URL is `nats_url` (the rig's when `None`), with extra
    /// settings, and waits until it lists runs.
    pub async fn start_gateway(
        &mut self,
        nats_url: Option<&str>,
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<usize> {
        let port = free_port()?;
        let url = nats_url.unwrap_or(&self.nats_url).to_string();
        let args = ["up", "--host", "127.0.0.1", "--port", &port.to_string()].map(String::from);
        let mut env = self.env.clone();
        env.push(("PYOCO_NATS_URL".into(), url));
        env.extend(
            extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let log = self.dir.join(format!("gateway-{port}.log"));
        let proc = Proc::spawn_with_env("pyoco-gateway", &self.gateway_bin, &args, &env, log)?;
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            proc.check_alive()?;
            if let Ok(r) = self.http.get(format!("{url}/runs?limit=1")).send().await
                && r.status().is_success()
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!(
                    "the gateway did not list runs in 60 s:\n{}",
                    proc.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.gateways.push(Gateway { proc, url });
        Ok(self.gateways.len() - 1)
    }

    /// Starts a worker ([`WORKER_CONCURRENCY`] jobs at once) on `nats_url` (the rig's when `None`) and waits until
    /// it serves.
    pub async fn start_worker(&mut self, nats_url: Option<&str>) -> anyhow::Result<usize> {
        self.started_workers += 1;
        let id = format!("faults-w{}", self.started_workers);
        let args = [
            "--tags",
            TAG,
            "--worker-id",
            &id,
            "--flows-dir",
            &self.flows_dir.display().to_string(),
            "--concurrency",
            &WORKER_CONCURRENCY.to_string(),
        ]
        .map(String::from);
        let mut env = self.env.clone();
        env.push((
            "PYOCO_NATS_URL".into(),
            nats_url.unwrap_or(&self.nats_url).to_string(),
        ));
        let log = self.dir.join(format!("{id}.log"));
        let proc = Proc::spawn_with_env(&id, &self.worker_bin, &args, &env, log.clone())?;
        let started = Instant::now();
        loop {
            proc.check_alive()?;
            if std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("serving tags")
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("{id} did not serve in 60 s:\n{}", proc.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.workers.push(proc);
        Ok(self.workers.len() - 1)
    }

    /// `POST /runs` to gateway `g` of a run whose task sleeps `sleep_s`; `None` when it was
    /// not accepted (the fault may refuse it: only accepted runs are owed an end).
    pub async fn submit(&self, g: usize, sleep_s: f64) -> Option<Accepted> {
        let n = self
            .tokens
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = format!("t{n}");
        let command = format!(
            "sleep {sleep_s}; echo {token} >> '{}'",
            self.exec_log.display()
        );
        let body = serde_json::json!({
            "flow_name": FLOW_NAME,
            "tag": TAG,
            "params": {"command": command},
        });
        let accepted = async {
            let response = self
                .http
                .post(format!("{}/runs", self.gateways.get(g)?.url))
                .json(&body)
                .send()
                .await
                .ok()?;
            if !response.status().is_success() {
                return None;
            }
            let doc: serde_json::Value = response.json().await.ok()?;
            Some(Accepted {
                run_id: doc["run_id"].as_str()?.to_string(),
                token,
            })
        }
        .await;
        if accepted.is_none() {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        accepted
    }

    /// Submits from `clients` concurrent clients to gateway `g`, each waiting `interval`
    /// between submits, until `max` runs were accepted, `stop` is set or `deadline` passes;
    /// every accepted run.
    #[allow(clippy::too_many_arguments)]
    pub async fn submit_paced(
        &self,
        g: usize,
        clients: usize,
        max: usize,
        sleep_s: f64,
        interval: Duration,
        stop: &tokio::sync::watch::Receiver<bool>,
        deadline: Instant,
    ) -> Vec<Accepted> {
        use std::sync::atomic::Ordering::Relaxed;
        let accepted = std::sync::Mutex::new(Vec::new());
        let count = std::sync::atomic::AtomicUsize::new(0);
        futures::future::join_all((0..clients).map(|_| async {
            let mut failures = 0u32;
            while !*stop.borrow() && count.load(Relaxed) < max && Instant::now() < deadline {
                match self.submit(g, sleep_s).await {
                    Some(a) => {
                        count.fetch_add(1, Relaxed);
                        if let Ok(mut v) = accepted.lock() {
                            v.push(a);
                        }
                        failures = 0;
                        tokio::time::sleep(interval).await;
                    }
                    None => {
                        // Refused or unreachable during the fault: try again shortly.
                        failures += 1;
                        let wait = 50 * u64::from(failures.min(10));
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                    }
                }
            }
        }))
        .await;
        accepted.into_inner().unwrap_or_default()
    }

    /// Cancels run `run_id` through gateway `g` (the answer does not matter: a cancel that
    /// loses the race to the run's end is refused).
    pub async fn cancel(&self, g: usize, run_id: &str) {
        if let Some(gw) = self.gateways.get(g) {
            self.http
                .post(format!("{}/runs/{run_id}/cancel", gw.url))
                .send()
                .await
                .ok();
        }
    }

    /// Every run id stored in the bucket.
    async fn stored_ids(&self) -> anyhow::Result<HashSet<String>> {
        let keys = self.runs.keys().await.context("list the runs bucket")?;
        Ok(keys.try_collect().await?)
    }

    async fn status(&self, run_id: &str) -> anyhow::Result<Option<String>> {
        #[derive(serde::Deserialize)]
        struct StatusOnly {
            #[serde(default)]
            status: String,
        }
        Ok(match self.runs.get(run_id).await? {
            Some(bytes) => Some(serde_json::from_slice::<StatusOnly>(&bytes)?.status),
            None => None,
        })
    }

    /// Waits (at most `within`) until every accepted run and every other stored run has
    /// ended, then counts: terminal statuses, accepted runs not stored (lost), runs not
    /// ended (stuck), runs whose task ran more than once (duplicated). `since` is when the
    /// fault was repaired: the time to recover is from then until everything had ended.
    pub async fn settle(
        &self,
        scenario: &'static str,
        accepted: &[Accepted],
        since: Instant,
        within: Duration,
    ) -> anyhow::Result<Outcome> {
        let deadline = Instant::now() + within;
        let accepted_ids: HashSet<&str> = accepted.iter().map(|a| a.run_id.as_str()).collect();
        let (statuses, ended_at) = loop {
            let mut ids: HashSet<String> = self.stored_ids().await.unwrap_or_default();
            ids.extend(accepted_ids.iter().map(|s| s.to_string()));
            let mut statuses: HashMap<String, Option<String>> = HashMap::new();
            let mut reads = futures::stream::iter(ids)
                .map(|id| async move {
                    let status = self.status(&id).await;
                    (id, status)
                })
                .buffer_unordered(32);
            let mut unreadable = false;
            while let Some((id, status)) = reads.next().await {
                match status {
                    Ok(s) => {
                        statuses.insert(id, s);
                    }
                    Err(_) => unreadable = true,
                }
            }
            let open = statuses
                .values()
                .filter(|s| !s.as_deref().is_some_and(is_terminal))
                .count();
            if open == 0 && !unreadable {
                break (statuses, Some(since.elapsed()));
            }
            if Instant::now() > deadline {
                break (statuses, None);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let executions = self.executions();
        let by_token: HashMap<&str, &str> = accepted
            .iter()
            .map(|a| (a.token.as_str(), a.run_id.as_str()))
            .collect();
        let count = |want: &str| {
            statuses
                .values()
                .filter(|s| s.as_deref() == Some(want))
                .count()
        };
        Ok(Outcome {
            scenario,
            accepted: accepted.len(),
            refused: self.refused.load(std::sync::atomic::Ordering::Relaxed),
            stored: statuses.values().filter(|s| s.is_some()).count(),
            completed: count("COMPLETED"),
            failed: count("FAILED"),
            cancelled: count("CANCELLED"),
            lost: accepted
                .iter()
                .filter(|a| statuses.get(&a.run_id).is_none_or(Option::is_none))
                .count(),
            duplicated: executions
                .iter()
                .filter(|(token, n)| **n > 1 && by_token.contains_key(token.as_str()))
                .count(),
            stuck: statuses
                .values()
                .filter(|s| s.as_deref().is_some_and(|s| !is_terminal(s)))
                .count(),
            recover_s: ended_at.map(|d| d.as_secs_f64()),
            allowed_duplicates: 0,
            note: String::new(),
        })
    }

    /// How often each token was appended to the execution log.
    fn executions(&self) -> HashMap<String, usize> {
        let text = std::fs::read_to_string(&self.exec_log).unwrap_or_default();
        let mut counts = HashMap::new();
        for line in text.lines() {
            *counts.entry(line.trim().to_string()).or_insert(0) += 1;
        }
        counts
    }

    /// Stops every process (SIGCONT first, in case a scenario left one paused).
    pub async fn shutdown(mut self) {
        let mut procs: Vec<Proc> = self.gateways.drain(..).map(|g| g.proc).collect();
        procs.append(&mut self.workers);
        tokio::task::spawn_blocking(move || {
            for p in &procs {
                p.signal("CONT");
            }
            drop(procs);
        })
        .await
        .ok();
    }
}

fn is_terminal(status: &str) -> bool {
    matches!(status, "COMPLETED" | "FAILED" | "CANCELLED")
}
