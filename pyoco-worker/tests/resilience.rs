//! Operators kill things: a worker process killed mid-run, nats-server restarted under load.
//! Nothing accepted may be lost.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyoco::testkit::{
    Spawned, Stack, WorkerHandle, free_port, submit_yaml, wait_for, wait_terminal,
};
use pyoco::{Config, Registry};
use serde_json::Value;

/// Starts the `pyoco-worker` binary against `stack`'s nats-server with `args` and the extra
/// environment `envs` (no `.env` file), killed when the test ends.
fn spawn_worker(stack: &Stack, args: &[&str], envs: &[(&str, &str)]) -> Spawned {
    Spawned(
        Command::new(env!("CARGO_BIN_EXE_pyoco-worker"))
            .args(args)
            .env("PYOCO_LOAD_DOTENV", "0")
            .env("PYOCO_NATS_URL", stack.server.url())
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pyoco-worker"),
    )
}

/// On top of the testkit's fast config: a short lease, so a dead worker's job comes back soon.
fn resilience_config(c: &mut Config) {
    c.consumer_ack_wait = Duration::from_secs(1);
    c.ack_progress_interval = Duration::from_millis(300);
}

const SLOW: &str = r#"
flow: {graph: "first >> slow >> last"}
tasks:
  first: {callable: "pyoco:echo", inputs: {value: 1}}
  slow: {callable: "pyoco:sleep", inputs: {seconds: 2}}
  last: {callable: "pyoco:echo", inputs: {value: "$node.first.output"}}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_mid_run_is_redelivered_and_completed_by_another_worker() {
    let stack = Stack::builder()
        .config(resilience_config)
        .no_worker()
        .start()
        .await;
    let (config, client) = (stack.config.clone(), stack.client.clone());

    let mut doomed = spawn_worker(
        &stack,
        &["--worker-id", "doomed", "--tags", "default"],
        &[
            ("PYOCO_CONSUMER_ACK_WAIT_SEC", "1"),
            ("PYOCO_ACK_PROGRESS_INTERVAL_SEC", "0.3"),
            ("PYOCO_RUN_HEARTBEAT_INTERVAL_SEC", "0.1"),
        ],
    );

    let run_id = submit_yaml(&client, SLOW, "slow", None).await;
    wait_for(
        "the doomed worker to be inside the slow task",
        Duration::from_secs(20),
        || async {
            let run = client.get_run(&run_id, false).await.ok()?;
            (run["status"] == "RUNNING"
                && run["worker_id"] == "doomed"
                && run["tasks"]["slow"] == "RUNNING")
                .then_some(())
        },
    )
    .await;
    doomed.kill().unwrap();
    doomed.wait().unwrap();

    let rescuer = WorkerHandle::start(
        config.clone(),
        Registry::with_builtins(),
        "rescuer",
        &["default"],
    )
    .await;
    let run = wait_for(
        "the run to be completed by the rescuer",
        Duration::from_secs(30),
        || async {
            let run = client.get_run(&run_id, true).await.ok()?;
            (run["status"] == "COMPLETED").then_some(run)
        },
    )
    .await;
    assert_eq!(run["worker_id"], "rescuer");
    assert_eq!(run["tasks"]["slow"], "SUCCEEDED");
    assert_eq!(run["task_records"]["last"]["output"], 1);
    rescuer.stop().await;
    stack.gateway.stop().await;
}

const QUICK: &str = "flow: {graph: 'a >> b'}\ntasks: {a: {callable: 'pyoco:echo', inputs: {value: 1}}, b: {callable: 'pyoco:echo'}}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_under_load_loses_no_accepted_run() {
    let mut stack = Stack::start_with(resilience_config).await;
    let client = stack.client.clone();

    let accepted: Arc<Mutex<Vec<String>>> = Arc::default();
    let rejected: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut submitters = Vec::new();
    for _ in 0..4 {
        let (client, accepted, rejected) = (client.clone(), accepted.clone(), rejected.clone());
        submitters.push(tokio::spawn(async move {
            for _ in 0..40 {
                match client.submit_yaml(QUICK.as_bytes(), "quick", None).await {
                    Ok(resp) => accepted
                        .lock()
                        .unwrap()
                        .push(resp["run_id"].as_str().unwrap().to_string()),
                    Err(e) => {
                        assert!(
                            matches!(e.status(), Some(503) | None),
                            "only 503 or transport errors are acceptable: {e}"
                        );
                        rejected.lock().unwrap().push(e.to_string());
                    }
                }
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        }));
    }
    wait_for(
        "some runs to be accepted",
        Duration::from_secs(20),
        || async { (accepted.lock().unwrap().len() >= 30).then_some(()) },
    )
    .await;
    stack.server.restart();
    for s in submitters {
        s.await.unwrap();
    }
    let accepted: Vec<String> = accepted.lock().unwrap().clone();
    assert!(
        accepted.len() > 60,
        "most submissions should be accepted, got {}",
        accepted.len()
    );

    // Every accepted run finishes.
    for run_id in &accepted {
        let run: Value = wait_for(
            &format!("run {run_id} to complete"),
            Duration::from_secs(60),
            || async {
                let run = client.get_run(run_id, false).await.ok()?;
                (run["status"] == "COMPLETED").then_some(run)
            },
        )
        .await;
        assert_eq!(run["tasks"]["b"], "SUCCEEDED");
    }
    // And nothing else is left behind in a non-terminal state.
    let nats = pyoco::NatsClient::connect(stack.config.clone())
        .await
        .unwrap();
    let accepted: HashSet<String> = accepted.into_iter().collect();
    wait_for(
        "every stored run to be terminal",
        Duration::from_secs(30),
        || async {
            let keys = nats.store().runs().keys().await.ok()?;
            for key in &keys {
                let run = nats.get_run(key).await.ok()??;
                if !run.status.is_terminal() {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    eprintln!(
        "accepted {}, rejected {}",
        accepted.len(),
        rejected.lock().unwrap().len()
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_current_run_finish_then_stops_gracefully() {
    let stack = Stack::builder()
        .config(resilience_config)
        .no_worker()
        .start()
        .await;
    let (config, client) = (stack.config.clone(), stack.client.clone());
    let mut worker = spawn_worker(
        &stack,
        &["--worker-id", "polite", "--tags", "default"],
        &[("PYOCO_RUN_HEARTBEAT_INTERVAL_SEC", "0.1")],
    );
    let yaml = "flow: {graph: a}\ntasks: {a: {callable: 'pyoco:sleep', inputs: {seconds: 1}}}\n";
    let run_id = submit_yaml(&client, yaml, "polite", None).await;
    wait_for("the run to start", Duration::from_secs(20), || async {
        let run = client.get_run(&run_id, false).await.ok()?;
        (run["tasks"]["a"] == "RUNNING").then_some(())
    })
    .await;
    worker.terminate();
    let status = worker
        .wait_exit("the worker", Duration::from_secs(20))
        .await;
    assert!(status.success());
    assert_eq!(
        client.get_run(&run_id, false).await.unwrap()["status"],
        "COMPLETED"
    );
    let nats = pyoco::NatsClient::connect(config).await.unwrap();
    let record = nats
        .store()
        .resources()
        .workers
        .get("polite")
        .await
        .unwrap()
        .unwrap();
    let record: Value = serde_json::from_slice(&record).unwrap();
    assert_eq!(record["state"], "STOPPED_GRACEFUL");
    assert_eq!(record["last_run_status"], "COMPLETED");
    stack.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_last_delivery_dies_is_failed_not_left_running() {
    let stack = Stack::builder()
        .config(|c| {
            resilience_config(c);
            c.consumer_max_deliver = 1;
        })
        .no_worker()
        .start()
        .await;
    let (config, client) = (stack.config.clone(), stack.client.clone());
    let mut doomed = spawn_worker(
        &stack,
        &["--worker-id", "doomed", "--tags", "default"],
        &[
            ("PYOCO_CONSUMER_ACK_WAIT_SEC", "1"),
            ("PYOCO_CONSUMER_MAX_DELIVER", "1"),
            ("PYOCO_ACK_PROGRESS_INTERVAL_SEC", "0.3"),
            ("PYOCO_RUN_HEARTBEAT_INTERVAL_SEC", "0.1"),
        ],
    );
    let run_id = submit_yaml(&client, SLOW, "slow", None).await;
    wait_for(
        "the doomed worker to be inside the slow task",
        Duration::from_secs(20),
        || async {
            let run = client.get_run(&run_id, false).await.ok()?;
            (run["tasks"]["slow"] == "RUNNING").then_some(())
        },
    )
    .await;
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    // A worker for the tag (same limits) hears the advisory when the lease expires.
    let listener = WorkerHandle::start(
        config.clone(),
        Registry::with_builtins(),
        "listener",
        &["default"],
    )
    .await;
    let run = wait_for(
        "the abandoned run to be failed",
        Duration::from_secs(20),
        || async {
            let run = client.get_run(&run_id, false).await.ok()?;
            (run["status"] == "FAILED").then_some(run)
        },
    )
    .await;
    let error = run["error"].as_str().unwrap();
    assert!(error.starts_with("gave up after 1 deliveries"), "{error}");
    let nats = pyoco::NatsClient::connect(config).await.unwrap();
    let work = nats
        .store()
        .jetstream()
        .get_stream("PYOCO_WORK")
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap();
    assert_eq!(work.state.messages, 0, "the undeliverable job is removed");
    let dlq = nats
        .store()
        .jetstream()
        .get_stream("PYOCO_DLQ")
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap();
    assert_eq!(dlq.state.messages, 1);
    listener.stop().await;
    stack.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_serves_task_metrics_by_callable() {
    let stack = Stack::builder()
        .config(resilience_config)
        .no_worker()
        .start()
        .await;
    let client = stack.client.clone();
    let port = free_port();
    let mut worker = spawn_worker(
        &stack,
        &[
            "--worker-id",
            "counted",
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
        ],
        &[],
    );
    for yaml in [
        "flow: {graph: 'a >> b'}\ntasks: {a: {callable: 'pyoco:echo', inputs: {value: 1}}, b: {callable: 'pyoco:echo'}}\n",
        "flow: {graph: f}\ntasks: {f: {callable: 'pyoco:fail'}}\n",
    ] {
        let run_id = submit_yaml(&client, yaml, "m", None).await;
        wait_terminal(&client, &run_id).await;
    }
    let text = wait_for("worker metrics", Duration::from_secs(10), || async {
        let text = reqwest_get(&format!("http://127.0.0.1:{port}/metrics")).await?;
        text.contains("pyoco_worker_runs_total{status=\"FAILED\"} 1")
            .then_some(text)
    })
    .await;
    assert!(
        text.contains("pyoco_task_runs_total{callable=\"pyoco:echo\",result=\"ok\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("pyoco_task_runs_total{callable=\"pyoco:fail\",result=\"fail\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("pyoco_task_duration_ms_total{callable=\"pyoco:echo\"}"),
        "{text}"
    );
    assert!(
        text.contains("pyoco_worker_runs_total{status=\"COMPLETED\"} 1"),
        "{text}"
    );
    // The latency histograms: run duration by flow, task duration by callable, queue wait
    // by tag (both runs were claimed once).
    for line in [
        "pyoco_run_duration_seconds_count{flow=\"m\",status=\"COMPLETED\"} 1",
        "pyoco_run_duration_seconds_count{flow=\"m\",status=\"FAILED\"} 1",
        "pyoco_task_duration_seconds_count{callable=\"pyoco:echo\",result=\"ok\"} 2",
        "pyoco_task_duration_seconds_count{callable=\"pyoco:fail\",result=\"fail\"} 1",
        "pyoco_queue_wait_seconds_count{tag=\"default\"} 2",
        "pyoco_queue_wait_seconds_bucket{tag=\"default\",le=\"+Inf\"} 2",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    worker.kill().unwrap();
    worker.wait().unwrap();
    stack.gateway.stop().await;
}

/// A plain GET with std only (the test has no HTTP client crate of its own).
async fn reqwest_get(url: &str) -> Option<String> {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let rest = url.strip_prefix("http://")?;
        let (host, path) = rest.split_once('/')?;
        let mut stream = std::net::TcpStream::connect(host).ok()?;
        write!(stream, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
        let mut body = String::new();
        stream.read_to_string(&mut body).ok()?;
        body.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
    })
    .await
    .ok()?
}
