//! Submit `examples/flows/hello.yaml` to a running gateway with [`pyoco::HttpClient`], follow
//! the run over Server-Sent Events with `watch_run`, print every task state change, and exit
//! 0 when the run COMPLETED, 1 otherwise.
//!
//! Start a gateway with a local nats-server and a worker in another terminal:
//!
//! ```sh
//! cargo run -p pyoco-gateway -- up --with-nats --with-worker --flows-dir examples/flows
//! ```
//!
//! (or `pyoco-gateway up --with-nats --with-worker --flows-dir examples/flows` with the binary
//! installed), then:
//!
//! ```sh
//! cargo run -p pyoco-example-submit-and-watch -- --server http://127.0.0.1:8000
//! ```
//!
//! `--server` defaults to `http://127.0.0.1:8000`; `--file PATH` submits another flow.yaml.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, bail};
use futures::StreamExt;
use pyoco::client::http::{HttpClient, WatchEvent, WatchOptions};
use serde_json::Value;

/// The flow, embedded so the example runs from any directory.
const HELLO_YAML: &str = include_str!("../../flows/hello.yaml");

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Parses `--server URL` and `--file PATH`.
fn args() -> anyhow::Result<(String, Option<String>)> {
    let mut server = "http://127.0.0.1:8000".to_string();
    let mut file = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--server" => server = it.next().context("--server needs a URL")?,
            "--file" => file = Some(it.next().context("--file needs a path")?),
            "-h" | "--help" => {
                println!("usage: pyoco-example-submit-and-watch [--server URL] [--file flow.yaml]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok((server, file))
}

/// Submits, watches, and tells whether the run COMPLETED.
async fn run() -> anyhow::Result<bool> {
    let (server, file) = args()?;
    let yaml = match &file {
        Some(path) => std::fs::read(path).with_context(|| format!("read {path}"))?,
        None => HELLO_YAML.as_bytes().to_vec(),
    };
    let client = HttpClient::new(&server)?;
    let submitted = client
        .submit_yaml(&yaml, "hello", None)
        .await
        .with_context(|| format!("submit to {server} (is pyoco-gateway running?)"))?;
    let run_id = submitted["run_id"]
        .as_str()
        .context("the gateway answered without a run_id")?
        .to_string();
    println!("submitted run {run_id}");

    // Heartbeats keep the connection alive; the stream ends after the terminal snapshot.
    let mut events = client.watch_run(&run_id, WatchOptions::default());
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut last_status = String::new();
    let mut last_snapshot = Value::Null;
    while let Some(event) = events.next().await {
        let WatchEvent::Snapshot { snapshot, .. } = event? else {
            continue;
        };
        // Tasks first: the terminal snapshot also carries the last task changes.
        if let Some(tasks) = snapshot["tasks"].as_object() {
            for (task, state) in tasks {
                let state = state.as_str().unwrap_or("?");
                if seen.get(task).map(String::as_str) != Some(state) {
                    println!("task  {task:<8} {state}");
                    seen.insert(task.clone(), state.to_string());
                }
            }
        }
        let status = snapshot["status"].as_str().unwrap_or("?").to_string();
        if status != last_status {
            println!("run   {status}");
            last_status = status;
        }
        last_snapshot = snapshot;
    }
    let completed = last_status == "COMPLETED";
    if !completed && let Some(error) = last_snapshot["error"].as_str() {
        println!("error {error}");
    }
    Ok(completed)
}
