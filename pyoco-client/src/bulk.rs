//! Bulk subcommands (pyoco only): `cancel-runs` (every run of a filter) and `replay` (one run,
//! or with `--replay-failed` every FAILED run of a filter).

use pyoco::HttpClient;
use pyoco::client::http::{CancelFilter, HttpError, ListRunsVnext};
use serde_json::{Value, json};

use crate::commands::print_json;
use crate::error::CliError;

#[derive(Debug, clap::Args)]
pub struct CancelRunsArgs {
    /// Only runs in this status (default: every non-terminal status).
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long)]
    pub flow: Option<String>,
    #[arg(long)]
    pub tag: Option<String>,
    #[arg(long)]
    pub schedule_id: Option<String>,
    /// Only these runs (repeatable).
    #[arg(long = "run-id", value_name = "RUN_ID")]
    pub run_ids: Vec<String>,
    /// Only runs last updated before this Unix time.
    #[arg(long)]
    pub updated_before: Option<f64>,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The run to replay (not with --replay-failed).
    #[arg(
        required_unless_present = "replay_failed",
        conflicts_with = "replay_failed"
    )]
    pub run_id: Option<String>,
    /// Replay every FAILED run matching --flow / --tag / --schedule-id.
    #[arg(long)]
    pub replay_failed: bool,
    #[arg(long, requires = "replay_failed")]
    pub flow: Option<String>,
    #[arg(long, requires = "replay_failed")]
    pub tag: Option<String>,
    #[arg(long, requires = "replay_failed")]
    pub schedule_id: Option<String>,
    /// Replay at most this many runs, newest first.
    #[arg(long, requires = "replay_failed", default_value_t = 100)]
    pub limit: usize,
}

pub async fn cancel_runs(client: &HttpClient, args: CancelRunsArgs) -> Result<(), CliError> {
    let filter = CancelFilter {
        status: args.status,
        flow: args.flow,
        tag: args.tag,
        schedule_id: args.schedule_id,
        run_ids: (!args.run_ids.is_empty()).then_some(args.run_ids),
        updated_before: args.updated_before,
    };
    print_json(&client.cancel_runs(&filter).await?)
}

pub async fn replay(client: &HttpClient, args: ReplayArgs) -> Result<(), CliError> {
    if let Some(run_id) = &args.run_id {
        return print_json(&client.replay_run(run_id).await?);
    }
    let failed = failed_runs(client, &args).await?;
    // One line of the array per run: its replay, or why it could not be replayed.
    let mut results = Vec::new();
    let mut first_error: Option<HttpError> = None;
    for run_id in failed {
        match client.replay_run(&run_id).await {
            Ok(done) => results.push(done),
            Err(e) => {
                results.push(json!({"replay_of": run_id, "error": e.to_string()}));
                first_error.get_or_insert(e);
            }
        }
    }
    print_json(&Value::Array(results))?;
    match first_error {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// The FAILED runs of the filter, newest first, at most `limit`.
async fn failed_runs(client: &HttpClient, args: &ReplayArgs) -> Result<Vec<String>, CliError> {
    let runs = match &args.schedule_id {
        Some(schedule_id) => client
            .list_schedule_runs(schedule_id, false, Some(200))
            .await?
            .into_iter()
            .filter(|r| {
                r["status"] == "FAILED"
                    && args
                        .flow
                        .as_ref()
                        .is_none_or(|f| r["flow_name"] == f.as_str())
                    && args.tag.as_ref().is_none_or(|t| r["tag"] == t.as_str())
            })
            .collect(),
        None => {
            let query = ListRunsVnext {
                status: Some("FAILED".into()),
                flow: args.flow.clone(),
                tag: args.tag.clone(),
                limit: Some(200),
                ..Default::default()
            };
            client.list_all_runs(&query).await?
        }
    };
    Ok(runs
        .iter()
        .filter_map(|r| r["run_id"].as_str().map(str::to_string))
        .take(args.limit)
        .collect())
}
