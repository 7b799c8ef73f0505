//! The sandbox of `pyoco:python` inline scripts (bubblewrap), end to end through a real
//! nats-server, gateway and worker: what a script must not do fails inside it, ordinary
//! scripts still work. Without bwrap these tests skip with a message, except under
//! `CI=true` (scripts/test.sh installs it with scripts/install-bubblewrap.sh).
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::os::unix::fs::PermissionsExt;

use pyoco::flow::builtins::sandbox::ScriptSandbox;
use pyoco::testkit::Stack;
use serde_json::{Value, json};

fn have_bwrap() -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join("bwrap").is_file()));
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("bubblewrap is required under CI=true (scripts/install-bubblewrap.sh)");
        }
        eprintln!(
            "SKIPPED: bubblewrap (bwrap) is not installed: run scripts/install-bubblewrap.sh"
        );
    }
    found
}

/// Runs `script` (with `input`) as the only task and returns the terminal run.
async fn run_script(stack: &Stack, script: &str, input: Value) -> Value {
    let flow = json!({"flow": {"graph": "p"}, "tasks": {"p": {
        "callable": "pyoco:python", "inputs": {"script": script, "input": input, "timeout_sec": 20}}}});
    stack.run_to_end(&flow.to_string(), "sandbox").await
}

const PROBES: &str = r#"
import os, socket

def attempt(f):
    try:
        return "ok: %s" % (f(),)
    except Exception as e:
        return "%s: %s" % (type(e).__name__, e)

def write(path):
    with open(path, "w") as f:
        f.write("x")
    return path

def read(path):
    with open(path) as f:
        return f.read()

def main(params, p):
    return {
        "connect_local": attempt(lambda: socket.create_connection(("127.0.0.1", p["port"]), timeout=5)),
        "connect_remote": attempt(lambda: socket.create_connection(("192.0.2.1", 80), timeout=5)),
        "write_outside": attempt(lambda: write(p["outside"])),
        "write_tmp": attempt(lambda: write("/tmp/escape")),
        "write_var_tmp": attempt(lambda: write("/var/tmp/pyoco-escape")),
        "write_etc": attempt(lambda: write("/etc/pyoco-escape")),
        "read_shadow": attempt(lambda: read("/etc/shadow")),
        "read_secret": attempt(lambda: read(p["secret"])),
        "env": sorted(os.environ),
    }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandboxed_scripts_cannot_connect_write_outside_or_read_secrets() {
    if !have_bwrap() {
        return;
    }
    let stack = Stack::start().await;
    // Not under /tmp, which the sandbox replaces: the script must see this directory (a
    // checkout under /tmp, as CI may make, puts the target directory there: then /var/tmp).
    let base = match env!("CARGO_TARGET_TMPDIR") {
        t if std::path::Path::new(t).starts_with("/tmp") => "/var/tmp",
        t => t,
    };
    let dir = tempfile::tempdir_in(base).unwrap();
    // World-writable, so only the read-only mount can stop the write.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let outside = dir.path().join("escaped");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let port: u16 = stack
        .gateway
        .url()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();

    let done = run_script(
        &stack,
        PROBES,
        json!({"port": port, "outside": outside, "secret": secret}),
    )
    .await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    let out = &done["task_records"]["p"]["output"];
    let text = |k: &str| out[k].as_str().unwrap().to_string();
    // The gateway listens on the worker's loopback; the script's loopback is its own.
    assert_eq!(
        text("connect_local"),
        "ConnectionRefusedError: [Errno 111] Connection refused"
    );
    assert_eq!(
        text("connect_remote"),
        "OSError: [Errno 101] Network is unreachable"
    );
    assert!(
        text("write_outside").starts_with("OSError: [Errno 30] Read-only file system"),
        "{out}"
    );
    assert!(!outside.exists());
    assert!(
        text("write_tmp").starts_with("OSError: [Errno 30] Read-only file system"),
        "{out}"
    );
    assert!(
        text("write_var_tmp").starts_with("OSError: [Errno 30] Read-only file system"),
        "{out}"
    );
    assert!(
        text("write_etc").starts_with("OSError: [Errno 30] Read-only file system"),
        "{out}"
    );
    assert!(
        text("read_shadow").starts_with("PermissionError: [Errno 13]"),
        "{out}"
    );
    if rustix::process::geteuid().is_root() {
        // As root the worker drops scripts to uid 65534: root's 0600 files are closed.
        assert!(
            text("read_secret").starts_with("PermissionError: [Errno 13]"),
            "{out}"
        );
    }
    let env: Vec<&str> = out["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for name in &env {
        assert!(
            ["HOME", "LANG", "LC_CTYPE", "PATH", "PWD", "TMPDIR"].contains(name),
            "inherited variable {name}: {env:?}"
        );
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_bomb_hits_the_process_limit_and_ordinary_scripts_still_work() {
    if !have_bwrap() {
        return;
    }
    let stack = Stack::start().await;
    let bomb = r#"
import os, time

def main(params, input_payload):
    children = 0
    while children < 5000:
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        children += 1
    return children
"#;
    let failed = run_script(&stack, bomb, Value::Null).await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert_eq!(
        failed["error"],
        "[Errno 11] Resource temporarily unavailable"
    );
    assert!(
        failed["task_records"]["p"]["traceback"]
            .as_str()
            .unwrap()
            .contains("BlockingIOError"),
        "{failed}"
    );

    let ordinary = r#"
import json, math, os, subprocess, tempfile

def main(params, input_payload):
    with open("notes.txt", "w") as f:
        f.write(json.dumps(input_payload))
    with tempfile.NamedTemporaryFile("w+", delete=True) as t:
        t.write("scratch")
        t.seek(0)
        scratch = t.read()
    echoed = subprocess.run(["echo", "child"], capture_output=True, text=True).stdout.strip()
    with open(os.path.join(os.getcwd(), "notes.txt")) as f:
        back = json.loads(f.read())
    return {"back": back, "sqrt": math.sqrt(16), "scratch": scratch, "child": echoed,
            "cwd": os.getcwd(), "tmp": tempfile.gettempdir()}
"#;
    let done = run_script(&stack, ordinary, json!({"items": [1, 2]})).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(
        done["task_records"]["p"]["output"],
        json!({"back": {"items": [1, 2]}, "sqrt": 4.0, "scratch": "scratch", "child": "child",
               "cwd": "/tmp/work", "tmp": "/tmp/work"})
    );

    // A spinning script is stopped by the timeout, sandbox and all.
    let spin = "def main(params, input_payload):\n    while True:\n        pass\n";
    let flow = json!({"flow": {"graph": "p"}, "tasks": {"p": {
        "callable": "pyoco:python", "inputs": {"script": spin, "timeout_sec": 1}}}});
    let failed = stack.run_to_end(&flow.to_string(), "sandbox").await;
    assert_eq!(failed["error"], "pyoco:python: script timed out after 1s");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_off_runs_scripts_as_plain_processes() {
    let stack = Stack::start_with(|c| c.script_sandbox = false).await;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("written");
    let script = "def main(params, path):\n    with open(path, 'w') as f:\n        f.write('unsandboxed')\n    return 'done'\n";
    let done = run_script(&stack, script, json!(target)).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "unsandboxed");
    stack.stop().await;
}

#[tokio::test]
async fn a_sandbox_that_cannot_start_says_why() {
    if !have_bwrap() {
        return;
    }
    let sandbox = ScriptSandbox::new(true);
    let err = sandbox.probe("/nonexistent/python3").await.unwrap_err();
    assert_eq!(
        err,
        "the Python interpreter '/nonexistent/python3' was not found"
    );
    let system = ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file())
        .unwrap();
    assert_eq!(ScriptSandbox::new(true).probe(system).await, Ok(()));
    assert!(
        ScriptSandbox::new(false)
            .probe("/nonexistent/python3")
            .await
            .is_ok()
    );
}
