//! What every pyoco binary's `main` does the same way: parse flags (help and version exit 0,
//! a usage error exits 1 with a hint), then run the program on a tokio runtime and turn its
//! error into `<program>: <error>` and exit code 1.

use std::process::ExitCode;

/// Parses `argv` into `T`; `Err` carries the exit code after printing help or the error.
pub fn parse_args<T: clap::Parser>(argv: Vec<String>, hint: &str) -> Result<T, ExitCode> {
    match T::try_parse_from(argv) {
        Ok(args) => Ok(args),
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            print!("{e}");
            Err(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprint!("{e}");
            eprintln!("- hint: {hint}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// Runs `program` on a multi-threaded runtime; an error is printed as `<name>: <error>` with
/// its causes and exits 1.
pub fn run<E, F>(name: &str, program: F) -> ExitCode
where
    E: std::fmt::Display,
    F: std::future::Future<Output = Result<(), E>>,
{
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(program) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}
