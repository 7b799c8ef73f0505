//! The bundle subcommands: `submit-bundle` (POST /runs/bundle), `approve` and `reject` (the
//! decisions on a run waiting in PENDING_APPROVAL). The original's client library has these
//! calls (`submit_bundle_yaml`, `approve_run`, `reject_run`) but its CLI has no commands for
//! them; the flags follow its other commands (`--*-file`, `--run-id`).

use std::path::PathBuf;

use pyoco::HttpClient;

use crate::commands::{print_json, read_file};
use crate::error::CliError;

#[derive(Debug, clap::Args)]
pub struct SubmitBundleArgs {
    /// The bundle YAML (workflows, submit.entry_workflow, submit.inputs).
    #[arg(long, value_name = "PATH")]
    pub bundle_file: PathBuf,
    /// Routing tag of the root run (default: the gateway's default tag).
    #[arg(long)]
    pub tag: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    #[arg(long)]
    pub run_id: String,
    /// Stored as the run's approval_comment.
    #[arg(long)]
    pub comment: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct RejectArgs {
    #[arg(long)]
    pub run_id: String,
    /// Stored as the run's rejection_reason.
    #[arg(long)]
    pub reason: Option<String>,
}

pub async fn submit(client: &HttpClient, args: SubmitBundleArgs) -> Result<(), CliError> {
    let bundle = read_file(&args.bundle_file)?;
    print_json(
        &client
            .submit_bundle_yaml(&bundle, args.tag.as_deref())
            .await?,
    )
}

pub async fn approve(client: &HttpClient, args: ApproveArgs) -> Result<(), CliError> {
    print_json(
        &client
            .approve_run(&args.run_id, args.comment.as_deref())
            .await?,
    )
}

pub async fn reject(client: &HttpClient, args: RejectArgs) -> Result<(), CliError> {
    print_json(
        &client
            .reject_run(&args.run_id, args.reason.as_deref())
            .await?,
    )
}
