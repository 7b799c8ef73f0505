//! Configuration: every `PYOCO_*` variable of pyoco-server, with the same names and defaults.
//!
//! Precedence is defaults < `.env` file < process environment < command-line flags (the
//! binaries apply flags on top of [`Config::from_env`]). Unlike the original, a value that does
//! not parse is an error naming the variable instead of a silent fallback to the default.
//!
//! Each variable is declared once, in the `config_table!` invocation below: its field, type,
//! default, parser, where it may come from and whether pyoco acts on it yet. The struct,
//! [`Default`], the parsing in [`Config::from_sources`], [`VARIABLES`], [`VARS`] and
//! [`Config::unimplemented_in_use`] are all generated from that one table.

mod families;
mod parse;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

pub use families::{SqlUrls, VARIABLE_FAMILIES, is_connection_name, sql_url_variable};
pub use parse::parse_dotenv;
use parse::{invalid, nonempty};

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
#[non_exhaustive]
pub enum AuthMode {
    None,
    ApiKey,
}

/// `PYOCO_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFormat {
    Json,
    Text,
}

/// Where a variable's value may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// The process environment, else the `.env` file.
    Any,
    /// The process environment only (the original never reads these from `.env`).
    ProcessOnly,
}

/// Whether pyoco acts on a variable yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    Implemented,
    /// Accepted and validated for compatibility with the original, but no pyoco code acts on
    /// it yet; setting it logs a warning at start-up ([`Config::unimplemented_in_use`]).
    Reserved,
}

/// One row of the variable table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Var {
    pub name: &'static str,
    /// The `Config` field it sets.
    pub field: &'static str,
    pub source: Source,
    pub status: Status,
    /// What it means (the field's doc comment).
    pub doc: &'static str,
}

/// The variables that only decide where values come from (not `Config` fields).
pub const SOURCE_VARIABLES: &[&str] = &["PYOCO_LOAD_DOTENV", "PYOCO_ENV_FILE"];

macro_rules! config_table {
    (
        fixed {
            $( $(#[doc = $fdoc:literal])+ $ffield:ident: $fty:ty = $fdefault:expr; )*
        }
        vars {
            $(
                $(#[doc = $doc:literal])+
                $env:literal => $field:ident: $ty:ty = $default:expr,
                    $parse:path, $source:ident, $status:ident;
            )*
        }
    ) => {
        /// Every setting of gateway, worker and client. Field names follow the variables.
        #[derive(Debug, Clone, PartialEq)]
        pub struct Config {
            $( $(#[doc = $fdoc])+ pub $ffield: $fty, )*
            $( $(#[doc = $doc])+ #[doc = concat!("\n\n`", $env, "`")] pub $field: $ty, )*
        }

        impl Default for Config {
            fn default() -> Self {
                Config {
                    $( $ffield: $fdefault, )*
                    $( $field: $default, )*
                }
            }
        }

        /// Every variable of the table, in declaration order.
        pub const VARS: &[Var] = &[
            $( Var {
                name: $env,
                field: stringify!($field),
                source: Source::$source,
                status: Status::$status,
                doc: concat!($($doc),+),
            }, )*
        ];

        /// Every variable [`Config::from_env`] reads (plus the process-only `.env` switches),
        /// for documentation and the spec test.
        pub const VARIABLES: &[&str] = &[$($env,)* "PYOCO_LOAD_DOTENV", "PYOCO_ENV_FILE"];

        impl Config {
    /// The YAML budget of this deployment (`PYOCO_YAML_MAX_NODES`, depth 64).
    pub fn yaml_limits(&self) -> crate::flow::yaml_guard::YamlLimits {
        crate::flow::yaml_guard::YamlLimits {
            max_nodes: self.yaml_max_nodes,
            ..Default::default()
        }
    }

            fn build<'a>(
                read: &dyn Fn(Source, &str) -> Option<&'a str>,
            ) -> Result<Config, ConfigError> {
                let d = Config::default();
                let config = Config {
                    $( $ffield: d.$ffield, )*
                    $( $field: match read(Source::$source, $env) {
                        Some(v) => $parse($env, v)?,
                        None => d.$field,
                    }, )*
                };
                config.validate()?;
                Ok(config)
            }

            /// The reserved variables ([`Status::Reserved`]) whose value differs from the
            /// default: accepted, but pyoco does not act on them yet. The binaries log each
            /// once at start-up.
            pub fn unimplemented_in_use(&self) -> Vec<&'static str> {
                let d = Config::default();
                let mut out = Vec::new();
                $(
                    if Status::$status == Status::Reserved && self.$field != d.$field {
                        out.push($env);
                    }
                )*
                out
            }
        }
    };
}

config_table! {
    fixed {
        /// Name of the WorkQueue stream. Not configurable in the original; kept as a field so
        /// tests and deployments can prefix every NATS name.
        work_stream: String = "PYOCO_WORK".into();
        /// Durable consumer names are `<consumer_prefix>_<tag>` (not configurable either).
        consumer_prefix: String = "pyoco_workers".into();
        /// KV bucket of used HMAC request nonces (pyoco only), shared by every gateway.
        http_nonces_kv_bucket: String = "pyoco_http_nonces".into();
        /// KV bucket of `Idempotency-Key` reservations (pyoco only), shared by every gateway.
        idempotency_kv_bucket: String = "pyoco_idempotency".into();
        /// The `pyoco:sql` connections: the `PYOCO_SQL_<NAME>_URL` family (see
        /// [`VARIABLE_FAMILIES`]), read by [`Config::from_sources`] rather than the table.
        sql_urls: SqlUrls = SqlUrls::default();
    }
    vars {
        /// NATS server URL, or a comma-separated list of a cluster's URLs (tried in order).
        "PYOCO_NATS_URL" => nats_url: String = "nats://127.0.0.1:4222".into(),
            parse::nats_urls, Any, Implemented;
        /// Replicas of every stream and bucket pyoco creates (1 to 5; a NATS cluster).
        "PYOCO_JS_REPLICAS" => js_replicas: usize = 1, parse::replicas, Any, Implemented;
        /// Jobs go to `<prefix>.<tag>`; the work stream listens on `<prefix>.>`.
        "PYOCO_WORK_SUBJECT_PREFIX" => work_subject_prefix: String = "pyoco.work".into(),
            parse::string, Any, Implemented;
        /// Routing tag of a submission without one, and of a worker started without tags.
        "PYOCO_DEFAULT_TAG" => default_tag: String = "default".into(),
            parse::tag, Any, Implemented;
        /// KV bucket of run snapshots.
        "PYOCO_RUNS_KV_BUCKET" => runs_kv_bucket: String = "pyoco_runs".into(),
            parse::string, Any, Implemented;
        /// KV bucket of worker records.
        "PYOCO_WORKERS_KV_BUCKET" => workers_kv_bucket: String = "pyoco_workers".into(),
            parse::string, Any, Implemented;
        /// TTL of the worker bucket. A day, not the original's 15 s: records must outlive the
        /// disconnect timeout or DISCONNECTED never shows; dead workers go after a day.
        "PYOCO_WORKERS_KV_TTL_SEC" => workers_kv_ttl: Duration = Duration::from_secs(86_400),
            parse::secs, Any, Implemented;
        /// KV bucket of YAML schedules.
        "PYOCO_YAML_SCHEDULES_KV_BUCKET" => yaml_schedules_kv_bucket: String =
            "pyoco_yaml_schedules".into(), parse::string, Any, Implemented;
        /// KV bucket of workflow bundles.
        "PYOCO_WORKFLOW_BUNDLES_KV_BUCKET" => workflow_bundles_kv_bucket: String =
            "pyoco_workflow_bundles".into(), parse::string, Any, Implemented;
        /// KV bucket of parent/child run relations.
        "PYOCO_RUN_RELATIONS_KV_BUCKET" => run_relations_kv_bucket: String =
            "pyoco_run_relations".into(), parse::string, Any, Implemented;
        /// Task results cached with `cache_ttl_sec` (our addition).
        "PYOCO_TASK_CACHE_KV_BUCKET" => task_cache_kv_bucket: String =
            "pyoco_task_cache".into(), parse::string, Any, Implemented;
        /// The flow registry: versioned flow.yaml definitions by name (our addition).
        "PYOCO_FLOWS_KV_BUCKET" => flows_kv_bucket: String =
            "pyoco_flows".into(), parse::string, Any, Implemented;
        /// Circuit breaker state per callable (our addition).
        "PYOCO_CIRCUIT_BREAKERS_KV_BUCKET" => circuit_breakers_kv_bucket: String =
            "pyoco_circuit_breakers".into(), parse::string, Any, Implemented;
        /// How the gateway authenticates requests.
        "PYOCO_HTTP_AUTH_MODE" => http_auth_mode: AuthMode = AuthMode::None,
            parse::auth_mode, Any, Implemented;
        /// Request header carrying the API key.
        "PYOCO_HTTP_API_KEY_HEADER" => http_api_key_header: String = "X-API-Key".into(),
            parse::string, Any, Implemented;
        /// Requests per minute the gateway accepts in all (0: no limit); more get 429.
        "PYOCO_HTTP_RATE_LIMIT_RPM" => http_rate_limit_rpm: usize = 0,
            parse::size, Any, Implemented;
        /// Submits (`POST /runs`, `POST /runs/yaml`) per minute in all (0: no limit).
        "PYOCO_HTTP_SUBMIT_RPM" => http_submit_rpm: usize = 0, parse::size, Any, Implemented;
        /// Requests per minute of one API key (0: no limit).
        "PYOCO_HTTP_TENANT_RPM" => http_tenant_rpm: usize = 0, parse::size, Any, Implemented;
        /// Turns on HMAC-SHA256 request signing (spec/auth.md): every non-public route then
        /// needs `X-Pyoco-Ts`, `X-Pyoco-Nonce` and `X-Pyoco-Signature`.
        "PYOCO_HTTP_HMAC_SECRET" => http_hmac_secret: Option<String> = None,
            parse::optional_string, Any, Implemented;
        /// How far a signed request's timestamp may be from the gateway's clock.
        "PYOCO_HTTP_HMAC_TTL_SEC" => http_hmac_ttl: Duration = Duration::from_secs(60),
            parse::secs_at_least_100ms, Any, Implemented;
        /// How long an `Idempotency-Key` maps to the run it created (at bucket creation).
        "PYOCO_IDEMPOTENCY_TTL_SEC" => idempotency_ttl: Duration = Duration::from_secs(86_400),
            parse::secs_at_least_100ms, Any, Implemented;
        /// Without API keys, `POST /shutdown` is refused unless this is true (with keys it needs
        /// an admin key).
        "PYOCO_HTTP_ALLOW_SHUTDOWN" => http_allow_shutdown: bool = false,
            parse::boolean, Any, Implemented;
        /// With API keys on, `GET /metrics` alone stays open (for scrapers).
        "PYOCO_METRICS_PUBLIC" => metrics_public: bool = false,
            parse::boolean, Any, Implemented;
        /// KV bucket of API keys.
        "PYOCO_AUTH_KV_BUCKET" => auth_kv_bucket: String = "pyoco_auth".into(),
            parse::string, Any, Implemented;
        /// Secret mixed into API key hashes.
        "PYOCO_AUTH_PEPPER" => auth_pepper: Option<String> = None,
            parse::optional_string, Any, Implemented;
        /// How often a running run's snapshot is rewritten (and a cancel noticed).
        "PYOCO_RUN_HEARTBEAT_INTERVAL_SEC" => run_heartbeat_interval: Duration =
            Duration::from_secs(1), parse::secs_at_least_100ms, Any, Implemented;
        /// How often the worker record is rewritten.
        "PYOCO_WORKER_HEARTBEAT_INTERVAL_SEC" => worker_heartbeat_interval: Duration =
            Duration::from_secs(5), parse::secs_at_least_100ms, Any, Implemented;
        /// A RUNNING/IDLE worker silent for longer is shown DISCONNECTED.
        "PYOCO_WORKER_DISCONNECT_TIMEOUT_SEC" => worker_disconnect_timeout: Duration =
            Duration::from_secs(20), parse::secs, Any, Implemented;
        /// How long a cancelled task may clean up before it is killed.
        "PYOCO_CANCEL_GRACE_PERIOD_SEC" => cancel_grace_period: Duration =
            Duration::from_secs(30), parse::secs, Any, Implemented;
        /// Interval of in-progress acks. Zero disables them.
        "PYOCO_ACK_PROGRESS_INTERVAL_SEC" => ack_progress_interval: Duration =
            Duration::from_secs(10), parse::secs, Any, Implemented;
        /// Consumer ack wait.
        "PYOCO_CONSUMER_ACK_WAIT_SEC" => consumer_ack_wait: Duration = Duration::from_secs(30),
            parse::secs, Any, Implemented;
        /// Consumer delivery limit (-1: unlimited).
        "PYOCO_CONSUMER_MAX_DELIVER" => consumer_max_deliver: i64 = 20,
            parse::int, Any, Implemented;
        /// Consumer max ack pending (-1: unlimited).
        "PYOCO_CONSUMER_MAX_ACK_PENDING" => consumer_max_ack_pending: i64 = 200,
            parse::int, Any, Implemented;
        /// Name of the dead-letter stream.
        "PYOCO_DLQ_STREAM" => dlq_stream: String = "PYOCO_DLQ".into(),
            parse::string, Any, Implemented;
        /// DLQ messages go to `<prefix>.<tag>`.
        "PYOCO_DLQ_SUBJECT_PREFIX" => dlq_subject_prefix: String = "pyoco.dlq".into(),
            parse::string, Any, Implemented;
        /// DLQ stream max age (at creation).
        "PYOCO_DLQ_MAX_AGE_SEC" => dlq_max_age: Duration = Duration::from_secs(604_800),
            parse::secs, Any, Implemented;
        /// DLQ stream max messages (at creation).
        "PYOCO_DLQ_MAX_MSGS" => dlq_max_msgs: i64 = 100_000, parse::int, Any, Implemented;
        /// DLQ stream max bytes (at creation).
        "PYOCO_DLQ_MAX_BYTES" => dlq_max_bytes: i64 = 536_870_912,
            parse::int, Any, Implemented;
        /// Dead-letter task failures (`execution_error`).
        "PYOCO_DLQ_PUBLISH_EXECUTION_ERROR" => dlq_publish_execution_error: bool = true,
            parse::boolean, Any, Implemented;
        /// Snapshots larger than this are written without `task_records`. Zero disables
        /// snapshot compaction.
        "PYOCO_MAX_RUN_SNAPSHOT_BYTES" => max_run_snapshot_bytes: usize = 262_144,
            parse::size, Any, Implemented;
        /// Object store of the wheel registry.
        "PYOCO_WHEEL_OBJECT_STORE_BUCKET" => wheel_object_store_bucket: String =
            "pyoco_wheels".into(), parse::string, Any, Implemented;
        /// Largest accepted wheel upload, and the max size of the wheel object store.
        "PYOCO_WHEEL_MAX_BYTES" => wheel_max_bytes: u64 = 536_870_912,
            parse::size_u64, Any, Implemented;
        /// Workers install wheels from the registry.
        "PYOCO_WHEEL_SYNC_ENABLED" => wheel_sync_enabled: bool = false,
            parse::boolean, Any, Implemented;
        /// Where synced wheels and their manifest are kept.
        "PYOCO_WHEEL_SYNC_DIR" => wheel_sync_dir: PathBuf = PathBuf::from(".pyoco/wheels"),
            parse::path, Any, Implemented;
        /// Time between wheel syncs.
        "PYOCO_WHEEL_SYNC_INTERVAL_SEC" => wheel_sync_interval: Duration =
            Duration::from_secs(10), parse::secs, Any, Implemented;
        /// Time limit of one `pip install`/`pip uninstall`.
        "PYOCO_WHEEL_INSTALL_TIMEOUT_SEC" => wheel_install_timeout: Duration =
            Duration::from_secs(180), parse::secs, Any, Implemented;
        /// KV bucket of wheel upload/delete events.
        "PYOCO_WHEEL_HISTORY_KV_BUCKET" => wheel_history_kv_bucket: String =
            "pyoco_wheel_history".into(), parse::string, Any, Implemented;
        /// TTL of the wheel history bucket (at creation).
        "PYOCO_WHEEL_HISTORY_TTL_SEC" => wheel_history_ttl: Duration =
            Duration::from_secs(7_776_000), parse::secs, Any, Implemented;
        /// Largest accepted `flow.yaml` upload.
        "PYOCO_WORKFLOW_YAML_MAX_BYTES" => workflow_yaml_max_bytes: usize = 262_144,
            parse::size, Any, Implemented;
        /// Most nodes a YAML document may have once anchors and aliases are expanded (flow
        /// uploads, the worker's flows directory); more is refused (`yaml_too_large`).
        "PYOCO_YAML_MAX_NODES" => yaml_max_nodes: usize = 100_000,
            parse::size, Any, Implemented;
        /// A client must send a request's headers within this time, and a keep-alive
        /// connection idle this long is closed (slow and parked clients cannot pile up).
        "PYOCO_HTTP_HEADER_TIMEOUT_SEC" => http_header_timeout: Duration =
            Duration::from_secs(10), parse::secs_at_least_100ms, Any, Implemented;
        /// Most HTTP connections open at once; 0 means three quarters of the file-descriptor
        /// limit. Connections past it are closed at once.
        "PYOCO_HTTP_MAX_CONNECTIONS" => http_max_connections: usize = 0,
            parse::size, Any, Implemented;
        /// Most SSE watches (`GET /runs/{id}/watch`) open at once on one gateway; past it the
        /// answer is 429 with `Retry-After`. All of them share one KV watch.
        "PYOCO_SSE_MAX_WATCHERS" => sse_max_watchers: usize = 10_000,
            parse::size, Any, Implemented;
        /// Longest a synchronous submit (`POST /runs?wait_sec=N`) holds its request open
        /// waiting for the run to end; larger `wait_sec` values are capped to it (0: never wait).
        "PYOCO_SYNC_WAIT_MAX_SEC" => sync_wait_max: Duration = Duration::from_secs(60),
            parse::secs, Any, Implemented;
        /// A run still PENDING this long after its last write, whose job is not in the work
        /// stream, is queued again by the gateway's orphan sweep (0 turns the sweep off).
        "PYOCO_ORPHAN_AFTER_SEC" => orphan_after: Duration = Duration::from_secs(30),
            parse::secs, Any, Implemented;
        /// Finished runs (COMPLETED, FAILED, CANCELLED) last written longer ago than this are
        /// removed from the runs bucket by the gateways' retention sweep (unset or 0: kept
        /// for ever, as the original). Runs that are not finished are never removed.
        "PYOCO_RUNS_RETENTION_SEC" => runs_retention: Duration = Duration::ZERO,
            parse::secs, Any, Implemented;
        /// Least time between two checkpoints of the run index written by one gateway (0: no
        /// checkpoint is written or read, every start replays the whole runs bucket).
        "PYOCO_INDEX_CHECKPOINT_SEC" => index_checkpoint_interval: Duration =
            Duration::from_secs(60), parse::secs, Any, Implemented;
        /// Runs the index must hold, and writes since the last checkpoint it must have seen,
        /// before a gateway writes a checkpoint (smaller indexes replay in well under 0.1 s).
        "PYOCO_INDEX_CHECKPOINT_MIN_RUNS" => index_checkpoint_min_runs: usize = 10_000,
            parse::size, Any, Implemented;
        /// Schedule dispatch interval.
        "PYOCO_SCHEDULE_POLL_INTERVAL_SEC" => schedule_poll_interval: Duration =
            Duration::from_secs(1), parse::secs_at_least_200ms, Any, Implemented;
        /// Largest accepted bundle upload.
        "PYOCO_WORKFLOW_BUNDLE_MAX_BYTES" => workflow_bundle_max_bytes: usize = 262_144,
            parse::size, Any, Implemented;
        /// Bundle runs wait for approval.
        "PYOCO_SPAWN_REQUIRES_APPROVAL" => spawn_requires_approval: bool = true,
            parse::boolean, Any, Implemented;
        /// Child runs per bundle run execution (0 or less: no limit).
        "PYOCO_SPAWN_MAX_CHILD_RUNS" => spawn_max_child_runs: i64 = 100,
            parse::int, Any, Implemented;
        /// Child runs of one parent running at once; further spawns wait (0 or less: no
        /// limit).
        "PYOCO_SPAWN_MAX_PARALLEL_CHILD_RUNS" => spawn_max_parallel_child_runs: i64 = 8,
            parse::int, Any, Implemented;
        /// Routing tag of child runs (empty: the parent's tag).
        "PYOCO_SPAWN_CHILD_TAG" => spawn_child_tag: String = String::new(),
            parse::string, Any, Implemented;
        /// How long a parent waits for a child (0: for ever).
        "PYOCO_SPAWN_TIMEOUT_SEC" => spawn_timeout: Duration = Duration::from_secs(3600),
            parse::secs, Any, Implemented;
        /// How often the original's parent polls its children (read, unused: ours follow
        /// the children's snapshot writes).
        "PYOCO_SPAWN_POLL_INTERVAL_SEC" => spawn_poll_interval: Duration =
            Duration::from_millis(200), parse::secs, Any, Reserved;
        /// Dashboard language: a value starting with `ja` or `en`; anything else (`auto`)
        /// follows the locale variables.
        "PYOCO_DASHBOARD_LANG" => dashboard_lang: String = "auto".into(),
            parse::dashboard_lang, Any, Implemented;
        /// Interpreter of the Python task runner (our addition).
        "PYOCO_PYTHON" => python: String = "python3".into(), parse::string, Any, Implemented;
        /// Address-space limit of each Python runner in MiB (0: unlimited): a
        /// `module:function` task that allocates past it fails with a MemoryError.
        "PYOCO_PYTHON_MEMORY_MB" => python_memory_mb: u64 = 0, parse::size_u64, Any, Implemented;
        /// Run `pyoco:python` inline scripts in the bubblewrap sandbox (`off`: without it).
        "PYOCO_SCRIPT_SANDBOX" => script_sandbox: bool = true, parse::boolean, Any, Implemented;
        /// Python runner processes of a worker at most (busy or kept idle for reuse); 0 sizes
        /// it from the cores: twice their number, at least 4. A Python task waits for a free
        /// runner.
        "PYOCO_PYTHON_RUNNERS" => python_runners: usize = 0, parse::size, Any, Implemented;
        /// Seconds after a run's terminal write at which the worker reads the run again and
        /// restores its terminal snapshot if a writer without compare-and-set (the original
        /// Python gateway's cancel) put a stale one over it; 0 turns the check off. Every
        /// pyoco writer uses compare-and-set, so only deployments that share the runs bucket
        /// with the original gateway need it (e.g. 0.5).
        "PYOCO_TERMINAL_GUARD_SEC" => terminal_guard: Duration = Duration::ZERO,
            parse::secs, Any, Implemented;
        /// Jobs a worker processes at once (`pyoco-worker --concurrency` overrides it); 0 sizes
        /// it from the cores: 32 per core, at most the consumer's max ack pending. `1` is
        /// the original's one run at a time.
        "PYOCO_WORKER_CONCURRENCY" => worker_concurrency: usize = 0, parse::size, Any, Implemented;
        /// Log level (`RUST_LOG` overrides it).
        "PYOCO_LOG_LEVEL" => log_level: String = "INFO".into(),
            parse::log_level, ProcessOnly, Implemented;
        /// `json` (one JSON object per line) or `text`.
        "PYOCO_LOG_FORMAT" => log_format: LogFormat = LogFormat::Json,
            parse::log_format, ProcessOnly, Implemented;
        /// Log timestamps in UTC (`false`: local time with its offset).
        "PYOCO_LOG_UTC" => log_utc: bool = true, parse::boolean, ProcessOnly, Implemented;
        /// Keep `traceback` fields (Python task tracebacks) in log lines.
        "PYOCO_LOG_INCLUDE_TRACEBACK" => log_include_traceback: bool = true,
            parse::boolean, ProcessOnly, Implemented;
    }
}

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
            Some(v) => parse::boolean("PYOCO_LOAD_DOTENV", v)?,
            None => true,
        };
        let dotenv = if load_dotenv {
            let file = nonempty(process.get("PYOCO_ENV_FILE")).unwrap_or(".env");
            parse::read_dotenv(&parse::expand_home(file, process.get("HOME")))
        } else {
            HashMap::new()
        };
        let mut config = Config::build(&|source, name| {
            let from_process = nonempty(process.get(name));
            match source {
                Source::ProcessOnly => from_process,
                Source::Any => from_process.or_else(|| nonempty(dotenv.get(name))),
            }
        })?;
        config.sql_urls = SqlUrls::from_sources(process, &dotenv);
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

    /// Jobs a worker processes at once: `PYOCO_WORKER_CONCURRENCY`, or when it is 0, 32
    /// per core — never more than the consumer lets one worker hold unacknowledged.
    pub fn effective_worker_concurrency(&self) -> usize {
        let wanted = match self.worker_concurrency {
            0 => 32 * cores(),
            n => n,
        };
        match usize::try_from(self.consumer_max_ack_pending) {
            Ok(cap) if cap > 0 => wanted.min(cap),
            _ => wanted,
        }
        .max(1)
    }

    /// Python runner processes of a worker at most: `PYOCO_PYTHON_RUNNERS`, or when it is 0,
    /// two per core and at least 4 (tasks that wait on I/O still overlap on a small machine).
    pub fn effective_python_runners(&self) -> usize {
        match self.python_runners {
            0 => default_python_runners(),
            n => n,
        }
    }
}

/// Two Python runners per core, at least 4: what `PYOCO_PYTHON_RUNNERS=0` means.
pub(crate) fn default_python_runners() -> usize {
    (2 * cores()).max(4)
}

/// The cores this process may use (cgroup and affinity limits included).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests;
