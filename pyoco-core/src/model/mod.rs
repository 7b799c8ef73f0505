//! Wire documents: serde types that *are* the JSON written to NATS by pyoco-server.
//!
//! Readers accept unknown fields (kept in `extra` and written back), missing fields (defaults)
//! and the `NaN`/`Infinity` tokens that Python's `json.dumps` emits (see [`json`]).

pub mod bundle;
pub mod dlq;
pub mod flow_registry;
pub mod ident;
pub mod job;
pub mod json;
pub mod run;
pub mod schedule;
pub mod transition;
pub mod worker;

pub use dlq::{DlqReason, dlq_message};
pub use job::{InvalidJob, Job};
pub use run::{RunSnapshot, RunStatus, TaskRecord, TaskState};
pub use transition::{Change, StatusPeek, WorkerWrite};
pub use worker::{WorkerRecord, WorkerState, WorkerView, effective_state};

/// Seconds since the Unix epoch as a float, the original's `time.time()`.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A routing tag: `[A-Za-z0-9_-]{1,128}`. Tags become subject tokens and consumer names.
pub fn is_valid_tag(tag: &str) -> bool {
    ident::is_valid_id(ident::IdKind::Tag, tag)
}

/// A new run id: a hyphenated uuid4, like the original.
pub fn new_run_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_the_original_pattern() {
        assert!(is_valid_tag("gpu-1_a"));
        assert!(!is_valid_tag(""));
        assert!(!is_valid_tag("a.b"));
        assert!(!is_valid_tag("a b"));
        assert!(!is_valid_tag("a*"));
    }
}
