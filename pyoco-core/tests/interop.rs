//! Interoperability with the original Python pyoco-server (0.5.1 from PyPI, installed into
//! the git-ignored `.tools/interop` virtualenv by `scripts/install-interop.sh`), run as
//! separate processes next to pyoco's in-process gateway and worker on one nats-server:
//!
//! - the Python `PyocoHttpClient`, unchanged, against our gateway
//!   (`interop/client_against_gateway.py`, one PASS/FAIL line per client method);
//! - a Python `pyoco-worker` running jobs submitted through our gateway;
//! - our worker running jobs submitted through the Python gateway (`pyoco-server up`), by
//!   YAML and by flow name, and the same client script against that gateway as a baseline;
//! - floats written by Python (shortest round-trip `repr`) pass through our code unchanged.
//!
//! Every Python process runs under `interop/supervise.py` and is stopped when its guard drops
//! or the test process dies; its output is printed when the test fails.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pyoco::testkit::{
    GatewayHandle, NatsServer, WorkerHandle, fast_config, free_port, wait_terminal,
};
use pyoco::{HttpClient, Registry};
use serde_json::{Value, json};

/// The repository root.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn examples_flows() -> PathBuf {
    repo_root().join("examples/flows")
}

fn interop_dir() -> PathBuf {
    repo_root().join("interop")
}

/// The virtualenv with pyoco-server, installed once per test process.
fn venv() -> PathBuf {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| pyoco::testkit::python_tool("install-interop.sh"))
        .clone()
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
/// A fast config like the other tests', pointing at `server`.
fn config(server: &NatsServer) -> pyoco::Config {
    fast_config(server)
}

/// A registry with the built-in tasks and the named flows of examples/flows.
fn registry() -> Registry {
    let mut registry = Registry::with_builtins();
    registry.flows_dir(examples_flows());
    registry
}

/// A Python process of the test, with its own working directory (the Python engine creates
/// `./artifacts` there) and its stdout+stderr in a log file; the log is printed when the
/// test is failing. It runs under `interop/supervise.py`, which stops it as soon as its
/// stdin pipe closes: when this guard drops, and also when the test process dies without
/// unwinding (e.g. killed by a test-runner timeout).
#[derive(Debug)]
struct PyProcess {
    name: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
    log: PathBuf,
    /// The output has been shown already (in a panic message).
    shown: bool,
}

impl PyProcess {
    /// Runs `<venv>/bin/<program> args…` with `PYOCO_LOAD_DOTENV=0`, no inherited `PYOCO_*`
    /// variable, and `envs`.
    fn spawn(name: &str, program: &str, args: &[&str], envs: &[(&str, String)]) -> PyProcess {
        let bin = venv().join("bin").join(program);
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join(format!("{name}.log"));
        let out = File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let mut cmd = Command::new(venv().join("bin/python"));
        cmd.arg(interop_dir().join("supervise.py"))
            .arg(&bin)
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PYOCO_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("PYOCO_LOAD_DOTENV", "0")
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", bin.display()));
        PyProcess {
            name: name.to_string(),
            child: Some(child),
            dir,
            log,
            shown: false,
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics (showing the output) if the process has exited.
    fn assert_running(&mut self) {
        let exited = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten());
        if let Some(status) = exited {
            self.shown = true;
            panic!(
                "{} exited early with {status}; its output:\n{}",
                self.name,
                self.output()
            );
        }
    }

    /// Waits for the process to exit, at most `timeout` (then kills it and panics).
    async fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                self.kill();
                self.shown = true;
                panic!(
                    "{} still running after {timeout:?}; killed. Its output:\n{}",
                    self.name,
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Closes the supervisor's stdin (it then stops the program: SIGTERM, SIGKILL after
    /// 3 s) and waits for it; kills the supervisor itself if it takes longer than 5 s.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take());
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            child.kill().ok();
            child.wait().ok();
        }
    }
}

impl Drop for PyProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() && !self.shown {
            eprintln!(
                "----- output of {} ({}) -----\n{}\n----- end of {} -----",
                self.name,
                self.dir.path().display(),
                self.output(),
                self.name
            );
        }
    }
}

/// Runs `interop/client_against_gateway.py` (the original client, unchanged) against
/// `base_url`, whose gateway has a worker `worker_id` on `tag`; panics with its PASS/FAIL
/// lines unless every check passed. `original_gateway`: the gateway is the Python one (the
/// script then steps around that gateway's known cancel race).
async fn run_client_script(base_url: &str, worker_id: &str, tag: &str, original_gateway: bool) {
    run_client_script_with_key(base_url, worker_id, tag, original_gateway, None).await
}

/// [`run_client_script`] with the client's `api_key=` set.
async fn run_client_script_with_key(
    base_url: &str,
    worker_id: &str,
    tag: &str,
    original_gateway: bool,
    api_key: Option<&str>,
) {
    let script = interop_dir().join("client_against_gateway.py");
    let script = script.to_str().unwrap();
    let mut args = vec![script, base_url, "--worker-id", worker_id, "--tag", tag];
    if original_gateway {
        args.push("--original-gateway");
    }
    if let Some(key) = api_key {
        args.extend(["--api-key", key]);
    }
    let mut proc = PyProcess::spawn("client_against_gateway.py", "python", &args, &[]);
    let status = proc.wait(Duration::from_secs(50)).await;
    let output = proc.output();
    println!("{output}");
    proc.shown = true;
    assert!(
        status.success(),
        "the Python PyocoHttpClient failed against {base_url} ({status}):\n{output}"
    );
}

/// `GET /health` answers (polled every 100 ms, while checking the process is alive).
async fn wait_healthy(proc: &mut PyProcess, base_url: &str, timeout: Duration) {
    let client = HttpClient::new(base_url).unwrap();
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(body) = client.health().await {
            assert_eq!(body, json!({"status": "ok"}));
            return;
        }
        proc.assert_running();
        assert!(
            Instant::now() < deadline,
            "{base_url}/health did not answer within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The raw body of a GET (to see floats exactly as sent, before any parsing).
async fn raw_get(url: &str) -> String {
    let resp = reqwest::get(url).await.unwrap();
    assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
    resp.text().await.unwrap()
}

/// A float that a JSON reader without correct rounding (serde_json without its
/// `float_roundtrip` feature) reads one ulp off, and so writes back as `…6458695`.
const TRICKY_FLOAT: &str = "1795318326.6458697";

// ---------------------------------------------------------------------------------------
// a. Their client against our gateway.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_http_client_works_against_our_gateway() {
    venv();
    let server = NatsServer::start();
    let config = config(&server);
    let gateway = GatewayHandle::start(config.clone()).await;
    let worker = WorkerHandle::start(config, registry(), "interop-w1", &["default"]).await;

    run_client_script(&gateway.url(), "interop-w1", "default", false).await;

    worker.stop().await;
    gateway.stop().await;
}

/// With API keys on, the original's client with `api_key=` works unchanged against our
/// gateway, using a key made by the original's own `pyoco-server-admin`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_http_client_with_an_original_api_key_works_against_our_gateway() {
    let venv = venv();
    let server = NatsServer::start();
    let mut config = config(&server);
    config.http_auth_mode = pyoco::config::AuthMode::ApiKey;
    config.auth_pepper = Some("interop-pepper".into());
    let gateway = GatewayHandle::start(config.clone()).await;
    let worker = WorkerHandle::start(config, registry(), "interop-w1", &["default"]).await;
    let out = std::process::Command::new(venv.join("bin/pyoco-server-admin"))
        .args([
            "--nats-url",
            &server.url(),
            "api-key",
            "create",
            "--tenant",
            "interop",
        ])
        .env("PYOCO_AUTH_PEPPER", "interop-pepper")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = created["api_key"].as_str().unwrap();
    // Without the key the same gateway refuses.
    let refused = reqwest::get(format!("{}/runs", gateway.url()))
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    run_client_script_with_key(&gateway.url(), "interop-w1", "default", false, Some(key)).await;

    worker.stop().await;
    gateway.stop().await;
}

// ---------------------------------------------------------------------------------------
// b. A Python worker on our NATS, fed through our gateway.
// ---------------------------------------------------------------------------------------

const PYTHON_TASKS_YAML: &str = r#"version: 1
flow:
  graph: add_one >> to_text
  defaults: {x: 41}
tasks:
  add_one: {callable: "interop_tasks:add_one"}
  to_text: {callable: "interop_tasks:to_text"}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_worker_runs_a_flow_submitted_through_our_gateway() {
    venv();
    let server = NatsServer::start();
    // Our gateway creates the NATS resources; the Python worker must accept them.
    let gateway = GatewayHandle::start(config(&server)).await;
    let client = HttpClient::new(&gateway.url()).unwrap();
    let mut py_worker = PyProcess::spawn(
        "pyoco-worker",
        "pyoco-worker",
        &[
            "--nats-url",
            &server.url(),
            "--tags",
            "pyinterop",
            "--worker-id",
            "py-interop-w1",
            "--poll-timeout",
            "0.2",
        ],
        &[
            ("PYOCO_NATS_URL", server.url()),
            ("PYTHONPATH", interop_dir().display().to_string()),
        ],
    );

    let submitted = client
        .submit_yaml(PYTHON_TASKS_YAML.as_bytes(), "py-tasks", Some("pyinterop"))
        .await
        .unwrap();
    assert_eq!(submitted["status"], "PENDING", "{submitted}");
    let run_id = submitted["run_id"].as_str().unwrap().to_string();

    let run = wait_terminal(&client, &run_id).await;
    py_worker.assert_running();
    assert_eq!(run["status"], "COMPLETED", "{run:#}");
    assert_eq!(run["flow_name"], "py-tasks");
    assert_eq!(run["tag"], "pyinterop");
    assert_eq!(run["tags"], json!(["pyinterop"]));
    assert_eq!(run["params"], json!({"x": 41}));
    assert_eq!(
        run["tasks"],
        json!({"add_one": "SUCCEEDED", "to_text": "SUCCEEDED"})
    );
    let records = &run["task_records"];
    assert_eq!(records["add_one"]["output"], 42, "{records:#}");
    assert_eq!(records["add_one"]["inputs"], json!({"x": 41}));
    assert_eq!(records["to_text"]["output"], "v=42", "{records:#}");
    assert_eq!(records["to_text"]["inputs"], json!({"add_one": 42}));
    assert_eq!(
        run["workflow_yaml_sha256"],
        pyoco::flow::yaml::sha256_hex(PYTHON_TASKS_YAML.as_bytes())
    );
    assert_eq!(run["workflow_yaml_bytes"], PYTHON_TASKS_YAML.len());
    // The Python-written snapshot is read back by our other routes too.
    let tasks = client.get_tasks(&run_id).await.unwrap();
    assert_eq!(tasks["status"], "COMPLETED");
    assert_eq!(tasks["task_records"]["to_text"]["output"], "v=42");
    let listed = client
        .list_runs(&pyoco::client::http::ListRuns {
            flow: Some("py-tasks".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["run_id"], run_id.as_str());
    assert_eq!(listed[0]["status"], "COMPLETED");

    drop(py_worker);
    gateway.stop().await;
}

/// Python writes floats with `repr` (shortest round-trip); our gateway must pass them on
/// unchanged, or timestamps such as `cancel_requested_at` and list cursors drift by an ulp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floats_written_by_a_python_worker_pass_through_our_gateway_unchanged() {
    venv();
    let server = NatsServer::start();
    let gateway = GatewayHandle::start(config(&server)).await;
    let client = HttpClient::new(&gateway.url()).unwrap();
    let _py_worker = PyProcess::spawn(
        "pyoco-worker",
        "pyoco-worker",
        &[
            "--nats-url",
            &server.url(),
            "--tags",
            "pyfloat",
            "--worker-id",
            "py-float-w1",
            "--poll-timeout",
            "0.2",
        ],
        &[
            ("PYOCO_NATS_URL", server.url()),
            ("PYTHONPATH", interop_dir().display().to_string()),
        ],
    );
    let yaml =
        "flow: {graph: precise}\ntasks:\n  precise: {callable: \"interop_tasks:precise_float\"}\n";
    let submitted = client
        .submit_yaml(yaml.as_bytes(), "py-float", Some("pyfloat"))
        .await
        .unwrap();
    let run_id = submitted["run_id"].as_str().unwrap().to_string();
    let run = wait_terminal(&client, &run_id).await;
    assert_eq!(run["status"], "COMPLETED", "{run:#}");
    let body = raw_get(&format!("{}/runs/{run_id}?include=records", gateway.url())).await;
    assert!(
        body.contains(&format!("\"output\":{TRICKY_FLOAT}")),
        "the task output {TRICKY_FLOAT} (as the Python worker wrote it) came back changed: {body}"
    );
    gateway.stop().await;
}

// ---------------------------------------------------------------------------------------
// c. Our worker behind their gateway.
// ---------------------------------------------------------------------------------------

const BUILTINS_YAML: &str = r#"version: 1
flow:
  graph: a >> b
  defaults: {greeting: bonjour}
tasks:
  a: {callable: "pyoco:echo", inputs: {value: "$ctx.params.greeting"}}
  b: {callable: "pyoco:echo", inputs: {value: "$node.a.output"}}
"#;

/// `pyoco-server up` on a free port against `server`; returns the process and its base URL
/// once `/health` answers (the Python gateway has created its NATS resources by then).
async fn start_python_gateway(server: &NatsServer) -> (PyProcess, String) {
    start_python_gateway_with(server, &[]).await
}

/// [`start_python_gateway`] with more environment variables (e.g. its auth mode).
async fn start_python_gateway_with(
    server: &NatsServer,
    extra_env: &[(&str, String)],
) -> (PyProcess, String) {
    let port = free_port().to_string();
    let mut proc = PyProcess::spawn(
        "pyoco-server",
        "pyoco-server",
        &[
            "up",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--nats-url",
            &server.url(),
        ],
        &[&[("PYOCO_NATS_URL", server.url())], extra_env].concat(),
    );
    let url = format!("http://127.0.0.1:{port}");
    wait_healthy(&mut proc, &url, Duration::from_secs(30)).await;
    (proc, url)
}

/// A key made by our admin command authenticates against the original gateway in api_key mode
/// (same bucket, same record format, same pepper).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_api_key_authenticates_against_the_python_gateway() {
    venv();
    let server = NatsServer::start();
    let (proc, url) = start_python_gateway_with(
        &server,
        &[
            ("PYOCO_HTTP_AUTH_MODE", "api_key".into()),
            ("PYOCO_AUTH_PEPPER", "interop-pepper".into()),
        ],
    )
    .await;
    let mut our_config = config(&server);
    our_config.auth_pepper = Some("interop-pepper".into());
    let store = pyoco::Store::connect(std::sync::Arc::new(our_config), "interop-admin")
        .await
        .unwrap();
    let created = pyoco::admin::run(
        &store,
        Some("interop-pepper"),
        pyoco::admin::AdminCommand::CreateKey {
            tenant: "ours".into(),
            admin: false,
        },
    )
    .await;
    let created: Value = serde_json::from_str(&created.stdout).unwrap();
    let key = created["api_key"].as_str().unwrap();
    // GET /wheels: protected in the original and, unlike GET /runs, 200 on an empty install.
    let http = reqwest::Client::new();
    let without = http.get(format!("{url}/wheels")).send().await.unwrap();
    assert_eq!(without.status(), 401, "the original gateway enforces keys");
    let with = http
        .get(format!("{url}/wheels"))
        .header("X-API-Key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(with.status(), 200, "{:?}", with.text().await);
    let wrong = http
        .get(format!("{url}/wheels"))
        .header("X-API-Key", format!("{key}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    drop(proc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_worker_runs_flows_submitted_through_the_python_gateway() {
    venv();
    let server = NatsServer::start();
    // The Python gateway creates the NATS resources first; our worker must accept them.
    let (mut py_gateway, url) = start_python_gateway(&server).await;
    let worker =
        WorkerHandle::start(config(&server), registry(), "rs-interop-w1", &["rsinterop"]).await;
    let client = HttpClient::new(&url).unwrap();

    // A flow.yaml with our built-in callables.
    let submitted = client
        .submit_yaml(BUILTINS_YAML.as_bytes(), "rs-builtins", Some("rsinterop"))
        .await
        .unwrap();
    assert_eq!(submitted["status"], "PENDING", "{submitted}");
    let run_id = submitted["run_id"].as_str().unwrap().to_string();
    let run = wait_terminal(&client, &run_id).await;
    py_gateway.assert_running();
    assert_eq!(run["status"], "COMPLETED", "{run:#}");
    assert_eq!(run["flow_name"], "rs-builtins");
    assert_eq!(run["tasks"], json!({"a": "SUCCEEDED", "b": "SUCCEEDED"}));
    assert_eq!(run["params"], json!({"greeting": "bonjour"}));
    assert_eq!(run["task_records"]["a"]["output"], "bonjour", "{run:#}");
    assert_eq!(run["task_records"]["b"]["output"], "bonjour");
    assert_eq!(
        run["task_records"]["b"]["inputs"],
        json!({"value": "bonjour"})
    );
    assert_eq!(run["error"], Value::Null);
    assert!(run["end_time"].as_f64().unwrap() >= run["start_time"].as_f64().unwrap());
    // Our worker keeps `worker_id` in the snapshot, so their gateway joins it with our
    // registry record.
    assert_eq!(run["worker_id"], "rs-interop-w1");
    assert_eq!(run["worker_alive"], true, "{run:#}");
    assert_eq!(run["worker_tags"], json!(["rsinterop"]));
    let tasks = client.get_tasks(&run_id).await.unwrap();
    assert_eq!(tasks["tasks"], json!({"a": "SUCCEEDED", "b": "SUCCEEDED"}));
    assert_eq!(tasks["task_records_truncated"], false);

    // A named flow: their gateway publishes only the name, our worker resolves
    // examples/flows/hello.yaml.
    let mut params = serde_json::Map::new();
    params.insert("name".into(), json!("python-gateway"));
    let submitted = client
        .submit_run("hello", params, Some("rsinterop"), None)
        .await
        .unwrap();
    assert_eq!(submitted["status"], "PENDING", "{submitted}");
    let run_id = submitted["run_id"].as_str().unwrap().to_string();
    let run = wait_terminal(&client, &run_id).await;
    assert_eq!(run["status"], "COMPLETED", "{run:#}");
    assert_eq!(run["flow_name"], "hello");
    assert_eq!(run["params"], json!({"name": "python-gateway"}));
    assert_eq!(
        run["tasks"],
        json!({"greet": "SUCCEEDED", "left": "SUCCEEDED", "right": "SUCCEEDED", "done": "SUCCEEDED"})
    );
    assert_eq!(run["task_records"]["done"]["output"], "python-gateway");

    // Their list shows both runs of our worker.
    let listed = client
        .list_runs(&pyoco::client::http::ListRuns {
            tag: Some("rsinterop".into()),
            status: Some("COMPLETED".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");

    // Our gateway also starts on the resources the Python gateway created, and serves the
    // same runs.
    let ours = GatewayHandle::start(config(&server)).await;
    let our_client = HttpClient::new(&ours.url()).unwrap();
    let same = our_client.get_run(&run_id, true).await.unwrap();
    assert_eq!(same["status"], "COMPLETED");
    assert_eq!(same["task_records"], run["task_records"]);
    let listed = our_client
        .list_runs(&pyoco::client::http::ListRuns {
            tag: Some("rsinterop".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");

    py_gateway.assert_running();
    ours.stop().await;
    worker.stop().await;
    drop(py_gateway);
}

/// The client script against the original gateway with our worker: shows that the script's
/// expectations are the original's, and exercises cancel, watch and the worker registry of
/// our worker through the original gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_http_client_works_against_the_python_gateway_with_our_worker() {
    venv();
    let server = NatsServer::start();
    let (mut py_gateway, url) = start_python_gateway(&server).await;
    // The original gateway's cancel is read-then-put: as documented for such mixes, our
    // worker guards its terminal snapshots.
    let mut guarded = config(&server);
    guarded.terminal_guard = std::time::Duration::from_millis(500);
    let worker = WorkerHandle::start(guarded, registry(), "rs-interop-w2", &["rsinterop"]).await;

    run_client_script(&url, "rs-interop-w2", "rsinterop", true).await;

    py_gateway.assert_running();
    worker.stop().await;
    drop(py_gateway);
}

/// Params sent to the Python gateway keep their exact floats through our worker, which
/// reads the job and rewrites the snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floats_in_params_pass_through_our_worker_unchanged() {
    venv();
    let server = NatsServer::start();
    let (_py_gateway, url) = start_python_gateway(&server).await;
    let worker =
        WorkerHandle::start(config(&server), registry(), "rs-float-w1", &["rsfloat"]).await;
    let client = HttpClient::new(&url).unwrap();
    let stamp: f64 = TRICKY_FLOAT.parse().unwrap();
    let mut params = serde_json::Map::new();
    params.insert("name".into(), json!("float"));
    params.insert("stamp".into(), json!(stamp));
    let submitted = client
        .submit_run("hello", params, Some("rsfloat"), None)
        .await
        .unwrap();
    let run_id = submitted["run_id"].as_str().unwrap().to_string();
    let run = wait_terminal(&client, &run_id).await;
    assert_eq!(run["status"], "COMPLETED", "{run:#}");
    let body = raw_get(&format!("{url}/runs/{run_id}")).await;
    assert!(
        body.contains(&format!("\"stamp\":{TRICKY_FLOAT}")),
        "param stamp={TRICKY_FLOAT} came back changed after our worker rewrote the snapshot: {body}"
    );
    worker.stop().await;
}
