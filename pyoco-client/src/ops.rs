//! The operations commands: `stats`, `progress`, `throughput`, `failures` and `results`, over
//! the gateway's routes of the same names (`failures` reads `GET /logs`). Each prints one JSON
//! line (`--output json`) or a few plain lines (`--output text`, the default); with `--watch`
//! it refreshes every `--interval-sec`, redrawing in place on a terminal and printing one block
//! (or JSON line) per refresh when piped.

use std::io::IsTerminal;
use std::time::Duration;

use pyoco::HttpClient;
use pyoco::client::http::{ResultsQuery, StatsFilter};
use serde_json::Value;

use crate::error::CliError;
use crate::output;

/// Output of the operations commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OpsOutput {
    Text,
    Json,
}

/// Filter and refresh options shared by every operations command.
#[derive(Debug, clap::Args)]
pub struct OpsArgs {
    /// Only runs of this flow.
    #[arg(long)]
    pub flow: Option<String>,
    /// Only runs of this tag.
    #[arg(long)]
    pub tag: Option<String>,
    /// Only runs of this schedule.
    #[arg(long)]
    pub schedule_id: Option<String>,
    #[arg(long, value_enum, default_value_t = OpsOutput::Text)]
    pub output: OpsOutput,
    /// Refresh until interrupted (in place on a terminal).
    #[arg(long)]
    pub watch: bool,
    /// Seconds between refreshes with --watch (at least 0.2).
    #[arg(long, default_value_t = 2.0, value_parser = interval)]
    pub interval_sec: f64,
    /// With --watch: stop after this many refreshes.
    #[arg(long)]
    pub count: Option<u64>,
}

/// A refresh interval: a number of seconds, at least 0.2 (so `--watch` cannot hammer the
/// gateway).
fn interval(raw: &str) -> Result<f64, String> {
    match raw.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.2 => Ok(s),
        _ => Err(format!(
            "{raw:?} is not a number of seconds of at least 0.2"
        )),
    }
}

/// `failures` options.
#[derive(Debug, clap::Args)]
pub struct FailuresArgs {
    #[command(flatten)]
    pub ops: OpsArgs,
    /// At most this many error groups (1..200).
    #[arg(long)]
    pub limit: Option<u32>,
}

/// `results` options.
#[derive(Debug, clap::Args)]
pub struct ResultsArgs {
    #[command(flatten)]
    pub ops: OpsArgs,
    /// Only COMPLETED, FAILED or CANCELLED runs.
    #[arg(long)]
    pub status: Option<String>,
    /// Runs per page (1..200).
    #[arg(long)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[arg(long)]
    pub cursor: Option<String>,
}

/// Which route a command reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    Stats,
    Progress,
    Throughput,
    Failures,
    Results,
}

fn filter(args: &OpsArgs) -> StatsFilter {
    StatsFilter {
        flow: args.flow.clone(),
        tag: args.tag.clone(),
        schedule_id: args.schedule_id.clone(),
    }
}

/// Runs one operations command.
pub async fn run(
    client: &HttpClient,
    report: Report,
    ops: &OpsArgs,
    limit: Option<u32>,
    results: Option<&ResultsArgs>,
) -> Result<(), CliError> {
    let f = filter(ops);
    let fetch = || async {
        match report {
            Report::Stats => client.stats(&f).await,
            Report::Progress => client.progress(&f).await,
            Report::Throughput => client.throughput(&f).await,
            Report::Failures => client.logs(&f, limit).await,
            Report::Results => {
                let r = results;
                client
                    .results(&ResultsQuery {
                        filter: f.clone(),
                        status: r.and_then(|r| r.status.clone()),
                        limit: r.and_then(|r| r.limit),
                        cursor: r.and_then(|r| r.cursor.clone()),
                    })
                    .await
            }
        }
    };
    let terminal = std::io::stdout().is_terminal();
    let mut shown = 0u64;
    loop {
        let value = fetch().await?;
        let body = match ops.output {
            OpsOutput::Json => output::json_line(&value) + "\n",
            OpsOutput::Text => render(report, &value),
        };
        if ops.watch && terminal {
            // Home, clear, then the block: redrawn in place.
            crate::commands::emit(&format!("\x1b[H\x1b[2J{body}"));
        } else if ops.watch && ops.output == OpsOutput::Text && shown > 0 {
            crate::commands::emit(&format!("\n{body}"));
        } else {
            crate::commands::emit(&body);
        }
        shown += 1;
        if !ops.watch || ops.count.is_some_and(|c| shown >= c) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs_f64(ops.interval_sec)).await;
    }
}

fn num(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn secs(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".into(), |s| format!("{s:.3}s"))
}

/// The plain-text form of a report.
pub fn render(report: Report, v: &Value) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    match report {
        Report::Stats => {
            let t = &v["totals"];
            line(format!(
                "runs: submitted {}  completed {}  failed {}  cancelled {}  active {}",
                num(&t["submitted"]),
                num(&t["completed"]),
                num(&t["failed"]),
                num(&t["cancelled"]),
                num(&t["active"])
            ));
            let by_status: Vec<String> = v["runs_by_status"]
                .as_object()
                .map(|m| m.iter().map(|(k, n)| format!("{k} {}", num(n))).collect())
                .unwrap_or_default();
            line(format!("by status: {}", by_status.join("  ")));
            line(format!(
                "queue depth {}  dlq {}",
                num(&v["queue_depth"]),
                num(&v["dlq_messages"])
            ));
            if let Some(q) = v["queue"].as_object() {
                for (tag, load) in q {
                    let unserved = if load["unserved"] == true {
                        "  UNSERVED"
                    } else {
                        ""
                    };
                    line(format!(
                        "  tag {tag}: queued {}  live workers {}{unserved}",
                        num(&load["queued"]),
                        num(&load["live_workers"])
                    ));
                }
            }
            let workers: Vec<String> = v["workers"]
                .as_object()
                .map(|m| m.iter().map(|(k, n)| format!("{k} {}", num(n))).collect())
                .unwrap_or_default();
            line(format!("workers: {}", workers.join("  ")));
        }
        Report::Progress => {
            let total = v["total"].as_u64().unwrap_or(0);
            let pct = v["percent_done"].as_f64().unwrap_or(0.0);
            let filled = ((pct / 100.0) * 30.0).round().clamp(0.0, 30.0) as usize;
            line(format!(
                "[{}{}] {pct:.2}%  {} of {total} done",
                "#".repeat(filled),
                ".".repeat(30 - filled),
                v["completed"].as_u64().unwrap_or(0)
                    + v["failed"].as_u64().unwrap_or(0)
                    + v["cancelled"].as_u64().unwrap_or(0)
            ));
            line(format!(
                "completed {}  failed {}  cancelled {}  running {}  pending {}",
                num(&v["completed"]),
                num(&v["failed"]),
                num(&v["cancelled"]),
                num(&v["running"]),
                num(&v["pending"])
            ));
        }
        Report::Throughput => {
            line(format!(
                "{:<12} {:>10} {:>10} {:>12} {:>10} {:>9} {:>9} {:>9}",
                "window", "completed", "failed", "completed/s", "failed/s", "p50", "p95", "p99"
            ));
            for name in ["1m", "5m", "15m", "since_start"] {
                let w = &v["windows"][name];
                line(format!(
                    "{:<12} {:>10} {:>10} {:>12} {:>10} {:>9} {:>9} {:>9}",
                    name,
                    num(&w["completed"]),
                    num(&w["failed"]),
                    num(&w["completed_per_sec"]),
                    num(&w["failed_per_sec"]),
                    secs(&w["duration_p50_sec"]),
                    secs(&w["duration_p95_sec"]),
                    secs(&w["duration_p99_sec"])
                ));
            }
            line(format!("elapsed {}", secs(&v["elapsed_sec"])));
        }
        Report::Failures => {
            let errors = v["errors"].as_array().cloned().unwrap_or_default();
            if errors.is_empty() {
                line("no failures".into());
            }
            for e in &errors {
                line(format!(
                    "{:>6}x {} in {}  last {}  e.g. {}: {}",
                    num(&e["count"]),
                    num(&e["error_class"]),
                    num(&e["task"]),
                    num(&e["last_seen"]),
                    num(&e["example_run_id"]),
                    num(&e["example_message"])
                ));
            }
            for w in v["warnings"].as_array().cloned().unwrap_or_default() {
                line(format!("warning: {}", num(&w["message"])));
            }
        }
        Report::Results => {
            for item in v["items"].as_array().cloned().unwrap_or_default() {
                line(format!(
                    "{}  {:<9}  {}  {}  {}",
                    num(&item["run_id"]),
                    num(&item["status"]),
                    num(&item["flow_name"]),
                    secs(&item["duration_sec"]),
                    num(&item["error"])
                ));
            }
            if let Some(c) = v["next_cursor"].as_str() {
                line(format!("next_cursor: {c}"));
            }
        }
    }
    out
}
