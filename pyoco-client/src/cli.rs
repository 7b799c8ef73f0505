//! Command-line arguments of `pyoco-client` (clap derive), compatible with the Python
//! original: global options go before the subcommand.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Top-level `--help` epilogue: a quick tour.
const EXAMPLES: &str = "\
Examples:
  pyoco-client submit-yaml --workflow-file examples/flows/hello.yaml --flow-name hello
  pyoco-client watch <RUN_ID> --output status
  pyoco-client cancel --run-id <RUN_ID> --wait
  pyoco-client list-vnext --status COMPLETED --limit 20 --output table
  pyoco-client workers --scope all --output table
  pyoco-client --server http://gateway:8000 metrics

Exit codes: 0 success, 1 failure (the reason and a hint go to stderr), 130 Ctrl-C.";

/// Command-line client of the pyoco gateway.
#[derive(Debug, Parser)]
#[command(name = "pyoco-client", version, about, after_help = EXAMPLES)]
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
    /// Sign every request with this secret (the gateway's PYOCO_HTTP_HMAC_SECRET).
    #[arg(long, env = "PYOCO_HMAC_SECRET", hide_env_values = true)]
    pub hmac_secret: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Submit a run by flow name (POST /runs).
    #[command(after_help = "\
Examples:
  pyoco-client submit --flow-name main --param x=1 --param name=alice
  pyoco-client submit --params '{\"x\": 1}' --params-file params.yaml --tag gpu --tags gpu,nightly
Params merge last-wins: --params-file, then --params, then each --param.")]
    Submit(SubmitArgs),
    /// Submit a single-flow flow.yaml (POST /runs/yaml).
    #[command(after_help = "\
Example:
  pyoco-client submit-yaml --workflow-file examples/flows/hello.yaml --flow-name hello --tag default")]
    SubmitYaml(SubmitYamlArgs),
    /// Show one run (GET /runs/{run_id}).
    #[command(after_help = "Example:\n  pyoco-client get <RUN_ID> --records")]
    Get {
        run_id: String,
        /// Include task_records.
        #[arg(long)]
        records: bool,
    },
    /// Show the task states of a run (GET /runs/{run_id}/tasks).
    #[command(after_help = "Example:\n  pyoco-client tasks <RUN_ID>")]
    Tasks { run_id: String },
    /// List runs, newest first (GET /runs, compat mode: a JSON array).
    #[command(after_help = "\
Examples:
  pyoco-client list --status FAILED --limit 10
  pyoco-client list --flow hello --output table")]
    List(ListArgs),
    /// List runs page by page (GET /runs, diff mode: {items, next_cursor}).
    #[command(after_help = "\
Examples:
  pyoco-client list-vnext --limit 50 --output table
  pyoco-client list-vnext --cursor <NEXT_CURSOR>
  pyoco-client list-vnext --updated-after 1795313038.65 --workflow-yaml-sha256 <SHA256>
The table ends with a `next_cursor: <c>` line when more runs follow.")]
    ListVnext(ListVnextArgs),
    /// Follow a run over Server-Sent Events until it is terminal (GET /runs/{run_id}/watch).
    #[command(after_help = "\
Examples:
  pyoco-client watch <RUN_ID>                       # a terminal: live tasks; piped: JSON lines
  pyoco-client watch <RUN_ID> --output json         # one JSON event per line, always
  pyoco-client watch <RUN_ID> --output live | cat   # one plain line per task change + summary
  pyoco-client watch <RUN_ID> --output status       # <ts>\\t<event>\\t<status>\\t<run_id>
  pyoco-client watch <RUN_ID> --timeout-sec 300 --records
The watch reconnects by itself when the connection drops and ends at the terminal snapshot.
Exit codes: 0 the run COMPLETED (or --max-events was reached first);
            1 it FAILED or was CANCELLED, or --timeout-sec passed; 130 Ctrl-C.")]
    Watch(WatchArgs),
    /// Cancel a run (POST /runs/{run_id}/cancel); idempotent.
    #[command(after_help = "\
Examples:
  pyoco-client cancel --run-id <RUN_ID>
  pyoco-client cancel --run-id <RUN_ID> --wait --timeout-sec 60
With --wait the run is followed until it is terminal; the final snapshot is printed.")]
    Cancel(CancelArgs),
    /// List workers (GET /workers).
    #[command(after_help = "\
Examples:
  pyoco-client workers --output table
  pyoco-client workers --scope all --state DISCONNECTED --include-hidden")]
    Workers(WorkersArgs),
    /// Hide a worker from `workers` (PATCH /workers/{worker_id} {"hidden": true}).
    #[command(after_help = "Example:\n  pyoco-client hide-worker w1")]
    HideWorker { worker_id: String },
    /// Show a hidden worker again (PATCH /workers/{worker_id} {"hidden": false}).
    #[command(after_help = "Example:\n  pyoco-client unhide-worker w1")]
    UnhideWorker { worker_id: String },
    /// Print the gateway's Prometheus metrics (GET /metrics), unchanged.
    #[command(after_help = "Example:\n  pyoco-client metrics | grep pyoco_runs_total")]
    Metrics,
    /// Runs by status, totals, queue per tag, DLQ size, workers by state (GET /stats).
    #[command(after_help = "\
Examples:
  pyoco-client stats
  pyoco-client stats --flow etl --watch            # refreshes in place every 2 s
  pyoco-client stats --output json | jq .totals")]
    Stats(crate::ops::OpsArgs),
    /// Progress of a flow, tag or schedule: done / total and percent (GET /progress).
    #[command(after_help = "\
Examples:
  pyoco-client progress --schedule-id nightly --watch
  pyoco-client progress --flow etl --output json")]
    Progress(crate::ops::OpsArgs),
    /// Finished runs per second over 1, 5, 15 minutes and since start, with duration
    /// percentiles (GET /throughput).
    #[command(
        after_help = "Example:\n  pyoco-client throughput --tag gpu --watch --interval-sec 5"
    )]
    Throughput(crate::ops::OpsArgs),
    /// Recent failures grouped by error class and task, and warnings (GET /logs).
    #[command(after_help = "Example:\n  pyoco-client failures --flow etl --limit 10")]
    Failures(crate::ops::FailuresArgs),
    /// The newest finished runs with their result summary, page by page (GET /results).
    #[command(after_help = "\
Examples:
  pyoco-client results --status FAILED --limit 20
  pyoco-client results --cursor <NEXT_CURSOR> --output json")]
    Results(crate::ops::ResultsArgs),
    /// Check that the gateway answers (GET /health).
    #[command(after_help = "Example:\n  pyoco-client --server http://127.0.0.1:8000 health")]
    Health,
    /// List the wheel registry (GET /wheels).
    #[command(
        after_help = "Examples:\n  pyoco-client wheels\n  pyoco-client wheels --output table"
    )]
    Wheels {
        #[arg(long, value_enum, default_value_t = ListOutput::Json)]
        output: ListOutput,
    },
    /// Wheel uploads and deletes, newest first (GET /wheels/history).
    #[command(after_help = "\
Examples:
  pyoco-client wheel-history --limit 20
  pyoco-client wheel-history --wheel-name mypkg-1.0.0-py3-none-any.whl --action upload")]
    WheelHistory(WheelHistoryArgs),
    /// Upload a wheel (POST /wheels): workers with a matching tag install it before their
    /// next poll.
    #[command(after_help = "\
Examples:
  pyoco-client wheel-upload --wheel-file dist/mypkg-1.0.0-py3-none-any.whl --tags gpu,cpu
  pyoco-client wheel-upload --wheel-file dist/mypkg-1.0.1-py3-none-any.whl --preflight warn
Each upload must raise the project's version (PEP 440); an equal or older one is refused (409).
The preflight checks the wheel locally first: METADATA name/version, a usage doc (a
description of 80+ characters or a Project-URL labelled Documentation) and entry points.")]
    WheelUpload(WheelUploadArgs),
    /// Delete a wheel (DELETE /wheels/{name}); workers uninstall it on their next sync.
    #[command(
        after_help = "Example:\n  pyoco-client wheel-delete --name mypkg-1.0.0-py3-none-any.whl"
    )]
    WheelDelete {
        /// The wheel file name, as listed by `pyoco-client wheels`.
        #[arg(long)]
        name: String,
    },
    /// Print a shell completion script for bash, zsh, fish, elvish or powershell.
    #[command(after_help = "\
Examples:
  pyoco-client completions bash > ~/.local/share/bash-completion/completions/pyoco-client
  pyoco-client completions zsh > \"${fpath[1]}/_pyoco-client\"
  pyoco-client completions fish > ~/.config/fish/completions/pyoco-client.fish")]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Cancel every run matching a filter (POST /runs/cancel); safe to repeat.
    #[command(after_help = "\
Examples:
  pyoco-client cancel-runs --flow nightly --status PENDING
  pyoco-client cancel-runs --tag gpu --updated-before 1795313038
  pyoco-client cancel-runs --run-id <RUN_ID> --run-id <RUN_ID>
At least one filter is required; prints {count, run_ids, truncated}.")]
    CancelRuns(crate::bulk::CancelRunsArgs),
    /// Start a run again with the same flow, params and tag (POST /runs/{run_id}/replay).
    #[command(after_help = "\
Examples:
  pyoco-client replay <RUN_ID>
  pyoco-client replay --replay-failed --flow nightly --limit 20
With --replay-failed every FAILED run of the filter is replayed (a JSON array of results;
exit 1 if any could not be).")]
    Replay(crate::bulk::ReplayArgs),
    /// Submit a multi-workflow bundle (POST /runs/bundle); its entry workflow runs as the root run.
    #[command(after_help = "\
Examples:
  pyoco-client submit-bundle --bundle-file bundle.yaml
  pyoco-client submit-bundle --bundle-file bundle.yaml --tag gpu
Prints {run_id, status, bundle_hash}; status PENDING_APPROVAL means it waits for `approve`.")]
    SubmitBundle(crate::bundles::SubmitBundleArgs),
    /// Queue a run that waits for approval (POST /runs/{run_id}/approve).
    #[command(
        after_help = "Example:\n  pyoco-client approve --run-id <RUN_ID> --comment 'looks right'"
    )]
    Approve(crate::bundles::ApproveArgs),
    /// Cancel a run that waits for approval (POST /runs/{run_id}/reject).
    #[command(
        after_help = "Example:\n  pyoco-client reject --run-id <RUN_ID> --reason 'too costly'"
    )]
    Reject(crate::bundles::RejectArgs),
    /// The flow registry: versioned flow.yaml definitions by name (pyoco only). `submit
    /// --flow-name NAME` runs the active version of a registered name.
    #[command(
        subcommand,
        after_help = "\
Examples:
  pyoco-client flow register etl --workflow-file etl.yaml
  pyoco-client flow list
  pyoco-client flow show etl --version 1 --yaml
  pyoco-client flow rollback etl --version 1"
    )]
    Flow(crate::flows::FlowCommand),
    /// Schedule runs of a flow.yaml (POST /schedules/yaml): once, every N seconds, or on cron.
    #[command(after_help = "\
Examples:
  pyoco-client schedule-yaml --workflow-file flow.yaml --flow-name nightly --tag default --interval-seconds 3600
  pyoco-client schedule-yaml --workflow-file flow.yaml --flow-name once --tag default --run-at 2026-12-24T18:00:00+09:00
  pyoco-client schedule-yaml --workflow-file flow.yaml --flow-name report --tag default --cron '0 9 * * 1-5' --timezone Asia/Tokyo --misfire skip
Every gateway dispatches schedules; each slot runs exactly once.")]
    ScheduleYaml(crate::schedules::ScheduleYamlArgs),
    /// List schedules, ACTIVE first (GET /schedules).
    #[command(
        after_help = "Examples:\n  pyoco-client schedules\n  pyoco-client schedules --output table"
    )]
    Schedules {
        #[arg(long, value_enum, default_value_t = ListOutput::Json)]
        output: ListOutput,
    },
    /// The runs a schedule made, newest first (GET /schedules/{schedule_id}/runs).
    #[command(
        after_help = "Example:\n  pyoco-client schedule-runs --schedule-id <SCHEDULE_ID> --limit 10"
    )]
    ScheduleRuns(crate::schedules::ScheduleRunsArgs),
    /// Delete a schedule; its runs are kept (DELETE /schedules/{schedule_id}).
    #[command(after_help = "Example:\n  pyoco-client schedule-delete --schedule-id <SCHEDULE_ID>")]
    ScheduleDelete(crate::schedules::ScheduleIdArgs),
    /// Pause a schedule (PATCH /schedules/{schedule_id} {"paused": true}).
    #[command(after_help = "Example:\n  pyoco-client schedule-pause --schedule-id <SCHEDULE_ID>")]
    SchedulePause(crate::schedules::ScheduleIdArgs),
    /// Resume a paused schedule at its next slot (PATCH ... {"paused": false}).
    #[command(after_help = "Example:\n  pyoco-client schedule-resume --schedule-id <SCHEDULE_ID>")]
    ScheduleResume(crate::schedules::ScheduleIdArgs),
}

#[derive(Debug, clap::Args)]
pub struct WheelHistoryArgs {
    /// At most this many events (1..500).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Only events of this wheel file.
    #[arg(long)]
    pub wheel_name: Option<String>,
    /// Only uploads or only deletes.
    #[arg(long, value_enum)]
    pub action: Option<WheelAction>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WheelAction {
    Upload,
    Delete,
}

#[derive(Debug, clap::Args)]
pub struct WheelUploadArgs {
    /// The .whl file; its file name is the registry name.
    #[arg(long, value_name = "PATH")]
    pub wheel_file: PathBuf,
    /// Comma-separated worker tags that install it (none: every worker).
    #[arg(long, value_name = "A,B")]
    pub tags: Option<String>,
    /// Recorded in the history as replace=true (the default).
    #[arg(long, overrides_with = "no_replace")]
    pub replace: bool,
    /// Recorded in the history as replace=false.
    #[arg(long, overrides_with = "replace")]
    pub no_replace: bool,
    /// strict: problems stop the upload; warn: they are printed; off: no checks.
    #[arg(long, value_enum, default_value_t = Preflight::Strict)]
    pub preflight: Preflight,
    /// Missing entry points are a warning, not an error.
    #[arg(long)]
    pub allow_no_entry_points: bool,
    /// A missing usage doc is a warning, not an error.
    #[arg(long)]
    pub allow_missing_usage_doc: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Preflight {
    Strict,
    Warn,
    Off,
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
    /// One param as key=value (value JSON-decoded when valid JSON); repeatable, last wins.
    #[arg(long = "param", value_name = "K=V")]
    pub param: Vec<String>,
    /// Work queue tag (the server's default tag when omitted).
    #[arg(long)]
    pub tag: Option<String>,
    /// Comma-separated informational tags.
    #[arg(long, value_name = "A,B")]
    pub tags: Option<String>,
    /// Resubmitting with the same key returns the first run instead of a second one.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// Wait up to SECS (capped by the server's PYOCO_SYNC_WAIT_MAX_SEC) for the run to end and
    /// print its terminal snapshot; a run still going then prints {run_id, status, watch_url}.
    #[arg(long, value_name = "SECS", value_parser = wait_secs)]
    pub wait: Option<f64>,
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
    /// Resubmitting with the same key returns the first run instead of a second one.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// Wait up to SECS (capped by the server's PYOCO_SYNC_WAIT_MAX_SEC) for the run to end and
    /// print its terminal snapshot; a run still going then prints {run_id, status, watch_url}.
    #[arg(long, value_name = "SECS", value_parser = wait_secs)]
    pub wait: Option<f64>,
}

fn wait_secs(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        // Within what a Duration holds (the server caps the wait far below anyway).
        Ok(f) if std::time::Duration::try_from_secs_f64(f).is_ok() => Ok(f),
        _ => Err(format!("expected a number of seconds >= 0, got {raw:?}")),
    }
}

/// Filters shared by `list` and `list-vnext`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only runs with this status (exact, e.g. COMPLETED).
    #[arg(long)]
    pub status: Option<String>,
    /// Only runs of this flow name.
    #[arg(long)]
    pub flow: Option<String>,
    /// Only runs with this routing tag.
    #[arg(long)]
    pub tag: Option<String>,
    /// Ask for full snapshots (include=full).
    #[arg(long)]
    pub full: bool,
    /// Page size (1..200, server default 50).
    #[arg(long)]
    pub limit: Option<u32>,
    #[arg(long, value_enum, default_value_t = ListOutput::Json)]
    pub output: ListOutput,
}

#[derive(Debug, clap::Args)]
pub struct ListVnextArgs {
    #[command(flatten)]
    pub list: ListArgs,
    /// Only runs updated strictly after this Unix time (float seconds).
    #[arg(long, value_name = "TS")]
    pub updated_after: Option<f64>,
    /// Continue after a previous page (its next_cursor).
    #[arg(long)]
    pub cursor: Option<String>,
    /// Only runs submitted from a flow.yaml with this SHA-256 (hex).
    #[arg(long, value_name = "SHA256")]
    pub workflow_yaml_sha256: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    pub run_id: String,
    /// Keep task_records in the snapshots.
    #[arg(long)]
    pub records: bool,
    /// Only snapshots with updated_at >= this Unix time (float seconds).
    #[arg(long, value_name = "TS")]
    pub since: Option<f64>,
    /// Give up (exit 1) when the run is not terminal after this many seconds.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_sec: Option<u64>,
    /// Stop after this many events, heartbeats included (0 = unlimited).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_events: u64,
    /// Stop at the terminal snapshot (always the case; accepted for compatibility).
    #[arg(long)]
    pub until_terminal: bool,
    /// Default: live on a terminal, json when piped (the original's output).
    #[arg(long, value_enum)]
    pub output: Option<WatchOutput>,
}

#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    #[arg(long)]
    pub run_id: String,
    /// Wait until the run is terminal and print its final snapshot.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits (at least 1 s).
    #[arg(long, value_name = "N", default_value_t = 30)]
    pub timeout_sec: u64,
}

#[derive(Debug, clap::Args)]
pub struct WorkersArgs {
    /// active: RUNNING or IDLE workers; all: every registered worker.
    #[arg(long, value_enum, default_value_t = WorkersScope::Active)]
    pub scope: WorkersScope,
    /// Only workers in this state.
    #[arg(long, value_enum)]
    pub state: Option<WorkerState>,
    /// Also list hidden workers.
    #[arg(long)]
    pub include_hidden: bool,
    /// At most this many workers (1..500, server default 100).
    #[arg(long)]
    pub limit: Option<u32>,
    /// json: the records; table: one row per worker; plugins: one row per installed wheel.
    #[arg(long, value_enum, default_value_t = WorkersOutput::Json)]
    pub output: WorkersOutput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListOutput {
    /// JSON, the original's output.
    Json,
    /// A table for people, fitting the terminal (plain columns when piped).
    Table,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WatchOutput {
    /// One `{"event": …, "data": …}` line per event (the original's default).
    Json,
    /// One `<ts>\t<event>\t<status>\t<run_id>` line per event.
    Status,
    /// Every task with its state and duration (spinners on a terminal, one line per change
    /// when piped), then a one-line summary.
    Live,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorkersScope {
    Active,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WorkerState {
    Running,
    Idle,
    StoppedGraceful,
    Disconnected,
}

impl WorkerState {
    /// The wire value, e.g. `STOPPED_GRACEFUL`.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Running => "RUNNING",
            WorkerState::Idle => "IDLE",
            WorkerState::StoppedGraceful => "STOPPED_GRACEFUL",
            WorkerState::Disconnected => "DISCONNECTED",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorkersOutput {
    Json,
    Table,
    Plugins,
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
    fn new_subcommands_parse_with_the_original_flags() {
        let cli = Cli::try_parse_from([
            "pyoco-client",
            "workers",
            "--scope",
            "all",
            "--state",
            "STOPPED_GRACEFUL",
            "--include-hidden",
            "--output",
            "plugins",
        ])
        .unwrap();
        let Command::Workers(w) = cli.command else {
            panic!("not workers")
        };
        assert_eq!(
            (w.scope, w.state, w.include_hidden, w.output),
            (
                WorkersScope::All,
                Some(WorkerState::StoppedGraceful),
                true,
                WorkersOutput::Plugins
            )
        );
        let cli = Cli::try_parse_from(["pyoco-client", "cancel", "--run-id", "r"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Cancel(CancelArgs {
                wait: false,
                timeout_sec: 30,
                ..
            })
        ));
        let cli = Cli::try_parse_from(["pyoco-client", "watch", "r"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Watch(WatchArgs {
                max_events: 0,
                output: None,
                ..
            })
        ));
        assert!(Cli::try_parse_from(["pyoco-client", "watch", "r", "--timeout-sec", "0"]).is_err());
        let cli = Cli::try_parse_from([
            "pyoco-client",
            "list-vnext",
            "--status",
            "COMPLETED",
            "--cursor",
            "",
            "--updated-after",
            "1.5",
            "--output",
            "table",
        ])
        .unwrap();
        let Command::ListVnext(v) = cli.command else {
            panic!("not list-vnext")
        };
        assert_eq!(v.list.status.as_deref(), Some("COMPLETED"));
        assert_eq!(v.cursor.as_deref(), Some(""));
        assert_eq!(v.updated_after, Some(1.5));
        assert_eq!(v.list.output, ListOutput::Table);
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
