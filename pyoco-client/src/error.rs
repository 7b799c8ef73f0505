//! The errors `pyoco-client` reports, rendered in the Python original's stderr format
//! (`ERR-PYOCO-…` header, then `- reason:` / `- hint:` lines) that scripts grep for.

use pyoco::ErrorCode;
use pyoco::client::http::HttpError;

/// Hint shown with input validation errors (the original's wording).
const SUBMIT_HINT: &str = "pyoco-client submit --flow-name main --param x=1 --tag default";

/// A failure of one command; every variant exits with code 1.
#[derive(Debug)]
pub enum CliError {
    /// Bad user input found after argument parsing (`--params`, `--param`, file contents).
    Input(String),
    /// A file could not be read.
    File(String),
    /// Boxed: `HttpError` is large and every `Result` of the crate carries this type.
    Http(Box<HttpError>),
    /// `watch --timeout-sec` passed before the run was terminal.
    WatchTimeout {
        run_id: String,
        status: String,
        secs: u64,
    },
    /// `cancel --wait` passed its timeout before the run was terminal.
    CancelTimeout(String),
    /// `wheel-upload --preflight strict` found problems in the wheel.
    Preflight(String),
    /// The watched run ended FAILED or CANCELLED.
    RunEnded {
        run_id: String,
        status: String,
        error: String,
    },
}

impl From<HttpError> for CliError {
    fn from(e: HttpError) -> CliError {
        CliError::Http(Box::new(e))
    }
}

impl CliError {
    /// The full stderr text, one line per entry, ending with a newline.
    pub fn report(&self) -> String {
        let (header, reason, hint) = match self {
            CliError::Input(reason) => (
                "ERR-PYOCO-0018: invalid CLI arguments (check the input format)",
                reason.clone(),
                SUBMIT_HINT.to_string(),
            ),
            CliError::File(reason) => (
                "ERR-PYOCO-0018: file I/O error",
                reason.clone(),
                "check file path and permission".into(),
            ),
            CliError::Http(e) => match e.as_ref() {
                HttpError::Status(status) => (
                    "ERR-PYOCO-HTTP: request failed",
                    e.to_string(),
                    status_hint(status.status, status.error_code).into(),
                ),
                // The header already says "connection error"; the reason is the bare cause.
                HttpError::Transport(text) => (
                    "ERR-PYOCO-HTTP: connection error",
                    text.clone(),
                    "check --server URL and gateway availability (is pyoco-gateway running?)"
                        .into(),
                ),
                other => (
                    "ERR-PYOCO-HTTP: invalid response",
                    other.to_string(),
                    "check that --server points at a pyoco gateway".into(),
                ),
            },
            CliError::WatchTimeout {
                run_id,
                status,
                secs,
            } => (
                "ERR-PYOCO-WATCH: timeout",
                format!("run {run_id} is still {status} after {secs} s"),
                "raise --timeout-sec or inspect run/worker status".into(),
            ),
            CliError::CancelTimeout(reason) => (
                "ERR-PYOCO-CANCEL: wait timeout",
                reason.clone(),
                "retry cancel or inspect run/worker status".into(),
            ),
            CliError::Preflight(reason) => (
                "ERR-PYOCO-0018: invalid CLI arguments (check the input format)",
                reason.clone(),
                "fix wheel metadata/entry_points or use --preflight warn/off".into(),
            ),
            CliError::RunEnded {
                run_id,
                status,
                error,
            } => (
                "ERR-PYOCO-RUN: run did not complete",
                format!("run {run_id} ended {status}: {error}"),
                format!("pyoco-client get {run_id} --records"),
            ),
        };
        format!("{header}\n- reason: {reason}\n- hint: {hint}\n")
    }
}

/// How to fix an error answer: specific for the gateway's well-known codes, else the
/// original's generic hint.
fn status_hint(status: u16, code: Option<ErrorCode>) -> &'static str {
    match (status, code) {
        (_, Some(ErrorCode::RunNotFound)) => {
            "check the run id (pyoco-client list shows recent runs)"
        }
        (_, Some(ErrorCode::WorkerNotFound)) => {
            "check the worker id (pyoco-client workers --scope all --include-hidden)"
        }
        (_, Some(ErrorCode::NatsUnavailable)) => {
            "the gateway cannot reach NATS: check nats-server and PYOCO_NATS_URL, then retry"
        }
        (_, Some(ErrorCode::RouteNotFound | ErrorCode::MethodNotAllowed)) => {
            "this gateway does not serve the route: check --server and the gateway version"
        }
        (_, Some(ErrorCode::WheelVersionExists)) => {
            "this version of the project is already in the registry: bump the wheel's version"
        }
        (_, Some(ErrorCode::WheelVersionNotNewer)) => {
            "the registry has a newer version of this project (pyoco-client wheels): upload a higher version"
        }
        (_, Some(ErrorCode::WheelTooLarge)) => {
            "the wheel is larger than the gateway's PYOCO_WHEEL_MAX_BYTES"
        }
        (_, Some(ErrorCode::InvalidWheelName | ErrorCode::InvalidWheelFilename)) => {
            "name the file <name>-<version>-<python>-<abi>-<platform>.whl (PEP 427), e.g. mypkg-1.0.0-py3-none-any.whl"
        }
        (_, Some(ErrorCode::InvalidWheelTags)) => {
            "--tags takes comma-separated tags of letters, digits, '_' and '-'"
        }
        (_, Some(ErrorCode::InvalidWheelFile)) => {
            "the file is not a wheel of the project and version its name says (see the reason): rebuild it"
        }
        (_, Some(ErrorCode::WheelNotFound)) => "check the wheel name (pyoco-client wheels)",
        (401 | 403, _) => "check --api-key and --api-key-header",
        _ => "check server status and request parameters",
    }
}

/// The stderr text of a clap usage error: the original's header, clap's message as the
/// reason, its usage line, and a `-h` hint for the subcommand in question.
pub fn usage_report(clap_message: &str, subcommand: Option<&str>) -> String {
    let mut reason = String::new();
    let mut extra = Vec::new();
    let mut usage = None;
    for line in clap_message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        if let Some(msg) = line.strip_prefix("error:") {
            reason = msg.trim().to_string();
        } else if let Some(u) = line.strip_prefix("Usage:") {
            usage = Some(u.trim().to_string());
        } else if let Some(tip) = line.strip_prefix("tip:") {
            extra.push(format!("- tip: {}", tip.trim()));
        } else if !line.starts_with("For more information") {
            // Continuation of the message, e.g. the list of missing arguments.
            if !reason.is_empty() {
                reason.push(' ');
            }
            reason.push_str(line);
        }
    }
    let mut out = String::from("ERR-PYOCO-0018: invalid CLI arguments (check the input format)\n");
    if !reason.is_empty() {
        out.push_str(&format!("- reason: {reason}\n"));
    }
    for line in extra {
        out.push_str(&line);
        out.push('\n');
    }
    if let Some(u) = usage {
        out.push_str(&format!("- usage: {u}\n"));
    }
    let target = subcommand.map(|s| format!("{s} ")).unwrap_or_default();
    out.push_str(&format!("- hint: pyoco-client {target}-h\n"));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test may panic
mod tests {
    use super::*;

    #[test]
    fn input_error_has_the_original_lines() {
        assert_eq!(
            CliError::Input("--params must be JSON object".into()).report(),
            "ERR-PYOCO-0018: invalid CLI arguments (check the input format)\n\
             - reason: --params must be JSON object\n\
             - hint: pyoco-client submit --flow-name main --param x=1 --tag default\n"
        );
    }

    #[test]
    fn http_errors_keep_the_original_reason_format() {
        let e = CliError::from(HttpError::Status(Box::new(
            pyoco::client::http::StatusError::from_body(
                404,
                "GET",
                "/runs/nope",
                r#"{"detail":"run not found"}"#.into(),
            ),
        )));
        assert_eq!(
            e.report(),
            "ERR-PYOCO-HTTP: request failed\n\
             - reason: HTTP 404 GET /runs/nope: {\"detail\":\"run not found\"}\n\
             - hint: check server status and request parameters\n"
        );
        let t = CliError::from(HttpError::Transport("refused".into())).report();
        assert!(t.starts_with("ERR-PYOCO-HTTP: connection error\n- reason: refused\n"));
    }

    #[test]
    fn known_codes_get_specific_hints_and_cancel_timeout_its_own_header() {
        let e = CliError::from(HttpError::Status(Box::new(
            pyoco::client::http::StatusError::from_body(
                404,
                "GET",
                "/runs/nope",
                r#"{"detail":"run not found","code":"run_not_found"}"#.into(),
            ),
        )));
        assert!(
            e.report()
                .ends_with("- hint: check the run id (pyoco-client list shows recent runs)\n")
        );
        assert_eq!(
            CliError::CancelTimeout("cancel wait timeout for run_id=r1".into()).report(),
            "ERR-PYOCO-CANCEL: wait timeout\n\
             - reason: cancel wait timeout for run_id=r1\n\
             - hint: retry cancel or inspect run/worker status\n"
        );
    }

    #[test]
    fn usage_report_maps_clap_text() {
        let clap = "error: unexpected argument '--nope' found\n\n  tip: to pass '--nope' as a value, use '-- --nope'\n\nUsage: pyoco-client get <RUN_ID>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            usage_report(clap, Some("get")),
            "ERR-PYOCO-0018: invalid CLI arguments (check the input format)\n\
             - reason: unexpected argument '--nope' found\n\
             - tip: to pass '--nope' as a value, use '-- --nope'\n\
             - usage: pyoco-client get <RUN_ID>\n\
             - hint: pyoco-client get -h\n"
        );
        assert!(usage_report("error: x", None).ends_with("- hint: pyoco-client -h\n"));
        let missing = "error: the following required arguments were not provided:\n  --flow-name <FLOW_NAME>\n\nUsage: u\n";
        assert!(usage_report(missing, None).contains(
            "- reason: the following required arguments were not provided: --flow-name <FLOW_NAME>\n"
        ));
    }
}
