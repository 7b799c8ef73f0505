//! The bundle subcommands end to end: submit-bundle, approve, reject.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

mod common;

use common::CliStack;
use pyoco::testkit::Stack;
use serde_json::Value;

const BUNDLE: &str = "workflows:
  main:
    flow: {graph: 'a >> s'}
    tasks:
      a: {callable: 'pyoco:echo', inputs: {value: 1}}
      s: {spawn: child}
  child:
    flow: {graph: w}
    tasks: {w: {callable: 'pyoco:echo', inputs: {value: '$ctx.params.n'}}}
submit: {entry_workflow: main, inputs: {n: 5}}
";

fn json(out: &common::Output) -> Value {
    assert_eq!(out.code, Some(0), "{out:?}");
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_bundle_then_approve_or_reject() {
    // The child runs on its own tag: the default worker is busy with the parent.
    let stack = CliStack {
        stack: Stack::start_with(|c| c.spawn_child_tag = "kids".into()).await,
        dir: tempfile::tempdir().unwrap(),
    };
    let kids = pyoco::testkit::WorkerHandle::start(
        stack.stack.config.clone(),
        pyoco::Registry::with_builtins(),
        "w-kids",
        &["kids"],
    )
    .await;
    let file = stack.write("bundle.yaml", BUNDLE);

    let submitted = json(&stack.cli(&["submit-bundle", "--bundle-file", &file]).await);
    assert_eq!(submitted["status"], "PENDING_APPROVAL");
    assert_eq!(
        submitted["bundle_hash"],
        pyoco::flow::yaml::sha256_hex(BUNDLE.as_bytes())
    );
    let run_id = submitted["run_id"].as_str().unwrap().to_string();
    let approved = json(
        &stack
            .cli(&["approve", "--run-id", &run_id, "--comment", "ok"])
            .await,
    );
    assert_eq!(approved["approval_status"], "approved");
    assert_eq!(approved["approval_comment"], "ok");
    let root = stack.stack.wait_terminal(&run_id).await;
    assert_eq!(root["status"], "COMPLETED", "{root}");
    assert_eq!(root["spawn_count"], 1);
    assert_eq!(root["task_records"]["s"]["output"]["outputs"]["w"], 5);

    // A second approve is the gateway's 409, reported like every HTTP error.
    let again = stack.cli(&["approve", "--run-id", &run_id]).await;
    assert_eq!(again.code, Some(1), "{again:?}");
    assert!(again.stderr.contains("HTTP 409"), "{again:?}");
    assert!(
        again.stderr.contains("run is not pending approval"),
        "{again:?}"
    );

    let second = json(
        &stack
            .cli(&["submit-bundle", "--bundle-file", &file, "--tag", "gpu"])
            .await,
    );
    let second_id = second["run_id"].as_str().unwrap();
    let rejected = json(
        &stack
            .cli(&["reject", "--run-id", second_id, "--reason", "not now"])
            .await,
    );
    assert_eq!(rejected["status"], "CANCELLED");
    assert_eq!(rejected["rejection_reason"], "not now");
    assert_eq!(rejected["tag"], "gpu");
    kids.stop().await;
    stack.stop().await;
}
