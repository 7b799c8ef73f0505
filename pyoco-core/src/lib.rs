//! # pyoco — a distributed workflow runner on NATS JetStream
//!
//! A user submits a run (a flow name plus params, or a `flow.yaml`) over HTTP or from Rust.
//! The submitter writes a PENDING snapshot into the `pyoco_runs` KV bucket and publishes a
//! job on `pyoco.work.<tag>`; a [`Worker`] serving that tag pulls it, runs the flow's DAG,
//! keeps the snapshot current with compare-and-set writes, and acks only after the terminal
//! snapshot is written. Clients read and list runs through the gateway. Everything is
//! wire-compatible with the Python pyoco-server.
//!
//! ## A tour of the modules
//!
//! - [`config`]: [`Config::from_env`], every `PYOCO_*` variable (+ `.env`), validated; one
//!   table declares each variable's field, default, parser and whether it is implemented yet.
//! - [`model`]: the wire documents — [`RunSnapshot`], [`Job`], [`WorkerRecord`], DLQ
//!   messages — and the rules on them as pure functions: run status transitions, the
//!   worker's effective state (DISCONNECTED), bundle runs' relation records and
//!   `result_summary` (`bundle`), one lenient decoder per document, `json`
//!   (reading Python's `NaN`, writing `json.dumps`' exact form), and `ident`, the one rule
//!   for every id that reaches a NATS subject or key.
//! - [`error_code`]: [`ErrorCode`], the stable `code` of every HTTP error answer, shared by
//!   the gateway, [`HttpClient`] and the CLI.
//! - [`flow`]: everything about running a flow, without I/O to NATS — the graph language
//!   (`graph`, `expr`), flow.yaml and bundle validation (`yaml`, `yaml::bundle`; loaded
//!   within node and depth budgets by `yaml_guard`) and task options (`policy`: retries, timeouts, fail policies, cache,
//!   circuit breaker), the task [`Registry`] (`tasks`: native Rust tasks, the built-in
//!   `pyoco:*` tasks in `builtins`, Python callables run by `python`), the embedding API
//!   (`embed`: typed tasks, flows built in Rust), and the executors (`engine` for DAGs, with
//!   its pure scheduling bookkeeping in `engine::schedule`, `{{...}}` templates rendered per
//!   attempt and `on_error` handlers; `control` for switch/repeat/foreach/until); `plan`, a
//!   flow's execution plan for dry runs.
//! - [`store`]: the only module that talks to NATS — names ([`store::Layout`]),
//!   [`ensure_resources`], run snapshots with compare-and-set, the work queue, the worker
//!   registry, the DLQ, wheels, the flow registry, API key records, bundle run relations,
//!   nonces and idempotency keys; its errors say
//!   whether a retry can help.
//! - [`client`]: [`NatsClient`] (submit and read over NATS) and, with feature `client`,
//!   [`HttpClient`] for the gateway.
//! - [`auth`]: API keys in the original's format (PBKDF2 records) and HMAC request signing —
//!   pure parsing, hashing and verification; [`admin`]: the `admin api-key` commands.
//! - [`wheel`]: wheel file names, PEP 440 versions, archive inspection and the upload
//!   preflight (pure; used by the registry routes, the worker's wheel sync and the client).
//! - [`worker`]: [`Worker`] — consumers per tag, job processing (claim, progress, cancel
//!   watch, bundle spawn tasks, terminal write, each in its own file), heartbeats, delivery-limit advisories, its
//!   own metrics, graceful shutdown, wheel sync.
//! - [`gateway`] (feature `gateway`): the HTTP API — `router(state)` and `serve(...)`; one
//!   route table (`routes`) builds the router and the OpenAPI paths; requests are read
//!   FastAPI's way in `extract` (query, JSON, multipart); the run list index fed by a KV
//!   watch, SSE watch and synchronous submits (`?wait_sec=`), the flow registry routes,
//!   cancel, bundles and approvals, workers, metrics, health (a readiness probe), OpenAPI,
//!   `/shutdown`, the operations routes (`stats`: counters fed by the same KV watch behind
//!   `/stats`, `/progress`, `/throughput`, `/logs`, `/results`); and the guards every non-public route passes (`signing` for HMAC, `auth`
//!   for API keys and tenants, `limits` for rates), `listener` (header timeout, connection
//!   cap) and `request_id` (ids, JSON 500s for panics).
//! - [`devnats`]: finding and starting a local nats-server; [`shutdown`]: SIGINT/SIGTERM and
//!   signalling child processes; [`backoff`]: the one jittered retry schedule; `cli` and
//!   `logging` (feature `cli`): what the binaries share (flags, connect-retry, log set-up);
//!   `supervise` (feature `cli`): systemd readiness, stopping and watchdog messages;
//!   [`store::trace_context`]: the W3C `traceparent` of job messages that joins a submit, its run
//!   and its tasks into one OpenTelemetry trace (feature `otel`; the binaries' OTLP exporter
//!   is set up in `logging::otlp`).
//! - `testkit` (feature `testkit`): a real nats-server per test, the shared `Stack`
//!   (nats-server + in-process gateway and worker), wait helpers and a child-process guard.
//!
//! ```no_run
//! use pyoco::{Config, NatsClient, Registry, Worker};
//! # async fn demo() -> Result<(), pyoco::Error> {
//! let config = Config::from_env()?;
//! let worker = Worker::connect(config.clone(), Registry::with_builtins(), "w1", &["default".into()]).await?;
//! let client = NatsClient::connect(config).await?;
//! let run_id = client.submit_yaml(b"flow: {graph: a}\ntasks: {a: {callable: 'pyoco:echo'}}", "demo", None).await?;
//! # let _ = (worker, run_id); Ok(()) }
//! ```

pub mod admin;
pub mod auth;
pub mod backoff;
#[cfg(feature = "cli")]
pub mod cli;
pub mod client;
pub mod config;
pub mod devnats;
pub mod error;
pub mod error_code;
pub mod flow;
#[cfg(feature = "cli")]
pub mod logging;
pub mod model;
#[cfg(any(feature = "worker", feature = "gateway"))]
mod prom_upkeep;
pub mod shutdown;
pub mod store;
#[cfg(feature = "cli")]
pub mod supervise;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod wheel;
#[cfg(feature = "worker")]
pub mod worker;

#[cfg(feature = "gateway")]
pub mod gateway;

pub use client::NatsClient;
#[cfg(feature = "client")]
pub use client::http::HttpClient;
pub use config::Config;
pub use error::Error;
pub use error_code::ErrorCode;
pub use flow::tasks::{Registry, TaskCall, TaskError};
pub use flow::yaml::{FlowSpec, parse_flow_yaml};
pub use model::{Job, RunSnapshot, RunStatus, TaskRecord, TaskState, WorkerRecord};
pub use store::{Store, ensure_resources};
#[cfg(feature = "worker")]
pub use worker::Worker;
