//! Logging set-up for the pyoco binaries: `PYOCO_LOG_FORMAT=json|text` and
//! `PYOCO_LOG_LEVEL` (or `RUST_LOG` for per-module filters), to stdout like the original,
//! JSON lines in the original's field names ([`original`]), `PYOCO_LOG_UTC` and
//! `PYOCO_LOG_INCLUDE_TRACEBACK`; and the quieter set-up of the command-line client, whose
//! stderr is part of its output. With feature `otel`, the OpenTelemetry traces of
//! [`otlp`] when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

pub mod original;
#[cfg(feature = "otel")]
pub mod otlp;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{Config, LogFormat};

/// What [`init`] started that must end with the program: the trace export, whose last spans
/// are flushed when this is dropped. Keep it until the program's work is done.
#[derive(Debug, Default)]
#[must_use = "dropping it stops the trace export"]
pub struct Logging {
    #[cfg(feature = "otel")]
    traces: Option<otlp::Traces>,
}

impl Logging {
    /// Whether spans are exported.
    pub fn traces_on(&self) -> bool {
        #[cfg(feature = "otel")]
        return self.traces.is_some();
        #[cfg(not(feature = "otel"))]
        false
    }

    /// Exports the finished spans now (blocking; nothing when traces are off).
    pub fn flush(&self) {
        #[cfg(feature = "otel")]
        if let Some(traces) = &self.traces {
            traces.flush();
        }
    }
}

/// Installs the global subscriber. `service` is added to every log line
/// (`pyoco-server:http`, …); `trace_service` is the default `service.name` of the traces
/// exported when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (`pyoco-gateway`, `pyoco-worker`).
pub fn init(config: &Config, service: &'static str, trace_service: &str) -> Logging {
    #[cfg(feature = "otel")]
    return init_with_traces(config, service, otlp::Export::from_env(trace_service));
    #[cfg(not(feature = "otel"))]
    {
        install(config, service, None);
        if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
            tracing::warn!(
                service = trace_service,
                "OTEL_EXPORTER_OTLP_ENDPOINT is set but this build has no trace export (feature otel)"
            );
        }
        Logging::default()
    }
}

/// [`init`] with the trace export given rather than read from the environment (`None`: no
/// traces).
#[cfg(feature = "otel")]
pub fn init_with_traces(
    config: &Config,
    service: &'static str,
    export: Option<otlp::Export>,
) -> Logging {
    let started = export.as_ref().map(otlp::Traces::start);
    let (traces, failed) = match started {
        Some(Ok(traces)) => (Some(traces), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    let layer = traces.as_ref().map(|t| t.layer::<Registry>().boxed());
    install(config, service, layer);
    if let Some(e) = failed {
        tracing::warn!(error = %e, "traces are off: cannot set up the OTLP exporter");
    } else if let Some(export) = &export {
        tracing::debug!(service_name = %export.service_name, "exporting traces over OTLP");
    }
    Logging { traces }
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// The log output (filtered by the log level) and, when given, the trace layer (its own
/// filter), as the global subscriber.
fn install(config: &Config, service: &'static str, traces: Option<BoxedLayer>) {
    let level = config.log_level.to_ascii_lowercase();
    let level = match level.as_str() {
        "warning" => "warn",
        "critical" | "fatal" => "error",
        other => other,
    };
    let filter = EnvFilter::try_from_default_env()
        // Tracing targets (not a use of the crates): their per-message debug lines drown ours.
        .or_else(|_| {
            let nats = crate::store::NATS_CLIENT_LOG_TARGET;
            EnvFilter::try_new(format!("{level},{nats}=warn,hyper=warn"))
        })
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let output = tracing_subscriber::fmt::layer().with_writer(std::io::stdout);
    let output: BoxedLayer = match config.log_format {
        LogFormat::Json => output
            // Span fields as JSON, so the formatter can merge them into the line.
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(original::OriginalJson {
                service,
                utc: config.log_utc,
                include_traceback: config.log_include_traceback,
            })
            .with_filter(filter)
            .boxed(),
        LogFormat::Text => output
            .with_timer(UtcOrLocal(config.log_utc))
            .with_filter(filter)
            .boxed(),
    };
    let layers: Vec<BoxedLayer> = std::iter::once(output).chain(traces).collect();
    if tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .is_ok()
    {
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
