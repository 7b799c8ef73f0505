//! What the gateway's followers of the runs bucket read from one snapshot write, parsed once
//! per write: the run index, the operations counters and the SSE hub all take it from here.
//! At a million stored runs the start-up replay is a million writes, so one parse instead of
//! one per reader is most of the gateway's start-up time.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::model::json;

/// The fields the run index and the counters use; unknown fields are skipped.
#[derive(Debug, Default, Deserialize)]
pub struct Observed {
    #[serde(default)]
    pub updated_at: Option<f64>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub flow_name: Option<String>,
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(default)]
    pub workflow_yaml_sha256: Option<String>,
    #[serde(default)]
    pub schedule_id: Option<String>,
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub start_time: Option<f64>,
    #[serde(default)]
    pub end_time: Option<f64>,
    #[serde(default)]
    pub error: Option<String>,
    /// Kept unparsed: the counters read the records only when a run has just ended.
    #[serde(default)]
    pub task_records: Option<Box<RawValue>>,
}

impl Observed {
    /// Reads one stored snapshot (Python's `NaN`/`Infinity` tokens read as null).
    pub fn parse(value: &[u8]) -> serde_json::Result<Observed> {
        json::from_slice(value)
    }

    /// Reads one write for every follower: `None` for a delete, and for a document that
    /// cannot be read, which is then listed and counted nowhere rather than breaking every
    /// list (and logged once, here).
    pub fn of_write(run_id: &str, value: Option<&[u8]>) -> Option<Observed> {
        match Observed::parse(value?) {
            Ok(seen) => Some(seen),
            Err(e) => {
                tracing::warn!(run_id, error = %e, "unreadable run snapshot left out of the index");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_python_non_finite_numbers_and_keeps_records_raw() {
        let seen = Observed::parse(
            br#"{"status": "FAILED", "start_time": NaN, "updated_at": 2.5, "extra": [1],
                 "task_records": {"a": {"attempts": 2, "error": "x"}}}"#,
        )
        .unwrap();
        assert_eq!(seen.status.as_deref(), Some("FAILED"));
        assert_eq!((seen.start_time, seen.updated_at), (None, Some(2.5)));
        let records: serde_json::Value =
            serde_json::from_str(seen.task_records.unwrap().get()).unwrap();
        assert_eq!(records["a"]["attempts"], 2);
        assert!(Observed::of_write("r", Some(b"not json")).is_none());
        assert!(Observed::of_write("r", None).is_none());
    }
}
