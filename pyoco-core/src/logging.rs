//! Logging set-up for the pyoco binaries: `PYOCO_LOG_FORMAT=json|text` and
//! `PYOCO_LOG_LEVEL` (or `RUST_LOG` for per-module filters), to stderr; and the quieter
//! set-up of the command-line client, whose stderr is part of its output.

use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

/// Installs the global subscriber. `service` is added to every event (`pyoco-gateway`, …).
pub fn init(config: &Config, service: &'static str) {
    let level = config.log_level.to_ascii_lowercase();
    let level = match level.as_str() {
        "warning" => "warn",
        "critical" | "fatal" => "error",
        other => other,
    };
    let filter = EnvFilter::try_from_default_env()
        // Tracing targets (not a use of the crates): their per-message debug lines drown ours.
        .or_else(|_| EnvFilter::try_new(format!("{level},async_nats=warn,hyper=warn")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    if result.is_ok() {
        tracing::debug!(service, "logging initialised");
    }
}

/// Installs a text subscriber that shows warnings and errors only, unless `RUST_LOG` says
/// otherwise: for `pyoco-client`, whose stderr carries the original's error format that
/// scripts read, so routine events must not appear there.
pub fn init_quiet() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init()
        // A subscriber is already installed (an embedding program's): keep that one.
        .ok();
}
