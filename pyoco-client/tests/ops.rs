//! `pyoco-client stats | progress | throughput | failures | results` against a real stack:
//! JSON and text output, filters, paging, `--watch` when piped (plain blocks), bad flags.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

mod common;

use std::time::Duration;

use common::CliStack;
use pyoco::client::http::StatsFilter;
use pyoco::testkit::{submit_yaml, wait_for, wait_terminal};
use serde_json::Value;

const OK: &str = "flow: {graph: a}\ntasks: {a: {callable: 'pyoco:echo', inputs: {value: 1}}}\n";
const BAD: &str =
    "flow: {graph: a}\ntasks: {a: {callable: 'pyoco:fail', inputs: {message: boom}}}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_commands_print_json_text_and_refresh() {
    let stack = CliStack::start().await;
    let client = stack.stack.client.clone();
    for (yaml, name) in [(OK, "ok"), (OK, "ok"), (BAD, "bad")] {
        let id = submit_yaml(&client, yaml, name, None).await;
        wait_terminal(&client, &id).await;
    }
    wait_for("counters", Duration::from_secs(10), || async {
        let p = client.progress(&StatsFilter::default()).await.ok()?;
        (p["percent_done"] == 100.0 && p["total"] == 3).then_some(())
    })
    .await;

    let out = stack.cli(&["stats", "--output", "json"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["totals"]["submitted"], 3);

    let out = stack.cli(&["stats"]).await;
    assert!(
        out.stdout
            .contains("runs: submitted 3  completed 2  failed 1"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("tag default: queued 0  live workers 1"),
        "{out:?}"
    );

    let out = stack.cli(&["progress", "--flow", "ok"]).await;
    assert!(out.stdout.contains("100.00%  2 of 2 done"), "{out:?}");

    let out = stack.cli(&["throughput"]).await;
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("window"), "{out:?}");
    assert!(
        lines[1].starts_with("1m") && lines[1].contains(" 2 "),
        "{out:?}"
    );

    let out = stack.cli(&["failures"]).await;
    assert!(out.stdout.contains("1x Error in a"), "{out:?}");
    assert!(out.stdout.contains("boom"), "{out:?}");
    let out = stack.cli(&["failures", "--flow", "ok"]).await;
    assert!(out.stdout.starts_with("no failures\n"), "{out:?}");

    let out = stack
        .cli(&["results", "--limit", "2", "--output", "json"])
        .await;
    let page: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let out = stack.cli(&["results", "--cursor", &cursor]).await;
    assert_eq!(out.stdout.lines().count(), 1, "{out:?}");
    assert!(!out.stdout.contains("next_cursor"), "{out:?}");

    // Piped, --watch prints one plain block per refresh, separated by a blank line.
    let out = stack
        .cli(&[
            "progress",
            "--watch",
            "--count",
            "2",
            "--interval-sec",
            "0.2",
        ])
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let blocks: Vec<&str> = out.stdout.split("\n\n").collect();
    assert_eq!(blocks.len(), 2, "{out:?}");
    assert!(
        !out.stdout.contains('\x1b'),
        "no escape codes when piped: {out:?}"
    );
    let out = stack
        .cli(&[
            "stats",
            "--watch",
            "--count",
            "2",
            "--interval-sec",
            "0.2",
            "--output",
            "json",
        ])
        .await;
    assert_eq!(out.stdout.lines().count(), 2, "{out:?}");

    // On a terminal (a pseudo-terminal from util-linux `script`, where installed), each
    // refresh homes the cursor and clears the screen before drawing: redrawn in place.
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_ok()
    {
        let url = stack.stack.gateway.url();
        let cmd = format!(
            "{} --server {url} progress --watch --count 2 --interval-sec 0.2",
            env!("CARGO_BIN_EXE_pyoco-client")
        );
        let tty = tokio::process::Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .env_remove("PYOCO_SERVER")
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&tty.stdout);
        assert!(tty.status.success(), "{text}");
        assert_eq!(text.matches("\x1b[H\x1b[2J").count(), 2, "{text:?}");
        assert_eq!(text.matches("100.00%").count(), 2, "{text:?}");
    }

    let out = stack
        .cli(&["stats", "--watch", "--interval-sec", "0"])
        .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("at least 0.2"), "{out:?}");
    let out = stack.cli(&["results", "--status", "RUNNING"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("422"), "{out:?}");
    stack.stop().await;
}
