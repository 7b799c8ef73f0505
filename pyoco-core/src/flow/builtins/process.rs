//! Child processes of `pyoco:shell` and `pyoco:python`: each runs in its own process group so
//! that a cancel or timeout can stop everything it started (a shell's children included),
//! and its output is captured with a bound so a chatty command cannot exhaust the worker.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::flow::tasks::TaskError;
use crate::shutdown::{StopSignal, signal_group};

/// Between SIGTERM and SIGKILL: time for the processes to clean up.
pub(super) const KILL_GRACE: Duration = Duration::from_secs(2);

/// After the main process exited, how long its output pipes may stay open (held by
/// processes it left behind) before those are killed too.
const DRAIN: Duration = Duration::from_secs(2);

/// Which part of an over-long output to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Keep {
    /// The beginning (stdout: where results and JSON start).
    Head,
    /// The end (stderr: where the error usually is).
    Tail,
}

/// Captured output of one stream.
#[derive(Debug, Default)]
pub(super) struct Captured {
    pub bytes: Vec<u8>,
    pub truncated: bool,
}

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// How a process run ended.
#[derive(Debug)]
pub(super) enum Ended {
    Exited {
        status: ExitStatus,
        stdout: Captured,
        stderr: Captured,
    },
    Cancelled,
    TimedOut(Duration),
}

impl Ended {
    /// The exit status and output of a process that exited; a cancel or timeout as the task's
    /// error (`what` names the process in the timeout message: "script", "command").
    pub fn exited(
        self,
        what: &str,
        error: impl FnOnce(String) -> TaskError,
    ) -> Result<(ExitStatus, Captured, Captured), TaskError> {
        match self {
            Ended::Cancelled => Err(TaskError::new("cancelled")),
            Ended::TimedOut(t) => Err(error(format!(
                "{what} timed out after {}s",
                t.as_secs_f64()
            ))),
            Ended::Exited {
                status,
                stdout,
                stderr,
            } => Ok((status, stdout, stderr)),
        }
    }
}

/// Signals the whole group when dropped, unless the run finished cleanly: this is what
/// stops the processes when the engine drops the task's future (timeout, cancel, failure of
/// a sibling).
#[derive(Debug)]
struct Group {
    child: Option<Child>,
    pgid: Option<u32>,
}

impl Group {
    fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let Some(pgid) = self.pgid.take() else {
            return;
        };
        signal_group(StopSignal::Term, pgid);
        let child = self.child.take();
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    // The main process is not reaped before this wait, so its pid (the
                    // group id) cannot be reused while we may still signal the group.
                    if let Some(mut child) = child {
                        let _ = tokio::time::timeout(KILL_GRACE, child.wait()).await;
                    } else {
                        tokio::time::sleep(KILL_GRACE).await;
                    }
                    // Also stops members that ignored SIGTERM or outlived the main process.
                    signal_group(StopSignal::Kill, pgid);
                });
            }
            Err(_) => signal_group(StopSignal::Kill, pgid),
        }
    }
}

/// Runs `command` in a new process group with `stdin` written to it, until it exits, `cancel`
/// fires or `timeout` passes (the group is then killed). `stdout_limit` bounds the captured
/// stdout (stderr keeps its last `stderr_limit` bytes).
pub(super) async fn run(
    mut command: Command,
    stdin: Option<Vec<u8>>,
    cancel: &CancellationToken,
    timeout: Option<Duration>,
    stdout_limit: usize,
    stderr_limit: usize,
) -> std::io::Result<Ended> {
    command
        .process_group(0)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A last resort if the group guard cannot run (no runtime at drop).
        .kill_on_drop(true);
    let mut child = command.spawn()?;
    let mut group = Group {
        pgid: child.id(),
        child: None,
    };
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // Written concurrently: a large input must not block while the child writes output.
        tokio::spawn(async move {
            let _ = pipe.write_all(&data).await;
            let _ = pipe.shutdown().await;
        });
    }
    let mut out = spawn_capture(child.stdout.take(), stdout_limit, Keep::Head);
    let mut err = spawn_capture(child.stderr.take(), stderr_limit, Keep::Tail);
    let limit = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let status = tokio::select! {
        status = child.wait() => status?,
        _ = cancel.cancelled() => {
            group.child = Some(child);
            return Ok(Ended::Cancelled);
        }
        _ = limit => {
            group.child = Some(child);
            return Ok(Ended::TimedOut(timeout.unwrap_or_default()));
        }
    };
    let drained = tokio::time::timeout(DRAIN, futures::future::join(&mut out, &mut err)).await;
    let (stdout, stderr) = match drained {
        Ok(pair) => {
            group.disarm();
            pair
        }
        Err(_) => {
            // Leftover processes hold the pipes: stop them, then take what was written.
            drop(group);
            futures::future::join(out, err).await
        }
    };
    Ok(Ended::Exited {
        status,
        stdout: stdout.unwrap_or_default(),
        stderr: stderr.unwrap_or_default(),
    })
}

fn spawn_capture<R>(pipe: Option<R>, limit: usize, keep: Keep) -> JoinHandle<Captured>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        match pipe {
            Some(pipe) => capture(pipe, limit, keep).await,
            None => Captured::default(),
        }
    })
}

/// Reads `reader` to the end, keeping at most `limit` bytes (the rest is read and dropped so
/// the writer never blocks on a full pipe).
async fn capture(mut reader: impl AsyncRead + Unpin, limit: usize, keep: Keep) -> Captured {
    let mut out = Captured::default();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        match keep {
            Keep::Head => {
                let room = limit.saturating_sub(out.bytes.len());
                out.bytes.extend_from_slice(&chunk[..n.min(room)]);
                out.truncated |= n > room;
            }
            Keep::Tail => {
                out.bytes.extend_from_slice(&chunk[..n]);
                // Trim in batches rather than on every read.
                if out.bytes.len() > limit.saturating_mul(2) {
                    let cut = out.bytes.len() - limit;
                    out.bytes.drain(..cut);
                    out.truncated = true;
                }
            }
        }
    }
    if keep == Keep::Tail && out.bytes.len() > limit {
        let cut = out.bytes.len() - limit;
        out.bytes.drain(..cut);
        out.truncated = true;
    }
    out
}

/// "code N" or "signal N" for messages.
pub(super) fn describe_status(status: &ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => status.to_string(),
    }
}
