//! The `pyoco-client` binary end to end: a real nats-server, an in-process gateway and worker,
//! and the built binary run as a subprocess; assertions on stdout, stderr and exit codes.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::process::Stdio;
use std::time::Duration;

use pyoco::testkit::{GatewayHandle, NatsServer, WorkerHandle};
use pyoco::{Config, Registry};
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

/// nats-server + gateway + one worker serving `default`.
struct Stack {
    _server: NatsServer,
    gateway: GatewayHandle,
    worker: WorkerHandle,
    dir: tempfile::TempDir,
}

impl Stack {
    async fn start() -> Stack {
        let server = NatsServer::start();
        let mut config: Config = server.config();
        config.run_heartbeat_interval = Duration::from_millis(100);
        config.worker_heartbeat_interval = Duration::from_millis(200);
        let gateway = GatewayHandle::start(config.clone()).await;
        let worker =
            WorkerHandle::start(config, Registry::with_builtins(), "w1", &["default"]).await;
        Stack {
            _server: server,
            gateway,
            worker,
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    async fn cli(&self, args: &[&str]) -> Output {
        let url = self.gateway.url();
        let mut full = vec!["--server", url.as_str()];
        full.extend_from_slice(args);
        run_cli(&full).await
    }

    /// Writes a scratch file and returns its path.
    fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write temp file");
        path.to_string_lossy().into_owned()
    }

    async fn stop(self) {
        self.worker.stop().await;
        self.gateway.stop().await;
    }
}

#[derive(Debug)]
struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Output {
    fn json(&self) -> Value {
        assert!(self.stdout.ends_with('\n'), "no trailing newline: {self:?}");
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// Runs the built binary with `args`, without the `PYOCO_*` variables of the environment.
async fn run_cli(args: &[&str]) -> Output {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pyoco-client"))
        .args(args)
        .env_remove("PYOCO_SERVER")
        .env_remove("PYOCO_API_KEY")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), child)
        .await
        .unwrap_or_else(|_| panic!("pyoco-client {args:?} did not finish in 60 s"))
        .expect("run pyoco-client");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
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
    let stack = Stack::start().await;
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

    let watched = stack.cli(&["watch", &run_id]).await;
    assert_eq!(watched.code, Some(0), "{watched:?}");
    let lines: Vec<&str> = watched.stdout.lines().collect();
    let last = lines.last().expect("a status line");
    let fields: Vec<&str> = last.split('\t').collect();
    assert_eq!(
        fields[1..],
        ["snapshot", "COMPLETED", run_id.as_str()],
        "{watched:?}"
    );
    assert!(fields[0].parse::<f64>().is_ok(), "updated_at: {last}");
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
    let stack = Stack::start().await;
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
    let watched = stack.cli(&["watch", &run_id]).await;
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
    let stack = Stack::start().await;
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
    let watched = stack.cli(&["watch", &idle, "--timeout-sec", "1"]).await;
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
        .args(["--server", &stack.gateway.url(), "watch", &idle])
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
