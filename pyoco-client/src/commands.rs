//! Runs one parsed `pyoco-client` command against the gateway and writes its output.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pyoco::HttpClient;
use pyoco::client::http::ListRuns;
use serde_json::Value;

use crate::cli::{
    Cli, Command, ListArgs, ListOutput, SubmitArgs, SubmitYamlArgs, WatchArgs, WatchOutput,
};
use crate::error::CliError;
use crate::output;
use crate::params;

/// How often `watch` polls the run (until the SSE watch lands).
const WATCH_INTERVAL: Duration = Duration::from_millis(200);

pub async fn run(cli: Cli) -> Result<(), CliError> {
    let mut client = HttpClient::new(&cli.server)?;
    // Like the original, an empty key means no key header at all.
    if let Some(key) = cli.api_key.as_deref().filter(|k| !k.is_empty()) {
        client = client.with_api_key(&cli.api_key_header, key);
    }
    match cli.command {
        Command::Submit(args) => submit(&client, args).await,
        Command::SubmitYaml(args) => submit_yaml(&client, args).await,
        Command::Get { run_id, records } => print_json(&client.get_run(&run_id, records).await?),
        Command::Tasks { run_id } => print_json(&client.get_tasks(&run_id).await?),
        Command::List(args) => list(&client, args).await,
        Command::Watch(args) => watch(&client, args).await,
    }
}

/// Writes to stdout, ignoring write errors so a closed pipe (`| head`) is not a crash.
fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).ok();
    out.flush().ok();
}

fn print_json(value: &Value) -> Result<(), CliError> {
    emit(&(output::json_line(value) + "\n"));
    Ok(())
}

fn read_file(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError::File(format!("{}: {e}", path.display())))
}

async fn submit(client: &HttpClient, args: SubmitArgs) -> Result<(), CliError> {
    // Validate every input before any network call.
    let file = match &args.params_file {
        Some(path) => {
            let bytes = read_file(path)?;
            let text = String::from_utf8(bytes)
                .map_err(|e| CliError::Input(format!("--params-file is not UTF-8 ({e})")))?;
            Some(params::parse_params_file(&text).map_err(CliError::Input)?)
        }
        None => None,
    };
    let inline = args
        .params
        .as_deref()
        .map(params::parse_params_json)
        .transpose()
        .map_err(CliError::Input)?;
    let merged = params::merge_params(file, inline, &args.param).map_err(CliError::Input)?;
    let tags = params::parse_tags(args.tags.as_deref());
    let resp = client
        .submit_run(&args.flow_name, merged, args.tag.as_deref(), tags)
        .await?;
    print_json(&resp)
}

async fn submit_yaml(client: &HttpClient, args: SubmitYamlArgs) -> Result<(), CliError> {
    let yaml = read_file(&args.workflow_file)?;
    let resp = client
        .submit_yaml(&yaml, &args.flow_name, args.tag.as_deref())
        .await?;
    print_json(&resp)
}

async fn list(client: &HttpClient, args: ListArgs) -> Result<(), CliError> {
    let opts = ListRuns {
        status: args.status,
        flow: args.flow,
        tag: args.tag,
        full: args.full,
        limit: args.limit,
    };
    let runs = client.list_runs(&opts).await?;
    match args.output {
        ListOutput::Json => print_json(&Value::Array(runs)),
        ListOutput::Table => {
            emit(&output::runs_table(&runs));
            Ok(())
        }
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

fn text_of(run: &Value, key: &str) -> Option<String> {
    match run.get(key)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

async fn watch(client: &HttpClient, args: WatchArgs) -> Result<(), CliError> {
    let run_id = args.run_id.as_str();
    // The progress line is redrawn in place, so only on a terminal and next to status lines.
    let tty = args.output == WatchOutput::Status && std::io::stdout().is_terminal();
    let mut progress_shown = false;
    let mut last_status = String::from("-");
    let waiting = client.wait_until_terminal(run_id, WATCH_INTERVAL, None, |run| {
        last_status = text_of(run, "status").unwrap_or_else(|| "-".into());
        let mut text = String::new();
        match args.output {
            WatchOutput::Status => {
                if progress_shown {
                    text.push_str("\r\x1b[2K");
                }
                text.push_str(&output::status_line("snapshot", run, run_id));
                text.push('\n');
                if tty {
                    let progress = output::progress_line(run);
                    progress_shown = !progress.is_empty();
                    text.push_str(&progress);
                }
            }
            WatchOutput::Json => {
                let event = output::snapshot_event(run, run_id, now(), args.records);
                text.push_str(&output::json_line(&event));
                text.push('\n');
            }
        }
        emit(&text);
    });
    // Our own deadline rather than the client's, so a timeout is not reported as a
    // connection error.
    let outcome = match args.timeout_sec {
        Some(secs) => tokio::time::timeout(Duration::from_secs(secs), waiting)
            .await
            .map_err(|_| secs),
        None => Ok(waiting.await),
    };
    if progress_shown {
        emit("\n");
    }
    let run = match outcome {
        Ok(result) => result?,
        Err(secs) => {
            return Err(CliError::WatchTimeout {
                run_id: run_id.to_string(),
                status: last_status,
                secs,
            });
        }
    };
    let status = text_of(&run, "status").unwrap_or_default();
    if status == "COMPLETED" {
        return Ok(());
    }
    Err(CliError::RunEnded {
        run_id: run_id.to_string(),
        error: text_of(&run, "error").unwrap_or_else(|| "(no error recorded)".into()),
        status,
    })
}
