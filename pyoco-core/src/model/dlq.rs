//! Dead-letter messages (`pyoco.dlq.<tag>` on stream `PYOCO_DLQ`):
//! `{"reason", "error", "timestamp", ...context}`.

use serde_json::{Map, Value};

/// The `reason` values of the original, plus `max_deliveries` for a job that kept failing
/// transiently until the consumer's delivery limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DlqReason {
    InvalidJob,
    FlowNotFound,
    ExecutionError,
    MaxDeliveries,
}

impl DlqReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DlqReason::InvalidJob => "invalid_job",
            DlqReason::FlowNotFound => "flow_not_found",
            DlqReason::ExecutionError => "execution_error",
            DlqReason::MaxDeliveries => "max_deliveries",
        }
    }
}

/// Builds the message body; `context` keys follow `reason`, `error` and `timestamp`.
pub fn dlq_message(reason: DlqReason, error: Option<&str>, context: Map<String, Value>) -> Value {
    let mut m = Map::new();
    m.insert("reason".into(), reason.as_str().into());
    m.insert(
        "error".into(),
        error.map(Value::from).unwrap_or(Value::Null),
    );
    m.insert("timestamp".into(), super::now().into());
    m.extend(context);
    Value::Object(m)
}
