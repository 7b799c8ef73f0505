//! `pyoco-client`: the command-line client of the pyoco gateway (submit, get, list, watch over
//! SSE, cancel, workers, metrics…), keeping the Python original's flags, output and error format.

mod cli;
mod commands;
mod error;
mod output;
mod params;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

/// Exit code of a run interrupted with Ctrl-C (128 + SIGINT), as in the original.
const EXIT_INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_exit(&e),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init()
        .ok();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ERR-PYOCO-UNEXPECTED: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        tokio::select! {
            result = commands::run(cli) => match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprint!("{}", e.report());
                    ExitCode::FAILURE
                }
            },
            () = interrupted() => ExitCode::from(EXIT_INTERRUPTED),
        }
    })
}

/// Resolves on Ctrl-C; never, if the handler cannot be installed.
async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// `--help`/`--version` exit 0; every other argument error exits 1 (not clap's 2), like the
/// original, in its stderr format.
fn usage_exit(e: &clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            e.print().ok();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprint!("{}", e.render());
            ExitCode::FAILURE
        }
        _ => {
            let args: Vec<String> = std::env::args_os()
                .skip(1)
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            let command = cli::Cli::command();
            let names: Vec<&str> = command.get_subcommands().map(|s| s.get_name()).collect();
            let sub = cli::subcommand_in(&args, &names);
            eprint!(
                "{}",
                error::usage_report(&e.render().to_string(), sub.as_deref())
            );
            ExitCode::FAILURE
        }
    }
}
