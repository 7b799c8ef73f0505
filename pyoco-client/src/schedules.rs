//! The schedule subcommands: the original's `schedule-yaml`, `schedules`, `schedule-runs` and
//! `schedule-delete` (same flags), plus `schedule-pause` / `schedule-resume`.

use std::path::PathBuf;

use pyoco::HttpClient;
use pyoco::client::http::NewSchedule;
use serde_json::Value;

use crate::commands::{print_json, read_file};
use crate::error::CliError;

#[derive(Debug, clap::Args)]
pub struct ScheduleYamlArgs {
    /// The flow.yaml to run on every firing.
    #[arg(long, value_name = "PATH")]
    pub workflow_file: PathBuf,
    /// The name stored on each run.
    #[arg(long)]
    pub flow_name: String,
    /// Routing tag of the runs.
    #[arg(long)]
    pub tag: String,
    /// Fire once at this time (ISO 8601 with an offset, e.g. 2026-12-24T18:00:00+09:00).
    #[arg(long)]
    pub run_at: Option<String>,
    /// Fire every this many seconds.
    #[arg(long)]
    pub interval_seconds: Option<f64>,
    /// Anchor of an interval schedule (ISO 8601 with an offset).
    #[arg(long)]
    pub start_at: Option<String>,
    /// Fire on a 5- or 6-field cron expression (pyoco only).
    #[arg(long)]
    pub cron: Option<String>,
    /// IANA timezone of --cron (default UTC; pyoco only).
    #[arg(long)]
    pub timezone: Option<String>,
    /// Slots missed while no gateway was up: skip them, or run once for all (default).
    #[arg(long, value_parser = ["skip", "run_once"])]
    pub misfire: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ScheduleRunsArgs {
    #[arg(long)]
    pub schedule_id: String,
    /// At most this many runs (1..200; the gateway's default is 50).
    #[arg(long)]
    pub limit: Option<u32>,
    /// Send include=records.
    #[arg(long)]
    pub records: bool,
}

/// `--schedule-id`, for delete, pause and resume.
#[derive(Debug, clap::Args)]
pub struct ScheduleIdArgs {
    #[arg(long)]
    pub schedule_id: String,
}

pub async fn create(client: &HttpClient, args: ScheduleYamlArgs) -> Result<(), CliError> {
    let yaml = read_file(&args.workflow_file)?;
    let when = NewSchedule {
        run_at: args.run_at,
        interval_seconds: args.interval_seconds,
        start_at: args.start_at,
        cron: args.cron,
        timezone: args.timezone,
        misfire: args.misfire,
    };
    print_json(
        &client
            .create_yaml_schedule(&yaml, &args.flow_name, Some(&args.tag), &when)
            .await?,
    )
}

pub async fn runs(client: &HttpClient, args: ScheduleRunsArgs) -> Result<(), CliError> {
    let runs = client
        .list_schedule_runs(&args.schedule_id, args.records, args.limit)
        .await?;
    print_json(&Value::Array(runs))
}

pub async fn delete(client: &HttpClient, args: ScheduleIdArgs) -> Result<(), CliError> {
    print_json(&client.delete_schedule(&args.schedule_id).await?)
}

pub async fn set_paused(
    client: &HttpClient,
    args: ScheduleIdArgs,
    paused: bool,
) -> Result<(), CliError> {
    print_json(
        &client
            .set_schedule_paused(&args.schedule_id, paused)
            .await?,
    )
}
