//! The system under test: NATS, one gateway process, N worker processes, and the bench's own
//! connections to them (HTTP, and async-nats for the floor, KV writes and completion tracking).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_nats::jetstream::{self, kv};

use crate::docs::{FLOW_NAME, FLOW_YAML};
use crate::procs::{Memory, Nats, Proc, cpu_seconds, free_port, sibling_binary};
use crate::tracker::Tracker;

/// The tag the workers serve; end-to-end runs go here.
pub const WORK_TAG: &str = "default";
/// A tag no worker serves: runs submitted here stay PENDING (submit and watch benchmarks).
pub const IDLE_TAG: &str = "pyoco_bench_idle";

#[derive(Debug)]
pub struct Cluster {
    pub nats: Nats,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    /// The runs bucket, bound directly (list fill, watch writes).
    pub runs: kv::Store,
    pub runs_bucket: String,
    pub http: reqwest::Client,
    pub tracker: Tracker,
    gateway: Option<Proc>,
    gateway_url: String,
    workers: Vec<Proc>,
    /// Every worker ever started, for unique worker ids.
    started_workers: usize,
    worker_args: Vec<String>,
    /// Extra `PYOCO_*` settings of the gateways started from now on (the soak's retention).
    pub gateway_env: Vec<(String, String)>,
    gateway_bin: PathBuf,
    worker_bin: PathBuf,
    dir: PathBuf,
    flows_dir: PathBuf,
}

impl Cluster {
    /// Connects to (or starts) NATS, ensures pyoco's resources and starts tracking run
    /// snapshots. Gateway and workers are started separately.
    pub async fn start(
        dir: &Path,
        nats_url: Option<&str>,
        worker_args: Vec<String>,
    ) -> anyhow::Result<Cluster> {
        let gateway_bin = sibling_binary("pyoco-gateway")?;
        let worker_bin = sibling_binary("pyoco-worker")?;
        let nats = match nats_url {
            Some(url) => Nats::external(url),
            None => Nats::start(dir)?,
        };
        let flows_dir = dir.join("flows");
        std::fs::create_dir_all(&flows_dir)?;
        std::fs::write(flows_dir.join(format!("{FLOW_NAME}.yaml")), FLOW_YAML)?;
        let mut config = pyoco::Config::from_env().context("PYOCO_* configuration")?;
        config.nats_url = nats.url.clone();
        let client = async_nats::ConnectOptions::new()
            .name("pyoco-bench")
            .connect(nats.url.as_str())
            .await
            .with_context(|| format!("cannot connect to {}", nats.url))?;
        let js = jetstream::new(client.clone());
        let resources = pyoco::ensure_resources(&js, &config)
            .await
            .context("ensure pyoco's streams and buckets")?;
        let runs_bucket = pyoco::store::Layout::new(&config).runs_bucket;
        let tracker = Tracker::start(&client, &runs_bucket).await?;
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(1024)
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Cluster {
            nats,
            client,
            js,
            runs: resources.runs,
            runs_bucket,
            http,
            tracker,
            gateway: None,
            gateway_url: String::new(),
            workers: Vec::new(),
            started_workers: 0,
            worker_args,
            gateway_env: Vec::new(),
            gateway_bin,
            worker_bin,
            dir: dir.to_path_buf(),
            flows_dir,
        })
    }

    pub fn gateway_url(&self) -> &str {
        &self.gateway_url
    }

    /// Starts a gateway process on a free port and waits until `GET /runs` answers 200 (its
    /// run index has loaded). Returns how long that took.
    pub async fn start_gateway(&mut self, ready_within: Duration) -> anyhow::Result<Duration> {
        self.stop_gateway().await;
        let port = free_port()?;
        let args = [
            "up",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--nats-url",
            &self.nats.url,
        ]
        .map(String::from);
        let started = Instant::now();
        let log = self.dir.join(format!("gateway-{port}.log"));
        let gateway = Proc::spawn_with_env(
            "pyoco-gateway",
            &self.gateway_bin,
            &args,
            &self.gateway_env,
            log,
        )?;
        self.gateway_url = format!("http://127.0.0.1:{port}");
        let url = format!("{}/runs?limit=1", self.gateway_url);
        loop {
            gateway.check_alive()?;
            if let Ok(r) = self.http.get(&url).send().await
                && r.status().is_success()
            {
                break;
            }
            if started.elapsed() > ready_within {
                bail!(
                    "the gateway did not list runs within {ready_within:?}:\n{}",
                    gateway.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.gateway = Some(gateway);
        Ok(started.elapsed())
    }

    pub async fn stop_gateway(&mut self) {
        if let Some(p) = self.gateway.take() {
            stop(p).await;
        }
    }

    /// Starts or stops worker processes until `n` run, each connected and serving.
    pub async fn set_workers(&mut self, n: usize) -> anyhow::Result<()> {
        while self.workers.len() > n {
            if let Some(p) = self.workers.pop() {
                stop(p).await;
            }
        }
        while self.workers.len() < n {
            self.started_workers += 1;
            let id = format!("bench-w{}", self.started_workers);
            let mut args = vec![
                "--nats-url".to_string(),
                self.nats.url.clone(),
                "--tags".into(),
                WORK_TAG.into(),
                "--worker-id".into(),
                id.clone(),
                "--flows-dir".into(),
                self.flows_dir.display().to_string(),
            ];
            args.extend(self.worker_args.iter().cloned());
            let log = self.dir.join(format!("{id}.log"));
            let worker = Proc::spawn(&id, &self.worker_bin, &args, log.clone())?;
            // The binary says so once it is connected and its consumer exists.
            let started = Instant::now();
            loop {
                worker.check_alive()?;
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if text.contains("serving tags") {
                    break;
                }
                if started.elapsed() > Duration::from_secs(30) {
                    bail!("{id} did not connect within 30 s:\n{}", worker.log_tail());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            self.workers.push(worker);
        }
        Ok(())
    }

    /// Fails when the gateway or a worker has died.
    pub fn check_alive(&self) -> anyhow::Result<()> {
        if let Some(g) = self.gateway.as_ref() {
            g.check_alive()?;
        }
        for w in &self.workers {
            w.check_alive()?;
        }
        Ok(())
    }

    /// CPU seconds used so far by each part (`None` for a part not running here).
    pub fn cpu(&self) -> CpuTimes {
        CpuTimes {
            nats: self.nats.pid.and_then(cpu_seconds),
            gateway: self.gateway.as_ref().and_then(|g| cpu_seconds(g.pid())),
            workers: self
                .workers
                .iter()
                .map(|w| cpu_seconds(w.pid()))
                .sum::<Option<f64>>(),
            bench: cpu_seconds(std::process::id()),
        }
    }

    pub fn gateway_memory(&self) -> anyhow::Result<Memory> {
        self.gateway
            .as_ref()
            .context("no gateway running")?
            .memory()
    }

    /// The first worker's memory.
    pub fn worker_memory(&self) -> anyhow::Result<Memory> {
        self.workers.first().context("no worker running")?.memory()
    }

    /// `POST /runs` of the bench flow on `tag`; the run id.
    pub async fn submit(&self, tag: &str) -> anyhow::Result<String> {
        let body = serde_json::json!({"flow_name": FLOW_NAME, "tag": tag});
        let response = self
            .http
            .post(format!("{}/runs", self.gateway_url))
            .json(&body)
            .send()
            .await
            .context("POST /runs")?;
        let status = response.status();
        let bytes = response.bytes().await.context("POST /runs body")?;
        if !status.is_success() {
            bail!(
                "POST /runs answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        #[derive(serde::Deserialize)]
        struct Accepted {
            run_id: String,
        }
        Ok(serde_json::from_slice::<Accepted>(&bytes)?.run_id)
    }

    /// Messages stored in the runs bucket's stream (= runs, with history 1).
    pub async fn stored_runs(&self) -> anyhow::Result<u64> {
        let mut stream = self
            .js
            .get_stream(format!("KV_{}", self.runs_bucket))
            .await?;
        Ok(stream.info().await?.state.messages)
    }

    pub async fn shutdown(mut self) {
        self.stop_gateway().await;
        while let Some(p) = self.workers.pop() {
            stop(p).await;
        }
    }
}

/// Stops a process off the async threads (stopping waits for it to exit).
async fn stop(p: Proc) {
    tokio::task::spawn_blocking(move || drop(p)).await.ok();
}

/// CPU seconds of each part of the system.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTimes {
    pub nats: Option<f64>,
    pub gateway: Option<f64>,
    pub workers: Option<f64>,
    pub bench: Option<f64>,
}

/// CPU milliseconds each part spent per run (or per floor sequence) during a measurement:
/// where the machine's time went.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct CpuPerRun {
    pub nats_ms: Option<f64>,
    pub gateway_ms: Option<f64>,
    pub workers_ms: Option<f64>,
    pub bench_ms: Option<f64>,
}

impl CpuPerRun {
    /// The field-wise median of several repetitions.
    pub fn median_of(reps: &[CpuPerRun]) -> CpuPerRun {
        let pick = |f: fn(&CpuPerRun) -> Option<f64>| {
            let v: Vec<f64> = reps.iter().filter_map(f).collect();
            (!v.is_empty()).then(|| crate::stats::median(&v))
        };
        CpuPerRun {
            nats_ms: pick(|c| c.nats_ms),
            gateway_ms: pick(|c| c.gateway_ms),
            workers_ms: pick(|c| c.workers_ms),
            bench_ms: pick(|c| c.bench_ms),
        }
    }
}

impl CpuTimes {
    /// Per-run CPU between `self` (before) and `after`.
    pub fn per_run(&self, after: &CpuTimes, runs: usize) -> CpuPerRun {
        let per = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if runs > 0 => Some((b - a) * 1000.0 / runs as f64),
            _ => None,
        };
        CpuPerRun {
            nats_ms: per(self.nats, after.nats),
            gateway_ms: per(self.gateway, after.gateway),
            workers_ms: per(self.workers, after.workers),
            bench_ms: per(self.bench, after.bench),
        }
    }
}
