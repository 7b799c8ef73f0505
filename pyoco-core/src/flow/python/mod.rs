//! Python callables (`module:function`): run by long-lived runner processes of the worker's
//! interpreter (`PYOCO_PYTHON`, default `python3`), speaking JSON lines (`runner.py`).
//!
//! One process runs one task at a time; parallel tasks get more processes, up to the pool's
//! size (`PYOCO_PYTHON_RUNNERS`; a task waits for a free one), and finished ones are kept
//! for reuse — starting an interpreter costs far more than a short task. A task that is cancelled or times out has its process signalled (SIGTERM,
//! then SIGKILL after the grace period) and replaced; a process that dies is replaced too. No
//! process is started until a flow actually calls Python.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::tasks::{TaskCall, TaskError};
use crate::shutdown::{StopSignal, signal_group};

const RUNNER: &str = include_str!("runner.py");

/// Starting the interpreter and its first answer must not take longer than this.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Runner processes of one interpreter.
#[derive(Debug)]
pub struct PythonPool {
    interpreter: String,
    kill_grace: Duration,
    /// Directories put in front of `PYTHONPATH` for the runners.
    pythonpath: Vec<std::path::PathBuf>,
    /// Address-space limit of every runner (`PYOCO_PYTHON_MEMORY_MB`), set by the runner on
    /// itself at start (`RLIMIT_AS`): a task that allocates past it gets a `MemoryError`.
    memory_mb: Option<u64>,
    idle: Mutex<Vec<Runner>>,
    /// One permit per runner process that may exist (busy or idle).
    slots: Arc<tokio::sync::Semaphore>,
    max_runners: usize,
    /// Bumped by [`PythonPool::restart`]: a runner started before is never reused.
    generation: AtomicU64,
}

#[derive(Debug)]
struct Runner {
    /// The pool generation the process was started in.
    generation: u64,
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

/// Kills a runner whose call did not finish (cancel, timeout, error) when dropped.
struct Busy {
    runner: Option<Runner>,
    grace: Duration,
}

impl Drop for Busy {
    fn drop(&mut self) {
        let Some(mut runner) = self.runner.take() else {
            return;
        };
        // The runner leads its own process group: the signals reach whatever the task started
        // too (a `subprocess.Popen("sleep 300")` must not outlive its timeout).
        let group = runner.child.id();
        if let Some(pgid) = group {
            signal_group(StopSignal::Term, pgid);
        }
        let grace = self.grace;
        // Give the task a chance to clean up, then make sure the processes are gone.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let ended = tokio::time::timeout(grace, runner.child.wait()).await;
                if let Some(pgid) = group {
                    // Children that ignored SIGTERM, even when the runner itself exited.
                    signal_group(StopSignal::Kill, pgid);
                }
                if ended.is_err() {
                    runner.child.kill().await.ok();
                }
            });
        } else {
            if let Some(pgid) = group {
                signal_group(StopSignal::Kill, pgid);
            }
            runner.child.start_kill().ok();
        }
    }
}

impl PythonPool {
    pub fn new(interpreter: impl Into<String>, kill_grace: Duration) -> Arc<PythonPool> {
        PythonPool::with_path(interpreter, kill_grace, Vec::new())
    }

    /// Like [`PythonPool::new`], with `dirs` in front of `PYTHONPATH` (task modules outside
    /// the installed packages).
    pub fn with_path(
        interpreter: impl Into<String>,
        kill_grace: Duration,
        dirs: Vec<std::path::PathBuf>,
    ) -> Arc<PythonPool> {
        Arc::new(PythonPool {
            interpreter: interpreter.into(),
            kill_grace,
            pythonpath: dirs,
            memory_mb: None,
            idle: Mutex::new(Vec::new()),
            slots: Arc::new(tokio::sync::Semaphore::new(
                crate::config::default_python_runners(),
            )),
            max_runners: crate::config::default_python_runners(),
            generation: AtomicU64::new(0),
        })
    }

    /// Limits the address space of every runner to `mb` MiB (`None`: unlimited). A pool
    /// that is not shared yet; the worker applies `PYOCO_PYTHON_MEMORY_MB` this way.
    pub fn with_memory_limit(mut self: Arc<Self>, mb: Option<u64>) -> Arc<PythonPool> {
        match Arc::get_mut(&mut self) {
            Some(pool) => pool.memory_mb = mb.filter(|m| *m > 0),
            None => tracing::warn!("the Python pool is already shared; memory limit not set"),
        }
        self
    }

    /// At most `n` runner processes at once (busy or idle; at least 1). A pool that is not
    /// shared yet; the worker applies `PYOCO_PYTHON_RUNNERS` this way.
    pub fn with_runners(mut self: Arc<Self>, n: usize) -> Arc<PythonPool> {
        match Arc::get_mut(&mut self) {
            Some(pool) => {
                pool.max_runners = n.max(1);
                pool.slots = Arc::new(tokio::sync::Semaphore::new(pool.max_runners));
            }
            None => tracing::warn!("the Python pool is already shared; runner count not set"),
        }
        self
    }

    /// The most runner processes this pool keeps at once.
    pub fn max_runners(&self) -> usize {
        self.max_runners
    }

    pub fn interpreter(&self) -> &str {
        &self.interpreter
    }

    /// Stops the idle runner processes and retires busy ones when they finish, so the next
    /// task starts a fresh interpreter. Called after a wheel sync installed or removed
    /// packages: a running interpreter keeps the modules it already imported.
    pub fn restart(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let stopped: Vec<Runner> = self
            .idle
            .lock()
            .map(|mut idle| idle.drain(..).collect())
            .unwrap_or_default();
        // Dropping a runner kills its process (`kill_on_drop`); idle runners run no task.
        drop(stopped);
    }

    async fn spawn(&self) -> Result<Runner, TaskError> {
        self.spawn_limited(self.memory_mb).await
    }

    /// The limit of a task asking for `memory_mb`: its own, never above the pool's.
    fn task_limit(&self, memory_mb: u64) -> u64 {
        self.memory_mb.map_or(memory_mb, |pool| pool.min(memory_mb))
    }

    async fn spawn_limited(&self, memory_mb: Option<u64>) -> Result<Runner, TaskError> {
        let mut command = Command::new(&self.interpreter);
        if !self.pythonpath.is_empty() {
            let mut dirs = self.pythonpath.clone();
            if let Some(existing) = std::env::var_os("PYTHONPATH") {
                dirs.extend(std::env::split_paths(&existing));
            }
            if let Ok(joined) = std::env::join_paths(dirs) {
                command.env("PYTHONPATH", joined);
            }
        }
        if let Some(mb) = memory_mb {
            command.env("PYOCO_RUNNER_MEMORY_MB", mb.to_string());
        }
        let mut child = command
            .args(["-u", "-c", RUNNER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            // Its own process group, so a timeout or cancel can stop the task's children too.
            .process_group(0)
            .spawn()
            .map_err(|e| {
                TaskError::new(format!(
                    "could not start the Python interpreter '{}' (PYOCO_PYTHON): {e}",
                    self.interpreter
                ))
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(TaskError::new("Python runner has no pipes"));
        };
        let mut runner = Runner {
            generation: self.generation.load(Ordering::SeqCst),
            child,
            stdin,
            stdout: BufReader::new(stdout).lines(),
        };
        let ready = tokio::time::timeout(START_TIMEOUT, runner.stdout.next_line()).await;
        match ready {
            Ok(Ok(Some(line))) if line.contains("\"ready\"") => Ok(runner),
            other => Err(TaskError::new(format!(
                "the Python runner ('{}') did not start: {}",
                self.interpreter,
                match other {
                    Err(_) => "no answer".to_string(),
                    Ok(Ok(Some(line))) => format!("unexpected output {line:?}"),
                    Ok(Ok(None)) => "it exited at once (is it Python 3?)".to_string(),
                    Ok(Err(e)) => e.to_string(),
                }
            ))),
        }
    }

    async fn acquire(&self) -> Result<Runner, TaskError> {
        loop {
            let candidate = self.idle.lock().ok().and_then(|mut idle| idle.pop());
            match candidate {
                Some(mut runner) => {
                    if matches!(runner.child.try_wait(), Ok(None)) {
                        return Ok(runner);
                    }
                    // It died while idle: drop it and look again.
                }
                None => return self.spawn().await,
            }
        }
    }

    /// Stops one idle runner when the pool is at its size, so a dedicated runner can start
    /// without exceeding it.
    fn make_room(&self) {
        // Idle runners hold no permit: processes = idle + (max - free permits), this
        // task's permit included.
        let stopped = self.idle.lock().ok().and_then(|mut idle| {
            (idle.len() > self.slots.available_permits())
                .then(|| idle.pop())
                .flatten()
        });
        drop(stopped);
    }

    fn release(&self, runner: Runner) {
        if runner.generation != self.generation.load(Ordering::SeqCst) {
            return;
        }
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.max_runners
        {
            idle.push(runner);
        }
    }

    /// Runs `callable` with the call's explicit inputs, the run params and the upstream
    /// results (`results`); the runner wires them by the function's signature. On success,
    /// the call's record extras get the inputs actually passed and captured stdout/stderr.
    pub async fn call(
        &self,
        callable: &str,
        call: &TaskCall,
        results: &Map<String, Value>,
    ) -> Result<Value, TaskError> {
        // A runner slot first: waiting for one ends with the task's cancel. The permit lives
        // until the call is over, so a process being killed still counts as one.
        let _slot = tokio::select! {
            permit = self.slots.clone().acquire_owned() => {
                permit.map_err(|_| TaskError::new("the Python pool is closed"))?
            }
            _ = call.cancel.cancelled() => return Err(TaskError::new("cancelled")),
        };
        // A task with its own memory limit gets a fresh runner started with it (a limit set
        // at start cannot be raised by the task), used once; an idle runner makes room.
        let dedicated = call.memory_mb.is_some();
        if dedicated {
            self.make_room();
        }
        let runner = match call.memory_mb {
            Some(mb) => self.spawn_limited(Some(self.task_limit(mb))).await?,
            None => self.acquire().await?,
        };
        let mut busy = Busy {
            runner: Some(runner),
            grace: self.kill_grace,
        };
        let request = json!({
            "id": 1,
            "callable": callable,
            "inputs": call.args,
            "params": *call.params,
            "results": results,
            "ctx": {
                "run_id": call.run_id,
                "flow_name": call.flow_name,
                "task": call.task,
                // Loop state in control-flow mode: the innermost frame and all frames.
                "loop": call.loop_ctx.as_ref().map(|l| {
                    let mut frame = l.as_object().cloned().unwrap_or_default();
                    frame.remove("loops");
                    Value::Object(frame)
                }),
                "loops": call
                    .loop_ctx
                    .as_ref()
                    .and_then(|l| l.get("loops"))
                    .cloned()
                    .unwrap_or_else(|| json!([])),
            },
        });
        let mut line = request.to_string();
        line.push('\n');
        let exchange = async {
            let r = busy
                .runner
                .as_mut()
                .ok_or_else(|| TaskError::new("runner lost"))?;
            r.stdin
                .write_all(line.as_bytes())
                .await
                .map_err(|e| died(e.to_string()))?;
            r.stdin.flush().await.map_err(|e| died(e.to_string()))?;
            match r.stdout.next_line().await {
                Ok(Some(answer)) => serde_json::from_str::<Value>(&answer)
                    .map_err(|e| TaskError::new(format!("bad answer from the Python runner: {e}"))),
                Ok(None) => {
                    let status = r
                        .child
                        .wait()
                        .await
                        .map(|s| s.to_string())
                        .unwrap_or_default();
                    Err(died(format!("it exited ({status})")))
                }
                Err(e) => Err(died(e.to_string())),
            }
        };
        let answer = tokio::select! {
            a = exchange => a?,
            _ = call.cancel.cancelled() => return Err(TaskError::new("cancelled")),
        };
        // The call completed: the process is healthy and goes back to the pool (a dedicated
        // one is stopped when `busy` drops).
        if !dedicated && let Some(runner) = busy.runner.take() {
            self.release(runner);
        }
        if let Ok(mut extra) = call.record.lock() {
            for key in ["inputs", "stdout", "stderr"] {
                if let Some(v) = answer
                    .get(key)
                    .filter(|v| !matches!(v, Value::String(s) if s.is_empty()))
                {
                    extra.insert(key.to_string(), v.clone());
                }
            }
        }
        answer_result(&answer, "Python task failed")
    }
}

/// The task's result from a runner's answer (`{"ok", "output"}` or `{"ok": false, "error",
/// "traceback"}`, as `runner.py` and the script runner write it); `failed` is the message
/// when the answer has none.
pub(crate) fn answer_result(answer: &Value, failed: &str) -> Result<Value, TaskError> {
    if answer.get("ok").and_then(Value::as_bool) == Some(true) {
        return Ok(answer.get("output").cloned().unwrap_or(Value::Null));
    }
    Err(TaskError {
        message: answer
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or(failed)
            .to_string(),
        traceback: answer
            .get("traceback")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

fn died(detail: String) -> TaskError {
    TaskError::new(format!(
        "the Python runner died while running the task: {detail}"
    ))
}
