//! `pyoco-client flow …`: the flow registry (pyoco only) — register a flow.yaml as the next
//! version of a name, list, show (a version's YAML with `--version`), roll back, delete,
//! validate a file (every problem at once) and dry-run (the execution plan).

use std::path::PathBuf;

use pyoco::HttpClient;
use serde_json::Value;

use crate::commands::{emit, print_json, read_file};
use crate::error::CliError;

#[derive(Debug, clap::Subcommand)]
pub enum FlowCommand {
    /// Register a flow.yaml as the next version of NAME, now active (POST /flows).
    #[command(after_help = "Example:\n  pyoco-client flow register etl --workflow-file etl.yaml")]
    Register {
        name: String,
        #[arg(long, value_name = "PATH")]
        workflow_file: PathBuf,
    },
    /// List the registered flows (GET /flows).
    List,
    /// Show a flow's versions (GET /flows/{name}); with --version that version's YAML.
    #[command(
        after_help = "Examples:\n  pyoco-client flow show etl\n  pyoco-client flow show etl --version 2 --yaml"
    )]
    Show {
        name: String,
        /// One version (GET /flows/{name}/versions/{version}).
        #[arg(long)]
        version: Option<u64>,
        /// With --version: print only the YAML text.
        #[arg(long, requires = "version")]
        yaml: bool,
    },
    /// Make an earlier version the active one (POST /flows/{name}/rollback).
    #[command(after_help = "Example:\n  pyoco-client flow rollback etl --version 1")]
    Rollback {
        name: String,
        #[arg(long)]
        version: u64,
    },
    /// Delete a flow and all its versions (DELETE /flows/{name}).
    Delete { name: String },
    /// Every problem of a flow.yaml at once, with line and column (POST /flows/validate);
    /// exits 1 when there is any. Nothing is stored.
    #[command(after_help = "Example:\n  pyoco-client flow validate --workflow-file etl.yaml")]
    Validate {
        #[arg(long, value_name = "PATH")]
        workflow_file: PathBuf,
    },
    /// The execution plan of a registered flow, without running it (POST /flows/{name}/dry-run).
    #[command(after_help = "Example:\n  pyoco-client flow dry-run etl --version 2")]
    DryRun {
        name: String,
        /// Default: the active version.
        #[arg(long)]
        version: Option<u64>,
    },
}

pub async fn run(client: &HttpClient, command: FlowCommand) -> Result<(), CliError> {
    match command {
        FlowCommand::Register {
            name,
            workflow_file,
        } => {
            let yaml = read_file(&workflow_file)?;
            print_json(&client.register_flow(&name, &yaml).await?)
        }
        FlowCommand::List => print_json(&Value::Array(client.list_flows().await?)),
        FlowCommand::Show {
            name,
            version: None,
            ..
        } => print_json(&client.get_flow(&name).await?),
        FlowCommand::Show {
            name,
            version: Some(version),
            yaml,
        } => {
            let doc = client.get_flow_version(&name, version).await?;
            match doc.get("yaml").and_then(Value::as_str).filter(|_| yaml) {
                Some(text) => {
                    emit(text);
                    Ok(())
                }
                None => print_json(&doc),
            }
        }
        FlowCommand::Rollback { name, version } => {
            print_json(&client.rollback_flow(&name, version).await?)
        }
        FlowCommand::Delete { name } => print_json(&client.delete_flow(&name).await?),
        FlowCommand::Validate { workflow_file } => {
            let yaml = read_file(&workflow_file)?;
            let answer = client.validate_flow(&yaml).await?;
            print_json(&answer)?;
            let problems = answer["problems"].as_array().cloned().unwrap_or_default();
            if problems.is_empty() {
                return Ok(());
            }
            let lines: Vec<String> = problems
                .iter()
                .map(|p| {
                    let at = match (p["line"].as_u64(), p["column"].as_u64()) {
                        (Some(l), Some(c)) => format!("line {l}, column {c}: "),
                        _ => String::new(),
                    };
                    format!("{at}{}", p["reason"].as_str().unwrap_or_default())
                })
                .collect();
            Err(CliError::Input(format!(
                "{}: {} problem(s): {}",
                workflow_file.display(),
                lines.len(),
                lines.join("; ")
            )))
        }
        FlowCommand::DryRun { name, version } => {
            print_json(&client.dry_run_flow(&name, version).await?)
        }
    }
}
