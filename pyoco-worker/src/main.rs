//! `pyoco-worker`: pulls jobs for its tags from NATS JetStream and runs them.
//!
//! Flags override `PYOCO_*` variables. Named flows (`POST /runs`) are resolved from
//! `<flows-dir>/<flow_name>.yaml`; YAML runs carry their flow. SIGINT/SIGTERM stop it
//! gracefully (the current run finishes or is handed back after `--shutdown-grace-sec`).

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use pyoco::cli::seconds_flag;
use pyoco::worker::Processed;
use pyoco::worker::metrics::serve_metrics;
use pyoco::{Config, Worker};

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
    /// Jobs processed at once (each exactly as when one runs at a time); 1 is the original's
    /// one run at a time [env: PYOCO_WORKER_CONCURRENCY; default: 32 per core, at most
    /// PYOCO_CONSUMER_MAX_ACK_PENDING]
    #[arg(long)]
    concurrency: Option<usize>,
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

/// Every error of the worker CLI uses the original's ERR-PYOCO-0018 block and exits 1.
const HINT: &str = "pyoco-worker --help";

fn main() -> ExitCode {
    let usage = |e: &clap::Error| {
        eprint!(
            "{}",
            pyoco::cli::error_report(
                "0018",
                "invalid CLI arguments (check the input format)",
                &pyoco::cli::usage_reason(e),
                HINT,
            )
        );
        ExitCode::FAILURE
    };
    let args = match pyoco::cli::parse_args_with::<Args>(std::env::args().collect(), usage) {
        Ok(args) => args,
        Err(code) => return code,
    };
    // SIGINT/SIGTERM are the worker's own graceful stop (exit 0), not an interruption.
    pyoco::cli::run_with(run(args), None, |failure| {
        let reason = match failure {
            pyoco::cli::Failure::Program(e) => format!("{e:#}"),
            pyoco::cli::Failure::Runtime(e) => format!("could not start the async runtime: {e}"),
            _ => "the worker could not run".to_string(),
        };
        eprint!(
            "{}",
            pyoco::cli::error_report("0018", "worker start-up failed", &reason, HINT)
        );
        ExitCode::FAILURE
    })
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut config = Config::from_env()?;
    if let Some(url) = args.nats_url {
        config.nats_url = url;
    }
    let _logging = pyoco::logging::init(&config, "pyoco-server:worker", "pyoco-worker");
    pyoco::cli::warn_unimplemented(&config);
    let poll_timeout = seconds_flag("--poll-timeout", args.poll_timeout, false)?;
    let shutdown_grace = seconds_flag("--shutdown-grace-sec", args.shutdown_grace_sec, true)?;
    if args.concurrency == Some(0) {
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
    if let Some(secs) = args.wheel_sync_interval_sec {
        config.wheel_sync_interval = seconds_flag("--wheel-sync-interval-sec", secs, false)?;
    }
    if let Some(secs) = args.wheel_install_timeout_sec {
        config.wheel_install_timeout = seconds_flag("--wheel-install-timeout-sec", secs, false)?;
    }
    let registry = pyoco::cli::registry_with_flows_dir(args.flows_dir.as_deref())?;
    let tags = pyoco::cli::parse_tags(&args.tags);
    let worker_id = args.worker_id.unwrap_or_else(pyoco::cli::default_worker_id);
    let mut worker = Worker::connect(config, registry, &worker_id, &tags).await?;
    worker.set_shutdown_grace(shutdown_grace);
    worker.set_poll_timeout(poll_timeout);
    if let Some(jobs) = args.concurrency {
        worker.set_concurrency(jobs);
    }
    eprintln!("pyoco-worker {worker_id} serving tags {:?}", worker.tags());
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics_server = match args.metrics_addr {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                anyhow::anyhow!("cannot serve metrics on {addr}: {e} (--metrics-addr)")
            })?;
            eprintln!("metrics on http://{addr}/metrics");
            Some(tokio::spawn(serve_metrics(
                listener,
                worker.metrics(),
                async move {
                    metrics_stopped.await.ok();
                },
            )))
        }
        None => None,
    };
    // Under systemd (Type=notify): ready once connected with its consumers, then watchdog
    // pings from the runtime, and STOPPING=1 when a signal starts the graceful stop.
    pyoco::supervise::ready(&format!(
        "worker {worker_id} serving tags {:?}",
        worker.tags()
    ));
    let watchdog = pyoco::supervise::spawn_watchdog();
    let result = if args.run_once {
        run_once(worker, poll_timeout).await
    } else {
        worker
            .run(async {
                pyoco::shutdown::shutdown_signal().await;
                pyoco::supervise::stopping();
            })
            .await
            .map_err(anyhow::Error::from)
    };
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    // The metrics server lives exactly as long as the worker.
    stop_metrics.send(()).ok();
    if let Some(server) = metrics_server {
        match server.await {
            Ok(Err(e)) => tracing::error!(error = %e, "metrics server stopped with an error"),
            Err(e) => tracing::error!(error = %e, "metrics server task failed"),
            Ok(Ok(())) => {}
        }
    }
    result
}

/// `--run-once`: one poll window, then exit.
async fn run_once(mut worker: Worker, poll_timeout: std::time::Duration) -> anyhow::Result<()> {
    let processed = worker.run_once(poll_timeout).await;
    if let Ok(Processed::Job {
        run_id,
        disposition,
    }) = &processed
    {
        eprintln!("processed run {run_id}: {disposition:?}");
    }
    worker.close().await;
    processed?;
    Ok(())
}
