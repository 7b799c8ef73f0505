//! Built-in executors for flow.yaml tasks: `pyoco:http` (an HTTP request), `pyoco:shell` (a
//! command), `pyoco:python` (an inline `main(params, input_payload)` script) and `pyoco:sql`
//! (a read-only PostgreSQL query).
//!
//! Their inputs come from the task's `inputs` (or run params / upstream outputs of the same
//! name, like every native task). Invalid inputs fail the task with a message that starts
//! with the callable, so the run's `error` says which executor refused what.

#[cfg(feature = "worker")]
pub mod http;
mod process;
pub mod sandbox;
pub mod script;
pub mod shell;
#[cfg(feature = "worker")]
pub mod sql;
pub mod sql_check;
pub mod template;

use std::time::Duration;

use serde_json::{Map, Value};

use super::tasks::{Registry, TaskCall, TaskError};

/// Registers the executors of this module in `registry`.
pub(crate) fn register(registry: &mut Registry) {
    #[cfg(feature = "worker")]
    registry.register("pyoco:http", http::PARAMS, http::run);
    registry.register("pyoco:shell", shell::PARAMS, shell::run);
    // Probed on first use until a worker probes its own at start-up.
    use_script_sandbox(
        registry,
        std::sync::Arc::new(sandbox::ScriptSandbox::new(true)),
    );
    #[cfg(feature = "worker")]
    {
        // Until a worker sets its config's connections: the process environment's.
        let vars: Vec<(String, String)> = std::env::vars().collect();
        let urls =
            crate::config::SqlUrls::from_vars(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        use_sql(registry, urls);
    }
}

/// Points `pyoco:sql` at `urls` (the worker's `PYOCO_SQL_<NAME>_URL` connections), with a
/// fresh pool per connection.
#[cfg(feature = "worker")]
pub(crate) fn use_sql(registry: &mut Registry, urls: crate::config::SqlUrls) {
    let pools = sql::SqlPools::new(urls);
    registry.register("pyoco:sql", sql::PARAMS, move |call| {
        sql::run(pools.clone(), call)
    });
}

/// Runs `pyoco:python` scripts in `sandbox` (or unsandboxed when it is off).
pub(crate) fn use_script_sandbox(
    registry: &mut Registry,
    sandbox: std::sync::Arc<sandbox::ScriptSandbox>,
) {
    registry.register("pyoco:python", script::PARAMS, move |call| {
        script::run(sandbox.clone(), call)
    });
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

/// An error with its causes ("error sending request: connection refused"); a cause whose
/// text the message already holds is not repeated.
#[cfg(feature = "worker")]
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}
