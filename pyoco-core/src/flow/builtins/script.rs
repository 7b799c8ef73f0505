//! `pyoco:python`: runs an inline script defining `main(params, input_payload)` in a fresh
//! interpreter per call (`PYOCO_PYTHON` or `python3`, isolated with `-I -S`: no user site,
//! no site-packages, no `PYTHON*` variables), in an empty temporary working directory, with
//! its address space limited to `memory_mb`. The process group is killed on cancel or
//! timeout, like `pyoco:shell`.
//!
//! Unless `PYOCO_SCRIPT_SANDBOX=off`, the interpreter runs in the [`super::sandbox`] (no
//! network, read-only file system but for its working directory, no inherited environment)
//! with CPU-time, process-count and file-size limits; when the sandbox cannot be set up,
//! scripts are refused with the reason.
//!
//! `params` are the run's params; `input_payload` is the `input` input (`{}` when absent).
//! The result is `main()`'s return value; an exception fails the task with its message and
//! puts the traceback in the task record. What the script prints lands in the record's
//! `stdout` / `stderr`.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::process::Command;

use super::process;
use super::sandbox::{self, ScriptSandbox};
use super::{Args, last_line};
use crate::flow::tasks::{TaskCall, TaskError};

pub(super) const PARAMS: &[&str] = &["script", "input", "timeout_sec", "memory_mb"];

const RUNNER: &str = include_str!("script_runner.py");

/// The answer line may carry a large result; beyond this the script fails.
const STDOUT_LIMIT: usize = 16 * 1024 * 1024;
/// What the record keeps of printed output.
const PRINT_LIMIT: usize = 64 * 1024;

/// Variables the interpreter may need to start (a pyenv shim needs `HOME`/`PYENV_*`); the
/// rest of the worker's environment (credentials, `PYOCO_*`) is not passed on.
const PASSED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "PYENV_ROOT",
    "PYENV_VERSION",
];

pub(super) async fn run(sandbox: Arc<ScriptSandbox>, call: TaskCall) -> Result<Value, TaskError> {
    let args = Args::new(&call, "pyoco:python");
    let script = args.str("script")?.ok_or_else(|| {
        args.error("script is required (Python source defining main(params, input_payload))")
    })?;
    let input = match call.args.get("input") {
        None => json!({}),
        Some(v) => v.clone(),
    };
    let timeout = args.seconds("timeout_sec", Some(30.0), 300.0)?;
    let memory_mb = match args.get("memory_mb") {
        None => 512,
        Some(v) => v
            .as_u64()
            .filter(|m| (32..=1024 * 1024).contains(m))
            .ok_or_else(|| {
                args.error(format!(
                    "memory_mb must be a whole number from 32 to 1048576, got {v}"
                ))
            })?,
    };
    let interpreter = interpreter(sandbox.enabled());
    let timeout_secs = timeout.map_or(0, |t| t.as_secs_f64().ceil() as u64);

    let marker = format!("\u{1e}pyoco-result-{}", uuid::Uuid::new_v4().simple());
    let mut request = json!({
        "script": script,
        "params": *call.params,
        "input": input,
        "memory_mb": memory_mb,
        "marker": marker,
    });
    // `_workdir` (only without the sandbox) is kept until the process is gone, then removed.
    let (command, _workdir) = if sandbox.enabled() {
        let plan = sandbox.plan(&interpreter).await.map_err(|e| {
            args.error(format!(
                "scripts are refused: the sandbox cannot be set up: {e} (PYOCO_SCRIPT_SANDBOX=off runs scripts without it)"
            ))
        })?;
        let program = sandbox::resolve(&interpreter).ok_or_else(|| {
            args.error(format!(
                "the Python interpreter '{interpreter}' (PYOCO_PYTHON) was not found"
            ))
        })?;
        request["limits"] = json!({
            // The wall-clock timeout stops a busy loop; this also bounds busy threads.
            "cpu_sec": timeout_secs.max(1) + 1,
            "processes": plan.process_limit(),
            "file_bytes": sandbox::WORK_DIR_BYTES,
        });
        (plan.command(&program, &["-I", "-S", "-c", RUNNER]), None)
    } else {
        let workdir =
            WorkDir::create().map_err(|e| args.error(format!("no temporary directory: {e}")))?;
        let mut command = Command::new(&interpreter);
        command
            .args(["-I", "-S", "-c", RUNNER])
            .current_dir(&workdir.0)
            .env_clear()
            .env("TMPDIR", &workdir.0);
        for key in PASSED_ENV {
            if let Some(value) = std::env::var_os(key) {
                command.env(key, value);
            }
        }
        (command, Some(workdir))
    };
    let stdin = request.to_string().into_bytes();
    let ended = process::run(
        command,
        Some(stdin),
        &call.cancel,
        timeout,
        STDOUT_LIMIT,
        PRINT_LIMIT,
    )
    .await
    .map_err(|e| {
        args.error(format!(
            "could not start the Python interpreter '{interpreter}' (PYOCO_PYTHON): {e}"
        ))
    })?;
    let (status, stdout, stderr) = ended.exited("script", |m| args.error(m))?;
    let stderr = stderr.text();
    let needle = format!("\n{marker} ");
    let Some(at) = rfind(&stdout.bytes, needle.as_bytes()) else {
        let mut message = if stdout.truncated {
            format!(
                "the script printed more than {} MiB",
                STDOUT_LIMIT / (1024 * 1024)
            )
        } else {
            match std::os::unix::process::ExitStatusExt::signal(&status) {
                // RLIMIT_CPU: SIGXCPU.
                Some(24) => {
                    "the script used more than its CPU time (timeout_sec + 1 s)".to_string()
                }
                _ => format!(
                    "the Python process exited with {} without a result",
                    process::describe_status(&status)
                ),
            }
        };
        if let Some(line) = last_line(&stderr) {
            message = format!("{message}: {line}");
        }
        record(&call, &String::from_utf8_lossy(&stdout.bytes), &stderr);
        return Err(args.error(message));
    };
    let printed = String::from_utf8_lossy(&stdout.bytes[..at]);
    record(&call, &printed, &stderr);
    let answer: Value = serde_json::from_slice(&stdout.bytes[at + needle.len()..])
        .map_err(|e| args.error(format!("bad answer from the script runner: {e}")))?;
    crate::flow::python::answer_result(&answer, "the script failed")
}

/// `PYOCO_PYTHON`, else (sandboxed) the system's `python3`, else `python3` on `PATH`.
///
/// Scripts get the standard library only (`-I -S`), so any Python 3 serves them; the
/// system's is preferred in the sandbox because a `python3` found first on `PATH` is often a
/// pyenv shim in root's home, which uid 65534 cannot run.
pub(crate) fn interpreter(sandboxed: bool) -> String {
    if let Some(configured) = std::env::var("PYOCO_PYTHON")
        .ok()
        .filter(|p| !p.trim().is_empty())
    {
        return configured;
    }
    if sandboxed
        && let Some(system) = ["/usr/bin/python3", "/usr/local/bin/python3"]
            .into_iter()
            .find(|p| std::path::Path::new(p).is_file())
    {
        return system.to_string();
    }
    "python3".to_string()
}

/// Printed output goes into the task record (bounded; empty streams are left out).
fn record(call: &TaskCall, stdout: &str, stderr: &str) {
    let Ok(mut rec) = call.record.lock() else {
        return;
    };
    for (key, text) in [("stdout", stdout), ("stderr", stderr)] {
        let mut end = text.len().min(PRINT_LIMIT);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        if text.is_empty() {
            rec.remove(key);
        } else {
            rec.insert(key.into(), Value::String(text[..end].to_string()));
        }
    }
}

fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

/// The script's working and temporary directory, removed afterwards.
#[derive(Debug)]
struct WorkDir(PathBuf);

impl WorkDir {
    fn create() -> std::io::Result<WorkDir> {
        let dir =
            std::env::temp_dir().join(format!("pyoco-python-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&dir)?;
        Ok(WorkDir(dir))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
