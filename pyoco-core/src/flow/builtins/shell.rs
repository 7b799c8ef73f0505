//! `pyoco:shell`: runs `argv` directly (no shell) or a `command` string with `sh -c`, in its
//! own process group that is killed as a whole on cancel or timeout.
//!
//! Output: `{"exit_code", "stdout", "stderr", "stdout_truncated", "stderr_truncated"}` plus
//! `"json"` with `parse_json: true`. An exit code outside `ok_exit_codes` (default `[0]`)
//! fails the task with `command exited with code N: <last line of stderr>`; the captured
//! output then goes into the task record so the failure can be diagnosed.

use serde_json::{Value, json};
use tokio::process::Command;

use super::process;
use super::{Args, last_line, scalar_text};
use crate::flow::tasks::{TaskCall, TaskError};

pub(super) const PARAMS: &[&str] = &[
    "argv",
    "command",
    "env",
    "cwd",
    "timeout_sec",
    "parse_json",
    "ok_exit_codes",
];

/// What the output keeps of stdout and stderr.
const OUTPUT_LIMIT: usize = 64 * 1024;

/// How much stdout may be parsed with `parse_json` (more than is kept in the output, so a
/// sizeable JSON document still parses).
const JSON_LIMIT: usize = 8 * 1024 * 1024;

/// The longest accepted `timeout_sec` (a week, like the task policy's).
const MAX_TIMEOUT_SEC: f64 = 7.0 * 86_400.0;

pub(super) async fn run(call: TaskCall) -> Result<Value, TaskError> {
    let args = Args::new(&call, "pyoco:shell");
    let mut command = match (args.get("argv"), args.str("command")?) {
        (Some(_), Some(_)) => return Err(args.error("give either argv or command, not both")),
        (None, None) => return Err(args.error("argv (a list of strings) or command is required")),
        (None, Some(line)) => {
            let mut c = Command::new("sh");
            c.arg("-c").arg(line);
            c
        }
        (Some(argv), None) => {
            let argv: Vec<&str> = argv
                .as_array()
                .and_then(|items| items.iter().map(Value::as_str).collect())
                .filter(|v: &Vec<&str>| !v.is_empty())
                .ok_or_else(|| {
                    args.error(format!(
                        "argv must be a non-empty list of strings, got {argv}"
                    ))
                })?;
            let mut c = Command::new(argv[0]);
            c.args(&argv[1..]);
            c
        }
    };
    for (key, value) in args.map("env")?.into_iter().flatten() {
        match (value, scalar_text(value)) {
            // null removes a variable the worker would pass on.
            (Value::Null, _) => {
                command.env_remove(key);
            }
            (_, Some(text)) => {
                command.env(key, text);
            }
            (_, None) => {
                return Err(args.error(format!("env.{key} must be a string, got {value}")));
            }
        }
    }
    if let Some(cwd) = args.str("cwd")? {
        command.current_dir(cwd);
    }
    let timeout = args.seconds("timeout_sec", None, MAX_TIMEOUT_SEC)?;
    let parse_json = args.bool("parse_json")?;
    let ok_codes = args
        .int_list("ok_exit_codes", 0..=255)?
        .unwrap_or_else(|| vec![0]);
    let stdout_limit = if parse_json { JSON_LIMIT } else { OUTPUT_LIMIT };

    let ended = process::run(
        command,
        None,
        &call.cancel,
        timeout,
        stdout_limit,
        OUTPUT_LIMIT,
    )
    .await
    .map_err(|e| args.error(format!("could not start the command: {e}")))?;
    let (status, stdout, stderr) = ended.exited("command", |m| args.error(m))?;
    let stdout_text = stdout.text();
    let stderr_text = stderr.text();
    let (shown, cut) = cut_text(&stdout_text, OUTPUT_LIMIT);
    let mut output = json!({
        "exit_code": status.code(),
        "stdout": shown,
        "stderr": stderr_text,
        "stdout_truncated": stdout.truncated || cut,
        "stderr_truncated": stderr.truncated,
    });
    let ok = status
        .code()
        .is_some_and(|c| ok_codes.contains(&i64::from(c)));
    if !ok {
        let mut message = format!("command exited with {}", process::describe_status(&status));
        if let Some(line) = last_line(&stderr_text) {
            message = format!("{message}: {line}");
        }
        report(&call, &output);
        return Err(TaskError::new(message));
    }
    if parse_json {
        if stdout.truncated {
            report(&call, &output);
            return Err(args.error(format!(
                "stdout is larger than {} MiB and was not parsed as JSON",
                JSON_LIMIT / (1024 * 1024)
            )));
        }
        let parsed = serde_json::from_str::<Value>(stdout_text.trim()).map_err(|e| {
            report(&call, &output);
            args.error(format!("stdout is not valid JSON: {e}"))
        })?;
        output["json"] = parsed;
    }
    // A retried task must not keep the output of an earlier failed attempt in its record.
    if let Ok(mut record) = call.record.lock() {
        for key in output.as_object().into_iter().flat_map(|m| m.keys()) {
            record.remove(key);
        }
    }
    Ok(output)
}

/// Puts the command's output into the task record of a failed attempt.
fn report(call: &TaskCall, output: &Value) {
    if let (Ok(mut record), Some(fields)) = (call.record.lock(), output.as_object()) {
        for (k, v) in fields {
            record.insert(k.clone(), v.clone());
        }
    }
}

/// At most `limit` bytes of `text`, cut at a character boundary; `true` when cut.
fn cut_text(text: &str, limit: usize) -> (&str, bool) {
    if text.len() <= limit {
        return (text, false);
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], true)
}
