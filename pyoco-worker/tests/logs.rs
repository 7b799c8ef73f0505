//! The worker binary's log lines on stdout: the original's JSON fields (`ts`, `level`,
//! `service`, `logger`, `message`, then `run_id`, `task`, `worker_id`, …),
//! `PYOCO_LOG_UTC` and `PYOCO_LOG_INCLUDE_TRACEBACK`, seen through a Python task that raises.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyoco::testkit::{Spawned, Stack, submit_yaml, wait_for, wait_terminal};
use serde_json::Value;

const RAISES: &str = "flow: {graph: a}\ntasks: {a: {callable: 'opsmod:boom'}}\n";

/// Runs a failing Python task on a `pyoco-worker` started with `envs`; returns the run id and
/// every stdout line up to the `task failed` one.
async fn failing_run_logs(envs: &[(&str, &str)]) -> (String, Vec<String>) {
    let stack = Stack::builder().no_worker().start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("opsmod.py"),
        "def boom():\n    raise ValueError('bad row 17')\n",
    )
    .unwrap();
    let mut child = Spawned(
        Command::new(env!("CARGO_BIN_EXE_pyoco-worker"))
            .args(["--worker-id", "logw", "--tags", "default"])
            .env("PYOCO_LOAD_DOTENV", "0")
            .env("PYOCO_NATS_URL", stack.server.url())
            .env("PYOCO_LOG_FORMAT", "json")
            .env("PYTHONPATH", dir.path())
            .env_remove("RUST_LOG")
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let stdout = child.0.stdout.take().unwrap();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    let run_id = submit_yaml(&stack.client, RAISES, "logged", None).await;
    let run = wait_terminal(&stack.client, &run_id).await;
    assert_eq!(run["status"], "FAILED", "{run}");
    let seen = wait_for("the task failure log line", Duration::from_secs(10), || {
        let lines = lines.clone();
        async move {
            let lines = lines.lock().unwrap().clone();
            lines
                .iter()
                .any(|l| l.contains("\"message\":\"task failed\""))
                .then_some(lines)
        }
    })
    .await;
    child.terminate();
    child
        .wait_exit("pyoco-worker", Duration::from_secs(10))
        .await;
    stack.stop().await;
    (run_id, seen)
}

fn parse(lines: &[String]) -> Vec<serde_json::Map<String, Value>> {
    lines
        .iter()
        .map(|l| match serde_json::from_str(l) {
            Ok(Value::Object(m)) => m,
            other => panic!("not a JSON object line: {l:?} ({other:?})"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_carry_the_originals_fields_the_run_and_the_traceback() {
    let (run_id, lines) = failing_run_logs(&[]).await;
    let parsed = parse(&lines);
    for l in &parsed {
        let keys: Vec<&str> = l.keys().map(String::as_str).take(5).collect();
        assert_eq!(
            keys,
            ["ts", "level", "service", "logger", "message"],
            "{l:?}"
        );
        assert_eq!(
            l["service"], "pyoco-server:worker",
            "the original's service name"
        );
        let ts = l["ts"].as_str().unwrap();
        assert!(ts.len() == 20 && ts.ends_with('Z'), "UTC by default: {ts}");
    }
    let failed = parsed
        .iter()
        .find(|l| l["message"] == "task failed")
        .unwrap();
    assert_eq!(failed["level"], "WARNING");
    assert_eq!(failed["run_id"], run_id.as_str());
    assert_eq!(failed["worker_id"], "logw");
    assert_eq!(failed["task"], "a");
    assert_eq!(failed["callable"], "opsmod:boom");
    assert!(
        failed["error"].as_str().unwrap().contains("bad row 17"),
        "{failed:?}"
    );
    let tb = failed["traceback"].as_str().unwrap();
    assert!(tb.contains("ValueError: bad row 17"), "{tb}");
    assert!(
        parsed.iter().any(|l| l["message"] == "run started"
            && l.get("run_id") == Some(&Value::from(run_id.as_str()))),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracebacks_can_be_left_out_and_timestamps_can_be_local() {
    let (_, lines) = failing_run_logs(&[
        ("PYOCO_LOG_INCLUDE_TRACEBACK", "false"),
        ("PYOCO_LOG_UTC", "false"),
        ("TZ", "Asia/Tokyo"),
    ])
    .await;
    let parsed = parse(&lines);
    let failed = parsed
        .iter()
        .find(|l| l["message"] == "task failed")
        .unwrap();
    assert!(!failed.contains_key("traceback"), "{failed:?}");
    assert!(failed["error"].as_str().unwrap().contains("bad row 17"));
    let ts = failed["ts"].as_str().unwrap();
    assert!(ts.ends_with("+09:00") && ts.len() == 25, "{ts}");
}
