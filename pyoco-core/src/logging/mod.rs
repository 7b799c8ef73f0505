//! Logging set-up for the pyoco binaries: `PYOCO_LOG_FORMAT=json|text` and
//! `PYOCO_LOG_LEVEL` (or `RUST_LOG` for per-module filters), to stdout like the original,
//! JSON lines in the original's field names ([`original`]), `PYOCO_LOG_UTC` and
//! `PYOCO_LOG_INCLUDE_TRACEBACK`; and the quieter set-up of the command-line client, whose
//! stderr is part of its output.

pub mod original;

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
        .with_writer(std::io::stdout);
    let result = match config.log_format {
        LogFormat::Json => builder
            // Span fields as JSON, so the formatter can merge them into the line.
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(original::OriginalJson {
                service,
                utc: config.log_utc,
                include_traceback: config.log_include_traceback,
            })
            .try_init(),
        LogFormat::Text => builder.with_timer(UtcOrLocal(config.log_utc)).try_init(),
    };
    if result.is_ok() {
        tracing::debug!(service, "logging initialised");
    }
}

/// The text format's timestamps: UTC or local, as `PYOCO_LOG_UTC` says.
struct UtcOrLocal(bool);

impl tracing_subscriber::fmt::time::FormatTime for UtcOrLocal {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        write!(w, "{}", original::timestamp(jiff::Timestamp::now(), self.0))
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
