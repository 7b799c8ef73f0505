//! Python callables (`module:function`) run by the worker's Python runner, against a real
//! nats-server and a real interpreter.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::path::Path;
use std::time::{Duration, Instant};

use pyoco::Registry;
use pyoco::flow::python::PythonPool;
use pyoco::testkit::{Stack, submit_yaml, wait_for};
use serde_json::{Value, json};

const TASKS: &str = r#"
import os, time

def add_one(x=0):
    return int(x) + 1

def to_text(add_one):
    return f"v={add_one}"

def boom():
    raise ValueError("boom")

def chatty(ctx, word="hi"):
    print("said", word)
    return {"task": ctx.task, "run": ctx.run_id is not None, "odd": {1, 2}}

def spawner(pid_file):
    import subprocess
    child = subprocess.Popen(["sleep", "300"])
    with open(pid_file, "w") as f:
        f.write(str(child.pid))
    time.sleep(60)
    return "done"

def hog(mb=1024):
    block = bytearray(mb * 1024 * 1024)
    return len(block)

def slow(pid_file, seconds=60):
    with open(pid_file, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)
    return "done"
"#;

struct Env {
    stack: Stack,
    dir: tempfile::TempDir,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("quick_tasks.py"), TASKS).unwrap();
    let mut registry = Registry::with_builtins();
    registry.use_python(PythonPool::with_path(
        "python3",
        Duration::from_millis(500),
        vec![dir.path().to_path_buf()],
    ));
    let stack = Stack::builder()
        .config(|c| c.cancel_grace_period = Duration::from_secs(1))
        .registry(registry)
        .worker_id("py")
        .start()
        .await;
    Env { stack, dir }
}

async fn run_flow(env: &Env, yaml: &str) -> Value {
    env.stack.run_to_end(yaml, "py").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quickstart_flow_runs_with_python_callables_wired_like_the_original() {
    let env = env().await;
    let run = run_flow(&env, "flow: {graph: 'add_one >> to_text', defaults: {x: 41}}\ntasks:\n  add_one: {callable: 'quick_tasks:add_one'}\n  to_text: {callable: 'quick_tasks:to_text'}\n").await;
    assert_eq!(run["status"], "COMPLETED", "{run}");
    assert_eq!(run["task_records"]["add_one"]["output"], 42);
    assert_eq!(
        run["task_records"]["add_one"]["inputs"],
        json!({"x": 41}),
        "params by name"
    );
    assert_eq!(run["task_records"]["to_text"]["output"], "v=42");
    assert_eq!(
        run["task_records"]["to_text"]["inputs"],
        json!({"add_one": 42}),
        "upstream output by task name"
    );
    env.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceptions_output_capture_ctx_and_non_json_values() {
    let env = env().await;
    let failed = run_flow(
        &env,
        "flow: {graph: a}\ntasks: {a: {callable: 'quick_tasks:boom'}}\n",
    )
    .await;
    assert_eq!(failed["status"], "FAILED");
    assert_eq!(failed["error"], "boom");
    let tb = failed["task_records"]["a"]["traceback"].as_str().unwrap();
    assert!(
        tb.contains("ValueError: boom") && tb.contains("Traceback"),
        "{tb}"
    );
    let ok = run_flow(&env, "flow: {graph: talk}\ntasks: {talk: {callable: 'quick_tasks:chatty', inputs: {word: yo}}}\n").await;
    assert_eq!(ok["status"], "COMPLETED", "{ok}");
    let rec = &ok["task_records"]["talk"];
    assert_eq!(
        rec["output"],
        json!("{'task': 'talk', 'run': True, 'odd': {1, 2}}"),
        "a value json.dumps refuses becomes its repr(), as in the original"
    );
    assert_eq!(rec["stdout"], "said yo\n");
    assert_eq!(
        rec["inputs"],
        json!({"word": "yo"}),
        "ctx is passed but not recorded"
    );
    let missing = run_flow(
        &env,
        "flow: {graph: a}\ntasks: {a: {callable: 'no_such_module:f'}}\n",
    )
    .await;
    assert_eq!(missing["status"], "FAILED");
    assert!(
        missing["error"]
            .as_str()
            .unwrap()
            .contains("No module named 'no_such_module'")
    );
    env.stack.stop().await;
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

async fn pid_from(file: &Path) -> u32 {
    wait_for(
        "the task to write its pid",
        Duration::from_secs(20),
        || async { std::fs::read_to_string(file).ok()?.trim().parse().ok() },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_kills_a_running_python_task() {
    let env = env().await;
    let pid_file = env.dir.path().join("slow.pid");
    let yaml = format!(
        "flow: {{graph: s}}\ntasks: {{s: {{callable: 'quick_tasks:slow', inputs: {{pid_file: '{}'}}}}}}\n",
        pid_file.display()
    );
    let run_id = submit_yaml(&env.stack.client, &yaml, "py", None).await;
    let pid = pid_from(&pid_file).await;
    assert!(alive(pid));
    let asked = Instant::now();
    reqwest::Client::new()
        .post(format!("{}/runs/{run_id}/cancel", env.stack.gateway.url()))
        .send()
        .await
        .unwrap();
    let run = wait_for("CANCELLED", Duration::from_secs(20), || async {
        let run = env.stack.client.get_run(&run_id, false).await.ok()?;
        (run["status"] == "CANCELLED").then_some(run)
    })
    .await;
    assert_eq!(run["tasks"]["s"], "CANCELLED");
    wait_for(
        "the Python process to be gone",
        Duration::from_secs(10),
        || async { (!alive(pid)).then_some(()) },
    )
    .await;
    assert!(asked.elapsed() < Duration::from_secs(15));
    // The worker goes on with a fresh runner.
    let next = run_flow(&env, "flow: {graph: add_one}\ntasks: {add_one: {callable: 'quick_tasks:add_one', inputs: {x: 1}}}\n").await;
    assert_eq!(next["task_records"]["add_one"]["output"], 2);
    env.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_kills_a_python_task_and_retries_are_counted() {
    let env = env().await;
    // A runner started and the module imported first: on a loaded machine a cold start
    // alone can take longer than the timeout, and the task would never write its pid.
    let warm = run_flow(
        &env,
        "flow: {graph: add_one}\ntasks: {add_one: {callable: 'quick_tasks:add_one'}}\n",
    )
    .await;
    assert_eq!(warm["status"], "COMPLETED", "{warm}");
    let pid_file = env.dir.path().join("timeout.pid");
    let yaml = format!(
        "flow: {{graph: s}}\ntasks: {{s: {{callable: 'quick_tasks:slow', inputs: {{pid_file: '{}'}}, timeout_sec: 1.5, retries: 1, retry_backoff_ms: 10}}}}\n",
        pid_file.display()
    );
    let run = run_flow(&env, &yaml).await;
    assert_eq!(run["status"], "FAILED");
    assert_eq!(run["error"], "Task 's' exceeded timeout of 1.5s");
    assert_eq!(run["task_records"]["s"]["attempts"], 2);
    let pid = pid_from(&pid_file).await;
    wait_for(
        "the timed-out process to be gone",
        Duration::from_secs(10),
        || async { (!alive(pid)).then_some(()) },
    )
    .await;
    env.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_also_stops_the_processes_the_task_started() {
    let env = env().await;
    let pid_file = env.dir.path().join("child.pid");
    let yaml = format!(
        "flow: {{graph: s}}\ntasks: {{s: {{callable: 'quick_tasks:spawner', inputs: {{pid_file: '{}'}}, timeout_sec: 1}}}}\n",
        pid_file.display()
    );
    let run = run_flow(&env, &yaml).await;
    assert_eq!(run["status"], "FAILED");
    let child = pid_from(&pid_file).await;
    // The task's `sleep 300` is in the runner's process group, so the timeout stops it too.
    wait_for(
        "the task's child process to be gone",
        Duration::from_secs(10),
        || async { (!alive(child)).then_some(()) },
    )
    .await;
    env.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_past_the_memory_limit_fails_with_memory_error_and_the_next_one_runs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("quick_tasks.py"), TASKS).unwrap();
    let mut registry = Registry::with_builtins();
    // PYOCO_PYTHON_MEMORY_MB=300 for the worker's own pool does the same.
    registry.use_python(
        PythonPool::with_path(
            "python3",
            Duration::from_millis(500),
            vec![dir.path().to_path_buf()],
        )
        .with_memory_limit(Some(300)),
    );
    let stack = Stack::builder()
        .registry(registry)
        .worker_id("py-mem")
        .start()
        .await;
    let run = stack
        .run_to_end(
            "flow: {graph: h}\ntasks: {h: {callable: 'quick_tasks:hog', inputs: {mb: 1024}}}\n",
            "mem",
        )
        .await;
    assert_eq!(run["status"], "FAILED", "{run}");
    let traceback = run["task_records"]["h"]["traceback"]
        .as_str()
        .unwrap_or_default();
    assert!(traceback.contains("MemoryError"), "{run}");
    let small = stack
        .run_to_end(
            "flow: {graph: h}\ntasks: {h: {callable: 'quick_tasks:hog', inputs: {mb: 10}}}\n",
            "mem",
        )
        .await;
    assert_eq!(small["status"], "COMPLETED", "{small}");
    assert_eq!(small["task_records"]["h"]["output"], 10 * 1024 * 1024);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tasks_own_memory_mb_limits_only_that_task() {
    let env = env().await;
    // The worker's pool has no limit: 200 MiB is fine for a task without memory_mb...
    let free = run_flow(
        &env,
        "flow: {graph: h}\ntasks: {h: {callable: 'quick_tasks:hog', inputs: {mb: 200}}}\n",
    )
    .await;
    assert_eq!(free["status"], "COMPLETED", "{free}");
    // ...and a MemoryError for one limited to 128 MiB, in a process of its own.
    let limited = run_flow(
        &env,
        "flow: {graph: h}\ntasks: {h: {callable: 'quick_tasks:hog', inputs: {mb: 200}, memory_mb: 128}}\n",
    )
    .await;
    assert_eq!(limited["status"], "FAILED", "{limited}");
    let traceback = limited["task_records"]["h"]["traceback"]
        .as_str()
        .unwrap_or_default();
    assert!(traceback.contains("MemoryError"), "{limited}");
    // The pooled runners were not touched by the limit.
    let after = run_flow(
        &env,
        "flow: {graph: h}\ntasks: {h: {callable: 'quick_tasks:hog', inputs: {mb: 200}}}\n",
    )
    .await;
    assert_eq!(after["status"], "COMPLETED", "{after}");
    env.stack.stop().await;
}
