//! The `pyoco-client` binary end to end: a real nats-server, an in-process gateway and worker,
//! and the built binary run as a subprocess; assertions on stdout, stderr and exit codes.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{CliStack, Output, run_cli};
use pyoco::testkit::{wait_for, wait_terminal};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

const FAN_OUT_IN: &str = r#"
version: 1
flow:
  graph: a >> (b & c) >> d
  defaults: {greeting: hello}
tasks:
  a: {callable: "pyoco:echo", inputs: {value: "$ctx.params.greeting"}}
  b: {callable: "pyoco:sleep", inputs: {seconds: 0.3}}
  c: {callable: "pyoco:sleep", inputs: {seconds: 0.2}}
  d: {callable: "pyoco:echo", inputs: {value: "$node.a.output"}}
"#;

const FAILING: &str = r#"
version: 1
flow:
  graph: a >> b
tasks:
  a: {callable: "pyoco:echo", inputs: {value: 1}}
  b: {callable: "pyoco:fail", inputs: {message: "boom from b"}}
"#;

impl Output {
    fn json(&self) -> Value {
        assert!(self.stdout.ends_with('\n'), "no trailing newline: {self:?}");
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

fn run_id_of(out: &Output) -> String {
    assert_eq!(out.code, Some(0), "{out:?}");
    let v = out.json();
    assert_eq!(v["status"], "PENDING", "{out:?}");
    v["run_id"].as_str().expect("run_id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_flow_is_watched_to_completion_and_shown_by_get_tasks_list() {
    let stack = CliStack::start().await;
    let file = stack.write("fan.yaml", FAN_OUT_IN);
    let submitted = stack
        .cli(&[
            "submit-yaml",
            "--workflow-file",
            &file,
            "--flow-name",
            "fan",
        ])
        .await;
    // The original's spaced JSON separators.
    assert!(
        submitted.stdout.contains(r#""status": "PENDING""#),
        "{submitted:?}"
    );
    let run_id = run_id_of(&submitted);

    let watched = stack.cli(&["watch", &run_id, "--output", "status"]).await;
    assert_eq!(watched.code, Some(0), "{watched:?}");
    let lines: Vec<&str> = watched.stdout.lines().collect();
    let last = lines.last().expect("a status line");
    let fields: Vec<&str> = last.split('\t').collect();
    assert_eq!(
        fields[1..],
        ["snapshot", "COMPLETED", run_id.as_str()],
        "{watched:?}"
    );
    assert_eq!(
        fields[0].matches(':').count(),
        2,
        "a wall-clock time: {last}"
    );
    for line in &lines {
        assert_eq!(line.split('\t').count(), 4, "{watched:?}");
    }
    // Not a terminal: no progress line.
    assert!(!watched.stdout.contains('✓'), "{watched:?}");

    let got = stack.cli(&["get", &run_id]).await;
    assert_eq!(got.code, Some(0), "{got:?}");
    let run = got.json();
    assert_eq!(run["status"], "COMPLETED");
    assert_eq!(run["flow_name"], "fan");
    assert!(run.get("task_records").is_none());
    let with_records = stack.cli(&["get", &run_id, "--records"]).await.json();
    assert_eq!(with_records["task_records"]["d"]["output"], "hello");

    let tasks = stack.cli(&["tasks", &run_id]).await.json();
    assert_eq!(
        tasks["tasks"],
        json!({"a": "SUCCEEDED", "b": "SUCCEEDED", "c": "SUCCEEDED", "d": "SUCCEEDED"})
    );

    let table = stack.cli(&["list", "--output", "table"]).await;
    assert_eq!(table.code, Some(0), "{table:?}");
    let mut rows = table.stdout.lines();
    let header: Vec<&str> = rows.next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        ["run_id", "status", "flow_name", "tag", "updated_at"]
    );
    let row: Vec<&str> = rows.next().expect("row").split_whitespace().collect();
    assert_eq!(row[..4], [run_id.as_str(), "COMPLETED", "fan", "default"]);

    let listed = stack
        .cli(&[
            "list",
            "--flow",
            "fan",
            "--status",
            "COMPLETED",
            "--limit",
            "5",
        ])
        .await
        .json();
    assert_eq!(listed[0]["run_id"], run_id.as_str());
    let none = stack
        .cli(&["list", "--flow", "nope", "--output", "table"])
        .await;
    assert_eq!(none.stdout, "(no items)\n", "{none:?}");

    // A finished run: one JSON event, records dropped unless asked for.
    let as_json = stack.cli(&["watch", &run_id, "--output", "json"]).await;
    assert_eq!(as_json.code, Some(0), "{as_json:?}");
    let event = as_json.json();
    assert_eq!(event["event"], "snapshot");
    assert_eq!(event["data"]["run_id"], run_id.as_str());
    assert_eq!(event["data"]["snapshot"]["status"], "COMPLETED");
    assert!(event["data"]["snapshot"].get("task_records").is_none());
    assert!(event["data"]["ts"].as_f64().is_some());

    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_flow_makes_watch_exit_1_with_the_error() {
    let stack = CliStack::start().await;
    let file = stack.write("fail.yaml", FAILING);
    let run_id = run_id_of(
        &stack
            .cli(&[
                "submit-yaml",
                "--workflow-file",
                &file,
                "--flow-name",
                "bad",
                "--tag",
                "default",
            ])
            .await,
    );
    let watched = stack.cli(&["watch", &run_id, "--output", "status"]).await;
    assert_eq!(watched.code, Some(1), "{watched:?}");
    assert!(
        watched
            .stdout
            .ends_with(&format!("\tsnapshot\tFAILED\t{run_id}\n")),
        "{watched:?}"
    );
    assert!(watched.stderr.contains("boom from b"), "{watched:?}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_by_name_prints_pending_and_gateway_errors_exit_1_and_ctrl_c_exits_130() {
    let stack = CliStack::start().await;
    let params_file = stack.write("p.yaml", "n: 0\nfrom_file: true\n");
    let submitted = stack
        .cli(&[
            "submit",
            "--flow-name",
            "x",
            "--params-file",
            &params_file,
            "--params",
            r#"{"j": {"a": 1}}"#,
            "--param",
            "n=1",
            "--tags",
            " t1, ,t2",
        ])
        .await;
    let run_id = run_id_of(&submitted);
    let run = stack.cli(&["get", &run_id]).await.json();
    assert_eq!(
        run["params"],
        json!({"n": 1, "from_file": true, "j": {"a": 1}})
    );
    assert_eq!(run["flow_name"], "x");

    // Unknown run: the gateway's 404 in the original's format.
    let missing = stack.cli(&["get", "nope"]).await;
    assert_eq!(missing.code, Some(1), "{missing:?}");
    assert!(
        missing
            .stderr
            .starts_with("ERR-PYOCO-HTTP: request failed\n"),
        "{missing:?}"
    );
    assert!(
        missing
            .stderr
            .contains("- reason: HTTP 404 GET /runs/nope: "),
        "{missing:?}"
    );
    assert!(missing.stdout.is_empty());

    // A run nobody serves stays PENDING: watch gives up after its timeout.
    let idle = run_id_of(&stack.cli(&["submit", "--tag", "idle"]).await);
    let watched = stack
        .cli(&["watch", &idle, "--timeout-sec", "1", "--output", "status"])
        .await;
    assert_eq!(watched.code, Some(1), "{watched:?}");
    assert!(
        watched.stdout.contains("\tsnapshot\tPENDING\t"),
        "{watched:?}"
    );
    assert!(
        watched.stderr.starts_with("ERR-PYOCO-WATCH: timeout\n"),
        "{watched:?}"
    );

    // Ctrl-C while watching exits 130.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pyoco-client"))
        .args(["--server", &stack.stack.gateway.url(), "watch", &idle])
        .env_remove("PYOCO_SERVER")
        .env_remove("PYOCO_API_KEY")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn watch");
    let stdout = child.stdout.take().expect("stdout");
    // The first status line shows the signal handler is in place.
    let first = BufReader::new(stdout)
        .lines()
        .next_line()
        .await
        .expect("read");
    assert!(first.is_some_and(|l| l.contains("PENDING")));
    let pid = child.id().expect("pid").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("watch did not stop on SIGINT")
        .expect("wait");
    assert_eq!(status.code(), Some(130));
    stack.stop().await;
}

/// A local port nothing listens on.
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    listener.local_addr().expect("addr").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_and_usage_errors_exit_1_in_the_original_format() {
    let server = format!("http://127.0.0.1:{}", closed_port().await);
    let bad = run_cli(&["--server", &server, "submit", "--params", "[]"]).await;
    assert_eq!(bad.code, Some(1), "{bad:?}");
    assert_eq!(
        bad.stderr,
        "ERR-PYOCO-0018: invalid CLI arguments (check the input format)\n\
         - reason: --params must be JSON object\n\
         - hint: pyoco-client submit --flow-name main --param x=1 --tag default\n"
    );
    let bad_param = run_cli(&["--server", &server, "submit", "--param", "=1"]).await;
    assert_eq!(bad_param.code, Some(1), "{bad_param:?}");
    assert!(
        bad_param
            .stderr
            .contains("- reason: --param key is empty ('=1')\n")
    );

    let unknown = run_cli(&["submit", "--no-such-flag"]).await;
    assert_eq!(unknown.code, Some(1), "{unknown:?}");
    assert!(
        unknown.stderr.starts_with("ERR-PYOCO-0018: "),
        "{unknown:?}"
    );
    assert!(unknown.stderr.contains("--no-such-flag"), "{unknown:?}");
    assert!(
        unknown.stderr.ends_with("- hint: pyoco-client submit -h\n"),
        "{unknown:?}"
    );

    let help = run_cli(&["watch", "--help"]).await;
    assert_eq!(help.code, Some(0), "{help:?}");
    assert!(help.stdout.contains("--timeout-sec"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_port_is_a_connection_error() {
    let server = format!("http://127.0.0.1:{}", closed_port().await);
    let out = run_cli(&["--server", &server, "get", "abc"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .starts_with("ERR-PYOCO-HTTP: connection error\n- reason: "),
        "{out:?}"
    );
    assert!(out.stderr.contains("- hint: check --server URL"), "{out:?}");
}

/// About 1.2 s of work in three steps.
const SLOW: &str = r#"
flow:
  graph: a >> b >> c
tasks:
  a: {callable: "pyoco:sleep", inputs: {seconds: 0.4}}
  b: {callable: "pyoco:sleep", inputs: {seconds: 0.4}}
  c: {callable: "pyoco:echo", inputs: {value: done}}
"#;

const LONG: &str = r#"
flow:
  graph: a >> b
tasks:
  a: {callable: "pyoco:sleep", inputs: {seconds: 60}}
  b: {callable: "pyoco:echo", inputs: {value: 1}}
"#;

impl CliStack {
    /// The stack after the fan-out/fan-in flow ran to completion (so the worker has
    /// registered and the metrics count one COMPLETED run).
    async fn start_with_a_finished_run() -> CliStack {
        let stack = CliStack::start().await;
        let run_id = stack.submit_yaml("fan", FAN_OUT_IN, "default").await;
        wait_terminal(&stack.stack.client, &run_id).await;
        stack
    }

    fn client(&self) -> pyoco::HttpClient {
        self.stack.client.clone()
    }

    /// Submits `yaml` through the CLI and returns the run id.
    async fn submit_yaml(&self, name: &str, yaml: &str, tag: &str) -> String {
        let file = self.write(&format!("{name}.yaml"), yaml);
        run_id_of(
            &self
                .cli(&[
                    "submit-yaml",
                    "--workflow-file",
                    &file,
                    "--flow-name",
                    name,
                    "--tag",
                    tag,
                ])
                .await,
        )
    }
}

/// Each stdout line as JSON.
fn json_lines(out: &Output) -> Vec<Value> {
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?} in {out:?}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_sse_events_as_json_or_status_lines() {
    let stack = CliStack::start().await;
    let run_id = stack.submit_yaml("slow", SLOW, "default").await;

    // The default output is the original's: one {"event", "data"} object per line.
    let watched = stack
        .cli(&["watch", &run_id, "--records", "--until-terminal"])
        .await;
    assert_eq!(watched.code, Some(0), "{watched:?}");
    let events = json_lines(&watched);
    assert!(events.len() >= 2, "{watched:?}");
    for e in &events {
        assert!(
            matches!(e["event"].as_str(), Some("snapshot" | "heartbeat")),
            "{e}"
        );
        assert_eq!(e["data"]["run_id"], run_id.as_str());
        assert!(e["data"]["ts"].as_f64().is_some());
    }
    let last = events.last().unwrap();
    assert_eq!(last["data"]["snapshot"]["status"], "COMPLETED");
    assert_eq!(
        last["data"]["snapshot"]["task_records"]["c"]["output"],
        "done"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e["data"]["snapshot"]["status"] == "COMPLETED")
            .count(),
        1
    );
    // The original's spacing.
    assert!(
        watched
            .stdout
            .starts_with(r#"{"event": "snapshot", "data": {"#),
        "{watched:?}"
    );

    // Status lines: <ts>\t<event>\t<status>\t<run_id>, ts being the event's send time.
    let status = stack.cli(&["watch", &run_id, "--output", "status"]).await;
    assert_eq!(status.code, Some(0), "{status:?}");
    let line = status.stdout.trim_end();
    let fields: Vec<&str> = line.split('\t').collect();
    assert_eq!(fields[1..], ["snapshot", "COMPLETED", run_id.as_str()]);
    // A wall-clock time (12:03:04), not a raw epoch float.
    assert_eq!(fields[0].matches(':').count(), 2, "{line}");
    assert!(fields[0].parse::<f64>().is_err(), "{line}");

    // An idle run: --max-events stops after that many events (heartbeats count) with exit 0.
    let idle = stack.submit_yaml("idle", SLOW, "nobody").await;
    let one = stack.cli(&["watch", &idle, "--max-events", "1"]).await;
    assert_eq!(one.code, Some(0), "{one:?}");
    let events = json_lines(&one);
    assert_eq!(events.len(), 1, "{one:?}");
    assert_eq!(events[0]["data"]["snapshot"]["status"], "PENDING");
    assert!(events[0]["data"]["snapshot"].get("task_records").is_none());
    let two = stack
        .cli(&[
            "watch",
            &idle,
            "--max-events",
            "2",
            "--timeout-sec",
            "10",
            "--output",
            "status",
        ])
        .await;
    assert_eq!(two.code, Some(0), "{two:?}");
    let lines: Vec<&str> = two.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{two:?}");
    assert!(lines[0].contains("\tsnapshot\tPENDING\t"), "{two:?}");
    assert!(
        lines[1].ends_with(&format!("\theartbeat\t-\t{idle}")),
        "{two:?}"
    );

    // --since after every update: nothing to show before the timeout.
    let quiet = stack
        .cli(&[
            "watch",
            &idle,
            "--since",
            "99999999999",
            "--timeout-sec",
            "1",
        ])
        .await;
    assert_eq!(quiet.code, Some(1), "{quiet:?}");
    assert!(quiet.stdout.is_empty(), "{quiet:?}");
    assert!(
        quiet.stderr.starts_with("ERR-PYOCO-WATCH: timeout\n"),
        "{quiet:?}"
    );

    // An unknown run: the gateway's 404 before the stream opens.
    let missing = stack.cli(&["watch", "nope"]).await;
    assert_eq!(missing.code, Some(1), "{missing:?}");
    assert!(
        missing.stderr.starts_with(
            "ERR-PYOCO-HTTP: request failed\n- reason: HTTP 404 GET /runs/nope/watch: "
        ),
        "{missing:?}"
    );
    assert!(missing.stderr.contains("run_not_found"), "{missing:?}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_prints_the_snapshot_waits_with_wait_and_reports_a_wait_timeout() {
    let stack = CliStack::start().await;
    let client = stack.client();
    let run_id = stack.submit_yaml("long", LONG, "default").await;
    wait_for("task a to run", Duration::from_secs(20), || async {
        let run = client.get_run(&run_id, false).await.ok()?;
        (run["tasks"]["a"] == "RUNNING").then_some(())
    })
    .await;
    let waited = stack
        .cli(&[
            "cancel",
            "--run-id",
            &run_id,
            "--wait",
            "--timeout-sec",
            "20",
        ])
        .await;
    assert_eq!(waited.code, Some(0), "{waited:?}");
    let run = waited.json();
    assert_eq!(run["status"], "CANCELLED", "{waited:?}");
    assert_eq!(run["tasks"]["b"], "CANCELLED");
    // Idempotent.
    let again = stack.cli(&["cancel", "--run-id", &run_id]).await;
    assert_eq!(again.code, Some(0), "{again:?}");
    assert_eq!(again.json()["status"], "CANCELLED");
    // Without --wait: the answer right after the request (a queued run is cancelled at once).
    let queued = stack.submit_yaml("queued", LONG, "nobody").await;
    let now = stack.cli(&["cancel", "--run-id", &queued]).await;
    assert_eq!(now.json()["status"], "CANCELLED", "{now:?}");

    // A run claimed by a worker that does not exist stays CANCELLING.
    let ghost = stack.submit_yaml("ghost", LONG, "nobody").await;
    let mut doc = client.get_run(&ghost, false).await.unwrap();
    let map = doc.as_object_mut().unwrap();
    for key in ["worker_alive", "worker_state", "worker_heartbeat_at"] {
        map.remove(key);
    }
    map.insert("status".into(), json!("RUNNING"));
    map.insert("worker_id".into(), json!("ghost"));
    map.insert("start_time".into(), json!(pyoco::model::now()));
    let nats = pyoco::NatsClient::connect(stack.stack.config.clone())
        .await
        .unwrap();
    nats.store()
        .runs()
        .put_raw(ghost.as_str(), serde_json::to_vec(&doc).unwrap().into())
        .await
        .unwrap();
    let timed_out = stack
        .cli(&["cancel", "--run-id", &ghost, "--wait", "--timeout-sec", "1"])
        .await;
    assert_eq!(timed_out.code, Some(1), "{timed_out:?}");
    assert_eq!(
        timed_out.stderr,
        format!(
            "ERR-PYOCO-CANCEL: wait timeout\n\
             - reason: cancel wait timeout for run_id={ghost}\n\
             - hint: retry cancel or inspect run/worker status\n"
        )
    );
    assert!(timed_out.stdout.is_empty());

    let missing = stack.cli(&["cancel", "--run-id", "nope"]).await;
    assert_eq!(missing.code, Some(1), "{missing:?}");
    assert!(
        missing
            .stderr
            .contains("- reason: HTTP 404 POST /runs/nope/cancel: "),
        "{missing:?}"
    );
    assert!(
        missing.stderr.contains("- hint: check the run id"),
        "{missing:?}"
    );
    let no_id = run_cli(&["cancel"]).await;
    assert_eq!(no_id.code, Some(1), "{no_id:?}");
    assert!(no_id.stderr.contains("--run-id"), "{no_id:?}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_vnext_pages_with_a_cursor_in_json_and_table_output() {
    let stack = CliStack::start().await;
    for i in 0..3 {
        stack
            .cli(&["submit", "--flow-name", &format!("f{i}"), "--tag", "idle"])
            .await;
    }
    let client = stack.client();
    wait_for("3 listed runs", Duration::from_secs(10), || async {
        let runs = client
            .list_runs(&pyoco::client::http::ListRuns {
                tag: Some("idle".into()),
                ..Default::default()
            })
            .await
            .ok()?;
        (runs.len() == 3).then_some(())
    })
    .await;

    let table = stack
        .cli(&[
            "list-vnext",
            "--tag",
            "idle",
            "--limit",
            "2",
            "--output",
            "table",
        ])
        .await;
    assert_eq!(table.code, Some(0), "{table:?}");
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{table:?}");
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["run_id", "status", "flow_name", "tag", "updated_at"]
    );
    let cursor = lines[3]
        .strip_prefix("next_cursor: ")
        .unwrap_or_else(|| panic!("{table:?}"));

    let rest = stack
        .cli(&[
            "list-vnext",
            "--tag",
            "idle",
            "--limit",
            "2",
            "--cursor",
            cursor,
        ])
        .await;
    assert_eq!(rest.code, Some(0), "{rest:?}");
    assert!(
        rest.stdout.ends_with("], \"next_cursor\": null}\n"),
        "{rest:?}"
    );
    let page = rest.json();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let seen: Vec<&str> = lines[1..3]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert!(!seen.contains(&page["items"][0]["run_id"].as_str().unwrap()));

    let first = stack.cli(&["list-vnext", "--limit", "1"]).await.json();
    assert!(first["next_cursor"].is_string(), "{first}");
    let none = stack
        .cli(&[
            "list-vnext",
            "--updated-after",
            "99999999999",
            "--output",
            "table",
        ])
        .await;
    assert_eq!(none.stdout, "(no items)\n", "{none:?}");
    let sha = stack
        .cli(&["list-vnext", "--workflow-yaml-sha256", "00", "--full"])
        .await;
    assert_eq!(sha.json(), json!({"items": [], "next_cursor": null}));
    let bad = stack.cli(&["list-vnext", "--cursor", "abc"]).await;
    assert_eq!(bad.code, Some(1), "{bad:?}");
    assert!(bad.stderr.contains("invalid_list_query"), "{bad:?}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_prints_the_gateways_status() {
    let stack = CliStack::start().await;
    let health = stack.cli(&["health"]).await;
    assert_eq!(health.code, Some(0), "{health:?}");
    assert_eq!(health.json()["status"], "ok");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_are_listed_as_json_table_or_plugins_and_filtered_by_state() {
    let stack = CliStack::start_with_a_finished_run().await;
    let listed = stack.cli(&["workers"]).await;
    assert_eq!(
        listed.code,
        Some(0),
        "GET /workers is not served (yet?): {listed:?}"
    );
    let workers = listed.json();
    let w1 = workers
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["worker_id"] == "w1")
        .unwrap_or_else(|| panic!("{listed:?}"));
    assert_eq!(w1["tags"], json!(["default"]));

    let table = stack
        .cli(&["workers", "--scope", "all", "--output", "table"])
        .await;
    assert_eq!(table.code, Some(0), "{table:?}");
    let lines: Vec<Vec<&str>> = table
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        ["worker_id", "state", "tags", "plugins", "plugin_preview"]
    );
    let row = lines.iter().find(|r| r[0] == "w1").unwrap();
    assert_eq!(row[2..], ["default", "0", "-"], "{table:?}");
    assert!(matches!(row[1], "IDLE" | "RUNNING"), "{table:?}");
    let plugins = stack.cli(&["workers", "--output", "plugins"]).await;
    let lines: Vec<Vec<&str>> = plugins
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        [
            "worker_id",
            "state",
            "tags",
            "package",
            "version",
            "wheel_name"
        ]
    );
    assert_eq!(lines[1][2..], ["default", "-", "-", "-"], "{plugins:?}");
    let idle_only = stack
        .cli(&["workers", "--state", "STOPPED_GRACEFUL", "--scope", "all"])
        .await;
    assert_eq!(idle_only.json(), json!([]), "{idle_only:?}");
    let bad_state = run_cli(&["workers", "--state", "SLEEPING"]).await;
    assert_eq!(bad_state.code, Some(1), "{bad_state:?}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hide_and_unhide_worker_toggle_the_flag_and_an_unknown_worker_exits_1() {
    let stack = CliStack::start_with_a_finished_run().await;
    let hidden = stack.cli(&["hide-worker", "w1"]).await;
    assert_eq!(hidden.code, Some(0), "{hidden:?}");
    assert_eq!(hidden.json()["hidden"], true);
    assert_eq!(
        stack.cli(&["workers", "--output", "table"]).await.stdout,
        "(no items)\n"
    );
    let with_hidden = stack.cli(&["workers", "--include-hidden"]).await.json();
    assert_eq!(with_hidden[0]["worker_id"], "w1");
    assert_eq!(with_hidden[0]["hidden"], true);
    let shown = stack.cli(&["unhide-worker", "w1"]).await;
    assert_eq!(shown.json()["hidden"], false, "{shown:?}");
    let unknown = stack.cli(&["hide-worker", "nobody"]).await;
    assert_eq!(unknown.code, Some(1), "{unknown:?}");
    assert!(
        unknown
            .stderr
            .contains("- reason: HTTP 404 PATCH /workers/nobody: "),
        "{unknown:?}"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_prints_the_raw_prometheus_text() {
    let stack = CliStack::start_with_a_finished_run().await;
    let metrics = stack.cli(&["metrics"]).await;
    assert_eq!(
        metrics.code,
        Some(0),
        "GET /metrics is not served (yet?): {metrics:?}"
    );
    assert!(
        metrics.stdout.contains("# TYPE pyoco_runs_total gauge\n"),
        "{metrics:?}"
    );
    assert!(
        metrics
            .stdout
            .contains("pyoco_runs_total{status=\"COMPLETED\"} 1\n"),
        "{metrics:?}"
    );
    // Raw text as served: the CLI adds no newline of its own.
    assert!(metrics.stdout.ends_with('\n'), "{metrics:?}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_with_wait_prints_the_terminal_snapshot() {
    let stack = CliStack::start().await;
    let file = stack.write("fan.yaml", FAN_OUT_IN);
    let out = stack
        .cli(&[
            "submit-yaml",
            "--workflow-file",
            &file,
            "--flow-name",
            "fan",
            "--wait",
            "30",
        ])
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let done = out.json();
    assert_eq!(done["status"], "COMPLETED", "{out:?}");
    assert_eq!(done["task_records"]["d"]["output"], "hello", "{out:?}");

    // By name, a flow no worker knows ends FAILED: the terminal snapshot, and exit 1.
    let out = stack
        .cli(&["submit", "--flow-name", "nowhere", "--wait", "30"])
        .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(out.json()["status"], "FAILED", "{out:?}");
    assert!(out.stderr.starts_with("ERR-PYOCO-RUN"), "{out:?}");

    let bad = stack
        .cli(&["submit", "--flow-name", "main", "--wait", "-1"])
        .await;
    assert_eq!(bad.code, Some(1), "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_commands_register_show_roll_back_and_delete_versions() {
    let stack = CliStack::start().await;
    let v1 = stack.write("v1.yaml", FAILING);
    let v2 = stack.write("v2.yaml", FAN_OUT_IN);
    for (file, version) in [(&v1, 1), (&v2, 2)] {
        let out = stack
            .cli(&["flow", "register", "etl", "--workflow-file", file])
            .await;
        assert_eq!(out.code, Some(0), "{out:?}");
        assert_eq!(out.json()["version"], version, "{out:?}");
    }
    let listed = stack.cli(&["flow", "list"]).await;
    assert_eq!(listed.json()[0]["active_version"], 2, "{listed:?}");
    let yaml = stack
        .cli(&["flow", "show", "etl", "--version", "1", "--yaml"])
        .await;
    assert_eq!(yaml.stdout, FAILING, "{yaml:?}");
    let back = stack
        .cli(&["flow", "rollback", "etl", "--version", "1"])
        .await;
    assert_eq!(back.json()["active_version"], 1, "{back:?}");
    // The active version (1, which fails) runs by name.
    let out = stack
        .cli(&["submit", "--flow-name", "etl", "--wait", "30"])
        .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(out.json()["flow_version"], 1, "{out:?}");
    assert_eq!(stack.cli(&["flow", "delete", "etl"]).await.code, Some(0));
    let gone = stack.cli(&["flow", "show", "etl"]).await;
    assert_eq!(gone.code, Some(1), "{gone:?}");
    assert!(gone.stderr.contains("flow not found"), "{gone:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_validate_lists_every_problem_and_dry_run_prints_the_plan() {
    let stack = CliStack::start().await;
    let bad = stack.write(
        "bad.yaml",
        "flow: {graph: a}\ntasks:\n  a: {callable: 'pyoco:echo', retries: -1, timeout_sec: 0}\n",
    );
    let out = stack
        .cli(&["flow", "validate", "--workflow-file", &bad])
        .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(
        out.json()["problems"].as_array().unwrap().len(),
        2,
        "{out:?}"
    );
    assert!(
        out.stderr
            .contains("line 3, column 31: invalid_task_retries: a"),
        "{out:?}"
    );
    let good = stack.write("fan.yaml", FAN_OUT_IN);
    let ok = stack
        .cli(&["flow", "validate", "--workflow-file", &good])
        .await;
    assert_eq!(ok.code, Some(0), "{ok:?}");
    stack
        .cli(&["flow", "register", "fan", "--workflow-file", &good])
        .await;
    let plan = stack.cli(&["flow", "dry-run", "fan"]).await;
    assert_eq!(plan.code, Some(0), "{plan:?}");
    assert_eq!(
        plan.json()["plan"]["stages"],
        json!([["a"], ["b", "c"], ["d"]]),
        "{plan:?}"
    );
}
