//! Configuration: every `PYOCO_*` variable of pyoco-server, with the same names and defaults.
//!
//! Precedence is defaults < `.env` file < process environment < command-line flags (the
//! binaries apply flags on top of [`Config::from_env`]). Unlike the original, a value that does
//! not parse is an error naming the variable instead of a silent fallback to the default.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A variable had a value that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}={value:?} is invalid: {reason}")]
#[non_exhaustive]
pub struct ConfigError {
    /// The variable's name, e.g. `PYOCO_CONSUMER_MAX_DELIVER`.
    pub name: String,
    pub value: String,
    pub reason: String,
}

/// How the gateway authenticates requests (`PYOCO_HTTP_AUTH_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    None,
    ApiKey,
}

/// Every setting of gateway, worker and client. Field names follow the variables.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub nats_url: String,
    /// Name of the WorkQueue stream. Not configurable in the original; kept as a field so tests
    /// and deployments can prefix every NATS name.
    pub work_stream: String,
    pub work_subject_prefix: String,
    /// Durable consumer names are `<consumer_prefix>_<tag>`.
    pub consumer_prefix: String,
    pub default_tag: String,
    pub runs_kv_bucket: String,
    pub workers_kv_bucket: String,
    pub workers_kv_ttl: Duration,
    pub yaml_schedules_kv_bucket: String,
    pub workflow_bundles_kv_bucket: String,
    pub run_relations_kv_bucket: String,
    /// Task results cached with `cache_ttl_sec` (our addition).
    pub task_cache_kv_bucket: String,
    /// Circuit breaker state per callable (our addition).
    pub circuit_breakers_kv_bucket: String,
    pub http_auth_mode: AuthMode,
    pub http_api_key_header: String,
    pub auth_kv_bucket: String,
    pub auth_pepper: Option<String>,
    pub run_heartbeat_interval: Duration,
    pub worker_heartbeat_interval: Duration,
    pub worker_disconnect_timeout: Duration,
    pub cancel_grace_period: Duration,
    /// Zero disables in-progress acks.
    pub ack_progress_interval: Duration,
    pub consumer_ack_wait: Duration,
    pub consumer_max_deliver: i64,
    pub consumer_max_ack_pending: i64,
    pub dlq_stream: String,
    pub dlq_subject_prefix: String,
    pub dlq_max_age: Duration,
    pub dlq_max_msgs: i64,
    pub dlq_max_bytes: i64,
    pub dlq_publish_execution_error: bool,
    /// Zero disables snapshot compaction.
    pub max_run_snapshot_bytes: usize,
    pub wheel_object_store_bucket: String,
    pub wheel_max_bytes: u64,
    pub wheel_sync_enabled: bool,
    pub wheel_sync_dir: PathBuf,
    pub wheel_sync_interval: Duration,
    pub wheel_install_timeout: Duration,
    pub wheel_history_kv_bucket: String,
    pub wheel_history_ttl: Duration,
    pub workflow_yaml_max_bytes: usize,
    pub schedule_poll_interval: Duration,
    pub workflow_bundle_max_bytes: usize,
    pub spawn_requires_approval: bool,
    pub spawn_max_child_runs: i64,
    pub spawn_max_parallel_child_runs: i64,
    pub spawn_child_tag: String,
    pub spawn_timeout: Duration,
    pub spawn_poll_interval: Duration,
    pub dashboard_lang: String,
    /// Interpreter of the Python task runner (`PYOCO_PYTHON`, our addition).
    pub python: String,
    pub log_level: String,
    pub log_format: LogFormat,
    pub log_utc: bool,
    pub log_include_traceback: bool,
}

/// `PYOCO_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nats_url: "nats://127.0.0.1:4222".into(),
            work_stream: "PYOCO_WORK".into(),
            work_subject_prefix: "pyoco.work".into(),
            consumer_prefix: "pyoco_workers".into(),
            default_tag: "default".into(),
            runs_kv_bucket: "pyoco_runs".into(),
            workers_kv_bucket: "pyoco_workers".into(),
            // A day, not the original's 15 s: records must outlive the disconnect timeout or
            // DISCONNECTED never shows; dead workers are cleaned up after a day.
            workers_kv_ttl: Duration::from_secs(86_400),
            yaml_schedules_kv_bucket: "pyoco_yaml_schedules".into(),
            workflow_bundles_kv_bucket: "pyoco_workflow_bundles".into(),
            run_relations_kv_bucket: "pyoco_run_relations".into(),
            task_cache_kv_bucket: "pyoco_task_cache".into(),
            circuit_breakers_kv_bucket: "pyoco_circuit_breakers".into(),
            http_auth_mode: AuthMode::None,
            http_api_key_header: "X-API-Key".into(),
            auth_kv_bucket: "pyoco_auth".into(),
            auth_pepper: None,
            run_heartbeat_interval: Duration::from_secs(1),
            worker_heartbeat_interval: Duration::from_secs(5),
            worker_disconnect_timeout: Duration::from_secs(20),
            cancel_grace_period: Duration::from_secs(30),
            ack_progress_interval: Duration::from_secs(10),
            consumer_ack_wait: Duration::from_secs(30),
            consumer_max_deliver: 20,
            consumer_max_ack_pending: 200,
            dlq_stream: "PYOCO_DLQ".into(),
            dlq_subject_prefix: "pyoco.dlq".into(),
            dlq_max_age: Duration::from_secs(604_800),
            dlq_max_msgs: 100_000,
            dlq_max_bytes: 536_870_912,
            dlq_publish_execution_error: true,
            max_run_snapshot_bytes: 262_144,
            wheel_object_store_bucket: "pyoco_wheels".into(),
            wheel_max_bytes: 536_870_912,
            wheel_sync_enabled: false,
            wheel_sync_dir: PathBuf::from(".pyoco/wheels"),
            wheel_sync_interval: Duration::from_secs(10),
            wheel_install_timeout: Duration::from_secs(180),
            wheel_history_kv_bucket: "pyoco_wheel_history".into(),
            wheel_history_ttl: Duration::from_secs(7_776_000),
            workflow_yaml_max_bytes: 262_144,
            schedule_poll_interval: Duration::from_secs(1),
            workflow_bundle_max_bytes: 262_144,
            spawn_requires_approval: true,
            spawn_max_child_runs: 100,
            spawn_max_parallel_child_runs: 8,
            spawn_child_tag: String::new(),
            spawn_timeout: Duration::from_secs(3600),
            spawn_poll_interval: Duration::from_millis(200),
            dashboard_lang: "auto".into(),
            python: "python3".into(),
            log_level: "INFO".into(),
            log_format: LogFormat::Json,
            log_utc: true,
            log_include_traceback: true,
        }
    }
}

/// Every variable [`Config::from_env`] reads (plus the process-only `.env` switches), for
/// documentation and the spec test.
pub const VARIABLES: &[&str] = &[
    "PYOCO_NATS_URL",
    "PYOCO_WORK_SUBJECT_PREFIX",
    "PYOCO_DEFAULT_TAG",
    "PYOCO_RUNS_KV_BUCKET",
    "PYOCO_WORKERS_KV_BUCKET",
    "PYOCO_WORKERS_KV_TTL_SEC",
    "PYOCO_YAML_SCHEDULES_KV_BUCKET",
    "PYOCO_WORKFLOW_BUNDLES_KV_BUCKET",
    "PYOCO_RUN_RELATIONS_KV_BUCKET",
    "PYOCO_TASK_CACHE_KV_BUCKET",
    "PYOCO_CIRCUIT_BREAKERS_KV_BUCKET",
    "PYOCO_HTTP_AUTH_MODE",
    "PYOCO_HTTP_API_KEY_HEADER",
    "PYOCO_AUTH_KV_BUCKET",
    "PYOCO_AUTH_PEPPER",
    "PYOCO_RUN_HEARTBEAT_INTERVAL_SEC",
    "PYOCO_WORKER_HEARTBEAT_INTERVAL_SEC",
    "PYOCO_WORKER_DISCONNECT_TIMEOUT_SEC",
    "PYOCO_CANCEL_GRACE_PERIOD_SEC",
    "PYOCO_ACK_PROGRESS_INTERVAL_SEC",
    "PYOCO_CONSUMER_ACK_WAIT_SEC",
    "PYOCO_CONSUMER_MAX_DELIVER",
    "PYOCO_CONSUMER_MAX_ACK_PENDING",
    "PYOCO_DLQ_STREAM",
    "PYOCO_DLQ_SUBJECT_PREFIX",
    "PYOCO_DLQ_MAX_AGE_SEC",
    "PYOCO_DLQ_MAX_MSGS",
    "PYOCO_DLQ_MAX_BYTES",
    "PYOCO_DLQ_PUBLISH_EXECUTION_ERROR",
    "PYOCO_MAX_RUN_SNAPSHOT_BYTES",
    "PYOCO_WHEEL_OBJECT_STORE_BUCKET",
    "PYOCO_WHEEL_MAX_BYTES",
    "PYOCO_WHEEL_SYNC_ENABLED",
    "PYOCO_WHEEL_SYNC_DIR",
    "PYOCO_WHEEL_SYNC_INTERVAL_SEC",
    "PYOCO_WHEEL_INSTALL_TIMEOUT_SEC",
    "PYOCO_WHEEL_HISTORY_KV_BUCKET",
    "PYOCO_WHEEL_HISTORY_TTL_SEC",
    "PYOCO_WORKFLOW_YAML_MAX_BYTES",
    "PYOCO_SCHEDULE_POLL_INTERVAL_SEC",
    "PYOCO_WORKFLOW_BUNDLE_MAX_BYTES",
    "PYOCO_SPAWN_REQUIRES_APPROVAL",
    "PYOCO_SPAWN_MAX_CHILD_RUNS",
    "PYOCO_SPAWN_MAX_PARALLEL_CHILD_RUNS",
    "PYOCO_SPAWN_CHILD_TAG",
    "PYOCO_SPAWN_TIMEOUT_SEC",
    "PYOCO_SPAWN_POLL_INTERVAL_SEC",
    "PYOCO_DASHBOARD_LANG",
    "PYOCO_PYTHON",
    "PYOCO_LOAD_DOTENV",
    "PYOCO_ENV_FILE",
    "PYOCO_LOG_LEVEL",
    "PYOCO_LOG_FORMAT",
    "PYOCO_LOG_UTC",
    "PYOCO_LOG_INCLUDE_TRACEBACK",
];

impl Config {
    /// Reads the process environment, falling back to the `.env` file (`PYOCO_ENV_FILE`,
    /// default `.env`, unless `PYOCO_LOAD_DOTENV` is false), then to the defaults.
    pub fn from_env() -> Result<Config, ConfigError> {
        let process: HashMap<String, String> = std::env::vars().collect();
        Config::from_sources(&process)
    }

    /// Like [`Config::from_env`] but from an explicit process environment (for tests).
    pub fn from_sources(process: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let load_dotenv = match nonempty(process.get("PYOCO_LOAD_DOTENV")) {
            Some(v) => parse_bool("PYOCO_LOAD_DOTENV", v)?,
            None => true,
        };
        let dotenv = if load_dotenv {
            let file = nonempty(process.get("PYOCO_ENV_FILE")).unwrap_or(".env");
            read_dotenv(&expand_home(file, process.get("HOME")))
        } else {
            HashMap::new()
        };
        // Logging variables come from the process only, as in the original.
        let process_only = |name: &str| nonempty(process.get(name));
        let get = |name: &str| nonempty(process.get(name)).or_else(|| nonempty(dotenv.get(name)));
        Config::build(&get, &process_only)
    }

    fn build<'a>(
        get: &dyn Fn(&str) -> Option<&'a str>,
        process_only: &dyn Fn(&str) -> Option<&'a str>,
    ) -> Result<Config, ConfigError> {
        let d = Config::default();
        let s = |name: &str, default: &str| get(name).unwrap_or(default).trim().to_string();
        let secs = |name: &str, default: Duration| match get(name) {
            Some(v) => parse_secs(name, v),
            None => Ok(default),
        };
        let int = |name: &str, default: i64| match get(name) {
            Some(v) => parse_int(name, v),
            None => Ok(default),
        };
        let boolean = |name: &str, default: bool| match get(name) {
            Some(v) => parse_bool(name, v),
            None => Ok(default),
        };
        // Sizes: 0 keeps its documented meaning (e.g. no compaction), negatives are errors.
        let size = |name: &str, default: usize| -> Result<usize, ConfigError> {
            let v = int(name, default as i64)?;
            usize::try_from(v).map_err(|_| {
                invalid(
                    name,
                    &v.to_string(),
                    "expected zero or a positive number of bytes",
                )
            })
        };
        let auth = match s("PYOCO_HTTP_AUTH_MODE", "none")
            .to_ascii_lowercase()
            .as_str()
        {
            "api_key" => AuthMode::ApiKey,
            "none" | "" => AuthMode::None,
            other => {
                return Err(invalid(
                    "PYOCO_HTTP_AUTH_MODE",
                    other,
                    "expected none or api_key",
                ));
            }
        };
        let log_format =
            match process_only("PYOCO_LOG_FORMAT").map(|v| v.trim().to_ascii_lowercase()) {
                None => LogFormat::Json,
                Some(v) if v == "json" => LogFormat::Json,
                Some(v) if v == "text" => LogFormat::Text,
                Some(v) => return Err(invalid("PYOCO_LOG_FORMAT", &v, "expected json or text")),
            };
        let process_bool = |name: &str, default: bool| match process_only(name) {
            Some(v) => parse_bool(name, v),
            None => Ok(default),
        };
        let dashboard_lang = s("PYOCO_DASHBOARD_LANG", "auto").to_ascii_lowercase();
        if !matches!(dashboard_lang.as_str(), "auto" | "ja" | "en") {
            return Err(invalid(
                "PYOCO_DASHBOARD_LANG",
                &dashboard_lang,
                "expected auto, ja or en",
            ));
        }
        let default_tag = s("PYOCO_DEFAULT_TAG", &d.default_tag);
        if !crate::model::is_valid_tag(&default_tag) {
            return Err(invalid(
                "PYOCO_DEFAULT_TAG",
                &default_tag,
                "a tag may only contain letters, digits, '_' and '-'",
            ));
        }
        let config = Config {
            nats_url: s("PYOCO_NATS_URL", &d.nats_url),
            work_stream: d.work_stream.clone(),
            work_subject_prefix: s("PYOCO_WORK_SUBJECT_PREFIX", &d.work_subject_prefix),
            consumer_prefix: d.consumer_prefix.clone(),
            default_tag,
            runs_kv_bucket: s("PYOCO_RUNS_KV_BUCKET", &d.runs_kv_bucket),
            workers_kv_bucket: s("PYOCO_WORKERS_KV_BUCKET", &d.workers_kv_bucket),
            workers_kv_ttl: secs("PYOCO_WORKERS_KV_TTL_SEC", d.workers_kv_ttl)?,
            yaml_schedules_kv_bucket: s(
                "PYOCO_YAML_SCHEDULES_KV_BUCKET",
                &d.yaml_schedules_kv_bucket,
            ),
            workflow_bundles_kv_bucket: s(
                "PYOCO_WORKFLOW_BUNDLES_KV_BUCKET",
                &d.workflow_bundles_kv_bucket,
            ),
            run_relations_kv_bucket: s("PYOCO_RUN_RELATIONS_KV_BUCKET", &d.run_relations_kv_bucket),
            task_cache_kv_bucket: s("PYOCO_TASK_CACHE_KV_BUCKET", &d.task_cache_kv_bucket),
            circuit_breakers_kv_bucket: s(
                "PYOCO_CIRCUIT_BREAKERS_KV_BUCKET",
                &d.circuit_breakers_kv_bucket,
            ),
            http_auth_mode: auth,
            http_api_key_header: s("PYOCO_HTTP_API_KEY_HEADER", &d.http_api_key_header),
            auth_kv_bucket: s("PYOCO_AUTH_KV_BUCKET", &d.auth_kv_bucket),
            auth_pepper: get("PYOCO_AUTH_PEPPER")
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string),
            run_heartbeat_interval: secs(
                "PYOCO_RUN_HEARTBEAT_INTERVAL_SEC",
                d.run_heartbeat_interval,
            )?
            .max(Duration::from_millis(100)),
            worker_heartbeat_interval: secs(
                "PYOCO_WORKER_HEARTBEAT_INTERVAL_SEC",
                d.worker_heartbeat_interval,
            )?
            .max(Duration::from_millis(100)),
            worker_disconnect_timeout: secs(
                "PYOCO_WORKER_DISCONNECT_TIMEOUT_SEC",
                d.worker_disconnect_timeout,
            )?,
            cancel_grace_period: secs("PYOCO_CANCEL_GRACE_PERIOD_SEC", d.cancel_grace_period)?,
            ack_progress_interval: secs(
                "PYOCO_ACK_PROGRESS_INTERVAL_SEC",
                d.ack_progress_interval,
            )?,
            consumer_ack_wait: secs("PYOCO_CONSUMER_ACK_WAIT_SEC", d.consumer_ack_wait)?,
            consumer_max_deliver: int("PYOCO_CONSUMER_MAX_DELIVER", d.consumer_max_deliver)?,
            consumer_max_ack_pending: int(
                "PYOCO_CONSUMER_MAX_ACK_PENDING",
                d.consumer_max_ack_pending,
            )?,
            dlq_stream: s("PYOCO_DLQ_STREAM", &d.dlq_stream),
            dlq_subject_prefix: s("PYOCO_DLQ_SUBJECT_PREFIX", &d.dlq_subject_prefix),
            dlq_max_age: secs("PYOCO_DLQ_MAX_AGE_SEC", d.dlq_max_age)?,
            dlq_max_msgs: int("PYOCO_DLQ_MAX_MSGS", d.dlq_max_msgs)?,
            dlq_max_bytes: int("PYOCO_DLQ_MAX_BYTES", d.dlq_max_bytes)?,
            dlq_publish_execution_error: boolean(
                "PYOCO_DLQ_PUBLISH_EXECUTION_ERROR",
                d.dlq_publish_execution_error,
            )?,
            max_run_snapshot_bytes: size("PYOCO_MAX_RUN_SNAPSHOT_BYTES", d.max_run_snapshot_bytes)?,
            wheel_object_store_bucket: s(
                "PYOCO_WHEEL_OBJECT_STORE_BUCKET",
                &d.wheel_object_store_bucket,
            ),
            wheel_max_bytes: size("PYOCO_WHEEL_MAX_BYTES", d.wheel_max_bytes as usize)? as u64,
            wheel_sync_enabled: boolean("PYOCO_WHEEL_SYNC_ENABLED", d.wheel_sync_enabled)?,
            wheel_sync_dir: PathBuf::from(s("PYOCO_WHEEL_SYNC_DIR", ".pyoco/wheels")),
            wheel_sync_interval: secs("PYOCO_WHEEL_SYNC_INTERVAL_SEC", d.wheel_sync_interval)?,
            wheel_install_timeout: secs(
                "PYOCO_WHEEL_INSTALL_TIMEOUT_SEC",
                d.wheel_install_timeout,
            )?,
            wheel_history_kv_bucket: s("PYOCO_WHEEL_HISTORY_KV_BUCKET", &d.wheel_history_kv_bucket),
            wheel_history_ttl: secs("PYOCO_WHEEL_HISTORY_TTL_SEC", d.wheel_history_ttl)?,
            workflow_yaml_max_bytes: size(
                "PYOCO_WORKFLOW_YAML_MAX_BYTES",
                d.workflow_yaml_max_bytes,
            )?,
            schedule_poll_interval: secs(
                "PYOCO_SCHEDULE_POLL_INTERVAL_SEC",
                d.schedule_poll_interval,
            )?
            .max(Duration::from_millis(200)),
            workflow_bundle_max_bytes: size(
                "PYOCO_WORKFLOW_BUNDLE_MAX_BYTES",
                d.workflow_bundle_max_bytes,
            )?,
            spawn_requires_approval: boolean(
                "PYOCO_SPAWN_REQUIRES_APPROVAL",
                d.spawn_requires_approval,
            )?,
            spawn_max_child_runs: int("PYOCO_SPAWN_MAX_CHILD_RUNS", d.spawn_max_child_runs)?,
            spawn_max_parallel_child_runs: int(
                "PYOCO_SPAWN_MAX_PARALLEL_CHILD_RUNS",
                d.spawn_max_parallel_child_runs,
            )?,
            spawn_child_tag: s("PYOCO_SPAWN_CHILD_TAG", ""),
            spawn_timeout: secs("PYOCO_SPAWN_TIMEOUT_SEC", d.spawn_timeout)?,
            spawn_poll_interval: secs("PYOCO_SPAWN_POLL_INTERVAL_SEC", d.spawn_poll_interval)?,
            dashboard_lang,
            python: s("PYOCO_PYTHON", &d.python),
            log_level: {
                let level = process_only("PYOCO_LOG_LEVEL")
                    .unwrap_or("INFO")
                    .trim()
                    .to_string();
                let known = [
                    "TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "CRITICAL",
                ];
                if !known.contains(&level.to_ascii_uppercase().as_str()) {
                    return Err(invalid(
                        "PYOCO_LOG_LEVEL",
                        &level,
                        "expected DEBUG, INFO, WARNING or ERROR",
                    ));
                }
                level
            },
            log_format,
            log_utc: process_bool("PYOCO_LOG_UTC", true)?,
            log_include_traceback: process_bool("PYOCO_LOG_INCLUDE_TRACEBACK", true)?,
        };
        config.validate()?;
        Ok(config)
    }

    /// Cross-field checks and name checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.consumer_max_deliver == 0 || self.consumer_max_deliver < -1 {
            return Err(invalid(
                "PYOCO_CONSUMER_MAX_DELIVER",
                &self.consumer_max_deliver.to_string(),
                "expected a positive number (or -1 for unlimited)",
            ));
        }
        if self.consumer_max_ack_pending == 0 || self.consumer_max_ack_pending < -1 {
            return Err(invalid(
                "PYOCO_CONSUMER_MAX_ACK_PENDING",
                &self.consumer_max_ack_pending.to_string(),
                "expected a positive number (or -1 for unlimited)",
            ));
        }
        if self.consumer_ack_wait < Duration::from_millis(100) {
            return Err(invalid(
                "PYOCO_CONSUMER_ACK_WAIT_SEC",
                &self.consumer_ack_wait.as_secs_f64().to_string(),
                "must be at least 0.1 seconds",
            ));
        }
        for (name, value) in [
            ("PYOCO_RUNS_KV_BUCKET", &self.runs_kv_bucket),
            ("PYOCO_WORKERS_KV_BUCKET", &self.workers_kv_bucket),
            (
                "PYOCO_YAML_SCHEDULES_KV_BUCKET",
                &self.yaml_schedules_kv_bucket,
            ),
            (
                "PYOCO_WORKFLOW_BUNDLES_KV_BUCKET",
                &self.workflow_bundles_kv_bucket,
            ),
            (
                "PYOCO_RUN_RELATIONS_KV_BUCKET",
                &self.run_relations_kv_bucket,
            ),
            ("PYOCO_TASK_CACHE_KV_BUCKET", &self.task_cache_kv_bucket),
            (
                "PYOCO_CIRCUIT_BREAKERS_KV_BUCKET",
                &self.circuit_breakers_kv_bucket,
            ),
            ("PYOCO_AUTH_KV_BUCKET", &self.auth_kv_bucket),
            (
                "PYOCO_WHEEL_OBJECT_STORE_BUCKET",
                &self.wheel_object_store_bucket,
            ),
            (
                "PYOCO_WHEEL_HISTORY_KV_BUCKET",
                &self.wheel_history_kv_bucket,
            ),
            ("PYOCO_DLQ_STREAM", &self.dlq_stream),
        ] {
            if value.is_empty()
                || !value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(invalid(
                    name,
                    value,
                    "only letters, digits, '_' and '-' are allowed",
                ));
            }
        }
        for (name, value) in [
            ("PYOCO_WORK_SUBJECT_PREFIX", &self.work_subject_prefix),
            ("PYOCO_DLQ_SUBJECT_PREFIX", &self.dlq_subject_prefix),
        ] {
            if value.is_empty()
                || value.contains(['*', '>', ' '])
                || value.starts_with('.')
                || value.ends_with('.')
            {
                return Err(invalid(
                    name,
                    value,
                    "expected a subject prefix such as pyoco.work",
                ));
            }
        }
        Ok(())
    }

    /// The in-progress ack interval actually used: kept below the consumer's ack wait, as the
    /// original does, so a long task never outlives its lease.
    pub fn effective_ack_progress_interval(&self) -> Option<Duration> {
        if self.ack_progress_interval.is_zero() {
            return None;
        }
        if self.ack_progress_interval >= self.consumer_ack_wait {
            return Some((self.consumer_ack_wait / 2).max(Duration::from_millis(50)));
        }
        Some(self.ack_progress_interval)
    }
}

fn nonempty(v: Option<&String>) -> Option<&str> {
    v.map(String::as_str).filter(|s| !s.trim().is_empty())
}

fn invalid(name: &str, value: &str, reason: &str) -> ConfigError {
    ConfigError {
        name: name.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

fn parse_secs(name: &str, v: &str) -> Result<Duration, ConfigError> {
    let f: f64 = v
        .trim()
        .parse()
        .map_err(|_| invalid(name, v, "expected a number of seconds"))?;
    if !f.is_finite() || f < 0.0 {
        return Err(invalid(
            name,
            v,
            "expected a non-negative number of seconds",
        ));
    }
    Ok(Duration::from_secs_f64(f))
}

fn parse_int(name: &str, v: &str) -> Result<i64, ConfigError> {
    v.trim()
        .parse()
        .map_err(|_| invalid(name, v, "expected a whole number"))
}

fn parse_bool(name: &str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(invalid(
            name,
            v,
            "expected true/false, yes/no, on/off or 1/0",
        )),
    }
}

fn expand_home(path: &str, home: Option<&String>) -> PathBuf {
    match (path.strip_prefix("~/"), home) {
        (Some(rest), Some(home)) => Path::new(home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// Reads a `.env` file with the original's rules; a missing or unreadable file is empty.
fn read_dotenv(path: &Path) -> HashMap<String, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_dotenv(&text),
        Err(_) => HashMap::new(),
    }
}

/// `KEY=VALUE` lines; `export ` prefix, `#` comments, quotes, ` #` trailing comments.
pub fn parse_dotenv(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        let mut chars = key.chars();
        let valid_key = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_key {
            continue;
        }
        let value = value.trim();
        let value = if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
            unescape(&value[1..value.len() - 1])
        } else if value.len() >= 2 && value.starts_with('\'') && value.ends_with('\'') {
            value[1..value.len() - 1].to_string()
        } else {
            match value.find(" #") {
                Some(i) => value[..i].trim_end().to_string(),
                None => value.to_string(),
            }
        };
        out.insert(key.to_string(), value);
    }
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        let mut m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        m.insert("PYOCO_LOAD_DOTENV".into(), "0".into());
        m
    }

    #[test]
    fn defaults_match_the_original() {
        let c = Config::from_sources(&env(&[])).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.nats_url, "nats://127.0.0.1:4222");
        assert_eq!(c.consumer_max_deliver, 20);
        assert_eq!(c.max_run_snapshot_bytes, 262_144);
    }

    #[test]
    fn invalid_value_names_the_variable() {
        let err =
            Config::from_sources(&env(&[("PYOCO_CONSUMER_MAX_DELIVER", "lots")])).unwrap_err();
        assert_eq!(err.name, "PYOCO_CONSUMER_MAX_DELIVER");
        assert!(err.to_string().contains("PYOCO_CONSUMER_MAX_DELIVER"));
        let err = Config::from_sources(&env(&[("PYOCO_DEFAULT_TAG", "a.b")])).unwrap_err();
        assert_eq!(err.name, "PYOCO_DEFAULT_TAG");
        let err = Config::from_sources(&env(&[("PYOCO_WHEEL_SYNC_ENABLED", "maybe")])).unwrap_err();
        assert_eq!(err.name, "PYOCO_WHEEL_SYNC_ENABLED");
        for (name, value) in [
            ("PYOCO_MAX_RUN_SNAPSHOT_BYTES", "-1"),
            ("PYOCO_CONSUMER_MAX_ACK_PENDING", "0"),
            ("PYOCO_LOG_LEVEL", "loud"),
            ("PYOCO_RUN_HEARTBEAT_INTERVAL_SEC", "-2"),
        ] {
            assert_eq!(
                Config::from_sources(&env(&[(name, value)]))
                    .unwrap_err()
                    .name,
                name
            );
        }
    }

    #[test]
    fn empty_values_mean_default_and_env_beats_dotenv() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("my.env");
        std::fs::write(
            &file,
            "# comment\nexport PYOCO_DEFAULT_TAG=gpu\nPYOCO_NATS_URL=\"nats://x:1\"\nPYOCO_DLQ_MAX_MSGS=5 # five\n",
        )
        .unwrap();
        let mut e = HashMap::new();
        e.insert("PYOCO_ENV_FILE".to_string(), file.display().to_string());
        e.insert("PYOCO_DLQ_MAX_MSGS".to_string(), "".to_string());
        e.insert("PYOCO_NATS_URL".to_string(), "nats://y:2".to_string());
        let c = Config::from_sources(&e).unwrap();
        assert_eq!(c.default_tag, "gpu");
        assert_eq!(c.nats_url, "nats://y:2");
        assert_eq!(c.dlq_max_msgs, 5);
    }

    #[test]
    fn ack_progress_stays_below_ack_wait() {
        let c = Config::from_sources(&env(&[("PYOCO_CONSUMER_ACK_WAIT_SEC", "2")])).unwrap();
        assert_eq!(
            c.effective_ack_progress_interval(),
            Some(Duration::from_secs(1))
        );
        let c = Config::from_sources(&env(&[("PYOCO_ACK_PROGRESS_INTERVAL_SEC", "0")])).unwrap();
        assert_eq!(c.effective_ack_progress_interval(), None);
    }
}
