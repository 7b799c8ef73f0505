//! The job message published on `pyoco.work.<tag>` (stream `PYOCO_WORK`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A unit of work. Optional fields are written only when set, like the original's producers;
/// bundle fields and anything unknown travel in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub run_id: String,
    pub flow_name: String,
    pub tag: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub tenant_id: Option<String>,
    pub api_key_id: Option<String>,
    #[serde(default)]
    pub params: Map<String, Value>,
    pub submitted_at: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_yaml: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_yaml_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_yaml_bytes: Option<u64>,
    /// Written (as null) on YAML jobs only, as the original does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<Option<String>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Why a message is not a usable job; the reason goes to the DLQ as `invalid_job`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidJob {
    #[error("invalid_json: {0}")]
    InvalidJson(String),
    #[error("invalid_schema: job must be a JSON object")]
    InvalidSchema,
    #[error("missing_fields: job must have run_id and flow_name")]
    MissingFields,
    #[error("invalid_field: {field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
}

impl Job {
    /// Decodes a job with the original worker's rules: UTF-8 JSON object with `run_id` and
    /// `flow_name`; `tag` defaults to `default`; `params` to `{}`; `submitted_at` must be
    /// numeric and `spawn_depth` integral when present. Unlike the original we also require
    /// `run_id` and `flow_name` to be non-empty strings: anything else cannot name a run.
    pub fn decode(payload: &[u8]) -> Result<Job, InvalidJob> {
        let text =
            std::str::from_utf8(payload).map_err(|e| InvalidJob::InvalidJson(e.to_string()))?;
        let value: Value = super::json::from_slice(text.as_bytes())
            .map_err(|e| InvalidJob::InvalidJson(e.to_string()))?;
        let Value::Object(mut obj) = value else {
            return Err(InvalidJob::InvalidSchema);
        };
        if !obj.contains_key("run_id") || !obj.contains_key("flow_name") {
            return Err(InvalidJob::MissingFields);
        }
        let string_field = |obj: &Map<String, Value>, field: &'static str| match obj.get(field) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
            _ => Err(InvalidJob::InvalidField {
                field,
                reason: "expected a non-empty string".into(),
            }),
        };
        let run_id = string_field(&obj, "run_id")?;
        let flow_name = string_field(&obj, "flow_name")?;
        let tag = match obj.get("tag") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => "default".to_string(),
        };
        let tags = match obj.get("tags") {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
            _ => Vec::new(),
        };
        let params = match obj.get("params") {
            Some(Value::Object(m)) => m.clone(),
            None | Some(Value::Null) => Map::new(),
            Some(_) => {
                return Err(InvalidJob::InvalidField {
                    field: "params",
                    reason: "expected an object".into(),
                });
            }
        };
        let submitted_at = match obj.get("submitted_at") {
            None | Some(Value::Null) => 0.0,
            Some(v) => number(v).ok_or_else(|| InvalidJob::InvalidField {
                field: "submitted_at",
                reason: format!("could not convert {v} to float"),
            })?,
        };
        if let Some(v) = obj.get("spawn_depth").filter(|v| !v.is_null())
            && number(v).is_none_or(|f| f.fract() != 0.0)
        {
            return Err(InvalidJob::InvalidField {
                field: "spawn_depth",
                reason: format!("could not convert {v} to int"),
            });
        }
        let opt_string = |obj: &Map<String, Value>, k: &str| {
            obj.get(k).and_then(Value::as_str).map(str::to_string)
        };
        let job = Job {
            tenant_id: opt_string(&obj, "tenant_id"),
            api_key_id: opt_string(&obj, "api_key_id"),
            workflow_yaml: opt_string(&obj, "workflow_yaml"),
            workflow_yaml_sha256: opt_string(&obj, "workflow_yaml_sha256"),
            workflow_yaml_bytes: obj.get("workflow_yaml_bytes").and_then(Value::as_u64),
            schedule_id: obj
                .get("schedule_id")
                .map(|v| v.as_str().map(str::to_string)),
            run_id,
            flow_name,
            tag,
            tags,
            params,
            submitted_at,
            extra: Map::new(),
        };
        for known in [
            "run_id",
            "flow_name",
            "tag",
            "tags",
            "tenant_id",
            "api_key_id",
            "params",
            "submitted_at",
            "workflow_yaml",
            "workflow_yaml_sha256",
            "workflow_yaml_bytes",
            "schedule_id",
        ] {
            obj.remove(known);
        }
        Ok(Job { extra: obj, ..job })
    }

    /// The tags a snapshot records: the job's, or `[tag]`.
    pub fn effective_tags(&self) -> Vec<String> {
        if self.tags.is_empty() {
            vec![self.tag.clone()]
        } else {
            self.tags.clone()
        }
    }
}

/// Python's `float()` on a JSON value: numbers and numeric strings.
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_with_the_original_defaults() {
        let job = Job::decode(
            br#"{"run_id":"r","flow_name":"f","submitted_at":"1.5","bundle_hash":"h"}"#,
        )
        .unwrap();
        assert_eq!(job.tag, "default");
        assert_eq!(job.effective_tags(), vec!["default"]);
        assert_eq!(job.submitted_at, 1.5);
        assert_eq!(job.extra["bundle_hash"], json!("h"));
    }

    #[test]
    fn rejects_bad_jobs_with_reasons() {
        assert!(matches!(
            Job::decode(b"\xff"),
            Err(InvalidJob::InvalidJson(_))
        ));
        assert!(matches!(
            Job::decode(b"not json"),
            Err(InvalidJob::InvalidJson(_))
        ));
        assert_eq!(Job::decode(b"[1]"), Err(InvalidJob::InvalidSchema));
        assert_eq!(
            Job::decode(br#"{"run_id":"r"}"#),
            Err(InvalidJob::MissingFields)
        );
        assert!(matches!(
            Job::decode(br#"{"run_id":"r","flow_name":"f","submitted_at":"soon"}"#),
            Err(InvalidJob::InvalidField {
                field: "submitted_at",
                ..
            })
        ));
        assert!(matches!(
            Job::decode(br#"{"run_id":"r","flow_name":"f","spawn_depth":"x"}"#),
            Err(InvalidJob::InvalidField {
                field: "spawn_depth",
                ..
            })
        ));
    }

    #[test]
    fn round_trips_a_yaml_job() {
        let job = Job::decode(br#"{"run_id":"r","flow_name":"f","tag":"t","tags":["t"],"tenant_id":null,"api_key_id":null,"params":{"a":1},"submitted_at":2.0,"workflow_yaml":"x","workflow_yaml_sha256":"s","workflow_yaml_bytes":1,"schedule_id":null}"#).unwrap();
        let v = serde_json::to_value(&job).unwrap();
        assert_eq!(v["schedule_id"], Value::Null);
        assert_eq!(v["workflow_yaml"], json!("x"));
        assert_eq!(v["tenant_id"], Value::Null);
    }
}
