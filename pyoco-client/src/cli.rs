//! Command-line arguments of `pyoco-client` (clap derive), compatible with the Python
//! original: global options go before the subcommand.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Command-line client of the pyoco gateway.
#[derive(Debug, Parser)]
#[command(name = "pyoco-client", version, about)]
pub struct Cli {
    /// Base URL of the gateway.
    #[arg(long, env = "PYOCO_SERVER", default_value = "http://127.0.0.1:8000")]
    pub server: String,
    /// API key sent with every request (only when non-empty).
    #[arg(long, env = "PYOCO_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Header carrying the API key.
    #[arg(long, default_value = "X-API-Key")]
    pub api_key_header: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Submit a run by flow name (POST /runs).
    Submit(SubmitArgs),
    /// Submit a single-flow flow.yaml (POST /runs/yaml).
    SubmitYaml(SubmitYamlArgs),
    /// Show one run (GET /runs/{run_id}).
    Get {
        run_id: String,
        /// Include task_records.
        #[arg(long)]
        records: bool,
    },
    /// Show the task states of a run (GET /runs/{run_id}/tasks).
    Tasks { run_id: String },
    /// List runs (GET /runs).
    List(ListArgs),
    /// Follow a run until it is terminal; exit 0 only if it COMPLETED.
    Watch(WatchArgs),
}

#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    #[arg(long, default_value = "main")]
    pub flow_name: String,
    /// Params as a JSON object.
    #[arg(long, value_name = "JSON")]
    pub params: Option<String>,
    /// Params from a JSON or YAML file holding an object.
    #[arg(long, value_name = "PATH")]
    pub params_file: Option<PathBuf>,
    /// One param as key=value (value JSON-decoded when valid JSON); repeatable.
    #[arg(long = "param", value_name = "K=V")]
    pub param: Vec<String>,
    #[arg(long)]
    pub tag: Option<String>,
    /// Comma-separated tags.
    #[arg(long, value_name = "A,B")]
    pub tags: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct SubmitYamlArgs {
    #[arg(long, value_name = "PATH")]
    pub workflow_file: PathBuf,
    #[arg(long)]
    pub flow_name: String,
    /// Work queue tag (the server's default tag when omitted).
    #[arg(long)]
    pub tag: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long)]
    pub flow: Option<String>,
    #[arg(long)]
    pub tag: Option<String>,
    /// Ask for full snapshots (include=full).
    #[arg(long)]
    pub full: bool,
    #[arg(long)]
    pub limit: Option<u32>,
    #[arg(long, value_enum, default_value_t = ListOutput::Json)]
    pub output: ListOutput,
}

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    pub run_id: String,
    /// Keep task_records in `--output json` snapshots.
    #[arg(long)]
    pub records: bool,
    /// Give up (exit 1) when the run is not terminal after this many seconds.
    #[arg(long)]
    pub timeout_sec: Option<u64>,
    #[arg(long, value_enum, default_value_t = WatchOutput::Status)]
    pub output: WatchOutput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListOutput {
    Json,
    Table,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WatchOutput {
    Json,
    Status,
}

/// Global options that take a value, so the subcommand scan can skip their values.
const VALUE_OPTIONS: &[&str] = &["--server", "--api-key", "--api-key-header"];

/// The subcommand named on the command line, if any, for the `-h` hint of usage errors.
/// `args` excludes the program name.
pub fn subcommand_in(args: &[String], known: &[&str]) -> Option<String> {
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if VALUE_OPTIONS.contains(&arg.as_str()) {
            iter.next();
        } else if !arg.starts_with('-') {
            return known.contains(&arg.as_str()).then(|| arg.clone());
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test may panic
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn clap_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn subcommand_scan_skips_global_option_values() {
        let known = ["submit", "get"];
        assert_eq!(
            subcommand_in(&args(&["--server", "get", "submit", "--x"]), &known),
            Some("submit".into())
        );
        assert_eq!(
            subcommand_in(&args(&["--server=http://x", "get"]), &known),
            Some("get".into())
        );
        assert_eq!(subcommand_in(&args(&["--bogus"]), &known), None);
        assert_eq!(subcommand_in(&args(&["nope"]), &known), None);
    }

    #[test]
    fn global_options_go_before_the_subcommand() {
        let cli = Cli::try_parse_from(["pyoco-client", "--server", "http://h:1", "get", "r1"]);
        assert!(cli.is_ok_and(|c| c.server == "http://h:1"));
        let late = Cli::try_parse_from(["pyoco-client", "get", "r1", "--server", "http://h:1"]);
        assert!(late.is_err());
    }

    #[test]
    fn submit_yaml_tag_is_optional() {
        let cli = Cli::try_parse_from([
            "pyoco-client",
            "submit-yaml",
            "--workflow-file",
            "f.yaml",
            "--flow-name",
            "main",
        ]);
        assert!(matches!(
            cli.map(|c| c.command),
            Ok(Command::SubmitYaml(SubmitYamlArgs { tag: None, .. }))
        ));
    }
}
