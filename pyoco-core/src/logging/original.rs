//! The original's JSON log lines: `ts`, `level`, `service`, `logger`, `message`, then the
//! context fields of the event and of its spans (`run_id`, `task`, `worker_id`,
//! `request_id`, …), then `pathname`, `lineno`, `process`, `thread`.
//!
//! `ts` is `YYYY-MM-DDTHH:MM:SSZ` in UTC (`PYOCO_LOG_UTC=true`, the default) or the local
//! time with its offset; levels are Python's names (`WARNING`, not `WARN`). With
//! `PYOCO_LOG_INCLUDE_TRACEBACK=false` the `traceback` and `exc_traceback` fields are left
//! out (the message and error stay).

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Fields dropped when tracebacks are off.
const TRACEBACK_FIELDS: [&str; 2] = ["traceback", "exc_traceback"];

/// The formatter of one service.
#[derive(Debug, Clone)]
pub struct OriginalJson {
    pub service: &'static str,
    pub utc: bool,
    pub include_traceback: bool,
}

/// Python's name of a level.
pub fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

/// `ts` of a line written at `at`.
pub fn timestamp(at: jiff::Timestamp, utc: bool) -> String {
    if utc {
        return at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    }
    at.to_zoned(jiff::tz::TimeZone::system())
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// Collects an event's fields as JSON values (`message` included).
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().into(), Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::from(format!("{value:?}")));
    }
}

impl<S, N> FormatEvent<S, N> for OriginalJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "ts".into(),
            timestamp(jiff::Timestamp::now(), self.utc).into(),
        );
        line.insert("level".into(), level_name(meta.level()).into());
        line.insert("service".into(), self.service.into());
        line.insert("logger".into(), meta.target().into());
        line.insert("message".into(), "".into());
        // Span fields first (outermost first), so the event's own fields win.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                // Spans are recorded with `JsonFields`: their fields are a JSON object.
                if let Some(fields) = ext.get::<FormattedFields<N>>()
                    && let Ok(Value::Object(m)) = serde_json::from_str::<Value>(fields.as_str())
                {
                    line.extend(m);
                }
            }
        }
        let mut fields = Map::new();
        event.record(&mut Fields(&mut fields));
        if let Some(message) = fields.remove("message") {
            line.insert("message".into(), message);
        }
        line.extend(fields);
        if !self.include_traceback {
            for f in TRACEBACK_FIELDS {
                line.shift_remove(f);
            }
        }
        if let Some(file) = meta.file() {
            line.insert("pathname".into(), file.into());
        }
        if let Some(n) = meta.line() {
            line.insert("lineno".into(), n.into());
        }
        line.insert("process".into(), std::process::id().into());
        let thread = std::thread::current();
        line.insert("thread".into(), thread.name().unwrap_or("unnamed").into());
        let text = serde_json::to_string(&Value::Object(line)).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    fn lines(format: OriginalJson, emit: impl FnOnce()) -> Vec<Value> {
        let buf = Buf::default();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(format)
            .with_writer(buf.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[test]
    fn lines_carry_the_originals_fields_and_span_context() {
        let out = lines(
            OriginalJson {
                service: "pyoco-worker",
                utc: true,
                include_traceback: true,
            },
            || {
                let span = tracing::info_span!("request", request_id = "req-1");
                let _g = span.enter();
                tracing::warn!(
                    run_id = "r1",
                    task = "a",
                    worker_id = "w1",
                    traceback = "Traceback…",
                    attempts = 2u64,
                    "task failed"
                );
            },
        );
        assert_eq!(out.len(), 1);
        let l = out[0].as_object().unwrap();
        let keys: Vec<&str> = l.keys().map(String::as_str).take(5).collect();
        assert_eq!(keys, ["ts", "level", "service", "logger", "message"]);
        assert_eq!(l["level"], "WARNING");
        assert_eq!(l["service"], "pyoco-worker");
        assert_eq!(l["message"], "task failed");
        assert_eq!(l["logger"], "pyoco::logging::original::tests");
        assert_eq!(l["run_id"], "r1");
        assert_eq!(l["task"], "a");
        assert_eq!(l["worker_id"], "w1");
        assert_eq!(l["request_id"], "req-1");
        assert_eq!(l["attempts"], 2);
        assert_eq!(l["traceback"], "Traceback…");
        assert!(l["lineno"].as_u64().is_some());
        let ts = l["ts"].as_str().unwrap();
        assert_eq!(ts.len(), 20, "{ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
    }

    #[test]
    fn tracebacks_can_be_left_out_and_time_can_be_local() {
        let out = lines(
            OriginalJson {
                service: "pyoco-gateway",
                utc: false,
                include_traceback: false,
            },
            || {
                tracing::error!(
                    traceback = "tb",
                    exc_traceback = "tb",
                    error = "boom",
                    "failed"
                )
            },
        );
        let l = out[0].as_object().unwrap();
        assert!(!l.contains_key("traceback") && !l.contains_key("exc_traceback"));
        assert_eq!(l["error"], "boom");
        assert_eq!(l["level"], "ERROR");
        // Local time carries its offset: +HH:MM or -HH:MM.
        let ts = l["ts"].as_str().unwrap();
        assert_eq!(ts.len(), 25, "{ts}");
        assert!(matches!(ts.as_bytes()[19], b'+' | b'-'), "{ts}");
    }

    #[test]
    fn timestamps_follow_the_originals_formats() {
        let at: jiff::Timestamp = "2026-12-03T10:20:37.5Z".parse().unwrap();
        assert_eq!(timestamp(at, true), "2026-12-03T10:20:37Z");
        assert_eq!(level_name(&Level::TRACE), "DEBUG");
    }
}
