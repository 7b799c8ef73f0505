//! `pyoco-bench faults`: every fault scenario against real processes — nats-server restarted
//! under load, a cluster node lost, a worker SIGKILLed mid-run, a gateway SIGKILLed during a
//! submit burst, cancels racing the last task, a hung worker (SIGSTOP), a full NATS store, a
//! paused (slow) NATS node — and one table of what became of the runs: accepted, completed,
//! failed, lost, duplicated (the task ran twice), stuck (never ended), time to recover.
//!
//! The exit code is 1 when a run was lost, duplicated or stuck (or a scenario could not run),
//! never because of a time: times go to RELIABILITY.md.

mod rig;
mod scenarios;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

/// What became of the runs of one scenario.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    pub scenario: &'static str,
    /// Submits the gateway answered with a run id.
    pub accepted: usize,
    /// Submits refused (or unanswered) during the fault; the clients tried again.
    pub refused: usize,
    /// Runs in the bucket at the end (accepted, and any a killed gateway wrote unanswered).
    pub stored: usize,
    pub completed: usize,
    pub failed: usize,
    pub cancelled: usize,
    /// Accepted runs with no snapshot at the end.
    pub lost: usize,
    /// Accepted runs whose task ran more than once.
    pub duplicated: usize,
    /// Stored runs that had not ended when the scenario gave up waiting.
    pub stuck: usize,
    /// From the repair (or the fault, when nothing is repaired) until every run had ended.
    pub recover_s: Option<f64>,
    /// Re-executions that are delivery as designed, not a fault: a run whose worker vanished
    /// mid-task (killed, or hung past the ack wait while its task process ran on) is
    /// redelivered and runs again — at least once, like the original. At most the runs that
    /// worker held, so more than this is a failure.
    pub allowed_duplicates: usize,
    pub note: String,
}

impl Outcome {
    /// A scenario that could not run here (and why).
    pub fn skipped(scenario: &'static str, why: impl Into<String>) -> Outcome {
        Outcome {
            scenario,
            note: format!("SKIPPED: {}", why.into()),
            ..Default::default()
        }
    }

    fn is_skipped(&self) -> bool {
        self.note.starts_with("SKIPPED")
    }

    fn is_bad(&self) -> bool {
        !self.is_skipped()
            && (self.lost > 0 || self.duplicated > self.allowed_duplicates || self.stuck > 0)
    }
}

/// How big each scenario is.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    /// Runs submitted per scenario (about).
    pub runs: usize,
    /// Concurrent submitting clients.
    pub clients: usize,
    /// How long a run waits for its stuck runs to end before they count as stuck.
    pub settle: Duration,
}

#[derive(Debug, clap::Args)]
pub struct FaultArgs {
    /// Small counts, under ~2 minutes: what scripts/test.sh runs
    #[arg(long)]
    quick: bool,
    /// Only these scenarios (names as in the table)
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Also write the outcomes as JSON to this file
    #[arg(long)]
    json: Option<PathBuf>,
    /// Keep the work directory (process logs, execution logs) here
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

/// Runs the scenarios, prints the table; the process exit code.
pub async fn run(args: FaultArgs) -> anyhow::Result<bool> {
    let size = if args.quick {
        Size {
            runs: 40,
            clients: 4,
            settle: Duration::from_secs(40),
        }
    } else {
        Size {
            runs: 400,
            clients: 16,
            settle: Duration::from_secs(120),
        }
    };
    let temp;
    let dir = match &args.work_dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::Builder::new().prefix("pyoco-faults-").tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let mut outcomes = Vec::new();
    for (name, scenario) in scenarios::ALL {
        if !args.only.is_empty() && !args.only.iter().any(|o| o == name) {
            continue;
        }
        eprintln!("pyoco-bench faults: {name}");
        let outcome = match scenario(dir.join(name), size).await {
            Ok(o) => o,
            Err(e) => Outcome {
                scenario: name,
                note: format!("ERROR: {e:#}"),
                stuck: usize::MAX,
                ..Default::default()
            },
        };
        eprintln!("pyoco-bench faults: {name}: {outcome:?}");
        outcomes.push(outcome);
    }
    print_table(&outcomes);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&outcomes)?)?;
    }
    Ok(!outcomes.iter().any(Outcome::is_bad))
}

fn print_table(outcomes: &[Outcome]) {
    println!(
        "| scenario | accepted | refused | completed | failed | cancelled | lost | duplicated (allowed) | stuck | time to recover | note |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for o in outcomes {
        if o.is_skipped() {
            println!("| {} | | | | | | | | | | {} |", o.scenario, o.note);
            continue;
        }
        let stuck = if o.stuck == usize::MAX {
            "?".to_string()
        } else {
            o.stuck.to_string()
        };
        let recover = o
            .recover_s
            .map_or("not recovered".to_string(), |s| format!("{s:.1} s"));
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} ({}) | {} | {} | {} |",
            o.scenario,
            o.accepted,
            o.refused,
            o.completed,
            o.failed,
            o.cancelled,
            o.lost,
            o.duplicated,
            o.allowed_duplicates,
            stuck,
            recover,
            o.note
        );
    }
}
