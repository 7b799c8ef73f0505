//! The schedule subcommands end to end: create, list, runs, pause, resume, delete.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

mod common;

use std::time::Duration;

use common::CliStack;
use pyoco::testkit::{Stack, wait_for};
use serde_json::Value;

fn json(out: &common::Output) -> Value {
    assert_eq!(out.code, Some(0), "{out:?}");
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_commands_create_list_pause_resume_and_delete() {
    let stack = CliStack {
        stack: Stack::start_with(|c| c.schedule_poll_interval = Duration::from_millis(200)).await,
        dir: tempfile::tempdir().unwrap(),
    };
    let flow = stack.write(
        "flow.yaml",
        "flow: {graph: a}\ntasks: {a: {callable: 'pyoco:echo', inputs: {value: 1}}}\n",
    );
    let created = json(
        &stack
            .cli(&[
                "schedule-yaml",
                "--workflow-file",
                &flow,
                "--flow-name",
                "tick",
                "--tag",
                "default",
                "--interval-seconds",
                "1",
                "--misfire",
                "skip",
            ])
            .await,
    );
    assert_eq!(created["interval_seconds"], 1.0);
    assert_eq!(created["misfire"], "skip");
    let id = created["schedule_id"].as_str().unwrap().to_string();
    let listed = json(&stack.cli(&["schedules"]).await);
    assert_eq!(listed[0]["schedule_id"], id.as_str());

    wait_for("a scheduled run", Duration::from_secs(20), || {
        let (stack, id) = (&stack, id.clone());
        async move {
            let out = stack
                .cli(&["schedule-runs", "--schedule-id", &id, "--limit", "5"])
                .await;
            let runs = json(&out);
            (!runs.as_array().unwrap().is_empty()).then_some(())
        }
    })
    .await;
    let paused = json(&stack.cli(&["schedule-pause", "--schedule-id", &id]).await);
    assert_eq!(paused["status"], "PAUSED");
    // A table for people (piped: plain columns), the rule in words.
    let table = stack.cli(&["schedules", "--output", "table"]).await;
    assert_eq!(table.code, Some(0), "{table:?}");
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(
        lines[0].starts_with("schedule_id") && lines[0].contains("next_run"),
        "{table:?}"
    );
    assert!(
        lines[1].starts_with(id.as_str())
            && lines[1].contains("PAUSED")
            && lines[1].contains("every 1 s"),
        "{table:?}"
    );
    let resumed = json(&stack.cli(&["schedule-resume", "--schedule-id", &id]).await);
    assert_eq!(resumed["status"], "ACTIVE");
    let deleted = json(&stack.cli(&["schedule-delete", "--schedule-id", &id]).await);
    assert_eq!(deleted["deleted"], true);
    let again = stack.cli(&["schedule-delete", "--schedule-id", &id]).await;
    assert_eq!(again.code, Some(1), "{again:?}");
    assert!(
        again.stderr.contains(&format!(
            "- reason: HTTP 404 DELETE /schedules/{id}: {{\"detail\":\"schedule not found\""
        )),
        "{again:?}"
    );
    // Exactly one of --run-at / --interval-seconds / --cron: the gateway's message.
    let neither = stack
        .cli(&[
            "schedule-yaml",
            "--workflow-file",
            &flow,
            "--flow-name",
            "x",
            "--tag",
            "default",
        ])
        .await;
    assert_eq!(neither.code, Some(1));
    assert!(
        neither
            .stderr
            .contains("specify either run_at or interval_seconds"),
        "{neither:?}"
    );
    stack.stop().await;
}
