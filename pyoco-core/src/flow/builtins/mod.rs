//! Built-in executors for flow.yaml tasks: `pyoco:http` (an HTTP request), `pyoco:shell` (a
//! command) and `pyoco:python` (an inline `main(params, input_payload)` script).
//!
//! Their inputs come from the task's `inputs` (or run params / upstream outputs of the same
//! name, like every native task). Invalid inputs fail the task with a message that starts
//! with the callable, so the run's `error` says which executor refused what.

#[cfg(feature = "worker")]
pub mod http;
mod process;
pub mod script;
pub mod shell;
pub mod template;

use std::time::Duration;

use serde_json::{Map, Value};

use super::tasks::{Registry, TaskCall, TaskError};

/// Registers the executors of this module in `registry`.
pub(crate) fn register(registry: &mut Registry) {
    #[cfg(feature = "worker")]
    registry.register("pyoco:http", http::PARAMS, http::run);
    registry.register("pyoco:shell", shell::PARAMS, shell::run);
    registry.register("pyoco:python", script::PARAMS, script::run);
}

/// Reads a task's inputs, treating `null` as absent, with errors naming the callable.
#[derive(Debug, Clone, Copy)]
struct Args<'a> {
    call: &'a TaskCall,
    callable: &'static str,
}

impl<'a> Args<'a> {
    fn new(call: &'a TaskCall, callable: &'static str) -> Args<'a> {
        Args { call, callable }
    }

    fn error(&self, message: impl std::fmt::Display) -> TaskError {
        TaskError::new(format!("{}: {message}", self.callable))
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.call.args.get(key).filter(|v| !v.is_null())
    }

    fn str(&self, key: &str) -> Result<Option<&'a str>, TaskError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.error(format!("{key} must be a string, got {other}"))),
        }
    }

    fn bool(&self, key: &str) -> Result<bool, TaskError> {
        match self.get(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(self.error(format!("{key} must be true or false, got {other}"))),
        }
    }

    fn map(&self, key: &str) -> Result<Option<&'a Map<String, Value>>, TaskError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(other) => Err(self.error(format!("{key} must be a mapping, got {other}"))),
        }
    }

    /// A duration in seconds: `default` when absent, else a number in (0, `max`].
    fn seconds(
        &self,
        key: &str,
        default: Option<f64>,
        max: f64,
    ) -> Result<Option<Duration>, TaskError> {
        let Some(value) = self.get(key) else {
            return Ok(default.map(Duration::from_secs_f64));
        };
        match value.as_f64() {
            Some(s) if s.is_finite() && s > 0.0 && s <= max => Ok(Some(Duration::from_secs_f64(s))),
            _ => Err(self.error(format!(
                "{key} must be a number of seconds > 0 and <= {max}, got {value}"
            ))),
        }
    }

    /// A list of whole numbers in `range` (exit codes, HTTP statuses).
    fn int_list(
        &self,
        key: &str,
        range: std::ops::RangeInclusive<i64>,
    ) -> Result<Option<Vec<i64>>, TaskError> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let bad = || {
            self.error(format!(
                "{key} must be a list of whole numbers from {} to {}, got {value}",
                range.start(),
                range.end()
            ))
        };
        let items = value.as_array().ok_or_else(bad)?;
        items
            .iter()
            .map(|v| v.as_i64().filter(|n| range.contains(n)).ok_or_else(bad))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

/// The text of a scalar (env values, headers, query values): strings as they are, numbers
/// and booleans as JSON writes them; `None` for lists and mappings.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => Some(value.to_string()),
        _ => None,
    }
}

/// The last non-blank line of a process's stderr, for error messages.
fn last_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).rfind(|l| !l.is_empty())
}
