//! Runs one parsed `pyoco-client` command against the gateway and writes its output.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use pyoco::HttpClient;
use pyoco::client::http::{
    HttpError, ListRuns, ListRunsVnext, ListWorkers, WatchEvent, WatchOptions, WorkerScope,
};
use serde_json::{Value, json};

use crate::cli::{
    CancelArgs, Cli, Command, ListArgs, ListOutput, ListVnextArgs, SubmitArgs, SubmitYamlArgs,
    WatchArgs, WatchOutput, WorkersArgs, WorkersOutput, WorkersScope,
};
use crate::error::CliError;
use crate::live::LiveView;
use crate::ops::Report;
use crate::output;
use crate::params;

/// Longest `timeout_sec` the gateway accepts for one watch connection; longer watches
/// reconnect.
const MAX_WATCH_CONNECTION_SEC: u64 = 600;

pub async fn run(cli: Cli) -> Result<(), CliError> {
    if let Command::Completions { shell } = cli.command {
        let mut command = <Cli as clap::CommandFactory>::command();
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut command, "pyoco-client", &mut out);
        emit(&String::from_utf8_lossy(&out));
        return Ok(());
    }
    let mut client = HttpClient::new(&cli.server)?;
    // Like the original, an empty key means no key header at all.
    if let Some(key) = cli.api_key.as_deref().filter(|k| !k.is_empty()) {
        client = client.with_api_key(&cli.api_key_header, key);
    }
    if let Some(secret) = cli.hmac_secret.as_deref().filter(|s| !s.is_empty()) {
        client = client.with_hmac_secret(secret);
    }
    match cli.command {
        Command::Submit(args) => submit(&client, args).await,
        Command::SubmitYaml(args) => submit_yaml(&client, args).await,
        Command::Get { run_id, records } => print_json(&client.get_run(&run_id, records).await?),
        Command::Tasks { run_id } => print_json(&client.get_tasks(&run_id).await?),
        Command::List(args) => list(&client, args).await,
        Command::ListVnext(args) => list_vnext(&client, args).await,
        Command::Watch(args) => watch(&client, args).await,
        Command::Cancel(args) => cancel(&client, args).await,
        Command::Workers(args) => workers(&client, args).await,
        Command::HideWorker { worker_id } => {
            print_json(&client.patch_worker_hidden(&worker_id, true).await?)
        }
        Command::UnhideWorker { worker_id } => {
            print_json(&client.patch_worker_hidden(&worker_id, false).await?)
        }
        // Raw text as served, without an extra newline (like the original).
        Command::Metrics => {
            emit(&client.metrics().await?);
            Ok(())
        }
        Command::Health => print_json(&client.health().await?),
        Command::Stats(ops) => crate::ops::run(&client, Report::Stats, &ops, None, None).await,
        Command::Progress(ops) => {
            crate::ops::run(&client, Report::Progress, &ops, None, None).await
        }
        Command::Throughput(ops) => {
            crate::ops::run(&client, Report::Throughput, &ops, None, None).await
        }
        Command::Failures(a) => {
            crate::ops::run(&client, Report::Failures, &a.ops, a.limit, None).await
        }
        Command::Results(a) => {
            crate::ops::run(&client, Report::Results, &a.ops, None, Some(&a)).await
        }
        Command::Wheels { output: format } => {
            let wheels = client.list_wheels().await?;
            match format {
                ListOutput::Json => print_json(&Value::Array(wheels)),
                ListOutput::Table => {
                    emit(&output::wheels_table(&wheels, output::Style::of_stdout()));
                    Ok(())
                }
            }
        }
        Command::WheelHistory(args) => {
            let query = pyoco::client::http::WheelHistoryQuery {
                limit: Some(args.limit),
                wheel_name: args.wheel_name,
                action: args.action.map(|a| {
                    match a {
                        crate::cli::WheelAction::Upload => "upload",
                        crate::cli::WheelAction::Delete => "delete",
                    }
                    .to_string()
                }),
            };
            print_json(&Value::Array(client.list_wheel_history(&query).await?))
        }
        Command::WheelUpload(args) => wheel_upload(&client, args).await,
        Command::WheelDelete { name } => print_json(&client.delete_wheel(&name).await?),
        Command::Completions { .. } => Ok(()),
        Command::CancelRuns(args) => crate::bulk::cancel_runs(&client, args).await,
        Command::Replay(args) => crate::bulk::replay(&client, args).await,
        Command::SubmitBundle(args) => crate::bundles::submit(&client, args).await,
        Command::Approve(args) => crate::bundles::approve(&client, args).await,
        Command::Reject(args) => crate::bundles::reject(&client, args).await,
        Command::Flow(command) => crate::flows::run(&client, command).await,
        Command::ScheduleYaml(args) => crate::schedules::create(&client, args).await,
        Command::Schedules { output: format } => {
            let schedules = client.list_schedules().await?;
            match format {
                ListOutput::Json => print_json(&Value::Array(schedules)),
                ListOutput::Table => {
                    emit(&output::schedules_table(
                        &schedules,
                        output::Style::of_stdout(),
                    ));
                    Ok(())
                }
            }
        }
        Command::ScheduleRuns(args) => crate::schedules::runs(&client, args).await,
        Command::ScheduleDelete(args) => crate::schedules::delete(&client, args).await,
        Command::SchedulePause(args) => crate::schedules::set_paused(&client, args, true).await,
        Command::ScheduleResume(args) => crate::schedules::set_paused(&client, args, false).await,
    }
}

/// `wheel-upload`: the local preflight (warnings to stderr, errors stop it in strict mode),
/// then `POST /wheels`.
async fn wheel_upload(
    client: &HttpClient,
    args: crate::cli::WheelUploadArgs,
) -> Result<(), CliError> {
    use pyoco::wheel::PreflightMode;
    let data = read_file(&args.wheel_file)?;
    let filename = args
        .wheel_file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mode = match args.preflight {
        crate::cli::Preflight::Strict => PreflightMode::Strict,
        crate::cli::Preflight::Warn => PreflightMode::Warn,
        crate::cli::Preflight::Off => PreflightMode::Off,
    };
    let report = pyoco::wheel::preflight(
        &data,
        args.allow_no_entry_points,
        args.allow_missing_usage_doc,
    )
    .under(mode);
    for warning in &report.warnings {
        eprintln!("[pyoco-client][preflight][warn] {warning}");
    }
    if let Some(failure) = report.failure() {
        return Err(CliError::Preflight(failure));
    }
    let options = pyoco::client::http::WheelUpload {
        tags: params::parse_tags(args.tags.as_deref()).unwrap_or_default(),
        replace: !args.no_replace,
    };
    print_json(&client.upload_wheel(&filename, data, &options).await?)
}

/// Writes to stdout, ignoring write errors so a closed pipe (`| head`) is not a crash.
pub(crate) fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).ok();
    out.flush().ok();
}

pub(crate) fn print_json(value: &Value) -> Result<(), CliError> {
    emit(&(output::json_line(value) + "\n"));
    Ok(())
}

pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError::File(format!("{}: {e}", path.display())))
}

/// The client for one submit: with its idempotency key and synchronous wait, if any.
fn submit_client(client: &HttpClient, key: Option<&str>, wait: Option<f64>) -> HttpClient {
    let mut client = client.clone();
    if let Some(key) = key {
        client = client.with_idempotency_key(key);
    }
    if let Some(wait) = wait {
        client = client.with_sync_wait(std::time::Duration::from_secs_f64(wait));
    }
    client
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
    let client = submit_client(client, args.idempotency_key.as_deref(), args.wait);
    let resp = client
        .submit_run(&args.flow_name, merged, args.tag.as_deref(), tags)
        .await?;
    print_json(&resp)?;
    submit_exit(&resp, args.wait)
}

async fn submit_yaml(client: &HttpClient, args: SubmitYamlArgs) -> Result<(), CliError> {
    let yaml = read_file(&args.workflow_file)?;
    let client = submit_client(client, args.idempotency_key.as_deref(), args.wait);
    let resp = client
        .submit_yaml(&yaml, &args.flow_name, args.tag.as_deref())
        .await?;
    print_json(&resp)?;
    submit_exit(&resp, args.wait)
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
            emit(&output::runs_table(&runs, output::Style::of_stdout()));
            Ok(())
        }
    }
}

async fn list_vnext(client: &HttpClient, args: ListVnextArgs) -> Result<(), CliError> {
    let ListVnextArgs {
        list,
        updated_after,
        cursor,
        workflow_yaml_sha256,
    } = args;
    let opts = ListRunsVnext {
        status: list.status,
        flow: list.flow,
        tag: list.tag,
        workflow_yaml_sha256,
        updated_after,
        cursor,
        full: list.full,
        limit: list.limit,
    };
    let page = client.list_runs_vnext(&opts).await?;
    match list.output {
        ListOutput::Json => {
            print_json(&json!({"items": page.items, "next_cursor": page.next_cursor}))
        }
        ListOutput::Table => {
            let mut text = output::runs_table(&page.items, output::Style::of_stdout());
            if let Some(cursor) = page.next_cursor.filter(|c| !c.is_empty()) {
                text.push_str(&format!("next_cursor: {cursor}\n"));
            }
            emit(&text);
            Ok(())
        }
    }
}

fn text_of(run: &Value, key: &str) -> Option<String> {
    match run.get(key)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The terminal's in-place progress line below the status lines.
#[derive(Debug, Default)]
struct Progress {
    enabled: bool,
    shown: bool,
    /// The latest snapshot's line, redrawn after every status line.
    line: String,
}

impl Progress {
    /// Erases the progress line so a status line can take its place.
    fn clear(&mut self, text: &mut String) {
        if self.shown {
            text.push_str("\r\x1b[2K");
            self.shown = false;
        }
    }

    /// Draws the progress line of `snapshot` (or the last one) without a newline.
    fn draw(&mut self, text: &mut String, snapshot: Option<&Value>) {
        if !self.enabled {
            return;
        }
        if let Some(snapshot) = snapshot {
            self.line = output::progress_line(snapshot);
        }
        if !self.line.is_empty() {
            text.push_str(&self.line);
            self.shown = true;
        }
    }
}

async fn watch(client: &HttpClient, args: WatchArgs) -> Result<(), CliError> {
    let run_id = args.run_id.as_str();
    let terminal = std::io::stdout().is_terminal();
    let output = args.output.unwrap_or(if terminal {
        WatchOutput::Live
    } else {
        WatchOutput::Json
    });
    let opts = WatchOptions {
        // The live view shows each task's duration from its record.
        include_records: args.records || output == WatchOutput::Live,
        since: args.since,
        timeout_sec: args.timeout_sec.map(|s| s.min(MAX_WATCH_CONNECTION_SEC)),
        deadline: args.timeout_sec.map(Duration::from_secs),
        ..WatchOptions::default()
    };
    let mut events = client.watch_run(run_id, opts);
    let mut live = (output == WatchOutput::Live).then(|| LiveView::new(terminal));
    // The progress line is redrawn in place, so only on a terminal and next to status lines.
    let mut progress = Progress {
        enabled: output == WatchOutput::Status && terminal,
        ..Progress::default()
    };
    let mut last: Option<Value> = None;
    let mut count = 0u64;
    let mut stopped_early = false;
    let mut failure = None;
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        let mut text = String::new();
        progress.clear(&mut text);
        let shown = event.to_json();
        match output {
            WatchOutput::Json => text.push_str(&output::json_line(&shown)),
            WatchOutput::Status => text.push_str(&output::status_line(&shown)),
            WatchOutput::Live => {}
        }
        if output != WatchOutput::Live {
            text.push('\n');
        }
        if let (Some(view), Some(snapshot)) = (live.as_mut(), event.snapshot()) {
            text.push_str(&view.update(snapshot));
        }
        progress.draw(&mut text, event.snapshot());
        emit(&text);
        if let WatchEvent::Snapshot { snapshot, .. } = event {
            last = Some(snapshot);
        }
        count += 1;
        if args.max_events > 0 && count >= args.max_events {
            stopped_early = true;
            break;
        }
    }
    // Close the connection before reporting.
    drop(events);
    if progress.shown {
        emit("\n");
    }
    if let Some(view) = live.as_mut() {
        emit(&view.finish(last.as_ref()));
    }
    if let Some(e) = failure {
        return Err(e.into());
    }
    let status = last
        .as_ref()
        .and_then(|s| text_of(s, "status"))
        .unwrap_or_else(|| "-".into());
    if let Some(exit) = terminal_exit(run_id, &status, last.as_ref()) {
        return exit;
    }
    if stopped_early {
        // The user asked for that many events and got them.
        Ok(())
    } else {
        // Only a deadline ends the watch of a run that is not terminal.
        Err(CliError::WatchTimeout {
            run_id: run_id.to_string(),
            status,
            secs: args.timeout_sec.unwrap_or_default(),
        })
    }
}

/// How a command that followed a run to its end exits: 0 for COMPLETED, `RUN` for FAILED or
/// CANCELLED; `None` while the run is not terminal.
fn terminal_exit(run_id: &str, status: &str, run: Option<&Value>) -> Option<Result<(), CliError>> {
    match status {
        "COMPLETED" => Some(Ok(())),
        "FAILED" | "CANCELLED" => Some(Err(CliError::RunEnded {
            run_id: run_id.to_string(),
            error: run
                .and_then(|s| text_of(s, "error"))
                .unwrap_or_else(|| "(no error recorded)".into()),
            status: status.to_string(),
        })),
        _ => None,
    }
}

/// After `submit --wait`: the answer is printed; the exit says how the run ended (`WATCH` when
/// it had not ended when the wait ran out).
fn submit_exit(resp: &Value, wait: Option<f64>) -> Result<(), CliError> {
    let Some(wait) = wait else { return Ok(()) };
    let run_id = text_of(resp, "run_id").unwrap_or_default();
    let status = text_of(resp, "status").unwrap_or_else(|| "-".into());
    terminal_exit(&run_id, &status, Some(resp)).unwrap_or_else(|| {
        Err(CliError::WatchTimeout {
            run_id: run_id.clone(),
            status,
            secs: wait.ceil() as u64,
        })
    })
}

async fn cancel(client: &HttpClient, args: CancelArgs) -> Result<(), CliError> {
    let wait = args.wait.then(|| Duration::from_secs(args.timeout_sec));
    match client.cancel_run(&args.run_id, wait).await {
        Ok(run) => print_json(&run),
        Err(HttpError::Timeout(reason)) => Err(CliError::CancelTimeout(reason)),
        Err(e) => Err(e.into()),
    }
}

async fn workers(client: &HttpClient, args: WorkersArgs) -> Result<(), CliError> {
    let opts = ListWorkers {
        scope: Some(match args.scope {
            WorkersScope::Active => WorkerScope::Active,
            WorkersScope::All => WorkerScope::All,
        }),
        state: args.state.map(|s| s.as_str().to_string()),
        include_hidden: args.include_hidden,
        limit: args.limit,
    };
    let list = client.get_workers(&opts).await?;
    match args.output {
        WorkersOutput::Json => print_json(&Value::Array(list)),
        WorkersOutput::Table => {
            emit(&output::workers_table(&list, output::Style::of_stdout()));
            Ok(())
        }
        WorkersOutput::Plugins => {
            emit(&output::plugins_table(&list, output::Style::of_stdout()));
            Ok(())
        }
    }
}
