//! W3C trace context across the work queue: the submit's span context travels in the job
//! message's `traceparent` (and `tracestate`) NATS headers, and the worker makes its run span
//! a child of it, so a submit, its run and the run's tasks form one trace.
//!
//! Without feature `otel`, or when no OpenTelemetry layer is installed (the binaries install
//! one only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set), spans have no trace context: nothing is
//! added to messages and a received `traceparent` is ignored. The headers are optional both
//! ways: jobs of the original (which sends none) and of pyoco without traces run the same.

use async_nats::HeaderMap;

/// The W3C header of the parent span: `00-<trace id>-<span id>-<flags>`.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C header of vendor trace state, sent when the context has one.
pub const TRACESTATE: &str = "tracestate";

/// Adds the trace context of the current span to `headers` (nothing when traces are off).
pub fn inject_current(headers: &mut HeaderMap) {
    #[cfg(feature = "otel")]
    otel::inject(&tracing::Span::current(), headers);
    #[cfg(not(feature = "otel"))]
    let _ = headers;
}

/// Makes `span` (not yet entered) a child of the trace context carried in `headers`; a
/// missing or malformed `traceparent` leaves it a root.
pub fn set_parent(span: &tracing::Span, headers: Option<&HeaderMap>) {
    #[cfg(feature = "otel")]
    if let Some(headers) = headers {
        otel::set_parent(span, headers);
    }
    #[cfg(not(feature = "otel"))]
    let _ = (span, headers);
}

#[cfg(feature = "otel")]
mod otel {
    use async_nats::HeaderMap;
    use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
    use opentelemetry::trace::TraceContextExt;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    struct Inject<'a>(&'a mut HeaderMap);

    impl Injector for Inject<'_> {
        /// An empty value (the `tracestate` of a context without one) is left out.
        fn set(&mut self, key: &str, value: String) {
            if !value.is_empty() {
                self.0.insert(key, value);
            }
        }
    }

    struct Extract<'a>(&'a HeaderMap);

    impl Extractor for Extract<'_> {
        /// Header names are matched without regard to case (HTTP bridges may capitalise).
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).map(|v| v.as_str()).or_else(|| {
                self.0
                    .iter()
                    .find(|(name, _)| AsRef::<str>::as_ref(name).eq_ignore_ascii_case(key))
                    .and_then(|(_, values)| values.first())
                    .map(|v| v.as_str())
            })
        }

        fn keys(&self) -> Vec<&str> {
            self.0.iter().map(|(name, _)| name.as_ref()).collect()
        }
    }

    pub(super) fn inject(span: &tracing::Span, headers: &mut HeaderMap) {
        let cx = span.context();
        if cx.span().span_context().is_valid() {
            TraceContextPropagator::new().inject_context(&cx, &mut Inject(headers));
        }
    }

    pub(super) fn set_parent(span: &tracing::Span, headers: &HeaderMap) {
        let cx = TraceContextPropagator::new().extract(&Extract(headers));
        if cx.span().span_context().is_valid() {
            // Fails only when no OpenTelemetry layer sees this span: then there is no trace.
            span.set_parent(cx).ok();
        }
    }
}

#[cfg(all(test, feature = "otel"))]
mod tests {
    use super::*;
    use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::layer::SubscriberExt;

    /// A subscriber with an OpenTelemetry layer (no exporter: span contexts only).
    fn with_otel<T>(f: impl FnOnce() -> T) -> T {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, f)
    }

    #[test]
    fn the_current_span_travels_and_becomes_the_parent() {
        with_otel(|| {
            let submit = tracing::info_span!("submit");
            let (trace_id, span_id) = {
                let cx = submit.context();
                let sc = cx.span().span_context().clone();
                (sc.trace_id(), sc.span_id())
            };
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", "r1");
            submit.in_scope(|| inject_current(&mut headers));
            let traceparent = headers.get(TRACEPARENT).expect("traceparent").as_str();
            assert_eq!(traceparent, format!("00-{trace_id}-{span_id}-01"));
            // No trace state was set, so none is sent.
            assert!(headers.get(TRACESTATE).is_none());
            assert_eq!(headers.get("Nats-Msg-Id").map(|v| v.as_str()), Some("r1"));

            let run = tracing::info_span!("run");
            set_parent(&run, Some(&headers));
            let cx = run.context();
            let sc = cx.span().span_context().clone();
            assert_eq!(sc.trace_id(), trace_id);
            assert_ne!(sc.span_id(), span_id);
        });
    }

    #[test]
    fn trace_state_and_capitalised_names_are_read() {
        with_otel(|| {
            let mut headers = HeaderMap::new();
            headers.insert(
                "Traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            );
            headers.insert("tracestate", "vendor=abc");
            let run = tracing::info_span!("run");
            set_parent(&run, Some(&headers));
            let mut out = HeaderMap::new();
            run.in_scope(|| inject_current(&mut out));
            let traceparent = out.get(TRACEPARENT).expect("traceparent").as_str();
            assert!(traceparent.starts_with("00-0af7651916cd43dd8448eb211c80319c-"));
            assert!(!traceparent.contains("b7ad6b7169203331"));
            assert_eq!(out.get(TRACESTATE).map(|v| v.as_str()), Some("vendor=abc"));
        });
    }

    #[test]
    fn nothing_is_sent_or_taken_without_a_valid_context() {
        // No OpenTelemetry layer: no header.
        let mut headers = HeaderMap::new();
        tracing::info_span!("submit").in_scope(|| inject_current(&mut headers));
        assert!(headers.is_empty());
        with_otel(|| {
            let mut headers = HeaderMap::new();
            headers.insert(TRACEPARENT, "not-a-traceparent");
            let run = tracing::info_span!("run");
            set_parent(&run, Some(&headers));
            set_parent(&run, None);
            // A root span: its own new trace, not an invalid one.
            assert!(run.context().span().span_context().is_valid());
        });
    }
}
