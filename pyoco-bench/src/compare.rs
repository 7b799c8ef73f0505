//! `pyoco-bench --compare`: the same workload against pyoco, the original pyoco-server and
//! Celery, one after the other on this machine, and one table.
//!
//! The workload is the original quickstart's shape: a flow of two Python functions
//! (`add_one >> to_text`, `compare/bench_tasks.py`), `runs` runs with `concurrency` in
//! flight, each timed from its submit until it is seen finished. pyoco and pyoco-server get
//! the same driver (this process: `POST /runs/yaml`, completion seen on the runs bucket's
//! subjects — both keep the same bucket); Celery gets a chain of the same two functions on a
//! Redis broker and result backend, driven by `compare/bench_celery.py` (Celery's own
//! client, so it is Python). Every system runs with its defaults and one worker process:
//! pyoco's `pyoco-worker` (its concurrency sized from the cores), the original
//! `pyoco-worker` (one run at a time, it has no other mode), Celery's prefork worker (one
//! child per core). CPU is the user + system time of each process tree (children included)
//! over the timed part, per run; memory is each tree's resident set at the end.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::procs::{Nats, Proc, free_port, sibling_binary};
use crate::proctree::{Tree, finish_trees};
use crate::stats::Latency;
use crate::tracker::Tracker;

/// The tasks module, written next to the processes that import it.
const TASKS_PY: &str = include_str!("../compare/bench_tasks.py");
const CELERY_PY: &str = include_str!("../compare/bench_celery.py");

/// The flow both pyoco and pyoco-server run.
const FLOW_YAML: &str = "flow:\n  graph: add_one >> to_text\n  defaults: {x: 41}\ntasks:\n  add_one: {callable: \"bench_tasks:add_one\"}\n  to_text: {callable: \"bench_tasks:to_text\"}\n";
/// The same with pyoco's native echo task: what the Python runner costs.
const ECHO_YAML: &str = "flow:\n  graph: add_one >> to_text\ntasks:\n  add_one: {callable: \"pyoco:echo\", inputs: {value: 42}}\n  to_text: {callable: \"pyoco:echo\", inputs: {value: \"v=42\"}}\n";

/// Where the other systems come from (`scripts/install-compare.sh` prints them).
#[derive(Debug, Clone)]
pub struct Tools {
    pub redis_server: PathBuf,
    pub celery_venv: PathBuf,
    pub interop_venv: PathBuf,
}

/// One system's figures.
#[derive(Debug, Clone, Serialize)]
pub struct SystemResult {
    pub system: String,
    pub runs: usize,
    pub seconds: f64,
    pub runs_per_s: f64,
    pub latency: Latency,
    /// CPU milliseconds per run of each process tree (and their total).
    pub cpu_ms_per_run: BTreeMap<String, f64>,
    /// Resident memory (MiB) of each process tree after the runs.
    pub rss_mib: BTreeMap<String, f64>,
    /// Runs seen completed (less than `runs` when the system stalled).
    pub completed: usize,
    /// What went wrong, if anything (e.g. a worker that stopped making progress).
    pub note: Option<String>,
}

macro_rules! step {
    ($($t:tt)*) => { eprintln!("pyoco-bench: {}", format!($($t)*)) };
}

/// What `--compare` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum System {
    /// pyoco with the Python quickstart flow
    Pyoco,
    /// pyoco with `pyoco:echo` tasks
    Echo,
    /// the original pyoco-server 0.5.1
    Original,
    /// Celery with Redis
    Celery,
}

/// Runs the workload against every system of `systems` in turn.
pub async fn run(
    dir: &Path,
    tools: &Tools,
    runs: usize,
    concurrency: usize,
    systems: &[System],
) -> anyhow::Result<Vec<SystemResult>> {
    let tasks_dir = dir.join("tasks");
    std::fs::create_dir_all(&tasks_dir)?;
    std::fs::write(tasks_dir.join("bench_tasks.py"), TASKS_PY)?;
    std::fs::write(tasks_dir.join("bench_celery.py"), CELERY_PY)?;
    let mut results = Vec::new();
    for (system, yaml, which) in [
        ("pyoco", FLOW_YAML, System::Pyoco),
        ("pyoco (pyoco:echo tasks)", ECHO_YAML, System::Echo),
    ] {
        if !systems.contains(&which) {
            continue;
        }
        step!("{system}: {runs} runs, {concurrency} in flight");
        let sub = dir.join(if yaml == FLOW_YAML { "pyoco" } else { "echo" });
        std::fs::create_dir_all(&sub)?;
        let r = pyoco_family(
            &sub,
            &tasks_dir,
            Family::Pyoco,
            yaml,
            runs,
            concurrency,
            tools,
        )
        .await
        .with_context(|| system.to_string())?;
        results.push(r.named(system));
    }
    if systems.contains(&System::Original) {
        results.push(original(dir, &tasks_dir, runs, concurrency, tools).await);
    }
    if systems.contains(&System::Celery) {
        step!("Celery + Redis: {runs} runs, {concurrency} in flight");
        let sub = dir.join("celery");
        std::fs::create_dir_all(&sub)?;
        results.push(
            celery(&sub, &tasks_dir, runs, concurrency, tools)
                .await
                .context("celery")?,
        );
    }
    Ok(results)
}

/// The original pyoco-server 0.5.1 under the same workload.
async fn original(
    dir: &Path,
    tasks_dir: &Path,
    runs: usize,
    concurrency: usize,
    tools: &Tools,
) -> SystemResult {
    step!("pyoco-server 0.5.1: {runs} runs, {concurrency} in flight");
    let sub = dir.join("pyoco-server");
    if let Err(e) = std::fs::create_dir_all(&sub) {
        return SystemResult::failed(runs, format!("{e:#}")).named("pyoco-server 0.5.1");
    }
    // The original may not get through the workload (its worker can stop taking jobs):
    // that is a result to report, not a reason to skip Celery.
    pyoco_family(
        &sub,
        tasks_dir,
        Family::Original,
        FLOW_YAML,
        runs,
        concurrency,
        tools,
    )
    .await
    .unwrap_or_else(|e| SystemResult::failed(runs, format!("{e:#}")))
    .named("pyoco-server 0.5.1")
}

impl SystemResult {
    /// A system that did not finish: no figures, the reason.
    fn failed(runs: usize, why: String) -> SystemResult {
        SystemResult {
            system: String::new(),
            runs,
            seconds: 0.0,
            runs_per_s: 0.0,
            latency: Latency::default(),
            cpu_ms_per_run: BTreeMap::new(),
            rss_mib: BTreeMap::new(),
            completed: 0,
            note: Some(why),
        }
    }

    fn named(mut self, name: &str) -> SystemResult {
        self.system = name.to_string();
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Family {
    Pyoco,
    Original,
}

/// pyoco or the original: nats-server, a gateway and one worker, driven over HTTP.
async fn pyoco_family(
    dir: &Path,
    tasks_dir: &Path,
    family: Family,
    yaml: &str,
    runs: usize,
    concurrency: usize,
    tools: &Tools,
) -> anyhow::Result<SystemResult> {
    let nats = Nats::start(dir)?;
    let port = free_port()?;
    let url = format!("http://127.0.0.1:{port}");
    let pythonpath = tasks_dir.display().to_string();
    let common_env = vec![
        ("PYOCO_NATS_URL".to_string(), nats.url.clone()),
        ("PYOCO_LOAD_DOTENV".to_string(), "0".to_string()),
        ("PYTHONPATH".to_string(), pythonpath),
        ("PYTHONDONTWRITEBYTECODE".to_string(), "1".to_string()),
    ];
    let port_s = port.to_string();
    let gateway_args = [
        "up",
        "--host",
        "127.0.0.1",
        "--port",
        &port_s,
        "--nats-url",
        &nats.url,
    ];
    let worker_args = [
        "--nats-url",
        &nats.url,
        "--tags",
        "default",
        "--worker-id",
        "compare-w1",
    ];
    let (gateway_bin, worker_bin) = match family {
        Family::Pyoco => (
            sibling_binary("pyoco-gateway")?,
            sibling_binary("pyoco-worker")?,
        ),
        Family::Original => (
            tools.interop_venv.join("bin/pyoco-server"),
            tools.interop_venv.join("bin/pyoco-worker"),
        ),
    };
    let gateway = Proc::spawn_with(
        "gateway",
        &gateway_bin,
        &strings(&gateway_args),
        &common_env,
        dir.join("gateway.log"),
    )?;
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(120))
        .build()?;
    wait_http(&http, &format!("{url}/health"), &gateway).await?;
    let worker = Proc::spawn_with(
        "worker",
        &worker_bin,
        &strings(&worker_args),
        &common_env,
        dir.join("worker.log"),
    )?;
    let client = async_nats::connect(nats.url.as_str()).await?;
    let tracker = Tracker::start(&client, "pyoco_runs").await?;
    let procs = [("gateway", &gateway), ("worker", &worker)];
    let alive = || -> anyhow::Result<()> {
        for (_, p) in &procs {
            p.check_alive()?;
        }
        Ok(())
    };
    // Warm-up: the worker is serving (and, for pyoco, the Python runners are up).
    // One at a time: the original's worker copes with that.
    let warm = concurrency.min(8);
    for done in 1..=warm {
        submit_many(&http, &url, yaml, 1, 1).await?;
        tracker
            .wait_for(done, Duration::from_secs(60), alive)
            .await
            .context("warm-up runs")?;
    }

    let mut trees = vec![
        Tree::new("nats-server", nats.pid.context("no nats-server pid")?),
        Tree::new("gateway", gateway.pid()),
        Tree::new("worker", worker.pid()),
        Tree::new("driver (pyoco-bench)", std::process::id()),
    ];
    let started = Instant::now();
    let timed = submit_many(&http, &url, yaml, concurrency, runs).await?;
    // Progress, not a deadline: a system that stops completing runs for STALL is reported
    // as stalled with what it completed (the original's worker can hang under a burst).
    const STALL: Duration = Duration::from_secs(30);
    let (mut seen, mut progressed) = (tracker.completed(), Instant::now());
    let mut note = None;
    while tracker.completed() < warm + runs {
        alive()?;
        if tracker.completed() != seen {
            (seen, progressed) = (tracker.completed(), Instant::now());
        } else if progressed.elapsed() > STALL {
            note = Some(format!(
                "stalled: no run completed for {} s after {} of {runs}",
                STALL.as_secs(),
                seen - warm
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ids: Vec<String> = timed.iter().map(|t| t.0.clone()).collect();
    let done = tracker.seen_completed(&ids);
    let completed = done.iter().flatten().count();
    let last = done.iter().flatten().max().copied().unwrap_or(started);
    // The work a run causes after its completion (acks, trailing writes) is part of its cost.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let seconds = last.duration_since(started).as_secs_f64();
    let mut latencies: Vec<Duration> = timed
        .iter()
        .zip(&done)
        .filter_map(|((_, sent), d)| d.map(|d| d.saturating_duration_since(*sent)))
        .collect();
    let (cpu, rss) = finish_trees(&mut trees, completed);
    drop(tracker);
    for p in [worker, gateway] {
        tokio::task::spawn_blocking(move || drop(p)).await.ok();
    }
    Ok(SystemResult {
        system: String::new(),
        runs,
        seconds,
        runs_per_s: if completed > 0 {
            completed as f64 / seconds
        } else {
            0.0
        },
        latency: Latency::of(&mut latencies),
        cpu_ms_per_run: cpu,
        rss_mib: rss,
        completed,
        note,
    })
}

/// Celery: redis-server, one `celery worker`, and the Python driver.
async fn celery(
    dir: &Path,
    tasks_dir: &Path,
    runs: usize,
    concurrency: usize,
    tools: &Tools,
) -> anyhow::Result<SystemResult> {
    let port = free_port()?;
    let redis = Proc::spawn_with(
        "redis-server",
        &tools.redis_server,
        &strings(&[
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir.display().to_string(),
        ]),
        &[],
        dir.join("redis.log"),
    )?;
    let env = vec![
        (
            "PYOCO_BENCH_REDIS_URL".to_string(),
            format!("redis://127.0.0.1:{port}/0"),
        ),
        ("PYTHONPATH".to_string(), tasks_dir.display().to_string()),
        ("PYTHONDONTWRITEBYTECODE".to_string(), "1".to_string()),
    ];
    let worker = Proc::spawn_with(
        "celery worker",
        &tools.celery_venv.join("bin/celery"),
        &strings(&["-A", "bench_celery", "worker", "--loglevel=WARNING"]),
        &env,
        dir.join("celery-worker.log"),
    )?;
    let mut trees = vec![
        Tree::new("redis-server", redis.pid()),
        Tree::new("worker", worker.pid()),
    ];
    let driver_out = dir.join("driver.json");
    let driver = tokio::process::Command::new(tools.celery_venv.join("bin/python"))
        .arg(tasks_dir.join("bench_celery.py"))
        .args(["drive", &runs.to_string(), &concurrency.to_string()])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(std::fs::File::create(&driver_out)?)
        .stderr(std::fs::File::create(dir.join("driver.log"))?)
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the Celery driver")?;
    // The driver warms up first (one chain), then times; its CPU is reported by itself.
    let status = driver.wait_with_output().await?.status;
    redis.check_alive()?;
    worker.check_alive()?;
    if !status.success() {
        bail!(
            "the Celery driver failed ({status}):\n{}",
            std::fs::read_to_string(dir.join("driver.log")).unwrap_or_default()
        );
    }
    #[derive(serde::Deserialize)]
    struct Driven {
        runs: usize,
        failed: usize,
        seconds: f64,
        latencies_ms: Vec<f64>,
        driver_cpu_s: f64,
    }
    let text = std::fs::read_to_string(&driver_out)?;
    let driven: Driven = serde_json::from_str(text.lines().last().unwrap_or_default())
        .with_context(|| format!("the Celery driver's answer: {text}"))?;
    if driven.failed > 0 || driven.runs != runs {
        bail!(
            "Celery finished {} of {runs} runs, {} with a wrong result",
            driven.runs,
            driven.failed
        );
    }
    // The trees were read before the driver started its warm-up, so the worker's and Redis'
    // CPU include one warm-up chain: negligible against thousands of runs.
    let (mut cpu, rss) = finish_trees(&mut trees, runs);
    let driver_ms = driven.driver_cpu_s * 1000.0 / runs as f64;
    cpu.insert("driver (Celery client)".into(), driver_ms);
    if let Some(total) = cpu.get_mut("total") {
        *total += driver_ms;
    }
    let mut latencies: Vec<Duration> = driven
        .latencies_ms
        .iter()
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .collect();
    for p in [worker, redis] {
        tokio::task::spawn_blocking(move || drop(p)).await.ok();
    }
    Ok(SystemResult {
        system: "Celery 5.6 + Redis 7".into(),
        runs,
        seconds: driven.seconds,
        runs_per_s: runs as f64 / driven.seconds,
        latency: Latency::of(&mut latencies),
        cpu_ms_per_run: cpu,
        rss_mib: rss,
        completed: runs,
        note: None,
    })
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

async fn wait_http(http: &reqwest::Client, url: &str, proc: &Proc) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        proc.check_alive()?;
        if let Ok(r) = http.get(url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("{url} did not answer within 60 s:\n{}", proc.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `POST /runs/yaml` of `yaml`, `requests` times with `concurrency` in flight: each run id
/// with the instant its submit was sent.
async fn submit_many(
    http: &reqwest::Client,
    url: &str,
    yaml: &str,
    concurrency: usize,
    requests: usize,
) -> anyhow::Result<Vec<(String, Instant)>> {
    const BOUNDARY: &str = "pyoco-bench-compare-boundary";
    let body: Arc<Vec<u8>> = Arc::new(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"workflow\"; filename=\"flow.yaml\"\r\nContent-Type: application/x-yaml\r\n\r\n{yaml}\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"flow_name\"\r\n\r\ncompare\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"tag\"\r\n\r\ndefault\r\n--{BOUNDARY}--\r\n"
        )
        .into_bytes(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let clients = (0..concurrency.max(1)).map(|_| {
        let (next, body, http) = (next.clone(), body.clone(), http.clone());
        let target = format!("{url}/runs/yaml");
        async move {
            let mut out = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                let sent = Instant::now();
                let response = http
                    .post(&target)
                    .header(
                        "content-type",
                        format!("multipart/form-data; boundary={BOUNDARY}"),
                    )
                    .body(body.as_ref().clone())
                    .send()
                    .await
                    .context("POST /runs/yaml")?;
                let status = response.status();
                let bytes = response.bytes().await?;
                if !status.is_success() {
                    bail!(
                        "POST /runs/yaml answered {status}: {}",
                        String::from_utf8_lossy(&bytes)
                    );
                }
                #[derive(serde::Deserialize)]
                struct Accepted {
                    run_id: String,
                }
                out.push((serde_json::from_slice::<Accepted>(&bytes)?.run_id, sent));
            }
            Ok::<_, anyhow::Error>(out)
        }
    });
    let all = futures::future::try_join_all(clients).await?;
    Ok(all.into_iter().flatten().collect())
}

/// The comparison table (stdout).
pub fn print_table(results: &[SystemResult], concurrency: usize) {
    println!(
        "\n## Side by side: {} runs of a two-task flow, {concurrency} in flight, submit → completed\n",
        results.first().map_or(0, |r| r.runs)
    );
    println!(
        "| system | runs/s | p50 | p99 | CPU ms/run: total | per process | RSS MiB per process |"
    );
    println!("|---|---:|---:|---:|---:|---|---|");
    let mut notes = Vec::new();
    for r in results {
        if let Some(note) = &r.note {
            notes.push(format!("{}: {note}", r.system));
        }
        let per: Vec<String> = r
            .cpu_ms_per_run
            .iter()
            .filter(|(k, _)| k.as_str() != "total")
            .map(|(k, v)| format!("{k} {v:.3}"))
            .collect();
        let rss: Vec<String> = r
            .rss_mib
            .iter()
            .map(|(k, v)| format!("{k} {v:.1}"))
            .collect();
        if r.completed == 0 {
            println!("| {} | – | – | – | – | – | – |", r.system);
            continue;
        }
        println!(
            "| {} | {:.0} | {:.1} ms | {:.1} ms | {:.3} | {} | {} |",
            r.system,
            r.runs_per_s,
            r.latency.p50_ms,
            r.latency.p99_ms,
            r.cpu_ms_per_run.get("total").copied().unwrap_or_default(),
            per.join(", "),
            rss.join(", ")
        );
    }
    for note in notes {
        println!("\n{note} (the row covers the runs completed before)");
    }
}
