//! `pyoco-client`: the command-line client of the pyoco gateway (submit, get, list, watch over
//! SSE, cancel, workers, metrics…), keeping the Python original's flags, output and error format.
//!
//! Start-up is `pyoco::cli`'s, with this binary's reports: errors in the original's
//! `ERR-PYOCO-…` format, exit code 130 on Ctrl-C.

mod bulk;
mod bundles;
mod cli;
mod commands;
mod error;
mod flows;
mod live;
mod ops;
mod output;
mod params;
mod schedules;

use std::process::ExitCode;

use clap::CommandFactory;
use clap::error::ErrorKind;
use pyoco::cli::Failure;

/// Exit code of a run interrupted with Ctrl-C (128 + SIGINT), as in the original.
const EXIT_INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let args = argv.get(1..).unwrap_or_default().to_vec();
    let cli = match pyoco::cli::parse_args_with::<cli::Cli>(argv, |e| usage_exit(e, &args)) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    pyoco::logging::init_quiet();
    pyoco::cli::run_with(
        commands::run(cli),
        Some(ExitCode::from(EXIT_INTERRUPTED)),
        |failure| {
            match failure {
                Failure::Program(e) => eprint!("{}", e.report()),
                Failure::Runtime(e) => {
                    eprintln!("ERR-PYOCO-UNEXPECTED: could not start the async runtime: {e}")
                }
                _ => eprintln!("ERR-PYOCO-UNEXPECTED: the client could not run"),
            }
            ExitCode::FAILURE
        },
    )
}

/// Every argument error exits 1 (not clap's 2), like the original, in its stderr format
/// (help and version, which exit 0, never get here).
fn usage_exit(e: &clap::Error, args: &[String]) -> ExitCode {
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        eprint!("{}", e.render());
        return ExitCode::FAILURE;
    }
    let command = cli::Cli::command();
    let names: Vec<&str> = command.get_subcommands().map(|s| s.get_name()).collect();
    let sub = cli::subcommand_in(args, &names);
    eprint!(
        "{}",
        error::usage_report(&e.render().to_string(), sub.as_deref())
    );
    ExitCode::FAILURE
}
