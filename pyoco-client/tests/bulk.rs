//! `cancel-runs` and `replay` (one run, or `--replay-failed`) end to end.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

mod common;

use common::CliStack;
use pyoco::testkit::wait_terminal;
use serde_json::{Value, json};

fn json(out: &common::Output) -> Value {
    assert_eq!(out.code, Some(0), "{out:?}");
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_failed_replays_every_failed_run_of_the_filter_and_cancel_runs_filters() {
    let stack = CliStack::start().await;
    let client = &stack.stack.client;
    let mut failed = Vec::new();
    for flow in ["missing-a", "missing-a", "missing-b"] {
        let id = client
            .submit_run(flow, Default::default(), None, None)
            .await
            .unwrap()["run_id"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(wait_terminal(client, &id).await["status"], "FAILED");
        failed.push(id);
    }
    let out = stack
        .cli(&["replay", "--replay-failed", "--flow", "missing-a"])
        .await;
    let replays = json(&out);
    let mut originals: Vec<&str> = replays
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["replay_of"].as_str().unwrap())
        .collect();
    originals.sort_unstable();
    let mut expected = vec![failed[0].as_str(), failed[1].as_str()];
    expected.sort_unstable();
    assert_eq!(originals, expected);

    let one = json(&stack.cli(&["replay", &failed[2]]).await);
    assert_eq!(one["replay_of"], failed[2].as_str());
    let copy = wait_terminal(client, one["run_id"].as_str().unwrap()).await;
    assert_eq!(copy["flow_name"], "missing-b");

    // Nothing is running any more: the filter matches nothing, repeatably.
    let none = json(&stack.cli(&["cancel-runs", "--flow", "missing-a"]).await);
    assert_eq!(none, json!({"count": 0, "run_ids": [], "truncated": false}));
    let empty = stack.cli(&["cancel-runs"]).await;
    assert_eq!(empty.code, Some(1), "{empty:?}");
    assert!(
        empty.stderr.contains("specify at least one filter"),
        "{empty:?}"
    );
    let usage = stack.cli(&["replay"]).await;
    assert_ne!(usage.code, Some(0), "{usage:?}");
    stack.stop().await;
}
