//! What every pyoco binary's `main` does the same way: parse flags (help and version exit 0,
//! a usage error exits 1 with a hint), then run the program on a tokio runtime and turn its
//! error into `<program>: <error>` and exit code 1. A binary that keeps another stderr format
//! (pyoco-client keeps the original's `ERR-PYOCO-…` lines and exits 130 on Ctrl-C) uses
//! [`parse_args_with`] and [`run_with`], which leave the reporting to it.

use std::process::ExitCode;

/// Parses `argv` into `T`; `Err` carries the exit code after printing help or the error.
pub fn parse_args<T: clap::Parser>(argv: Vec<String>, hint: &str) -> Result<T, ExitCode> {
    parse_args_with(argv, |e| {
        eprint!("{e}");
        eprintln!("- hint: {hint}");
        ExitCode::FAILURE
    })
}

/// [`parse_args`] with the binary's own usage report: help and version are printed to
/// stdout and exit 0; any other clap error goes to `usage`, which prints it and picks the
/// exit code.
pub fn parse_args_with<T: clap::Parser>(
    argv: Vec<String>,
    usage: impl FnOnce(&clap::Error) -> ExitCode,
) -> Result<T, ExitCode> {
    match T::try_parse_from(argv) {
        Ok(args) => Ok(args),
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            // clap's own printing: to stdout, coloured only on a terminal. A failed write
            // (stdout closed) leaves nothing to report to.
            e.print().ok();
            Err(ExitCode::SUCCESS)
        }
        Err(e) => Err(usage(&e)),
    }
}

/// Why a program run by [`run_with`] did not succeed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Failure<E> {
    /// The tokio runtime could not be started; the program never ran.
    Runtime(std::io::Error),
    /// The program returned this error.
    Program(E),
}

/// Runs `program` on a multi-threaded runtime; an error is printed as `<name>: <error>` with
/// its causes and exits 1.
pub fn run<E, F>(name: &str, program: F) -> ExitCode
where
    E: std::fmt::Display,
    F: std::future::Future<Output = Result<(), E>>,
{
    run_with(program, None, |failure| {
        match failure {
            Failure::Runtime(e) => eprintln!("{name}: cannot start the runtime: {e}"),
            Failure::Program(e) => eprintln!("{name}: {e:#}"),
        }
        ExitCode::FAILURE
    })
}

/// [`run`] with the binary's own error report: `report` prints a failure and picks the exit
/// code. With `on_interrupt`, Ctrl-C stops the program at once with that exit code (a
/// binary with a graceful shutdown of its own passes `None` and listens for signals itself).
pub fn run_with<E, F>(
    program: F,
    on_interrupt: Option<ExitCode>,
    report: impl FnOnce(Failure<E>) -> ExitCode,
) -> ExitCode
where
    F: std::future::Future<Output = Result<(), E>>,
{
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => return report(Failure::Runtime(e)),
    };
    // `Err(code)`: interrupted before the program ended.
    let result = runtime.block_on(async {
        match on_interrupt {
            None => Ok(program.await),
            Some(code) => tokio::select! {
                result = program => Ok(result),
                () = ctrl_c() => Err(code),
            },
        }
    });
    match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => report(Failure::Program(e)),
        Err(code) => code,
    }
}

/// Resolves on Ctrl-C; never, if the handler cannot be installed.
async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A flag value the binaries reject before starting anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlagError {
    #[error("{flag} {path} is not a directory")]
    NotADirectory { flag: &'static str, path: String },
    #[error("{flag} must be {expected}")]
    Invalid {
        flag: &'static str,
        expected: &'static str,
    },
}

/// Tags from a comma-separated flag (`--tags a,b`); blanks are dropped, so an empty flag
/// means "the default tag" to [`crate::Worker::connect`].
pub fn parse_tags(csv: &str) -> Vec<String> {
    csv.split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The built-in tasks, plus named flows from `flows_dir` (`--flows-dir`: a `POST /runs` for
/// flow X runs `<dir>/X.yaml`) when given; the directory must exist.
pub fn registry_with_flows_dir(
    flows_dir: Option<&std::path::Path>,
) -> Result<crate::Registry, FlagError> {
    let mut registry = crate::Registry::with_builtins();
    if let Some(dir) = flows_dir {
        if !dir.is_dir() {
            return Err(FlagError::NotADirectory {
                flag: "--flows-dir",
                path: dir.display().to_string(),
            });
        }
        registry.flows_dir(dir);
    }
    Ok(registry)
}

/// A seconds flag as a duration: finite and above zero, or at least zero when `allow_zero`.
pub fn seconds_flag(
    flag: &'static str,
    secs: f64,
    allow_zero: bool,
) -> Result<std::time::Duration, FlagError> {
    let ok = secs.is_finite() && (secs > 0.0 || (allow_zero && secs == 0.0));
    if !ok {
        return Err(FlagError::Invalid {
            flag,
            expected: if allow_zero {
                "zero or more seconds"
            } else {
                "a positive number of seconds"
            },
        });
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// `<hostname>-<pid>`, the default worker id (hostname reduced to `[A-Za-z0-9_-]`).
pub fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    format!("{host}-{}", std::process::id())
}

/// Logs, once at start-up, each variable that is set but whose feature is not implemented
/// yet, so a deployment does not silently run without what it configured.
pub fn warn_unimplemented(config: &crate::Config) {
    for name in config.unimplemented_in_use() {
        tracing::warn!(
            variable = name,
            "{name} is set but not implemented yet; it has no effect"
        );
    }
}

/// Connects a worker, retrying with backoff until NATS answers (the gateway's `--with-worker`
/// may start before NATS does), then runs it until `shutdown`. Returns without error when
/// `shutdown` fires before the worker could connect.
#[cfg(feature = "worker")]
pub async fn run_worker_retrying<F>(
    config: crate::Config,
    registry: crate::Registry,
    worker_id: &str,
    tags: &[String],
    shutdown: F,
) -> Result<(), crate::Error>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    use futures::FutureExt;
    let shutdown = shutdown.boxed().shared();
    let schedule = crate::backoff::Backoff::new(
        std::time::Duration::from_millis(250),
        2.0,
        std::time::Duration::from_secs(2),
    );
    let mut attempt = 0;
    let worker = loop {
        match crate::Worker::connect(config.clone(), registry.clone(), worker_id, tags).await {
            Ok(worker) => break worker,
            Err(e) => {
                attempt += 1;
                tracing::warn!(error = %e, attempt, "worker cannot connect yet; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(schedule.jittered(attempt)) => {}
                    _ = shutdown.clone() => return Ok(()),
                }
            }
        }
    };
    eprintln!("worker {worker_id} serving tags {:?}", worker.tags());
    worker.run(shutdown).await
}

/// The original's CLI error block: `ERR-PYOCO-<code>: <header>`, then `- reason:` and
/// `- hint:` lines (scripts grep for them; the codes are listed in spec/cli.md).
pub fn error_report(code: &str, header: &str, reason: &str, hint: &str) -> String {
    let mut out = format!("ERR-PYOCO-{code}: {header}\n");
    let reason = reason.trim();
    if !reason.is_empty() {
        out.push_str(&format!("- reason: {reason}\n"));
    }
    out.push_str(&format!("- hint: {hint}\n"));
    out
}

/// The first line of a clap error without its `error: ` prefix (the reason of a usage error).
pub fn usage_reason(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    rendered
        .lines()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().trim_start_matches("error:").trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_with_leaves_the_report_and_exit_code_to_the_caller() {
        let code = run_with(
            async { Err::<(), _>("boom") },
            None,
            |failure| match failure {
                Failure::Program(e) => {
                    assert_eq!(e, "boom");
                    ExitCode::from(7)
                }
                Failure::Runtime(e) => panic!("{e}"),
            },
        );
        assert_eq!(code, ExitCode::from(7));
        let ok = run_with(
            async { Ok::<(), &str>(()) },
            Some(ExitCode::from(130)),
            |_| ExitCode::from(7),
        );
        assert_eq!(ok, ExitCode::SUCCESS);
    }

    #[derive(Debug, clap::Parser)]
    struct Flags {
        #[arg(long)]
        port: u16,
    }

    #[test]
    fn parse_args_with_hands_usage_errors_to_the_caller() {
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let flags: Flags =
            parse_args_with(argv(&["x", "--port", "1"]), |_| ExitCode::from(9)).unwrap();
        assert_eq!(flags.port, 1);
        let err = parse_args_with::<Flags>(argv(&["x", "--port", "no"]), |e| {
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
            ExitCode::from(9)
        })
        .unwrap_err();
        assert_eq!(err, ExitCode::from(9));
    }

    #[test]
    fn tags_drop_blanks_and_spaces() {
        assert_eq!(parse_tags(" a, ,b ,"), vec!["a", "b"]);
        assert!(parse_tags("").is_empty());
    }

    #[test]
    fn a_missing_flows_dir_names_the_flag() {
        let err = registry_with_flows_dir(Some(std::path::Path::new("/no/such/dir"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--flows-dir /no/such/dir is not a directory"
        );
        assert!(registry_with_flows_dir(None).is_ok());
    }

    #[test]
    fn seconds_flags_reject_nan_and_negatives() {
        assert!(seconds_flag("--x", f64::NAN, true).is_err());
        assert!(seconds_flag("--x", 0.0, false).is_err());
        assert_eq!(
            seconds_flag("--x", 0.0, true).unwrap(),
            std::time::Duration::ZERO
        );
        assert_eq!(
            seconds_flag("--x", -1.0, false).unwrap_err().to_string(),
            "--x must be a positive number of seconds"
        );
    }

    #[test]
    fn default_worker_id_ends_with_the_pid() {
        assert!(default_worker_id().ends_with(&format!("-{}", std::process::id())));
    }
}
