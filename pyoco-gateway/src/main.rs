//! `pyoco-gateway`: the HTTP API of pyoco.
//!
//! `pyoco-gateway up` serves on `--host`/`--port`. For a one-command dev setup,
//! `--with-nats` starts a local nats-server and `--with-worker` runs a worker in the same
//! process. Flags override `PYOCO_*` variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pyoco::Config;

#[derive(Debug, Parser)]
#[command(name = "pyoco-gateway", version, about = "The pyoco HTTP gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (the default command)
    #[command(
        after_help = "Examples:\n  pyoco-gateway up --port 8000 --nats-url nats://127.0.0.1:4222\n  pyoco-gateway up --with-nats --with-worker --flows-dir examples/flows"
    )]
    Up(Up),
}

#[derive(Debug, clap::Args)]
struct Up {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// NATS server URL [env: PYOCO_NATS_URL; default nats://127.0.0.1:4222]
    #[arg(long)]
    nats_url: Option<String>,
    /// Start a local nats-server (JetStream, store in --nats-store-dir) for development
    #[arg(long)]
    with_nats: bool,
    /// Address of the local nats-server started by --with-nats
    #[arg(long, default_value = "127.0.0.1:4222")]
    nats_listen: SocketAddr,
    /// Store directory of the local nats-server started by --with-nats
    #[arg(long, default_value = ".pyoco/nats")]
    nats_store_dir: PathBuf,
    /// Also run a worker in this process
    #[arg(long)]
    with_worker: bool,
    /// Worker id of --with-worker
    #[arg(long, default_value = "gateway-worker")]
    worker_id: String,
    /// Comma-separated tags of --with-worker [default: PYOCO_DEFAULT_TAG]
    #[arg(long, default_value = "")]
    worker_tags: String,
    /// Named flows of --with-worker: a `POST /runs` for flow X runs <dir>/X.yaml
    #[arg(long)]
    flows_dir: Option<PathBuf>,
}

/// `pyoco-gateway` alone, or with flags first, means `up` (as in the original).
fn normalise(mut argv: Vec<String>) -> Vec<String> {
    let first = argv.get(1).cloned();
    match first.as_deref() {
        None => argv.push("up".into()),
        Some(a) if a.starts_with('-') && !matches!(a, "-h" | "--help" | "-V" | "--version") => {
            argv.insert(1, "up".into())
        }
        _ => {}
    }
    argv
}

fn main() -> ExitCode {
    let argv = normalise(std::env::args().collect());
    match pyoco::cli::parse_args::<Cli>(argv, "pyoco-gateway up --help") {
        Ok(Cli {
            command: Command::Up(up),
        }) => pyoco::cli::run("pyoco-gateway", run(up)),
        Err(code) => code,
    }
}

async fn run(up: Up) -> anyhow::Result<()> {
    let mut config = Config::from_env()?;
    pyoco::logging::init(&config, "pyoco-gateway");
    pyoco::cli::warn_unimplemented(&config);
    let _nats = if up.with_nats {
        let managed = format!("nats://{}", up.nats_listen);
        if let Some(url) = up.nats_url.as_deref().filter(|u| *u != managed) {
            anyhow::bail!(
                "--nats-url {url} does not match the managed NATS {managed}: drop --nats-url or change --nats-listen"
            );
        }
        let nats = pyoco::devnats::LocalNats::start(up.nats_listen, &up.nats_store_dir)?;
        eprintln!(
            "started nats-server on {} (store {})",
            nats.url(),
            up.nats_store_dir.display()
        );
        config.nats_url = nats.url();
        Some(nats)
    } else {
        if let Some(url) = up.nats_url {
            config.nats_url = url;
        }
        None
    };
    let addr = format!("{}:{}", up.host, up.port);
    let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|e| {
        anyhow::anyhow!("cannot listen on {addr}: {e} (is another gateway running? use --port)")
    })?;
    eprintln!(
        "pyoco-gateway listening on http://{addr} (NATS {})",
        config.nats_url
    );

    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let stopped = |tx: &tokio::sync::broadcast::Sender<()>| {
        let mut rx = tx.subscribe();
        async move {
            rx.recv().await.ok();
        }
    };
    let worker = if up.with_worker {
        let registry = pyoco::cli::registry_with_flows_dir(up.flows_dir.as_deref())?;
        let tags = pyoco::cli::parse_tags(&up.worker_tags);
        let worker_config = config.clone();
        let shutdown = stopped(&stop_tx);
        Some(tokio::spawn(async move {
            let result = pyoco::cli::run_worker_retrying(
                worker_config,
                registry,
                &up.worker_id,
                &tags,
                shutdown,
            )
            .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "worker stopped with an error");
            }
        }))
    } else {
        None
    };

    let stop_gateway = stop_tx.clone();
    let signal = tokio::spawn(async move {
        pyoco::shutdown::shutdown_signal().await;
        stop_gateway.send(()).ok();
    });
    let served = pyoco::gateway::serve(listener, config, stopped(&stop_tx)).await;
    // Whatever ended the gateway also stops the worker; both are awaited before exit.
    stop_tx.send(()).ok();
    signal.abort();
    if let Some(worker) = worker {
        worker.await.ok();
    }
    served?;
    Ok(())
}
