//! `pyoco-worker`: pulls jobs for its tags from NATS JetStream and runs them.
//!
//! Flags override `PYOCO_*` variables. Named flows (`POST /runs`) are resolved from
//! `<flows-dir>/<flow_name>.yaml`; YAML runs carry their flow. SIGINT/SIGTERM stop it
//! gracefully (the current run finishes or is handed back after `--shutdown-grace-sec`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use pyoco::worker::Processed;
use pyoco::{Config, Registry, Worker};

#[derive(Debug, Parser)]
#[command(
    name = "pyoco-worker",
    version,
    about = "Run pyoco jobs from NATS JetStream",
    after_help = "Examples:\n  pyoco-worker --tags default,gpu --flows-dir ./flows\n  PYOCO_NATS_URL=nats://10.0.0.5:4222 pyoco-worker --worker-id build-1"
)]
struct Args {
    /// NATS server URL [env: PYOCO_NATS_URL; default nats://127.0.0.1:4222]
    #[arg(long)]
    nats_url: Option<String>,
    /// Comma-separated tags to serve [default: PYOCO_DEFAULT_TAG]
    #[arg(long, default_value = "")]
    tags: String,
    /// Worker id in the registry [default: <hostname>-<pid>]
    #[arg(long)]
    worker_id: Option<String>,
    /// Directory of named flows: a `POST /runs` for flow X runs <dir>/X.yaml
    #[arg(long)]
    flows_dir: Option<PathBuf>,
    /// Seconds to wait for a job in each poll
    #[arg(long, default_value_t = 1.0)]
    poll_timeout: f64,
    /// Process at most one poll window, then exit
    #[arg(long)]
    run_once: bool,
    /// On SIGINT/SIGTERM, how long the current run may continue before it is handed back
    #[arg(long, default_value_t = 10.0)]
    shutdown_grace_sec: f64,
    /// Jobs processed at once (each exactly as when one runs at a time); at most
    /// PYOCO_CONSUMER_MAX_ACK_PENDING
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Install the wheel registry's wheels for this worker's tags into the Python runner's
    /// interpreter, at start-up and between polls [env: PYOCO_WHEEL_SYNC_ENABLED]
    #[arg(long, overrides_with = "no_wheel_sync")]
    wheel_sync: bool,
    /// Do not sync wheels, whatever PYOCO_WHEEL_SYNC_ENABLED says
    #[arg(long, overrides_with = "wheel_sync")]
    no_wheel_sync: bool,
    /// Where synced wheels are kept [env: PYOCO_WHEEL_SYNC_DIR; default .pyoco/wheels]
    #[arg(long)]
    wheel_sync_dir: Option<PathBuf>,
    /// Seconds between wheel syncs [env: PYOCO_WHEEL_SYNC_INTERVAL_SEC; default 10]
    #[arg(long)]
    wheel_sync_interval_sec: Option<f64>,
    /// Time limit of one `pip install` [env: PYOCO_WHEEL_INSTALL_TIMEOUT_SEC; default 180]
    #[arg(long)]
    wheel_install_timeout_sec: Option<f64>,
    /// Serve this worker's Prometheus metrics (tasks by callable, runs by status) at
    /// http://ADDR/metrics, e.g. 127.0.0.1:9464
    #[arg(long, env = "PYOCO_WORKER_METRICS_ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
}

fn main() -> ExitCode {
    match pyoco::cli::parse_args::<Args>(std::env::args().collect(), "pyoco-worker --help") {
        Ok(args) => pyoco::cli::run("pyoco-worker", run(args)),
        Err(code) => code,
    }
}

fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    format!("{host}-{}", std::process::id())
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut config = Config::from_env()?;
    if let Some(url) = args.nats_url {
        config.nats_url = url;
    }
    pyoco::logging::init(&config, "pyoco-worker");
    if !args.poll_timeout.is_finite() || args.poll_timeout <= 0.0 {
        anyhow::bail!("--poll-timeout must be a positive number of seconds");
    }
    if !args.shutdown_grace_sec.is_finite() || args.shutdown_grace_sec < 0.0 {
        anyhow::bail!("--shutdown-grace-sec must be zero or more seconds");
    }
    if args.concurrency == 0 {
        anyhow::bail!("--concurrency must be at least 1");
    }
    if args.wheel_sync {
        config.wheel_sync_enabled = true;
    }
    if args.no_wheel_sync {
        config.wheel_sync_enabled = false;
    }
    if let Some(dir) = args.wheel_sync_dir {
        config.wheel_sync_dir = dir;
    }
    for (flag, value, field) in [
        (
            "--wheel-sync-interval-sec",
            args.wheel_sync_interval_sec,
            &mut config.wheel_sync_interval,
        ),
        (
            "--wheel-install-timeout-sec",
            args.wheel_install_timeout_sec,
            &mut config.wheel_install_timeout,
        ),
    ] {
        if let Some(secs) = value {
            if !secs.is_finite() || secs <= 0.0 {
                anyhow::bail!("{flag} must be a positive number of seconds");
            }
            *field = Duration::from_secs_f64(secs);
        }
    }
    let mut registry = Registry::with_builtins();
    if let Some(dir) = &args.flows_dir {
        if !dir.is_dir() {
            anyhow::bail!("--flows-dir {} is not a directory", dir.display());
        }
        registry.flows_dir(dir);
    }
    let tags: Vec<String> = args
        .tags
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    let worker_id = args.worker_id.unwrap_or_else(default_worker_id);
    let mut worker = Worker::connect(config, registry, &worker_id, &tags).await?;
    worker.set_shutdown_grace(Duration::from_secs_f64(args.shutdown_grace_sec));
    worker.set_poll_timeout(Duration::from_secs_f64(args.poll_timeout));
    worker.set_concurrency(args.concurrency);
    eprintln!("pyoco-worker {worker_id} serving tags {:?}", worker.tags());
    if let Some(addr) = args.metrics_addr {
        serve_metrics(addr, worker.metrics()).await?;
    }
    if args.run_once {
        let processed = worker
            .run_once(Duration::from_secs_f64(args.poll_timeout))
            .await?;
        if let Processed::Job {
            run_id,
            disposition,
        } = &processed
        {
            eprintln!("processed run {run_id}: {disposition:?}");
        }
        worker.close().await;
        return Ok(());
    }
    worker.run(pyoco::devnats::shutdown_signal()).await?;
    Ok(())
}

/// Serves `GET /metrics` for this worker in the background.
async fn serve_metrics(
    addr: std::net::SocketAddr,
    metrics: pyoco::worker::metrics::TaskMetrics,
) -> anyhow::Result<()> {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e} (--metrics-addr)"))?;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    metrics.render(),
                )
            }
        }),
    );
    eprintln!("metrics on http://{addr}/metrics");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok(())
}
