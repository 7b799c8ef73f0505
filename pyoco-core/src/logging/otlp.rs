//! OpenTelemetry traces of the binaries, exported over OTLP/HTTP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set.
//!
//! pyoco's spans become OTel spans (`tracing-opentelemetry`): `submit` (gateway or any
//! [`Store::submit`](crate::Store::submit) caller), `run` on the worker, a child of the submit
//! through the job's `traceparent` ([`crate::store::trace_context`]), and one `task` per task under
//! it, with their fields (`run_id`, `flow_name`, `task`, …) as attributes. Spans are batched
//! and exported from the SDK's own thread with a blocking HTTP client; [`Traces`] flushes them
//! when dropped.
//!
//! The exporter reads the standard variables itself: `OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_EXPORTER_OTLP_COMPRESSION` (`gzip`); the SDK reads
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER(_ARG)` and `OTEL_BSP_*`. Here:
//! `OTEL_SERVICE_NAME` (default per binary), `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf`,
//! the default, or `http/json`; gRPC is not built in) and `OTEL_SDK_DISABLED`.

use opentelemetry::trace::TracerProvider as _;
pub use opentelemetry_otlp::Protocol;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

/// Where the traces go and under which service name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// The full URL of the traces endpoint (`http://collector:4318/v1/traces`); `None` takes
    /// it from `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` (plus
    /// `/v1/traces`), as the OTLP specification says.
    pub endpoint: Option<String>,
    /// `service.name` of the spans.
    pub service_name: String,
    pub protocol: Protocol,
}

impl Export {
    /// The export the environment asks for: `None` (no exporter, no overhead beyond a
    /// disabled layer) unless an OTLP endpoint variable is set and non-empty, and
    /// `OTEL_SDK_DISABLED` is not `true`. The service name is `OTEL_SERVICE_NAME`, else
    /// `default_service`.
    pub fn from_env(default_service: &str) -> Option<Self> {
        Self::from_vars(default_service, |name| std::env::var(name).ok())
    }

    /// [`Export::from_env`] over any variable source (tests).
    pub fn from_vars(default_service: &str, var: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let set = |name: &str| {
            var(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return None;
        }
        set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"))?;
        let protocol = set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL"));
        Some(Export {
            endpoint: None,
            service_name: set("OTEL_SERVICE_NAME").unwrap_or_else(|| default_service.to_string()),
            protocol: match protocol.as_deref() {
                Some("http/json") => Protocol::HttpJson,
                Some("http/protobuf") | None => Protocol::HttpBinary,
                Some(other) => {
                    // Logging is not set up yet: stderr, like the binaries' other start-up notes.
                    eprintln!(
                        "OTEL_EXPORTER_OTLP_PROTOCOL={other} is not supported (http/protobuf or http/json); using http/protobuf"
                    );
                    Protocol::HttpBinary
                }
            },
        })
    }
}

/// A running trace export. Dropping it flushes the spans not yet sent and stops the export.
#[derive(Debug)]
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// Builds the exporter and the batching tracer provider.
    pub fn start(export: &Export) -> Result<Self, opentelemetry_otlp::ExporterBuildError> {
        let mut builder = SpanExporter::builder()
            .with_http()
            .with_protocol(export.protocol);
        if let Some(endpoint) = &export.endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        let exporter = builder.build()?;
        let resource = Resource::builder()
            .with_service_name(export.service_name.clone())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        Ok(Traces { provider })
    }

    /// The layer turning pyoco's spans (and their INFO and higher events) into OTel spans,
    /// whatever the log level says.
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("pyoco"))
            .with_filter(Targets::new().with_target("pyoco", Level::INFO))
    }

    /// Exports every finished span now (blocks until the collector answered or timed out).
    pub fn flush(&self) {
        if let Err(e) = self.provider.force_flush() {
            tracing::warn!(error = %e, "could not export traces");
        }
    }
}

impl Drop for Traces {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("could not export the last traces: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Option<Export> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Export::from_vars("pyoco-worker", |name| vars.get(name).cloned())
    }

    #[test]
    fn traces_are_on_only_with_an_endpoint() {
        assert_eq!(from(&[]), None);
        assert_eq!(from(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]), None);
        assert_eq!(from(&[("OTEL_SERVICE_NAME", "x")]), None);
        let on = from(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]);
        assert_eq!(
            on,
            Some(Export {
                endpoint: None,
                service_name: "pyoco-worker".into(),
                protocol: Protocol::HttpBinary
            })
        );
        assert!(
            from(&[(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://c:4318/v1/traces"
            )])
            .is_some()
        );
        assert_eq!(
            from(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_SDK_DISABLED", "TRUE")
            ]),
            None
        );
    }

    #[test]
    fn service_name_and_protocol_come_from_the_standard_variables() {
        let export = from(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_SERVICE_NAME", "builds"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ])
        .expect("on");
        assert_eq!(export.service_name, "builds");
        assert_eq!(export.protocol, Protocol::HttpJson);
        let export = from(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
        ])
        .expect("on");
        assert_eq!(export.protocol, Protocol::HttpBinary);
        let export = from(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ])
        .expect("on");
        assert_eq!(export.protocol, Protocol::HttpBinary);
    }
}
