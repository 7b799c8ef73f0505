//! Bundles shared with the original pyoco-server 0.7.0 on one nats-server: a bundle submitted
//! to and approved by the Python gateway runs on our workers (spawning its children), and one
//! submitted to ours is approved by the Python gateway, which finds the bundle we stored and
//! queues a job our worker runs.
//!
//! Ignored by default like `interop_schedules` (0.7.0 is installed from its source by
//! `scripts/install-interop07.sh`): `cargo nextest run -p pyoco-core --test interop_bundles
//! --run-ignored all`.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::process::{Command, Stdio};
use std::time::Duration;

use pyoco::testkit::{Spawned, Stack, WorkerHandle, free_port, wait_for, wait_terminal};
use pyoco::{HttpClient, Registry};
use serde_json::Value;

const BUNDLE: &str = "workflows:
  main:
    flow: {graph: 'prep >> fan'}
    tasks:
      prep: {callable: 'pyoco:echo', inputs: {value: 1}}
      fan: {spawn: child, inputs: {n: 3}}
  child:
    flow: {graph: work}
    tasks:
      work: {callable: 'pyoco:echo', inputs: {value: '$ctx.params.n'}}
submit: {entry_workflow: main, inputs: {x: 1}}
";

/// Starts the Python 0.7.0 gateway on `nats_url`.
async fn python_gateway(nats_url: &str) -> (Spawned, HttpClient) {
    let venv = pyoco::testkit::python_tool("install-interop07.sh");
    let port = free_port();
    let child = Spawned(
        Command::new(venv.join("bin/pyoco-server"))
            .args(["up", "--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--nats-url", nats_url])
            .env("PYOCO_NATS_URL", nats_url)
            .env("PYOCO_LOAD_DOTENV", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = HttpClient::new(&format!("http://127.0.0.1:{port}")).unwrap();
    wait_for("the Python gateway", Duration::from_secs(30), || async {
        client.list_schedules().await.ok().map(|_| ())
    })
    .await;
    (child, client)
}

async fn stack_with_kids() -> (Stack, WorkerHandle) {
    let stack = Stack::start_with(|c| c.spawn_child_tag = "kids".into()).await;
    let kids = WorkerHandle::start(
        stack.config.clone(),
        Registry::with_builtins(),
        "w-kids",
        &["kids"],
    )
    .await;
    (stack, kids)
}

fn check_tree(root: &Value, child: &Value, root_id: &str) {
    assert_eq!(root["status"], "COMPLETED", "{root}");
    assert_eq!(root["spawn_count"], 1);
    assert_eq!(root["approval_status"], "approved");
    assert_eq!(child["status"], "COMPLETED", "{child}");
    assert_eq!(child["root_run_id"], root_id);
    assert_eq!(child["parent_run_id"], root_id);
    assert_eq!(child["spawned_from_task"], "fan");
    assert_eq!(child["spawn_depth"], 1);
    assert_eq!(child["bundle_hash"], root["bundle_hash"]);
    assert_eq!(child["result_summary"]["outputs"]["work"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the pyoco-server 0.7.0 source (scripts/install-interop07.sh)"]
async fn a_bundle_submitted_and_approved_through_python_runs_on_our_workers() {
    let (stack, kids) = stack_with_kids().await;
    let (_python, py) = python_gateway(&stack.config.nats_url).await;
    let submitted = py
        .submit_bundle_yaml(BUNDLE.as_bytes(), None)
        .await
        .unwrap();
    assert_eq!(submitted["status"], "PENDING_APPROVAL");
    assert_eq!(
        submitted["bundle_hash"],
        pyoco::flow::yaml::sha256_hex(BUNDLE.as_bytes())
    );
    let root_id = submitted["run_id"].as_str().unwrap().to_string();
    // Ours reads the Python gateway's waiting root.
    let waiting = stack.client.get_run(&root_id, false).await.unwrap();
    assert_eq!(waiting["status"], "PENDING_APPROVAL");
    let approved = py.approve_run(&root_id, Some("py")).await.unwrap();
    assert_eq!(approved["status"], "PENDING");

    let root = wait_terminal(&py, &root_id).await;
    let child_id = root["child_run_ids"][0].as_str().unwrap();
    let child = py.get_run(child_id, true).await.unwrap();
    check_tree(&root, &child, &root_id);
    assert_eq!(
        root["task_records"]["fan"]["output"],
        child["result_summary"]
    );
    kids.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the pyoco-server 0.7.0 source (scripts/install-interop07.sh)"]
async fn a_bundle_submitted_to_ours_is_approved_by_the_python_gateway() {
    let (stack, kids) = stack_with_kids().await;
    let (_python, py) = python_gateway(&stack.config.nats_url).await;
    let submitted = stack
        .client
        .submit_bundle_yaml(BUNDLE.as_bytes(), None)
        .await
        .unwrap();
    let root_id = submitted["run_id"].as_str().unwrap().to_string();
    let waiting = py.get_run(&root_id, false).await.unwrap();
    assert_eq!(waiting["status"], "PENDING_APPROVAL");
    assert_eq!(waiting["approval_status"], "pending");
    // The Python gateway finds the bundle we stored under its hash and queues the job.
    let approved = py.approve_run(&root_id, None).await.unwrap();
    assert_eq!(approved["approval_status"], "approved");
    let root = stack.wait_terminal(&root_id).await;
    let child_id = root["child_run_ids"][0].as_str().unwrap();
    let child = stack.client.get_run(child_id, true).await.unwrap();
    check_tree(&root, &child, &root_id);

    // And rejects like ours.
    let second = stack
        .client
        .submit_bundle_yaml(BUNDLE.as_bytes(), None)
        .await
        .unwrap();
    let rejected = py
        .reject_run(second["run_id"].as_str().unwrap(), Some("no"))
        .await
        .unwrap();
    assert_eq!(rejected["status"], "CANCELLED");
    assert_eq!(rejected["rejection_reason"], "no");
    kids.stop().await;
}

/// The original's own end-to-end bundle (`tests/test_spawn_bundle_e2e.py`), with its Python
/// test tasks.
const ORIGINAL_E2E: &str = "version: 1
workflows:
  study:
    tasks:
      prepare:
        callable: pyoco_server._workflow_test_tasks:add_one
      run_child:
        spawn: trial
        inputs:
          x: $node.prepare.output
      summarize:
        callable: pyoco_server._workflow_test_tasks:child_summary_text
    flow:
      graph: |
        prepare >> run_child >> summarize
  trial:
    tasks:
      add_one:
        callable: pyoco_server._workflow_test_tasks:add_one
      to_text:
        callable: pyoco_server._workflow_test_tasks:to_text
    flow:
      graph: |
        add_one >> to_text
submit:
  entry_workflow: study
  inputs:
    x: 1
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the pyoco-server 0.7.0 source (scripts/install-interop07.sh)"]
async fn python_workers_run_a_bundle_submitted_and_approved_through_ours() {
    let stack = Stack::builder().no_worker().start().await;
    let venv = pyoco::testkit::python_tool("install-interop07.sh");
    let nats_url = stack.config.nats_url.clone();
    // Two workers, as in the original's test: the parent blocks one while its child runs.
    let _workers: Vec<Spawned> = ["py-w1", "py-w2"]
        .iter()
        .map(|id| {
            Spawned(
                Command::new(venv.join("bin/pyoco-worker"))
                    .args([
                        "--nats-url",
                        &nats_url,
                        "--tags",
                        "bundle",
                        "--worker-id",
                        id,
                    ])
                    .env("PYOCO_LOAD_DOTENV", "0")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    let client = &stack.client;
    let submitted = client
        .submit_bundle_yaml(ORIGINAL_E2E.as_bytes(), Some("bundle"))
        .await
        .unwrap();
    assert_eq!(submitted["status"], "PENDING_APPROVAL");
    let root_id = submitted["run_id"].as_str().unwrap().to_string();
    client.approve_run(&root_id, None).await.unwrap();
    let root = stack.wait_terminal(&root_id).await;
    assert_eq!(root["status"], "COMPLETED", "{root}");
    assert_eq!(root["spawn_count"], 1);
    assert_eq!(root["task_records"]["summarize"]["output"], "COMPLETED:v=3");
    let child = stack
        .wait_terminal(root["child_run_ids"][0].as_str().unwrap())
        .await;
    assert_eq!(child["status"], "COMPLETED", "{child}");
    assert_eq!(child["root_run_id"], root_id.as_str());
    assert_eq!(child["spawned_from_task"], "run_child");
    assert_eq!(child["result_summary"]["outputs"]["to_text"], "v=3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the pyoco-server 0.7.0 source (scripts/install-interop07.sh)"]
async fn our_workers_run_the_originals_bundle_with_its_python_tasks() {
    let venv = pyoco::testkit::python_tool("install-interop07.sh");
    let python = venv.join("bin/python").display().to_string();
    let stack = Stack::start_with(move |c| {
        c.python = python;
        c.spawn_child_tag = "kids".into();
    })
    .await;
    let kids = WorkerHandle::start(
        stack.config.clone(),
        Registry::with_builtins(),
        "w-kids",
        &["kids"],
    )
    .await;
    let (_python, py) = python_gateway(&stack.config.nats_url).await;
    let submitted = py
        .submit_bundle_yaml(ORIGINAL_E2E.as_bytes(), None)
        .await
        .unwrap();
    let root_id = submitted["run_id"].as_str().unwrap().to_string();
    py.approve_run(&root_id, None).await.unwrap();
    let root = wait_terminal(&py, &root_id).await;
    assert_eq!(root["status"], "COMPLETED", "{root}");
    assert_eq!(root["task_records"]["summarize"]["output"], "COMPLETED:v=3");
    let child = py
        .get_run(root["child_run_ids"][0].as_str().unwrap(), true)
        .await
        .unwrap();
    assert_eq!(child["result_summary"]["outputs"]["to_text"], "v=3");
    kids.stop().await;
}
