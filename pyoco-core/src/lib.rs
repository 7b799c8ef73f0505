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
//! - [`config`]: [`Config::from_env`], every `PYOCO_*` variable (+ `.env`), validated.
//! - [`model`]: the wire documents — [`RunSnapshot`], [`Job`], [`WorkerRecord`], DLQ
//!   messages — and the run status transition table.
//! - [`flow`]: the graph language parser, flow.yaml validation, the task [`Registry`]
//!   (native Rust tasks and built-in `pyoco:*` tasks) and the DAG engine.
//! - [`store`]: the only module that talks to NATS — names, [`ensure_resources`], run
//!   snapshots with compare-and-set, the work queue, the worker registry, the DLQ.
//! - [`client`]: [`NatsClient`] (submit and read over NATS) and, with feature `client`,
//!   [`HttpClient`] for the gateway.
//! - [`worker`]: [`Worker`] — consumers per tag, job processing, heartbeats, shutdown.
//! - [`gateway`] (feature `gateway`): the HTTP API — `router(state)` and `serve(...)`.
//! - [`testkit`] (feature `testkit`): a real nats-server per test.
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

pub mod client;
pub mod config;
pub mod devnats;
pub mod error;
pub mod flow;
#[cfg(feature = "cli")]
pub mod logging;
pub mod model;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;
#[cfg(feature = "worker")]
pub mod worker;

#[cfg(feature = "gateway")]
pub mod gateway;

pub use async_nats;
pub use client::NatsClient;
#[cfg(feature = "client")]
pub use client::http::HttpClient;
pub use config::Config;
pub use error::Error;
pub use flow::tasks::{Registry, TaskCall, TaskError};
pub use flow::yaml::{FlowSpec, parse_flow_yaml};
pub use model::{Job, RunSnapshot, RunStatus, TaskRecord, TaskState, WorkerRecord};
pub use store::{Store, ensure_resources};
#[cfg(feature = "worker")]
pub use worker::Worker;
