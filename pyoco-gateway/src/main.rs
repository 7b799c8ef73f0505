//! `pyoco-gateway`: the HTTP API of pyoco.
//!
//! `pyoco-gateway up` serves on `--host`/`--port`. For a one-command dev setup,
//! `--with-nats` starts a local nats-server and `--with-worker` runs a worker in the same
//! process. Flags override `PYOCO_*` variables. `pyoco-gateway admin api-key ...` manages API
//! keys like the original's `pyoco-server-admin`.

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Manage API keys (the original's pyoco-server-admin)
    #[command(
        after_help = "Examples:\n  pyoco-gateway admin api-key create --tenant acme\n  pyoco-gateway admin api-key list\n  pyoco-gateway admin api-key revoke --key-id 0123abcd4567ef89abcdef01"
    )]
    Admin(Admin),
}

#[derive(Debug, clap::Args)]
struct Admin {
    /// NATS server URL [env: PYOCO_NATS_URL; default nats://127.0.0.1:4222]
    #[arg(long, global = true)]
    nats_url: Option<String>,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// API keys: create, list, revoke
    #[command(name = "api-key", subcommand)]
    ApiKey(ApiKeyCommand),
}

#[derive(Debug, Subcommand)]
enum ApiKeyCommand {
    /// Create a key for a tenant; the key is printed once, never stored
    Create {
        /// Tenant of the key: 1 to 64 characters of A-Z a-z 0-9 _ -
        #[arg(long)]
        tenant: String,
        /// The key may also call admin routes (POST /shutdown)
        #[arg(long)]
        admin: bool,
    },
    /// List keys, newest first (never their secrets)
    List,
    /// Revoke a key (its record is kept with revoked_at); every gateway refuses it within a second
    Revoke {
        #[arg(long)]
        key_id: String,
    },
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
    /// Language of the dashboard at / (ja, en or auto) [env: PYOCO_DASHBOARD_LANG]
    #[arg(long)]
    dashboard_lang: Option<String>,
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
    let is_admin = argv.get(1).is_some_and(|a| a == "admin");
    let hint = if is_admin {
        "pyoco-gateway admin api-key --help"
    } else {
        "pyoco-gateway up --help"
    };
    match pyoco::cli::parse_args::<Cli>(argv, hint) {
        Ok(Cli {
            command: Command::Up(up),
        }) => pyoco::cli::run("pyoco-gateway", run(up)),
        Ok(Cli {
            command: Command::Admin(admin),
        }) => run_admin(admin),
        // The original's admin CLI (argparse) exits 2 on a usage error.
        Err(code) if is_admin && code != ExitCode::SUCCESS => ExitCode::from(2),
        Err(code) => code,
    }
}

/// Runs one admin command: its JSON line on stdout, the original's exit codes (0, 2 for an
/// unknown key), 1 with a message when NATS cannot be reached.
fn run_admin(admin: Admin) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pyoco-gateway admin: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async move {
        let mut config = Config::from_env()?;
        if let Some(url) = admin.nats_url {
            config.nats_url = url;
        }
        let pepper = config.auth_pepper.clone();
        let store = pyoco::Store::connect(std::sync::Arc::new(config), "pyoco-admin-cli").await?;
        let command = match admin.command {
            AdminCommand::ApiKey(ApiKeyCommand::Create { tenant, admin }) => {
                pyoco::admin::AdminCommand::CreateKey { tenant, admin }
            }
            AdminCommand::ApiKey(ApiKeyCommand::List) => pyoco::admin::AdminCommand::ListKeys,
            AdminCommand::ApiKey(ApiKeyCommand::Revoke { key_id }) => {
                pyoco::admin::AdminCommand::RevokeKey { key_id }
            }
        };
        Ok::<_, anyhow::Error>(pyoco::admin::run(&store, pepper.as_deref(), command).await)
    });
    match outcome {
        Ok(outcome) => {
            if !outcome.stdout.is_empty() {
                println!("{}", outcome.stdout);
            }
            if !outcome.stderr.is_empty() {
                eprintln!("{}", outcome.stderr);
            }
            ExitCode::from(u8::try_from(outcome.exit_code).unwrap_or(1))
        }
        Err(e) => {
            eprintln!("pyoco-gateway admin: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(up: Up) -> anyhow::Result<()> {
    let mut config = Config::from_env()?;
    if let Some(lang) = up.dashboard_lang {
        config.dashboard_lang = lang;
    }
    let _logging = pyoco::logging::init(&config, "pyoco-server:http", "pyoco-gateway");
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

    // Under systemd (Type=notify): ready once listening (the gateway serves 503s until NATS
    // answers, and reconnects by itself), then watchdog pings from the runtime.
    pyoco::supervise::ready(&format!("listening on http://{addr}"));
    let watchdog = pyoco::supervise::spawn_watchdog();
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
        pyoco::supervise::stopping();
        stop_gateway.send(()).ok();
    });
    let served = pyoco::gateway::serve(listener, config, stopped(&stop_tx)).await;
    // Whatever ended the gateway also stops the worker; both are awaited before exit.
    stop_tx.send(()).ok();
    signal.abort();
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    if let Some(worker) = worker {
        worker.await.ok();
    }
    served?;
    Ok(())
}
